-- API.md "Actors (remote classes)" and "Errors": the life of an actor when
-- things go wrong. max_restarts and max_task_retries when the actor's process
-- dies (SIGKILL from outside, os.exit inside), Lua errors that do not restart
-- it, task retries (max_retries, retry_exceptions), lray.kill and its
-- no_restart flag, names and namespaces, actors ended by dropping every
-- handle, and the cause of an ActorDiedError raised by a failing init.
local cluster = require("spec.helpers.cluster")
local msg = cluster.msg

local lray

setup(function()
  lray = cluster.start({ num_cpus = 2 })
end)

teardown(function()
  cluster.stop()
end)

-- -- Helpers ------------------------------------------------------------------


-- The error lray.get(ref) raises; fails the test if it returns instead.
local function get_error(ref, timeout)
  local ok, e = pcall(lray.get, ref, { timeout = timeout or 10 })
  assert(not ok, "expected lray.get to raise, it returned " .. tostring(e))
  return e
end

-- Asserts e is an lray error of type t; returns its message.
local function assert_error_type(t, e)
  assert(lray.is_error(e, t), ("expected %s, got %s"):format(t, tostring(e)))
  return msg(e)
end

-- A fresh path for a flag file (does not exist yet).
local function flag_path()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local function kill9(pid)
  assert(type(pid) == "number" and pid > 1, "bad pid " .. tostring(pid))
  os.execute("kill -9 " .. pid)
end

-- The class used throughout. init(start) sets the counter, so a counter back
-- at its init value shows that init ran again.
local Counter = {}
function Counter:init(start, fail)
  if fail then error("init refused: " .. fail) end
  self.n = start or 0
end
function Counter:next() self.n = self.n + 1; return self.n end
function Counter:get() return self.n end
function Counter:pid() return require("lray._core").getpid() end
function Counter:fail(text) error(text) end
function Counter:exit_with(code) os.exit(code) end
function Counter:sleep(s) lray.sleep(s); return "slept" end
-- Kills its own process the first time (a file marks that it happened);
-- returns the counter when it runs again on the restarted actor.
function Counter:die_once(flag)
  local f = io.open(flag, "r")
  if f then
    f:close()
    return "second run, n = " .. self.n
  end
  f = assert(io.open(flag, "w"))
  f:write("died\n")
  f:close()
  os.execute("kill -9 " .. require("lray._core").getpid())
  lray.sleep(10)
  return "not killed"
end
-- Counts its runs in a file and kills its own process every time.
function Counter:always_die(count_file)
  local f = io.open(count_file, "a")
  f:write("x")
  f:close()
  os.execute("kill -9 " .. require("lray._core").getpid())
  lray.sleep(10)
  return "not killed"
end

local function file_size(path)
  local f = io.open(path, "r")
  if not f then return 0 end
  local n = #f:read("*a")
  f:close()
  return n
end

-- -- max_restarts ----------------------------------------------------------------

