-- lray.util.progress(refs, opts): iterate ObjectRefs in completion order as
-- `ref, index` while a progress bar (done/total, rate, time left) is drawn on
-- stderr. At a terminal the bar is redrawn in place; otherwise (a pipe, a
-- log file) a plain line is written at every tenth of the way and at the end.
local core = require("lray._core")

local floor = math.floor

local WIDTH = 30
local REDRAW = 0.1      -- seconds between redraws at a terminal

local function clock(s)
  if not s or s ~= s or s == math.huge then return "?" end
  s = floor(s + 0.5)
  if s >= 3600 then return ("%d:%02d:%02d"):format(floor(s / 3600), floor(s / 60) % 60, s % 60) end
  return ("%d:%02d"):format(floor(s / 60), s % 60)
end

--- The text of the bar: "desc [####....] 3/10 30% 2.0/s 0:04 left".
local function line(desc, done, total, elapsed, tty)
  local frac = total > 0 and done / total or 1
  local rate = elapsed > 0 and done / elapsed or 0
  local left = done >= total and 0 or (rate > 0 and (total - done) / rate or nil)
  local parts = {}
  if desc and desc ~= "" then parts[#parts + 1] = desc .. ":" end
  if tty then
    local n = floor(frac * WIDTH + 0.5)
    parts[#parts + 1] = "[" .. ("#"):rep(n) .. ("."):rep(WIDTH - n) .. "]"
  end
  parts[#parts + 1] = ("%d/%d %3d%%"):format(done, total, floor(frac * 100))
  parts[#parts + 1] = ("%.1f/s"):format(rate)
  if done >= total then
    parts[#parts + 1] = "in " .. clock(elapsed)
  else
    parts[#parts + 1] = clock(left) .. " left"
  end
  return table.concat(parts, " ")
end

---@param refs table a list of ObjectRefs
---@param opts table|nil {desc = "...", out = file (default io.stderr), tty = bool}
---@return function iterator of ref, index in completion order
local function progress(refs, opts)
  if type(refs) ~= "table" then error("lray.util.progress expects a list of ObjectRefs", 2) end
  opts = opts or {}
  if opts.desc ~= nil and type(opts.desc) ~= "string" then
    error("lray.util.progress: desc must be a string", 2)
  end
  local lray = require("lray")
  local out = opts.out or io.stderr
  local tty = opts.tty
  if tty == nil then tty = out == io.stderr and core.isatty(2) end
  local total = #refs
  local pending, index_of = {}, {}
  for i = 1, total do
    pending[i] = refs[i]
    index_of[refs[i]] = i
  end
  local ready = {}         -- refs done, not yet handed out
  local done, start = 0, core.now()
  local last_draw, last_tenth = -1, -1
  local function draw(final)
    local now = core.now()
    if tty then
      if not final and now - last_draw < REDRAW then return end
      out:write("\r\27[K", line(opts.desc, done, total, now - start, true), final and "\n" or "")
    else
      local tenth = total > 0 and floor(done * 10 / total) or 10
      if tenth == last_tenth and not final then return end
      if final and tenth == last_tenth then return end
      last_tenth = tenth
      out:write(line(opts.desc, done, total, now - start, false), "\n")
    end
    last_draw = now
    if out.flush then out:flush() end
  end
  draw(total == 0)
  return function()
    while #ready == 0 and #pending > 0 do
      -- Wake at least every REDRAW so rate and time left stay current.
      local r = lray.wait(pending, { num_returns = 1, timeout = tty and REDRAW or 1 })
      if #r > 0 then
        local all, rest = lray.wait(pending, { num_returns = #pending, timeout = 0 })
        for _, ref in ipairs(all) do ready[#ready + 1] = ref end
        pending = rest
      end
      draw(false)
    end
    local ref = table.remove(ready, 1)
    if not ref then return nil end
    done = done + 1
    draw(done == total)
    return ref, index_of[ref]
  end
end

return { progress = progress, line = line }
