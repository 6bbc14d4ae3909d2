/* The `lray` command line for Lua scripts. It mirrors luajit's own front end:
 * options -e -l -j -O -i -v -E - --, LUA_INIT, the global `arg`, running a
 * script file or stdin, and error reports with a traceback. Ctrl-C while Lua
 * runs raises "interrupted!" through a one-shot hook, as in lua.c. The REPL
 * lives in repl.c. Part of lray; MIT licensed. */
#include "main/cli.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "common/def.h"
#include "main/repl.h"

#define PROGNAME "lray"

enum {
  F_INTERACTIVE = 1, /* -i */
  F_VERSION = 2,     /* -v, or implied by -i */
  F_EXEC = 4,        /* -e: no REPL or stdin afterwards */
  F_NOENV = 8,       /* -E: ignore LUA_INIT */
};

/* collect_args results besides the script index. */
enum { ARGS_BAD = -1, ARGS_NOARG = -2, ARGS_UNSUPPORTED = -3 };

/* -- Running Lua ----------------------------------------------------------- */

static lua_State *volatile sig_L; /* the state Ctrl-C interrupts */

static void on_interrupt_hook(lua_State *L, lua_Debug *ar)
{
  LR_UNUSED(ar);
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* Setting a hook is async-signal-safe in LuaJIT. The handler is one-shot
 * (SA_RESETHAND), so a second Ctrl-C kills a loop that never reaches the
 * hook, such as a JIT-compiled `while true do end`. */
static void on_sigint(int sig)
{
  LR_UNUSED(sig);
  lua_sethook(sig_L, on_interrupt_hook,
              LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* -- Tracebacks of lray errors ---------------------------------------------- */

/* True when the value at idx is an lray error table: string type and
 * message (errors.lua). */
static int is_lray_error(lua_State *L, int idx)
{
  int yes;
  if (!lua_istable(L, idx)) return 0;
  lua_getfield(L, idx, "type");
  lua_getfield(L, idx, "message");
  yes = lua_type(L, -2) == LUA_TSTRING && !lua_isnil(L, -1);
  lua_pop(L, 2);
  return yes;
}

/* Pushes the chunk-name prefix of lray's own modules ("@/x/lua/lray/"),
 * taken from where lray.init was loaded, or pushes nil. */
static void push_lray_prefix(lua_State *L)
{
  lua_Debug ar;
  const char *src, *slash;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "lray");
  lua_remove(L, -2);
  lua_remove(L, -2);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "init");
    lua_remove(L, -2);
    if (lua_isfunction(L, -1) && lua_getinfo(L, ">S", &ar) &&
        (src = ar.source) && src[0] == '@' && (slash = strrchr(src, '/'))) {
      lua_pushlstring(L, src, (size_t)(slash - src) + 1);
      return;
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/* Pushes msg followed by the traceback of the caller's own frames: an lray
 * error already says what failed (and a remote one carries the remote
 * traceback), so lray's frames and C functions under it are only noise. */
static void push_user_traceback(lua_State *L, const char *msg, int remote)
{
  luaL_Buffer b;
  lua_Debug ar;
  const char *lib;
  size_t libn = 0;
  int level, n = 0;
  push_lray_prefix(L);
  lib = lua_tolstring(L, -1, &libn);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, msg);
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Snl", &ar);
    if (*ar.what == 'C' || (lib && !strncmp(ar.source, lib, libn))) continue;
    if (n++ == 0)
      luaL_addstring(&b, remote ? "\ndriver stack traceback:" : "\nstack traceback:");
    if (*ar.namewhat)
      lua_pushfstring(L, "\n\t%s:%d: in function '%s'", ar.short_src,
                      ar.currentline, ar.name);
    else if (*ar.what == 'm')
      lua_pushfstring(L, "\n\t%s:%d: in main chunk", ar.short_src,
                      ar.currentline);
    else
      lua_pushfstring(L, "\n\t%s:%d: in function <%s:%d>", ar.short_src,
                      ar.currentline, ar.short_src, ar.linedefined);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_remove(L, -2); /* the prefix */
}

/* Message handler: the error as a string (via __tostring for tables and
 * userdata) followed by a traceback; for lray's error tables, one without
 * lray's frames (push_user_traceback). A nil error stays nil and is reported
 * silently, as luajit does: busted's error() at the end of a failed run
 * only sets the exit status. */
static int msghandler(lua_State *L)
{
  const char *msg;
  if (lua_isnoneornil(L, 1)) return 1;
  if ((msg = lua_tostring(L, 1)) == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  if (is_lray_error(L, 1)) {
    lua_getfield(L, 1, "traceback");
    int remote = lua_isstring(L, -1) && lua_objlen(L, -1) > 0;
    lua_pop(L, 1);
    push_user_traceback(L, msg, remote);
    return 1;
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int lr_cli_docall(lua_State *L, int narg, int nres)
{
  struct sigaction sa, old;
  int base = lua_gettop(L) - narg;
  int status;

  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  sig_L = L;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  status = lua_pcall(L, narg, nres, base);
  sigaction(SIGINT, &old, NULL);
  /* A Ctrl-C that came too late to fire must not hit the next call. */
  if (lua_gethook(L) == on_interrupt_hook) lua_sethook(L, NULL, 0, 0);
  lua_remove(L, base);
  return status;
}

int lr_cli_report(lua_State *L, int status, const char *prefix)
{
  if (status != 0 && !lua_isnil(L, -1)) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    fflush(stdout);
    if (prefix) fprintf(stderr, "%s: ", prefix);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
  }
  if (status != 0) lua_pop(L, 1);
  return status;
}

static int dochunk(lua_State *L, int status)
{
  if (status == 0) status = lr_cli_docall(L, 0, 0);
  return lr_cli_report(L, status, PROGNAME);
}

static int dostring(lua_State *L, const char *s, const char *name)
{
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* require(name) and store the result in the global `name`, as luajit -l. */
static int dolibrary(lua_State *L, const char *name)
{
  int status;
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  status = lr_cli_docall(L, 1, 1);
  if (status == 0) lua_setglobal(L, name);
  return lr_cli_report(L, status, PROGNAME);
}

/* -j cmd[=arg,...] and -O[opt,...]: LuaJIT's control commands, through the
 * jit.* modules as luajit does it. */
static const char jitcmd_lua[] =
    "local kind, spec = ...\n"
    "local name, rest\n"
    "if kind == 'O' then name, rest = 'opt', spec\n"
    "else name, rest = spec:match('^([^=]*)=?(.*)$') end\n"
    "local args = {}\n"
    "for a in rest:gmatch('[^,]+') do args[#args + 1] = a end\n"
    "local f = kind == 'j' and jit[name]\n"
    "if type(f) ~= 'function' then\n"
    "  local ok, m = pcall(require, 'jit.' .. name)\n"
    "  if not ok or type(m) ~= 'table' or type(m.start) ~= 'function' then\n"
    "    error('unknown luaJIT command or jit.* modules not installed', 0)\n"
    "  end\n"
    "  f = m.start\n"
    "end\n"
    "f(unpack(args))\n";

static int dojit(lua_State *L, const char *kind, const char *spec)
{
  int status =
      luaL_loadbuffer(L, jitcmd_lua, sizeof(jitcmd_lua) - 1, "=(command line)");
  if (status == 0) {
    lua_pushstring(L, kind);
    lua_pushstring(L, spec);
    status = lr_cli_docall(L, 2, 0);
  }
  return lr_cli_report(L, status, PROGNAME);
}

/* -- Command line ---------------------------------------------------------- */

/* lray's version and those of the libraries it runs on (libuv's is the
 * shared library's, which may be newer than the headers). */
static void print_version(void)
{
  printf(PROGNAME " " LR_VERSION " (" LUAJIT_VERSION ", libuv %s)\n",
         uv_version_string());
  fflush(stdout);
}

static void print_usage(const char *bad, int noarg)
{
  if (noarg)
    fprintf(stderr, PROGNAME ": '%s' needs argument\n", bad);
  else if (bad)
    fprintf(stderr, PROGNAME ": unrecognized option '%s'\n", bad);
  fputs("usage: " PROGNAME " [options]... [script [args]...]\n"
        "Available options are:\n"
        "  -e chunk  Execute string 'chunk'.\n"
        "  -l name   Require library 'name'.\n"
        "  -j cmd    Perform LuaJIT control command.\n"
        "  -O[opt]   Control LuaJIT optimizations.\n"
        "  -i        Enter interactive mode after executing 'script'.\n"
        "  -v        Show version information (also --version).\n"
        "  -E        Ignore environment variables.\n"
        "  --        Stop handling options.\n"
        "  -         Execute stdin and stop handling options.\n"
        "Cluster commands: " PROGNAME
        " start|stop|status|list|microbenchmark ...\n",
        stderr);
  fflush(stderr);
}

/* Scans the options. Returns the index of the script (argc if none), or
 * ARGS_BAD, ARGS_NOARG or ARGS_UNSUPPORTED with *bad the offending
 * option. */
static int collect_args(int argc, char **argv, int *flags, const char **bad)
{
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    *bad = a;
    if (a[0] != '-') return i; /* the script */
    switch (a[1]) {
    case '\0': /* "-": script from stdin */
      return i;
    case '-':
      if (!strcmp(a, "--version")) {
        *flags |= F_VERSION;
        break;
      }
      if (a[2] != '\0') return ARGS_BAD;
      return i + 1;
    case 'i':
      if (a[2] != '\0') return ARGS_BAD;
      *flags |= F_INTERACTIVE | F_VERSION;
      break;
    case 'v':
      if (a[2] != '\0') return ARGS_BAD;
      *flags |= F_VERSION;
      break;
    case 'E':
      if (a[2] != '\0') return ARGS_BAD;
      *flags |= F_NOENV;
      break;
    case 'e':
      *flags |= F_EXEC;
      /* fallthrough */
    case 'j':
    case 'l':
      if (a[2] == '\0' && ++i >= argc) return ARGS_NOARG;
      break;
    case 'O':
      break;
    case 'b':
      return ARGS_UNSUPPORTED;
    default:
      return ARGS_BAD;
    }
  }
  return argc;
}

/* Runs -e, -l, -j and -O in command-line order. Returns 0 or 1. */
static int run_args(lua_State *L, char **argv, int argn)
{
  int i;
  for (i = 1; i < argn; i++) {
    const char *a = argv[i], *v;
    int status = 0;
    if (a[0] != '-') continue;
    switch (a[1]) {
    case 'e':
    case 'l':
    case 'j':
      v = a[2] != '\0' ? a + 2 : argv[++i];
      if (a[1] == 'e')
        status = dostring(L, v, "=(command line)");
      else if (a[1] == 'l')
        status = dolibrary(L, v);
      else
        status = dojit(L, "j", v);
      break;
    case 'O':
      status = dojit(L, "O", a + 2);
      break;
    default:
      break;
    }
    if (status != 0) return 1;
  }
  return 0;
}

/* The global `arg`: the script at 0, what precedes it at negative indices,
 * its arguments from 1, as luajit builds it. */
static void create_arg_table(lua_State *L, int argc, char **argv, int argn)
{
  int i;
  lua_createtable(L, argc - argn, argn);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - argn);
  }
  lua_setglobal(L, "arg");
}

static int handle_luainit(lua_State *L)
{
  const char *init = getenv("LUA_INIT");
  if (init == NULL) return 0;
  if (init[0] == '@') return dochunk(L, luaL_loadfile(L, init + 1));
  return dostring(L, init, "=LUA_INIT");
}

/* Loads argv[argn] ("-" is stdin unless it follows "--"; luaL_loadfile skips
 * a "#!" first line) and calls it with the arguments after it as `...`. */
static int handle_script(lua_State *L, int argc, char **argv, int argn)
{
  const char *fname = argv[argn];
  int status, i;
  if (strcmp(fname, "-") == 0 && strcmp(argv[argn - 1], "--") != 0)
    fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == 0 && !lua_checkstack(L, argc - argn + LUA_MINSTACK)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "too many arguments to script");
    status = LUA_ERRRUN;
  }
  if (status == 0) {
    for (i = argn + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    status = lr_cli_docall(L, argc - argn - 1, 0);
  }
  return lr_cli_report(L, status, PROGNAME);
}

int lr_cli_main(lua_State *L, int argc, char **argv)
{
  static char *noargv[] = {PROGNAME, NULL};
  const char *bad = NULL;
  int flags = 0, argn;

  if (argc < 1 || argv[0] == NULL) {
    argc = 1;
    argv = noargv;
  }
  argn = collect_args(argc, argv, &flags, &bad);
  if (argn == ARGS_UNSUPPORTED) {
    fprintf(stderr,
            PROGNAME ": unsupported option '%s' (use luajit -b to save "
                     "bytecode)\n",
            bad);
    return 1;
  }
  if (argn < 0) {
    print_usage(bad, argn == ARGS_NOARG);
    return 1;
  }
  create_arg_table(L, argc, argv, argn);
  if (!(flags & F_NOENV) && handle_luainit(L) != 0) return 1;
  if (flags & F_VERSION) print_version();
  if (run_args(L, argv, argn) != 0) return 1;
  if (argn < argc && handle_script(L, argc, argv, argn) != 0) return 1;

  if (flags & F_INTERACTIVE) return lr_repl_run(L);
  if (argn == argc && !(flags & (F_EXEC | F_VERSION))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      return lr_repl_run(L);
    }
    return dochunk(L, luaL_loadfile(L, NULL)) != 0; /* stdin as a script */
  }
  return 0;
}
