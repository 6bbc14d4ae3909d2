/* Tests for the value codec (script/ser.c): round trips through the Lua API,
 * exact error messages, and malformed input through the C API.
 * Licensed under the MIT license; see LICENSE. */
#include <lauxlib.h>
#include <lualib.h>
#include "common/buf.h"
#include "common/errdef.h"
#include "script/libs.h"
#include "script/ser.h"
#include "test/test.h"

/* rt(v): encode, decode, check the whole string was used. err_of(f, ...):
 * the message f raises. */
static const char prelude[] =
  "function rt(v)\n"
  "  local s = core.encode(v)\n"
  "  local r, n = core.decode(s)\n"
  "  assert(n == #s + 1, 'decode stopped early')\n"
  "  return r\n"
  "end\n"
  "function err_of(f, ...)\n"
  "  local ok, e = pcall(f, ...)\n"
  "  assert(not ok, 'expected an error')\n"
  "  return e\n"
  "end\n"
  "function eq(a, b)\n"
  "  if a ~= b then\n"
  "    error('expected ' .. tostring(b) .. ', got ' .. tostring(a), 2)\n"
  "  end\n"
  "end\n";

/* Runs code as chunk "job.lua"; prints the Lua error on failure. */
static int run(lua_State *L, const char *code)
{
  if (luaL_loadbuffer(L, code, strlen(code), "@job.lua") ||
      lua_pcall(L, 0, 0, 0)) {
    fprintf(stderr, "  lua: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* Runs a chunk that must succeed (the Lua error is printed above). */
#define RUN_OK(L, code)                                                       \
  do {                                                                        \
    int ok_ = run(L, code);                                                   \
    ASSERT(ok_);                                                              \
  } while (0)

static lua_State *new_state(void)
{
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  lr_lib_ser_open(L);
  lua_setglobal(L, "core");
  if (!run(L, prelude)) FAIL_("prelude failed");
  return L;
}

/* Pushes global name (a string) and returns its bytes. */
static const char *get_str(lua_State *L, const char *name, size_t *n)
{
  lua_getglobal(L, name);
  return lua_tolstring(L, -1, n);
}

/* -- Scalars ------------------------------------------------------------- */

TEST(codec_scalars)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "assert(rt(nil) == nil and rt(true) == true and rt(false) == false)\n"
    "for _, x in ipairs{0, 1, -1, 63, 64, -64, -65, 127, 128, 2^31, -2^31,\n"
    "    2^32 + 1, 2^53, -2^53, 2^53 + 2, 2^62, 2^63, -2^63, 2^64, 1.5,\n"
    "    -1.5, 0.1, 1e300, -1e-300, 5e-324, math.huge, -math.huge,\n"
    "    math.pi} do\n"
    "  eq(rt(x), x)\n"
    "end\n"
    "local z = rt(-1 / math.huge)\n"
    "assert(z == 0 and 1 / z == -math.huge, 'negative zero')\n"
    "assert(1 / rt(0) == math.huge)\n"
    "local n = rt(0 / 0)\n"
    "assert(n ~= n, 'NaN')\n"
    "eq(#core.encode(5), 3)\n"
    "eq(#core.encode(-5), 3)\n"
    "eq(#core.encode(2^53), 10)\n"
    "eq(#core.encode(0.5), 10)\n"
    "eq(#core.encode(-1 / math.huge), 10)\n"
    "eq(core.encode(nil), '\\1\\0')\n"
    "eq(core.encode(true), '\\1\\2')\n"
    "eq(core.encode(-1), '\\1\\3\\1')\n"
    "local s = string.rep('a\\0b\\255', 100000)\n"
    "eq(rt(s), s)\n"
    "eq(rt(''), '')\n"
    "eq(rt('\\0'), '\\0')\n");
  lua_close(L);
}

/* -- Tables -------------------------------------------------------------- */

TEST(codec_tables)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local t = {1, 2, 'three', {4, {5}}, x = 1, y = {z = 'w'},\n"
    "  [true] = false, [1.5] = 'f', [-1] = 'neg', [0] = 'zero',\n"
    "  [2^40] = 'big', ['1'] = 'str'}\n"
    "local r = rt(t)\n"
    "assert(r[1] == 1 and r[2] == 2 and r[3] == 'three')\n"
    "assert(r[4][1] == 4 and r[4][2][1] == 5 and r.x == 1 and r.y.z == 'w')\n"
    "assert(r[true] == false and r[1.5] == 'f' and r[-1] == 'neg')\n"
    "assert(r[0] == 'zero' and r[2^40] == 'big' and r['1'] == 'str')\n"
    "local function count(t)\n"
    "  local n = 0\n"
    "  for _ in pairs(t) do n = n + 1 end\n"
    "  return n\n"
    "end\n"
    "eq(count(r), count(t))\n"
    "local h = rt({1, nil, 3})\n"
    "assert(h[1] == 1 and h[2] == nil and h[3] == 3)\n"
    "local big = {}\n"
    "for i = 1, 10000 do big[i] = i * 2 end\n"
    "for i = 1, 1000 do big['k' .. i] = i end\n"
    "local rb = rt(big)\n"
    "for i = 1, 10000 do eq(rb[i], i * 2) end\n"
    "for i = 1, 1000 do eq(rb['k' .. i], i) end\n"
    "eq(count(rb), 11000)\n"
    "eq(next(rt({})), nil)\n"
    /* Same table, same bytes: the memo was cleared in between. */
    "eq(core.encode(t), core.encode(t))\n");
  lua_close(L);
}

