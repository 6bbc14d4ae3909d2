-- `lray logs`, `lray timeline`, `lray memory` and `lray summary`: readers of
-- the head's state API (lray.state), like `lray list`. Each takes argv, a
-- blocking rpc(msg) -> reply, and returns the exit status.
local core = require("lray._core")
local cjson = require("cjson")
local state = require("lray.state")

local ipairs, tostring, tonumber, type = ipairs, tostring, tonumber, type

local M = {}

local function die(msg)
  io.stderr:write("lray: ", msg, "\n")
  return 1
end

-- Options as `lray list` takes them (name -> "flag"|"string"|"number");
-- dashes in names become underscores.
local function options(argv, first, spec, usage)
  local o, rest = require("lray.cmd").parse(argv, first, spec)
  if not o then return nil, rest .. " (" .. usage .. ")" end
  return o, rest
end

local function human(n)
  n = tonumber(n) or 0
  if n >= 2 ^ 30 then return ("%.2f GiB"):format(n / 2 ^ 30) end
  if n >= 2 ^ 20 then return ("%.2f MiB"):format(n / 2 ^ 20) end
  if n >= 2 ^ 10 then return ("%.1f KiB"):format(n / 2 ^ 10) end
  return ("%d B"):format(n)
end
M.human = human

local function str(v)
  if v == nil or v == cjson.null then return "-" end
  return tostring(v)
end

