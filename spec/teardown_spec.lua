-- Nothing a driver started outlives it: its embedded cluster stops with
-- shutdown, with a normal exit, and when the driver is killed with SIGKILL.
local BIN = os.getenv("LRAY_BIN") or "build/lray"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function exists(path) return os.execute("test -e '" .. path .. "'") == 0 end

-- Processes whose command line names the session (the node: --session DIR,
-- workers: DIR/node.sock). The "(...)" keeps the pattern from matching the
-- shell that runs pgrep.
local function procs_of(session)
  return tonumber(sh("pgrep -f -c -- '" .. session .. "([/ ]|$)' || true")) or 0
end

local function eventually(pred, seconds)
  local deadline = os.time() + seconds + 1
  repeat
    if pred() then return true end
    os.execute("sleep 0.1")
  until os.time() > deadline
  return pred()
end

describe("teardown of the embedded cluster", function()
  it("a driver killed with SIGKILL takes its node, workers, actors and shm with it", function()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
local lray = require("lray")
local ctx = lray.init({num_cpus = 2})
local A = {} function A:ping() return 1 end
local a = lray.remote(A).remote()
lray.get(a.ping.remote())
local busy = lray.remote(function() lray.sleep(60) end)
local r = busy.remote()
local big = lray.put(string.rep("x", 4 * 1024 * 1024))
local out = io.open(arg[1], "w")
out:write(require("lray._core").getpid(), " ", ctx.session_dir, " ",
  require("lray.runtime").info.shm, "\n")
out:close()
lray.sleep(60)
]])
    f:close()
    local info = os.tmpname()
    os.remove(info)
    os.execute(BIN .. " " .. script .. " " .. info .. " >/dev/null 2>&1 &")
    assert(eventually(function() return exists(info) end, 10), "the driver did not start")
    local line = io.open(info):read("*l")
    local pid, session, shm = line:match("^(%d+) (%S+) (%S+)$")
    assert(pid, "unexpected line: " .. tostring(line))
    assert.is_true(exists("/dev/shm/" .. shm))
    assert.is_true(procs_of(session) >= 3, "expected a node, an actor and a busy worker for " .. session)
    os.execute("kill -9 " .. pid)
    assert(eventually(function() return procs_of(session) == 0 end, 5),
      "processes of the killed driver's cluster are still running: " ..
      sh("pgrep -af -- '" .. session .. "/'"))
    assert.is_false(exists("/dev/shm/" .. shm), "its /dev/shm file outlived it")
    assert(eventually(function() return not exists(session) end, 5), "its session directory outlived it")
    os.remove(script)
    os.remove(info)
  end)

  it("a driver that ends normally (no shutdown call) leaves nothing behind", function()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
local lray = require("lray")
local ctx = lray.init({num_cpus = 2})
local A = {} function A:ping() return 1 end
local a = lray.remote(A).remote()
lray.get(a.ping.remote())
local big = lray.put(string.rep("x", 4 * 1024 * 1024))
print(ctx.session_dir, require("lray.runtime").info.shm)
]])
    f:close()
    local out = sh(BIN .. " " .. script .. " 2>&1")
    local session, shm = out:match("(%S+)%s+(%S+)")
    assert(session, out)
    assert(eventually(function() return procs_of(session) == 0 end, 5), "processes remain")
    assert.is_false(exists("/dev/shm/" .. shm))
    assert.is_false(exists(session))
    os.remove(script)
  end)

  it("os.exit in the driver also stops its cluster", function()
    local out = sh(BIN .. [[ -e 'local l = require("lray") local c = l.init{num_cpus = 1}
      print(c.session_dir, require("lray.runtime").info.shm) os.exit(3)' 2>&1; echo "status $?"]])
    local session, shm = out:match("(%S+)%s+(%S+)")
    assert.matches("status 3", out)
    assert(eventually(function() return procs_of(session) == 0 end, 5), "processes remain")
    assert.is_false(exists("/dev/shm/" .. shm))
  end)

  it("a node killed under a waiting driver gives a clear error, and init works again", function()
    local out = sh(BIN .. [[ -e '
      local lray = require("lray")
      lray.init{num_cpus = 1}
      local f = lray.remote(function() lray.sleep(30) return 1 end)
      local r = f.remote()
      lray.sleep(0.3)
      os.execute("pkill -9 -f \"lray _node --session " .. require("lray.runtime").info.session_dir .. "\"")
      local t = lray.now()
      local ok, e = pcall(lray.get, r, {timeout = 10})
      print("get", ok, lray.is_error(e, "RayError"), lray.now() - t < 5, tostring(e))
      lray.shutdown()
      lray.init{num_cpus = 1}
      print("again", lray.get(lray.put(5)))' 2>&1]])
    assert.matches("get\tfalse\ttrue\ttrue\tRayError: the connection to the lray node", out)
    assert.matches("lray.init%(%) to start again", out)
    assert.matches("again\t5", out)
  end)
end)
