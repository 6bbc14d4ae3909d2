-- API.md "Objects" and "Values that can cross processes": put/get of every
-- kind of value, get of lists and timeouts, wait, ObjectRef methods, large
-- values, lray.array, cancel, and freeing objects when their refs drop.
local cluster = require("spec.helpers.cluster")
local msg, fails = cluster.msg, cluster.fails

local MB = 1024 * 1024
local lray

setup(function()
  -- The node frees an unreferenced object at once (no batching delay): no
  -- hand-off between processes may rely on time.
  require("lray._core").setenv("LRAY_FREE_GRACE_S", "0")
  -- A small store, so that objects not freed when their refs drop fill it.
  lray = cluster.start({ object_store_memory = 64 * MB })
end)

teardown(function()
  cluster.stop()
  require("lray._core").setenv("LRAY_FREE_GRACE_S", nil)
end)



-- v through the store and back in the driver, and through a task and back.
local function roundtrips(v)
  local a = lray.get(lray.put(v))
  local id = lray.remote(function(x) return x end)
  local b = lray.get(id.remote(v))
  return a, b
end

describe("Objects", function()
  it("put/get keeps nil, booleans and numbers", function()
    for _, v in ipairs({ true, false, 0, -1, 3.25, 2 ^ 53, -2 ^ 53, 1e300, -1e-300,
        math.huge, -math.huge, 123456789012 }) do
      local a, b = roundtrips(v)
      assert.are.equal(v, a)
      assert.are.equal(v, b)
      assert.are.equal(type(v), type(a))
    end
    local a, b = roundtrips(0 / 0)
    assert.is_true(a ~= a, "NaN")
    assert.is_true(b ~= b, "NaN")
    assert.are.equal(1, select("#", lray.get(lray.put(nil))))
    assert.is_nil(lray.get(lray.put(nil)))
    local id = lray.remote(function(x) return type(x), x end)
    local t, x = lray.get(id.remote(nil))
    assert.are.equal("nil", t)
    assert.is_nil(x)
  end)

  it("put/get keeps strings with any bytes, including zero bytes", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    for _, s in ipairs({ "", "a\0b", "\0", "\0\0\0end", table.concat(all) }) do
      local a, b = roundtrips(s)
      assert.are.equal(#s, #a)
      assert.are.equal(s, a)
      assert.are.equal(s, b)
    end
  end)

  it("put/get keeps nested tables, cycles and shared subtables", function()
    local shared = { "shared" }
    local t = { 1, 2, { 3, { 4 } }, name = "t", [true] = "bool key", [2.5] = "float key",
      s1 = shared, s2 = shared, deep = { s3 = shared } }
    t.self = t
    t.deep.up = t
    for _, v in ipairs({ roundtrips(t) }) do
      assert.are.equal(1, v[1])
      assert.are.equal(4, v[3][2][1])
      assert.are.equal("t", v.name)
      assert.are.equal("bool key", v[true])
      assert.are.equal("float key", v[2.5])
      assert.are.equal(v, v.self)
      assert.are.equal(v, v.deep.up)
      assert.are.equal(v.s1, v.s2)
      assert.are.equal(v.s1, v.deep.s3)
      assert.are.equal("shared", v.s1[1])
      assert.are_not.equal(t, v)
    end
  end)

  it("put/get keeps metatables", function()
    local Point = {}
    Point.__index = Point
    Point.__add = function(p, q) return setmetatable({ x = p.x + q.x }, Point) end
    function Point.norm(p) return math.abs(p.x) end
    local p = setmetatable({ x = -3 }, Point)
    local items = { p, setmetatable({ x = 1 }, Point) }
    for _, v in ipairs({ roundtrips(items) }) do
      assert.are.equal(3, v[1]:norm())
      assert.are.equal(-2, (v[1] + v[2]).x)
      assert.are.equal(getmetatable(v[1]), getmetatable(v[2]))
    end
  end)

  it("put/get keeps functions with their upvalues", function()
    local base = 10
    local counter = 0
    local function add(x) counter = counter + 1; return x + base, counter end
    for _, f in ipairs({ roundtrips(add) }) do
      assert.is_function(f)
      local v, c = f(5)
      assert.are.equal(15, v)
      assert.are.equal(1, c)
      assert.are.equal(2, select(2, f(0)))
    end
    -- two functions sharing an upvalue keep sharing it
    local n = 0
    local fs = { inc = function() n = n + 1 end, get = function() return n end }
    local g = lray.get(lray.put(fs))
    g.inc(); g.inc()
    assert.are.equal(2, g.get())
    assert.are.equal(0, n)
  end)

  it("get of a list returns the first value of each", function()
    local two = lray.remote(function(x) return x, "second" end)
    local refs = { lray.put("a"), two.remote("b"), lray.put(3) }
    local vs = lray.get(refs)
    assert.are.same({ "a", "b", 3 }, vs)
    assert.are.same({}, lray.get({}))
  end)

  it("get of a list raises when one of them failed", function()
    local bad = lray.remote(function() error("list member failed") end)
    local e = fails(lray.get, { lray.put(1), bad.remote(), lray.put(2) })
    assert.is_true(lray.is_error(e, "TaskError"))
    assert.matches("list member failed", msg(e), 1, true)
  end)

  it("get of a list raises as soon as one failed, not after the others finish", function()
    local slow = lray.remote(function() lray.sleep(3); return 1 end)
    local bad = lray.remote(function() error("fast failure") end)
    local s = slow.remote()
    local t0 = lray.now()
    local e = fails(lray.get, { s, bad.remote() })
    local dt = lray.now() - t0
    lray.cancel(s)
    assert.is_true(lray.is_error(e, "TaskError"))
    assert.is_true(dt < 1.5, ("raised after %.2f s"):format(dt))
  end)

  it("get with a timeout raises GetTimeoutError quickly", function()
    local slow = lray.remote(function() lray.sleep(2); return 1 end)
    local r = slow.remote()
    local t0 = lray.now()
    local e = fails(lray.get, r, { timeout = 0.2 })
    local dt = lray.now() - t0
    assert.is_true(lray.is_error(e, "GetTimeoutError"), tostring(e))
    assert.is_true(dt >= 0.19 and dt < 1.0, ("timed out after %.3f s"):format(dt))
    e = fails(lray.get, { lray.put(1), r }, { timeout = 0.05 })
    assert.is_true(lray.is_error(e, "GetTimeoutError"), tostring(e))
    -- timeout = 0 polls
    e = fails(lray.get, r, { timeout = 0 })
    assert.is_true(lray.is_error(e, "GetTimeoutError"), tostring(e))
    assert.are.equal(5, lray.get(lray.put(5), { timeout = 0 }))
    lray.cancel(r)
  end)

  it("get with a timeout raises on time even right after the caller was busy", function()
    local slow = lray.remote(function() lray.sleep(2); return 1 end)
    local r = slow.remote()
    local t = lray.now()
    while lray.now() - t < 0.2 do end   -- work that does not run the event loop
    local t0 = lray.now()
    local e = fails(lray.get, r, { timeout = 0.1 })
    local dt = lray.now() - t0
    lray.cancel(r)
    assert.is_true(lray.is_error(e, "GetTimeoutError"), tostring(e))
    assert.is_true(dt >= 0.099 and dt < 0.8, ("timed out after %.3f s"):format(dt))
  end)

  it("get of something that is not an ObjectRef raises", function()
    fails(lray.get, 42)
    fails(lray.get, "ObjectRef(00)")
    fails(lray.get, { lray.put(1), "not a ref" })
    fails(lray.get, nil)
  end)

  it("wait returns num_returns ready refs and the rest", function()
    local slow = lray.remote(function() lray.sleep(1); return "slow" end)
    local s = slow.remote()
    local a, b = lray.put("a"), lray.put("b")
    local ready, not_ready = lray.wait({ s, a, b })
    assert.are.equal(1, #ready)
    assert.are.equal(2, #not_ready)
    assert.are.equal(a, ready[1])
    ready, not_ready = lray.wait({ s, a, b }, { num_returns = 2 })
    assert.are.same({ a:hex(), b:hex() }, { ready[1]:hex(), ready[2]:hex() })
    assert.are.equal(1, #not_ready)
    assert.are.equal(s:hex(), not_ready[1]:hex())
    -- a timeout returns what is ready by then
    local t0 = lray.now()
    ready, not_ready = lray.wait({ s, a }, { num_returns = 2, timeout = 0.1 })
    assert.is_true(lray.now() - t0 < 0.8)
    assert.are.equal(1, #ready)
    assert.are.equal(a:hex(), ready[1]:hex())
    assert.are.equal(s:hex(), not_ready[1]:hex())
    -- without a timeout it waits for all it was asked for, keeping input order
    ready, not_ready = lray.wait({ b, s, a }, { num_returns = 3 })
    assert.are.same({ b:hex(), s:hex(), a:hex() },
      { ready[1]:hex(), ready[2]:hex(), ready[3]:hex() })
    assert.are.same({}, not_ready)
  end)

  it("wait keeps the input order among ready refs", function()
    local refs = {}
    for i = 1, 6 do refs[i] = lray.put(i) end
    local ready = lray.wait(refs, { num_returns = 6 })
    for i = 1, 6 do assert.are.equal(refs[i]:hex(), ready[i]:hex()) end
  end)

  it("wait({}) returns {}, {}", function()
    local ready, not_ready = lray.wait({})
    assert.are.same({}, ready)
    assert.are.same({}, not_ready)
  end)

  it("wait with num_returns larger than the number of refs raises", function()
    local e = fails(lray.wait, { lray.put(1) }, { num_returns = 2 })
    assert.matches("num_returns", msg(e), 1, true)
  end)

  it("tostring(ref) is ObjectRef(<hex>) and ref:hex() is the hex", function()
    local r = lray.put(1)
    assert.matches("^ObjectRef%(%x+%)$", tostring(r))
    assert.matches("^%x+$", r:hex())
    assert.are.equal("ObjectRef(" .. r:hex() .. ")", tostring(r))
    assert.are_not.equal(r:hex(), lray.put(1):hex())
  end)

  it("ref:release() drops one reference; other references keep the object", function()
    local r = lray.put("kept by the holder")
    local holder = lray.put({ r })
    r:release()
    assert.has_no.errors(function() r:release() end)   -- twice is harmless
    local inner = lray.get(holder)[1]
    assert.are.equal("kept by the holder", lray.get(inner))
    -- a copy of the ref made before the release still works
    local r2 = lray.put("two refs")
    local copy = lray.get(lray.put({ r2 }))[1]
    r2:release()
    assert.are.equal("two refs", lray.get(copy))
  end)

  it("a 5 MB string round-trips through put/get and through a task", function()
    local parts = {}
    for i = 1, 5 * 1024 do parts[i] = string.format("%04d", i % 10000) .. string.rep("\0x", 510) end
    local big = table.concat(parts)
    assert.is_true(#big >= 5 * MB)
    local a, b = roundtrips(big)
    assert.are.equal(#big, #a)
    assert.is_true(a == big)
    assert.is_true(b == big)
    local len = lray.remote(function(s) return #s, s:sub(-5) end)
    local n, tail = lray.get(len.remote(lray.put(big)))
    assert.are.equal(#big, n)
    assert.are.equal(big:sub(-5), tail)
  end)

  it("lray.array indexes from 0 and # is its length", function()
    local a = lray.array("double", 5)
    assert.are.equal(5, #a)
    for i = 0, 4 do assert.are.equal(0, a[i]) end
    for i = 0, 4 do a[i] = i * 1.5 end
    assert.are.equal(6, a[4])
    fails(function() return a[5] end)
    fails(function() a[-1] = 1 end)
    local b = lray.array("int32_t", { 7, 8, 9 })
    assert.are.equal(3, #b)
    assert.are.equal(7, b[0])
    assert.are.equal(9, b[2])
    fails(lray.array, "no_such_type", 3)
  end)

  it("small lray.arrays round-trip with their type", function()
    local a = lray.array("int64_t", { 1, -2, 3 })
    local b = lray.array("uint8_t", { 0, 255, 7 })
    local x, y = roundtrips(a)
    for _, v in ipairs({ x, y }) do
      assert.are.equal(3, #v)
      assert.is_true(v[1] == -2)
    end
    local u = lray.get(lray.put(b))
    assert.are.equal(255, u[1])
  end)

  it("a big lray.array (1e6 doubles) put/get gives the same values, twice", function()
    local n = 1000000
    local a = lray.array("double", n)
    for i = 0, n - 1 do a[i] = i * 0.5 end
    local r = lray.put(a)
    local b1 = lray.get(r)
    local b2 = lray.get(r)
    assert.are.equal(n, #b1)
    assert.are.equal(n, #b2)
    for i = 0, n - 1, 997 do
      assert.are.equal(i * 0.5, b1[i])
      assert.are.equal(i * 0.5, b2[i])
    end
    assert.are.equal((n - 1) * 0.5, b1[n - 1])
    -- a task reads it too
    local sum = lray.remote(function(arr)
      local s = 0
      for i = 0, #arr - 1 do s = s + arr[i] end
      return s, #arr
    end)
    local s, len = lray.get(sum.remote(r))
    assert.are.equal(n, len)
    assert.are.equal(0.5 * (n - 1) * n / 2, s)
    -- and a task can return one
    local make = lray.remote(function(m)
      local x = lray.array("double", m)
      for i = 0, m - 1 do x[i] = -i end
      return x
    end)
    local c = lray.get(make.remote(n))
    assert.are.equal(n, #c)
    assert.are.equal(-(n - 1), c[n - 1])
  end)

  it("a read-only view copies to a writable array with a:copy()", function()
    local n = 20000   -- 160 KB: stored as raw bytes, read back as a view
    local a = lray.array("double", n)
    for i = 0, n - 1 do a[i] = i + 0.25 end
    local v = lray.get(lray.put(a))
    local e = fails(function() v[0] = 1 end)
    assert.matches("copy it first: local c = a:copy%(%)", msg(e))
    local c = v:copy()
    assert.are.equal(n, #c)
    assert.are.equal("double", c:ctype())
    c[0] = -1
    assert.are.equal(-1, c[0])
    assert.are.equal(0.25, v[0])
    assert.are.equal(n - 0.75, c[n - 1])
    local small = lray.array("int32_t", { 4, 5 }):copy()
    assert.are.same({ 4, 5 }, small:totable())
    assert.are.equal(0, #lray.array("uint8_t", 0):copy())
  end)

  it("lray.put of an ObjectRef raises", function()
    local r = lray.put(1)
    local e = fails(lray.put, r)
    assert.matches("ObjectRef", msg(e), 1, true)
  end)
end)

describe("Cancel", function()
  local spin = nil

  before_each(function()
    spin = lray.remote(function() while true do lray.sleep(0.01) end end)
  end)

  it("cancelling a queued task gives TaskCancelledError", function()
    -- both CPUs busy, so the third task waits in the queue
    local b1, b2 = spin.remote(), spin.remote()
    lray.sleep(0.2)
    local queued = lray.remote(function() return "ran" end).remote()
    lray.cancel(queued)
    local e = fails(lray.get, queued, { timeout = 5 })
    assert.is_true(lray.is_error(e, "TaskCancelledError"), tostring(e))
    lray.cancel(b1)
    lray.cancel(b2)
    e = fails(lray.get, b1, { timeout = 5 })
    assert.is_true(lray.is_error(e, "TaskCancelledError"), tostring(e))
    e = fails(lray.get, b2, { timeout = 5 })
    assert.is_true(lray.is_error(e, "TaskCancelledError"), tostring(e))
  end)

  it("cancelling a running task that sleeps in a loop gives TaskCancelledError", function()
    local r = spin.remote()
    lray.sleep(0.3)
    lray.cancel(r)
    local e = fails(lray.get, r, { timeout = 5 })
    assert.is_true(lray.is_error(e, "TaskCancelledError"), tostring(e))
    -- the node still runs tasks afterwards
    local ok = lray.remote(function() return "after cancel" end)
    assert.are.equal("after cancel", lray.get(ok.remote(), { timeout = 5 }))
  end)

  it("cancel with force = true stops a task in a tight loop", function()
    local tight = lray.remote(function()
      local x = 0
      while true do x = x + 1 end
    end)
    local r = tight.remote()
    lray.sleep(0.3)
    lray.cancel(r, { force = true })
    local e = fails(lray.get, r, { timeout = 5 })
    assert.is_true(lray.is_error(e, "TaskCancelledError"), tostring(e))
    local ok = lray.remote(function() return "after force" end)
    assert.are.same({ "after force", "after force" },
      lray.get({ ok.remote(), ok.remote() }, { timeout = 5 }))
  end)

  it("a soft cancel that cannot stop a compiled loop says so on stderr, once", function()
    local shell = require("spec.helpers.shell")
    local dir = os.tmpname()
    os.remove(dir)
    local script = dir .. "/soft.lua"
    shell.write(script, [==[
local lray = require("lray")
lray.init({ num_cpus = 2, num_gpus = 0 })
local dir = ...
-- Waits (bounded) until the task has made its file: it is running.
local function running(ref, path)
  local deadline = lray.now() + 10
  repeat
    local f = io.open(path)
    if f then f:close(); return end
    lray.wait({ ref }, { timeout = 0.02 })
  until lray.now() > deadline
  error("the task did not start")
end
local nap = lray.remote(function(path)
  io.open(path, "w"):close()
  while true do lray.sleep(0.01) end
end)
local spin = lray.remote(function(path)
  io.open(path, "w"):close()
  local x = 0
  while true do x = x + 1 end
end)
local r1 = nap.remote(dir .. "/nap")
running(r1, dir .. "/nap")
lray.cancel(r1)
local _, e = pcall(lray.get, r1, { timeout = 5 })
print("NAP " .. e.type)
local r2 = spin.remote(dir .. "/spin")
running(r2, dir .. "/spin")
lray.cancel(r2)
_, e = pcall(lray.get, r2, { timeout = 3 })
print("SPIN " .. e.type)
lray.cancel(r2, { force = true })
_, e = pcall(lray.get, r2, { timeout = 5 })
print("FORCED " .. e.type)
]==])
    local bin = os.getenv("LRAY_BIN") or "build/lray"
    local out, status = shell.run(shell.q(bin) .. " " .. shell.q(script) .. " " .. shell.q(dir))
    os.execute("rm -rf " .. shell.q(dir))
    assert.are.equal(0, status, out)
    assert.matches("NAP TaskCancelledError\n", out, 1, true)
    assert.matches("SPIN GetTimeoutError\n", out, 1, true)
    assert.matches("FORCED TaskCancelledError\n", out, 1, true)
    local _, warnings = out:gsub("lray: warning:", "")
    assert.are.equal(1, warnings, out)
    assert.matches("lray: warning: task 'spin' is still running 2%.%d s after lray.cancel%(ObjectRef%(%x+%)%):"
      .. " a soft cancel stops a task at the next instruction the Lua interpreter runs, and a loop"
      .. " that LuaJIT compiled %(one that calls nothing%) or a long C call never gets there;"
      .. " lray.cancel%(ref, {force = true}%) kills its worker\n", out)
  end)

  it("cancelling a finished task leaves its value", function()
    local r = lray.remote(function() return 9 end).remote()
    assert.are.equal(9, lray.get(r))
    lray.cancel(r)
    assert.are.equal(9, lray.get(r))
  end)
end)

describe("Freeing objects", function()
  -- 24 objects of 8 MB go through a 64 MB store: this works only when each
  -- one is freed after its last reference is gone.
  local SIZE, ROUNDS = 8 * MB, 24

  local function count_objects()
    local f = rawget(lray, "_debug_objects")
    if type(f) ~= "function" then return nil end
    local n = f()
    if type(n) == "table" then
      local c = 0
      for _ in pairs(n) do c = c + 1 end
      n = c
    end
    return n
  end

  it("objects are freed when their refs are collected", function()
    collectgarbage()
    local before = count_objects()
    for i = 1, ROUNDS do
      local r = lray.put(string.rep(string.char(65 + i % 26), SIZE))
      assert.are.equal(SIZE, #lray.get(r))
      r = nil -- luacheck: ignore
      collectgarbage()
    end
    collectgarbage()
    if before then
      local deadline = lray.now() + 2
      local n = count_objects()
      while n > before and lray.now() < deadline do
        lray.sleep(0.05)
        collectgarbage()
        n = count_objects()
      end
      assert.is_true(n <= before, ("%d objects before, %d after"):format(before, n))
    end
  end)

  it("ref:release() frees an object without waiting for the collector", function()
    local keep = {}
    collectgarbage("stop")
    local ok, err = pcall(function()
      for i = 1, ROUNDS do
        local r = lray.put(string.rep("r", SIZE))
        keep[i] = r        -- the Lua object stays reachable; release drops it
        r:release()
      end
    end)
    collectgarbage("restart")
    assert.is_true(ok, tostring(err))
  end)

  it("results of tasks are freed when their refs drop", function()
    local big = lray.remote(function(n) return string.rep("t", n) end)
    for _ = 1, ROUNDS do
      local r = big.remote(SIZE)
      assert.are.equal(SIZE, #lray.get(r))
      r = nil -- luacheck: ignore
      collectgarbage()
    end
  end)

  it("store pressure collects unreachable refs before a put fails", function()
    -- no explicit collectgarbage: the runtime must do it under pressure
    collectgarbage("stop")
    local ok, err = pcall(function()
      for _ = 1, ROUNDS do
        local r = lray.put(string.rep("p", SIZE))
        assert(r)
      end
    end)
    collectgarbage("restart")
    assert.is_true(ok, tostring(err))
  end)
end)

-- Ownership (issue #9): the process that makes an actor call owns its
-- result; a result sent on before it arrived, or after the caller dropped
-- it, must still reach whoever it was sent to.
describe("Ownership of actor call results", function()
  local Keeper = {}
  function Keeper:val(v, delay) if delay then lray.sleep(delay) end return v end
  function Keeper:take(x) if type(x) == "table" then x = lray.get(x[1]) end return x end
  function Keeper:keep(t) self.t = t; return true end
  function Keeper:kept() return self.t end

  it("a result passed on to a task or actor resolves (20 rounds, every combination)", function()
    local RK = lray.remote(Keeper)
    local a, b = RK.remote(), RK.remote()
    local take = lray.remote(function(x) if type(x) == "table" then x = lray.get(x[1]) end return x end)
    local make = lray.remote(function(v) return v end)
    local bad = {}
    for round = 1, 20 do
      for _, src in ipairs({ "actor", "task" }) do
        for _, dst in ipairs({ "actor", "task" }) do
          for _, size in ipairs({ "small", "large" }) do
            for _, nested in ipairs({ false, true }) do
              local v = size == "small" and round or string.rep("x", 200 * 1024) .. round
              local r = src == "actor" and a.val.remote(v) or make.remote(v)
              local x = nested and { r } or r
              r = nil -- luacheck: ignore 311 (the caller lets go at once)
              local out = dst == "actor" and b.take.remote(x) or take.remote(x)
              x = nil -- luacheck: ignore 311
              collectgarbage()
              local ok, got = pcall(lray.get, out, { timeout = 10 })
              if not ok or got ~= v then
                bad[#bad + 1] = ("round %d %s->%s %s%s: %s"):format(round, src, dst, size,
                  nested and " nested" or "", ok and "wrong value" or msg(got))
              end
            end
          end
        end
      end
    end
    assert.are.same({}, bad)
  end)

  it("a task returning an actor call's ref that has not finished gives a ref that resolves", function()
    local h = lray.remote(Keeper).remote()
    local t = lray.remote(function(k, i, wrap)
      local r = k.val.remote(i, 0.05)
      if wrap then return { r } end
      return r
    end)
    for i = 1, 10 do
      local r = lray.get(t.remote(h, i, false), { timeout = 10 })
      assert.are.equal(i, lray.get(r, { timeout = 10 }))
      local w = lray.get(t.remote(h, i, true), { timeout = 10 })
      assert.are.equal(i, lray.get(w[1], { timeout = 10 }))
    end
  end)

  it("a ref handed nested to an actor that keeps it outlives the sender's copy", function()
    local k = lray.remote(Keeper).remote()
    for i = 1, 3 do
      local r = lray.put(i)
      assert.is_true(lray.get(k.keep.remote({ r })))
      r = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      -- Longer than the node's grace for unreferenced objects: only the
      -- actor's own registration keeps the object now.
      lray.sleep(0.8)
      local kept = lray.get(k.kept.remote())
      assert.are.equal(i, lray.get(kept[1], { timeout = 10 }))
    end
  end)

  it("an actor call's result holding refs is readable long after the actor dropped them", function()
    local Maker = {}
    function Maker:make(v) return { lray.put(v) } end
    function Maker:gc() collectgarbage(); collectgarbage(); return true end
    local m = lray.remote(Maker).remote()
    for i = 1, 3 do
      local r = m.make.remote(i)
      lray.get(m.gc.remote())
      -- Longer than any grace the node could give an unreferenced object:
      -- only this process's hold on the result's refs keeps them.
      lray.sleep(0.8)
      assert.are.equal(i, lray.get(lray.get(r)[1], { timeout = 10 }))
    end
  end)

  -- No hand-off relies on time (the node frees an unreferenced object at
  -- once): every process collects garbage right after handing refs on.
  it("refs handed on through tasks and actors stay valid while anything holds them (20 rounds)", function()
    local Box = {}
    function Box:make(v) local t = { lray.put(v) }; collectgarbage(); return t end
    function Box:keep(t) self.t = t; collectgarbage(); return true end
    function Box:kept() collectgarbage(); return self.t end
    function Box:forward(other, t) lray.get(other.keep.remote(t)); collectgarbage(); return true end
    function Box:gc() collectgarbage(); collectgarbage(); return true end
    local RB = lray.remote(Box)
    local a, b = RB.remote(), RB.remote()
    local wrap = lray.remote(function(t, v)
      local out = { t[1], lray.put(v) }
      collectgarbage()
      return out
    end)
    for round = 1, 20 do
      -- actor result holding a ref the actor itself drops at once
      local made = a.make.remote(round)
      lray.get(a.gc.remote())
      collectgarbage()
      assert.are.equal(round, lray.get(lray.get(made)[1], { timeout = 10 }))
      made = nil -- luacheck: ignore 311
      -- a task result holding the driver's ref and one the task made
      local w = lray.get(wrap.remote({ lray.put(round) }, -round), { timeout = 10 })
      collectgarbage()
      assert.are.equal(round, lray.get(w[1], { timeout = 10 }))
      assert.are.equal(-round, lray.get(w[2], { timeout = 10 }))
      -- actor to actor, the driver letting go at once
      local r = lray.put(round * 10)
      assert.is_true(lray.get(a.forward.remote(b, { r })))
      r, w = nil, nil -- luacheck: ignore 311
      collectgarbage()
      lray.get(a.gc.remote())
      local kept = lray.get(b.kept.remote())
      collectgarbage()
      assert.are.equal(round * 10, lray.get(kept[1], { timeout = 10 }))
    end
  end)

  it("a result whose owner exited before it arrived raises OwnerDiedError", function()
    local RK = lray.remote(Keeper)
    local slow, keeper = RK.remote(), RK.remote()
    local owner = lray.remote({ max_retries = 0 }, function(s, k)
      local r = s.val.remote(1, 1.0)
      lray.get(k.keep.remote({ r }))
      os.exit(1)
    end)
    local e = fails(lray.get, owner.remote(slow, keeper), { timeout = 20 })
    assert.is_true(lray.is_error(e, "WorkerCrashedError"), msg(e))
    local kept = lray.get(keeper.kept.remote())
    e = fails(lray.get, kept[1], { timeout = 20 })
    assert.is_true(lray.is_error(e, "OwnerDiedError"), msg(e))
  end)
end)
