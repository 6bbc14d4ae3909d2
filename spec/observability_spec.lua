-- Observability (API.md "The `lray` command" and "Observability"): help for
-- every subcommand, `lray list` filters and limits, `lray logs`, `lray
-- timeline`, `lray memory`, `lray summary`, the dashboard's JSON API,
-- /metrics and /events, the embedded cluster seen by the CLI, worker output
-- through a pipe, and lray.util.progress.
local helper = require("spec.helpers.cluster")
local cjson = require("cjson")

local BIN = os.getenv("LRAY_BIN") or "build/lray"
local lray, ctx

local shell = require("spec.helpers.shell")
local q, sh = shell.q, shell.run

-- `lray ARGS` against this file's cluster.
local function cli(args)
  return sh("LRAY_ADDRESS=" .. q(ctx.address) .. " " .. q(BIN) .. " " .. args)
end

local function cli_json(args)
  local out, status = cli(args)
  assert(status == 0, "lray " .. args .. " failed:\n" .. out)
  local ok, v = pcall(cjson.decode, out)
  assert(ok and type(v) == "table", "lray " .. args .. " printed no JSON:\n" .. out)
  return v
end

local function http(path, extra)
  return sh("curl -s --max-time 10 " .. (extra or "") .. " " .. q(ctx.dashboard_url .. path))
end

local function http_json(path)
  local out = http(path)
  local ok, v = pcall(cjson.decode, out)
  assert(ok and type(v) == "table", path .. " returned no JSON:\n" .. out)
  return v
end

-- Polls fn() until it returns a truthy value or `seconds` pass.
local function eventually(seconds, fn)
  local deadline = lray.now() + seconds
  repeat
    local v = fn()
    if v then return v end
    lray.sleep(0.05)
  until lray.now() > deadline
  return fn()
end

local write_file = shell.write

local Printer = {}
function Printer:init(tag) self.tag = tag end
function Printer:say(s) print(self.tag .. " says " .. s); return s end
function Printer:pid() return require("lray._core").getpid() end

local printer, printer_pid
local kept = {}
local square

setup(function()
  -- Worker output goes to the log files either way; keep the spec's quiet.
  lray, ctx = helper.start({ log_to_driver = false })
  square = lray.remote(function(x) return x * x end)
  printer = lray.remote(Printer).options({ name = "obs_printer" }).remote("P")
  printer_pid = lray.get(printer.pid.remote())
  -- Small task results live with their submitter, not on the node: an
  -- object put here and held for the whole file is one the node lists.
  kept[1] = lray.put("an object on the node")
end)

teardown(function() helper.stop() end)

describe("lray help", function()
  it("lists every subcommand and explains each", function()
    local out, status = sh(q(BIN) .. " --help")
    assert.are.equal(0, status)
    for _, cmd in ipairs({ "start", "stop", "status", "list", "logs", "timeline", "memory",
      "summary", "microbenchmark", "help" }) do
      assert.truthy(out:find("\n  " .. cmd .. " ", 1, true), "--help lacks " .. cmd .. ":\n" .. out)
      local h, hs = sh(q(BIN) .. " help " .. cmd)
      assert.are.equal(0, hs, h)
      assert.truthy(h:find("^usage: lray"), h)
      local h2, hs2 = sh(q(BIN) .. " " .. cmd .. " --help")
      assert.are.equal(0, hs2, h2)
      assert.are.equal(h, h2)
    end
    local bad, bs = sh(q(BIN) .. " help nosuch")
    assert.are_not.equal(0, bs)
    assert.truthy(bad:find("no such command", 1, true), bad)
  end)
end)

