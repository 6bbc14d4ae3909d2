-- A driver on a machine that runs no node: how fast its large put and get
-- travel over its connection (docs/performance.md).
--
--   lray bench/remote_driver.lua [MiB] [runs]      default 256 MiB, 3 runs
--
-- Starts a head on 127.0.0.1 (`lray start`, under a private LRAY_TMPDIR)
-- and runs a driver that joins it over TCP with the token from a mount
-- namespace of its own whose /dev/shm is a private tmpfs (`unshare
-- --mount`: needs root), so it cannot map the node's store: each put goes
-- over its connection in `write` frames into the store, each get comes back
-- with pull/chunk. For comparison the same driver then runs beside the node
-- (sharing its store). Each run puts an lray.array of MiB mebibytes (no
-- value encoding: the bytes only), gets it back and checks one byte per
-- page. The figures are the put's and the get's time.
local core = require("lray._core")

local U = dofile(debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") .. "/scale_util.lua")
local sh = U.sh

local mode = arg[1]

if mode == "driver" then
  -- lray bench/remote_driver.lua driver ADDRESS TOKEN MiB RUNS LABEL
  local lray = require("lray")
  local rt = require("lray.runtime")
  local mib, runs, label = tonumber(arg[4]), tonumber(arg[5]), arg[6]
  lray.init({ address = arg[2], token = arg[3] })
  print(("%s driver: %s"):format(label, rt.remote_store and "remote (" .. rt.remote_store .. ")"
    or "shares the node's store"))
  local n = mib * 1048576
  for r = 1, runs do
    local a = lray.array("uint8_t", n)
    U.mark_pages(a)
    local t0 = core.now()
    local ref = lray.put(a)
    local tput = core.now() - t0
    a = nil -- luacheck: ignore 311
    collectgarbage()
    t0 = core.now()
    local v = lray.get(ref)
    local tget = core.now() - t0
    U.check_pages(v)
    print(("  run %d: put %d MiB in %.3f s = %.2f GB/s; get in %.3f s = %.2f GB/s"):format(r,
      mib, tput, n / tput / 1e9, tget, n / tget / 1e9))
    v, ref = nil, nil -- luacheck: ignore 311
    U.collect_views()
  end
  lray.shutdown()
  return
end

-- The whole benchmark.
local mib, runs = tonumber(arg[1]) or 256, tonumber(arg[2]) or 3
local bin = core.exe_path()
local script = debug.getinfo(1, "S").source:sub(2)
local base = os.tmpname()
os.remove(base)
assert(os.execute("mkdir -p " .. base .. "/driver") == 0)
local env = "LRAY_TMPDIR=" .. base .. " "
local store = math.floor(mib * 1048576 * 2.2 + 64 * 1048576)
local out = sh(env .. bin .. " start --head --port 0 --dashboard-port 0 --num-cpus 1"
  .. " --object-store-memory " .. store .. " 2>&1")
local address = assert(out:match("Address for other machines: (%S+)"), out)
local token = assert(out:match("%-%-token (%x+)"), out)
print(("%d MiB, %d runs; chunk %s, window %s"):format(mib, runs,
  os.getenv("LRAY_TRANSFER_CHUNK") or "4 MiB", os.getenv("LRAY_TRANSFER_WINDOW") or "8"))
local driver = ("%s %s driver %s %s %d %d"):format(bin, script, address, token, mib, runs)
local inner = ("mount -t tmpfs lray-bench-shm /dev/shm && mount -t tmpfs lray-bench-tmp %s"
  .. " && LRAY_TMPDIR=%s %s remote"):format(base .. "/driver", base .. "/driver", driver)
local ok = os.execute("unshare --mount sh -c '" .. inner .. "'")
if ok ~= 0 then
  io.stderr:write("bench/remote_driver.lua: the remote driver failed (it needs root for"
    .. " `unshare --mount` and tmpfs mounts)\n")
end
local ok2 = os.execute(env .. driver .. " shared")
sh(env .. bin .. " stop 2>&1")
os.execute("rm -rf " .. base)
os.exit((ok == 0 and ok2 == 0) and 0 or 1)
