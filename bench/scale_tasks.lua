-- bench/scale_tasks.lua: queue 1,000,000 trivial tasks and drain them.
--
--   build/lray bench/scale_tasks.lua [N] [WINDOW] [CHUNK]
--
-- N tasks (default 1e6) are submitted with at most WINDOW (default N: all of
-- them at once, so the node's queue holds every task) outstanding; whenever
-- WINDOW are outstanding the driver gets the oldest CHUNK (default 10,000)
-- and releases their refs. Then the rest are got in CHUNKs. Prints the
-- submit and drain times, the rate, and the driver's and node's peak RSS.
local lray = require("lray")
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local U = dofile(dir .. "/scale_util.lua")

local N = tonumber(arg[1]) or 1000000
local WINDOW = tonumber(arg[2]) or N
local CHUNK = tonumber(arg[3]) or 10000

lray.init({ num_cpus = 2 })
local node = U.node_pid()
U.log("N=%d window=%d chunk=%d; node pid %s; load %s", N, WINDOW, CHUNK,
  tostring(node), U.loadavg())
local noop = lray.remote(function() return 0 end)
lray.get(noop.remote())                                   -- warm: workers up

local refs, head, tail = {}, 1, 0     -- refs[head..tail] outstanding
local got, sum = 0, 0
local function drain(k)
  local last = math.min(head + k - 1, tail)
  local batch = {}
  for i = head, last do batch[#batch + 1] = refs[i]; refs[i] = nil end
  local vals = lray.get(batch)
  for i = 1, #vals do sum = sum + vals[i] end
  for i = 1, #batch do batch[i]:release() end
  got = got + #batch
  head = last + 1
end

local t0 = U.now()
local max_out = 0
for i = 1, N do
  tail = tail + 1
  refs[tail] = noop.remote()
  if tail - head + 1 > max_out then max_out = tail - head + 1 end
  if tail - head + 1 >= WINDOW and i < N then drain(CHUNK) end
  if i % 100000 == 0 then
    U.log("submitted %d (outstanding %d, done %d); %s", i, tail - head + 1, got,
      U.rss_line(node))
  end
end
local t_sub = U.now() - t0
U.log("all %d submitted in %.2f s (%.0f/s); max outstanding %d; %s", N, t_sub,
  N / t_sub, max_out, U.rss_line(node))
while head <= tail do
  drain(CHUNK)
  if got % 100000 == 0 then U.log("drained %d; %s", got, U.rss_line(node)) end
end
local t_all = U.now() - t0
assert(got == N and sum == 0, ("got %d results, sum %s"):format(got, tostring(sum)))
U.log("RESULT scale_tasks: %d tasks, max %d outstanding, submit %.2f s, total %.2f s"
  .. " (%.0f tasks/s); %s; load %s", N, max_out, t_sub, t_all, N / t_all,
  U.rss_line(node), U.loadavg())
lray.shutdown()
