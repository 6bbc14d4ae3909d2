/* The scheduler part of `lray._core`: the node's resource accounting and
 * queue policy (raylet/sched.c) as a Lua userdata.
 *
 *   sched_new{totals = {CPU = 2, GPU = 4, Custom = 3}, starve_after = 1.0}
 *     -> scheduler
 *
 * Methods (amounts are Lua numbers in units of 1.0, e.g. {CPU = 1,
 * GPU = 0.5}; task ids are integers in [0, 2^53); times are seconds on the
 * caller's monotonic clock):
 *
 *   s:submit(id, req, now)   queue a task whose arguments exist
 *   s:next(now)              -> id, gpu_ids | nil   start the next task
 *   s:remove(id)             -> true | false (not queued)
 *   s:release(id)            -> true | false (not running or held)
 *   s:block(id), s:unblock(id) -> true | false (not running or held)
 *   s:hold(id, req)          -> gpu_ids | nil, msg (does not fit now)
 *   s:infeasible(req)        -> missing resource name | nil
 *   s:total(), s:available() -> {name = amount}: kinds the node has
 *   s:queued()               -> count of queued tasks
 *   s:shapes()               -> list of {req = {...}, count = n}, oldest first
 *
 * gpu_ids is a list of integers (0-based GPU ids), empty when the request
 * has no GPU. Misuse (a bad id, time or request, a duplicate id) raises a
 * Lua error naming the argument or resource. See raylet/sched.c for the
 * policy.
 *
 * Licensed under the MIT license; see LICENSE. */
#include "script/libs.h"
#include "raylet/raylet.h"
#include "common/def.h"
#include "common/errdef.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <inttypes.h>
#include <lauxlib.h>

#define SCHED_MT "lray.sched"
/* Task ids must be below this: the largest range a Lua number holds
 * exactly. */
#define MAX_ID 9007199254740992.0

typedef struct {
  lr_sched_t *s;
} sched_ud_t;

/* -- Helpers -------------------------------------------------------------- */

