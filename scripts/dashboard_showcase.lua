-- A small busy cluster for the dashboard screenshots in docs/: tasks of
-- several functions, named actors (one killed), a failed task, a big object
-- and a second job that came and went. Run by scripts/dashboard_screenshots.sh.
--   build/lray scripts/dashboard_showcase.lua [PORT] [SECONDS]
local lray = require("lray")
local ctx = lray.init{num_cpus = 2, dashboard_port = tonumber(arg[1]) or 8265}
io.stderr:write("URL ", ctx.dashboard_url, "\n")
local Counter = lray.remote({
  init = function(self, name) self.name = name; self.n = 0 end,
  inc = function(self)
    self.n = self.n + 1
    print(self.name .. " count " .. self.n)
    lray.sleep(0.05)
    return self.n
  end,
})
local ParameterServer = lray.remote({
  init = function(self) self.w = {} end,
  push = function(self, g) print("got gradient of " .. #g); lray.sleep(0.08); return #g end,
})
local train = lray.remote(function(i) lray.sleep(0.1 + (i % 5) * 0.03); print("trained batch " .. i); return i end)
local preprocess = lray.remote(function(i) lray.sleep(0.04); return string.rep("x", 1000 * i) end)
local fail = lray.remote({ max_retries = 0 }, function() error("bad input row 17") end)
local c1 = Counter.options({ name = "page_counter" }).remote("page_counter")
local c2 = Counter.options({ name = "click_counter" }).remote("click_counter")
local ps = ParameterServer.options({ name = "ps" }).remote()
local tmp = Counter.options({ name = "warmup_counter" }).remote("warmup_counter")
lray.get(tmp.inc.remote())
lray.kill(tmp)
local weights = lray.put(string.rep("w", 4 * 1024 * 1024))
local keep = {}
pcall(lray.get, fail.remote())
-- A second driver joins, runs a little and leaves (a finished job).
os.execute(("%s -e 'local l = require(\"lray\") l.init{address = %q}"
  .. " local f = l.remote(function(x) return x + 1 end) local r = {}"
  .. " for i = 1, 25 do r[i] = f.remote(i) end l.get(r)'"):format(
  require("lray._core").exe_path(), ctx.address))
local stop = lray.now() + (tonumber(arg[2]) or 30)
-- Tell the screenshot script where the dashboard is.
if arg[3] then
  local f = io.open(arg[3], "w"); f:write(ctx.dashboard_url); f:close()
end
local i = 0
while lray.now() < stop do
  i = i + 1
  local refs = {}
  for j = 1, 4 do refs[#refs + 1] = train.remote(i * 4 + j) end
  refs[#refs + 1] = preprocess.remote(i % 20)
  keep[#keep + 1] = refs[#refs]
  if #keep > 30 then table.remove(keep, 1) end
  refs[#refs + 1] = c1.inc.remote()
  refs[#refs + 1] = c2.inc.remote()
  refs[#refs + 1] = ps.push.remote({ 1, 2, 3 })
  lray.get(refs)
end
print(lray.get(weights):len())
