-- The wire protocol seen from a hostile or mismatched peer (API.md
-- "Security": malformed, truncated or oversized frames close that connection
-- only). A raw socket (LuaJIT FFI) talks to the embedded node's unix socket;
-- afterwards the cluster still runs tasks.
local cluster = require("spec.helpers.cluster")
local ffi = require("ffi")

ffi.cdef([[
struct lr_spec_sockaddr_un { unsigned short sun_family; char sun_path[108]; };
int socket(int domain, int type, int protocol);
int connect(int fd, const void *addr, unsigned int len);
long write(int fd, const void *buf, unsigned long n);
long read(int fd, void *buf, unsigned long n);
int close(int fd);
]])

local lray, runtime, core

-- A raw connection to the node: fd, or raises.
local function raw_connect()
  local fd = ffi.C.socket(1, 1, 0)   -- AF_UNIX, SOCK_STREAM
  assert(fd >= 0, "socket failed")
  local sa = ffi.new("struct lr_spec_sockaddr_un")
  sa.sun_family = 1
  ffi.copy(sa.sun_path, runtime.info.session_dir .. "/node.sock")
  assert(ffi.C.connect(fd, sa, ffi.sizeof(sa)) == 0, "connect failed")
  return fd
end

local function u32(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 16777216) % 256)
end

-- Writes s, then waits (bounded) for the node to close the connection:
-- read returns 0 at end of stream.
local function closed_after(fd, s)
  assert(ffi.C.write(fd, s, #s) == #s)
  local buf = ffi.new("char[4096]")
  local deadline = lray.now() + 5
  while lray.now() < deadline do
    local n = ffi.C.read(fd, buf, 4096)
    if n == 0 then ffi.C.close(fd); return true end
  end
  ffi.C.close(fd)
  return false
end

local square = nil
local function still_works()
  square = square or lray.remote(function(x) return x * x end)
  assert.are.equal(49, lray.get(square.remote(7), { timeout = 10 }))
end

describe("the node's protocol", function()
  setup(function()
    lray = cluster.start()
    runtime = require("lray.runtime")
    core = require("lray._core")
  end)
  teardown(function() cluster.stop() end)

  it("closes a connection that sends an unknown message type, and stays up", function()
    assert.is_true(closed_after(raw_connect(), u32(3) .. "\127\0\0"))
    still_works()
  end)

  it("closes a connection that sends a malformed message", function()
    -- A "sub" whose list claims 2^24 - 1 ids in a 6-byte frame.
    local sub = core.proto_encode({ t = "sub", ids = {} }):sub(1, 2) .. "\255\255\127"
    assert.is_true(closed_after(raw_connect(), u32(#sub) .. sub))
    -- Bytes a codec value would start with, not a message.
    assert.is_true(closed_after(raw_connect(), u32(5) .. "\1\6\0\0\0"))
    still_works()
  end)

  it("closes a connection whose frame header claims more than the limit", function()
    assert.is_true(closed_after(raw_connect(), u32(0xfffffff0) .. "xyz"))
    still_works()
  end)

  it("refuses a client of another protocol version with a clear error", function()
    local conn = assert(core.connect("unix:" .. runtime.info.session_dir .. "/node.sock"))
    local got
    conn:on_message(function(_, m) got = m end)
    conn:send({ t = "hello", rid = "r1", role = "driver", proto = 999 })
    local deadline = lray.now() + 5
    while not got and lray.now() < deadline do core.run_once() end
    conn:close()
    assert.is_table(got)
    assert.are.equal("reply", got.t)
    assert.matches("protocol version " .. core.PROTO_VERSION .. ", the client 999", got.err, 1, true)
    still_works()
  end)

  it("refuses to send a message with a field of the wrong type, naming it", function()
    local ok, err = pcall(runtime.conn.send, runtime.conn, { t = "ref", id = 42 })
    assert.is_false(ok)
    assert.matches("field 'id' must be a string (got number)", err, 1, true)
    still_works()
  end)
end)
