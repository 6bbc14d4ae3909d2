-- The node's actor table: placement of new actors on a dedicated worker,
-- their states (PENDING -> ALIVE -> DEAD), names within namespaces, and the
-- notices that tell callers where an actor lives or why it died.
local core = require("lray._core")
local N = require("lray._node.state")
local sched = require("lray._node.sched")
local objects = require("lray._node.objects")

local pairs, ipairs, tostring, remove = pairs, ipairs, tostring, table.remove

local M = {}
local actors = {}     -- actor id -> actor
local names = {}      -- namespace .. "\0" .. name -> actor id
local unplaced = {}   -- actors waiting for resources or a worker
M.actors = actors

local function name_key(ns, name) return tostring(ns) .. "\0" .. name end

local function info(a)
  return { t = "actor", aid = a.aid, state = a.state, addr = a.addr,
    pid = a.pid, cause = a.cause, cname = a.cname, name = a.name,
    restarts = a.restarts, max_task_retries = a.max_task_retries,
    init_error = a.init_error }
end

local function notify(a)
  local m = info(a)
  for cl in pairs(a.subs) do
    if cl.conn:is_open() then cl.conn:send(m) else a.subs[cl] = nil end
  end
end

-- -- Handle counting -----------------------------------------------------------
-- An actor's count is the number of processes holding a handle to it plus
-- queued tasks that take one as an argument. A non-detached actor whose
-- count stays at zero for the grace period ends.

local GRACE = 0.5
local set_dead

local function maybe_unreferenced(a)
  if a.detached or a.state == "DEAD" or a.hcount > 0 then return end
  core.timer(GRACE, 0, function()
    if a.hcount > 0 or a.state == "DEAD" then return end
    a.cause = "no handle to it remains (every handle was dropped)"
    a.no_restart = true
    if a.worker and a.worker.proc then a.worker.proc:kill(9) else set_dead(a, a.cause) end
  end, true)
end

function M.hold(cl, aid)
  local a = actors[aid]
  if not a or cl.actors_held[aid] then return end
  cl.actors_held[aid] = true
  a.hcount = a.hcount + 1
end

function M.unhold(cl, aid)
  local a = actors[aid]
  if not a or not cl.actors_held[aid] then return end
  cl.actors_held[aid] = nil
  a.hcount = a.hcount - 1
  maybe_unreferenced(a)
end

-- Handles in an actor's init arguments keep those actors alive until it
-- started.
local function hold_actors(aids, delta)
  for _, aid in ipairs(aids) do
    local a = actors[aid]
    if a then
      a.hcount = a.hcount + delta
      if delta < 0 then maybe_unreferenced(a) end
    end
  end
end

local drop_owned
function set_dead(a, cause)
  if a.state == "DEAD" then return end
  a.state = "DEAD"
  if drop_owned then drop_owned(a, "ended (" .. tostring(a.cause or cause) .. ")") end
  a.cause = a.cause or cause
  a.addr = nil
  if a.name and names[name_key(a.namespace, a.name)] == a.aid then
    names[name_key(a.namespace, a.name)] = nil   -- the name is free again
  end
  if a.placed then
    sched.release_hold(a.num)
    a.placed = false
    sched.dispatch()
  end
  for _, id in ipairs(a.holds or {}) do objects.decref(id) end
  a.holds = {}
  if a.actor_holds then
    hold_actors(a.actor_holds, -1)
    a.actor_holds = nil
  end
  notify(a)
  for _, w in ipairs(a.kill_waiters or {}) do w() end
  a.kill_waiters = nil
  sched.dispatch()
  M.place_waiting()
end

