-- Spilling end to end, as a driver sees it (docs/performance.md): puts that
-- must spill older objects to make room, and gets that restore them.
--
--   lray bench/spill.lua [objects] [store MiB] [runs]   default 12, 256, 3
--
-- Each run starts a local cluster whose store holds STORE MiB, fills it with
-- lray.array objects of 64 MiB (held, as a driver keeping lray.put refs),
-- then times:
--   put      the puts that fit (no spill): the baseline of a put here;
--   spill    OBJECTS more puts beyond the store's size: each waits until the
--            node has asked the driver to let go of the oldest (unmap) and
--            written it to disk; the figure is the bytes put per second.
--   restore  lray.get of every object in the order they were put: each one
--            on disk comes back (and another spills to make room for it);
--            the figure is the bytes restored per second.
-- A get returns a zero-copy view; the bench reads one byte per MiB of it,
-- checks it, and drops it. Spill files go to the session directory
-- ($LRAY_TMPDIR, default /tmp/lray: on this VM, ext4 on a virtual disk, so
-- through the page cache) or $LRAY_SPILL_DIR.
local lray = require("lray")
local core = require("lray._core")

local nobj = tonumber(arg[1]) or 12
local store_mib = tonumber(arg[2]) or 256
local runs = tonumber(arg[3]) or 3
local SIZE = 64 * 2 ^ 20
local MiB = 2 ^ 20

local function make(i)
  local a = lray.array("uint8_t", SIZE)
  for k = 0, SIZE - 1, MiB do a[k] = (i * 7 + k / MiB) % 251 end
  return a
end

local function check(v, i)
  for k = 0, SIZE - 1, MiB do
    if v[k] ~= (i * 7 + k / MiB) % 251 then error(("object %d: wrong byte at %d"):format(i, k)) end
  end
end

local fit = math.floor(store_mib * MiB / SIZE) - 1 -- leave room for headers
local gb = SIZE / 1e9
print(("spill bench: %d x 64 MiB beyond a %d MiB store (%d fit), %d runs"):format(nobj, store_mib,
  fit, runs))
for run = 1, runs do
  lray.init({ object_store_memory = store_mib * MiB, num_cpus = 1, include_dashboard = false })
  local srcs = {}
  for i = 1, fit + nobj do srcs[i] = make(i) end
  local refs = {}
  local t0 = core.now()
  for i = 1, fit do refs[i] = lray.put(srcs[i]) end
  local t_put = core.now() - t0
  t0 = core.now()
  for i = fit + 1, fit + nobj do refs[i] = lray.put(srcs[i]) end
  local t_spill = core.now() - t0
  srcs = nil -- luacheck: ignore
  collectgarbage()
  -- The first nobj objects are on disk: restore each (another spills).
  t0 = core.now()
  for i = 1, nobj do
    local v = lray.get(refs[i])
    check(v, i)
    v = nil -- luacheck: ignore
  end
  local t_restore = core.now() - t0
  print(("run %d: put %.2f GB/s (%d puts), spill %.2f GB/s (%d puts, %.2f s),"
    .. " restore %.2f GB/s (%d gets, %.2f s)"):format(run, fit * gb / t_put, fit,
    nobj * gb / t_spill, nobj, t_spill, nobj * gb / t_restore, nobj, t_restore))
  refs = nil -- luacheck: ignore
  lray.shutdown()
end
