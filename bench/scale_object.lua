-- bench/scale_object.lua: put and get one 4 GiB object.
--
--   build/lray bench/scale_object.lua [GIB]
--
-- lray.init{object_store_memory = (GIB + 1) GiB}; lray.array("uint8_t", GIB GiB)
-- filled with a byte pattern, lray.put (one copy into /dev/shm), lray.get (a
-- zero-copy view), a sampled check of the view, and a task that reads the
-- object by ref. If /dev/shm has less room than GIB + 1 GiB, GIB shrinks to
-- the largest whole number that fits, and the output says so. Prints times
-- and the driver's and node's peak RSS (VmHWM).
local lray = require("lray")
local ffi = require("ffi")
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local U = dofile(dir .. "/scale_util.lua")

local GIB = tonumber(arg[1]) or 4

local function shm_avail_gib()
  local f = io.popen("df -k --output=avail /dev/shm 2>/dev/null | tail -1")
  local kb = tonumber(f:read("*a"):match("%d+"))
  f:close()
  return kb and kb / 2^20
end

local avail = shm_avail_gib()
if avail and avail < GIB + 1 then
  local fit = math.floor(avail - 1)
  U.log("/dev/shm has %.2f GiB free: too small for a %d GiB object in a %d GiB store;"
    .. " using %d GiB", avail, GIB, GIB + 1, fit)
  GIB = fit
end
assert(GIB >= 1, "no room in /dev/shm for a 1 GiB object")
local SIZE = GIB * 2^30

lray.init({ num_cpus = 2, object_store_memory = (GIB + 1) * 2^30 })
local node = U.node_pid()
U.log("size %d GiB (%d bytes); /dev/shm free %.2f GiB; MemAvailable %.0f MB; node pid %s;"
  .. " load %s", GIB, SIZE, avail or -1, U.mem_available_mb(), tostring(node), U.loadavg())

-- lray.array of SIZE bytes; if that fails, say exactly how, and fall back to
-- the largest size lray.array takes (2^31 - 1 bytes: it allocates with
-- ffi.new, whose limit that is), so the put/get figures are still measured.
local t = U.now()
local ok, a = pcall(lray.array, "uint8_t", SIZE)
local array_failed = not ok
if not ok then
  U.log("FAILED: lray.array(\"uint8_t\", %d) raised: %s", SIZE, tostring(a))
  local want = SIZE
  SIZE = 2^31 - 1
  U.log("falling back to the largest array lray.array makes: %d bytes (%.3f GiB) instead of %d",
    SIZE, SIZE / 2^30, want)
  t = U.now()
  a = lray.array("uint8_t", SIZE)
end
local t_alloc = U.now() - t
t = U.now()
local p = a:ptr()
-- ffi.fill takes a 32-bit length: fill in 1 GiB pieces.
for off = 0, SIZE - 1, 2^30 do ffi.fill(p + off, math.min(2^30, SIZE - off), 0x5a) end
local STEP = 2^20 + 7                      -- markers at unaligned offsets
local nmark = 0
for off = 0, SIZE - 1, STEP do p[off] = (off / STEP) % 251; nmark = nmark + 1 end
local t_fill = U.now() - t
U.log("array allocated in %.2f s, filled in %.2f s; %s", t_alloc, t_fill, U.rss_line(node))

t = U.now()
local ref = lray.put(a)
local t_put = U.now() - t
U.log("put %.3f s (%.2f GB/s); %s", t_put, SIZE / 1e9 / t_put, U.rss_line(node))

a, p = nil, nil  -- luacheck: ignore 311 (dropped so the collector frees the array)
collectgarbage()
collectgarbage()
U.log("driver's array collected; %s", U.rss_line(node))

t = U.now()
local v = lray.get(ref)
local t_get = U.now() - t
assert(#v == SIZE, ("get returned %d elements, wanted %d"):format(#v, SIZE))
U.log("get %.6f s (%s); %s", t_get, tostring(v), U.rss_line(node))

t = U.now()
local vp, bad = v:ptr(), 0
for off = 0, SIZE - 1, STEP do
  if vp[off] ~= (off / STEP) % 251 then bad = bad + 1 end
  if vp[off + 1] ~= 0x5a and off + 1 < SIZE then bad = bad + 1 end
end
local t_check = U.now() - t
assert(bad == 0, bad .. " sampled bytes differ after get")
U.log("%d markers checked in %.3f s: all equal", nmark, t_check)

-- Full read of the view (touches every page of the mapping in the driver).
t = U.now()
local sum = ffi.new("uint64_t[1]")
local q = ffi.cast("const uint64_t *", vp)
for i = 0, SIZE / 8 - 1, 512 do sum[0] = sum[0] + q[i] end   -- one word per 4 KiB page
local t_read = U.now() - t
U.log("read one word of every page of the view in %.2f s; %s", t_read, U.rss_line(node))

-- A task reading the object by ref (a view in the worker too).
local probe = lray.remote(function(arr, step)
  local n, s = #arr, 0
  for off = 0, n - 1, step do s = s + arr[off] end
  return n, s
end)
t = U.now()
local n, s = lray.get(probe.remote(ref, STEP))
local t_task = U.now() - t
local want = 0
for off = 0, SIZE - 1, STEP do want = want + (off / STEP) % 251 end
assert(n == SIZE and s == want, ("task saw %s elements, sum %s (want %s)"):format(
  tostring(n), tostring(s), tostring(want)))
U.log("task on the ref: %.3f s, saw all %d bytes and the markers", t_task, n)

U.log("RESULT scale_object: %d bytes (%.3f GiB) put %.2f s (%.2f GB/s), get %.6f s (view),"
  .. " task by ref %.3f s; %s; load %s", SIZE, SIZE / 2^30, t_put, SIZE / 1e9 / t_put, t_get, t_task, U.rss_line(node),
  U.loadavg())
v = nil  -- luacheck: ignore 311
ref:release()
lray.shutdown()
if array_failed then
  io.stderr:write("scale_object: lray.array could not make the ", GIB, " GiB array; the figures above are for ",
    SIZE, " bytes\n")
  os.exit(1)
end
