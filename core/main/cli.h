/* The `lray` command line for Lua: running a script, a string or stdin, the
 * options luajit accepts (-e -l -j -O -i -v -E - --) and, through repl.c, the
 * interactive REPL. Needs a lua_State with the standard libraries open.
 * Part of lray; MIT licensed. */
#ifndef LR_CLI_H
#define LR_CLI_H

#include <lua.h>

#ifndef LR_VERSION
#define LR_VERSION "0.1.0"
#endif

/* Runs the luajit-style command line argv[0..argc-1] on L: sets the global
 * `arg`, runs options, the script and/or the REPL. Returns the process exit
 * status: 0, or 1 after a bad option or a Lua error (which it has already
 * reported on stderr as "lray: <message>" plus a traceback). os.exit() from
 * Lua exits the process directly. Main thread only; while Lua code runs, a
 * SIGINT handler turns Ctrl-C into an "interrupted!" error. */
int lr_cli_main(lua_State *L, int argc, char **argv);

/* Calls the function below the narg arguments on top of L's stack with a
 * traceback message handler and the Ctrl-C handler installed; like lua_pcall
 * otherwise. On failure the message (with traceback) is left on top. */
int lr_cli_docall(lua_State *L, int narg, int nres);

/* If status is not 0, prints the message on top of L to stderr, prefixed
 * with "prefix: " unless prefix is NULL, and pops it. Returns status. */
int lr_cli_report(lua_State *L, int status, const char *prefix);

#endif
