/* Process utilities for the Lua side: pids, signals, parent-death, the
 * cancellation hook, and small filesystem helpers. */
#define _GNU_SOURCE
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include "common/def.h"
#include "script/libs.h"
#include "script/vm.h"

static int l_getpid(lua_State *L)
{
  lua_pushinteger(L, getpid());
  return 1;
}

static int l_getppid(lua_State *L)
{
  lua_pushinteger(L, getppid());
  return 1;
}

/* kill(pid, sig) -> true | nil, err */
static int l_kill(lua_State *L)
{
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = (int)luaL_optinteger(L, 2, SIGTERM);
  if (kill(pid, sig) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, strerror(errno));
  return 2;
}

/* pdeathsig(sig): this process gets sig when its parent dies. */
static int l_pdeathsig(lua_State *L)
{
  prctl(PR_SET_PDEATHSIG, (int)luaL_checkinteger(L, 1));
  return 0;
}

static int l_now(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
  return 1;
}

static int l_time(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
  return 1;
}

static int l_usleep(lua_State *L)
{
  double s = luaL_checknumber(L, 1);
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) && errno == EINTR) {}
  return 0;
}

static int l_exe_path(lua_State *L)
{
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n < 0) return 0;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static int l_realpath(lua_State *L)
{
  char buf[PATH_MAX];
  if (!realpath(luaL_checkstring(L, 1), buf)) return 0;
  lua_pushstring(L, buf);
  return 1;
}

static int l_mkdir(lua_State *L)
{
  int rc = mkdir(luaL_checkstring(L, 1), 0700);
  lua_pushboolean(L, rc == 0 || errno == EEXIST);
  return 1;
}

static int l_unlink(lua_State *L)
{
  lua_pushboolean(L, unlink(luaL_checkstring(L, 1)) == 0);
  return 1;
}

static int l_rmdir(lua_State *L)
{
  lua_pushboolean(L, rmdir(luaL_checkstring(L, 1)) == 0);
  return 1;
}

static int l_exists(lua_State *L)
{
  struct stat st;
  lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
  return 1;
}

static int l_line_buffered(lua_State *L)
{
  LR_UNUSED(L);
  setvbuf(stdout, NULL, _IOLBF, 0);
  setvbuf(stderr, NULL, _IONBF, 0);
  return 0;
}

static int l_exit(lua_State *L)
{
  fflush(stdout);
  fflush(stderr);
  _exit((int)luaL_optinteger(L, 1, 0));
}

static int l_setenv(lua_State *L)
{
  const char *k = luaL_checkstring(L, 1);
  if (lua_isnil(L, 2))
    unsetenv(k);
  else
    setenv(k, luaL_checkstring(L, 2), 1);
  return 0;
}

