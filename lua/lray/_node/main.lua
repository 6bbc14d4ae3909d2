-- `lray _node`: the head (jobs, actors, names, function table) and the node
-- manager (scheduler, worker pool, object store) of one node, in one process
-- and one event loop. Started by an embedded driver or by `lray start`.
local core = require("lray._core")
require("lray.serialize")   -- codec names: error values keep their type
local N = require("lray._node.state")
local objects = require("lray._node.objects")
local sched = require("lray._node.sched")
local actors = require("lray._node.actors")
local events = require("lray._node.events")

local pairs, ipairs, tostring, tonumber = pairs, ipairs, tostring, tonumber
local units = sched.units

local M = {}
local H = {}
local DEBUG = os.getenv("LRAY_DEBUG")          -- message type -> handler(cl, m)
local next_job = 0
local cleaned = false

local function reply(cl, m, r)
  r.t = "reply"
  r.rid = m.rid
  cl.conn:send(r)
end

-- The state API (resources, nodes, list, status) answers in JSON: the same
-- records `lray list --format json` prints.
local cjson = require("cjson")
local function reply_state(cl, m, v)
  reply(cl, m, { json = cjson.encode(v) })
end

-- -- Clients --------------------------------------------------------------

H.hello = function(cl, m)
  if m.proto ~= core.PROTO_VERSION then
    reply(cl, m, { err = ("this lray node speaks protocol version %d, the client %s: use the"
      .. " same lray build for the whole cluster"):format(core.PROTO_VERSION, tostring(m.proto)) })
    return
  end
  cl.pid = m.pid
  if m.role == "worker" then
    local w = N.workers[m.wid]
    if not w then cl.conn:close(); return end
    cl.kind = "worker"
    reply(cl, m, { node_id = N.node_id, shm = N.shm_name, session_dir = N.session_dir })
    sched.worker_hello(w, cl)
    return
  end
  next_job = next_job + 1
  local job = string.format("%08x", next_job)
  cl.kind, cl.job = "driver", job
  local ns = m.namespace or ("anon-" .. job .. "-" .. core.random_hex(4))
  N.jobs[job] = { conn = cl.conn, namespace = ns, path = m.path, cpath = m.cpath,
    log = m.log_to_driver, pid = m.pid, started = core.time() }
  events.job_started(job, N.jobs[job])
  reply(cl, m, { node_id = N.node_id, job_id = job, shm = N.shm_name,
    session_dir = N.session_dir, namespace = ns, address = N.tcp_addr or ("unix:" .. N.sock) })
end

H.fn = function(_, m) N.fns[m.h] = m.code end
H.lease = function(cl, m) sched.lease(cl, m) end
H.lease_done = function(cl, m) if cl.worker then sched.lease_done(cl.worker, m) end end
H.lease_return = function(cl, m) sched.lease_return(cl, m) end
H.lease_cancel = function(cl, m) sched.lease_cancel(cl, m) end

H.put = function(cl, m)
  events.object_put(cl, m)
  objects.hold(cl, m.id)
  if m.shm and cl.allocs then cl.allocs[m.shm[1]] = nil end
  objects.store(m.id, m)
end

H.expect = function(cl, m)
  local o = objects.get(m.id)
  if not o.st then o.expected_from = cl end
  objects.hold(cl, m.id)
end

H.sub = function(cl, m)
  for _, id in ipairs(m.ids) do objects.subscribe(cl, id) end
end

H.ref = function(cl, m) objects.hold(cl, m.id) end
H.lend = function(_, m) objects.lend(m.token, m.ids) end
H.claim = function(_, m) objects.claim(m.token) end
H.unlend = function(_, m) objects.unlend(m.token) end
H.unref = function(cl, m)
  for _, id in ipairs(m.ids) do objects.unhold(cl, id) end
end

-- Space in the shared-memory store. When it is short, every process is asked
-- to collect garbage (dropping ObjectRefs Lua no longer reaches), then the
-- request is retried for a while before it fails.
local function try_alloc(cl, m, tries)
  local off = N.region:alloc(m.size)
  if not off then
    objects.collect_now()
    off = N.region:alloc(m.size)
  end
  if off then
    cl.allocs = cl.allocs or {}
    cl.allocs[off] = m.size
    return reply(cl, m, { off = off })
  end
  if tries == 0 then
    for c in pairs(N.clients) do
      if c ~= cl and c.conn:is_open() then c.conn:send({ t = "gc" }) end
    end
  end
  if tries >= 40 or not cl.conn:is_open() then
    local st = N.region:stats()
    return reply(cl, m, { err = ("the object store is full: cannot store %d bytes"
      .. " (%d of %d bytes in use by live objects); release ObjectRefs you no"
      .. " longer need or start with a larger object_store_memory"):format(
        m.size, st.used, st.capacity) })
  end
  core.timer(0.025, 0, function() try_alloc(cl, m, tries + 1) end)
end
H.alloc = function(cl, m) try_alloc(cl, m, 0) end