describe("max_restarts", function()
  it("an actor killed with SIGKILL from outside comes back in a new process and init runs again", function()
    local c = lray.remote({ max_restarts = 1 }, Counter).remote(100)
    assert.are.equal(101, lray.get(c.next.remote()))
    assert.are.equal(102, lray.get(c.next.remote()))
    local pid1 = lray.get(c.pid.remote())
    kill9(pid1)
    lray.sleep(0.3)
    local pid2 = lray.get(c.pid.remote(), { timeout = 10 })
    assert.are_not.equal(pid1, pid2)
    -- The state was rebuilt by init(100): the counter starts over.
    assert.are.equal(101, lray.get(c.next.remote()))
  end)

  it("with max_restarts = 0 the next call raises ActorDiedError naming the class and signal 9", function()
    local c = lray.remote({ max_restarts = 0 }, Counter).remote()
    assert.are.equal(1, lray.get(c.next.remote()))
    kill9(lray.get(c.pid.remote()))
    lray.sleep(0.3)
    local m = assert_error_type("ActorDiedError", get_error(c.next.remote()))
    assert.matches("Counter", m, 1, true)
    assert.matches("signal 9", m, 1, true)
  end)

  it("max_restarts = 0 is the default", function()
    local c = lray.remote(Counter).remote()
    kill9(lray.get(c.pid.remote()))
    lray.sleep(0.3)
    assert_error_type("ActorDiedError", get_error(c.next.remote()))
  end)

  it("max_restarts = 2 allows two restarts, then ActorDiedError mentions the restarts", function()
    local c = lray.remote({ max_restarts = 2 }, Counter).remote(10)
    local seen = {}
    for round = 1, 2 do
      local pid = lray.get(c.pid.remote())
      seen[pid] = true
      kill9(pid)
      lray.sleep(0.3)
      local new = lray.get(c.pid.remote(), { timeout = 10 })
      assert.is_nil(seen[new], "round " .. round .. ": still served by an old pid")
      assert.are.equal(11, lray.get(c.next.remote()), "round " .. round .. ": init did not run again")
    end
    kill9(lray.get(c.pid.remote()))
    lray.sleep(0.3)
    local m = assert_error_type("ActorDiedError", get_error(c.next.remote()))
    assert.matches("restart", m, 1, true)
    assert.matches("2", m, 1, true)
    assert.matches("signal 9", m, 1, true)
  end)

  it("an actor whose method calls os.exit(3) is restarted too", function()
    local c = lray.remote({ max_restarts = 1 }, Counter).remote(5)
    assert.are.equal(6, lray.get(c.next.remote()))
    local pid1 = lray.get(c.pid.remote())
    -- The call itself dies with the process (max_task_retries = 0).
    assert_error_type("ActorDiedError", get_error(c.exit_with.remote(3)))
    lray.sleep(0.3)
    local pid2 = lray.get(c.pid.remote(), { timeout = 10 })
    assert.are_not.equal(pid1, pid2)
    assert.are.equal(6, lray.get(c.next.remote()))
  end)

  -- (The issue sent 100 calls. Calls still being written to the actor when
  -- it dies make the write fail, and the connection then drops what it had
  -- not read yet, replies included: that part is in core/net/conn.c. Here
  -- the call that exits is the last one sent.)
  it("calls that finished before a method's os.exit keep their results (51 calls, the last exits)", function()
    local Crash = {}
    function Crash:f(i) if i == 51 then os.exit(1) end return i end
    local h = lray.remote({ max_restarts = 1 }, Crash).remote()
    local refs = {}
    for i = 1, 51 do refs[i] = h.f.remote(i) end
    for i = 1, 50 do assert.are.equal(i, lray.get(refs[i], { timeout = 20 })) end
    assert_error_type("ActorDiedError", get_error(refs[51], 20))
  end)

  it("100 calls, call 51 exits: calls 1..50 keep their results (10 rounds)", function()
    -- The calls after 51 are still being written when the actor dies: the
    -- caller's writes fail, and what the actor answered before is still read.
    local Crash = {}
    function Crash:f(i) if i == 51 then os.exit(1) end return i end
    for _ = 1, 10 do
      local h = lray.remote({ max_restarts = 1 }, Crash).remote()
      local refs = {}
      for i = 1, 100 do refs[i] = h.f.remote(i) end
      for i = 1, 50 do assert.are.equal(i, lray.get(refs[i], { timeout = 20 })) end
      assert_error_type("ActorDiedError", get_error(refs[51], 20))
      lray.kill(h)
    end
  end)

  it("max_restarts = -1 restarts without limit", function()
    local c = lray.remote({ max_restarts = -1 }, Counter).remote()
    for _ = 1, 4 do
      kill9(lray.get(c.pid.remote(), { timeout = 10 }))
      lray.sleep(0.2)
    end
    assert.are.equal(1, lray.get(c.next.remote(), { timeout = 10 }))
  end)
end)

-- -- max_task_retries ------------------------------------------------------------

