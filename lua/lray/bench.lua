-- `lray microbenchmark`: the standard figures (same meaning as Ray's of the
-- same names), each warmed up, then timed over several rounds and printed as
-- `name  value ± stddev  unit`.
local core = require("lray._core")

local tostring, tonumber, ipairs, floor, sqrt = tostring, tonumber, ipairs, math.floor, math.sqrt

local M = {}

local function usage()
  io.stderr:write("usage: lray microbenchmark [--filter PATTERN] [--json FILE] [--seconds S]\n")
  return 1
end

local function parse(argv)
  local o = { seconds = 2 }
  local i = 2
  while i <= #argv do
    local a = argv[i]
    if a == "--filter" then o.filter = argv[i + 1]; i = i + 2
    elseif a == "--json" then o.json = argv[i + 1]; i = i + 2
    elseif a == "--seconds" then o.seconds = tonumber(argv[i + 1]); i = i + 2
    else return nil end
    if (a == "--seconds" and not o.seconds) then return nil end
  end
  return o
end

local function stats(xs)
  local n, sum = #xs, 0
  for _, x in ipairs(xs) do sum = sum + x end
  local mean = sum / n
  local var = 0
  for _, x in ipairs(xs) do var = var + (x - mean) ^ 2 end
  return mean, n > 1 and sqrt(var / (n - 1)) or 0
end

-- Runs batch() (which returns how many operations it did) repeatedly for
-- `seconds`, split into rounds after a warm-up; returns rates per second.
local function rates(batch, seconds)
  local rounds = 4
  local per = seconds / (rounds + 1)
  local t0 = core.now()
  repeat batch() until core.now() - t0 >= per * 0.5   -- warm-up
  local out = {}
  for r = 1, rounds do
    local ops, t = 0, core.now()
    repeat ops = ops + batch() until core.now() - t >= per
    out[r] = ops / (core.now() - t)
  end
  return out
end

