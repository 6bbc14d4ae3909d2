/* The shared-memory part of `lray._core`: regions as Lua userdata.
 *
 *   shm_create(name, size) -> region   the node's view, with an allocator
 *   shm_open(name)         -> region   a client's view, no allocator
 *   shm_unlink(name)       -> true | nil, msg
 *   shm_sweep(prefix)      -> number of stale regions removed
 *
 * Region methods (offsets and sizes are byte counts, 0-based, integers up to
 * 2^53): alloc, free, stats (node's view only), write, read, ptr, size, name,
 * close. Every access is checked against the mapping, so a bad offset from
 * a peer raises a Lua error and never faults. A pointer from :ptr is valid
 * only while its region is open and referenced: the Lua side must keep the
 * region reachable from whatever uses the pointer, since __gc unmaps.
 *
 * Licensed under the MIT license; see LICENSE. */
#include "script/libs.h"
#include "objstore/objstore.h"
#include "common/def.h"
#include "common/errdef.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <inttypes.h>
#include <lauxlib.h>
#include <uv.h>

#define REGION_MT "lray.shm_region"
/* Largest integer a Lua number holds exactly. */
#define MAX_EXACT 9007199254740992.0

typedef struct region_s {
  lr_shm_t shm;
  lr_salloc_t alloc;
  int mapped;    /* shm is mapped */
  int has_alloc; /* the node's view: alloc is initialized */
} region_t;

/* -- Helpers -------------------------------------------------------------- */

