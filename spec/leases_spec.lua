-- docs/architecture.md "One task, end to end": a submitter connects to each
-- worker it is lent, and a lease that ends closes that connection, so a
-- long-running driver (bench/soak.lua) keeps a flat number of open files,
-- and so do its workers.
local cluster = require("spec.helpers.cluster")

local lray, core

setup(function()
  lray = cluster.start({ num_cpus = 2, include_dashboard = false })
  core = require("lray._core")
end)

teardown(function()
  cluster.stop()
end)

local function nfds(pid)
  local t = core.readdir("/proc/" .. pid .. "/fd")
  return t and #t or 0
end

local function worker_fds()
  local n = 0
  for _, w in ipairs(require("lray.runtime").state({ t = "list", what = "workers" }).items or {}) do
    n = n + nfds(w.pid)
  end
  return n
end

describe("leases", function()
  it("100 leases one after another leave no connection open in the driver or the workers", function()
    local f = lray.remote(function(x) return x end)
    assert.are.equal(1, lray.get(f.remote(1)))
    local me = core.getpid()
    local function idle()
      local t0 = lray.now()
      repeat
        local busy = false
        for _, w in ipairs(require("lray.runtime").state({ t = "list", what = "workers" }).items) do
          if w.state ~= "idle" then busy = true end
        end
        if not busy then return true end
        lray.sleep(0.01)
      until lray.now() - t0 > 5
      return false
    end
    assert.is_true(idle())
    local driver0, workers0 = nfds(me), worker_fds()
    for i = 1, 100 do
      assert.are.equal(i, lray.get(f.remote(i)))
      -- The lease ends after the worker's 5 ms without work.
      assert.is_true(idle(), "the lease did not end")
    end
    local driver1, workers1
    local t0 = lray.now()
    repeat
      driver1, workers1 = nfds(me), worker_fds()
      if driver1 <= driver0 + 2 and workers1 <= workers0 + 4 then break end
      lray.sleep(0.01)
    until lray.now() - t0 > 5
    assert(driver1 <= driver0 + 2, ("driver fds %d -> %d after 100 leases"):format(driver0, driver1))
    assert(workers1 <= workers0 + 4, ("workers' fds %d -> %d after 100 leases"):format(workers0,
      workers1))
  end)
end)
