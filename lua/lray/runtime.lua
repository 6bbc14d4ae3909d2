-- The runtime every lray process embeds (drivers and workers alike): the
-- connection to the node manager, the table of objects this process knows,
-- reference counting, and blocking in get/wait while the loop runs.
local core = require("lray._core")
local serialize = require("lray.serialize")
local object = require("lray.object")
local errors = require("lray.errors")
local store_link = require("lray.store_link")

local encode, decode = serialize.encode, serialize.decode
local run_once, poll, now = core.run_once, core.poll, core.now
local type, pairs, ipairs, error, tostring = type, pairs, ipairs, error, tostring
local unpack = unpack
local format = string.format

local M = {}

-- Values up to this size travel inside messages; larger ones are written once
-- into the node's shared memory and read in place.
M.INLINE_MAX = 100 * 1024

M.conn = nil          -- connection to the node manager
M.info = nil          -- what the node said at hello (node_id, shm, session...)
M.remote_store = nil  -- a driver that cannot map its node's store: why (store_link.lua)
M.role = nil          -- "driver" | "worker"
M.job_id = nil
M.namespace = nil
M.current = {}        -- task being run here: task_id, actor_id, name, job_id
M.handlers = {}       -- message type -> function(msg, conn)
M.dump_hooks = {}     -- function(lines): add to the SIGUSR2 dump
M.explainers = {}     -- function(id, seconds) -> true once it said why id is late

local objs = {}       -- id -> {st=nil|"ok"|"err", data=, shm=, err=, loc=}
local counts = {}     -- id -> live ObjectRefs to it in this process
local subscribed = {} -- id -> true once the node was asked about it
local replies = {}    -- rpc id -> reply message
local on_reply = {}   -- rpc id -> function(reply), for requests nobody waits on
local watchers = {}   -- id -> functions to call once its value is here
local H_unmap         -- the unmap handler (below, with spilling)
local homes = {}      -- id -> the node whose store holds it, when another
                      -- (from the ObjectRef that brought it here)
M.objs, M.counts = objs, counts

-- -- Ids -------------------------------------------------------------------

local id_prefix, id_counter = nil, 0

--- A fresh 32-hex-digit id, unique in the cluster.
function M.new_id()
  if not id_prefix then id_prefix = core.random_hex(8) end
  id_counter = id_counter + 1
  return format("%s%016x", id_prefix, id_counter)
end

-- -- Outgoing bookkeeping --------------------------------------------------
-- Reference changes happen inside the collector and inside encoding, where
-- writing a frame is not safe. They queue here and go out ahead of the next
-- message this process sends, except that letting go ("unref") always goes
-- last, after that message: a message that hands references on (a task's
-- results, a put of a table holding refs) reaches the node before this
-- process's own hold on them ends, so no reference is ever dropped in flight.

local outq = {}      -- messages, in order
local unrefs = {}    -- ids to let go of, sent after everything else; an id
                     -- waiting here has counts[id] == 0

