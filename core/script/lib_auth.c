/* The cluster token for Lua (net/auth.h): making one, and keeping it in a
 * file only its owner may read.
 *
 *   token_new() -> hex string (256 bits)
 *   token_check(tok) -> true | nil, why
 *   token_write(path, tok) -> true | nil, why      (mode 0600)
 *   token_read(path) -> tok | nil, why             (refuses a readable file) */
#include <lauxlib.h>
#include "common/def.h"
#include "net/net.h"
#include "script/libs.h"

static int l_token_new(lua_State *L)
{
  char tok[LR_AUTH_TOKEN_NEW_HEX + 1];
  if (lr_auth_token_new(tok) < 0) return luaL_error(L, "cannot make a cluster token: no random source");
  lua_pushstring(L, tok);
  return 1;
}

static int l_token_check(lua_State *L)
{
  if (lr_auth_token_check(luaL_checkstring(L, 1)) < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "a cluster token is %d to %d hex digits", LR_AUTH_TOKEN_MIN_HEX,
                    LR_AUTH_TOKEN_MAX_HEX);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_token_write(lua_State *L)
{
  char err[LR_ERRLEN] = "";
  if (lr_auth_token_write(luaL_checkstring(L, 1), luaL_checkstring(L, 2), err) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_token_read(lua_State *L)
{
  char tok[LR_AUTH_TOKEN_MAX_HEX + 1], err[LR_ERRLEN] = "";
  if (lr_auth_token_read(luaL_checkstring(L, 1), tok, sizeof(tok), err) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushstring(L, tok);
  return 1;
}

void lr_lib_auth_open(lua_State *L)
{
  static const luaL_Reg f[] = {{"token_new", l_token_new},
                               {"token_check", l_token_check},
                               {"token_write", l_token_write},
                               {"token_read", l_token_read},
                               {NULL, NULL}};
  luaL_register(L, NULL, f);
}
