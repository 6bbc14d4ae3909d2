-- API.md "Clusters of many machines": an object whose only copy was on a
-- node that died is rebuilt by re-running the task that made it (lineage);
-- one that cannot be rebuilt raises ObjectLostError naming the node. The
-- nodes are separate `lray _node` processes on 127.0.0.x
-- (spec/helpers/nodes.lua); tasks that need resource R run on the joined
-- nodes only, so their large results are stored there.
local nodes = require("spec.helpers.nodes")
local shell = require("spec.helpers.shell")

-- Runs body in a driver on the head; `make` is a task with two results: the
-- node it ran on and a 1 MiB string stored in that node's store. `kill(id)`
-- SIGKILLs node id and waits (bounded) until the head says it is dead.
local PRELUDE = [[
local lray = require('lray')
lray.init({ address = 'auto' })
local make = lray.remote(function(n)
  return lray.get_runtime_context().node_id, string.rep("x", n) .. "end"
end)
local BIG = string.rep("x", 1048576) .. "end"
local function kill(id)
  local host
  for _, n in ipairs(lray.nodes()) do if n.node_id == id then host = n.address:match("^(.*):%d+$") end end
  assert(host and host ~= "127.0.0.1", "no joined node " .. tostring(id))
  -- Only this cluster's node (its LRAY_TMPDIR): other clusters on the
  -- machine may have a node on the same loopback address.
  os.execute("pkill -9 -f '[_]node --session " .. os.getenv("LRAY_TMPDIR") .. "/.*--host "
    .. host .. " '")
  local t0 = lray.now()
  while lray.now() - t0 < 10 do
    for _, n in ipairs(lray.nodes()) do
      if n.node_id == id and not n.alive then return host end
    end
    lray.sleep(0.02)
  end
  error("node " .. id .. " was not declared dead in 10 s")
end
-- The result stored on a joined node, and that node's id, without reading
-- the value here (a read would copy it into the head's store).
local function made(opts)
  local r = { make.options(opts).remote(1048576) }
  local where = lray.get(r[1])
  lray.wait({ r[2] }, { timeout = 30 })
  return r[2], where
end
]]

describe("lineage reconstruction", function()
  local c, script

  local function driver(body)
    shell.write(script, PRELUDE .. body .. "\nlray.shutdown()\n")
    return shell.run(("LRAY_TMPDIR=%s timeout 90 %s %s 2>&1"):format(shell.q(c.base),
      shell.q(nodes.BIN), shell.q(script)))
  end

  setup(function()
    script = os.tmpname()
    local r = "--resources '{\"R\": 1}'"
    c = nodes.start({ nodes = 3, num_cpus = 1, extra = { r, r, r } })
  end)

  teardown(function()
    os.remove(script)
    if c then c:stop() end
  end)

  it("rebuilds a task's result whose only copy was on a node that died", function()
    local out, status = driver([[
      local ref, where = made({ num_returns = 2, resources = { R = 1 }, max_retries = 2 })
      kill(where)
      local s = lray.get(ref, { timeout = 60 })
      local again = lray.get(lray.remote(function(v) return #v end).remote(ref))
      print("REBUILT " .. tostring(s == BIG) .. " " .. again)
    ]])
    assert.are.equal(0, status, out)
    assert.matches("REBUILT true " .. (1048576 + 3), out, 1, true)
  end)

  it("rebuilds a lost ObjectRef argument, then runs the task that needed it", function()
    local out, status = driver([[
      local ref, where = made({ num_returns = 2, resources = { R = 1 }, max_retries = 1 })
      kill(where)
      -- Runs on the head (no R): its worker cannot read the argument, and
      -- the driver, which made it, rebuilds it and sends the task again.
      local len = lray.remote(function(v) return #v, v == string.rep("x", 1048576) .. "end" end)
      local v = lray.get({ len.options({ num_returns = 2 }).remote(ref) }, { timeout = 60 })
      print("ARG " .. v[1] .. " " .. tostring(v[2]))
    ]])
    assert.are.equal(0, status, out)
    assert.matches("ARG " .. (1048576 + 3) .. " true", out, 1, true)
  end)

  it("raises ObjectLostError naming the node when the task may not run again", function()
    local out, status = driver([[
      local ref, where = made({ num_returns = 2, resources = { R = 1 }, max_retries = 0 })
      local host = kill(where)
      local ok, err = pcall(lray.get, ref, { timeout = 30 })
      print("LOST " .. tostring(ok) .. " " .. tostring(err.type) .. " " .. tostring(err.message))
      print("HOST " .. host)
    ]])
    assert.are.equal(0, status, out)
    local host = out:match("HOST (%S+)")
    assert.matches("LOST false ObjectLostError", out, 1, true)
    assert.matches(host .. ":", out:match("LOST[^\n]*"), 1, true)
    assert.matches("cannot be rebuilt", out, 1, true)
  end)
end)
