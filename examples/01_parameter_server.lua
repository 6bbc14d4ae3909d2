-- 01_parameter_server.lua
-- Ports seed 01 "A Guided Tour of Ray Core: Remote Stateful Classes",
-- Example 2 "Parameter Server distributed application with Ray Actors":
-- three worker tasks push gradients to a ParameterServer actor while the
-- driver watches the parameters change.
--
-- Run from the repository root:   build/lray examples/01_parameter_server.lua
--
-- Scaled down to finish in a couple of seconds: a worker's "gradient
-- computation" sleeps 0.02 s instead of time.sleep(1.5), and the driver polls
-- every 0.05 s instead of time.sleep(1). numpy arrays become lray.array("double", 10).
local lray = require("lray")

local NUM_PARAMS = 10
local EPOCHS = 25                 -- per worker, as in the tutorial
local NUM_WORKERS = 3
local GRAD_SECONDS = 0.02         -- time.sleep(1.5) in the tutorial
local POLL_SECONDS = 0.05         -- time.sleep(1) in the tutorial

-- "[-30 -30 ... -30]", like numpy's print of an array.
local function show(a)
  local parts = {}
  for i = 0, #a - 1 do parts[#parts + 1] = ("%g"):format(a[i]) end
  return "[" .. table.concat(parts, " ") .. "]"
end

-- 4 logical CPUs: the three (mostly sleeping) workers run side by side, as
-- on the tutorial's bigger machine, even on a 2-core box.
local context = lray.init({ num_cpus = 4 })
print("Cluster started at " .. tostring(context.address))

local ParameterServer = {}

function ParameterServer:init()
  -- Initialize our parameters to zero
  self.params = lray.array("double", NUM_PARAMS)
  for i = 0, NUM_PARAMS - 1 do self.params[i] = 0 end
end

function ParameterServer:get_params()
  -- Return current parameters
  return self.params
end

function ParameterServer:update_params(grad)
  -- Apply the gradients
  for i = 0, #grad - 1 do self.params[i] = self.params[i] - grad[i] end
end

-- A worker task: could be a machine-learning objective function computing
-- gradients and sending them to the parameter server.
local worker = lray.remote(function(ps)
  local last
  for _ = 1, EPOCHS do
    lray.sleep(GRAD_SECONDS)      -- this could be your loss function computing gradients
    local grad = lray.array("double", NUM_PARAMS)
    for i = 0, NUM_PARAMS - 1 do grad[i] = 1 end
    -- update the gradients in the parameter server (fire and forget)
    last = ps.update_params.remote(grad)
  end
  lray.get(last)                  -- our calls run in order: once the last one is done, all are
  return EPOCHS
end)

local param_server = lray.remote(ParameterServer).remote()
print(tostring(param_server))
print("Initial params: " .. show(lray.get(param_server.get_params.remote())))

-- Three workers computing gradients, each given the actor handle.
local worker_refs = {}
for i = 1, NUM_WORKERS do worker_refs[i] = worker.remote(param_server) end
for _, r in ipairs(worker_refs) do print(tostring(r)) end

-- Query the parameter server while the workers update it independently.
for _ = 1, 20 do
  print("Updated params: " .. show(lray.get(param_server.get_params.remote())))
  lray.sleep(POLL_SECONDS)
end

local epochs = lray.get(worker_refs)
print(("Workers finished: %d workers x %d updates"):format(#epochs, epochs[1]))
print("Final params: " .. show(lray.get(param_server.get_params.remote())))

lray.shutdown()
