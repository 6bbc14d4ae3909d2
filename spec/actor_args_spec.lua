-- API.md "Actors" and "Objects", across nodes: an actor whose init takes
-- ObjectRefs (top level, and inside a table) is placed like any other, on
-- a node other than the one whose store holds them, restarts on another
-- node after its node dies, with the same arguments, and the objects are
-- freed once it is killed and the driver dropped them. Public API only;
-- nodes are `lray _node` processes on 127.0.0.x (spec/helpers/nodes.lua),
-- and only the two joined ones have the custom resource R.
local nodes = require("spec.helpers.nodes")
local shell = require("spec.helpers.shell")

local SCRIPT = nodes.DRIVER .. [[
local joined = { [arg[2] ] = { sock = arg[3], pid = tonumber(arg[4]) },
  [arg[5] ] = { sock = arg[6], pid = tonumber(arg[7]) } }

local N = 4 * 1048576
local EXPECT1, EXPECT2 = sum(fill(N, 7)), sum(fill(N / 2, 3))

local Holder = {}
function Holder:init(a, t, s)
  self.a, self.b, self.s = a, lray.get(t.r), s
end
function Holder:check()
  return sum(self.a), sum(self.b), self.s, lray.get_runtime_context().node_id
end

local base = used()
local r1, r2, r3 = lray.put(fill(N, 7)), lray.put(fill(N / 2, 3)), lray.put("small")
local h = lray.remote({ resources = { R = 1 }, max_restarts = 1 }, Holder).remote(r1, { r = r2 }, r3)
r1, r2, r3 = nil, nil, nil
collectgarbage(); collectgarbage()
lray.get(lray.put(0))   -- any message to the node: the unrefs go out with it
local s1, s2, s, node = lray.get(h.check.remote(), { timeout = 60 })
local first = host_of(node)
print("first", s1 == EXPECT1, s2 == EXPECT2, s, joined[first] ~= nil)

-- Its node dies: the actor restarts on the other node with R.
os.execute("kill -9 " .. joined[first].pid)
local ok, second
poll(function()
  ok, s1, s2, s, node = pcall(lray.get, h.check.remote(), { timeout = 30 })
  return ok
end, 60)
second = ok and host_of(node)
print("second", ok, s1 == EXPECT1, s2 == EXPECT2, s, second ~= first and joined[second] ~= nil)
if not ok then print("error", tostring(s1)) end

lray.kill(h)
h = nil
collectgarbage(); collectgarbage()
print("head freed", poll(function() return used() <= base end))
local other = second and joined[second]
print("node freed", other ~= nil and poll(function() return used(other.sock) <= 0 end))
lray.shutdown()
]]

describe("actors whose init takes ObjectRefs, across nodes", function()
  local c

  setup(function()
    c = nodes.start({ nodes = 2, num_cpus = 1,
      extra = { "--resources '{\"R\": 1}'", "--resources '{\"R\": 1}'" } })
  end)

  teardown(function()
    if c then c:stop() end   -- (which removes the script too)
  end)

  it("places it on a node with R, restarts it on the other after a SIGKILL, frees its arguments", function()
    local path = c.base .. "/holder.lua"
    shell.write(path, SCRIPT)
    local j = c:joined()
    local b, cc = assert(j["127.0.0.2"], "no node B"), assert(j["127.0.0.3"], "no node C")
    local out = shell.run(("LRAY_TMPDIR=%s timeout 150 %s %s %s %s %s %d %s %s %d 2>&1"):format(
      shell.q(c.base), shell.q(nodes.BIN), shell.q(path), shell.q(nodes.BIN),
      "127.0.0.2", shell.q(b.sock), b.pid, "127.0.0.3", shell.q(cc.sock), cc.pid))
    assert.matches("first\ttrue\ttrue\tsmall\ttrue\n", out, 1, true)
    assert.matches("second\ttrue\ttrue\ttrue\tsmall\ttrue\n", out, 1, true)
    assert.matches("head freed\ttrue\n", out, 1, true)
    assert.matches("node freed\ttrue\n", out, 1, true)
  end)
end)

