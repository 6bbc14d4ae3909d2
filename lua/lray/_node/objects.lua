-- The node's object directory: every object the node knows, where its bytes
-- are (inline in memory, or a range of the shared-memory store), who holds
-- references to it, and who waits for it.
--
-- An object lives while its count is above zero. The count is the number of
-- processes holding an ObjectRef to it (each counts once), plus objects that
-- contain its id, plus actors waiting to start that take it as an argument,
-- plus lends (see lend). At zero it is freed shortly after (GRACE: a
-- batching delay, not a safety margin).
local core = require("lray._core")
local N = require("lray._node.state")

local pairs, next = pairs, next

local M = {}
local objects = {}
M.objects = objects

-- Seconds an unreferenced object lingers before it is freed. No hand-off
-- relies on it: every reference sent on is held by its sender (or lent, see
-- Hand-offs) until the receiver's own hold is in, and a process lets go only
-- after the message that hands references on. The delay only batches the
-- frees (freeing each object on the next turn cost a third of the put rate);
-- the ownership specs run with LRAY_FREE_GRACE_S=0 to prove the point.
local GRACE = tonumber(os.getenv("LRAY_FREE_GRACE_S") or "0.05") or 0.05
local doomed = {}                 -- id -> time its count reached zero
local sweeping = false

--- The entry for id, created pending when unknown.
function M.get(id)
  local o = objects[id]
  if not o then
    o = { count = 0 }
    objects[id] = o
  end
  return o
end

local function free(id, o)
  objects[id] = nil
  if o.shm then N.region:free(o.shm[1], o.shm[2]) end
  if o.contains then
    for i = 1, #o.contains do M.decref(o.contains[i]) end
  end
end

local function sweep()
  local t = core.now()
  for id, since in pairs(doomed) do
    local o = objects[id]
    if not o or o.count > 0 then
      doomed[id] = nil   -- wanted again
    elseif t - since >= GRACE then
      doomed[id] = nil
      free(id, o)
    end
  end
  if next(doomed) then
    core.timer(GRACE, 0, sweep, true)
  else
    sweeping = false
  end
end

function M.incref(id)
  local o = M.get(id)
  o.count = o.count + 1
end

local function doom(id)
  doomed[id] = core.now()
  if not sweeping then
    sweeping = true
    core.timer(GRACE, 0, sweep, true)
  end
end

function M.decref(id)
  local o = objects[id]
  if not o then return end
  o.count = o.count - 1
  if o.count <= 0 then
    o.count = 0
    doom(id)
  end
end

-- -- Hand-offs ---------------------------------------------------------------
-- A process that sends references straight to another (an actor call's
-- arguments, an actor's reply) lends them first: the node counts the lend
-- until the receiver, having registered its own hold, claims it. Lend and
-- claim come over different connections, so either may arrive first.
-- Known gap: a lend an actor made for a reply whose caller died before
-- claiming it stays until the node ends.

local lends = {}      -- token -> {cl = lender, ids = {...}}
local claimed = {}    -- token -> true: claimed before its lend arrived

function M.lend(token, ids)
  if claimed[token] then claimed[token] = nil; return end
  for i = 1, #ids do M.incref(ids[i]) end
  lends[token] = { ids = ids }
end

local function release_lend(token, l)
  lends[token] = nil
  for i = 1, #l.ids do M.decref(l.ids[i]) end
end

function M.claim(token)
  local l = lends[token]
  if not l then claimed[token] = true; return end
  release_lend(token, l)
end

--- The lender takes a lend back (the receiver died before it could claim
--- it). It comes after the lend on the same connection, so a token that is
--- gone was claimed already.
function M.unlend(token)
  local l = lends[token]
  if l then release_lend(token, l) end
end

--- Frees every unreferenced object now (the store is short of space).
function M.collect_now()
  for id in pairs(doomed) do
    local o = objects[id]
    doomed[id] = nil
    if o and o.count <= 0 then free(id, o) end
  end
end

--- client holds a reference to id (counted once per client).
function M.hold(cl, id)
  if cl.held[id] then return end
  cl.held[id] = true
  M.incref(id)
end

function M.unhold(cl, id)
  if not cl.held[id] then return end
  cl.held[id] = nil
  M.decref(id)
end

--- Drops everything a departed client held.
function M.drop_client(cl)
  for id in pairs(cl.held) do M.decref(id) end
  cl.held = {}
  -- (Its lends stay: a receiver may still claim them. A lender whose
  -- receiver died takes its lend back with unlend.)
  for off, size in pairs(cl.allocs or {}) do N.region:free(off, size) end
  cl.allocs = nil
  for id, o in pairs(objects) do
    if o.waiters then o.waiters[cl] = nil end
    if o.expected_from == cl and not o.st then
      -- Its owner (the actor's caller) was to store it and is gone.
      local errors = require("lray.errors")
      M.store(id, { err = core.encode(errors.new("OwnerDiedError", ("object %s is lost:"
        .. " the process that owned it (pid %s, which made the actor call that returns it)"
        .. " exited before it was stored"):format(id, tostring(cl.pid or "?")))) })
    end
  end
end

local function wire(o)
  return { t = "obj", data = o.data, shm = o.shm, err = o.err, arr = o.arr }
end

--- Sends id's value to cl now if ready, or when it becomes ready.
function M.subscribe(cl, id)
  local o = M.get(id)
  if o.st then
    local m = wire(o)
    m.id = id
    cl.conn:send(m)
  else
    o.waiters = o.waiters or {}
    o.waiters[cl] = true
  end
end

--- Stores the value (or failure) of id and tells everyone waiting.
---@param v table {data=, shm=, err=, refs=}
function M.store(id, v)
  local o = M.get(id)
  if o.st then
    -- Already stored (a retried task finishing twice): keep the first,
    -- and free the second copy's range (never the stored one's).
    if v.shm and not (o.shm and o.shm[1] == v.shm[1]) then N.region:free(v.shm[1], v.shm[2]) end
    return
  end
  o.data, o.shm, o.err, o.arr = v.data, v.shm, v.err, v.arr
  o.st = v.err and "err" or "ok"
  if v.refs and #v.refs > 0 then
    o.contains = v.refs
    for i = 1, #v.refs do M.incref(v.refs[i]) end
  end
  if M.on_ready then M.on_ready(id) end
  local w = o.waiters
  if w then
    o.waiters = nil
    local m = wire(o)
    m.id = id
    for cl in pairs(w) do
      if cl.conn:is_open() then cl.conn:send(m) end
    end
  end
  if o.count <= 0 then doom(id) end    -- nobody wants it: sweep later
end

--- Marks id failed with an encoded error built by the caller.
function M.fail(id, err_blob)
  if type(err_blob) == "table" then
    local errors = require("lray.errors")
    err_blob = core.encode(errors.new("ObjectLostError",
      "object " .. id .. " was lost: " .. err_blob.lost))
  end
  M.store(id, { err = err_blob })
end

function M.ready(id)
  local o = objects[id]
  return o ~= nil and o.st ~= nil
end

function M.stats()
  local n, bytes = 0, 0
  for _, o in pairs(objects) do
    n = n + 1
    bytes = bytes + (o.data and #o.data or 0) + (o.shm and o.shm[2] or 0)
  end
  return n, bytes
end

return M
