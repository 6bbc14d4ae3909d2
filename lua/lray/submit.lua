-- Task submission through worker leases, as Ray's direct task submitter.
-- The submitter (a driver, or a worker running a task that submits more)
-- asks its node for a worker for a resource shape (a lease), connects to
-- that worker and sends it tasks straight; results come straight back. The
-- node is off the per-task path: it sees one request and one grant per
-- lease, not four messages per task.
--
-- A lease serves tasks of its shape while this process has some queued;
-- the worker hands it back to the node when it has been idle a moment
-- (lease_end). Tasks run one at a time per worker; functions whose tasks
-- are short (measured) are pipelined a few deep so the worker never waits
-- for the next one. This process owns what it submitted: it re-sends a task
-- whose worker died (max_retries), fails it with WorkerCrashedError when no
-- retries are left, and cancels it.
local core = require("lray._core")
local runtime = require("lray.runtime")
local errors = require("lray.errors")
local lends = require("lray.lends")

local pairs, ipairs, tostring, remove, insert, min, tonumber =
  pairs, ipairs, tostring, table.remove, table.insert, math.min, tonumber

local M = {}

local PIPELINE = 16      -- tasks in flight on one worker, for short functions
local SHORT = 0.002      -- seconds: a function whose tasks average less is short
local MAX_REQUESTS = 8   -- lease requests in flight per shape
local REJECTED_PAUSE = 0.02 -- seconds before asking again after a node said no

local shapes = {}        -- shape key -> {res, queue, leases, requests}
local by_ret = {}        -- return id -> task (for lray.cancel)
local live = {}          -- task id -> task, until it settles
local codes = {}         -- function hash -> its encoding, sent once per worker
local timing = {}        -- function hash -> {n, seconds}
M.live = live

-- -- Shapes ------------------------------------------------------------------

