-- lray.testing: a cluster for a spec file, and a check that it left nothing
-- behind. For users' busted specs (docs/testing.md) and lray's own
-- (spec/helpers/cluster.lua).
--
--   local testing = require("lray.testing")
--   local lray
--   lazy_setup(function() lray = testing.start({num_cpus = 2}) end)
--   lazy_teardown(function() testing.stop() end)
--
-- start(opts) calls lray.init with small fixed resources (num_cpus = 2,
-- num_gpus = 0) merged with opts. stop() calls lray.shutdown and then raises
-- when, after a bound, any `lray _worker` / `lray _node` process of the
-- cluster's session or any /dev/shm/lray-* region its node made is still
-- there.
local lray = require("lray")
local misuse = require("lray.errors").misuse

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local M = {}

M.DEFAULTS = { num_cpus = 2, num_gpus = 0 }
M.LEAK_WAIT = 3          -- seconds stop() waits for processes and files to go

local current = nil      -- {ctx, node_pids, shm_before, leak_wait} of the running cluster

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>/dev/null"))
  local out = f:read("*a")
  f:close()
  return out
end

-- Escapes s for an extended regular expression (pgrep -f).
local function ere(s)
  return (s:gsub("[%^%$%.%[%]%(%)%*%+%?%{%}%|\\]", "\\%0"))
end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

---@param session_dir string
---@return string[] "pid cmdline" of the live `lray _worker` / `lray _node`
--- processes of the session. Zombies have no command line and do not match.
function M.session_procs(session_dir)
  -- The bracket keeps the pattern from matching the shell running pgrep.
  local pat = "lray [_](worker|node) .*" .. ere(session_dir) .. "([/ ]|$)"
  local lines = {}
  for line in sh("pgrep -af -- " .. q(pat)):gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  return lines
end

---@return table<string, true> names of the /dev/shm/lray-* files
function M.shm_files()
  local set = {}
  for name in sh("ls /dev/shm"):gmatch("[^\n]+") do
    if name:match("^lray%-") then set[name] = true end
  end
  return set
end

-- pids of the `lray _node` processes of the session.
local function node_pids(session_dir)
  local pids = {}
  for _, line in ipairs(M.session_procs(session_dir)) do
    local pid, cmd = line:match("^(%d+)%s+(.*)$")
    if pid and cmd:find("_node", 1, true) then pids[#pids + 1] = pid end
  end
  return pids
end

-- The shm regions the cluster made: named after its node's pid
-- ("lray-<pid>-<random>"), or, when the node cannot be found, every region
-- that appeared since start.
local function own_shm(c)
  local left = {}
  for name in pairs(M.shm_files()) do
    local mine = false
    for _, pid in ipairs(c.node_pids) do
      if name:sub(1, #pid + 6) == "lray-" .. pid .. "-" then mine = true end
    end
    if #c.node_pids == 0 and not c.shm_before[name] then mine = true end
    if mine then left[#left + 1] = name end
  end
  table.sort(left)
  return left
end

--- Starts a local cluster for a spec file; returns lray and the context.
---@param opts table|nil lray.init options over DEFAULTS, and nodes, leak_wait
---@return table lray
---@return table ctx
function M.start(opts)
  if opts ~= nil and type(opts) ~= "table" then
    misuse("lray.testing.start: options must be a table, got " .. type(opts), 2)
  end
  if current then
    misuse("lray.testing.start: a cluster from lray.testing is already running;"
      .. " call lray.testing.stop() first (one cluster per spec file)", 2)
  end
  local o, leak_wait = {}, M.LEAK_WAIT
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.nodes ~= nil and o.nodes ~= 1 then
    misuse("lray.testing.start: nodes = " .. tostring(o.nodes) .. ": this lray runs one node per"
      .. " cluster, so a test cluster has exactly 1 node", 2)
  end
  if o.leak_wait ~= nil then
    if type(o.leak_wait) ~= "number" or o.leak_wait < 0 then
      misuse("lray.testing.start: leak_wait must be a non-negative number of seconds", 2)
    end
    leak_wait = o.leak_wait
  end
  o.nodes, o.leak_wait = nil, nil
  if lray.is_initialized() then
    misuse("lray.testing.start: lray is already initialized in this process; call"
      .. " lray.shutdown() first, so the spec gets a cluster of its own", 2)
  end
  local shm_before = M.shm_files()
  local ctx = lray.init(o)
  current = { ctx = ctx, node_pids = node_pids(ctx.session_dir), shm_before = shm_before,
    leak_wait = leak_wait }
  if #current.node_pids == 0 then
    current = nil
    lray.shutdown()
    error("lray.testing.start: no `lray _node` process found for session " .. ctx.session_dir, 2)
  end
  return lray, ctx
end

---@return table|nil ctx the running cluster's context (nil when none)
function M.ctx() return current and current.ctx end

--- Shuts the cluster down and raises if it left processes or shm regions.
function M.stop()
  local c = current
  current = nil
  lray.shutdown()
  if lray.is_initialized() then error("lray.testing.stop: lray is still initialized after lray.shutdown()", 2) end
  if not c then return end
  local deadline = lray.now() + c.leak_wait
  local procs, shm
  repeat
    procs, shm = M.session_procs(c.ctx.session_dir), own_shm(c)
    if #procs == 0 and #shm == 0 then return end
    lray.sleep(0.05)
  until lray.now() > deadline
  error(("lray.testing.stop: %g s after lray.shutdown() the session %s left behind:\n"
    .. "  processes: %s\n  /dev/shm: %s"):format(c.leak_wait, c.ctx.session_dir,
    #procs > 0 and table.concat(procs, "; ") or "none",
    #shm > 0 and table.concat(shm, " ") or "none"), 2)
end

return M
