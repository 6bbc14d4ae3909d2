-- The dashboard in a real browser (Debian's chromium, headless): the page
-- draws the cluster's live actors, from the first snapshot and from the
-- event stream alone.
local helper = require("spec.helpers.cluster")

local lray, ctx

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The DOM chromium renders for url (after `budget` ms of virtual time).
local function dom(url, budget)
  local profile = os.tmpname()
  os.remove(profile)
  local cmd = ("timeout 60 chromium --headless=new --no-sandbox --disable-gpu"
    .. " --user-data-dir=%s %s --dump-dom %s 2>/dev/null"):format(q(profile),
    budget and ("--virtual-time-budget=" .. budget) or "", q(url))
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  os.execute("rm -rf " .. q(profile))
  return out
end

local Named = {}
function Named:init() self.x = 1 end
function Named:ping() return "pong" end

setup(function() lray, ctx = helper.start() end)
teardown(function() helper.stop() end)

describe("the dashboard page in chromium", function()
  it("shows a live actor's name in the actors view", function()
    local a = lray.remote(Named).options({ name = "browser_visible_actor" }).remote()
    assert.are.equal("pong", lray.get(a.ping.remote()))
    local html = dom(ctx.dashboard_url .. "/#actors")
    assert.truthy(html:find("<td class=\"\">browser_visible_actor</td>", 1, true),
      "the rendered page lacks the actor:\n" .. html:sub(1, 3000))
    assert.truthy(html:find("ALIVE", 1, true))
  end)

  it("gets its data from the event stream alone", function()
    local a = lray.remote(Named).options({ name = "streamed_actor" }).remote()
    assert.are.equal("pong", lray.get(a.ping.remote()))
    local html = dom(ctx.dashboard_url .. "/?live&once#actors", 5000)
    assert.truthy(html:find("<td class=\"\">streamed_actor</td>", 1, true),
      "the page drew no actor from /events:\n" .. html:sub(1, 3000))
  end)
end)
