-- The wire protocol seen from a hostile or mismatched peer (API.md
-- "Security": malformed, truncated or oversized frames close that connection
-- only). A driver script opens raw sockets (LuaJIT FFI) to its embedded
-- node's unix socket and sends bad bytes; the node closes each connection,
-- says why on its stderr, and still runs tasks. The script runs as its own
-- process so what the node prints is checked here, not left in the output
-- of `make test`.
local shell = require("spec.helpers.shell")

local BIN = os.getenv("LRAY_BIN") or "build/lray"

local SCRIPT = [==[
local lray = require("lray")
local ffi = require("ffi")
local core = require("lray._core")
local runtime = require("lray.runtime")
lray.init({ num_cpus = 2, num_gpus = 0, include_dashboard = false })

ffi.cdef([[
struct lr_spec_sockaddr_un { unsigned short sun_family; char sun_path[108]; };
int socket(int domain, int type, int protocol);
int connect(int fd, const void *addr, unsigned int len);
long write(int fd, const void *buf, unsigned long n);
long read(int fd, void *buf, unsigned long n);
int close(int fd);
]])

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

-- Writes s, then waits (bounded) for the node to close the connection.
local function closed_after(s)
  local fd = raw_connect()
  assert(ffi.C.write(fd, s, #s) == #s)
  local buf = ffi.new("char[4096]")
  local deadline = lray.now() + 5
  while lray.now() < deadline do
    if ffi.C.read(fd, buf, 4096) == 0 then ffi.C.close(fd); return "closed" end
  end
  ffi.C.close(fd)
  return "still open"
end

local square = lray.remote(function(x) return x * x end)
local function works() return lray.get(square.remote(7), { timeout = 10 }) == 49 and "works" or "broken" end

print("UNKNOWN " .. closed_after(u32(3) .. "\127\0\0") .. " " .. works())
-- A "sub" whose list claims 2^24 - 1 ids in a 6-byte frame.
local sub = core.proto_encode({ t = "sub", ids = {} }):sub(1, 2) .. "\255\255\127"
print("MALFORMED " .. closed_after(u32(#sub) .. sub) .. " " .. works())
-- Bytes a codec value would start with, not a message.
print("CODEC " .. closed_after(u32(5) .. "\1\6\0\0\0") .. " " .. works())
print("OVERSIZED " .. closed_after(u32(0xfffffff0) .. "xyz") .. " " .. works())
-- A put naming a store range this connection was never given.
local put = core.proto_encode({ t = "put", id = "f00d", shm = { 0, 64 } })
print("RANGE " .. closed_after(u32(#put) .. put) .. " " .. works())

-- A client of another protocol version gets a clear error.
local conn = assert(core.connect("unix:" .. runtime.info.session_dir .. "/node.sock"))
local got
conn:on_message(function(_, m) got = m end)
conn:send({ t = "hello", rid = "r1", role = "driver", proto = 999 })
local deadline = lray.now() + 5
while not got and lray.now() < deadline do core.run_once() end
conn:close()
print("VERSION " .. tostring(got and got.t) .. ": " .. tostring(got and got.err))

-- A message with a field of the wrong type is refused at the sender.
local ok, err = pcall(runtime.conn.send, runtime.conn, { t = "ref", id = 42 })
print("SENDER " .. tostring(ok) .. ": " .. tostring(err) .. " " .. works())
lray.shutdown()
]==]

describe("the node's protocol", function()
  local out, status

  setup(function()
    local dir = os.tmpname()
    os.remove(dir)
    shell.write(dir .. "/hostile.lua", SCRIPT)
    out, status = shell.run(shell.q(BIN) .. " " .. shell.q(dir .. "/hostile.lua"))
    os.execute("rm -rf " .. shell.q(dir))
  end)

  it("runs the hostile client to its end", function()
    assert.are.equal(0, status, out)
  end)

  it("closes a connection that sends an unknown message type, and stays up", function()
    assert.matches("UNKNOWN closed works\n", out, 1, true)
    assert.matches("lray: closing a connection: unknown message type\n", out, 1, true)
  end)

  it("closes a connection that sends a malformed message or a codec value", function()
    assert.matches("MALFORMED closed works\n", out, 1, true)
    assert.matches("lray: closing a connection: malformed 'sub' message\n", out, 1, true)
    assert.matches("CODEC closed works\n", out, 1, true)
  end)

  it("closes a connection whose frame header claims more than the limit", function()
    assert.matches("OVERSIZED closed works\n", out, 1, true)
    assert.matches("its peer sent a frame of 4294967280 bytes (the limit is 1073741824)", out, 1, true)
  end)

  it("closes a connection that puts a store range it was not given", function()
    assert.matches("RANGE closed works\n", out, 1, true)
    assert.matches("lray: closing a connection: 'put' of a store range it was not given\n", out, 1, true)
  end)

  it("refuses a client of another protocol version with a clear error", function()
    assert.matches("VERSION reply: this lray node speaks protocol version %d+, the client 999:"
      .. " use the same lray build for the whole cluster\n", out)
  end)

  it("refuses to send a message with a field of the wrong type, naming it", function()
    assert.matches("SENDER false: cannot send message 'ref': field 'id' must be a string (got number) works",
      out, 1, true)
  end)
end)
