/* The interactive REPL of the `lray` command: line editing and history with
 * libedit, multi-line input, results pretty-printed. Part of lray; MIT
 * licensed. */
#ifndef LR_REPL_H
#define LR_REPL_H

#include <lua.h>

/* Reads, evaluates and prints chunks from stdin until end of input. Uses
 * libedit when stdin is a terminal, plain reads otherwise. Sets the global
 * `lray` first. Returns the exit status (0). Main thread only. */
int lr_repl_run(lua_State *L);

#endif
