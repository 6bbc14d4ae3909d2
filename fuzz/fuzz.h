/* Shared by the libFuzzer targets in fuzz/ (see docs/reliability.md,
 * "Fuzzing"): the entry points libFuzzer calls and FZ_CHECK, which aborts
 * with a message so that libFuzzer saves the input as a crash. */
#ifndef LR_FUZZ_H
#define LR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <lauxlib.h>
#include <lualib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_CHECK(c, ...)                                                      \
  do {                                                                        \
    if (!(c)) {                                                               \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #c);   \
      fprintf(stderr, __VA_ARGS__);                                           \
      fputc('\n', stderr);                                                    \
      abort();                                                                \
    }                                                                         \
  } while (0)

/* A lua_State with the standard libraries and a global `core` holding what
 * open adds (one of script/libs.h's lr_lib_*_open). One per process. */
static inline lua_State *fz_new_state(void (*open)(lua_State *L))
{
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  open(L);
  lua_setglobal(L, "core");
  return L;
}

#endif
