-- lray: Ray's programming model for Lua. This file is exactly the API of
-- API.md; each piece is implemented in its own module.
local core = require("lray._core")
local runtime = require("lray.runtime")
local object = require("lray.object")
local errors = require("lray.errors")
local options = require("lray.options")
local remote = require("lray.remote")
local actor = require("lray.actor")
-- Loaded on first use: a worker process never needs them, and every
-- module a worker loads counts in its idle memory.
local function cluster() return require("lray.cluster") end
local function submit() return require("lray.submit") end

local type, error, tostring, pairs = type, error, tostring, pairs
local ref_id = object.id
local misuse = errors.misuse

local lray = {}
local ctx = nil        -- the context init returned, while initialized
local tick = nil       -- see lray.init: lets Ctrl-C interrupt a blocked get


-- -- Lifecycle ---------------------------------------------------------------

local INIT_OPTS = {
  address = "string", token = "string", num_cpus = "number", num_gpus = "number", resources = "table",
  object_store_memory = "number", namespace = "string", log_to_driver = "boolean",
  ignore_reinit_error = "boolean", _prestart = "number",
  include_dashboard = "boolean", dashboard_port = "number", dashboard_host = "string",
}

local function check_init_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    misuse("lray.init: options must be a table, got " .. type(opts), 3)
  end
  for k, v in pairs(opts) do
    local want = INIT_OPTS[k]
    if not want then
      local valid = {}
      for n in pairs(INIT_OPTS) do if n:sub(1, 1) ~= "_" then valid[#valid + 1] = n end end
      table.sort(valid)
      misuse(("lray.init: unknown option '%s'; valid options are: %s"):format(
        tostring(k), table.concat(valid, ", ")), 3)
    end
    if type(v) ~= want then
      misuse(("lray.init: option '%s' must be a %s, got %s"):format(k, want, options.got(v)), 3)
    end
    if want == "number" and (v < 0 or v ~= v) then
      misuse(("lray.init: option '%s' must not be negative"):format(k), 3)
    end
  end
  return opts
end

-- The package path a worker needs to find what this driver can require:
-- the driver's own paths plus the script's directory.
local function worker_paths()
  local path = package.path
  local script = rawget(_G, "arg") and arg[0]
  if type(script) == "string" then
    local dir = script:match("^(.*)/[^/]*$") or "."
    dir = core.realpath(dir) or dir
    path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. path
  end
  return path, package.cpath
end

---@param opts table|nil see API.md
---@return table ctx {address, node_id, session_dir, namespace, dashboard_url}
function lray.init(opts)
  opts = check_init_opts(opts)
  if runtime.role == "worker" then
    -- Inside a task or actor the process is already part of a cluster.
    return ctx or { address = runtime.info and runtime.info.address, node_id = runtime.node_id }
  end
  if ctx then
    if opts.ignore_reinit_error then return ctx end
    misuse("lray.init was already called in this driver; call lray.shutdown() first,"
      .. " or pass ignore_reinit_error = true", 2)
  end
  local path, cpath = worker_paths()
  local hello = { role = "driver", pid = core.getpid(), path = path, cpath = cpath,
    namespace = opts.namespace, log_to_driver = opts.log_to_driver ~= false }
  runtime.role = "driver"
  -- Lines the driver and its workers print reach a pipe as they are
  -- printed: nothing waits in a buffer to be lost if the driver is killed.
  core.line_buffered()
  local w
  if opts.address == nil then
    w = cluster().start_embedded(opts, hello)
  else
    w = cluster().join(opts.address, hello, opts.token)
  end
  runtime.job_id, runtime.namespace, runtime.node_id = w.job_id, w.namespace, w.node_id
  if core.isatty(0) and not tick then
    -- At a terminal, a Ctrl-C during lray.get must reach Lua code even when
    -- nothing arrives: a slow tick gives the interrupt hook a place to fire.
    tick = core.timer(0.1, 0.1, function() end, true)
  end
  runtime.current = { job_id = w.job_id }
  remote.session = remote.session + 1
  require("lray.serialize").refresh()   -- modules required so far travel by name
  ctx = { address = w.address, node_id = w.node_id, session_dir = w.session_dir,
    namespace = w.namespace, dashboard_url = w.dashboard_url or "", job_id = w.job_id }
  return ctx
end

---@return boolean
function lray.is_initialized()
  return ctx ~= nil or runtime.role == "worker"
end

--- Disconnects; stops the embedded cluster this driver started.
function lray.shutdown()
  if not ctx then return end
  ctx = nil
  actor.reset()
  if package.loaded["lray.submit"] then submit().reset() end
  cluster().leave()
  runtime.reset()
  runtime.role = nil
  collectgarbage()
end

local function ensure_init()
  if not runtime.conn then lray.init() end
end

-- -- Remote functions and actors ---------------------------------------------

--- lray.remote(fn) / lray.remote(Class) / lray.remote(opts, fn|Class)
function lray.remote(a, b)
  local opts, def = {}, a
  if b ~= nil then opts, def = a, b end
  if type(def) == "function" then
    options.check(opts, options.task, "lray.remote", 2)
    options.check_kinds(opts, "lray.remote", 2)
    return remote.remote_function(def, opts, remote.guess_name(def))
  elseif type(def) == "table" then
    options.check(opts, options.actor, "lray.remote", 2)
    options.check_kinds(opts, "lray.remote", 2)
    return actor.remote_class(def, opts, remote.guess_name(def))
  end
  misuse("lray.remote expects a function or a class table (optionally after an options"
    .. " table), got " .. type(def), 2)
end

-- -- Objects -------------------------------------------------------------------

local function check_ref(v, what, level)
  local id = type(v) == "userdata" and ref_id(v)
  if not id then
    local got = type(v) == "table" and "a table with a non-ObjectRef in it" or type(v)
    misuse(("%s expects an ObjectRef%s, got %s"):format(what,
      what == "lray.get" and " or a list of ObjectRefs" or "", got), level + 1)
  end
  return id
end

local function check_timeout(t, what, level)
  if t ~= nil and (type(t) ~= "number" or t < 0 or t ~= t) then
    misuse(what .. ": timeout must be a non-negative number of seconds, got " .. tostring(t), level + 1)
  end
  return t
end

local function ref_list(v, what, level)
  local ids = {}
  for i = 1, #v do ids[i] = check_ref(v[i], what, level + 1) end
  return ids
end

local function timeout_error(n, total, timeout)
  return errors.new("GetTimeoutError", ("lray.get timed out after %g s: %d of %d objects"
    .. " were not ready"):format(timeout, n, total))
end

--- lray.get(ref [, {timeout=}]) -> the values; lray.get(list) -> list of
--- the first value of each.
function lray.get(x, opts)
  local timeout = check_timeout(opts and opts.timeout, "lray.get", 2)
  if opts ~= nil and type(opts) ~= "table" then misuse("lray.get: options must be a table such as {timeout = 1}", 2) end
  ensure_init()
  local single = type(x) ~= "table"
  local ids = single and { check_ref(x, "lray.get", 2) } or ref_list(x, "lray.get", 2)
  runtime.subscribe(ids)
  local es = runtime.entries(ids)
  local deadline = timeout and core.now() + timeout
  -- Done when all are ready, or as soon as any one is known to have failed.
  local function done()
    local all = true
    for i = 1, #es do
      local st = es[i].st
      if st == "err" then return true end
      if not st then all = false end
    end
    return all
  end
  local watch = not done() and runtime.watch_wait(ids, es, deadline)
  local okw, ok = pcall(runtime.wait_until, done, deadline)
  if watch then watch:stop() end
  if not okw then error(ok, 0) end
  if not ok then
    local n = 0
    for i = 1, #es do if not es[i].st then n = n + 1 end end
    error(timeout_error(n, #es, timeout), 2)
  end
  if single then return runtime.values(es[1], ids[1]) end
  for i = 1, #es do
    if es[i].st == "err" then error(runtime.decode_error(es[i].err), 2) end
  end
  local out = {}
  for i = 1, #es do out[i] = runtime.first_value(es[i], ids[i]) end
  return out
end

--- lray.wait(refs, {num_returns=1, timeout=nil}) -> ready, not_ready
function lray.wait(refs, opts)
  if type(refs) ~= "table" then misuse("lray.wait expects a list of ObjectRefs, got " .. type(refs), 2) end
  opts = opts or {}
  local timeout = check_timeout(opts.timeout, "lray.wait", 2)
  local ids = ref_list(refs, "lray.wait", 2)
  if #ids == 0 then return {}, {} end
  local want = opts.num_returns or 1
  if type(want) ~= "number" or want < 0 or want ~= math.floor(want) then
    misuse("lray.wait: num_returns must be a whole number >= 0", 2)
  end
  if want > #ids then
    misuse(("lray.wait: num_returns (%d) is larger than the number of refs (%d)"):format(want, #ids), 2)
  end
  if #ids == 0 then return {}, {} end
  ensure_init()
  runtime.subscribe(ids)
  local es = runtime.entries(ids)
  local deadline = timeout and core.now() + timeout
  local function done()
    local n = 0
    for i = 1, #es do if es[i].st then n = n + 1 end end
    return n >= want
  end
  local watch = not done() and runtime.watch_wait(ids, es, deadline)
  local okw, err = pcall(runtime.wait_until, done, deadline)
  if watch then watch:stop() end
  if not okw then error(err, 0) end
  local ready, not_ready = {}, {}
  for i = 1, #es do
    if es[i].st and #ready < want then ready[#ready + 1] = refs[i]
    else not_ready[#not_ready + 1] = refs[i] end
  end
  return ready, not_ready
end

--- Stores value once; returns its ObjectRef.
function lray.put(value)
  if type(value) == "userdata" and ref_id(value) then
    misuse("lray.put of an ObjectRef is not allowed: pass the ObjectRef itself", 2)
  end
  ensure_init()
  return runtime.put(value, remote.callsite(2))
end

-- A soft cancel stops a task at the next instruction the Lua interpreter
-- runs; a loop LuaJIT compiled that calls nothing (or a long C call) never
-- gets there. The worker cannot tell, so the driver says so when the task
-- is still running a while after the cancel.
local SOFT_CANCEL_WARN = 2     -- seconds

local function watch_soft_cancel(id, ref)
  runtime.subscribe({ id })
  if runtime.entries({ id })[1].st then return end
  local t0, session = core.now(), remote.session
  core.timer(SOFT_CANCEL_WARN, 0, function()
    local e = runtime.objs[id]
    if not e or e.st or remote.session ~= session or not runtime.conn then return end
    io.stderr:write(("lray: warning: %s is still running %.1f s after lray.cancel(%s): a soft"
      .. " cancel stops a task at the next instruction the Lua interpreter runs, and a loop that"
      .. " LuaJIT compiled (one that calls nothing) or a long C call never gets there;"
      .. " lray.cancel(ref, {force = true}) kills its worker\n"):format(
      e.task and ("task '" .. e.task .. "'") or "the task", core.now() - t0, tostring(ref)))
  end, true)
end

--- Cancels the task that produces ref.
function lray.cancel(ref, opts)
  local id = check_ref(ref, "lray.cancel", 2)
  opts = opts or {}
  if submit().cancel(id, opts.force == true, opts.recursive ~= false) then
    if not opts.force and runtime.role == "driver" then watch_soft_cancel(id, ref) end
    return
  end
  local e = runtime.objs[id]
  if e and e.loc == "local" then
    -- An actor call's result.
    if opts.force then
      misuse("lray.cancel: force = true is not supported for actor calls; use lray.kill(actor)", 2)
    end
    actor.cancel(id)
  end
  -- Otherwise the task was submitted by another process (its owner) or has
  -- finished: as in Ray, only the owner can cancel it, and there is nothing
  -- left to cancel here.
end

-- -- Actors ------------------------------------------------------------------

function lray.get_actor(name, opts)
  if type(name) ~= "string" then misuse("lray.get_actor: name must be a string", 2) end
  ensure_init()
  return actor.get_actor(name, opts and opts.namespace)
end

function lray.kill(h, opts)
  if not actor.handle_info(h) then
    misuse("lray.kill expects an actor handle, got " .. type(h), 2)
  end
  actor.kill(h, not (opts and opts.no_restart == false))
end

-- -- Cluster ---------------------------------------------------------------

function lray.cluster_resources()
  ensure_init()
  return runtime.state({ t = "resources" }).total
end

function lray.available_resources()
  ensure_init()
  return runtime.state({ t = "resources" }).avail
end

function lray.nodes()
  ensure_init()
  return runtime.state({ t = "nodes" }).nodes
end

function lray.get_gpu_ids()
  return runtime.current.gpu_ids or {}
end

function lray.get_runtime_context()
  local c = runtime.current
  return { job_id = c.job_id or runtime.job_id, node_id = runtime.node_id,
    worker_id = runtime.worker_id, task_id = c.task_id, actor_id = c.actor_id,
    namespace = runtime.namespace, gpu_ids = c.gpu_ids or {} }
end

-- -- Time ------------------------------------------------------------------

--- Sleeps the calling process; the loop keeps running meanwhile.
function lray.sleep(seconds)
  if type(seconds) ~= "number" or seconds < 0 then
    misuse("lray.sleep: seconds must be a non-negative number", 2)
  end
  if not runtime.conn then core.usleep(seconds); return end
  local done = false
  local t = core.timer(seconds, 0, function() done = true end)
  local ok, err = pcall(runtime.wait_until, function() return done end, nil, true)
  if not ok then t:stop(); error(err, 0) end
end

lray.now = core.now

-- -- Errors and utilities --------------------------------------------------

lray.is_error = errors.is_error
lray.errors = errors
--- lray.array(ctype, n | list): see lray/array.lua (loaded on first use).
function lray.array(ctype, n_or_list)
  return require("lray.array").new(ctype, n_or_list)
end
-- Arrays that arrive before this process made one load the module then.
require("lray.serialize").register("array", function(p)
  return require("lray.array").from_bytes(p.ct, p.bytes)
end)
-- Utilities load on first use (Queue and Pool are built on actors).
lray.util = setmetatable({}, { __index = function(t, k)
  if k == "progress" then
    local v = require("lray.util.progress").progress
    rawset(t, k, v)
    return v
  end
  local mod = ({ ActorPool = "lray.util.actor_pool", Queue = "lray.util.queue",
    Pool = "lray.util.pool" })[k]
  if not mod then return nil end
  local v = require(mod)
  rawset(t, k, v)
  return v
end })

return lray
