-- lray.testing, the helper for users' specs (docs/testing.md): a cluster per
-- spec file with the resources asked for, and a leak check at stop.
local testing = require("lray.testing")
local lray = require("lray")

local function msg(e)
  if type(e) == "table" and e.message then return tostring(e.message) end
  return tostring(e)
end

local q = require("spec.helpers.shell").q

describe("lray.testing", function()
  after_each(function()
    if testing.ctx() then testing.stop() end
  end)

  it("starts a cluster with the resources asked for, runs tasks, and stops clean", function()
    local l, ctx = testing.start({ num_cpus = 3, resources = { Custom = 2 } })
    assert.are.equal(lray, l)
    assert.are.equal(ctx, testing.ctx())
    local res = l.cluster_resources()
    assert.are.equal(3, res.CPU)
    assert.are.equal(2, res.Custom)
    assert.is_nil(res.GPU ~= 0 and res.GPU or nil)
    assert.are.equal(16, l.get(l.remote(function(x) return x * x end).remote(4)))
    testing.stop()
    assert.is_nil(testing.ctx())
    assert.is_false(lray.is_initialized())
    assert.are.same({}, testing.session_procs(ctx.session_dir))
  end)

  it("refuses a second cluster, bad options and more than one node", function()
    local e = select(2, pcall(testing.start, 5))
    assert.is_true(lray.is_error(e, "ValueError"))
    assert.matches("options must be a table, got number", msg(e))
    e = select(2, pcall(testing.start, { nodes = 3 }))
    assert.matches("nodes = 3: this lray runs one node per cluster", msg(e))
    e = select(2, pcall(testing.start, { leak_wait = "1" }))
    assert.matches("leak_wait must be a non%-negative number", msg(e))
    e = select(2, pcall(testing.start, { num_cpus = "2" }))
    assert.matches([[option 'num_cpus' must be a number, got string "2"]], msg(e), 1, true)
    assert.is_false(lray.is_initialized())
    testing.start({ nodes = 1 })
    e = select(2, pcall(function() testing.start() end))
    assert.matches("testing_spec.lua:%d+: lray.testing.start: a cluster from lray.testing is already running",
      msg(e))
  end)

  it("refuses to start when the spec already called lray.init", function()
    lray.init({ num_cpus = 1, num_gpus = 0 })
    local e = select(2, pcall(testing.start))
    lray.shutdown()
    assert.matches("lray is already initialized in this process", msg(e))
  end)

  it("stop names a process of the session that outlived the cluster", function()
    local _, ctx = testing.start({ leak_wait = 0.2 })
    -- A process whose command line claims to be a worker of this session.
    local f = assert(io.popen("bash -c " .. q("exec -a " .. q("lray _worker --session " .. ctx.session_dir)
      .. " sleep 30") .. " >/dev/null 2>&1 & echo $!"))
    local pid = f:read("*l")
    f:close()
    local ok, e = pcall(testing.stop)
    os.execute("kill " .. pid)
    assert.is_false(ok)
    assert.matches("lray.testing.stop: 0.2 s after lray.shutdown%(%) the session .* left behind", msg(e))
    assert.matches("processes: " .. pid .. " lray _worker", msg(e))
  end)
end)
