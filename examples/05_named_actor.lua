-- 05_named_actor.lua
-- Ports seed 05 "Ray Actors Revisited", section "Named and Detached Actors"
-- (the naming half; see 05_detached_actor.lua for lifetimes): Counter actors
-- created with a name in a namespace, then looked up by name "somewhere
-- else" with lray.get_actor, and killed with lray.kill.
--
-- Run from the repository root:   build/lray examples/05_named_actor.lua
--
-- Beyond the tutorial's cells it shows what the text explains: a task finds
-- the actor by name too, names are unique in a namespace, get_if_exists
-- returns the existing actor, another namespace does not see the name, and a
-- killed actor's name is free again. Runs in about a second.
local lray = require("lray")

local function show(list) return "{" .. table.concat(list, ", ") .. "}" end

-- Calls next() n times in a row and returns the results.
local function next_n(c, n)
  local refs = {}
  for i = 1, n do refs[i] = c.next.remote() end
  return lray.get(refs)
end

local function msg(e)
  return type(e) == "table" and e.message and tostring(e.message) or tostring(e)
end

local Counter = {}

function Counter:init()
  self.label = "Counter"
  self.count = 0
end

function Counter:next()
  self.count = self.count + 1
  return self.count
end

local RCounter = lray.remote(Counter)

-- The namespace is chosen when the driver connects to the cluster.
lray.init({ namespace = "counters" })

-- Create two named instances.
local counter1 = RCounter.options({ name = "Counter1" }).remote()
local counter2 = RCounter.options({ name = "Counter2" }).remote()
print(tostring(counter1))
print(tostring(counter2))

-- Then we can use them "somewhere else", by name:
local c1 = lray.get_actor("Counter1")
print(show(next_n(c1, 100)))
local c2 = lray.get_actor("Counter2", { namespace = "counters" })
print(show(next_n(c2, 100)))

-- Another process finds the actor by its name too: here, a task.
local call_by_name = lray.remote(function(name)
  local c = lray.get_actor(name)
  return lray.get(c.next.remote())
end)
print("A task called Counter1.next() by name: " .. lray.get(call_by_name.remote("Counter1")))

-- Names are unique within a namespace.
local ok, err = pcall(function()
  local dup = RCounter.options({ name = "Counter1" }).remote()
  return lray.get(dup.next.remote())
end)
print(("Creating a second 'Counter1': ok=%s (%s)"):format(tostring(ok), msg(err)))

-- ...unless we ask for the existing one.
local same = RCounter.options({ name = "Counter1", get_if_exists = true }).remote()
print("get_if_exists returned the existing Counter1: next() = " .. lray.get(same.next.remote()))

-- Another namespace does not see the name.
ok, err = pcall(lray.get_actor, "Counter1", { namespace = "elsewhere" })
print(("get_actor('Counter1') in namespace 'elsewhere': ok=%s (%s)"):format(tostring(ok), msg(err)))

-- To kill an actor, use lray.kill.
for _, actor in ipairs({ c1, c2 }) do lray.kill(actor) end
ok, err = pcall(lray.get, c1.next.remote())
print(("Counter1.next() after lray.kill: ok=%s, ActorDiedError=%s"):format(
  tostring(ok), tostring(lray.is_error(err, "ActorDiedError"))))
ok = pcall(lray.get_actor, "Counter1")
print("get_actor('Counter1') after lray.kill: found=" .. tostring(ok))

-- The name is free again: a new Counter1 starts from scratch.
local fresh = RCounter.options({ name = "Counter1" }).remote()
print("A new Counter1: next() = " .. lray.get(fresh.next.remote()))

lray.shutdown()
