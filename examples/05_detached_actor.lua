-- 05_detached_actor.lua
-- Ports seed 05 "Ray Actors Revisited", section "Named and Detached Actors":
-- Counter actors created with lifetime = "detached", used "somewhere else"
-- through lray.get_actor, and cleaned up explicitly with lray.kill.
--
-- Run from the repository root:   build/lray examples/05_detached_actor.lua
--
-- Beyond the tutorial's cells it shows what "detached" means: an actor
-- created by a task outlives the task, and an actor created by a second
-- driver (this same script, started with the argument --child ADDRESS, which
-- joins this script's cluster) outlives that driver. lray.kill(h,
-- {no_restart = true}) is what ends them. Runs in a second or two.
local lray = require("lray")

local NAMESPACE = "detached-demo"

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

-- The child driver: joins the cluster at ADDRESS, creates a detached actor,
-- uses it once and exits.
if arg[1] == "--child" then
  lray.init({ address = arg[2], namespace = NAMESPACE })
  local survivor = RCounter.options({ name = "Survivor", lifetime = "detached" }).remote()
  print("child driver: Survivor.next() = " .. lray.get(survivor.next.remote()))
  lray.shutdown()
  os.exit(0)
end

local function show(list) return "{" .. table.concat(list, ", ") .. "}" end

local function next_n(c, n)
  local refs = {}
  for i = 1, n do refs[i] = c.next.remote() end
  return lray.get(refs)
end

local ctx = lray.init({ namespace = NAMESPACE })

-- Create detached instances.
local counter1 = RCounter.options({ name = "Counter1", lifetime = "detached" }).remote()
local counter2 = RCounter.options({ name = "Counter2", lifetime = "detached" }).remote()
print(tostring(counter1))
print(tostring(counter2))

-- Then we can use them "somewhere else":
local c1 = lray.get_actor("Counter1")
print(show(next_n(c1, 100)))
local c2 = lray.get_actor("Counter2")
print(show(next_n(c2, 100)))

-- A detached actor created by a task lives on after the task has finished.
local make_service = lray.remote(function()
  local service = RCounter.options({ name = "Service", lifetime = "detached" }).remote()
  return lray.get(service.next.remote())
end)
print("task created Service, its next() = " .. lray.get(make_service.remote()))
local service = lray.get_actor("Service")
print("after the task ended, Service.next() = " .. lray.get(service.next.remote()))

-- A detached actor created by another driver lives on after that driver exits.
local cmd = ("'%s' '%s' --child '%s' 2>&1"):format(arg[-1], arg[0], ctx.address)
local child = assert(io.popen(cmd))
io.write(child:read("*a"))
child:close()
local survivor = lray.get_actor("Survivor")
print("after the child driver exited, Survivor.next() = " .. lray.get(survivor.next.remote()))

-- To kill a detached actor, use lray.kill.
for _, actor in ipairs({ c1, c2, service, survivor }) do
  lray.kill(actor, { no_restart = true })
end
for _, name in ipairs({ "Counter1", "Counter2", "Service", "Survivor" }) do
  local found = pcall(lray.get_actor, name)
  print(("after lray.kill, get_actor('%s') found it: %s"):format(name, tostring(found)))
end

lray.shutdown()
