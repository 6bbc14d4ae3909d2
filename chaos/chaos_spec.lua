-- chaos/chaos_spec.lua: lray's promises under sustained SIGKILLs (issue 12,
-- "Chaos"; figures in docs/reliability.md). Run by `make chaos`:
--   (1) tasks with max_retries = -1 while a worker is killed every 100 ms:
--       every result right, available CPUs back to total within 5 s;
--   (2) the same with max_retries = 0: each ref is its value or a
--       WorkerCrashedError, nothing hangs;
--   (3) restarting actors (max_restarts = -1, max_task_retries = -1) report
--       sequence numbers to an actor that is never killed while one of them
--       is killed every few hundred ms: every number arrives, in order;
--   (4) large objects borrowed by tasks (nested refs) while workers die:
--       nothing lost, the store back to its baseline after;
--   (5) the driver SIGKILLed mid-workload: no process, /dev/shm file or
--       session directory left;
--   (6) lray.put objects passed as arguments to tasks whose workers are
--       killed: the store empty after the driver releases them.
-- Case (7), whole nodes killed, is in chaos/nodes_spec.lua.
-- Fixed seeds. Scaled by hand with LRAY_CHAOS_SCALE (counts times S,
-- default 1) and LRAY_CHAOS_SEED (default 12). Each case prints one
-- "[chaos] ..." line with its figures.
local cluster = require("spec.helpers.cluster")
local testing = require("lray.testing")

local BIN = os.getenv("LRAY_BIN") or "build/lray"
local SCALE = tonumber(os.getenv("LRAY_CHAOS_SCALE") or "1")
local SEED = tonumber(os.getenv("LRAY_CHAOS_SEED") or "12")

local lray, runtime, core

setup(function()
  lray = cluster.start({ num_cpus = 2, include_dashboard = false })
  runtime = require("lray.runtime")
  core = require("lray._core")
end)

teardown(function()
  cluster.stop()
end)

-- -- Helpers ------------------------------------------------------------------

local function report(fmt, ...)
  io.stdout:write("\n[chaos] " .. fmt:format(...) .. "\n")
  io.stdout:flush()
end

