-- bench/cluster_tasks.lua: N tasks spread over a head and two more nodes on
-- this machine (127.0.0.1-3, each its own `lray _node`, 2 CPUs each), from
-- one driver on the head. Prints the rate, and how many ran on each node.
--
--   build/lray bench/cluster_tasks.lua [N] [work_ms]
--
-- work_ms (default 0): how long each task computes; with 0 the figure is
-- the control path's cost, with a few ms it shows the work spreading.
local lray = require("lray")
local core = require("lray._core")

local N = tonumber(arg[1]) or 10000
local WORK = (tonumber(arg[2]) or 0) / 1000
local BIN = core.exe_path()
local base = os.tmpname()
os.remove(base)
os.execute("mkdir -p " .. base)
local env = "LRAY_TMPDIR=" .. base .. " "

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("*a")
  f:close()
  return out
end

local out = sh(env .. BIN .. " start --head --port 0 --dashboard-port 0 --num-cpus 2")
local addr = assert(out:match("Address for other machines: (%S+)"), out)
for i = 2, 3 do
  sh(("%s%s start --address %s --host 127.0.0.%d --num-cpus 2"):format(env, BIN, addr, i))
end
local ok, err = pcall(function()
  lray.init({ address = "unix:" .. sh("ls -d " .. base .. "/head-*"):gsub("%s+$", "") .. "/node.sock" })
  local f = lray.remote(function(w)
    if w > 0 then local t0 = lray.now(); while lray.now() - t0 < w do end end
    return lray.get_runtime_context().node_id
  end)
  lray.get(f.remote(0))   -- warm up: code on the workers, leases
  local t0 = lray.now()
  local refs = {}
  for i = 1, N do refs[i] = f.remote(WORK) end
  local by = {}
  for _, n in ipairs(lray.get(refs)) do by[n] = (by[n] or 0) + 1 end
  local dt = lray.now() - t0
  print(("%d tasks (%g ms of work each) over 3 nodes in %.2f s: %.0f tasks/s"):format(
    N, WORK * 1000, dt, N / dt))
  for node, count in pairs(by) do print(("  node %s: %d tasks"):format(node:sub(1, 8), count)) end
  lray.shutdown()
end)
sh(env .. BIN .. " stop")
os.execute("rm -rf " .. base)
if not ok then error(err, 0) end
