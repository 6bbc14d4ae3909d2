-- API.md "The `lray` command" and "Loading and lifecycle" (address = "auto"):
-- the long-running cluster of `lray start --head`, seen from the outside.
-- start/status/stop, drivers (subprocesses) that join it with
-- lray.init{address = "auto"}, detached actors shared between drivers, what a
-- driver's exit ends, whose output goes to which driver, and `lray list`.
--
-- The cluster runs under a private LRAY_TMPDIR with an OS-chosen port, so this
-- file neither sees nor stops a cluster someone else started with plain
-- `lray start --head`. Should that private directory ever be ignored, start
-- still waits (up to 20 s) for another cluster to go away instead of failing.
local lray = require("lray")   -- only lray.now / lray.sleep here: no init
local helper = require("spec.helpers.cluster")

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  return out
end

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  return (sh("pwd"):gsub("%s+$", "")) .. "/" .. p
end

local BIN = abspath(os.getenv("LRAY_BIN") or "build/lray")

local tmp          -- private directory of this file: scripts, outputs
local base         -- LRAY_TMPDIR of the cluster under test
local ENV          -- environment prefix for every lray command

-- Runs a shell command line; returns its stdout+stderr and exit status.
local function run(cmd)
  local f = assert(io.popen(cmd .. " 2>&1; echo \"__status=$?\""))
  local out = f:read("*a")
  f:close()
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return (out:gsub("__status=%d+%s*$", "")), status
end

-- Runs `lray <args>` against the cluster under test.
local function lray_cmd(args)
  return run(ENV .. q(BIN) .. " " .. args)
end

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs `lray start <args>` with its output in a file, not a pipe: the node
-- it leaves running must not hold our pipe open (see the pipe test below).
local function lray_start(args)
  local log = tmp .. "/start.out"
  local _, status = run(ENV .. q(BIN) .. " start " .. args .. " >" .. q(log) .. " 2>&1")
  return read_file(log), status
end

local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local script_n = 0
-- Writes a driver script; returns its path.
local function script(text)
  script_n = script_n + 1
  local path = ("%s/driver%d.lua"):format(tmp, script_n)
  write_file(path, text)
  return path
end

-- Runs a driver script to its end; returns output and exit status.
local function run_driver(path, args)
  return run(ENV .. q(BIN) .. " " .. q(path) .. (args and (" " .. args) or ""))
end

local function alive(pid)
  local r = os.execute("kill -0 " .. tonumber(pid) .. " 2>/dev/null")
  return r == 0 or r == true
end

-- -- The cluster under test ------------------------------------------------------

local head = nil   -- {out, pid, session, sock, tcp} while started by this file

-- `lray start --head --num-cpus 2`; retries while another cluster runs.
local function start_cluster()
  local deadline = lray.now() + 20
  local out, status
  while true do
    out, status = lray_start("--head --num-cpus 2 --port 0")
    if status == 0 or not out:find("already running", 1, true) or lray.now() > deadline then
      break
    end
    lray.sleep(0.5)
  end
  assert(status == 0, "lray start --head failed (status " .. tostring(status) .. "):\n" .. out)
  local sock = out:match("(unix:%S+)")
  head = { out = out, pid = tonumber(out:match("pid (%d+)")), sock = sock,
    session = sock and sock:match("^unix:(.*)/node%.sock$"),
    tcp = out:match("for other machines: (%S+)") }
  return head
end

local function stop_cluster()
  if not head then return end
  head = nil
  return lray_cmd("stop")
end

-- `lray list actors --format json`, decoded.
local function list_actors()
  local out, status = lray_cmd("list actors --format json")
  assert(status == 0, "lray list actors --format json failed:\n" .. out)
  local ok, items = pcall(require("cjson").decode, out)
  assert(ok and type(items) == "table", "not JSON:\n" .. out)
  return items
end

local function find_actor(items, aid)
  for _, it in ipairs(items) do
    if it.actor_id == aid then return it end
  end
  return nil
end

