-- Remote functions: lray.remote(fn) and what .remote / .options do. Also the
-- pieces actor calls share: exporting a definition once by content hash, and
-- packing arguments (top-level ObjectRefs become dependencies).
local core = require("lray._core")
local runtime = require("lray.runtime")
local serialize = require("lray.serialize")
local object = require("lray.object")
local options = require("lray.options")

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

--- Sends the definition value (function or class table) to the cluster once
--- per session; returns its content hash.
function M.export(ex, value, what)
  if ex.session == M.session then return ex.hash end
  serialize.refresh(true)
  local code, refs = runtime.encode_tracked(value, what)
  local h = core.hash(code)
  runtime.send({ t = "fn", h = h, code = code, refs = refs })
  ex.hash, ex.session = h, M.session
  return h
end

--- Packs call arguments: ObjectRefs at the top level become dependencies
--- (resolved before the call runs); everything else is encoded.
function M.pack_args(what, ...)
  serialize.refresh()   -- a module required since the last call goes by name
  local n = select("#", ...)
  local args = { n = n }
  local deps
  for i = 1, n do
    local v = select(i, ...)
    local id = type(v) == "userdata" and ref_id(v)
    if id then
      deps = deps or {}
      deps[i] = runtime.escape(id)
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
  misuse(("remote function %s cannot be called directly; use %s.remote(...)"
    .. " to run it as a task"):format(rf:_label(), rf._name or "f"), 2)
end

RemoteFunction.__tostring = function(rf) return "RemoteFunction(" .. rf:_label() .. ")" end

function RemoteFunction:_label()
  return self._opts.name or self._name or ("function at " .. self._where)
end

local function submit(rf, ...)
  if not runtime.conn then
    require("lray").init()
  end
  if not rf._name and not rf._opts.name then rf._name = M.guess_name(rf) end
  local name = rf:_label()
  local fh = M.export(rf._ex, rf._fn, "remote function " .. name)
  local blob, deps, refs, actors = M.pack_args("task '" .. name .. "'", ...)
  local opts = rf._opts
  local nret = opts.num_returns or 1
  local rets, out = {}, {}
  for i = 1, nret do
    rets[i] = runtime.new_id()
    -- Known before the submission leaves: the result may come back at once.
    runtime.expect(rets[i])
    out[i] = runtime.new_ref(rets[i], true)
  end
  runtime.send({ t = "submit", tid = runtime.new_id(), fh = fh, args = blob,
    deps = deps, refs = refs, actors = actors, rets = rets, res = rf._req, name = name,
    max_retries = opts.max_retries, retry_exc = opts.retry_exceptions,
    parent = runtime.current.task_id, job = runtime.current.job_id })
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
    options.check(o, options.task, "remote function " .. rf:_label(), 2)
    local merged = options.merge(opts, o)
    options.check_kinds(merged, "remote function " .. rf:_label(), 2)
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
