-- Actors on the caller's side: lray.remote(Class), creating actors, and
-- handles whose method calls go straight to the actor's worker process over
-- a direct connection (the node is asked only where the actor lives).
local core = require("lray._core")
local runtime = require("lray.runtime")
local serialize = require("lray.serialize")
local remote = require("lray.remote")
local options = require("lray.options")
local errors = require("lray.errors")
local lends = require("lray.lends")

local pairs, ipairs, type, tostring, setmetatable, rawequal, select, rawget =
  pairs, ipairs, type, tostring, setmetatable, rawequal, select, rawget

local misuse = require("lray.errors").misuse

local M = {}
local DEBUG = os.getenv("LRAY_DEBUG")

-- -- Where actors live -------------------------------------------------------

local actors = {}   -- actor id -> {state, addr, conn, queue, inflight, cause}
M.actors = actors

local function died_error(st, cname, aid, why)
  local fields = { actor_id = aid, class_name = cname or st.cname, name = st.name,
    restarts = st.restarts }
  if st.init_error then fields.cause = runtime.decode_error(st.init_error) end
  return errors.new("ActorDiedError", ("actor %s(%s)%s %s: %s"):format(
    tostring(cname or st.cname or "?"), aid,
    st.name and (" named '" .. st.name .. "'") or "",
    why and "failed" or "died", tostring(why or st.cause or "its process exited")), fields)
end

-- A pending call keeps its actor alive (it counts as a handle here, see
-- M.handle) until it ends, whether the user's handle is collected meanwhile
-- or not; call_ended lets go of that count exactly once.
local call_ended
local ret_token

local function fail_call(st, aid, call, why)
  call_ended(call)
  -- The actor never replied: take back what the arguments lent it, and
  -- what a reply sent just before it died may have lent us.
  if call.msg.lend then runtime.queue({ t = "unlend", token = call.msg.lend }) end
  runtime.queue({ t = "unlend", token = ret_token(call.msg), node = st.lnode })
  local blob = serialize.encode(died_error(st, st.cname, aid, why))
  for _, id in ipairs(call.rets) do
    runtime.fill(id, { err = blob }, "local")
  end
end

local function fail_all(st, aid)
  for cid, call in pairs(st.inflight) do
    st.inflight[cid] = nil
    fail_call(st, aid, call)
  end
  for i = 1, #st.orphans do fail_call(st, aid, st.orphans[i]) end
  st.orphans = {}
  for i = 1, #st.queue do fail_call(st, aid, st.queue[i]) end
  st.queue = {}
end

-- Calls that were running when the actor's process went away: re-send them
-- (ahead of newer calls, in their order) while max_task_retries allows, or
-- fail them.
--- The token a call's (or task's) try lends its reply under.
ret_token = function(msg)
  return (msg.cid or msg.tid) .. "#" .. (msg.try or 0) .. ":ret"
end
M.ret_token = ret_token