TEST(codec_cycles_and_sharing)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local t = {}\n"
    "t.self = t\n"
    "local r = rt(t)\n"
    "assert(r.self == r and r ~= t)\n"
    "local s = {v = 1}\n"
    "local u = rt({a = s, b = s, c = {s}})\n"
    "assert(u.a == u.b and u.c[1] == u.a and u.a.v == 1)\n"
    "local a, b = {}, {}\n"
    "a.b, b.a = b, a\n"
    "local ra = rt(a)\n"
    "assert(ra.b.a == ra)\n"
    "local k = {name = 'k'}\n"
    "local m = rt({[k] = 'v', ref = k})\n"
    "eq(m[m.ref], 'v')\n"
    "local c = {}\n"
    "c[c] = c\n"
    "local rc = rt(c)\n"
    "assert(rc[rc] == rc)\n"
    /* The shared table is a key first, then a value inside a value. */
    "local x = {}\n"
    "local rx = rt({[x] = 1, {{x}}})\n"
    "eq(rx[rx[1][1][1]], 1)\n");
  lua_close(L);
}

TEST(codec_metatables)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local mt = {__index = function(t, k) return k .. '!' end, kind = 'P'}\n"
    "local p = setmetatable({x = 1}, mt)\n"
    "local q = setmetatable({x = 2}, mt)\n"
    "local r = rt({p, q})\n"
    "local m1, m2 = getmetatable(r[1]), getmetatable(r[2])\n"
    "assert(m1 and m1 == m2 and m1.kind == 'P' and m1 ~= mt)\n"
    "eq(r[1].foo, 'foo!')\n"
    "eq(r[2].x, 2)\n"
    "eq(rawget(r[1], 'foo'), nil)\n"
    "local selfmt = {v = 7}\n"
    "selfmt.__index = selfmt\n"
    "setmetatable(selfmt, selfmt)\n"
    "local rs = rt(selfmt)\n"
    "assert(getmetatable(rs) == rs and rs.__index == rs and rs.v == 7)\n"
    /* A metatable reached first as a plain value. */
    "local rm = rt({mt, p})\n"
    "assert(getmetatable(rm[2]) == rm[1])\n");
  lua_close(L);
}

/* -- Functions ----------------------------------------------------------- */

TEST(codec_functions)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local base = 10\n"
    "local function add(x) return x + base end\n"
    "local f = rt(add)\n"
    "base = 20\n"
    "eq(f(1), 11)\n"
    "eq(add(1), 21)\n"
    "local function fact(n)\n"
    "  if n <= 1 then return 1 end\n"
    "  return n * fact(n - 1)\n"
    "end\n"
    "local rf = rt(fact)\n"
    "assert(rf ~= fact)\n"
    "eq(rf(10), 3628800)\n"
    "eq(debug.getupvalue(rf, 1), 'fact')\n"
    "assert(select(2, debug.getupvalue(rf, 1)) == rf)\n"
    "local even, odd\n"
    "function even(n) if n == 0 then return true end return odd(n - 1) end\n"
    "function odd(n) if n == 0 then return false end return even(n - 1) end\n"
    "local e = rt(even)\n"
    "assert(e(10) == true and e(7) == false)\n"
    "local function mk(k) return function(x) return x * k end end\n"
    "eq(rt(mk(3))(5), 15)\n"
    "local function boom() error('boom') end\n"
    "local ok, msg = pcall(rt(boom))\n"
    "assert(not ok and msg:find('^job.lua:%d+: boom'), msg)\n"
    "local info = debug.getinfo(rt(boom), 'S')\n"
    "eq(info.short_src, 'job.lua')\n"
    "eq(info.linedefined, debug.getinfo(boom, 'S').linedefined)\n"
    "local va = rt(function(...) return select('#', ...), ... end)\n"
    "local n, x, y = va(1, nil)\n"
    "assert(n == 2 and x == 1 and y == nil)\n");
  lua_close(L);
}

TEST(codec_shared_upvalues)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local shared = {n = 0}\n"
    "local count = 0\n"
    "local function inc() count = count + 1; shared.n = shared.n + 1 end\n"
    "local function get() return count, shared end\n"
    "local p = rt({inc, get, shared})\n"
    "p[1](); p[1]()\n"
    "local c, sh = p[2]()\n"
    "assert(c == 2 and sh.n == 2 and sh == p[3])\n"
    "assert(count == 0 and shared.n == 0, 'originals untouched')\n"
    /* Sent separately, each gets its own copy. */
    "local i2, g2 = rt(inc), rt(get)\n"
    "i2()\n"
    "eq((g2()), 0)\n"
    /* A function whose upvalue cell holds a function sharing that cell. */
    "local cell\n"
    "local function a() return cell end\n"
    "cell = function() return cell end\n"
    "local ra = rt(a)\n"
    "local inner = ra()\n"
    "assert(inner() == inner)\n");
  lua_close(L);
}