-- Polls `lray list actors` until pred(rows) holds or `seconds` pass; returns
-- the last rows.
local function wait_actors(seconds, pred)
  local deadline = lray.now() + seconds
  local items
  repeat
    items = list_actors()
    if pred(items) then return items end
    lray.sleep(0.1)
  until lray.now() > deadline
  return items
end

-- The class every driver uses.
local COUNTER = [[
local lray = require("lray")
local Counter = {}
function Counter:init(start) self.n = start or 0 end
function Counter:next() self.n = self.n + 1; return self.n end
function Counter:get() return self.n end
function Counter:pid() return require("lray._core").getpid() end
local RCounter = lray.remote(Counter)
local aid_of = function(h) return require("lray.actor").handle_info(h).aid end
]]

setup(function()
  tmp = os.tmpname()
  os.remove(tmp)
  assert(os.execute("mkdir -p " .. q(tmp) .. "/base " .. q(tmp) .. "/empty"))
  base = tmp .. "/base"
  ENV = "LRAY_TMPDIR=" .. q(base) .. " LRAY_ADDRESS= "
end)

teardown(function()
  stop_cluster()
  os.execute("rm -rf " .. q(tmp))
end)

-- -- Tests ----------------------------------------------------------------------------

describe("lray stop with nothing running", function()
  it("says so and exits 0", function()
    local out, status = lray_cmd("stop")
    assert.are.equal(0, status)
    assert.matches("No lray cluster is running", out, 1, true)
  end)
end)

describe("lray.init{address = \"auto\"} with no cluster running", function()
  it("raises an error naming `lray start --head`", function()
    local path = script([[
local ok, e = pcall(require("lray").init, { address = "auto" })
print("ok=" .. tostring(ok))
print("err=" .. tostring(type(e) == "table" and e.message or e))
]])
    -- A directory where no cluster was ever started.
    local out, status = run("LRAY_TMPDIR=" .. q(tmp .. "/empty") .. " LRAY_ADDRESS= "
      .. q(BIN) .. " " .. q(path))
    assert.are.equal(0, status, out)
    assert.matches("ok=false", out, 1, true)
    assert.matches("lray start --head", out, 1, true)
  end)
end)