local function queue(msg) outq[#outq + 1] = msg end

local function has_queued() return #outq > 0 or #unrefs > 0 end

-- Sends what is queued, then msg (if any), then the unrefs.
local function flush_queue(msg)
  while #outq > 0 do
    local q = outq
    outq = {}
    for i = 1, #q do M.conn:send(q[i]) end
  end
  if msg then M.conn:send(msg) end
  while #unrefs > 0 or #outq > 0 do
    while #outq > 0 do
      local q = outq
      outq = {}
      for i = 1, #q do M.conn:send(q[i]) end
    end
    local ids, n = unrefs, 0
    unrefs = {}
    for i = 1, #ids do
      local id = ids[i]
      -- Held again since (counts above 0): the node never heard we let go.
      if counts[id] == 0 then counts[id] = nil; n = n + 1; ids[n] = id end
    end
    for i = #ids, n + 1, -1 do ids[i] = nil end
    if n > 0 then M.conn:send({ t = "unref", ids = ids }) end
  end
end

--- Sends msg to the node, after any queued reference changes (unrefs after it).
function M.send(msg)
  if M.lost then errors.raise("RayError", M.lost) end
  flush_queue(msg)
end

-- -- Reference counting -----------------------------------------------------

local function queue_unref(id)
  if not M.conn or counts[id] then return end
  counts[id] = 0
  unrefs[#unrefs + 1] = id
end

-- addr, when it is another node's address (nil for this node's own).
local function elsewhere(addr)
  if addr and M.info and addr ~= M.info.address then return addr end
end
M.elsewhere = elsewhere

--- This node's TCP address, or nil when it has none (a one-node cluster):
--- messages carrying a lend name it, so a receiver elsewhere claims there.
function M.lnode()
  local a = M.info and M.info.address
  if a and a:sub(1, 5) ~= "unix:" then return a end
end

-- The node whose store holds id, if another: its node holds it there for
-- as long as it counts it (core/raylet/xref.c).
local function remote_home(id)
  local e = objs[id]
  return elsewhere(homes[id] or (e and e.node))
end

-- This process holds id (a new ObjectRef, or an object it keeps for one):
-- the node hears it unless it already counts us (held), or we were about
-- to let go (the unref is then simply not sent).
local function take_hold(id, held)
  local n = counts[id]
  if n then counts[id] = n + 1; return end   -- 0: its unref is not sent yet
  counts[id] = 1
  if not held then queue({ t = "ref", id = id, home = remote_home(id) }) end
end

local drop, pin_each

-- An entry leaves the table: what it pinned (the refs inside an actor
-- call's inline result) is let go too.
local function forget(id, e)
  objs[id] = nil
  subscribed[id] = nil
  if M.on_forget then M.on_forget(id) end
  if e and e.pins then
    local pins = e.pins
    e.pins = nil
    for i = 1, #pins do drop(pins[i]) end
  end
  if e and e.apins then
    local apins = e.apins
    e.apins = nil
    for i = 1, #apins do M.actor_drop(apins[i]) end
  end
end

function drop(id)
  local n = (counts[id] or 1) - 1
  if n > 0 then counts[id] = n; return end
  if n < 0 then return end   -- already let go (waiting in unrefs)
  counts[id] = nil
  homes[id] = nil
  local e = objs[id]
  if e and e.promote_on_arrival then
    -- An actor call's result that was sent on before it arrived: the node
    -- expects this process to store it, so the entry stays until it has
    -- (fill then lets go of it).
    e.orphan = true
    return
  end
  forget(id, e)
  if e and e.loc == "local" and not e.promoted then return end
  queue_unref(id)
end

--- This process keeps id alive for something other than an ObjectRef (the
--- refs inside an actor call's result it holds); drop(id) ends it.
M.pin = function(id) take_hold(id, false) end
M.queue_unref = queue_unref

-- Actor handle counting lives in lray.actor, which sets these: hold(aid)
-- counts one more use of actor aid here (telling the node if it is the
-- first), drop(aid) ends one.
M.actor_hold, M.actor_drop = nil, nil

--- A new ObjectRef to id. held: the node already counts this process as a
--- holder (it created the object for us), so no message is needed.
function M.new_ref(id, held)
  take_hold(id, held)
  return object.new(id)
end

-- An object known only here (an actor call's result) becomes visible to the
-- node before its id leaves this process.
local escaped = nil
local function escape(id)
  local e = objs[id]
  if e and e.loc == "local" and not e.promoted then
    e.promoted = true
    if e.st then
      queue({ t = "put", id = id, data = e.data, err = e.err, refs = e.refs, actors = e.actors })
    else
      e.promote_on_arrival = true
      queue({ t = "expect", id = id })
    end
  end
  if escaped then escaped[#escaped + 1] = id end
  return id
end

M.escape = escape
M.queue = queue

local nsubmitted = 0
--- After each submission: hand it to the kernel now, and every so often
--- also take in what arrived, so results do not pile up unread.
function M.submitted()
  nsubmitted = nsubmitted + 1
  if nsubmitted % 64 == 0 then M.pump() else core.flush() end
end

-- An ObjectRef on the wire is its id and, in a cluster, "@" and the node
-- whose store holds the object (its home): a receiver on another node has
-- its own node hold the object there and ask there for it.
local function wire_id(id)
  escape(id)
  local e = objs[id]
  local home = homes[id] or (e and e.node) or M.lnode()
  if home and home:sub(1, 5) ~= "unix:" then return id .. "@" .. home end
  return id
end

object.hooks.gc = drop
object.hooks.release = drop
object.hooks.escape = wire_id
object.hooks.arrive = function(wire)
  local id, home = wire:match("^([^@]*)@(.+)$")
  if not id then id = wire end
  if not homes[id] then homes[id] = elsewhere(home) end
  return M.new_ref(id, false)
end

local escaped_actors = nil
--- An actor handle is being encoded (its id goes with the value).
function M.note_actor(aid)
  if escaped_actors then escaped_actors[#escaped_actors + 1] = aid end
end

--- Encodes v, returning the blob, the object ids and the actor ids in it.
function M.encode_tracked(v, root)
  local prev, preva = escaped, escaped_actors
  escaped, escaped_actors = {}, {}
  local ok, blob = pcall(encode, v, root)
  local ids, aids = escaped, escaped_actors
  escaped, escaped_actors = prev, preva
  if not ok then
    -- A value that cannot be sent: a ValueError naming its path.
    if type(blob) == "string" then blob = errors.new("ValueError", blob) end
    error(blob, 0)
  end
  -- nil, not {}, when there are none: every message that carries them is
  -- encoded and decoded a few times on its way.
  return blob, ids[1] and ids or nil, aids[1] and aids or nil
end

-- -- Objects ---------------------------------------------------------------

--- The encoded error of a value record: its own, or one the control plane
--- described by type and message (it never encodes values itself).
function M.err_blob(v)
  if v.err or not v.etype then return v.err end
  return encode(errors.new(v.etype, v.emsg or ""))
end

-- Holds each id of list with hold; returns the list to let go of later.
function pin_each(list, hold)
  local pins = {}
  for i = 1, #list do
    hold(list[i])
    pins[i] = list[i]
  end
  return pins
end

--- Records a value or failure that arrived for id.
function M.fill(id, msg, loc)
  local e = objs[id]
  if not e then
    if (counts[id] or 0) == 0 then return end   -- nobody here wants it any more
    e = {}
    objs[id] = e
  end
  if e.st then return end
  e.data, e.shm, e.err, e.arr, e.node = msg.data, msg.shm, M.err_blob(msg), msg.arr, msg.node
  e.st = e.err and "err" or "ok"
  if msg.refs and #msg.refs > 0 and loc == "local" then
    -- An actor call's inline result holding ObjectRefs: this process keeps
    -- them alive for as long as it keeps the value (it may decode it late).
    e.refs = msg.refs
    e.pins = pin_each(msg.refs, M.pin)
  end
  if msg.actors and #msg.actors > 0 and loc == "local" then
    -- ...and the actors of the handles inside it, as the node would for a
    -- stored value (the sender lent them until we claim).
    e.actors = msg.actors
    e.apins = pin_each(msg.actors, M.actor_hold)
  end
  if loc then e.loc = loc end
  local w = watchers[id]
  if w then
    watchers[id] = nil
    for i = 1, #w do w[i](id) end
  end
  if e.promote_on_arrival then
    e.promote_on_arrival = nil
    -- A large result arrives already stored on the node (the actor put it
    -- there): only an inline one needs storing.
    if not e.shm then
      queue({ t = "put", id = id, data = e.data, err = e.err, refs = e.refs, actors = e.actors })
    end
    if e.orphan then
      -- No ObjectRef to it is left here: the node's copy is all there is.
      forget(id, e)
      queue_unref(id)
    end
    -- Out now: whoever it was sent to waits for it, and this process may be
    -- about to sleep in the loop.
    if M.conn then flush_queue() end
  end
end

--- ids came in a message lent by a process of node lnode: unless this
--- process knows their home already, it holds them there (that node holds
--- them until the claim, and at their own home while it counts them), so
--- its node's hold reaches lnode ahead of the claim, on the same link.
function M.note_lender(ids, lnode)
  lnode = elsewhere(lnode)
  if not (ids and lnode) then return end
  for i = 1, #ids do
    local id = ids[i]
    if not homes[id] and not counts[id] then homes[id] = lnode end
  end
end

--- Takes the results of a task or actor call this process made (rets: its
--- return ids). Small ones arrive whole and live here; large ones the
--- worker stored on the node, and this process holds them from now on.
--- lnode: the node of the worker that lent them.
function M.take_results(rets, results, lnode)
  for i, r in ipairs(results) do
    M.note_lender(r.refs, lnode)
    local id = rets[i] or r.id
    if r.shm then
      -- Stored on the node: we hold it from now on, if anything here still
      -- wants it. (Refs inside an inline result are pinned by fill.)
      local e = objs[id]
      if e and not e.st then queue({ t = "ref", id = id, home = elsewhere(r.node) }) end
      M.fill(id, r, "node")
    else
      M.fill(id, r, "local")
    end
  end
end

--- An entry for an object this process will learn about by itself (a task
--- it submitted, an actor call it made).
function M.expect(id, loc)
  local e = objs[id]
  if not e then
    e = { loc = loc }
    objs[id] = e
  end
  subscribed[id] = true
  return e
end

local region
local function shm_read(loc)
  if not region then region = core.shm_open(M.info.shm) end
  return region:read(loc[1], loc[2])
end
function M.region()
  if not region then region = core.shm_open(M.info.shm) end
  return region
end

--- The TCP address of this process's node ("unix:..." when it has none):
--- value records of its store carry it as `node`.
function M.node_address() return M.info and M.info.address end

-- A record (e) whose range is in another node's store: this node copies the
-- object into its own (one copy per node, however many readers) and holds
-- the copy for this process, whose record then names the copy.
local localize
function localize(e, id)
  local node = e.node
  if not (node and e.shm and M.info) or node == M.info.address then return end
  if not id then errors.raise("RayError", "a value record of node " .. node .. " has no id") end
  local r = M.rpc({ t = "fetch", id = id, from = node, size = e.shm[2], arr = e.arr })
  if r.err then
    -- Lost with its node: the task that made it runs again if this process
    -- owns it and keeps its lineage (lray.submit's rebuild), and the copy
    -- is taken from wherever the new one is stored.
    local why = M.rebuild and objs[id] == e and M.rebuild(id, r.err)
    if why == true then
      M.wait_until(function() return e.st end)
      if e.st == "err" then error(M.decode_error(e.err), 0) end
      return localize(e, id)
    end
    errors.raise(r.etype or "ObjectLostError", r.err .. (why or ""))
  end
  e.shm = { r.off, e.shm[2] }
  e.node = M.info.address
  -- The node counts this process as a holder of its copy from now on.
  if counts[id] == nil then e.unhold = true end
end
M.localize = localize

local array -- lray.array, loaded on first use (it needs the FFI)

-- -- Spilling: letting go of locations --------------------------------------
-- Before the node spills an object this process holds, it asks this process
-- to forget where the object is in its store (unmap). A location in use is
-- kept: a live lray.array view of it, or a read under way. A forgotten entry
-- keeps its state ("ok") without data or range; a reader asks the node
-- again (relocate), which restores the object first.

local reading = {}                                -- id -> reads under way here
local views = setmetatable({}, { __mode = "k" })  -- live lray.array view -> its id

local function located(e) return e.data or e.shm or e.err or e.etype end

-- Value record e of id has no value here (its location was let go, or a
-- task's argument whose submitter had let go): ask the node and wait. The
-- caller holds id meanwhile (read_of), so the entry the answer fills stays.
local function relocate(e, id)
  local x = objs[id]
  if not x then x = {}; objs[id] = x end
  if not located(x) then
    x.st, subscribed[id] = nil, nil
    -- Ask at its home too when that is another node (a task's argument
    -- spilled at its submitter's node): this node has no record of it.
    M.subscribe({ id }, homes[id] or e.node or x.node)
    M.wait_until(function() return x.st ~= nil end, nil, true)
  end
  if x.st == "err" then
    -- The node could not bring it back now (the store stays full): this
    -- read fails; a later one asks again.
    local err = x.err
    x.st, x.err = "ok", nil
    error(M.decode_error(err), 0)
  end
  if e ~= x then e.data, e.shm, e.arr, e.node = x.data, x.shm, x.arr or e.arr, x.node end
end

-- Runs fn(e, id) as a read of id's location: unmap keeps it meanwhile. A
-- record with no location is relocated first, this process holding id
-- while it waits (else its last ObjectRef going meanwhile, as the collector
-- runs, would drop the entry the node's answer is for).
local function read_of(fn, e, id)
  if not id then return fn(e, id) end
  reading[id] = (reading[id] or 0) + 1
  local pinned = false
  local ok, v = pcall(function()
    if not located(e) then
      take_hold(id, false)
      pinned = true
      relocate(e, id)
    end
    return fn(e, id)
  end)
  local r = reading[id] - 1
  reading[id] = r > 0 and r or nil
  if pinned then drop(id) end
  if not ok then error(v, 0) end
  return v
end

H_unmap = function(m)
  local ids = m.ids or {}
  local viewed = {}
  local function find_views()
    viewed = {}
    for _, id in pairs(views) do viewed[id] = true end
  end
  find_views()
  for i = 1, #ids do
    -- A view nothing reaches any more keeps nothing: collect, once.
    if viewed[ids[i]] then collectgarbage(); find_views(); break end
  end
  local here = M.info and M.info.address
  local gone, kept
  for i = 1, #ids do
    local id = ids[i]
    if reading[id] or viewed[id] then
      kept = kept or {}
      kept[#kept + 1] = id
    else
      local e = objs[id]
      -- (A range of another node's store is not this node's to move.)
      if e and e.shm and (e.node == nil or e.node == here) then e.shm = nil end
      gone = gone or {}
      gone[#gone + 1] = id
    end
  end
  M.send({ t = "unmapped", ids = gone, kept = kept })
end

-- A zero-copy view of an array object in shared memory. The view holds an
-- ObjectRef, so the object outlives every view of it.
local function array_view(e, id)
  return read_of(function()
    localize(e, id)
    if M.remote_store then return store_link.read_array(M, id, e) end
    array = array or require("lray.array")
    local region_ = M.region()
    local ref = id and M.new_ref(id, false) or nil
    local k = array.kind_of(e.arr)
    local v = array.view(e.arr, region_:ptr(e.shm[1], e.shm[2]), e.shm[2] / k.esize,
      { ref, region_ })
    if id then views[v] = id end
    return v
  end, e, id)
end

local function read_blob(e, id)
  if e.shm then
    localize(e, id)
    local blob
    if M.remote_store then blob = store_link.read(M, id, e.shm[2])
    else blob = shm_read(e.shm) end
    -- A copy fetched for a record this process holds no reference to (a
    -- task's argument): read, so the node may let go of it for us.
    if e.unhold and counts[id] == nil then e.unhold = nil; queue_unref(id) end
    return blob
  end
  return e.data
end

local function blob_of(e, id)
  -- An inline value has no location to lose: no bookkeeping (a pcall and a
  -- closure per get cost 10% of small tasks' throughput).
  if e.data and not e.shm then return e.data end
  return read_of(read_blob, e, id)
end
M.blob_of = blob_of

--- Decodes an error blob into an lray error value.
function M.decode_error(blob)
  local ok, err = pcall(decode, blob)
  if ok then return err end
  return errors.new("RayError", "an error value could not be decoded: " .. tostring(err))
end

--- The values stored for a ready entry (raises its error).
function M.values(e, id)
  if e.st == "err" then error(M.decode_error(e.err), 0) end
  if e.arr then return array_view(e, id) end
  local t = decode(blob_of(e, id))
  return unpack(t, 1, t.n)
end

--- The first value of a ready entry, or raises.
function M.first_value(e, id)
  if e.st == "err" then error(M.decode_error(e.err), 0) end
  if e.arr then return array_view(e, id) end
  return decode(blob_of(e, id))[1]
end

-- -- Waiting ---------------------------------------------------------------

local blocked = 0
local function set_blocked(on)
  if M.role ~= "worker" then return end
  if on then
    blocked = blocked + 1
    if blocked == 1 then
      M.send({ t = "blocked" })
      if M.on_blocked then M.on_blocked() end
    end
  else
    blocked = blocked - 1
    if blocked == 0 then M.send({ t = "unblocked" }) end
  end
end

--- Whether the running task waits in get/wait (its CPU is given back).
function M.is_blocked() return blocked > 0 end

local function check_cancelled()
  if core.take_interrupt() then error("interrupted!", 0) end
  if M.lost then errors.raise("RayError", M.lost) end
  if core.cancel_pending() then
    errors.raise("TaskCancelledError", "task " .. tostring(M.current.name) .. " was cancelled")
  end
end

-- Runs the loop until done() is true or the deadline passes. Returns false
-- on timeout. Gives the worker's CPU back while it waits.
-- How long a process polls before it sleeps in the kernel while it waits.
-- A reply that comes within it costs no wake-up (tens of microseconds on a
-- 2-core machine); a longer wait pays this much CPU once.
local SPIN = tonumber(os.getenv("LRAY_SPIN_US") or "100") * 1e-6
M.SPIN = SPIN
M.async_cos = setmetatable({}, { __mode = "k" })  -- coroutines of concurrent actors

-- Inside a concurrent actor's method: park this coroutine instead of
-- blocking the process; the worker resumes it once done() or the deadline.
local function wait_yielding(done, deadline)
  local timer
  if deadline then
    local left = deadline - now()
    if left <= 0 then return false end
    -- Padded: the loop's millisecond timers may fire a little early, and
    -- the parked coroutine is only looked at again when something happens.
    timer = core.timer(left + 0.002, 0, function() end)
  end
  while true do
    coroutine.yield(done, deadline)
    if done() then break end
    if deadline and now() >= deadline then timer:stop(); return false end
  end
  if timer then timer:stop() end
  return true
end

function M.wait_until(done, deadline, hold)
  if done() then return true end
  local co = coroutine.running()
  if co and M.async_cos[co] then return wait_yielding(done, deadline) end
  if has_queued() then flush_queue() end
  local timer, fired
  -- The loop's timers count whole milliseconds and may fire a little
  -- early: re-arm until the deadline has really passed.
  local function arm()
    local left = deadline - now()
    fired = false
    timer = core.timer(left + 0.001, 0, function() fired = true end)
  end
  if deadline then
    if deadline - now() <= 0 then return false end
    arm()
  end
  if not hold then set_blocked(true) end
  local ok, err = pcall(function()
    while not done() do
      if deadline then
        if now() >= deadline then return false end
        if fired then arm() end
      end
      check_cancelled()
      if has_queued() then flush_queue() end
      -- Spin briefly before sleeping: a reply due in microseconds then
      -- costs no wake-up of this process.
      local spin_until = now() + SPIN
      repeat poll() until done() or now() >= spin_until
      -- What the handlers queued (a promoted result, a subscription) goes
      -- out before this process sleeps: someone may be waiting for it.
      -- Unrefs wait for the next turn: nobody waits for them, and sending
      -- them in bigger batches spares the node.
      if not done() and #outq == 0 then run_once() end
    end
    return true
  end)
  if not hold then set_blocked(false) end
  if timer then timer:stop() end
  if not ok then error(err, 0) end
  return err
end

--- Calls fn(id) once id's value (or failure) is here; at once if it is.
--- Asks the node for it when nobody here will learn of it otherwise.
function M.when_ready(id, fn)
  local e = objs[id]
  if e and e.st then return fn(id) end
  local w = watchers[id]
  if not w then w = {}; watchers[id] = w end
  w[#w + 1] = fn
  M.subscribe({ id })
end

-- After this many seconds a get or wait that is still waiting asks why, and
-- what holds it up is printed once per cause (0: never).
M.GET_WARN = tonumber(os.getenv("LRAY_GET_WARN_S") or "10") or 10

--- Arms the "still waiting" notice for a get/wait on ids (entries es) that
--- ends at deadline (nil: none). Returns a timer to stop, or nil.
function M.watch_wait(ids, es, deadline)
  local after = M.GET_WARN
  if after <= 0 or (deadline and deadline - now() <= after) then return nil end
  return core.timer(after, 0, function()
    local ask
    for i = 1, #ids do
      local e = es[i]
      if not e.st then
        if e.loc == "local" then
          for _, explain in ipairs(M.explainers) do
            if explain(ids[i], after) then break end
          end
        else
          ask = ask or {}
          ask[#ask + 1] = ids[i]
        end
      end
    end
    if ask and M.conn then queue({ t = "why", ids = ask, after = after }) end
  end)
end

--- Asks the node for objects this process has not heard of. home: a node
--- to ask for those its own node does not know (a call's lender's node).
function M.subscribe(ids, home)
  local want
  for i = 1, #ids do
    local id = ids[i]
    if not subscribed[id] then
      subscribed[id] = true
      local e = objs[id]
      if not (e and e.st) then
        if not e then objs[id] = { } end
        want = want or {}
        want[#want + 1] = id
      end
    end
  end
  if want then M.send({ t = "sub", ids = want, home = elsewhere(home) }) end
end

--- Entries for ids, in order (creating pending ones).
function M.entries(ids)
  local es = {}
  for i = 1, #ids do
    local e = objs[ids[i]]
    if not e then e = {}; objs[ids[i]] = e end
    es[i] = e
  end
  return es
end

--- Writes blob into the node's shared-memory store; returns {off, len}.
--- Space in the node's store for n bytes: {off=} or raises. When the store
--- is full, this process first collects its own unreachable ObjectRefs (Lua's
--- collector cannot see shared memory) and asks again.
function M.alloc(n)
  local r = M.rpc({ t = "alloc", size = n })
  if r.err then
    collectgarbage()
    r = M.rpc({ t = "alloc", size = n })
  end
  if r.err then errors.raise("ObjectStoreFullError", r.err) end
  return r
end

function M.store_blob(blob)
  local r = M.alloc(#blob)
  if M.remote_store then store_link.write(M, r.off, blob, #blob)
  else M.region():write(r.off, blob) end
  return { r.off, #blob }
end

--- lray.put: stores value once and returns a new ObjectRef.
--- Stores a large lray.array as raw bytes in shared memory: one copy.
function M.store_array(a)
  array = array or require("lray.array")
  local _, ctype = array.kind(a)
  local n = a:nbytes()
  local r = M.alloc(n)
  local ffi = require("ffi")
  if M.remote_store then
    store_link.write(M, r.off, ffi.cast("const uint8_t *", a.p), n)
    return { r.off, n }, ctype
  end
  -- ffi.copy takes a 32-bit length: copy in 1 GiB pieces.
  local dst = ffi.cast("uint8_t *", M.region():ptr(r.off, n))
  local src = ffi.cast("const uint8_t *", a.p)
  local done, STEP = 0, 2^30
  while done < n do
    local len = math.min(STEP, n - done)
    ffi.copy(dst + done, src + done, len)
    done = done + len
  end
  return { r.off, n }, ctype
end

function M.is_big_array(v)
  if type(v) ~= "cdata" then return false end
  array = array or package.loaded["lray.array"]
  if not array then return false end   -- no lray.array was ever made here
  return array.kind(v) ~= nil and v:nbytes() > M.INLINE_MAX
end

--- cs: the call site that made it ("file:line"), for `lray memory`.
function M.put(value, cs)
  serialize.refresh()
  if M.is_big_array(value) then
    local id = M.new_id()
    local loc, ctype = M.store_array(value)
    M.send({ t = "put", id = id, shm = loc, arr = ctype, cs = cs })
    local e = M.expect(id, "node")
    e.shm, e.arr, e.st, e.node = loc, ctype, "ok", M.node_address()
    M.submitted()
    return M.new_ref(id, true)
  end
  -- The node holds the actors of handles in the value while it stores it.
  local blob, refs, aids = M.encode_tracked({ n = 1, value }, "the value given to lray.put")
  local id = M.new_id()
  local e = M.expect(id, "node")
  if #blob <= M.INLINE_MAX then
    M.send({ t = "put", id = id, data = blob, refs = refs, actors = aids, cs = cs })
    e.data = blob
  else
    local loc = M.store_blob(blob)
    M.send({ t = "put", id = id, shm = loc, refs = refs, actors = aids, cs = cs })
    e.shm, e.node = loc, M.node_address()
  end
  e.st = "ok"
  M.submitted()
  return M.new_ref(id, true)
end

--- The value record of an object this process holds ({id, shm, arr,
--- node, data}): with ref_of, hands an object to a process on another node
--- by hand (tests and benchmarks; ObjectRefs themselves do this when sent).
function M.record_of(id)
  local e = objs[id]
  if not (e and e.st == "ok") then return nil end
  read_of(function() end, e, id)
  return { id = id, shm = e.shm, arr = e.arr, node = e.node, data = e.data }
end

--- An ObjectRef to the object of record rec (see record_of).
function M.ref_of(rec)
  local e = objs[rec.id]
  if not e then
    e = { loc = "node" }
    objs[rec.id] = e
  end
  if not e.st then
    e.shm, e.arr, e.node, e.data, e.st = rec.shm, rec.arr, rec.node, rec.data, "ok"
    subscribed[rec.id] = true
  end
  return M.new_ref(rec.id, false)
end

--- A request to the node that waits for its reply.
function M.rpc(msg)
  local rid = M.new_id()
  msg.rid = rid
  M.send(msg)
  M.wait_until(function() return replies[rid] ~= nil end, nil, true)
  local r = replies[rid]
  replies[rid] = nil
  return r
end

--- A state API request (resources, nodes, list, status): the node answers
--- in JSON, which this decodes.
function M.state(msg)
  local r = M.rpc(msg)
  if r.err then errors.raise("RayError", r.err) end
  return require("lray.state").decode(r)
end

--- A request whose reply calls fn(reply) when it comes (from a message
--- handler: do not run the loop there).
function M.request(msg, fn)
  local rid = M.new_id()
  msg.rid = rid
  on_reply[rid] = fn
  M.send(msg)
  return rid
end

--- Like request, but to another node manager over conn (its reply comes
--- back on conn).
function M.request_via(conn, msg, fn)
  local rid = M.new_id()
  msg.rid = rid
  on_reply[rid] = fn
  conn:send(msg)
  return rid
end

--- The receiver of a message that lent it references (token, lent by a
--- process of node lnode) holds what it keeps: the lend is over. The claim
--- goes after the refs queued before it (its node passes it on to lnode).
function M.claim(token, lnode)
  queue({ t = "claim", token = token, node = elsewhere(lnode) })
end

--- Gives back the lend of token unused (lnode: the lender's node).
function M.unlend(token, lnode)
  queue({ t = "unlend", token = token, node = elsewhere(lnode) })
end

--- Sends the queued reference changes now (before a reply that lets the
--- sender of those references let go of them).
function M.flush_queued()
  if M.conn and not M.lost and has_queued() then flush_queue() end
end

--- Hands everything queued on every connection to the kernel: called
--- before the process exits, so replies and results it finished reach
--- their callers.
function M.flush_out(conns)
  if M.conn and not M.lost and has_queued() then flush_queue() end
  -- A write the socket could not take at once completes in the loop: run
  -- it until every connection has written all it holds (bounded).
  local deadline = now() + 2
  repeat
    core.flush()
    poll()
    local left = M.conn and M.conn:is_open() and M.conn:pending() or 0
    for c in pairs(conns or {}) do
      if c:is_open() then left = left + c:pending() end
    end
    if left == 0 then return end
    core.usleep(0.0005)
  until now() > deadline
end

--- Lets queued messages out and handles what came in, without blocking.
function M.pump()
  if has_queued() then flush_queue() end
  poll()
  if #outq > 0 and M.conn then flush_queue() end
end

-- -- Messages from the node ----------------------------------------------

local H = M.handlers
H.obj = function(m) M.fill(m.id, m) end
H.reply = function(m)
  local fn = on_reply[m.rid]
  if fn then
    on_reply[m.rid] = nil
    return fn(m)
  end
  replies[m.rid] = m
end
H.out = function(m)
  local stream = m.stream == 2 and io.stderr or io.stdout
  local prefix = "(" .. tostring(m.name) .. " pid=" .. tostring(m.pid) .. ") "
  for line in m.text:gmatch("([^\n]*)\n") do stream:write(prefix, line, "\n") end
  stream:flush()
end

-- The node's store is short of space: drop ObjectRefs Lua no longer reaches.
H.gc = function() collectgarbage() end
store_link.install(H)
H.unmap = function(m) return H_unmap(m) end
local warned = {}
H.warn = function(m)
  if warned[m.text] then return end
  warned[m.text] = true
  io.stderr:write("lray: warning: ", m.text, "\n")
end

function M.on_message(conn, m)
  local h = H[m.t]
  if h then h(m, conn) end
end

-- SIGUSR2 prints what this process is waiting for (a hang's first clue).
local function dump_state()
  local out = { ("lray %s pid %d: "):format(tostring(M.role), core.getpid()) }
  local pending = 0
  for id, e in pairs(objs) do
    if not e.st then
      pending = pending + 1
      if pending <= 5 then out[#out + 1] = "pending " .. id .. (e.loc and (" (" .. e.loc .. ")") or "") end
    end
  end
  out[#out + 1] = ("%d objects pending, %d queued out"):format(pending, #outq + #unrefs)
  for _, hook in ipairs(M.dump_hooks) do hook(out) end
  io.stderr:write(table.concat(out, "\n  "), "\n")
end

--- Connects to the node at addr and says hello. Returns the welcome.
function M.connect(addr, hello, token)
  if not M.dump_installed then
    M.dump_installed = true
    core.signal(12, dump_state)
  end
  local conn, err, kind = core.connect(addr, nil, token)
  if not conn then return nil, err, kind end
  M.conn = conn
  M.lost = nil
  M.node_over_unix = addr:sub(1, 5) == "unix:"   -- lends name peers by pid then (lends.lua)
  conn:on_message(M.on_message)
  conn:on_close(function()
    if M.conn == conn and not M.leaving then
      M.lost = ("the connection to the lray node at %s was lost (its process exited"
        .. " or was killed); objects and actors of that cluster are gone:"
        .. " call lray.shutdown() and lray.init() to start again"):format(addr)
    end
  end)
  hello.t = "hello"
  hello.proto = core.PROTO_VERSION
  local w = M.rpc(hello)
  if w.err then
    conn:close()
    M.conn = nil
    return nil, w.err
  end
  M.info = w
  if hello.role == "driver" then
    -- Map the store only if it is really this node's (the cookie); else
    -- this driver's objects travel over its connection.
    local r, why = store_link.open_shared(w)
    region, M.remote_store = r, not r and why or nil
  end
  return w
end

--- Forgets everything (after shutdown, so init can run again).
function M.reset()
  for k in pairs(objs) do objs[k] = nil end
  for k in pairs(counts) do counts[k] = nil end
  for k in pairs(subscribed) do subscribed[k] = nil end
  for k in pairs(replies) do replies[k] = nil end
  for k in pairs(on_reply) do on_reply[k] = nil end
  for k in pairs(watchers) do watchers[k] = nil end
  for k in pairs(homes) do homes[k] = nil end
  outq, unrefs = {}, {}
  M.lost, M.leaving = nil, nil
  if region then region:close(); region = nil end
  M.remote_store = nil
  store_link.reset()
  M.conn, M.info = nil, nil
  M.current = {}
end

return M
