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

/* Depth of loop callbacks running Lua right now. A cancellation must not be
 * raised inside one (it would be caught there); it waits until they end. */
extern int lr_vm_in_callback;
/* Set when a Ctrl-C ("interrupted!") was raised inside a callback. */
extern int lr_vm_interrupted;
/* Re-arms the cancellation hook if a cancel arrived during a callback. */
void lr_sys_cancel_rearm(lua_State *L);

#endif
