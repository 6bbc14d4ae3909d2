-- 03_logging_actor.lua
-- Ports seed 03 "A Guided Tour of Ray Core: Ray Actor Tree Pattern",
-- the exercise after Example 3 and its solution hints, completed: a
-- LoggingActor keeps in-memory logs of N = 3 experiments, and a remote task
-- runs 9 iterations of an experiment, logging each one to the actor through
-- the handle it was given.
--
-- Run from the repository root:   build/lray examples/03_logging_actor.lua
--
-- Scaled down: an iteration sleeps 0.02 s instead of time.sleep(1).
local lray = require("lray")

local SLEEP = 0.02                -- time.sleep(1) in the tutorial

local LoggingActor = {}

function LoggingActor:init()
  self.logs = {}                  -- experiment index -> list of messages (defaultdict(list))
end

function LoggingActor:log(index, message)
  self.logs[index] = self.logs[index] or {}
  table.insert(self.logs[index], message)
end

function LoggingActor:get_logs()
  return self.logs
end

local run_experiment = lray.remote(function(experiment_index, logging_actor)
  local last
  for i = 0, 8 do
    lray.sleep(SLEEP)
    -- Push a logging message to the actor.
    last = logging_actor.log.remote(experiment_index, ("On iteration %d"):format(i))
  end
  lray.get(last)
  return experiment_index
end)

-- 4 logical CPUs: the three (mostly sleeping) tasks run side by side, as on
-- the tutorial's bigger machine, even on a 2-core box.
lray.init({ num_cpus = 4 })

-- Instantiate the actor
local logging_actor = lray.remote(LoggingActor).remote()

-- Invoke the task for each experiment and keep the results
local experiment_ids = {}
for i = 0, 2 do
  experiment_ids[#experiment_ids + 1] = run_experiment.remote(i, logging_actor)
end
print("Experiments finished: " .. table.concat(lray.get(experiment_ids), ", "))

-- Use lray.get to fetch the logs
local logs = lray.get(logging_actor.get_logs.remote())
for i = 0, 2 do
  print(("Experiment %d: %d entries: %s"):format(i, #logs[i], table.concat(logs[i], ", ")))
end

lray.shutdown()
