-- A driver's view of its node's object store when it may not share it: a
-- driver on a machine that runs no node of the cluster (or in another
-- /dev/shm) cannot map the region its hello reply names, or maps a file of
-- that name that is not the node's store.
--
-- The rule (core/raylet/remote.c writes the other half): the node writes a
-- fresh random cookie just past the end of its store in the region and
-- sends it in the hello reply; this driver shares the store only when the
-- region opens and holds that cookie there. Otherwise it is a remote driver
-- and its objects travel over its connection:
--
--   * a large value goes to a range it was given (alloc, admitted by free
--     store memory as any put) in `write` frames of CHUNK bytes that the
--     node copies straight into the range, with at most WINDOW of them
--     waiting in this process's buffers; then a put stores it as usual;
--   * a stored value (its node's, or fetched there first from another
--     node's) comes back with pull/chunk, as between nodes: WINDOW pieces of
--     CHUNK bytes in flight. An lray.array arrives as a copy in this
--     process's memory (no zero-copy view is possible), read-only as a view.
local core = require("lray._core")
local errors = require("lray.errors")

local min, tonumber, type = math.min, tonumber, type

local M = {}

-- Where and how long the cookie is (LR_COOKIE_SPACE, LR_COOKIE_BYTES in
-- core/raylet/node.h): the start of the region's last 64 bytes, 32 hex digits.
local COOKIE_SPACE, COOKIE_BYTES = 64, 32

local function env_num(name, dflt)
  local v = tonumber(os.getenv(name) or "")
  return v and v > 0 and v or dflt
end

-- The same knobs as a node's copies (transfer.c).
M.CHUNK = env_num("LRAY_TRANSFER_CHUNK", 4 * 1024 * 1024)
M.WINDOW = env_num("LRAY_TRANSFER_WINDOW", 8)

--- The node's region named in hello reply w, mapped, when it is really that
--- node's store; else nil and why not.
function M.open_shared(w)
  if not (w.shm and w.cookie) then return nil, "the node named no store" end
  local ok, region = pcall(core.shm_open, w.shm)
  if not ok then return nil, tostring(region) end
  local size = region:size()
  if size < COOKIE_SPACE or region:read(size - COOKIE_SPACE, COOKIE_BYTES) ~= w.cookie then
    region:close()
    return nil, "/dev/shm/" .. w.shm .. " here is not that node's store (its cookie differs)"
  end
  return region
end

--- Writes n bytes of src (a string, or a uint8_t pointer) over rt's
--- connection into the range at `at` that rt was given by alloc.
function M.write(rt, at, src, n)
  local ffi = type(src) ~= "string" and require("ffi")
  local conn, high = rt.conn, M.CHUNK * M.WINDOW
  local function drained() return conn:pending() <= high end
  local pos = 0
  while pos < n do
    local len = min(M.CHUNK, n - pos)
    local data = ffi and ffi.string(src + pos, len) or src:sub(pos + 1, pos + len)
    rt.send({ t = "write", at = at, pos = pos, data = data })
    pos = pos + len
    -- Bounded: the kernel takes what the node has read; the rest waits here.
    if not drained() then rt.wait_until(drained, nil, true) end
  end
end

local reads = {}   -- object id -> the read under way

-- A piece is taken only if it is the one due (at r.got, of the length
-- asked). Pieces of an earlier read of the same object that was given up
-- (an error, a Ctrl-C) may still come: one at the offset due holds the very
-- bytes due (objects are immutable), and any other is dropped, so no count
-- of pieces in flight can go wrong.
local function on_chunk(m)
  local r = reads[m.id]
  if not r or r.err then return end
  if m.err then r.err = m.err; return end
  local data = m.data or ""
  if m.off ~= r.got or #data ~= min(M.CHUNK, r.size - r.got) then return end
  if m.total and m.total ~= r.size then
    r.err = ("the node has %d bytes, not %d"):format(m.total, r.size)
    return
  end
  if r.dst then
    require("ffi").copy(r.dst + r.got, data, #data)
  else
    r.parts[#r.parts + 1] = data
  end
  r.got = r.got + #data
end

--- Reads the size bytes of stored object id over rt's connection: into dst
--- (a uint8_t pointer) when given, else returns them as a string.
function M.read(rt, id, size, dst)
  local r = { size = size, got = 0, asked = 0, dst = dst, parts = {} }
  reads[id] = r
  local conn, window = rt.conn, M.WINDOW * M.CHUNK
  local function done()
    if r.err or r.got == size then return true end
    while r.asked - r.got < window and r.asked < size do
      local len = min(M.CHUNK, size - r.asked)
      conn:send({ t = "pull", id = id, off = r.asked, len = len })
      r.asked = r.asked + len
    end
    return false
  end
  local ok, err = pcall(rt.wait_until, done, nil, true)
  if reads[id] == r then reads[id] = nil end
  -- The node counts a puller as a holder until it says done: let go, unless
  -- this process holds the object anyway (done would end that hold too).
  if rt.counts[id] == nil and rt.conn and not rt.lost then
    rt.send({ t = "pull", id = id, done = true })
  end
  if not ok then error(err, 0) end
  if r.err then
    errors.raise("ObjectLostError", ("object %s could not be read from the store of node %s"
      .. " over this driver's connection: %s"):format(id, tostring(rt.node_address()), r.err))
  end
  if dst then return nil end
  return table.concat(r.parts)
end

--- A copy of array object id (its record e, element type e.arr) in this
--- process's memory, read-only like a view of the store.
function M.read_array(rt, id, e)
  local array = require("lray.array")
  local ffi = require("ffi")
  local n = e.shm[2]
  -- calloc, not ffi.new: fresh pages come zeroed from the kernel, so the
  -- copy is the first and only pass over them (ffi.new clears them first).
  local buf = ffi.gc(ffi.cast("uint8_t *", ffi.C.calloc(n > 0 and n or 1, 1)), ffi.C.free)
  if buf == nil then errors.raise("RayError", ("no memory for a copy of %d bytes"):format(n)) end
  M.read(rt, id, n, buf)
  return array.view(e.arr, buf, n / array.kind_of(e.arr).esize, buf)
end

function M.install(handlers) handlers.chunk = on_chunk end

function M.reset() for k in pairs(reads) do reads[k] = nil end end

return M
