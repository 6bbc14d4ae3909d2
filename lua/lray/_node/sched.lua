-- The node's scheduler and worker pool. The policy itself (resource
-- accounting in fixed point, GPU ids, the queue order) is C:
-- core/raylet/sched.c through core.sched_new. This file feeds it the tasks
-- whose arguments exist, starts what it picks on pooled workers, and keeps
-- the pool: workers are prestarted and reused; a worker blocked in get/wait
-- gives its CPUs back, and the pool may then grow, up to a bound.
local core = require("lray._core")
local N = require("lray._node.state")
local objects = require("lray._node.objects")
local errors = require("lray.errors")

local pairs, ipairs, floor, tostring = pairs, ipairs, math.floor, tostring
local remove = table.remove

local M = {}

M.UNIT = 10000
function M.units(x) return floor(x * M.UNIT + 0.5) end

local tasks = {}        -- task id -> task
local by_num = {}       -- scheduler number -> task or actor
local waiting_deps = {} -- object id -> tasks waiting for it
local idle = {}         -- idle task workers (a stack: the warmest first)
local starting = 0      -- workers spawned, not yet connected
local nblocked = 0      -- workers blocked in get/wait
local seq = 0
local next_num = 0
M.tasks = tasks
M.on_worker_ready = nil -- set by actors: function(worker) -> handled?

local S                 -- the C scheduler

-- -- Resources -------------------------------------------------------------

--- Creates the scheduler from N.total (fixed-point units).
function M.init()
  local totals = {}
  for k, v in pairs(N.total) do totals[k] = v / M.UNIT end
  S = core.sched_new({ totals = totals, starve_after = 1.0 })
end

function M.number()
  next_num = next_num + 1
  return next_num
end

-- Requests travel in fixed-point units; the scheduler takes amounts of 1.0.
local function req_of(units)
  local r = {}
  for k, v in pairs(units) do r[k] = v / M.UNIT end
  return r
end
M.req_of = req_of

--- The resource the request names that no node can ever give, or nil.
function M.infeasible(units) return S:infeasible(req_of(units)) end

function M.total() return S:total() end
function M.available() return S:available() end

--- Holds req (units) for an actor's life: gpu ids, or nil when it does not fit now.
function M.hold(num, units) return S:hold(num, req_of(units)) end
function M.release_hold(num) S:release(num) end
function M.shapes() return S:shapes() end

-- -- Workers ---------------------------------------------------------------

local next_wid = 0
-- Processes on this node: task workers are bounded by pool_limit(); this
-- bound covers actors too (each has its own process).
-- The default keeps the processes' memory (~5 MB each when idle) well
-- under the machine's: one per 32 MB of RAM, between 64 and 4096.
local MAX_WORKERS = tonumber(os.getenv("LRAY_MAX_WORKERS"))
  or math.max(64, math.min(4096, floor(core.total_memory() / (32 * 1024 * 1024))))

local function ncpu() return floor((N.total.CPU or 0) / M.UNIT) end

local function pool_limit()
  -- Workers are started only for tasks the scheduler already let in, so the
  -- resources are the real limit; this soft bound only keeps bursts of
  -- fractional-CPU tasks from forking too many processes at once. Workers
  -- blocked in get/wait do not count (as in Ray): a task they wait for must
  -- be able to start, however deep the recursion.
  return math.max(ncpu(), 1) * 4 + 8
end
M.MAX_WORKERS = MAX_WORKERS

-- Task workers that count against pool_limit: every live one not blocked.
local function count_task_workers()
  local n = 0
  for _, w in pairs(N.workers) do
    if not w.actor and w.state ~= "dead" and not w.blocked then n = n + 1 end
  end
  return n
end

local function flush_line(w, stream, line)
  local job = w.job and N.jobs[w.job]
  if job and job.conn:is_open() then
    if job.log ~= false then
      job.conn:send({ t = "out", name = w.label or "worker", pid = w.pid,
        text = line, stream = stream })
    end
  elseif stream == 2 then
    -- No driver to tell (a worker failing before its first task): the node's
    -- own stderr (the terminal, or node.log for `lray start`).
    io.stderr:write("(worker pid=", tostring(w.pid), ") ", line)
  end
