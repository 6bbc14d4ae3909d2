/* The node's task queue policy: which queued task starts next.
 *
 * The caller (the node manager, which owns the loop, the workers and the
 * clock) queues a task once its arguments exist, asks lr_sched_next for
 * something to start whenever resources or the queue change, and reports
 * when a task finishes, blocks in get or is cancelled. This file only keeps
 * the books and decides.
 *
 * Policy
 *
 *  1. Shapes. Queued tasks are grouped by shape: their exact request (kinds
 *     and amounts). Within a shape, tasks start in submit-time order (FIFO;
 *     equal times in the order they were queued).
 *  2. Order, no head-of-line blocking. Shapes are considered in the order of
 *     their oldest queued task's submit time. The first shape whose oldest
 *     task fits what is available now starts that task. A shape whose oldest
 *     task does not fit is passed over: it never holds back a shape behind
 *     it that fits.
 *  3. No starvation. Let S be the oldest queued task that could fit once
 *     every running task finished (it fits the node's totals minus what
 *     actors hold for their life; a task that can never fit, or not while
 *     those actors live, does not count, so it cannot stall the node). If S
 *     has waited longer than starve_after (default 1 s) and does not fit
 *     now, another shape may start only if its request uses no kind S is
 *     short of: a kind of which less is available than S needs, or for GPUs,
 *     when no set of GPU ids could take S's GPU request now. Queued tasks
 *     then take nothing of what S lacks, so a shortage ends once enough
 *     running tasks finish (unblocking tasks and new holds aside). Kinds S
 *     is not short of are not reserved: when S needs several kinds, another
 *     shape may take one of them while S waits for a different one, so
 *     with several kinds this bounds S's wait in practice but does not
 *     strictly guarantee it.
 *  4. Blocked tasks. A running task waiting in get gives back its CPUs (not
 *     its GPUs or other kinds) until it resumes. Resuming takes them back
 *     even if that overcommits: available CPU may go negative, and then
 *     nothing that needs CPU starts until enough finishes.
 *  5. Lifetime holds (actors) bypass the queue: granted at once if they fit
 *     now, else refused and the caller decides (retry, warn). What they hold
 *     counts against the totals in rule 3 until released (except the CPUs
 *     of a held actor blocked in get, which are free meanwhile, as in 4).
 *  6. GPUs are ids 0 .. N-1. A whole request of g GPUs takes the g lowest
 *     completely free ids; a fraction goes to the id with the least free
 *     capacity that still fits (lowest id on ties), so fractions fill one GPU
 *     before starting the next.
 *  7. Cost. A decision is O(shapes + GPUs), not O(queued tasks); submit and
 *     remove are O(log n) in the shape's queue plus O(shapes) to keep the
 *     shape order; release, block and unblock are O(1) in the task count.
 *
 * Licensed under the MIT license; see LICENSE. */
#include "raylet/raylet.h"
#include "common/def.h"
#include "common/errdef.h"

#include <math.h>
#include <string.h>

enum { QUEUED, RUNNING, HELD };
#define NOPOS UINT32_MAX

typedef struct shape_s shape_t;

typedef struct task_s {
  uint64_t id;
  struct task_s *hnext; /* hash chain */
  shape_t *shape;       /* its request; counted in shape->nref */
  double t;             /* submit time */
  uint64_t seq;         /* queue order, for equal times */
  lr_res_gpus_t gpus;   /* running or held: the GPU ids it has */
  uint32_t hpos;        /* queued: index in shape->heap */
  uint8_t state;
  uint8_t blocked; /* gave back its CPUs */
} task_t;

struct shape_s {
  lr_res_req_t req;
  uint64_t hash;
  shape_t *hnext; /* hash chain */
  size_t nref;    /* tasks with this shape, in any state */
  task_t **heap;  /* queued tasks, a min-heap on (t, seq) */
  uint32_t nq, qcap;
  uint32_t opos; /* index in order, or NOPOS while none are queued */
};

struct lr_sched_s {
  lr_res_names_t names;
  lr_res_pool_t pool; /* what is free now */
  lr_res_pool_t cap;  /* totals minus lifetime holds (rule 3) */
  double starve_after;
  uint64_t seq;
  task_t **tasks; /* hash by id; tmask + 1 buckets */
  uint64_t tmask;
  size_t ntasks;
  shape_t **shapes; /* hash by request; smask + 1 buckets */
  uint64_t smask;
  size_t nshapes;
  shape_t **order; /* shapes with queued tasks, oldest head first */
  size_t norder, ocap;
  size_t nqueued, nrunning, nheld;
};

