-- A worker's record of what it ran, for `lray timeline` and the dashboard's
-- task stream: one span per task and actor call, {kind, name, id, start,
-- dur, failed} (wall-clock seconds). Spans are batched and sent to the node
-- at most twice a second (or every 256), so recording costs a table insert.
local core = require("lray._core")
local runtime = require("lray.runtime")

local M = {}

local buf = {}
local timer = nil
local BATCH = 256

local function flush()
  timer = nil
  if #buf == 0 or not runtime.conn or not runtime.conn:is_open() then return end
  local items = buf
  buf = {}
  runtime.send({ t = "spans", items = items })
end
M.flush = flush

--- Records a span that began at start (core.time()) and ends now.
function M.record(kind, name, id, start, failed)
  buf[#buf + 1] = { kind = kind, name = name, id = id, start = start,
    dur = core.time() - start, failed = failed or nil }
  if #buf >= BATCH then
    flush()
  elseif not timer then
    timer = core.timer(0.5, 0, flush, true)
  end
end

return M
