-- How Lua values cross processes. The codec itself is C (core/script/ser.c);
-- this file gives it the knowledge it needs: which values travel by name
-- (standard library, required modules), which globals a function captures,
-- and how ObjectRefs, actor handles and arrays are rebuilt on arrival.
local core = require("lray._core")
local jutil = require("jit.util")
local bit = require("bit")

local pairs, type, rawget, require, error, pcall, tostring =
  pairs, type, rawget, require, error, pcall, tostring
local getmetatable = debug.getmetatable
local band, rshift = bit.band, bit.rshift
local funcinfo, funcbc, funck = jutil.funcinfo, jutil.funcbc, jutil.funck

local M = {}

-- value -> "g:path" (a global path) or "m:module" / "m:module#field".
local names = setmetatable({}, { __mode = "k" })
local indexed = {}           -- module name -> true once its fields are named
local std_globals = {}       -- names of the standard globals, never captured
local decoders = {}          -- custom kind -> function(payload) -> value

local STD_MODULES = { "string", "table", "math", "io", "os", "coroutine",
  "debug", "bit", "jit", "package", "ffi" }

local function name_module(mname, mod)
  if names[mod] == nil then names[mod] = "m:" .. mname end
  if type(mod) == "table" and not indexed[mname] then
    indexed[mname] = true
    for k, v in pairs(mod) do
      local tv = type(v)
      -- A userdata without a metatable (light userdata such as cjson.null)
      -- has nothing but its identity: it is a sentinel, and by name it
      -- arrives as the same value. Others (io.stdout) stay unsendable.
      if type(k) == "string" and (tv == "function" or tv == "table"
          or tv == "userdata" and getmetatable(v) == nil) and names[v] == nil then
        names[v] = "m:" .. mname .. "#" .. k
      end
    end
  end
end

for k, v in pairs(_G) do
  std_globals[k] = true
  if type(v) == "function" then names[v] = "g:" .. k end
end
names[_G] = "g:_G"
for _, m in ipairs(STD_MODULES) do
  local mod = package.loaded[m]
  if mod then name_module(m, mod) end
end

-- Set when `require` ran since the last refresh (lray wraps the global
-- require), so the per-call refresh costs nothing in the common case.
local dirty = true
do
  local orig = require
  _G.require = function(mname, ...)
    dirty = true
    local mod = orig(mname, ...)
    -- Named at once: a task that requires a module can return its values
    -- (cjson.null) without waiting for the next refresh.
    local t = type(mod)
    if (t == "table" or t == "function") and type(mname) == "string" then name_module(mname, mod) end
    return mod
  end
  names[_G.require] = "g:require"
end

--- Names every module loaded so far, so a module captured as an upvalue or
--- passed as a value is sent by name and required again on the other side.
--- force: look even if no require ran since last time (definitions).
function M.refresh(force)
  if not dirty and not force then return end
  dirty = false
  for mname, mod in pairs(package.loaded) do
    local t = type(mod)
    if (t == "table" or t == "function") and mname ~= "_G" then
      name_module(mname, mod)
    end
  end
end

-- Makes a value travel by name (used by lray's own metatables).
function M.name(value, name) names[value] = name end

local function resolve(name)
  local kind, path = name:sub(1, 1), name:sub(3)
  if kind == "g" then
    local v = _G
    for part in path:gmatch("[^.]+") do v = v and rawget(v, part) end
    if v == nil then error("global '" .. path .. "' does not exist here", 0) end
    return v
  end
  local mname, field = path:match("^([^#]*)#?(.*)$")
  local ok, mod = pcall(require, mname)
  if not ok then
    error("module '" .. mname .. "' cannot be required on this worker (the sent"
      .. " value uses it); make it reachable through package.path: "
      .. tostring(mod), 0)
  end
  -- Its other fields travel back by name too (cjson.null in a task's result).
  if type(mod) == "table" then name_module(mname, mod) end
  if field ~= "" then
    if type(mod) ~= "table" or mod[field] == nil then
      error("module '" .. mname .. "' has no field '" .. field .. "' here", 0)
    end
    return mod[field]
  end
  return mod
end

-- The bytecode opcode numbers of the global accessors, from LuaJIT's own
-- table of opcode names (6 characters each).
local GGET, GSET
do
  local ok, vmdef = pcall(require, "jit.vmdef")
  local bcnames = ok and vmdef.bcnames
  if bcnames then
    for i = 0, #bcnames / 6 - 1 do
      local op = bcnames:sub(i * 6 + 1, i * 6 + 6):gsub(" ", "")
      if op == "GGET" then GGET = i elseif op == "GSET" then GSET = i end
    end
  end
end

local function collect_globals(f, out, seen)
  local info = funcinfo(f)
  local pc = 1
  while true do
    local ins = funcbc(f, pc)
    if not ins then break end
    pc = pc + 1
    local op = band(ins, 0xff)
    if op == GGET or op == GSET then
      local k = funck(f, -rshift(ins, 16) - 1)
      if type(k) == "string" and not seen[k] then
        seen[k] = true
        if not std_globals[k] then out[#out + 1] = k end
      end
    end
  end
  for i = 1, (info.gcconsts or 0) do
    local k = funck(f, -i)
    if type(k) == "proto" then collect_globals(k, out, seen) end
  end
  return out
end

--- Global names a Lua function reads or writes, in it and its inner functions.
function M.globals(f)
  if not GGET then return nil end
  return collect_globals(f, {}, {})
end

---@param kind string
---@param fn fun(payload:any):any
function M.register(kind, fn) decoders[kind] = fn end

local cdata_hooks = {}
--- fn(v) -> kind, payload | nil, for LuaJIT cdata values.
function M.register_cdata(fn) cdata_hooks[#cdata_hooks + 1] = fn end

core.ser_config({
  names = names,
  resolve = resolve,
  globals = M.globals,
  custom_decode = function(kind, payload)
    local d = decoders[kind]
    if not d then error("unknown value kind '" .. tostring(kind) .. "'", 0) end
    return d(payload)
  end,
  cdata = function(v)
    for i = 1, #cdata_hooks do
      local kind, payload = cdata_hooks[i](v)
      if kind then return kind, payload end
    end
    return nil
  end,
})

-- lray's error values keep their type across processes.
names[require("lray.errors").Error] = "m:lray.errors#Error"

M.encode = core.encode
M.decode = core.decode

return M
