-- lray.util.Pool: Python's multiprocessing.Pool on lray actors, as Ray's
-- ray.util.multiprocessing.Pool. Each of the pool's actors runs fn over a
-- chunk of items per call and returns every item's result or error, so one
-- failing item fails only itself and the per-item cost is a loop iteration,
-- not a task. fn is sent as a value with each chunk (its upvalues travel
-- with it). Chunks go to the actors round-robin, as in Ray.
local errors = require("lray.errors")
local serialize = require("lray.serialize")

local type, error, setmetatable, tostring, pcall, xpcall, floor, ceil =
  type, error, setmetatable, tostring, pcall, xpcall, math.floor, math.ceil
local traceback, concat, remove = debug.traceback, table.concat, table.remove
local unpack = unpack

local Pool = {}
Pool.__index = Pool

local AsyncResult = {}
AsyncResult.__index = AsyncResult
Pool.AsyncResult = AsyncResult

local function lray() return require("lray") end

-- -- The actor ---------------------------------------------------------------

local PoolActor = { __name = "PoolActor" }
Pool._PoolActor = PoolActor

local function on_error(e)
  return { e = e, tb = traceback("", 2) }
end

-- The user's frames only: everything from this file's runner down is ours.
local function clean_tb(tb)
  local out = {}
  for line in tb:gmatch("[^\n]+") do
    if line:find("lray/util/pool.lua", 1, true) or line:find("[C]: in function 'xpcall'", 1, true) then
      break
    end
    out[#out + 1] = line
  end
  return concat(out, "\n")
end

-- The TaskError of item i, whatever fn raised (an lray error value too: the
-- cause keeps it), with a cause that can be sent back.
local function item_error(i, raised)
  local e = raised.e
  if not pcall(serialize.encode, e) then e = tostring(e) end
  local text = errors.is_error(e) and (e.type .. ": " .. tostring(e.message)) or tostring(e)
  return errors.new("TaskError", ("Pool function (item %d) failed: %s"):format(i, text),
    { traceback = clean_tb(raised.tb), cause = e })
end

function PoolActor:init(initializer, initargs)
  if initializer then
    initargs = initargs or {}
    initializer(unpack(initargs, 1, initargs.n or #initargs))
  end
end

function PoolActor:ping() return true end

--- Runs fn over items[1..n] (star: each item is an argument list) and
--- returns {v = results, e = errors or nil}; item i is number base + i.
function PoolActor:run(fn, items, n, star, base)
  local v, errs = {}, nil
  for i = 1, n do
    local ok, r
    if star then
      local a = items[i]
      ok, r = xpcall(fn, on_error, unpack(a, 1, a.n or #a))
    else
      ok, r = xpcall(fn, on_error, items[i])
    end
    if ok then
      v[i] = r
    else
      errs = errs or {}
      errs[i] = item_error(base + i, r)
    end
  end
  return { v = v, e = errs }
end

-- -- Chunks ------------------------------------------------------------------

-- Misuse checks raise at the user's call: level is how far up it is.
local function check_running(p, what, level)
  if p.state ~= "RUN" then
    error(("Pool:%s: Pool not running (it was %s)"):format(what,
      p.state == "CLOSE" and "closed" or "terminated"), level + 1)
  end
end

local function check_fn(fn, what, level)
  if type(fn) ~= "function" then
    error(("Pool:%s: fn must be a function, got %s"):format(what, type(fn)), level + 1)
  end
end

local function list_len(list, what, level)
  if type(list) ~= "table" then
    error(("Pool:%s: expects a list of items, got %s"):format(what, type(list)), level + 1)
  end
  return list.n or #list
end

local function check_chunksize(cs, n, nactors, what, level)
  if cs == nil then
    return n == 0 and 1 or ceil(n / (4 * nactors))
  end
  if type(cs) ~= "number" or cs < 1 or floor(cs) ~= cs then
    error(("Pool:%s: chunksize must be a positive integer"):format(what), level + 1)
  end
  return cs
end

-- Submits list[1..n] in chunks; returns {refs, starts, lens}.
local function submit_chunks(p, fn, list, n, cs, star)
  local refs, starts, lens = {}, {}, {}
  local s = 1
  while s <= n do
    local len = n - s + 1
    if len > cs then len = cs end
    local items = {}
    for j = 1, len do items[j] = list[s + j - 1] end
    local a = p.actors[p.rr % #p.actors + 1]
    p.rr = p.rr + 1
    local k = #refs + 1
    refs[k] = a.run.remote(fn, items, len, star, s - 1)
    starts[k], lens[k] = s, len
    s = s + len
  end
  return { refs = refs, starts = starts, lens = lens, n = n }
end

-- A chunk's outcome: the actor's {v, e}, or {err = e} if the call failed
-- (the actor died, the pool was terminated).
local function fetch(ref)
  local ok, r = pcall(lray().get, ref)
  if ok then return r end
  return { err = r }
end

local function item_of(res, j)
  if res.err then return false, res.err end
  local e = res.e and res.e[j]
  if e then return false, e end
  return true, res.v[j]
end

-- -- AsyncResult -------------------------------------------------------------

local function new_async(chunks, single)
  return setmetatable({ chunks = chunks, single = single }, AsyncResult)
end

local function all_ready(ar, timeout)
  local refs = ar.chunks.refs
  if #refs == 0 then return true end
  local ready = lray().wait(refs, { num_returns = #refs, timeout = timeout })
  return #ready == #refs
end

--- Waits up to timeout seconds (forever when nil) for the result; returns
--- whether it is ready. Never raises a timeout.
---@param timeout number|nil
---@return boolean
function AsyncResult:wait(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("AsyncResult:wait: timeout must be a non-negative number", 2)
  end
  if self.results then return true end
  return all_ready(self, timeout)
end

---@return boolean
function AsyncResult:ready()
  if self.results then return true end
  return all_ready(self, 0)
end

local function collect(ar)
  if ar.results then return end
  local c = ar.chunks
  local results = {}
  for k = 1, #c.refs do results[k] = fetch(c.refs[k]) end
  ar.results = results
end

--- The result (apply_async: fn's value; map_async: the list of values).
--- Raises the first failed item's error (a TaskError), or GetTimeoutError
--- when timeout seconds pass first.
---@param timeout number|nil
function AsyncResult:get(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("AsyncResult:get: timeout must be a non-negative number", 2)
  end
  if not self.results and not all_ready(self, timeout) then
    errors.raise("GetTimeoutError", ("AsyncResult:get timed out after %g s"):format(timeout))
  end
  collect(self)
  local c, out = self.chunks, {}
  for k = 1, #c.refs do
    local res, s = self.results[k], c.starts[k]
    for j = 1, c.lens[k] do
      local ok, v = item_of(res, j)
      if not ok then error(v, 0) end
      out[s + j - 1] = v
    end
  end
  if self.single then return out[1] end
  return out
end

--- Whether every item succeeded. Raises if the result is not ready yet.
---@return boolean
function AsyncResult:successful()
  if not self:ready() then
    error("AsyncResult:successful: the result is not ready", 2)
  end
  collect(self)
  for k = 1, #self.results do
    local res = self.results[k]
    if res.err or res.e then return false end
  end
  return true
end

-- -- The pool ----------------------------------------------------------------

local RPool   -- the remote class, made at first use

--- A pool of n actors (default: the cluster's CPU count). opts:
--- initializer (function run once in each actor), initargs (its argument
--- list), actor_options (options of the actors, e.g. {num_cpus = 1}).
---@param n integer|nil
---@param opts table|nil
---@return table
function Pool.new(n, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("Pool.new: opts must be a table {initializer, initargs, actor_options}", 2)
  end
  opts = opts or {}
  if opts.initializer ~= nil and type(opts.initializer) ~= "function" then
    error("Pool.new: initializer must be a function", 2)
  end
  if opts.initargs ~= nil and type(opts.initargs) ~= "table" then
    error("Pool.new: initargs must be a list", 2)
  end
  local L = lray()
  if n == nil then
    n = floor(L.cluster_resources().CPU or 1)
    if n < 1 then n = 1 end
  elseif type(n) ~= "number" or n < 1 or floor(n) ~= n then
    error("Pool.new: the number of processes must be a positive integer", 2)
  end
  RPool = RPool or L.remote(PoolActor)
  local rc = opts.actor_options and RPool.options(opts.actor_options) or RPool
  local actors, pings = {}, {}
  for i = 1, n do
    actors[i] = rc.remote(opts.initializer, opts.initargs)
    pings[i] = actors[i].ping.remote()
  end
  L.get(pings)   -- the actors are up (and their initializer ran)
  return setmetatable({ actors = actors, state = "RUN", rr = 0 }, Pool)
end

--- fn(args...) on one actor; waits for and returns its value.
---@param fn function
---@param args table|nil argument list
function Pool:apply(fn, args)
  check_running(self, "apply", 2)
  return self:apply_async(fn, args):get()
end

--- fn(args...) on one actor; returns an AsyncResult at once.
---@param fn function
---@param args table|nil argument list
---@return table
function Pool:apply_async(fn, args)
  check_running(self, "apply_async", 2)
  check_fn(fn, "apply_async", 2)
  if args ~= nil and type(args) ~= "table" then
    error("Pool:apply_async: args must be a list of arguments", 2)
  end
  return new_async(submit_chunks(self, fn, { args or {} }, 1, 1, true), true)
end

local function map_async(p, what, fn, list, cs, star)
  check_running(p, what, 3)
  check_fn(fn, what, 3)
  local n = list_len(list, what, 3)
  cs = check_chunksize(cs, n, #p.actors, what, 3)
  return new_async(submit_chunks(p, fn, list, n, cs, star), false)
end

--- {fn(list[1]), fn(list[2]), ...}, computed in chunks across the actors.
--- Raises the error of the first failed item.
---@return table
function Pool:map(fn, list, chunksize)
  return map_async(self, "map", fn, list, chunksize, false):get()
end

---@return table AsyncResult whose get() is map's list
function Pool:map_async(fn, list, chunksize)
  local ar = map_async(self, "map_async", fn, list, chunksize, false)
  return ar   -- not a tail call: misuse errors point at the caller
end

--- Like map, with each item an argument list: fn(unpack(item)).
---@return table
function Pool:starmap(fn, list, chunksize)
  return map_async(self, "starmap", fn, list, chunksize, true):get()
end

---@return table AsyncResult
function Pool:starmap_async(fn, list, chunksize)
  local ar = map_async(self, "starmap_async", fn, list, chunksize, true)
  return ar
end

-- The iterator of imap: returns value, index; nothing once done. A failed
-- item raises its error when reached, and the next call goes on after it.
local function ordered_iter(c)
  local k, j = 1, 0          -- chunk, position in it
  local res
  return function()
    while true do
      if k > #c.refs then return end
      if not res then res = fetch(c.refs[k]) end
      j = j + 1
      if j <= c.lens[k] then
        local idx = c.starts[k] + j - 1
        local ok, v = item_of(res, j)
        if not ok then error(v, 0) end
        return v, idx
      end
      c.refs[k] = false        -- drop the chunk once consumed
      k, j, res = k + 1, 0, nil
    end
  end
end

local function unordered_iter(c)
  local left = {}            -- refs not yet taken -> chunk number
  local pending = {}
  for k = 1, #c.refs do left[c.refs[k]] = k; pending[k] = c.refs[k] end
  local k, j, res
  return function()
    while true do
      if res then
        j = j + 1
        if j <= c.lens[k] then
          local ok, v = item_of(res, j)
          if not ok then error(v, 0) end
          return v, c.starts[k] + j - 1
        end
        res = nil
      end
      if #pending == 0 then return end
      local ready = lray().wait(pending, { num_returns = 1 })
      local ref = ready[1]
      k, j = left[ref], 0
      left[ref] = nil
      for i = 1, #pending do
        if pending[i] == ref then remove(pending, i); break end
      end
      res = fetch(ref)
    end
  end
end

--- Iterator over fn(item) in input order: each call returns value, index
--- (index = the item's position; nothing when done). An item that failed
--- raises its error when reached; calling on continues after it.
---@return function
function Pool:imap(fn, list, chunksize)
  return ordered_iter(map_async(self, "imap", fn, list, chunksize, false).chunks)
end

--- Like imap, in completion order (chunk by chunk).
---@return function
function Pool:imap_unordered(fn, list, chunksize)
  return unordered_iter(map_async(self, "imap_unordered", fn, list, chunksize, false).chunks)
end

--- No new work is accepted; work already submitted still runs.
function Pool:close()
  if self.state == "RUN" then self.state = "CLOSE" end
end

--- Kills the actors now; results not yet computed fail with ActorDiedError.
function Pool:terminate()
  if self.state == "TERMINATE" then return end
  self.state = "TERMINATE"
  local L = lray()
  for i = 1, #self.actors do L.kill(self.actors[i], { no_restart = true }) end
end

--- After close(): waits for the submitted work to finish, then ends the
--- actors. After terminate(): returns at once.
function Pool:join()
  if self.state == "RUN" then
    error("Pool:join: the pool is still running; call close() or terminate() first", 2)
  end
  if self.state == "TERMINATE" then return end
  local L = lray()
  -- One caller's calls run in order, so a ping answered means all work
  -- sent before it is done.
  local pings = {}
  for i = 1, #self.actors do pings[i] = self.actors[i].ping.remote() end
  for i = 1, #pings do pcall(L.get, pings[i]) end
  self.state = "TERMINATE"
  for i = 1, #self.actors do L.kill(self.actors[i], { no_restart = true }) end
end

function Pool.__tostring(p)
  return ("Pool(%d actors, %s)"):format(#p.actors,
    ({ RUN = "running", CLOSE = "closed", TERMINATE = "terminated" })[p.state])
end

serialize.name(Pool, "m:lray.util.pool")
serialize.name(AsyncResult, "m:lray.util.pool#AsyncResult")

return Pool
