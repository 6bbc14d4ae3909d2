-- API.md "Remote functions (tasks)" and "Values that can cross processes":
-- calling, options, capture of upvalues and globals, ObjectRef arguments,
-- parallelism, nested tasks, errors, values that cannot be sent, and worker
-- output reaching the driver.
local cluster = require("spec.helpers.cluster")
local msg, fails = cluster.msg, cluster.fails

local BIN = os.getenv("LRAY_BIN") or "build/lray"

local lray

setup(function()
  lray = cluster.start()
end)

teardown(function()
  cluster.stop()
end)



local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

describe("Remote functions (tasks)", function()
  it("f.remote(...) and f:remote(...) are the same call", function()
    local add = lray.remote(function(a, b) return a + b end)
    local r1 = add.remote(1, 2)
    local r2 = add:remote(1, 2)
    assert.are.equal(3, lray.get(r1))
    assert.are.equal(3, lray.get(r2))
    -- the self-form must not shift arguments: a nil first argument survives
    local count = lray.remote(function(...) return select("#", ...), (...) end)
    local n, first = lray.get(count:remote(nil, 5))
    assert.are.equal(2, n)
    assert.is_nil(first)
  end)

  it("calling a remote function directly raises, saying to use .remote", function()
    local sq = lray.remote(function(x) return x * x end)
    local e = select(2, pcall(sq, 3))
    assert.matches("remote function 'sq' cannot be called directly; use sq.remote(...)", msg(e), 1, true)
  end)

  it("a remote function with no name is 'the remote function at file:line', said once", function()
    local fh = io.stdout
    local fns = { lray.remote(function() return fh end) }
    local e = msg(select(2, pcall(fns[1], 1)))
    assert.matches("the remote function at [^ ]*tasks_spec.lua:%d+ cannot be called directly;"
      .. " use %.remote%(%.%.%.%) on it", e)
    assert.is_nil(e:find("function function", 1, true))
    e = msg(select(2, pcall(fns[1].remote)))
    assert.matches("upvalue 'fh' of function at [^ ]*tasks_spec.lua:%d+ of the remote function at", e)
    assert.is_nil(e:find("function function", 1, true))
    e = msg(select(2, pcall(fns[1].options, { num_cpus = "1" })))
    assert.matches([[got string "1" %(the remote function at [^ ]*tasks_spec.lua:%d+%)]], e)
  end)

  it("lray.get returns all the values a task returns", function()
    local three = lray.remote(function() return 1, "two", nil, { 4 } end)
    local a, b, c, d = lray.get(three.remote())
    assert.are.equal(1, a)
    assert.are.equal("two", b)
    assert.is_nil(c)
    assert.are.same({ 4 }, d)
    assert.are.equal(4, select("#", lray.get(three.remote())))
    local none = lray.remote(function() end)
    assert.are.equal(0, select("#", lray.get(none.remote())))
  end)

  it("num_returns = 2 gives two ObjectRefs, one per value", function()
    local two = lray.remote({ num_returns = 2 }, function(x) return x, x * 10 end)
    local r = { two.remote(4) }
    assert.are.equal(2, #r)
    assert.matches("^ObjectRef%(%x+%)$", tostring(r[1]))
    assert.matches("^ObjectRef%(%x+%)$", tostring(r[2]))
    assert.are_not.equal(r[1]:hex(), r[2]:hex())
    assert.are.equal(4, lray.get(r[1]))
    assert.are.equal(40, lray.get(r[2]))
    assert.are.same({ 4, 40 }, lray.get(r))
  end)

  it("options() returns a new remote function and leaves the old one unchanged", function()
    local f = lray.remote(function(x) return x, x + 1 end)
    local g = f.options({ num_returns = 2 })
    assert.are_not.equal(f, g)
    assert.are.equal(2, select("#", g.remote(1)))
    assert.are.equal(1, select("#", f.remote(1)))
    local a, b = g.remote(7)
    assert.are.equal(7, lray.get(a))
    assert.are.equal(8, lray.get(b))
    local x, y = lray.get(f.remote(7))
    assert.are.equal(7, x)
    assert.are.equal(8, y)
    -- options:(...) form too
    local h = f:options({ num_returns = 2 })
    assert.are.equal(2, select("#", h:remote(1)))
  end)

  it("an unknown option raises at lray.remote and at options(), naming it", function()
    local fn = function() end
    assert.matches("num_cpu", msg(fails(lray.remote, { num_cpu = 1 }, fn)), 1, true)
    local f = lray.remote(fn)
    assert.matches("bogus_opt", msg(fails(f.options, { bogus_opt = true })), 1, true)
  end)

  it("a mistyped option raises at lray.remote and at options(), naming it", function()
    local fn = function() end
    assert.matches("max_retries", msg(fails(lray.remote, { max_retries = "3" }, fn)), 1, true)
    local f = lray.remote(fn)
    assert.matches("num_returns", msg(fails(f.options, { num_returns = "2" })), 1, true)
    assert.matches("retry_exceptions", msg(fails(f.options, { retry_exceptions = 1 })), 1, true)
  end)

  it("a string where a number belongs says it got a string", function()
    local fn = function() end
    assert.matches([[option 'num_gpus' must be a non-negative number, got string "1" (lray.remote)]],
      msg(fails(lray.remote, { num_gpus = "1" }, fn)), 1, true)
    assert.matches([[option 'max_retries' must be a whole number >= -1 (-1: forever), got string "3"]],
      msg(fails(lray.remote, { max_retries = "3" }, fn)), 1, true)
    assert.matches("option 'retry_exceptions' must be true or false, got 1",
      msg(fails(lray.remote, { retry_exceptions = 1 }, fn)), 1, true)
    assert.matches("option 'resources' must be a table such as {Custom = 1}, got string",
      msg(fails(lray.remote, { resources = "x" }, fn)), 1, true)
    assert.matches([[option 'num_cpus' must be a non-negative number, got table]],
      msg(fails(lray.remote({}).options, { num_cpus = {} })), 1, true)
  end)

  it("negative num_cpus and num_gpus = 1.5 raise, naming the option", function()
    local fn = function() end
    assert.matches("num_cpus", msg(fails(lray.remote, { num_cpus = -1 }, fn)), 1, true)
    assert.matches("num_gpus", msg(fails(lray.remote, { num_gpus = 1.5 }, fn)), 1, true)
    local f = lray.remote(fn)
    assert.matches("num_cpus", msg(fails(f.options, { num_cpus = -0.5 })), 1, true)
    assert.matches("num_gpus", msg(fails(f.options, { num_gpus = 1.5 })), 1, true)
    -- fractional GPUs up to 1 are fine at definition time
    assert.has_no.errors(function() f.options({ num_gpus = 0.5 }) end)
  end)

  it("upvalues are captured by value at the first .remote; later changes are not seen", function()
    local n = 1
    local t = { v = "a" }
    local f = lray.remote(function() return n, t.v end)
    local a1, b1 = lray.get(f.remote())
    n = 2
    t.v = "b"
    local a2, b2 = lray.get(f.remote())
    assert.are.equal(1, a1)
    assert.are.equal("a", b1)
    assert.are.equal(1, a2)
    assert.are.equal("a", b2)
    -- a different remote function made later sees the new values
    local g = lray.remote(function() return n, t.v end)
    local a3, b3 = lray.get(g.remote())
    assert.are.equal(2, a3)
    assert.are.equal("b", b3)
  end)

  it("user globals the function references are captured", function()
    rawset(_G, "LRAY_SPEC_GLOBAL_N", 41)
    rawset(_G, "lray_spec_global_fn", function(x) return x + 1 end)
    local f = lray.remote(function()
      return lray_spec_global_fn(LRAY_SPEC_GLOBAL_N) -- luacheck: ignore
    end)
    local ok, v = pcall(lray.get, f.remote())
    rawset(_G, "LRAY_SPEC_GLOBAL_N", nil)
    rawset(_G, "lray_spec_global_fn", nil)
    assert.is_true(ok, tostring(v))
    assert.are.equal(42, v)
  end)

  it("the standard library works inside tasks", function()
    local f = lray.remote(function(s)
      local parts = {}
      for w in s:gmatch("%a+") do parts[#parts + 1] = string.upper(w) end
      table.sort(parts)
      return table.concat(parts, ","), math.floor(2.7), type(os.time()),
        select("#", 1, 2), bit.band(6, 3), type(io.write), tostring(coroutine.wrap ~= nil)
    end)
    local s, fl, tt, n, b, iw, cw = lray.get(f.remote("beta alpha"))
    assert.are.equal("ALPHA,BETA", s)
    assert.are.equal(2, fl)
    assert.are.equal("number", tt)
    assert.are.equal(2, n)
    assert.are.equal(2, b)
    assert.are.equal("function", iw)
    assert.are.equal("true", cw)
  end)

  it("standard functions and modules captured as upvalues are sent by name", function()
    local fmt, upper, mathlib = string.format, string.upper, math
    local f = lray.remote(function(x)
      return fmt("%03d", x), upper("q"), mathlib.max(x, 9), mathlib == math
    end)
    local a, b, c, same = lray.get(f.remote(7))
    assert.are.equal("007", a)
    assert.are.equal("Q", b)
    assert.are.equal(9, c)
    assert.is_true(same)
  end)

  it("required modules work in tasks: captured as upvalues and required inside", function()
    local dkjson = require("dkjson")
    local cjson = require("cjson")
    local f = lray.remote(function(t)
      local stringx = require("pl.stringx")
      return dkjson.encode(t), cjson.encode({ 1, 2 }), stringx.strip("  x  ")
    end)
    local a, b, c = lray.get(f.remote({ k = "v" }))
    assert.are.equal('{"k":"v"}', a)
    assert.are.equal("[1,2]", b)
    assert.are.equal("x", c)
  end)

  it("cjson.null (a module's light userdata) is sent by name, in and out of tasks and put", function()
    local cjson = require("cjson")
    local f = lray.remote(function(x, t)
      return x == cjson.null, t.v == cjson.null, cjson.encode({ x }), cjson.null
    end)
    local a, b, c, back = lray.get(f.remote(cjson.null, { v = cjson.null }))
    assert.is_true(a)
    assert.is_true(b)
    assert.are.equal("[null]", c)
    assert.are.equal(cjson.null, back)
    assert.are.equal(cjson.null, lray.get(lray.put({ cjson.null }))[1])
    -- Also when the task requires the module itself.
    local g = lray.remote(function() return require("cjson.safe").null end)
    assert.are.equal(cjson.null, lray.get(g.remote()))
    -- A userdata with behaviour (a file handle) still cannot be sent.
    local e = fails(lray.put, { io.stdout })
    assert.matches("cannot send userdata", msg(e))
  end)

  it("top-level ObjectRef arguments are resolved to their values", function()
    local r = lray.put({ x = 5 })
    local sq = lray.remote(function(x) return x * x end)
    local f = lray.remote(function(a, b, c) return type(a), a.x + b + c end)
    local t, sum = lray.get(f.remote(r, sq.remote(3), 1))
    assert.are.equal("table", t)
    assert.are.equal(15, sum)
  end)

  it("ObjectRefs nested in tables stay ObjectRefs; the task can lray.get them", function()
    local r = lray.put("inner value")
    local f = lray.remote(function(t)
      local ref = t.refs[1]
      local s = tostring(ref)
      return type(ref), s, ref:hex(), lray.get(ref)
    end)
    local ty, s, hex, v = lray.get(f.remote({ refs = { r } }))
    assert.are.equal("userdata", ty)
    assert.are.equal(tostring(r), s)
    assert.are.equal(r:hex(), hex)
    assert.are.equal("inner value", v)
  end)

  it("a task does not start before the object of its ObjectRef argument exists", function()
    local slow = lray.remote(function()
      lray.sleep(0.3)
      return lray.now()
    end)
    local after = lray.remote(function(done_at)
      return done_at, lray.now()
    end)
    local t0 = lray.now()
    local done_at, started = lray.get(after.remote(slow.remote()))
    assert.is_number(done_at)
    assert.is_true(started >= done_at, "dependent task started before its argument existed")
    assert.is_true(lray.now() - t0 >= 0.3)
  end)

  it("bursts and single tasks back to back never strand a task", function()
    -- A burst asks for several workers; once it is done the requests still
    -- open are withdrawn, and a task submitted meanwhile must get a worker.
    local f = lray.remote(function(x) return x end)
    for round = 1, 60 do
      local burst = {}
      for i = 1, 1 + round % 4 do burst[i] = f.remote(i) end
      assert.are.equal(#burst, #lray.get(burst, { timeout = 10 }))
      assert.are.equal(round, lray.get(f.remote(round), { timeout = 10 }))
    end
  end)

  it("tasks run in parallel up to the cluster's CPUs", function()
    local nap = lray.remote(function(s)
      lray.sleep(s)
      return require("lray._core").getpid()
    end)
    lray.get({ nap.remote(0), nap.remote(0) })  -- warm up: definition sent, workers up
    local t0 = lray.now()
    local pids = lray.get({ nap.remote(0.3), nap.remote(0.3) })
    local dt = lray.now() - t0
    assert.is_true(dt >= 0.3, ("took %.3f s: shorter than the sleep"):format(dt))
    assert.is_true(dt < 0.55, ("2 tasks of 0.3 s on 2 CPUs took %.3f s"):format(dt))
    assert.are_not.equal(pids[1], pids[2])
  end)

  it("tasks run in worker processes, not in the driver", function()
    local pid = lray.remote(function() return require("lray._core").getpid() end)
    local drv = require("lray._core").getpid()
    assert.are_not.equal(drv, lray.get(pid.remote()))
  end)

  it("nested tasks that block in lray.get do not deadlock a full node", function()
    local inner = lray.remote(function(x) return x + 1 end)
    local mid = lray.remote(function(x) return lray.get(inner.remote(x)) * 2 end)
    -- outer takes every CPU of the node; its children need one each
    local outer = lray.remote({ num_cpus = 2 }, function(x)
      local a = lray.get(mid.remote(x))
      local b = lray.get(inner.remote(x))
      return a + b
    end)
    local v = lray.get(outer.remote(1), { timeout = 15 })
    assert.are.equal((1 + 1) * 2 + 2, v)
    -- two of them at once, with a three-deep chain each
    local vs = lray.get({ mid.remote(10), mid.remote(20) }, { timeout = 15 })
    assert.are.same({ 22, 42 }, vs)
  end)

  it("a task raising an error gives TaskError with message, traceback and cause", function()
    local boom = lray.remote(function(x)
      if x > 0 then error("boom: bad input " .. x) end
    end)
    local e = fails(lray.get, boom.remote(3))
    assert.is_table(e)
    assert.are.equal("TaskError", e.type)
    assert.matches("boom: bad input 3", e.message, 1, true)
    assert.is_string(e.traceback)
    assert.is_true(#e.traceback > 0)
    assert.is_not_nil(e.cause)
    assert.matches("boom: bad input 3", tostring(e.cause), 1, true)
    assert.matches("boom: bad input 3", tostring(e), 1, true)
    assert.is_true(lray.is_error(e))
    assert.is_true(lray.is_error(e, "TaskError"))
    assert.is_false(lray.is_error(e, "ActorDiedError"))
    assert.is_false(lray.is_error("TaskError", "TaskError"))
  end)

  it("a table raised by a task comes back as the cause", function()
    local f = lray.remote(function() error({ code = 7, why = "table error" }) end)
    local e = fails(lray.get, f.remote())
    assert.is_true(lray.is_error(e, "TaskError"))
    assert.are.same({ code = 7, why = "table error" }, e.cause)
  end)

  it("a failed task's error propagates through a task that depends on it", function()
    local bad = lray.remote(function() error("upstream failure") end)
    local use = lray.remote(function(x) return x end)
    local e = fails(lray.get, use.remote(bad.remote()))
    assert.is_true(lray.is_error(e))
    assert.matches("upstream failure", tostring(e), 1, true)
  end)
end)

describe("Values that can cross processes", function()
  it("a coroutine or file handle as an argument raises, naming its path", function()
    local id = lray.remote(function(x) return x end)
    local co = coroutine.create(function() end)
    local e = msg(fails(id.remote, co))
    assert.matches("thread", e, 1, true)
    assert.matches("argument", e, 1, true)
    e = msg(fails(id.remote, { a = { b = io.stdout } }))
    assert.matches("userdata", e, 1, true)
    assert.matches("'b'", e, 1, true)
    assert.matches("'a'", e, 1, true)
  end)

  it("a coroutine or file handle as an upvalue raises, naming the upvalue", function()
    local fh = io.stdout
    local f = lray.remote(function() return fh end)
    local e = msg(fails(f.remote))
    assert.matches("userdata", e, 1, true)
    assert.matches("upvalue 'fh'", e, 1, true)
    local co = coroutine.create(function() end)
    local g = lray.remote(function() return co end)
    e = msg(fails(g.remote))
    assert.matches("thread", e, 1, true)
    assert.matches("upvalue 'co'", e, 1, true)
  end)

  it("a failed send leaves the remote function usable with good values", function()
    local id = lray.remote(function(x) return x end)
    fails(id.remote, coroutine.create(function() end))
    assert.are.equal("fine", lray.get(id.remote("fine")))
  end)

  it("a task requiring a module that does not exist fails naming the module", function()
    local f = lray.remote(function() return require("lray_spec_no_such_module") end)
    local e = fails(lray.get, f.remote())
    assert.is_true(lray.is_error(e, "TaskError"))
    assert.matches("lray_spec_no_such_module", msg(e), 1, true)
  end)

  it("a captured module the worker cannot require fails naming the module", function()
    package.loaded["lray_spec_driver_only"] = { answer = function() return 42 end }
    local mod = package.loaded["lray_spec_driver_only"]
    local f = lray.remote(function() return mod.answer() end)
    local ok, e = pcall(function() return lray.get(f.remote(), { timeout = 10 }) end)
    package.loaded["lray_spec_driver_only"] = nil
    assert.is_false(ok)
    assert.matches("lray_spec_driver_only", msg(e), 1, true)
  end)
end)

describe("Worker output (log_to_driver)", function()
  it("what a task prints reaches the driver's stdout prefixed (name pid=N)", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    local script = dir .. "/printer.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
local lray = require("lray")
lray.init({ num_cpus = 1, num_gpus = 0 })
local hello = lray.remote(function(x)
  print("hi from task", x)
  print("second line")
  return require("lray._core").getpid()
end)
local pid = lray.get(hello.remote(7))
io.stdout:write("worker pid ", pid, "\n")
lray.shutdown()
]])
    f:close()
    local p = assert(io.popen(q(BIN) .. " " .. q(script) .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    os.execute("rm -rf " .. q(dir))
    local pid = out:match("worker pid (%d+)")
    assert.is_not_nil(pid, out)
    assert.matches("%(hello pid=" .. pid .. "%) hi from task\t7\n", out)
    assert.matches("%(hello pid=" .. pid .. "%) second line\n", out)
  end)
end)