H.blocked = function(cl) if cl.worker then sched.blocked(cl.worker, true) end end
H.unblocked = function(cl) if cl.worker then sched.blocked(cl.worker, false) end end
-- (an actor's worker blocked in get gives back the CPUs the actor holds)


-- A driver's get has waited long for these objects: say what holds each
-- one up (following queued tasks to the arguments they wait for), as warns.
H.why = function(cl, m)
  local seen, todo = {}, {}
  for _, id in ipairs(m.ids or {}) do todo[#todo + 1] = id end
  local n = 0
  while #todo > 0 and n < 1000 do
    local id = table.remove(todo)
    if not seen[id] then
      seen[id] = true
      n = n + 1
      local text = sched.why_pending(id)
      if text then
        cl.conn:send({ t = "warn", text = ("lray.get has waited %g s: %s"):format(m.after or 0, text) })
      end
    end
  end
end

H.actor_create = function(cl, m)
  local err, a = actors.create(cl, m)
  if m.rid then
    reply(cl, m, { err = err, aid = a and a.aid, existed = a and a.aid ~= m.aid,
      cname = a and a.cname, methods = a and a.methods })
  end
end
H.actor_sub = function(cl, m) actors.subscribe(cl, m.aid) end
H.actor_ref = function(cl, m) actors.hold(cl, m.aid) end
H.actor_unref = function(cl, m) actors.unhold(cl, m.aid) end
H.actor_ready = function(cl, m) actors.ready(cl.worker, m) end
H.actor_failed = function(cl, m) actors.init_failed(cl.worker, m) end
H.kill_actor = function(cl, m)
  actors.kill(m.aid, m.no_restart, m.rid and function() reply(cl, m, {}) end)
end
H.get_actor = function(cl, m)
  local ns = m.namespace or (cl.job and N.jobs[cl.job] and N.jobs[cl.job].namespace)
    or (cl.worker and cl.worker.job and N.jobs[cl.worker.job] and N.jobs[cl.worker.job].namespace)
  local a = actors.lookup(m.name, ns)
  if not a then
    return reply(cl, m, { err = ("no live actor named '%s' in namespace '%s'"):format(
      m.name, tostring(ns)) })
  end
  reply(cl, m, { aid = a.aid, cname = a.cname, methods = a.methods })
end

-- What queued tasks ask for, by shape, for `lray status`.
local function demand()
  local out = {}
  for _, sh in ipairs(sched.shapes()) do
    local parts = {}
    for k, v in pairs(sh.req) do parts[#parts + 1] = k .. ": " .. v end
    table.sort(parts)
    local req = {}
    for k, v in pairs(sh.req) do req[k] = sched.units(v) end
    out[#out + 1] = { shape = "{" .. table.concat(parts, ", ") .. "}", count = sh.count,
      infeasible = sched.infeasible(req) ~= nil }
  end
  return out
end

H.resources = function(cl, m)
  reply_state(cl, m, { total = sched.total(), avail = sched.available() })
end

H.nodes = function(cl, m)
  reply_state(cl, m, { nodes = { { node_id = N.node_id, address = N.tcp_addr or ("unix:" .. N.sock),
    alive = true, resources = sched.total() } } })
end

-- Tasks, actors, objects, jobs, logs and spans are events.lua's records.
H.list = function(cl, m)
  local r = events.list(m)
  if r then return reply_state(cl, m, r) end
  r = {}
  if m.what == "workers" then
    r.items = {}
    for wid, w in pairs(N.workers) do
      r.items[#r.items + 1] = { worker_id = wid, pid = w.pid, state = w.state }
    end
  end
  reply_state(cl, m, r)
end

H.status = function(cl, m)
  local q = sched.counts()
  local nobj, bytes = objects.stats()
  local nw = 0
  for _ in pairs(N.workers) do nw = nw + 1 end
  reply_state(cl, m, { total = sched.total(), avail = sched.available(), queued = q, demand = demand(),
    objects = nobj, object_bytes = bytes, workers = nw, store = N.region:stats(),
    node_id = N.node_id, address = N.tcp_addr or ("unix:" .. N.sock) })
end

-- A driver leaves. What its tasks printed before their results reached it
-- is still in the workers' pipes: one more turn of the loop reads it, and it
-- goes out ahead of the reply.
H.shutdown = function(cl, m)
  core.timer(0.001, 0, function()
    sched.flush_output(cl.job)
    if m.rid and cl.conn:is_open() then reply(cl, m, {}) end
    if cl.job and N.jobs[cl.job] and N.jobs[cl.job].pid == N.owner_pid then M.cleanup(0) end
  end)
end
H.stop = function() M.cleanup(0) end
H.spans = function(cl, m) events.spans(cl, m) end

-- -- Connections ----------------------------------------------------------

local function on_close(cl)
  N.clients[cl] = nil
  objects.drop_client(cl)
  sched.drop_client(cl)
  actors.drop_subscriber(cl)
  if cl.kind == "driver" then
    local job = N.jobs[cl.job]
    N.jobs[cl.job] = nil
    events.job_ended(cl.job)
    actors.drop_job(cl.job)
    sched.drop_job(cl.job)
    if job and N.owner_pid and job.pid == N.owner_pid then M.cleanup(0) end
  elseif cl.worker and cl.worker.state ~= "dead" and cl.worker.proc then
    -- A worker that hangs up is finished; make sure its process is too.
    cl.worker.proc:kill(9)
  end
end

local function on_conn(conn)
  local cl = { conn = conn, held = {}, actors_held = {} }
  N.clients[cl] = true
  conn:on_close(function() on_close(cl) end)
  conn:on_message(function(_, m)
    if DEBUG then io.stderr:write("node <- ", tostring(cl.kind), " ", tostring(m.t), "\n") end
    local h = H[m.t]
    if h then h(cl, m) end
  end)
end

-- -- Start and stop ---------------------------------------------------------

function M.cleanup(code)
  if cleaned then return end
  cleaned = true
  if M.profiling then require("jit.p").stop() end
  for _, w in pairs(N.workers) do
    if w.proc then w.proc:kill(9) end
    if w.addr then core.unlink(w.addr:sub(6)) end
  end
  if N.region then N.region:close() end
  if N.shm_name then core.shm_unlink(N.shm_name) end
  if N.session_dir then
    events.remove_logs()
    -- A node that failed keeps its log: whoever started it reads it.
    local files = { "node.sock", "address" }
    if (code or 0) == 0 then files[#files + 1] = "node.log" end
    for _, f in ipairs(files) do core.unlink(N.session_dir .. "/" .. f) end
    for _, a in pairs(actors.actors) do
      core.unlink(N.session_dir .. "/a-" .. a.aid .. ".sock")
    end
    core.rmdir(N.session_dir)
  end
  io.stdout:flush()
  core.exit(code or 0)
end

local function parse(argv)
  local o = {}
  local i = 1
  while i <= #argv do
    local k = argv[i]:match("^%-%-(.+)$")
    if not k then error("unexpected argument " .. argv[i]) end
    if k == "resource" then
      local name, amount = argv[i + 1]:match("^(.*)=([^=]*)$")
      o.resources = o.resources or {}
      o.resources[name] = tonumber(amount)
    else
      o[k:gsub("-", "_")] = argv[i + 1]
    end
    i = i + 2
  end
  return o
end

function M.main(argv)
  local o = parse(argv)
  if o.dashboard_fd then events.start_dashboard(tonumber(o.dashboard_fd)) end
  -- LRAY_PROFILE_NODE=FILE: LuaJIT's sampling profiler over the node's life.
  local prof = os.getenv("LRAY_PROFILE_NODE")
  if prof then
    require("jit.p").start("Fl", prof)
    M.profiling = true
  end
  N.exe = core.exe_path()
  N.owner_pid = tonumber(o.owner)
  if N.owner_pid then
    -- Embedded: die with the driver that started us, even on SIGKILL.
    core.pdeathsig(15)
    if core.getppid() ~= N.owner_pid then return 0 end
  end
  N.node_id = core.random_hex(14)
  N.session_dir = o.session
  core.mkdir(N.session_dir)
  N.sock = N.session_dir .. "/node.sock"
  local ncpu = tonumber(o.num_cpus) or 1
  N.total.CPU = units(ncpu)
  N.total.GPU = units(tonumber(o.num_gpus) or 0)
  N.total.memory = units(tonumber(o.memory) or 0)
  local store = tonumber(o.object_store_memory) or 512 * 1024 * 1024
  N.total.object_store_memory = units(store)
  for k, v in pairs(o.resources or {}) do N.total[k] = units(v) end
  for k, v in pairs(N.total) do
    if v == 0 and k ~= "CPU" then N.total[k] = nil end
  end
  N.fns = {}
  events.init()
  sched.init()
  core.shm_sweep("lray-")
  N.shm_name = "lray-" .. core.getpid() .. "-" .. core.random_hex(4)
  N.region = core.shm_create(N.shm_name, store)
  local srv, err = core.listen("unix:" .. N.sock, on_conn)
  if not srv then error(err) end
  if o.port then
    -- Loopback unless --host says otherwise: nothing listens beyond this
    -- machine by default.
    local host = o.host or "127.0.0.1"
    local tsrv, terr = core.listen(host .. ":" .. o.port, on_conn)
    if not tsrv then
      io.stderr:write(tostring(terr), "\n")
      M.cleanup(1)
    end
    N.tcp_addr = (host == "0.0.0.0" and "127.0.0.1" or host) .. ":" .. tsrv:port()
  end
  for _, sig in ipairs({ 1, 2, 15 }) do core.signal(sig, function() M.cleanup(0) end) end
  sched.prestart(math.min(math.max(math.floor(ncpu), 1), tonumber(o.prestart) or 4))
  if o.ready_fd then io.stdout:write("ready\n"); io.stdout:flush() end
  core.run()
  M.cleanup(0)
end

return M
