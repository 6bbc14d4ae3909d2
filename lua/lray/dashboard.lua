-- The dashboard: `lray _dashboard`, a process of its own beside the head
-- node. It talks to the node only through the state API (the "list",
-- "nodes" and "status" requests `lray list` and `lray status` use), and
-- serves over HTTP (libmicrohttpd threads, core.http_listen):
--
--   /                     the page (embedded in the binary)
--   /api/nodes|actors|tasks|objects|jobs|workers   JSON arrays, the records
--                         of `lray list KIND --format json` (?limit=N,
--                         ?filter=KEY=VALUE or KEY=VALUE as parameters)
--   /api/status, /api/summary, /api/logs?pid=N[&tail=N][&stream=err]
--   /metrics              Prometheus text format
--   /snapshot.js          the same snapshot, once, for the page's first draw
--   /events               Server-Sent Events: a snapshot of the cluster each
--                         second while at least one page is open
--
-- Nobody watching costs nothing: the node is asked only when a request comes
-- or a page is open. The process ends when its node connection closes.
local core = require("lray._core")

local ipairs, pairs, tostring, tonumber = ipairs, pairs, tostring, tonumber

local M = {}


-- -- Starting one (in the driver or `lray start`) ------------------------------

-- Binding lives in cluster.lua: a driver binds without loading this file.
M.bind = function(...) return require("lray.cluster").dashboard_bind(...) end

