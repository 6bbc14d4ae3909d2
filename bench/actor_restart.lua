-- How long an actor restart takes: from SIGKILL of the actor's process to
-- the first call served by the new one, over 10 runs.
-- Run: build/lray bench/actor_restart.lua [retry|poll]
--   retry: the call in flight is re-sent (max_task_retries = -1)
--   poll:  keep calling until a new pid answers
local lray = require("lray")
local core = require("lray._core")
lray.init({ num_cpus = 2 })

local Counter = {}
function Counter:init() self.n = 0 end
function Counter:pid() return require("lray._core").getpid() end
local R = lray.remote({ max_restarts = -1, max_task_retries = -1 }, Counter)

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

local mode = arg[1] or "retry"
local a, times = R.remote(), {}
for i = 1, 10 do
  local old = lray.get(a.pid.remote())
  local t0 = lray.now()
  core.kill(old, 9)
  local new
  if mode == "retry" then
    new = lray.get(a.pid.remote(), { timeout = 10 })
  else
    repeat
      local ok, v = pcall(lray.get, a.pid.remote(), { timeout = 10 })
      if ok then new = v end
    until new and new ~= old
  end
  assert(new ~= old, "the same process answered")
  times[#times + 1] = (lray.now() - t0) * 1000
  print(("run %2d: %.2f ms (pid %d -> %d)"):format(i, times[#times], old, new))
  lray.sleep(0.1)
end
print(("median %.2f ms"):format(median(times)))
lray.shutdown()