/* -- Hashing -------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static uint64_t req_hash(const lr_res_req_t *r)
{
  uint64_t h = r->n;
  for (uint32_t i = 0; i < r->n; i++)
    h = mix64(h ^ mix64(((uint64_t)r->id[i] << 48) ^ (uint64_t)r->units[i]));
  return h;
}

/* -- Tasks by id ---------------------------------------------------------- */

static task_t **task_slot(lr_sched_t *s, uint64_t id)
{
  task_t **p = &s->tasks[mix64(id) & s->tmask];
  while (*p && (*p)->id != id) p = &(*p)->hnext;
  return p;
}

static task_t *task_get(lr_sched_t *s, uint64_t id)
{
  return *task_slot(s, id);
}

static void task_add(lr_sched_t *s, task_t *t)
{
  if (s->ntasks >= s->tmask + 1) { /* load 1: double and rehash */
    uint64_t nb = (s->tmask + 1) * 2;
    task_t **nt = lr_xcalloc(nb, sizeof(*nt));
    for (uint64_t i = 0; i <= s->tmask; i++) {
      task_t *x = s->tasks[i], *nx;
      for (; x; x = nx) {
        nx = x->hnext;
        task_t **b = &nt[mix64(x->id) & (nb - 1)];
        x->hnext = *b;
        *b = x;
      }
    }
    lr_free(s->tasks);
    s->tasks = nt;
    s->tmask = nb - 1;
  }
  task_t **b = &s->tasks[mix64(t->id) & s->tmask];
  t->hnext = *b;
  *b = t;
  s->ntasks++;
}

static void task_unlink(lr_sched_t *s, task_t *t)
{
  task_t **p = task_slot(s, t->id);
  lr_assert(*p == t);
  *p = t->hnext;
  s->ntasks--;
}

/* -- Shapes --------------------------------------------------------------- */

/* The shape for r, made if new; its nref is incremented. */
static shape_t *shape_ref(lr_sched_t *s, const lr_res_req_t *r)
{
  uint64_t h = req_hash(r);
  shape_t **b = &s->shapes[h & s->smask];
  for (shape_t *x = *b; x; x = x->hnext)
    if (x->hash == h && lr_res_req_eq(&x->req, r)) {
      x->nref++;
      return x;
    }
  if (s->nshapes >= s->smask + 1) {
    uint64_t nb = (s->smask + 1) * 2;
    shape_t **ns = lr_xcalloc(nb, sizeof(*ns));
    for (uint64_t i = 0; i <= s->smask; i++) {
      shape_t *x = s->shapes[i], *nx;
      for (; x; x = nx) {
        nx = x->hnext;
        shape_t **d = &ns[x->hash & (nb - 1)];
        x->hnext = *d;
        *d = x;
      }
    }
    lr_free(s->shapes);
    s->shapes = ns;
    s->smask = nb - 1;
    b = &s->shapes[h & s->smask];
  }
  shape_t *sh = lr_xcalloc(1, sizeof(*sh));
  sh->req = *r;
  sh->hash = h;
  sh->nref = 1;
  sh->opos = NOPOS;
  sh->hnext = *b;
  *b = sh;
  s->nshapes++;
  return sh;
}

static void shape_unref(lr_sched_t *s, shape_t *sh)
{
  lr_assert(sh->nref > 0);
  if (--sh->nref > 0) return;
  lr_assert(sh->nq == 0 && sh->opos == NOPOS);
  shape_t **p = &s->shapes[sh->hash & s->smask];
  while (*p != sh) p = &(*p)->hnext;
  *p = sh->hnext;
  s->nshapes--;
  lr_free(sh->heap);
  lr_free(sh);
}

/* -- A shape's queue: min-heap on (t, seq) -------------------------------- */

static int older(const task_t *a, const task_t *b)
{
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void heap_put(shape_t *sh, uint32_t i, task_t *t)
{
  sh->heap[i] = t;
  t->hpos = i;
}

static void heap_up(shape_t *sh, uint32_t i)
{
  task_t *t = sh->heap[i];
  while (i > 0) {
    uint32_t up = (i - 1) / 2;
    if (!older(t, sh->heap[up])) break;
    heap_put(sh, i, sh->heap[up]);
    i = up;
  }
  heap_put(sh, i, t);
}

static void heap_down(shape_t *sh, uint32_t i)
{
  task_t *t = sh->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= sh->nq) break;
    if (c + 1 < sh->nq && older(sh->heap[c + 1], sh->heap[c])) c++;
    if (!older(sh->heap[c], t)) break;
    heap_put(sh, i, sh->heap[c]);
    i = c;
  }
  heap_put(sh, i, t);
}

