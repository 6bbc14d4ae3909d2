-- lray error values: tables with `type`, `message` and, for remote failures,
-- `traceback` and `cause`. This is the one place that knows every error type.
local setmetatable, getmetatable, tostring, type, error =
  setmetatable, getmetatable, tostring, type, error

local M = {}

local Error = {}
Error.__index = Error
Error.__tostring = function(e)
  local s = e.type .. ": " .. tostring(e.message)
  if e.traceback and e.traceback ~= "" then
    s = s .. "\n" .. e.traceback
  end
  return s
end
M.Error = Error

M.types = {
  TaskError = true, ActorDiedError = true, WorkerCrashedError = true,
  ObjectLostError = true, OwnerDiedError = true, GetTimeoutError = true, TaskCancelledError = true,
  RayError = true, Empty = true, Full = true, ObjectStoreFullError = true, ValueError = true,
  AuthenticationError = true,
}

---@param etype string
---@param message string
---@param fields table|nil extra fields (traceback, cause, ...)
---@return table
function M.new(etype, message, fields)
  local e = fields or {}
  e.type = etype
  e.message = message
  return setmetatable(e, Error)
end

--- Raises a new error value (never returns).
function M.raise(etype, message, fields)
  error(M.new(etype, message, fields), 0)
end

---@return boolean
function M.is_error(e, etype)
  if getmetatable(e) ~= Error then return false end
  if etype == nil then return true end
  if type(etype) ~= "string" then
    error("lray.is_error: type must be a string such as \"TaskError\"", 2)
  end
  return e.type == etype
end

--- Raises a ValueError for a misuse of the API (a wrong option, a non-ref
--- given to get, ...), with the position of the offending call in the
--- message, as error(msg, level) would put it.
function M.misuse(message, level)
  -- error(msg, level) counts from its caller; from here that is one more.
  local info = debug.getinfo((level or 1) + 1, "Sl")
  local where = ""
  if info and info.currentline and info.currentline > 0 then
    where = info.short_src .. ":" .. info.currentline .. ": "
  end
  error(M.new("ValueError", where .. tostring(message)), 0)
end

--- Turns what a task raised into the TaskError its caller sees.
---@param what string "task 'f'" or "actor method 'C.m'"
function M.task_error(what, raised, traceback)
  if M.is_error(raised, "TaskCancelledError") then
    return raised   -- the task was cancelled: that is what the caller sees
  end
  local msg = M.is_error(raised) and (raised.type .. ": " .. tostring(raised.message))
    or tostring(raised)
  return M.new("TaskError", what .. " failed: " .. msg,
    { traceback = traceback, cause = raised })
end

return M
