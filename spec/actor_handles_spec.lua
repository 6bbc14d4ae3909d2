-- API.md "Actors (remote classes)": a non-detached actor ends when no handle
-- to it remains anywhere, and only then (issue #9). Every hand-off of a handle
-- is counted exactly, as ObjectRefs are: in a task's or an actor call's
-- arguments, in a result (inline, decoded late), in an object put with
-- lray.put (inline or in the store). These specs run the head with no grace
-- at all (LRAY_ACTOR_GRACE_S=0), so a hand-off that relied on one would end
-- the actor under the receiver. Each waits on conditions, never for a time.
local cluster = require("spec.helpers.cluster")

local lray
local ROUNDS = tonumber(os.getenv("LRAY_HANDLE_ROUNDS") or "20")

setup(function()
  local core = require("lray._core")
  core.setenv("LRAY_ACTOR_GRACE_S", "0")
  core.setenv("LRAY_FREE_GRACE_S", "0")
  lray = cluster.start({ num_cpus = 2 })
end)

teardown(function()
  cluster.stop()
  local core = require("lray._core")
  core.setenv("LRAY_ACTOR_GRACE_S", nil)
  core.setenv("LRAY_FREE_GRACE_S", nil)
end)

-- -- Helpers ------------------------------------------------------------------

local Counter = {}
function Counter:init(n) self.n = n or 0 end
function Counter:next() self.n = self.n + 1; return self.n end

-- Waits until the file at path exists (bounded): the creator's signal that
-- it has dropped its handle and the head has heard so.
local function wait_file(path)
  local deadline = lray.now() + 20
  while true do
    local f = io.open(path)
    if f then f:close(); return end
    if lray.now() > deadline then error("no signal at " .. path) end
    lray.sleep(0.002)
  end
end

-- Receives a handle (h, or t.h), waits for the creator's signal, calls it.
local function handle_in(x)
  return require("lray.actor").handle_info(x) and x or x.h
end

local function use(x, flag)
  local h = handle_in(x)
  wait_file(flag)
  return lray.get(h.next.remote())
end

-- A new Counter, and its id (a second return value, so the caller can wait
-- on it without decoding the handle).
local function make(name)
  local h = lray.remote(Counter).options({ name = name }).remote(10)
  return h, require("lray.actor").handle_info(h).aid
end

local Keeper = {}
function Keeper:keep(x) self.h = handle_in(x); return true end
function Keeper:call() return lray.get(self.h.next.remote()) end
function Keeper:drop() self.h = nil; collectgarbage(); collectgarbage(); return true end
function Keeper:make(name) return make(name) end
function Keeper:gc() collectgarbage(); collectgarbage(); return true end

local function rows()
  return require("lray.runtime").state({ t = "list", what = "actors" }).items or {}
end

local function row_of(aid)
  for _, r in ipairs(rows()) do
    if r.actor_id == aid then return r end
  end
  return nil
end

-- Waits (bounded) until cond(row of aid) holds; returns the row.
local function wait_row(aid, cond, what)
  local deadline = lray.now() + 20
  while true do
    local r = row_of(aid)
    if r and cond(r) then return r end
    if lray.now() > deadline then
      error(("actor %s: timed out waiting until %s (now %s, %s handles, cause %s)"):format(
        aid, what, tostring(r and r.state), tostring(r and r.handles), tostring(r and r.cause)), 2)
    end
    lray.sleep(0.002)
  end
end

local function assert_ended(aid, name)
  local r = wait_row(aid, function(x) return x.state == "DEAD" end, "it is DEAD")
  assert.matches("no handle to it remains", tostring(r.cause), 1, true)
  if name then
    local ok, e = pcall(lray.get_actor, name)
    assert.is_false(ok)
    assert.matches("no live actor named", cluster.msg(e), 1, true)
  end
end

local function aid_of(h) return require("lray.actor").handle_info(h).aid end

local function flag_path()
  local p = os.tmpname()
  os.remove(p)
  return p
end

-- The creator has let go of its handles: collect them, make one round trip
-- to the node (which sends the queued actor_unref first), then tell the
-- receiver through flag.
local function dropped(flag)
  collectgarbage()
  collectgarbage()
  rows()
  local f = assert(io.open(flag, "w"))
  f:close()
end

-- A fresh Counter (named in odd rounds); returns it, its id and its name.
local function counter(round, what)
  local name = round % 2 == 1 and ("handles-" .. what .. "-" .. round) or nil
  local h = lray.remote(Counter).options({ name = name }).remote(0)
  return h, aid_of(h), name
end

-- -- Hand-offs ----------------------------------------------------------------

describe("actor handles with no grace", function()
  it("passed to a task, at the top level and nested, reach it alive; the actor ends after", function()
    local recv = lray.remote(use)
    for round = 1, ROUNDS do
      for _, nested in ipairs({ false, true }) do
        local flag = flag_path()
        local h, aid, name = counter(round, nested and "tn" or "t")
        local ref = recv.remote(nested and { h = h } or h, flag)
        h = nil -- luacheck: ignore 311
        dropped(flag)
        assert.are.equal(1, lray.get(ref, { timeout = 20 }))
        ref = nil -- luacheck: ignore 311
        collectgarbage()
        assert_ended(aid, name)
        os.remove(flag)
      end
    end
  end)

  it("passed to another actor's method, kept there, is alive when called later; ends once dropped", function()
    local k = lray.remote(Keeper).remote()
    for round = 1, ROUNDS do
      local flag = flag_path()
      local h, aid, name = counter(round, "c")
      assert.is_true(lray.get(k.keep.remote(round % 2 == 0 and { h = h } or h)))
      h = nil -- luacheck: ignore 311
      dropped(flag)
      assert.are.equal(1, lray.get(k.call.remote(), { timeout = 20 }))
      assert.is_true(lray.get(k.drop.remote()))
      assert_ended(aid, name)
      os.remove(flag)
    end
    lray.kill(k)
  end)

  it("returned inline by a task and by an actor method, decoded late, is alive; the actor ends after", function()
    -- The task's creator process collects its handle before it replies (a
    -- nested ObjectRef argument makes the worker collect after the task).
    local maker = lray.remote({ num_returns = 2 }, function(name, _) return make(name) end)
    local k = lray.remote(Keeper).remote()
    for round = 1, ROUNDS do
      for _, by_actor in ipairs({ false, true }) do
        local name = round % 2 == 1 and ("handles-ret-" .. tostring(by_actor) .. round) or nil
        local ref, aid_ref
        if by_actor then
          ref, aid_ref = k.make.options({ num_returns = 2 }).remote(name)
        else
          ref, aid_ref = maker.remote(name, { lray.put(0) })
        end
        -- The handle's result is here (its twin is), not decoded yet.
        local aid = lray.get(aid_ref)
        assert.is_string(aid)
        if by_actor then assert.is_true(lray.get(k.gc.remote())) end
        -- Its creator let go: only this process, which keeps the value,
        -- holds the actor now.
        wait_row(aid, function(r) return r.handles == 1 end,
          ("one holder is left (round %d, by_actor %s)"):format(round, tostring(by_actor)))
        collectgarbage()
        local h = lray.get(ref)
        assert.are.equal(11, lray.get(h.next.remote()))
        h, ref = nil, nil -- luacheck: ignore 311
        collectgarbage()
        collectgarbage()
        assert_ended(aid, name)
      end
    end
    lray.kill(k)
  end)

  it("put with lray.put, alone and with a large payload in the store, outlives every handle", function()
    for round = 1, ROUNDS do
      for _, big in ipairs({ false, true }) do
        local h, aid, name = counter(round, big and "pb" or "p")
        local ref = lray.put(big and { h = h, pad = string.rep("x", 200 * 1024) } or h)
        h = nil -- luacheck: ignore 311
        collectgarbage()
        collectgarbage()
        -- Only the stored object holds it now.
        wait_row(aid, function(r) return r.handles == 1 end, "the object is its one holder")
        local v = lray.get(ref)
        assert.are.equal(1, lray.get(handle_in(v).next.remote()))
        v, ref = nil, nil -- luacheck: ignore 311
        collectgarbage()
        collectgarbage()
        assert_ended(aid, name)
      end
    end
  end)

  it("a task killed before it claimed its lend is unlent: the actor still ends", function()
    local hold = lray.remote({ max_retries = 0 }, function(h, pidfile)
      -- Whole or not at all: the reader waits only for the file to exist.
      local f = io.open(pidfile .. ".tmp", "w")
      f:write(require("lray._core").getpid())
      f:close()
      os.rename(pidfile .. ".tmp", pidfile)
      lray.sleep(60)
      return h
    end)
    for round = 1, 3 do
      local pidfile = flag_path()
      local h, aid, name = counter(round, "k")
      local ref = hold.remote({ h = h }, pidfile)
      h = nil -- luacheck: ignore 311
      -- The file exists before the task has written its pid: read until it has.
      local pid
      local deadline = lray.now() + 20
      repeat
        wait_file(pidfile)
        local f = assert(io.open(pidfile))
        pid = tonumber(f:read("*a"))
        f:close()
        if not pid then lray.sleep(0.002) end
      until pid or lray.now() > deadline
      assert(pid, "no pid in " .. pidfile)
      os.execute("kill -9 " .. pid)
      local ok, e = pcall(lray.get, ref, { timeout = 20 })
      assert.is_false(ok)
      assert.is_true(lray.is_error(e, "WorkerCrashedError"), tostring(e))
      ref = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      assert_ended(aid, name)
      os.remove(pidfile)
    end
  end)

  it("a name freed by the end of its last handle can be taken again", function()
    local h = lray.remote(Counter).options({ name = "handles-again" }).remote(0)
    local aid = aid_of(h)
    h = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert_ended(aid, "handles-again")
    local again = lray.remote(Counter).options({ name = "handles-again" }).remote(5)
    assert.are.equal(6, lray.get(again.next.remote()))
    lray.kill(again)
  end)
end)
