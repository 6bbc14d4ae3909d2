-- 01_invoker_actor.lua
-- Ports seed 01 "A Guided Tour of Ray Core: Remote Stateful Classes",
-- Example 1 "Method tracking": an actor (MethodStateCounter) that counts how
-- many times each caller ("A", "B", "C") invoked it.
--
-- Run from the repository root:   build/lray examples/01_invoker_actor.lua
--
-- Scaled down to finish in about a second: each invoke() pretends to work for
-- 0.02 s instead of time.sleep(0.5).
local lray = require("lray")

local WORK_SECONDS = 0.02          -- time.sleep(0.5) in the tutorial
local CALLERS = { "A", "B", "C" }

-- Prints {A = 6, B = 6, C = 8} with the keys in order.
local function show(t)
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = ("%s = %s"):format(k, tostring(t[k])) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

if lray.is_initialized() then lray.shutdown() end
local context = lray.init()
print("lray context: address " .. tostring(context.address) .. ", node " .. tostring(context.node_id))
print("Session dir: " .. tostring(context.session_dir))

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

function MethodStateCounter:get_invoker_state(name)
  -- return the state of the named invoker
  return self.invokers[name]
end

function MethodStateCounter:get_all_invoker_state()
  -- return the state of all invokers
  return self.invokers
end

local RMethodStateCounter = lray.remote(MethodStateCounter)

-- Create an instance of our actor and randomly invoke methods by callers' names.
local worker_invoker = RMethodStateCounter.remote()
print(tostring(worker_invoker))

math.randomseed(os.time())
-- Fire and forget: ten invocations by random callers.
for _ = 1, 10 do
  local name = CALLERS[math.random(#CALLERS)]
  worker_invoker.invoke.remote(name)
end

-- Invoke a random caller and fetch the number of invocations of that caller.
for _ = 1, 5 do
  local random_name_invoker = CALLERS[math.random(#CALLERS)]
  local times_invoked = lray.get(worker_invoker.invoke.remote(random_name_invoker))
  print(("Named caller: %s called %d"):format(random_name_invoker, times_invoked))
end

-- Fetch the count of all callers: 10 + 5 calls in all, since calls from one
-- caller run in the order they were submitted.
local all = lray.get(worker_invoker.get_all_invoker_state.remote())
print(show(all))
print("Total invocations: " .. (all.A + all.B + all.C))
print("Invoker B alone: " .. lray.get(worker_invoker.get_invoker_state.remote("B")))

lray.shutdown()