-- The same from a driver on a node that joined (B): the objects are stored
-- in B's store, and the head's node holds them there (B lends them until it
-- does). The actor is placed on the head's node (H), on B itself and on a
-- third node (C); it gets a 4 MiB string, a table holding two refs and a
-- small value, reads the nested refs again after the driver dropped its
-- own (B's store keeps them meanwhile), and once it is killed every store
-- is back where it began. Then one
-- with max_restarts restarts on the other node with R after its node is
-- SIGKILLed and finds its arguments again.
local JOINED = nodes.DRIVER .. [[
local socks = { B = arg[2], C = arg[3] }
local pids = { ["127.0.0.3"] = tonumber(arg[4]), ["127.0.0.4"] = tonumber(arg[5]) }

local N = 4 * 1048576
local parts = {}
for i = 1, N / 4096 do parts[i] = string.rep(string.char(65 + i % 26), 4095) .. "\n" end
local STR = table.concat(parts)
parts = nil
local function ssum(s)
  local h = 0
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 1000000007 end
  return h
end
local EXPECT_S, EXPECT_A = ssum(STR), sum(fill(N / 2, 3))

local Holder = {}
function Holder:init(s, t, small)
  self.s, self.t, self.small = s, t, small
  self.seen = { #s, ssum(s), sum(lray.get(t.r)), lray.get(t.tiny), small }
end
function Holder:first() return unpack(self.seen) end
function Holder:again()
  collectgarbage()
  return #self.s, ssum(self.s), sum(lray.get(self.t.r)), lray.get(self.t.tiny), self.small,
    lray.get_runtime_context().node_id
end

local function fresh(opts)
  local s, t, small = lray.put(STR), { r = lray.put(fill(N / 2, 3)), tiny = lray.put("tiny") },
    lray.put(42)
  local h = lray.remote(opts, Holder).remote(s, t, small)
  s, t, small = nil, nil, nil
  collectgarbage(); collectgarbage()
  lray.get(lray.put(0))   -- any message to the node: the unrefs go out with it
  return h
end
local function right(n, s1, s2, tiny, small)
  return n == N and s1 == EXPECT_S and s2 == EXPECT_A and tiny == "tiny" and small == 42
end

local base = { H = used(), B = used(socks.B), C = used(socks.C) }
for _, where in ipairs({ "H", "B", "C" }) do
  local opts = { resources = { [where] = 1 } }
  if where == "C" then opts.name = "holder" end   -- created by an rpc
  local h = fresh(opts)
  print("init " .. where, right(lray.get(h.first.remote(), { timeout = 60 })))
  local n, s1, s2, tiny, small, node = lray.get(h.again.remote(), { timeout = 60 })
  print("again " .. where, right(n, s1, s2, tiny, small), host_of(node))
  -- Dropped by the driver, both large ones kept for the actor (well past
  -- the free grace).
  print("kept " .. where, not poll(function() return used(socks.B) < base.B + N + N / 2 end, 0.5))
  lray.kill(h)
  h = nil
  collectgarbage(); collectgarbage()
  print("freed " .. where, poll(function()
    return used(socks.B) <= base.B and used() <= base.H and used(socks.C) <= base.C
  end, 30))
end

local h = fresh({ resources = { R = 1 }, max_restarts = 1 })
local n, s1, s2, tiny, small, node = lray.get(h.again.remote(), { timeout = 60 })
local first = host_of(node)
print("restart first", right(n, s1, s2, tiny, small), pids[first] ~= nil)
os.execute("kill -9 " .. pids[first])
local ok
poll(function()
  ok, n, s1, s2, tiny, small, node = pcall(lray.get, h.again.remote(), { timeout = 30 })
  return ok
end, 60)
print("restart second", ok and right(n, s1, s2, tiny, small), ok and host_of(node) ~= first
  and pids[host_of(node)] ~= nil)
if not ok then print("error", tostring(n)) end
lray.kill(h)
h = nil
collectgarbage(); collectgarbage()
print("restart freed", poll(function() return used(socks.B) <= base.B and used() <= base.H end, 30))
lray.shutdown()
]]

describe("actors whose init takes ObjectRefs, created by a driver on a joined node", function()
  local c

  setup(function()
    c = nodes.start({ nodes = 3, num_cpus = 1, head_extra = "--resources '{\"H\": 1}'",
      extra = { "--resources '{\"B\": 1}'", "--resources '{\"C\": 1, \"R\": 1}'",
        "--resources '{\"R\": 1}'" } })
  end)

  teardown(function()
    if c then c:stop() end
  end)

  it("are placed on the head's node, the driver's or a third, keep and free their arguments,"
    .. " and restart after their node dies", function()
    local path = c.base .. "/joined.lua"
    shell.write(path, JOINED)
    local j = c:joined()
    local b, cc, d = assert(j["127.0.0.2"], "no node B"), assert(j["127.0.0.3"], "no node C"),
      assert(j["127.0.0.4"], "no node D")
    local out = shell.run(("LRAY_TMPDIR=%s LRAY_ADDRESS=%s timeout 200 %s %s %s %s %s %d %d 2>&1")
      :format(shell.q(c.base), shell.q("unix:" .. b.sock), shell.q(nodes.BIN), shell.q(path),
        shell.q(nodes.BIN), shell.q(b.sock), shell.q(cc.sock), cc.pid, d.pid))
    local want = { "restart first\ttrue\ttrue", "restart second\ttrue\ttrue", "restart freed\ttrue" }
    for where, host in pairs({ H = "127.0.0.1", B = "127.0.0.2", C = "127.0.0.3" }) do
      for _, what in ipairs({ "init", "kept", "freed" }) do
        want[#want + 1] = what .. " " .. where .. "\ttrue"
      end
      want[#want + 1] = "again " .. where .. "\ttrue\t" .. host
    end
    for _, line in ipairs(want) do assert.matches(line .. "\n", out, 1, true) end
  end)
end)
