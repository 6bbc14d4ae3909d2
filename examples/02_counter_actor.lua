-- 02_counter_actor.lua
-- Ports seed 02 "Ray Core: Remote Functions as Tasks, Remote Stateful Class
-- Instances as Actors", Example "Method tracking": a MethodStateCounter actor
-- that counts who ("A", "B" or "C") invoked it, queried after a batch of
-- fire-and-forget calls and then call by call.
--
-- Run from the repository root:   build/lray examples/02_counter_actor.lua
--
-- Scaled down: invoke() works for 0.02 s instead of time.sleep(0.5), so the
-- example finishes in about a second.
local lray = require("lray")

local WORK_SECONDS = 0.02         -- time.sleep(0.5) in the tutorial
local CALLERS = { "A", "B", "C" }

local function show(t)
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = ("%s = %s"):format(k, tostring(t[k])) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local MethodStateCounter = {}

function MethodStateCounter:init()
  self.invokers = { A = 0, B = 0, C = 0 }
end

function MethodStateCounter:invoke(name)
  -- pretend to do some work here
  lray.sleep(WORK_SECONDS)
  -- update times invoked
  self.invokers[name] = self.invokers[name] + 1
  -- return the state of that invoker
  return self.invokers[name]
end

function MethodStateCounter:get_all_invoker_state()
  -- return the state of all invokers
  return self.invokers
end

lray.init()

-- Create an instance of our actor.
local worker_invoker = lray.remote(MethodStateCounter).remote()
print(tostring(worker_invoker))

-- Call invoke() by random callers; calls from one caller run in order, so the
-- state we fetch afterwards counts all ten of them.
math.randomseed(os.time())
for _ = 1, 10 do
  local name = CALLERS[math.random(#CALLERS)]
  worker_invoker.invoke.remote(name)
end
print(show(lray.get(worker_invoker.get_all_invoker_state.remote())))

-- Invoke a random caller and fetch the number of invocations of that caller.
for _ = 1, 5 do
  local random_name_invoker = CALLERS[math.random(#CALLERS)]
  local times_invoked = lray.get(worker_invoker.invoke.remote(random_name_invoker))
  print(("Named caller: %s called %d times"):format(random_name_invoker, times_invoked))
end

print("Final state: " .. show(lray.get(worker_invoker.get_all_invoker_state.remote())))

lray.shutdown()