/* luaL_error with the full printf format (lua_pushfstring lacks %llu). */
static void lerror(lua_State *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void lerror(lua_State *L, const char *fmt, ...)
{
  char msg[LR_ERRLEN + LR_SHM_NAMEMAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  luaL_error(L, "%s", msg);
  abort(); /* not reached: luaL_error does not return */
}

/* "no such file or directory (ENOENT)" style reason for a code. */
static const char *reason(int rc, char *buf, size_t len)
{
  if (rc < 0 && rc > -4096)
    snprintf(buf, len, "%s (%s)", uv_strerror(rc), uv_err_name(rc));
  else
    snprintf(buf, len, "%s", lr_strerror(rc));
  return buf;
}

/* A non-negative integer argument that fits a Lua number exactly. */
static uint64_t check_count(lua_State *L, int idx, const char *what)
{
  lua_Number d = luaL_checknumber(L, idx);
  if (!(d >= 0 && d <= MAX_EXACT) || d != floor(d))
    lerror(L, "bad %s: must be an integer in [0, 2^53], got %.17g", what,
           (double)d);
  return (uint64_t)d;
}

static uint64_t opt_count(lua_State *L, int idx, const char *what, uint64_t def)
{
  return lua_isnoneornil(L, idx) ? def : check_count(L, idx, what);
}

static region_t *check_region(lua_State *L)
{
  return luaL_checkudata(L, 1, REGION_MT);
}

/* The region at 1, which must still be mapped. */
static region_t *check_mapped(lua_State *L)
{
  region_t *r = check_region(L);
  if (!r->mapped) lerror(L, "shm '%s' is closed", r->shm.name);
  return r;
}

/* The region at 1, which must be the node's (allocating) view. */
static region_t *check_node(lua_State *L, const char *op)
{
  region_t *r = check_mapped(L);
  if (!r->has_alloc)
    lerror(L, "shm '%s': %s needs the node's view (shm_create), not shm_open",
           r->shm.name, op);
  return r;
}

/* Raises unless [off, off + n) lies inside r's mapping. */
static void check_range(lua_State *L, region_t *r, uint64_t off, uint64_t n)
{
  if (off > r->shm.size || n > r->shm.size - off)
    lerror(L,
           "shm '%s': range [%" PRIu64 ", %" PRIu64 "+%" PRIu64
           ") is outside the region (size %" PRIu64 ")",
           r->shm.name, off, off, n, r->shm.size);
}

static void region_close(region_t *r)
{
  if (r->has_alloc) lr_salloc_close(&r->alloc);
  if (r->mapped) lr_shm_close(&r->shm);
  r->has_alloc = r->mapped = 0;
}

/* A fresh, closed region userdata on top of the stack. It is allocated
 * before the mapping so that nothing leaks if allocation raises. */
static region_t *push_region(lua_State *L)
{
  region_t *r = lua_newuserdata(L, sizeof(*r));
  memset(r, 0, sizeof(*r));
  r->shm.fd = -1;
  luaL_getmetatable(L, REGION_MT);
  lua_setmetatable(L, -2);
  return r;
}

/* -- Module functions ----------------------------------------------------- */

static int l_shm_create(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  uint64_t size = check_count(L, 2, "size");
  char why[LR_ERRLEN];
  region_t *r = push_region(L);
  int rc = lr_shm_create(name, size, &r->shm);
  if (rc < 0)
    lerror(L, "cannot create shm '%s' of %" PRIu64 " bytes: %s", name, size,
           reason(rc, why, sizeof(why)));
  r->mapped = 1;
  if ((rc = lr_salloc_init(&r->alloc, size)) < 0) {
    region_close(r);
    lr_shm_unlink(name);
    lerror(L, "cannot create shm '%s': %s", name, reason(rc, why, sizeof(why)));
  }
  r->has_alloc = 1;
  return 1;
}

static int l_shm_open(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  char why[LR_ERRLEN];
  region_t *r = push_region(L);
  int rc = lr_shm_open(name, &r->shm);
  if (rc < 0)
    lerror(L, "cannot open shm '%s': %s", name, reason(rc, why, sizeof(why)));
  r->mapped = 1;
  return 1;
}

static int l_shm_unlink(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  char why[LR_ERRLEN];
  int rc = lr_shm_unlink(name);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot unlink shm '%s': %s", name,
                    reason(rc, why, sizeof(why)));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_shm_sweep(lua_State *L)
{
  const char *prefix = luaL_checkstring(L, 1);
  char why[LR_ERRLEN];
  int rc = lr_shm_sweep(prefix);
  if (rc < 0)
    lerror(L, "cannot sweep shm '%s*': %s", prefix,
           reason(rc, why, sizeof(why)));
  lua_pushinteger(L, rc);
  return 1;
}

/* -- Region methods ------------------------------------------------------- */

/* r:alloc(n) -> offset | nil, msg */
static int l_alloc(lua_State *L)
{
  region_t *r = check_node(L, "alloc");
  uint64_t n = check_count(L, 2, "size");
  int64_t off = lr_salloc_alloc(&r->alloc, n);
  lr_salloc_stats_t st;
  if (off < 0) {
    char msg[LR_ERRLEN];
    lr_salloc_stats(&r->alloc, &st);
    snprintf(msg, sizeof(msg),
             "%s: cannot allocate %" PRIu64 " bytes (%" PRIu64 " of %" PRIu64
             " bytes used, largest free range %" PRIu64 ")",
             lr_strerror((int)off), n, st.used, st.capacity, st.largest_free);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
  }
  lua_pushnumber(L, (lua_Number)off);
  return 1;
}

/* r:free(off, n): n as given to alloc. Raises on a bad or double free. */
static int l_free(lua_State *L)
{
  region_t *r = check_node(L, "free");
  uint64_t off = check_count(L, 2, "offset");
  uint64_t n = check_count(L, 3, "size");
  if (lr_salloc_free(&r->alloc, off, n) < 0)
    lerror(L,
           "shm '%s': bad free of %" PRIu64 " bytes at %" PRIu64
           ": not a live allocation of that size",
           r->shm.name, n, off);
  return 0;
}

/* r:stats() -> {capacity, used, largest_free, nallocs} */
static int l_stats(lua_State *L)
{
  region_t *r = check_node(L, "stats");
  lr_salloc_stats_t st;
  lr_salloc_stats(&r->alloc, &st);
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, (lua_Number)st.capacity);
  lua_setfield(L, -2, "capacity");
  lua_pushnumber(L, (lua_Number)st.used);
  lua_setfield(L, -2, "used");
  lua_pushnumber(L, (lua_Number)st.largest_free);
  lua_setfield(L, -2, "largest_free");
  lua_pushnumber(L, (lua_Number)st.nallocs);
  lua_setfield(L, -2, "nallocs");
  return 1;
}

/* r:write(off, str [, str_off]) -> off + bytes written. Copies the bytes of
 * str from 0-based str_off (default 0) to its end into the region at off. */
static int l_write(lua_State *L)
{
  region_t *r = check_mapped(L);
  uint64_t off = check_count(L, 2, "offset");
  size_t len;
  const char *s = luaL_checklstring(L, 3, &len);
  uint64_t soff = opt_count(L, 4, "string offset", 0);
  if (soff > len)
    lerror(L, "bad string offset: %" PRIu64 " is past the end (%zu)", soff,
           len);
  check_range(L, r, off, len - soff);
  memcpy(r->shm.base + off, s + soff, len - soff);
  lua_pushnumber(L, (lua_Number)(off + (len - soff)));
  return 1;
}

/* r:read(off, n) -> string of the n bytes at off */
static int l_read(lua_State *L)
{
  region_t *r = check_mapped(L);
  uint64_t off = check_count(L, 2, "offset");
  uint64_t n = check_count(L, 3, "size");
  check_range(L, r, off, n);
  lua_pushlstring(L, (const char *)r->shm.base + off, (size_t)n);
  return 1;
}

/* r:ptr(off [, n]) -> lightuserdata base + off, for ffi.cast; checks that
 * [off, off + n) is inside the region (n defaults to 0). */
static int l_ptr(lua_State *L)
{
  region_t *r = check_mapped(L);
  uint64_t off = check_count(L, 2, "offset");
  uint64_t n = opt_count(L, 3, "size", 0);
  check_range(L, r, off, n);
  lua_pushlightuserdata(L, r->shm.base + off);
  return 1;
}

static int l_size(lua_State *L)
{
  region_t *r = check_mapped(L);
  lua_pushnumber(L, (lua_Number)r->shm.size);
  return 1;
}

static int l_name(lua_State *L)
{
  lua_pushstring(L, check_region(L)->shm.name);
  return 1;
}

/* r:close(): unmaps (and drops the allocator). Idempotent; also __gc. */
static int l_close(lua_State *L)
{
  region_close(check_region(L));
  return 0;
}

static int l_tostring(lua_State *L)
{
  region_t *r = check_region(L);
  char buf[LR_SHM_NAMEMAX + 64];
  if (r->mapped)
    snprintf(buf, sizeof(buf), "ShmRegion(%s, %" PRIu64 " bytes%s)",
             r->shm.name, r->shm.size, r->has_alloc ? ", node" : "");
  else
    snprintf(buf, sizeof(buf), "ShmRegion(%s, closed)", r->shm.name);
  lua_pushstring(L, buf);
  return 1;
}

void lr_lib_store_open(lua_State *L)
{
  static const luaL_Reg methods[] = {{"alloc", l_alloc}, {"free", l_free},
                                     {"stats", l_stats}, {"write", l_write},
                                     {"read", l_read},   {"ptr", l_ptr},
                                     {"size", l_size},   {"name", l_name},
                                     {"close", l_close}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"shm_create", l_shm_create},
                                   {"shm_open", l_shm_open},
                                   {"shm_unlink", l_shm_unlink},
                                   {"shm_sweep", l_shm_sweep},
                                   {NULL, NULL}};
  if (luaL_newmetatable(L, REGION_MT)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_register(L, NULL, funcs);
}
