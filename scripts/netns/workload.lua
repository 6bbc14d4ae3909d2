-- scripts/netns/workload.lua: the workload netns_test.sh runs across its
-- three namespaces while one node is killed and another cut off. Run as a
-- driver on the head: lray workload.lua DIR. It writes DIR/ready once its
-- work is spread over the nodes, waits for DIR/failed (the failures have
-- happened), then checks that the cluster carried on, one line each:
--   TASKS <right>/<total>      tasks retried on the nodes left (max_retries)
--   ACTOR <answer> <on head>   an actor of a failed node restarted on the head
--   OBJECT <rebuilt> <bytes>   a task's result stored on a failed node, rebuilt
-- The head has {W = 2}, each node {W = 1}: two actors holding W = 1 fill the
-- head first, so the tracked actor and the producing task land on the
-- other nodes; the fillers are then killed, so the head has room for both
-- after the failures.
local lray = require("lray")
local dir = assert(arg[1], "usage: lray workload.lua DIR")
lray.init({ address = "auto" })
local here = lray.get_runtime_context().node_id

local Filler = {}
function Filler:ping() return lray.get_runtime_context().node_id end
local Tracked = {}
function Tracked:init() self.n = 0 end
function Tracked:add(k) self.n = self.n + k; return lray.get_runtime_context().node_id end

local fillers = {}
for i = 1, 2 do
  fillers[i] = lray.remote(Filler).options({ resources = { W = 1 } }).remote()
  assert(lray.get(fillers[i].ping.remote()) == here, "a filler actor is not on the head")
end
local tracked = lray.remote(Tracked).options({ resources = { W = 1 }, max_restarts = -1,
  max_task_retries = -1 }).remote()
local actor_node = lray.get(tracked.add.remote(1))
assert(actor_node ~= here, "the tracked actor is on the head")

local make = lray.remote(function(n)
  return lray.get_runtime_context().node_id, string.rep("z", n) .. "end"
end)
local r = { make.options({ num_returns = 2, resources = { W = 1 }, max_retries = 3 })
  .remote(4194304) }
local made_on = lray.get(r[1])
assert(made_on ~= here, "the producing task ran on the head")
lray.wait({ r[2] }, { timeout = 30 })   -- stored on its node; not read here
for _, f in ipairs(fillers) do lray.kill(f) end

local slow = lray.remote(function(i)
  local t0 = lray.now()
  while lray.now() - t0 < 1 do end
  return i * 3
end)
local refs = {}
for i = 1, 12 do refs[i] = slow.options({ max_retries = 5 }).remote(i) end
print(("# actor on %s, object made on %s, head %s"):format(actor_node, made_on, here))
io.open(dir .. "/ready", "w"):close()

local t0 = lray.now()
while not io.open(dir .. "/failed") do
  if lray.now() - t0 > 60 then error("netns_test.sh never wrote " .. dir .. "/failed") end
  lray.sleep(0.05)
end

local right = 0
for i, ref in ipairs(refs) do
  local ok, v = pcall(lray.get, ref, { timeout = 60 })
  if ok and v == i * 3 then right = right + 1 else print("# task " .. i .. ": " .. tostring(v)) end
end
print(("TASKS %d/%d"):format(right, #refs))
local ok, node = pcall(lray.get, tracked.add.remote(1), { timeout = 60 })
print(("ACTOR %s %s"):format(tostring(ok), tostring(ok and node == here)))
if not ok then print("# actor: " .. tostring(node)) end
local okb, s = pcall(lray.get, r[2], { timeout = 60 })
print(("OBJECT %s %s"):format(tostring(okb and s == string.rep("z", 4194304) .. "end"),
  okb and #s or tostring(s)))
lray.shutdown()
