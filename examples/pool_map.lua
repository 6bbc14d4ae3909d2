-- Pool.map against a loop of task calls: lray.util.Pool (multiprocessing.Pool
-- on actors) runs f over chunks of items, so 10,000 trivial items cost a few
-- dozen actor calls instead of 10,000 tasks. Prints the checksum of both
-- runs and their throughput, measured in this run.
--
--   build/lray examples/pool_map.lua
local lray = require("lray")

lray.init()
local Pool = lray.util.Pool

local N = 10000
local function f(x) return x * 2 + 1 end

local xs = {}
for i = 1, N do xs[i] = i end

local pool = Pool.new()           -- one actor per CPU of the cluster
local rf = lray.remote(f)

-- Warm up both paths (actor start, definition export, worker start).
pool:map(f, { 1, 2, 3, 4 })
lray.get({ rf.remote(1), rf.remote(2) })

local function checksum(list)
  local s = 0
  for i = 1, N do s = s + list[i] end
  return s
end

local t0 = lray.now()
local by_pool = pool:map(f, xs)
local t_pool = lray.now() - t0

t0 = lray.now()
local refs = {}
for i = 1, N do refs[i] = rf.remote(xs[i]) end
local by_loop = lray.get(refs)
local t_loop = lray.now() - t0

local same = #by_pool == N and #by_loop == N
for i = 1, N do
  if by_pool[i] ~= f(i) or by_loop[i] ~= f(i) then same = false end
end

print(("items: %d, actors: %d"):format(N, #pool.actors))
print(("checksum pool: %d, loop: %d, expected: %d"):format(checksum(by_pool),
  checksum(by_loop), N * (N + 1) + N))
print("pool results equal the loop's: " .. tostring(same))
print(("Pool.map:          %8.3f s  %10.0f items/s"):format(t_pool, N / t_pool))
print(("f.remote loop:     %8.3f s  %10.0f items/s"):format(t_loop, N / t_loop))
print(("Pool.map / loop throughput: %.1fx"):format(t_loop / t_pool))

pool:close()
pool:join()
