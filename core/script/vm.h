/* Calling Lua from loop callbacks: every call goes through lr_vm_pcall so a
 * Lua error never unwinds through libuv. */
#ifndef LR_VM_H
#define LR_VM_H

#include <lua.h>

/* pcall with a traceback handler; on error logs "lray: <where>: <err>" to
 * stderr and returns non-zero. Pops the function and args either way. */
int lr_vm_pcall(lua_State *L, int nargs, const char *where);
/* The loop of this process (created on first use). */
struct uv_loop_s *lr_vm_loop(void);
/* The main lua_State, for callbacks that only carry a registry ref. */
lua_State *lr_vm_state(void);
void lr_vm_set_state(lua_State *L);

#endif
