/* Tests of shared-memory regions (objstore/shm.c) and their Lua bindings
 * (script/lib_store.c). Regions are named after the test process so that
 * parallel runs and real nodes are never touched. */
#include "objstore/objstore.h"
#include "script/libs.h"
#include "common/def.h"
#include "test/test.h"

#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

static const char *tname(const char *what)
{
  static char buf[4][128];
  static int i;
  char *b = buf[i++ % 4];
  snprintf(b, sizeof(buf[0]), "lrtest%d-%s", (int)getpid(), what);
  return b;
}

TEST(shm_create_open)
{
  const char *name = tname("rw");
  lr_shm_t a, b;
  ASSERT_EQ(lr_shm_create(name, 1 << 20, &a), 0);
  ASSERT_EQ(a.size, 1 << 20);
  ASSERT_STREQ(a.name, name);
  ASSERT_EQ(lr_shm_create(name, 4096, &b), UV_EEXIST);
  ASSERT(b.base == NULL);
  ASSERT_EQ(lr_shm_open(name, &b), 0);
  ASSERT_EQ(b.size, 1 << 20);
  ASSERT(a.base != b.base);
  /* Written through one mapping, read through the other. */
  memcpy(a.base + 12345, "hello", 5);
  a.base[(1 << 20) - 1] = 42;
  ASSERT(!memcmp(b.base + 12345, "hello", 5));
  ASSERT_EQ(b.base[(1 << 20) - 1], 42);
  b.base[0] = 7;
  ASSERT_EQ(a.base[0], 7);
  lr_shm_close(&a);
  lr_shm_close(&a); /* idempotent */
  ASSERT(a.base == NULL);
  /* Unlinked, the other mapping still works. */
  ASSERT_EQ(lr_shm_unlink(name), 0);
  ASSERT_EQ(lr_shm_unlink(name), UV_ENOENT);
  ASSERT_EQ(b.base[12345], 'h');
  ASSERT_EQ(lr_shm_open(name, &a), UV_ENOENT);
  lr_shm_close(&b);
}

TEST(shm_names)
{
  lr_shm_t sh;
  char longname[300];
  memset(longname, 'x', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  const char *bad[] = {"", "/", "a/b", ".", "..", "//x", longname};
  for (size_t i = 0; i < LR_ARRAY_SIZE(bad); i++) {
    ASSERT_EQ(lr_shm_create(bad[i], 4096, &sh), UV_EINVAL);
    ASSERT_EQ(lr_shm_open(bad[i], &sh), UV_EINVAL);
    ASSERT_EQ(lr_shm_unlink(bad[i]), UV_EINVAL);
  }
  ASSERT_EQ(lr_shm_create(NULL, 4096, &sh), UV_EINVAL);
  ASSERT_EQ(lr_shm_create(tname("zero"), 0, &sh), UV_EINVAL);
  ASSERT_EQ(lr_shm_open(tname("zero"), &sh), UV_ENOENT);
  /* The longest name works; one leading '/' is accepted and dropped. */
  longname[LR_SHM_NAMEMAX] = '\0';
  ASSERT_EQ(lr_shm_create(longname, 4096, &sh), 0);
  lr_shm_close(&sh);
  ASSERT_EQ(lr_shm_unlink(longname), 0);
  char slashed[128];
  snprintf(slashed, sizeof(slashed), "/%s", tname("slash"));
  ASSERT_EQ(lr_shm_create(slashed, 4096, &sh), 0);
  ASSERT_STREQ(sh.name, slashed + 1);
  lr_shm_close(&sh);
  ASSERT_EQ(lr_shm_unlink(slashed + 1), 0);
}

TEST(shm_too_big)
{
  /* More than the shm file system holds: refused up front, not a SIGBUS
   * later, and no file is left behind. */
  lr_shm_t sh;
  const char *name = tname("big");
  struct statvfs vfs;
  ASSERT_EQ(statvfs("/dev/shm", &vfs), 0);
  if (!vfs.f_blocks) return; /* a tmpfs without a size limit */
  ASSERT_EQ(lr_shm_create(name, (uint64_t)1 << 52, &sh), UV_ENOSPC);
  ASSERT(sh.base == NULL);
  ASSERT_EQ(lr_shm_open(name, &sh), UV_ENOENT);
}

TEST(shm_sweep)
{
  char prefix[64], dead[128], live[128], other[3][128];
  lr_shm_t sh;
  snprintf(prefix, sizeof(prefix), "lrtest%dsw-", (int)getpid());
  /* A pid that surely existed and is now gone: a reaped child's. */
  pid_t child = fork();
  ASSERT(child >= 0);
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, NULL, 0), child);
  snprintf(dead, sizeof(dead), "%s%d-abc", prefix, (int)child);
  snprintf(live, sizeof(live), "%s%d-def", prefix, (int)getpid());
  snprintf(other[0], sizeof(other[0]), "%s0-x", prefix);
  snprintf(other[1], sizeof(other[1]), "%s%dx", prefix, (int)child);
  snprintf(other[2], sizeof(other[2]), "%sabc-%d", prefix, (int)child);
  ASSERT_EQ(lr_shm_create(dead, 4096, &sh), 0);
  lr_shm_close(&sh);
  ASSERT_EQ(lr_shm_create(live, 4096, &sh), 0);
  lr_shm_close(&sh);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(lr_shm_create(other[i], 4096, &sh), 0);
    lr_shm_close(&sh);
  }
  ASSERT_EQ(lr_shm_sweep(prefix), 1);
  ASSERT_EQ(lr_shm_open(dead, &sh), UV_ENOENT);
  ASSERT_EQ(lr_shm_open(live, &sh), 0);
  lr_shm_close(&sh);
  ASSERT_EQ(lr_shm_sweep(prefix), 0);
  ASSERT_EQ(lr_shm_unlink(live), 0);
  for (int i = 0; i < 3; i++) ASSERT_EQ(lr_shm_unlink(other[i]), 0);
  ASSERT_EQ(lr_shm_sweep(""), UV_EINVAL);
  ASSERT_EQ(lr_shm_sweep("a/b"), UV_EINVAL);
}

