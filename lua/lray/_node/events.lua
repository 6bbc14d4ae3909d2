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

local tasks = {}           -- task id -> record
local done_ids, done_head = {}, 0   -- ring of finished task ids
local spans, span_head = {}, 0      -- ring of spans
local jobs = {}            -- job id -> record
local ended_jobs, ended_head = {}, 0
local logs = {}            -- worker id -> {f = file, path, pid}

M.tasks, M.jobs = tasks, jobs
M.ended = { FINISHED = 0, FAILED = 0, CANCELLED = 0 }   -- tasks ever ended, by state

-- -- Tasks -------------------------------------------------------------------

local function forget_later(tid)
  done_head = done_head % MAX_DONE + 1
  local old = done_ids[done_head]
  if old then tasks[old] = nil end
  done_ids[done_head] = tid
end

--- sched.observe(t, event, w): a task was submitted, started, failed or ended.
function M.task(t, event, w)
  local r = tasks[t.tid]
  if event == "submit" then
    r = { task_id = t.tid, name = t.name, job_id = t.job, state = "PENDING", type = "task",
      node_id = N.node_id, parent_task_id = t.parent, submitted = core.time(),
      call_site = t.m and t.m.cs }
    tasks[t.tid] = r
    return
  end
  if not r then return end
  if event == "start" then
    r.state, r.pid, r.worker_id, r.started = "RUNNING", w and w.pid, w and w.wid, core.time()
    r.attempts = (r.attempts or 0) + 1
  elseif event == "retry" then
    r.state = "PENDING"
  elseif event == "fail" then
    r.failed = true
  elseif event == "finish" then
    if r.ended then return end
    r.ended = core.time()
    if t.cancelled or t.state == "cancelled" then r.state = "CANCELLED"
    elseif r.failed then r.state = "FAILED"
    else r.state = "FINISHED" end
    M.ended[r.state] = M.ended[r.state] + 1
    r.failed = nil
    forget_later(t.tid)
  end
end

--- Every task record, in submission order.
function M.task_list()
  local out = {}
  for _, r in pairs(tasks) do out[#out + 1] = r end
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
-- Workers batch {name, kind, id, start, dur} (start: monotonic seconds) and
-- send them now and then; the timeline is made of them.

function M.spans(cl, m)
  local w = cl.worker
  for _, s in ipairs(m.items or {}) do
    span_head = span_head % MAX_SPANS + 1
    s.pid, s.worker_id, s.node_id = w and w.pid, w and w.wid, N.node_id
    s.actor_id = s.actor_id or (w and w.actor and w.actor.aid)
    spans[span_head] = s
    if s.kind == "actor_call" and s.id and not tasks[s.id] then
      -- Callers send actor calls straight to the actor: the node learns of
      -- them only from here, once they ended.
      local state = s.failed and "FAILED" or "FINISHED"
      tasks[s.id] = { task_id = s.id, name = s.name, type = "actor_call", state = state,
        actor_id = s.actor_id, pid = s.pid, worker_id = s.worker_id, node_id = N.node_id,
        job_id = w and w.actor and w.actor.job, submitted = s.start, started = s.start,
        ended = s.start + s.dur }
      M.ended[state] = M.ended[state] + 1
      forget_later(s.id)
    end
  end
end

function M.span_list(m)
  local out = {}
  local since = m and m.since
  for i = 1, #spans do
    local sp = spans[i]
    if not since or sp.start + sp.dur > since then out[#out + 1] = sp end
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
  if not o.owner_pid then o.owner_pid = owner_pid(cl) end
end

local function object_list()
  local objects = require("lray._node.objects")
  local out = {}
  for id, o in pairs(objects.objects) do
    local size = (o.data and #o.data) or (o.shm and o.shm[2]) or 0
    out[#out + 1] = { object_id = id, ready = o.st ~= nil, count = o.count, size = size,
      where = o.shm and "shm" or "inline", node_id = N.node_id, call_site = o.call_site,
      owner_pid = o.owner_pid, state = o.st == "err" and "ERROR" or (o.st and "READY" or "PENDING") }
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
  sched.observe = M.task
  sched.observe_output = M.output
  sched.observe_exit = M.worker_exited
  -- Results of a task carry the call site of its .remote().
  local task = M.task
  sched.observe = function(t, event, w)
    task(t, event, w)
    if event == "submit" then
      local objects = require("lray._node.objects")
      local pid = t.owner and owner_pid(t.owner)
      for _, id in ipairs(t.rets) do
        local o = objects.get(id)
        o.call_site, o.owner_pid = t.m.cs, pid
      end
    end
  end
end

return M