TEST(codec_globals_hook)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "core.ser_config({globals = function(f)\n"
    "  return {'helper', 'missing', 'K'}\n"
    "end})\n"
    "helper = function(x) return x * 2 end\n"
    "K = 5\n"
    "local function use(x) return helper(x) + K + math.floor(0.5) end\n"
    "local s = core.encode(use)\n"
    "helper, K = nil, nil\n"
    "local f = core.decode(s)\n"
    "eq(f(1), 7)\n"
    "local env = getfenv(f)\n"
    "assert(rawget(env, 'helper') and rawget(env, 'missing') == nil)\n"
    "assert(env.math == math and getmetatable(env).__index == _G)\n"
    "local f2 = core.decode(s)\n"
    "assert(getfenv(f2) ~= env)\n"
    "assert(getmetatable(getfenv(f2)) == getmetatable(env))\n"
    "function gfib(n) if n < 2 then return n end\n"
    "  return gfib(n - 1) + gfib(n - 2) end\n"
    "core.ser_config({globals = function() return {'gfib'} end})\n"
    "local gs = core.encode(gfib)\n"
    "gfib = nil\n"
    "eq(core.decode(gs)(10), 55)\n"
    "core.ser_config({globals = function() return nil end})\n"
    "assert(getfenv(rt(use)) == _G)\n"
    "core.ser_config({globals = function() return {} end})\n"
    "assert(getfenv(rt(use)) == _G)\n"
    /* An env with a metatable is read the way the function would. */
    "local function sx() return x end\n"
    "setfenv(sx, setmetatable({}, {__index = function(_, k)\n"
    "  if k == 'x' then return 42 end\n"
    "  error('undeclared ' .. k, 0)\n"
    "end}))\n"
    "core.ser_config({globals = function() return {'x'} end})\n"
    "eq(rt(sx)(), 42)\n"
    "core.ser_config({globals = function() return {'y'} end})\n"
    "eq(err_of(core.encode, sx), \"reading global 'y' failed: undeclared y\")\n"
    "core.ser_config({globals = function() return 5 end})\n"
    "eq(err_of(core.encode, sx),\n"
    "  'globals hook returned a number, not a table')\n"
    "core.ser_config({globals = function() error('hookfail', 0) end})\n"
    "eq(err_of(core.encode, {sx}), 'globals hook failed: hookfail (index 1)')\n"
    );
  lua_close(L);
}

/* -- Hooks --------------------------------------------------------------- */

TEST(codec_names)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local mt = {__index = {hello = function() return 'hi' end}}\n"
    "local reg = {['g:print'] = print, ['g:string'] = string,\n"
    "  ['m:mt'] = mt, ['io.stdout'] = io.stdout}\n"
    "local names = {}\n"
    "for k, v in pairs(reg) do names[v] = k end\n"
    "local resolved = 0\n"
    "core.ser_config({names = names, resolve = function(n)\n"
    "  resolved = resolved + 1\n"
    "  return reg[n]\n"
    "end})\n"
    "local obj = setmetatable({}, mt)\n"
    "local r = rt({print, string, print, obj, io.stdout})\n"
    "assert(r[1] == print and r[2] == string and r[3] == print)\n"
    "assert(getmetatable(r[4]) == mt and r[4]:hello() == 'hi')\n"
    "assert(r[5] == io.stdout)\n"
    "eq(resolved, 4)\n"
    "eq(#core.encode(print), 3 + #'g:print')\n"
    "local p = print\n"
    "local function f() return p end\n"
    "assert(rt(f)() == print)\n"
    "eq(err_of(core.encode, string.format, 'argument 1'),\n"
    "  'cannot send function (C) (argument 1)')\n"
    "core.ser_config({names = names, resolve = function(n)\n"
    "  error('no such ' .. n, 0)\n"
    "end})\n"
    "eq(err_of(core.decode, core.encode({print})), 'no such g:print')\n"
    "core.ser_config({names = names})\n"
    "eq(err_of(core.decode, core.encode(print)),\n"
    "  \"cannot resolve 'g:print': no resolve hook\")\n"
    "core.ser_config({names = {[print] = 5}})\n"
    "eq(err_of(core.encode, {print}),\n"
    "  'names maps a function to a number, not a string (index 1)')\n"
    "assert(err_of(core.ser_config, {names = 5}):find(\"'names' must be a\"))\n"
    "assert(err_of(core.ser_config, {resolve = {}}):find('function or nil'))\n"
    "core.ser_config(nil)\n"
    "eq(err_of(core.encode, print), 'cannot send function (C)')\n");
  lua_close(L);
}

