-- bench/soak.lua: a long mixed workload under periodic SIGKILLs, sampling
-- every lray process's memory, open fds, the store and /dev/shm (issue 12,
-- "Soak"; the curve is in docs/reliability.md "Soak").
--
-- Run: build/lray bench/soak.lua [--minutes M] [--csv PATH] [--seed S]
--        [--sample S] [--tick S] [--kill-every S] [--cpus N]
--        [--nodes N] [--node-kill-every S]
--
-- With --nodes N > 1 the cluster is a head (--cpus CPUs) and N - 1 nodes
-- (one CPU each) started with `lray start` on 127.0.0.2, ... under a private
-- LRAY_TMPDIR, the driver on the head; every --node-kill-every seconds
-- (default 60) a random node other than the head is SIGKILLed and a fresh
-- one joins on the next address. The processes sampled are then the head's.
--
-- Every tick (default 1 s) the driver submits a fixed batch and waits for it:
-- small tasks (max_retries = -1), a task that reads a 1 MiB lray.put object,
-- a task that returns a 256 KiB string, one call to each of 4 actors
-- (max_restarts = -1, max_task_retries = -1), a small put and a 1 MiB
-- lray.array put read back; every 10 ticks it creates an actor and kills it
-- (lray.kill). Every --kill-every seconds (default 5) it SIGKILLs a random
-- worker (task or actor). It then sleeps out the rest of the tick, which
-- keeps the whole cluster to a fraction of one core. Every result is
-- checked; a wrong one is counted in `bad`, an error in `errors`.
--
-- Every --sample seconds (default 60) it appends one row to the CSV: the
-- counters so far, then RSS (kB) and open fds (/proc/PID/fd) of the driver,
-- the node, the dashboard and the workers (sum and max over workers), the
-- store's used bytes / allocations / objects (the state API's `status`) and
-- the kB of /dev/shm the node's region has touched (du).
local lray = require("lray")
local core = require("lray._core")
local runtime = require("lray.runtime")

-- -- Options ------------------------------------------------------------------

local opt = {
  minutes = 60, csv = "soak.csv", seed = 12, sample = 60, tick = 1,
  ["kill-every"] = 5, cpus = 2, nodes = 1, ["node-kill-every"] = 60,
}
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-([%w-]+)$")
    if not k or opt[k] == nil or arg[i + 1] == nil then
      io.stderr:write("usage: lray bench/soak.lua [--minutes M] [--csv PATH] [--seed S]"
        .. " [--sample S] [--tick S] [--kill-every S] [--cpus N] [--nodes N]"
        .. " [--node-kill-every S]\n")
      os.exit(2)
    end
    opt[k] = k == "csv" and arg[i + 1] or assert(tonumber(arg[i + 1]), k .. " must be a number")
    i = i + 2
  end
end
math.randomseed(opt.seed)

local U = dofile((arg and arg[0] or "bench/soak.lua"):match("^(.*)/[^/]*$") .. "/scale_util.lua")
local read, sh = U.read, U.sh

-- -- A cluster of several nodes (--nodes) ---------------------------------------

local cluster = nil   -- {base, env, address, head (pid), hosts = {live joined hosts}, next}
local function lray_cmd(args)
  return sh(cluster.env .. core.exe_path() .. " " .. args)
end

