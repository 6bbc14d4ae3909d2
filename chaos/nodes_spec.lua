-- chaos/nodes_spec.lua: lray's promises when whole nodes die (issue 12,
-- "Chaos across nodes"; figures in docs/reliability.md). Run by `make chaos`
-- with chaos_spec.lua:
--   (7) a head and two nodes (one CPU each, spec/helpers/nodes.lua); a
--       driver on the head runs retriable tasks (1 in 5 nested) while a node
--       is SIGKILLed at a third of the workload, a fresh node joins, and the
--       other first node is SIGKILLed at two thirds: every result right,
--       nothing hangs (bounded waits).
-- Scaled with LRAY_CHAOS_SCALE (counts times S) like chaos_spec.lua.
local nodes = require("spec.helpers.nodes")
local shell = require("spec.helpers.shell")

local SCALE = tonumber(os.getenv("LRAY_CHAOS_SCALE") or "1")

describe("retriable tasks on a cluster whose nodes are SIGKILLed", function()
  local c, script

  setup(function()
    script = os.tmpname()
    c = nodes.start({ nodes = 2, num_cpus = 1, head_cpus = 1 })
  end)

  teardown(function()
    os.remove(script)
    if c then c:stop() end
  end)

  it("(7) every result is right, nothing hangs", function()
    local n = 600 * SCALE
    shell.write(script, ([[
      local lray = require("lray")
      lray.init({ address = "auto" })
      local BIN, ADDR, BASE, N, BOUND = %q, %q, %q, %d, %d
      local work = lray.remote({ max_retries = -1 }, function(i)
        local t0 = lray.now(); while lray.now() - t0 < 0.01 do end
        return i * 3 + 1, lray.get_runtime_context().node_id
      end)
      local outer = lray.remote({ max_retries = -1 }, function(i, inner)
        return lray.get(inner.remote(i))
      end)
      local t0 = lray.now()
      local refs = {}
      for i = 1, N do
        refs[i] = i %% 5 == 0 and outer.remote(i, work) or work.remote(i)
      end
      -- Only this cluster's node at host: other clusters on the machine may
      -- use the same loopback addresses.
      local function kill(host)
        os.execute("pkill -9 -f '[_]node --session " .. BASE .. "/node-[^ ]* .*--host " .. host .. " '")
      end
      local killed, done = 0, 0
      while done < N do
        assert(lray.now() - t0 < BOUND, ("%%d of %%d tasks done after %%d s"):format(done, N, BOUND))
        local ready = lray.wait(refs, { num_returns = N, timeout = 0.05 })
        done = #ready
        if killed == 0 and done >= N / 3 then
          kill("127.0.0.2")
          os.execute(BIN .. " start --address " .. ADDR
            .. " --host 127.0.0.4 --num-cpus 1 >/dev/null")
          killed = 1
        elseif killed == 1 and done >= 2 * N / 3 then
          kill("127.0.0.3")
          killed = 2
        end
      end
      local right, ran, where = 0, 0, {}
      for i = 1, N do
        local v, node = lray.get(refs[i], { timeout = 10 })
        if v == i * 3 + 1 then right = right + 1 end
        if not where[node] then where[node] = true; ran = ran + 1 end
      end
      local alive = 0
      for _, node in ipairs(lray.nodes()) do if node.alive then alive = alive + 1 end end
      print(("RESULT %%d %%d %%d %%.1f %%d %%d"):format(N, right, killed, lray.now() - t0, alive, ran))
      lray.shutdown()
    ]]):format(nodes.BIN, c.address, c.base, n, 120 * SCALE))
    local out, status = shell.run(("LRAY_TMPDIR=%s timeout %d %s %s"):format(shell.q(c.base),
      150 * SCALE, shell.q(nodes.BIN), shell.q(script)))
    assert.are.equal(0, status, out)
    local total, right, killed, took, alive, ran =
      out:match("RESULT (%d+) (%d+) (%d+) ([%d.]+) (%d+) (%d+)")
    assert.truthy(total, out)
    io.stdout:write(("\n[chaos] (7) %s tasks (1 in 5 nested) on a head and 2 nodes, %s nodes"
      .. " SIGKILLed, 1 joined: %s right, results from %s nodes, %s s, %s nodes alive after\n")
      :format(total, killed, right, ran, took, alive))
    assert.are.equal(total, right)
    assert.are.equal("2", killed)
  end)
end)
