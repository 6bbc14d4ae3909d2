-- API.md "Actors (remote classes)": creating actors, calling methods, call
-- order, inheritance, handles in tasks and actors, errors, kill, named actors
-- and method options.
local cluster = require("spec.helpers.cluster")
local msg, fails = cluster.msg, cluster.fails

local lray

setup(function()
  lray = cluster.start()
end)

teardown(function()
  cluster.stop()
end)



-- The class of API.md's example.
local Counter = {}
function Counter:init(start) self.n = start or 0 end
function Counter:next() self.n = self.n + 1; return self.n end
function Counter:add(k) self.n = self.n + k; return self.n end
function Counter:get() return self.n end
function Counter:pid() return require("lray._core").getpid() end
function Counter:fail(text) error(text) end
function Counter:two() return self.n, -self.n end

describe("Actors (remote classes)", function()
  it("creates an actor with init arguments and keeps its state between calls", function()
    local RCounter = lray.remote(Counter)
    local c = RCounter.remote(10)
    assert.are.equal(11, lray.get(c.next.remote()))
    assert.are.equal(12, lray.get(c.next.remote()))
    assert.are.equal(15, lray.get(c.add.remote(3)))
    local d = RCounter.remote()
    assert.are.equal(1, lray.get(d.next.remote()))
    assert.are.equal(15, lray.get(c.get.remote()))
  end)

  it("RCounter:remote(...) is the same as RCounter.remote(...)", function()
    local RCounter = lray.remote(Counter)
    local c = RCounter:remote(5)
    assert.are.equal(5, lray.get(c.get.remote()))
  end)

  it("runs calls from one caller one at a time, in submission order", function()
    local c = lray.remote(Counter).remote(0)
    local refs = {}
    for i = 1, 100 do refs[i] = c.next.remote() end
    local vs = lray.get(refs)
    for i = 1, 100 do assert.are.equal(i, vs[i]) end
    -- arguments in order too
    local log = {}
    local Log = {}
    function Log:init() self.items = {} end
    function Log:push(x) self.items[#self.items + 1] = x end
    function Log:all() return self.items end
    local l = lray.remote(Log).remote()
    for i = 1, 50 do log[i] = l.push.remote(i) end
    lray.get(log)
    local items = lray.get(l.all.remote())
    assert.are.equal(50, #items)
    for i = 1, 50 do assert.are.equal(i, items[i]) end
  end)

  it("tostring(handle) is Actor(<Class>, <hex id>)", function()
    local RCounter = lray.remote(Counter)
    local c = RCounter.remote()
    assert.matches("^Actor%(Counter, %x+%)$", tostring(c))
    local d = RCounter.remote()
    assert.are_not.equal(tostring(c), tostring(d))
  end)

  it("methods inherited through the class's metatable __index are methods", function()
    local Base = {}
    function Base:init(x) self.x = x end
    function Base:hello() return "base " .. self.x end
    function Base:who() return "base" end
    local Sub = setmetatable({}, { __index = Base })
    function Sub:who() return "sub" end
    function Sub:both() return self:hello() .. "/" .. self:who() end
    local s = lray.remote(Sub).remote("x1")
    assert.are.equal("base x1", lray.get(s.hello.remote()))
    assert.are.equal("sub", lray.get(s.who.remote()))
    assert.are.equal("base x1/sub", lray.get(s.both.remote()))
  end)

  it("c.m:remote(...) is the same as c.m.remote(...)", function()
    local c = lray.remote(Counter).remote(1)
    assert.are.equal(3, lray.get(c.add:remote(2)))
    assert.are.equal(4, lray.get(c.next:remote()))
    assert.are.equal(7, lray.get(c.add.remote(3)))
  end)

  it("each actor lives in its own worker process", function()
    local RCounter = lray.remote(Counter)
    local a, b = RCounter.remote(), RCounter.remote()
    local pa, pb = lray.get(a.pid.remote()), lray.get(b.pid.remote())
    assert.are_not.equal(pa, pb)
    assert.are_not.equal(require("lray._core").getpid(), pa)
    local task_pid = lray.remote(function() return require("lray._core").getpid() end)
    local tp = lray.get({ task_pid.remote(), task_pid.remote(), task_pid.remote() })
    for _, p in ipairs(tp) do
      assert.are_not.equal(pa, p)
      assert.are_not.equal(pb, p)
    end
  end)

  it("a handle passed to a task can be called there", function()
    local c = lray.remote(Counter).remote(100)
    local use = lray.remote(function(h, k)
      local last
      for _ = 1, k do last = lray.get(h.next.remote()) end
      return last, tostring(h)
    end)
    local last, s = lray.get(use.remote(c, 3))
    assert.are.equal(103, last)
    assert.are.equal(tostring(c), s)
    assert.are.equal(104, lray.get(c.next.remote()))
    -- handles inside tables too
    local deep = lray.remote(function(t) return lray.get(t.h.get.remote()) end)
    assert.are.equal(104, lray.get(deep.remote({ h = c })))
  end)

  it("an actor can create another actor and return its handle", function()
    local Child = {}
    function Child:init(v) self.v = v end
    function Child:value() return self.v end
    local Parent = {}
    function Parent:init() self.kids = {} end
    function Parent:spawn(v)
      local h = lray.remote(Child).remote(v)
      self.kids[#self.kids + 1] = h
      return lray.get(h.value.remote()), h
    end
    local p = lray.remote(Parent).remote()
    local v, h = lray.get(p.spawn.remote("kid"))
    assert.are.equal("kid", v)
    assert.are.equal("kid", lray.get(h.value.remote()))
  end)

  it("an actor method can call lray.get on tasks and other actors", function()
    local sq = lray.remote(function(x) return x * x end)
    local c = lray.remote(Counter).remote(5)
    local Agg = {}
    function Agg:sum(xs, other)
      local refs = {}
      for i, x in ipairs(xs) do refs[i] = sq.remote(x) end
      local s = 0
      for _, v in ipairs(lray.get(refs)) do s = s + v end
      return s + lray.get(other.get.remote())
    end
    local a = lray.remote(Agg).remote()
    assert.are.equal(1 + 4 + 9 + 5, lray.get(a.sum.remote({ 1, 2, 3 }, c)))
  end)

  it("a method error gives TaskError, and the actor keeps working", function()
    local c = lray.remote(Counter).remote(0)
    assert.are.equal(1, lray.get(c.next.remote()))
    local e = fails(lray.get, c.fail.remote("method went wrong"))
    assert.is_true(lray.is_error(e, "TaskError"), tostring(e))
    assert.matches("method went wrong", msg(e), 1, true)
    assert.is_string(e.traceback)
    assert.matches("method went wrong", tostring(e.cause), 1, true)
    assert.are.equal(2, lray.get(c.next.remote()))
  end)

  it("calling a method the class does not have raises, naming it", function()
    local c = lray.remote(Counter).remote()
    local e = fails(function() return lray.get(c.no_such_method.remote()) end)
    assert.matches("no_such_method", msg(e), 1, true)
    assert.are.equal(1, lray.get(c.next.remote()))
  end)

  it("calling handle.m() directly raises, saying to use .remote", function()
    local c = lray.remote(Counter).remote()
    local e = fails(function() return c.next() end)
    assert.matches(".remote(", msg(e), 1, true)
    e = fails(function() return lray.remote(Counter)(1) end)
    assert.matches(".remote(", msg(e), 1, true)
  end)

  it("after lray.kill(h), calls raise ActorDiedError", function()
    local c = lray.remote(Counter).remote()
    assert.are.equal(1, lray.get(c.next.remote()))
    lray.kill(c)
    local e = fails(function() return lray.get(c.next.remote(), { timeout = 10 }) end)
    assert.is_true(lray.is_error(e, "ActorDiedError"), tostring(e))
    e = fails(function() return lray.get(c.get.remote(), { timeout = 10 }) end)
    assert.is_true(lray.is_error(e, "ActorDiedError"), tostring(e))
  end)

  it("calls still queued when an actor is killed fail with ActorDiedError", function()
    local Slow = {}
    function Slow:nap(s) lray.sleep(s); return "woke" end
    local s = lray.remote(Slow).remote()
    local refs = {}
    for i = 1, 3 do refs[i] = s.nap.remote(0.5) end
    lray.sleep(0.1)
    lray.kill(s)
    local e = fails(lray.get, refs[3], { timeout = 10 })
    assert.is_true(lray.is_error(e, "ActorDiedError"), tostring(e))
  end)

  it("an init that raises makes calls raise ActorDiedError with the cause set", function()
    local Bad = {}
    function Bad:init() error("init exploded") end
    function Bad:m() return 1 end
    local b = lray.remote(Bad).remote()
    local e = fails(function() return lray.get(b.m.remote(), { timeout = 10 }) end)
    assert.is_true(lray.is_error(e, "ActorDiedError"), tostring(e))
    assert.is_not_nil(e.cause)
    assert.matches("init exploded", tostring(e.cause), 1, true)
  end)

  it("lray.get_actor finds a named actor; an unknown name raises", function()
    local c = lray.remote(Counter).options({ name = "spec-counter-1" }).remote(7)
    assert.are.equal(8, lray.get(c.next.remote()))
    local h = lray.get_actor("spec-counter-1")
    assert.are.equal(9, lray.get(h.next.remote()))
    assert.matches("^Actor%(Counter, %x+%)$", tostring(h))
    assert.are.equal(tostring(c), tostring(h))
    local e = fails(lray.get_actor, "spec-no-such-actor")
    assert.matches("spec-no-such-actor", msg(e), 1, true)
  end)

  it("lray.get_actor works from inside a task", function()
    local c = lray.remote({ name = "spec-counter-2" }, Counter).remote(0)
    assert.are.equal(1, lray.get(c.next.remote()))
    local f = lray.remote(function()
      return lray.get(lray.get_actor("spec-counter-2").next.remote())
    end)
    assert.are.equal(2, lray.get(f.remote()))
  end)

  it("a duplicate actor name raises, naming the namespace", function()
    local RCounter = lray.remote(Counter)
    local c = RCounter.options({ name = "spec-dup" }).remote()
    assert.are.equal(1, lray.get(c.next.remote()))
    local ns = lray.get_runtime_context().namespace
    local e = fails(RCounter.options({ name = "spec-dup" }).remote)
    assert.matches("spec-dup", msg(e), 1, true)
    assert.matches(ns, msg(e), 1, true)
    -- the first one is untouched
    assert.are.equal(2, lray.get(c.next.remote()))
  end)

  it("get_if_exists returns the existing named actor", function()
    local RCounter = lray.remote(Counter)
    local c = RCounter.options({ name = "spec-gie" }).remote(40)
    local d = RCounter.options({ name = "spec-gie", get_if_exists = true }).remote(0)
    assert.are.equal(41, lray.get(d.next.remote()))
    assert.are.equal(42, lray.get(c.next.remote()))
  end)

  it("a killed actor's name is free again", function()
    local RCounter = lray.remote(Counter)
    local c = RCounter.options({ name = "spec-reuse" }).remote(1)
    assert.are.equal(1, lray.get(c.get.remote()))
    lray.kill(c)
    fails(function() return lray.get(c.get.remote(), { timeout = 10 }) end)
    local d = RCounter.options({ name = "spec-reuse" }).remote(50)
    assert.are.equal(50, lray.get(d.get.remote()))
  end)

  it("a method called with .options{num_returns = 2} gives two refs", function()
    local c = lray.remote(Counter).remote(6)
    local r1, r2 = c.two.options({ num_returns = 2 }).remote()
    assert.is_not_nil(r2)
    assert.are.equal(6, lray.get(r1))
    assert.are.equal(-6, lray.get(r2))
    -- the plain method is unchanged: one ref, both values
    assert.are.equal(1, select("#", c.two.remote()))
    local a, b = lray.get(c.two.remote())
    assert.are.equal(6, a)
    assert.are.equal(-6, b)
  end)

  it("unknown actor and method options raise, naming them", function()
    assert.matches("bogus", msg(fails(lray.remote, { bogus = 1 }, Counter)), 1, true)
    local RCounter = lray.remote(Counter)
    assert.matches("max_restart", msg(fails(RCounter.options, { max_restart = 1 })), 1, true)
    local c = RCounter.remote()
    assert.matches("num_cpus", msg(fails(c.next.options, { num_cpus = 1 })), 1, true)
  end)

  it("an actor holds no CPU by default, so more actors than CPUs all run", function()
    local RCounter = lray.remote(Counter)
    local hs = {}
    for i = 1, 4 do hs[i] = RCounter.remote(i) end
    local refs = {}
    for i = 1, 4 do refs[i] = hs[i].get.remote() end
    assert.are.same({ 1, 2, 3, 4 }, lray.get(refs, { timeout = 20 }))
    -- and tasks still get the CPUs
    local f = lray.remote(function() return "task ran" end)
    assert.are.equal("task ran", lray.get(f.remote(), { timeout = 20 }))
  end)
end)
