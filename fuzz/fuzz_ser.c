/* libFuzzer target: the value codec's decoder with function bytecode off
 * (lr_ser_decode_data, as for a peer that has not authenticated), with
 * resolve and custom_decode hooks set. On every input it either refuses
 * with LR_ECODEC and the stack as it was, or pushes one value having read
 * at most the input. A value it decodes encodes again (unless the encoder's
 * depth limit, counted along the path it walks, refuses it), and that
 * encoding decodes to a value of the same shape: same types, numbers,
 * strings, metatables, sharing and cycles. One lua_State per process. */
#include <string.h>
#include "common/def.h"
#include "common/errdef.h"
#include "fuzz.h"
#include "script/libs.h"
#include "script/ser.h"

static lua_State *L;
static lr_buf_t b1, b2;

/* same(a, b): is b a copy of a? Tables are matched one to one (sharing and
 * cycles must be kept); table keys are checked once matched elsewhere. */
static const char prelude[] =
  "local rawget, next, type, getmt = rawget, next, type, debug.getmetatable\n"
  "core.ser_config({resolve = function(n) return {named = n} end,\n"
  "  custom_decode = function(k, p) return {kind = k, payload = p} end})\n"
  "function same(a, b)\n"
  "  local map, rmap = {}, {}\n"
  "  local function eq(x, y)\n"
  "    local tx = type(x)\n"
  "    if tx ~= type(y) then return false end\n"
  "    if tx == 'number' then\n"
  "      if x ~= x then return y ~= y end\n"
  "      if x == 0 and y == 0 then return 1 / x == 1 / y end\n"
  "      return x == y\n"
  "    end\n"
  "    if tx ~= 'table' then return x == y end\n"
  "    if map[x] ~= nil then return rawequal(map[x], y) end\n"
  "    if rmap[y] ~= nil then return false end\n"
  "    map[x], rmap[y] = y, x\n"
  "    if not eq(getmt(x), getmt(y)) then return false end\n"
  "    local nx, ny = 0, 0\n"
  "    for k, v in next, x do\n"
  "      nx = nx + 1\n"
  "      local ky = k\n"
  "      if type(k) == 'table' then ky = map[k] end\n"
  "      if ky ~= nil then\n"
  "        local w = rawget(y, ky)\n"
  "        if w == nil or not eq(v, w) then return false end\n"
  "      end\n"
  "    end\n"
  "    for _ in next, y do ny = ny + 1 end\n"
  "    return nx == ny\n"
  "  end\n"
  "  return eq(a, b)\n"
  "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  L = fz_new_state(lr_lib_ser_open);
  if (luaL_loadstring(L, prelude) || lua_pcall(L, 0, 0, 0)) {
    fprintf(stderr, "fuzz_ser: %s\n", lua_tostring(L, -1));
    abort();
  }
  /* A decoded metatable may be {__mode = 'k'}: no collection between
   * decoding and comparing (see the end of each run). */
  lua_gc(L, LUA_GCSTOP, 0);
  return 0;
}

/* Decodes p[0..n) with bytecode off; checks the contract either way. */
static long decode(const char *p, size_t n, char *err, size_t errlen)
{
  int top = lua_gettop(L);
  long rc = lr_ser_decode_data(L, p, n, err, errlen);
  if (rc < 0) {
    FZ_CHECK(rc == LR_ECODEC, "decode returned %ld", rc);
    FZ_CHECK(lua_gettop(L) == top, "a refused decode left %d values", lua_gettop(L) - top);
    FZ_CHECK(err[0], "a refused decode gave no message");
  } else {
    FZ_CHECK(rc > 0 && (size_t)rc <= n, "decode read %ld of %zu bytes", rc, n);
    FZ_CHECK(lua_gettop(L) == top + 1, "decode pushed %d values", lua_gettop(L) - top);
  }
  return rc;
}

static int encode(int idx, lr_buf_t *b, char *err, size_t errlen)
{
  lr_buf_reset(b);
  int rc = lr_ser_encode(L, idx, "value", b, err, errlen);
  FZ_CHECK(rc == 0 || strstr(err, "nested too deeply"), "encode: %s", err);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char err[LR_ERRLEN];
  lua_settop(L, 0);
  if (decode((const char *)data, size, err, sizeof err) < 0) goto out;
  /* 1: the value. 2: its encoding decoded. */
  if (encode(1, &b1, err, sizeof err) < 0) goto out;
  FZ_CHECK(decode(b1.data, b1.len, err, sizeof err) == (long)b1.len,
           "an encoding does not decode whole: %s", err);
  lua_getglobal(L, "same");
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  FZ_CHECK(lua_pcall(L, 2, 1, 0) == 0, "same: %s", lua_tostring(L, -1));
  FZ_CHECK(lua_toboolean(L, -1), "decode(encode(v)) is not v");
  lua_pop(L, 1);
  if (encode(2, &b2, err, sizeof err) < 0) goto out;
  FZ_CHECK(decode(b2.data, b2.len, err, sizeof err) == (long)b2.len,
           "a second encoding does not decode whole: %s", err);
out:
  lua_settop(L, 0);
  if (lua_gc(L, LUA_GCCOUNT, 0) > 64 * 1024) { /* KiB */
    lua_gc(L, LUA_GCCOLLECT, 0);
    lua_gc(L, LUA_GCSTOP, 0);
  }
  return 0;
}
