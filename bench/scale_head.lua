-- bench/scale_head.lua: the head's load with many nodes, simulated. Starts a
-- real head (`lray start --head` under a private LRAY_TMPDIR), then opens N
-- TCP connections to it from this one process, each proving the cluster
-- token and registering as a node (node_register), and sends node_view at a
-- real node's cadence (core/raylet/headlink.c): looked at every 100 ms, sent
-- when the node's free resources changed, and at least every second.
-- Measures the head's CPU (/proc/PID/stat), RSS (/proc/PID/status), the
-- messages it received per second, the time `lray list nodes` takes with N
-- nodes, and how long the head takes to declare a node dead when its
-- connection closes and when it goes silent. Loopback only; every phase is
-- bounded in time; the head is stopped and its files removed at the end.
-- Figures and the command are in docs/scale.md.
--
--   ulimit -n 4096   # N connections here and N in the head (default 1024 is short)
--   build/lray bench/scale_head.lua [N=1000] [PHASE_SECONDS=20]
local core = require("lray._core")
local cjson = require("cjson")
local U = dofile((arg and arg[0] or "bench/scale_head.lua"):match("^(.*)/[^/]*$") .. "/scale_util.lua")

local N = tonumber(arg and arg[1]) or 1000
local PHASE = tonumber(arg and arg[2]) or 20
local BIN = core.exe_path()
local ALIVE_S = 1.0 -- headlink.c's VIEW_ALIVE_MS (VIEW_EVERY_MS, 100 ms: the ticker below)
local HZ = 100

local function sh(cmd)
  local f = assert(io.popen(cmd))
  local s = f:read("*a")
  f:close()
  return s
end

local read = U.read

HZ = tonumber(sh("getconf CLK_TCK 2>/dev/null")) or HZ
local fd_limit = tonumber(sh("sh -c 'ulimit -n'"))
if fd_limit and fd_limit < 2 * N + 64 then
  io.stderr:write(("scale_head: the fd limit is %d, %d connections need about %d:"
    .. " run `ulimit -n %d` first\n"):format(fd_limit, N, 2 * N + 64, 2 * N + 64))
  os.exit(2)
end

-- The head ----------------------------------------------------------------------

local BASE = (os.getenv("LRAY_TMPDIR") or "/tmp") .. "/scale-head-" .. core.getpid()
local function lray(args)
  return sh(("LRAY_TMPDIR='%s' '%s' %s 2>&1"):format(BASE, BIN, args))
end

local function stop_head()
  lray("stop")
  os.execute(("rm -rf '%s'"):format(BASE))
end