local function key_of(res)
  local parts = {}
  for k, v in pairs(res) do parts[#parts + 1] = k .. "=" .. tostring(v) end
  table.sort(parts)
  return table.concat(parts, ",")
end

-- Tasks that may not be retried (max_retries = 0) get shapes, and so
-- leases, of their own: the node's memory monitor kills a retriable lease's
-- worker first (lease.retriable). where: the node to ask for leases first
-- (the one holding most of the tasks' argument bytes), nil for this
-- process's own node.
local function shape_of(res, retriable, where)
  local key = key_of(res) .. (retriable and "" or ";once")
  if where then key = key .. "@" .. where end
  local sh = shapes[key]
  if not sh then
    sh = { key = key, res = res, queue = {}, leases = {}, requests = {}, nreq = 0, via = {},
      nwait = 0, retriable = retriable, where = where }
    shapes[key] = sh
  end
  return sh
end

-- Data locality (as Ray's locality-aware lease policy): the node whose
-- store holds most of t's ObjectRef arguments' bytes, when that is not this
-- process's own node. Its tasks get a shape of their own whose leases are
-- asked of that node first, so they run where their arguments are (that
-- node may still send the request on when it has no room).
local function locality(t)
  if not t.deps then return nil end
  local bytes, best, most = {}, nil, 0
  for _, id in pairs(t.deps) do
    local e = runtime.objs[id]
    if e and e.shm and e.node then
      local b = (bytes[e.node] or 0) + e.shm[2]
      bytes[e.node] = b
      if b > most then best, most = e.node, b end
    end
  end
  if best == runtime.node_address() then return nil end
  return best
end

-- -- Settling tasks ------------------------------------------------------------

-- A task that never got its answer takes back what its arguments lent
-- (see push).
local function unlend(t)
  if t.lend then
    runtime.queue({ t = "unlend", token = t.lend })
    t.lend = nil
  end
end

local function finish(t)
  unlend(t)
  t.state = "done"
  live[t.tid] = nil
  for _, id in ipairs(t.rets) do by_ret[id] = nil end
  -- The arguments' ObjectRefs may go now, unless the task is kept to
  -- rebuild its results (lineage, below).
  if not t.nlineage or t.retries == 0 then t.keep = nil end
end

local function fail(t, err)
  local blob = require("lray.serialize").encode(err)
  for _, id in ipairs(t.rets) do runtime.fill(id, { err = blob }, "local") end
  finish(t)
end

local function cancelled_error(t)
  return errors.new("TaskCancelledError", "task '" .. tostring(t.name) .. "' was cancelled")
end

-- -- Pushing tasks onto leases -------------------------------------------------

local pump

-- How many tasks like t one worker may hold: one, unless t's function is
-- known to be short and the node has said no worker is free for this shape
-- (more go onto the workers we have rather than wait for one).
local function depth(t, sh)
  if sh.nwait == 0 then return 1 end
  local s = timing[t.fh]
  if s and s.n >= 2 and s.seconds / s.n < SHORT then return PIPELINE end
  return 1
end

-- The values of ObjectRef arguments, sent along so the worker need not ask.
local function dep_values(deps)
  if not deps then return nil end
  local depv = {}
  for i, id in pairs(deps) do
    local e = runtime.objs[id]
    depv[i] = { id = id, data = e.data, shm = e.shm, err = e.err, arr = e.arr, node = e.node }
  end
  return depv
end

-- ObjectRefs and actor handles the task's arguments hold are lent to the
-- worker: the node keeps them until the worker, holding what it keeps
-- itself, claims the lend. So are top-level ObjectRef arguments the node
-- knows (the worker reads a stored one in place; a value may hold handles,
-- which the worker registers before it claims), and the handles inside the
-- values of those only this process has. A task that never got its answer
-- takes the lend back.
local function lend_ids(t)
  local ids, aids
  for _, id in ipairs(t.refs or {}) do ids = ids or {}; ids[#ids + 1] = id end
  for _, aid in ipairs(t.actors or {}) do aids = aids or {}; aids[#aids + 1] = aid end
  for _, id in pairs(t.deps or {}) do
    local e = runtime.objs[id]
    if e and (e.loc ~= "local" or e.promoted) then
      ids = ids or {}; ids[#ids + 1] = id
    elseif e and e.actors then
      for _, aid in ipairs(e.actors) do aids = aids or {}; aids[#aids + 1] = aid end
    end
  end
  return ids, aids
end

local function push(L, t)
  t.state, t.lease = "pushed", L
  local lent, aids = lend_ids(t)
  t.try = (t.try or 0) + 1   -- each try lends under tokens of its own
  -- A worker of this node is named to the node, and we to it (lends.lua;
  -- worked out once per lease: it showed in profiles per task).
  if L.me == nil then L.me = lends.local_pid(L.addr) or false end
  local me = L.me or nil
  if lent or aids then
    t.lend = t.tid .. "#" .. t.try
    runtime.queue({ t = "lend", token = t.lend, ids = lent, aids = aids, to = me and L.pid })
    runtime.flush_queued()
  end
  L.inflight = L.inflight + 1
  L.tasks[t.tid] = t
  local code
  if not L.has[t.fh] then
    code = codes[t.fh]
    L.has[t.fh] = true
  end
  L.conn:send({ t = "push", lid = L.lid, tid = t.tid, seq = t.seq, fh = t.fh, code = code,
    args = t.args, depv = dep_values(t.deps), deps = t.deps and true or nil, rets = t.rets,
    name = t.name, job = t.job, refs = t.refs, actors = t.actors, cs = t.cs, lend = t.lend,
    try = t.try, from = me, lnode = t.lend and runtime.lnode() })
end

-- -- Other nodes -------------------------------------------------------------------
-- A lease request that fits better on another node comes back with that
-- node's address (spill): it is asked again there, over an authenticated
-- TCP connection kept per node, and marked spilled so it stays there. Lease
-- messages then go to the node that granted (L.raylet, sh.via[rid]).

local raylets = {}   -- address -> {conn, ready, waiting = {fn...}}
local address_of = setmetatable({}, { __mode = "k" })   -- conn -> its node's address

-- Sends msg to the node manager at conn (nil: our own node).
local function to_raylet(conn, msg)
  if conn then
    if conn:is_open() then conn:send(msg) end
  else
    runtime.send(msg)
  end
end

-- Calls fn(conn) once the node manager at addr is connected, or fn(nil,
-- why) when it cannot be reached.
local function with_raylet(addr, fn)
  local r = raylets[addr]
  if r and r.ready then return fn(r.conn) end
  if r then r.waiting[#r.waiting + 1] = fn; return end
  r = { waiting = { fn } }
  raylets[addr] = r
  core.connect(addr, function(conn, err)
    local waiting = r.waiting
    r.waiting = {}
    if err then
      raylets[addr] = nil
      for _, f in ipairs(waiting) do f(nil, err) end
      return
    end
    r.conn, r.ready = conn, true
    address_of[conn] = addr
    conn:on_message(runtime.on_message)
    conn:on_close(function()
      raylets[addr] = nil
      -- Requests it never answered are asked again (here, or elsewhere).
      for _, sh in pairs(shapes) do
        for rid, via in pairs(sh.via) do
          if via == conn and sh.requests[rid] then
            if sh.requests[rid] == "waiting" then sh.nwait = sh.nwait - 1 end
            sh.requests[rid], sh.via[rid] = nil, nil
            sh.nreq = sh.nreq - 1
          end
        end
        pump(sh)
      end
    end)
    for _, f in ipairs(waiting) do f(conn) end
  end, runtime.info and runtime.info.token)
end

--- Before this process leaves: the nodes it leased workers from send what
--- those workers printed that they have not sent yet (bounded wait).
function M.flush_remote(seconds)
  local waiting = 0
  for _, r in pairs(raylets) do
    if r.ready and r.conn:is_open() then
      waiting = waiting + 1
      runtime.request_via(r.conn, { t = "shutdown" }, function() waiting = waiting - 1 end)
    end
  end
  if waiting > 0 then
    runtime.wait_until(function() return waiting == 0 end, core.now() + (seconds or 2), true)
  end
end

-- conn: another node's (nil: our own); first_hop: asked there for data
-- locality, so that node may still send it on (else it was sent there by
-- a node, and stays: one hop); reject: sent there because it fit now, so
-- that node grants it now or rejects it.
local function request_lease(sh, conn, first_hop, reject)
  local first = sh.queue[1]
  local rid
  local msg = { t = "lease", res = sh.res, name = first and first.name,
    job = first and first.job, spilled = conn and not first_hop or nil,
    reject = reject or nil, retriable = sh.retriable }
  local function on_reply(r) M.granted(sh, rid, r) end
  if conn then
    rid = runtime.request_via(conn, msg, on_reply)
    sh.via[rid] = conn
  else
    rid = runtime.request(msg, on_reply)
  end
  sh.requests[rid] = "asked"
  sh.nreq = sh.nreq + 1
end

-- Asks the node at addr instead (our node said it fits better there, now
-- or some day, or first_hop: the tasks' arguments are there).
local function spill(sh, addr, first_hop, now)
  sh.nreq = sh.nreq + 1   -- counted while connecting
  with_raylet(addr, function(conn)
    sh.nreq = sh.nreq - 1
    if conn then
      request_lease(sh, conn, first_hop, now)
    elseif #sh.queue > 0 then
      request_lease(sh)   -- unreachable: queue here after all
    end
  end)
end

-- Puts queued tasks on leases with room, and asks for more leases while
-- tasks are left over; withdraws requests nobody needs any more. A lease
-- whose connection is closing (its worker died; lease_lost runs from the
-- close callback) takes nothing more.
function pump(sh)
  local q = sh.queue
  for _, L in pairs(sh.leases) do   -- every idle worker first
    if #q == 0 then break end
    if L.conn and L.conn:is_open() and not L.ended and L.inflight == 0 then push(L, remove(q, 1)) end
  end
  for _, L in pairs(sh.leases) do   -- then deeper, for short functions
    if #q == 0 then break end
    if L.conn and L.conn:is_open() and not L.ended then
      while #q > 0 and L.inflight < depth(q[1], sh) do push(L, remove(q, 1)) end
    end
  end
  if #q > 0 then
    local want = min(#q, MAX_REQUESTS) - sh.nreq
    for _ = 1, want do
      if sh.where then spill(sh, sh.where, true) else request_lease(sh) end
    end
  elseif sh.nreq > 0 then
    for rid in pairs(sh.requests) do to_raylet(sh.via[rid], { t = "lease_cancel", rid = rid }) end
  end
end

local function enqueue(t, front)
  local sh = t.shape
  t.state = "queued"
  if front then insert(sh.queue, 1, t) else sh.queue[#sh.queue + 1] = t end
  pump(sh)
end

-- Queues t for a worker once every ObjectRef argument exists: it waits
-- here, not on a worker.
local function start(t)
  local missing = {}
  if t.deps then
    for _, id in pairs(t.deps) do
      local e = runtime.objs[id]
      if not (e and e.st) then missing[#missing + 1] = id end
    end
  end
  local function go()
    local where = locality(t)
    if where or t.shape.where then t.shape = shape_of(t.res, t.shape.retriable, where) end
    enqueue(t)
  end
  if #missing == 0 then return go() end
  t.state = "waiting"
  local n = #missing
  for _, id in ipairs(missing) do
    runtime.when_ready(id, function()
      n = n - 1
      if n == 0 and t.state == "waiting" then go() end
    end)
  end
end

-- The worker behind lease L is gone (crashed, killed, or never reached):
-- its tasks are re-sent while retries last.
local function lease_lost(L, why)
  if L.lost then return end
  L.lost = true
  local sh = L.shape
  sh.leases[L.lid] = nil
  local again = {}
  for _, t in pairs(L.tasks) do
    unlend(t)
    -- Its result never came: a result the worker lent before it died is
    -- taken back (remembered by the node if still on its way), at the
    -- worker's node.
    runtime.queue({ t = "unlend", token = t.tid .. "#" .. t.try .. ":ret", node = L.node })
    if t.cancelled then
      fail(t, cancelled_error(t))
    elseif L.oom and t.retries ~= 0 then
      -- Killed by the node's memory monitor: retried without using up
      -- max_retries (as Ray), after a pause that grows with each such kill.
      t.oom_kills = (t.oom_kills or 0) + 1
      again[#again + 1] = t
    elseif L.oom then
      fail(t, errors.new("WorkerCrashedError", ("the worker running task '%s' (pid %s) was"
        .. " killed by the node's memory monitor (memory pressure), and the task is not"
        .. " retried (max_retries = 0): %s"):format(tostring(t.name), tostring(L.pid), L.oom)))
    elseif t.retries ~= 0 then
      t.retries = t.retries - 1
      again[#again + 1] = t
    else
      fail(t, errors.new("WorkerCrashedError", ("the worker running task '%s' (pid %s) %s,"
        .. " and no retries are left (max_retries)"):format(tostring(t.name), tostring(L.pid), why)))
    end
  end
  L.tasks = {}
  table.sort(again, function(a, b) return a.num < b.num end)
  if L.oom and #again > 0 then
    local k = 0
    for _, t in ipairs(again) do k = math.max(k, t.oom_kills) end
    for _, t in ipairs(again) do t.state = "waiting" end
    -- Runs the retries after the backoff (0.1 s doubling, at most 5 s).
    core.timer(min(0.1 * 2 ^ (k - 1), 5), 0, function()
      for i = #again, 1, -1 do
        local t = again[i]
        if t.state == "waiting" then insert(sh.queue, 1, t); t.state = "queued" end
      end
      pump(sh)
    end)
    return pump(sh)
  end
  for i = #again, 1, -1 do insert(sh.queue, 1, again[i]); again[i].state = "queued" end
  pump(sh)
end

-- The node's memory monitor is about to kill the worker of one of our
-- leases: remember why, for when its connection closes.
runtime.handlers.lease_oom = function(m)
  for _, sh in pairs(shapes) do
    local L = sh.leases[m.lid]
    if L then L.oom = m.text; return end
  end
end

-- A lease that is over with nothing in flight on it closes its connection
-- (each lease opens its own: kept, they piled up in both processes). Its
-- close is then not a death.
local function retire(L)
  if L.ended and L.inflight == 0 and not L.lost and L.conn and L.conn:is_open() then
    L.lost = true
    L.conn:close()
  end
end

-- -- Lineage -------------------------------------------------------------------
-- A task whose result was stored in another node's store is kept, with its
-- arguments' ObjectRefs, while this process holds any of its results: if
-- that node dies, the result is rebuilt by running the task again (Ray's
-- lineage reconstruction), which uses up one of its max_retries (a task
-- with none left is kept without its arguments, to say why not). Results
-- kept here or stored on this process's own node need none: they live as
-- long as this process can read them.

local lineage = {}   -- return id -> the task that made it

local function keep_lineage(t, results)
  local here = runtime.node_address()
  local far = false
  for _, r in ipairs(results) do
    if r.shm and r.node and r.node ~= here then far = true end
  end
  if not far then return end
  for _, id in ipairs(t.rets) do
    if runtime.objs[id] and not lineage[id] then
      lineage[id] = t
      t.nlineage = (t.nlineage or 0) + 1
    end
  end
end

-- The last reference here to a result is gone: so is its lineage.
runtime.on_forget = function(id)
  local t = lineage[id]
  if not t then return end
  lineage[id] = nil
  t.nlineage = t.nlineage - 1
  if t.nlineage == 0 then t.nlineage, t.keep = nil, nil end
end

local function why_not(t)
  return ("; it cannot be rebuilt: task '%s' that made it has no retries left (max_retries)")
    :format(tostring(t.name))
end

-- Runs task t again for its results. Returns true when it is (or already
-- was) on its way, else the reason it cannot be.
local function rerun(t)
  if t.state ~= "done" then return true end
  if t.retries == 0 then return why_not(t) end
  if t.retries > 0 then t.retries = t.retries - 1 end
  for _, id in ipairs(t.rets) do
    local e = runtime.objs[id]
    if e and e.shm then
      -- Forget the lost copy; the new result fills the entry again.
      e.st, e.data, e.shm, e.err, e.arr, e.node = nil, nil, nil, nil, nil, nil
    end
    by_ret[id] = t
  end
  live[t.tid] = t
  start(t)
  return true
end

--- Rebuilds object id, lost with the node that stored it, if this process
--- made it with a task it still keeps: true when the task runs again (the
--- entry fills when it is done), else a reason to add to the error (nil:
--- not made here by a task, e.g. stored with lray.put or borrowed).
function M.rebuild(id)
  local t = lineage[id]
  if t then return rerun(t) end
  return nil
end
runtime.rebuild = M.rebuild

-- Task t could not read its ObjectRef argument m.lost (its node is gone):
-- if this process can rebuild it, t waits for it again and runs once it
-- is back, without using up its own retries. Returns true when so.
function M.rebuild_arg(t, m)
  if M.rebuild(m.lost) ~= true then return false end
  t.lend = nil   -- the worker claimed it
  start(t)
  return true
end

local function on_result(L, m)
  local t = L.tasks[m.tid]
  if not t then return end
  L.tasks[m.tid] = nil
  L.inflight = L.inflight - 1
  if m.rejected then
    -- The worker had handed the lease back before this task reached it:
    -- the lease is over (whether or not its lease_end reached us), and the
    -- task goes to another.
    L.ended = true
    L.shape.leases[L.lid] = nil
    unlend(t)
    retire(L)
    return enqueue(t, true)
  end
  local s = timing[t.fh]
  if not s then s = { n = 0, seconds = 0 }; timing[t.fh] = s end
  s.n, s.seconds = s.n + 1, s.seconds + (m.dur or 0)
  t.lend = nil   -- the worker claimed it
  if m.lua_error and t.retry_exc and t.retries ~= 0 and not t.cancelled then
    t.retries = t.retries - 1
    return enqueue(t)
  end
  if m.lost and M.rebuild_arg(t, m) then
    if m.lend then runtime.claim(m.lend, m.lnode) end
    retire(L)
    return pump(L.shape)
  end
  runtime.take_results(t.rets, m.results, m.lnode)
  -- Whatever the result lent us is claimed once we hold it ourselves: the
  -- refs take_results queued go out first.
  if m.lend then runtime.claim(m.lend, m.lnode) end
  keep_lineage(t, m.results)
  finish(t)
  retire(L)
  pump(L.shape)
end

local function connect(L)
  core.connect(L.addr, function(conn, err)
    if err then
      to_raylet(L.raylet, { t = "lease_return", lid = L.lid })
      return lease_lost(L, "could not be reached (" .. tostring(err) .. ")")
    end
    L.conn = conn
    conn:on_message(function(_, m)
      if m.t == "result" then
        on_result(L, m)
      elseif m.t == "lease_end" then
        L.ended = true
        L.shape.leases[L.lid] = nil
        retire(L)
        pump(L.shape)
      end
    end)
    conn:on_close(function() lease_lost(L, "died") end)
    pump(L.shape)
  end, runtime.info and runtime.info.token)   -- a worker on another node: TCP
end

--- The node answered lease request rid of shape sh.
function M.granted(sh, rid, r)
  if sh.requests[rid] == "waiting" then sh.nwait = sh.nwait - 1 end
  local via = sh.via[rid]
  sh.requests[rid], sh.via[rid] = nil, nil
  sh.nreq = sh.nreq - 1
  if r.spill then return spill(sh, r.spill, false, r.spill_now) end
  if r.rejected then
    -- The node we were sent to had no room after all (our node's view of
    -- it was stale): ask again shortly, from the start.
    core.timer(REJECTED_PAUSE, 0, function() pump(sh) end)
    return
  end
  if r.err then
    -- Refused outright (not just busy): the queued tasks can never run.
    local q = sh.queue
    sh.queue = {}
    for _, t in ipairs(q) do fail(t, errors.new("ValueError", r.err)) end
    return
  end
  if not r.lid then
    -- Withdrawn (lease_cancel) before it was granted; tasks queued since
    -- counted on it.
    return pump(sh)
  end
  if #sh.queue == 0 then
    to_raylet(via, { t = "lease_return", lid = r.lid })
    return
  end
  local L = { lid = r.lid, addr = r.address, pid = r.pid, shape = sh, inflight = 0,
    tasks = {}, has = {}, raylet = via, node = via and address_of[via] }
  sh.leases[L.lid] = L
  connect(L)
end

-- -- Submitting ------------------------------------------------------------------

local next_num = 0

--- Submits a task: t = {tid, fh, code, name, args, deps, refs, actors, rets,
--- res, retries, retry_exc, keep, parent, job}. Its return ids must already
--- be expected by the runtime.
function M.submit(t)
  next_num = next_num + 1
  t.num = next_num
  t.seq = tonumber(t.tid:sub(-7), 16) + 1   -- names it to the cancel signal
  t.shape = shape_of(t.res, t.retries ~= 0)
  if t.code then codes[t.fh] = t.code; t.code = nil end
  live[t.tid] = t
  for _, id in ipairs(t.rets) do by_ret[id] = t end
  start(t)
end

-- The node has no worker free for a request: it stays queued there.
runtime.handlers.lease_wait = function(m)
  for _, sh in pairs(shapes) do
    if sh.requests[m.rid] == "asked" then
      sh.requests[m.rid] = "waiting"
      sh.nwait = sh.nwait + 1
      return pump(sh)
    end
  end
end

local function fmt_res(res, only)
  local parts = {}
  for k, v in pairs(res) do
    if not only or only[k] then parts[#parts + 1] = ("%s = %g"):format(k, v) end
  end
  table.sort(parts)
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function explain(id, after, level)
  local t = by_ret[id]
  if not t or t.state == "pushed" then return t ~= nil end
  local warn = runtime.handlers.warn
  if t.state == "waiting" and t.oom_kills then
    -- Waiting out the pause before a retry: the memory monitor killed it.
    warn({ text = ("lray.get has waited %g s: task '%s' waits to be retried: the node's memory"
      .. " monitor killed its worker %d time(s) (memory pressure)"):format(after,
      tostring(t.name), t.oom_kills) })
    return true
  end
  if t.state == "waiting" then
    -- Its arguments are what is late: explain those.
    local told = false
    for _, d in pairs(t.deps or {}) do
      local e = runtime.objs[d]
      if not (e and e.st) and level < 20 then
        if explain(d, after, level + 1) then
          told = true
        else
          for _, ex in ipairs(runtime.explainers) do
            if ex ~= M.explain and ex(d, after) then told = true; break end
          end
        end
      end
    end
    if not told then
      warn({ text = ("lray.get has waited %g s: task '%s' waits for its ObjectRef arguments")
        :format(after, tostring(t.name)) })
    end
    return true
  end
  -- Queued here until the node lends a worker: say what it needs and what
  -- the node has free (asked without blocking: this runs in a timer).
  local need = {}
  for k, v in pairs(t.res) do need[k] = v / require("lray.options").UNIT end
  runtime.request({ t = "resources" }, function(r)
    local ok, st = pcall(require("cjson").decode, r.json or "")
    local avail = ok and type(st) == "table" and st.avail or {}
    local shown = {}
    for k in pairs(need) do shown[k] = avail[k] or 0 end
    warn({ text = ("lray.get has waited %g s: task '%s' is queued: it needs %s and this node's"
      .. " resources are busy (available now: %s), held by running tasks and by actors that"
      .. " hold resources for their life"):format(after, tostring(t.name), fmt_res(need),
      fmt_res(shown)) })
  end)
  return true
end

-- A get has waited long for the result id of a task submitted here: say
-- why when it is not running (its worker lease is not granted).
function M.explain(id, after) return explain(id, after, 0) end
runtime.explainers[#runtime.explainers + 1] = M.explain

--- The code of function fh, for the first task each worker gets.
function M.define(fh, code) codes[fh] = code end

-- -- Cancelling ------------------------------------------------------------------

local function cancel_task(t, force, recursive)
  t.cancelled = true
  if t.state == "waiting" then
    fail(t, cancelled_error(t))
  elseif t.state == "queued" then
    local q = t.shape.queue
    for i = 1, #q do
      if q[i] == t then remove(q, i); break end
    end
    fail(t, cancelled_error(t))
  elseif t.state == "pushed" then
    local L = t.lease
    if force then
      core.kill(L.pid, 9)
    elseif L.conn then
      L.conn:send({ t = "cancel", tid = t.tid, recursive = recursive })
      core.cancel_signal(L.pid, t.seq)
    end
  end
end

--- lray.cancel of a task this process submitted; false when it did not
--- submit the task producing id.
function M.cancel(id, force, recursive)
  local t = by_ret[id]
  if not t then return false end
  cancel_task(t, force, recursive)
  runtime.pump()
  return true
end

--- Cancels the tasks submitted by task parent (a recursive cancel of it).
function M.cancel_children(parent, force)
  for _, t in pairs(live) do
    if t.parent == parent and t.state ~= "done" then cancel_task(t, force, true) end
  end
end

-- SIGUSR2 (runtime's dump): what each shape waits for.
runtime.dump_hooks[#runtime.dump_hooks + 1] = function(out)
  for key, sh in pairs(shapes) do
    local ls = {}
    for lid, L in pairs(sh.leases) do
      ls[#ls + 1] = ("%s(pid %s, %s, %d in flight)"):format(lid, tostring(L.pid),
        L.conn and "connected" or "connecting", L.inflight)
    end
    out[#out + 1] = ("shape {%s}: %d queued, %d lease requests (%d waiting), leases %s"):format(
      key, #sh.queue, sh.nreq, sh.nwait, table.concat(ls, " "))
  end
end

--- Forgets everything (after shutdown).
function M.reset()
  for _, sh in pairs(shapes) do
    for _, L in pairs(sh.leases) do
      L.lost = true
      if L.conn and L.conn:is_open() then L.conn:close() end
    end
  end
  shapes, by_ret, codes, timing = {}, {}, {}, {}
  for k in pairs(live) do live[k] = nil end
end

return M
