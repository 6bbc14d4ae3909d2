-- The node's scheduler and worker pool. The policy itself (resource
-- accounting in fixed point, GPU ids, the queue order) is C:
-- core/raylet/sched.c through core.sched_new. This file feeds it lease
-- requests (a submitter's ask for a worker of a resource shape), lends the
-- workers it grants, and keeps the pool: workers are prestarted and reused;
-- a leased worker blocked in get/wait gives its CPUs back, and the pool may
-- then grow, up to a bound.
local core = require("lray._core")
local N = require("lray._node.state")
local objects = require("lray._node.objects")

local pairs, floor, tostring = pairs, math.floor, tostring
local remove = table.remove

local M = {}

M.UNIT = 10000
function M.units(x) return floor(x * M.UNIT + 0.5) end

local by_num = {}       -- scheduler number -> lease or actor
local idle = {}         -- idle task workers (a stack: the warmest first)
local starting = 0      -- workers spawned, not yet connected
local nblocked = 0      -- workers blocked in get/wait
local next_num = 0
M.on_worker_ready = nil -- set by actors: function(worker) -> handled?
M.on_freed = nil        -- set by actors: resources came back
-- Observability hooks (set by events.lua): observe_output(worker, stream,
-- data); observe_exit(worker).
M.observe_output, M.observe_exit = nil, nil

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
      job.conn:send({ t = "out", name = w.labels[stream] or w.label or "worker", pid = w.pid,
        text = line, stream = stream })
    end
  elseif stream == 2 then
    -- No driver to tell (a worker failing before its first task): the node's
    -- own stderr (the terminal, or node.log for `lray start`).
    io.stderr:write("(worker pid=", tostring(w.pid), ") ", line)
  end
end

-- A leased worker writes "\0lray:label NAME\n" to stdout and stderr before
-- a task of another name: the lines after it are that task's.
local MARK = "%z" .. "lray:label ([^\n]*)\n"

local function on_output(w, stream, data)
  if M.observe_output then M.observe_output(w, stream, data) end
  local buf = (w.partial[stream] or "") .. data
  while true do
    local s, e, name = buf:find(MARK)
    if not s then break end
    local before = buf:sub(1, s - 1)
    if before ~= "" then
      if before:sub(-1) ~= "\n" then before = before .. "\n" end
      flush_line(w, stream, before)
    end
    w.labels[stream] = name
    buf = buf:sub(e + 1)
  end
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
  local w = { wid = wid, state = "starting", has = {}, jobs = {}, partial = {}, labels = {},
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
  w.addr = "unix:" .. N.session_dir .. "/w-" .. wid .. ".sock"
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

-- -- Leases ----------------------------------------------------------------
-- A submitter asks for a worker for a resource shape; once the scheduler
-- grants the resources and a worker is idle, the worker is lent to it
-- (lease_start to the worker, the worker's address to the submitter), and
-- tasks then go straight from the submitter to the worker. The lease ends
-- when the worker hands it back (lease_done), the submitter returns it
-- unused (lease_return), or the worker exits.

local leases = {}       -- lease id -> lease, requested or granted
M.leases = leases

local function lease_error(cl, rid, text)
  cl.conn:send({ t = "reply", rid = rid, err = text })
end

--- A lease request from client cl.
function M.lease(cl, m)
  local res = m.res or { CPU = M.UNIT }
  -- A request the scheduler cannot take (callers check this too): refused,
  -- and the submitter fails its tasks; never dropped.
  local ok, missing = pcall(M.infeasible, res)
  if not ok then
    return lease_error(cl, m.rid, ("task '%s' cannot be scheduled: %s"):format(
      tostring(m.name), tostring(missing):gsub("^.-: ", "")))
  end
  local L = { lid = core.random_hex(8), owner = cl, rid = m.rid, res = res, name = m.name,
    job = m.job or cl.job or (cl.worker and cl.worker.job), num = M.number(),
    state = "PENDING", submitted = core.now() }
  -- The queue's order key. A request from a worker that runs a task goes
  -- just ahead of that task's own lease: the deepest work runs first
  -- (depth-first), so a recursion finishes its leaves and frees blocked
  -- parents instead of starting every branch at once, each blocking a
  -- worker of its own.
  local parent = cl.worker and cl.worker.lease
  L.key = parent and parent.key and (parent.key - 1e-6) or L.submitted
  leases[L.lid] = L
  by_num[L.num] = L
  cl.leases = cl.leases or {}
  cl.leases[L.lid] = true
  if missing then M.warn_infeasible(L, missing) end
  S:submit(L.num, req_of(res), L.key)
  M.dispatch()
  -- Not granted at once: the submitter may then pipeline short tasks onto
  -- the workers it has.
  if L.state == "PENDING" then cl.conn:send({ t = "lease_wait", rid = L.rid }) end
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

local function forget(L)
  leases[L.lid] = nil
  by_num[L.num] = nil
  if L.owner.leases then L.owner.leases[L.lid] = nil end
end

local function start(L, w, gpus)
  L.granted = nil
  L.state, L.worker = "GRANTED", w
  w.state, w.lease, w.job = "leased", L, L.job
  if not L.owner.conn:is_open() then
    -- The submitter left while this waited: nobody will use it.
    S:release(L.num)
    forget(L)
    w.state, w.lease = "idle", nil
    idle[#idle + 1] = w
    return
  end
  M.introduce_job(w, L.job)
  w.conn:send({ t = "lease_start", lid = L.lid, gpus = gpus and #gpus > 0 and gpus or nil })
  L.owner.conn:send({ t = "reply", rid = L.rid, lid = L.lid, address = w.addr, pid = w.pid })
end

-- Leases the scheduler granted resources to, waiting for a free worker.
local granted = {}

--- Starts whatever can start now. The scheduler decides what fits; a lease
--- that fits but finds no idle worker keeps its grant and gets the next
--- worker that frees up or starts (so tasks needing less than a CPU each
--- still run side by side).
function M.dispatch()
  while #granted > 0 do
    local w = take_idle()
    if not w then break end
    local g = remove(granted, 1)
    if g.L.state == "PENDING" then start(g.L, w, g.gpus) else idle[#idle + 1] = w end
  end
  while S:queued() > 0 do
    local num, gpus = S:next(core.now())
    if not num then break end
    local L = by_num[num]
    local w = take_idle()
    if w then
      start(L, w, gpus)
    else
      L.granted = true
      granted[#granted + 1] = { L = L, gpus = gpus }
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
    local job = g.L.job and N.jobs[g.L.job]
    if job and not told[job] and job.conn:is_open() then
      told[job] = true
      job.conn:send({ t = "warn", text = ("tasks are waiting for a worker process, but this node"
        .. " already runs its limit of %d (LRAY_MAX_WORKERS), most of them blocked in lray.get;"
        .. " they start only as others finish"):format(MAX_WORKERS) })
    end
  end
end

--- Why object id is not ready, as a sentence, or nil when it is on its way.
--- The node sees only objects stored or promised to it: a task's result
--- lives with its submitter, which explains its own queued tasks.
function M.why_pending(id)
  local o = objects.objects[id]
  if o and (o.st or o.expected_from) then return nil end
  return ("object %s: nothing is producing it (no process has stored or promised it);"
    .. " it may have been freed before this reference to it was registered"):format(id)
end

-- Output a task left without a final newline still reaches its driver.
local function flush_partial(w)
  for stream, rest in pairs(w.partial) do
    flush_line(w, stream, rest .. "\n")
    w.partial[stream] = nil
  end
end

--- Sends what the workers of job printed without a final newline.
function M.flush_output(job)
  for _, w in pairs(N.workers) do
    if w.job == job then flush_partial(w) end
  end
end

local function end_lease(L)
  local w = L.worker
  forget(L)
  S:release(L.num)
  L.state = "DONE"
  if w and w.lease == L then
    flush_partial(w)
    w.lease = nil
    if w.blocked then w.blocked = false; nblocked = nblocked - 1 end
    if w.state == "leased" then
      w.state = "idle"
      idle[#idle + 1] = w
    end
  end
  -- Resources came back: actors waiting to be placed may fit now.
  if M.on_freed then M.on_freed() end
  M.dispatch()
end

--- Worker w handed its lease back.
function M.lease_done(w, m)
  local L = leases[m.lid]
  if L and L.worker == w then end_lease(L) end
end

--- The submitter gives back a lease it has no task for.
function M.lease_return(cl, m)
  local L = leases[m.lid]
  if not L or L.owner ~= cl then return end
  if L.worker then L.worker.conn:send({ t = "lease_stop", lid = L.lid }) end
  end_lease(L)
end

-- Withdraws a request that was not granted yet; the submitter then hears
-- a reply with no lease.
local function withdraw(L)
  if L.granted then S:release(L.num) else S:remove(L.num) end
  L.state = "DONE"
  forget(L)
  if L.owner.conn:is_open() then L.owner.conn:send({ t = "reply", rid = L.rid }) end
end

function M.lease_cancel(cl, m)
  for lid in pairs(cl.leases or {}) do
    local L = leases[lid]
    if L and L.rid == m.rid and L.state == "PENDING" then return withdraw(L) end
  end
end

--- A client left: its requests go; granted leases end when their workers
--- see the submitter gone.
function M.drop_client(cl)
  for lid in pairs(cl.leases or {}) do
    local L = leases[lid]
    if L and L.state == "PENDING" then withdraw(L) end
  end
end

function M.blocked(w, on)
  -- An actor keeps what it holds while it waits: it asked for it for its
  -- whole life (API.md; Ray's test_blocking_actor_task). One that asked for
  -- nothing holds nothing to give back.
  if w.actor then return end
  local L = w.lease
  if not L then return end
  if on and not w.blocked then
    w.blocked = true
    nblocked = nblocked + 1
    S:block(L.num)
    M.dispatch()
  elseif not on and w.blocked then
    w.blocked = false
    nblocked = nblocked - 1
    S:unblock(L.num)
  end
end

--- A worker process ended (crash, kill, or cancel with force). Its
--- submitter sees the connection close and retries or fails the tasks.
function M.worker_exited(w, status, sig)
  if w.state == "starting" then starting = starting - 1 end
  w.state = "dead"
  N.workers[w.wid] = nil
  w.exit_status, w.exit_signal = status, sig
  if w.lease then end_lease(w.lease) end
  if w.addr then core.unlink(w.addr:sub(6)) end
  if M.on_worker_exit then M.on_worker_exit(w, status, sig) end
  if M.observe_exit then M.observe_exit(w) end
  M.dispatch()
end

--- Forgets the lease requests of a job that ended.
function M.drop_job(job)
  for _, L in pairs(leases) do
    if L.job == job and L.state == "PENDING" then withdraw(L) end
  end
end

function M.prestart(n)
  for _ = 1, n do M.spawn_worker(false) end
end

function M.counts()
  local n = 0
  for _, L in pairs(leases) do
    if L.state == "PENDING" then n = n + 1 end
  end
  return n, starting, nblocked
end

return M
