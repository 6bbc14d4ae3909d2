/* Resource accounting: named kinds, requests and node pools in int64 fixed
 * point (1.0 = LR_RES_UNIT), and GPU ids.
 *
 * Amounts are integers end to end: a double enters once, through
 * lr_res_units, and every acquire is undone by an exactly equal release, so
 * ten acquisitions of 0.1 GPU and their releases leave exactly what was
 * there. A node's GPUs are ids 0 .. ngpu - 1 of LR_RES_UNIT each; the pool
 * keeps each id's free units and the aggregate avail[LR_RES_GPU] always
 * equals their sum. Pure policy over plain structs: no I/O.
 *
 * Licensed under the MIT license; see LICENSE. */
#include "raylet/raylet.h"
#include "common/def.h"
#include "common/errdef.h"

#include <math.h>
#include <string.h>

/* -- Amounts -------------------------------------------------------------- */

int64_t lr_res_units(double x)
{
  /* !(x >= 0) also catches NaN. */
  if (!(x >= 0) || isinf(x)) return LR_EBADARG;
  if (x > 0 && x < 1.0 / LR_RES_UNIT) return LR_EBADARG;
  double u = floor(x * LR_RES_UNIT + 0.5);
  if (u > (double)LR_RES_MAXUNITS) return LR_EBADARG;
  return (int64_t)u;
}

/* -- Names ---------------------------------------------------------------- */

static const char *const builtin[] = {"CPU", "GPU", "memory",
                                      "object_store_memory"};

void lr_res_names_init(lr_res_names_t *t)
{
  t->n = 0;
  t->cap = 8;
  t->name = lr_xmalloc(t->cap * sizeof(*t->name));
  for (size_t i = 0; i < LR_ARRAY_SIZE(builtin); i++)
    t->name[t->n++] = lr_xstrdup(builtin[i]);
}

void lr_res_names_close(lr_res_names_t *t)
{
  for (uint32_t i = 0; i < t->n; i++) lr_free(t->name[i]);
  lr_free(t->name);
  t->name = NULL;
  t->n = t->cap = 0;
}

int lr_res_lookup(const lr_res_names_t *t, const char *name, size_t len)
{
  for (uint32_t i = 0; i < t->n; i++)
    if (strncmp(t->name[i], name, len) == 0 && t->name[i][len] == '\0')
      return (int)i;
  return -1;
}

int lr_res_intern(lr_res_names_t *t, const char *name, size_t len)
{
  if (len == 0 || len > LR_RES_NAMEMAX || memchr(name, '\0', len))
    return LR_EBADARG;
  int id = lr_res_lookup(t, name, len);
  if (id >= 0) return id;
  if (t->n >= LR_RES_MAXNAMES) return LR_EBADARG;
  if (t->n == t->cap) {
    t->cap *= 2;
    t->name = lr_xrealloc(t->name, t->cap * sizeof(*t->name));
  }
  char *s = lr_xmalloc(len + 1);
  memcpy(s, name, len);
  s[len] = '\0';
  t->name[t->n] = s;
  return (int)t->n++;
}

const char *lr_res_name(const lr_res_names_t *t, int id)
{
  return id >= 0 && (uint32_t)id < t->n ? t->name[id] : NULL;
}

/* -- Requests ------------------------------------------------------------- */

void lr_res_req_init(lr_res_req_t *r) { memset(r, 0, sizeof(*r)); }

/* Index of id in r, or where it would go (negative: -(pos + 1)). */
static int req_find(const lr_res_req_t *r, int id)
{
  uint32_t i = 0;
  while (i < r->n && r->id[i] < id) i++;
  return i < r->n && r->id[i] == id ? (int)i : -(int)i - 1;
}

int lr_res_req_set(lr_res_req_t *r, int id, int64_t units)
{
  if (id < 0 || id >= LR_RES_MAXNAMES || units < 0 || units > LR_RES_MAXUNITS)
    return LR_EBADARG;
  if (id == LR_RES_GPU && units > LR_RES_UNIT && units % LR_RES_UNIT != 0)
    return LR_EBADARG;
  int i = req_find(r, id);
  if (i >= 0) {
    if (units > 0) {
      r->units[i] = units;
      return 0;
    }
    /* Remove, keeping the unused tail zeroed. */
    r->n--;
    memmove(&r->id[i], &r->id[i + 1], (r->n - i) * sizeof(r->id[0]));
    memmove(&r->units[i], &r->units[i + 1], (r->n - i) * sizeof(r->units[0]));
    r->id[r->n] = 0;
    r->units[r->n] = 0;
    return 0;
  }
  if (units == 0) return 0;
  if (r->n >= LR_RES_REQMAX) return LR_EBADARG;
  uint32_t pos = (uint32_t)(-i - 1);
  memmove(&r->id[pos + 1], &r->id[pos], (r->n - pos) * sizeof(r->id[0]));
  memmove(&r->units[pos + 1], &r->units[pos],
          (r->n - pos) * sizeof(r->units[0]));
  r->id[pos] = (uint16_t)id;
  r->units[pos] = units;
  r->n++;
  return 0;
}

