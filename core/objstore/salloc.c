/* Shared-memory allocator: hands out aligned ranges of [0, capacity).
 *
 * The node manager is the only allocator of its node's region and runs this
 * on its loop thread. It is bookkeeping over offsets only: it never touches
 * the region, and its metadata lives in the node's heap, so a worker that
 * scribbles over shared memory cannot corrupt it.
 *
 * Policy: best fit, lowest offset among equal fits. Sizes are rounded up to
 * LR_SALLOC_ALIGN (64) bytes. Best fit keeps large ranges whole for large
 * objects. It also reuses memory that was freed before the untouched tail of
 * the region (usually the largest free range), and the lowest offset of
 * every free range is its oldest part: the first touch of a fresh tmpfs page
 * costs about 8x a reused one, so recently freed, already faulted pages are
 * handed out first and the touched part of the region grows only when it
 * must. Freed ranges coalesce with free neighbours at once, so free ranges
 * are always maximal.
 *
 * Structure: the region is tiled by blocks, each allocated or free, kept in
 * a doubly linked list in address order (neighbours for coalescing in O(1)).
 * Each block is also in one of two treaps: free blocks keyed by (length,
 * offset), where best fit is a lower-bound search for (n, 0); allocated
 * blocks keyed by offset, where free() finds and validates its block. Every
 * operation is O(log n) expected in the number of blocks, whatever the order
 * of requests, since treap priorities are pseudo-random.
 *
 * Licensed under the MIT license; see LICENSE. */
#include "objstore/objstore.h"
#include "common/def.h"
#include "common/errdef.h"

#include <string.h>

struct lr_salloc_blk_s {
  lr_salloc_blk_t *l, *r;       /* treap children */
  uint64_t k1, k2;              /* treap key, compared lexicographically */
  uint32_t prio;                /* treap priority: max-heap */
  int free;                     /* in by_size (1) or by_off (0) */
  lr_salloc_blk_t *prev, *next; /* address order */
  uint64_t off, len;
};

#define ALIGN ((uint64_t)LR_SALLOC_ALIGN)

/* -- Treap ---------------------------------------------------------------- */

/* Iterative throughout, so depth never costs C stack. Keys are unique: an
 * offset identifies a block. */

/* (a1, a2) < (b1, b2) */
static int lt(uint64_t a1, uint64_t a2, uint64_t b1, uint64_t b2)
{
  return a1 < b1 || (a1 == b1 && a2 < b2);
}

/* (a1, a2) < b's key */
static int key_less(uint64_t a1, uint64_t a2, const lr_salloc_blk_t *b)
{
  return lt(a1, a2, b->k1, b->k2);
}

static void tinsert(lr_salloc_blk_t **root, lr_salloc_blk_t *x)
{
  lr_salloc_blk_t **p = root, **l, **r, *t;
  while (*p && (*p)->prio >= x->prio)
    p = key_less(x->k1, x->k2, *p) ? &(*p)->l : &(*p)->r;
  /* x goes here; split the subtree it displaces around x's key. */
  t = *p;
  l = &x->l;
  r = &x->r;
  while (t) {
    if (key_less(t->k1, t->k2, x)) {
      *l = t;
      l = &t->r;
      t = t->r;
    } else {
      *r = t;
      r = &t->l;
      t = t->l;
    }
  }
  *l = *r = NULL;
  *p = x;
}

static void tremove(lr_salloc_blk_t **root, lr_salloc_blk_t *x)
{
  lr_salloc_blk_t **p = root, *a = x->l, *b = x->r;
  while (*p != x) {
    lr_assert(*p);
    p = key_less(x->k1, x->k2, *p) ? &(*p)->l : &(*p)->r;
  }
  /* Merge x's subtrees in its place. */
  while (a && b) {
    if (a->prio > b->prio) {
      *p = a;
      p = &a->r;
      a = a->r;
    } else {
      *p = b;
      p = &b->l;
      b = b->l;
    }
  }
  *p = a ? a : b;
  x->l = x->r = NULL;
}

/* The block with key (k1, k2), or NULL. */
static lr_salloc_blk_t *tfind(lr_salloc_blk_t *t, uint64_t k1, uint64_t k2)
{
  while (t && (t->k1 != k1 || t->k2 != k2))
    t = key_less(k1, k2, t) ? t->l : t->r;
  return t;
}

/* The block with the least key >= (k1, k2), or NULL. */
static lr_salloc_blk_t *tlower(lr_salloc_blk_t *t, uint64_t k1, uint64_t k2)
{
  lr_salloc_blk_t *best = NULL;
  while (t) {
    if (lt(t->k1, t->k2, k1, k2)) {
      t = t->r;
    } else {
      best = t;
      t = t->l;
    }
  }
  return best;
}