static void heap_push(shape_t *sh, task_t *t)
{
  if (sh->nq == sh->qcap) {
    sh->qcap = sh->qcap ? sh->qcap * 2 : 8;
    sh->heap = lr_xrealloc(sh->heap, sh->qcap * sizeof(*sh->heap));
  }
  heap_put(sh, sh->nq++, t);
  heap_up(sh, t->hpos);
}

static void heap_del(shape_t *sh, task_t *t)
{
  uint32_t i = t->hpos;
  lr_assert(i < sh->nq && sh->heap[i] == t);
  task_t *last = sh->heap[--sh->nq];
  if (last != t) {
    heap_put(sh, i, last);
    heap_up(sh, i);
    heap_down(sh, last->hpos);
  }
  t->hpos = NOPOS;
}

/* -- Shape order: shapes with queued tasks, oldest head first ------------- */

static void order_set(lr_sched_t *s, size_t i, shape_t *sh)
{
  s->order[i] = sh;
  sh->opos = (uint32_t)i;
}

/* Puts sh (whose queue just changed) where it belongs in order. */
static void order_fix(lr_sched_t *s, shape_t *sh)
{
  if (sh->nq == 0) {
    if (sh->opos == NOPOS) return;
    for (size_t i = sh->opos; i + 1 < s->norder; i++)
      order_set(s, i, s->order[i + 1]);
    s->norder--;
    sh->opos = NOPOS;
    return;
  }
  if (sh->opos == NOPOS) {
    if (s->norder == s->ocap) {
      s->ocap = s->ocap ? s->ocap * 2 : 8;
      s->order = lr_xrealloc(s->order, s->ocap * sizeof(*s->order));
    }
    order_set(s, s->norder++, sh);
  }
  size_t i = sh->opos;
  const task_t *h = sh->heap[0];
  while (i > 0 && older(h, s->order[i - 1]->heap[0])) {
    order_set(s, i, s->order[i - 1]);
    i--;
  }
  while (i + 1 < s->norder && older(s->order[i + 1]->heap[0], h)) {
    order_set(s, i, s->order[i + 1]);
    i++;
  }
  order_set(s, i, sh);
}

/* -- Lifecycle ------------------------------------------------------------ */

int lr_sched_new(double starve_after, lr_sched_t **out)
{
  *out = NULL;
  if (!(starve_after >= 0) || isinf(starve_after)) return LR_EBADARG;
  lr_sched_t *s = lr_xcalloc(1, sizeof(*s));
  lr_res_names_init(&s->names);
  lr_res_pool_init(&s->pool);
  lr_res_pool_init(&s->cap);
  s->starve_after = starve_after;
  s->tmask = 63;
  s->tasks = lr_xcalloc(s->tmask + 1, sizeof(*s->tasks));
  s->smask = 15;
  s->shapes = lr_xcalloc(s->smask + 1, sizeof(*s->shapes));
  *out = s;
  return 0;
}

void lr_sched_free(lr_sched_t *s)
{
  if (!s) return;
  for (uint64_t i = 0; i <= s->tmask; i++) {
    task_t *t = s->tasks[i], *nt;
    for (; t; t = nt) {
      nt = t->hnext;
      lr_free(t);
    }
  }
  for (uint64_t i = 0; i <= s->smask; i++) {
    shape_t *sh = s->shapes[i], *ns;
    for (; sh; sh = ns) {
      ns = sh->hnext;
      lr_free(sh->heap);
      lr_free(sh);
    }
  }
  lr_free(s->tasks);
  lr_free(s->shapes);
  lr_free(s->order);
  lr_res_pool_close(&s->pool);
  lr_res_pool_close(&s->cap);
  lr_res_names_close(&s->names);
  lr_free(s);
}

int lr_sched_res_id(lr_sched_t *s, const char *name, size_t len)
{
  return lr_res_intern(&s->names, name, len);
}

const lr_res_names_t *lr_sched_names(const lr_sched_t *s) { return &s->names; }

const lr_res_pool_t *lr_sched_pool(const lr_sched_t *s) { return &s->pool; }

int lr_sched_set_total(lr_sched_t *s, int id, int64_t units)
{
  if (id < 0 || (uint32_t)id >= s->names.n) return LR_EBADARG;
  /* The GPU case fails in pool when GPUs are in use, and cap has them in
   * use whenever pool does, so checking pool first keeps both unchanged. */
  int rc = lr_res_pool_set(&s->pool, id, units);
  if (rc < 0) return rc;
  rc = lr_res_pool_set(&s->cap, id, units);
  lr_assert(rc == 0);
  return 0;
}