-- -- logs ----------------------------------------------------------------------

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function last_lines(s, n)
  if not n then return s end
  local starts = {}
  for p in s:gmatch("()[^\n]*\n") do starts[#starts + 1] = p end
  if s ~= "" and s:sub(-1) ~= "\n" then starts[#starts + 1] = s:match(".*\n()") or 1 end
  if #starts <= n then return s end
  return s:sub(starts[#starts - n + 1])
end

-- Prefix id matches: users paste a shortened id.
local function find(items, field, id)
  for _, it in ipairs(items) do
    if it[field] == id then return it end
  end
  for _, it in ipairs(items) do
    if type(it[field]) == "string" and it[field]:sub(1, #id) == id then return it end
  end
  return nil
end

local LOGS_USAGE = "lray logs [--actor ID | --task ID | --pid PID | --node ID] [--tail N] [--follow]"

function M.logs(argv, rpc)
  local o, err = options(argv, 2, { actor = "string", task = "string", pid = "string", node = "string",
    tail = "string", follow = "flag", err = "flag", out = "flag" }, LOGS_USAGE)
  if not o then return die(err) end
  local tail = o.tail and tonumber(o.tail)
  if o.tail and (not tail or tail < 0) then return die("--tail needs a number of lines") end
  local files = state.list(rpc, "logs")
  local pid
  if o.actor then
    local a = find(state.list(rpc, "actors"), "actor_id", o.actor)
      or find(state.list(rpc, "actors"), "name", o.actor)
    if not a then return die("no actor " .. o.actor .. " (`lray list actors` lists them)") end
    pid = tonumber(a.pid)
    if not pid then return die("actor " .. o.actor .. " has no worker process yet") end
  elseif o.task then
    local t = find(state.list(rpc, "tasks"), "task_id", o.task)
    if not t then return die("no task " .. o.task .. " (`lray list tasks` lists them)") end
    pid = tonumber(t.pid)
    if not pid then return die("task " .. o.task .. " has not started on a worker") end
  elseif o.pid then
    pid = tonumber(o.pid)
    if not pid then return die("--pid needs a process id") end
  end
  local chosen = {}
  for _, f in ipairs(files) do
    local stream_ok = (not o.err and not o.out) or (o.err and f.stream == "stderr")
      or (o.out and f.stream == "stdout")
    local who_ok = (pid and f.pid == pid) or (o.node and tostring(f.node_id):sub(1, #o.node) == o.node)
    if stream_ok and who_ok then chosen[#chosen + 1] = f end
  end
  if not pid and not o.node then
    -- No selector: which logs there are.
    local rows = { { "PID", "STREAM", "ALIVE", "ACTOR_ID", "FILE" } }
    for _, f in ipairs(files) do
      rows[#rows + 1] = { str(f.pid), f.stream, tostring(f.alive), str(f.actor_id), f.file }
    end
    io.stdout:write(state.columns(rows))
    return 0
  end
  if #chosen == 0 then
    return die("no log file for " .. (pid and ("worker pid " .. pid) or ("node " .. o.node))
      .. " (it printed nothing yet; `lray logs` lists the log files)")
  end
  local out = io.stdout
  local sizes = {}
  for _, f in ipairs(chosen) do
    if #chosen > 1 then out:write("==> ", f.file, " <==\n") end
    local s = read_all(f.file)
    sizes[f.file] = #s
    out:write(last_lines(s, tail))
  end
  out:flush()
  if not o.follow then return 0 end
  -- Follow: print what is appended, until every followed worker has exited.
  while true do
    local any_alive = false
    for _, f in ipairs(chosen) do
      local fh = io.open(f.file, "rb")
      if fh then
        fh:seek("set", sizes[f.file])
        local s = fh:read("*a")
        fh:close()
        if s ~= "" then
          sizes[f.file] = sizes[f.file] + #s
          out:write(s)
          out:flush()
        end
      end
      if core.kill(f.pid, 0) ~= nil then any_alive = true end
    end
    if not any_alive then return 0 end
    core.usleep(0.1)
  end
end

-- -- timeline --------------------------------------------------------------------

--- Chrome trace events (the object form) for spans from the state API: a
--- process per node, a thread per worker process, an "X" event per span;
--- times in microseconds since the first span.
function M.trace(spans)
  local ev = {}
  local nodes, named_worker = {}, {}
  local t0 = spans[1] and spans[1].start or 0
  for _, s in ipairs(spans) do
    local node, pid = str(s.node_id), tonumber(s.pid) or 0
    if not nodes[node] then
      nodes[#nodes + 1] = node
      nodes[node] = #nodes
      ev[#ev + 1] = { ph = "M", name = "process_name", pid = nodes[node], tid = 0,
        args = { name = "node " .. node:sub(1, 8) } }
    end
    local np = nodes[node]
    if not named_worker[pid] then
      named_worker[pid] = true
      local is_actor = s.actor_id ~= nil and s.actor_id ~= cjson.null
      ev[#ev + 1] = { ph = "M", name = "thread_name", pid = np, tid = pid,
        args = { name = (is_actor and "actor " or "worker ") .. "pid=" .. pid } }
    end
    ev[#ev + 1] = { ph = "X", cat = s.kind, name = str(s.name), pid = np, tid = pid,
      ts = math.floor((s.start - t0) * 1e6 + 0.5), dur = math.max(1, math.floor(s.dur * 1e6 + 0.5)),
      cname = s.failed and "terrible" or nil,
      args = { id = s.id, worker_id = s.worker_id, actor_id = s.actor_id, failed = s.failed,
        start_time = s.start } }
  end
  return { traceEvents = ev, displayTimeUnit = "ms" }
end

function M.timeline(argv, rpc)
  local o, rest = options(argv, 2, {}, "lray timeline [FILE]")
  if not o then return die(rest) end
  local file = rest[1] or ("lray-timeline-" .. os.date("%Y-%m-%d_%H-%M-%S") .. ".json")
  local spans = state.list(rpc, "spans")
  local trace = M.trace(spans)
  local f, err = io.open(file, "w")
  if not f then return die("cannot write " .. file .. ": " .. tostring(err)) end
  f:write(#trace.traceEvents == 0 and '{"traceEvents":[]}' or cjson.encode(trace), "\n")
  f:close()
  io.stdout:write(("Wrote %d task and actor-call spans to %s; open it at https://ui.perfetto.dev"
    .. " or chrome://tracing\n"):format(#spans, file))
  return 0
end

-- -- memory ------------------------------------------------------------------------

function M.memory(argv, rpc)
  local o, err = options(argv, 2, { limit = "number" }, "lray memory [--limit N]")
  if not o then return die(err) end
  local limit = o.limit
  local objs = state.list(rpc, "objects")     -- largest first
  local total, by_site, sites = 0, {}, {}
  for _, ob in ipairs(objs) do
    total = total + (ob.size or 0)
    local cs = str(ob.call_site)
    if not by_site[cs] then by_site[cs] = { n = 0, bytes = 0 }; sites[#sites + 1] = cs end
    by_site[cs].n = by_site[cs].n + 1
    by_site[cs].bytes = by_site[cs].bytes + (ob.size or 0)
  end
  local out = io.stdout
  out:write(("======== Object references (%d objects, %s) ========\n"):format(#objs, human(total)))
  local rows = { { "OBJECT_ID", "SIZE", "WHERE", "STATE", "REFS", "OWNER_PID", "CALL_SITE" } }
  for i, ob in ipairs(objs) do
    if limit and i > limit then break end
    rows[#rows + 1] = { str(ob.object_id), human(ob.size), str(ob.where), str(ob.state),
      str(ob.count), str(ob.owner_pid), str(ob.call_site) }
  end
  out:write(state.columns(rows))
  table.sort(sites, function(a, b) return by_site[a].bytes > by_site[b].bytes end)
  out:write("\n======== By call site ========\n")
  rows = { { "CALL_SITE", "OBJECTS", "SIZE" } }
  for _, cs in ipairs(sites) do
    rows[#rows + 1] = { cs, tostring(by_site[cs].n), human(by_site[cs].bytes) }
  end
  out:write(state.columns(rows))
  local st = state.decode(rpc(state.request("status")))
  if st and st.store then
    out:write(("\nObject store: %s used of %s\n"):format(human(st.store.used), human(st.store.capacity)))
  end
  return 0
end

-- -- summary -------------------------------------------------------------------------

local TASK_STATES = { "PENDING", "RUNNING", "FINISHED", "FAILED", "CANCELLED" }

function M.summary(argv, rpc)
  local what = argv[2] or "tasks"
  local out = io.stdout
  if what == "tasks" then
    local sum = state.task_summary(state.list(rpc, "tasks"))
    out:write("======== Tasks by function ========\n")
    local rows = { { "FUNCTION", "TOTAL" } }
    for _, s in ipairs(TASK_STATES) do rows[1][#rows[1] + 1] = s end
    rows[1][#rows[1] + 1] = "MEAN_RUN"
    for _, s in ipairs(sum) do
      local r = { s.name, tostring(s.total) }
      for _, st in ipairs(TASK_STATES) do r[#r + 1] = tostring(s.states[st] or 0) end
      r[#r + 1] = s.mean_seconds and ("%.3f s"):format(s.mean_seconds) or "-"
      rows[#rows + 1] = r
    end
    out:write(state.columns(rows))
  elseif what == "actors" then
    local by, keys = {}, {}
    for _, a in ipairs(state.list(rpc, "actors")) do
      local k = str(a.class_name) .. "\0" .. str(a.state)
      if not by[k] then by[k] = 0; keys[#keys + 1] = k end
      by[k] = by[k] + 1
    end
    table.sort(keys)
    local rows = { { "CLASS", "STATE", "COUNT" } }
    for _, k in ipairs(keys) do
      local c, s = k:match("^(.*)%z(.*)$")
      rows[#rows + 1] = { c, s, tostring(by[k]) }
    end
    out:write("======== Actors by class ========\n", state.columns(rows))
  elseif what == "objects" then
    local by, keys = {}, {}
    for _, ob in ipairs(state.list(rpc, "objects")) do
      local k = str(ob.call_site)
      if not by[k] then by[k] = { n = 0, b = 0 }; keys[#keys + 1] = k end
      by[k].n, by[k].b = by[k].n + 1, by[k].b + (ob.size or 0)
    end
    table.sort(keys)
    local rows = { { "CALL_SITE", "OBJECTS", "SIZE" } }
    for _, k in ipairs(keys) do rows[#rows + 1] = { k, tostring(by[k].n), human(by[k].b) } end
    out:write("======== Objects by call site ========\n", state.columns(rows))
  else
    return die("usage: lray summary tasks|actors|objects")
  end
  return 0
end

return M
