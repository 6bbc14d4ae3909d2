-- A worker's record of what it ran, for `lray timeline`, `lray list tasks`
-- (actor calls) and the dashboard's task stream: one span per task and actor
-- call (kind, name, id, start, dur, failed; wall-clock seconds). Spans are
-- kept in columns and sent to the node at most twice a second (or every 256),
-- so recording one costs a few array stores.
local core = require("lray._core")
local runtime = require("lray.runtime")

local time = core.time

local M = {}

local kind, name, id, start, dur, failed = {}, {}, {}, {}, {}, {}
local n = 0
local timer = nil
local BATCH = 256

local function flush()
  timer = nil
  if n == 0 or not runtime.conn or not runtime.conn:is_open() then return end
  local msg = { t = "spans", kind = kind, name = name, id = id, start = start, dur = dur,
    failed = failed }
  kind, name, id, start, dur, failed = {}, {}, {}, {}, {}, {}
  n = 0
  runtime.send(msg)
end
M.flush = flush

--- Records a span that began at t0 (core.time()) and ends now.
function M.record(k, nm, i, t0, fail)
  n = n + 1
  kind[n], name[n], id[n], start[n], dur[n], failed[n] = k, nm, i, t0, time() - t0, fail or false
  if n >= BATCH then
    flush()
  elseif not timer then
    timer = core.timer(0.5, 0, flush, true)
  end
end

return M
