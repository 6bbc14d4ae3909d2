-- The cluster commands of the `lray` binary: start, stop, status, list,
-- microbenchmark. A cluster started here outlives the command; drivers join
-- it with lray.init{address = "auto"}.
local core = require("lray._core")
local cluster = require("lray.cluster")
local runtime = require("lray.runtime")
local state = require("lray.state")

local tostring, tonumber, pairs, ipairs, type = tostring, tonumber, pairs, ipairs, type

local M = {}
local PIDFILE = cluster.BASE .. "/head.pid"

local function die(msg)
  io.stderr:write("lray: ", msg, "\n")
  return 1
end

local function parse(argv, first, spec)
  local o, rest = {}, {}
  local i = first
  while i <= #argv do
    local a = argv[i]
    local k, v = a:match("^%-%-([%w-]+)=(.*)$")
    if not k then k = a:match("^%-%-([%w-]+)$") end
    if k then
      k = k:gsub("-", "_")
      if spec[k] == nil then return nil, "unknown option --" .. k:gsub("_", "-") end
      if spec[k] == "flag" then
        o[k] = true
      else
        if not v then i = i + 1; v = argv[i] end
        if v == nil then return nil, "option --" .. k:gsub("_", "-") .. " needs a value" end
        if spec[k] == "number" then
          v = tonumber(v)
          if not v or v < 0 then return nil, "option --" .. k:gsub("_", "-") .. " needs a non-negative number" end
        end
        if spec[k] == "list" then
          o[k] = o[k] or {}
          o[k][#o[k] + 1] = v
        else
          o[k] = v
        end
      end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  return o, rest
end

M.parse = parse

local function read_pid()
  local f = io.open(PIDFILE, "r")
  if not f then return nil end
  local pid = tonumber(f:read("*l"))
  f:close()
  return pid
end

local function alive(pid) return pid and core.kill(pid, 0) ~= nil end

-- -- start -------------------------------------------------------------------

local START = { head = "flag", port = "number", host = "string", num_cpus = "number", num_gpus = "number",
  resources = "string", dashboard_port = "number", dashboard_host = "string", address = "string",
  token = "string", object_store_memory = "number", block = "flag", spill_dir = "string" }

-- --spill-dir, absolute: the node may run from another directory.
local function spill_dir(o)
  local d = o.spill_dir
  if not d or d:sub(1, 1) == "/" then return d end
  return (os.getenv("PWD") or ".") .. "/" .. d
end

-- Nodes joined to a cluster from this machine: BASE/node-<id>.pid each.
local function node_pidfiles()
  local out = {}
  for _, name in ipairs(core.readdir(cluster.BASE) or {}) do
    if name:match("^node%-.+%.pid$") then out[#out + 1] = cluster.BASE .. "/" .. name end
  end
  return out
end

local function read_pidfile(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local pid = tonumber(f:read("*l"))
  f:close()
  return pid
end

-- Starts `lray _node` with args in the background, logging to session's
-- node.log; waits for its unix socket. Returns pid, conn or nil, why.
local function spawn_node(args, session)
  local exited = false
  core.mkdir(session)
  local log = session .. "/node.log"
  local npid, proc = core.spawn({ file = core.exe_path(), args = args, detached = true,
    log = log, on_exit = function() exited = true end })
  if not npid then return nil, tostring(proc) end
  local addr = "unix:" .. session .. "/node.sock"
  local deadline = core.now() + 10
  local conn
  while not conn do
    conn = core.connect(addr)
    if conn or exited or core.now() > deadline then break end
    core.usleep(0.005)
  end
  if not conn then
    proc:kill(9)
    local f = io.open(log)
    local why = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(log)
    os.remove(session .. "/token")
    core.rmdir(session)
    return nil, (why:gsub("%s+$", ""))
  end
  return npid, conn, addr
end

-- The token a node of this cluster uses: a file of its session (0600).
local function session_token(session, tok)
  core.mkdir(session)
  local ok, err = core.token_write(session .. "/token", tok)
  if not ok then return nil, err end
  return session .. "/token"
end

-- The end of both kinds of start: how to stop it; --block waits for it.
local function started(o, npid)
  io.stdout:write("Stop it with: lray stop\n")
  io.stdout:flush()
  if o.block then
    while alive(npid) do core.usleep(0.2) end
  end
  return 0
end

-- `lray start --address HOST:PORT`: a node that joins a running cluster.
local function join(o)
  local tok = cluster.token(o.token)
  if not tok then
    return die("joining needs the cluster's token: pass --token TOKEN or set LRAY_TOKEN"
      .. " (the head printed it; on the head's machine it is in " .. cluster.TOKEN_FILE .. ")")
  end
  local ok, why = core.token_check(tok)
  if not ok then return die("--token: " .. why) end
  core.mkdir(cluster.BASE)
  local id = core.random_hex(3)
  local session = cluster.BASE .. "/node-" .. id
  local tf, terr = session_token(session, tok)
  if not tf then return die(terr) end
  if not core.exists(cluster.TOKEN_FILE) then core.token_write(cluster.TOKEN_FILE, tok) end
  local args = cluster.node_args({ session = session, num_cpus = o.num_cpus,
    num_gpus = o.num_gpus, resources = o.resources, port = o.port or 0, host = o.host,
    object_store_memory = o.object_store_memory, spill_dir = spill_dir(o) })
  args[#args + 1] = "--token-file"; args[#args + 1] = tf
  args[#args + 1] = "--head-address"; args[#args + 1] = o.address
  local npid, conn, addr = spawn_node(args, session)
  if not npid then return die("the node did not join " .. o.address .. ": " .. tostring(conn)) end
  runtime.conn = conn
  conn:on_message(runtime.on_message)
  local st = runtime.state({ t = "status" })
  conn:close()
  local f = io.open(cluster.BASE .. "/node-" .. id .. ".pid", "w"); f:write(npid, "\n"); f:close()
  io.stdout:write(("Joined the lray cluster at %s as node %s (pid %d).\n"):format(o.address,
    tostring(st.node_id), npid))
  io.stdout:write(("  Address on this machine: %s\n"):format(addr))
  return started(o, npid)
end

local function start(argv)
  local o, err = parse(argv, 2, START)
  if not o then return die(err .. " (see API.md: lray start --head [--port P] [--num-cpus N] ...)") end
  if o.resources then
    local ok, res = pcall(require("cjson").decode, o.resources)
    if not ok or type(res) ~= "table" then
      return die("--resources must be a JSON object such as '{\"Custom\": 4}'")
    end
  end
  if o.head and o.address then return die("--head starts a cluster and --address joins one: choose one") end
  if o.address then return join(o) end
  if not o.head then
    return die("say `lray start --head` to start a cluster on this machine, or"
      .. " `lray start --address HOST:PORT --token TOKEN` to join one")
  end
  local pid = read_pid()
  if alive(pid) then
    return die(("a cluster is already running here (pid %d, address %s); `lray stop` stops it")
      :format(pid, tostring(cluster.auto_address())))
  end
  -- The cluster token: given (--token, $LRAY_TOKEN, for deployments that
  -- make it ahead of time) or new; kept for this machine's drivers and CLI.
  local tok = o.token or os.getenv("LRAY_TOKEN")
  if tok == "" then tok = nil end
  tok = tok or core.token_new()
  local ok, why = core.token_check(tok)
  if not ok then return die("--token: " .. why) end
  core.mkdir(cluster.BASE)
  local wok, werr = core.token_write(cluster.TOKEN_FILE, tok)
  if not wok then return die(werr) end
  local session = cluster.BASE .. "/head-" .. core.random_hex(3)
  local tf, terr = session_token(session, tok)
  if not tf then return die(terr) end
  local args = cluster.node_args({ session = session, num_cpus = o.num_cpus,
    num_gpus = o.num_gpus, resources = o.resources, port = o.port or 6380,
    host = o.host, object_store_memory = o.object_store_memory, spill_dir = spill_dir(o) })
  args[#args + 1] = "--token-file"; args[#args + 1] = tf
  local npid, conn, addr = spawn_node(args, session)
  if not npid then return die("the cluster did not start: " .. tostring(conn)) end
  runtime.conn = conn
  conn:on_message(runtime.on_message)
  local st = runtime.state({ t = "status" })
  conn:close()
  local f = io.open(PIDFILE, "w"); f:write(npid, "\n"); f:close()
  local url, dpid
  if o.dashboard_port ~= 0 then
    local dash = require("lray.dashboard")
    local dtoken
    if not dash.is_loopback(o.dashboard_host) then
      dtoken = core.random_hex(16)
      local tfd = io.open(cluster.BASE .. "/dashboard_token", "w")
      tfd:write(dtoken, "\n")
      tfd:close()
      os.execute("chmod 600 '" .. cluster.BASE .. "/dashboard_token'")
    end
    url, dpid = dash.spawn({ node = addr, host = o.dashboard_host, port = o.dashboard_port,
      port_fixed = o.dashboard_port ~= nil, token_file = dtoken and cluster.BASE .. "/dashboard_token",
      log = cluster.BASE .. "/dashboard.log" })
    if not url then io.stderr:write("lray: ", tostring(dpid), "\n") end
  end
  f = io.open(cluster.ADDRESS_FILE, "w")
  f:write(addr, "\n", tostring(st.address), "\n", url or "", "\n")
  f:close()
  local tcp = st.address
  io.stdout:write(("Started an lray cluster (node %s, pid %d).\n"):format(st.node_id, npid))
  io.stdout:write(("  Address on this machine: %s\n"):format(addr))
  io.stdout:write(("  Address for other machines: %s\n"):format(tcp))
  io.stdout:write("Connect a driver on this machine with:\n")
  io.stdout:write("  lray.init{address = \"auto\"}\n")
  io.stdout:write("Join another machine to it with:\n")
  io.stdout:write(("  lray start --address %s --host <that machine's address> --token %s\n")
    :format(tcp, tok))
  io.stdout:write(("  (the token is also in %s, readable by you only)\n"):format(cluster.TOKEN_FILE))
  if url then
    io.stdout:write(("Dashboard: %s\n"):format(url))
    if not require("lray.dashboard").is_loopback(o.dashboard_host) then
      io.stdout:write(("  (requests need the token in %s/dashboard_token:"
        .. " Authorization: Bearer <token>)\n"):format(cluster.BASE))
    end
  end
  return started(o, npid)
end

-- -- stop --------------------------------------------------------------------

local function kill_and_wait(pid)
  core.kill(pid, 15)
  local deadline = core.now() + 5
  while alive(pid) and core.now() < deadline do core.usleep(0.01) end
  if alive(pid) then core.kill(pid, 9) end
end

-- Every node `lray start` started on this machine: the head and joined ones.
local function stop()
  local stopped = {}
  for _, pf in ipairs(node_pidfiles()) do
    local npid = read_pidfile(pf)
    if alive(npid) then kill_and_wait(npid); stopped[#stopped + 1] = npid end
    os.remove(pf)
  end
  local pid = read_pid()
  if alive(pid) then kill_and_wait(pid); stopped[#stopped + 1] = pid end
  os.remove(PIDFILE)
  os.remove(cluster.ADDRESS_FILE)
  os.remove(cluster.TOKEN_FILE)
  -- What nodes killed with SIGKILL left: their sessions and stores.
  for _, name in ipairs(core.readdir(cluster.BASE) or {}) do
    local dir = cluster.BASE .. "/" .. name
    if name:match("^head%-") or name:match("^node%-") and not name:match("%.pid$") then
      local c = core.connect("unix:" .. dir .. "/node.sock")
      if c then
        c:close()
      else
        for _, f in ipairs(core.readdir(dir) or {}) do os.remove(dir .. "/" .. f) end
        core.rmdir(dir)
      end
    end
  end
  core.shm_sweep("lray-")
  if #stopped == 0 then
    io.stdout:write("No lray cluster is running on this machine.\n")
    return 0
  end
  table.sort(stopped)
  local pids = {}
  for i, p in ipairs(stopped) do pids[i] = tostring(p) end
  io.stdout:write(("Stopped the lray cluster (pid %s).\n"):format(table.concat(pids, ", ")))
  return 0
end

-- -- status and list -----------------------------------------------------------

local function connect_auto()
  local addr, why = cluster.find_address()
  if not addr then return nil, why end
  local conn, err = core.connect(addr, nil, cluster.token())
  if not conn then return nil, "cannot reach the cluster at " .. addr .. ": " .. tostring(err) end
  runtime.conn = conn
  conn:on_message(runtime.on_message)
  return conn
end

local function fmt_amount(v)
  if v == math.floor(v) then return tostring(math.floor(v)) end
  return ("%.4g"):format(v)
end

local function status()
  local conn, err = connect_auto()
  if not conn then return die(err) end
  local st = runtime.state({ t = "status" })
  local out = io.stdout
  out:write("======== lray cluster status ========\n")
  local ok, nodes = pcall(runtime.state, { t = "nodes" })
  nodes = ok and nodes.nodes or {}
  if #nodes > 1 then
    -- A cluster of several nodes: each, then this node's own details.
    local up = 0
    for _, n in ipairs(nodes) do if n.alive then up = up + 1 end end
    out:write(("Nodes: %d, %d alive\n"):format(#nodes, up))
    for _, n in ipairs(nodes) do
      local cpu = n.resources and n.resources.CPU or 0
      local free = n.available and n.available.CPU or 0
      out:write(("  %s  %-21s %-5s %s  CPU %s / %s used%s\n"):format(n.node_id:sub(1, 12),
        tostring(n.address), n.is_head and "head" or "", n.alive and "alive" or "DEAD ",
        fmt_amount(cpu - free), fmt_amount(cpu), n.cause and ("  (" .. n.cause .. ")") or ""))
    end
    out:write("This node:\n")
  end
  out:write(("Node %s  %s\n"):format(st.node_id, st.address))
  out:write("Resources (used / total):\n")
  local keys = {}
  for k in pairs(st.total) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local total, avail = st.total[k], st.avail[k] or 0
    local used = total - avail
    if k == "memory" or k == "object_store_memory" then
      out:write(("  %-22s %s / %s GiB\n"):format(k, ("%.2f"):format(used / 2^30), ("%.2f"):format(total / 2^30)))
    else
      out:write(("  %-22s %s / %s\n"):format(k, fmt_amount(used), fmt_amount(total)))
    end
  end
  out:write(("Object store: %d objects, %d bytes in shared memory (%d bytes capacity)\n")
    :format(st.objects, st.store.used, st.store.capacity))
  out:write(("Workers: %d   Queued tasks: %d\n"):format(st.workers, st.queued))
  local url = cluster.auto_dashboard_url()
  if url and cluster.find_address() == cluster.auto_address() then
    out:write(("Dashboard: %s\n"):format(url))
  end
  if st.demand and #st.demand > 0 then
    out:write("Pending demand:\n")
    for _, d in ipairs(st.demand) do
      out:write(("  %s x %d%s\n"):format(d.shape, d.count, d.infeasible and " (infeasible)" or ""))
    end
  else
    out:write("Pending demand: none\n")
  end
  conn:close()
  return 0
end

local COLUMNS = {
  actors = { "actor_id", "class_name", "name", "namespace", "state", "pid", "restarts", "cause" },
  tasks = { "task_id", "name", "state", "type", "pid", "job_id" },
  objects = { "object_id", "size", "where", "count", "ready", "call_site" },
  workers = { "worker_id", "pid", "state" },
  nodes = { "node_id", "address", "alive" },
  jobs = { "job_id", "namespace", "pid", "alive", "start_time" },
}

local function list(argv)
  local what = argv[2]
  if what == "--help" then return M.help({ "help", "list" }) end
  if not COLUMNS[what] then
    return die("usage: lray list actors|tasks|objects|nodes|workers|jobs"
      .. " [--filter KEY=VALUE]... [--limit N] [--format table|json]")
  end
  local o, err = parse(argv, 3, { format = "string", filter = "list", limit = "number" })
  if not o then return die(err) end
  if o.format and o.format ~= "json" and o.format ~= "table" then
    return die("--format is table or json, not " .. o.format)
  end
  local filters, ferr = state.parse_filters(o.filter)
  if not filters then return die(ferr) end
  local conn, cerr = connect_auto()
  if not conn then return die(cerr) end
  local items = state.list(runtime.rpc, what, filters, o.limit)
  conn:close()
  if o.format == "json" then
    io.stdout:write(state.encode_list(items), "\n")
    return 0
  end
  local cols = COLUMNS[what]
  local rows = { {} }
  for i, c in ipairs(cols) do rows[1][i] = c:upper() end
  for _, it in ipairs(items) do
    local row = {}
    for i, c in ipairs(cols) do row[i] = it[c] == nil and "-" or tostring(it[c]) end
    rows[#rows + 1] = row
  end
  io.stdout:write(state.columns(rows))
  return 0
end

local COMMANDS = { start = start, stop = stop, status = status, list = list }
for _, name in ipairs({ "logs", "timeline", "memory", "summary" }) do
  COMMANDS[name] = function(argv)
    local conn, cerr = connect_auto()
    if not conn then return die(cerr) end
    local rc = require("lray.observe")[name](argv, runtime.rpc, conn)
    conn:close()
    return rc
  end
end

--- `lray help [CMD]`, `lray --help`, `lray CMD --help`.
function M.help(argv)
  local which = argv[2]
  if which == "--help" or which == "-h" then which = "help" end
  local h = require("lray.help")
  if which == nil then
    io.stdout:write(h.overview())
    return 0
  end
  local text = h.command(which)
  if not text then return die("no such command: " .. tostring(which) .. " (`lray --help` lists them)") end
  io.stdout:write(text)
  return 0
end

function M.main(argv)
  local cmd = argv[1]
  if cmd == "help" or cmd == "--help" or cmd == "-h" then return M.help(argv) end
  for i = 2, #argv do
    if argv[i] == "--help" or argv[i] == "-h" then return M.help({ "help", cmd }) end
  end
  if cmd == "microbenchmark" then return require("lray.bench").main(argv) end
  local f = COMMANDS[cmd]
  if f then return f(argv) end
  return die("unknown command " .. tostring(cmd) .. " (`lray --help` lists the commands)")
end

return M
