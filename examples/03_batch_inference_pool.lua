-- 03_batch_inference_pool.lua
-- Ports seed 03 "A Guided Tour of Ray Core: Ray Actor Tree Pattern",
-- Example 2 "Actor-based batch inference": a pool of NYCBatchPredictor actors,
-- each holding the same model (stored once with lray.put), predicts on data
-- shards submitted through lray.util.ActorPool.
--
-- Run from the repository root:   build/lray examples/03_batch_inference_pool.lua
--
-- The tutorial read 12 parquet shards of NYC taxi data from S3 with pandas.
-- This port has no network or pandas: "reading" a shard generates its rows
-- (a passenger_count column) from a generator seeded by the shard number, so
-- every run predicts on the same data. Shards have ~14,000 rows instead of
-- ~140,000, and the model's payload is 1,000,000 doubles instead of 100
-- million. A DataFrame becomes a table of lray.arrays. Runs in a second or two.
local lray = require("lray")
local ActorPool = lray.util.ActorPool

local NUM_ACTORS = 6              -- You can always increase the number of actors to scale
local NUM_SHARD_FILES = 12        -- number of shard files for the actors to work on
local PAYLOAD_SIZE = 1000000      -- np.arange(100, 100_000_000) in the tutorial

-- Our load-model closure: a fake model that predicts whether a tip was given
-- from the number of passengers in the cab.
local function load_trained_model()
  -- Some model payload, so the model is big enough to be worth storing once.
  local payload = lray.array("double", PAYLOAD_SIZE)
  for i = 0, PAYLOAD_SIZE - 1 do payload[i] = 100 + i end
  local cls = "regression"
  local function model(batch)
    assert(#payload == PAYLOAD_SIZE and cls == "regression")
    -- give a tip if 2 or more passengers
    local pc = batch.passenger_count
    local score = lray.array("uint8_t", #pc)
    for i = 0, #pc - 1 do score[i] = pc[i] >= 2 and 1 or 0 end
    return { score = score }
  end
  return model
end

-- Stands in for pq.read_table(shard_path).to_pandas(): the shard's rows.
local function read_shard(shard_path)
  local index = tonumber(shard_path:match("_(%d+)%.parquet$"))
  local state = 1000 + index
  local function rand()
    state = (state * 16807) % 2147483647
    return state
  end
  for _ = 1, 3 do rand() end       -- let nearby seeds drift apart
  local rows = 13000 + rand() % 3000
  local passenger_count = lray.array("int32_t", rows)
  for i = 0, rows - 1 do
    local r = rand() % 100
    passenger_count[i] = r < 68 and 1 or 2 + r % 5
  end
  return { passenger_count = passenger_count }
end

-- An actor that keeps a model and predicts on shards.
local NYCBatchPredictor = {}

function NYCBatchPredictor:init(model)
  self.model = model
end

function NYCBatchPredictor:predict(shard_path)
  -- read each shard
  local df = read_shard(shard_path)
  -- do the inference with our model and return the result
  return self.model(df)
end

lray.init()

-- 1. Get our trained model instance  2. Store it in the object store
local model = load_trained_model()
local model_ref = lray.put(model)

-- Our (synthetic) NYC taxi shard files
local input_shard_files = {}
for i = 0, NUM_SHARD_FILES - 1 do
  input_shard_files[#input_shard_files + 1] = ("s3://anonymous@air-example-data/ursa-labs-taxi-data/"
    .. "downsampled_2009_full_year_data.parquet/fe41422b01c04169af2a65a83b753e0f_%06d.parquet"):format(i)
end
for _, f in ipairs(input_shard_files) do print(f) end

-- Create the actors, each initialized with the same model reference, and a
-- pool of them.
local RPredictor = lray.remote(NYCBatchPredictor)
local actors = {}
for i = 1, NUM_ACTORS do actors[i] = RPredictor.remote(model_ref) end
local actors_pool = ActorPool.new(actors)

-- Submit each shard to the pool of actors for batch inference.
for _, shard_path in ipairs(input_shard_files) do
  actors_pool:submit(function(actor, shard) return actor.predict.remote(shard) end, shard_path)
end

-- Iterate over the finished actors' predictions.
local shards, total_rows, total_tips = 0, 0, 0
while actors_pool:has_next() do
  local r = actors_pool:get_next()
  local tips = 0
  for i = 0, #r.score - 1 do tips = tips + r.score[i] end
  print(("Predictions dataframe size: %d | Total score for tips: %d"):format(#r.score, tips))
  shards, total_rows, total_tips = shards + 1, total_rows + #r.score, total_tips + tips
end
print(("%d shards predicted by %d actors: %d rows, %d tips"):format(shards, NUM_ACTORS, total_rows, total_tips))

lray.shutdown()
