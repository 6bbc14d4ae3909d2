-- ObjectRef: a future for a value in the object store. A userdata (so Lua's
-- collector tells the runtime when the last reference in this process dies);
-- its behaviour lives here and the runtime plugs in the bookkeeping hooks.
local core = require("lray._core")
local serialize = require("lray.serialize")

local ref_new, ref_id, ref_drop = core.ref_new, core.ref_id, core.ref_drop

local M = {}

-- Set by lray.runtime: gc(id), release(id), escape(id) -> id, arrive(id).
local hooks = {}
M.hooks = hooks

local methods = {}
local mt = {
  __index = methods,
  __metatable = "ObjectRef",
}

function mt.__tostring(r) return "ObjectRef(" .. ref_id(r) .. ")" end
function mt.__eq(a, b) return ref_id(a) == ref_id(b) end
function mt.__gc(r)
  local id = ref_drop(r)
  if id and hooks.gc then hooks.gc(id) end
end
-- Crossing a process boundary: the runtime makes sure the object can be
-- found from anywhere on the node before the id leaves.
function mt.__lray_ser(r) return "ref", hooks.escape(ref_id(r)) end

--- The object id in hex.
function methods.hex(r) return ref_id(r) end

--- Drops this reference now instead of at garbage collection.
function methods.release(r)
  local id = ref_drop(r)
  if id and hooks.release then hooks.release(id) end
end

core.ref_setup(mt)

--- A new ObjectRef for id (the caller accounts for it).
M.new = ref_new
--- id of r, or nil when r is not an ObjectRef.
M.id = ref_id
function M.is_ref(v) return type(v) == "userdata" and ref_id(v) ~= nil end

serialize.register("ref", function(id) return hooks.arrive(id) end)

return M
