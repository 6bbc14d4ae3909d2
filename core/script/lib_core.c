/* luaopen_lray_core: assembles the `lray._core` module from its parts. */
#include <lauxlib.h>
#include "script/libs.h"

int luaopen_lray_core(lua_State *L)
{
  lua_newtable(L);
  lr_lib_ser_open(L);
  lr_lib_store_open(L);
  lr_lib_loop_open(L);
  lr_lib_sys_open(L);
  lr_lib_ref_open(L);
  lr_lib_proto_open(L);
  lr_lib_http_open(L);
  lr_lib_auth_open(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