--- Handles an actor_create message. Returns an error string for a name
--- clash (the creator raises it), else nil.
function M.create(cl, m)
  local o = m.opts or {}
  local job = cl.job or m.job
  local ns = o.namespace or (job and N.jobs[job] and N.jobs[job].namespace)
  if o.name then
    local existing = names[name_key(ns, o.name)]
    if existing and actors[existing] and actors[existing].state ~= "DEAD" then
      if o.get_if_exists then return nil, actors[existing] end
      return ("an actor named '%s' already exists in namespace '%s'; pick another name,"
        .. " kill the old actor, or pass get_if_exists = true"):format(o.name, tostring(ns))
    end
  end
  local a = { aid = m.aid, m = m, cname = m.cname, methods = m.methods,
    state = "PENDING", subs = {}, job = job, name = o.name, namespace = ns,
    detached = o.lifetime == "detached", res = m.res or {},
    place = m.place or { CPU = sched.UNIT }, holds = {}, created = core.now(),
    restarts = 0, max_restarts = o.max_restarts or 0, hcount = 0,
    max_task_retries = o.max_task_retries or 0,
    -- An actor created by an actor fate-shares with it (API.md).
    owner = cl.worker and cl.worker.actor and cl.worker.actor.aid or nil }
  actors[a.aid] = a
  if o.name then names[name_key(ns, o.name)] = a.aid end
  M.hold(cl, a.aid)   -- the creator holds the handle it gets back
  if m.actors and #m.actors > 0 then
    a.actor_holds = m.actors
    hold_actors(m.actors, 1)
  end
  for _, id in pairs(m.deps or {}) do objects.incref(id); a.holds[#a.holds + 1] = id end
  for _, id in ipairs(m.refs or {}) do objects.incref(id); a.holds[#a.holds + 1] = id end
  a.num = sched.number()
  local ok, missing = pcall(function() return sched.infeasible(a.place) or sched.infeasible(a.res) end)
  if not ok then
    set_dead(a, "it cannot be placed: " .. tostring(missing):gsub("^.-: ", ""))
    return nil, a
  end
  if missing then
    local j = job and N.jobs[job]
    if j then
      j.conn:send({ t = "warn", text = ("actor %s cannot be placed: it needs %s that no"
        .. " node has; it stays pending until a node that fits joins"):format(
          tostring(a.cname), missing) })
    end
  end
  unplaced[#unplaced + 1] = a
  M.place_waiting()
  return nil, a
end

local function deps_ready(a)
  for _, id in pairs(a.m.deps or {}) do
    if not objects.ready(id) then return false end
  end
  return true
end

local function start_on(a, w)
  a.worker, a.pid = w, w.pid
  w.actor, w.state, w.job, w.label = a, "actor", a.job, a.cname
  local m = a.m
  sched.introduce_job(w, a.job)
  local depv = sched.dep_values(m.deps)
  w.conn:send({ t = "actor_start", aid = a.aid, code = N.fns[m.ch], args = m.args,
    depv = depv, cname = a.cname, job = a.job, opts = m.opts,
    session = N.session_dir, gpus = a.gpus and #a.gpus > 0 and a.gpus or nil })
end

--- Places waiting actors that fit now.
function M.place_waiting()
  local i = 1
  while i <= #unplaced do
    local a = unplaced[i]
    if a.state ~= "PENDING" then
      remove(unplaced, i)
    elseif deps_ready(a) and sched.hold(a.num, a.place) then
      -- Placing needs `place` (1 CPU unless asked otherwise) free right now;
      -- the actor then holds only what it asked for, for its whole life.
      sched.release_hold(a.num)
      local gpus = sched.hold(a.num, a.res)
      if not gpus then
        i = i + 1
        goto continue
      end
      a.gpus = gpus
      remove(unplaced, i)
      a.placed = true
      local w = sched.take_idle_worker()
      if w then
        start_on(a, w)
      else
        w = sched.spawn_worker(true)
        if not w then
          set_dead(a, "no worker process could be started for it")
        else
          w.for_actor = a
        end
      end
    else
      i = i + 1
    end
    ::continue::
  end
end

-- Actors waiting for their arguments or for resources may start once an
-- object is stored or a lease gives resources back.
local function retry_placing()
  if #unplaced > 0 then M.place_waiting() end
end
objects.on_ready = retry_placing
sched.on_freed = retry_placing

-- A fresh worker spawned for an actor takes it as soon as it says hello.
sched.on_worker_ready = function(w)
  local a = w.for_actor
  if type(a) == "table" and a.state == "PENDING" then
    start_on(a, w)
    return true
  end
  return false
end

-- The actor's process died: restart it (init runs again with the original
-- arguments) while restarts remain, else it is dead for good.
local function restart(a, how)
  a.restarts = a.restarts + 1
  a.cause = how
  a.state, a.addr, a.pid, a.worker = "RESTARTING", nil, nil, nil
  a.killed = nil
  if a.placed then
    sched.release_hold(a.num)
    a.placed = false
  end
  notify(a)
  a.state = "PENDING"
  a.cause = nil
  unplaced[#unplaced + 1] = a
  M.place_waiting()
end

-- The process of actor owner is gone (killed, crashed, restarting): the
-- non-detached actors it created end with it, whatever handles remain.
function drop_owned(owner, how)
  for _, a in pairs(actors) do
    if a.owner == owner.aid and not a.detached and a.state ~= "DEAD" then
      a.cause = ("its owner, actor %s(%s), %s"):format(tostring(owner.cname), owner.aid, how)
      a.no_restart = true
      if a.worker and a.worker.proc then a.worker.proc:kill(9) else set_dead(a, a.cause) end
    end
  end
end

sched.on_worker_exit = function(w, status, sig)
  local a = w.actor or (type(w.for_actor) == "table" and w.for_actor) or nil
  if not a or a.state == "DEAD" then return end
  if a.worker ~= nil and a.worker ~= w then return end
  drop_owned(a, a.killed and "was killed" or "died")
  local job_alive = a.detached or (a.job and N.jobs[a.job])
  local how
  if a.killed then
    how = "it was killed by lray.kill"
  elseif sig ~= 0 then
    how = ("its worker process (pid %s) was killed by signal %d"):format(tostring(w.pid), sig)
  else
    how = ("its worker process (pid %s) exited with code %d"):format(tostring(w.pid), status)
  end
  if not a.no_restart and not a.init_error and job_alive
      and (a.max_restarts == -1 or a.restarts < a.max_restarts) then
    return restart(a, how)
  end
  if a.restarts > 0 then
    how = how .. (" (after %d restart%s; max_restarts = %d)"):format(a.restarts,
      a.restarts == 1 and "" or "s", a.max_restarts)
  end
  set_dead(a, how)
end

--- The actor's worker finished init and listens at addr.
function M.ready(_, m)
  local a = actors[m.aid]
  if not a or a.state ~= "PENDING" then return end
  a.state, a.addr = "ALIVE", m.addr
  notify(a)
end

--- init raised: the actor is dead, with the error as cause.
function M.init_failed(w, m)
  local a = actors[m.aid]
  if not a then return end
  a.init_error = m.err
  set_dead(a, "its init raised an error: " .. tostring(m.message))
  if w.proc then w.proc:kill(9) end
end

function M.subscribe(cl, aid)
  local a = actors[aid]
  if not a then
    cl.conn:send({ t = "actor", aid = aid, state = "DEAD",
      cause = "no such actor on this cluster (it ended before, or never existed)" })
    return
  end
  a.subs[cl] = true
  local m = info(a)
  m.init_error = a.init_error
  cl.conn:send(m)
end

--- Kills the actor; done() runs once it is dead (or restarting).
function M.kill(aid, no_restart, done)
  local a = actors[aid]
  if not a or a.state == "DEAD" then if done then done() end return end
  if done then
    if no_restart == false then
      done()   -- it comes back: nothing to wait for
    else
      a.kill_waiters = a.kill_waiters or {}
      a.kill_waiters[#a.kill_waiters + 1] = done
    end
  end
  a.killed = true
  a.no_restart = no_restart ~= false
  if a.no_restart then a.cause = "it was killed by lray.kill" end
  if a.worker and a.worker.proc then
    a.worker.proc:kill(9)
  else
    set_dead(a, a.cause)
  end
end

function M.lookup(name, ns)
  local aid = names[name_key(ns, name)]
  local a = aid and actors[aid]
  if a and a.state ~= "DEAD" then return a end
  return nil
end

--- The job ended: its non-detached actors end with it.
function M.drop_job(job)
  for _, a in pairs(actors) do
    if a.job == job and not a.detached and a.state ~= "DEAD" then
      a.cause = "its owner (job " .. tostring(job) .. ") exited"
      a.no_restart = true
      if a.worker and a.worker.proc then a.worker.proc:kill(9) else set_dead(a, a.cause) end
    end
  end
end

function M.drop_subscriber(cl)
  for _, a in pairs(actors) do a.subs[cl] = nil end
  for aid in pairs(cl.actors_held) do M.unhold(cl, aid) end
end

function M.list()
  local out = {}
  for _, a in pairs(actors) do
    out[#out + 1] = { actor_id = a.aid, class_name = a.cname, name = a.name,
      namespace = a.namespace, state = a.state, pid = a.pid, cause = a.cause,
      restarts = a.restarts, detached = a.detached }
  end
  return out
end

return M
