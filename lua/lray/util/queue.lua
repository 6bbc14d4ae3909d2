-- lray.util.Queue: a FIFO queue held by an actor, usable from the driver,
-- tasks and actors alike (Ray's ray.util.queue.Queue). The Queue object is
-- a plain table holding the actor handle, so it can be passed to tasks and
-- actors and stored in tables; every copy talks to the same actor.
--
-- The actor runs its methods as coroutines (max_concurrency, 1000 by
-- default): a blocking get on an empty queue (or put on a full one) parks
-- only its own call inside the actor, with a predicate that the worker
-- re-checks after every event, so puts, gets and size() from other callers
-- keep being served while it waits. Waiters are served first come, first
-- served. Empty and Full are lray error values (types "Empty" and "Full").
local errors = require("lray.errors")
local runtime = require("lray.runtime")
local serialize = require("lray.serialize")

local type, error, setmetatable, pairs, tostring, floor, huge =
  type, error, setmetatable, pairs, tostring, math.floor, math.huge
local now = require("lray._core").now

local Queue = {}
Queue.__index = Queue

local function lray() return require("lray") end

-- -- The actor ---------------------------------------------------------------
-- Items live in a table indexed from head to tail - 1, so nil items need no
-- wrapper. Methods that can fail return false, error type, message instead of
-- raising: the client raises the Empty/Full error in the caller's process.

local QueueActor = { __name = "Queue" }
Queue._QueueActor = QueueActor

-- Waits inside the actor (parking this call's coroutine) until pred() holds
-- or the deadline passes; returns whether pred() holds.
local function wait_for(pred, deadline)
  return runtime.wait_until(pred, deadline)
end

-- A first-come, first-served line of waiters: tickets in taking order; the
-- first live ticket is the one allowed to proceed.
local function line_new() return { live = {}, head = 1, next = 1 } end

local function line_join(l)
  local t = l.next
  l.next = t + 1
  l.live[t] = true
  return t
end

local function line_leave(l, t) l.live[t] = nil end

local function line_first(l)
  while l.head < l.next and not l.live[l.head] do l.head = l.head + 1 end
  return l.head
end

function QueueActor:init(maxsize)
  self.maxsize = maxsize
  self.items, self.head, self.tail = {}, 1, 1
  self.getters, self.putters = line_new(), line_new()
end

function QueueActor:qsize() return self.tail - self.head end

function QueueActor:empty() return self.tail == self.head end

function QueueActor:full()
  return self.maxsize > 0 and self.tail - self.head >= self.maxsize
end

local function push(self, v)
  self.items[self.tail] = v
  self.tail = self.tail + 1
end

local function pop(self)
  local h = self.head
  local v = self.items[h]
  self.items[h] = nil
  self.head = h + 1
  if self.head == self.tail then self.head, self.tail = 1, 1 end
  return v
end

-- Waits for a turn in line l at which ok() holds; timeout nil = forever.
local function wait_turn(l, ok, timeout)
  if line_first(l) == l.next and ok() then return true end   -- nobody waiting
  local t = line_join(l)
  local deadline = timeout and now() + timeout or nil
  local got = wait_for(function() return line_first(l) == t and ok() end, deadline)
  line_leave(l, t)
  return got
end

function QueueActor:put(v, timeout)
  local got = wait_turn(self.putters, function() return not self:full() end, timeout)
  if not got then
    return false, "Full", ("put timed out after %g s: the queue is full (maxsize %d)")
      :format(timeout, self.maxsize)
  end
  push(self, v)
  return true
end

function QueueActor:get(timeout)
  local got = wait_turn(self.getters, function() return not self:empty() end, timeout)
  if not got then
    return false, "Empty", ("get timed out after %g s: the queue is empty"):format(timeout)
  end
  return true, pop(self)
end

function QueueActor:put_nowait(v)
  if self:full() then
    return false, "Full", ("put_nowait: the queue is full (maxsize %d)"):format(self.maxsize)
  end
  push(self, v)
  return true
end

function QueueActor:get_nowait()
  if self:empty() then return false, "Empty", "get_nowait: the queue is empty" end
  return true, pop(self)
end

function QueueActor:put_nowait_batch(list, n)
  if self.maxsize > 0 and n + self:qsize() > self.maxsize then
    return false, "Full", ("put_nowait_batch: cannot add %d items to a queue of size %d"
      .. " and maxsize %d"):format(n, self:qsize(), self.maxsize)
  end
  for i = 1, n do push(self, list[i]) end
  return true
end

function QueueActor:get_nowait_batch(n)
  if n > self:qsize() then
    return false, "Empty", ("get_nowait_batch: cannot get %d items from a queue of size %d")
      :format(n, self:qsize())
  end
  local out = { n = n }
  for i = 1, n do out[i] = pop(self) end
  return true, out
end

function QueueActor:ping() return true end

-- -- The client --------------------------------------------------------------

local RQueue   -- the remote class, made at first use

-- Raises Empty/Full from a (ok, type, message) reply, or returns the value.
local function reply(ok, a, b)
  if ok then return a end
  errors.raise(a, b)
end

local function actor_of(q, what)
  local a = q.actor
  if not a then
    error(("Queue:%s: the queue has been shut down"):format(what), 3)
  end
  return a
end

-- put(v, {block, timeout}) or put(v, block, timeout), as in Python.
local function block_timeout(opts, timeout, what)
  local block = true
  if type(opts) == "table" then
    if opts.block ~= nil then block = opts.block end
    timeout = opts.timeout
  elseif type(opts) == "boolean" then
    block = opts
  elseif opts ~= nil then
    error(("Queue:%s: options must be a table {block = true, timeout = nil}"):format(what), 3)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error(("Queue:%s: timeout must be a non-negative number"):format(what), 3)
  end
  return block, timeout
end

--- A new queue. maxsize 0 or nil = unbounded.
---@param maxsize integer|nil
---@param opts table|nil {actor_options = {...}} for the queue's actor
---@return table
function Queue.new(maxsize, opts)
  maxsize = maxsize or 0
  if type(maxsize) ~= "number" or maxsize < 0 or floor(maxsize) ~= maxsize then
    error("Queue.new: maxsize must be a non-negative integer (0 = unbounded)", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("Queue.new: opts must be a table {actor_options = {...}}", 2)
  end
  local aopts = { max_concurrency = 1000 }
  for k, v in pairs(opts and opts.actor_options or {}) do aopts[k] = v end
  if type(aopts.max_concurrency) ~= "number" or aopts.max_concurrency < 2 then
    error("Queue.new: the queue's actor needs max_concurrency >= 2 (blocking calls wait"
      .. " inside it)", 2)
  end
  RQueue = RQueue or lray().remote(QueueActor)
  local a = RQueue.options(aopts).remote(maxsize)
  -- Wait for the actor to be up: a creation failure surfaces here, and the
  -- worker it needs is not still starting when the caller submits tasks.
  lray().get(a.ping.remote())
  return setmetatable({ actor = a, maxsize = maxsize }, Queue)
end

--- Number of items in the queue.
---@return integer
function Queue:size() return lray().get(actor_of(self, "size").qsize.remote()) end
Queue.qsize = Queue.size

---@return boolean
function Queue:empty() return lray().get(actor_of(self, "empty").empty.remote()) end

---@return boolean
function Queue:full() return lray().get(actor_of(self, "full").full.remote()) end

--- Adds v (nil allowed) at the back. Blocks while the queue is full, up to
--- timeout seconds (forever when nil), then raises Full. With block = false
--- raises Full at once when full.
---@param opts table|boolean|nil {block = true, timeout = nil}
function Queue:put(v, opts, timeout)
  local a = actor_of(self, "put")
  local block
  block, timeout = block_timeout(opts, timeout, "put")
  if not block then return reply(lray().get(a.put_nowait.remote(v))) end
  return reply(lray().get(a.put.remote(v, timeout)))
end

--- Removes and returns the front item. Blocks while the queue is empty, up
--- to timeout seconds (forever when nil), then raises Empty. With block =
--- false raises Empty at once when empty.
---@param opts table|boolean|nil {block = true, timeout = nil}
function Queue:get(opts, timeout)
  local a = actor_of(self, "get")
  local block
  block, timeout = block_timeout(opts, timeout, "get")
  if not block then return reply(lray().get(a.get_nowait.remote())) end
  return reply(lray().get(a.get.remote(timeout)))
end

function Queue:put_nowait(v)
  return reply(lray().get(actor_of(self, "put_nowait").put_nowait.remote(v)))
end

function Queue:get_nowait()
  return reply(lray().get(actor_of(self, "get_nowait").get_nowait.remote()))
end

--- Puts every item of list (list.n items if set, else #list) or none: raises
--- Full when they do not all fit.
---@param list table
function Queue:put_nowait_batch(list)
  local a = actor_of(self, "put_nowait_batch")
  if type(list) ~= "table" then error("Queue:put_nowait_batch: items must be a list", 2) end
  local n = list.n or #list
  return reply(lray().get(a.put_nowait_batch.remote(list, n)))
end

--- Takes n items or none: raises Empty when fewer than n are there. The
--- list has n = its length, so nil items keep their place.
---@param n integer
---@return table
function Queue:get_nowait_batch(n)
  local a = actor_of(self, "get_nowait_batch")
  if type(n) ~= "number" or n < 0 or floor(n) ~= n or n == huge then
    error("Queue:get_nowait_batch: n must be a non-negative integer", 2)
  end
  return reply(lray().get(a.get_nowait_batch.remote(n)))
end

--- Ends the queue's actor. Waits up to grace_period_s (default 5) for the
--- calls this caller sent before to have started, unless force = true;
--- calls still blocked in the queue fail with ActorDiedError.
---@param opts table|nil {force = false, grace_period_s = 5}
function Queue:shutdown(opts)
  local a = self.actor
  if not a then return end
  self.actor = nil
  local L = lray()
  if not (opts and opts.force) then
    L.wait({ a.ping.remote() }, { timeout = opts and opts.grace_period_s or 5 })
  end
  L.kill(a, { no_restart = true })
end

function Queue.__tostring(q)
  return ("Queue(maxsize %d, %s)"):format(q.maxsize,
    q.actor and tostring(q.actor) or "shut down")
end

-- A Queue travels by name: the receiver requires this module again.
serialize.name(Queue, "m:lray.util.queue")

return Queue
