-- `lray _worker`: a worker process. Runs tasks one at a time for the node
-- manager, or becomes the dedicated process of one actor and serves calls
-- that callers send straight to it.
local core = require("lray._core")
require("lray")   -- every decoder (refs, handles, arrays, errors) registered
local runtime = require("lray.runtime")
local serialize = require("lray.serialize")
local errors = require("lray.errors")
local spans = require("lray._spans")
local actor_mod = require("lray.actor")
local lends = require("lray.lends")

local decode = serialize.decode
local pairs, ipairs, select, tostring, type, xpcall = pairs, ipairs, select, tostring, type, xpcall
local remove, traceback = table.remove, debug.traceback

local M = {}

local work = {}          -- messages waiting to run, in arrival order
local fns = {}           -- function hash -> function
local actor = nil        -- {aid, instance, cname, ...} once this is an actor
local actor_gpus = nil   -- GPU ids the actor holds for its life
local cancel_requested = {}  -- task id -> true: the node cancelled it
local SPIN = tonumber(os.getenv("LRAY_WORKER_SPIN_US") or "50") * 1e-6
local CANCEL = setmetatable({}, { __tostring = function() return "task cancelled" end })

local function pack(...) return { n = select("#", ...), ... } end
local reply_with

-- What a task raised, with the traceback of where it was raised.
local function on_error(e)
  return { e = e, tb = (traceback("", 2):gsub("^\n", "")) }
end

