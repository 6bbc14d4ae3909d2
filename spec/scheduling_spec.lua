-- API.md "Resources and the cluster", the resource options of tasks and
-- actors, and docs/scheduling.md: parallelism bounded by CPUs, custom
-- resources, fractional and whole GPUs with their ids and
-- CUDA_VISIBLE_DEVICES, available/cluster resources, resources held by
-- actors, nested tasks on a full node, infeasible requests, nothing leaked,
-- options checked at definition time, and `lray status`.
--
-- Each describe block starts its own embedded cluster with the resources it
-- needs (GPUs are logical: no hardware is used).
local cluster = require("spec.helpers.cluster")
local msg, fails = cluster.msg, cluster.fails

local BIN = os.getenv("LRAY_BIN") or "build/lray"

local lray = require("lray")

-- -- Helpers -------------------------------------------------------------------

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command line; returns its stdout+stderr and exit status.
local function run(cmd)
  local f = assert(io.popen(cmd .. " 2>&1; echo \"__status=$?\""))
  local out = f:read("*a")
  f:close()
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return (out:gsub("__status=%d+%s*$", "")), status
end

-- Writes a driver script to a temporary file; returns its path.
local function script(src)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  return path
end



-- Polls fn() every 20 ms until it returns true or `timeout` seconds pass;
-- returns whether it became true.
local function eventually(fn, timeout)
  local deadline = lray.now() + (timeout or 3)
  repeat
    if fn() then return true end
    lray.sleep(0.02)
  until lray.now() > deadline
  return fn() and true or false
end

-- The most intervals {s, e} that are running at one instant.
local function max_overlap(iv)
  local best = 0
  for _, a in ipairs(iv) do
    local n = 0
    for _, b in ipairs(iv) do
      if b[1] <= a[1] and a[1] < b[2] then n = n + 1 end
    end
    if n > best then best = n end
  end
  return best
end

