-- spec/helpers/nodes.lua: a cluster of several nodes on this machine, each a
-- separate `lray _node` process started by `lray start`, listening on its own
-- loopback address (127.0.0.1 for the head, 127.0.0.2, 127.0.0.3, ... for
-- the others), with its own store, sockets and workers, under a private
-- LRAY_TMPDIR so nothing else on the machine is touched.
--
--   local nodes = require("spec.helpers.nodes")
--   local c = nodes.start({ nodes = 2, num_cpus = 1 })   -- head + 2
--   c:lray("list nodes --format json")                   -- output, status
--   c:stop()                                             -- and check leftovers
local shell = require("spec.helpers.shell")
local cjson = require("cjson")

local M = {}
local Cluster = {}
Cluster.__index = Cluster

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  return (shell.ok("pwd"):gsub("%s+$", "")) .. "/" .. p
end

M.BIN = abspath(os.getenv("LRAY_BIN") or "build/lray")

--- Runs `lray <args>` against this cluster (its LRAY_TMPDIR); extra env
--- assignments may precede.
function Cluster:lray(args, env)
  return shell.run(("LRAY_TMPDIR=%s %s %s %s"):format(shell.q(self.base), env or "",
    shell.q(M.BIN), args))
end

--- The nodes as `lray list nodes --format json` gives them.
function Cluster:nodes()
  local out, status = self:lray("list nodes --format json")
  assert(status == 0, out)
  return cjson.decode(out)
end

--- Waits (bounded) until pred(self:nodes()) holds; returns true or false.
function Cluster:wait_nodes(pred, seconds)
  local deadline = os.time() + (seconds or 10)
  repeat
    if pred(self:nodes()) then return true end
    shell.run("sleep 0.1")
  until os.time() > deadline
  return false
end

--- Pids of the live `lray _node` processes of this cluster.
function Cluster:node_pids()
  local out = shell.run("pgrep -f -- " .. shell.q("[_]node --session " .. self.base) .. " || true")
  local pids = {}
  for pid in out:gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
  return pids
end

--- The joined nodes by host (127.0.0.2, ...): {sock, pid} of each.
function Cluster:joined()
  local out = {}
  for d in shell.run(("ls -d %s/node-*/"):format(shell.q(self.base))):gmatch("[^\n]+") do
    local sock = d .. "node.sock"
    local st = self:lray("status", "LRAY_ADDRESS=" .. shell.q("unix:" .. sock))
    local host = st:match("Node %S+%s+([%d.]+):%d+")
    local pid = tonumber(shell.read(d:gsub("/$", "") .. ".pid"):match("%d+"))
    if host then out[host] = { sock = sock, pid = pid } end
  end
  return out
end

--- Joins one more node at host; returns `lray start`'s output and status.
function Cluster:join(host, extra, env)
  return self:lray(("start --address %s --host %s %s"):format(self.address, host, extra or ""), env)
end

--- Starts a head and opts.nodes more nodes (num_cpus each, default 1);
--- opts.extra[i]: more options for node i, opts.head_extra for the head.
function M.start(opts)
  opts = opts or {}
  local self = setmetatable({}, Cluster)
  self.base = os.tmpname()
  os.remove(self.base)
  shell.ok("mkdir -p " .. shell.q(self.base))
  local out, status = self:lray(("start --head --port 0 --dashboard-port 0 --num-cpus %d %s")
    :format(opts.head_cpus or 1, opts.head_extra or ""))
  assert(status == 0, out)
  self.address = assert(out:match("Address for other machines: (%S+)"), out)
  self.token = assert(out:match("%-%-token (%x+)"), out)
  self.pids = {}
  for i = 1, opts.nodes or 0 do
    local o, st = self:join("127.0.0." .. (i + 1), ("--num-cpus %d %s"):format(opts.num_cpus or 1,
      opts.extra and opts.extra[i] or ""))
    assert(st == 0, o)
  end
  return self
end

--- Stops every node (`lray stop`) and returns what is left behind: live
--- node processes of this cluster and entries of its LRAY_TMPDIR.
function Cluster:stop()
  local out = self:lray("stop")
  local left = {}
  for _, pid in ipairs(self:node_pids()) do left[#left + 1] = "process " .. pid end
  local ls = shell.run("ls -A " .. shell.q(self.base))
  for name in ls:gmatch("[^\n]+") do
    if name ~= "dashboard.log" then left[#left + 1] = name end
  end
  shell.run("rm -rf " .. shell.q(self.base))
  return left, out
end

--- Lua for the start of a driver script run against a cluster (the lray
--- binary is arg[1]): lray started and joined, and helpers: used(sock), the
--- bytes in use in the store of the node at sock (nil: the head; `lray
--- status`); poll(pred, seconds), a bounded poll; fill(n, k) and sum(a), an
--- array with a known checksum; host_of(node_id), a node's host.
M.DRIVER = [==[
local lray = require("lray")
local bin = arg[1]
lray.init({ address = "auto" })

local function used(sock)
  local addr = sock and ("unix:" .. sock) or "auto"
  local f = io.popen(("LRAY_ADDRESS=%s %s status 2>&1"):format(addr, bin))
  local out = f:read("*a")
  f:close()
  return tonumber(out:match("(%d+) bytes in shared memory")) or -1
end

local function poll(pred, seconds)
  for _ = 1, (seconds or 10) * 20 do
    if pred() then return true end
    os.execute("sleep 0.05")
  end
  return pred()
end

local function fill(n, k)
  local a = lray.array("uint8_t", n)
  for i = 0, n - 1 do a[i] = (i * (k or 7) + math.floor(i / 4096)) % 251 end
  return a
end
local function sum(a)
  local s = 0
  for i = 0, #a - 1 do s = (s * 31 + a[i]) % 1000000007 end
  return s
end

local function host_of(node_id)
  for _, n in ipairs(lray.nodes()) do
    if n.node_id == node_id then return n.address:match("^(.*):%d+$") end
  end
end
]==]

return M