describe("a cluster started with lray start --head", function()
  setup(function()
    start_cluster()
  end)

  teardown(function()
    stop_cluster()
  end)

  it("lray start --head prints the address and how to connect", function()
    local out = head.out
    assert.is_number(head.pid, out)
    assert.is_true(alive(head.pid), "the cluster's process is not running")
    assert.is_string(head.session, "no unix address in:\n" .. out)
    assert.is_truthy(head.tcp and head.tcp:match("^[%w%.%-]+:%d+$"), "no host:port address in:\n" .. out)
    assert.matches('lray.init{address = "auto"}', out, 1, true)
    assert.matches("lray stop", out, 1, true)
  end)

  it("listens on loopback only unless --host says otherwise", function()
    local port = tonumber(head.tcp:match(":(%d+)$"))
    assert.are.equal("127.0.0.1", head.tcp:match("^(.*):%d+$"))
    -- /proc/net/tcp lists listening sockets (state 0A) as hex addr:port.
    local listening = {}
    for line in io.lines("/proc/net/tcp") do
      local addr, p, st = line:match("^%s*%d+:%s+(%x+):(%x+)%s+%x+:%x+%s+(%x+)")
      if addr and tonumber(p, 16) == port and st == "0A" then listening[#listening + 1] = addr end
    end
    assert.are.same({ "0100007F" }, listening)
  end)

  it("a second lray start --head says a cluster is already running and leaves it alone", function()
    local out, status = lray_start("--head --num-cpus 2 --port 0")
    assert.are_not.equal(0, status)
    assert.matches("already running", out, 1, true)
    assert.is_true(alive(head.pid))
    local _, st = lray_cmd("status")
    assert.are.equal(0, st)
  end)

  it("lray status prints the node and its resources", function()
    local out, status = lray_cmd("status")
    assert.are.equal(0, status, out)
    local probe = script([[print("NODE " .. require("lray").init({ address = "auto" }).node_id)]])
    local pout = run_driver(probe)
    local node_id = pout:match("NODE (%S+)")
    assert.is_string(node_id, pout)
    assert.matches(node_id, out, 1, true)
    assert.is_truthy(out:match("CPU%s+[%d%.]+ / 2\n"), "no 'CPU used / 2' line in:\n" .. out)
    assert.matches("object_store_memory", out, 1, true)
  end)

  it("two drivers share a named detached actor; lray list actors shows it ALIVE with name and namespace", function()
    local creator = script(COUNTER .. [[
lray.init({ address = "auto", namespace = "shared" })
local c = RCounter.options({ name = "SharedCounter", lifetime = "detached" }).remote(40)
lray.get(c.next.remote())
print("AID " .. aid_of(c) .. " N " .. lray.get(c.next.remote()))
]])
    local out1, st1 = run_driver(creator)
    assert.are.equal(0, st1, out1)
    local aid = out1:match("AID (%x+) N 42")
    assert.is_string(aid, "driver 1 said:\n" .. out1)

    local user = script(COUNTER .. [[
lray.init({ address = "auto", namespace = "shared" })
local c = lray.get_actor("SharedCounter")
print("SEES " .. lray.get(c.get.remote()) .. " AID " .. aid_of(c))
print("NEXT " .. lray.get(c.next.remote()))
]])
    local out2, st2 = run_driver(user)
    assert.are.equal(0, st2, out2)
    assert.matches("SEES 42 AID " .. aid, out2, 1, true)
    assert.matches("NEXT 43", out2, 1, true)

    local text, st3 = lray_cmd("list actors")
    assert.are.equal(0, st3, text)
    local line
    for l in text:gmatch("[^\n]+") do
      if l:find(aid, 1, true) then line = l end
    end
    assert.is_string(line, "actor " .. aid .. " not in:\n" .. text)
    assert.matches("SharedCounter", line, 1, true)
    assert.matches("shared", line, 1, true)
    assert.matches("ALIVE", line, 1, true)

    local row = find_actor(list_actors(), aid)
    assert.is_table(row)
    assert.are.equal("ALIVE", row.state)
    assert.are.equal("SharedCounter", row.name)
    assert.are.equal("shared", row.namespace)
  end)

  it("a driver exiting ends its non-detached actors but not its detached ones", function()
    local path = script(COUNTER .. [[
lray.init({ address = "auto", namespace = "exiting" })
local d = RCounter.options({ name = "Stays", lifetime = "detached" }).remote()
local n = RCounter.options({ name = "Goes" }).remote()
local a = RCounter.remote()
lray.get({ d.next.remote(), n.next.remote(), a.next.remote() })
print("DETACHED " .. aid_of(d))
print("NAMED " .. aid_of(n))
print("ANON " .. aid_of(a))
]])
    local out, status = run_driver(path)
    assert.are.equal(0, status, out)
    local d, n, a = out:match("DETACHED (%x+)"), out:match("NAMED (%x+)"), out:match("ANON (%x+)")
    assert.is_truthy(d and n and a, out)
    local rows = wait_actors(2, function(items)
      local rn, ra = find_actor(items, n), find_actor(items, a)
      return rn and ra and rn.state == "DEAD" and ra.state == "DEAD"
    end)
    for _, aid in ipairs({ n, a }) do
      local row = find_actor(rows, aid)
      assert.is_table(row, "actor " .. aid .. " not listed")
      assert.are.equal("DEAD", row.state, "non-detached actor " .. aid .. " outlived its driver")
    end
    local rd = find_actor(rows, d)
    assert.is_table(rd)
    assert.are.equal("ALIVE", rd.state)
    -- ... and a later driver can still use the detached one, but not the others.
    local later = script(COUNTER .. [[
lray.init({ address = "auto", namespace = "exiting" })
print("STAYS " .. lray.get(lray.get_actor("Stays").next.remote()))
print("GOES found=" .. tostring((pcall(lray.get_actor, "Goes"))))
]])
    local out2, st2 = run_driver(later)
    assert.are.equal(0, st2, out2)
    assert.matches("STAYS 2", out2, 1, true)
    assert.matches("GOES found=false", out2, 1, true)
  end)

  it("an actor whose every handle was dropped shows DEAD in lray list actors while its driver runs", function()
    local path = script(COUNTER .. [[
lray.init({ address = "auto" })
local kept = RCounter.remote()
local dropped = RCounter.remote()
lray.get({ kept.next.remote(), dropped.next.remote() })
print("DROPPED " .. aid_of(dropped))
print("KEPT " .. aid_of(kept))
io.stdout:flush()
dropped = nil
collectgarbage()
collectgarbage()
-- Stay connected (holding `kept`) until the spec has looked.
local deadline = lray.now() + 10
while not io.open(arg[1], "r") and lray.now() < deadline do lray.sleep(0.05) end
print("KEPT NEXT " .. lray.get(kept.next.remote()))
]])
    local go = tmp .. "/go-handles"
    local f = assert(io.popen(ENV .. q(BIN) .. " " .. q(path) .. " " .. q(go) .. " 2>&1"))
    local l1, l2 = f:read("*l"), f:read("*l")
    local dropped = l1 and l1:match("^DROPPED (%x+)")
    local kept = l2 and l2:match("^KEPT (%x+)")
    local rows
    if dropped and kept then
      lray.sleep(1)
      rows = wait_actors(2, function(items)
        local r = find_actor(items, dropped)
        return r and r.state == "DEAD"
      end)
    end
    write_file(go, "go\n")
    local rest = f:read("*a")
    f:close()
    assert.is_truthy(dropped and kept, "driver said:\n" .. tostring(l1) .. "\n" .. tostring(l2) .. "\n" .. rest)
    local rd, rk = find_actor(rows, dropped), find_actor(rows, kept)
    assert.is_table(rd)
    assert.are.equal("DEAD", rd.state)
    assert.matches("handle", tostring(rd.cause), 1, true)
    assert.is_table(rk)
    assert.are.equal("ALIVE", rk.state)
    assert.matches("KEPT NEXT 2", rest, 1, true)
  end)

  it("the objects a driver made are freed when it exits", function()
    local path = script([[
local lray = require("lray")
lray.init({ address = "auto" })
local f = lray.remote(function(i) return string.rep("r", 1000) .. i end)
local refs = {}
for i = 1, 10 do refs[i] = f.remote(i) end
lray.get(refs)
refs[#refs + 1] = lray.put(string.rep("p", 500000))   -- in shared memory
refs[#refs + 1] = lray.put({ small = true })
for _, r in ipairs(refs) do print("REF " .. r:hex()) end
]])
    local out, status = run_driver(path)
    assert.are.equal(0, status, out)
    local ids = {}
    for id in out:gmatch("REF (%x+)") do ids[id] = true end
    assert.is_truthy(next(ids), out)
    local left
    local deadline = lray.now() + 2
    repeat
      local lout, lst = lray_cmd("list objects --format json")
      assert.are.equal(0, lst, lout)
      left = {}
      for _, o in ipairs(require("cjson").decode(lout)) do
        if ids[o.object_id] then left[#left + 1] = o.object_id end
      end
      if #left == 0 then break end
      lray.sleep(0.1)
    until lray.now() > deadline
    assert.are.same({}, left)
  end)

  it("what a driver's tasks and actors print goes to that driver only", function()
    local path = script([[
local lray = require("lray")
lray.init({ address = "auto" })
local marker = arg[1]
local shout = lray.remote(function(m, i)
  print(m .. " task " .. i)
  lray.sleep(0.03)
  return i
end)
local Speaker = {}
function Speaker:say(m) print(m .. " actor"); return true end
local s = lray.remote(Speaker).remote()
local refs = {}
for i = 1, 30 do refs[i] = shout.remote(marker, i) end
lray.get(refs)
lray.get(s.say.remote(marker))
lray.sleep(0.5)   -- let the last lines arrive
print("DRIVER DONE " .. marker)
]])
    local fa = assert(io.popen(ENV .. q(BIN) .. " " .. q(path) .. " MARK_AAA 2>&1"))
    local fb = assert(io.popen(ENV .. q(BIN) .. " " .. q(path) .. " MARK_BBB 2>&1"))
    local oa, ob = fa:read("*a"), fb:read("*a")
    fa:close()
    fb:close()
    assert.matches("DRIVER DONE MARK_AAA", oa, 1, true)
    assert.matches("DRIVER DONE MARK_BBB", ob, 1, true)
    assert.is_nil(oa:find("MARK_BBB", 1, true), "driver A got B's output:\n" .. oa)
    assert.is_nil(ob:find("MARK_AAA", 1, true), "driver B got A's output:\n" .. ob)
    for name, o in pairs({ MARK_AAA = oa, MARK_BBB = ob }) do
      local _, n = o:gsub(name .. " task %d+", "")
      assert.are.equal(30, n, name .. ": task lines missing:\n" .. o)
      assert.matches(name .. " actor", o, 1, true)
    end
  end)
end)

describe("lray start --head in a pipeline", function()
  it("returns when its output goes through a pipe (the node it leaves does not hold the pipe)", function()
    finally(function() lray_cmd("stop") end)
    -- As in out=$(lray start --head) or `lray start --head | tee log`: the
    -- reader waits for the end of the pipe, which must come when start exits.
    local t0 = lray.now()
    local out, status = run("timeout 5 sh -c " .. q(ENV .. q(BIN)
      .. " start --head --num-cpus 2 --port 0 2>&1 | cat"))
    assert.matches("Started", out, 1, true)
    assert.are.equal(0, status, ("status %s after %.1f s (124: still blocked after 5 s):\n%s")
      :format(tostring(status), lray.now() - t0, out))
  end)
end)

describe("lray stop", function()
  it("stops the cluster: no lray _node/_worker process and no /dev/shm/lray-* file of it is left", function()
    start_cluster()
    local h = head
    assert.is_string(h.session, h.out)
    -- Something running in it: a detached actor and an idle worker pool.
    local path = script(COUNTER .. [[
lray.init({ address = "auto" })
local c = RCounter.options({ name = "Lingering", lifetime = "detached" }).remote()
print("PID " .. lray.get(c.pid.remote()))
]])
    local out, status = run_driver(path)
    assert.are.equal(0, status, out)
    local actor_pid = tonumber(out:match("PID (%d+)"))
    assert.is_number(actor_pid, out)
    assert.is_true(#helper.session_procs(h.session) >= 2, "no node/worker processes found for " .. h.session)
    -- The node's pid, from the process table (its shm regions carry it).
    local node_pid
    for _, line in ipairs(helper.session_procs(h.session)) do
      if line:find("_node", 1, true) then node_pid = tonumber(line:match("^(%d+)")) end
    end
    assert.is_number(node_pid, "no lray _node process for " .. h.session)
    local shm_prefix = "lray-" .. node_pid .. "-"

    local sout, sstatus = stop_cluster()
    assert.are.equal(0, sstatus, sout)
    assert.matches("Stopped", sout, 1, true)

    local deadline = lray.now() + 3
    local procs, shm
    repeat
      procs, shm = helper.session_procs(h.session), {}
      for name in pairs(helper.shm_files()) do
        if name:sub(1, #shm_prefix) == shm_prefix then shm[#shm + 1] = name end
      end
      if #procs == 0 and #shm == 0 and not alive(actor_pid) then break end
      lray.sleep(0.05)
    until lray.now() > deadline
    assert.are.same({}, procs)
    assert.are.same({}, shm)
    assert.is_false(alive(node_pid), "the node process still runs")
    assert.is_false(alive(actor_pid), "the detached actor's process still runs")

    -- Nothing answers any more, and nothing is left to stop.
    local st_out, st = lray_cmd("status")
    assert.are_not.equal(0, st, st_out)
    local again, st2 = lray_cmd("stop")
    assert.are.equal(0, st2)
    assert.matches("No lray cluster is running", again, 1, true)
    local probe = script([[
local ok, e = pcall(require("lray").init, { address = "auto" })
print("ok=" .. tostring(ok) .. " " .. tostring(type(e) == "table" and e.message or e))
]])
    local pout = run_driver(probe)
    assert.matches("ok=false", pout, 1, true)
    assert.matches("lray start --head", pout, 1, true)
  end)
end)