/* -- Queue ---------------------------------------------------------------- */

int lr_sched_submit(lr_sched_t *s, uint64_t id, const lr_res_req_t *r,
                    double now)
{
  if (!isfinite(now) || task_get(s, id)) return LR_EBADARG;
  task_t *t = lr_xcalloc(1, sizeof(*t));
  t->id = id;
  t->t = now;
  t->seq = s->seq++;
  t->state = QUEUED;
  t->shape = shape_ref(s, r);
  task_add(s, t);
  heap_push(t->shape, t);
  order_fix(s, t->shape);
  s->nqueued++;
  return 0;
}

int lr_sched_remove(lr_sched_t *s, uint64_t id)
{
  task_t *t = task_get(s, id);
  if (!t || t->state != QUEUED) return LR_EBADARG;
  shape_t *sh = t->shape;
  heap_del(sh, t);
  order_fix(s, sh);
  s->nqueued--;
  task_unlink(s, t);
  shape_unref(s, sh);
  lr_free(t);
  return 0;
}

/* 1 if r requests any kind that S (the starved request) is short of now. */
static int takes_short(const lr_sched_t *s, const lr_res_req_t *S,
                       const lr_res_req_t *r)
{
  uint32_t i = 0, j = 0;
  while (i < S->n && j < r->n) {
    if (S->id[i] < r->id[j]) {
      i++;
    } else if (S->id[i] > r->id[j]) {
      j++;
    } else {
      /* A kind both need: is S short of it? */
      lr_res_req_t one;
      lr_res_req_init(&one);
      one.n = 1;
      one.id[0] = S->id[i];
      one.units[0] = S->units[i];
      if (!lr_res_fits(&s->pool, &one)) return 1;
      i++;
      j++;
    }
  }
  return 0;
}

int lr_sched_next(lr_sched_t *s, double now, lr_sched_grant_t *out)
{
  const lr_res_req_t *starved = NULL;
  int judged = 0; /* the oldest task that could ever fit has been seen */
  for (size_t i = 0; i < s->norder; i++) {
    shape_t *sh = s->order[i];
    task_t *t = sh->heap[0];
    if (!lr_res_fits(&s->pool, &sh->req)) {
      if (!judged && lr_res_fits(&s->cap, &sh->req)) {
        judged = 1;
        if (now - t->t > s->starve_after) starved = &sh->req;
      }
      continue;
    }
    judged = 1; /* fits now, so it could fit: S is no older than this */
    if (starved && takes_short(s, starved, &sh->req)) continue;
    lr_res_gpus_t g = {0, 0};
    int ok = lr_res_acquire(&s->pool, &sh->req, &g);
    lr_assert(ok);
    heap_del(sh, t);
    order_fix(s, sh);
    s->nqueued--;
    t->state = RUNNING;
    t->gpus = g;
    s->nrunning++;
    out->id = t->id;
    out->gpus = g;
    return 1;
  }
  return 0;
}

/* -- Running and held tasks ----------------------------------------------- */

static task_t *get_active(lr_sched_t *s, uint64_t id)
{
  task_t *t = task_get(s, id);
  return t && (t->state == RUNNING || t->state == HELD) ? t : NULL;
}

/* Gives t's CPUs back (on) or takes them back (off, may overcommit). A
 * held task's CPUs also count as free for queued tasks while it is blocked,
 * so cap moves with pool and never has less free than pool. */
static void set_blocked(lr_sched_t *s, task_t *t, int on)
{
  int64_t cpu = lr_res_req_get(&t->shape->req, LR_RES_CPU);
  lr_assert(t->blocked != on);
  t->blocked = (uint8_t)on;
  if (!on) cpu = -cpu;
  lr_res_pool_adjust(&s->pool, LR_RES_CPU, cpu);
  if (t->state == HELD) lr_res_pool_adjust(&s->cap, LR_RES_CPU, cpu);
}

int lr_sched_release(lr_sched_t *s, uint64_t id)
{
  task_t *t = get_active(s, id);
  if (!t) return LR_EBADARG;
  const lr_res_req_t *r = &t->shape->req;
  if (t->blocked) set_blocked(s, t, 0); /* its CPUs went back at block */
  lr_res_release(&s->pool, r, &t->gpus);
  if (t->state == HELD) {
    lr_res_release(&s->cap, r, &t->gpus);
    s->nheld--;
  } else {
    s->nrunning--;
  }
  task_unlink(s, t);
  shape_unref(s, t->shape);
  lr_free(t);
  return 0;
}