end

local function on_output(w, stream, data)
  local buf = (w.partial[stream] or "") .. data
  local last = buf:match(".*\n()")
  if last then
    flush_line(w, stream, buf:sub(1, last - 1))
    buf = buf:sub(last)
  end
  w.partial[stream] = buf ~= "" and buf or nil
  if w.partial[stream] then
    -- A line left unfinished (a prompt, io.write without "\n") still shows
    -- up after a moment, under the name of what printed it.
    local unfinished = w.partial[stream]
    core.timer(0.2, 0, function()
      if w.partial[stream] == unfinished then
        w.partial[stream] = nil
        flush_line(w, stream, unfinished .. "\n")
      end
    end, true)
  end
end

--- Starts a worker process. for_actor: it will be dedicated to an actor.
function M.spawn_worker(for_actor)
  local n = 0
  for _ in pairs(N.workers) do n = n + 1 end
  if n >= MAX_WORKERS then return nil end
  next_wid = next_wid + 1
  local wid = "w" .. next_wid
  local w = { wid = wid, state = "starting", has = {}, jobs = {}, partial = {},
    for_actor = for_actor }
  local pid, proc = core.spawn({
    file = N.exe,
    args = { "_worker", "--node", N.sock, "--wid", wid },
    capture = true,
    on_output = function(stream, data) on_output(w, stream, data) end,
    on_exit = function(status, sig) M.worker_exited(w, status, sig) end,
  })
  if not pid then
    io.stderr:write("lray node: ", tostring(proc), "\n")
    return nil
  end
  w.pid, w.proc = pid, proc
  N.workers[wid] = w
  starting = starting + 1
  return w
end