--- Starts `lray _dashboard` serving the socket fd (from M.bind) for the
--- node at opts.node; the caller closes its copy of fd after. opts: {node,
--- host, owner, token_file, log}. Returns pid, proc or nil, why.
function M.start(fd, opts)
  local args = { "_dashboard", "--node", opts.node, "--fd", tostring(fd),
    "--host", opts.host or "127.0.0.1" }
  if opts.owner then args[#args + 1] = "--owner"; args[#args + 1] = tostring(opts.owner) end
  if opts.token_file then args[#args + 1] = "--token-file"; args[#args + 1] = opts.token_file end
  return core.spawn({ file = core.exe_path(), args = args, detached = true, log = opts.log })
end

--- M.bind, then M.start: returns the URL, pid, proc; or nil, why.
--- opts: those of both, and port, port_fixed.
function M.spawn(opts)
  local fd, url, why = M.bind(opts.host, opts.port, opts.port_fixed)
  if not fd then return nil, why end
  local pid, proc = M.start(fd, opts)
  core.close_fd(fd)
  if not pid then return nil, "the dashboard did not start: " .. tostring(proc) end
  return url, pid, proc
end

--- True for addresses only this machine reaches.
function M.is_loopback(host)
  return host == nil or host:match("^127%.") ~= nil or host == "localhost"
end

-- -- Prometheus ------------------------------------------------------------------

local function label(v)
  return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function num(v)
  if v == math.huge then return "+Inf" end
  if v ~= v then return "NaN" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
  return ("%.17g"):format(v)
end

M.TASK_STATES = { "PENDING", "RUNNING", "FINISHED", "FAILED", "CANCELLED" }
M.ACTOR_STATES = { "PENDING", "ALIVE", "RESTARTING", "DEAD" }

--- The /metrics text from the state API's records: d = {status, nodes,
--- tasks, actors, counters, jobs}.
function M.metrics(d)
  local out = {}
  local function metric(name, kind, help, samples)
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " " .. kind
    for _, s in ipairs(samples) do
      local labels = {}
      for i = 1, #s - 1, 2 do labels[#labels + 1] = s[i] .. '="' .. label(s[i + 1]) .. '"' end
      out[#out + 1] = name .. (#labels > 0 and "{" .. table.concat(labels, ",") .. "}" or "")
        .. " " .. num(s[#s])
    end
  end
  local st = d.status or {}
  local node = tostring(st.node_id)
  local alive = 0
  for _, n in ipairs(d.nodes or {}) do if n.alive then alive = alive + 1 end end
  metric("lray_nodes_alive", "gauge", "Nodes of the cluster that are alive.", { { alive } })
  -- Live tasks from the records; ended ones from the node's counters, which
  -- count every task since the node started.
  local tn = {}
  for _, s in ipairs(M.TASK_STATES) do tn[s] = 0 end
  for _, t in ipairs(d.tasks or {}) do
    if t.state == "PENDING" or t.state == "RUNNING" then tn[t.state] = tn[t.state] + 1 end
  end
  for _, c in ipairs(d.counters or {}) do
    if c.what == "tasks_ended" then tn[c.state] = c.count end
  end
  local samples = {}
  for _, s in ipairs(M.TASK_STATES) do samples[#samples + 1] = { "state", s, tn[s] } end
  metric("lray_tasks", "gauge", "Tasks by state (ended states count every task since the head started).",
    samples)
  local an = {}
  for _, s in ipairs(M.ACTOR_STATES) do an[s] = 0 end
  for _, a in ipairs(d.actors or {}) do an[a.state] = (an[a.state] or 0) + 1 end
  samples = {}
  for _, s in ipairs(M.ACTOR_STATES) do samples[#samples + 1] = { "state", s, an[s] } end
  for s, n in pairs(an) do
    local known = false
    for _, k in ipairs(M.ACTOR_STATES) do if k == s then known = true end end
    if not known then samples[#samples + 1] = { "state", s, n } end
  end
  metric("lray_actors", "gauge", "Actors by state.", samples)
  local keys = {}
  for k in pairs(st.total or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  local tot, used = {}, {}
  for _, k in ipairs(keys) do
    local t = st.total[k]
    tot[#tot + 1] = { "resource", k, "node", node, t }
    used[#used + 1] = { "resource", k, "node", node, t - ((st.avail or {})[k] or 0) }
  end
  metric("lray_resource_total", "gauge", "Resources a node offers.", tot)
  metric("lray_resource_used", "gauge", "Resources held by running tasks and actors.", used)
  local store = st.store or {}
  metric("lray_object_store_used_bytes", "gauge", "Bytes of live objects in a node's shared-memory store.",
    { { "node", node, store.used or 0 } })
  metric("lray_object_store_capacity_bytes", "gauge", "Size of a node's shared-memory store.",
    { { "node", node, store.capacity or 0 } })
  metric("lray_objects", "gauge", "Objects a node knows.", { { "node", node, st.objects or 0 } })
  metric("lray_workers", "gauge", "Worker processes of a node.", { { "node", node, st.workers or 0 } })
  local jr, jd = 0, 0
  for _, j in ipairs(d.jobs or {}) do if j.alive then jr = jr + 1 else jd = jd + 1 end end
  metric("lray_jobs", "gauge", "Jobs (drivers) by state.",
    { { "state", "RUNNING", jr }, { "state", "FINISHED", jd } })
  return table.concat(out, "\n") .. "\n"
end

-- -- The process ---------------------------------------------------------------------

local function parse(argv)
  local o = {}
  for i = 1, #argv, 2 do o[(argv[i]:gsub("^%-%-", ""))] = argv[i + 1] end
  return o
end

local function query(q)
  local out, filters = {}, {}
  for k, v in (q or ""):gmatch("([^&=]+)=([^&]*)") do
    if k == "filter" then filters[#filters + 1] = v
    elseif k == "limit" or k == "tail" or k == "pid" or k == "stream" or k == "token"
      or k == "since" then out[k] = v
    else filters[#filters + 1] = k .. "=" .. v end
  end
  return out, filters
end

local function header(req, name)
  name = name:lower()
  for line in (req.headers or ""):gmatch("[^\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k and k:lower() == name then return v end
  end
  return nil
end

function M.main(argv)
  local o = parse(argv)
  local cjson = require("cjson")
  local state = require("lray.state")
  if o.owner then core.pdeathsig(15) end
  local conn, err = core.connect(o.node)
  if not conn then
    io.stderr:write("lray dashboard: cannot reach the node at ", tostring(o.node), ": ",
      tostring(err), "\n")
    return 1
  end
  local pending, rid = {}, 0
  conn:on_message(function(_, m)
    local cb = m.t == "reply" and pending[m.rid]
    if cb then pending[m.rid] = nil; cb(m) end
  end)
  local srv
  conn:on_close(function()
    if srv then srv:close() end
    core.exit(0)
  end)
  local function rpc(msg, cb)
    rid = rid + 1
    msg.rid = tostring(rid)
    pending[msg.rid] = cb
    conn:send(msg)
  end
  -- Fetches several kinds at once: cb({kind = records, status = reply}).
  local function fetch(kinds, cb, extra)
    local got, left = {}, #kinds
    for _, k in ipairs(kinds) do
      local msg = state.request(k)
      if extra and extra[k] then for ek, ev in pairs(extra[k]) do msg[ek] = ev end end
      rpc(msg, function(r)
        got[k] = k == "status" and state.decode(r) or state.records(k, r)
        left = left - 1
        if left == 0 then cb(got) end
      end)
    end
  end

  local token
  if o["token-file"] then
    local f = io.open(o["token-file"], "r")
    token = f and f:read("*l")
    if f then f:close() end
  end
  local need_token = not M.is_loopback(o.host)
  local page

  local function json(req, v, status)
    req:respond(status or 200, "application/json", v)
  end

  -- -- Live updates --------------------------------------------------------
  local streams = {}     -- open /events requests
  local nstreams = 0
  local ticking = false
  local last_span = 0
  -- A snapshot of the cluster for the page: cb(table). Spans ended after
  -- `since` only (the page keeps the older ones).
  local function snapshot(since, cb)
    fetch({ "status", "nodes", "actors", "tasks", "jobs", "objects", "spans", "logs", "workers" },
      function(d)
        local objs = {}
        for i = 1, math.min(#d.objects, 200) do objs[i] = d.objects[i] end
        local recent = {}
        for i = math.max(1, #d.tasks - 199), #d.tasks do recent[#recent + 1] = d.tasks[i] end
        cb({ time = core.time(), status = d.status, nodes = d.nodes, actors = d.actors,
          jobs = d.jobs, objects = objs, nobjects = #d.objects, spans = d.spans,
          tasks = recent, ntasks = #d.tasks, logs = d.logs, workers = d.workers,
          task_summary = state.task_summary(d.tasks),
          task_states = state.count_by(d.tasks, "state"),
          tasks_by_job = state.count_by(d.tasks, "job_id") })
      end, { spans = { since = since } })
  end

  local function tick()
    if nstreams == 0 then ticking = false; return end
    snapshot(last_span > 0 and last_span or core.time() - 65, function(snap)
      for _, sp in ipairs(snap.spans) do
        if sp.start + sp.dur > last_span then last_span = sp.start + sp.dur end
      end
      local data = "data: " .. cjson.encode(snap) .. "\n\n"
      for req in pairs(streams) do
        if not req:send(data) then
          streams[req] = nil
          nstreams = nstreams - 1
          req:close()
        end
      end
      core.timer(1, 0, tick, true)
    end)
  end

  local function api(req, kind, q, filters)
    local fl, ferr = state.parse_filters(filters)
    if not fl then return json(req, cjson.encode({ error = ferr }), 400) end
    local limit = q.limit and tonumber(q.limit)
    if kind == "status" then
      return fetch({ "status" }, function(d) json(req, cjson.encode(d.status)) end)
    end
    if kind == "summary" then
      return fetch({ "tasks" }, function(d)
        json(req, cjson.encode({ tasks = state.task_summary(d.tasks),
          states = state.count_by(d.tasks, "state") }))
      end)
    end
    fetch({ kind }, function(d)
      json(req, state.encode_list(state.select(d[kind], fl, limit)))
    end)
  end

  local function logs(req, q)
    local pid = tonumber(q.pid)
    fetch({ "logs" }, function(d)
      local want = q.stream == "err" and "stderr" or "stdout"
      for _, f in ipairs(d.logs) do
        if f.pid == pid and f.stream == want then
          local fh = io.open(f.file, "rb")
          local s = fh and fh:read("*a") or ""
          if fh then fh:close() end
          local n = tonumber(q.tail)
          if n then
            local starts = {}
            for p in s:gmatch("()[^\n]*\n") do starts[#starts + 1] = p end
            if #starts > n then s = s:sub(starts[#starts - n + 1]) end
          end
          return req:respond(200, "text/plain; charset=utf-8", s)
        end
      end
      req:respond(404, "text/plain; charset=utf-8", "no log for that worker\n")
    end)
  end

  local function on_request(req)
    local path = req.path
    local q, filters = query(req.query)
    if need_token then
      local auth = header(req, "authorization")
      local given = auth and auth:match("^[Bb]earer%s+(%S+)") or q.token
      if not token or given ~= token then
        return req:respond(401, "text/plain; charset=utf-8",
          "this dashboard needs the cluster token: Authorization: Bearer <token>\n")
      end
    end
    if not need_token then
      -- Bound to loopback: only pages of this machine may ask (a page of
      -- another site that rebinds its name to 127.0.0.1 may not).
      local host = (header(req, "host") or ""):lower()
      if not (host:match("^127%.[%d.]+:?%d*$") or host:match("^localhost:?%d*$")
        or host:match("^%[::1%]:?%d*$") or host == "") then
        return req:respond(403, "text/plain; charset=utf-8", "unknown Host: " .. host .. "\n")
      end
    end
    if req.method ~= "GET" and req.method ~= "HEAD" then
      return req:respond(405, "text/plain; charset=utf-8", "only GET\n")
    end
    if path == "/" or path == "/index.html" then
      page = page or core.dashboard_page()
      return req:respond(200, "text/html; charset=utf-8", page)
    elseif path == "/metrics" then
      return fetch({ "status", "nodes", "tasks", "actors", "counters", "jobs" }, function(d)
        req:respond(200, "text/plain; version=0.0.4; charset=utf-8", M.metrics(d))
      end)
    elseif path == "/events" then
      req:stream("text/event-stream")
      req:send("retry: 2000\n\n")
      streams[req] = true
      nstreams = nstreams + 1
      if not ticking then ticking = true; tick() end
      return
    elseif path == "/snapshot.js" then
      -- Loaded by the page before it draws: the first view has data at once
      -- (and a headless browser's screenshot or DOM dump shows it).
      return snapshot(core.time() - 60, function(snap)
        req:respond(200, "text/javascript; charset=utf-8",
          "window.LRAY_SNAPSHOT = " .. cjson.encode(snap) .. ";\n")
      end)
    elseif path == "/api/logs" then
      return logs(req, q)
    elseif path == "/healthz" then
      return req:respond(200, "text/plain; charset=utf-8", "ok\n")
    end
    local kind = path:match("^/api/v?0?/?(%w+)$")
    if kind and (state.KINDS[kind] or kind == "status" or kind == "summary") then
      return api(req, kind, q, filters)
    end
    req:respond(404, "text/plain; charset=utf-8", "not found: " .. path .. "\n")
  end

  srv, err = core.http_listen({ fd = tonumber(o.fd), host = o.host, port = tonumber(o.port),
    on_request = on_request })
  if not srv then
    io.stderr:write("lray dashboard: ", tostring(err), "\n")
    return 1
  end
  core.signal(15, function() srv:close(); core.exit(0) end)
  core.run()
  return 0
end

return M