local function settle_orphans(st, aid, max_retries, cause)
  local o = st.orphans
  if #o == 0 then return end
  st.orphans = {}
  table.sort(o, function(x, y) return x.seq < y.seq end)
  local keep = {}
  for i = 1, #o do
    local call = o[i]
    -- The dead process may have lent this try's reply before it died: the
    -- reply never came, so that lend is taken back (the node remembers it if
    -- the lend is still on its way).
    runtime.queue({ t = "unlend", token = ret_token(call.msg), node = st.lnode })
    if max_retries == -1 or call.tries < max_retries then
      call.tries = call.tries + 1
      call.msg.try = call.tries
      if call.msg.lend then
        -- The new try lends its arguments when it is sent (lend_call).
        runtime.queue({ t = "unlend", token = call.msg.lend })
        call.msg.lend = nil
      end
      keep[#keep + 1] = call
    else
      fail_call(st, aid, call, ("died while running this call (%s), which was already"
        .. " re-sent %d time%s (max_task_retries = %d)"):format(tostring(cause or "its process exited"),
        call.tries, call.tries == 1 and "" or "s", max_retries))
    end
  end
  for i = 1, #st.queue do keep[#keep + 1] = st.queue[i] end
  st.queue = keep
end

local take_results
local function on_ret(m)
  take_results(m)
  -- Whatever the reply lent us is claimed once we hold it ourselves: the
  -- refs take_results queued go out first.
  if m.lend then runtime.claim(m.lend, m.lnode) end
end

function take_results(m)
  for _, st in pairs(actors) do
    local call = st.inflight[m.cid]
    if call then
      st.inflight[m.cid] = nil
      -- Its node, as its replies name it: where a lend of a reply that never
      -- comes (the actor died) is taken back.
      st.lnode = m.lnode or st.lnode
      call_ended(call)
      runtime.take_results(call.rets, m.results, m.lnode)
      return
    end
  end
end

local function connect(st, aid)
  st.connecting = true
  local addr, key = st.addr, st.key
  core.connect(addr, function(conn, err)
    st.connecting = false
    if err or st.state ~= "ALIVE" or st.key ~= key then
      if conn and conn:is_open() then conn:close() end
      -- The actor moved on while we connected: follow it.
      if st.state == "ALIVE" and st.key ~= key and not st.conn then connect(st, aid) end
      return
    end
    st.conn, st.conn_key = conn, key
    st.conn_pid = lends.local_pid(addr) and tonumber(key:match("#(%d+)$")) or nil
    if DEBUG then io.stderr:write(("actor %s connected %s key %s\n"):format(aid:sub(-4), tostring(conn), key)) end
    conn:on_message(function(_, m) if m.t == "ret" then on_ret(m) end end)
    conn:on_close(function()
      if DEBUG then
        io.stderr:write(("actor %s conn %s closed (current %s)\n"):format(
          aid:sub(-4), tostring(conn), tostring(st.conn)))
      end
      -- Everything the process answered has been read by now: the calls
      -- sent on this connection that are still in flight died with it.
      for cid, call in pairs(st.inflight) do
        if call.conn == conn then
          st.inflight[cid] = nil
          st.orphans[#st.orphans + 1] = call
        end
      end
      if st.conn == conn then
        st.conn = nil
        -- The process behind this connection is gone, whatever the node
        -- still says: only a new incarnation (or DEAD) settles its calls.
        st.dead_key = st.conn_key
        if st.state == "DEAD" then return fail_all(st, aid) end
        -- Ask the node what happened; calls in flight fail once it says DEAD.
        st.state = "UNKNOWN"
        runtime.queue({ t = "actor_sub", aid = aid })
      elseif st.state == "DEAD" then
        fail_all(st, aid)
      else
        -- An old incarnation's connection, drained after the node said a
        -- new one serves the actor: re-send or fail its unanswered calls.
        settle_orphans(st, aid, st.max_task_retries or 0, st.cause)
        if st.conn and st.conn:is_open() then M.send_queued(st) end
      end
    end)
    M.send_queued(st)
  end, runtime.info and runtime.info.token)
end

-- ObjectRefs and actor handles inside a call's arguments are lent to the
-- actor's process when the call goes to it: the node keeps them until the
-- actor, holding them itself, claims the lend. So are the ObjectRef
-- arguments (deps), whose values may hold handles the actor registers before
-- it claims. Until then the call's arguments (call.keep) hold them here.
-- Each try lends under a token of its own; a process of this node is named
-- to the node, and we to it (lends.lua).
local my_pid   -- this process's pid (a syscall each time showed in profiles)
local function lend_call(st, call)
  local to = st.conn_pid
  if to then my_pid = my_pid or core.getpid() end
  call.msg.from = to and my_pid or nil   -- its reply lends to us by pid
  if not (call.lend_ids or call.lend_aids) or call.msg.lend then return end
  call.msg.lend = call.msg.cid .. "#" .. call.tries
  call.msg.lnode = runtime.lnode()   -- the node that holds the lend
  runtime.queue({ t = "lend", token = call.msg.lend, ids = call.lend_ids, aids = call.lend_aids,
    to = to })
end

--- Sends the calls waiting in st.queue on st.conn.
function M.send_queued(st)
  local q = st.queue
  st.queue = {}
  for i = 1, #q do
    st.inflight[q[i].msg.cid] = q[i]
    q[i].conn = st.conn
    lend_call(st, q[i])
    runtime.flush_queued()
    st.conn:send(q[i].msg)
  end
end

runtime.handlers.actor = function(m)
  local st = actors[m.aid]
  if not st then return end
  if DEBUG then
    io.stderr:write(("actor %s -> %s pid %s (conn %s, inflight %d orphans %d)\n"):format(
      m.aid:sub(-4), m.state, tostring(m.pid), tostring(st.conn), (function() local n = 0
        for _ in pairs(st.inflight) do n = n + 1 end return n end)(), #st.orphans))
  end
  st.cname = st.cname or m.cname
  st.name = m.name
  st.restarts = m.restarts
  if m.state == "ALIVE" and tostring(m.addr) .. "#" .. tostring(m.pid) == st.dead_key then
    return   -- stale: the node has not noticed that process exit yet
  end
  if m.state == "ALIVE" or m.state == "RESTARTING" then
    settle_orphans(st, m.aid, m.max_task_retries or 0, m.cause)
  end
  st.max_task_retries = m.max_task_retries or 0
  if m.state == "ALIVE" then
    local key = tostring(m.addr) .. "#" .. tostring(m.pid)
    if st.conn and st.conn_key ~= key then
      -- A new process serves the actor (it restarted) before we saw the old
      -- connection close. What the old process answered before it died may
      -- still be unread: the old connection drains to its end, and its
      -- close settles the calls it did not answer.
      st.conn = nil
    end
    if st.state ~= "ALIVE" or st.key ~= key then
      -- An actor on another node is reached over TCP (with the token).
      local elsewhere = m.tcp and m.node_id and m.node_id ~= runtime.node_id
      st.state, st.addr, st.key = "ALIVE", elsewhere and m.tcp or m.addr, key
      if not st.conn and not st.connecting then connect(st, m.aid) end
    end
  elseif m.state == "DEAD" then
    st.state, st.cause, st.init_error = "DEAD", m.cause, m.init_error
    local old = st.conn
    st.conn = nil
    if old and old:is_open() then
      -- Its process is gone; what it answered before is still to be read.
      -- The connection's close fails the calls it did not answer.
      local inflight = st.inflight
      st.inflight = {}
      fail_all(st, m.aid)
      st.inflight = inflight
    else
      fail_all(st, m.aid)
    end
  else
    st.state = m.state
  end
end

-- A get has waited long for the result id of an actor call: say so when
-- the actor is not serving (not placed yet, restarting, unreachable).
runtime.explainers[#runtime.explainers + 1] = function(id, after)
  for aid, st in pairs(actors) do
    local function mine(call)
      for _, r in ipairs(call.rets) do if r == id then return true end end
      return false
    end
    local found = false
    for _, call in pairs(st.inflight) do if mine(call) then found = true end end
    for _, call in ipairs(st.queue) do if mine(call) then found = true end end
    if found and st.state ~= "ALIVE" then
      runtime.handlers.warn({ text = ("lray.get has waited %g s for a call to actor %s(%s), which is"
        .. " %s: it has no process to run on yet (it waits for the resources it needs, or for"
        .. " its restart)"):format(after, tostring(st.cname), aid, tostring(st.state or "PENDING")) })
      return true
    end
  end
end

runtime.dump_hooks[#runtime.dump_hooks + 1] = function(out)
  for aid, st in pairs(actors) do
    local n = 0
    for _ in pairs(st.inflight) do n = n + 1 end
    out[#out + 1] = ("actor %s %s: state %s conn %s connecting %s queue %d inflight %d orphans %d"):format(
      tostring(st.cname), aid, tostring(st.state), tostring(st.conn ~= nil), tostring(st.connecting),
      #st.queue, n, #st.orphans)
  end
end

local function state_of(aid)
  local st = actors[aid]
  if not st then
    st = { queue = {}, inflight = {}, orphans = {} }
    actors[aid] = st
    runtime.send({ t = "actor_sub", aid = aid })
  end
  return st
end

-- -- Handles ---------------------------------------------------------------

local Handle = {}
local handle_data = setmetatable({}, { __mode = "k" })   -- handle -> fields

local call_seq = 0
local function call_method(h, mname, mopts, ...)
  local d = handle_data[h]
  local aid = d.aid
  local what = "actor method '" .. d.cname .. "." .. mname .. "'"
  local blob, deps, refs, aids = remote.pack_args(what, false, ...)
  local nret = mopts and mopts.num_returns or 1
  local rets = {}
  for i = 1, nret do rets[i] = runtime.new_id() end
  local st = state_of(aid)
  st.cname = st.cname or d.cname
  call_seq = call_seq + 1
  local cid = runtime.new_id()
  -- What the arguments hold is lent when the call is sent (lend_call).
  local ids = refs
  if deps then
    ids = {}
    for i = 1, #(refs or {}) do ids[i] = refs[i] end
    for _, id in pairs(deps) do ids[#ids + 1] = id end
  end
  if ids and #ids == 0 then ids = nil end
  local call = { rets = rets, seq = call_seq, tries = 0, lend_ids = ids, lend_aids = aids,
    msg = { t = "call", cid = cid, m = mname, args = blob, deps = deps, refs = refs,
      rets = rets },
    keep = { ... }, -- arguments stay referenced until the call returns
    aid = aid }
  M.pin(aid)        -- and the actor stays alive until it returns
  local out = {}
  for i = 1, nret do
    runtime.expect(rets[i], "local")
    out[i] = runtime.new_ref(rets[i], true)
  end
  -- The node hears of the arguments' objects before the actor does.
  if st.conn and (deps or (refs and #refs > 0)) then runtime.pump() end
  if st.state == "DEAD" then
    fail_call(st, aid, call)
  elseif st.conn and st.conn:is_open() then
    -- (A connection the actor's exit closed, whose close callback has not
    -- run yet, is not open: the call waits in the queue for what follows.)
    st.inflight[call.msg.cid] = call
    call.conn = st.conn
    lend_call(st, call)
    runtime.flush_queued()
    st.conn:send(call.msg)
    runtime.submitted()
  else
    st.queue[#st.queue + 1] = call
    runtime.pump()
  end
  return unpack(out, 1, nret)
end

local Method = {}
Method.__index = Method
Method.__call = function(m)
  misuse(("actor methods cannot be called directly; use handle.%s.remote(...)"):format(m._name), 2)
end

local function method(h, name, mopts)
  local mt = setmetatable({ _name = name }, Method)
  mt.remote = function(...)
    if rawequal((...), mt) then return call_method(h, name, mopts, select(2, ...)) end
    return call_method(h, name, mopts, ...)
  end
  mt.options = function(...)
    local o = ...
    if rawequal(o, mt) then o = select(2, ...) end
    options.check(o, options.method, "actor method " .. name, 2)
    return method(h, name, options.merge(mopts or {}, o))
  end
  return mt
end

Handle.__index = function(h, k)
  local d = handle_data[h]
  if d.methods and not d.methods[k] then
    misuse(("actor %s has no method '%s'"):format(d.cname, tostring(k)), 2)
  end
  local m = method(h, k, nil)
  rawset(h, k, m)
  return m
end
Handle.__tostring = function(h)
  local d = handle_data[h]
  return "Actor(" .. d.cname .. ", " .. d.aid .. ")"
end
Handle.__eq = function(a, b) return handle_data[a].aid == handle_data[b].aid end
Handle.__lray_ser = function(h)
  local d = handle_data[h]
  runtime.note_actor(d.aid)
  return "actor", { aid = d.aid, cname = d.cname, methods = d.methods }
end

-- Handles are counted per process, like ObjectRefs: the node hears when the
-- first handle to an actor appears here and when the last one is collected,
-- and ends a non-detached actor no process holds a handle to.
local hcounts = {}
local GC_KEY = {}

local function handle_gone(aid)
  local n = (hcounts[aid] or 1) - 1
  if n > 0 then hcounts[aid] = n; return end
  hcounts[aid] = nil
  if runtime.conn then runtime.queue({ t = "actor_unref", aid = aid }) end
end

--- Counts one more reference to actor aid here (a handle already exists).
function M.pin(aid) hcounts[aid] = (hcounts[aid] or 0) + 1 end

--- Ends a reference counted by M.pin or M.hold.
M.unpin = function(aid) return handle_gone(aid) end

--- Counts one more reference to actor aid here, where no handle to it may
--- exist (a value holding one, kept undecoded): the node hears of the first.
function M.hold(aid)
  local n = hcounts[aid]
  hcounts[aid] = (n or 0) + 1
  if not n and runtime.conn then runtime.queue({ t = "actor_ref", aid = aid }) end
end
runtime.actor_hold, runtime.actor_drop = M.hold, M.unpin

function call_ended(call)
  if call.aid then
    local aid = call.aid
    call.aid = nil
    handle_gone(aid)
  end
end

--- A handle for actor aid. held: the node already counts this process.
function M.handle(aid, cname, methods, held)
  local h = setmetatable({}, Handle)
  local n = hcounts[aid]
  hcounts[aid] = (n or 0) + 1
  if not n and not held and runtime.conn then runtime.queue({ t = "actor_ref", aid = aid }) end
  -- The proxy lives inside the handle, so both die in the same cycle.
  local gc = newproxy(true)
  getmetatable(gc).__gc = function() handle_gone(aid) end
  rawset(h, GC_KEY, gc)
  handle_data[h] = { aid = aid, cname = cname, methods = methods }
  return h
end

function M.handle_info(h)
  return getmetatable(h) == Handle and handle_data[h] or nil
end

serialize.register("actor", function(p) return M.handle(p.aid, p.cname, p.methods) end)
serialize.name(Handle, "m:lray.actor#Handle")
M.Handle = Handle

-- -- Classes -----------------------------------------------------------------

-- Method names of a class, following __index chains (inheritance).
local function method_names(cls)
  local names = {}
  local seen = {}
  local c = cls
  while type(c) == "table" and not seen[c] do
    seen[c] = true
    for k, v in pairs(c) do
      if type(k) == "string" and type(v) == "function" then names[k] = true end
    end
    local mt = getmetatable(c)
    c = type(mt) == "table" and rawget(mt, "__index") or nil
  end
  names.init = nil
  return names
end

local RemoteClass = {}
RemoteClass.__index = RemoteClass
RemoteClass.__call = function(rc)
  misuse(("actor class %s cannot be instantiated directly; use %s.remote(...)"):format(
    rc:_label(), rc:_label()), 2)
end
RemoteClass.__tostring = function(rc) return "ActorClass(" .. rc:_label() .. ")" end
function RemoteClass:_label() return self._name or "Actor" end

local function create(rc, ...)
  if not runtime.conn then require("lray").init() end
  if not rc._name then rc._name = rawget(rc._cls, "__name") or remote.guess_name(rc) end
  local cname = rc:_label()
  local ch = remote.export(rc._ex, rc._cls, "actor class " .. cname, true)
  local blob, deps, refs, actors_in = remote.pack_args("the init of actor " .. cname, false, ...)
  local opts = rc._opts
  local aid = runtime.new_id()
  local methods = method_names(rc._cls)
  local place = options.request(opts, 1)
  local res = options.request(opts, 0)
  local msg = { t = "actor_create", aid = aid, ch = ch, args = blob, deps = deps,
    refs = refs, actors = actors_in, cname = cname, methods = methods, res = res, place = place,
    job = runtime.current.job_id or runtime.job_id,
    opts = { name = opts.name, namespace = opts.namespace, lifetime = opts.lifetime,
      get_if_exists = opts.get_if_exists, max_concurrency = opts.max_concurrency,
      concurrency_groups = opts.concurrency_groups,
      max_restarts = opts.max_restarts, max_task_retries = opts.max_task_retries } }
  if opts.name then
    local r = runtime.rpc(msg)
    if r.err then errors.raise("ValueError", r.err) end
    -- (The node counts us as a holder of what it answers.)
    if r.existed then return M.handle(r.aid, r.cname, r.methods, true) end
    local st = state_of(aid)
    st.cname = cname
    return M.handle(aid, cname, methods, true)
  else
    runtime.send(msg)
    runtime.submitted()
  end
  local st = state_of(aid)
  st.cname = cname
  return M.handle(aid, cname, methods, true)
end

local function make_class(cls, opts, ex, name)
  local rc = setmetatable({ _cls = cls, _opts = opts, _ex = ex, _name = name }, RemoteClass)
  rc.remote = function(...)
    if rawequal((...), rc) then return create(rc, select(2, ...)) end
    return create(rc, ...)
  end
  rc.options = function(...)
    local o = ...
    if rawequal(o, rc) then o = select(2, ...) end
    options.check(o, options.actor, "actor class " .. rc:_label(), 2)
    local merged = options.merge(opts, o)
    options.check_kinds(merged, "actor class " .. rc:_label(), 2)
    if not rc._name then rc._name = remote.guess_name(rc) end
    return make_class(cls, merged, ex, rc._name)
  end
  return rc
end

function M.remote_class(cls, opts, name)
  return make_class(cls, opts, {}, rawget(cls, "__name") or name)
end

--- Cancels the actor call whose result is object id, if it is one: a call
--- not yet sent is dropped; one sent but not started is dropped by the
--- actor; a running one finishes (actor methods are not interrupted).
--- Returns whether id belonged to an actor call.
function M.cancel(id)
  for _, st in pairs(actors) do
    for i, call in ipairs(st.queue) do
      for _, rid in ipairs(call.rets) do
        if rid == id then
          table.remove(st.queue, i)
          call_ended(call)
          if call.msg.lend then runtime.queue({ t = "unlend", token = call.msg.lend }) end
          local blob = serialize.encode(errors.new("TaskCancelledError",
            "the call of actor " .. tostring(st.cname) .. " was cancelled before it was sent"))
          for _, r in ipairs(call.rets) do runtime.fill(r, { err = blob }, "local") end
          return true
        end
      end
    end
    for cid, call in pairs(st.inflight) do
      for _, rid in ipairs(call.rets) do
        if rid == id then
          if st.conn and st.conn:is_open() then st.conn:send({ t = "cancel_call", cid = cid }) end
          runtime.pump()
          return true
        end
      end
    end
  end
  return false
end

--- Kills the actor behind handle h.
function M.kill(h, no_restart)
  local d = M.handle_info(h)
  -- Waits until the actor is dead, so its name is free and no later call
  -- can reach it when lray.kill returns.
  local st0 = actors[d.aid]
  local key0 = st0 and st0.key
  runtime.rpc({ t = "kill_actor", aid = d.aid, no_restart = no_restart })
  local st = actors[d.aid]
  if st and no_restart == false and st.key ~= key0 then
    -- The node's notices of the restart (RESTARTING, then ALIVE in a new
    -- process) were handled while we waited for the reply: they are newer
    -- than anything we would set here.
    return
  end
  if st and no_restart ~= false then
    st.state, st.cause = "DEAD", st.cause or "it was killed by lray.kill"
    if st.conn then st.conn:close(); st.conn = nil end
  elseif st then
    -- It restarts: calls from now on wait for the new process; calls in
    -- flight went down with the old one.
    if st.conn then
      local old = st.conn
      st.conn = nil
      for cid, call in pairs(st.inflight) do
        st.inflight[cid] = nil
        st.orphans[#st.orphans + 1] = call
      end
      old:close()
    end
    st.state, st.key = "RESTARTING", nil
  end
end

function M.get_actor(name, namespace)
  local r = runtime.rpc({ t = "get_actor", name = name, namespace = namespace })
  if r.err then errors.raise("ValueError", r.err) end
  return M.handle(r.aid, r.cname, r.methods, true)   -- the node counts us already
end

function M.reset()
  for k in pairs(hcounts) do hcounts[k] = nil end
  for k, st in pairs(actors) do
    if st.conn then st.conn:close() end
    actors[k] = nil
  end
end

return M