static int l_environ(lua_State *L)
{
  extern char **environ;
  lua_newtable(L);
  for (int i = 0; environ[i]; i++) {
    lua_pushstring(L, environ[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_isatty(lua_State *L)
{
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* -- Cancellation ----------------------------------------------------------
 * The node interrupts a running task with SIGUSR1 carrying the task's
 * sequence number (sigqueue). If it matches the task this worker runs, a
 * count hook raises the registered cancel error at the next instruction the
 * interpreter runs. Code inside a compiled trace runs to the trace's end
 * first; `force` kills the process for code that never leaves one. */

static volatile sig_atomic_t cur_seq, cancel_seq;
static int cancel_err_ref = LUA_NOREF;

static void cancel_hook(lua_State *L, lua_Debug *ar)
{
  LR_UNUSED(ar);
  lua_sethook(L, NULL, 0, 0);
  if (!cancel_seq || cancel_seq != cur_seq) return;
  if (lr_vm_in_callback) return; /* lr_sys_cancel_rearm fires it later */
  cancel_seq = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, cancel_err_ref);
  lua_error(L);
}

static void on_sigusr1(int sig, siginfo_t *si, void *uc)
{
  LR_UNUSED(sig);
  LR_UNUSED(uc);
  if (si->si_code != SI_QUEUE || si->si_value.sival_int != cur_seq) return;
  cancel_seq = cur_seq;
  lua_sethook(lr_vm_state(), cancel_hook,
              LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void lr_sys_cancel_rearm(lua_State *L)
{
  if (cancel_seq && cancel_seq == cur_seq)
    lua_sethook(L, cancel_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* cancel_setup(err): err is the value raised in a cancelled task. */
static int l_cancel_setup(lua_State *L)
{
  luaL_checkany(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, cancel_err_ref);
  lua_pushvalue(L, 1);
  cancel_err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_sigusr1;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  return 0;
}

/* cancel_arm(seq): the task now running has sequence number seq (0: none). */
static int l_cancel_arm(lua_State *L)
{
  cur_seq = (sig_atomic_t)luaL_checkinteger(L, 1);
  cancel_seq = 0;
  return 0;
}

/* cancel_pending() -> bool: a cancel arrived for the running task (checked
 * by lray.get's wait loop, which runs in C where the hook cannot fire). */
static int l_cancel_pending(lua_State *L)
{
  lua_pushboolean(L, cancel_seq && cancel_seq == cur_seq);
  return 1;
}

/* cancel_now(): cancels the running task as the signal would (used when the
 * node's cancel message arrives, in case the signal came too early). */
static int l_cancel_now(lua_State *L)
{
  if (!cur_seq) return 0;
  cancel_seq = cur_seq;
  lua_sethook(L, cancel_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  return 0;
}

/* cancel_signal(pid, seq) -> bool */
static int l_cancel_signal(lua_State *L)
{
  union sigval v;
  v.sival_int = (int)luaL_checkinteger(L, 2);
  lua_pushboolean(L, sigqueue((pid_t)luaL_checkinteger(L, 1), SIGUSR1, v) == 0);
  return 1;
}

/* hash(s) -> 32 hex chars: XXH3-128 of s, the content hash that names
 * exported functions and classes. */
static int l_hash(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  XXH128_hash_t h = XXH3_128bits(s, n);
  char out[33];
  snprintf(out, sizeof(out), "%016llx%016llx", (unsigned long long)h.high64,
           (unsigned long long)h.low64);
  lua_pushlstring(L, out, 32);
  return 1;
}

/* random_hex(nbytes) -> hex string from the kernel's random source. */
static int l_random_hex(lua_State *L)
{
  unsigned char b[32];
  int n = (int)luaL_optinteger(L, 1, 8);
  if (n < 1 || n > 32) return luaL_error(L, "random_hex: 1..32 bytes");
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f || fread(b, 1, (size_t)n, f) != (size_t)n) {
    for (int i = 0; i < n; i++) b[i] = (unsigned char)(rand() ^ getpid() ^ i);
  }
  if (f) fclose(f);
  char out[65];
  for (int i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
  lua_pushlstring(L, out, (size_t)n * 2);
  return 1;
}

/* readdir(path) -> list of names (without . and ..), or nil */
static int l_readdir(lua_State *L)
{
  DIR *d = opendir(luaL_checkstring(L, 1));
  if (!d) return 0;
  lua_newtable(L);
  int i = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++i);
  }
  closedir(d);
  return 1;
}

static int l_ncpu(lua_State *L)
{
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

static int l_total_memory(lua_State *L)
{
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  lua_pushnumber(L, (double)pages * (double)psz);
  return 1;
}

void lr_lib_sys_open(lua_State *L)
{
  static const luaL_Reg f[] = {
    {"getpid", l_getpid},       {"getppid", l_getppid},
    {"kill", l_kill},           {"pdeathsig", l_pdeathsig},
    {"now", l_now},             {"time", l_time},
    {"usleep", l_usleep},       {"exe_path", l_exe_path},
    {"realpath", l_realpath},   {"mkdir", l_mkdir},
    {"unlink", l_unlink},       {"rmdir", l_rmdir},
    {"exists", l_exists},       {"line_buffered", l_line_buffered},
    {"exit", l_exit},           {"setenv", l_setenv},
    {"environ", l_environ},     {"isatty", l_isatty},
    {"cancel_setup", l_cancel_setup}, {"cancel_arm", l_cancel_arm},
    {"cancel_pending", l_cancel_pending}, {"cancel_signal", l_cancel_signal},
    {"hash", l_hash}, {"cancel_now", l_cancel_now}, {"random_hex", l_random_hex}, {"ncpu", l_ncpu},
    {"total_memory", l_total_memory}, {"readdir", l_readdir},
    {NULL, NULL}};
  luaL_register(L, NULL, f);
}
