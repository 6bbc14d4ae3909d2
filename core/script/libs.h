/* The parts of the `lray._core` Lua module. Each adds its functions to the
 * table on top of the stack; lib_core.c calls them all from
 * luaopen_lray_core. */
#ifndef LR_LIBS_H
#define LR_LIBS_H

#include <lua.h>

void lr_lib_ser_open(lua_State *L);   /* ser.c: encode/decode */
void lr_lib_store_open(lua_State *L); /* lib_store.c: shm regions */
void lr_lib_loop_open(lua_State *L);  /* lib_loop.c: event loop, conns */
void lr_lib_sys_open(lua_State *L);   /* lib_sys.c: process utilities */
void lr_lib_ref_open(lua_State *L);   /* lib_ref.c: ObjectRef userdata */
void lr_lib_proto_open(lua_State *L); /* lib_proto.c: typed messages */
void lr_lib_http_open(lua_State *L);  /* lib_http.c: dashboard HTTP server */
void lr_lib_auth_open(lua_State *L);  /* lib_auth.c: the cluster token */
int luaopen_lray_core(lua_State *L);

/* Typed messages (lib_proto.c; needs lr_lib_proto_open first). Encode the
 * table at idx, whose `t` names its type, appending to out; or decode one
 * message from p[0..n) and push it as a table. Both return the type id, or
 * LR_EPROTO with err filled (and, decoding, nothing pushed). */
#include "common/buf.h"
int lr_proto_encode_lua(lua_State *L, int idx, lr_buf_t *out, char *err, size_t errlen);
int lr_proto_decode_lua(lua_State *L, const char *p, size_t n, char *err, size_t errlen);

#endif
