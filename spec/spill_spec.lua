-- Spilling (core/raylet/spill.c, unmap.c): when the store is full, objects
-- no process is reading go to disk, least recently used first, and come
-- back on the next read. Objects held only inside other objects spill as
-- they are; objects processes hold spill once every holder has let go of
-- its location (unmap). ObjectStoreFullError only when spilling is off or
-- the disk is full.
local cluster = require("spec.helpers.cluster")
local shell = require("spec.helpers.shell")
local core = require("lray._core")

local MB = 2 ^ 20
local STORE = 8 * MB
local lray

local function files(dir)
  local n = 0
  local p = io.popen("ls " .. shell.q(dir) .. " 2>/dev/null")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

local function exists(path) return core.exists(path) end

-- Polls cond() for up to secs; returns whether it became true.
local function eventually(cond, secs)
  local t0 = core.now()
  while not cond() do
    if core.now() - t0 > secs then return false end
    lray.sleep(0.02)
  end
  return true
end

-- About 1 MiB, different for every i (the last 16 bytes name it).
local function blob(i)
  return string.rep(string.char(65 + i % 26), MB - 64) .. ("%016d"):format(i)
end

local function drop_all()
  collectgarbage()
  collectgarbage()
end

describe("spilling", function()
  local spill_dir
  setup(function()
    lray = cluster.start({ object_store_memory = STORE })
    spill_dir = cluster.ctx().session_dir .. "/spill"
  end)
  teardown(function() cluster.stop() end)

  it("spills objects held only inside another object and restores them on get", function()
    local inner = {}
    for i = 1, 6 do inner[i] = lray.put(string.rep(string.char(64 + i), MB)) end
    local outer = lray.put(inner)
    inner = nil -- luacheck: ignore
    drop_all()
    -- 6 MB held only by outer: 4 more MB do not fit in 8 MB without spilling.
    local more = {}
    for i = 1, 4 do more[i] = lray.put(string.rep("z", MB)) end
    assert.is_true(files(spill_dir) >= 2, "expected spilled files in " .. spill_dir)
    more = nil -- luacheck: ignore
    drop_all()
    local refs = lray.get(outer)
    for i = 1, 6 do
      local v = lray.get(refs[i])
      assert.equal(MB, #v)
      assert.equal(string.char(64 + i), v:sub(1, 1))
      assert.equal(string.char(64 + i), v:sub(-1))
    end
    refs, outer = nil, nil -- luacheck: ignore
    drop_all()
    assert.is_true(eventually(function() return files(spill_dir) == 0 end, 5))
  end)

  it("spills objects the driver holds (3x the store) and reads every one back exactly", function()
    local refs = {}
    for i = 1, 24 do refs[i] = lray.put(blob(i)) end
    assert.is_true(files(spill_dir) >= 16, "expected most objects spilled in " .. spill_dir)
    -- `lray list objects` says where each is, with its size.
    local on_disk = 0
    local listed = require("lray.runtime").state({ t = "list", what = "objects" })
    for _, o in ipairs(listed.items or {}) do
      if o.where == "disk" then
        on_disk = on_disk + 1
        assert.is_true(o.size >= #blob(1) and o.size < #blob(1) + 64, "size " .. o.size)
      end
    end
    assert.is_true(on_disk >= 16, "lray list objects shows " .. on_disk .. " on disk")
    for _, order in ipairs({ { 1, 24, 1 }, { 24, 1, -1 } }) do
      for i = order[1], order[2], order[3] do
        local v = lray.get(refs[i])
        assert.is_true(v == blob(i), "object " .. i .. " came back different")
      end
    end
    -- Several at once: each restored in turn, spilling the others.
    local vs = lray.get({ refs[3], refs[11], refs[19] })
    assert.is_true(vs[1] == blob(3) and vs[2] == blob(11) and vs[3] == blob(19))
    refs, vs = nil, nil -- luacheck: ignore
    drop_all()
    assert.is_true(eventually(function() return files(spill_dir) == 0 end, 5),
      "spill files left after every ref was dropped")
  end)

  it("spills objects only an actor holds, and the actor reads them back", function()
    local Keeper = {}
    function Keeper:keep(refs) self.refs = refs end
    function Keeper:tails()
      local t = {}
      for i, r in ipairs(self.refs) do t[i] = lray.get(r):sub(-16) end
      return t
    end
    local refs, ids = {}, {}
    for i = 1, 6 do
      refs[i] = lray.put(blob(200 + i))
      ids[i] = refs[i]:hex()
    end
    -- (Given to a method, not to init: an actor's init arguments are held
    -- by its placement, for restarts, and stay in the store.)
    local k = lray.remote(Keeper).remote()
    lray.get(k.keep.remote(refs))
    assert.equal(6, #lray.get(k.tails.remote()))
    refs = nil -- luacheck: ignore
    drop_all() -- the actor, idle in its loop, is their only holder now
    local more = {}
    for i = 1, 16 do more[i] = lray.put(blob(i)) end
    local n = 0
    for i = 1, 6 do
      if exists(spill_dir .. "/" .. ids[i]) then n = n + 1 end
    end
    assert.is_true(n >= 1, "none of the actor's objects spilled")
    more = nil -- luacheck: ignore
    drop_all()
    local tails = lray.get(k.tails.remote())
    for i = 1, 6 do assert.equal(("%016d"):format(200 + i), tails[i]) end
    lray.kill(k)
  end)

  it("tasks and actors read objects that spill and come back under them, many times", function()
    -- What held a hang: a worker's ref to an argument (an array view of an
    -- earlier task's) collected while it waited for the node to restore it.
    local shared = {}
    for i = 1, 4 do shared[i] = lray.put(blob(300 + i)) end
    local Reader = {}
    function Reader:keep(refs) self.refs = refs end
    function Reader:bad()
      local bad = 0
      for i, r in ipairs(self.refs) do
        if lray.get(r) ~= blob(300 + i) then bad = bad + 1 end
      end
      return bad
    end
    local readers = { lray.remote(Reader).remote(), lray.remote(Reader).remote() }
    for _, r in ipairs(readers) do lray.get(r.keep.remote(shared)) end
    local arr = lray.array("int32_t", MB / 4)
    for i = 0, MB / 4 - 1 do arr[i] = i end
    local ra = lray.put(arr)
    arr = nil -- luacheck: ignore
    local check = lray.remote(function(a, s, i) return a[1000] == 1000 and s == blob(300 + i) end)
    local mine, pending = {}, {}
    for round = 1, 30 do
      mine[#mine + 1] = lray.put(blob(round))
      if #mine > 10 then table.remove(mine, 1) end
      pending[#pending + 1] = readers[round % 2 + 1].bad.remote()
      local k = round % 4 + 1
      pending[#pending + 1] = check.remote(ra, shared[k], k)
    end
    for i, r in ipairs(pending) do
      local v = lray.get(r, { timeout = 60 })
      assert.is_true(v == 0 or v == true, "call " .. i .. " read wrong bytes")
    end
    for _, r in ipairs(readers) do lray.kill(r) end
    shared, mine, pending, ra = nil, nil, nil, nil -- luacheck: ignore
    drop_all()
  end)

  it("never spills an object an lray.array view reads, and the view stays valid", function()
    local n = 2 * MB
    local a = lray.array("uint8_t", n)
    for i = 0, n - 1 do a[i] = i % 251 end
    local ra = lray.put(a)
    a = nil -- luacheck: ignore
    local v = lray.get(ra)
    local file = spill_dir .. "/" .. ra:hex()
    local more = {}
    for i = 1, 24 do more[i] = lray.put(blob(i)) end
    assert.equal(24, #more)
    assert.is_false(exists(file), "an object with a live view was spilled")
    for i = 0, n - 1, 4099 do assert.equal(i % 251, v[i]) end
    assert.equal((n - 1) % 251, v[n - 1])
    -- With the view gone it spills like the rest, and comes back whole.
    v = nil -- luacheck: ignore
    more = nil -- luacheck: ignore
    drop_all()
    more = {}
    for i = 1, 24 do more[i] = lray.put(blob(i)) end
    assert.equal(24, #more)
    assert.is_true(exists(file), "the object did not spill once its view was gone")
    local w = lray.get(ra)
    assert.equal(n, #w)
    for i = 0, n - 1, 4099 do assert.equal(i % 251, w[i]) end
    w, ra, more = nil, nil, nil -- luacheck: ignore
    drop_all()
  end)

  it("restores a spilled object given to a task as an argument", function()
    local x = lray.put(blob(7))
    local arr = lray.array("int32_t", MB / 4)
    for i = 0, MB / 4 - 1 do arr[i] = i * 3 end
    local y = lray.put(arr)
    arr = nil -- luacheck: ignore
    local more = {}
    for i = 1, 24 do more[i] = lray.put(blob(100 + i)) end
    assert.is_true(exists(spill_dir .. "/" .. x:hex()), "the argument did not spill")
    assert.is_true(exists(spill_dir .. "/" .. y:hex()), "the array argument did not spill")
    local f = lray.remote(function(s, t) return #s, s:sub(-16), t[12345], #t end)
    local len, tail, elem, count = lray.get(f.remote(x, y))
    assert.equal(#blob(7), len)
    assert.equal(("%016d"):format(7), tail)
    assert.equal(12345 * 3, elem)
    assert.equal(MB / 4, count)
    -- And inside a task that holds the object itself.
    local g = lray.remote(function(refs) return lray.get(refs[1]):sub(-16) end)
    assert.equal(("%016d"):format(101), lray.get(g.remote({ more[1] })))
    x, y, more = nil, nil, nil -- luacheck: ignore
    drop_all()
  end)
end)

describe("spilling turned off (LRAY_SPILL=0)", function()
  setup(function()
    core.setenv("LRAY_SPILL", "0")
    lray = cluster.start({ object_store_memory = STORE })
  end)
  teardown(function()
    cluster.stop()
    core.setenv("LRAY_SPILL", nil)
  end)

  it("fails a put that does not fit with ObjectStoreFullError naming the sizes", function()
    local held = {}
    local e = cluster.fails(function()
      for i = 1, 12 do held[i] = lray.put(blob(i)) end
    end)
    assert.equal("ObjectStoreFullError", e.type)
    local msg = cluster.msg(e)
    assert.matches("cannot store %d+ bytes %(%d+ of %d+ bytes in use", msg)
    assert.matches("spilling to disk is off", msg, 1, true)
    assert.equal(0, files(cluster.ctx().session_dir .. "/spill"))
    held = nil -- luacheck: ignore
    drop_all()
  end)
end)

describe("spilling to a full disk", function()
  -- CI runs with no LRAY_TMPDIR set: /tmp then, as lray itself does.
  local mnt = (os.getenv("LRAY_TMPDIR") or "/tmp") .. "/spill-tiny-" .. core.random_hex(4)
  local mounted
  setup(function()
    shell.ok("mkdir -p " .. shell.q(mnt))
    -- A 3 MiB tmpfs (CI runs as root); elsewhere a directory no one can make.
    local _, st = shell.run("mount -t tmpfs -o size=3m tmpfs " .. shell.q(mnt))
    mounted = st == 0
    core.setenv("LRAY_SPILL_DIR", mounted and mnt or "/proc/lray-no-such-dir")
    lray = cluster.start({ object_store_memory = STORE })
  end)
  teardown(function()
    cluster.stop()
    core.setenv("LRAY_SPILL_DIR", nil)
    if mounted then shell.run("umount " .. shell.q(mnt)) end
    shell.run("rmdir " .. shell.q(mnt))
  end)

  it("fails with ObjectStoreFullError saying the spill failed", function()
    local held = {}
    local e = cluster.fails(function()
      for i = 1, 16 do held[i] = lray.put(blob(i)) end
    end)
    assert.equal("ObjectStoreFullError", e.type)
    local msg = cluster.msg(e)
    assert.matches("spilling to disk failed", msg, 1, true)
    if mounted then assert.matches("no space left on device", msg:lower(), 1, true) end
    -- What did spill comes back once the store has room again.
    local dir = mounted and shell.ok("ls -d " .. shell.q(mnt) .. "/lray-spill-*"):gsub("%s+$", "")
    local spilled = {}
    for i = 1, #held do
      if dir and exists(dir .. "/" .. held[i]:hex()) then spilled[#spilled + 1] = i
      else held[i]:release() end
    end
    if mounted then assert.is_true(#spilled >= 1, "nothing spilled before the disk was full") end
    for _, i in ipairs(spilled) do assert.is_true(lray.get(held[i]) == blob(i), "object " .. i) end
    held = nil -- luacheck: ignore
    drop_all()
  end)

  it("leaves nothing in the spill directory when the node ends", function()
    if not mounted then return end
    local held = {}
    pcall(function() for i = 1, 9 do held[i] = lray.put(blob(i)) end end)
    assert.is_true(files(mnt) == 1, "expected the node's directory in " .. mnt)
    cluster.stop()
    assert.equal(0, files(mnt))
    lray = cluster.start({ object_store_memory = STORE })
  end)
end)

describe("lray start --spill-dir", function()
  local tmp = os.getenv("LRAY_TMPDIR") or "/tmp"
  local base = tmp .. "/spill-cli-" .. core.random_hex(4)
  local bin = os.getenv("LRAY_BIN") or "build/lray"
  if bin:sub(1, 1) ~= "/" then bin = os.getenv("PWD") .. "/" .. bin end
  local ENV = "cd " .. shell.q(base) .. " && LRAY_TMPDIR=" .. shell.q(base) .. " " .. shell.q(bin)

  -- `lray start ...` with its output in a file: the node it leaves running
  -- must not hold a pipe of ours open.
  local function start(args)
    local log = base .. "/start.out"
    local _, st = shell.run(ENV .. " start " .. args .. " >" .. shell.q(log) .. " 2>&1")
    local out = shell.read(log)
    assert(st == 0, "lray start " .. args .. " failed:\n" .. out)
    return out
  end

  setup(function() shell.ok("mkdir -p " .. shell.q(base)) end)
  teardown(function()
    shell.run(ENV .. " stop")
    shell.run("rm -rf " .. shell.q(base))
  end)

  it("spills into a directory of the node's own there, gone when the node stops", function()
    local dir = base .. "/spilled"
    local out = start("--head --port 0 --num-cpus 1 --dashboard-port 0"
      .. " --object-store-memory " .. STORE .. " --spill-dir " .. shell.q(dir))
    local tcp = assert(out:match("for other machines: (%S+)"), out)
    -- A joining node takes it too (a relative DIR is the command's).
    start("--address " .. tcp .. " --port 0 --num-cpus 1 --spill-dir joined")
    local pidfile = shell.ok("ls " .. shell.q(base) .. "/node-*.pid"):gsub("%s+$", "")
    local pid = shell.read(pidfile):match("%d+")
    local cmdline = shell.read("/proc/" .. pid .. "/cmdline"):gsub("%z", " ")
    assert.matches("--spill-dir " .. base .. "/joined", cmdline, 1, true)
    shell.write(base .. "/driver.lua", ([[
      local lray = require("lray")
      lray.init({ address = "auto" })
      local function blob(i) return string.rep("x", %d) .. ("%%016d"):format(i) end
      local refs = {}
      for i = 1, 24 do refs[i] = lray.put(blob(i)) end
      local n = 0
      for _ in io.popen("ls %s/lray-spill-*"):lines() do n = n + 1 end
      for i = 1, 24 do assert(lray.get(refs[i]) == blob(i), "object " .. i) end
      print("spilled " .. n .. " read 24")
    ]]):format(MB - 64, dir))
    local dout = shell.ok(ENV .. " driver.lua")
    local n = tonumber(dout:match("spilled (%d+) read 24"))
    assert.is_true(n and n >= 16, "expected spill files in " .. dir .. ":\n" .. dout)
    shell.ok(ENV .. " stop")
    assert.equal("", shell.run("ls -A " .. shell.q(dir) .. " 2>/dev/null"))
    assert.equal("", shell.run("ls -A " .. shell.q(base .. "/joined") .. " 2>/dev/null"))
  end)
end)