local function clean_tb(tb)
  -- Drop the frames of the worker itself: the user wants their own code.
  local out = {}
  for line in (tb or ""):gmatch("[^\n]+") do
    if line:find("lray/_worker.lua", 1, true) or line:find("%[C%]: in function 'xpcall'") then
      break
    end
    out[#out + 1] = line
  end
  return table.concat(out, "\n")
end

local function encode_error(e)
  local ok, blob = pcall(serialize.encode, e)
  if ok then return blob end
  -- The cause itself could not be sent: keep its text.
  e.cause = tostring(e.cause)
  return serialize.encode(e)
end

-- Stores one result blob: inline, or in shared memory when large. aids:
-- the actors of the handles in it, pinned here until reply_with lent them.
local function result_entry(id, blob, refs, aids)
  if #blob <= runtime.INLINE_MAX then
    return { id = id, data = blob, refs = refs, actors = aids }
  end
  local ok, r = pcall(runtime.alloc, #blob)
  if not ok then
    for _, aid in ipairs(aids or {}) do actor_mod.unpin(aid) end
    return { id = id, err = encode_error(r) }
  end
  runtime.region():write(r.off, blob)
  return { id = id, shm = { r.off, #blob }, refs = refs, actors = aids, node = runtime.node_address() }
end

-- The handles in a result stay counted here from their encoding until the
-- reply lends them (the values returned may be collected meanwhile).
local function pin_all(aids)
  for _, aid in ipairs(aids or {}) do actor_mod.pin(aid) end
  return aids
end

local function unpin_results(results)
  for _, r in ipairs(results) do
    for _, aid in ipairs(r.actors or {}) do actor_mod.unpin(aid) end
  end
end

-- Sends a task's or call's results (msg: a ret or a result) to whoever
-- asked, straight. Large results go to the node's store first. They, the
-- ObjectRefs and the actor handles inside results are lent to the caller:
-- the node keeps them until the caller, holding them itself, claims the
-- lend (token base..":ret"; to: the caller's pid when it is a process of
-- this node, so the node ends the lend should the caller die unclaimed).
-- What the arguments brought is registered (ref) before the caller's lend of
-- them is claimed (claim), and both before the reply. cs: the call site that
-- made the results (`lray memory`).
function reply_with(conn, msg, base, claim, cs, to, lnode)
  local lent, aids, stored
  for _, r in ipairs(msg.results) do
    if r.shm then
      stored = true
      runtime.send({ t = "put", id = r.id, shm = r.shm, arr = r.arr, refs = r.refs,
        actors = r.actors, cs = cs })
      lent = lent or {}
      lent[#lent + 1] = r.id
    end
    for _, id in ipairs(r.refs or {}) do
      lent = lent or {}
      lent[#lent + 1] = id
    end
    for _, aid in ipairs(r.actors or {}) do
      aids = aids or {}
      aids[#aids + 1] = aid
    end
  end
  local token = (lent or aids) and (base .. ":ret") or nil
  if token then runtime.queue({ t = "lend", token = token, ids = lent, aids = aids, to = to }) end
  lends.settle(claim, nil, lnode)
  -- Lent: this process's own count of them may end (after the lend).
  unpin_results(msg.results)
  runtime.flush_queued()
  msg.lend = token
  msg.lnode = token and runtime.lnode()
  if stored or lent or aids or claim then
    -- The node must have the puts, lends and claims before the caller has
    -- the result. Were this process killed with them still in its buffer
    -- and the result already sent, the node would free a put's range and
    -- hand it out again (the caller would read another object's bytes), or
    -- keep the caller's lend forever (the caller saw the result, so it
    -- takes nothing back).
    runtime.flush_out()
  end
  if conn:is_open() then conn:send(msg) end
  for _, r in ipairs(msg.results) do
    if r.shm then runtime.queue_unref(r.id) end
  end
end

-- Encodes what a call returned into one entry per return id.
local function results_of(rets, res, what)
  local out = {}
  local nret = #rets
  if nret == 1 and res.n == 1 and runtime.is_big_array(res[1]) then
    local loc, ctype = runtime.store_array(res[1])
    out[1] = { id = rets[1], shm = loc, arr = ctype, node = runtime.node_address() }
    return out
  end
  if nret == 1 then
    local ok, blob, refs, aids = pcall(runtime.encode_tracked, res, "the result of " .. what)
    if not ok then
      return nil, errors.new("TaskError", what .. " returned a value that cannot be sent: " .. tostring(blob))
    end
    out[1] = result_entry(rets[1], blob, refs, pin_all(aids))
  else
    for i = 1, nret do
      local ok, blob, refs, aids = pcall(runtime.encode_tracked, { n = 1, res[i + 1] },
        "return value " .. i .. " of " .. what)
      if not ok then
        unpin_results(out)
        return nil, errors.new("TaskError", what .. " returned a value that cannot be sent: " .. tostring(blob))
      end
      out[i] = result_entry(rets[i], blob, refs, pin_all(aids))
    end
  end
  return out
end

local function error_results(rets, err)
  local blob = encode_error(err)
  local out = {}
  for i, id in ipairs(rets) do out[i] = { id = id, err = blob } end
  return out
end

-- Arguments: the encoded list, with resolved ObjectRef arguments filled in.
-- The arguments of m, with its ObjectRef arguments' values (depv). An
-- argument whose value is lost (its node died) fails the task with that
-- ObjectLostError and names it in m.lost, so its owner may rebuild it.
local function build_args(m, depv)
  runtime.note_lender(m.refs, m.lnode)   -- held at the caller's node
  local args = decode(m.args)
  if depv then
    for i, d in pairs(depv) do
      local err = runtime.err_blob(d)
      if err then return nil, runtime.decode_error(err) end
      local ok, v = pcall(runtime.first_value, d, d.id)
      if not ok then
        if not errors.is_error(v, "ObjectLostError") then error(v, 0) end
        m.lost = d.id
        return nil, v
      end
      args[i] = v
    end
  end
  return args
end

-- Runs fn(...) as the current task; returns results for the rets ids.
local function invoke(fn, self, args, rets, what)
  local res
  if self ~= nil then
    res = pack(xpcall(fn, on_error, self, unpack(args, 1, args.n)))
  else
    res = pack(xpcall(fn, on_error, unpack(args, 1, args.n)))
  end
  -- The function returned: a cancel from now on would only cut storing its
  -- results short (a store range allocated and never put, held until this
  -- process exits: chaos case 4 leaked one).
  core.cancel_arm(0)
  if res[1] then
    if #rets == 1 then
      local vals = { n = res.n - 1 }
      for i = 2, res.n do vals[i - 1] = res[i] end
      res = vals
      local out, err = results_of(rets, res, what)
      if not out then return error_results(rets, err), false end
      return out, false
    end
    local out, err = results_of(rets, res, what)
    if not out then return error_results(rets, err), false end
    return out, false
  end
  local raised = res[2]
  local e, tb = raised.e, raised.tb
  if e == CANCEL or errors.is_error(e, "TaskCancelledError") then
    return error_results(rets, errors.new("TaskCancelledError", what .. " was cancelled")), false
  end
  return error_results(rets, errors.task_error(what, e, clean_tb(tb))), true
end

-- -- Tasks -----------------------------------------------------------------

local function load_fn(m, cache)
  local f = cache[m.fh]
  if f then return f end
  if not m.code then return nil, "the definition of " .. tostring(m.name) .. " never reached this worker" end
  local ok, v = pcall(decode, m.code)
  if not ok then return nil, v end
  cache[m.fh] = v
  return v
end

-- A task or actor that holds GPUs sees exactly its ids in
-- CUDA_VISIBLE_DEVICES before its code runs; one that holds none sees none.
local gpu_env_set = false
local function set_gpus(gpus)
  if gpus and #gpus > 0 then
    core.setenv("CUDA_VISIBLE_DEVICES", table.concat(gpus, ","))
    gpu_env_set = true
  elseif gpu_env_set then
    core.setenv("CUDA_VISIBLE_DEVICES", nil)
    gpu_env_set = false
  end
end

-- Output lines name what printed them: the node reads this worker's
-- stdout and stderr, and a marker line there says whose lines follow.
local label = nil
local function set_label(name)
  if name == label then return end
  label = name
  local marker = "\0lray:label " .. tostring(name) .. "\n"
  io.stdout:write(marker)
  io.stdout:flush()
  io.stderr:write(marker)
end

local function run_task(m)
  local what = "task '" .. tostring(m.name) .. "'"
  local t0 = core.time()
  runtime.current = { task_id = m.tid, name = m.name, job_id = m.job, gpu_ids = m.gpus,
    conn = m.conn }
  set_label(m.name)
  set_gpus(m.gpus)
  local results, lua_error
  local fn, err = load_fn(m, fns)
  if not fn then
    results = error_results(m.rets, errors.new("TaskError", what .. " could not be loaded: " .. tostring(err)))
  else
    local ok, args, derr = pcall(build_args, m, m.depv)
    if not ok then
      results = error_results(m.rets, errors.new("TaskError",
        what .. " could not decode its arguments: " .. tostring(args)))
    elseif not args then
      results = error_results(m.rets, derr)
    else
      if cancel_requested[m.tid] then
        results = error_results(m.rets, errors.new("TaskCancelledError", what .. " was cancelled"))
      else
        core.cancel_arm(m.seq)
        results, lua_error = invoke(fn, nil, args, m.rets, what)
        core.cancel_arm(0)
      end
      cancel_requested[m.tid] = nil
      args = nil -- luacheck: ignore 311 (clears the stack slot for the collector)
    end
  end
  runtime.current = {}
  if (m.refs and #m.refs > 0) or (m.actors and #m.actors > 0) or m.deps then
    -- The arguments held ObjectRefs or actor handles: drop them now, so the
    -- node hears this worker let go (it would wait for Lua's next cycle).
    collectgarbage()
  end
  spans.record("task", m.name, m.tid, t0, lua_error)
  return results, lua_error
end

-- -- Leases ----------------------------------------------------------------
-- The node lends this worker to one submitter at a time (lease_start); the
-- submitter sends tasks straight here (push) and gets results back on the
-- same connection. Idle for LEASE_IDLE, the worker hands the lease back.

local LEASE_IDLE = tonumber(os.getenv("LRAY_LEASE_IDLE_MS") or "5") / 1000
local FIRST_PUSH_WAIT = 2     -- seconds a fresh lease waits for its submitter
local lease = nil             -- {lid, gpus, conn, pushed, idle_timer}
local early = {}              -- lease id -> pushes that came before lease_start
local ended = {}              -- lease ids handed back (late pushes are refused)

local function end_lease()
  local L = lease
  lease = nil
  ended[L.lid] = true
  if L.idle_timer then L.idle_timer:stop() end
  runtime.send({ t = "lease_done", lid = L.lid })
  if L.conn and L.conn:is_open() then L.conn:send({ t = "lease_end", lid = L.lid }) end
end

local function lease_idle()
  local L = lease
  if not L then return end
  for i = 1, #work do
    if work[i].lid == L.lid then return end
  end
  if L.idle_timer then L.idle_timer:stop() end
  L.idle_timer = core.timer(L.conn and LEASE_IDLE or FIRST_PUSH_WAIT, 0, function()
    L.idle_timer = nil
    if lease ~= L then return end
    for i = 1, #work do
      if work[i].lid == L.lid then return end
    end
    if not runtime.current.task_id then end_lease() end
  end, true)
end

local function on_push(conn, m)
  m.conn = conn
  if not lends.received(m.lend) then return end   -- its submitter is gone
  if ended[m.lid] then
    -- A lease that ended before its submitter's first task reached us (it
    -- never heard lease_end): refuse the task; the submitter asks again.
    lends.returned(m.lend)
    conn:send({ t = "lease_end", lid = m.lid })
    conn:send({ t = "result", tid = m.tid, rejected = true })
    return
  end
  if not lease or lease.lid ~= m.lid then
    -- The node's lease_start is on its way on the other connection.
    local q = early[m.lid]
    if not q then q = {}; early[m.lid] = q end
    q[#q + 1] = m
    return
  end
  lease.conn = conn
  if lease.idle_timer then lease.idle_timer:stop(); lease.idle_timer = nil end
  if runtime.is_blocked() then
    -- The running task waits (see on_blocked): this one goes elsewhere.
    lends.returned(m.lend)
    conn:send({ t = "result", tid = m.tid, rejected = true })
    return
  end
  work[#work + 1] = m
end

local function run_pushed(m)
  m.gpus = lease and lease.gpus
  local t0 = core.now()
  local results, lua_error = run_task(m)
  reply_with(m.conn, { t = "result", tid = m.tid, results = results, lua_error = lua_error,
    dur = core.now() - t0, lost = m.lost }, m.tid .. "#" .. (m.try or 0), m.lend, m.cs, m.from,
    m.lnode)
  lease_idle()
end

-- The running task waits in get/wait: tasks pipelined behind it go back to
-- their submitter, which runs them elsewhere. One of them may be what the
-- running task waits for (a task whose arguments were late was queued
-- behind it); waiting here would then never end.
runtime.on_blocked = function()
  for i = #work, 1, -1 do
    local m = work[i]
    if m.t == "push" and m.conn:is_open() then
      remove(work, i)
      lends.returned(m.lend)
      m.conn:send({ t = "result", tid = m.tid, rejected = true })
    end
  end
end

-- A submitter that hangs up takes its tasks with it (as Ray's owners do):
-- queued ones are dropped (their lends given back), a running one is
-- cancelled.
local function on_submitter_gone(conn)
  for i = #work, 1, -1 do
    if work[i].conn == conn then
      local m = remove(work, i)
      lends.settle(m.lend, true, m.lnode)
    end
  end
  for lid, q in pairs(early) do
    for i = #q, 1, -1 do
      if q[i].conn == conn then
        local m = remove(q, i)
        lends.settle(m.lend, true, m.lnode)
      end
    end
    if #q == 0 then early[lid] = nil end
  end
  local cur = runtime.current.task_id
  if cur and runtime.current.conn == conn then
    cancel_requested[cur] = true
    core.cancel_now()
  end
  if lease and lease.conn == conn then end_lease() end
end

local callers = setmetatable({}, { __mode = "k" })  -- connections of callers (and submitters)

-- Submitters on this node connect over the unix socket; on a node of a
-- cluster (host given), those on other nodes over TCP, proving the token
-- first. Returns the unix server and the TCP address (or nil).
local function serve_submitters(session, wid, host)
  local addr = "unix:" .. session .. "/w-" .. wid .. ".sock"
  core.unlink(addr:sub(6))
  local function on_conn(conn)
    callers[conn] = true
    conn:on_message(function(c, msg)
      if msg.t == "push" then
        on_push(c, msg)
      elseif msg.t == "cancel" then
        cancel_requested[msg.tid] = true
        if runtime.current.task_id == msg.tid then core.cancel_now() end
        if msg.recursive then require("lray.submit").cancel_children(msg.tid) end
      end
    end)
    conn:on_close(function() on_submitter_gone(conn) end)
  end
  local srv = core.listen(addr, on_conn)
  local token = os.getenv("LRAY_NODE_TOKEN")
  if not (srv and host and token) then return srv end
  local tsrv = core.listen(host .. ":0", on_conn, token)
  if not tsrv then return srv end
  M.tcp_server = tsrv   -- kept for the process's life
  return srv, host .. ":" .. tsrv:port()
end

-- -- Actors ----------------------------------------------------------------

local calls = {}     -- {conn, msg} waiting to run, in arrival order

-- A caller cancelled call cid: drop it if it has not started (a running
-- method is not interrupted). Queued calls sit in `calls` or, for concurrent
-- actors, in their group's queue.
local function cancel_queued(conn, cid)
  local function drop(q)
    for i, c in ipairs(q) do
      if c[1] == conn and c[2].cid == cid then
        table.remove(q, i)
        local m = c[2]
        lends.settle(m.lend, nil, m.lnode)
        local err = errors.new("TaskCancelledError", "actor method '" .. tostring(actor and actor.cname)
          .. "." .. tostring(m.m) .. "' was cancelled before it started")
        conn:send({ t = "ret", cid = cid, results = error_results(m.rets, err) })
        return true
      end
    end
    return false
  end
  if drop(calls) then return end
  if actor and actor.queues then
    for _, q in pairs(actor.queues) do
      if drop(q) then return end
    end
  end
end

-- The values of objects ids (position -> id) as value records, once its
-- node has them: asked for at this node (and at home, a node that knows
-- where they are).
local function await_values(ids, home)
  local list = {}
  for _, id in pairs(ids) do list[#list + 1] = id end
  runtime.subscribe(list, home)
  local es = runtime.entries(list)
  runtime.wait_until(function()
    for i = 1, #es do if not es[i].st then return false end end
    return true
  end)
  local out = {}
  for i, id in pairs(ids) do
    local e = runtime.objs[id]
    out[i] = { id = id, data = e.data, shm = e.shm, err = e.err, arr = e.arr, st = e.st,
      node = e.node }
  end
  return out
end

local function serve_call(conn, m)
  local what = "actor method '" .. actor.cname .. "." .. tostring(m.m) .. "'"
  local t0 = core.time()
  runtime.current = { task_id = m.cid, name = what, actor_id = actor.aid, job_id = actor.job,
    gpu_ids = actor_gpus }
  local results, failed
  local fn = actor.instance[m.m]
  if type(fn) ~= "function" then
    results = error_results(m.rets, errors.new("TaskError", ("actor %s has no method '%s'")
      :format(actor.cname, tostring(m.m))))
  else
    local depv = m.deps and await_values(m.deps, m.lnode)   -- the caller's node has them
    local ok, args, derr = pcall(build_args, m, depv)
    if not ok then
      results = error_results(m.rets, errors.new("TaskError",
        what .. " could not decode its arguments: " .. tostring(args)))
    elseif not args then
      results = error_results(m.rets, derr)
    else
      results, failed = invoke(fn, actor.instance, args, m.rets, what)
    end
  end
  spans.record("actor_call", actor.cname .. "." .. tostring(m.m), m.cid, t0, failed)
  runtime.current = { actor_id = actor.aid, job_id = actor.job, gpu_ids = actor_gpus }
  reply_with(conn, { t = "ret", cid = m.cid, results = results }, m.cid .. "#" .. (m.try or 0), m.lend,
    nil, m.from, m.lnode)
end

local function become_actor(m)
  local what = "actor " .. tostring(m.cname)
  runtime.current = { actor_id = m.aid, job_id = m.job, name = what, gpu_ids = m.gpus }
  set_gpus(m.gpus)
  actor_gpus = m.gpus
  local ok, cls = pcall(decode, m.code)
  local function fail(e, tb)
    local err = errors.task_error("the init of " .. what, e, clean_tb(tb))
    runtime.send({ t = "actor_failed", aid = m.aid, err = encode_error(err),
      message = tostring(err.message) })
    runtime.pump()
    core.exit(1)
  end
  if not ok then return fail(cls) end
  local instance = setmetatable({}, { __index = cls })
  actor = { aid = m.aid, cname = m.cname, instance = instance, job = m.job }
  local opts = m.opts or {}
  local mc = opts.max_concurrency or 1
  if mc > 1 or opts.concurrency_groups then
    -- Methods run as coroutines, up to a limit per concurrency group.
    actor.limits = { [""] = mc }
    for g, n in pairs(opts.concurrency_groups or {}) do actor.limits[g] = n end
    local groups = rawget(cls, "__concurrency")
    actor.method_group = type(groups) == "table" and groups or {}
    actor.active, actor.queues = {}, {}
  end
  -- An argument stored on another node comes as its id alone: this node
  -- asks for it (placement.c) and it is copied here when read.
  local depv, far = m.depv, nil
  for i, d in pairs(depv or {}) do
    if not (d.data or d.shm or d.err or d.etype) then far = far or {}; far[i] = d.id end
  end
  if far then
    for i, d in pairs(await_values(far)) do depv[i] = d end
  end
  local args, derr
  ok, args, derr = pcall(build_args, m, depv)
  if not ok then return fail(args) end
  if not args then return fail(derr) end
  local init = cls.init
  if type(init) == "function" then
    local res = pack(xpcall(init, on_error, instance, unpack(args, 1, args.n)))
    if not res[1] then return fail(res[2].e, res[2].tb) end
  end
  local addr = "unix:" .. m.session .. "/a-" .. m.aid .. ".sock"
  core.unlink(addr:sub(6))
  local function on_caller(conn)
    callers[conn] = true
    conn:on_message(function(c, msg)
      if msg.t == "cancel_call" then return cancel_queued(c, msg.cid) end
      if not lends.received(msg.lend) then return end   -- its caller is gone
      calls[#calls + 1] = { c, msg }
    end)
  end
  local srv, err = core.listen(addr, on_caller)
  if not srv then return fail(err) end
  actor.srv = srv
  -- Callers on other nodes come over TCP and prove the token first.
  local tcp
  local token = os.getenv("LRAY_NODE_TOKEN")
  if M.host and token then
    actor.tcp_srv = core.listen(M.host .. ":0", on_caller, token)
    if actor.tcp_srv then tcp = M.host .. ":" .. actor.tcp_srv:port() end
  end
  runtime.current = { actor_id = m.aid, job_id = m.job, gpu_ids = actor_gpus }
  runtime.send({ t = "actor_ready", aid = m.aid, addr = addr, tcp = tcp })
end

-- -- Concurrent actors -------------------------------------------------------
-- With max_concurrency > 1 (or concurrency groups) each call runs in its own
-- coroutine. A method that waits in lray.get/wait/sleep parks its coroutine
-- (runtime.wait_until yields) and the others go on. Calls start in arrival
-- order within their group, so one caller's calls start in submission order.

local waiting = {}   -- parked coroutines: {co, group, done, deadline}

local function resume(e, ...)
  local ok, done, deadline = coroutine.resume(e.co, ...)
  if coroutine.status(e.co) == "dead" then
    runtime.async_cos[e.co] = nil
    actor.active[e.group] = actor.active[e.group] - 1
    if not ok then io.stderr:write("lray worker: ", tostring(done), "\n") end
  else
    e.done, e.deadline = done, deadline
    waiting[#waiting + 1] = e
  end
end

local function group_of(mname)
  local g = actor.method_group[mname]
  if g and actor.limits[g] then return g end
  return ""
end

-- Starts queued calls where their group has room. Returns whether it did.
local function start_calls()
  local started = false
  while #calls > 0 do
    local c = remove(calls, 1)
    local g = group_of(c[2].m)
    local q = actor.queues[g]
    if not q then q = {}; actor.queues[g] = q end
    q[#q + 1] = c
  end
  for g, q in pairs(actor.queues) do
    while #q > 0 and (actor.active[g] or 0) < actor.limits[g] do
      local c = remove(q, 1)
      actor.active[g] = (actor.active[g] or 0) + 1
      local co = coroutine.create(serve_call)
      runtime.async_cos[co] = true
      started = true
      resume({ co = co, group = g }, c[1], c[2])
    end
  end
  return started
end

-- Resumes parked coroutines whose wait is over. Returns whether any was.
local function step_waiting()
  if #waiting == 0 then return false end
  local t = core.now()
  local ready, still = {}, {}
  for i = 1, #waiting do
    local e = waiting[i]
    if e.done() or (e.deadline and t >= e.deadline) then
      ready[#ready + 1] = e
    else
      still[#still + 1] = e
    end
  end
  waiting = still
  for i = 1, #ready do resume(ready[i]) end
  return #ready > 0
end

local function any_ready()
  local t = core.now()
  for i = 1, #waiting do
    local e = waiting[i]
    if e.done() or (e.deadline and t >= e.deadline) then return true end
  end
  return false
end

local function serve_concurrent()
  local progressed = start_calls()
  if step_waiting() then progressed = true end
  if not progressed then
    -- pump may take in exactly what a parked coroutine waits for: look
    -- again before blocking, or nothing would wake us.
    runtime.pump()
    if #calls == 0 and not any_ready() then core.run_once() end
  end
end

-- -- Main loop ---------------------------------------------------------------

local H = runtime.handlers
H.actor_start = function(m) work[#work + 1] = m end
H.lease_start = function(m)
  lease = { lid = m.lid, gpus = m.gpus }
  local q = early[m.lid]
  early[m.lid] = nil
  if q then
    for _, p in ipairs(q) do on_push(p.conn, p) end
  else
    lease_idle()
  end
end
-- The submitter gave the lease back unused.
H.lease_stop = function(m)
  if lease and lease.lid == m.lid then end_lease() end
end
H.job = function(m)
  if m.path then package.path = m.path end
  if m.cpath then package.cpath = m.cpath end
  runtime.namespace = m.namespace
end
-- The signal that comes with this message interrupts running Lua code; the
-- message covers the moments the signal cannot: before the task started,
-- or while it waits in the loop.
H.cancel = function(m)
  cancel_requested[m.tid] = true
  if runtime.current.task_id == m.tid then core.cancel_now() end
end

local function parse(argv)
  local o = {}
  for i = 1, #argv, 2 do o[argv[i]:gsub("^%-%-", "")] = argv[i + 1] end
  return o
end

function M.main(argv)
  local o = parse(argv)
  -- A method or task that ends the process lets what this worker already
  -- finished (replies of earlier calls, queued in their connections) out first.
  local c_exit = os.exit
  os.exit = function(...) -- luacheck: ignore 122
    runtime.flush_out(callers)
    return c_exit(...)
  end
  core.pdeathsig(9)
  core.line_buffered()
  core.cancel_setup(CANCEL)
  runtime.role = "worker"
  -- Listen before saying hello: the node may lend this worker at once.
  M.host = o.host
  local srv, tcp = serve_submitters(o.node:match("^(.*)/[^/]*$"), o.wid, o.host)
  if not srv then
    io.stderr:write("lray worker: cannot listen for submitters\n")
    return 1
  end
  -- The node may be busy accepting a burst of workers: retry a while.
  local w, err
  local deadline = core.now() + 10
  repeat
    w, err = runtime.connect("unix:" .. o.node, { role = "worker", wid = o.wid, pid = core.getpid(),
      tcp = tcp })
    if not w then core.usleep(0.005 + math.random() * 0.02) end
  until w or core.now() > deadline
  if not w then
    io.stderr:write("lray worker: ", tostring(err), "\n")
    return 1
  end
  runtime.conn:on_close(function() core.exit(0) end)
  runtime.worker_id = o.wid
  runtime.node_id = w.node_id
  local last_flush = core.now()
  while true do
    if #work > 0 then
      local m = remove(work, 1)
      if m.t == "push" then run_pushed(m) else become_actor(m) end
    elseif actor and actor.limits then
      serve_concurrent()
    elseif #calls > 0 then
      local c = remove(calls, 1)
      serve_call(c[1], c[2])
      -- Replies of a burst of quick calls go out together; after a slow one
      -- they go at once (the process may die before the burst ends).
      local t = core.now()
      if t - last_flush > 0.001 then core.flush(); last_flush = t end
    else
      -- An idle actor, or a worker that holds a lease, polls for a moment
      -- (the next call or task of its caller is usually on its way: a sync
      -- loop's next task comes some 20 us after the result), then sleeps in
      -- the kernel. A worker with no lease does not: nothing is on its way.
      local spin_until = core.now() + ((actor or lease) and SPIN or 0)
      repeat runtime.pump() until #work > 0 or #calls > 0 or core.now() >= spin_until
      if #work == 0 and #calls == 0 then core.run_once() end
    end
  end
end

return M
