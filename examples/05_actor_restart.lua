-- 05_actor_restart.lua
-- Ports seed 05 "Ray Actors Revisited", section "Limiting Actor Invocations
-- and Retries on Failure": max_restarts (restarting an actor whose process
-- died, running init again), max_task_retries (re-sending a call that failed
-- because the actor died) and lray.kill's no_restart flag.
--
-- Run from the repository root:   build/lray examples/05_actor_restart.lua
--
-- The tutorial only describes these options; this port crashes actor
-- processes on purpose (os.exit inside a method) to show them at work. Runs in
-- a second or two.
local lray = require("lray")

local function outcome(ref)
  local ok, v = pcall(lray.get, ref, { timeout = 5 })
  if ok then return tostring(v) end
  if lray.is_error(v, "ActorDiedError") then return "ActorDiedError" end
  return "error: " .. tostring(v)
end

local Counter = {}

function Counter:init()
  self.count = 0                  -- runs again after every restart
end

function Counter:next()
  self.count = self.count + 1
  return self.count
end

function Counter:crash()
  os.exit(1)                      -- the actor's process dies
end

-- Crashes the first time it is called (a file marks that it happened);
-- returns normally when it is re-sent to the restarted actor.
function Counter:crash_once(marker)
  local f = io.open(marker, "r")
  if not f then
    f = assert(io.open(marker, "w")); f:write("crashed\n"); f:close()
    os.exit(1)
  end
  f:close()
  return "finished on the restarted actor"
end

lray.init()

-- 1. max_restarts = 2: the actor comes back twice, with fresh state.
local c = lray.remote({ max_restarts = 2 }, Counter).remote()
print("max_restarts = 2")
print("  next() x 3: " .. outcome(c.next.remote()) .. ", " .. outcome(c.next.remote()) .. ", " .. outcome(c.next.remote()))
for restart = 1, 3 do
  print(("  crash() #%d: %s"):format(restart, outcome(c.crash.remote())))
  print(("  next() after crash #%d: %s"):format(restart, outcome(c.next.remote())))
end

-- 2. max_restarts = -1, max_task_retries = -1: a call that failed because the
--    actor died is re-sent to the restarted actor.
local marker = os.tmpname()
os.remove(marker)
local r = lray.remote({ max_restarts = -1, max_task_retries = -1 }, Counter).remote()
print("max_restarts = -1, max_task_retries = -1")
print("  crash_once(): " .. outcome(r.crash_once.remote(marker)))
print("  next(): " .. outcome(r.next.remote()))
os.remove(marker)

-- 3. lray.kill and restarts: with no_restart = false an actor that may restart
--    does; with no_restart = true (the default) it stays dead.
lray.kill(r, { no_restart = false })
print("lray.kill(h, {no_restart = false})")
print("  next(): " .. outcome(r.next.remote()))
lray.kill(r, { no_restart = true })
print("lray.kill(h, {no_restart = true})")
print("  next(): " .. outcome(r.next.remote()))

-- Options can also be changed per instance with .options():
local Foo = lray.remote({ max_restarts = -1, max_task_retries = -1 }, Counter)
local once = Foo.options({ max_restarts = 0 }).remote()
print("Foo.options({max_restarts = 0})")
print("  crash(): " .. outcome(once.crash.remote()))
print("  next() after the crash: " .. outcome(once.next.remote()))

lray.shutdown()