int lr_sched_block(lr_sched_t *s, uint64_t id)
{
  task_t *t = get_active(s, id);
  if (!t) return LR_EBADARG;
  if (!t->blocked) set_blocked(s, t, 1);
  return 0;
}

int lr_sched_unblock(lr_sched_t *s, uint64_t id)
{
  task_t *t = get_active(s, id);
  if (!t) return LR_EBADARG;
  if (t->blocked) set_blocked(s, t, 0);
  return 0;
}

int lr_sched_hold(lr_sched_t *s, uint64_t id, const lr_res_req_t *r,
                  lr_sched_grant_t *out)
{
  lr_res_gpus_t g = {0, 0};
  if (task_get(s, id)) return LR_EBADARG;
  if (!lr_res_acquire(&s->pool, r, &g)) return 0;
  /* cap has at least pool's free units on every kind and GPU id. */
  int ok = lr_res_acquire_as(&s->cap, r, &g);
  lr_assert(ok);
  task_t *t = lr_xcalloc(1, sizeof(*t));
  t->id = id;
  t->state = HELD;
  t->gpus = g;
  t->hpos = NOPOS;
  t->shape = shape_ref(s, r);
  task_add(s, t);
  s->nheld++;
  out->id = id;
  out->gpus = g;
  return 1;
}

/* -- Queries -------------------------------------------------------------- */

int lr_sched_infeasible(const lr_sched_t *s, const lr_res_req_t *r,
                        const char **missing)
{
  int id = lr_res_infeasible(&s->pool, r);
  if (id < 0) return 0;
  if (missing) *missing = lr_res_name(&s->names, id);
  return 1;
}

void lr_sched_stats(const lr_sched_t *s, lr_sched_stats_t *st)
{
  st->queued = s->nqueued;
  st->running = s->nrunning;
  st->held = s->nheld;
  st->shapes = s->norder;
}

int lr_sched_check(const lr_sched_t *s)
{
  const lr_res_pool_t *p = &s->pool, *c = &s->cap;
  if (!lr_res_pool_check(p)) return 0;
  /* cap has at least pool's free of every kind and on every GPU id. */
  for (uint32_t i = 0; i < p->n || i < c->n; i++)
    if (lr_res_pool_avail(c, (int)i) < lr_res_pool_avail(p, (int)i) ||
        lr_res_pool_total(c, (int)i) != lr_res_pool_total(p, (int)i))
      return 0;
  for (int i = 0; i < LR_RES_MAXGPU; i++)
    if (c->gpu_free[i] < p->gpu_free[i]) return 0;
  /* Shapes: heaps ordered, order sorted by head, counts add up. */
  size_t nq = 0, nshapes = 0, nord = 0, refs = 0;
  for (uint64_t b = 0; b <= s->smask; b++)
    for (const shape_t *sh = s->shapes[b]; sh; sh = sh->hnext) {
      nshapes++;
      refs += sh->nref;
      nq += sh->nq;
      if (sh->nref < sh->nq) return 0;
      for (uint32_t i = 0; i < sh->nq; i++)
        if (sh->heap[i]->hpos != i || sh->heap[i]->state != QUEUED ||
            (i > 0 && older(sh->heap[i], sh->heap[(i - 1) / 2])))
          return 0;
      if ((sh->nq > 0) != (sh->opos != NOPOS)) return 0;
      if (sh->opos != NOPOS) {
        nord++;
        if (sh->opos >= s->norder || s->order[sh->opos] != sh) return 0;
      }
    }
  for (size_t i = 1; i < s->norder; i++)
    if (older(s->order[i]->heap[0], s->order[i - 1]->heap[0])) return 0;
  size_t ntasks = 0, nrun = 0, nheld = 0;
  for (uint64_t b = 0; b <= s->tmask; b++)
    for (const task_t *t = s->tasks[b]; t; t = t->hnext) {
      ntasks++;
      nrun += t->state == RUNNING;
      nheld += t->state == HELD;
    }
  return nq == s->nqueued && nshapes == s->nshapes && nord == s->norder &&
         refs == s->ntasks && ntasks == s->ntasks && nrun == s->nrunning &&
         nheld == s->nheld && nq + nrun + nheld == ntasks;
}

int lr_sched_shape_at(const lr_sched_t *s, size_t i, const lr_res_req_t **r,
                      size_t *count)
{
  if (i >= s->norder) return LR_EBADARG;
  *r = &s->order[i]->req;
  *count = s->order[i]->nq;
  return 0;
}
