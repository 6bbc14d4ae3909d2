-- Scheduling across nodes (docs/scheduling.md, "Across nodes"): a lease
-- request sent to another node because the view showed room there is
-- granted there now or rejected, never left waiting on a node that has no
-- room while another has (the view that sent it may be up to 200 ms old).
-- Nodes are separate `lray _node` processes (spec/helpers/nodes.lua).
local nodes = require("spec.helpers.nodes")
local shell = require("spec.helpers.shell")

describe("a lease sent to a node whose room is gone", function()
  local c, script

  setup(function()
    script = os.tmpname()
    local r = "--resources '{\"R\": 1}'"
    c = nodes.start({ nodes = 2, num_cpus = 1, extra = { r, r } })
  end)

  teardown(function()
    os.remove(script)
    if c then c:stop() end
  end)

  it("goes on to the node that has room, at once", function()
    -- The actor takes R on one node; the task, submitted at once, needs R
    -- too: the head's view of that node may not show the actor yet.
    shell.write(script, [[
      local lray = require('lray')
      lray.init({ address = 'auto' })
      local Holder = {}
      function Holder:where() return lray.get_runtime_context().node_id end
      local where = lray.remote(function() return lray.get_runtime_context().node_id end)
      for i = 1, 3 do
        local h = lray.remote(Holder).options({ resources = { R = 1 } }).remote()
        local at = lray.get(h.where.remote())
        local ok, ran = pcall(lray.get, where.options({ resources = { R = 1 } }).remote(),
          { timeout = 10 })
        print(("ROUND %d %s %s"):format(i, tostring(ok), tostring(ok and ran ~= at)))
        lray.kill(h)
      end
      lray.shutdown()
    ]])
    local out, status = shell.run(("LRAY_TMPDIR=%s timeout 90 %s %s 2>&1"):format(
      shell.q(c.base), shell.q(nodes.BIN), shell.q(script)))
    assert.are.equal(0, status, out)
    for i = 1, 3 do assert.matches("ROUND " .. i .. " true true", out, 1, true) end
  end)
end)
