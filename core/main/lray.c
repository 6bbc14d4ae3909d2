/* lray: the one binary. Runs driver scripts and the REPL (cli.c), and the
 * internal roles it starts itself: `lray _node` (the node manager and the
 * head, all C: core/raylet, core/gcs; no Lua VM) and
 * `lray _worker`. Cluster commands (start, stop, status, list,
 * microbenchmark) are written in Lua (lray/cmd.lua). */
#include <lauxlib.h>
#include <libgen.h>
#include <signal.h>
#include <limits.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "raylet/node.h"
#include "main/cli.h"
#include "script/libs.h"
#include "script/vm.h"

static lua_State *L;

/* Where lray's Lua modules are, first match wins: $LRAY_HOME/lua; the
 * checkout (build/lray -> ../lua); an install ($PREFIX/bin/lray ->
 * $PREFIX/share/lua/5.1, which also covers a DESTDIR stage and a LuaRocks
 * tree); else nothing, and LuaJIT's own package.path (/usr/local/share/lua/5.1,
 * /usr/share/lua/5.1) has to find them. root gets the directory that holds
 * lray/init.lua, or "". */
static void find_luadir(char *root, size_t size)
{
  static const char *const rel[] = {"/lua", "/share/lua/5.1", NULL};
  char exe[PATH_MAX], probe[PATH_MAX + 32];
  const char *home = getenv("LRAY_HOME");
  if (home) {
    snprintf(root, size, "%s/lua", home);
    return;
  }
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n < 0) n = 0;
  exe[n] = 0;
  const char *prefix = dirname(dirname(exe));
  for (int i = 0; rel[i]; i++) {
    snprintf(probe, sizeof(probe), "%s%s/lray/init.lua", prefix, rel[i]);
    if (access(probe, R_OK) == 0) {
      snprintf(root, size, "%s%s", prefix, rel[i]);
      return;
    }
  }
  root[0] = 0;
}

/* Puts lray's module directory first on package.path and preloads the C
 * module lray._core. */
static void set_paths(void)
{
  char root[PATH_MAX + 32];
  find_luadir(root, sizeof(root));
  lua_getglobal(L, "package");
  if (root[0]) {
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", root, root);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
  }
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_lray_core);
  lua_setfield(L, -2, "lray._core");
  lua_pop(L, 2);
}

/* Runs require(mod).main(argv...) for an internal role or subcommand. */
static int run_module(const char *mod, int argc, char **argv)
{
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  if (lua_pcall(L, 1, 1, 0)) {
    fprintf(stderr, "lray: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_getfield(L, -1, "main");
  lua_newtable(L);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_remove(L, -2);
  lua_insert(L, -3);
  if (lua_pcall(L, 1, 1, -3)) {
    const char *m = lua_tostring(L, -1);
    if (!m) {
      lua_getglobal(L, "tostring");
      lua_insert(L, -2);
      lua_call(L, 1, 1);
      m = lua_tostring(L, -1);
    }
    fprintf(stderr, "lray: %s\n", m ? m : "error");
    return 1;
  }
  return lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
}

/* A driver tears its embedded cluster down however it exits (end of script,
 * error, os.exit). */
static void driver_atexit(void)
{
  static int done;
  if (done || !L) return;
  done = 1;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "lray");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "shutdown");
    if (lua_isfunction(L, -1)) lr_vm_pcall(L, 0, "shutdown at exit");
    else lua_pop(L, 1);
  }
  lua_pop(L, 3);
  fflush(stdout);
}

/* os.exit runs the teardown first: os.exit(n, true) closes the Lua state,
 * after which the atexit hook must not touch it. */
static int l_os_exit(lua_State *Ls)
{
  int code = EXIT_SUCCESS;
  if (lua_isboolean(Ls, 1))
    code = lua_toboolean(Ls, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    code = (int)luaL_optinteger(Ls, 1, EXIT_SUCCESS);
  driver_atexit();
  /* Close the state either way: it frees what C keeps in Lua userdata. */
  lua_close(L);
  L = NULL;
  exit(code);
}

static const char *const subcommands[] = {
    "start",  "stop",           "status", "list",   "logs", "timeline",
    "memory", "summary",        "help",   "--help", "-h",   "microbenchmark",
    NULL};

int main(int argc, char **argv)
{
  L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "lray: cannot create Lua state\n");
    return 1;
  }
  lr_vm_set_state(L);
  /* A peer that hangs up shows as a failed write, not a fatal signal. */
  signal(SIGPIPE, SIG_IGN);
  luaL_openlibs(L);
  set_paths();
  /* Every role: os.exit closes the state first (a worker's task may call it). */
  lua_getglobal(L, "os");
  lua_pushcfunction(L, l_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  if (argc > 1 && !strcmp(argv[1], "_node")) return lr_raylet_main(argc - 2, argv + 2);
  if (argc > 1 && !strcmp(argv[1], "_worker"))
    return run_module("lray._worker", argc - 2, argv + 2);
  if (argc > 1 && !strcmp(argv[1], "_dashboard"))
    return run_module("lray.dashboard", argc - 2, argv + 2);
  for (int i = 0; argc > 1 && subcommands[i]; i++)
    if (!strcmp(argv[1], subcommands[i])) {
      int rc = run_module("lray.cmd", argc - 1, argv + 1);
      driver_atexit(); /* microbenchmark runs a driver */
      lua_close(L);
      L = NULL;
      return rc;
    }
  atexit(driver_atexit);
  int status = lr_cli_main(L, argc, argv);
  driver_atexit();
  lua_close(L);
  L = NULL;
  return status;
}
