-- spec/helpers/shell.lua: shell quoting, running commands and reading files
-- for specs that drive the lray binary, make or luarocks from outside.
local M = {}

--- s quoted for sh.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Runs a shell command line; returns its stdout+stderr and exit status.
function M.run(cmd)
  local f = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"__status=$?\""))
  local out = f:read("*a")
  f:close()
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return (out:gsub("__status=%d+%s*$", "")), status
end

--- Runs cmd and asserts it exits 0; returns its output.
function M.ok(cmd)
  local out, status = M.run(cmd)
  assert(status == 0, ("`%s` exited %s:\n%s"):format(cmd, tostring(status), out))
  return out
end

--- The whole content of a file.
function M.read(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

--- Writes text to path, making its directory.
function M.write(path, text)
  M.ok("mkdir -p " .. M.q(path:match("^(.*)/[^/]*$")))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

return M