/* luaL_error with the full printf format (lua_pushfstring lacks %g). */
static void lerror(lua_State *L, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static void lerror(lua_State *L, const char *fmt, ...)
{
  char msg[LR_ERRLEN + LR_RES_NAMEMAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  luaL_error(L, "%s", msg);
  abort(); /* not reached: luaL_error does not return */
}

static lr_sched_t *check_sched(lua_State *L)
{
  sched_ud_t *u = luaL_checkudata(L, 1, SCHED_MT);
  if (!u->s) luaL_error(L, "scheduler is closed");
  return u->s;
}

static uint64_t check_id(lua_State *L, int idx)
{
  if (lua_type(L, idx) != LUA_TNUMBER)
    lerror(L, "bad task id: must be a number, got %s", luaL_typename(L, idx));
  lua_Number d = lua_tonumber(L, idx);
  if (!(d >= 0 && d < MAX_ID) || d != floor(d))
    lerror(L, "bad task id: must be an integer in [0, 2^53), got %.17g",
           (double)d);
  return (uint64_t)d;
}

static double check_time(lua_State *L, int idx)
{
  if (lua_type(L, idx) != LUA_TNUMBER)
    lerror(L, "bad time: must be a number of seconds, got %s",
           luaL_typename(L, idx));
  lua_Number d = lua_tonumber(L, idx);
  if (!isfinite(d)) lerror(L, "bad time: must be finite, got %g", (double)d);
  return d;
}

/* The amount of resource name at the top of the stack, in units. Raises a
 * message naming the resource unless it is a valid amount; gpu: it is the
 * GPU kind (above 1, only whole numbers). */
static int64_t check_amount(lua_State *L, const char *what, const char *name,
                            int gpu)
{
  if (lua_type(L, -1) != LUA_TNUMBER)
    lerror(L, "bad %s: resource '%s' must be a number, got %s", what, name,
           luaL_typename(L, -1));
  double x = lua_tonumber(L, -1);
  if (!(x >= 0) || isinf(x))
    lerror(L, "bad %s: resource '%s' must be a finite number >= 0, got %g",
           what, name, x);
  int64_t u = lr_res_units(x);
  if (u < 0) {
    if (x > 0 && x < 1.0 / LR_RES_UNIT)
      lerror(L,
             "bad %s: resource '%s' = %g is below the smallest amount, "
             "1/%d",
             what, name, x, LR_RES_UNIT);
    lerror(L, "bad %s: resource '%s' = %g is too large", what, name, x);
  }
  if (gpu && u > LR_RES_UNIT && u % LR_RES_UNIT != 0)
    lerror(L,
           "bad %s: resource '%s' = %g: amounts above 1 must be whole "
           "numbers",
           what, name, x);
  return u;
}

/* Reads the request table at idx into r, interning its names in s. Kinds
 * with amount 0 are left out. Raises on anything invalid; holds no C
 * resource meanwhile. */
static void check_req(lua_State *L, int idx, lr_sched_t *s, lr_res_req_t *r,
                      const char *what)
{
  if (lua_type(L, idx) != LUA_TTABLE)
    lerror(L, "bad %s: must be a table of resource amounts, got %s", what,
           luaL_typename(L, idx));
  lr_res_req_init(r);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      lerror(L, "bad %s: resource names must be strings, got %s", what,
             luaL_typename(L, -2));
    size_t len;
    const char *name = lua_tolstring(L, -2, &len);
    int id = lr_sched_res_id(s, name, len);
    if (id < 0)
      lerror(L,
             "bad %s: resource name '%.*s' is empty, longer than %d bytes, "
             "has a NUL, or is one name too many (%d)",
             what, (int)(len > LR_RES_NAMEMAX ? LR_RES_NAMEMAX : len), name,
             LR_RES_NAMEMAX, LR_RES_MAXNAMES);
    int64_t u = check_amount(L, what, name, id == LR_RES_GPU);
    if (lr_res_req_set(r, id, u) < 0)
      lerror(L, "bad %s: more than %d resource kinds", what, LR_RES_REQMAX);
    lua_pop(L, 1);
  }
}

static void push_amount(lua_State *L, int64_t units)
{
  lua_pushnumber(L, (lua_Number)units / LR_RES_UNIT);
}

static void push_gpus(lua_State *L, const lr_res_gpus_t *g)
{
  int ids[LR_RES_MAXGPU];
  int n = lr_res_gpus_ids(g, ids);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, ids[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static void push_req(lua_State *L, lr_sched_t *s, const lr_res_req_t *r)
{
  const lr_res_names_t *nm = lr_sched_names(s);
  lua_createtable(L, 0, (int)r->n);
  for (uint32_t i = 0; i < r->n; i++) {
    push_amount(L, r->units[i]);
    lua_setfield(L, -2, lr_res_name(nm, r->id[i]));
  }
}

/* {name = amount} of every kind with a total > 0; avail: what is free. */
static void push_pool(lua_State *L, lr_sched_t *s, int avail)
{
  const lr_res_pool_t *p = lr_sched_pool(s);
  const lr_res_names_t *nm = lr_sched_names(s);
  lua_newtable(L);
  for (uint32_t i = 0; i < p->n; i++) {
    if (p->total[i] <= 0) continue;
    push_amount(L, avail ? p->avail[i] : p->total[i]);
    lua_setfield(L, -2, lr_res_name(nm, (int)i));
  }
}

/* -- Constructor ---------------------------------------------------------- */

/* Sets the totals from the table at idx. Raises on a bad amount. */
static void set_totals(lua_State *L, int idx, lr_sched_t *s)
{
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      lerror(L, "bad totals: resource names must be strings, got %s",
             luaL_typename(L, -2));
    size_t len;
    const char *name = lua_tolstring(L, -2, &len);
    int id = lr_sched_res_id(s, name, len);
    if (id < 0)
      lerror(L, "bad totals: bad resource name '%.*s'",
             (int)(len > LR_RES_NAMEMAX ? LR_RES_NAMEMAX : len), name);
    int64_t u = check_amount(L, "totals", name, 0);
    if (id == LR_RES_GPU &&
        (u % LR_RES_UNIT != 0 || u / LR_RES_UNIT > LR_RES_MAXGPU))
      lerror(L,
             "bad totals: GPU = %g: must be a whole number of GPUs, at most "
             "%d",
             lua_tonumber(L, -1), LR_RES_MAXGPU);
    if (lr_sched_set_total(s, id, u) < 0)
      lerror(L, "bad totals: cannot set resource '%s'", name);
    lua_pop(L, 1);
  }
}

/* sched_new{totals = {...}, starve_after = seconds} -> scheduler */
static int l_sched_new(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  double starve = LR_SCHED_STARVE_AFTER;
  lua_getfield(L, 1, "starve_after");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      lerror(L, "bad starve_after: must be a number of seconds, got %s",
             luaL_typename(L, -1));
    starve = lua_tonumber(L, -1);
    if (!(starve >= 0) || isinf(starve))
      lerror(L, "bad starve_after: must be a finite number >= 0, got %g",
             starve);
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "totals");
  int totals = lua_gettop(L);
  if (lua_type(L, totals) != LUA_TTABLE)
    lerror(L, "bad totals: must be a table of resource amounts, got %s",
           luaL_typename(L, totals));
  /* The userdata exists before the scheduler, so an error below leaves
   * nothing behind: __gc frees it. */
  sched_ud_t *u = lua_newuserdata(L, sizeof(*u));
  u->s = NULL;
  luaL_getmetatable(L, SCHED_MT);
  lua_setmetatable(L, -2);
  int rc = lr_sched_new(starve, &u->s);
  lr_assert(rc == 0);
  set_totals(L, totals, u->s);
  return 1;
}

/* -- Methods -------------------------------------------------------------- */

/* s:submit(id, req, now) */
static int l_submit(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  uint64_t id = check_id(L, 2);
  lr_res_req_t r;
  check_req(L, 3, s, &r, "request");
  double now = check_time(L, 4);
  if (lr_sched_submit(s, id, &r, now) < 0)
    lerror(L, "submit: task %" PRIu64 " is already queued, running or held",
           id);
  return 0;
}

/* s:next(now) -> id, gpu_ids | nil */
static int l_next(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  double now = check_time(L, 2);
  lr_sched_grant_t g;
  if (!lr_sched_next(s, now, &g)) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushnumber(L, (lua_Number)g.id);
  push_gpus(L, &g.gpus);
  return 2;
}

static int l_remove(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  lua_pushboolean(L, lr_sched_remove(s, check_id(L, 2)) == 0);
  return 1;
}

static int l_release(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  lua_pushboolean(L, lr_sched_release(s, check_id(L, 2)) == 0);
  return 1;
}

static int l_block(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  lua_pushboolean(L, lr_sched_block(s, check_id(L, 2)) == 0);
  return 1;
}

static int l_unblock(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  lua_pushboolean(L, lr_sched_unblock(s, check_id(L, 2)) == 0);
  return 1;
}

/* s:hold(id, req) -> gpu_ids | nil, msg */
static int l_hold(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  uint64_t id = check_id(L, 2);
  lr_res_req_t r;
  check_req(L, 3, s, &r, "request");
  lr_sched_grant_t g;
  int rc = lr_sched_hold(s, id, &r, &g);
  if (rc < 0)
    lerror(L, "hold: task %" PRIu64 " is already queued, running or held", id);
  if (rc == 0) {
    const char *missing = NULL;
    lua_pushnil(L);
    if (lr_sched_infeasible(s, &r, &missing))
      lua_pushfstring(L, "request can never fit this node: not enough %s",
                      missing);
    else
      lua_pushliteral(L, "request does not fit the available resources now");
    return 2;
  }
  push_gpus(L, &g.gpus);
  return 1;
}

/* s:infeasible(req) -> missing resource name | nil */
static int l_infeasible(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  lr_res_req_t r;
  check_req(L, 2, s, &r, "request");
  const char *missing = NULL;
  if (lr_sched_infeasible(s, &r, &missing))
    lua_pushstring(L, missing);
  else
    lua_pushnil(L);
  return 1;
}

static int l_total(lua_State *L)
{
  push_pool(L, check_sched(L), 0);
  return 1;
}

static int l_available(lua_State *L)
{
  push_pool(L, check_sched(L), 1);
  return 1;
}

static int l_queued(lua_State *L)
{
  lr_sched_stats_t st;
  lr_sched_stats(check_sched(L), &st);
  lua_pushnumber(L, (lua_Number)st.queued);
  return 1;
}

/* s:shapes() -> {{req = {...}, count = n}, ...}, oldest head first */
static int l_shapes(lua_State *L)
{
  lr_sched_t *s = check_sched(L);
  lr_sched_stats_t st;
  lr_sched_stats(s, &st);
  lua_createtable(L, (int)st.shapes, 0);
  for (size_t i = 0; i < st.shapes; i++) {
    const lr_res_req_t *r;
    size_t count;
    int rc = lr_sched_shape_at(s, i, &r, &count);
    lr_assert(rc == 0);
    lua_createtable(L, 0, 2);
    push_req(L, s, r);
    lua_setfield(L, -2, "req");
    lua_pushnumber(L, (lua_Number)count);
    lua_setfield(L, -2, "count");
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

static int l_gc(lua_State *L)
{
  sched_ud_t *u = luaL_checkudata(L, 1, SCHED_MT);
  lr_sched_free(u->s);
  u->s = NULL;
  return 0;
}

static int l_tostring(lua_State *L)
{
  sched_ud_t *u = luaL_checkudata(L, 1, SCHED_MT);
  if (!u->s) {
    lua_pushliteral(L, "Scheduler(closed)");
    return 1;
  }
  lr_sched_stats_t st;
  lr_sched_stats(u->s, &st);
  char buf[128];
  snprintf(buf, sizeof(buf),
           "Scheduler(%zu queued in %zu shapes, %zu running, %zu held)",
           st.queued, st.shapes, st.running, st.held);
  lua_pushstring(L, buf);
  return 1;
}

void lr_lib_sched_open(lua_State *L)
{
  static const luaL_Reg methods[] = {
      {"submit", l_submit}, {"next", l_next},
      {"remove", l_remove}, {"release", l_release},
      {"block", l_block},   {"unblock", l_unblock},
      {"hold", l_hold},     {"infeasible", l_infeasible},
      {"total", l_total},   {"available", l_available},
      {"queued", l_queued}, {"shapes", l_shapes},
      {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"sched_new", l_sched_new}, {NULL, NULL}};
  if (luaL_newmetatable(L, SCHED_MT)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_register(L, NULL, funcs);
}