int64_t lr_res_req_get(const lr_res_req_t *r, int id)
{
  int i = req_find(r, id);
  return i >= 0 ? r->units[i] : 0;
}

int lr_res_req_eq(const lr_res_req_t *a, const lr_res_req_t *b)
{
  if (a->n != b->n) return 0;
  for (uint32_t i = 0; i < a->n; i++)
    if (a->id[i] != b->id[i] || a->units[i] != b->units[i]) return 0;
  return 1;
}

int lr_res_gpus_ids(const lr_res_gpus_t *g, int ids[LR_RES_MAXGPU])
{
  int n = 0;
  for (int i = 0; i < LR_RES_MAXGPU; i++)
    if (g->mask & ((uint64_t)1 << i)) ids[n++] = i;
  return n;
}

/* -- Pools ---------------------------------------------------------------- */

void lr_res_pool_init(lr_res_pool_t *p) { memset(p, 0, sizeof(*p)); }

void lr_res_pool_close(lr_res_pool_t *p)
{
  lr_free(p->total);
  lr_free(p->avail);
  lr_res_pool_init(p);
}

int64_t lr_res_pool_total(const lr_res_pool_t *p, int id)
{
  return id >= 0 && (uint32_t)id < p->n ? p->total[id] : 0;
}

int64_t lr_res_pool_avail(const lr_res_pool_t *p, int id)
{
  return id >= 0 && (uint32_t)id < p->n ? p->avail[id] : 0;
}

static void pool_grow(lr_res_pool_t *p, uint32_t n)
{
  if (n <= p->n) return;
  p->total = lr_xrealloc(p->total, n * sizeof(*p->total));
  p->avail = lr_xrealloc(p->avail, n * sizeof(*p->avail));
  for (uint32_t i = p->n; i < n; i++) p->total[i] = p->avail[i] = 0;
  p->n = n;
}

int lr_res_pool_set(lr_res_pool_t *p, int id, int64_t units)
{
  if (id < 0 || id >= LR_RES_MAXNAMES || units < 0 || units > LR_RES_MAXUNITS)
    return LR_EBADARG;
  if (id == LR_RES_GPU) {
    if (units % LR_RES_UNIT != 0 || units / LR_RES_UNIT > LR_RES_MAXGPU)
      return LR_EBADARG;
    if (lr_res_pool_avail(p, id) != lr_res_pool_total(p, id))
      return LR_EBADARG; /* GPUs in use: their ids would change under them */
    pool_grow(p, (uint32_t)id + 1);
    p->ngpu = (int)(units / LR_RES_UNIT);
    for (int i = 0; i < LR_RES_MAXGPU; i++)
      p->gpu_free[i] = i < p->ngpu ? LR_RES_UNIT : 0;
    p->total[id] = p->avail[id] = units;
    return 0;
  }
  pool_grow(p, (uint32_t)id + 1);
  p->avail[id] += units - p->total[id];
  p->total[id] = units;
  return 0;
}

int lr_res_pool_adjust(lr_res_pool_t *p, int id, int64_t delta)
{
  if (id < 0 || id >= LR_RES_MAXNAMES || id == LR_RES_GPU ||
      delta > LR_RES_MAXUNITS || delta < -LR_RES_MAXUNITS)
    return LR_EBADARG;
  pool_grow(p, (uint32_t)id + 1);
  p->avail[id] += delta;
  return 0;
}

int lr_res_pool_check(const lr_res_pool_t *p)
{
  int64_t sum = 0;
  for (int i = 0; i < LR_RES_MAXGPU; i++) {
    int64_t f = p->gpu_free[i];
    if (f < 0 || f > (i < p->ngpu ? LR_RES_UNIT : 0)) return 0;
    sum += f;
  }
  if (sum != lr_res_pool_avail(p, LR_RES_GPU)) return 0;
  if ((int64_t)p->ngpu * LR_RES_UNIT != lr_res_pool_total(p, LR_RES_GPU))
    return 0;
  for (uint32_t i = 0; i < p->n; i++)
    if (i != LR_RES_CPU && (p->avail[i] < 0 || p->avail[i] > p->total[i]))
      return 0;
  return 1;
}

/* -- GPU ids -------------------------------------------------------------- */

/* Picks GPU ids for g units (> 0) as the header describes. Returns 1 and
 * fills out, or 0 if they do not fit. */