--- A worker said hello on conn.
function M.worker_hello(w, cl)
  w.conn, w.client = cl.conn, cl
  cl.worker = w
  starting = starting - 1
  w.state = "idle"
  if M.on_worker_ready and M.on_worker_ready(w) then M.dispatch(); return end
  idle[#idle + 1] = w
  M.dispatch()
end

local function take_idle()
  while #idle > 0 do
    local w = remove(idle)
    if w.state == "idle" then return w end
  end
  return nil
end

--- An idle worker for an actor, or nil (the caller then spawns one).
function M.take_idle_worker() return take_idle() end

-- -- Tasks -----------------------------------------------------------------

local function fail_task(t, err)
  local blob = core.encode(err)
  for _, id in ipairs(t.rets) do objects.store(id, { err = blob }) end
end

local function finish(t)
  tasks[t.tid] = nil
  by_num[t.num] = nil
  t.state = "done"
  for _, id in ipairs(t.rets) do
    local o = objects.objects[id]
    if o and o.producing == t.tid and not o.st then objects.abandon(id) end
  end
  if t.actor_holds then
    M.hold_actors(t.actor_holds, -1)
    t.actor_holds = nil
  end
  for _, id in ipairs(t.holds) do objects.decref(id) end
  t.holds = {}
end

--- Queues a task from a submit message sent by client cl.
function M.submit(cl, m)
  local t = { tid = m.tid, m = m, owner = cl, rets = m.rets, state = "queued",
    res = m.res or { CPU = M.UNIT }, retries = m.max_retries or 3,
    name = m.name, job = cl.job or m.job, holds = {}, parent = m.parent,
    num = M.number(), submitted = core.now() }
  -- The queue's order key. A nested task goes just ahead of its parent's
  -- generation: the deepest work runs first (depth-first), so a recursion
  -- finishes its leaves and frees blocked parents instead of starting every
  -- branch at once, each blocking a worker of its own.
  local p = m.parent and tasks[m.parent]
  t.key = p and p.key and (p.key - 1e-6) or t.submitted
  tasks[t.tid] = t
  by_num[t.num] = t
  for _, id in ipairs(m.rets) do
    local o = objects.get(id)
    o.producing = t.tid
    objects.hold(cl, id)
    -- The submitter gets the result pushed as soon as it exists.
    o.waiters = o.waiters or {}
    o.waiters[cl] = true
  end
  if m.deps then
    for _, id in pairs(m.deps) do
      objects.incref(id); t.holds[#t.holds + 1] = id
    end
  end
  if m.refs then
    for _, id in ipairs(m.refs) do
      objects.incref(id); t.holds[#t.holds + 1] = id
    end
  end
  -- Actor handles in the arguments keep their actors alive until it ran.
  if m.actors and #m.actors > 0 and M.hold_actors then
    t.actor_holds = m.actors
    M.hold_actors(m.actors, 1)
  end
  local ok, missing = pcall(M.infeasible, t.res)
  if not ok then
    -- A request the scheduler cannot take (the caller checks this too):
    -- the task fails, it is never dropped.
    fail_task(t, errors.new("ValueError", ("task '%s' cannot be scheduled: %s"):format(
      tostring(t.name), tostring(missing):gsub("^.-: ", ""))))
    finish(t)
    return
  end
  if missing then
    t.infeasible = missing
    M.warn_infeasible(t, missing)
  end
  M.enqueue(t)
  M.dispatch()
end

-- A task enters the scheduler once every ObjectRef argument exists.
function M.enqueue(t)
  local deps = t.m.deps
  if deps then
    for _, id in pairs(deps) do
      if not objects.ready(id) then
        local w = waiting_deps[id]
        if not w then w = {}; waiting_deps[id] = w end
        w[#w + 1] = t
        t.waiting = (t.waiting or 0) + 1
      end
    end
    if (t.waiting or 0) > 0 then return end
  end
  S:submit(t.num, req_of(t.res), t.key)
end

-- objects.lua calls this when an object becomes ready.
objects.on_ready = function(id)
  if M.after_ready then M.after_ready() end
  local w = waiting_deps[id]
  if not w then return end
  waiting_deps[id] = nil
  for _, t in ipairs(w) do
    t.waiting = t.waiting - 1
    if t.waiting == 0 and t.state == "queued" then
      S:submit(t.num, req_of(t.res), t.key)
    end
  end
  M.dispatch()
end

function M.warn_infeasible(t, missing)
  local job = t.job and N.jobs[t.job]
  if job and job.conn:is_open() then
    local total = S:total()
    job.conn:send({ t = "warn", text = ("task '%s' cannot be scheduled: it needs %g %s"
      .. " but no node has that much (this node has %g); it stays pending until"
      .. " a node that fits joins"):format(tostring(t.name), (t.res[missing] or 0) / M.UNIT,
      missing, total[missing] or 0) })
  end
end

--- Tells worker w about job (its package paths, namespace) the first time
--- it runs something of that job.
function M.introduce_job(w, job_id)
  local job = N.jobs[job_id]
  if job and not w.jobs[job_id] then
    w.jobs[job_id] = true
    w.conn:send({ t = "job", job = job_id, path = job.path, cpath = job.cpath,
      namespace = job.namespace })
  end
end

--- The values of ObjectRef arguments, sent along so the worker need not ask.
function M.dep_values(deps)
  if not deps then return nil end
  local depv = {}
  for i, id in pairs(deps) do
    local o = objects.objects[id]
    depv[i] = { id = id, data = o.data, shm = o.shm, err = o.err, arr = o.arr }
  end
  return depv
end

local function start(t, w, gpus)
  t.granted = nil
  seq = seq + 1
  t.seq, t.worker, t.state = seq, w, "running"
  w.state, w.task, w.job, w.label = "busy", t, t.job, t.name
  local m = t.m
  M.introduce_job(w, t.job)
  local depv = M.dep_values(m.deps)
  local code
  if not w.has[m.fh] then
    code = N.fns[m.fh]
    w.has[m.fh] = true
  end
  w.conn:send({ t = "exec", tid = t.tid, seq = seq, fh = m.fh, code = code,
    args = m.args, depv = depv, rets = m.rets, name = t.name, job = t.job,
    refs = m.refs, actors = m.actors, deps = m.deps and true or nil,
    gpus = gpus and #gpus > 0 and gpus or nil })
end

-- Tasks the scheduler granted resources to, waiting for a free worker.
local granted = {}

--- Starts whatever can start now. The scheduler decides what fits; a task
--- that fits but finds no idle worker keeps its grant and gets the next
--- worker that frees up or starts (so tasks needing less than a CPU each
--- still run side by side).
function M.dispatch()
  while #granted > 0 do
    local w = take_idle()
    if not w then break end
    local g = remove(granted, 1)
    if g.t.state == "queued" then start(g.t, w, g.gpus) else idle[#idle + 1] = w end
  end
  while S:queued() > 0 do
    local num, gpus = S:next(core.now())
    if not num then break end
    local t = by_num[num]
    local w = take_idle()
    if w then
      start(t, w, gpus)
    else
      t.granted = true
      granted[#granted + 1] = { t = t, gpus = gpus }
    end
  end
  local want = #granted
  for _, w in pairs(N.workers) do
    if w.state == "starting" and not w.for_actor then want = want - 1 end
  end
  while want > 0 and count_task_workers() < pool_limit() do
    if not M.spawn_worker(false) then
      M.warn_pool_full()
      break
    end
    want = want - 1
  end
end

-- Tells the drivers of tasks that wait for a worker that none can start
-- (the driver prints each text once).
function M.warn_pool_full()
  local n = 0
  for _ in pairs(N.workers) do n = n + 1 end
  if n < MAX_WORKERS then return end
  local told = {}
  for _, g in ipairs(granted) do
    local job = g.t.job and N.jobs[g.t.job]
    if job and not told[job] and job.conn:is_open() then
      told[job] = true
      job.conn:send({ t = "warn", text = ("tasks are waiting for a worker process, but this node"
        .. " already runs its limit of %d (LRAY_MAX_WORKERS), most of them blocked in lray.get;"
        .. " they start only as others finish"):format(MAX_WORKERS) })
    end
  end
end

local function fmt_units(units)
  local parts = {}
  for k, v in pairs(units) do parts[#parts + 1] = ("%s = %g"):format(k, v / M.UNIT) end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

--- Why object id is not ready, as a sentence, or nil when it is on its way
--- (ready, its task running, or an actor call promised it).
function M.why_pending(id)
  local o = objects.objects[id]
  if o and o.st then return nil end
  local t = o and o.producing and tasks[o.producing]
  if not t then
    if o and o.expected_from then return nil end
    return ("object %s: nothing is producing it (no queued or running task makes it and no"
      .. " process has promised it); it may have been freed before this reference to it was"
      .. " registered"):format(id)
  end
  if t.state ~= "queued" then return nil end
  if (t.waiting or 0) > 0 then return nil end   -- its arguments are asked about on their own
  if t.infeasible then
    return ("task '%s' cannot be scheduled: no node has the %s it needs"):format(tostring(t.name), t.infeasible)
  end
  if t.granted then
    return ("task '%s' has its resources but waits for a worker process (%d workers run on this"
      .. " node)"):format(tostring(t.name), (function() local n = 0 for _ in pairs(N.workers) do n = n + 1 end
        return n end)())
  end
  local avail = {}
  for k, v in pairs(S:available()) do if t.res[k] then avail[k] = M.units(v) end end
  return ("task '%s' is queued: it needs %s and this node's resources are busy (available now:"
    .. " %s), held by running tasks and by actors that hold resources for their life"):format(
      tostring(t.name), fmt_units(t.res), fmt_units(avail))
end

--- The deps a queued task waits for (so a caller can explain those too).
function M.waiting_on(id)
  local o = objects.objects[id]
  local t = o and o.producing and tasks[o.producing]
  if not t or t.state ~= "queued" or (t.waiting or 0) == 0 then return nil end
  local out = {}
  for _, d in pairs(t.m.deps or {}) do
    if not objects.ready(d) then out[#out + 1] = d end
  end
  return out
end

-- Output a task left without a final newline still reaches its driver.
local function flush_partial(w)
  for stream, rest in pairs(w.partial) do
    flush_line(w, stream, rest .. "\n")
    w.partial[stream] = nil
  end
end

--- A worker finished its task.
function M.done(w, m)
  flush_partial(w)
  local t = w.task
  if not t or t.tid ~= m.tid then return end
  w.task = nil
  S:release(t.num)
  if w.blocked then w.blocked = false; nblocked = nblocked - 1 end
  if m.lua_error and t.m.retry_exc and t.retries ~= 0 and not t.cancelled then
    -- A Lua error with retry_exceptions: run it again.
    t.retries = t.retries - 1
    t.state = "queued"
    M.enqueue(t)
  else
    for i, r in ipairs(m.results) do
      if r.shm and w.client and w.client.allocs then w.client.allocs[r.shm[1]] = nil end
      objects.store(t.rets[i] or r.id, r)
    end
    finish(t)
  end
  w.state = "idle"
  -- w.label stays: what the task printed comes through a pipe and may be
  -- read after its "done"; it still carries the task's name.
  idle[#idle + 1] = w
  M.dispatch()
end

function M.blocked(w, on)
  -- An actor keeps what it holds while it waits: it asked for it for its
  -- whole life (API.md; Ray's test_blocking_actor_task). One that asked for
  -- nothing holds nothing to give back.
  if w.actor or not w.task then return end
  if on and not w.blocked then
    w.blocked = true
    nblocked = nblocked + 1
    S:block(w.task.num)
    M.dispatch()
  elseif not on and w.blocked then
    w.blocked = false
    nblocked = nblocked - 1
    S:unblock(w.task.num)
  end
end

--- A worker process ended (crash, kill, or cancel with force).
function M.worker_exited(w, status, sig)
  if w.state == "starting" then starting = starting - 1 end
  w.state = "dead"
  N.workers[w.wid] = nil
  w.exit_status, w.exit_signal = status, sig
  local t = w.task
  if t then
    w.task = nil
    S:release(t.num)
    if w.blocked then nblocked = nblocked - 1 end
    if t.cancelled then
      fail_task(t, errors.new("TaskCancelledError", "task '" .. tostring(t.name) .. "' was cancelled"))
      finish(t)
    elseif t.retries ~= 0 then
      t.retries = t.retries - 1
      t.state = "queued"
      M.enqueue(t)
    else
      local how = sig ~= 0 and ("was killed by signal " .. sig) or ("exited with code " .. status)
      fail_task(t, errors.new("WorkerCrashedError", "the worker running task '"
        .. tostring(t.name) .. "' (pid " .. tostring(w.pid) .. ") " .. how
        .. ", and no retries are left (max_retries)"))
      finish(t)
    end
  end
  if M.on_worker_exit then M.on_worker_exit(w, status, sig) end
  M.dispatch()
end

--- Cancels the task that produces object id.
function M.cancel(id, force, recursive)
  local o = objects.objects[id]
  local t = o and o.producing and tasks[o.producing]
  if not t then return false end
  M.cancel_task(t, force, recursive)
  return true
end

function M.cancel_task(t, force, recursive)
  if recursive then
    for _, c in pairs(tasks) do
      if c.parent == t.tid and c.state ~= "done" then M.cancel_task(c, force, true) end
    end
  end
  t.cancelled = true
  if t.state == "queued" then
    if t.granted then S:release(t.num) else S:remove(t.num) end
    t.state = "cancelled"
    fail_task(t, errors.new("TaskCancelledError", "task '" .. tostring(t.name) .. "' was cancelled"))
    finish(t)
  elseif t.state == "running" and t.worker then
    if force then
      t.worker.proc:kill(9)
    else
      t.worker.conn:send({ t = "cancel", tid = t.tid })
      core.cancel_signal(t.worker.pid, t.seq)
    end
  end
end

--- Forgets the queued tasks of a job that ended.
function M.drop_job(job)
  for _, t in pairs(tasks) do
    if t.job == job and t.state == "queued" then
      if t.granted then S:release(t.num) else S:remove(t.num) end
      t.state = "cancelled"
      finish(t)
    end
  end
end

function M.prestart(n)
  for _ = 1, n do M.spawn_worker(false) end
end

function M.counts()
  local n = 0
  for _ in pairs(tasks) do n = n + 1 end
  return n, starting, nblocked
end

return M
