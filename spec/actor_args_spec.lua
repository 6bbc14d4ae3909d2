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