TEST(codec_custom)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local made = 0\n"
    "local Ref = {}\n"
    "Ref.__index = Ref\n"
    "function Ref.__lray_ser(r) return 'ref', {id = r.id, owner = r.o} end\n"
    "local function newref(id)\n"
    "  return setmetatable({id = id, o = 'n1'}, Ref)\n"
    "end\n"
    "core.ser_config({custom_decode = function(kind, p)\n"
    "  assert(kind == 'ref')\n"
    "  made = made + 1\n"
    "  return {decoded = p.id, owner = p.owner}\n"
    "end})\n"
    "local r1 = newref('abc')\n"
    "local out = rt({r1, r1, newref('def'), x = {r1}})\n"
    "assert(out[1] == out[2] and out.x[1] == out[1])\n"
    "assert(out[1].decoded == 'abc' and out[1].owner == 'n1')\n"
    "eq(out[3].decoded, 'def')\n"
    "eq(made, 2)\n"
    "local ud = newproxy(true)\n"
    "getmetatable(ud).__lray_ser = function() return 'ud', 42 end\n"
    "core.ser_config({custom_decode = function(k, p) return k .. p end})\n"
    "eq(rt(ud), 'ud42')\n"
    "eq(rt({ud, ud})[2], 'ud42')\n"
    "local bad = setmetatable({}, {__lray_ser = function()\n"
    "  error('nope', 0) end})\n"
    "eq(err_of(core.encode, {bad}, 'argument 2'),\n"
    "  'nope (index 1 of argument 2)')\n"
    "local bad2 = setmetatable({}, {__lray_ser = function() return 5 end})\n"
    "eq(err_of(core.encode, bad2),\n"
    "  '__lray_ser returned a number kind, not a string')\n"
    "local deep = setmetatable({}, {__lray_ser = function()\n"
    "  return 'k', {h = io.stdout} end})\n"
    "eq(err_of(core.encode, deep, 'result'),\n"
    "  \"cannot send userdata (field 'h' of payload of 'k' of result)\")\n"
    "core.ser_config({custom_decode = function()\n"
    "  error('unknown kind', 0) end})\n"
    "eq(err_of(core.decode, core.encode(ud)), 'unknown kind')\n"
    "core.ser_config({})\n"
    "eq(err_of(core.decode, core.encode(ud)),\n"
    "  \"cannot decode custom value 'ud': no custom_decode hook\")\n"
    /* Hooks may encode and decode themselves. */
    "local inner = setmetatable({v = {1, 2}}, {__lray_ser = function(x)\n"
    "  return 'blob', core.encode(x.v)\n"
    "end})\n"
    "core.ser_config({custom_decode = function(k, p)\n"
    "  return (core.decode(p))\n"
    "end})\n"
    "local rr = rt({inner, {inner}, {3}})\n"
    "assert(rr[1][2] == 2 and rr[2][1] == rr[1] and rr[3][1] == 3)\n"
    /* A payload that contains its own object cannot be rebuilt. */
    "local cyc = setmetatable({}, {__lray_ser = function(x)\n"
    "  return 'c', {x} end})\n"
    "local e = err_of(core.decode, core.encode(cyc))\n"
    "assert(e:find('back%-reference into a custom value'), e)\n");
  lua_close(L);
}

TEST(codec_cdata)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local ffi = require('ffi')\n"
    "eq(err_of(core.encode, ffi.new('int64_t', 1)), 'cannot send cdata')\n"
    "core.ser_config({\n"
    "  cdata = function(v)\n"
    "    if ffi.istype('int64_t', v) then return 'i64', tonumber(v) end\n"
    "    return nil\n"
    "  end,\n"
    "  custom_decode = function(kind, p)\n"
    "    assert(kind == 'i64')\n"
    "    return ffi.new('int64_t', p)\n"
    "  end})\n"
    "local c = ffi.new('int64_t', 12345)\n"
    "local r = rt({c, c})\n"
    "assert(ffi.istype('int64_t', r[1]) and tonumber(r[1]) == 12345)\n"
    "assert(r[1] == r[2])\n"
    "eq(err_of(core.encode, {buf = ffi.new('double[2]')}, 'argument 1'),\n"
    "  \"cannot send cdata (field 'buf' of argument 1)\")\n");
  lua_close(L);
}

/* -- Errors -------------------------------------------------------------- */

