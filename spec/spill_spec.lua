-- Spilling (core/raylet/spill.c): when the store is full, objects no
-- process can be reading in place (counted only by the objects containing
-- them) go to <session>/spill/ and come back on the next read.
local cluster = require("spec.helpers.cluster")
local core = require("lray._core")

local MB = 2 ^ 20
local lray

local function files(dir)
  local n = 0
  local p = io.popen("ls " .. dir .. " 2>/dev/null")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

describe("spilling", function()
  setup(function()
    lray = cluster.start({ object_store_memory = 8 * MB })
  end)
  teardown(function() cluster.stop() end)

  it("spills objects held only inside another object and restores them on get", function()
    local spill_dir = cluster.ctx().session_dir .. "/spill"
    local inner = {}
    for i = 1, 6 do inner[i] = lray.put(string.rep(string.char(64 + i), MB)) end
    local outer = lray.put(inner)
    inner = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    -- 6 MB held only by outer: 4 more MB do not fit in 8 MB without spilling.
    local more = {}
    for i = 1, 4 do more[i] = lray.put(string.rep("z", MB)) end
    assert.is_true(files(spill_dir) >= 2, "expected spilled files in " .. spill_dir)
    more = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local refs = lray.get(outer)
    for i = 1, 6 do
      local v = lray.get(refs[i])
      assert.equal(MB, #v)
      assert.equal(string.char(64 + i), v:sub(1, 1))
      assert.equal(string.char(64 + i), v:sub(-1))
    end
    refs, outer = nil, nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local t0 = core.now()
    while files(spill_dir) > 0 and core.now() - t0 < 5 do lray.sleep(0.05) end
    assert.equal(0, files(spill_dir))
  end)

  it("still fails with ObjectStoreFullError when what is stored is held by processes", function()
    local held = {}
    local e = cluster.fails(function()
      for i = 1, 10 do held[i] = lray.put(string.rep("h", MB)) end
    end)
    assert.equal("ObjectStoreFullError", e.type)
    held = nil -- luacheck: ignore
    collectgarbage()
  end)
end)
