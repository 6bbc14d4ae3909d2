-- bench/node_rings.lua: the node's RSS as ended tasks pass the sizes of its
-- observability rings (core/raylet/events.c: 10,000 ended tasks, 100,000
-- spans): it must stop growing once they are full (docs/reliability.md "Soak").
-- Run: build/lray bench/node_rings.lua
local lray = require("lray")
local core = require("lray._core")
lray.init({ num_cpus = 2, include_dashboard = false })
local node = tonumber(io.popen("pgrep -P " .. core.getpid() .. " -f 'lray _node'"):read("*l"))
local function rss() return tonumber(io.open("/proc/" .. node .. "/status"):read("*a"):match("VmRSS:%s*(%d+)")) end
local f = lray.remote(function(x) return x end)
print("tasks", "node_rss_kb")
print(0, rss())
for round = 1, 8 do
  local refs = {}
  for i = 1, 25000 do refs[i] = f.remote(i) end
  lray.get(refs)
  lray.sleep(0.6)  -- workers report spans twice a second
  print(round * 25000, rss())
end
lray.shutdown()
