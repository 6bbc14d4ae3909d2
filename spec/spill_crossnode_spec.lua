-- Objects spilled on one node and read on another: the holder reads each
-- back from disk off its loop (core/raylet/spill.c, lr_spill_restore_async)
-- while the pull waits (transfer.c), making room by spilling others.
local nodes = require("spec.helpers.nodes")
local shell = require("spec.helpers.shell")

local SCRIPT = [[
local lray = require("lray")
lray.init({ address = "auto" })
local MiB = 1048576
-- 12 strings of 8 MiB into the head's 64 MiB store: most of them spill.
local refs = {}
for i = 1, 12 do refs[i] = lray.put(string.rep(string.char(64 + i), 8 * MiB)) end
local read = lray.remote(function(s)
  return #s, s:byte(1), s:byte(-1), lray.get_runtime_context().node_id
end)
local me = lray.get_runtime_context().node_id
local out = {}
for i = 1, 12 do out[i] = read.options({ resources = { B = 1 } }).remote(refs[i]) end
local right, elsewhere = 0, 0
for i = 1, 12 do
  local n, first, last, node = lray.get(out[i], { timeout = 60 })
  if n == 8 * MiB and first == 64 + i and last == 64 + i then right = right + 1 end
  if node ~= me then elsewhere = elsewhere + 1 end
end
print("right " .. right .. " elsewhere " .. elsewhere)
-- Read back on the head too, every byte.
local exact = 0
for i = 1, 12 do
  if lray.get(refs[i]) == string.rep(string.char(64 + i), 8 * MiB) then exact = exact + 1 end
end
print("exact " .. exact)
lray.shutdown()
]]

describe("objects spilled on one node and read on another", function()
  local c

  setup(function()
    c = nodes.start({ nodes = 1, num_cpus = 1,
      head_extra = "--object-store-memory " .. 64 * 1048576,
      extra = { "--resources '{\"B\": 1}'" } })
  end)

  teardown(function()
    if c then c:stop() end
  end)

  it("are read back from disk for the pulling node, bytes exact", function()
    local path = c.base .. "/spilled.lua" -- (the cluster's own directory)
    shell.write(path, SCRIPT)
    local out = shell.run(("LRAY_TMPDIR=%s timeout 120 %s %s 2>&1"):format(
      shell.q(c.base), shell.q(nodes.BIN), shell.q(path)))
    assert.matches("right 12 elsewhere 12\n", out, 1, true)
    -- (96 MiB of puts held in a 64 MiB store: without spilling the puts
    -- would have failed with ObjectStoreFullError.)
    assert.matches("exact 12\n", out, 1, true)
  end)
end)
