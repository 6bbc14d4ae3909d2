-- Lends whose lender or receiver dies (API.md "Objects": an object is freed
-- when no ObjectRef to it remains anywhere; core/raylet/objdir.c "Lenders
-- and receivers that leave"). A process that hands ObjectRefs straight to
-- another lends them first; these specs kill one end of such a hand-off at
-- the worst moment and ask that the store return to its baseline. They run
-- with no free grace (LRAY_FREE_GRACE_S=0) and wait on conditions, bounded.
local cluster = require("spec.helpers.cluster")

local lray, runtime

setup(function()
  require("lray._core").setenv("LRAY_FREE_GRACE_S", "0")
  lray = cluster.start({ num_cpus = 2, include_dashboard = false })
  runtime = require("lray.runtime")
end)

teardown(function()
  cluster.stop()
  require("lray._core").setenv("LRAY_FREE_GRACE_S", nil)
end)

-- -- Helpers ------------------------------------------------------------------

local function store()
  local st = runtime.state({ t = "status" })
  return st.store.used, st.objects
end

-- Polls until the store holds what it held at (used, objects), at most
-- bound seconds; returns whether it did, and what it holds.
local function back_to(used, objects, bound)
  local deadline = lray.now() + bound
  local u, o
  repeat
    collectgarbage()
    u, o = store()
    if u == used and o == objects then return true, u, o end
    lray.sleep(0.02)
  until lray.now() > deadline
  return false, u, o
end

local function ready(ref)
  local done = lray.wait({ ref }, { timeout = 0 })
  return #done == 1
end

local Receiver = {}
function Receiver:pid() return require("lray._core").getpid() end
-- Busy in Lua for s seconds of CPU without running its loop: messages to it
-- wait unread meanwhile.
function Receiver:spin(s)
  local t = os.clock() + s
  while os.clock() < t do end -- luacheck: ignore 563
  return true
end
function Receiver:big(delay, flag)
  io.open(flag, "w"):close()
  lray.sleep(delay)
  return string.rep("b", 300 * 1024)
end
local RReceiver = require("lray").remote(Receiver)

-- -- Lenders that die ---------------------------------------------------------

describe("a lender that dies", function()
  it("right after lending, before its receiver got the message: the object is freed once"
    .. " the receiver, asked by the node, says it never got it", function()
    local r = RReceiver.remote()
    local pid = lray.get(r.pid.remote())
    local base_used, base_objects = store()
    -- The lender lends the ref to the actor as a call would, and dies before
    -- it sends the call (the message a SIGKILL cut short).
    local lend_and_die = lray.remote({ max_retries = 0 }, function(box, to)
      local rt, core = require("lray.runtime"), require("lray._core")
      rt.queue({ t = "lend", token = rt.new_id() .. "#0", ids = { box[1]:hex() }, to = to })
      rt.flush_out()
      core.kill(core.getpid(), 9)
    end)
    local obj = lray.put(string.rep("x", 300 * 1024))
    local busy = r.spin.remote(3)
    local ok, e = pcall(lray.get, lend_and_die.remote({ obj }, pid), { timeout = 30 })
    assert.is_false(ok)
    assert.is_true(lray.is_error(e, "WorkerCrashedError"), tostring(e))
    obj:release()
    obj = nil -- luacheck: ignore 311
    collectgarbage()
    -- No timeout frees it: while the receiver is busy (its socket unread)
    -- the lend holds the object.
    local _, objects = store()
    if not ready(busy) then
      assert.is_true(objects > base_objects, "freed while its receiver could still read it")
    end
    assert.is_true(lray.get(busy))
    local back, used, now = back_to(base_used, base_objects, 10)
    assert.is_true(back, ("store not back to baseline: %d B / %d objects (baseline %d / %d)")
      :format(used, now, base_used, base_objects))
    assert.are.equal(pid, lray.get(r.pid.remote())) -- the receiver lives on
    lray.kill(r)
  end)
end)

-- -- Receivers that die -------------------------------------------------------

describe("a caller that dies", function()
  it("before it read its actor call's large reply: the reply is freed", function()
    local r = RReceiver.remote()
    lray.get(r.pid.remote())
    local base_used, base_objects = store()
    local call_and_die = lray.remote({ max_retries = 0 }, function(h, flag)
      local core = require("lray._core")
      local ref = h.big.remote(0.5, flag)
      -- Dies once the actor runs the call, before its reply comes.
      local deadline = lray.now() + 20
      while lray.now() < deadline do
        local f = io.open(flag)
        if f then f:close(); break end
        lray.wait({ ref }, { timeout = 0.01 })
      end
      core.kill(core.getpid(), 9)
    end)
    local flag = os.tmpname()
    os.remove(flag)
    local ok, e = pcall(lray.get, call_and_die.remote(r, flag), { timeout = 30 })
    os.remove(flag)
    assert.is_false(ok)
    assert.is_true(lray.is_error(e, "WorkerCrashedError"), tostring(e))
    -- The actor has replied to its dead caller once it answers this call
    -- (it runs one call at a time, and the other had started).
    lray.get(r.pid.remote())
    local back, used, now = back_to(base_used, base_objects, 10)
    assert.is_true(back, ("store not back to baseline: %d B / %d objects (baseline %d / %d)")
      :format(used, now, base_used, base_objects))
    lray.kill(r)
  end)
end)
