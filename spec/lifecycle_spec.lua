-- API.md "Loading and lifecycle": lray.init and its context, is_initialized,
-- re-init, init after shutdown, and the checking of init options.
local cluster = require("spec.helpers.cluster")
local msg = cluster.msg

local lray, ctx

setup(function()
  lray, ctx = cluster.start()
end)

teardown(function()
  cluster.stop()
end)


describe("Loading and lifecycle", function()
  it("init returns a context with address, node_id, session_dir, namespace, dashboard_url", function()
    assert.is_table(ctx)
    for _, k in ipairs({ "address", "node_id", "session_dir", "namespace" }) do
      assert.is_string(ctx[k], k)
      assert.is_true(#ctx[k] > 0, k .. " is empty")
    end
    assert.is_string(ctx.dashboard_url)
    -- The session directory exists while the cluster runs.
    assert.is_true(os.execute("test -d '" .. ctx.session_dir .. "'") == 0
      or os.execute("test -d '" .. ctx.session_dir .. "'") == true)
  end)

  it("is_initialized is true while initialized", function()
    assert.is_true(lray.is_initialized())
  end)

  it("the context's node_id and namespace are the ones tasks see", function()
    local rc = lray.get_runtime_context()
    assert.are.equal(ctx.node_id, rc.node_id)
    assert.are.equal(ctx.namespace, rc.namespace)
    local f = lray.remote(function() return lray.get_runtime_context().node_id end)
    assert.are.equal(ctx.node_id, lray.get(f.remote()))
  end)

  it("a second init raises an error mentioning ignore_reinit_error", function()
    local ok, e = pcall(lray.init, { num_cpus = 2 })
    assert.is_false(ok)
    assert.matches("ignore_reinit_error", msg(e), 1, true)
    assert.is_true(lray.is_initialized())
  end)

  it("a second init with ignore_reinit_error = true returns the same context", function()
    local ctx2 = lray.init({ ignore_reinit_error = true })
    assert.is_table(ctx2)
    assert.are.equal(ctx.address, ctx2.address)
    assert.are.equal(ctx.node_id, ctx2.node_id)
    assert.are.equal(ctx.session_dir, ctx2.session_dir)
    -- and the cluster still works
    local f = lray.remote(function(x) return x + 1 end)
    assert.are.equal(42, lray.get(f.remote(41)))
  end)

  it("an unknown init option raises, naming it and listing the valid ones", function()
    local ok, e = pcall(lray.init, { ignore_reinit_error = true, num_cpu = 2 })
    assert.is_false(ok)
    local m = msg(e)
    assert.matches("num_cpu", m, 1, true)
    for _, valid in ipairs({ "num_cpus", "num_gpus", "resources", "object_store_memory",
        "namespace", "log_to_driver", "ignore_reinit_error", "address" }) do
      assert.matches(valid, m, 1, true)
    end
  end)

  it("a wrong-typed init option raises, naming it", function()
    local ok, e = pcall(lray.init, { ignore_reinit_error = true, num_cpus = "two" })
    assert.is_false(ok)
    assert.matches([[lray.init: option 'num_cpus' must be a number, got string "two"]], msg(e), 1, true)
    ok, e = pcall(lray.init, { ignore_reinit_error = true, log_to_driver = "yes" })
    assert.is_false(ok)
    assert.matches([[option 'log_to_driver' must be a boolean, got string "yes"]], msg(e), 1, true)
    ok, e = pcall(lray.init, { ignore_reinit_error = true, resources = 4 })
    assert.is_false(ok)
    assert.matches("option 'resources' must be a table, got 4", msg(e), 1, true)
  end)

  it("init options that are not a table raise", function()
    local ok = pcall(lray.init, "num_cpus=2")
    assert.is_false(ok)
  end)

  it("shutdown ends the session; init after shutdown starts a working new one", function()
    local old = ctx
    cluster.stop()   -- asserts nothing of the old session is left
    assert.is_false(lray.is_initialized())
    lray, ctx = cluster.start({ namespace = "lifecycle-ns" })
    assert.is_true(lray.is_initialized())
    assert.are_not.equal(old.session_dir, ctx.session_dir)
    assert.are.equal("lifecycle-ns", ctx.namespace)
    assert.are.equal("lifecycle-ns", lray.get_runtime_context().namespace)
    local f = lray.remote(function(x) return x * 2 end)
    assert.are.equal(10, lray.get(f.remote(5)))
    assert.are.equal("again", lray.get(lray.put("again")))
  end)

  it("a remote function defined before init is re-sent to a new session", function()
    local f = lray.remote(function(x) return "v" .. x end)
    assert.are.equal("v1", lray.get(f.remote(1)))
    cluster.stop()
    lray, ctx = cluster.start()
    assert.are.equal("v2", lray.get(f.remote(2)))
  end)

  it("init with num_cpus sets the cluster's CPU resource", function()
    assert.are.equal(2, lray.cluster_resources().CPU)
  end)
end)
