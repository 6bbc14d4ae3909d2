-- spec/helpers/cluster.lua: one embedded cluster per spec file (STYLE.md 7),
-- through lray.testing (the same helper users get, docs/testing.md).
--
--   local cluster = require("spec.helpers.cluster")
--   local lray
--   setup(function() lray = cluster.start() end)
--   teardown(function() cluster.stop() end)
--
-- start(opts) and stop() are lray.testing's: small resources (num_cpus = 2,
-- no GPUs), and stop() asserts that nothing the cluster started is left.
local testing = require("lray.testing")

local M = {
  start = testing.start, stop = testing.stop, ctx = testing.ctx,
  session_procs = testing.session_procs, shm_files = testing.shm_files,
}

--- The message of an error value (lray error table or plain string).
function M.msg(e)
  if type(e) == "table" and e.message then return tostring(e.message) end
  return tostring(e)
end

--- pcall(fn, ...) must fail; returns the error value.
function M.fails(fn, ...)
  local ok, e = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  return e
end

return M