describe("lray list", function()
  it("filters, limits and prints JSON records", function()
    local refs = {}
    for i = 1, 30 do refs[i] = square.remote(i) end
    lray.get(refs)
    -- Tasks run on leased workers: the node hears of them from the workers'
    -- spans, sent twice a second (docs/observability.md).
    local finished = 0
    eventually(5, function()
      local tasks = cli_json("list tasks --format json --filter name=" .. "square")
      finished = 0
      for _, t in ipairs(tasks) do
        assert.are.equal("square", t.name)
        assert.is_string(t.task_id)
        assert.is_string(t.job_id)
        if t.state == "FINISHED" then finished = finished + 1; assert.is_number(t.pid) end
      end
      return finished >= 30
    end)
    assert.is_true(finished >= 30)
    assert.are.equal(3, #cli_json("list tasks --format json --limit 3"))
    local actors = cli_json("list actors --format json --filter name=obs_printer --filter state=alive")
    assert.are.equal(1, #actors)
    assert.are.equal("Printer", actors[1].class_name)
    assert.are.equal(printer_pid, actors[1].pid)
    assert.are.equal(0, #cli_json("list actors --format json --filter name=obs_printer --filter state!=ALIVE"))
    local jobs = cli_json("list jobs --format json")
    assert.is_true(#jobs >= 1)
    assert.is_true(jobs[#jobs].alive)
    local out, status = cli("list actors --filter name")
    assert.are_not.equal(0, status)
    assert.truthy(out:find("KEY=VALUE", 1, true), out)
    -- A table by default, one header line.
    out = cli("list actors --filter name=obs_printer")
    assert.truthy(out:find("^ACTOR_ID%s+CLASS_NAME"), out)
    assert.truthy(out:find("obs_printer", 1, true), out)
  end)

  it("lists actor calls once they ended", function()
    lray.get(printer.say.remote("listed"))
    local calls = eventually(5, function()
      local c = cli_json("list tasks --format json --filter type=actor_call --filter name=Printer.say")
      return #c > 0 and c
    end)
    assert.is_table(calls, "no actor call in lray list tasks")
    assert.are.equal("FINISHED", calls[1].state)
    assert.are.equal(printer_pid, calls[1].pid)
    assert.is_string(calls[1].actor_id)
  end)

  it("has no hidden cap", function()
    local refs = {}
    for i = 1, 1500 do refs[i] = square.remote(i) end
    lray.get(refs)
    assert.truthy(eventually(5, function()
      return #cli_json("list tasks --format json --filter name=square") >= 1500
    end))
  end)
end)

describe("the embedded cluster", function()
  it("is what the CLI reaches when it is the only one", function()
    local out, status = sh("env -u LRAY_ADDRESS " .. q(BIN) .. " list actors --filter name=obs_printer")
    assert.are.equal(0, status, out)
    assert.truthy(out:find("obs_printer", 1, true), out)
  end)

  it("asks which one when several run", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    write_file(dir .. "/other.lua", [[
      local lray = require("lray")
      lray.init{num_cpus = 1, include_dashboard = false}
      local f = io.open(arg[1] .. "/ready", "w"); f:write("1"); f:close()
      local t = lray.now() + 30
      while lray.now() < t and not io.open(arg[1] .. "/stop") do lray.sleep(0.02) end
    ]])
    local child = io.popen(q(BIN) .. " " .. q(dir .. "/other.lua") .. " " .. q(dir))
    eventually(10, function() return io.open(dir .. "/ready") end)
    local out, status = sh("env -u LRAY_ADDRESS " .. q(BIN) .. " status")
    write_file(dir .. "/stop", "1")
    child:close()
    os.execute("rm -rf " .. q(dir))
    assert.are_not.equal(0, status, out)
    assert.truthy(out:find("several lray clusters", 1, true), out)
    assert.truthy(out:find(ctx.address, 1, true), out)
  end)
end)

describe("lray logs", function()
  it("prints an actor's log, its tail, and follows it", function()
    lray.get(printer.say.remote("one"))
    lray.get(printer.say.remote("two"))
    lray.get(printer.say.remote("three"))
    local out = eventually(5, function()
      local o = cli("logs --actor obs_printer")
      return o:find("P says three", 1, true) and o
    end)
    assert.truthy(out, "the actor's log lacks its lines")
    assert.truthy(out:find("P says one\nP says two\nP says three\n", 1, true), out)
    assert.are.equal("P says three\n", (cli("logs --pid " .. printer_pid .. " --tail 1")))
    local listing = cli("logs")
    assert.truthy(listing:find("worker%-" .. printer_pid .. "%.out"), listing)
    local actors = cli_json("list actors --format json --filter name=obs_printer")
    local by_id = cli("logs --actor " .. actors[1].actor_id .. " --tail 2")
    assert.are.equal("P says two\nP says three\n", by_id)
    -- --follow prints what comes later and ends with the worker.
    local tmp = lray.remote(Printer).remote("F")
    local fpid = lray.get(tmp.pid.remote())
    lray.get(tmp.say.remote("early"))
    eventually(5, function() return cli("logs --pid " .. fpid):find("early", 1, true) end)
    local follow = io.popen("LRAY_ADDRESS=" .. q(ctx.address) .. " timeout 20 " .. q(BIN)
      .. " logs --follow --pid " .. fpid)
    lray.get(tmp.say.remote("late"))
    lray.kill(tmp)
    local fo = follow:read("*a")
    follow:close()
    assert.truthy(fo:find("F says early\n", 1, true), fo)
    assert.truthy(fo:find("F says late\n", 1, true), fo)
  end)

  it("finds the worker of a task", function()
    local talk = lray.remote(function() print("task talking"); return 1 end)
    local ref = talk.remote()
    lray.get(ref)
    local tid = eventually(5, function()
      for _, t in ipairs(cli_json("list tasks --format json --filter state=FINISHED")) do
        if t.name == "talk" then return t.task_id end
      end
    end)
    assert.is_string(tid)
    assert.truthy(eventually(5, function() return cli("logs --task " .. tid):find("task talking", 1, true) end))
  end)
end)

describe("lray timeline", function()
  it("writes Chrome trace JSON with task and actor-call spans", function()
    lray.get(square.remote(7))
    lray.get(printer.say.remote("traced"))
    local file = os.tmpname()
    local trace = eventually(5, function()
      cli("timeline " .. q(file))
      local f = io.open(file)
      local ok, t = pcall(cjson.decode, f:read("*a"))
      f:close()
      if not ok then return nil end
      local task, call = false, false
      for _, e in ipairs(t.traceEvents) do
        if e.ph == "X" and e.cat == "task" and e.name == "square" then task = true end
        if e.ph == "X" and e.cat == "actor_call" and e.name == "Printer.say" then call = true end
      end
      return task and call and t
    end)
    os.remove(file)
    assert.is_table(trace, "no task and actor-call spans in the timeline")
    local named = false
    for _, e in ipairs(trace.traceEvents) do
      if e.ph == "X" then
        assert.is_number(e.ts); assert.is_number(e.dur); assert.is_number(e.pid); assert.is_number(e.tid)
        assert.is_true(e.dur >= 1)
      elseif e.ph == "M" and e.name == "thread_name" and e.tid == printer_pid then
        named = e.args.name:find("actor", 1, true) ~= nil
      end
    end
    assert.is_true(named, "the actor's row has no name")
  end)
end)

describe("lray memory and summary", function()
  it("lists objects by size with their call sites", function()
    local big = lray.put(string.rep("m", 200000)); local line = debug.getinfo(1, "l").currentline
    assert.is_not_nil(big)
    local out = cli("memory")
    assert.truthy(out:find("observability_spec.lua:" .. line, 1, true), out)
    local first = out:match("OBJECT_ID[^\n]*\n([^\n]*)")
    assert.truthy(first:find("KiB", 1, true) or first:find("MiB", 1, true), out)
    local objs = cli_json("list objects --format json --limit 1")
    assert.is_true(objs[1].size >= 200000)
    assert.truthy(objs[1].call_site:find("observability_spec.lua", 1, true))
  end)

  it("summarizes tasks by function and state", function()
    local out, status
    eventually(5, function()
      out, status = cli("summary tasks")
      local total = out:match("\nsquare%s+(%d+)")
      return total and tonumber(total) >= 1531
    end)
    assert.are.equal(0, status)
    local row = out:match("\nsquare%s[^\n]*")
    assert.truthy(row, out)
    local total, pending, running, finished = row:match("square%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)")
    assert.is_true(tonumber(total) >= 1531)
    assert.are.equal(tonumber(total), tonumber(pending) + tonumber(running) + tonumber(finished))
  end)
end)

describe("the dashboard", function()
  it("is at ctx.dashboard_url on loopback", function()
    assert.truthy(ctx.dashboard_url:match("^http://127%.0%.0%.1:%d+$"), ctx.dashboard_url)
    local page = http("/")
    assert.truthy(page:find("<title>lray dashboard</title>", 1, true))
    local out = http("/nosuch", "-o /dev/null -w '%{http_code}'")
    assert.are.equal("404", out)
    -- A page whose name was rebound to 127.0.0.1 gets nothing.
    assert.are.equal("403", (http("/api/actors", "-o /dev/null -w '%{http_code}' -H 'Host: evil.example:8265'")))
    assert.are.equal("200", (http("/api/actors", "-o /dev/null -w '%{http_code}' -H 'Host: localhost'")))
  end)

  it("serves /api/* with the records of lray list", function()
    for _, kind in ipairs({ "nodes", "actors", "tasks", "objects", "jobs" }) do
      local api = http_json("/api/" .. kind)
      local cli_items = cli_json("list " .. kind .. " --format json")
      assert.is_true(#api > 0, kind)
      local key = ({ nodes = "node_id", actors = "actor_id", tasks = "task_id",
        objects = "object_id", jobs = "job_id" })[kind]
      local seen = {}
      for _, it in ipairs(cli_items) do seen[it[key]] = it end
      local common = 0
      for _, it in ipairs(api) do
        if seen[it[key]] then
          common = common + 1
          for k in pairs(seen[it[key]]) do
            if k ~= "count" and k ~= "state" and k ~= "ready" and k ~= "ended" and k ~= "started"
              and k ~= "pid" and k ~= "worker_id" and k ~= "attempts" then
              assert.are.same(seen[it[key]][k], it[k], kind .. "." .. k)
            end
          end
        end
      end
      assert.is_true(common > 0, kind)
    end
    local one = http_json("/api/actors?name=obs_printer")
    assert.are.equal(1, #one)
    assert.are.equal(2, #http_json("/api/tasks?limit=2"))
    assert.are.equal("[]", (http("/api/actors?name=nobody")))
  end)

  it("serves status, summary, worker logs and the first snapshot", function()
    local st = http_json("/api/status")
    assert.are.equal(2, st.total.CPU)
    assert.is_number(st.store.capacity)
    local sum = http_json("/api/summary")
    local sq
    for _, f in ipairs(sum.tasks) do if f.name == "square" then sq = f end end
    assert.is_table(sq)
    assert.is_true(sq.total >= 1)
    lray.get(printer.say.remote("via http"))
    local log = eventually(5, function()
      local t = http("/api/logs?pid=" .. printer_pid .. "&tail=1")
      return t == "P says via http\n" and t
    end)
    assert.are.equal("P says via http\n", log)
    assert.are.equal("404", (http("/api/logs?pid=1", "-o /dev/null -w '%{http_code}'")))
    local workers = http_json("/api/workers")
    local found = false
    for _, w in ipairs(workers) do if w.pid == printer_pid then found = true end end
    assert.is_true(found)
    local js = http("/snapshot.js")
    local snap = cjson.decode(js:match("^window%.LRAY_SNAPSHOT = (.*);%s*$"))
    assert.is_table(snap.actors)
    assert.is_number(snap.time)
    assert.are.equal("405", (http("/api/actors", "-o /dev/null -w '%{http_code}' -X POST")))
  end)

  it("serves /metrics in Prometheus text format", function()
    local out = http("/metrics")
    local typed, samples = {}, {}
    for line in out:gmatch("([^\n]*)\n") do
      local name, kind = line:match("^# TYPE ([%a_:][%w_:]*) (%a+)$")
      if name then
        assert.truthy(kind == "gauge" or kind == "counter", line)
        typed[name] = true
      elseif line:match("^# HELP [%a_:][%w_:]* .+$") then -- luacheck: ignore 542
      else
        local metric, labels, value = line:match("^([%a_:][%w_:]*)({?.-}?) (%S+)$")
        assert.truthy(metric, "not a sample line: " .. line)
        assert.truthy(typed[metric], "sample before its TYPE: " .. line)
        assert.truthy(tonumber(value) or value == "+Inf" or value == "NaN", line)
        if labels ~= "" then
          local inner = labels:match("^{(.*)}$")
          for pair in (inner .. ","):gmatch('(.-"),') do
            assert.truthy(pair:match('^[%a_][%w_]*=".*"$'), "bad label in " .. line)
          end
        end
        samples[metric .. labels] = tonumber(value)
      end
    end
    assert.are.equal(1, samples["lray_nodes_alive"])
    assert.is_true(samples['lray_actors{state="ALIVE"}'] >= 1)
    assert.is_true(samples['lray_tasks{state="FINISHED"}'] >= 1500)
    assert.is_number(samples['lray_tasks{state="RUNNING"}'])
    local node = http_json("/api/nodes")[1].node_id
    assert.are.equal(2, samples['lray_resource_total{resource="CPU",node="' .. node .. '"}'])
    assert.is_number(samples['lray_resource_used{resource="CPU",node="' .. node .. '"}'])
    assert.is_true(samples['lray_object_store_used_bytes{node="' .. node .. '"}'] >= 0)
  end)

  it("pushes live snapshots as Server-Sent Events", function()
    local out = sh("curl -s -N --max-time 10 " .. q(ctx.dashboard_url .. "/events")
      .. " | grep -m1 '^data: '")
    local ok, snap = pcall(cjson.decode, out:match("^data: (.*)$") or "")
    assert.is_true(ok, out)
    local names = {}
    for _, a in ipairs(snap.actors) do names[#names + 1] = a.name end
    assert.truthy(table.concat(names, " "):find("obs_printer", 1, true))
    assert.is_table(snap.status.total)
  end)

  it("needs the token on a non-loopback address", function()
    local tf = os.tmpname()
    write_file(tf, "s3cret\n")
    local dash = require("lray.dashboard")
    local url, pid, proc = dash.spawn({ node = ctx.address, host = "0.0.0.0", port = 18265,
      token_file = tf, log = "/dev/null" })
    assert.is_string(url, pid)
    local port = url:match(":(%d+)$")
    local base = "http://127.0.0.1:" .. port
    local code = eventually(5, function()
      local c = sh("curl -s -o /dev/null -w '%{http_code}' --max-time 5 " .. base .. "/api/actors")
      return c ~= "000" and c
    end)
    local good = sh("curl -s --max-time 5 -H 'Authorization: Bearer s3cret' " .. base .. "/api/actors")
    local wrong = sh("curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Authorization: Bearer nope' "
      .. base .. "/api/actors")
    proc:kill(15)
    os.remove(tf)
    assert.are.equal("401", code)
    assert.are.equal("401", wrong)
    assert.truthy(good:find("obs_printer", 1, true), good)
  end)

  it("is off with include_dashboard = false", function()
    local out = sh(q(BIN) .. " -e 'local l = require(\"lray\") local c = l.init{num_cpus = 1,"
      .. " include_dashboard = false} io.write(\"[\", c.dashboard_url, \"]\")'")
    assert.are.equal("[]", out)
  end)
end)

describe("lray start --head", function()
  it("serves the dashboard until lray stop", function()
    local base = os.tmpname()
    os.remove(base)
    local env = "LRAY_TMPDIR=" .. q(base) .. " "
    local out, status = sh(env .. q(BIN) .. " start --head --port 0 --num-cpus 1")
    assert.are.equal(0, status, out)
    local url = out:match("Dashboard: (http://127%.0%.0%.1:%d+)")
    assert.truthy(url, out)
    local metrics = sh("curl -s --max-time 10 " .. q(url .. "/metrics"))
    local st = sh(env .. q(BIN) .. " status")
    local nodes = sh("curl -s --max-time 10 " .. q(url .. "/api/nodes"))
    local stopped = sh(env .. q(BIN) .. " stop")
    local gone = eventually(10, function()
      return sh("curl -s -o /dev/null -w '%{http_code}' --max-time 2 " .. q(url .. "/healthz")) == "000"
    end)
    os.execute("rm -rf " .. q(base))
    assert.truthy(metrics:find("\nlray_nodes_alive 1\n", 1, true), metrics)
    assert.truthy(st:find("Dashboard: " .. url, 1, true), st)
    assert.are.equal(1, #cjson.decode(nodes))
    assert.truthy(stopped:find("Stopped", 1, true), stopped)
    assert.truthy(gone, "the dashboard still answers after lray stop")
  end)
end)

describe("worker output", function()
  it("reaches a piped driver line by line, and survives the driver's SIGKILL", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    write_file(dir .. "/talk.lua", [[
      local lray = require("lray")
      lray.init{num_cpus = 1, include_dashboard = false}
      print("driver line 1")
      local t = lray.remote(function() print("worker line"); return 1 end)
      lray.get(t.remote())
      print("driver line 2")
      lray.sleep(30)
    ]])
    local p = io.popen("echo $$; exec " .. q(BIN) .. " " .. q(dir .. "/talk.lua"))
    local pid = tonumber(p:read("*l"))
    -- The task's result comes straight from its worker and its output
    -- through the node, so the worker's line may come before or after
    -- "driver line 2" (as in Ray); each arrives whole, on its own line.
    local got, worker = {}, nil
    for line in p:lines() do
      got[#got + 1] = line
      if line:find("^%(t pid=%d+%) ") then worker = line end
      if worker and got[#got] == "driver line 2" or (worker and #got >= 3) then break end
    end
    os.execute("kill -9 " .. pid)
    p:close()
    os.execute("rm -rf " .. q(dir))
    assert.are.equal("driver line 1", got[1])
    assert.is_string(worker, table.concat(got, "\n"))
    assert.truthy(worker:find(") worker line", 1, true), worker)
    table.sort(got)
    assert.are.same({ "(t pid=", "driver line 1", "driver line 2" },
      { got[1]:sub(1, 7), got[2], got[3] })
  end)
end)

describe("lray.util.progress", function()
  local SCRIPT = [[
    local lray = require("lray")
    lray.init{num_cpus = 2, include_dashboard = false}
    local f = lray.remote(function(i) return i end)
    local refs = {}
    for i = 1, 20 do refs[i] = f.remote(i) end
    local seen, sum = {}, 0
    for ref, i in lray.util.progress(refs, {desc = "work"}) do
      assert(refs[i] == ref and not seen[i]); seen[i] = true
      sum = sum + lray.get(ref)
    end
    io.stdout:write("sum=", sum, "\n")
  ]]

  it("yields every ref once with its index and prints plain lines to a pipe", function()
    local file = os.tmpname()
    write_file(file, SCRIPT)
    local out = sh(q(BIN) .. " " .. q(file) .. " 2>&1")
    os.remove(file)
    assert.truthy(out:find("sum=210", 1, true), out)
    assert.truthy(out:find("work: 20/20 100%", 1, true), out)
    assert.falsy(out:find("\r", 1, true), out)
  end)

  it("draws a bar in place at a terminal", function()
    local file = os.tmpname()
    write_file(file, SCRIPT)
    local out = sh("script -qec " .. q(q(BIN) .. " " .. q(file)) .. " /dev/null")
    os.remove(file)
    assert.truthy(out:find("\r\27[K", 1, true), out)
    assert.truthy(out:find("work: %[#+%] 20/20 100%%"), out)
  end)

  it("rejects what is not a list", function()
    assert.has_error(function() lray.util.progress(42) end)
  end)
end)
