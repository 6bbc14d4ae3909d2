-- API.md "Clusters of many machines": an object stored on one node is read
-- on another (copied once into that node's store, in chunks, then read
-- there zero-copy), and an object whose holder node is gone raises
-- ObjectLostError naming the node. Nodes are separate `lray _node`
-- processes on 127.0.0.x (spec/helpers/nodes.lua); drivers join one each.
--
-- Drivers on joined nodes cannot share an actor yet, so the ObjectRef goes
-- from the putting driver to the reading one by hand: its value record (id,
-- range, node) through a file (runtime.record_of / ref_of), as an ObjectRef
-- sent in a message would carry it.
local nodes = require("spec.helpers.nodes")
local shell = require("spec.helpers.shell")

local PUT = [[
local lray = require("lray")
local rt = require("lray.runtime")
local core = require("lray._core")
local addr, dir, mib, strmib = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
lray.init({ address = addr })
local n = mib * 1048576
local a = lray.array("uint8_t", n)
for i = 0, n - 1 do a[i] = (i * 7 + math.floor(i / 65536)) % 256 end
local refs = { lray.put(a) }
if strmib > 0 then refs[2] = lray.put(string.rep("0123456789abcdef", strmib * 65536) .. "end") end
local out = {}
for i, r in ipairs(refs) do
  local rec = rt.record_of(r:hex())
  out[i] = ("{id=%q, off=%d, len=%d, arr=%s, node=%q}"):format(rec.id, rec.shm[1], rec.shm[2],
    rec.arr and ("%q"):format(rec.arr) or "nil", rec.node)
end
local f = assert(io.open(dir .. "/rec.tmp", "w"))
f:write("return {", table.concat(out, ", "), ", session = ", ("%q"):format(rt.info.session_dir), "}\n")
f:close()
os.rename(dir .. "/rec.tmp", dir .. "/rec")
local deadline = core.now() + 120
while core.now() < deadline and not io.open(dir .. "/release") do core.usleep(0.01) end
lray.shutdown()
]]

local GET = [[
local lray = require("lray")
local rt = require("lray.runtime")
local addr, dir = arg[1], arg[2]
lray.init({ address = addr })
local recs = dofile(dir .. "/rec")
local function ref(rec)
  return rt.ref_of({ id = rec.id, shm = { rec.off, rec.len }, arr = rec.arr, node = rec.node })
end
local ok, v = pcall(lray.get, ref(recs[1]))
if not ok then
  print("error", type(v) == "table" and v.type or "?", type(v) == "table" and v.message or tostring(v))
  return
end
local n, bad = v:nbytes(), 0
for i = 0, n - 1 do
  if v[i] ~= (i * 7 + math.floor(i / 65536)) % 256 then bad = bad + 1 end
end
print("array", n, bad)
-- A second read on this node uses the node's copy.
print("again", lray.get(ref(recs[1])):nbytes())
if recs[2] then
  local s = lray.get(ref(recs[2]))
  print("string", #s, s == string.rep("0123456789abcdef", (#s - 3) / 16) .. "end")
end
lray.shutdown()
]]

describe("objects between nodes", function()
  local c, dir, put, get

  setup(function()
    c = nodes.start({ nodes = 2, num_cpus = 1 })
    dir = os.tmpname()
    os.remove(dir)
    shell.ok("mkdir -p " .. shell.q(dir))
    put, get = dir .. "/put.lua", dir .. "/get.lua"
    shell.write(put, PUT)
    shell.write(get, GET)
  end)

  teardown(function()
    if dir then shell.run("touch " .. shell.q(dir .. "/release") .. "; rm -rf " .. shell.q(dir)) end
    if c then c:stop() end
  end)

  local function node_socks()
    local out = shell.run(("ls -d %s/node-*/"):format(shell.q(c.base)))
    local socks = {}
    for d in out:gmatch("[^\n]+") do socks[#socks + 1] = "unix:" .. d .. "node.sock" end
    table.sort(socks)
    return socks
  end

  -- Starts the putting driver at addr in the background; waits (bounded) for
  -- its record; returns it.
  local function start_put(addr, mib, strmib)
    shell.run(("rm -f %s/rec %s/release"):format(shell.q(dir), shell.q(dir)))
    shell.run(("LRAY_TMPDIR=%s %s %s %s %s %d %d >%s/put.out 2>&1 &"):format(shell.q(c.base),
      shell.q(nodes.BIN), shell.q(put), shell.q(addr), shell.q(dir), mib, strmib, shell.q(dir)))
    for _ = 1, 600 do
      local f = io.open(dir .. "/rec")
      if f then f:close(); return dofile(dir .. "/rec") end
      shell.run("sleep 0.05")
    end
    error("the putting driver did not store its objects: " .. shell.run("cat " .. shell.q(dir .. "/put.out")))
  end

  local function run_get(addr)
    return shell.run(("LRAY_TMPDIR=%s %s %s %s %s 2>&1"):format(shell.q(c.base), shell.q(nodes.BIN),
      shell.q(get), shell.q(addr), shell.q(dir)))
  end

  it("reads a 256 MiB lray.array and a large string put on the head from another node", function()
    local rec = start_put("auto", 256, 8)
    assert.matches("^127%.0%.0%.1:%d+$", rec[1].node)
    local out = run_get(node_socks()[1])
    shell.run("touch " .. shell.q(dir .. "/release"))
    assert.matches("array\t268435456\t0\n", out, 1, true)
    assert.matches("again\t268435456\n", out, 1, true)
    assert.matches("string\t" .. (8 * 1048576 + 3) .. "\ttrue\n", out, 1, true)
  end)

  it("raises ObjectLostError naming the node when the holder node was killed", function()
    local socks = node_socks()
    local rec = start_put(socks[1], 4, 0)
    local holder = rec[1].node
    assert.matches("^127%.0%.0%.[23]:%d+$", holder)
    local pid = tonumber(shell.read(rec.session .. ".pid"):match("%d+"))
    shell.ok("kill -9 " .. pid)
    local out = run_get(socks[2])
    shell.run("touch " .. shell.q(dir .. "/release"))
    assert.matches("error\tObjectLostError\t", out, 1, true)
    assert.matches("node " .. holder, out, 1, true)
  end)
end)