local function join_node()
  local host = "127.0.0." .. cluster.next
  cluster.next = cluster.next + 1
  lray_cmd(("start --address %s --host %s --num-cpus 1"):format(cluster.address, host))
  cluster.hosts[#cluster.hosts + 1] = host
end

local ctx
if opt.nodes > 1 then
  local base = os.tmpname()
  os.remove(base)
  os.execute("mkdir -p " .. base)
  cluster = { base = base, env = "LRAY_TMPDIR=" .. base .. " ", hosts = {}, next = 2 }
  local out = lray_cmd(("start --head --port 0 --dashboard-port 0 --num-cpus %d"):format(opt.cpus))
  cluster.address = assert(out:match("Address for other machines: (%S+)"), out)
  cluster.head = tonumber(read(base .. "/head.pid"):match("%d+"))
  for _ = 2, opt.nodes do join_node() end
  ctx = lray.init({ address = "unix:" .. sh("ls -d " .. base .. "/head-*"):gsub("%s+$", "")
    .. "/node.sock" })
else
  ctx = lray.init({ num_cpus = opt.cpus })
end
local DRIVER = core.getpid()

-- -- Process readings ---------------------------------------------------------

local function rss_kb(pid)
  local s = read("/proc/" .. pid .. "/status")
  return s and tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function nfds(pid)
  local t = core.readdir("/proc/" .. pid .. "/fd")
  return t and #t or 0
end

-- The driver's descendants, by role: {node = pid, dashboard = pid, workers = {pid...}}.
local function procs()
  local children, args = {}, {}
  for line in sh("ps -eo pid=,ppid=,args="):gmatch("[^\n]+") do
    local pid, ppid, a = line:match("^%s*(%d+)%s+(%d+)%s+(.*)$")
    if pid then
      pid, ppid = tonumber(pid), tonumber(ppid)
      args[pid] = a
      children[ppid] = children[ppid] or {}
      table.insert(children[ppid], pid)
    end
  end
  local r = { workers = {} }
  local function walk(p)
    for _, c in ipairs(children[p] or {}) do
      local a = args[c]
      if a:find("lray _node", 1, true) then r.node = c
      elseif a:find("lray _dashboard", 1, true) then r.dashboard = c
      elseif a:find("lray _worker", 1, true) then table.insert(r.workers, c) end
      walk(c)
    end
  end
  walk(DRIVER)
  if cluster then
    r.node = cluster.head
    walk(cluster.head)
  end
  -- The node forks the dashboard twice (nobody's child); it names its node.
  for pid, a in pairs(args) do
    if r.node and a:find("lray _dashboard", 1, true) and a:find("--owner " .. r.node, 1, true) then
      r.dashboard = pid
    end
  end
  return r
end

local function shm_kb(node)
  if not node then return 0 end
  local out = sh("du -k /dev/shm/lray-" .. node .. "-*")
  local kb = 0
  for n in out:gmatch("(%d+)%s") do kb = kb + tonumber(n) end
  return kb
end

-- -- Workload -------------------------------------------------------------------

local square = lray.remote({ max_retries = -1 }, function(x) return x * x end)
local length = lray.remote({ max_retries = -1 }, function(s) return #s end)
local make = lray.remote({ max_retries = -1 }, function(n, c) return string.rep(c, n) end)

local Seq = {}
function Seq:init() self.n = 0 end
function Seq:next() self.n = self.n + 1; return self.n end
local RSeq = lray.remote({ max_restarts = -1, max_task_retries = -1 }, Seq)
local Tmp = {}
function Tmp:echo(x) return x end
local RTmp = lray.remote(Tmp)

local actors = {}
for i = 1, 4 do actors[i] = RSeq.remote() end

local c = { ticks = 0, tasks = 0, calls = 0, puts = 0, kills = 0, errors = 0, bad = 0,
  node_kills = 0 }
local last_err

local function check(ok, v, want)
  if not ok then
    c.errors = c.errors + 1
    last_err = tostring(v)
  elseif want ~= nil and v ~= want then
    c.bad = c.bad + 1
    last_err = ("got %s, want %s"):format(tostring(v), tostring(want))
  end
end

local BIG = 1024 * 1024
local function tick()
  local t = c.ticks
  local refs, want = {}, {}
  for i = 1, 20 do
    refs[#refs + 1], want[#want + 1] = square.remote(i + t), (i + t) * (i + t)
  end
  local big = lray.put(string.rep(string.char(65 + t % 26), BIG))
  refs[#refs + 1], want[#want + 1] = length.remote(big), BIG
  local made = make.remote(256 * 1024, "z")
  local calls = {}
  for i = 1, #actors do calls[i] = actors[i].next.remote() end
  local small = lray.put({ t = t, s = "small" })
  local arr = lray.array("double", BIG / 8)
  arr[0], arr[#arr - 1] = t, -t
  local aref = lray.put(arr)

  local oks = { pcall(lray.get, refs, { timeout = 60 }) }
  if oks[1] then
    for i = 1, #want do
      if oks[2][i] ~= want[i] then c.bad = c.bad + 1; last_err = "task " .. i end
    end
  else check(false, oks[2]) end
  local ok, v = pcall(lray.get, made, { timeout = 60 })
  check(ok, ok and #v, 256 * 1024)
  for i = 1, #calls do
    ok, v = pcall(lray.get, calls[i], { timeout = 60 })
    check(ok, ok and type(v), "number")
  end
  ok, v = pcall(lray.get, small)
  check(ok, ok and v.t, t)
  ok, v = pcall(lray.get, aref)
  check(ok, ok and v[0] + v[#v - 1], 0)
  v = nil -- luacheck: ignore 311 (drops the array view for the collector)
  if t % 10 == 9 then
    local a = RTmp.remote()
    ok, v = pcall(lray.get, a.echo.remote(t), { timeout = 60 })
    check(ok, v, t)
    lray.kill(a)
  end
  c.tasks = c.tasks + #refs + 1
  c.calls = c.calls + #calls
  c.puts = c.puts + 3
  c.ticks = t + 1
  big:release(); small:release(); aref:release(); made:release()
  for _, r in ipairs(refs) do r:release() end
  for _, r in ipairs(calls) do r:release() end
end

local function kill_random_worker()
  local items = runtime.state({ t = "list", what = "workers" }).items or {}
  local pids = {}
  for _, w in ipairs(items) do
    if type(w.pid) == "number" and w.pid > 1 then pids[#pids + 1] = w.pid end
  end
  if #pids == 0 then return end
  if core.kill(pids[math.random(#pids)], 9) then c.kills = c.kills + 1 end
end

-- SIGKILLs a random node other than the head; a fresh one joins.
local function kill_random_node()
  if #cluster.hosts == 0 then return end
  local host = table.remove(cluster.hosts, math.random(#cluster.hosts))
  -- Only this cluster's node at host (its session is under our base).
  os.execute("pkill -9 -f '[_]node --session " .. cluster.base .. "/node-[^ ]* .*--host " .. host .. " '")
  c.node_kills = c.node_kills + 1
  join_node()
end

-- -- Sampling -------------------------------------------------------------------

local COLS = { "t_s", "ticks", "tasks", "calls", "puts", "kills", "node_kills", "errors", "bad",
  "workers", "rss_driver_kb", "rss_node_kb", "rss_dashboard_kb", "rss_workers_kb",
  "rss_worker_max_kb", "fds_driver", "fds_node", "fds_dashboard", "fds_workers",
  "fds_worker_max", "store_used", "store_nallocs", "objects", "shm_kb" }
local csv = assert(io.open(opt.csv, "w"))
csv:write(table.concat(COLS, ","), "\n")
csv:flush()

local T0 = lray.now()
local function sample()
  collectgarbage()
  local p = procs()
  local st = runtime.state({ t = "status" })
  local row = {
    t_s = math.floor(lray.now() - T0 + 0.5), workers = #p.workers,
    rss_driver_kb = rss_kb(DRIVER), fds_driver = nfds(DRIVER),
    rss_node_kb = p.node and rss_kb(p.node) or 0, fds_node = p.node and nfds(p.node) or 0,
    rss_dashboard_kb = p.dashboard and rss_kb(p.dashboard) or 0,
    fds_dashboard = p.dashboard and nfds(p.dashboard) or 0,
    rss_workers_kb = 0, rss_worker_max_kb = 0, fds_workers = 0, fds_worker_max = 0,
    store_used = st.store and st.store.used or -1, store_nallocs = st.store and st.store.nallocs or -1,
    objects = st.objects or -1, shm_kb = shm_kb(p.node),
  }
  for _, w in ipairs(p.workers) do
    local r, f = rss_kb(w), nfds(w)
    row.rss_workers_kb = row.rss_workers_kb + r
    row.fds_workers = row.fds_workers + f
    if r > row.rss_worker_max_kb then row.rss_worker_max_kb = r end
    if f > row.fds_worker_max then row.fds_worker_max = f end
  end
  for k, v in pairs(c) do row[k] = v end
  local out = {}
  for i, k in ipairs(COLS) do out[i] = tostring(row[k]) end
  csv:write(table.concat(out, ","), "\n")
  csv:flush()
  io.stdout:write(("[soak] %4ds ticks=%d tasks=%d kills=%d node_kills=%d errors=%d bad=%d rss"
    .. " node=%dk workers=%dk (%d) driver=%dk store=%d shm=%dk%s\n"):format(row.t_s, c.ticks,
    c.tasks, c.kills, c.node_kills, c.errors, c.bad, row.rss_node_kb, row.rss_workers_kb, row.workers,
    row.rss_driver_kb, row.store_used, row.shm_kb, last_err and (" last error: " .. last_err) or ""))
  io.stdout:flush()
  last_err = nil
end

-- -- Main loop ------------------------------------------------------------------

print(("[soak] %g min, seed %d, %d node%s, session %s, csv %s"):format(opt.minutes, opt.seed,
  opt.nodes, opt.nodes == 1 and "" or "s", ctx.session_dir, opt.csv))
sample()
local stop = T0 + opt.minutes * 60
local next_sample, next_kill = T0 + opt.sample, T0 + opt["kill-every"]
local next_node_kill = T0 + opt["node-kill-every"]
while lray.now() < stop do
  local t1 = lray.now()
  tick()
  local now = lray.now()
  if now >= next_kill then
    kill_random_worker()
    next_kill = next_kill + opt["kill-every"]
  end
  if cluster and now >= next_node_kill then
    kill_random_node()
    next_node_kill = next_node_kill + opt["node-kill-every"]
  end
  if now >= next_sample then
    sample()
    next_sample = next_sample + opt.sample
  end
  local rest = opt.tick - (lray.now() - t1)
  if rest > 0 then lray.sleep(rest) end
end
sample()
csv:close()
lray.shutdown()
if cluster then
  lray_cmd("stop")
  os.execute("rm -rf " .. cluster.base)
end
os.exit(c.errors == 0 and c.bad == 0 and 0 or 1)
