-- API.md "Utilities" and "Resources and the cluster": lray.util.ActorPool,
-- lray.sleep, lray.now, get_runtime_context and the resource queries.
local cluster = require("spec.helpers.cluster")
local msg, fails = cluster.msg, cluster.fails

local lray

setup(function()
  lray = cluster.start()
end)

teardown(function()
  cluster.stop()
end)



local Worker = {}
function Worker:init(tag) self.tag = tag end
function Worker:double(x) return 2 * x end
function Worker:tagged(x) return self.tag .. ":" .. x end
-- Sleeps longer for smaller x, so completion order is the reverse of input.
function Worker:slow_rev(x) lray.sleep(0.05 * (5 - x)); return x end
function Worker:nap(s) lray.sleep(s); return s end

local function double(a, v) return a.double.remote(v) end

describe("lray.util.ActorPool", function()
  local RWorker, pool_actors

  setup(function()
    RWorker = lray.remote(Worker)
    pool_actors = { RWorker.remote("a"), RWorker.remote("b") }
  end)

  it("map yields the results in input order", function()
    local pool = lray.util.ActorPool.new(pool_actors)
    local out = {}
    for v in pool:map(double, { 1, 2, 3, 4, 5, 6, 7 }) do out[#out + 1] = v end
    assert.are.same({ 2, 4, 6, 8, 10, 12, 14 }, out)
    -- results come back in order even when they finish out of order
    out = {}
    for v in pool:map(function(a, x) return a.slow_rev.remote(x) end, { 1, 2, 3, 4 }) do
      out[#out + 1] = v
    end
    assert.are.same({ 1, 2, 3, 4 }, out)
  end)

  it("map spreads the work over the pool's actors", function()
    local pool = lray.util.ActorPool.new(pool_actors)
    local seen = {}
    for v in pool:map(function(a, x) return a.tagged.remote(x) end, { 1, 2, 3, 4, 5, 6 }) do
      seen[v:sub(1, 1)] = true
    end
    assert.is_true(seen.a and seen.b, "every actor got work")
  end)

  it("map_unordered yields every result", function()
    local pool = lray.util.ActorPool.new(pool_actors)
    local out = {}
    for v in pool:map_unordered(double, { 1, 2, 3, 4, 5 }) do out[#out + 1] = v end
    table.sort(out)
    assert.are.same({ 2, 4, 6, 8, 10 }, out)
  end)

  it("submit, has_next and get_next return results in submission order", function()
    local pool = lray.util.ActorPool.new(pool_actors)
    assert.is_false(pool:has_next())
    pool:submit(double, 10)
    pool:submit(double, 20)
    pool:submit(double, 30)   -- queued until an actor is free
    assert.is_true(pool:has_next())
    assert.are.equal(20, pool:get_next())
    assert.are.equal(40, pool:get_next())
    assert.is_true(pool:has_next())
    assert.are.equal(60, pool:get_next())
    assert.is_false(pool:has_next())
  end)

  it("get_next_unordered returns results in completion order", function()
    local pool = lray.util.ActorPool.new(pool_actors)
    pool:submit(function(a, s) return a.nap.remote(s) end, 0.4)
    pool:submit(function(a, s) return a.nap.remote(s) end, 0.01)
    assert.are.equal(0.01, pool:get_next_unordered())
    assert.are.equal(0.4, pool:get_next_unordered())
    assert.is_false(pool:has_next())
  end)

  it("get_next(timeout) raises GetTimeoutError when the result is late", function()
    local pool = lray.util.ActorPool.new(pool_actors)
    pool:submit(function(a, s) return a.nap.remote(s) end, 0.6)
    local t0 = lray.now()
    local e = fails(pool.get_next, pool, 0.1)
    local dt = lray.now() - t0
    assert.is_true(lray.is_error(e, "GetTimeoutError"), tostring(e))
    assert.is_true(dt < 0.5, ("timed out after %.3f s"):format(dt))
    -- the result is still there to get afterwards
    assert.are.equal(0.6, pool:get_next())
  end)

  it("has_free, pop_idle and push manage the idle actors", function()
    local a1, a2 = RWorker.remote("x"), RWorker.remote("y")
    local pool = lray.util.ActorPool.new({ a1, a2 })
    assert.is_true(pool:has_free())
    local popped = pool:pop_idle()
    assert.is_not_nil(popped)
    assert.is_true(pool:has_free())
    local popped2 = pool:pop_idle()
    assert.is_not_nil(popped2)
    assert.is_false(pool:has_free())
    assert.is_nil(pool:pop_idle())
    local names = { lray.get(popped.tagged.remote(1)), lray.get(popped2.tagged.remote(1)) }
    table.sort(names)
    assert.are.same({ "x:1", "y:1" }, names)
    pool:push(popped)
    assert.is_true(pool:has_free())
    pool:submit(function(a, v) return a.tagged.remote(v) end, 2)
    assert.is_false(pool:has_free())
    assert.are.equal(lray.get(popped.tagged.remote(2)), pool:get_next())
    assert.is_true(pool:has_free())
  end)

  it("push of an actor already in the pool raises", function()
    local a = RWorker.remote("p")
    local pool = lray.util.ActorPool.new({ a })
    fails(pool.push, pool, a)             -- idle in the pool
    pool:submit(double, 1)
    fails(pool.push, pool, a)             -- busy in the pool
    assert.are.equal(2, pool:get_next())
  end)
end)

describe("lray.sleep and lray.now", function()
  it("lray.sleep sleeps about the time asked", function()
    local t0 = lray.now()
    lray.sleep(0.1)
    local dt = lray.now() - t0
    assert.is_true(dt >= 0.099 and dt < 0.5, ("slept %.3f s"):format(dt))
    t0 = lray.now()
    lray.sleep(0)
    assert.is_true(lray.now() - t0 < 0.1)
    fails(lray.sleep, -1)
    fails(lray.sleep, "1")
  end)

  it("lray.sleep sleeps the full time even right after the caller was busy", function()
    for _, busy in ipairs({ 0.05, 0.2 }) do
      local t = lray.now()
      while lray.now() - t < busy do end   -- work that does not run the event loop
      local t0 = lray.now()
      lray.sleep(0.1)
      local dt = lray.now() - t0
      assert.is_true(dt >= 0.099, ("after %.2f s busy, lray.sleep(0.1) slept %.3f s"):format(busy, dt))
    end
  end)

  it("lray.sleep in a task does not block other workers", function()
    local nap = lray.remote(function() lray.sleep(0.3); return 1 end)
    local quick = lray.remote(function() return 2 end)
    lray.get({ nap.remote(), quick.remote() })   -- warm up
    local n = nap.remote()
    local t0 = lray.now()
    assert.are.equal(2, lray.get(quick.remote()))
    assert.is_true(lray.now() - t0 < 0.25)
    assert.are.equal(1, lray.get(n))
  end)

  it("lray.now is monotonic with sub-millisecond resolution", function()
    local prev = lray.now()
    assert.is_number(prev)
    local distinct = {}
    for _ = 1, 10000 do
      local t = lray.now()
      assert.is_true(t >= prev)
      distinct[t] = true
      prev = t
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.is_true(n > 100, n .. " distinct values in 10000 calls")
    -- the same clock in every process of the node
    local f = lray.remote(function() return lray.now() end)
    local before = lray.now()
    local remote_now = lray.get(f.remote())
    assert.is_true(remote_now >= before and remote_now <= lray.now())
  end)
end)

describe("Resources and the cluster", function()
  it("get_runtime_context in a task has job_id, node_id, worker_id and task_id", function()
    local drv = lray.get_runtime_context()
    assert.is_not_nil(drv.job_id)
    assert.is_not_nil(drv.node_id)
    assert.is_not_nil(drv.namespace)
    local f = lray.remote(function() return lray.get_runtime_context() end)
    local c = lray.get(f.remote())
    assert.is_not_nil(c.job_id)
    assert.is_not_nil(c.node_id)
    assert.is_not_nil(c.worker_id)
    assert.is_not_nil(c.task_id)
    assert.is_nil(c.actor_id)
    assert.are.equal(drv.job_id, c.job_id)
    assert.are.equal(drv.node_id, c.node_id)
    assert.are.equal(drv.namespace, c.namespace)
    local c2 = lray.get(f.remote())
    assert.are_not.equal(c.task_id, c2.task_id)
  end)

  it("get_runtime_context in an actor has actor_id", function()
    local A = {}
    function A:ctx() return lray.get_runtime_context() end
    local a = lray.remote(A).remote()
    local b = lray.remote(A).remote()
    local ca, cb = lray.get(a.ctx.remote()), lray.get(b.ctx.remote())
    assert.is_not_nil(ca.actor_id)
    assert.is_not_nil(ca.worker_id)
    assert.is_not_nil(ca.node_id)
    assert.are.equal(lray.get_runtime_context().job_id, ca.job_id)
    assert.are_not.equal(ca.actor_id, cb.actor_id)
    assert.matches(ca.actor_id, tostring(a), 1, true)
    assert.are.equal(ca.actor_id, lray.get(a.ctx.remote()).actor_id)
  end)

  it("cluster_resources and available_resources have CPU", function()
    local total = lray.cluster_resources()
    assert.are.equal(2, total.CPU)
    local avail = lray.available_resources()
    assert.is_number(avail.CPU)
    assert.is_true(avail.CPU >= 0 and avail.CPU <= 2)
    -- a running task holds its CPU
    local nap = lray.remote(function() lray.sleep(0.4) end)
    local r = nap.remote()
    lray.sleep(0.15)
    assert.are.equal(total.CPU - 1, lray.available_resources().CPU)
    lray.get(r)
    local deadline = lray.now() + 2
    while lray.available_resources().CPU ~= total.CPU and lray.now() < deadline do
      lray.sleep(0.02)
    end
    assert.are.equal(total.CPU, lray.available_resources().CPU)
  end)
end)