/* -- Blocks --------------------------------------------------------------- */

static uint32_t next_prio(lr_salloc_t *a)
{
  uint32_t x = a->seed; /* xorshift32 */
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return a->seed = x;
}

static lr_salloc_blk_t *blk_new(lr_salloc_t *a, uint64_t off, uint64_t len)
{
  lr_salloc_blk_t *b = a->spare;
  if (b)
    a->spare = b->next;
  else
    b = lr_xmalloc(sizeof(*b));
  memset(b, 0, sizeof(*b));
  b->off = off;
  b->len = len;
  b->prio = next_prio(a);
  return b;
}

/* Unlinks b from the address list and keeps its record for reuse. */
static void blk_drop(lr_salloc_t *a, lr_salloc_blk_t *b)
{
  if (b->prev)
    b->prev->next = b->next;
  else
    a->first = b->next;
  if (b->next) b->next->prev = b->prev;
  b->next = a->spare;
  a->spare = b;
}

static void add_free(lr_salloc_t *a, lr_salloc_blk_t *b)
{
  b->free = 1;
  b->k1 = b->len;
  b->k2 = b->off;
  tinsert(&a->by_size, b);
}

static void add_used(lr_salloc_t *a, lr_salloc_blk_t *b)
{
  b->free = 0;
  b->k1 = b->off;
  b->k2 = 0;
  tinsert(&a->by_off, b);
}

/* n rounded up to the alignment; 0 counts as 1. n <= LR_SALLOC_MAX. */
static uint64_t round_len(uint64_t n)
{
  return n ? (n + ALIGN - 1) & ~(ALIGN - 1) : ALIGN;
}

/* -- API ------------------------------------------------------------------ */

int lr_salloc_init(lr_salloc_t *a, uint64_t size)
{
  memset(a, 0, sizeof(*a));
  if (size > LR_SALLOC_MAX) return LR_EBADARG;
  a->seed = 0x9e3779b9u;
  a->capacity = size & ~(ALIGN - 1);
  if (a->capacity) {
    a->first = blk_new(a, 0, a->capacity);
    add_free(a, a->first);
  }
  return 0;
}

void lr_salloc_close(lr_salloc_t *a)
{
  lr_salloc_blk_t *b, *next;
  for (b = a->first; b; b = next) {
    next = b->next;
    lr_free(b);
  }
  for (b = a->spare; b; b = next) {
    next = b->next;
    lr_free(b);
  }
  memset(a, 0, sizeof(*a));
}

int64_t lr_salloc_alloc(lr_salloc_t *a, uint64_t n)
{
  lr_salloc_blk_t *b, *rest;
  uint64_t len;
  if (n > a->capacity) return LR_ESTOREFULL;
  len = round_len(n);
  if (!(b = tlower(a->by_size, len, 0))) return LR_ESTOREFULL;
  tremove(&a->by_size, b);
  if (b->len > len) {
    /* Keep the front, the lowest offsets; the rest stays free. */
    rest = blk_new(a, b->off + len, b->len - len);
    rest->prev = b;
    rest->next = b->next;
    if (b->next) b->next->prev = rest;
    b->next = rest;
    b->len = len;
    add_free(a, rest);
  }
  add_used(a, b);
  a->used += len;
  a->nallocs++;
  return (int64_t)b->off;
}

int lr_salloc_free(lr_salloc_t *a, uint64_t off, uint64_t n)
{
  lr_salloc_blk_t *b, *p, *nx;
  if (n > a->capacity || off % ALIGN) return LR_EBADARG;
  b = tfind(a->by_off, off, 0);
  if (!b || b->len != round_len(n)) return LR_EBADARG;
  tremove(&a->by_off, b);
  a->used -= b->len;
  a->nallocs--;
  if ((p = b->prev) && p->free) {
    tremove(&a->by_size, p);
    p->len += b->len;
    blk_drop(a, b);
    b = p;
  }
  if ((nx = b->next) && nx->free) {
    tremove(&a->by_size, nx);
    b->len += nx->len;
    blk_drop(a, nx);
  }
  add_free(a, b);
  return 0;
}

void lr_salloc_stats(const lr_salloc_t *a, lr_salloc_stats_t *st)
{
  const lr_salloc_blk_t *t = a->by_size;
  st->capacity = a->capacity;
  st->used = a->used;
  st->nallocs = a->nallocs;
  st->largest_free = 0;
  while (t && t->r) t = t->r;
  if (t) st->largest_free = t->len;
}
