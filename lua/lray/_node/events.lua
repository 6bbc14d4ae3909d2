-- The node's memory of what happened, for observability (`lray list`,
-- `lray logs`, `lray timeline`, the dashboard): a record per task through
-- its whole life (finished ones too, the last MAX_DONE of them), the jobs
-- that came and went, each worker's output in a log file of the session, and
-- the execution spans workers report. The rest of the node calls in through
-- a few hooks (sched.observe, the "spans" message); everything here only
-- reads and records, and the state API's "list" request serves it.
local core = require("lray._core")
local N = require("lray._node.state")

local pairs, ipairs, tonumber = pairs, ipairs, tonumber
local open = io.open

local M = {}

local MAX_DONE = 10000     -- finished task records kept
local MAX_SPANS = 100000   -- execution spans kept for the timeline
local MAX_JOBS = 1000      -- ended jobs kept

local span_head = 0                -- ring position of the last span
local jobs = {}            -- job id -> record
local ended_jobs, ended_head = {}, 0
local logs = {}            -- worker id -> {f = file, path, pid}

M.jobs = jobs
M.ended = { FINISHED = 0, FAILED = 0, CANCELLED = 0 }   -- tasks ever ended, by state

-- -- Tasks -------------------------------------------------------------------
-- Tasks go from their submitter straight to a leased worker, so the node
-- learns of them from the workers' spans once they ended, and of the ones
-- under way from its leases (a lease asked for is a PENDING task, a worker
-- lent is RUNNING the task it last named). Tasks still queued at their
-- submitter are not seen. A task that ended is kept in a ring of columns
-- (numbers in FFI arrays, strings in plain arrays), not a table each, so
-- that keeping 10,000 of them does not slow the collector.

local ffi = require("ffi")
local time, now = core.time, core.now