static int gpu_pick(const lr_res_pool_t *p, int64_t g, lr_res_gpus_t *out)
{
  if (g >= LR_RES_UNIT) {
    int64_t want = g / LR_RES_UNIT;
    uint64_t mask = 0;
    for (int i = 0; i < p->ngpu && want > 0; i++)
      if (p->gpu_free[i] == LR_RES_UNIT) {
        mask |= (uint64_t)1 << i;
        want--;
      }
    if (want > 0) return 0;
    out->mask = mask;
    out->each = LR_RES_UNIT;
    return 1;
  }
  int best = -1;
  for (int i = 0; i < p->ngpu; i++)
    if (p->gpu_free[i] >= g && (best < 0 || p->gpu_free[i] < p->gpu_free[best]))
      best = i;
  if (best < 0) return 0;
  out->mask = (uint64_t)1 << best;
  out->each = g;
  return 1;
}

/* 1 if g assigns exactly the GPU units r requests to existing ids. */
static int gpus_match(const lr_res_pool_t *p, int64_t want,
                      const lr_res_gpus_t *g)
{
  if (want == 0) return g->mask == 0;
  if (p->ngpu < LR_RES_MAXGPU && (g->mask >> p->ngpu) != 0) return 0;
  int n = __builtin_popcountll(g->mask);
  if (want >= LR_RES_UNIT)
    return g->each == LR_RES_UNIT && n == want / LR_RES_UNIT;
  return g->each == want && n == 1;
}

/* -- Acquire and release -------------------------------------------------- */

int lr_res_fits(const lr_res_pool_t *p, const lr_res_req_t *r)
{
  lr_res_gpus_t g;
  for (uint32_t i = 0; i < r->n; i++) {
    if (r->id[i] == LR_RES_GPU) {
      if (!gpu_pick(p, r->units[i], &g)) return 0;
    } else if (lr_res_pool_avail(p, r->id[i]) < r->units[i]) {
      return 0;
    }
  }
  return 1;
}

/* Takes r with GPU assignment g, which must fit. */
static void take(lr_res_pool_t *p, const lr_res_req_t *r,
                 const lr_res_gpus_t *g)
{
  for (uint32_t i = 0; i < r->n; i++) {
    lr_assert(r->id[i] < p->n);
    p->avail[r->id[i]] -= r->units[i];
  }
  for (int i = 0; i < p->ngpu; i++)
    if (g->mask & ((uint64_t)1 << i)) p->gpu_free[i] -= g->each;
}

int lr_res_acquire(lr_res_pool_t *p, const lr_res_req_t *r, lr_res_gpus_t *g)
{
  lr_res_gpus_t got = {0, 0};
  if (!lr_res_fits(p, r)) return 0;
  int64_t want = lr_res_req_get(r, LR_RES_GPU);
  if (want > 0 && !gpu_pick(p, want, &got)) return 0;
  take(p, r, &got);
  if (g)
    *g = got;
  else
    lr_assert(want == 0);
  return 1;
}

int lr_res_acquire_as(lr_res_pool_t *p, const lr_res_req_t *r,
                      const lr_res_gpus_t *g)
{
  static const lr_res_gpus_t none = {0, 0};
  if (!g) g = &none;
  if (!gpus_match(p, lr_res_req_get(r, LR_RES_GPU), g)) return 0;
  for (uint32_t i = 0; i < r->n; i++)
    if (lr_res_pool_avail(p, r->id[i]) < r->units[i]) return 0;
  for (int i = 0; i < p->ngpu; i++)
    if ((g->mask & ((uint64_t)1 << i)) && p->gpu_free[i] < g->each) return 0;
  take(p, r, g);
  return 1;
}

void lr_res_release(lr_res_pool_t *p, const lr_res_req_t *r,
                    const lr_res_gpus_t *g)
{
  static const lr_res_gpus_t none = {0, 0};
  if (!g) g = &none;
  lr_assert(gpus_match(p, lr_res_req_get(r, LR_RES_GPU), g));
  for (uint32_t i = 0; i < r->n; i++) {
    lr_assert(r->id[i] < p->n);
    p->avail[r->id[i]] += r->units[i];
  }
  for (int i = 0; i < p->ngpu; i++)
    if (g->mask & ((uint64_t)1 << i)) {
      p->gpu_free[i] += g->each;
      lr_assert(p->gpu_free[i] <= LR_RES_UNIT);
    }
}

int lr_res_infeasible(const lr_res_pool_t *p, const lr_res_req_t *r)
{
  for (uint32_t i = 0; i < r->n; i++) {
    int id = r->id[i];
    int64_t u = r->units[i];
    if (id == LR_RES_GPU) {
      int64_t ids = u >= LR_RES_UNIT ? u / LR_RES_UNIT : 1;
      if (ids > p->ngpu) return id;
    } else if (lr_res_pool_total(p, id) < u) {
      return id;
    }
  }
  return -1;
}
