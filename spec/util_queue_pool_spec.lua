-- API.md "Utilities": lray.util.Queue (Ray's ray.util.queue.Queue) and
-- lray.util.Pool (Ray's ray.util.multiprocessing.Pool), and their examples
-- (examples/queue_pipeline.lua, examples/pool_map.lua).
--
--   busted --lua=$PWD/build/lray spec/util_queue_pool_spec.lua
local cluster = require("spec.helpers.cluster")
local msg, fails = cluster.msg, cluster.fails

local lray, Queue, Pool

setup(function()
  lray = cluster.start()
  Queue, Pool = lray.util.Queue, lray.util.Pool
end)

teardown(function()
  cluster.stop()
end)


local function is(e, etype)
  assert(lray.is_error(e, etype), ("expected a %s error value, got: %s"):format(etype, tostring(e)))
  return e
end


local function seq(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

-- Runs f(...) in a task, timed there, and waits at most secs for it, so a
-- call that never returns fails the test instead of hanging the suite.
-- Returns {ok, result-or-error, dt = seconds the call took}.
local timed_call
local function bounded(secs, f, ...)
  timed_call = timed_call or lray.remote(function(fn, ...)
    local t0 = lray.now()
    local r = { pcall(fn, ...) }
    r.dt = lray.now() - t0
    return r
  end)
  local ref = timed_call.remote(f, ...)
  assert(#lray.wait({ ref }, { timeout = secs }) == 1,
    ("the call did not return within %g s"):format(secs))
  return lray.get(ref)
end

local function sorted(t)
  local c = {}
  for i = 1, #t do c[i] = t[i] end
  table.sort(c)
  return c
end

describe("lray.util.Queue", function()
  it("keeps FIFO order, for any values", function()
    local q = Queue.new()
    local items = { 1, "two", { 3 }, true, 5.5 }
    for i = 6, 100 do items[i] = i end
    for i = 1, #items do q:put(items[i]) end
    for i = 1, #items do assert.are.same(items[i], q:get()) end
    assert.is_true(q:empty())
  end)

  it("size/qsize/empty/full follow puts and gets; maxsize 0 is unbounded", function()
    local q = Queue.new(3)
    assert.are.equal(0, q:size())
    assert.is_true(q:empty())
    assert.is_false(q:full())
    q:put("a"); q:put("b")
    assert.are.equal(2, q:size())
    assert.are.equal(2, q:qsize())
    assert.is_false(q:empty())
    assert.is_false(q:full())
    q:put("c")
    assert.is_true(q:full())
    assert.are.equal("a", q:get())
    assert.is_false(q:full())
    assert.are.equal(2, q:size())
    local u = Queue.new(0)
    for i = 1, 50 do u:put_nowait(i) end
    assert.are.equal(50, u:size())
    assert.is_false(u:full())
  end)

  it("put_nowait on a full queue raises Full; get_nowait on an empty one raises Empty", function()
    local q = Queue.new(2)
    is(fails(q.get_nowait, q), "Empty")
    is(fails(q.get, q, { block = false }), "Empty")
    q:put_nowait(1)
    q:put(2, { block = false })
    is(fails(q.put_nowait, q, 3), "Full")
    is(fails(q.put, q, 3, { block = false }), "Full")
    is(fails(q.put, q, 3, false), "Full")             -- Python's put(item, block)
    assert.are.equal(2, q:size())                      -- nothing was added
    assert.are.equal(1, q:get_nowait())
    assert.are.equal(2, q:get({ block = false }))
  end)

  it("get with a timeout on an empty queue raises Empty after about the timeout", function()
    local q = Queue.new()
    for _, t in ipairs({ 0.3, 0 }) do
      local r = bounded(10, function(queue, tt) return queue:get({ timeout = tt }) end, q, t)
      assert.is_false(r[1])
      is(r[2], "Empty")
      assert(r.dt >= t and r.dt <= t + 1, ("Empty after %.3f s for a timeout of %g s"):format(r.dt, t))
      assert.matches("empty", msg(r[2]))
    end
    -- Python's get(block, timeout)
    is(bounded(10, function(queue) return queue:get(true, 0.1) end, q)[2], "Empty")
    assert.has_error(function() q:get({ timeout = -1 }) end)
  end)

  it("put with a timeout on a full queue raises Full after about the timeout", function()
    local q = Queue.new(1)
    q:put("x")
    local r = bounded(10, function(queue) return queue:put("y", { timeout = 0.3 }) end, q)
    assert.is_false(r[1])
    is(r[2], "Full")
    assert(r.dt >= 0.3 and r.dt <= 1.3, ("Full after %.3f s for a timeout of 0.3 s"):format(r.dt))
    assert.matches("full", msg(r[2]))
    assert.are.equal(1, q:size())
    assert.are.equal("x", q:get())
  end)

  it("a get blocked on an empty queue is released by a put from a task given the queue", function()
    local q = Queue.new()
    local producer = lray.remote(function(queue, v)
      lray.sleep(0.3)
      queue:put(v)
      return "put"
    end)
    local t0 = lray.now()
    local r = producer.remote(q, { answer = 42 })
    assert.are.same({ answer = 42 }, q:get({ timeout = 20 }))
    assert(lray.now() - t0 >= 0.3, "the get returned before the put")
    assert.are.equal("put", lray.get(r))
  end)

  it("blocked gets do not stop size() and put from another caller", function()
    local q = Queue.new()
    local consumer = lray.remote(function(queue) return queue:get() end)
    local rs = {}
    for i = 1, 4 do rs[i] = consumer.remote(q) end
    -- The consumers' gets are waiting in the queue's actor meanwhile.
    local ready = lray.wait(rs, { num_returns = 4, timeout = 0.5 })
    assert.are.equal(0, #ready)
    -- Ask with a deadline, so a queue whose actor is held fails, not hangs.
    local sz = q.actor.qsize.remote()
    assert.are.equal(1, #lray.wait({ sz }, { timeout = 3 }), "size() waited behind the blocked gets")
    assert.are.equal(0, lray.get(sz))
    local puts = {}
    for i = 1, 4 do puts[i] = q.actor.put_nowait.remote("item" .. i) end
    assert.are.equal(4, #lray.wait(puts, { num_returns = 4, timeout = 3 }), "put waited behind the blocked gets")
    local got = {}
    for i = 1, 4 do got[i] = lray.get(rs[i], { timeout = 20 }) end
    assert.are.same({ "item1", "item2", "item3", "item4" }, sorted(got))
    assert.are.equal(0, q:size())
  end)

  it("a put blocked on a full queue is released by a get; blocked getters are served in order", function()
    local q = Queue.new(1)
    q:put(1)
    local putter = lray.remote(function(queue) queue:put(2); return lray.now() end)
    local pr = putter.remote(q)
    assert.are.equal(0, #lray.wait({ pr }, { timeout = 0.5 }))   -- blocked: full
    assert.are.equal(1, q:get())
    lray.get(pr, { timeout = 20 })
    assert.are.equal(2, q:get())
    -- Two getters arrive one after the other; two puts go to them in turn.
    local getter = lray.remote(function(queue, delay)
      lray.sleep(delay)
      return queue:get()
    end)
    local g1 = getter.remote(q, 0)
    lray.sleep(0.5)
    local g2 = getter.remote(q, 0)
    lray.sleep(0.5)
    q:put("first")
    q:put("second")
    assert.are.equal("first", lray.get(g1, { timeout = 20 }))
    assert.are.equal("second", lray.get(g2, { timeout = 20 }))
  end)

  it("put_nowait_batch puts all or nothing; get_nowait_batch takes n or nothing", function()
    local q = Queue.new(5)
    q:put_nowait_batch({ 1, 2, 3 })
    assert.are.equal(3, q:size())
    is(fails(q.put_nowait_batch, q, { 4, 5, 6 }), "Full")
    assert.are.equal(3, q:size())                      -- none of them went in
    q:put_nowait_batch({ 4, 5 })
    assert.is_true(q:full())
    is(fails(q.get_nowait_batch, q, 6), "Empty")
    assert.are.equal(5, q:size())                      -- none were taken
    local got = q:get_nowait_batch(2)
    assert.are.same({ n = 2, 1, 2 }, got)
    assert.are.same({ n = 3, 3, 4, 5 }, q:get_nowait_batch(3))
    assert.are.same({ n = 0 }, q:get_nowait_batch(0))
    local u = Queue.new()
    u:put_nowait_batch(seq(200))
    assert.are.same(seq(200), (function()
      local b = u:get_nowait_batch(200); b.n = nil; return b
    end)())
    assert.has_error(function() q:get_nowait_batch(-1) end)
    assert.has_error(function() q:put_nowait_batch("x") end)
  end)

  it("nil is an item like any other", function()
    local q = Queue.new(2)
    q:put(nil)
    assert.are.equal(1, q:size())
    q:put_nowait("after")
    assert.is_true(q:full())
    assert.is_nil(q:get())
    assert.are.equal("after", q:get())
    q:put_nowait_batch({ n = 2, nil, 7 })
    local b = q:get_nowait_batch(2)
    assert.are.equal(2, b.n)
    assert.is_nil(b[1])
    assert.are.equal(7, b[2])
  end)

  it("works from inside an actor, and shutdown ends it", function()
    local q = Queue.new()
    local Relay = {}
    function Relay:init(queue) self.q = queue end
    function Relay:relay(n) for i = 1, n do self.q:put(i * 10) end return self.q:size() end
    local relay = lray.remote(Relay).remote(q)
    assert.are.equal(3, lray.get(relay.relay.remote(3)))
    assert.are.same({ n = 3, 10, 20, 30 }, q:get_nowait_batch(3))
    assert.matches("^Queue%(maxsize 0, Actor%(Queue, %x+%)%)$", tostring(q))
    q:shutdown()
    assert.matches("shut down", msg(fails(q.size, q)))
    assert.matches("shut down", msg(fails(q.put, q, 1)))
    q:shutdown()                                       -- again: no effect
    assert.has_error(function() Queue.new(-1) end)
    assert.has_error(function() Queue.new(1.5) end)
    assert.has_error(function() Queue.new(1, { actor_options = { max_concurrency = 1 } }) end)
  end)
end)

describe("lray.util.Pool", function()
  local pool

  setup(function() pool = Pool.new(2) end)
  teardown(function() pool:terminate() end)

  it("map equals the serial map over 1..1000, with and without chunksize", function()
    local k = 3
    local function f(x) return x * x + k end     -- k is an upvalue: sent with f
    local xs = seq(1000)
    local serial = {}
    for i = 1, #xs do serial[i] = f(xs[i]) end
    assert.are.same(serial, pool:map(f, xs))
    assert.are.same(serial, pool:map(f, xs, 7))
    assert.are.same(serial, pool:map(f, xs, 1000))
    assert.are.same(serial, pool:map(f, xs, 5000))
    assert.are.same({}, pool:map(f, {}))
    assert.has_error(function() pool:map(f, xs, 0) end)
    assert.has_error(function() pool:map("f", xs) end)
  end)

  it("imap yields value, index in input order", function()
    local vals, idxs = {}, {}
    -- Early items are slow, so chunks finish out of order.
    for v, i in pool:imap(function(x)
      if x <= 3 then lray.sleep(0.05 * (4 - x)) end
      return x * 2
    end, seq(30), 3) do
      vals[#vals + 1], idxs[#idxs + 1] = v, i
    end
    local want = {}
    for i = 1, 30 do want[i] = i * 2 end
    assert.are.same(want, vals)
    assert.are.same(seq(30), idxs)
  end)

  it("imap_unordered yields the same multiset, each value with its index", function()
    local vals, n = {}, 0
    for v, i in pool:imap_unordered(function(x)
      if x <= 2 then lray.sleep(0.2) end
      return x % 5
    end, seq(40), 2) do
      n = n + 1
      assert.are.equal(i % 5, v)
      vals[#vals + 1] = v
    end
    assert.are.equal(40, n)
    local want = {}
    for i = 1, 40 do want[i] = i % 5 end
    assert.are.same(sorted(want), sorted(vals))
  end)

  it("starmap unpacks each item as the arguments", function()
    local args = {}
    for i = 1, 50 do args[i] = { i, i + 1, n = 2 } end
    local out = pool:starmap(function(a, b) return a * b end, args)
    for i = 1, 50 do assert.are.equal(i * (i + 1), out[i]) end
    assert.are.same({ 3, 7 }, pool:starmap(function(a, b) return a + b end, { { 1, 2 }, { 3, 4 } }, 1))
    assert.are.same({ 6 }, pool:starmap_async(function(a, b, c) return a + b + c end, { { 1, 2, 3 } }):get())
  end)

  it("apply, apply_async and the AsyncResult: get, ready, wait, successful", function()
    assert.are.equal("xy", pool:apply(function(a, b) return a .. b end, { "x", "y" }))
    assert.are.equal(42, pool:apply(function() return 42 end))
    local ar = pool:apply_async(function(s) lray.sleep(s); return "slept" end, { 0.5 })
    assert.is_false(ar:ready())
    assert.matches("not ready", msg(fails(ar.successful, ar)))
    assert.is_false(ar:wait(0.05))
    assert.are.equal("slept", ar:get(20))
    assert.is_true(ar:ready())
    assert.is_true(ar:wait())
    assert.is_true(ar:successful())
    local bad = pool:apply_async(function() error("nope") end)
    assert.is_false(bad:wait(20) and bad:successful())
    is(fails(bad.get, bad), "TaskError")
    local mar = pool:map_async(function(x) return -x end, seq(10))
    assert.are.same({ -1, -2, -3, -4, -5, -6, -7, -8, -9, -10 }, mar:get(20))
    assert.is_true(mar:successful())
  end)

  it("get(timeout) raises GetTimeoutError when the result is late", function()
    local ar = pool:apply_async(function() lray.sleep(1.5); return 1 end)
    local t0 = lray.now()
    is(fails(ar.get, ar, 0.3), "GetTimeoutError")
    local dt = lray.now() - t0
    assert(dt >= 0.3 and dt <= 1.3, ("GetTimeoutError after %.3f s for 0.3 s"):format(dt))
    assert.are.equal(1, ar:get(20))                 -- still arrives afterwards
  end)

  it("an error in item 7 of 20 fails that item only", function()
    local function f(x)
      if x == 7 then error("bad item " .. x) end
      return x * 10
    end
    local xs = seq(20)
    -- map raises it
    local e = is(fails(pool.map, pool, f, xs, 3), "TaskError")
    assert.matches("item 7", msg(e))
    assert.matches("bad item 7", msg(e))
    assert.matches("bad item 7", tostring(e.cause))
    -- imap raises it when item 7 is reached and yields every other item
    local it = pool:imap(f, xs, 3)
    local got, errs = {}, {}
    while true do
      local ok, v, i = pcall(it)
      if not ok then
        errs[#errs + 1] = v
      elseif i == nil then
        break
      else
        got[i] = v
        assert.are.equal(i * 10, v)
      end
      if #errs > 1 then break end
    end
    assert.are.equal(1, #errs)
    is(errs[1], "TaskError")
    assert.matches("item 7", msg(errs[1]))
    local n = 0
    for i in pairs(got) do n = n + 1; assert.are_not.equal(7, i) end
    assert.are.equal(19, n)
    -- imap_unordered: 19 values and the one error
    it = pool:imap_unordered(f, xs, 4)
    local count, nerr = 0, 0
    while true do
      local ok, _, i = pcall(it)
      if not ok then nerr = nerr + 1 elseif i == nil then break else count = count + 1 end
      if nerr > 1 then break end
    end
    assert.are.equal(19, count)
    assert.are.equal(1, nerr)
    -- an error value raised by fn is the cause
    local ar = pool:map_async(function(x)
      if x == 7 then lray.errors.raise("MyError", "seven") end
      return x
    end, xs)
    assert.is_true(ar:wait(20))
    assert.is_false(ar:successful())
    local e2 = is(fails(ar.get, ar), "TaskError")
    assert.are.equal("MyError", e2.cause.type)
    -- the pool still works
    assert.are.same({ 2, 4 }, pool:map(function(x) return x * 2 end, { 1, 2 }))
  end)

  it("runs the initializer in each actor; a closed pool raises; join waits, then ends the actors", function()
    local p = Pool.new(2, { initializer = function(k) rawset(_G, "POOL_K", k) end, initargs = { 5 } })
    assert.are.same({ 6, 7 }, p:map(function(x) return x + rawget(_G, "POOL_K") end, { 1, 2 }))
    assert.matches("still running", msg(fails(p.join, p)))
    local ar = p:apply_async(function() lray.sleep(0.3); return "late" end)
    p:close()
    for _, call in ipairs({
      function() p:map(tostring, { 1 }) end,
      function() p:imap(tostring, { 1 }) end,
      function() p:imap_unordered(tostring, { 1 }) end,
      function() p:starmap(tostring, { { 1 } }) end,
      function() p:apply(tostring, { 1 }) end,
      function() p:apply_async(tostring, { 1 }) end,
      function() p:map_async(tostring, { 1 }) end,
    }) do
      assert.matches("Pool not running", msg(fails(call)))
    end
    p:join()                                        -- the submitted work finished
    assert.is_true(ar:ready())
    assert.are.equal("late", ar:get())
    local e = is(fails(lray.get, p.actors[1].ping.remote(), { timeout = 20 }), "ActorDiedError")
    assert.is_truthy(e)
    assert.matches("terminated", tostring(p))
  end)

  it("terminate kills the actors: pending work fails with ActorDiedError", function()
    local p = Pool.new(2)
    local ar = p:apply_async(function() lray.sleep(30); return 1 end)
    lray.sleep(0.2)
    local t0 = lray.now()
    p:terminate()
    is(fails(ar.get, ar, 20), "ActorDiedError")
    assert(lray.now() - t0 < 10, "terminate did not stop the running work")
    assert.matches("Pool not running", msg(fails(p.map, p, tostring, { 1 })))
    p:join()                                        -- after terminate: returns at once
    p:terminate()                                   -- again: no effect
  end)

  it("defaults to one actor per cluster CPU and the Python chunk size", function()
    local p = Pool.new()
    assert.are.equal(math.floor(lray.cluster_resources().CPU), #p.actors)
    -- ceil(10 / (4 * 2)) = 2 items per chunk: 5 chunks, round-robin.
    local pids = p:map(function() return require("lray._core").getpid() end, seq(10))
    local distinct = {}
    for _, pid in ipairs(pids) do distinct[pid] = true end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.are.equal(2, n)
    for i = 1, 10, 2 do assert.are.equal(pids[i], pids[i + 1]) end
    p:terminate()
    assert.has_error(function() Pool.new(0) end)
    assert.has_error(function() Pool.new(2, { initializer = 1 }) end)
  end)
end)

-- -- Examples ------------------------------------------------------------------

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
local PWD = os.getenv("PWD") or "."
if ROOT == "." then ROOT = PWD elseif ROOT:sub(1, 1) ~= "/" then ROOT = PWD .. "/" .. ROOT end
local BIN = os.getenv("LRAY_BIN") or "build/lray"
if BIN:sub(1, 1) ~= "/" then BIN = ROOT .. "/" .. BIN end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs examples/<name>.lua in its own lray process; returns output, status.
local function run_example(name)
  local f = assert(io.popen(("cd %s && timeout 60 %s %s 2>&1; echo \"EXIT:$?\""):format(
    q(ROOT), q(BIN), q("examples/" .. name .. ".lua"))))
  local out = f:read("*a")
  f:close()
  local code = tonumber(out:match("EXIT:(%d+)%s*$"))
  out = out:gsub("EXIT:%d+%s*$", "")
  assert(code == 0, ("%s exited with status %s; its output:\n%s"):format(name, tostring(code), out))
  return out
end

local function has_line(out, line)
  for l in out:gmatch("[^\n]+") do if l == line then return end end
  error(("expected the line\n  %s\nin the output:\n%s"):format(line, out), 2)
end

describe("examples", function()
  it("queue_pipeline: every produced item is consumed once; the totals match", function()
    local out = run_example("queue_pipeline")
    has_line(out, "produced: 120, consumed: 120")
    has_line(out, "sum of squares: 569906420, expected: 569906420")
    has_line(out, "queue empty at the end: true")
    local per = 0
    for n in out:gmatch("consumer %d processed (%d+) items") do per = per + tonumber(n) end
    assert.are.equal(120, per)
  end)

  it("pool_map: Pool.map and the task loop give the same 10,000 results", function()
    local out = run_example("pool_map")
    assert.matches("items: 10000, actors: %d+", out)
    has_line(out, "checksum pool: 100020000, loop: 100020000, expected: 100020000")
    has_line(out, "pool results equal the loop's: true")
    assert.matches("Pool.map:%s+[%d.]+ s%s+%d+ items/s", out)
    assert.matches("f.remote loop:%s+[%d.]+ s%s+%d+ items/s", out)
    assert.matches("Pool.map / loop throughput: [%d.]+x", out)
  end)
end)
