-- References across nodes (core/raylet/xref.c): what handing an ObjectRef
-- to an actor on another node costs, and how long a read takes to fall back
-- to another node's copy when the node named in the record is gone.
--
--   lray bench/crossnode_refs.lua [calls] [MiB]     default 300 calls, 64 MiB
--
-- Starts a head on 127.0.0.1 and nodes on 127.0.0.2 (resource B) and
-- 127.0.0.3 (resource C) with `lray start` under a private LRAY_TMPDIR; a
-- driver on the head then
--   1. puts a 1 MiB lray.array per call and hands it, nested in a table, to
--      an actor that reads it and returns its length: on the head's node
--      (one store) and on B (a hold at the head, a question, a copy);
--   2. makes a MiB object on B, has an actor on C read (copy) and keep it,
--      and reads it itself from B; then a second one, SIGKILLs B and reads
--      that from C's copy.
local core = require("lray._core")

local function sh(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  return out
end

if arg[1] == "driver" then
  local lray = require("lray")
  local calls, mib, pid_b = tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
  lray.init({ address = "auto" })
  local Reader = {}
  function Reader:read(t) local a = lray.get(t[1]); return #a end
  function Reader:keep(t) self.r = t[1]; return #lray.get(self.r) end
  local function on(where)
    return lray.remote({ num_cpus = 0, resources = where and { [where] = 0.5 } or nil }, Reader).remote()
  end
  local function handoffs(a, label)
    lray.get(a.read.remote({ lray.put(lray.array("uint8_t", 1048576)) }))   -- warm
    local t0 = core.now()
    for _ = 1, calls do
      local r = lray.put(lray.array("uint8_t", 1048576))
      assert(lray.get(a.read.remote({ r })) == 1048576)
    end
    local dt = core.now() - t0
    print(("hand-off of a 1 MiB ObjectRef to an actor %s: %.2f ms per call (%d calls)")
      :format(label, dt / calls * 1000, calls))
  end
  handoffs(on(nil), "on the same node")
  handoffs(on("B"), "on another node")

  local make = lray.remote({ resources = { B = 0.5 } }, function(n) return lray.array("uint8_t", n) end)
  local n = mib * 1048576
  local keeper = on("C")
  local x = make.remote(n)
  lray.wait({ x })
  lray.get(keeper.keep.remote({ x }))
  local t0 = core.now()
  assert(#lray.get(x) == n)
  print(("read of %d MiB from the node that stores it: %.3f s"):format(mib, core.now() - t0))
  local y = make.remote(n)
  lray.wait({ y })
  local keeper2 = on("C")
  lray.get(keeper2.keep.remote({ y }))
  os.execute("kill -9 " .. pid_b)
  t0 = core.now()
  assert(#lray.get(y) == n)
  print(("read of %d MiB after that node was SIGKILLed, from a copy on a third: %.3f s")
    :format(mib, core.now() - t0))
  lray.shutdown()
  return
end

local calls, mib = tonumber(arg[1]) or 300, tonumber(arg[2]) or 64
local bin = core.exe_path()
local base = os.tmpname()
os.remove(base)
assert(os.execute("mkdir -p " .. base) == 0)
local env = "LRAY_TMPDIR=" .. base .. " "
local out = sh(env .. bin .. " start --head --port 0 --dashboard-port 0 --num-cpus 1 2>&1")
local address = assert(out:match("Address for other machines: (%S+)"), out)
local pid_b
for i, res in ipairs({ "B", "C" }) do
  out = sh(("%s%s start --address %s --host 127.0.0.%d --num-cpus 1 --resources '{\"%s\": 1}' 2>&1")
    :format(env, bin, address, i + 1, res))
  if i == 1 then pid_b = assert(out:match("pid (%d+)"), out) end
end
local script = debug.getinfo(1, "S").source:sub(2)
local ok = os.execute(("%s%s %s driver %d %d %s"):format(env, bin, script, calls, mib, pid_b))
sh(env .. bin .. " stop 2>&1")
os.execute("rm -rf " .. base)
os.exit(ok == 0 and 0 or 1)
