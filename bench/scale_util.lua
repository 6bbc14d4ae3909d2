-- bench/scale_util.lua: shared helpers of the scale benchmarks
-- (bench/scale_*.lua), loaded with dofile next to the script.
-- Peak RSS is VmHWM from /proc/<pid>/status; the node is the driver's
-- `lray _node` child.
local core = require("lray._core")

local M = {}

--- The whole file at path, or nil.
local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read = read

--- What cmd prints on stdout (its stderr dropped).
local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>/dev/null"))
  local s = f:read("*a")
  f:close()
  return s
end
M.sh = sh

function M.mb(kb) return kb and kb / 1024 end

--- Field `key` (kB) of /proc/<pid>/status, in MB; nil if gone.
function M.status_mb(pid, key)
  local s = read("/proc/" .. pid .. "/status")
  local kb = s and tonumber(s:match(key .. ":%s*(%d+)"))
  return kb and kb / 1024
end

function M.driver_pid() return core.getpid() end

--- pid of this driver's `lray _node` child, or nil.
function M.node_pid()
  local out = sh("pgrep -P " .. core.getpid() .. " -f 'lray _node'")
  return tonumber(out:match("%d+"))
end

--- pids of the node's `lray _worker` children.
function M.worker_pids(node)
  local t = {}
  if not node then return t end
  for p in sh("pgrep -P " .. node .. " -f 'lray _worker'"):gmatch("%d+") do
    t[#t + 1] = tonumber(p)
  end
  return t
end

--- Peak RSS (VmHWM) and current RSS of driver and node, in MB, as a line.
function M.rss_line(node)
  node = node or M.node_pid()
  local d = core.getpid()
  return ("driver peak RSS %.1f MB (now %.1f); node (pid %s) peak RSS %s MB (now %s)"):format(
    M.status_mb(d, "VmHWM") or -1, M.status_mb(d, "VmRSS") or -1, tostring(node),
    node and ("%.1f"):format(M.status_mb(node, "VmHWM") or -1) or "?",
    node and ("%.1f"):format(M.status_mb(node, "VmRSS") or -1) or "?")
end

function M.loadavg()
  local s = read("/proc/loadavg") or "?"
  return s:match("^(%S+ %S+ %S+)") or s
end

function M.mem_available_mb()
  local s = read("/proc/meminfo") or ""
  return M.mb(tonumber(s:match("MemAvailable:%s*(%d+)")))
end

function M.now() return core.now() end

function M.log(fmt, ...)
  io.stdout:write(("[%8.2f s] "):format(core.now() - M.t0) .. fmt:format(...) .. "\n")
  io.stdout:flush()
end

-- The bytes a page-checking benchmark writes: one per 4 KiB page.
local function page_byte(i) return (i / 4096) % 251 end

--- Marks one byte of each page of uint8_t array a (bench/transfer.lua,
--- bench/remote_driver.lua).
function M.mark_pages(a)
  for i = 0, a:nbytes() - 1, 4096 do a[i] = page_byte(i) end
end

--- Asserts that every page of v carries its mark.
function M.check_pages(v)
  local bad = 0
  for i = 0, v:nbytes() - 1, 4096 do if v[i] ~= page_byte(i) then bad = bad + 1 end end
  assert(bad == 0, bad .. " pages differ")
end

--- Frees dropped array views and then (next cycle) the ObjectRefs they kept.
function M.collect_views()
  collectgarbage()
  collectgarbage()
end

M.t0 = core.now()
return M
