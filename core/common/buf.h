/* Growable byte buffer: the unit of encoding and framing. */
#ifndef LR_BUF_H
#define LR_BUF_H

#include <string.h>
#include "common/def.h"

typedef struct lr_buf_s {
  char *data;
  size_t len, cap;
} lr_buf_t;

static inline void lr_buf_init(lr_buf_t *b) { b->data = NULL; b->len = b->cap = 0; }
static inline void lr_buf_free(lr_buf_t *b) { lr_free(b->data); lr_buf_init(b); }
static inline void lr_buf_reset(lr_buf_t *b) { b->len = 0; }
void lr_buf_grow(lr_buf_t *b, size_t need);
/* Makes room for n more bytes and returns where they go (len unchanged). */
static inline char *lr_buf_reserve(lr_buf_t *b, size_t n)
{
  if (b->cap - b->len < n) lr_buf_grow(b, n);
  return b->data + b->len;
}
static inline void lr_buf_append(lr_buf_t *b, const void *p, size_t n)
{
  memcpy(lr_buf_reserve(b, n), p, n);
  b->len += n;
}
static inline void lr_buf_putc(lr_buf_t *b, int c)
{
  *lr_buf_reserve(b, 1) = (char)c;
  b->len++;
}

#endif
