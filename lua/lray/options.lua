-- Checking the options of remote functions and actors: unknown names and
-- wrong types are caught at lray.remote / .options time, before anything is
-- queued, with a message that lists what is valid.
local pairs, type, tostring, floor = pairs, type, tostring, math.floor
local sort, concat = table.sort, table.concat

local misuse = require("lray.errors").misuse

local M = {}

-- What a bad value was, for messages: a string shows as one (`string "1"`,
-- not a bare 1 that looks like the number it was meant to be), a table or
-- function by its type.
local function got(v)
  local t = type(v)
  if t == "string" then return ("string %q"):format(v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  return t
end
M.got = got

local function nonneg_number(k, v)
  if type(v) ~= "number" or v ~= v or v < 0 or v == math.huge then
    return ("option '%s' must be a non-negative number, got %s"):format(k, got(v))
  end
  if v > 1 and v ~= floor(v) then
    return ("option '%s' = %s: amounts above 1 must be whole numbers (fractions only"
      .. " share a single unit)"):format(k, tostring(v))
  end
  if v * 10000 ~= floor(v * 10000 + 0.5) and math.abs(v * 10000 - floor(v * 10000 + 0.5)) > 1e-6 then
    return ("option '%s' = %s: the smallest fraction is 0.0001"):format(k, tostring(v))
  end
end

local function retries(k, v)
  if type(v) ~= "number" or v ~= floor(v) or v < -1 then
    return ("option '%s' must be a whole number >= -1 (-1: forever), got %s"):format(k, got(v))
  end
end

local function boolean(k, v)
  if type(v) ~= "boolean" then
    return ("option '%s' must be true or false, got %s"):format(k, got(v))
  end
end

local function string_opt(k, v)
  if type(v) ~= "string" or v == "" then
    return ("option '%s' must be a non-empty string, got %s"):format(k, got(v))
  end
end

local function resources(k, v)
  if type(v) ~= "table" then
    return ("option '%s' must be a table such as {Custom = 1}, got %s"):format(k, got(v))
  end
  for rk, rv in pairs(v) do
    if type(rk) ~= "string" then return ("option '%s' has a non-string key"):format(k) end
    if rk == "CPU" or rk == "GPU" then
      return ("option '%s' must not name %s: use num_cpus / num_gpus"):format(k, rk)
    end
    local e = nonneg_number(k .. "." .. rk, rv)
    if e then return e end
  end
end

local function num_returns(k, v)
  if type(v) ~= "number" or v ~= floor(v) or v < 0 then
    return ("option '%s' must be a whole number >= 0, got %s"):format(k, got(v))
  end
end

local function positive_int(k, v)
  if type(v) ~= "number" or v ~= floor(v) or v < 1 then
    return ("option '%s' must be a whole number >= 1, got %s"):format(k, got(v))
  end
end

local function lifetime(k, v)
  if v ~= "detached" and v ~= "non_detached" then
    return ("option '%s' must be \"detached\" or \"non_detached\", got %s"):format(k, got(v))
  end
end

local function anything() end

local function groups(k, v)
  if type(v) ~= "table" then
    return ("option '%s' must be a table such as {io = 4, compute = 1}, got %s"):format(k, got(v))
  end
  for g, n in pairs(v) do
    if type(g) ~= "string" then return ("option '%s' has a non-string group name"):format(k) end
    local e = positive_int(k .. "." .. g, n)
    if e then return e end
  end
end

M.task = {
  num_cpus = nonneg_number, num_gpus = nonneg_number, resources = resources,
  memory = nonneg_number, max_retries = retries, retry_exceptions = boolean,
  num_returns = num_returns, name = string_opt, scheduling_strategy = anything,
}

M.actor = {
  num_cpus = nonneg_number, num_gpus = nonneg_number, resources = resources,
  memory = nonneg_number, name = string_opt, namespace = string_opt,
  lifetime = lifetime, get_if_exists = boolean, max_restarts = retries,
  max_task_retries = retries, max_concurrency = positive_int,
  concurrency_groups = groups, scheduling_strategy = anything,
}

M.method = { num_returns = num_returns, name = string_opt }

local function valid_list(spec)
  local names = {}
  for k in pairs(spec) do names[#names + 1] = k end
  sort(names)
  return concat(names, ", ")
end

--- Checks opts against spec; raises at the caller's caller on misuse.
---@param what string what the options are for, for messages
function M.check(opts, spec, what, level)
  level = (level or 2) + 1
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    misuse(("options for %s must be a table, got %s"):format(what, type(opts)), level)
  end
  for k, v in pairs(opts) do
    local check = spec[k]
    if not check then
      misuse(("unknown option '%s' for %s; valid options are: %s"):format(
        tostring(k), what, valid_list(spec)), level)
    end
    local e = check(k, v)
    if e then misuse(e .. " (" .. what .. ")", level) end
  end
  return opts
end

-- The scheduler takes at most this many resource kinds in one request
-- (LR_RES_REQMAX in core/raylet/raylet.h).
M.MAX_KINDS = 16

--- Raises (a ValueError at the caller's caller) when the request opts make
--- names more resource kinds than the scheduler takes.
function M.check_kinds(opts, what, level)
  local n = 0
  for _ in pairs(M.request(opts, 1)) do n = n + 1 end
  if n > M.MAX_KINDS then
    misuse(("%s asks for %d resource kinds (CPU, GPU, memory and each custom resource"
      .. " count); at most %d are supported"):format(what, n, M.MAX_KINDS), (level or 2) + 1)
  end
end

--- opts with over's keys replacing them (tables replaced whole).
function M.merge(opts, over)
  local out = {}
  for k, v in pairs(opts) do out[k] = v end
  for k, v in pairs(over) do out[k] = v end
  return out
end

--- The fixed-point resource request of opts; default_cpu when unspecified.
-- Resource amounts travel in fixed point: 1.0 = UNIT.
M.UNIT = 10000

function M.request(opts, default_cpu)
  local function u(x) return floor(x * M.UNIT + 0.5) end
  local req = {}
  local cpu = opts.num_cpus
  if cpu == nil then cpu = default_cpu end
  if cpu and cpu > 0 then req.CPU = u(cpu) end
  if opts.num_gpus and opts.num_gpus > 0 then req.GPU = u(opts.num_gpus) end
  if opts.memory and opts.memory > 0 then req.memory = u(opts.memory) end
  if opts.resources then
    for k, v in pairs(opts.resources) do
      if v > 0 then req[k] = u(v) end
    end
  end
  return req
end

return M
