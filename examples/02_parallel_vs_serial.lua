-- 02_parallel_vs_serial.lua
-- Ports seed 02 "Ray Core: Remote Functions as Tasks, Remote Stateful Class
-- Instances as Actors", Example 1 "Serial vs Parallelism": the same function
-- run five times in a loop, then as five remote tasks at once.
--
-- Run from the repository root:   build/lray examples/02_parallel_vs_serial.lua
--
-- Scaled down: each call sleeps 0.2 s instead of time.sleep(1). The tutorial
-- ran on a machine with at least 5 cores; we give the embedded node 5 CPUs
-- (num_cpus = 5) so that the five sleeping tasks run side by side even on a
-- 2-core machine (sleeping does not need a real core).
local lray = require("lray")

local WORK_SECONDS = 0.2          -- time.sleep(1) in the tutorial
local N = 5

-- A regular Lua function.
local function regular_function()
  lray.sleep(WORK_SECONDS)
  return 1
end

-- A remote function.
local remote_function = lray.remote(function()
  lray.sleep(WORK_SECONDS)
  return 1
end)

local function sum(t) local s = 0; for _, v in ipairs(t) do s = s + v end; return s end

lray.init({ num_cpus = N })

-- Invoke the regular function: it returns its value.
assert(regular_function() == 1)
print("regular_function() returned 1")

-- Invoke the remote function: it returns an ObjectRef at once.
local obj_ref = remote_function.remote()
print("remote_function.remote() returned " .. tostring(obj_ref))
assert(lray.get(obj_ref) == 1)
print("lray.get(obj_ref) returned 1")

-- Serial execution: one at a time, back to back.
local t0 = lray.now()
local results = {}
for i = 1, N do results[i] = regular_function() end
assert(sum(results) == N)
local serial = lray.now() - t0
print(("Serial: sum of %d results = %d, wall time: %.2f s"):format(N, sum(results), serial))

-- Parallel execution: all five tasks start at once, in the background.
t0 = lray.now()
local refs = {}
for i = 1, N do refs[i] = remote_function.remote() end
results = lray.get(refs)
assert(sum(results) == N)
local parallel = lray.now() - t0
print(("Parallel: sum of %d results = %d, wall time: %.2f s"):format(N, sum(results), parallel))
print(("Speed-up: %.1fx"):format(serial / parallel))

lray.shutdown()