/* -- Lua bindings --------------------------------------------------------- */

static const char lua_test[] =
    "local core, name = ...\n"
    "local ffi = require('ffi')\n"
    "local function fails(pat, f, ...)\n"
    "  local ok, e = pcall(f, ...)\n"
    "  assert(not ok, 'expected an error matching ' .. pat)\n"
    "  assert(type(e) == 'string' and e:find(pat, 1, true), e)\n"
    "end\n"
    "local r = core.shm_create(name, 4096)\n"
    "assert(r:size() == 4096 and r:name() == name)\n"
    "assert(tostring(r):find(name, 1, true))\n"
    "fails(name, core.shm_create, name, 4096)\n"
    "fails('EEXIST', core.shm_create, name, 4096)\n"
    "fails('size', core.shm_create, name .. 'x', -1)\n"
    "local off = assert(r:alloc(100))\n"
    "assert(off == 0)\n"
    "assert(r:write(off, 'hello') == 5)\n"
    "assert(r:write(off + 5, 'xxworld', 2) == 10)\n"
    "assert(r:write(off + 10, 'ab', 2) == 10)\n"
    "local c = core.shm_open(name)\n"
    "assert(c:size() == 4096)\n"
    "assert(c:read(off, 10) == 'helloworld')\n"
    /* Zero-copy typed access through FFI, seen by the other mapping. */
    "local p = ffi.cast('double *', c:ptr(1024, 8 * 4))\n"
    "p[0] = 1.5; p[3] = -2\n"
    "local q = ffi.cast('double *', r:ptr(1024))\n"
    "assert(q[0] == 1.5 and q[3] == -2)\n"
    /* Every access is bounds-checked. */
    "fails('outside', c.read, c, 4090, 7)\n"
    "fails('outside', c.read, c, 2^53, 1)\n"
    "fails('outside', c.read, c, 4096, 2^53)\n"
    "fails('offset', c.read, c, -1, 1)\n"
    "fails('offset', c.read, c, 0.5, 1)\n"
    "fails('offset', c.read, c, 0/0, 1)\n"
    "fails('offset', c.read, c, 1/0, 1)\n"
    "fails('size', c.read, c, 0, 2^60)\n"
    "fails('outside', c.write, c, 4095, 'ab')\n"
    "fails('string offset', c.write, c, 0, 'ab', 3)\n"
    "fails('outside', c.ptr, c, 4097)\n"
    "fails('outside', c.ptr, c, 4000, 97)\n"
    "fails('number expected', c.read, c, 'x', 1)\n"
    "fails('shm_create', c.alloc, c, 1)\n"
    "fails('shm_create', c.stats, c)\n"
    "fails('bad free', r.free, r, 64, 64)\n"
    "fails('bad free', r.free, r, off, 200)\n"
    "assert(c:read(4096, 0) == '')\n"
    "assert(c:ptr(4096) ~= nil)\n"
    "assert(r:write(4096, '') == 4096)\n"
    "local st = r:stats()\n"
    "assert(st.capacity == 4096 and st.used == 128 and st.nallocs == 1)\n"
    "assert(st.largest_free == 4096 - 128)\n"
    "local none, msg = r:alloc(8192)\n"
    "assert(none == nil and msg:find('object store is full', 1, true), msg)\n"
    "assert(msg:find('8192', 1, true), msg)\n"
    "r:free(off, 100)\n"
    "fails('bad free', r.free, r, off, 100)\n"
    "assert(r:stats().used == 0 and r:stats().nallocs == 0)\n"
    "c:close(); c:close()\n"
    "fails('closed', c.read, c, 0, 1)\n"
    "fails('closed', c.ptr, c, 0)\n"
    "assert(c:name() == name and tostring(c):find('closed'))\n"
    "assert(core.shm_unlink(name) == true)\n"
    "local u, umsg = core.shm_unlink(name)\n"
    "assert(u == nil and umsg:find('ENOENT') and umsg:find(name, 1, true))\n"
    "fails('ENOENT', core.shm_open, name)\n"
    "fails(name, core.shm_open, name)\n"
    "fails('EINVAL', core.shm_open, 'a/b')\n"
    "fails('EINVAL', core.shm_sweep, '')\n"
    "assert(core.shm_sweep(name .. '-none-') == 0)\n"
    "r = nil; c = nil; collectgarbage(); collectgarbage()\n"
    "return true\n";

TEST(lib_store_lua)
{
  lua_State *L = luaL_newstate();
  ASSERT(L);
  luaL_openlibs(L);
  if (luaL_loadstring(L, lua_test)) FAIL_("load: %s", lua_tostring(L, -1));
  lua_newtable(L);
  lr_lib_store_open(L);
  ASSERT_EQ(lua_gettop(L), 2); /* the chunk and the module table */
  lua_pushstring(L, tname("lua"));
  if (lua_pcall(L, 2, 1, 0)) {
    lr_shm_unlink(tname("lua"));
    FAIL_("lua: %s", lua_tostring(L, -1));
  }
  ASSERT(lua_toboolean(L, -1));
  lua_close(L);
}
