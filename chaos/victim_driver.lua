-- chaos/victim_driver.lua: a driver that chaos_spec.lua's case (5) SIGKILLs
-- in the middle of its work. It starts an embedded cluster, prints
-- "session <dir> node <pid>" once tasks, an actor and large objects are in
-- flight, then keeps working until it is killed (or 120 s pass).
local lray = require("lray")
local core = require("lray._core")

local seed = tonumber(arg[1]) or 1
math.randomseed(seed)
local ctx = lray.init({ num_cpus = 2 })

local node
for line in io.popen("pgrep -P " .. core.getpid() .. " -f 'lray _node'"):lines() do
  node = tonumber(line) or node
end

local slow = lray.remote({ max_retries = -1 }, function(x) lray.sleep(0.01); return x end)
local big = lray.remote(function(n) return string.rep("b", n) end)
local Keep = {}
function Keep:init() self.t = {} end
function Keep:hold(v) self.t[#self.t + 1] = v; return #self.t end
local keep = lray.remote({ max_restarts = -1 }, Keep).remote()

local held, announced = {}, false
local deadline = lray.now() + 120
while lray.now() < deadline do
  local refs = {}
  for i = 1, 20 do refs[i] = slow.remote(i) end
  held[#held + 1] = lray.put(string.rep("p", 512 * 1024 + math.random(1024)))
  held[#held + 1] = big.remote(300 * 1024)
  keep.hold.remote(held[#held - 1])
  if not announced then
    io.stdout:write(("session %s node %d\n"):format(ctx.session_dir, node or -1))
    io.stdout:flush()
    announced = true
  end
  lray.get(refs)
  if #held > 40 then held = {} end
end