TEST(codec_error_paths)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "eq(err_of(core.encode, {a = {io.stdout}}, 'argument 1'),\n"
    "  \"cannot send userdata (index 1 of field 'a' of argument 1)\")\n"
    "local fh = io.stdout\n"
    "local function job() return fh end\n"
    "local line = debug.getinfo(job, 'S').linedefined\n"
    "eq(err_of(core.encode, job, 'argument 1'),\n"
    "  \"cannot send userdata (upvalue 'fh' of function at job.lua:\" ..\n"
    "  line .. ' of argument 1)')\n"
    "eq(err_of(core.encode, coroutine.create(print)), 'cannot send thread')\n"
    "eq(err_of(core.encode, {co = coroutine.create(print)}, 'result'),\n"
    "  \"cannot send thread (field 'co' of result)\")\n"
    "eq(err_of(core.encode, {[io.stdout] = 1}, 'argument 1'),\n"
    "  'cannot send userdata (key of argument 1)')\n"
    "eq(err_of(core.encode, {[{io.stdout}] = 1}),\n"
    "  'cannot send userdata (index 1 of key)')\n"
    "eq(err_of(core.encode, {[2.5] = io.stdout}),\n"
    "  'cannot send userdata (index 2.5)')\n"
    "eq(err_of(core.encode, {[true] = io.stdout}),\n"
    "  'cannot send userdata (field [true])')\n"
    "eq(err_of(core.encode, setmetatable({}, {__index = io.stdout})),\n"
    "  \"cannot send userdata (field '__index' of metatable)\")\n"
    "eq(err_of(core.encode, print, 'argument 1'),\n"
    "  'cannot send function (C) (argument 1)')\n"
    "eq(err_of(core.encode, {f = {print}}),\n"
    "  \"cannot send function (C) (index 1 of field 'f')\")\n"
    "eq(err_of(core.encode, newproxy()), 'cannot send userdata')\n"
    "core.ser_config({globals = function() return {'gfh'} end})\n"
    "gfh = io.stdout\n"
    "local function usesg() return gfh end\n"
    "local gl = debug.getinfo(usesg, 'S').linedefined\n"
    "eq(err_of(core.encode, {usesg}, 'argument 1'),\n"
    "  \"cannot send userdata (global 'gfh' of function at job.lua:\" ..\n"
    "  gl .. ' of index 1 of argument 1)')\n"
    "core.ser_config(nil)\n"
    /* Long paths keep both ends. */
    "local t = {}\n"
    "local cur = t\n"
    "for i = 1, 20 do cur.f = {} cur = cur.f end\n"
    "cur.fh = io.stdout\n"
    "eq(err_of(core.encode, t, 'argument 1'),\n"
    "  \"cannot send userdata (field \"\n"
    "  .. \"'fh' of field 'f' of field 'f' of field 'f' of ... of field 'f'\"\n"
    "  .. \" of field 'f' of field 'f' of argument 1)\")\n"
    /* Errors leave the codec usable. */
    "eq(rt({1, {2}})[2][1], 2)\n");
  lua_close(L);
}

TEST(codec_depth_limit)
{
  lua_State *L = new_state();
  lua_pushinteger(L, LR_SER_MAX_DEPTH);
  lua_setglobal(L, "MAX");
  RUN_OK(L,
    "local function nest(n)\n"
    "  local t = {}\n"
    "  local cur = t\n"
    "  for i = 2, n do cur[1] = {} cur = cur[1] end\n"
    "  return t\n"
    "end\n"
    "local r = rt(nest(MAX))\n"
    "for i = 2, MAX do r = r[1] end\n"
    "eq(next(r), nil)\n"
    "local e = err_of(core.encode, nest(MAX + 1), 'argument 1')\n"
    "eq(e, 'value nested too deeply (index 1 of index 1 of index 1 of '\n"
    "  .. 'index 1 of ... of index 1 of index 1 of index 1 of argument 1)')\n"
    "err_of(core.encode, nest(10000))\n"
    /* Deep but shared: only containers count. */
    "local leaf = {}\n"
    "local d = nest(MAX - 1)\n"
    "local cur = d\n"
    "while cur[1] do cur = cur[1] end\n"
    "cur[1] = leaf\n"
    "local both = rt({leaf, d})\n"
    "assert(both[1])\n"
    "local function fnest(n)\n"
    "  local f = function() return 0 end\n"
    "  for i = 2, n do local g = f; f = function() return g() + 1 end end\n"
    "  return f\n"
    "end\n"
    "eq(rt(fnest(MAX))(), MAX - 1)\n"
    "assert(err_of(core.encode, fnest(MAX + 1)):find('nested too deeply'))\n");

  /* Hand-made nesting past the limit is refused by the decoder. */
  lr_buf_t b;
  char err[LR_ERRLEN];
  lr_buf_init(&b);
  lr_buf_putc(&b, LR_SER_VERSION);
  for (int i = 0; i < 3 * LR_SER_MAX_DEPTH; i++) {
    lr_buf_putc(&b, LR_SER_TABLE);
    lr_buf_putc(&b, 1);
    lr_buf_putc(&b, 0);
  }
  lr_buf_putc(&b, LR_SER_NIL);
  int top = lua_gettop(L);
  ASSERT_EQ(lr_ser_decode(L, b.data, b.len, err, sizeof err), LR_ECODEC);
  ASSERT(strstr(err, "nested too deeply"));
  ASSERT_EQ(lua_gettop(L), top);
  lr_buf_free(&b);
  lua_close(L);
}

/* -- Malformed input ----------------------------------------------------- */

/* Every encoding in `samples` (a global array of strings) decodes whole, and
 * each proper prefix of it fails cleanly. */
