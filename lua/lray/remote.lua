-- Remote functions: lray.remote(fn) and what .remote / .options do. Also the
-- pieces actor calls share: exporting a definition once by content hash, and
-- packing arguments (top-level ObjectRefs become dependencies).
local core = require("lray._core")
local runtime = require("lray.runtime")
local serialize = require("lray.serialize")
local object = require("lray.object")
local options = require("lray.options")
local submitter = require("lray.submit")

local select, type, setmetatable, rawequal =
  select, type, setmetatable, rawequal
local getlocal, getupvalue, getinfo = debug.getlocal, debug.getupvalue, debug.getinfo
local ref_id = object.id

local misuse = require("lray.errors").misuse

local M = {}
M.session = 0          -- bumped by every init, so definitions are re-exported

-- -- Names -------------------------------------------------------------------

--- The variable name under which the user's code that is calling us sees v:
--- a local, an upvalue, or a global. Used once per definition, for messages
--- and log prefixes, since Lua functions have no names of their own.
function M.guess_name(v)
  local level = 2
  while true do
    local info = getinfo(level, "Sf")
    if not info then return nil end
    if not info.source:find("/lray/", 1, true) and info.what ~= "C" then break end
    level = level + 1
  end
  for i = 1, 200 do
    local k, val = getlocal(level, i)
    if not k then break end
    if rawequal(val, v) then return k end
  end
  local info = getinfo(level, "f")
  if info and info.func then
    for i = 1, 200 do
      local k, val = getupvalue(info.func, i)
      if not k then break end
      if rawequal(val, v) then return k end
    end
  end
  for k, val in pairs(_G) do
    if rawequal(val, v) and type(k) == "string" then return k end
  end
  return nil
end

-- -- Export ------------------------------------------------------------------

--- Encodes the definition value (function or class table) once per
--- session; returns its content hash. A class goes to the node, which starts
--- actors; a function's code goes with the first task each leased worker
--- gets (lray.submit).
function M.export(ex, value, what, is_class)
  if ex.session == M.session then return ex.hash end
  serialize.refresh(true)
  local code, refs, aids = runtime.encode_tracked(value, what)
  -- Handles captured by the definition live as long as its code, which
  -- this process keeps (and sends on) for the rest of the session.
  for _, aid in ipairs(aids or {}) do runtime.actor_hold(aid) end
  local h = core.hash(code)
  if is_class then
    runtime.send({ t = "fn", h = h, code = code, refs = refs })
  else
    submitter.define(h, code)
  end
  ex.hash, ex.session = h, M.session
  return h
end

--- Packs call arguments: ObjectRefs at the top level become dependencies
--- (resolved before the call runs); everything else is encoded. by_value:
--- the caller sends the dependencies' values itself (tasks), so they need
--- not be made visible on the node.
function M.pack_args(what, by_value, ...)
  serialize.refresh()   -- a module required since the last call goes by name
  local n = select("#", ...)
  local args = { n = n }
  local deps
  for i = 1, n do
    local v = select(i, ...)
    local id = type(v) == "userdata" and ref_id(v)
    if id then
      deps = deps or {}
      deps[i] = by_value and id or runtime.escape(id)
    else
      args[i] = v
    end
  end
  local blob, refs, actors = runtime.encode_tracked(args, "the arguments of " .. what)
  return blob, deps, refs, actors
end

-- -- Remote functions --------------------------------------------------------

local RemoteFunction = {}
RemoteFunction.__index = RemoteFunction

RemoteFunction.__call = function(rf)
  if not rf._name and not rf._opts.name then rf._name = M.guess_name(rf) end
  local name = rf._opts.name or rf._name
  local how = name and name .. ".remote(...)" or ".remote(...) on it"
  misuse(("%s cannot be called directly; use %s to run it as a task"):format(rf:_what(), how), 2)
end

RemoteFunction.__tostring = function(rf) return "RemoteFunction(" .. rf:_label() .. ")" end

function RemoteFunction:_label()
  return self._opts.name or self._name or ("function at " .. self._where)
end

-- "remote function 'f'", or "the remote function at job.lua:3" for one
-- with no name (not "remote function function at ...").
function RemoteFunction:_what()
  local name = self._opts.name or self._name
  if name then return "remote function '" .. name .. "'" end
  return "the remote function at " .. self._where
end

-- Call sites ("file:line" of the user's .remote() or lray.put) label the
-- objects they create in `lray memory` and the dashboard. One debug.getinfo
-- per call; LRAY_CALL_SITES=0 turns it off.
local CALL_SITES = os.getenv("LRAY_CALL_SITES") ~= "0"

--- "file:line" of the function `level` levels above the caller, or nil.
function M.callsite(level)
  if not CALL_SITES then return nil end
  local i = getinfo(level + 1, "Sl")
  if not i then return nil end
  return i.short_src .. ":" .. i.currentline
end

local function submit(rf, ...)
  if not runtime.conn then
    require("lray").init()
  end
  if not rf._name and not rf._opts.name then rf._name = M.guess_name(rf) end
  local name = rf:_label()
  local fh = M.export(rf._ex, rf._fn, rf:_what())
  local blob, deps, refs, actors = M.pack_args("task '" .. name .. "'", true, ...)
  local opts = rf._opts
  local nret = opts.num_returns or 1
  local rets, out = {}, {}
  for i = 1, nret do
    rets[i] = runtime.new_id()
    -- Known before the submission leaves: the result may come back at once.
    runtime.expect(rets[i], "local").task = name   -- named in lray.cancel's warning
    out[i] = runtime.new_ref(rets[i], true)
  end
  submitter.submit({ tid = runtime.new_id(), fh = fh, args = blob, deps = deps, refs = refs,
    actors = actors, rets = rets, res = rf._req, name = name,
    retries = opts.max_retries or 3, retry_exc = opts.retry_exceptions,
    parent = runtime.current.task_id, job = runtime.current.job_id or runtime.job_id,
    keep = (deps or refs or actors) and { ... } or nil, cs = M.callsite(2) })
  runtime.submitted()
  return unpack(out, 1, nret)
end

local function make(fn, opts, ex, where, name)
  local rf = setmetatable({ _fn = fn, _opts = opts, _ex = ex, _where = where,
    _name = name, _req = options.request(opts, 1) }, RemoteFunction)
  -- f.remote(...) and f:remote(...) are the same call.
  rf.remote = function(...)
    if rawequal((...), rf) then return submit(rf, select(2, ...)) end
    return submit(rf, ...)
  end
  rf.options = function(...)
    local o = ...
    if rawequal(o, rf) then o = select(2, ...) end
    options.check(o, options.task, rf:_what(), 2)
    local merged = options.merge(opts, o)
    options.check_kinds(merged, rf:_what(), 2)
    if not rf._name then rf._name = M.guess_name(rf) end
    return make(fn, merged, ex, where, rf._name)
  end
  return rf
end

--- lray.remote for a function.
function M.remote_function(fn, opts, name)
  local info = getinfo(fn, "S")
  local where = info.short_src .. ":" .. (info.linedefined or 0)
  return make(fn, opts, {}, where, name)
end

M.RemoteFunction = RemoteFunction
return M