local function rss_mb(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local kb = tonumber(s:match("VmRSS:%s*(%d+)"))
  return kb and kb / 1024
end

function M.figures(lray, seconds)
  local ncpu = floor(lray.cluster_resources().CPU or 2)
  local n = math.max(ncpu, 2)
  local noop = lray.remote(function() return 0 end)
  local Actor = {}
  function Actor:m(x) return x end
  function Actor:sleep_m(x) return x end
  local RActor = lray.remote(Actor)
  local Client = {}
  function Client:init(target) self.target = target end
  function Client:tasks(k)
    local f = self.f or lray.remote(function() return 0 end)
    self.f = f
    local refs = {}
    for i = 1, k do refs[i] = f.remote() end
    lray.get(refs)
    return k
  end
  function Client:calls(k, arg)
    local refs = {}
    local t = self.target
    for i = 1, k do refs[i] = t.m.remote(arg) end
    lray.get(refs)
    return k
  end
  function Client:puts(k)
    for _ = 1, k do lray.put(0) end
    return k
  end
  local RClient = lray.remote(Client)

  local figs = {}
  local function add(name, unit, fn) figs[#figs + 1] = { name = name, unit = unit, fn = fn } end

  add("single_client_tasks_sync", "tasks/s", function()
    return rates(function()
      for _ = 1, 50 do lray.get(noop.remote()) end
      return 50
    end, seconds)
  end)
  add("single_client_tasks_async", "tasks/s", function()
    return rates(function()
      local refs = {}
      for i = 1, 1000 do refs[i] = noop.remote() end
      lray.get(refs)
      return 1000
    end, seconds)
  end)
  add("multi_client_tasks_async", "tasks/s", function()
    local clients = {}
    for i = 1, n do clients[i] = RClient.remote() end
    return rates(function()
      local refs = {}
      for i = 1, n do refs[i] = clients[i].tasks.remote(500) end
      lray.get(refs)
      return 500 * n
    end, seconds)
  end)
  add("1_1_actor_calls_sync", "calls/s", function()
    local a = RActor.remote()
    return rates(function()
      for _ = 1, 50 do lray.get(a.m.remote(1)) end
      return 50
    end, seconds)
  end)
  add("1_1_actor_calls_async", "calls/s", function()
    local a = RActor.remote()
    return rates(function()
      local refs = {}
      for i = 1, 1000 do refs[i] = a.m.remote(1) end
      lray.get(refs)
      return 1000
    end, seconds)
  end)
  add("1_1_actor_calls_concurrent", "calls/s", function()
    local a = RActor.options({ max_concurrency = 16 }).remote()
    return rates(function()
      local refs = {}
      for i = 1, 1000 do refs[i] = a.m.remote(1) end
      lray.get(refs)
      return 1000
    end, seconds)
  end)
  add("1_n_actor_calls_async", "calls/s", function()
    local as = {}
    for i = 1, n do as[i] = RActor.remote() end
    return rates(function()
      local refs = {}
      for i = 1, 1000 do refs[i] = as[i % n + 1].m.remote(1) end
      lray.get(refs)
      return 1000
    end, seconds)
  end)
  local function n_n(arg)
    local clients = {}
    for i = 1, n do clients[i] = RClient.remote(RActor.remote()) end
    return rates(function()
      local refs = {}
      for i = 1, n do refs[i] = clients[i].calls.remote(500, arg) end
      lray.get(refs)
      return 500 * n
    end, seconds)
  end
  add("n_n_actor_calls_async", "calls/s", function() return n_n(1) end)
  add("n_n_actor_calls_with_arg_async", "calls/s", function() return n_n(string.rep("x", 100)) end)
  add("single_client_get_calls", "gets/s", function()
    local r = lray.put(0)
    return rates(function()
      for _ = 1, 1000 do lray.get(r) end
      return 1000
    end, seconds)
  end)
  add("single_client_put_calls", "puts/s", function()
    return rates(function()
      for _ = 1, 1000 do lray.put(0) end
      return 1000
    end, seconds)
  end)
  add("multi_client_put_calls", "puts/s", function()
    local clients = {}
    for i = 1, n do clients[i] = RClient.remote() end
    return rates(function()
      local refs = {}
      for i = 1, n do refs[i] = clients[i].puts.remote(1000) end
      lray.get(refs)
      return 1000 * n
    end, seconds)
  end)
  local SIZE = 100 * 1024 * 1024
  add("single_client_put_gigabytes", "GB/s", function()
    local a = lray.array("uint8_t", SIZE)
    local r = rates(function()
      local ref = lray.put(a)
      ref:release()
      return SIZE / 1e9
    end, seconds)
    return r
  end)
  add("single_client_get_gigabytes", "GB/s", function()
    local ref = lray.put(lray.array("uint8_t", SIZE))
    return rates(function()
      local v = lray.get(ref)
      return #v / 1e9
    end, seconds)
  end)
  add("single_client_tasks_and_get_batch", "batches/s", function()
    return rates(function()
      local refs = {}
      for i = 1, 1000 do refs[i] = noop.remote() end
      lray.get(refs)
      return 1
    end, seconds)
  end)
  add("single_client_wait_1k_refs", "waits/s", function()
    local refs = {}
    for i = 1, 1000 do refs[i] = lray.put(i) end
    return rates(function()
      lray.wait(refs, { num_returns = 1000 })
      return 1
    end, seconds)
  end)
  add("single_client_get_object_containing_10k_refs", "gets/s", function()
    local inner = {}
    for i = 1, 10000 do inner[i] = lray.put(i) end
    local outer = lray.put(inner)
    return rates(function()
      lray.get(outer)
      return 1
    end, seconds)
  end)
  -- What recording the call site of each .remote/lray.put costs (one
  -- debug.getinfo; LRAY_CALL_SITES=0 turns it off).
  add("call_site_record_us", "us", function()
    local callsite = require("lray.remote").callsite
    local out = {}
    for r = 1, 5 do
      local t = lray.now()
      for _ = 1, 100000 do callsite(1) end
      out[r] = (lray.now() - t) * 1e6 / 100000
    end
    return out
  end)
  add("init_to_first_result_ms", "ms", function()
    local exe = core.exe_path()
    local out = {}
    for i = 1, 5 do
      local p = io.popen(exe .. [[ -e 'local l = require("lray") local t = l.now() l.init{num_cpus = 1}
        local f = l.remote(function() return 1 end) l.get(f.remote())
        io.write((l.now() - t) * 1000) l.shutdown()']])
      out[i] = tonumber(p:read("*a"))
      p:close()
    end
    return out
  end)
  add("worker_idle_rss_mb", "MB", function()
    lray.sleep(0.2)
    local out = {}
    local r = require("lray.runtime").state({ t = "list", what = "workers" })
    for _, w in ipairs(r.items or {}) do
      if w.state == "idle" then out[#out + 1] = rss_mb(w.pid) end
    end
    if #out == 0 then out[1] = 0 end
    return out
  end)
  return figs
end

-- --filter takes a Lua pattern, or several separated by "|".
local function selected(filter, name)
  if not filter then return true end
  for alt in filter:gmatch("[^|]+") do
    if name:find(alt) then return true end
  end
  return false
end

function M.main(argv)
  local o = parse(argv)
  if not o then return usage() end
  local lray = require("lray")
  lray.init({ log_to_driver = true })
  local results = {}
  for _, f in ipairs(M.figures(lray, o.seconds)) do
    if selected(o.filter, f.name) then
      local ok, xs = pcall(f.fn)
      if ok then
        local mean, sd = stats(xs)
        results[#results + 1] = { name = f.name, value = mean, stddev = sd, unit = f.unit }
        io.stdout:write(("%-48s %14.2f ± %-10.2f %s\n"):format(f.name, mean, sd, f.unit))
      else
        io.stdout:write(("%-48s FAILED: %s\n"):format(f.name, tostring(xs)))
        results[#results + 1] = { name = f.name, error = tostring(xs) }
      end
      io.stdout:flush()
      collectgarbage()
    end
  end
  if o.json then
    local fh = io.open(o.json, "w")
    fh:write(require("cjson").encode(results))
    fh:close()
  end
  lray.shutdown()
  for _, r in ipairs(results) do if r.error then return 1 end end
  return 0
end

return M
