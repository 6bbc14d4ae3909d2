-- pool_map.lua: lray.util.Pool (Python's multiprocessing.Pool on actors)
-- against a plain loop of task calls. Pool.map runs f over chunks of items
-- on the pool's actors, so 10,000 trivial items cost a few actor calls
-- instead of 10,000 tasks. Prints the checksum of both runs (the facts to
-- check) and the throughput of each, measured in this run (median of 3).
--
--   build/lray examples/pool_map.lua [items]
local lray = require("lray")

lray.init()
local Pool = lray.util.Pool

local N = tonumber(arg and arg[1]) or 10000
local REPEAT = 3
local function f(x) return x * 2 + 1 end

local xs = {}
for i = 1, N do xs[i] = i end

local pool = Pool.new()           -- one actor per CPU of the cluster
local rf = lray.remote(f)

-- Warm up both paths (definition export, worker start).
pool:map(f, { 1, 2, 3, 4 })
lray.get({ rf.remote(1), rf.remote(2) })

local function checksum(list)
  local s = 0
  for i = 1, N do s = s + list[i] end
  return s
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

local function by_pool() return pool:map(f, xs) end
local function by_loop()
  local refs = {}
  for i = 1, N do refs[i] = rf.remote(xs[i]) end
  return lray.get(refs)
end

local function timed(fn)
  local times, out = {}, nil
  for r = 1, REPEAT do
    local t0 = lray.now()
    out = fn()
    times[r] = lray.now() - t0
  end
  return out, median(times)
end

local pooled, t_pool = timed(by_pool)
local looped, t_loop = timed(by_loop)

local same = #pooled == N and #looped == N
for i = 1, N do
  if pooled[i] ~= f(i) or looped[i] ~= f(i) then same = false end
end

print(("items: %d, actors: %d"):format(N, #pool.actors))
print(("checksum pool: %d, loop: %d, expected: %d"):format(checksum(pooled),
  checksum(looped), N * (N + 1) + N))
print("pool results equal the loop's: " .. tostring(same))
print(("Pool.map:       %8.4f s  %10.0f items/s"):format(t_pool, N / t_pool))
print(("f.remote loop:  %8.4f s  %10.0f items/s"):format(t_loop, N / t_loop))
print(("Pool.map / loop throughput: %.1fx"):format(t_loop / t_pool))

pool:close()
pool:join()