describe("max_task_retries", function()
  for _, n in ipairs({ -1, 1 }) do
    it(("with max_task_retries = %d a call in flight when the process dies runs again on the restarted actor")
      :format(n), function()
      local flag = flag_path()
      local c = lray.remote({ max_restarts = 1, max_task_retries = n }, Counter).remote(7)
      assert.are.equal(8, lray.get(c.next.remote()))
      local ok, v = pcall(lray.get, c.die_once.remote(flag), { timeout = 10 })
      local existed = file_size(flag) > 0
      os.remove(flag)
      assert.is_true(existed, "die_once never ran")
      assert.is_true(ok, "the call was not re-sent: " .. tostring(v))
      -- It ran on a fresh instance: init(7) again, the 8 is gone.
      assert.are.equal("second run, n = 7", v)
      assert.are.equal(8, lray.get(c.next.remote()))
    end)
  end

  it("max_task_retries = 1 re-sends the call to the new process every time (20 deaths in a row)", function()
    -- The re-send must wait for the restarted process: sent to the dying one
    -- it would use up the only retry.
    local c = lray.remote({ max_restarts = -1, max_task_retries = 1 }, Counter).remote(7)
    local failed = {}
    for round = 1, 20 do
      local flag = flag_path()
      local ok, v = pcall(lray.get, c.die_once.remote(flag), { timeout = 10 })
      os.remove(flag)
      if not ok or v ~= "second run, n = 7" then
        failed[#failed + 1] = ("round %d: %s"):format(round, tostring(v))
      end
    end
    assert(#failed == 0, #failed .. " of 20 calls were not re-sent:\n" .. table.concat(failed, "\n"))
  end)

  it("with max_task_retries = 0 (the default) a call in flight when the process dies fails with ActorDiedError",
    function()
    local flag = flag_path()
    local c = lray.remote({ max_restarts = 1 }, Counter).remote(7)
    local e = get_error(c.die_once.remote(flag))
    os.remove(flag)
    assert_error_type("ActorDiedError", e)
    -- The actor itself was restarted: later calls work.
    lray.sleep(0.3)
    assert.are.equal(8, lray.get(c.next.remote(), { timeout = 10 }))
  end)

  it("max_task_retries = 1 re-sends a call once, not twice", function()
    local count = flag_path()
    local c = lray.remote({ max_restarts = -1, max_task_retries = 1 }, Counter).remote()
    local e = get_error(c.always_die.remote(count))
    local runs = file_size(count)
    os.remove(count)
    assert_error_type("ActorDiedError", e)
    assert.are.equal(2, runs)
  end)
end)

-- -- Lua errors -----------------------------------------------------------------

describe("Lua errors in methods", function()
  it("raise TaskError and never restart the actor: same pid, state kept", function()
    local c = lray.remote({ max_restarts = 3 }, Counter).remote()
    local pid = lray.get(c.pid.remote())
    assert.are.equal(1, lray.get(c.next.remote()))
    assert.are.equal(2, lray.get(c.next.remote()))
    local m = assert_error_type("TaskError", get_error(c.fail.remote("method blew up")))
    assert.matches("method blew up", m, 1, true)
    assert.are.equal(3, lray.get(c.next.remote()))
    assert.are.equal(pid, lray.get(c.pid.remote()))
  end)
end)

-- -- Task retries ----------------------------------------------------------------

-- True when flag existed; creates it otherwise.
local function seen_before(flag)
  local f = io.open(flag, "r")
  if f then f:close(); return true end
  f = assert(io.open(flag, "w"))
  f:write("1\n")
  f:close()
  return false
end

describe("task retries", function()
  local crash_once, raise_once

  setup(function()
    crash_once = lray.remote(function(flag)
      if not seen_before(flag) then os.exit(1) end
      return "ran after a crash"
    end)
    raise_once = lray.remote(function(flag)
      if not seen_before(flag) then error("first attempt raises") end
      return "ran after an error"
    end)
  end)

  it("a task whose worker crashes once succeeds with max_retries = 1", function()
    local flag = flag_path()
    local ok, v = pcall(lray.get, crash_once.options({ max_retries = 1 }).remote(flag), { timeout = 10 })
    os.remove(flag)
    assert.is_true(ok, tostring(v))
    assert.are.equal("ran after a crash", v)
  end)

  it("with max_retries = 0 a crashed worker gives WorkerCrashedError", function()
    local flag = flag_path()
    local e = get_error(crash_once.options({ max_retries = 0 }).remote(flag))
    os.remove(flag)
    assert_error_type("WorkerCrashedError", e)
  end)

  it("retry_exceptions = true re-runs a task that raised a Lua error", function()
    local flag = flag_path()
    local ok, v = pcall(lray.get, raise_once.options({ retry_exceptions = true, max_retries = 1 }).remote(flag),
      { timeout = 10 })
    os.remove(flag)
    assert.is_true(ok, tostring(v))
    assert.are.equal("ran after an error", v)
  end)

  it("without retry_exceptions a Lua error is not retried: TaskError", function()
    local flag = flag_path()
    local e = get_error(raise_once.options({ max_retries = 3 }).remote(flag))
    os.remove(flag)
    local m = assert_error_type("TaskError", e)
    assert.matches("first attempt raises", m, 1, true)
  end)
end)

-- -- lray.kill --------------------------------------------------------------------

describe("lray.kill", function()
  it("makes the running call and the calls queued behind it fail with ActorDiedError (killed by lray.kill)", function()
    local c = lray.remote({ max_restarts = 2 }, Counter).remote()
    assert.are.equal(1, lray.get(c.next.remote()))
    local running = c.sleep.remote(5)
    local queued = { c.next.remote(), c.next.remote(), c.get.remote() }
    lray.sleep(0.2)   -- sleep(5) is running now
    local t0 = lray.now()
    lray.kill(c)
    local wrong = {}
    for i, ref in ipairs({ running, queued[1], queued[2], queued[3] }) do
      local m = assert_error_type("ActorDiedError", get_error(ref, 5))
      if not m:find("killed by lray.kill", 1, true) then
        wrong[#wrong + 1] = ("call %d: %s"):format(i, m)
      end
    end
    assert(#wrong == 0, "ActorDiedError does not say 'killed by lray.kill':\n" .. table.concat(wrong, "\n"))
    assert.is_true(lray.now() - t0 < 3, "the calls waited for the sleep instead of failing")
    -- max_restarts does not bring it back: no_restart is true by default.
    local m = assert_error_type("ActorDiedError", get_error(c.next.remote(), 5))
    assert.matches("killed by lray.kill", m, 1, true)
  end)

  it("with no_restart = false restarts an actor that has restarts left: the next call works, init ran again", function()
    local c = lray.remote({ max_restarts = 1 }, Counter).remote(20)
    assert.are.equal(21, lray.get(c.next.remote()))
    assert.are.equal(22, lray.get(c.next.remote()))
    local pid1 = lray.get(c.pid.remote())
    lray.kill(c, { no_restart = false })
    local ok, v = pcall(lray.get, c.next.remote(), { timeout = 10 })
    assert.is_true(ok, "the first call after lray.kill(h, {no_restart = false}) failed: " .. tostring(v))
    assert.are.equal(21, v)
    assert.are_not.equal(pid1, lray.get(c.pid.remote()))
  end)

  -- The restart's notices could be handled while kill waited for its reply;
  -- kill then marked the new incarnation RESTARTING and the next call hung.
  it("the first call after lray.kill(h, {no_restart = false}) works (20 rounds)", function()
    for round = 1, 20 do
      local c = lray.remote({ max_restarts = 1 }, Counter).remote(round)
      assert.are.equal(round + 1, lray.get(c.next.remote()))
      lray.kill(c, { no_restart = false })
      local ok, v = pcall(lray.get, c.next.remote(), { timeout = 10 })
      assert(ok, ("round %d: %s"):format(round, tostring(v)))
      assert.are.equal(round + 1, v)
      lray.kill(c)
    end
  end)
end)

-- -- Names ------------------------------------------------------------------------

describe("actor names", function()
  it("a name is free again as soon as lray.kill returns (10 times in a row)", function()
    local R = lray.remote(Counter).options({ name = "lifecycle-reused" })
    for i = 1, 10 do
      local ok, c = pcall(R.remote, i * 100)
      assert(ok, ("round %d: %s"):format(i, tostring(c)))
      assert.are.equal(i * 100 + 1, lray.get(c.next.remote()))
      lray.kill(c)
    end
    assert.has_error(function() lray.get_actor("lifecycle-reused") end)
  end)

  it("a duplicate name raises an error that names the namespace", function()
    local R = lray.remote(Counter).options({ name = "lifecycle-dup" })
    local c = R.remote()
    local ok, e = pcall(R.remote)
    assert.is_false(ok, "a second actor with the same name was created")
    local ns = lray.get_runtime_context().namespace
    assert.is_string(ns)
    assert.matches("lifecycle-dup", msg(e), 1, true)
    assert.matches(ns, msg(e), 1, true)
    lray.kill(c)
  end)

  it("get_if_exists returns the existing actor", function()
    local c = lray.remote(Counter).options({ name = "lifecycle-gie" }).remote(50)
    assert.are.equal(51, lray.get(c.next.remote()))
    local same = lray.remote(Counter).options({ name = "lifecycle-gie", get_if_exists = true }).remote(0)
    assert.is_true(c == same)
    assert.are.equal(52, lray.get(same.next.remote()))
    assert.are.equal(lray.get(c.pid.remote()), lray.get(same.pid.remote()))
    lray.kill(c)
  end)

  it("a name given with options{namespace = ...} is found only in that namespace", function()
    local c = lray.remote(Counter).options({ name = "lifecycle-ns", namespace = "x" }).remote(3)
    local found = lray.get_actor("lifecycle-ns", { namespace = "x" })
    assert.are.equal(4, lray.get(found.next.remote()))
    assert.are.equal(4, lray.get(c.get.remote()))
    local ok = pcall(lray.get_actor, "lifecycle-ns")
    assert.is_false(ok, "found a namespace-x actor from the job's own namespace")
    -- The same name is free in the job's namespace.
    local mine = lray.remote(Counter).options({ name = "lifecycle-ns" }).remote(0)
    assert.are.equal(1, lray.get(mine.next.remote()))
    lray.kill(mine)
    lray.kill(c)
  end)
end)

-- -- Handles ----------------------------------------------------------------------

local function actor_row(aid)
  local items = require("lray.runtime").state({ t = "list", what = "actors" }).items or {}
  for _, it in ipairs(items) do
    if it.actor_id == aid then return it end
  end
  return nil
end

describe("actor handles", function()
  -- Waits (bounded) until the actor aid is listed DEAD; returns its row.
  local function wait_dead(aid)
    local deadline = lray.now() + 10
    local row = actor_row(aid)
    while row and row.state ~= "DEAD" and lray.now() < deadline do
      lray.sleep(0.05)
      row = actor_row(aid)
    end
    return row
  end

  it("dropping every handle of a non-detached actor ends it; a kept handle keeps it ALIVE", function()
    local actor = require("lray.actor")
    local R = lray.remote(Counter)
    local kept = R.remote()
    local dropped = R.remote()
    assert.are.equal(1, lray.get(kept.next.remote()))
    assert.are.equal(1, lray.get(dropped.next.remote()))
    local kept_aid = actor.handle_info(kept).aid
    local dropped_aid = actor.handle_info(dropped).aid
    local dropped_pid = lray.get(dropped.pid.remote())
    dropped = nil   -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local row = wait_dead(dropped_aid)
    assert.is_table(row, "the actor is not listed")
    assert.are.equal("DEAD", row.state)
    assert.matches("handle", tostring(row.cause), 1, true)
    -- Its process is gone too.
    assert.is_nil(require("lray._core").kill(dropped_pid, 0), "the actor's process still runs")
    local krow = actor_row(kept_aid)
    assert.is_table(krow)
    assert.are.equal("ALIVE", krow.state)
    assert.are.equal(2, lray.get(kept.next.remote()))
  end)

  -- Issue #9: the handle, collected while its call was in flight, was
  -- kept by that call until Lua's next cycle, so the actor and its name lived on.
  it("a named actor whose only handle is collected while a call is in flight ends; its name is free", function()
    local actor = require("lray.actor")
    local h = lray.remote(Counter).options({ name = "dropped-named" }).remote()
    local aid = actor.handle_info(h).aid
    assert.are.equal(1, lray.get(h.next.remote()))
    h.next.remote()   -- result dropped at once, call still in flight
    h = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    -- The user collected once; no later cycle may be needed.
    collectgarbage("stop")
    local ok, row = pcall(wait_dead, aid)
    collectgarbage("restart")
    assert(ok, row)
    assert.are.equal("DEAD", row and row.state)
    local again = lray.remote(Counter).options({ name = "dropped-named" }).remote(5)
    assert.are.equal(6, lray.get(again.next.remote()))
    lray.kill(again)
  end)

  it("an actor created by an actor ends when its creator is killed, though the driver holds its handle", function()
    local actor = require("lray.actor")
    local Maker = {}
    function Maker:make() self.child = lray.remote(Counter).remote(); return self.child end
    local RM = lray.remote({ max_restarts = 1 }, Maker)
    for _, no_restart in ipairs({ false, true }) do
      local m = RM.remote()
      local child = lray.get(m.make.remote())
      assert.are.equal(1, lray.get(child.next.remote()))
      lray.kill(m, { no_restart = no_restart })
      local row = wait_dead(actor.handle_info(child).aid)
      assert.are.equal("DEAD", row and row.state)
      assert.matches("owner", tostring(row.cause), 1, true)
      local e = get_error(child.next.remote())
      assert_error_type("ActorDiedError", e)
      if not no_restart then lray.kill(m) end
    end
  end)
end)

-- -- init failures ----------------------------------------------------------------

describe("init failures", function()
  it("ActorDiedError from a failing init carries the init error as cause", function()
    local c = lray.remote({ max_restarts = 2 }, Counter).remote(0, "no vacancy")
    local e = get_error(c.next.remote())
    local m = assert_error_type("ActorDiedError", e)
    assert.matches("no vacancy", m, 1, true)
    assert.is_table(e.cause, "no cause on the ActorDiedError")
    assert.matches("init refused: no vacancy", msg(e.cause), 1, true)
    -- An init error is final even with restarts left.
    assert_error_type("ActorDiedError", get_error(c.get.remote()))
  end)
end)
