-- API.md "Clusters of many machines" and "Security", as far as they are
-- built: nodes join a head with the cluster token, the head keeps the node
-- table, a node that dies is declared dead (for good), losing the head ends
-- the others, and every TCP peer proves the token before anything it sends
-- is read. Each node is its own `lray _node` process on its own loopback
-- address (spec/helpers/nodes.lua).
local nodes = require("spec.helpers.nodes")
local shell = require("spec.helpers.shell")

local function by_host(list)
  local out = {}
  for _, n in ipairs(list) do out[n.address:match("^(.*):%d+$")] = n end
  return out
end

-- Sends bytes to host:port and reads until the node closes the connection
-- (at most `wait` seconds); returns "closed" or "open".
local function poke(address, bytes, wait)
  local host, port = address:match("^(.*):(%d+)$")
  local cmd = ("exec 3<>/dev/tcp/%s/%s; printf %s >&3; timeout %d cat <&3 >/dev/null; echo rc=$?")
    :format(host, port, shell.q(bytes), wait)
  local out = shell.run("bash -c " .. shell.q(cmd))
  return out:match("rc=0") and "closed" or "open"
end

describe("a cluster of several nodes", function()
  local c

  setup(function()
    c = nodes.start({ nodes = 2, num_cpus = 1,
      extra = { "--resources '{\"Custom\": 2}'", "--num-gpus 0" } })
  end)

  teardown(function()
    if c then c:stop() end
  end)

  it("lists every node with its address and resources, the head first", function()
    local list = c:nodes()
    assert.are.equal(3, #list)
    assert.is_true(list[1].is_head)
    local h = by_host(list)
    assert.is_true(h["127.0.0.2"].alive and h["127.0.0.3"].alive and h["127.0.0.1"].alive)
    assert.are.equal(2, h["127.0.0.2"].resources.Custom)
    assert.are.equal(1, h["127.0.0.3"].resources.CPU)
  end)

  it("shows every node in `lray status`", function()
    local out, status = c:lray("status")
    assert.are.equal(0, status, out)
    assert.matches("Nodes: 3, 3 alive", out, 1, true)
    assert.matches("127.0.0.2:%d+%s+alive", out)
    assert.matches("127.0.0.3:%d+%s+alive", out)
  end)

  it("answers `lray list nodes` on a node that joined, through the head", function()
    local out = shell.run(("ls -d %s/node-*/ | head -1"):format(shell.q(c.base)))
    local sock = out:gsub("%s+$", "") .. "node.sock"
    local got, status = c:lray("list nodes --format json", "LRAY_ADDRESS=" .. shell.q("unix:" .. sock))
    assert.are.equal(0, status, got)
    assert.are.equal(3, #require("cjson").decode(got))
  end)

  it("keeps the token in a file only its owner can read", function()
    local mode = shell.ok("stat -c %a " .. shell.q(c.base .. "/token")):gsub("%s+$", "")
    assert.are.equal("600", mode)
  end)

  it("refuses a node with a wrong token, and the head stays up", function()
    local out, status = c:join("127.0.0.9", "--token 00112233445566778899aabbccddeeff")
    assert.are_not.equal(0, status)
    assert.matches("token was refused by the head at " .. c.address:gsub("%.", "%%."), out)
    assert.are.equal(3, #c:nodes())
  end)

  it("raises AuthenticationError for a driver with a wrong or no token, naming the address", function()
    local script = os.tmpname()
    shell.write(script, [[
      local lray = require("lray")
      local ok, e = pcall(lray.init, { address = arg[1], token = arg[2] ~= "" and arg[2] or nil })
      print(ok, type(e) == "table" and e.type, type(e) == "table" and e.message)
    ]])
    local run = function(tok, env)
      return shell.run(("LRAY_TMPDIR=/nonexistent %s %s %s %s %s"):format(env or "", shell.q(nodes.BIN),
        shell.q(script), c.address, shell.q(tok)))
    end
    local out = run("00112233445566778899aabbccddeeff")
    assert.matches("false\tAuthenticationError\tcannot join the cluster at " .. c.address:gsub("%.", "%%.")
      .. ": the node refused the cluster token", out)
    out = run("", "LRAY_TOKEN=")
    assert.matches("false\tAuthenticationError\t.*needs its token and none was given", out)
    out = run(c.token)
    assert.matches("^true", out)
    os.remove(script)
  end)

  it("closes a connection that sends garbage, an oversized frame or nothing, and stays up", function()
    assert.are.equal("closed", poke(c.address, "GET / HTTP/1.0\\r\\n\\r\\n", 10))
    assert.are.equal("closed", poke(c.address, "\\377\\377\\377\\177", 10))
    assert.are.equal("closed", poke(c.address, "", 10))   -- the 5 s deadline
    local log = shell.run(("cat %s/head-*/node.log"):format(shell.q(c.base)))
    assert.matches("it did not prove the cluster token", log, 1, true)
    assert.matches("within 5 s", log, 1, true)
    assert.are.equal(3, #c:nodes())
  end)

  it("declares a node that was killed dead within 5 s, for good", function()
    local pid = tonumber(shell.ok(("pgrep -f -- %s | head -1"):format(
      shell.q("[_]node --session " .. c.base .. "/node-"))):match("%d+"))
    local before = {}
    for _, n in ipairs(c:nodes()) do before[n.node_id] = n.alive end
    shell.ok("kill -9 " .. pid)
    -- Its connection closes at once, so the head knows at once; the bound
    -- leaves room for `lray list` itself on a loaded machine (the 5 s of
    -- a silent node are measured by make netns-test).
    local t0 = os.time()
    local ok = c:wait_nodes(function(list)
      local dead = 0
      for _, n in ipairs(list) do if not n.alive then dead = dead + 1 end end
      return dead == 1
    end, 10)
    assert.is_true(ok, ("killed node pid %d not listed dead after %d s: %s"):format(pid,
      os.time() - t0, require("cjson").encode(c:nodes())))
    for _, n in ipairs(c:nodes()) do
      if not n.alive then assert.matches("connection to the head closed", n.cause, 1, true) end
    end
  end)
end)

describe("losing the head", function()
  it("ends the nodes that joined it, and `lray stop` leaves nothing behind", function()
    local c = nodes.start({ nodes = 1 })
    local head = assert(tonumber(shell.ok("cat " .. shell.q(c.base .. "/head.pid")):match("%d+")))
    shell.ok("kill -9 " .. head)
    local gone = false
    for _ = 1, 100 do
      if #c:node_pids() == 0 then gone = true; break end
      shell.run("sleep 0.1")
    end
    assert.is_true(gone, "a joined node outlived its head by 10 s")
    local left = c:stop()
    assert.are.same({}, left)
  end)
end)

-- Runs a driver on the head's machine of cluster c (address "auto") with
-- body after init, from the file script; returns its output and status.
local function run_driver(c, script, body, timeout)
  shell.write(script, "local lray = require('lray')\nlray.init({ address = 'auto' })\n"
    .. body .. "\nlray.shutdown()\n")
  return shell.run(("LRAY_TMPDIR=%s timeout %d %s %s"):format(shell.q(c.base), timeout or 60,
    shell.q(nodes.BIN), shell.q(script)))
end

describe("tasks on a cluster of several nodes", function()
  local c, script

  local function driver(body, timeout) return run_driver(c, script, body, timeout) end

  setup(function()
    script = os.tmpname()
    c = nodes.start({ nodes = 2, num_cpus = 2, extra = { "--resources '{\"Custom\": 2}'", "" } })
  end)

  teardown(function()
    os.remove(script)
    if c then c:stop() end
  end)

  it("runs a task on the node whose resources fit it", function()
    local list = c:nodes()
    local custom_node
    for _, n in ipairs(list) do if n.resources.Custom then custom_node = n.node_id end end
    local out, status = driver([[
      local where = lray.remote(function() return lray.get_runtime_context().node_id end)
      print("RAN " .. lray.get(where.options({ resources = { Custom = 1 } }).remote()))
    ]])
    assert.are.equal(0, status, out)
    assert.matches("RAN " .. custom_node, out, 1, true)
    assert.not_matches("cannot be scheduled", out, 1, true)
  end)

  it("runs a task on the node that holds its arguments' bytes", function()
    local out, status = driver([[
      local big = lray.remote(function()
        return lray.get_runtime_context().node_id, string.rep("y", 1048576)
      end)
      local r = { big.options({ num_returns = 2, resources = { Custom = 1 } }).remote() }
      local at = lray.get(r[1])
      local where = lray.remote(function(s) return lray.get_runtime_context().node_id, #s end)
      local same, len = 0, 0
      for _ = 1, 5 do
        local v = lray.get({ where.options({ num_returns = 2 }).remote(r[2]) })
        if v[1] == at then same = same + 1 end
        len = v[2]
      end
      print("HEAD " .. tostring(at == lray.get_runtime_context().node_id) .. " SAME " .. same
        .. " LEN " .. len)
    ]])
    assert.are.equal(0, status, out)
    assert.matches("HEAD false SAME 5 LEN 1048576", out, 1, true)
  end)

  it("spreads work over the nodes when the head is busy, with every result right", function()
    local out, status = driver([[
      local busy = lray.remote(function(i)
        local t0 = lray.now(); while lray.now() - t0 < 0.2 do end
        return i * i, lray.get_runtime_context().node_id
      end)
      local refs = {}
      for i = 1, 12 do refs[i] = { busy.options({ num_returns = 2 }).remote(i) } end
      local nodes, ok = {}, true
      for i, r in ipairs(refs) do
        if lray.get(r[1]) ~= i * i then ok = false end
        nodes[lray.get(r[2])] = true
      end
      local k = 0
      for _ in pairs(nodes) do k = k + 1 end
      local quick = lray.remote(function(x) return x + 1 end)
      local qs = {}
      for i = 1, 300 do qs[i] = quick.remote(i) end
      for i, v in ipairs(lray.get(qs)) do if v ~= i + 1 then ok = false end end
      print("NODES " .. k .. " OK " .. tostring(ok))
    ]])
    assert.are.equal(0, status, out)
    assert.matches("OK true", out, 1, true)
    assert.is_true(tonumber(out:match("NODES (%d+)")) >= 2, out)
  end)

  it("retries the tasks of a node killed mid-workload on the others", function()
    local out, status = driver([[
      local slow = lray.remote(function(i)
        local t0 = lray.now(); while lray.now() - t0 < 0.5 do end
        return i
      end)
      local refs = {}
      for i = 1, 10 do refs[i] = slow.options({ max_retries = 3 }).remote(i) end
      -- Mid-workload: the tasks are running when a node that is not the
      -- head is killed.
      local t0 = lray.now(); while lray.now() - t0 < 0.25 do end
      local victim
      for _, n in ipairs(lray.nodes()) do
        if n.alive and not n.is_head then victim = n end
      end
      local host = victim.address:match("^(.*):%d+$")
      -- Only this cluster's node (its LRAY_TMPDIR): other clusters on the
      -- machine may have a node on the same loopback address.
      os.execute("pkill -9 -f '[_]node --session " .. os.getenv("LRAY_TMPDIR") .. "/.*--host " .. host .. " '")
      local ok = true
      for i, r in ipairs(refs) do if lray.get(r, { timeout = 60 }) ~= i then ok = false end end
      print("VICTIM " .. tostring(victim ~= nil) .. " OK " .. tostring(ok))
    ]], 120)
    assert.are.equal(0, status, out)
    assert.matches("VICTIM true OK true", out, 1, true)
    assert.is_true(c:wait_nodes(function(list)
      for _, n in ipairs(list) do if not n.alive then return true end end
      return false
    end, 10))
  end)
end)

describe("a hung head", function()
  it("is lost to the nodes that joined it after 5 s of silence", function()
    local c = nodes.start({ nodes = 1 })
    local head = assert(tonumber(shell.ok("cat " .. shell.q(c.base .. "/head.pid")):match("%d+")))
    shell.ok("kill -STOP " .. head)
    local gone = false
    for _ = 1, 150 do   -- 15 s at most: 5 s of silence, then the node exits
      if #c:node_pids() == 1 then gone = true; break end
      shell.run("sleep 0.1")
    end
    shell.ok("kill -9 " .. head)
    assert.is_true(gone, "a joined node outlived a hung head by 15 s")
    local log = shell.run(("cat %s/node-*/node.log 2>/dev/null"):format(shell.q(c.base)))
    local left = c:stop()
    assert.are.same({}, left)
    if log ~= "" then assert.matches("stopped answering", log, 1, true) end
  end)
end)

describe("actors on a cluster of several nodes", function()
  local c, script

  local function driver(body, timeout) return run_driver(c, script, body, timeout) end

  setup(function()
    script = os.tmpname()
    c = nodes.start({ nodes = 2, num_cpus = 1, head_cpus = 1,
      extra = { "--resources '{\"Custom\": 1}'", "--resources '{\"Custom\": 1}'" } })
  end)

  teardown(function()
    os.remove(script)
    if c then c:stop() end
  end)

  it("places an actor where its resources fit, calls it there, restarts it elsewhere when that node dies",
    function()
    local out, status = driver([[
      local me = lray.get_runtime_context().node_id
      local Counter = lray.remote({
        init = function(self) self.n = 0 end,
        inc = function(self) self.n = self.n + 1; return self.n end,
        where = function() return lray.get_runtime_context().node_id end,
      })
      local a = Counter.options({ resources = { Custom = 1 }, max_restarts = 1,
        max_task_retries = 2 }).remote()
      local first = lray.get(a.where.remote())
      for _ = 1, 50 do a.inc.remote() end
      print("ON_OTHER " .. tostring(first ~= me) .. " COUNT " .. lray.get(a.inc.remote()))
      for _, n in ipairs(lray.nodes()) do
        if n.node_id == first then
          os.execute("pkill -9 -f '[_]node --session " .. os.getenv("LRAY_TMPDIR") .. "/.*--host "
            .. n.address:match("^(.*):%d+$") .. " '")
        end
      end
      -- Until the head has seen it die, the actor's worker may still be
      -- alive a moment (it ends with its node) and answer from there.
      local t0 = lray.now()
      repeat
        local dead = false
        for _, n in ipairs(lray.nodes()) do
          if n.node_id == first and not n.alive then dead = true end
        end
        if not dead then lray.sleep(0.02) end
      until dead or lray.now() - t0 > 10
      local second = lray.get(a.where.remote(), { timeout = 30 })
      print("MOVED " .. tostring(second ~= first and second ~= me) .. " COUNT " .. lray.get(a.inc.remote()))
    ]], 90)
    assert.are.equal(0, status, out)
    assert.matches("ON_OTHER true COUNT 51", out, 1, true)
    -- Restarted on the other node with Custom: init ran again.
    assert.matches("MOVED true COUNT 1", out, 1, true)
  end)
end)

describe("output of tasks on other nodes", function()
  it("reaches the driver", function()
    local c = nodes.start({ nodes = 1, num_cpus = 1, extra = { "--resources '{\"Far\": 1}'" } })
    local script = os.tmpname()
    local out, status = run_driver(c, script, [[
      local far = lray.remote(function(x) print("printed far away " .. x); return x end)
      print("GOT " .. lray.get(far.options({ resources = { Far = 1 } }).remote(7)))
    ]])
    os.remove(script)
    c:stop()
    assert.are.equal(0, status, out)
    assert.matches("GOT 7", out, 1, true)
    assert.matches("printed far away 7", out, 1, true)
  end)
end)

describe("a driver on a node that joined", function()
  it("creates, finds by name, calls and kills actors on any node", function()
    local c = nodes.start({ nodes = 1, num_cpus = 1, extra = { "--resources '{\"Far\": 1}'" } })
    local sock = shell.run(("ls -d %s/node-*/ | head -1"):format(shell.q(c.base))):gsub("%s+$", "")
      .. "node.sock"
    local script = os.tmpname()
    shell.write(script, [[
      local lray = require("lray")
      lray.init({ address = arg[1] })
      local me = lray.get_runtime_context().node_id
      local C = lray.remote({ init = function(self) self.n = 0 end,
        inc = function(self) self.n = self.n + 1; return self.n end,
        where = function() return lray.get_runtime_context().node_id end })
      local a = C.options({ name = "counter" }).remote()
      print("HEAD " .. lray.get(a.inc.remote()) .. " " .. tostring(lray.get(a.where.remote()) ~= me))
      print("NAMED " .. lray.get(lray.get_actor("counter").inc.remote()))
      local far = C.options({ resources = { Far = 1 } }).remote()
      print("HERE " .. lray.get(far.inc.remote()) .. " " .. tostring(lray.get(far.where.remote()) == me))
      lray.kill(a)
      local ok, e = pcall(lray.get, a.inc.remote())
      print("KILLED " .. tostring(not ok and e.type))
      -- An actor whose init takes ObjectRefs stored on this node, named or
      -- not, wherever it is placed: it gets their values.
      local W = lray.remote({ init = function(self, s, t) self.n = #s + #lray.get(t[1]) end,
        get = function(self) return self.n end })
      local big = lray.put(string.rep("x", 1048576))
      local n = W.options({ name = "withref" }).remote(big, { lray.put("yy") })
      print("NAMED_ARGS " .. tostring(lray.get(n.get.remote(), { timeout = 60 })))
      local u = W.remote(big, { big })
      big = nil
      print("ARGS " .. tostring(lray.get(u.get.remote(), { timeout = 60 })))
      lray.shutdown()
    ]])
    local out, status = shell.run(("LRAY_TMPDIR=%s timeout 60 %s %s %s"):format(shell.q(c.base),
      shell.q(nodes.BIN), shell.q(script), shell.q("unix:" .. sock)))
    os.remove(script)
    local left = c:stop()
    assert.are.equal(0, status, out)
    assert.matches("HEAD 1 true", out, 1, true)
    assert.matches("NAMED 2", out, 1, true)
    assert.matches("HERE 1 true", out, 1, true)
    assert.matches("NAMED_ARGS 1048578", out, 1, true)
    assert.matches("ARGS 2097152", out, 1, true)
    assert.matches("KILLED ActorDiedError", out, 1, true)
    assert.are.same({}, left)
  end)
end)
