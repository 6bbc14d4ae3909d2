-- bench/scale_actors.lua: start 1,000 actors and call each once.
--
--   build/lray bench/scale_actors.lua [N]
--
-- lray.init{num_cpus = 2}. An actor needs 1 CPU to be placed and holds 0
-- afterwards, so the node starts them one after the other. All N handles are
-- created first (creation is asynchronous), then each actor is called once
-- and every result got. Progress is printed every 100 actors (the number of
-- live `lray _worker` processes, as the node's children), so if the machine
-- cannot hold N processes the output shows how far it got.
local lray = require("lray")
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local U = dofile(dir .. "/scale_util.lua")

local N = tonumber(arg[1]) or 1000

lray.init({ num_cpus = 2 })
local node = U.node_pid()
U.log("N=%d; node pid %s; load %s; MemAvailable %.0f MB", N, tostring(node),
  U.loadavg(), U.mem_available_mb())

local A = {}
function A:init(i) self.i = i end
function A:m(x) return self.i + x end
local RA = lray.remote(A)

local t0 = U.now()
local actors = {}
for i = 1, N do actors[i] = RA.remote(i) end
local t_handles = U.now() - t0
U.log("%d actor handles created in %.2f s", N, t_handles)

-- Call each once; get in steps of 100 so progress (and where it stops) shows.
-- A call whose actor died is counted and its first error kept, not raised:
-- the run reports how far it got.
local ok_calls, dead, first_err = 0, 0, nil
local alive = {}
local step = 100
for s = 1, N, step do
  local refs = {}
  for i = s, math.min(s + step - 1, N) do refs[#refs + 1] = actors[i].m.remote(1) end
  for k, r in ipairs(refs) do
    local ok, v = pcall(lray.get, r)
    local i = s + k - 1
    if ok then
      assert(v == i + 1, ("actor %d returned %s"):format(i, tostring(v)))
      ok_calls = ok_calls + 1
      alive[#alive + 1] = actors[i]
    else
      dead = dead + 1
      if not first_err then
        first_err = ("actor #%d: %s"):format(i, tostring(v))
        U.log("first failure at actor #%d: %s", i, tostring(v))
      end
    end
  end
  local ws = U.worker_pids(node)
  U.log("%d actors answered, %d failed (%d worker processes, MemAvailable %.0f MB); %s",
    ok_calls, dead, #ws, U.mem_available_mb(), U.rss_line(node))
end
local t_all = U.now() - t0

-- A second call to every live actor, now that all are up: the steady-state cost.
local t1 = U.now()
local refs = {}
for i = 1, #alive do refs[i] = alive[i].m.remote(2) end
lray.get(refs)
local t_second = U.now() - t1

local ws = U.worker_pids(node)
local worker_peak = 0
for _, p in ipairs(ws) do worker_peak = worker_peak + (U.status_mb(p, "VmHWM") or 0) end
U.log("RESULT scale_actors: %d actors asked for, %d started and answered, %d failed,"
  .. " in %.2f s (%.1f answered/s; handles %.2f s); second call to the %d live %.3f s;"
  .. " %d worker processes, their peak RSS sum %.0f MB (%.2f MB each); %s; load %s",
  N, ok_calls, dead, t_all, ok_calls / t_all, t_handles, #alive, t_second, #ws,
  worker_peak, worker_peak / math.max(#ws, 1), U.rss_line(node), U.loadavg())
local ts = U.now()
lray.shutdown()
U.log("shutdown %.2f s", U.now() - ts)
if first_err then
  io.stderr:write("scale_actors: ", dead, " of ", N, " actors failed; first: ", first_err, "\n")
  os.exit(1)
end
