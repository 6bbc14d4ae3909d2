-- Objects between nodes: how fast a large object stored on one node is
-- copied to another that reads it (docs/performance.md).
--
--   lray bench/transfer.lua [MiB] [runs]      default 1024 MiB, 2 runs
--
-- Starts a head on 127.0.0.1 and a node on 127.0.0.2 (`lray start`, each its
-- own process and store, under a private LRAY_TMPDIR), puts an lray.array of
-- MiB mebibytes from a driver on the head, and times lray.get of it from a
-- driver on the other node: the fetch, the pull over TCP in chunks
-- (LRAY_TRANSFER_CHUNK, LRAY_TRANSFER_WINDOW), the copy into that node's
-- store. The reader checks one byte per page. Each run reads a new object;
-- the reading node's store holds one, so the first run writes into fresh
-- pages (the kernel zeroes each on first touch) and later runs reuse them.
-- The ObjectRef is handed over by hand (runtime.record_of / ref_of): refs
-- travel between nodes in arguments and results, but two drivers have no
-- channel between them (bench/crossnode_refs.lua times that path).
local core = require("lray._core")

local mode = arg[1]

local function sh(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  return out
end

local function wait_file(path, seconds)
  local deadline = core.now() + seconds
  while core.now() < deadline do
    local f = io.open(path)
    if f then f:close(); return true end
    core.usleep(0.01)
  end
  return false
end

local U = dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") .. "/scale_util.lua")

if mode == "put" then
  -- lray bench/transfer.lua put ADDRESS DIR MiB RUNS: one object per run,
  -- its record in DIR/rec<i>, kept until DIR/done.
  local lray = require("lray")
  local rt = require("lray.runtime")
  local dir, mib, runs = arg[3], tonumber(arg[4]), tonumber(arg[5])
  lray.init({ address = arg[2] })
  local keep = {}
  for r = 1, runs do
    local n = mib * 1048576
    local a = lray.array("uint8_t", n)
    U.mark_pages(a)
    keep[r] = lray.put(a)
    local rec = rt.record_of(keep[r]:hex())
    local f = assert(io.open(dir .. "/rec" .. r .. ".tmp", "w"))
    f:write(("return {id=%q, off=%d, len=%d, node=%q}\n"):format(rec.id, rec.shm[1], rec.shm[2],
      rec.node))
    f:close()
    os.rename(dir .. "/rec" .. r .. ".tmp", dir .. "/rec" .. r)
  end
  wait_file(dir .. "/done", 600)
  lray.shutdown()
  return
end

if mode == "get" then
  -- lray bench/transfer.lua get ADDRESS DIR RUNS
  local lray = require("lray")
  local rt = require("lray.runtime")
  local dir, runs = arg[3], tonumber(arg[4])
  lray.init({ address = arg[2] })
  -- All objects are stored before the first read: the putter's writes do
  -- not share the two cores with the copies.
  assert(wait_file(dir .. "/rec" .. runs, 300), "the putter did not store its objects")
  for r = 1, runs do
    local rec = dofile(dir .. "/rec" .. r)
    local ref = rt.ref_of({ id = rec.id, shm = { rec.off, rec.len }, arr = "uint8_t", node = rec.node })
    local t0 = core.now()
    local v = lray.get(ref)
    local dt = core.now() - t0
    local n = v:nbytes()
    U.check_pages(v)
    print(("run %d: %d MiB in %.3f s = %.2f GB/s"):format(r, n / 1048576, dt, n / dt / 1e9))
    v, ref = nil, nil -- luacheck: ignore 311
    U.collect_views()
  end
  lray.shutdown()
  return
end

-- The whole benchmark.
local mib, runs = tonumber(arg[1]) or 1024, tonumber(arg[2]) or 2
local bin = core.exe_path()
local base = os.tmpname()
os.remove(base)
assert(os.execute("mkdir -p " .. base) == 0)
local env = "LRAY_TMPDIR=" .. base .. " "
local store = math.floor(mib * 1048576 * 1.1 + 64 * 1048576)
local out = sh(env .. bin .. " start --head --port 0 --dashboard-port 0 --num-cpus 1"
  .. " --object-store-memory " .. store * runs .. " 2>&1")
local address = assert(out:match("Address for other machines: (%S+)"), out)
out = sh(env .. bin .. " start --address " .. address .. " --host 127.0.0.2 --num-cpus 1"
  .. " --object-store-memory " .. store .. " 2>&1")
local sock = assert(out:match("Address on this machine: (%S+)"), out)
print(("%d MiB, %d runs; chunk %s, window %s"):format(mib, runs,
  os.getenv("LRAY_TRANSFER_CHUNK") or "4 MiB", os.getenv("LRAY_TRANSFER_WINDOW") or "8"))
local script = debug.getinfo(1, "S").source:sub(2)
os.execute(("%s%s %s put auto %s %d %d &"):format(env, bin, script, base, mib, runs))
local ok = os.execute(("%s%s %s get %s %s %d"):format(env, bin, script, sock, base, runs))
io.open(base .. "/done", "w"):close()
sh(env .. bin .. " stop 2>&1")
os.execute("rm -rf " .. base)
os.exit(ok == 0 and 0 or 1)