local function workers(state)
  local pids = {}
  for _, w in ipairs(runtime.state({ t = "list", what = "workers" }).items or {}) do
    if type(w.pid) == "number" and w.pid > 1 and (state == nil or state[w.state]) then
      pids[#pids + 1] = w.pid
    end
  end
  return pids
end

-- SIGKILLs one random pid of the list; returns true if one was killed.
local function kill_one(pids)
  if #pids == 0 then return false end
  return core.kill(pids[math.random(#pids)], 9) == true
end

-- Waits for every ref of refs, calling kill() every `every` seconds until
-- then; raises after `bound` seconds. Returns the number of kills made.
local function drive(refs, every, bound, kill)
  local pending, kills = refs, 0
  local deadline = lray.now() + bound
  while #pending > 0 do
    assert(lray.now() < deadline, ("%d of %d refs still pending after %g s"):format(#pending,
      #refs, bound))
    local _, not_ready = lray.wait(pending, { num_returns = #pending, timeout = every })
    pending = not_ready
    if #pending > 0 and kill() then kills = kills + 1 end
  end
  return kills
end

-- Polls cond() until it is true or `bound` seconds pass; returns the time
-- it took, or nil.
local function within(bound, cond)
  local t0 = lray.now()
  repeat
    if cond() then return lray.now() - t0 end
    lray.sleep(0.01)
  until lray.now() - t0 > bound
  return nil
end

local function cpus_back()
  local total = lray.cluster_resources().CPU
  return within(5, function() return lray.available_resources().CPU == total end)
end

-- -- (1) (2) Tasks under kills ------------------------------------------------

-- Submits n tasks (task i returns 3i + 1 after 5 ms) with max_retries and
-- waits for them while a leased worker is killed every 100 ms; returns the
-- refs, the kills and the seconds it took.
local function tasks_under_kills(n, max_retries)
  local f = lray.remote({ max_retries = max_retries }, function(i)
    lray.sleep(0.005)
    return i * 3 + 1
  end)
  local t0 = lray.now()
  local refs = {}
  for i = 1, n do refs[i] = f.remote(i) end
  local kills = drive(refs, 0.1, 60 * SCALE,
    function() return kill_one(workers({ leased = true })) end)
  return refs, kills, lray.now() - t0
end

describe("tasks while a random worker is SIGKILLed every 100 ms", function()
  it("(1) max_retries = -1: every result is right and the CPUs come back within 5 s", function()
    math.randomseed(SEED)
    local n = 2000 * SCALE
    local refs, kills, took = tasks_under_kills(n, -1)
    local values = lray.get(refs, { timeout = 10 })
    for i = 1, n do assert.are.equal(i * 3 + 1, values[i], "task " .. i) end
    local back = cpus_back()
    assert.is_not_nil(back, "available CPUs not back to total within 5 s")
    report("(1) %d tasks, max_retries = -1: %d workers killed, %.1f s, all %d results right,"
      .. " CPUs back to total %.3f s after", n, kills, took, n, back)
  end)

  it("(2) max_retries = 0: every ref is its value or a WorkerCrashedError; nothing hangs", function()
    math.randomseed(SEED + 1)
    local n = 1000 * SCALE
    local refs, kills, took = tasks_under_kills(n, 0)
    local values, crashed = 0, 0
    for i = 1, n do
      local ok, v = pcall(lray.get, refs[i], { timeout = 5 })
      if ok then
        assert.are.equal(i * 3 + 1, v, "task " .. i)
        values = values + 1
      else
        assert(lray.is_error(v, "WorkerCrashedError"), "task " .. i .. ": " .. tostring(v))
        crashed = crashed + 1
      end
    end
    assert.is_true(kills == 0 or crashed > 0, "workers were killed but no task crashed")
    local back = cpus_back()
    assert.is_not_nil(back, "available CPUs not back to total within 5 s")
    report("(2) %d tasks, max_retries = 0: %d workers killed, %.1f s, %d values,"
      .. " %d WorkerCrashedError, CPUs back %.3f s after", n, kills, took, values, crashed, back)
  end)
end)

-- -- (3) Actors -----------------------------------------------------------------

describe("restarting actors reporting to an actor that is never killed", function()
  it("(3) every sequence number arrives, first arrivals in order per actor", function()
    math.randomseed(SEED + 2)
    local nactors, steps = 4, 400 * SCALE
    local Collector = {}
    function Collector:init() self.seen = {} end
    function Collector:report(id, i)
      local s = self.seen[id] or {}
      self.seen[id] = s
      s[#s + 1] = i
      return true
    end
    function Collector:seen_by(id) return self.seen[id] or {} end
    function Collector:pid() return require("lray._core").getpid() end
    local collector = lray.remote(Collector).remote()
    local collector_pid = lray.get(collector.pid.remote())

    local Reporter = {}
    function Reporter:init(id, to) self.id, self.to = id, to end
    function Reporter:step(i)
      lray.sleep(0.01)
      return lray.get(self.to.report.remote(self.id, i))
    end
    local R = lray.remote({ max_restarts = -1, max_task_retries = -1 }, Reporter)
    local reporters, refs = {}, {}
    for a = 1, nactors do reporters[a] = R.remote(a, collector) end
    local t0 = lray.now()
    for i = 1, steps do
      for a = 1, nactors do refs[#refs + 1] = reporters[a].step.remote(i) end
    end
    local kills = drive(refs, 0.3, 120 * SCALE, function()
      local pids = {}
      for _, p in ipairs(workers({ actor = true })) do
        if p ~= collector_pid then pids[#pids + 1] = p end
      end
      return kill_one(pids)
    end)
    for _, r in ipairs(refs) do assert.is_true(lray.get(r, { timeout = 10 })) end
    local took = lray.now() - t0
    local dups = 0
    for a = 1, nactors do
      local seen = lray.get(collector.seen_by.remote(a))
      -- A call in flight when its actor died is sent again (at least once):
      -- a number may arrive twice, but the first arrivals are 1..steps in order.
      local next_new, first = 1, {}
      for _, i in ipairs(seen) do
        if first[i] then
          dups = dups + 1
        else
          assert.are.equal(next_new, i, "actor " .. a .. ": out of order")
          first[i], next_new = true, next_new + 1
        end
      end
      assert.are.equal(steps + 1, next_new, "actor " .. a .. ": numbers missing")
    end
    assert.are.equal(collector_pid, lray.get(collector.pid.remote()))
    report("(3) %d actors x %d calls, max_restarts = max_task_retries = -1: %d actor kills,"
      .. " %.1f s, all %d numbers arrived in order, %d sent twice after a kill", nactors, steps,
      kills, took, nactors * steps, dups)
  end)
end)

-- -- (4) Objects ----------------------------------------------------------------

describe("objects borrowed across tasks while workers die", function()
  it("(4) nothing is lost and the store is back to its baseline after", function()
    math.randomseed(SEED + 3)
    local function store()
      local st = runtime.state({ t = "status" })
      return st.store.used, st.objects
    end
    collectgarbage()
    local base_used, base_objects
    within(5, function()
      base_used, base_objects = store()
      return base_used == 0
    end)
    local nobj, ntasks = 32, 400 * SCALE
    local SIZE = 200 * 1024
    local objs = {}
    for k = 1, nobj do objs[k] = lray.put(string.rep(string.char(64 + k % 26), SIZE) .. k) end
    -- A task borrows the refs it gets nested in a table, passes some on to a
    -- nested task, and returns a large value (stored by the worker, owned by
    -- the driver).
    local check = lray.remote({ max_retries = -1 }, function(i, box)
      local sum = 0
      for _, r in ipairs(box) do
        local s = lray.get(r)
        sum = sum + #s + s:byte(1)
      end
      lray.sleep(0.003)
      return sum, string.rep("r", 150 * 1024) .. i, i
    end)
    local outer = lray.remote({ max_retries = -1 }, function(i, box, inner)
      return lray.get(inner.remote(i, { box[1], box[2] }))
    end)
    local function want(box_ids)
      local sum = 0
      for _, k in ipairs(box_ids) do sum = sum + SIZE + #tostring(k) + (64 + k % 26) end
      return sum
    end
    local t0 = lray.now()
    local refs, wants = {}, {}
    for i = 1, ntasks do
      local a, b, c = math.random(nobj), math.random(nobj), math.random(nobj)
      if i % 4 == 0 then
        refs[i], wants[i] = outer.remote(i, { objs[a], objs[b] }, check), want({ a, b })
      else
        refs[i], wants[i] = check.remote(i, { objs[a], objs[b], objs[c] }), want({ a, b, c })
      end
    end
    local kills = drive(refs, 0.1, 120 * SCALE,
      function() return kill_one(workers({ leased = true })) end)
    local lost = 0
    for i = 1, ntasks do
      local ok, sum, big, who = pcall(lray.get, refs[i], { timeout = 10 })
      if not ok then lost = lost + 1 end
      assert(ok, "task " .. i .. ": " .. tostring(sum))
      assert.are.equal(i, who, "task " .. i .. " got the result of another task")
      assert.are.equal(wants[i], sum, "task " .. i)
      assert.are.equal(150 * 1024 + #tostring(i), #big, "task " .. i)
    end
    for k = 1, nobj do assert.are.equal(SIZE + #tostring(k), #lray.get(objs[k])) end
    local took = lray.now() - t0
    local peak_used, peak_objects = store()
    for _, r in ipairs(refs) do r:release() end
    for _, r in ipairs(objs) do r:release() end
    refs, objs = nil, nil -- luacheck: ignore 311 (drops them for the collector)
    collectgarbage()
    local used, objects
    local back = within(10, function()
      used, objects = store()
      return used == base_used and objects == base_objects
    end)
    local cpus = cpus_back()
    report("(4) %d tasks borrowing %d objects of 200 KiB (1 in 4 nested), %d workers killed,"
      .. " %.1f s, %d lost; store %d B / %d objects before release, %d B / %d objects after"
      .. " (%s)", ntasks, nobj, kills, took, lost, peak_used, peak_objects, used, objects,
      back and ("baseline %.3f s after release"):format(back) or "NOT back to baseline in 10 s")
    if not back then
      local left = {}
      for _, o in ipairs(runtime.state({ t = "list", what = "objects" }).items or {}) do
        left[#left + 1] = ("%s size %s count %s owner_pid %s call_site %s"):format(o.object_id,
          tostring(o.size), tostring(o.count), tostring(o.owner_pid), tostring(o.call_site))
      end
      error(("store not back to baseline: used %d (baseline %d), objects %d (baseline %d):\n  %s")
        :format(used, base_used, objects, base_objects, table.concat(left, "\n  ")))
    end
    assert.is_not_nil(cpus, "available CPUs not back to total within 5 s")
  end)
end)

-- -- (6) Arguments lent to killed workers ---------------------------------------

describe("objects passed as arguments to tasks whose workers are killed", function()
  it("(6) are freed once the driver releases them", function()
    math.randomseed(SEED + 5)
    local rounds = 150 * SCALE
    local length = lray.remote({ max_retries = -1 }, function(s)
      lray.sleep(0.003)
      return #s
    end)
    local kills, t0 = 0, lray.now()
    for round = 1, rounds do
      local big = lray.put(string.rep("x", 1024 * 1024))
      local refs = {}
      for i = 1, 4 do refs[i] = length.remote(big) end
      if round % 3 == 0 and kill_one(workers({ leased = true })) then kills = kills + 1 end
      for i = 1, 4 do assert.are.equal(1024 * 1024, lray.get(refs[i], { timeout = 10 })) end
      big:release()
    end
    local took = lray.now() - t0
    collectgarbage()
    local st
    local back = within(10, function()
      st = runtime.state({ t = "status" })
      return st.objects == 0 and st.store.used == 0
    end)
    report("(6) %d puts of 1 MiB, each the argument of 4 tasks, %d workers killed, %.1f s;"
      .. " after release %d objects / %d B (%s)", rounds, kills, took, st.objects, st.store.used,
      back and ("empty %.3f s after"):format(back) or "NOT empty in 10 s")
    assert(back, ("%d objects (%d B) left in the store"):format(st.objects, st.store.used))
  end)
end)

-- -- (5) Driver SIGKILL ---------------------------------------------------------

describe("a driver SIGKILLed in the middle of its work", function()
  it("(5) leaves no process, no /dev/shm/lray-* file and no session directory", function()
    local rounds = 3 * SCALE
    local worst = 0
    local q = function(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
    for round = 1, rounds do
      -- The shell prints its pid and becomes the driver (exec).
      local p = assert(io.popen("echo pid $$; exec " .. q(BIN) .. " chaos/victim_driver.lua "
        .. (SEED + round)))
      local pid = tonumber(p:read("*l"):match("pid (%d+)"))
      local line = p:read("*l")
      assert(line, "the victim driver printed nothing")
      local session, node = line:match("^session (%S+) node (%-?%d+)$")
      assert(session and tonumber(node) > 0, "unexpected line: " .. line)
      -- Let it work a moment longer (a different moment each round).
      lray.sleep(0.1 * round)
      local procs_before = #testing.session_procs(session)
      assert.is_true(core.kill(pid, 9))
      local dash_pat = "'lray [_]dashboard .*--owner " .. node .. "( |$)'"
      local left
      local took = within(10, function()
        local procs = testing.session_procs(session)
        local shm = {}
        for name in pairs(testing.shm_files()) do
          if name:sub(1, #node + 6) == "lray-" .. node .. "-" then shm[#shm + 1] = name end
        end
        local dash = io.popen("pgrep -f " .. dash_pat):read("*a")
        local dir = core.exists(session)
        left = ("processes: %s; shm: %s; dashboard: %s; session dir: %s"):format(
          table.concat(procs, ", "), table.concat(shm, " "), dash, tostring(dir))
        return #procs == 0 and #shm == 0 and dash == "" and not dir
      end)
      p:close()
      assert(took, "round " .. round .. ": 10 s after the driver's SIGKILL: " .. tostring(left))
      if took > worst then worst = took end
      report("(5) round %d: driver SIGKILLed with %d lray processes running; all gone, shm"
        .. " and session dir removed %.3f s after", round, procs_before, took)
    end
    report("(5) %d rounds, slowest cleanup %.3f s", rounds, worst)
  end)
end)