static void check_prefixes(lua_State *L)
{
  char err[LR_ERRLEN];
  lua_getglobal(L, "samples");
  int samples = lua_gettop(L), ns = (int)lua_objlen(L, samples);
  ASSERT(ns > 0);
  for (int k = 1; k <= ns; k++) {
    size_t n;
    lua_rawgeti(L, samples, k);
    const char *s = lua_tolstring(L, -1, &n);
    int top = lua_gettop(L);
    ASSERT_EQ(lr_ser_decode(L, s, n, err, sizeof err), n);
    ASSERT_EQ(lua_gettop(L), top + 1);
    lua_pop(L, 1);
    for (size_t i = 0; i < n; i++) {
      err[0] = '\0';
      ASSERT_EQ(lr_ser_decode(L, s, i, err, sizeof err), LR_ECODEC);
      ASSERT_EQ(lua_gettop(L), top);
      ASSERT(err[0]);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static const char rich_value[] =
  "local mt = {__index = {m = 1}}\n"
  "local shared = {'s'}\n"
  "local up = {n = 1}\n"
  "local function f(x) return x + up.n + G end\n"
  "local ref = setmetatable({id = 'x'}, {__lray_ser = function(r)\n"
  "  return 'ref', r.id end})\n"
  "local t = {1, -2, 2^40, 0.5, 0 / 0, 'str\\0', true, false, shared,\n"
  "  a = shared, m = setmetatable({}, mt), f = f, p = print, r = ref,\n"
  "  [shared] = {ref}, big = string.rep('x', 300)}\n"
  "t.self = t\n";

TEST(codec_truncated_prefixes)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "G = 1\n"
    "core.ser_config({names = {[print] = 'print'},\n"
    "  resolve = function(n) return _G[n] end,\n"
    "  globals = function() return {'G'} end,\n"
    "  custom_decode = function(k, p) return {k, p} end})\n");
  char code[2048];
  snprintf(code, sizeof code,
           "%s samples = {core.encode(t), core.encode(f),\n"
           "  core.encode(-12345), core.encode(0.25), core.encode('abc'),\n"
           "  core.encode({})}\n",
           rich_value);
  RUN_OK(L, code);
  check_prefixes(L);
  lua_close(L);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

/* Decodes p[0..n): either an error with nothing pushed, or one value and a
 * consumed count within n. */
static void decode_any(lua_State *L, const char *p, size_t n)
{
  char err[LR_ERRLEN];
  int top = lua_gettop(L);
  long rc = lr_ser_decode(L, p, n, err, sizeof err);
  if (rc < 0) {
    ASSERT_EQ(rc, LR_ECODEC);
    ASSERT_EQ(lua_gettop(L), top);
    ASSERT(err[0]);
  } else {
    ASSERT(rc > 0 && (size_t)rc <= n);
    ASSERT_EQ(lua_gettop(L), top + 1);
    lua_pop(L, 1);
  }
}

TEST(codec_garbage)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "core.ser_config({resolve = function(n) return n end,\n"
    "  custom_decode = function(k, p) return {k, p} end})\n"
    "local t = {1, 'two', {3, x = {y = -4.5}}, [{}] = true, s = 'str'}\n"
    "t.c = t\n"
    "local ud = newproxy(true)\n"
    "getmetatable(ud).__lray_ser = function() return 'u', t end\n"
    "sample = core.encode({t, t.c, ud, setmetatable({}, {__index = t})})\n");
  unsigned char buf[96];
  /* Random bytes, biased towards valid tags and small varints. */
  for (int it = 0; it < 30000; it++) {
    size_t n = rnd() % sizeof buf;
    for (size_t i = 0; i < n; i++)
      buf[i] = (unsigned char)(rnd() % 4 ? rnd() % 14 : rnd());
    if (n && rnd() % 8) buf[0] = LR_SER_VERSION;
    decode_any(L, (const char *)buf, n);
  }
  /* A valid encoding (no functions) with a few bytes changed. */
  size_t n;
  const char *s = get_str(L, "sample", &n);
  ASSERT(s && n > 8);
  char *m = malloc(n);
  for (int it = 0; it < 30000; it++) {
    memcpy(m, s, n);
    for (int k = 1 + (int)(rnd() % 3); k > 0; k--) {
      size_t at = 1 + rnd() % (n - 1);
      m[at] = (char)(rnd() % 2 ? rnd() % 14 : rnd());
    }
    decode_any(L, m, rnd() % 4 ? n : rnd() % n);
  }
  free(m);
  lua_pop(L, 1);
  lua_close(L);
}

TEST(codec_build_tag_and_bytecode)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local function f() return 1 end\n"
    "local s = core.encode(f)\n"
    "eq(core.decode(s)(), 1)\n"
    "local i = s:find('LuaJIT', 1, true)\n"
    "local bad = s:sub(1, i - 1) .. 'X' .. s:sub(i + 1)\n"
    "local e = err_of(core.decode, bad)\n"
    "assert(e:find('^function was compiled by a different LuaJIT build '\n"
    "  .. '%(sender XuaJIT .-, receiver LuaJIT .-%)$'), e)\n"
    "local j = s:find('\\27LJ', 1, true)\n"
    "local nobc = s:sub(1, j + 1) .. 'X' .. s:sub(j + 3)\n"
    "e = err_of(core.decode, nobc)\n"
    "assert(e:find('function is not LuaJIT bytecode'), e)\n"
    "local function g() return f end\n"
    "local sg = core.encode(g)\n"
    "eq(core.decode(sg)()(), 1)\n");
  lua_close(L);
}

