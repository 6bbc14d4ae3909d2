/* Heap helpers, the growable buffer and lr_strerror. */
#include <string.h>
#include <uv.h>
#include "common/def.h"
#include "common/buf.h"
#include "common/errdef.h"

static void oom(size_t n)
{
  fprintf(stderr, "lray: out of memory (%zu bytes)\n", n);
  abort();
}

void *lr_xmalloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  return p;
}

void *lr_xrealloc(void *p, size_t n)
{
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

void *lr_xcalloc(size_t n, size_t m)
{
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p) oom(n * m);
  return p;
}

char *lr_xstrdup(const char *s)
{
  size_t n = strlen(s) + 1;
  return memcpy(lr_xmalloc(n), s, n);
}

void lr_buf_grow(lr_buf_t *b, size_t need)
{
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < need) cap *= 2;
  b->data = lr_xrealloc(b->data, cap);
  b->cap = cap;
}

const char *lr_strerror(int code)
{
  switch (code) {
#define XX(name, msg)                                                         \
  case LR_##name:                                                             \
    return msg;
    LR_ERRNO_MAP(XX)
#undef XX
  }
  if (code < 0 && code > LR_ERRBASE_) return uv_strerror(code);
  return "unknown error";
}
