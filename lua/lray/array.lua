-- lray.array: typed numeric arrays (LuaJIT FFI) that the object store keeps
-- as raw bytes, so a large one is written to shared memory once and every
-- process on the node reads it in place, without a copy. Indexing is 0-based
-- like FFI arrays; #a is the length.
local ffi = require("ffi")
local serialize = require("lray.serialize")

local type, error, tostring, floor = type, error, tostring, math.floor

local M = {}

pcall(ffi.cdef, "void *calloc(size_t, size_t); void free(void *);")

local CTYPES = { "double", "float", "int8_t", "uint8_t", "int16_t", "uint16_t",
  "int32_t", "uint32_t", "int64_t", "uint64_t" }

local kinds = {}        -- ctype name -> {ct = struct ctype, esize, name}
local views = {}        -- the same for read-only views
local anchors = setmetatable({}, { __mode = "k" })  -- array -> what keeps its memory

-- Two struct types per element type: a writable array, and a read-only
-- view of an array stored in shared memory (objects are immutable).
local function define(name, readonly)
  local sname = (readonly and "lray_view_" or "lray_array_") .. name
  ffi.cdef(("typedef struct %s { %s%s *p; int64_t n; } %s;"):format(sname,
    readonly and "const " or "", name, sname))
  local methods = {}
  local k = { name = name, esize = ffi.sizeof(name), ptr = ffi.typeof(name .. "*") }
  local function check(a, i)
    if type(i) ~= "number" or i < 0 or i >= a.n or i ~= floor(i) then
      error(("index %s out of range for lray.array of %d %s (0-based)"):format(
        tostring(i), tonumber(a.n), name), 3)
    end
  end
  local mt = {
    __index = function(a, i)
      if type(i) == "number" then check(a, i); return a.p[i] end
      return methods[i]
    end,
    __newindex = readonly and function()
      error("this lray.array is a view of a stored object, and objects are immutable;"
        .. " copy it first: local c = a:copy()", 2)
    end or function(a, i, v) check(a, i); a.p[i] = v end,
    __len = function(a) return tonumber(a.n) end,
    __tostring = function(a) return ("lray.array(%s, %d)"):format(name, tonumber(a.n)) end,
  }
  function methods.ctype() return name end
  function methods.totable(a)
    local t = {}
    for i = 0, tonumber(a.n) - 1 do t[i + 1] = tonumber(a.p[i]) end
    return t
  end
  function methods.nbytes(a) return tonumber(a.n) * k.esize end
  function methods.ptr(a) return a.p end
  --- A new writable array with the same type and elements (one memcpy).
  function methods.copy(a)
    local n = tonumber(a.n)
    local c = M.new(name, n)
    ffi.copy(c.p, a.p, n * k.esize)
    return c
  end
  k.ct = ffi.metatype(sname, mt)
  if readonly then views[name] = k else kinds[name] = k end
end

for _, name in ipairs(CTYPES) do define(name, false); define(name, true) end

local function kind_of(ctype)
  local k = kinds[ctype]
  if not k then
    error(("lray.array: unsupported element type '%s'; use one of: %s"):format(
      tostring(ctype), table.concat(CTYPES, ", ")), 3)
  end
  return k
end

--- lray.array(ctype, n) (zero-filled) or lray.array(ctype, list).
function M.new(ctype, n_or_list)
  local k = kind_of(ctype)
  local n, list
  if type(n_or_list) == "number" then
    n = n_or_list
    if n < 0 or n ~= floor(n) then error("lray.array: length must be a whole number >= 0", 2) end
  elseif type(n_or_list) == "table" then
    list, n = n_or_list, #n_or_list
  else
    error("lray.array(ctype, n | list): expected a length or a list, got " .. type(n_or_list), 2)
  end
  local buf
  if n * k.esize >= 2^30 then
    -- ffi.new cannot make objects of 2 GiB or more: take them from malloc.
    buf = ffi.gc(ffi.cast(k.ptr, ffi.C.calloc(n, k.esize)), ffi.C.free)
    if buf == nil then error(("lray.array: out of memory for %d %s"):format(n, ctype), 2) end
  else
    buf = ffi.new(ctype .. "[?]", n > 0 and n or 1)
  end
  local a = k.ct(buf, n)
  anchors[a] = buf
  if list then
    for i = 1, n do buf[i - 1] = list[i] end
  end
  return a
end

M.kind_of = kind_of

--- The kind of an array value, or nil when v is not an lray.array.
function M.kind(v)
  if type(v) ~= "cdata" then return nil end
  for name, k in pairs(kinds) do
    if ffi.istype(k.ct, v) then return k, name end
  end
  for name, k in pairs(views) do
    if ffi.istype(k.ct, v) then return k, name end
  end
  return nil
end

--- Raw bytes of a (one copy, for inline transfer).
function M.bytes(a)
  local k = M.kind(a)
  return ffi.string(a.p, tonumber(a.n) * k.esize)
end

--- An array over existing memory, kept alive by anchor (zero-copy view).
function M.view(ctype, ptr, n, anchor)
  kind_of(ctype)
  local k = views[ctype]
  local a = k.ct(ffi.cast(k.ptr, ptr), n)
  anchors[a] = anchor
  return a
end

--- A fresh array with a copy of bytes.
function M.from_bytes(ctype, bytes)
  local k = kind_of(ctype)
  local n = #bytes / k.esize
  local a = M.new(ctype, n)
  ffi.copy(a.p, bytes, #bytes)
  return a
end

serialize.register_cdata(function(v)
  local k, name = M.kind(v)
  if not k then return nil end
  return "array", { ct = name, bytes = ffi.string(v.p, tonumber(v.n) * k.esize) }
end)
serialize.register("array", function(p) return M.from_bytes(p.ct, p.bytes) end)

return M
