-- Starting, joining and leaving clusters from a driver: the embedded node an
-- lray.init() with no address starts, "auto" and "host:port" addresses, and
-- the teardown at shutdown.
local core = require("lray._core")
local runtime = require("lray.runtime")

local tostring, tonumber, type, ipairs = tostring, tonumber, type, ipairs

local M = {}

M.BASE = os.getenv("LRAY_TMPDIR") or "/tmp/lray"
M.ADDRESS_FILE = M.BASE .. "/address"
-- The cluster token `lray start` made or was given, readable by its owner
-- only: drivers, the CLI and `lray start --address` on this machine find it.
M.TOKEN_FILE = M.BASE .. "/token"

local node_proc = nil
local node = nil      -- {exited = bool} for the embedded node of this session

local function detect_gpus()
  local cvd = os.getenv("CUDA_VISIBLE_DEVICES")
  if cvd then
    local n = 0
    for id in cvd:gmatch("[^,%s]+") do if id ~= "-1" then n = n + 1 end end
    return n
  end
  local n = 0
  while core.exists("/dev/nvidia" .. n) do n = n + 1 end
  return n
end
M.detect_gpus = detect_gpus

--- Arguments for `lray _node` from init/start options.
function M.node_args(o)
  local args = { "_node" }
  local function add(k, v) if v ~= nil then args[#args + 1] = "--" .. k; args[#args + 1] = tostring(v) end end
  add("session", o.session)
  add("owner", o.owner)
  add("num-cpus", o.num_cpus or core.ncpu())
  add("num-gpus", o.num_gpus or detect_gpus())
  add("memory", o.memory or math.floor(core.total_memory() * 0.7))
  add("object-store-memory", o.object_store_memory)
  add("port", o.port)
  add("host", o.host)
  add("prestart", o.prestart)
  add("dashboard-fd", o.dashboard_fd)
  add("spill-dir", o.spill_dir)
  if o.resources then
    -- One --resource NAME=AMOUNT per custom kind (the node reads no JSON).
    local res = o.resources
    if type(res) == "string" then res = require("cjson").decode(res) end
    local names = {}
    for k in pairs(res) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do add("resource", ("%s=%.17g"):format(k, res[k])) end
  end
  return args
end

M.DASHBOARD_PORT = 8265

--- Binds the dashboard's socket at host:port, or the next free port above
--- it when the port was not chosen (fixed false). Returns the listening fd
--- (children inherit it) and the URL; nil, nil, why when no port is free.
function M.dashboard_bind(host, port, fixed)
  host = host or "127.0.0.1"
  port = port or M.DASHBOARD_PORT
  local fd, got, err
  for p = port, port + (fixed and 0 or 99) do
    fd, got = core.http_bind(host, p)
    if fd then break end
    err = got
  end
  if not fd then return nil, nil, "the dashboard cannot listen: " .. tostring(err) end
  local shown = host == "0.0.0.0" and "127.0.0.1" or host
  return fd, ("http://%s:%d"):format(shown, got)
end

--- Connects to the node at addr, retrying while it starts up.
local function connect_retry(addr, hello, seconds, started)
  local deadline = core.now() + seconds
  local delay = 0.001
  while true do
    local w, err = runtime.connect(addr, hello)
    if w then return w end
    if core.now() > deadline or (started and started.exited) then return nil, err end
    core.usleep(delay)
    delay = math.min(delay * 2, 0.02)
  end
end

--- Removes session directories left by drivers that died with their node
--- (a node killed with SIGKILL cannot clean up after itself).
function M.sweep_sessions()
  for _, name in ipairs(core.readdir(M.BASE) or {}) do
    local pid = tonumber(name:match("^s%-(%d+)%-"))
    if pid and pid ~= core.getpid() and not core.kill(pid, 0) then
      local dir = M.BASE .. "/" .. name
      for _, f in ipairs(core.readdir(dir) or {}) do core.unlink(dir .. "/" .. f) end
      core.rmdir(dir)
    end
  end
end

--- Starts an embedded node owned by this driver and connects to it.
function M.start_embedded(o, hello)
  core.mkdir(M.BASE)
  M.sweep_sessions()
  local session = M.BASE .. "/s-" .. core.getpid() .. "-" .. core.random_hex(3)
  -- The dashboard's socket is bound here, so its URL is known at once; the
  -- node starts the dashboard process on it once its own start is over.
  local dash_fd, dash_url
  if o.include_dashboard ~= false and o.dashboard_port ~= 0 then
    local why
    dash_fd, dash_url, why = M.dashboard_bind(o.dashboard_host, o.dashboard_port,
      o.dashboard_port ~= nil)
    if not dash_fd then io.stderr:write("lray: ", tostring(why), "\n") end
  end
  local args = M.node_args({ session = session, owner = core.getpid(),
    num_cpus = o.num_cpus, num_gpus = o.num_gpus, resources = o.resources,
    object_store_memory = o.object_store_memory, prestart = o._prestart, dashboard_fd = dash_fd })
  local this = { exited = false }
  node = this
  -- Its own session: a Ctrl-C meant for the driver's REPL must not reach
  -- the node or its workers. It still dies with us (parent-death signal).
  local pid, proc = core.spawn({ file = core.exe_path(), args = args, detached = true,
    on_exit = function() this.exited = true end })
  if dash_fd then core.close_fd(dash_fd) end
  if not pid then error("lray.init: could not start the local cluster: " .. tostring(proc), 3) end
  node_proc = proc
  local w, err = connect_retry("unix:" .. session .. "/node.sock", hello, 10, this)
  if not w then
    proc:kill(9)
    error("lray.init: the local cluster did not come up: " .. tostring(err), 3)
  end
  if dash_url then
    w.dashboard_url = dash_url
    if core.isatty(2) then io.stderr:write("lray: dashboard at ", dash_url, "\n") end
  end
  return w
end

-- $LRAY_ADDRESS, unless unset, empty or "auto".
local function env_address()
  local env = os.getenv("LRAY_ADDRESS")
  if env and env ~= "" and env ~= "auto" then return env end
  return nil
end

--- The address `lray start` left for "auto".
function M.auto_address()
  local env = env_address()
  if env then return env end
  local f = io.open(M.ADDRESS_FILE, "r")
  if not f then return nil end
  local a = f:read("*l")
  f:close()
  return a
end

--- The dashboard URL `lray start` left beside the address, or nil.
function M.auto_dashboard_url()
  local f = io.open(M.ADDRESS_FILE, "r")
  if not f then return nil end
  f:read("*l"); f:read("*l")
  local url = f:read("*l")
  f:close()
  return url ~= "" and url or nil
end

local function cmdline(pid)
  local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
  if not f then return "?" end
  local s = f:read("*a"):gsub("%z$", ""):gsub("%z", " ")
  f:close()
  return s
end

--- The clusters running on this machine: {address, pid, kind, session}, the
--- one `lray start` started first, then those of drivers' lray.init().
function M.local_clusters()
  local out = {}
  local f = io.open(M.BASE .. "/head.pid", "r")
  local hpid = f and tonumber(f:read("*l"))
  if f then f:close() end
  if hpid and core.kill(hpid, 0) ~= nil then
    local a = M.auto_address()
    if a then out[1] = { address = a, pid = hpid, kind = "lray start" } end
  end
  local names = core.readdir(M.BASE) or {}
  table.sort(names)
  for _, name in ipairs(names) do
    local pid = tonumber(name:match("^s%-(%d+)%-"))
    local sock = M.BASE .. "/" .. name .. "/node.sock"
    if pid and core.kill(pid, 0) ~= nil and core.exists(sock) then
      out[#out + 1] = { address = "unix:" .. sock, pid = pid, session = M.BASE .. "/" .. name,
        kind = "driver pid " .. pid .. ": " .. cmdline(pid) }
    end
  end
  return out
end

--- The address the CLI talks to: $LRAY_ADDRESS, the cluster of `lray start`,
--- or the one embedded cluster a running script started. nil and why else.
function M.find_address()
  local env = env_address()
  if env then return env end
  local all = M.local_clusters()
  if #all == 0 then
    return nil, "no lray cluster is running on this machine (`lray start --head` starts one;"
      .. " a script's lray.init() runs one while it runs)"
  end
  if all[1].kind == "lray start" or #all == 1 then return all[1].address end
  local lines = { "several lray clusters run on this machine; choose one with LRAY_ADDRESS=...:" }
  for _, c in ipairs(all) do
    lines[#lines + 1] = ("  LRAY_ADDRESS=%s   (%s)"):format(c.address, c.kind)
  end
  return nil, table.concat(lines, "\n")
end

--- The cluster token: given, $LRAY_TOKEN, or the file of this machine's
--- cluster. nil when there is none.
function M.token(given)
  if given then return given end
  local env = os.getenv("LRAY_TOKEN")
  if env and env ~= "" then return env end
  if core.exists(M.TOKEN_FILE) then return (core.token_read(M.TOKEN_FILE)) end
  return nil
end

--- Connects to addr with the cluster token; raises AuthenticationError (an
--- error value) when the token is refused. Returns what runtime.connect does.
function M.connect(addr, hello, token, level)
  local tok = M.token(token)
  local w, err, kind = runtime.connect(addr, hello, tok)
  -- Over TCP the node never sends the token back: keep the one that worked,
  -- for the workers, actors and nodes this driver reaches over TCP.
  if w and not w.token then w.token = tok end
  if not w and kind == "AuthenticationError" then
    error(require("lray.errors").new("AuthenticationError", err .. ("; pass the cluster's token"
      .. " (lray.init{token = ...}, --token, or $LRAY_TOKEN); on a machine of the cluster it"
      .. " is in %s"):format(M.TOKEN_FILE)), level and level + 1 or 2)
  end
  return w, err
end

function M.join(addr, hello, token)
  if addr == "auto" then
    local a = M.auto_address()
    if not a then
      error("lray.init{address = \"auto\"}: no running cluster found on this machine;"
        .. " start one with `lray start --head` or set LRAY_ADDRESS", 3)
    end
    addr = a
  end
  local w, err = M.connect(addr, hello, token, 3)
  if w and addr == M.auto_address() then w.dashboard_url = M.auto_dashboard_url() end
  if not w then
    error(("lray.init: cannot reach the cluster at %s (%s); is `lray start --head`"
      .. " running there?"):format(addr, tostring(err)), 3)
  end
  return w
end

--- Leaves the cluster; stops the embedded node if this driver owns it.
function M.leave()
  if runtime.conn and not runtime.lost then require("lray.submit").flush_remote(2) end
  runtime.leaving = true
  if runtime.conn and runtime.conn:is_open() and not runtime.lost then
    -- The reply comes after the output of our tasks still on its way.
    local done = false
    runtime.request({ t = "shutdown" }, function() done = true end)
    runtime.wait_until(function() return done or not runtime.conn:is_open() end,
      core.now() + 2, true)
    if runtime.conn:is_open() then runtime.conn:close() end
  end
  if node_proc then
    local deadline = core.now() + 3
    while not node.exited and core.now() < deadline do
      core.timer(0.005, 0, function() end)
      core.run_once()
    end
    if not node.exited then node_proc:kill(9) end
    node_proc = nil
  end
  -- Let the loop finish closing handles.
  for _ = 1, 3 do core.poll() end
end

return M
