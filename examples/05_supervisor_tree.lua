-- 05_supervisor_tree.lua
-- Ports seed 05 "Ray Actors Revisited", section "Tree of Actors Pattern": a
-- Supervisor actor creates one Worker actor per model type (lr, cl, nn),
-- starts them training, and the driver polls their states through the
-- supervisor until all are DONE.
--
-- Run from the repository root:   build/lray examples/05_supervisor_tree.lua
--
-- Scaled down: Model:train() sleeps 0.05 s instead of time.sleep(1). As in
-- the tutorial, state() is a random pick from STATES, so the number of status
-- lines varies from run to run (about 10 on average). Additions: train()
-- returns its gradients, which the supervisor collects, and the driver waits
-- for terminate() before killing the supervisor, then shows the
-- ActorDiedError a call on it gets.
local lray = require("lray")

local TRAIN_SECONDS = 0.05        -- time.sleep(1) in the tutorial
local STATES = { "RUNNING", "TRAINING", "DONE" }

local Model = {}
Model.__index = Model

function Model.new(m)
  return setmetatable({ _model = m, _grad = {} }, Model)
end

function Model:train()
  -- do some training work here
  for _ = 1, 5 do self._grad[#self._grad + 1] = math.random() end
  lray.sleep(TRAIN_SECONDS)
  return self._grad
end

-- Factory function to return an instance of a model type
local function model_factory(m)
  return Model.new(m)
end

local Worker = {}

function Worker:init(m)
  self._model = m                 -- type of a model: lr, cl, or nn
  math.randomseed(os.time() * 1000003 + math.floor(lray.now() * 1e6) % 1000003)
end

function Worker:state()
  return STATES[math.random(#STATES)]
end

-- Do the work for this model
function Worker:work()
  local grad = model_factory(self._model):train()
  return ("%s: %d gradients"):format(self._model, #grad)
end

local RWorker = lray.remote(Worker)

local Supervisor = {}

function Supervisor:init()
  -- Create three Worker actors, each with its own model type
  self.workers = {}
  for _, name in ipairs({ "lr", "cl", "nn" }) do
    self.workers[#self.workers + 1] = RWorker.remote(name)
  end
end

function Supervisor:start_workers()
  -- do the work
  self.jobs = {}
  for i, w in ipairs(self.workers) do self.jobs[i] = w.work.remote() end
end

function Supervisor:results()
  return lray.get(self.jobs)
end

function Supervisor:terminate()
  for _, w in ipairs(self.workers) do lray.kill(w) end
  return #self.workers
end

function Supervisor:state()
  local refs = {}
  for i, w in ipairs(self.workers) do refs[i] = w.state.remote() end
  return lray.get(refs)
end

lray.init()

-- Create an actor instance for the supervisor and launch its workers
local sup = lray.remote(Supervisor).remote()
print(tostring(sup.start_workers.remote()))

-- Check the status until all are done
local rounds = 0
while true do
  -- Fetch the states of all its workers
  local states = lray.get(sup.state.remote())
  rounds = rounds + 1
  print("{'" .. table.concat(states, "', '") .. "'}")
  local all_done = true
  for _, s in ipairs(states) do if s ~= "DONE" then all_done = false end end
  if all_done then
    for _, r in ipairs(lray.get(sup.results.remote())) do print("Worker result: " .. r) end
    -- kill the supervisor's workers, then the supervisor, only for illustration
    print(("Supervisor terminated %d workers"):format(lray.get(sup.terminate.remote())))
    lray.kill(sup)
    break
  end
end
print(("All workers DONE after %d status checks"):format(rounds))

local ok, err = pcall(lray.get, sup.state.remote())
print(("Supervisor after lray.kill: call ok=%s, ActorDiedError=%s"):format(
  tostring(ok), tostring(lray.is_error(err, "ActorDiedError"))))

lray.shutdown()
