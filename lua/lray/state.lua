-- The cluster's state as records, read from the head's state API (the
-- "list", "nodes" and "status" requests). `lray list`, `lray logs`,
-- `lray timeline`, `lray memory`, `lray summary`, the dashboard's /api/* and
-- /metrics all read it through here, so they show the same records.
local cjson = require("cjson")

local ipairs, tostring, type = ipairs, tostring, type

local M = {}

M.KINDS = { actors = true, tasks = true, objects = true, nodes = true, workers = true,
  jobs = true }

--- The request that fetches kind (a kind of M.KINDS, or "logs", "spans").
function M.request(kind)
  if kind == "nodes" then return { t = "nodes" } end
  if kind == "status" then return { t = "status" } end
  return { t = "list", what = kind }
end

--- A state API reply's body (the node answers in JSON).
function M.decode(reply)
  if reply and reply.json then return cjson.decode(reply.json) end
  return reply
end

--- The records in a reply to M.request(kind).
function M.records(kind, reply)
  reply = M.decode(reply)
  if kind == "nodes" then return (reply and reply.nodes) or {} end
  return (reply and reply.items) or {}
end

--- Parses "KEY=VALUE" / "KEY!=VALUE" strings into {key, value, negate}.
function M.parse_filters(list)
  local out = {}
  for _, f in ipairs(list or {}) do
    local k, neg, v = f:match("^([%w_]+)%s*(!?)=%s*(.*)$")
    if not k then return nil, "a filter is KEY=VALUE or KEY!=VALUE, not '" .. f .. "'" end
    out[#out + 1] = { key = k, value = v, negate = neg == "!" }
  end
  return out
end

-- A field matches a filter value as text, case-insensitively (states are
-- upper case, users type them either way).
local function matches(rec, f)
  local v = rec[f.key]
  local eq
  if v == nil or v == cjson.null then
    eq = f.value == "" or f.value == "nil" or f.value == "null"
  else
    eq = tostring(v):lower() == f.value:lower()
  end
  if f.negate then return not eq end
  return eq
end

--- The records that pass every filter, at most limit of them (nil: all).
function M.select(items, filters, limit)
  local out = {}
  for _, it in ipairs(items) do
    if limit and #out >= limit then break end
    local ok = true
    for _, f in ipairs(filters or {}) do
      if not matches(it, f) then ok = false; break end
    end
    if ok then out[#out + 1] = it end
  end
  return out
end

--- Fetches kind with a blocking rpc(msg) -> reply, then selects.
function M.list(rpc, kind, filters, limit)
  return M.select(M.records(kind, rpc(M.request(kind))), filters, limit)
end

--- A JSON array (an empty list too).
function M.encode_list(items)
  if #items == 0 then return "[]" end
  return cjson.encode(items)
end

--- Rows of strings as aligned columns (two spaces between).
function M.columns(rows)
  local width = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do width[i] = math.max(width[i] or 0, #c) end
  end
  local lines = {}
  for _, r in ipairs(rows) do
    local parts = {}
    for i, c in ipairs(r) do
      parts[i] = i < #r and c .. (" "):rep(width[i] - #c) or c
    end
    lines[#lines + 1] = table.concat(parts, "  ")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- -- Aggregates --------------------------------------------------------------

--- Counts of records by field, as a sorted list of {key, count}.
function M.count_by(items, field)
  local n, keys = {}, {}
  for _, it in ipairs(items) do
    local k = it[field]
    k = (k == nil or k == cjson.null) and "-" or tostring(k)
    if not n[k] then n[k] = 0; keys[#keys + 1] = k end
    n[k] = n[k] + 1
  end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = { key = k, count = n[k] } end
  return out
end

--- Tasks by function name: {name, total, by state, mean run seconds}.
function M.task_summary(tasks)
  local by, order = {}, {}
  for _, t in ipairs(tasks) do
    local name = tostring(t.name)
    local s = by[name]
    if not s then
      s = { name = name, total = 0, states = {}, run = 0, nrun = 0 }
      by[name] = s
      order[#order + 1] = name
    end
    s.total = s.total + 1
    s.states[t.state] = (s.states[t.state] or 0) + 1
    if type(t.started) == "number" and type(t.ended) == "number" then
      s.run = s.run + (t.ended - t.started)
      s.nrun = s.nrun + 1
    end
  end
  table.sort(order)
  local out = {}
  for _, name in ipairs(order) do
    local s = by[name]
    s.mean_seconds = s.nrun > 0 and s.run / s.nrun or nil
    s.run, s.nrun = nil, nil
    out[#out + 1] = s
  end
  return out
end

return M
