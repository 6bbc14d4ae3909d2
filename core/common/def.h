/* Common macros and heap helpers used by every unit of the C core.
 * Heap OOM aborts: a core process cannot make progress without memory. */
#ifndef LR_DEF_H
#define LR_DEF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define LR_UNUSED(x) ((void)(x))
#define LR_ERRLEN 256

/* For our own bugs only; input from outside gets an error code. */
#define lr_assert(c)                                                          \
  do {                                                                        \
    if (!(c)) {                                                               \
      fprintf(stderr, "lray: assertion failed: %s (%s:%d)\n", #c, __FILE__,   \
              __LINE__);                                                      \
      abort();                                                                \
    }                                                                         \
  } while (0)

void *lr_xmalloc(size_t n);
void *lr_xrealloc(void *p, size_t n);
void *lr_xcalloc(size_t n, size_t m);
char *lr_xstrdup(const char *s);
#define lr_free(p) free(p)

#endif
