-- 04_progress_pi.lua
-- Ports seed 04 "Remote Stateful Classes", the example "Use Actor to keep
-- track of progress": sampling tasks estimate pi and report their progress to
-- a ProgressPIActor, which the driver polls until all samples are done.
--
-- Run from the repository root:   build/lray examples/04_progress_pi.lua
--
-- Same sizes as the tutorial (10,000,000 samples per task, progress reported
-- every 1,000,000): LuaJIT samples them in a fraction of a second, so only the
-- polling is scaled down, to every 0.05 s instead of every second. One task
-- per CPU of the cluster, as the tutorial used os.cpu_count(). Runs in about
-- a second.
local lray = require("lray")

local ProgressPIActor = {}

function ProgressPIActor:init(total_num_samples)
  -- total number of all the samples for all the tasks
  self.total_num_samples = total_num_samples
  -- table to keep track of each task id
  self.num_samples_completed_per_task = {}
end

function ProgressPIActor:report_progress(task_id, num_samples_completed)
  -- Update the samples completed for a task id
  self.num_samples_completed_per_task[task_id] = num_samples_completed
end

function ProgressPIActor:get_progress()
  -- Ratio of samples completed so far to all the samples of all the tasks
  local done = 0
  for _, n in pairs(self.num_samples_completed_per_task) do done = done + n end
  return done / self.total_num_samples
end

-- A sampling task: samples num_samples points of the square [-1, 1]^2 and
-- returns how many fell inside the unit circle, reporting progress every
-- frequency_report samples.
local sampling_task = lray.remote(function(num_samples, task_id, progress_actor, frequency_report)
  frequency_report = frequency_report or 1000000
  -- each task gets its own random sequence
  math.randomseed(os.time() + 7919 * task_id)
  local random = math.random
  local num_inside = 0
  for i = 1, num_samples do
    -- x, y coordinates bounded by the circle's radius
    local x, y = 2 * random() - 1, 2 * random() - 1
    if x * x + y * y <= 1 then num_inside = num_inside + 1 end
    -- Report progress every frequency_report samples.
    if i % frequency_report == 0 then
      -- Send a message (call the actor method); this is asynchronous.
      progress_actor.report_progress.remote(task_id, i)
    end
  end
  -- Report the final progress.
  progress_actor.report_progress.remote(task_id, num_samples)
  -- Return the number of samples inside our circle
  return num_inside
end)

lray.init()

local NUM_SAMPLING_TASKS = lray.cluster_resources().CPU
local NUM_SAMPLES_PER_TASK = 10000000
local TOTAL_NUM_SAMPLES = NUM_SAMPLING_TASKS * NUM_SAMPLES_PER_TASK
local SAMPLE_REPORT_FREQUENCY = 1000000
print(("%d sampling tasks x %d samples"):format(NUM_SAMPLING_TASKS, NUM_SAMPLES_PER_TASK))

-- Create the progress actor.
local progress_actor = lray.remote(ProgressPIActor).remote(TOTAL_NUM_SAMPLES)

-- Create and execute all sampling tasks in parallel, giving each one the
-- progress actor.
local results = {}
for i = 0, NUM_SAMPLING_TASKS - 1 do
  results[#results + 1] = sampling_task.remote(NUM_SAMPLES_PER_TASK, i, progress_actor, SAMPLE_REPORT_FREQUENCY)
end

-- Query progress periodically.
while true do
  local progress = lray.get(progress_actor.get_progress.remote())
  print(("Progress: %d%%"):format(math.floor(progress * 100)))
  if progress >= 1 then break end
  lray.sleep(0.05)
end

-- Get all the sampling tasks' results.
local total_num_inside = 0
for _, n in ipairs(lray.get(results)) do total_num_inside = total_num_inside + n end
local pi = (total_num_inside * 4) / TOTAL_NUM_SAMPLES
print(("Estimated value of π is: %.7f"):format(pi))

lray.shutdown()
