-- API.md "Clusters of many machines": lray.init{address = "host:port",
-- token = ...} works from a machine that runs no node of the cluster; such a
-- driver's objects travel over its connection (core/raylet/remote.c,
-- lua/lray/store_link.lua).
--
-- The driver here really has another machine's view of shared memory: it
-- runs in a mount namespace of its own (`unshare --mount`) with a private
-- tmpfs on /dev/shm and on its LRAY_TMPDIR, and reaches the head (`lray
-- start --head`, 127.0.0.1) over TCP with the token. This needs root (CI
-- runs as root); without it every test fails, saying why.
local nodes = require("spec.helpers.nodes")
local shell = require("spec.helpers.shell")
local cjson = require("cjson")

-- What every driver script starts with: join, and say whether it is remote.
local PRELUDE = [[
local lray = require("lray")
local rt = require("lray.runtime")
local ok_init, e_init = pcall(lray.init, { address = os.getenv("ADDR"), token = os.getenv("TOK") })
if not ok_init then
  print("init-error", type(e_init) == "table" and e_init.type or "?", tostring(e_init))
  os.exit(0)
end
print("remote", tostring(rt.remote_store))
-- Bytes of every value, in an order that catches a shifted or swapped piece.
local function bytes(n, seed)
  local t, x = {}, seed
  for i = 1, n / 4096 do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char(x % 256, math.floor(x / 256) % 256, i % 256, math.floor(i / 256) % 256)
      :rep(1024)
  end
  return table.concat(t)
end
-- A checksum a task can compute on the node as well (FNV-1a over every
-- 61st byte and every byte of the last page).
local function sum(s)
  local h = 2166136261
  for i = 1, #s, 61 do h = bit.bxor(h, s:byte(i)) * 16777619 % 4294967296 end
  for i = math.max(1, #s - 4095), #s do h = bit.bxor(h, s:byte(i)) * 16777619 % 4294967296 end
  return h
end
]]

local c, probe_err

-- Runs script (after PRELUDE) as a driver in a mount namespace whose
-- /dev/shm and LRAY_TMPDIR are private tmpfs mounts; pre: shell commands
-- run in the namespace first. Returns the output and, after "[left]", what
-- the driver left in its /dev/shm and LRAY_TMPDIR.
local function remote_driver(script, opts)
  opts = opts or {}
  assert(not probe_err, probe_err)
  local dir = os.tmpname()
  os.remove(dir)
  shell.ok("mkdir -p " .. shell.q(dir .. "/tmp"))
  shell.write(dir .. "/driver.lua", PRELUDE .. script)
  local inner = table.concat({
    "mount -t tmpfs lray-spec-shm /dev/shm",
    "mount -t tmpfs lray-spec-tmp " .. shell.q(dir .. "/tmp"),
    opts.pre or "true",
    ("cd %s && LRAY_TMPDIR=%s ADDR=%s TOK=%s timeout 120 %s driver.lua; echo \"[exit $?]\"")
      :format(shell.q(dir), shell.q(dir .. "/tmp"), shell.q(c.address),
        shell.q(opts.token or c.token), shell.q(nodes.BIN)),
    ("echo \"[left]$(ls -A /dev/shm)$(ls -A %s)[/left]\""):format(shell.q(dir .. "/tmp")),
    opts.post or "true",
  }, " && ")
  local out = shell.run("unshare --mount sh -c " .. shell.q(inner))
  shell.run("rm -rf " .. shell.q(dir))
  return out
end

-- The objects in the head's store, as `lray list objects` gives them.
local function objects()
  local out, status = c:lray("list objects --format json")
  assert(status == 0, out)
  return cjson.decode(out)
end

-- Waits (bounded) until the head's store holds no object but those in
-- baseline (ids); returns the others.
local function back_to(baseline, seconds)
  local deadline = os.time() + (seconds or 10)
  local extra
  repeat
    extra = {}
    for _, o in ipairs(objects()) do
      if not baseline[o.object_id] then extra[#extra + 1] = o.object_id end
    end
    if #extra == 0 then return extra end
    shell.run("sleep 0.1")
  until os.time() > deadline
  return extra
end

-- The rest of the line of out that starts with key and a tab.
local function line(out, key)
  key = key:gsub("%p", "%%%0")
  return out:match("\n" .. key .. "\t([^\n]*)") or out:match("^" .. key .. "\t([^\n]*)")
end

describe("a driver on a machine that runs no node", function()
  setup(function()
    -- Fail loudly, not skip, where a mount namespace cannot be made.
    local out, status = shell.run("unshare --mount sh -c 'mount -t tmpfs x /dev/shm && true'")
    if status ~= 0 then
      probe_err = "these specs need `unshare --mount` and tmpfs mounts (root; CI runs as root),"
        .. " which failed here: " .. out
    end
    c = nodes.start({ head_cpus = 2, nodes = 1,
      extra = { "--resources '{\"Far\": 1}'" } })
  end)

  teardown(function()
    if c then
      local left = c:stop()
      assert.same({}, left)
    end
  end)

  it("knows it does not share the store, and never maps a same-named file", function()
    local out = remote_driver([[
print("put", lray.get(lray.put(bytes(1 * 1048576, 7))) == bytes(1 * 1048576, 7))
]])
    assert.matches("remote\tcannot open shm '[^']+': no such file", out)
    assert.equal("true", line(out, "put"), out)
    assert.matches("%[exit 0%]", out)

    -- A file of the node's name and size in this /dev/shm is not its store:
    -- the cookie tells; nothing is written into the file.
    local pid = assert(c:node_pids()[1])
    local names = shell.ok("ls /dev/shm")
    local name = assert(names:match("(lray%-" .. pid .. "%-%x+)"), names)
    local size = shell.ok("stat -c %s /dev/shm/" .. name):match("%d+")
    out = remote_driver([[
print("put", lray.get(lray.put(bytes(1 * 1048576, 7))) == bytes(1 * 1048576, 7))
]], { pre = ("truncate -s %s /dev/shm/%s"):format(size, name),
      post = ("cmp -n %s /dev/shm/%s /dev/zero && echo fake-untouched && rm /dev/shm/%s")
        :format(size, name, name) })
    assert.equal("/dev/shm/" .. name .. " here is not that node's store (its cookie differs)",
      line(out, "remote"), out)
    assert.equal("true", line(out, "put"), out)
    assert.matches("fake%-untouched", out)
  end)

  it("puts and gets large values with exact bytes, a few MiB and 64+ MiB", function()
    local out = remote_driver([[
for _, n in ipairs({ 5 * 1048576 + 3, 65 * 1048576 + 4093 }) do
  local v = bytes(n - n % 4096, n) .. ("tail"):rep(1024):sub(1, n % 4096)
  local r = lray.put(v)
  local back = lray.get(r)
  -- A task on the node reads the same bytes in place.
  local on_node = lray.get(lray.remote(function(s) return sum(s), #s end).remote(r))
  print("size" .. n, #back, back == v, on_node == sum(v))
end
]])
    assert.matches("remote\tcannot open shm", out)
    assert.equal("5242883\ttrue\ttrue", line(out, "size5242883"), out)
    assert.equal("68161533\ttrue\ttrue", line(out, "size68161533"), out)
  end)

  it("gets large task results, from its node's store and from another node's", function()
    local out = remote_driver([[
local make = lray.remote(function(n, seed) return bytes(n, seed) end)
local v = lray.get(make.remote(8 * 1048576, 3))
print("result", #v, v == bytes(8 * 1048576, 3))
-- Made on the other node (resource Far): its node copies it first.
local far = lray.get(make.options({ resources = { Far = 1 } }).remote(6 * 1048576, 5))
print("far", #far, far == bytes(6 * 1048576, 5))
-- Several results, got together.
local refs = {}
for i = 1, 4 do refs[i] = make.remote(1 * 1048576, i) end
local vs, good = lray.get(refs), 0
for i = 1, 4 do if vs[i] == bytes(1 * 1048576, i) then good = good + 1 end end
print("many", good)
]])
    assert.matches("remote\tcannot open shm", out)
    assert.equal("8388608\ttrue", line(out, "result"), out)
    assert.equal("6291456\ttrue", line(out, "far"), out)
    assert.equal("4", line(out, "many"), out)
  end)

  it("round-trips an lray.array (a read-only copy in driver memory)", function()
    local out = remote_driver([[
local n = 1 * 1048576
local a = lray.array("double", n)
for i = 0, n - 1 do a[i] = i * 0.25 end
local r = lray.put(a)
local b = lray.get(r)
local bad = 0
for i = 0, n - 1 do if b[i] ~= i * 0.25 then bad = bad + 1 end end
print("array", #b, b:ctype(), bad)
print("readonly", pcall(function() b[0] = 1 end))
local total = lray.remote(function(x) local s = 0; for i = 0, #x - 1 do s = s + x[i] end; return s end)
print("task", lray.get(total.remote(r)) == (n - 1) * n / 2 * 0.25)
local mk = lray.remote(function(m) local x = lray.array("int32_t", m); for i = 0, m - 1 do x[i] = -i end; return x end)
local c2 = lray.get(mk.remote(300000))
print("result", #c2, c2[299999], c2:ctype())
]])
    assert.matches("remote\tcannot open shm", out)
    assert.equal("1048576\tdouble\t0", line(out, "array"), out)
    assert.matches("^false\t.*immutable", line(out, "readonly"))
    assert.equal("true", line(out, "task"), out)
    assert.equal("300000\t-299999\tint32_t", line(out, "result"), out)
  end)

  it("passes its large put to tasks and actors; wait and get with timeout work", function()
    local out = remote_driver([[
local v = bytes(12 * 1048576, 9)
local r = lray.put(v)
local f = lray.remote(function(s) return sum(s) end)
print("task", lray.get(f.remote(r)) == sum(v))
local Keep = lray.remote({ set = function(self, s) self.s = s; return #s end,
  get = function(self) return self.s end })
local k = Keep.remote()
print("actor", lray.get(k.set.remote(r)), lray.get(k.get.remote()) == v)
local slow = lray.remote(function() lray.sleep(0.3); return bytes(1 * 1048576, 1) end).remote()
local ready, rest = lray.wait({ slow }, { timeout = 0.01 })
print("wait-early", #ready, #rest)
local ok, e = pcall(lray.get, slow, { timeout = 0.01 })
print("timeout", ok, lray.is_error(e, "GetTimeoutError"))
ready = lray.wait({ slow }, { timeout = 30 })
print("wait-late", #ready, lray.get(slow) == bytes(1 * 1048576, 1))
]])
    assert.matches("remote\tcannot open shm", out)
    assert.equal("true", line(out, "task"), out)
    assert.equal("12582912\ttrue", line(out, "actor"), out)
    assert.equal("0\t1", line(out, "wait-early"), out)
    assert.equal("false\ttrue", line(out, "timeout"), out)
    assert.equal("1\ttrue", line(out, "wait-late"), out)
  end)

  it("gets a value whole again after a get of it was interrupted midway (Ctrl-C)", function()
    local out = remote_driver([[
local core = require("lray._core")
local v = bytes(40 * 1048576, 11)
local r = lray.put(v)
-- A Ctrl-C as the first piece arrives: the rest of that read still comes.
local on_chunk = rt.handlers.chunk
rt.handlers.chunk = function(m, c)
  rt.handlers.chunk = on_chunk
  core.kill(core.getpid(), 2)
  return on_chunk(m, c)
end
local ok, e = pcall(lray.get, r)
print("interrupted", ok, tostring(e):match("interrupted") ~= nil)
print("again", lray.get(r) == v)
]])
    assert.equal("false\ttrue", line(out, "interrupted"), out)
    assert.equal("true", line(out, "again"), out)
  end)

  it("is refused with AuthenticationError for a wrong token", function()
    local out = remote_driver("print('joined')\n", { token = ("0"):rep(64) })
    assert.matches("init%-error\tAuthenticationError\t.*" .. c.address:gsub("%p", "%%%0"), out)
    assert.not_matches("joined", out)
  end)

  it("has a write outside a range it was given closed, and the node stays up", function()
    local out = remote_driver([[
local r = rt.alloc(1000)
rt.send({ t = "write", at = r.off, pos = 990, data = ("x"):rep(20) })
local core = require("lray._core")
local deadline = core.now() + 10
while not rt.lost and core.now() < deadline do core.poll(); core.usleep(0.001) end
print("closed", rt.lost ~= nil)
]])
    assert.equal("true", line(out, "closed"), out)
    out = remote_driver("print('again', lray.get(lray.put(bytes(1 * 1048576, 1))) == bytes(1 * 1048576, 1))\n")
    assert.equal("true", line(out, "again"), out)
  end)

  it("leaves nothing behind: the node's store back to baseline", function()
    local baseline = {}
    for _, o in ipairs(objects()) do baseline[o.object_id] = true end
    local out = remote_driver([[
local keep = { lray.put(bytes(16 * 1048576, 1)), lray.put(bytes(300000, 2)) }
local a = lray.array("uint8_t", 1 * 1048576)
keep[3] = lray.put(a)
print("got", #lray.get(keep[1]), #lray.get(keep[3]))
local big = lray.remote(function() return bytes(2 * 1048576, 4) end)
print("result", #lray.get(big.remote()))
]])
    assert.equal("16777216\t1048576", line(out, "got"), out)
    assert.equal("2097152", line(out, "result"), out)
    -- Nothing in its own /dev/shm or LRAY_TMPDIR, and none of its objects
    -- on the node once it is gone.
    assert.matches("%[exit 0%]\n%[left%]%[/left%]", out)
    assert.same({}, back_to(baseline))
  end)
end)
