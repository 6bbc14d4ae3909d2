-- chaos/lend_leak.lua: the open leak of docs/reliability.md "Chaos" (3), alone:
-- 1 MiB lray.put objects passed as a task's top-level argument while leased
-- workers are SIGKILLed: after the driver releases them, none may stay.
-- Run: build/lray chaos/lend_leak.lua [seed]   (prints the objects left; 0 is right)
local lray = require("lray")
local core = require("lray._core")
local rt = require("lray.runtime")
math.randomseed(tonumber(arg[1] or 1))
lray.init({ num_cpus = 2, include_dashboard = false })
local length = lray.remote({ max_retries = -1 }, function(s) lray.sleep(0.003); return #s end)
local kills = 0
for round = 1, 300 do
  local big = lray.put(string.rep("x", 1024 * 1024))
  local refs = {}
  for i = 1, 4 do refs[i] = length.remote(big) end
  if round % 3 == 0 then
    local pids = {}
    for _, w in ipairs(rt.state({ t = "list", what = "workers" }).items) do
      if w.state == "leased" then pids[#pids + 1] = w.pid end
    end
    if #pids > 0 then core.kill(pids[math.random(#pids)], 9); kills = kills + 1 end
  end
  for i = 1, 4 do assert(lray.get(refs[i]) == 1024 * 1024) end
  big:release()
end
collectgarbage()
local t0 = lray.now()
local st = rt.state({ t = "status" })
while st.objects > 0 and lray.now() - t0 < 5 do
  lray.sleep(0.05)
  st = rt.state({ t = "status" })
end
print("kills", kills, "objects left", st.objects, "store used", st.store.used)
lray.shutdown()
