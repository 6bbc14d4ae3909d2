-- The editor definitions (types/library/*.d.lua), the API reference
-- (docs/reference.md) and the luacheck std (lray.luacheck_std) are generated
-- from docs/api_ref.lua (`make gen`; `make gen-check` in `make lint` keeps
-- them fresh). Here: they cover every public function lray really has, and
-- name nothing it does not have.
local lray = require("lray")

local read = require("spec.helpers.shell").read

local defs = read("types/library/lray.d.lua")
local testing_defs = read("types/library/lray.testing.d.lua")
local reference = read("docs/reference.md")
local std = require("lray.luacheck_std").read_globals.lray.fields

-- Public (not _-prefixed) keys of t whose values are functions.
local function public_functions(t)
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" and k ~= "__tostring" then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  return names
end

-- Names defined as `function <var><sep>name(` in a definition file.
local function defined(text, var)
  local names = {}
  for name in text:gmatch("\nfunction " .. var:gsub("%p", "%%%0") .. "[%.:]([%w_]+)%(") do
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

describe("generated API definitions", function()
  it("define every function of lua/lray/init.lua, and no other", function()
    local fns = public_functions(lray)
    assert.is_true(#fns >= 19)
    assert.are.same(fns, defined(defs, "lray"))
    for _, name in ipairs(fns) do
      assert.truthy(reference:find("`lray." .. name .. "(", 1, true), "docs/reference.md lacks lray." .. name)
      assert.truthy(std[name], "lray.luacheck_std lacks lray." .. name)
    end
  end)

  it("type every table field of lray", function()
    for k, v in pairs(lray) do
      if type(v) == "table" then
        assert.truthy(defs:find("\n---@field " .. k .. " lray%." .. k), "lray.d.lua has no @field " .. k)
        assert.truthy(std[k] and std[k].fields, "lray.luacheck_std lacks lray." .. k)
      end
    end
  end)

  it("define every public method of lray.util's classes and of lray.errors", function()
    local util = {
      ActorPool = lray.util.ActorPool, Queue = lray.util.Queue, Pool = lray.util.Pool,
      AsyncResult = lray.util.Pool.AsyncResult,
    }
    for name, cls in pairs(util) do
      assert.are.same(public_functions(cls), defined(defs, "lray_util_" .. name), "lray.util." .. name)
      if std.util.fields[name] then
        for _, m in ipairs(public_functions(cls)) do
          assert.truthy(std.util.fields[name].fields[m], "luacheck std lacks lray.util." .. name .. "." .. m)
        end
      end
    end
    for _, m in ipairs({ "new", "is_error" }) do
      assert.are.equal("function", type(lray.errors[m]))
      assert.truthy(defs:find("\nfunction lray_errors." .. m .. "(", 1, true))
    end
  end)

  it("define the methods of ObjectRefs and arrays", function()
    local a = lray.array("double", 2)
    for _, m in ipairs(defined(defs, "lray_Array")) do
      assert.are.equal("function", type(a[m]), "lray.array has no method " .. m)
    end
    assert.are.same({ "copy", "ctype", "nbytes", "ptr", "totable" }, defined(defs, "lray_Array"))
    assert.are.same({ "hex", "release" }, defined(defs, "lray_ObjectRef"))
  end)

  it("define every function of lray.testing", function()
    assert.are.same(public_functions(require("lray.testing")), defined(testing_defs, "lray_testing"))
  end)

  it("load as Lua (LuaLS meta files are plain Lua with empty bodies)", function()
    assert.is_table(dofile("types/library/lray.d.lua"))
    assert.is_table(dofile("types/library/lray.testing.d.lua"))
  end)
end)
