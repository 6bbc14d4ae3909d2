-- Actors that serve many calls at once: max_concurrency and concurrency
-- groups (methods run as coroutines on the actor's worker).
local cluster = require("spec.helpers.cluster")

describe("concurrent actors", function()
  local lray

  setup(function() lray = cluster.start({ num_cpus = 2 }) end)
  teardown(function() cluster.stop() end)

  local Sleeper = {}
  function Sleeper:nap(s, i) lray.sleep(s); return i end
  function Sleeper:ping() return "pong" end

  it("n sleeps in an actor with max_concurrency = n take about one sleep", function()
    local a = lray.remote(Sleeper).options({ max_concurrency = 4 }).remote()
    lray.get(a.ping.remote())
    local t0 = lray.now()
    local refs = {}
    for i = 1, 4 do refs[i] = a.nap.remote(0.3, i) end
    assert.are.same({ 1, 2, 3, 4 }, lray.get(refs))
    local dt = lray.now() - t0
    assert.is_true(dt < 0.9, ("four 0.3 s sleeps took %.2f s"):format(dt))
  end)

  it("with the default max_concurrency = 1 calls run one at a time", function()
    local a = lray.remote(Sleeper).remote()
    lray.get(a.ping.remote())
    local t0 = lray.now()
    local refs = {}
    for i = 1, 3 do refs[i] = a.nap.remote(0.15, i) end
    lray.get(refs)
    assert.is_true(lray.now() - t0 >= 0.44, "calls overlapped without max_concurrency")
  end)

  it("a method blocked in lray.get does not block the actor's other methods", function()
    local slow = lray.remote(function() lray.sleep(0.6); return "slow" end)
    local W = {}
    function W:wait_for(r) return lray.get(r[1]) end
    function W:ping() return "pong" end
    local a = lray.remote(W).options({ max_concurrency = 2 }).remote()
    local waiting = a.wait_for.remote({ slow.remote() })
    local t0 = lray.now()
    assert.are.equal("pong", lray.get(a.ping.remote()))
    assert.is_true(lray.now() - t0 < 0.4, "ping waited for the blocked method")
    assert.are.equal("slow", lray.get(waiting))
  end)

  it("a method waiting on a Queue does not block the other methods", function()
    local Queue = lray.util.Queue
    local q = Queue.new(0)
    local C = {}
    function C:take(queue) return queue:get({ timeout = 5 }) end
    function C:ping() return "pong" end
    local a = lray.remote(C).options({ max_concurrency = 4 }).remote()
    local taken = a.take.remote(q)
    lray.sleep(0.1)
    assert.are.equal("pong", lray.get(a.ping.remote(), { timeout = 2 }))
    q:put("item")
    assert.are.equal("item", lray.get(taken, { timeout = 5 }))
  end)

  it("calls from one caller start in submission order", function()
    local L = {}
    function L:init() self.log = {} end
    function L:add(i) self.log[#self.log + 1] = i; lray.sleep(0.001); return i end
    function L:get_log() return self.log end
    local a = lray.remote(L).options({ max_concurrency = 8 }).remote()
    local refs = {}
    for i = 1, 60 do refs[i] = a.add.remote(i) end
    lray.get(refs)
    local log = lray.get(a.get_log.remote())
    local want = {}
    for i = 1, 60 do want[i] = i end
    assert.are.same(want, log)
  end)

  it("concurrency groups limit each group on its own", function()
    local G = { __concurrency = { nap = "io" } }
    function G:nap(s) lray.sleep(s); return true end
    function G:quick() return "quick" end
    local a = lray.remote(G).options({ concurrency_groups = { io = 2 } }).remote()
    lray.get(a.quick.remote())
    local t0 = lray.now()
    local refs = {}
    for i = 1, 4 do refs[i] = a.nap.remote(0.25) end
    assert.are.equal("quick", lray.get(a.quick.remote()))
    assert.is_true(lray.now() - t0 < 0.2, "the default group waited for the io group")
    lray.get(refs)
    local dt = lray.now() - t0
    assert.is_true(dt >= 0.48 and dt < 1.2, ("four naps in a group of 2 took %.2f s"):format(dt))
  end)

  it("rejects bad concurrency options before anything runs", function()
    local R = lray.remote(Sleeper)
    local ok, e = pcall(R.options, { max_concurrency = 0 })
    assert.is_false(ok)
    assert.matches("max_concurrency", tostring(e), 1, true)
    ok, e = pcall(R.options, { concurrency_groups = { io = 0 } })
    assert.is_false(ok)
    assert.matches("concurrency_groups.io", tostring(e), 1, true)
    ok, e = pcall(R.options, { concurrency_groups = "io" })
    assert.is_false(ok)
    assert.matches("concurrency_groups", tostring(e), 1, true)
  end)

  it("cancelling an actor call that has not started drops it; a running one finishes", function()
    local A = {}
    function A:slow() lray.sleep(0.4) return "slow" end
    function A:quick() return "quick" end
    local a = lray.remote(A).remote()
    lray.get(a.quick.remote())
    local running = a.slow.remote()
    local queued = a.quick.remote()
    lray.sleep(0.05)
    lray.cancel(queued)
    lray.cancel(running)
    assert.are.equal("slow", lray.get(running))
    local ok, e = pcall(lray.get, queued)
    assert.is_false(ok)
    assert.is_true(lray.is_error(e, "TaskCancelledError"), tostring(e))
    assert.are.equal("quick", lray.get(a.quick.remote()))
    ok, e = pcall(lray.cancel, a.quick.remote(), { force = true })
    assert.is_false(ok)
    assert.matches("lray.kill", tostring(e), 1, true)
  end)
end)
