-- bench/profile_tasks.lua: where a trivial task's time goes, per process.
--
--   build/lray bench/profile_tasks.lua [sync|async] [N] [cpu|stat|trace|record]
--
-- Runs N (default 20,000) no-op tasks the way `lray microbenchmark` does
-- (sync: lray.get(f.remote()) one at a time; async: batches of 1,000 then
-- lray.get of the batch) with perf attached to the driver, the node
-- (`lray _node`) and the node's workers, each group separately:
--   cpu    (default, no perf) /proc/<pid>/stat, status and io before and
--          after: CPU us, read/write syscalls, context switches per task,
--          and the machine's steal time (a VM's lost CPU) during the run
--   stat   perf stat: CPU ms, syscalls, context switches per task
--   trace  perf trace -s: the syscalls by name and count, per process
--   record perf record -g on the driver and the node (files in $PROFILE_DIR,
--          default /tmp/lray-profile), then the top of perf report
-- Needs perf (Debian's linux-perf); hardware counters are not needed.
local lray = require("lray")
local core = require("lray._core")
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local U = dofile(dir .. "/scale_util.lua")

local MODE = arg[1] or "async"
local N = tonumber(arg[2]) or 20000
local TOOL = arg[3] or "cpu"
local OUT = os.getenv("PROFILE_DIR") or "/tmp/lray-profile"
assert(MODE == "sync" or MODE == "async", "mode must be sync or async")
os.execute("mkdir -p " .. OUT)

lray.init({ num_cpus = 2 })
local noop = lray.remote(function() return 0 end)

local function batch_async()
  local refs = {}
  for i = 1, 1000 do refs[i] = noop.remote() end
  lray.get(refs)
  return 1000
end
local function batch_sync()
  for _ = 1, 50 do lray.get(noop.remote()) end
  return 50
end
local batch = MODE == "sync" and batch_sync or batch_async
for _ = 1, 3 do batch() end                      -- warm: workers up, traces compiled

local node = U.node_pid()
local groups = {
  { name = "driver", pids = { core.getpid() } },
  { name = "node", pids = { node } },
  { name = "workers", pids = U.worker_pids(node) },
}

local function sh(cmd)
  local f = assert(io.popen(cmd))
  local s = f:read("*a")
  f:close()
  return s
end

-- /proc counters of a list of pids, summed: CPU s, read/write syscalls,
-- voluntary and involuntary context switches.
local HZ = 100
local function proc_counters(pids)
  local c = { cpu = 0, syscr = 0, syscw = 0, vcs = 0, ics = 0 }
  for _, pid in ipairs(pids) do
    local f = io.open("/proc/" .. pid .. "/stat")
    if f then
      local st = f:read("*a"); f:close()
      local rest = st:match("%) (.*)$")
      local fields = {}
      for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
      c.cpu = c.cpu + (tonumber(fields[12]) + tonumber(fields[13])) / HZ  -- utime, stime
      local io_ = io.open("/proc/" .. pid .. "/io")
      local t = io_ and io_:read("*a") or ""
      if io_ then io_:close() end
      c.syscr = c.syscr + (tonumber(t:match("syscr:%s*(%d+)")) or 0)
      c.syscw = c.syscw + (tonumber(t:match("syscw:%s*(%d+)")) or 0)
      local sf = io.open("/proc/" .. pid .. "/status")
      local ss = sf and sf:read("*a") or ""
      if sf then sf:close() end
      c.vcs = c.vcs + (tonumber(ss:match("\nvoluntary_ctxt_switches:%s*(%d+)")) or 0)
      c.ics = c.ics + (tonumber(ss:match("nonvoluntary_ctxt_switches:%s*(%d+)")) or 0)
    end
  end
  return c
end
local function steal_s()
  local f = io.open("/proc/stat")
  local l = f:read("*l"); f:close()
  local v = {}
  for x in l:gmatch("%d+") do v[#v + 1] = tonumber(x) end
  return (v[8] or 0) / HZ
end
if TOOL == "cpu" then
  for _, g in ipairs(groups) do g.c0 = proc_counters(g.pids) end
  local steal0, t0 = steal_s(), U.now()
  local done = 0
  while done < N do done = done + batch() end
  local dt = U.now() - t0
  local steal = steal_s() - steal0
  print(("%s: %d no-op tasks in %.3f s = %.0f tasks/s (%.1f us/task); steal %.2f s; load %s"):format(
    MODE, done, dt, done / dt, dt * 1e6 / done, steal, U.loadavg()))
  for _, g in ipairs(groups) do
    local c1 = proc_counters(g.pids)
    print(("  %-8s (%d pids): %.1f us CPU/task, %.2f reads + %.2f writes/task, %.2f voluntary +"
      .. " %.2f involuntary context switches/task"):format(g.name, #g.pids,
      (c1.cpu - g.c0.cpu) * 1e6 / done, (c1.syscr - g.c0.syscr) / done,
      (c1.syscw - g.c0.syscw) / done, (c1.vcs - g.c0.vcs) / done, (c1.ics - g.c0.ics) / done))
  end
  lray.shutdown()
  os.exit(0)
end

local EVENTS = "task-clock,context-switches,raw_syscalls:sys_enter,page-faults"
for _, g in ipairs(groups) do
  g.file = ("%s/%s-%s-%s.txt"):format(OUT, TOOL, MODE, g.name)
  local pids = table.concat(g.pids, ",")
  local cmd
  if TOOL == "stat" then
    cmd = ("perf stat -e %s -p %s -o %s"):format(EVENTS, pids, g.file)
  elseif TOOL == "trace" then
    cmd = ("perf trace -s -p %s -o %s"):format(pids, g.file)
  elseif TOOL == "record" then
    if g.name == "workers" then goto skip end
    g.data = ("%s/record-%s-%s.data"):format(OUT, MODE, g.name)
    cmd = ("perf record -F 4000 -g -p %s -o %s 2>%s"):format(pids, g.data, g.file)
  else
    error("tool must be stat, trace or record")
  end
  g.perf = tonumber(sh("sh -c '" .. cmd .. " >/dev/null 2>&1 & echo $!'"))
  ::skip::
end
lray.sleep(1.0)                                   -- let perf attach

local t0 = U.now()
local done = 0
while done < N do done = done + batch() end
local dt = U.now() - t0

for _, g in ipairs(groups) do
  if g.perf then os.execute("kill -INT " .. g.perf) end
end
lray.sleep(1.5)                                   -- let perf write its output

print(("%s: %d no-op tasks in %.3f s = %.0f tasks/s under perf %s (load %s)"):format(
  MODE, done, dt, done / dt, TOOL, U.loadavg()))
for _, g in ipairs(groups) do
  local f = io.open(g.file)
  local text = f and f:read("*a") or ""
  if f then f:close() end
  if TOOL == "stat" then
    local function ev(name)
      local v = text:match("([%d,.]+)%s+" .. name:gsub("%p", "%%%0"))
      return v and tonumber((v:gsub(",", ""))) or 0
    end
    print(("  %-8s (%d pids): %.1f us CPU/task, %.2f syscalls/task, %.3f context switches/task,"
      .. " %.3f page faults/task"):format(g.name, #g.pids, ev("msec task-clock") * 1000 / done,
      ev("raw_syscalls:sys_enter") / done, ev("context-switches") / done, ev("page-faults") / done))
  elseif TOOL == "trace" then
    print(("  -- %s (%s)"):format(g.name, g.file))
    local per = {}
    for name, calls in text:gmatch("\n%s+([%w_]+)%s+(%d+)%s+%d+%s+[%d.]+") do
      per[name] = (per[name] or 0) + tonumber(calls)
    end
    local list = {}
    for name, calls in pairs(per) do list[#list + 1] = { name, calls } end
    table.sort(list, function(a, b) return a[2] > b[2] end)
    for i = 1, math.min(#list, 8) do
      print(("     %-16s %9d  %.3f/task"):format(list[i][1], list[i][2], list[i][2] / done))
    end
  elseif g.data then
    print(("  -- %s: perf report -i %s --no-children --sort dso,symbol"):format(g.name, g.data))
    io.write(sh(("perf report -i %s --no-children --sort dso,symbol --stdio -g none 2>/dev/null"
      .. " | grep -v '^#' | grep -v '^$' | head -25"):format(g.data)))
  end
end
lray.shutdown()
