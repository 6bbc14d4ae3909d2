/* ObjectRef userdata: a fixed id whose metatable (with __gc, __tostring and
 * methods) is written in Lua (lray/object.lua) and handed over once with
 * ref_setup. Userdata rather than tables so Lua's collector can tell the
 * runtime when a reference dies. */
#include <lauxlib.h>
#include <string.h>
#include "script/libs.h"

#define REF_IDLEN 32

typedef struct {
  char id[REF_IDLEN];
  unsigned char len;
  unsigned char dropped; /* released: the collector must not count it again */
} ref_t;

static int mt_ref = LUA_NOREF;

static int l_ref_setup(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushvalue(L, 1);
  mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* ref_new(id) -> userdata with the ObjectRef metatable. */
static int l_ref_new(lua_State *L)
{
  size_t n;
  const char *id = luaL_checklstring(L, 1, &n);
  if (n > REF_IDLEN) return luaL_error(L, "object id too long");
  ref_t *r = lua_newuserdata(L, sizeof(*r));
  memcpy(r->id, id, n);
  r->len = (unsigned char)n;
  r->dropped = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, mt_ref);
  lua_setmetatable(L, -2);
  return 1;
}

/* ref_id(u) -> id string, or nil when u is not an ObjectRef. */
static int l_ref_id(lua_State *L)
{
  ref_t *r = lua_touserdata(L, 1);
  if (!r || !lua_getmetatable(L, 1)) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, mt_ref);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same) return 0;
  lua_pushlstring(L, r->id, r->len);
  return 1;
}

static ref_t *to_ref(lua_State *L, int i)
{
  ref_t *r = lua_touserdata(L, i);
  if (!r || !lua_getmetatable(L, i)) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, mt_ref);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? r : NULL;
}

/* ref_drop(u) -> id the first time (u stops counting), nil after. */
static int l_ref_drop(lua_State *L)
{
  ref_t *r = to_ref(L, 1);
  if (!r || r->dropped) return 0;
  r->dropped = 1;
  lua_pushlstring(L, r->id, r->len);
  return 1;
}

void lr_lib_ref_open(lua_State *L)
{
  static const luaL_Reg f[] = {{"ref_setup", l_ref_setup},
                               {"ref_new", l_ref_new},
                               {"ref_id", l_ref_id},
                               {"ref_drop", l_ref_drop},
                               {NULL, NULL}};
  luaL_register(L, NULL, f);
}
