-- 05_actor_pool.lua
-- Ports seed 05 "Ray Actors Revisited", section "Actor Pools": a pool of five
-- actors with a double() method, used through lray.util.ActorPool's map.
--
-- Run from the repository root:   build/lray examples/05_actor_pool.lua
--
-- Ray's pool.map returns a generator; ActorPool:map returns a Lua iterator
-- (results in input order). map_unordered (completion order) is shown too.
-- Runs in well under a second.
local lray = require("lray")
local ActorPool = lray.util.ActorPool

local Actor = {}

function Actor:double(n)
  return n * 2
end

lray.init()

local RActor = lray.remote(Actor)
local actor_pool_list = {}
for i = 1, 5 do actor_pool_list[i] = RActor.remote() end
local pool = ActorPool.new(actor_pool_list)

-- pool:map returns an iterator over the results, in the order of the inputs
local results = {}
for v in pool:map(function(a, v) return a.double.remote(v) end, { 1, 2, 3, 4 }) do
  results[#results + 1] = v
end
print("{" .. table.concat(results, ", ") .. "}")

-- map_unordered yields each result as soon as it is ready
local unordered = {}
for v in pool:map_unordered(function(a, v) return a.double.remote(v) end, { 5, 6, 7, 8, 9, 10, 11, 12 }) do
  unordered[#unordered + 1] = v
end
table.sort(unordered)
print("map_unordered, sorted: {" .. table.concat(unordered, ", ") .. "}")

lray.shutdown()