local function cpu_s(pid) -- user + system CPU seconds of pid
  local s = read("/proc/" .. pid .. "/stat")
  if not s then return nil end
  local rest = s:match("%) (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return (tonumber(f[12]) + tonumber(f[13])) / HZ -- fields 14 and 15 of stat
end

-- Simulated nodes -----------------------------------------------------------------

local nodes = {}      -- i -> {conn, id, last, cpu_free, silent}
local sent, received_dead = 0, 0
local change_p = 0    -- chance that a node's free CPU changed at a tick
local CPU_TOTAL = 16 * 10000

local function res(cpu)
  return { CPU = cpu, memory = 64 * 2 ^ 30 * 10000, object_store_memory = 2 ^ 30 * 10000 }
end

local function send_view(nd, now)
  nd.conn:send({ t = "node_view", node_id = nd.id, res = res(CPU_TOTAL), avail = res(nd.cpu_free) })
  nd.last = now
  sent = sent + 1
end

-- One timer every 10 ms handles a tenth of the nodes, so each node is looked
-- at every 100 ms and the load is spread as real nodes' timers spread it.
local tick = 0
local function on_tick()
  local now = core.hrtime()
  tick = tick + 1
  for i = (tick % 10) + 1, #nodes, 10 do
    local nd = nodes[i]
    if nd.conn and not nd.silent then
      if change_p > 0 and math.random() < change_p then
        nd.cpu_free = math.random(0, 16) * 10000
        send_view(nd, now)
      elseif now - nd.last >= ALIVE_S then
        send_view(nd, now)
      end
    end
  end
end

local function run_for(seconds)
  core.timer(seconds, 0, function() core.stop() end)
  core.run()
end

-- The head's node list, asked over its unix socket without blocking the
-- loop: calls fn(list) when the reply comes.
local state_conn, on_state, rid_n = nil, {}, 0
local function ask_nodes(fn)
  rid_n = rid_n + 1
  local rid = "s" .. rid_n
  on_state[rid] = fn
  state_conn:send({ t = "nodes", rid = rid })
end

-- Waits (running the loop, at most `limit` s) until pred(list) holds;
-- returns the seconds from t0 to the reply that showed it, or nil.
local function wait_list(pred, t0, limit)
  local got
  local function poll()
    ask_nodes(function(list)
      if got then return end
      if pred(list) then got = core.hrtime() - t0; core.stop() return end
      core.timer(0.02, 0, poll)
    end)
  end
  poll()
  local t = core.timer(limit, 0, function() core.stop() end)
  core.run()
  t:stop()
  return got
end

local function find(list, id)
  for _, n in ipairs(list) do if n.node_id == id then return n end end
end

local function count_alive(list)
  local k = 0
  for _, n in ipairs(list) do if n.alive then k = k + 1 end end
  return k
end

-- The run -------------------------------------------------------------------------

local R = {}

local function main()
  os.execute(("mkdir -p '%s'"):format(BASE))
  local out = lray("start --head --port 0 --dashboard-port 0 --num-cpus 1")
  local addr = assert(out:match("Address for other machines: (%S+)"), out)
  local tok = assert(out:match("%-%-token (%x+)"), out)
  local usock = assert(out:match("Address on this machine: (%S+)"), out)
  local hpid = assert(tonumber(read(BASE .. "/head.pid"):match("%d+")))
  state_conn = assert(core.connect(usock))
  state_conn:on_message(function(_, m)
    if m.t == "reply" and on_state[m.rid] then
      local fn = on_state[m.rid]
      on_state[m.rid] = nil
      fn(cjson.decode(m.json).nodes)
    end
  end)
  run_for(0.5)
  R.rss_idle = U.status_mb(hpid, "VmRSS")

  -- Connect and register N nodes, one after the other.
  local t0, c0 = core.hrtime(), cpu_s(hpid)
  local ticker = core.timer(0.01, 0.01, on_tick)
  for i = 1, N do
    local conn, err = core.connect(addr, nil, tok)
    if not conn then error(("node %d could not join: %s"):format(i, tostring(err))) end
    local nd = { conn = conn, id = core.random_hex(14), cpu_free = CPU_TOTAL, last = core.hrtime() }
    conn:on_message(function(_, m) if m.t == "node_dead" then received_dead = received_dead + 1 end end)
    conn:on_close(function() nd.conn = nil end)
    conn:send({ t = "node_register", node_id = nd.id, address = ("127.0.0.1:%d"):format(20000 + i),
      res = res(CPU_TOTAL), avail = res(CPU_TOTAL) })
    nodes[i] = nd
  end
  R.join_s = core.hrtime() - t0
  R.join_cpu = cpu_s(hpid) - c0
  R.alive_after_join = wait_list(function(l) return count_alive(l) == N + 1 end, core.hrtime(), 10)
    and N + 1 or -1
  run_for(2)
  R.rss_joined = U.status_mb(hpid, "VmRSS")

  -- Phases: heartbeats only; about one change per node per second; a change
  -- at every tick (10 views per node per second, the most a node sends).
  R.phases = {}
  for _, ph in ipairs({ { "heartbeats only (1 view/node/s)", 0 }, { "a change per node per s", 0.1 },
                        { "a change at every 100 ms tick", 1 } }) do
    change_p = ph[2]
    run_for(1)
    local s0, tt, cc = sent, core.hrtime(), cpu_s(hpid)
    run_for(PHASE)
    local dt = core.hrtime() - tt
    R.phases[#R.phases + 1] = { name = ph[1], msgs = (sent - s0) / dt,
      cpu = (cpu_s(hpid) - cc) / dt * 100, rss = U.status_mb(hpid, "VmRSS") }
  end
  change_p = 0
  local l0 = {}
  ask_nodes(function(l) l0 = l; core.stop() end)
  core.run()
  R.alive_end = count_alive(l0)

  -- `lray list nodes` with N+1 nodes, as a person runs it. The loop does not
  -- run meanwhile (a few hundred ms of views are late; none is 5 s late).
  local times = {}
  for k = 1, 5 do
    local fmt = k % 2 == 1 and "--format json" or ""
    local tt = core.hrtime()
    local o = lray("list nodes " .. fmt)
    times[#times + 1] = { fmt = fmt == "" and "table" or "json", s = core.hrtime() - tt, bytes = #o }
    run_for(0.3)
  end
  R.list = times

  -- Node death: one connection closes; one node goes silent.
  run_for(1.5)
  local closed, silent = nodes[1], nodes[2]
  local tc = core.hrtime()
  closed.conn:close()
  R.dead_closed = wait_list(function(l)
    local n = find(l, closed.id)
    return n and not n.alive
  end, tc, 10)
  ask_nodes(function(l) R.cause_closed = find(l, closed.id).cause; core.stop() end)
  core.run()
  local ts = core.hrtime()
  silent.silent = true
  local since_view = ts - silent.last
  R.dead_silent = wait_list(function(l)
    local n = find(l, silent.id)
    return n and not n.alive
  end, ts, 10)
  R.dead_silent_since_view = R.dead_silent and R.dead_silent + since_view
  ask_nodes(function(l) R.cause_silent = find(l, silent.id).cause; R.alive_final = count_alive(l);
    core.stop() end)
  core.run()
  run_for(0.5)
  R.node_dead_msgs = received_dead
  R.rss_end = U.status_mb(hpid, "VmRSS")
  R.hwm = U.status_mb(hpid, "VmHWM")
  R.sim_cpu = cpu_s(core.getpid())
  ticker:stop()
  for _, nd in ipairs(nodes) do if nd.conn then nd.conn:close() end end
  state_conn:close()
  run_for(0.2)
end

local ok, err = xpcall(main, debug.traceback)
stop_head()
if not ok then
  io.stderr:write("scale_head: ", tostring(err), "\n")
  os.exit(1)
end

local function f(x, fmt) return x and (fmt or "%.2f"):format(x) or "never" end
print(("scale_head: %d simulated nodes, phases of %d s, %s, load average %s"):format(N, PHASE,
  os.date("!%Y-%m-%d %H:%M UTC"), tostring(U.loadavg())))
print(("join: %d nodes connected, proved the token and registered in %.2f s (%.0f/s);"
  .. " head CPU %.2f s; %d alive listed"):format(N, R.join_s, N / R.join_s, R.join_cpu, R.alive_after_join))
print(("head RSS: %.1f MB idle, %.1f MB with %d nodes, %.1f MB at the end (peak %.1f MB)")
  :format(R.rss_idle, R.rss_joined, N, R.rss_end, R.hwm))
print("phase                               views/s   head CPU %   head RSS MB")
for _, p in ipairs(R.phases) do
  print(("%-34s %9.0f %12.1f %13.1f"):format(p.name, p.msgs, p.cpu, p.rss))
end
print(("nodes alive after the phases: %d of %d"):format(R.alive_end, N + 1))
for _, t in ipairs(R.list) do
  print(("lray list nodes (%s): %.3f s, %d bytes"):format(t.fmt, t.s, t.bytes))
end
print(("death, connection closed: listed dead after %s s (%s)"):format(f(R.dead_closed), tostring(R.cause_closed)))
print(("death, silent: listed dead after %s s of silence, %s s after its last view (%s)")
  :format(f(R.dead_silent), f(R.dead_silent_since_view), tostring(R.cause_silent)))
print(("node_dead messages received: %d; alive at the end: %d of %d; simulator CPU %.1f s")
  :format(R.node_dead_msgs, R.alive_final or -1, N + 1, R.sim_cpu))
