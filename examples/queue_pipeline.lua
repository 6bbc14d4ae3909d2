-- queue_pipeline.lua: a producer/consumer pipeline over lray.util.Queue
-- (Ray's ray.util.queue.Queue). Producer tasks put items into a bounded
-- queue (blocking while it is full), consumer tasks take them out (blocking
-- while it is empty) until they get a stop mark, and the driver checks the
-- totals. The Queue object is passed to the tasks like any other value.
--
--   build/lray examples/queue_pipeline.lua
local lray = require("lray")

lray.init()
local Queue = lray.util.Queue

local PRODUCERS, CONSUMERS, PER_PRODUCER = 3, 2, 40
local STOP = "stop"

local q = Queue.new(8)   -- small on purpose: producers wait for consumers

local produce = lray.remote(function(queue, p, n)
  for i = 1, n do queue:put(p * 1000 + i) end   -- blocks while full
  return n
end)

local consume = lray.remote(function(queue)
  local count, sum = 0, 0
  while true do
    local v = queue:get()                        -- blocks while empty
    if v == STOP then break end
    count, sum = count + 1, sum + v * v          -- the "processing"
  end
  return { count = count, sum = sum }
end)

local consumers = {}
for c = 1, CONSUMERS do consumers[c] = consume.remote(q) end
local producers = {}
for p = 1, PRODUCERS do producers[p] = produce.remote(q, p, PER_PRODUCER) end

local produced = 0
for _, n in ipairs(lray.get(producers)) do produced = produced + n end
for _ = 1, CONSUMERS do q:put(STOP) end          -- one stop mark per consumer

local consumed, sum = 0, 0
for c, r in ipairs(lray.get(consumers)) do
  print(("consumer %d processed %d items"):format(c, r.count))
  consumed, sum = consumed + r.count, sum + r.sum
end

local expected = 0
for p = 1, PRODUCERS do
  for i = 1, PER_PRODUCER do expected = expected + (p * 1000 + i) ^ 2 end
end

print(("produced: %d, consumed: %d"):format(produced, consumed))
print(("sum of squares: %d, expected: %d"):format(sum, expected))
print(("queue empty at the end: %s"):format(tostring(q:empty())))
q:shutdown()