/* Hand-edited function encodings: the parts after the bytecode. */
TEST(codec_bad_functions)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local x = 1\n"
    "local function g() return x end\n"
    "local s = core.encode(g)\n"
    "local j = s:find('\\27LJ', 1, true)\n"
    "local b0, b1, b2, b3 = s:byte(j - 4, j - 1)\n"
    "local n = b0 + b1 * 256 + b2 * 65536 + b3 * 16777216\n"
    "local head, bc = s:sub(1, j - 5), s:sub(j, j + n - 1)\n"
    "eq(s:sub(j + n), '\\1\\3\\2\\0')\n"
    "local function with(tail)\n"
    "  return head .. s:sub(j - 4, j - 1) .. bc .. tail\n"
    "end\n"
    "eq(core.decode(with('\\1\\3\\4\\0'))(), 2)\n"
    "local function bad(tail, msg)\n"
    "  local e = err_of(core.decode, with(tail))\n"
    "  assert(e:find(msg, 1, true), e)\n"
    "end\n"
    "bad('\\0\\0', 'different number of upvalues')\n"
    "bad('\\2\\0\\0\\0', 'different number of upvalues')\n"
    "bad('\\1\\12\\5\\1\\0', 'bad upvalue reference')\n"
    "bad('\\1\\12\\1\\9\\0', 'bad upvalue reference')\n"
    "bad('\\1\\12\\0\\1\\0', 'bad upvalue reference')\n"
    "bad('\\1\\3\\2\\7', 'bad globals marker')\n"
    "bad('\\1\\3\\2\\1\\2x', 'data is truncated')\n"
    "bad('\\1\\3\\2\\1\\9x', 'data is truncated')\n"
    "local f = core.decode(with('\\1\\3\\2\\1\\2y\\3\\4\\0'))\n"
    "eq(getfenv(f).y, 2)\n"
    /* Joined with its own cell: harmless. */
    "eq(core.decode(with('\\1\\12\\1\\1\\0'))(), nil)\n"
    /* Bytecode cut short, with its length field to match. */
    "local short = head .. string.char(12, 0, 0, 0) .. bc:sub(1, 12)\n"
    "  .. '\\1\\3\\2\\0'\n"
    "local e = err_of(core.decode, short)\n"
    "assert(e:find('cannot load function'), e)\n"
    "assert(err_of(core.encode, {[{}] = io.stdout}) ==\n"
    "  'cannot send userdata (value for table key)')\n"
    "core.ser_config({globals = function() return {1} end})\n"
    "eq(err_of(core.encode, g), 'globals hook returned a number name, not a'\n"
    "  .. ' string')\n");
  lua_close(L);
}

TEST(codec_decode_positions)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local s = core.encode(1) .. core.encode('two') .. core.encode({3})\n"
    "local a, p = core.decode(s)\n"
    "local b, p2 = core.decode(s, p)\n"
    "local c, p3 = core.decode(s, p2)\n"
    "assert(a == 1 and b == 'two' and c[1] == 3 and p3 == #s + 1)\n"
    "eq(err_of(core.decode, s, p3),\n"
    "  'cannot decode value: data is truncated (at byte 0)')\n"
    "assert(not pcall(core.decode, s, 0))\n"
    "assert(not pcall(core.decode, s, #s + 2))\n"
    "eq(err_of(core.decode, '\\2\\0'),\n"
    "  'cannot decode value: unknown format version 2 (at byte 0)')\n"
    "eq(err_of(core.decode, '\\1\\99'),\n"
    "  'cannot decode value: unknown tag 0x63 (at byte 1)')\n"
    "eq(err_of(core.decode, '\\1\\8\\1'),\n"
    "  'cannot decode value: back-reference 1 out of range (at byte 3)')\n"
    "eq(err_of(core.decode, '\\1\\12\\1\\1'),\n"
    "  'cannot decode value: unknown tag 0x0c (at byte 1)')\n"
    "assert(err_of(core.decode, '\\1\\6\\0\\1\\0\\1'):find('key is nil'))\n"
    "assert(err_of(core.decode, '\\1\\7\\0\\0\\3\\2'):find('metatable is a'))\n"
    "assert(err_of(core.decode, '\\1\\6\\255\\255\\255\\255\\15\\0')\n"
    "  :find('larger than the data'))\n"
    "assert(err_of(core.decode, '\\1\\3' .. ('\\255'):rep(10) .. '\\1')\n"
    "  :find('varint overflows'))\n"
    "local nan = core.encode(0 / 0)\n"
    "local e = err_of(core.decode, '\\1\\6\\0\\1' .. nan:sub(2) .. '\\0')\n"
    "assert(e:find('key is NaN'), e)\n");
  lua_close(L);
}

