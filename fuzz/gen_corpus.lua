-- Writes the fuzz targets' seed corpus (fuzz/corpus/<target>/), run by
-- `make fuzz-corpus` as `build/lray fuzz/gen_corpus.lua fuzz/corpus`:
--   proto, proto_lua  messages as the runtime sends them, and one of every
--                     message type with every field set to a value its
--                     encoder takes (found by trying candidates in turn)
--   ser               values: scalars, nested, shared and cyclic tables,
--                     metatables; a function too, which the target refuses
--   frame             those messages framed, behind the first byte that
--                     picks max_frame (fuzz/fuzz_frame.c)
--   auth              one input per case of fuzz/fuzz_auth.c
-- Files are named by their content's hash, as libFuzzer names its own;
-- regress-* files (inputs that found bugs) are kept as they are.
local core = require("lray._core")
local out = assert(arg[1], "usage: gen_corpus.lua DIR")

local function hash(s) -- FNV-1a, 32 bits, as hex
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(h * 16777619 % 4294967296)
  end
  return bit.tohex(h)
end

local function write(target, data)
  local dir = out .. "/" .. target
  os.execute("mkdir -p '" .. dir .. "'")
  local f = assert(io.open(dir .. "/seed-" .. hash(data), "wb"))
  f:write(data)
  f:close()
end

-- -- Messages -------------------------------------------------------------
local real = {
  { t = "hello", proto = core.PROTO_VERSION, kind = "driver", pid = 4242 },
  { t = "put", id = "0123456789abcdef0123", data = "\1\5\3abc", refs = { "r1", "r2" } },
  { t = "ref", id = "0123456789abcdef0123" },
  { t = "unref", ids = { "a", "b", "c" } },
  { t = "fn", h = "f00d", code = "\1\9lua" },
  { t = "actor_sub", aid = "actor-1" },
  { t = "kill_actor", aid = "actor-1", no_restart = true },
  { t = "get_actor", name = "counter", namespace = "default" },
  { t = "list", what = "workers" },
  { t = "status" }, { t = "resources" }, { t = "nodes" }, { t = "shutdown" },
}

-- Values a field of each kind takes; the first the encoder accepts wins.
local candidates = {
  -7, 2.5, true, "abc\0\255", { "a", "b" }, { 1, -2 }, { 0.5 }, { true },
  { {} }, { [3] = "a", [-9] = "b" }, { [3] = 1 }, { [3] = {} },
  { CPU = 10000, GPU = 0 }, { CPU = "a" }, { CPU = 1.5 }, { CPU = {} }, {},
}

local function fill(name, fields)
  local m = { t = name }
  for _, f in ipairs(fields) do
    for _, v in ipairs(candidates) do
      local probe = { t = name, [f] = v }
      if pcall(core.proto_encode, probe) then
        m[f] = v
        break
      end
    end
  end
  return m
end

local messages = {}
for _, m in ipairs(real) do
  local ok, s = pcall(core.proto_encode, m)
  if ok then messages[#messages + 1] = s end
end
local names = {}
for name in pairs(core.proto_types()) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do
  local m = fill(name, core.proto_types()[name])
  local ok, s = pcall(core.proto_encode, m) -- records are not messages: skipped
  if ok then messages[#messages + 1] = s end
end
for _, s in ipairs(messages) do
  write("proto", s)
  write("proto_lua", s)
end

-- -- Frames ---------------------------------------------------------------
local function frame(s)
  local n = #s
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 16777216)) .. s
end
for i = 1, #messages, 4 do
  local stream = {}
  for k = i, math.min(i + 3, #messages) do stream[#stream + 1] = frame(messages[k]) end
  write("frame", string.char(3) .. table.concat(stream)) -- max_frame: LR_MAX_FRAME
  write("frame", string.char(2) .. table.concat(stream)) -- max_frame: 300
end
write("frame", string.char(3) .. frame("\197closes") .. frame("unread"))
write("frame", string.char(1) .. frame("") .. "\255\255\255\127")

-- -- Values ---------------------------------------------------------------
local shared = { 1, 2, 3 }
local cyc = { name = "cycle" }
cyc.self = cyc
local values = {
  0, 1, -1, 2 ^ 53, -2 ^ 63, 0.1, -0.0, 1 / 0, -1 / 0, 0 / 0, true, false,
  "", "hello", string.rep("x", 300), "\0\1\2\255",
  {}, { 1, 2, 3 }, { 1, nil, 3 }, { a = 1, b = { c = { d = "deep" } } },
  { [1.5] = "f", [true] = false, [{}] = 1, [-3] = "neg" },
  { shared, shared, { s = shared } }, cyc,
  setmetatable({ x = 1 }, { __index = { y = 2 } }),
  setmetatable({}, { __mode = "k" }),
  { results = { { id = "0123", shm = { 1, 2 } } }, err = nil, n = 2 },
  function(x) return x + 1 end, -- refused: bytecode is off
}
for i = 1, #values do
  local ok, s = pcall(core.encode, values[i])
  if ok then write("ser", s) end
end

-- -- Auth -----------------------------------------------------------------
write("auth", "\0" .. string.rep("5f1c0e6a", 8))
write("auth", "\0" .. string.rep("A", 31))
write("auth", "\1" .. string.rep("\7", 64))
write("auth", "\2")
write("auth", "\2\1" .. string.rep("\0", 96))
write("auth", "\2\0" .. string.rep("\0", 64) .. "\1")
write("auth", "\3lray-auth-v1" .. string.rep("n", 32) .. string.rep("p", 32))
write("auth", "\3lray-auth-v2" .. string.rep("n", 32))
