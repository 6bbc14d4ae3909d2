-- `lray microbenchmark` (lua/lray/bench.lua): it runs and prints every
-- figure, --filter keeps only matching figures, --json writes a value for each
-- printed figure. No timed assertions: the figures depend on the machine.
local cjson = require("cjson")

local BIN = os.getenv("LRAY_BIN") or "build/lray"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command line; returns its stdout (stderr apart) and exit status.
local function run(cmd)
  local errf = os.tmpname()
  local f = assert(io.popen(cmd .. " 2>" .. q(errf) .. "; echo \"__status=$?\""))
  local out = f:read("*a")
  f:close()
  local ef = io.open(errf)
  local err = ef and ef:read("*a") or ""
  if ef then ef:close() end
  os.remove(errf)
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return out:gsub("__status=%d+%s*$", ""), status, err
end

-- The figure names bench.lua defines, in order: its `add("name", ...)` calls.
local function figure_names()
  local src = package.searchpath("lray.bench", package.path)
  assert(src, "lray.bench not found on package.path")
  local f = assert(io.open(src))
  local text = f:read("*a")
  f:close()
  local names = {}
  for name in text:gmatch('add%(%s*"([%w_]+)"') do names[#names + 1] = name end
  return names
end

-- The `name  value ± stddev  unit` lines of out, as {name = {value, unit}}
-- plus the names in order; other lines are returned apart.
local function parse(out)
  local figs, order, other = {}, {}, {}
  for line in out:gmatch("[^\n]+") do
    local name, value, sd, unit = line:match("^(%S+)%s+(%-?[%d.]+) ± (%-?[%d.]+)%s+(%S+)%s*$")
    if name then
      figs[name] = { value = tonumber(value), stddev = tonumber(sd), unit = unit }
      order[#order + 1] = name
    else
      other[#other + 1] = line
    end
  end
  return figs, order, other
end

describe("lray microbenchmark", function()
  local names = figure_names()
  local tmp

  before_each(function() tmp = os.tmpname() end)
  after_each(function() os.remove(tmp) end)

  it("bench.lua lists the standard figures", function()
    assert.is_true(#names >= 15, "found only " .. #names .. " figure names in bench.lua")
    assert.is_truthy(table.concat(names, " "):find("single_client_tasks_sync", 1, true))
  end)

  it("runs, prints every figure, and --json has a value for each printed one", function()
    local out, status, err = run(q(BIN) .. " microbenchmark --seconds 0.2 --json " .. q(tmp))
    assert.are.equal(0, status, "exit status " .. tostring(status) .. "\n" .. out .. err)
    local figs, order, other = parse(out)
    assert.are.same({}, other, "lines that are not `name value ± stddev unit`")
    for _, name in ipairs(names) do
      assert.is_truthy(figs[name], "figure " .. name .. " not printed:\n" .. out)
      assert.is_true(figs[name].value == figs[name].value, name .. " is NaN")
    end
    assert.are.equal(#names, #order)

    local f = assert(io.open(tmp))
    local text = f:read("*a")
    f:close()
    local ok, doc = pcall(cjson.decode, text)
    assert.is_true(ok, "--json wrote invalid JSON: " .. tostring(doc))
    assert.are.equal("table", type(doc))
    local by_name = {}
    for _, r in ipairs(doc) do by_name[r.name] = r end
    for _, name in ipairs(order) do
      local r = by_name[name]
      assert.is_truthy(r, "no JSON entry for " .. name)
      assert.are.equal("number", type(r.value), name .. " has no value in the JSON")
      assert.are.equal(figs[name].unit, r.unit)
    end
  end)

  it("--filter prints only matching figures", function()
    local out, status, err = run(q(BIN) .. " microbenchmark --seconds 0.2 --filter tasks_sync"
      .. " --json " .. q(tmp))
    assert.are.equal(0, status, out .. err)
    local figs, order, other = parse(out)
    assert.are.same({}, other)
    assert.is_true(#order >= 1, "nothing printed:\n" .. out)
    for _, name in ipairs(order) do
      assert.is_truthy(name:find("tasks_sync", 1, true), name .. " does not match the filter")
    end
    for _, name in ipairs(names) do
      if name:find("tasks_sync", 1, true) then assert.is_truthy(figs[name], name .. " missing") end
    end
    local f = assert(io.open(tmp))
    local doc = cjson.decode(f:read("*a"))
    f:close()
    assert.are.equal(#order, #doc)
  end)

  it("rejects an unknown option with a usage line and status 1", function()
    local out, status, err = run(q(BIN) .. " microbenchmark --bogus")
    assert.are.equal(1, status)
    assert.are.equal("", out)
    assert.is_truthy(err:find("usage: lray microbenchmark", 1, true))
  end)
end)