local function fmt_res(t)
  local keys = {}
  for k, v in pairs(t) do keys[#keys + 1] = k .. "=" .. tostring(v) end
  table.sort(keys)
  return "{" .. table.concat(keys, ", ") .. "}"
end

-- Asserts that, once idle, every available amount equals the total.
local function assert_all_free(timeout)
  local total = lray.cluster_resources()
  local avail
  local ok = eventually(function()
    avail = lray.available_resources()
    for k, v in pairs(total) do
      if avail[k] ~= v then return false end
    end
    return true
  end, timeout or 3)
  assert(ok, "resources are still held once idle: available " .. fmt_res(avail)
    .. " total " .. fmt_res(total))
end

-- A task that records when it ran: returns its start, its end and extra info.
local function timed_body(secs)
  return function()
    local t0 = lray.now()
    lray.sleep(secs)
    return { t0, lray.now() }
  end
end

-- Makes sure n workers are up, so the timing tests do not measure start-up.
local function warm(n)
  local f = lray.remote(function() lray.sleep(0.05); return true end)
  local refs = {}
  for i = 1, n do refs[i] = f.remote() end
  lray.get(refs, { timeout = 10 })
end

-- -- CPUs ----------------------------------------------------------------------

describe("CPUs bound parallelism (num_cpus = 2)", function()
  setup(function() lray = cluster.start({ num_cpus = 2, num_gpus = 0 }) end)
  teardown(function() cluster.stop() end)

  it("four 0.3 s tasks take two rounds, two at a time", function()
    warm(2)
    local f = lray.remote(timed_body(0.3))
    local t0 = lray.now()
    local refs = {}
    for i = 1, 4 do refs[i] = f.remote() end
    local iv = lray.get(refs, { timeout = 10 })
    local took = lray.now() - t0
    assert(took >= 0.55, ("four 0.3 s tasks on 2 CPUs took %.3f s: more than two ran at once"):format(took))
    assert(took < 1.2, ("four 0.3 s tasks on 2 CPUs took %.3f s: expected about two rounds"):format(took))
    assert.are.equal(2, max_overlap(iv))
  end)

  it("tasks that need num_cpus = 2 run one at a time", function()
    warm(2)
    local f = lray.remote({ num_cpus = 2 }, timed_body(0.2))
    local t0 = lray.now()
    local refs = {}
    for i = 1, 3 do refs[i] = f.remote() end
    local iv = lray.get(refs, { timeout = 10 })
    local took = lray.now() - t0
    assert.are.equal(1, max_overlap(iv))
    assert(took >= 0.55, ("three 0.2 s tasks needing all CPUs took only %.3f s"):format(took))
    assert(took < 2.0, ("three 0.2 s tasks needing all CPUs took %.3f s"):format(took))
  end)

  it("tasks that need num_cpus = 0.5 run four at a time on 2 CPUs", function()
    -- API.md: tasks run "in parallel up to the resources of the cluster".
    warm(2)
    local f = lray.remote({ num_cpus = 0.5 }, timed_body(0.4))
    local t0 = lray.now()
    local refs = {}
    for i = 1, 4 do refs[i] = f.remote() end
    local iv = lray.get(refs, { timeout = 10 })
    local took = lray.now() - t0
    assert.are.equal(4, max_overlap(iv))
    assert(took < 0.75, ("four 0.4 s tasks of 0.5 CPU on 2 CPUs took %.3f s"):format(took))
  end)

  it("a request no node has is never started, and the driver is warned once naming it", function()
    local path = script([[
local lray = require("lray")
lray.init{num_cpus = 1, num_gpus = 0}
local needs = lray.remote({resources = {Other = 1}, name = "needs_other"}, function() return 1 end)
local r = needs.remote()
local r2 = needs.remote()
local t0 = lray.now()
local ready, not_ready = lray.wait({r}, {timeout = 0.5})
io.stdout:write(("WAIT ready=%d not_ready=%d same=%s took=%.3f\n"):format(#ready, #not_ready,
  tostring(not_ready[1] == r), lray.now() - t0))
io.stdout:flush()
lray.wait({r, r2}, {timeout = 0.5})
io.stdout:write("ONE_SECOND_PASSED\n")
io.stdout:flush()
-- the waiting task holds back nothing that fits
local fine = lray.remote(function() return "fine" end)
io.stdout:write("OTHER ", tostring(lray.get(fine.remote(), {timeout = 5})), "\n")
io.stdout:flush()
lray.shutdown()
]])
    local out, status = run(q(BIN) .. " " .. q(path))
    os.remove(path)
    assert.are.equal(0, status, out)
    local took = tonumber(out:match("WAIT ready=0 not_ready=1 same=true took=([%d.]+)"))
    assert(took, "lray.wait did not report the infeasible task not ready:\n" .. out)
    assert(took >= 0.45 and took < 2, "wait with timeout 0.5 took " .. took .. " s")
    assert.matches("OTHER fine", out, 1, true)
    -- the warning names the task and the missing resource, within one second
    local warn_at, warnings = nil, 0
    local pos = 1
    for line in out:gmatch("[^\n]*") do
      if line:find("needs_other", 1, true) and line:find("Other", 1, true)
          and not line:find("^WAIT") then
        warnings = warnings + 1
        warn_at = warn_at or out:find(line, pos, true)
      end
    end
    assert(warn_at, "no warning naming task 'needs_other' and resource 'Other' on stderr:\n" .. out)
    local mark = out:find("ONE_SECOND_PASSED", 1, true)
    assert(mark and warn_at < mark, "the warning came later than 1 s after submission:\n" .. out)
    assert(warnings == 1, "expected the warning once, got " .. warnings .. " times:\n" .. out)
  end)

  it("no resource is leaked by 2,000 tasks, crashing tasks and cancelled tasks", function()
    local total = lray.cluster_resources()
    local id = lray.remote(function(i) return i end)
    local refs = {}
    for i = 1, 2000 do refs[i] = id.remote(i) end
    local vs = lray.get(refs, { timeout = 30 })
    assert.are.equal(2000, #vs)
    assert.are.equal(2000, vs[2000])
    assert_all_free()

    local crash = lray.remote({ max_retries = 0 }, function() os.exit(1) end)
    for _ = 1, 3 do
      local e = fails(lray.get, crash.remote(), { timeout = 10 })
      assert(lray.is_error(e, "WorkerCrashedError"), "expected WorkerCrashedError, got " .. tostring(e))
    end
    assert_all_free()

    -- one cancelled while running, one cancelled while queued behind it
    local long = lray.remote({ num_cpus = 2 }, function() lray.sleep(10); return "finished" end)
    local running = long.remote()
    local queued = long.remote()
    assert(eventually(function() return lray.available_resources().CPU == 0 end, 3),
      "the 2-CPU task never started")
    lray.cancel(queued)
    lray.cancel(running)
    for _, r in ipairs({ running, queued }) do
      local e = fails(lray.get, r, { timeout = 10 })
      assert(lray.is_error(e, "TaskCancelledError"), "expected TaskCancelledError, got " .. tostring(e))
    end
    assert_all_free()
    assert.are.same(total, lray.cluster_resources())

    -- and the node still runs two tasks at once
    warm(2)
    local f = lray.remote(timed_body(0.3))
    local iv = lray.get({ f.remote(), f.remote() }, { timeout = 10 })
    assert.are.equal(2, max_overlap(iv))
  end)
end)

-- -- Custom resources --------------------------------------------------------------

describe("custom resources (num_cpus = 4, Custom = 2)", function()
  setup(function() lray = cluster.start({ num_cpus = 4, num_gpus = 0, resources = { Custom = 2 } }) end)
  teardown(function() cluster.stop() end)

  it("tasks needing {Custom = 1} run at most two at once", function()
    warm(4)
    local f = lray.remote({ resources = { Custom = 1 } }, timed_body(0.3))
    local t0 = lray.now()
    local refs = {}
    for i = 1, 4 do refs[i] = f.remote() end
    local iv = lray.get(refs, { timeout = 10 })
    local took = lray.now() - t0
    assert.are.equal(2, max_overlap(iv))
    assert(took >= 0.55, ("four 0.3 s tasks on Custom = 2 took only %.3f s"):format(took))
    -- tasks without the resource are not held back by them
    local g = lray.remote(timed_body(0.3))
    refs = {}
    for i = 1, 2 do refs[i] = f.remote() end
    for i = 3, 4 do refs[i] = g.remote() end
    iv = lray.get(refs, { timeout = 10 })
    assert.are.equal(4, max_overlap(iv))
  end)

  it("a task needing {Custom = 3} never runs, and does not block {Custom = 1}", function()
    -- The driver is warned once on stderr; catch the warning here (a check,
    -- not noise in the middle of `make test`'s output).
    local real, said = io.stderr, {}
    io.stderr = { write = function(self, ...)  -- luacheck: ignore 122
      for i = 1, select("#", ...) do said[#said + 1] = tostring((select(i, ...))) end
      return self
    end }
    local r
    local ok, e = pcall(function()
      local big = lray.remote({ resources = { Custom = 3 } }, function() return "ran" end)
      r = big.remote()
      local small = lray.remote({ resources = { Custom = 1 } }, function() return "small" end)
      assert.are.equal("small", lray.get(small.remote(), { timeout = 5 }))
      local deadline = lray.now() + 5
      repeat
        local ready, not_ready = lray.wait({ r }, { timeout = 0.1 })
        assert.are.equal(0, #ready)
        assert.are.equal(1, #not_ready)
      until table.concat(said):find("\n", 1, true) or lray.now() > deadline
    end)
    io.stderr = real  -- luacheck: ignore 122
    assert(ok, e)
    assert.matches("^lray: warning: task 'big' cannot be scheduled: it needs 3 Custom but no node"
      .. " has that much %(this node has 2%)", table.concat(said))
    lray.cancel(r)
  end)
end)

-- -- GPUs --------------------------------------------------------------------------

describe("GPU ids (num_cpus = 4, num_gpus = 2)", function()
  setup(function() lray = cluster.start({ num_cpus = 4, num_gpus = 2 }) end)
  teardown(function() cluster.stop() end)

  local function gpu_body(secs)
    return function()
      local t0 = lray.now()
      lray.sleep(secs)
      return { t0, lray.now(), ids = lray.get_gpu_ids(),
        cvd = os.getenv("CUDA_VISIBLE_DEVICES"),
        wid = lray.get_runtime_context().worker_id }
    end
  end

  it("four num_gpus = 0.5 tasks running together pack two per GPU id", function()
    warm(4)
    local f = lray.remote({ num_gpus = 0.5 }, gpu_body(0.4))
    local refs = {}
    for i = 1, 4 do refs[i] = f.remote() end
    local rs = lray.get(refs, { timeout = 10 })
    assert.are.equal(4, max_overlap(rs))
    local per_id = {}
    for _, r in ipairs(rs) do
      assert.are.equal(1, #r.ids)
      local id = r.ids[1]
      assert(id == 0 or id == 1, "GPU id out of range: " .. tostring(id))
      per_id[id] = (per_id[id] or 0) + 1
      assert.are.equal(tostring(id), r.cvd)
    end
    assert.are.same({ [0] = 2, [1] = 2 }, per_id)
    -- A worker lease lingers a moment after its last task (docs/architecture.md).
    assert(eventually(function() return lray.available_resources().GPU == 2 end, 3),
      "the GPUs did not come back: " .. fmt_res(lray.available_resources()))
  end)

  it("a whole request (num_gpus = 2) gets two distinct ids in CUDA_VISIBLE_DEVICES", function()
    local f = lray.remote({ num_gpus = 2 }, gpu_body(0))
    local r = lray.get(f.remote(), { timeout = 10 })
    assert.are.equal(2, #r.ids)
    local a, b = r.ids[1], r.ids[2]
    assert(a ~= b, "the two GPU ids are the same: " .. tostring(a))
    local sorted = { a, b }
    table.sort(sorted)
    assert.are.same({ 0, 1 }, sorted)
    assert.are.equal(a .. "," .. b, r.cvd)
    -- one GPU each: two tasks at once get different ids
    local one = lray.remote({ num_gpus = 1 }, gpu_body(0.3))
    local rs = lray.get({ one.remote(), one.remote() }, { timeout = 10 })
    assert.are.equal(2, max_overlap(rs))
    assert.are.equal(1, #rs[1].ids)
    assert.are.equal(1, #rs[2].ids)
    assert(rs[1].ids[1] ~= rs[2].ids[1], "two 1-GPU tasks running together got the same id")
    assert.are.equal(tostring(rs[1].ids[1]), rs[1].cvd)
    assert.are.equal(tostring(rs[2].ids[1]), rs[2].cvd)
  end)

  it("a task without GPUs on a worker that held GPUs sees no CUDA_VISIBLE_DEVICES", function()
    local g = lray.remote({ num_gpus = 1 }, gpu_body(0))
    local plain = lray.remote(gpu_body(0))
    local reused = false
    for _ = 1, 20 do
      local r = lray.get(g.remote(), { timeout = 10 })
      assert.are.equal(tostring(r.ids[1]), r.cvd)
      -- Its lease handed back, the GPU task's worker is the warmest idle one.
      assert(eventually(function() return lray.available_resources().GPU == 2 end, 3))
      local p = lray.get(plain.remote(), { timeout = 10 })
      assert.is_nil(p.cvd)
      assert.are.same({}, p.ids)
      if p.wid == r.wid then reused = true; break end
    end
    assert(reused, "no task without GPUs ran on a worker that had just held a GPU")
  end)
end)

-- -- Resource views and actors ---------------------------------------------------------

describe("available_resources / cluster_resources and actors (num_cpus = 2, num_gpus = 4, Custom = 2)", function()
  setup(function()
    lray = cluster.start({ num_cpus = 2, num_gpus = 4, resources = { Custom = 2 } })
  end)
  teardown(function() cluster.stop() end)

  local function avail(k) return lray.available_resources()[k] end

  it("totals are what init gave; everything is available when idle", function()
    local total = lray.cluster_resources()
    assert.are.equal(2, total.CPU)
    assert.are.equal(4, total.GPU)
    assert.are.equal(2, total.Custom)
    assert(type(total.memory) == "number" and total.memory > 0, "no memory total")
    assert(type(total.object_store_memory) == "number" and total.object_store_memory > 0,
      "no object_store_memory total")
    assert_all_free()
    local a = lray.available_resources()
    for k in pairs(a) do assert(total[k], "available has a key the total lacks: " .. k) end
  end)

  it("available CPU drops by 1 while a num_cpus = 1 task runs, then comes back", function()
    local f = lray.remote({ num_cpus = 1 }, function() lray.sleep(0.8); return "done" end)
    local r = f.remote()
    assert(eventually(function() return avail("CPU") == 1 end, 0.7),
      "available CPU did not drop to 1 while the task ran: " .. fmt_res(lray.available_resources()))
    assert.are.equal(4, avail("GPU"))
    assert.are.equal(2, avail("Custom"))
    assert.are.equal("done", lray.get(r, { timeout = 10 }))
    assert(eventually(function() return avail("CPU") == 2 end, 2),
      "available CPU did not come back to 2: " .. fmt_res(lray.available_resources()))
  end)

  it("fractional GPU requests add up exactly and give everything back", function()
    local quarter = lray.remote({ num_gpus = 0.25 }, function() lray.sleep(0.5); return true end)
    local refs = { quarter.remote(), quarter.remote() }
    assert(eventually(function() return avail("GPU") == 3.5 end, 0.45),
      "two 0.25-GPU tasks running: available GPU is " .. tostring(avail("GPU")) .. ", expected 3.5")
    lray.get(refs, { timeout = 10 })
    local tenth = lray.remote({ num_gpus = 0.1 }, function() return lray.get_gpu_ids()[1] end)
    refs = {}
    for i = 1, 10 do refs[i] = tenth.remote() end
    lray.get(refs, { timeout = 10 })
    assert(eventually(function() return avail("GPU") == 4 end, 2),
      "after fractional tasks, available GPU is " .. ("%.17g"):format(avail("GPU")) .. ", expected exactly 4")
  end)

  it("an actor with num_cpus = 1 holds it for life; lray.kill gives it back", function()
    local A = lray.remote({ num_cpus = 1 }, { ping = function() return "pong" end })
    local a = A.remote()
    assert.are.equal("pong", lray.get(a.ping.remote(), { timeout = 10 }))
    assert.are.equal(1, avail("CPU"))
    lray.sleep(0.2)
    assert.are.equal("pong", lray.get(a.ping.remote(), { timeout = 10 }))
    assert.are.equal(1, avail("CPU"))
    lray.kill(a)
    assert(eventually(function() return avail("CPU") == 2 end, 3),
      "the killed actor's CPU did not come back: " .. fmt_res(lray.available_resources()))
  end)

  -- Issue #9: the actor gave its CPU back while blocked in get.
  it("an actor with num_cpus = 1 keeps its CPU while blocked in lray.get", function()
    local flag = os.tmpname()
    os.remove(flag)
    local busy = lray.remote(function(path)
      -- Holds its CPU (lray.sleep does not give it back) until told to stop.
      local deadline = lray.now() + 30
      while lray.now() < deadline do
        local f = io.open(path)
        if f then f:close(); return "done" end
        lray.sleep(0.01)
      end
      return "timed out"
    end)
    local A = lray.remote({ num_cpus = 1 }, { wait_on = function(_, path) return lray.get(busy.remote(path)) end })
    local a = A.remote()
    local r = a.wait_on.remote(flag)
    -- The actor holds 1 CPU and its task the other: none is left. (Had the
    -- blocked actor given its CPU back, one would stay free.)
    local zero = eventually(function() return avail("CPU") == 0 end, 10)
    io.open(flag, "w"):close()
    assert.is_true(zero, "a CPU stayed free: " .. fmt_res(lray.available_resources()))
    assert.are.equal("done", lray.get(r, { timeout = 30 }))
    os.remove(flag)
    lray.kill(a)
    assert(eventually(function() return avail("CPU") == 2 end, 3))
  end)

  it("an actor with resources = {Custom = 1} holds it for life; lray.kill gives it back", function()
    local A = lray.remote({ resources = { Custom = 1 } }, { ping = function() return "pong" end })
    local a = A.remote()
    assert.are.equal("pong", lray.get(a.ping.remote(), { timeout = 10 }))
    assert.are.equal(1, avail("Custom"))
    lray.kill(a)
    assert(eventually(function() return avail("Custom") == 2 end, 3),
      "the killed actor's Custom did not come back: " .. fmt_res(lray.available_resources()))
  end)

  it("an actor with num_gpus = 1 sees its GPU id and CUDA_VISIBLE_DEVICES in methods", function()
    local G = lray.remote({ num_gpus = 1 }, {
      info = function() return lray.get_gpu_ids(), os.getenv("CUDA_VISIBLE_DEVICES") end,
    })
    local a = G.remote()
    local ids, cvd = lray.get(a.info.remote(), { timeout = 10 })
    assert.are.equal(1, #ids)
    assert(ids[1] >= 0 and ids[1] <= 3, "GPU id out of range: " .. tostring(ids[1]))
    assert.are.equal(tostring(ids[1]), cvd)
    assert.are.equal(3, avail("GPU"))
    -- a second one gets another id
    local b = G.remote()
    local ids2, cvd2 = lray.get(b.info.remote(), { timeout = 10 })
    assert.are.equal(1, #ids2)
    assert(ids2[1] ~= ids[1], "two 1-GPU actors got the same GPU id " .. tostring(ids[1]))
    assert.are.equal(tostring(ids2[1]), cvd2)
    assert.are.equal(2, avail("GPU"))
    lray.kill(a)
    lray.kill(b)
    assert(eventually(function() return avail("GPU") == 4 end, 3),
      "the killed actors' GPUs did not come back: " .. fmt_res(lray.available_resources()))
  end)

  it("a default actor holds 0 CPUs", function()
    local A = lray.remote({ ping = function() return "pong" end })
    local a = A.remote()
    assert.are.equal(2, avail("CPU"))
    assert.are.equal("pong", lray.get(a.ping.remote(), { timeout = 10 }))
    assert.are.equal(2, avail("CPU"))
    -- a task needing every CPU still runs while it lives
    local all = lray.remote({ num_cpus = 2 }, function() return "ran" end)
    assert.are.equal("ran", lray.get(all.remote(), { timeout = 10 }))
    assert.are.equal("pong", lray.get(a.ping.remote(), { timeout = 10 }))
    lray.kill(a)
    assert_all_free()
  end)
end)

-- -- Nested tasks on one CPU ---------------------------------------------------------

describe("nested tasks on a 1-CPU node", function()
  setup(function() lray = cluster.start({ num_cpus = 1, num_gpus = 0 }) end)
  teardown(function() cluster.stop() end)

  it("task -> child -> grandchild, each blocked in lray.get, finishes", function()
    local grandchild = lray.remote(function(x) return x + 1 end)
    local child = lray.remote(function(x) return lray.get(grandchild.remote(x)) * 10 end)
    local parent = lray.remote(function(x) return lray.get(child.remote(x)) + 5 end)
    assert.are.equal((3 + 1) * 10 + 5, lray.get(parent.remote(3), { timeout = 20 }))
    -- two such chains at once, and a fan-out
    assert.are.same({ 25, 45 }, lray.get({ parent.remote(1), parent.remote(3) }, { timeout = 20 }))
    local fan = lray.remote(function()
      local refs = {}
      for i = 1, 4 do refs[i] = child.remote(i) end
      local s = 0
      for _, v in ipairs(lray.get(refs)) do s = s + v end
      return s
    end)
    assert.are.equal((2 + 3 + 4 + 5) * 10, lray.get(fan.remote(), { timeout = 20 }))
    assert_all_free()
  end)

  -- Issue #9: the pool stopped at 4 x CPUs + 8 workers, all blocked in get.
  it("20 tasks that each wait on a nested task all finish", function()
    local inner = lray.remote(function(i) return i * 2 end)
    local outer = lray.remote(function(i) return lray.get(inner.remote(i)) end)
    local refs = {}
    for i = 1, 20 do refs[i] = outer.remote(i) end
    local got = lray.get(refs, { timeout = 60 })
    for i = 1, 20 do assert.are.equal(i * 2, got[i]) end
    assert_all_free()
  end)

  -- Ray's test_fair_queueing (ray-project/ray#3644), with 1000 chains.
  it("1000 chains f -> g -> h, each blocked in get, all finish", function()
    local h = lray.remote(function() return 0 end)
    local g = lray.remote(function() return lray.get(h.remote()) end)
    local f = lray.remote(function() return lray.get(g.remote()) end)
    local refs = {}
    for i = 1, 1000 do refs[i] = f.remote() end
    local ready = lray.wait(refs, { num_returns = 1000, timeout = 120 })
    assert.are.equal(1000, #ready)
  end)

  -- Ray's test_blocking_tasks.
  it("tasks blocked in get and in wait on their own nested tasks finish", function()
    local f = lray.remote(function(i, j) return { i, j } end)
    local g = lray.remote(function(i) return lray.get({ f.remote(i, 0), f.remote(i, 1) }) end)
    local h = lray.remote(function(i)
      local ready = lray.wait({ f.remote(i, 0), f.remote(i, 1) }, { num_returns = 2 })
      return #ready
    end)
    local gs, hs = {}, {}
    for i = 1, 4 do gs[i], hs[i] = g.remote(i), h.remote(i) end
    for i, v in ipairs(lray.get(gs, { timeout = 60 })) do assert.are.same({ { i, 0 }, { i, 1 } }, v) end
    for _, v in ipairs(lray.get(hs, { timeout = 60 })) do assert.are.equal(2, v) end
    local nap = lray.remote(function(i) lray.sleep(0.01); return i end)
    local sleeper = lray.remote(function()
      local refs = {}
      for i = 1, 10 do refs[i] = nap.remote(i) end
      return #lray.get(refs)
    end)
    assert.are.equal(10, lray.get(sleeper.remote(), { timeout = 60 }))
    assert_all_free()
  end)
end)

-- -- Deep recursion ------------------------------------------------------------------

-- Issue #9: fib(7) and a parallel quicksort of 3,000 items hung once every
-- worker of the pool was blocked in get. Workers blocked in get do not count
-- against the pool's bound, and nested tasks run depth-first, so a recursion
-- as deep as the user writes it runs on a few dozen processes.
describe("deep recursion on 2 CPUs", function()
  setup(function() lray = cluster.start({ num_cpus = 2, num_gpus = 0 }) end)
  teardown(function() cluster.stop() end)

  local function live_workers()
    return #require("lray.runtime").state({ t = "list", what = "workers" }).items
  end

  it("fib(15) with one task per call (1,973 tasks)", function()
    local fib
    fib = lray.remote(function(n)
      if n < 2 then return n end
      local a, b = fib.remote(n - 1), fib.remote(n - 2)
      return lray.get(a) + lray.get(b)
    end)
    assert.are.equal(610, lray.get(fib.remote(15), { timeout = 120 }))
    -- Depth-first: the pool stays small (breadth-first needed ~700).
    assert.is_true(live_workers() <= 100, "workers: " .. live_workers())
    assert_all_free()
  end)

  it("a parallel quicksort of 100,000 numbers down to 1,000-number leaves", function()
    local qsort
    qsort = lray.remote(function(xs)
      if #xs <= 1000 then table.sort(xs); return xs end
      local pivot = xs[math.floor(#xs / 2)]
      local lo, eq, hi = {}, {}, {}
      for _, x in ipairs(xs) do
        if x < pivot then lo[#lo + 1] = x elseif x > pivot then hi[#hi + 1] = x else eq[#eq + 1] = x end
      end
      local parts = lray.get({ qsort.remote(lo), qsort.remote(hi) })
      local out = parts[1]
      for _, x in ipairs(eq) do out[#out + 1] = x end
      for _, x in ipairs(parts[2]) do out[#out + 1] = x end
      return out
    end)
    local rng = 12345
    local xs = {}
    for i = 1, 100000 do
      rng = (rng * 1103515245 + 12345) % 2147483648
      xs[i] = rng % 1000000
    end
    local sorted = lray.get(qsort.remote(xs), { timeout = 120 })
    assert.are.equal(#xs, #sorted)
    table.sort(xs)
    for i = 1, #xs do
      if xs[i] ~= sorted[i] then error("not sorted at " .. i) end
    end
    assert_all_free()
  end)
end)

-- -- Options checked at definition time ----------------------------------------------

describe("bad resource options raise at remote/options time", function()
  local fn = function() return 1 end
  local Class = { ping = function() return 1 end }

  -- Every way of giving opts must raise an error whose message contains
  -- each of `words`.
  local function refused(opts, words)
    local base = lray.remote(fn)
    local ebase = lray.remote({ ping = function() return 1 end })
    local errs = {
      ["lray.remote(opts, fn)"] = fails(lray.remote, opts, fn),
      ["f.options(opts)"] = fails(base.options, opts),
      ["lray.remote(opts, Class)"] = fails(lray.remote, opts, Class),
      ["Class.options(opts)"] = fails(ebase.options, opts),
    }
    for how, e in pairs(errs) do
      for _, w in ipairs(words) do
        assert(msg(e):find(w, 1, true), ("%s: the error does not name '%s': %s"):format(how, w, msg(e)))
      end
    end
  end

  it("num_cpus = -1", function() refused({ num_cpus = -1 }, { "num_cpus" }) end)
  it("num_gpus = \"x\"", function() refused({ num_gpus = "x" }, { "num_gpus" }) end)
  it("resources = {Custom = -1}", function() refused({ resources = { Custom = -1 } }, { "resources", "Custom" }) end)
  it("num_gpus = 1.5 (amounts above 1 must be whole)", function() refused({ num_gpus = 1.5 }, { "num_gpus" }) end)
  it("resources = {CPU = 1} (must use num_cpus)", function()
    refused({ resources = { CPU = 1 } }, { "CPU", "num_cpus" })
    refused({ resources = { GPU = 1 } }, { "GPU", "num_gpus" })
  end)

  it("an unknown option name, with the valid options listed", function()
    refused({ num_cpu = 1 }, { "num_cpu", "num_cpus", "num_gpus", "resources" })
    local e = fails(lray.remote, { num_cpu = 1 }, fn)
    assert.matches("max_retries", msg(e), 1, true)
  end)

  it("more than 16 resource kinds (issue #9: the task was dropped and its get hung)", function()
    local res = {}
    for i = 1, 17 do res["R" .. i] = 1 end
    refused({ resources = res }, { "resource kinds", "16" })
    -- 15 custom kinds plus CPU fit; GPU added by a later options() does not.
    local res15 = {}
    for i = 1, 15 do res15["R" .. i] = 1 end
    local f = lray.remote({ resources = res15 }, fn)
    local e = fails(f.options, { num_gpus = 1 })
    assert.matches("17 resource kinds", msg(e), 1, true)
  end)

  it("a request with too many kinds that reaches the node fails its task, never drops it", function()
    lray = cluster.start({ num_cpus = 1, num_gpus = 0 })
    local ok, err = pcall(function()
      local f = lray.remote(fn)
      -- Past the caller's check, as another client could send it.
      f._req = {}
      for i = 1, 20 do f._req["R" .. i] = 10000 end
      local e = fails(lray.get, f.remote(), { timeout = 10 })
      assert.is_true(lray.is_error(e, "ValueError"), msg(e))
      assert.matches("resource kinds", msg(e), 1, true)
      assert_all_free()
    end)
    cluster.stop()
    assert(ok, err)
  end)

  it("nothing is queued by a refused definition", function()
    lray = cluster.start({ num_cpus = 1, num_gpus = 0 })
    local ok, err = pcall(function()
      local before = lray.cluster_resources()
      fails(lray.remote, { num_gpus = 1.5 }, fn)
      local f = lray.remote(fn)
      fails(f.options, { num_gpus = 1.5 })
      assert.are.equal(1, lray.get(f.remote(), { timeout = 10 }))
      assert_all_free()
      assert.are.same(before, lray.cluster_resources())
    end)
    cluster.stop()
    assert(ok, err)
  end)
end)

-- -- Stuck work is explained ---------------------------------------------------------

-- Issue #9: nothing that could not make progress said anything. Each case
-- is a driver script run as a user would, with its stderr read.
describe("a get that cannot make progress is explained on the driver's stderr", function()
  local function run_script(env, body)
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write('local lray = require("lray")\n', body)
    f:close()
    local out = run(env .. " LRAY_GET_WARN_S=0.3 " .. q(BIN) .. " " .. q(path))
    os.remove(path)
    return out
  end

  it("a task waiting on one pipelined behind it on the same worker still finishes", function()
    -- h is short, so once no worker is free its tasks are pipelined onto the
    -- worker that runs `gate`: first a (no arguments to wait for), then b
    -- (its argument c came late). a waits for b; b must not wait behind a.
    local out = run_script("", [[
lray.init{num_cpus = 1}
local h = lray.remote(function(x) if type(x) == "table" then return lray.get(x[1]) + 1 end return x end)
for i = 1, 5 do lray.get(h.remote(i)) end
local gate = lray.remote(function() lray.sleep(0.3); return 10 end)
local c = gate.remote()
local b = h.remote(c)
local a = h.remote({ b })
print("RESULT", pcall(lray.get, a, { timeout = 10 }))
]])
    assert.matches("RESULT\ttrue\t11", out, 1, true)
  end)

  it("names the task queued for busy resources, the object nobody produces, and the unplaced actor", function()
    local out = run_script("", [[
lray.init{num_cpus = 1, resources = {Custom = 1}}
local A = lray.remote({resources = {Custom = 1}}, {ping = function() return 1 end})
local a = A.remote()
lray.get(a.ping.remote())
local needs = lray.remote({resources = {Custom = 1}}, function() return 1 end)
local pass = lray.remote(function(x) return x end)
print(pcall(lray.get, pass.remote(needs.remote()), {timeout = 2}))
local ghost = require("lray.runtime").new_ref(string.rep("0", 29) .. "abc", false)
print(pcall(lray.get, ghost, {timeout = 2}))
local b = lray.remote({resources = {Custom = 1}}, {ping = function() return 1 end}).remote()
print(pcall(lray.get, b.ping.remote(), {timeout = 2}))
]])
    assert.matches("task 'needs' is queued: it needs {CPU = 1, Custom = 1} and this node's resources"
      .. " are busy (available now: {CPU = 1, Custom = 0})", out, 1, true)
    assert.matches("nothing is producing it", out, 1, true)
    assert.matches("which is PENDING: it has no process to run on yet", out, 1, true)
    -- Once per cause.
    local _, n = out:gsub("task 'needs' is queued", "")
    assert.are.equal(1, n)
  end)

  it("warns when tasks wait because the node runs its limit of worker processes", function()
    local out = run_script("LRAY_MAX_WORKERS=3", [[
lray.init{num_cpus = 1}
local deep
deep = lray.remote(function(n) if n == 0 then return 0 end return lray.get(deep.remote(n - 1)) + 1 end)
print(pcall(lray.get, deep.remote(6), {timeout = 2}))
]])
    assert.matches("already runs its limit of 3 (LRAY_MAX_WORKERS)", out, 1, true)
    assert.matches("GetTimeoutError", out, 1, true)
  end)
end)

-- -- lray status ------------------------------------------------------------------------

-- `lray start` is machine-wide (head.pid, address file under $LRAY_TMPDIR,
-- default /tmp/lray): these tests give it a directory of their own and a
-- free port, so they never meet another cluster, and always stop it.
describe("lray status", function()
  local function tmpdir()
    local f = assert(io.popen("mktemp -d"))
    local d = f:read("*l")
    f:close()
    assert(d and d ~= "", "mktemp -d failed")
    return d
  end

  -- Runs `lray <args>` with LRAY_TMPDIR = dir; output goes through a file
  -- so that a process left holding it cannot keep us waiting.
  local function lray_cmd(dir, args)
    local out_file = dir .. "/cmd.out"
    local _, status = run("LRAY_TMPDIR=" .. q(dir) .. " " .. q(BIN) .. " " .. args
      .. " >" .. q(out_file) .. " 2>&1")
    local f = io.open(out_file, "r")
    local out = f and f:read("*a") or ""
    if f then f:close() end
    return out, status
  end

  -- Runs body(dir) against a cluster started in a fresh LRAY_TMPDIR, and
  -- stops that cluster whatever happens.
  local function with_head(start_args, body)
    local dir = tmpdir()
    local start_out, start_status = lray_cmd(dir, "start --head --port 0 " .. start_args)
    local ok, err = pcall(function()
      assert(start_status == 0, "lray start failed:\n" .. start_out)
      body(dir)
    end)
    local stop_out, stop_status = lray_cmd(dir, "stop")
    os.execute("rm -rf " .. q(dir))
    assert(ok, err)
    assert(stop_status == 0, "lray stop failed:\n" .. stop_out)
  end

  local function used(out, k, u, t)
    return out:match("\n%s*" .. k .. "%s+" .. u .. " / " .. t .. "\n") ~= nil
  end

  it("prints CPU/GPU/Custom used / total, and infeasible demand", function()
    with_head("--num-cpus 2 --num-gpus 1 --resources " .. q('{"Custom": 3}'), function(dir)
      local out, status = lray_cmd(dir, "status")
      assert.are.equal(0, status, out)
      assert(used(out, "CPU", 0, 2), "no 'CPU 0 / 2' line:\n" .. out)
      assert(used(out, "GPU", 0, 1), "no 'GPU 0 / 1' line:\n" .. out)
      assert(used(out, "Custom", 0, 3), "no 'Custom 0 / 3' line:\n" .. out)

      -- a driver holding resources through an actor, with an infeasible task queued
      local path = script(([[
local lray = require("lray")
lray.init{address = "auto"}
local A = lray.remote({num_cpus = 1, num_gpus = 1, resources = {Custom = 2}},
  {ping = function() return "pong" end})
local a = A.remote()
assert(lray.get(a.ping.remote(), {timeout = 10}) == "pong")
local never = lray.remote({resources = {Other = 1}}, function() end)
local r = never.remote()
lray.wait({r}, {timeout = 0.2})
local f = io.popen(%q .. " status 2>&1")
io.stdout:write(f:read("*a"))
f:close()
lray.kill(a)
]]):format(BIN))
      local dout, dstatus = run("LRAY_TMPDIR=" .. q(dir) .. " " .. q(BIN) .. " " .. q(path))
      os.remove(path)
      assert.are.equal(0, dstatus, dout)
      assert(used(dout, "CPU", 1, 2), "no 'CPU 1 / 2' line while an actor holds 1 CPU:\n" .. dout)
      assert(used(dout, "GPU", 1, 1), "no 'GPU 1 / 1' line while an actor holds the GPU:\n" .. dout)
      assert(used(dout, "Custom", 2, 3), "no 'Custom 2 / 3' line while an actor holds 2:\n" .. dout)
      assert(dout:find("Other", 1, true) and dout:find("infeasible", 1, true),
        "the infeasible {Other = 1} demand is not listed:\n" .. dout)

      -- the driver is gone: everything is free again
      local deadline = lray.now() + 3
      repeat
        out = lray_cmd(dir, "status")
        if used(out, "CPU", 0, 2) and used(out, "GPU", 0, 1) and used(out, "Custom", 0, 3) then break end
        lray.sleep(0.1)
      until lray.now() > deadline
      assert(used(out, "CPU", 0, 2) and used(out, "GPU", 0, 1) and used(out, "Custom", 0, 3),
        "resources still used after the driver exited:\n" .. out)
    end)
  end)

  it("lray start returns with its output closed, so a pipe reading it ends", function()
    local dir = tmpdir()
    local env = "LRAY_TMPDIR=" .. q(dir) .. " "
    -- the reader is killed after 5 s if the started cluster keeps the pipe open
    local out_file = dir .. "/pipe.out"
    local t0 = lray.now()
    os.execute("sh -c " .. q(env .. q(BIN) .. " start --head --port 0 --num-cpus 1 --num-gpus 0"
      .. " 2>&1 | timeout -s KILL 5 cat >" .. q(out_file)) .. " >/dev/null 2>&1")
    local took = lray.now() - t0
    local f = io.open(out_file, "r")
    local out = f and f:read("*a") or ""
    if f then f:close() end
    local stop_out = lray_cmd(dir, "stop")
    os.execute("rm -rf " .. q(dir))
    assert.matches("Started an lray cluster", out, 1, true)
    assert.matches("Stopped", stop_out, 1, true)
    assert(took < 4, ("reading `lray start | cat` took %.1f s: the started node keeps"
      .. " the caller's stdout/stderr open"):format(took))
  end)
end)
