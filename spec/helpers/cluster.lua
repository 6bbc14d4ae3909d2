-- spec/helpers/cluster.lua: one embedded cluster per spec file (STYLE.md 7).
--
--   local cluster = require("spec.helpers.cluster")
--   local lray
--   setup(function() lray = cluster.start() end)
--   teardown(function() cluster.stop() end)
--
-- start(opts) calls lray.init with small resources (num_cpus = 2, no GPUs)
-- merged with opts, and returns lray and the init context. stop() calls
-- lray.shutdown and then asserts that nothing this cluster started is left
-- behind: no `lray _worker` / `lray _node` process of its session and no
-- /dev/shm/lray-* region that its node created.
local lray = require("lray")

local M = {}

M.DEFAULTS = { num_cpus = 2, num_gpus = 0 }
M.LEAK_WAIT = 3          -- seconds stop() waits for processes and files to go

local current = nil      -- {ctx, node_pids, shm_before} of the running cluster

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

--- The "pid cmdline" lines of live `lray _worker` / `lray _node` processes of
--- the session in session_dir. Zombies have no command line and do not match.
function M.session_procs(session_dir)
  -- The bracket keeps the pattern from matching the shell running pgrep.
  local pat = "lray [_](worker|node) .*" .. ere(session_dir) .. "([/ ]|$)"
  local lines = {}
  for line in sh("pgrep -af -- " .. q(pat)):gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  return lines
end

--- Names of the /dev/shm/lray-* files, as a set.
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

--- Starts an embedded cluster; returns lray and the init context.
---@param opts table|nil lray.init options overriding DEFAULTS
--- The message of an error value (lray error table or plain string).
function M.msg(e)
  if type(e) == "table" and e.message then return tostring(e.message) end
  return tostring(e)
end

--- pcall(fn, ...) must fail; returns the error value.
function M.fails(fn, ...)
  local ok, e = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  return e
end

function M.start(opts)
  assert(current == nil, "cluster.start: a cluster from this helper is already running")
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  local shm_before = M.shm_files()
  local ctx = lray.init(o)
  assert(type(ctx) == "table" and type(ctx.session_dir) == "string"
    and ctx.session_dir ~= "", "lray.init returned no session_dir")
  current = { ctx = ctx, node_pids = node_pids(ctx.session_dir), shm_before = shm_before }
  assert(#current.node_pids > 0, "cluster.start: no `lray _node` process found for session "
    .. ctx.session_dir)
  return lray, ctx
end

--- The context of the running cluster (nil when none).
function M.ctx() return current and current.ctx end

--- Shuts the cluster down and asserts it left no process or shm region.
function M.stop()
  local c = current
  current = nil
  lray.shutdown()
  assert(not lray.is_initialized(), "lray.is_initialized() is true after lray.shutdown()")
  if not c then return end
  local deadline = lray.now() + M.LEAK_WAIT
  local procs, shm
  repeat
    procs, shm = M.session_procs(c.ctx.session_dir), own_shm(c)
    if #procs == 0 and #shm == 0 then return end
    lray.sleep(0.05)
  until lray.now() > deadline
  error(("cluster.stop: %g s after lray.shutdown() the session %s left behind:\n"
    .. "  processes: %s\n  /dev/shm: %s"):format(M.LEAK_WAIT, c.ctx.session_dir,
    #procs > 0 and table.concat(procs, "; ") or "none",
    #shm > 0 and table.concat(shm, " ") or "none"), 2)
end

return M
