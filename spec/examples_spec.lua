-- The examples (examples/*.lua) run as scripts, the way a user runs them:
-- each one in its own `lray` process, from the repository root. Each test
-- checks the exit status and the printed facts that would be wrong if the
-- feature the example shows were broken.
--
--   busted --lua=$PWD/build/lray spec/examples_spec.lua
--   LRAY_BIN=/path/to/lray busted --lua=/path/to/lray spec/examples_spec.lua

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The repository root: the directory above this spec file.
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
local PWD = os.getenv("PWD") or "."
if ROOT == "." then ROOT = PWD elseif ROOT:sub(1, 1) ~= "/" then ROOT = PWD .. "/" .. ROOT end
local BIN = os.getenv("LRAY_BIN") or "build/lray"
if BIN:sub(1, 1) ~= "/" then
  -- relative to the repository root by default, else to where busted runs
  local f = io.open(ROOT .. "/" .. BIN, "r")
  if f then f:close(); BIN = ROOT .. "/" .. BIN else BIN = PWD .. "/" .. BIN end
end

local TIMEOUT = 60   -- seconds; a hung example fails instead of hanging the suite

-- Runs examples/<name>.lua; returns its output (stdout and stderr), exit
-- status and wall time in seconds.
local function run(name, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = q(a) end
  local cmd = ("cd %s && s=$(date +%%s%%N) && timeout %d %s %s %s 2>&1; echo \"EXIT:$?\";"
    .. " echo \"NS:$(( $(date +%%s%%N) - s ))\""):format(q(ROOT), TIMEOUT, q(BIN),
    q("examples/" .. name .. ".lua"), table.concat(args, " "))
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  local code = tonumber(out:match("EXIT:(%d+)%s*NS:%-?%d+%s*$"))
  local ns = tonumber(out:match("NS:(%-?%d+)%s*$")) or 0
  out = out:gsub("EXIT:%d+%s*NS:%-?%d+%s*$", "")
  return out, code, ns / 1e9
end

local function lines_of(out)
  local t = {}
  for l in (out .. "\n"):gmatch("(.-)\n") do t[#t + 1] = l end
  return t
end

-- Runs an example and asserts exit status 0; returns output and its lines.
local function run_ok(name, ...)
  local out, code, secs = run(name, ...)
  assert(code == 0, ("%s exited with status %s; its output:\n%s"):format(name, tostring(code), out))
  return out, lines_of(out), secs
end

-- Asserts that out has a line exactly equal to line.
local function has_line(out, line)
  for l in out:gmatch("[^\n]+") do if l == line then return true end end
  error(("expected the line\n  %s\nin the output:\n%s"):format(line, out), 2)
end

-- The lines matching pattern, as lists of captures.
local function matching(lines, pattern)
  local res = {}
  for _, l in ipairs(lines) do
    local caps = { l:match(pattern) }
    if #caps > 0 then res[#res + 1] = caps end
  end
  return res
end

local function check(cond, msg, out)
  if not cond then error(msg .. "\noutput:\n" .. (out or ""), 2) end
end

-- Parses "{A = 6, B = 6, C = 8}" into a table of numbers.
local function parse_counts(s)
  local t = {}
  for k, v in s:gmatch("(%w+) = (%-?%d+)") do t[k] = tonumber(v) end
  return t
end

local function one_to(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return "{" .. table.concat(t, ", ") .. "}"
end

-- Checks the output of the method-tracking examples: every "called N" line is
-- a running count (increasing per caller, within the final count), and the
-- final counts add up to total.
local function check_invoker_lines(out, lines, pattern, final, total)
  local calls = matching(lines, pattern)
  check(#calls == 5, "expected 5 'Named caller' lines", out)
  local last = {}
  for _, c in ipairs(calls) do
    local name, n = c[1], tonumber(c[2])
    check(final[name] ~= nil, "unknown caller " .. name, out)
    check(n > (last[name] or 0), "the count of " .. name .. " did not increase", out)
    check(n <= final[name], "count of " .. name .. " above its final count", out)
    last[name] = n
  end
  for name, n in pairs(last) do
    check(n == final[name], "the last count of " .. name .. " is not its final count", out)
  end
  check(final.A + final.B + final.C == total, "final counts do not add up to " .. total, out)
end

-- The generator 02_adding_arrays.lua writes its data files with.
local function data_file(seed)
  local state, values = seed, {}
  for i = 1, 100 do
    state = (state * 16807) % 2147483647
    values[i] = state % 100
  end
  return values
end

-- The shard "reader" of 03_batch_inference_pool.lua: rows and tips of shard i.
local function shard_facts(index)
  local state = 1000 + index
  local function rand()
    state = (state * 16807) % 2147483647
    return state
  end
  for _ = 1, 3 do rand() end
  local rows = 13000 + rand() % 3000
  local tips = 0
  for _ = 1, rows do
    local r = rand() % 100
    local pc = r < 68 and 1 or 2 + r % 5
    if pc >= 2 then tips = tips + 1 end
  end
  return rows, tips
end

-- Checks a supervisor-tree run: status lines until the first all-DONE one,
-- every worker's result, the termination and the dead supervisor.
local function check_supervisor(out, lines, states, result_lines)
  local valid = {}
  for _, s in ipairs(states) do valid[s] = true end
  local status = {}
  for _, l in ipairs(lines) do
    if l:match("^{'") then status[#status + 1] = l end
  end
  check(#status >= 1, "no status lines", out)
  for i, l in ipairs(status) do
    local n, done = 0, 0
    for s in l:gmatch("'(%u+)'") do
      check(valid[s], "unknown state " .. s, out)
      n = n + 1
      if s == "DONE" then done = done + 1 end
    end
    check(n == 3, "a status line without the states of all 3 workers: " .. l, out)
    if i < #status then check(done < 3, "status went on after all were DONE", out)
    else check(done == 3, "the last status line is not all DONE", out) end
  end
  for _, r in ipairs(result_lines) do has_line(out, r) end
  has_line(out, "Supervisor terminated 3 workers")
  has_line(out, ("All workers DONE after %d status checks"):format(#status))
  has_line(out, "Supervisor after lray.kill: call ok=false, ActorDiedError=true")
end

-- Every example, in the order of the tests below.
local EXAMPLES = {
  "quickstart",
  "01_invoker_actor", "01_parameter_server",
  "02_parallel_vs_serial", "02_adding_arrays", "02_counter_actor",
  "03_supervisor_tree", "03_batch_inference_pool", "03_message_actor", "03_logging_actor",
  "04_base_class_subclasses", "04_progress_pi",
  "05_named_actor", "05_detached_actor", "05_actor_restart", "05_actor_options",
  "05_actor_pool", "05_supervisor_tree",
}

describe("examples", function()
  it("every ported example exists and starts with a comment saying what it ports and how to run it", function()
    for _, name in ipairs(EXAMPLES) do
      local f = io.open(ROOT .. "/examples/" .. name .. ".lua", "r")
      assert(f, "examples/" .. name .. ".lua is missing")
      local src = f:read("*a")
      f:close()
      assert(src:match("^%-%- " .. name:gsub("%p", "%%%0") .. "%.lua"),
        "examples/" .. name .. ".lua does not start with a comment block naming it")
      assert(src:find("build/lray examples/" .. name .. ".lua", 1, true),
        "examples/" .. name .. ".lua does not say how to run it")
      if name ~= "quickstart" then
        assert(src:find("seed 0%d"), "examples/" .. name .. ".lua does not say which seed it ports")
      end
    end
  end)

  -- Examples added to examples/ without a test of their own below still
  -- have to run cleanly.
  local tested = {}
  for _, n in ipairs(EXAMPLES) do tested[n] = true end
  local ls = assert(io.popen("ls " .. q(ROOT .. "/examples")))
  for file in ls:lines() do
    local name = file:match("^(.+)%.lua$")
    if name and not tested[name] then
      it(name .. ": runs to the end with exit status 0", function()
        run_ok(name)
      end)
    end
  end
  ls:close()

  it("quickstart: tasks, put/get, an actor, wait, errors, shutdown, in under 3 s", function()
    local out, _, secs = run_ok("quickstart")
    has_line(out, "2. squares computed in parallel: 1, 4, 9, 16")
    has_line(out, "3. lray.put a table, summed remotely: 60")
    has_line(out, "4. actor Counter after incr(), incr(5): 106")
    has_line(out, "5. lray.wait: first ready slept 0.01s, 1 still running")
    has_line(out, "6. remote error caught: ok=false, is TaskError=true")
    has_line(out, "7. lray.shutdown(): done")
    check(secs < 3, ("quickstart took %.2f s; `make run` must take under 3 s"):format(secs), out)
  end)

  it("01_invoker_actor: the actor counts every invocation, in order", function()
    local out, lines = run_ok("01_invoker_actor")
    check(out:find("Actor%(MethodStateCounter, %x+%)"), "no actor handle printed", out)
    local final = parse_counts(assert(out:match("\n(%{A = %d+, B = %d+, C = %d+%})\n"), out))
    check_invoker_lines(out, lines, "^Named caller: (%u) called (%d+)$", final, 15)
    has_line(out, "Total invocations: 15")
    has_line(out, "Invoker B alone: " .. final.B)
  end)

  it("01_parameter_server: three workers' 75 updates all reach the parameter server", function()
    local out, lines = run_ok("01_parameter_server")
    has_line(out, "Initial params: [0 0 0 0 0 0 0 0 0 0]")
    local updates = matching(lines, "^Updated params: %[(.*)%]$")
    check(#updates == 20, "expected 20 'Updated params' lines", out)
    local prev = 0
    for _, u in ipairs(updates) do
      local vals = {}
      for v in u[1]:gmatch("%S+") do vals[#vals + 1] = tonumber(v) end
      check(#vals == 10, "params do not have 10 values", out)
      for i = 2, 10 do check(vals[i] == vals[1], "params updated only in part: " .. u[1], out) end
      check(vals[1] <= prev and vals[1] >= -75, "params went the wrong way: " .. u[1], out)
      prev = vals[1]
    end
    check(#matching(lines, "^ObjectRef%(%x+%)$") == 3, "expected 3 ObjectRefs of worker tasks", out)
    has_line(out, "Workers finished: 3 workers x 25 updates")
    has_line(out, "Final params: [-75 -75 -75 -75 -75 -75 -75 -75 -75 -75]")
  end)

  it("02_parallel_vs_serial: five tasks run at the same time", function()
    local out = run_ok("02_parallel_vs_serial")
    has_line(out, "regular_function() returned 1")
    check(out:find("remote_function.remote() returned ObjectRef(", 1, true), "no ObjectRef printed", out)
    has_line(out, "lray.get(obj_ref) returned 1")
    local serial = tonumber(out:match("Serial: sum of 5 results = 5, wall time: ([%d.]+) s"))
    local parallel = tonumber(out:match("Parallel: sum of 5 results = 5, wall time: ([%d.]+) s"))
    check(serial and parallel, "missing serial/parallel results", out)
    check(serial >= 0.95, "the serial loop took less than 5 x 0.2 s", out)
    -- 5 x 0.2 s serially vs one 0.2 s round on 5 logical CPUs: a wide margin.
    check(parallel < 0.6 * serial, "the tasks did not run in parallel", out)
  end)

  it("02_adding_arrays: arrays read by tasks, added and summed through ObjectRefs", function()
    local out, lines = run_ok("02_adding_arrays")
    local a1, a2 = data_file(1), data_file(2)
    local s1, s2 = 0, 0
    for i = 1, 100 do s1, s2 = s1 + a1[i], s2 + a2[i] end
    has_line(out, "Sum of arr1: " .. s1)
    has_line(out, "Sum of arr2: " .. s2)
    has_line(out, "Sum of arr1 + arr2: " .. (s1 + s2))
    -- the printed matrix is arr1 + arr2, element by element
    local printed = {}
    for _, l in ipairs(lines) do
      if l:match("^%s*%[") then
        for v in l:gmatch("%d+") do printed[#printed + 1] = tonumber(v) end
      end
    end
    check(#printed == 100, "the result matrix does not have 100 elements", out)
    for i = 1, 100 do check(printed[i] == a1[i] + a2[i], "wrong element " .. i .. " of the sum", out) end
    check(#matching(lines, "^array [12]: ObjectRef%(%x+%)$") == 2, "missing array ObjectRefs", out)
  end)

  it("02_counter_actor: the actor counts fire-and-forget calls before later queries", function()
    local out, lines = run_ok("02_counter_actor")
    local first = parse_counts(assert(out:match("\n(%{A = %d+, B = %d+, C = %d+%})\n"), out))
    check(first.A + first.B + first.C == 10, "the state after 10 calls does not count 10", out)
    local final = parse_counts(assert(out:match("Final state: (%{A = %d+, B = %d+, C = %d+%})"), out))
    check_invoker_lines(out, lines, "^Named caller: (%u) called (%d+) times$", final, 15)
    for _, k in ipairs({ "A", "B", "C" }) do
      check(final[k] >= first[k], "a count went down", out)
    end
  end)

  it("03_supervisor_tree: a supervisor actor runs and reports three worker actors", function()
    local out, lines = run_ok("03_supervisor_tree")
    check_supervisor(out, lines, { "RUNNING", "PENDING", "DONE" }, {
      "Worker report: lr model trained (loss 0)",
      "Worker report: cl model trained (loss 0)",
      "Worker report: nn model trained (loss 0)",
    })
  end)

  it("03_batch_inference_pool: an ActorPool predicts every shard, in order", function()
    local out, lines = run_ok("03_batch_inference_pool")
    check(#matching(lines, "^s3://.*_%d%d%d%d%d%d%.parquet$") == 12, "expected 12 shard paths", out)
    local preds = matching(lines, "^Predictions dataframe size: (%d+) | Total score for tips: (%d+)$")
    check(#preds == 12, "expected 12 predictions", out)
    local rows, tips = 0, 0
    for i = 0, 11 do
      local r, t = shard_facts(i)
      check(tonumber(preds[i + 1][1]) == r and tonumber(preds[i + 1][2]) == t,
        ("shard %d: expected %d rows and %d tips"):format(i, r, t), out)
      rows, tips = rows + r, tips + t
    end
    has_line(out, ("12 shards predicted by 6 actors: %d rows, %d tips"):format(rows, tips))
  end)

  it("03_message_actor: tasks given an actor handle deliver all their messages", function()
    local out, lines = run_ok("03_message_actor")
    check(#matching(lines, "^ObjectRef%(%x+%)$") == 3, "expected 3 worker ObjectRefs", out)
    check(#matching(lines, "^New messages:$") == 10, "expected 10 polls", out)
    local seen, count, last = {}, 0, {}
    for i, w in out:gmatch("Message (%d+) from worker (%d+)%.") do
      i, w = tonumber(i), tonumber(w)
      local key = i .. "/" .. w
      check(not seen[key], "message " .. key .. " delivered twice", out)
      check(i > (last[w] or -1), "messages of worker " .. w .. " out of order", out)
      seen[key], last[w], count = true, i, count + 1
    end
    check(count == 30, "expected 30 messages, got " .. count, out)
    has_line(out, "Received 30 messages from 3 workers")
  end)

  it("03_logging_actor: each experiment task logs its 9 iterations to the actor", function()
    local out = run_ok("03_logging_actor")
    has_line(out, "Experiments finished: 0, 1, 2")
    local its = {}
    for i = 0, 8 do its[#its + 1] = "On iteration " .. i end
    for e = 0, 2 do
      has_line(out, ("Experiment %d: 9 entries: %s"):format(e, table.concat(its, ", ")))
    end
  end)

  it("04_base_class_subclasses: subclass actors inherit methods and count their calls", function()
    local out, lines = run_ok("04_base_class_subclasses")
    check(out:find("Actor%(ActorClsOne, %x+%)"), "no ActorClsOne handle", out)
    check(out:find("Actor%(ActorClsTwo, %x+%)"), "no ActorClsTwo handle", out)
    local states = matching(lines, "^State of counts in this execution: (.*)$")
    check(#states == 2, "expected 2 rounds", out)
    local c1, c2 = parse_counts(states[1][1]), parse_counts(states[2][1])
    check(c1.ActorClsOne + c1.ActorClsTwo == 15, "round 1 does not count 15 calls", out)
    check(c2.ActorClsOne + c2.ActorClsTwo == 30, "round 2 does not count 30 calls", out)
    -- what the actors counted (through the inherited get_all_method_calls,
    -- returning two values) is what the driver counted
    has_line(out, ("{{ActorClsOne, {method = %d}}, {ActorClsTwo, {method = %d}}}"):format(
      c2.ActorClsOne, c2.ActorClsTwo))
  end)

  it("04_progress_pi: the tasks report progress to 100% and estimate pi", function()
    local out, lines = run_ok("04_progress_pi")
    local progress = matching(lines, "^Progress: (%d+)%%$")
    check(#progress >= 1, "no progress lines", out)
    local prev = 0
    for _, p in ipairs(progress) do
      local v = tonumber(p[1])
      check(v >= prev and v <= 100, "progress went backwards or past 100%", out)
      prev = v
    end
    check(prev == 100, "progress did not reach 100%", out)
    local pi = tonumber(out:match("Estimated value of π is: ([%d.]+)"))
    check(pi and math.abs(pi - 3.14159) < 0.1, "pi estimate is off", out)
  end)

  it("05_named_actor: named actors are found by name, unique per namespace, freed by kill", function()
    local out = run_ok("05_named_actor")
    local _, n = out:gsub(one_to(100):gsub("%p", "%%%0"), "")
    check(n == 2, "expected both counters to count 1..100", out)
    has_line(out, "A task called Counter1.next() by name: 101")
    check(out:find("Creating a second 'Counter1': ok=false", 1, true), "a duplicate name was accepted", out)
    has_line(out, "get_if_exists returned the existing Counter1: next() = 102")
    check(out:find("get_actor('Counter1') in namespace 'elsewhere': ok=false", 1, true),
      "the name was visible in another namespace", out)
    has_line(out, "Counter1.next() after lray.kill: ok=false, ActorDiedError=true")
    has_line(out, "get_actor('Counter1') after lray.kill: found=false")
    has_line(out, "A new Counter1: next() = 1")
  end)

  it("05_detached_actor: detached actors outlive their creating task and driver until killed", function()
    local out = run_ok("05_detached_actor")
    local _, n = out:gsub(one_to(100):gsub("%p", "%%%0"), "")
    check(n == 2, "expected both counters to count 1..100", out)
    has_line(out, "task created Service, its next() = 1")
    has_line(out, "after the task ended, Service.next() = 2")
    has_line(out, "child driver: Survivor.next() = 1")
    has_line(out, "after the child driver exited, Survivor.next() = 2")
    for _, name in ipairs({ "Counter1", "Counter2", "Service", "Survivor" }) do
      has_line(out, ("after lray.kill, get_actor('%s') found it: false"):format(name))
    end
  end)

  it("05_actor_restart: max_restarts, max_task_retries and kill's no_restart", function()
    local out = run_ok("05_actor_restart")
    local expected = table.concat({
      "max_restarts = 2",
      "  next() x 3: 1, 2, 3",
      "  crash() #1: ActorDiedError",
      "  next() after crash #1: 1",
      "  crash() #2: ActorDiedError",
      "  next() after crash #2: 1",
      "  crash() #3: ActorDiedError",
      "  next() after crash #3: ActorDiedError",
      "max_restarts = -1, max_task_retries = -1",
      "  crash_once(): finished on the restarted actor",
      "  next(): 1",
      "lray.kill(h, {no_restart = false})",
      "  next(): 1",
      "lray.kill(h, {no_restart = true})",
      "  next(): ActorDiedError",
      "Foo.options({max_restarts = 0})",
      "  crash(): ActorDiedError",
      "  next() after the crash: ActorDiedError",
    }, "\n")
    check(out:find(expected, 1, true), "expected exactly:\n" .. expected, out)
  end)

  it("05_actor_options: options() overrides num_cpus and resources", function()
    local out = run_ok("05_actor_options")
    local expected = table.concat({
      "available at start: CPU 4, CustomResource 1",
      "Foo.method() = 1",
      "available while Foo lives: CPU 2, CustomResource 0",
      "Bar.method() = 1",
      "available while Foo and Bar live: CPU 1, CustomResource 0",
      "available after killing both: CPU 4, CustomResource 1",
    }, "\n")
    check(out:find(expected, 1, true), "expected exactly:\n" .. expected, out)
  end)

  it("05_actor_pool: ActorPool map keeps input order, map_unordered yields all", function()
    local out = run_ok("05_actor_pool")
    has_line(out, "{2, 4, 6, 8}")
    has_line(out, "map_unordered, sorted: {10, 12, 14, 16, 18, 20, 22, 24}")
  end)

  it("05_supervisor_tree: a supervisor actor runs and reports three worker actors", function()
    local out, lines = run_ok("05_supervisor_tree")
    check_supervisor(out, lines, { "RUNNING", "TRAINING", "DONE" }, {
      "Worker result: lr: 5 gradients",
      "Worker result: cl: 5 gradients",
      "Worker result: nn: 5 gradients",
    })
  end)
end)