/* -- C API --------------------------------------------------------------- */

TEST(codec_c_api)
{
  lua_State *L = new_state();
  char err[LR_ERRLEN];
  lr_buf_t b;
  lr_buf_init(&b);
  lr_buf_append(&b, "xy", 2);

  int top = lua_gettop(L);
  lua_pushnumber(L, 7);
  ASSERT_EQ(lr_ser_encode(L, -1, NULL, &b, err, sizeof err), 0);
  ASSERT_EQ(b.len, 5);
  ASSERT(!memcmp(b.data, "xy\x01\x03\x0e", 5));
  lua_pop(L, 1);
  ASSERT_EQ(lua_gettop(L), top);

  ASSERT_EQ(lr_ser_decode(L, b.data + 2, b.len - 2, err, sizeof err), 3);
  ASSERT_EQ(lua_tonumber(L, -1), 7);
  lua_pop(L, 1);

  /* Failure leaves out as it was and says why. */
  lua_newtable(L);
  lua_pushlightuserdata(L, &b);
  lua_setfield(L, -2, "p");
  ASSERT_EQ(lr_ser_encode(L, -1, "x", &b, err, sizeof err), LR_ECODEC);
  ASSERT_STREQ(err, "cannot send light userdata (field 'p' of x)");
  ASSERT_EQ(b.len, 5);
  ASSERT_EQ(lr_ser_encode(L, -1, NULL, &b, NULL, 0), LR_ECODEC);
  lua_pop(L, 1);
  ASSERT_EQ(lua_gettop(L), top);

  /* A short error buffer truncates, still terminated. */
  lua_pushthread(L);
  ASSERT_EQ(lr_ser_encode(L, -1, "argument 1", &b, err, 10), LR_ECODEC);
  ASSERT_STREQ(err, "cannot se");
  lua_pop(L, 1);

  /* An absolute index below other values. */
  size_t before = b.len;
  lua_newtable(L);
  lua_pushliteral(L, "v");
  lua_rawseti(L, -2, 1);
  lua_pushliteral(L, "above");
  ASSERT_EQ(lr_ser_encode(L, top + 1, NULL, &b, err, sizeof err), 0);
  lua_pop(L, 2);
  ASSERT_EQ(lr_ser_decode(L, b.data + before, b.len - before, err,
                          sizeof err),
            b.len - before);
  lua_rawgeti(L, -1, 1);
  ASSERT_STREQ(lua_tostring(L, -1), "v");
  lua_pop(L, 2);
  ASSERT_EQ(lua_gettop(L), top);
  lr_buf_free(&b);
  lua_close(L);
}

TEST(codec_memo_reuse)
{
  lua_State *L = new_state();
  RUN_OK(L,
    /* Many encodes reuse one memo; a big one is not kept. */
    "local t = {a = {1}, b = {2}}\n"
    "local s = core.encode(t)\n"
    "for i = 1, 2000 do assert(core.encode(t) == s) end\n"
    "local big = {}\n"
    "for i = 1, 10000 do big[i] = {i} end\n"
    "eq(rt(big)[9999][1], 9999)\n"
    "eq(core.encode(t), s)\n"
    /* An error in the middle leaves nothing behind. */
    "for i = 1, 10 do err_of(core.encode, {t, {io.stdout}}) end\n"
    "eq(core.encode(t), s)\n"
    "local r = rt({t, t})\n"
    "assert(r[1] == r[2])\n");
  lua_close(L);
}

/* lr_ser_decode_data (for peers that have not authenticated) refuses a
 * function anywhere in a value, and decodes everything else as
 * lr_ser_decode does. */
TEST(codec_data_only_refuses_bytecode)
{
  lua_State *L = new_state();
  RUN_OK(L,
    "local up = 1\n"
    "samples = {core.encode(function() return up end),\n"
    "  core.encode({1, {x = print and function() end}}),\n"
    "  core.encode(setmetatable({}, {__index = function() end}))}\n"
    "plain = core.encode({1, 'two', {x = -4.5, [true] = {}}})\n");
  char err[LR_ERRLEN];
  lua_getglobal(L, "samples");
  int top = lua_gettop(L);
  for (int k = 1; k <= 3; k++) {
    size_t n;
    lua_rawgeti(L, top, k);
    const char *s = lua_tolstring(L, -1, &n);
    ASSERT_EQ(lr_ser_decode(L, s, n, err, sizeof err), n);
    lua_pop(L, 1);
    ASSERT_EQ(lr_ser_decode_data(L, s, n, err, sizeof err), LR_ECODEC);
    ASSERT(strstr(err, "function bytecode is not accepted here"));
    ASSERT_EQ(lua_gettop(L), top + 1);
    lua_pop(L, 1);
  }
  size_t n;
  lua_getglobal(L, "plain");
  const char *s = lua_tolstring(L, -1, &n);
  ASSERT_EQ(lr_ser_decode_data(L, s, n, err, sizeof err), n);
  ASSERT(lua_istable(L, -1));
  lua_close(L);
}