-- A column of numbers that starts small and doubles up to max + 1 slots
-- (allocating the whole ring at start would slow the node's start).
local function column(ctype, max)
  local c = { cap = 64, max = max, ctype = ctype }
  c.a = ffi.new(ctype, c.cap + 1)
  return c
end

-- Makes room for index i in the columns cs.
local function reserve(cs, i)
  local c1 = cs[1]
  if i <= c1.cap then return end
  for _, c in ipairs(cs) do
    local cap = math.min(c.cap * 2, c.max)
    local a = ffi.new(c.ctype, cap + 1)
    ffi.copy(a, c.a, ffi.sizeof(c.a))
    c.a, c.cap = a, cap
  end
end

local c_submitted, c_started = column("double[?]", MAX_DONE), column("double[?]", MAX_DONE)
local c_ended, c_pid = column("double[?]", MAX_DONE), column("int32_t[?]", MAX_DONE)
local done_cols = { c_submitted, c_started, c_ended, c_pid }
local d_tid, d_name, d_job, d_state, d_type, d_wid, d_aid, d_cs = {}, {}, {}, {}, {}, {}, {}, {}
local done_head, ndone = 0, 0
local leases = {}          -- the scheduler's leases (set by M.init)

local function push_done(tid, name, job, state, typ, pid, wid, aid, cs, submitted, started, ended)
  done_head = done_head % MAX_DONE + 1
  ndone = ndone + 1
  local i = done_head
  d_tid[i], d_name[i], d_job[i], d_state[i], d_type[i] = tid, name, job, state, typ
  d_wid[i], d_aid[i], d_cs[i] = wid or false, aid or false, cs or false
  reserve(done_cols, i)
  c_pid.a[i] = pid or 0
  c_submitted.a[i], c_started.a[i], c_ended.a[i] = submitted or 0, started or 0, ended or 0
  M.ended[state] = M.ended[state] + 1
end

local function live_record(L, wall_of)
  local w = L.worker
  return { task_id = L.lid, name = w and w.labels[1] or L.name, job_id = L.job, type = "task",
    node_id = N.node_id, state = w and "RUNNING" or "PENDING", pid = w and w.pid,
    worker_id = w and w.wid, submitted = wall_of(L.submitted) }
end

local function done_record(i)
  local pid = c_pid.a[i]
  local st = c_started.a[i]
  return { task_id = d_tid[i], name = d_name[i], job_id = d_job[i], state = d_state[i],
    type = d_type[i], node_id = N.node_id, pid = pid ~= 0 and pid or nil,
    worker_id = d_wid[i] or nil, actor_id = d_aid[i] or nil, call_site = d_cs[i] or nil,
    submitted = c_submitted.a[i], started = st ~= 0 and st or nil, ended = c_ended.a[i] }
end

--- Every task record (ended ones kept, then live ones), in submission order.
function M.task_list()
  local out = {}
  for i = 1, math.min(ndone, MAX_DONE) do out[#out + 1] = done_record(i) end
  local offset = time() - now()
  local function wall_of(mono) return mono + offset end
  for _, L in pairs(leases) do out[#out + 1] = live_record(L, wall_of) end
  table.sort(out, function(a, b)
    if a.submitted ~= b.submitted then return a.submitted < b.submitted end
    return a.task_id < b.task_id
  end)
  return out
end

-- -- Jobs ----------------------------------------------------------------------

function M.job_started(job_id, j)
  jobs[job_id] = { job_id = job_id, namespace = j.namespace, pid = j.pid, alive = true,
    start_time = j.started, entrypoint = j.entrypoint }
end

function M.job_ended(job_id)
  local r = jobs[job_id]
  if not r then return end
  r.alive, r.end_time = false, core.time()
  ended_head = ended_head % MAX_JOBS + 1
  local old = ended_jobs[ended_head]
  if old then jobs[old] = nil end
  ended_jobs[ended_head] = job_id
end

function M.job_list()
  local out = {}
  for _, r in pairs(jobs) do out[#out + 1] = r end
  table.sort(out, function(a, b) return a.job_id < b.job_id end)
  return out
end

-- -- Worker logs -----------------------------------------------------------------
-- Each worker's stdout and stderr go, as they arrive, to
-- <session>/logs/worker-<pid>.out and .err, unbuffered: nothing printed is
-- lost when the driver (or the node) dies.

function M.log_dir() return N.session_dir .. "/logs" end

--- Appends data a worker printed on stream (1 stdout, 2 stderr).
function M.output(w, stream, data)
  local key = w.wid .. (stream == 2 and ":2" or ":1")
  local l = logs[key]
  if not l then
    core.mkdir(M.log_dir())
    local path = ("%s/worker-%d.%s"):format(M.log_dir(), w.pid or 0, stream == 2 and "err" or "out")
    local f = open(path, "a")
    if not f then return end
    f:setvbuf("no")
    l = { f = f, path = path, pid = w.pid }
    logs[key] = l
  end
  l.f:write(data)
end

--- A worker exited: close its files (they stay for `lray logs`).
function M.worker_exited(w)
  for _, s in ipairs({ ":1", ":2" }) do
    local l = logs[w.wid .. s]
    if l then l.f:close(); logs[w.wid .. s] = nil end
  end
end

--- Removes the log files (the node's session ends).
function M.remove_logs()
  for _, l in pairs(logs) do l.f:close() end
  logs = {}
  local dir = N.session_dir and M.log_dir()
  if not dir then return end
  for _, name in ipairs(core.readdir(dir) or {}) do core.unlink(dir .. "/" .. name) end
  core.rmdir(dir)
end

--- The log files: {file, pid, stream, worker_id, actor_id, alive}.
function M.log_list(actor_of_pid)
  local out = {}
  local live = {}
  for wid, w in pairs(N.workers) do if w.pid then live[w.pid] = wid end end
  for _, name in ipairs(core.readdir(M.log_dir()) or {}) do
    local pid, ext = name:match("^worker%-(%d+)%.(%a+)$")
    if pid then
      pid = tonumber(pid)
      out[#out + 1] = { file = M.log_dir() .. "/" .. name, pid = pid,
        stream = ext == "err" and "stderr" or "stdout", node_id = N.node_id,
        worker_id = live[pid], alive = live[pid] ~= nil, actor_id = actor_of_pid[pid] }
    end
  end
  table.sort(out, function(a, b) return a.file < b.file end)
  return out
end

-- -- Spans ----------------------------------------------------------------------
-- Workers batch spans (kind, name, id, start, dur, failed; wall-clock
-- seconds) in columns and send them now and then; the timeline is made of them. They are kept in
-- columns (numbers in FFI arrays, the rest as indexes into a table of the
-- few distinct kind/name/worker combinations), not a table each: 100,000
-- span tables would make every collection of the node's heap slower, and
-- with it every task.

local c_start, c_dur = column("double[?]", MAX_SPANS), column("double[?]", MAX_SPANS)
local c_meta = column("int32_t[?]", MAX_SPANS)
local span_cols = { c_start, c_dur, c_meta }
local sp_id = {}              -- ring index -> task or call id (a string)
local metas, meta_of = {}, {} -- index -> {kind, name, pid, worker_id, actor_id, failed}
local nspans = 0              -- spans stored so far (the ring holds the last MAX_SPANS)

-- The index of a {kind, name, worker, failed} combination, found by nested
-- lookups (no string is built per span).
local function meta(kind, name, w, actor_id, failed)
  local by_name = meta_of[name]
  if not by_name then by_name = {}; meta_of[name] = by_name end
  local key = w or false
  local by_w = by_name[key]
  if not by_w then by_w = {}; by_name[key] = by_w end
  local f = failed and true or false
  local i = by_w[f]
  if not i then
    metas[#metas + 1] = { kind = kind, name = name, pid = w and w.pid, worker_id = w and w.wid,
      actor_id = actor_id, failed = failed or nil }
    i = #metas
    by_w[f] = i
  end
  return i
end

--- A batch of spans from a worker, in columns: kind, name, id, start, dur,
--- failed (lists of the same length).
function M.spans(cl, m)
  local w = cl.worker
  local aid = w and w.actor and w.actor.aid
  local kind, name, id, start, dur, failed = m.kind, m.name, m.id, m.start, m.dur, m.failed
  if not (kind and name and id and start and dur and failed) then return end
  for k = 1, #start do
    span_head = span_head % MAX_SPANS + 1
    nspans = nspans + 1
    local st, du, fl = start[k], dur[k], failed[k]
    reserve(span_cols, span_head)
    c_start.a[span_head], c_dur.a[span_head] = st, du
    c_meta.a[span_head] = meta(kind[k], name[k], w, aid, fl)
    sp_id[span_head] = id[k]
    -- Tasks and actor calls go straight from caller to worker: the node
    -- learns of them only from here, once they ended.
    push_done(id[k], name[k], w and w.job, fl and "FAILED" or "FINISHED",
      kind[k], w and w.pid, w and w.wid, aid, nil, st, st, st + du)
  end
end

--- The spans kept (those that ended after m.since, if given), by start.
function M.span_list(m)
  local out = {}
  local since = m and m.since
  for i = 1, math.min(nspans, MAX_SPANS) do
    local st, dur = c_start.a[i], c_dur.a[i]
    if not since or st + dur > since then
      local mt = metas[c_meta.a[i]]
      out[#out + 1] = { kind = mt.kind, name = mt.name, id = sp_id[i], start = st, dur = dur,
        failed = mt.failed, pid = mt.pid, worker_id = mt.worker_id, actor_id = mt.actor_id,
        node_id = N.node_id }
    end
  end
  table.sort(out, function(a, b) return a.start < b.start end)
  return out
end

-- -- Objects ----------------------------------------------------------------------

-- Who made an object and where: the put's call site, the owner's pid.
local function owner_pid(cl)
  if cl.worker then return cl.worker.pid end
  local j = cl.job and N.jobs[cl.job]
  return j and j.pid
end

function M.object_put(cl, m)
  local o = require("lray._node.objects").get(m.id)
  if m.cs and not o.call_site then o.call_site = m.cs end
  if not o.owner_cl then o.owner_cl = cl end
end

local function object_list()
  local objects = require("lray._node.objects")
  local out = {}
  for id, o in pairs(objects.objects) do
    local size = (o.data and #o.data) or (o.shm and o.shm[2]) or 0
    out[#out + 1] = { object_id = id, ready = o.st ~= nil, count = o.count, size = size,
      where = o.shm and "shm" or "inline", node_id = N.node_id, call_site = o.call_site,
      owner_pid = o.owner_cl and owner_pid(o.owner_cl),
      state = o.st == "err" and "ERROR" or (o.st and "READY" or "PENDING") }
  end
  table.sort(out, function(a, b)
    if a.size ~= b.size then return a.size > b.size end
    return a.object_id < b.object_id
  end)
  return out
end

-- -- The state API --------------------------------------------------------------

local function actor_list()
  local out = require("lray._node.actors").list()
  for _, a in ipairs(out) do a.node_id = N.node_id end
  table.sort(out, function(a, b) return a.actor_id < b.actor_id end)
  return out
end

local function pid_actors()
  local map = {}
  for _, a in pairs(require("lray._node.actors").actors) do
    if a.pid then map[a.pid] = a.aid end
  end
  return map
end

local function counters()
  local out = {}
  for state, n in pairs(M.ended) do out[#out + 1] = { what = "tasks_ended", state = state, count = n } end
  return out
end

local LISTS = {
  tasks = M.task_list, jobs = M.job_list, spans = M.span_list, counters = counters,
  objects = object_list, actors = actor_list,
  logs = function() return M.log_list(pid_actors()) end,
}

--- Serves a "list" request for the kinds recorded here; nil for the others.
function M.list(m)
  local f = LISTS[m.what]
  if not f then return nil end
  return { items = f(m) }
end

--- Starts the dashboard process on the listening socket fd the embedded
--- driver bound (a client of this node's state API, which ends with it),
--- after the node's own start, so it stays off the path of the first task.
function M.start_dashboard(fd)
  core.fd_cloexec(fd, true)   -- workers started meanwhile must not hold it
  core.timer(0.2, 0, function()
    core.fd_cloexec(fd, false)
    require("lray.dashboard").start(fd, { node = "unix:" .. N.sock, owner = core.getpid(),
      log = "/dev/null" })
    core.close_fd(fd)
  end, true)
end

function M.init()
  local sched = require("lray._node.sched")
  leases = sched.leases
  sched.observe_output = M.output
  sched.observe_exit = M.worker_exited
end

return M
