-- 03_supervisor_tree.lua
-- Ports seed 03 "A Guided Tour of Ray Core: Ray Actor Tree Pattern",
-- Example 1 "Supervisor and worker actor pattern": a Supervisor actor creates
-- three Worker actors (one per model type: lr, cl, nn), starts their training,
-- and reports their states until all of them are DONE.
--
-- Run from the repository root:   build/lray examples/03_supervisor_tree.lua
--
-- Scaled down: each training function sleeps 0.05 s instead of time.sleep(1).
-- As in the tutorial, a worker's state is a random pick from STATES, so the
-- number of status lines differs from run to run (about 10 on average).
-- Additions to the tutorial, so that the output shows the tree did its work:
-- the supervisor collects what its workers' work() returned, terminate() is
-- waited for before the supervisor itself is killed, and a call on the killed
-- supervisor shows the ActorDiedError.
local lray = require("lray")

local TRAIN_SECONDS = 0.05        -- time.sleep(1) in the tutorial

-- States to inspect or checkpoint
local STATES = { "RUNNING", "PENDING", "DONE" }

-- A (fake) model: training runs its model type's training function.
local Model = {}
Model.__index = Model

function Model.new(m, func)
  return setmetatable({ _model = m, _func = func }, Model)
end

function Model:train()
  -- do some training work here for the respective model type
  return self._func()
end

-- Factory function to return an instance of a model type
local function model_factory(m, func)
  return Model.new(m, func)
end

-- A Worker actor trains one model.
local Worker = {}

function Worker:init(m, func)
  self._model = m                 -- type of a model: lr, cl, or nn
  self._func = func
  -- every worker process gets its own random sequence
  math.randomseed(os.time() * 1000003 + math.floor(lray.now() * 1e6) % 1000003)
end

-- Inspect its current state and return it: one of STATES, for now at random.
function Worker:state()
  return STATES[math.random(#STATES)]
end

-- Create the model from the factory and train it with its objective function.
function Worker:work()
  local loss = model_factory(self._model, self._func):train()
  return ("%s model trained (loss %g)"):format(self._model, loss)
end

local RWorker = lray.remote(Worker)

-- The training functions of the three model types
local function lr_func()
  lray.sleep(TRAIN_SECONDS)       -- Do some training work for linear regression
  return 0
end

local function cl_func()
  lray.sleep(TRAIN_SECONDS)       -- Do some training work for classification
  return 0
end

local function nn_func()
  lray.sleep(TRAIN_SECONDS)       -- Do some training work for neural networks
  return 0
end

-- The Supervisor creates three Worker actors, each with its own model type and
-- training function.
local Supervisor = {}

function Supervisor:init()
  self.workers = {}
  for _, spec in ipairs({ { "lr", lr_func }, { "cl", cl_func }, { "nn", nn_func } }) do
    self.workers[#self.workers + 1] = RWorker.remote(spec[1], spec[2])
  end
end

function Supervisor:work()
  -- do the work
  self.jobs = {}
  for i, w in ipairs(self.workers) do self.jobs[i] = w.work.remote() end
end

function Supervisor:reports()
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

local sup = lray.remote(Supervisor).remote()

-- Launch remote actors as workers
print(tostring(sup.work.remote()))

-- Check their status
local rounds = 0
while true do
  -- Fetch the states of all its workers
  local states = lray.get(sup.state.remote())
  rounds = rounds + 1
  print("{'" .. table.concat(states, "', '") .. "'}")
  -- check if all are DONE
  local all_done = true
  for _, s in ipairs(states) do if s ~= "DONE" then all_done = false end end
  if all_done then
    for _, r in ipairs(lray.get(sup.reports.remote())) do print("Worker report: " .. r) end
    -- kill the supervisor's workers, then the supervisor itself
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
