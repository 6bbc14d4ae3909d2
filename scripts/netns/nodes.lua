-- scripts/netns/nodes.lua: reads `lray list nodes --format json` on stdin and
-- prints one line per node, tab-separated: address, alive (true|false),
-- is_head, cause (or "-"). Run by the lray binary (it has cjson):
--   lray list nodes --format json | lray scripts/netns/nodes.lua
local cjson = require("cjson")

local text = io.read("*a")
local ok, list = pcall(cjson.decode, text)
if not ok or type(list) ~= "table" then
  io.stderr:write("nodes.lua: not a node list: ", text, "\n")
  os.exit(1)
end
for _, n in ipairs(list) do
  io.stdout:write(("%s\t%s\t%s\t%s\n"):format(tostring(n.address), tostring(n.alive),
    tostring(n.is_head), n.cause and tostring(n.cause) or "-"))
end
