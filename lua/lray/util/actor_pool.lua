-- lray.util.ActorPool: spread work over a fixed set of actors, as Ray's
-- ActorPool does. fn(actor, value) must return the ObjectRef of a call.
local errors = require("lray.errors")

local error, type, pairs, remove = error, type, pairs, table.remove

local ActorPool = {}
ActorPool.__index = ActorPool

local function lray() return require("lray") end

---@param actors table list of actor handles
function ActorPool.new(actors)
  if type(actors) ~= "table" then
    error("ActorPool.new expects a list of actor handles", 2)
  end
  local p = setmetatable({
    idle = {}, future_actor = {}, index_future = {}, next_index = 0,
    next_return = 0, pending = {}, by_ref = {},
  }, ActorPool)
  for i = 1, #actors do p.idle[i] = actors[i] end
  return p
end

-- Runs pending submissions on an actor that just became free.
function ActorPool:_return_actor(a)
  self.idle[#self.idle + 1] = a
  if #self.pending > 0 then
    local s = remove(self.pending, 1)
    self:submit(s[1], s[2])
  end
end

--- Schedules fn(actor, value) on a free actor, or queues it.
function ActorPool:submit(fn, value)
  if type(fn) ~= "function" then error("ActorPool:submit expects a function(actor, value)", 2) end
  if #self.idle > 0 then
    local a = remove(self.idle)
    local ref = fn(a, value)
    local idx = self.next_index
    self.future_actor[ref] = { idx, a }
    self.index_future[idx] = ref
    self.next_index = idx + 1
  else
    self.pending[#self.pending + 1] = { fn, value }
  end
end

function ActorPool:has_next()
  return next(self.future_actor) ~= nil
end

-- Takes future out of the pool's books and returns its value, giving the
-- actor back (or dropping it when it died).
function ActorPool:_finish(ref)
  local fa = self.future_actor[ref]
  self.future_actor[ref] = nil
  local results = { pcall(lray().get, ref) }
  if results[1] then
    self:_return_actor(fa[2])
    return unpack(results, 2)
  end
  local e = results[2]
  if errors.is_error(e, "ActorDiedError") then
    -- A dead actor leaves the pool; its queued work goes to the others.
    if #self.pending > 0 and #self.idle > 0 then
      local s = remove(self.pending, 1)
      self:submit(s[1], s[2])
    end
  else
    self:_return_actor(fa[2])
  end
  error(e, 0)
end

--- The next result in submission order; raises GetTimeoutError after timeout.
function ActorPool:get_next(timeout)
  if not self:has_next() then error("ActorPool:get_next: no more results to get", 2) end
  if self.next_return >= self.next_index then error("ActorPool:get_next: no more results to get", 2) end
  local ref = self.index_future[self.next_return]
  if not ref then
    error("ActorPool:get_next cannot be called after get_next_unordered", 2)
  end
  if timeout ~= nil then
    local ready = lray().wait({ ref }, { timeout = timeout })
    if #ready == 0 then
      errors.raise("GetTimeoutError", ("ActorPool:get_next timed out after %g s"):format(timeout))
    end
  end
  self.index_future[self.next_return] = nil
  self.next_return = self.next_return + 1
  return self:_finish(ref)
end

--- Any next result, in completion order.
function ActorPool:get_next_unordered(timeout)
  if not self:has_next() then error("ActorPool:get_next_unordered: no more results to get", 2) end
  local refs = {}
  for ref in pairs(self.future_actor) do refs[#refs + 1] = ref end
  local ready = lray().wait(refs, { num_returns = 1, timeout = timeout })
  if #ready == 0 then
    errors.raise("GetTimeoutError", ("ActorPool:get_next_unordered timed out after %g s"):format(timeout or 0))
  end
  local ref = ready[1]
  local idx = self.future_actor[ref][1]
  self.index_future[idx] = nil
  -- Skip over results already taken out of order.
  while self.next_return < self.next_index and not self.index_future[self.next_return] do
    self.next_return = self.next_return + 1
  end
  return self:_finish(ref)
end

local function discard(self)
  while self:has_next() do
    pcall(self.get_next_unordered, self)
  end
end

--- Iterator over fn(actor, v) for each v, results in order.
function ActorPool:map(fn, values)
  discard(self)
  for i = 1, #values do self:submit(fn, values[i]) end
  return function()
    if self:has_next() then return self:get_next() end
  end
end

--- Iterator over results in completion order.
function ActorPool:map_unordered(fn, values)
  discard(self)
  for i = 1, #values do self:submit(fn, values[i]) end
  return function()
    if self:has_next() then return self:get_next_unordered() end
  end
end

function ActorPool:has_free()
  return #self.idle > 0 and #self.pending == 0
end

function ActorPool:pop_idle()
  if self:has_free() then return remove(self.idle) end
  return nil
end

function ActorPool:push(a)
  for _, fa in pairs(self.future_actor) do
    if fa[2] == a then error("ActorPool:push: the actor already belongs to this pool", 2) end
  end
  for i = 1, #self.idle do
    if self.idle[i] == a then error("ActorPool:push: the actor already belongs to this pool", 2) end
  end
  self:_return_actor(a)
end

return ActorPool
