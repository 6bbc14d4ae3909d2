/* The raylet unit: a node's resource accounting (res.c) and the policy that
 * decides which queued task starts next (sched.c).
 *
 * Provides: named resource kinds interned to small ids, requests and node
 * pools in int64 fixed point (1.0 = LR_RES_UNIT units, so fractions never
 * drift), GPU ids with fractional packing, and a scheduler that groups
 * queued tasks by shape (identical request), starts them without
 * head-of-line blocking and keeps the oldest task from starving. Needs:
 * common/ only. Everything here is policy over plain structs: no I/O, no
 * clock (callers pass `now`), not thread-safe (the node's loop thread only).
 *
 * Licensed under the MIT license; see LICENSE. */
#ifndef LR_RAYLET_H
#define LR_RAYLET_H

#include <stddef.h>
#include <stdint.h>

/* -- Amounts and names ---------------------------------------------------- */

/* Units per 1.0 of any resource. */
#define LR_RES_UNIT 10000
/* Largest amount of one resource kind, in units (2^60: 1.15e14 of 1.0, so
 * memory in bytes up to 115 TB). Sums of amounts never overflow int64. */
#define LR_RES_MAXUNITS ((int64_t)1 << 60)
/* Most distinct resource names one table interns. */
#define LR_RES_MAXNAMES 1024
/* Longest resource name, in bytes. */
#define LR_RES_NAMEMAX 255
/* Most distinct kinds in one request (node totals have no such limit). */
#define LR_RES_REQMAX 16
/* Most GPUs on one node; ids are 0 .. LR_RES_MAXGPU - 1. */
#define LR_RES_MAXGPU 64

/* Ids every table has, interned at init in this order. */
enum { LR_RES_CPU, LR_RES_GPU, LR_RES_MEMORY, LR_RES_OBJECT_STORE_MEMORY };

/* x (in units of 1.0) as fixed-point units, rounded to the nearest unit.
 * Returns units >= 0, or LR_EBADARG if x is negative, NaN, infinite, above
 * LR_RES_MAXUNITS units, or positive but below 1 / LR_RES_UNIT. */
int64_t lr_res_units(double x);

/* Interned names. Lives in the caller's memory (init/close); owns copies
 * of the names. */
typedef struct lr_res_names_s {
  char **name;
  uint32_t n, cap;
} lr_res_names_t;

/* Starts a table holding CPU, GPU, memory and object_store_memory at the
 * ids of the enum above. */
void lr_res_names_init(lr_res_names_t *t);
void lr_res_names_close(lr_res_names_t *t);

/* The id of name (len bytes, no NUL needed), adding it if new. Returns the
 * id >= 0, or LR_EBADARG if name is empty, longer than LR_RES_NAMEMAX or
 * contains a NUL, or the table already holds LR_RES_MAXNAMES names. */
int lr_res_intern(lr_res_names_t *t, const char *name, size_t len);

/* The id of name, or -1 if it was never interned. */
int lr_res_lookup(const lr_res_names_t *t, const char *name, size_t len);

/* The name of id (borrowed from t), or NULL if id is not interned. */
const char *lr_res_name(const lr_res_names_t *t, int id);

/* -- Requests ------------------------------------------------------------- */

/* A request: amounts > 0 by kind, sorted by id. A plain value: copy it,
 * compare it with lr_res_req_eq. */
typedef struct lr_res_req_s {
  uint32_t n;
  uint16_t id[LR_RES_REQMAX];
  int64_t units[LR_RES_REQMAX];
} lr_res_req_t;

/* An empty request (needs nothing). */
void lr_res_req_init(lr_res_req_t *r);

/* Sets the amount of kind id (0 removes it). Returns 0, or LR_EBADARG,
 * changing nothing, if id is not in [0, LR_RES_MAXNAMES), units is outside
 * [0, LR_RES_MAXUNITS], r already has LR_RES_REQMAX kinds, or id is
 * LR_RES_GPU and units is above one GPU but not a whole number of GPUs. */
int lr_res_req_set(lr_res_req_t *r, int id, int64_t units);

/* The amount of kind id in r (0 if absent). */
int64_t lr_res_req_get(const lr_res_req_t *r, int id);

/* 1 if a and b request exactly the same, else 0. */
int lr_res_req_eq(const lr_res_req_t *a, const lr_res_req_t *b);

/* -- GPU assignments ------------------------------------------------------ */

/* The GPU ids one grant holds: bit i of mask is GPU id i; each id in it
 * holds `each` units (LR_RES_UNIT for whole GPUs, the fraction otherwise).
 * mask == 0 when the request has no GPU. */
typedef struct lr_res_gpus_s {
  uint64_t mask;
  int64_t each;
} lr_res_gpus_t;

/* Writes the ids of g to ids in ascending order; returns how many. */
int lr_res_gpus_ids(const lr_res_gpus_t *g, int ids[LR_RES_MAXGPU]);

/* -- Pools ---------------------------------------------------------------- */

/* A node's resources: totals and what is free now, by kind id, plus each
 * GPU id's free units. Lives in the caller's memory (init/close). Kinds at
 * ids >= n have total and available 0. Invariant (lr_res_pool_check):
 * avail[LR_RES_GPU] is the sum of gpu_free, and each gpu_free is within
 * [0, LR_RES_UNIT]. avail may go negative only for CPU (see
 * lr_res_pool_adjust). */
typedef struct lr_res_pool_s {
  uint32_t n;
  int64_t *total, *avail;
  int ngpu;                        /* GPU ids 0 .. ngpu - 1 */
  int64_t gpu_free[LR_RES_MAXGPU]; /* free units of each id */
} lr_res_pool_t;

/* An empty pool (no resources). */
void lr_res_pool_init(lr_res_pool_t *p);
void lr_res_pool_close(lr_res_pool_t *p);

/* Sets the total of kind id to units; what is available moves by the same
 * delta. For LR_RES_GPU, units must be a whole number of GPUs, at most
 * LR_RES_MAXGPU, and no GPU may be in use. Returns 0, or LR_EBADARG,
 * changing nothing. */
int lr_res_pool_set(lr_res_pool_t *p, int id, int64_t units);

int64_t lr_res_pool_total(const lr_res_pool_t *p, int id);
int64_t lr_res_pool_avail(const lr_res_pool_t *p, int id);

/* Adds delta (may be negative) to what is available of kind id, without
 * any check: for a blocked task giving back its CPUs and taking them back,
 * which may overcommit. Not for LR_RES_GPU. Returns 0 or LR_EBADARG. */
int lr_res_pool_adjust(lr_res_pool_t *p, int id, int64_t delta);

/* 1 if the invariant holds, else 0. For tests. */
int lr_res_pool_check(const lr_res_pool_t *p);

/* 1 if r can be acquired from p now (including a GPU assignment), else 0. */
int lr_res_fits(const lr_res_pool_t *p, const lr_res_req_t *r);

/* Acquires r from p if it fits. GPUs: a whole request takes that many
 * completely free ids, lowest first; a fraction goes to the id with the
 * least free capacity that still fits, lowest id on ties, so fractions fill
 * one GPU before starting the next. Returns 1 and fills g (may be NULL if r
 * has no GPU), or 0, changing nothing, if r does not fit. */
int lr_res_acquire(lr_res_pool_t *p, const lr_res_req_t *r, lr_res_gpus_t *g);

/* Acquires r with the GPU assignment g chosen elsewhere (another pool with
 * the same GPUs). Returns 1, or 0, changing nothing, if it does not fit or
 * g does not match r's GPU amount or ids. */
int lr_res_acquire_as(lr_res_pool_t *p, const lr_res_req_t *r,
                      const lr_res_gpus_t *g);

/* Gives back exactly what lr_res_acquire(p, r, g) took. */
void lr_res_release(lr_res_pool_t *p, const lr_res_req_t *r,
                    const lr_res_gpus_t *g);

/* The id of the first kind (in id order) r needs more of than p has in
 * total, counting GPUs by id (a whole request needs that many GPUs, any
 * fraction needs one); -1 if r could fit p when p is idle. */
int lr_res_infeasible(const lr_res_pool_t *p, const lr_res_req_t *r);

/* -- Scheduler ------------------------------------------------------------ */

/* Policy: see the header of sched.c (also docs/scheduling.md). */
typedef struct lr_sched_s lr_sched_t;

/* What a started or held task was given. */
typedef struct lr_sched_grant_s {
  uint64_t id;
  lr_res_gpus_t gpus;
} lr_sched_grant_t;

typedef struct lr_sched_stats_s {
  size_t queued;  /* tasks waiting to start */
  size_t running; /* tasks started by lr_sched_next, not released */
  size_t held;    /* lifetime holds (actors), not released */
  size_t shapes;  /* distinct requests among queued tasks */
} lr_sched_stats_t;

/* Default for starve_after, in seconds. */
#define LR_SCHED_STARVE_AFTER 1.0

/* Creates an idle scheduler with no resources and its own name table;
 * the caller frees it with lr_sched_free. starve_after (seconds, >= 0):
 * how long the oldest task may wait before other shapes must stop taking
 * what it lacks. Returns 0, or LR_EBADARG if starve_after is negative or
 * not finite. */
int lr_sched_new(double starve_after, lr_sched_t **out);
void lr_sched_free(lr_sched_t *s);

/* The scheduler's name table: intern names with lr_sched_res_id, read them
 * with lr_res_name on lr_sched_names. */
int lr_sched_res_id(lr_sched_t *s, const char *name, size_t len);
const lr_res_names_t *lr_sched_names(const lr_sched_t *s);

/* Sets the node's total of kind id (as lr_res_pool_set). Returns 0, or
 * LR_EBADARG, changing nothing. */
int lr_sched_set_total(lr_sched_t *s, int id, int64_t units);

/* The node's pool: totals and what is available now. Borrowed; valid until
 * the next call that changes s. */
const lr_res_pool_t *lr_sched_pool(const lr_sched_t *s);

/* Queues task id (unknown to s) with request r, submitted at time now
 * (seconds, any epoch, the same clock as lr_sched_next). Call it once the
 * task's arguments exist. r is copied. Returns 0, or LR_EBADARG if id is
 * already queued, running or held, or now is not finite. O(log n). */
int lr_sched_submit(lr_sched_t *s, uint64_t id, const lr_res_req_t *r,
                    double now);

/* Picks the next task to start at time now, acquires its resources and
 * GPU ids, and moves it to running. Returns 1 and fills out, or 0 if
 * nothing can start now. O(shapes + GPUs). */
int lr_sched_next(lr_sched_t *s, double now, lr_sched_grant_t *out);

/* Drops queued task id (cancelled). Returns 0, or LR_EBADARG if id is not
 * queued. */
int lr_sched_remove(lr_sched_t *s, uint64_t id);

/* Running or held task id finished (or its actor died): gives back all it
 * holds, minus the CPUs it gave back while blocked. Returns 0, or
 * LR_EBADARG if id is not running or held. */
int lr_sched_release(lr_sched_t *s, uint64_t id);

/* Running or held task id waits in get: its CPUs (not its GPUs or other
 * kinds) are free for others until lr_sched_unblock, which takes them back
 * even if that overcommits (available CPU may go negative; then nothing
 * needing CPU starts until it recovers). Both are idempotent. Return 0, or
 * LR_EBADARG if id is not running or held. */
int lr_sched_block(lr_sched_t *s, uint64_t id);
int lr_sched_unblock(lr_sched_t *s, uint64_t id);

/* Acquires r now for id (unknown to s), for as long as it lives (an actor),
 * bypassing the queue. Until lr_sched_release(id), queued tasks are judged
 * against the totals minus such holds. Returns 1 and fills out, 0 if r does
 * not fit now (nothing changes), or LR_EBADARG if id is known to s. */
int lr_sched_hold(lr_sched_t *s, uint64_t id, const lr_res_req_t *r,
                  lr_sched_grant_t *out);

/* 1 if r can never fit this node (it exceeds the totals or names a kind
 * the node lacks), setting *missing (may be NULL) to that kind's name,
 * borrowed from s; else 0. */
int lr_sched_infeasible(const lr_sched_t *s, const lr_res_req_t *r,
                        const char **missing);

void lr_sched_stats(const lr_sched_t *s, lr_sched_stats_t *st);

/* 1 if s's books are consistent (pool invariant, holds, queues, order,
 * counts), else 0. O(tasks + shapes): for tests. */
int lr_sched_check(const lr_sched_t *s);

/* The i-th shape with queued tasks, oldest head first: its request
 * (borrowed, valid until the next change to s) and its queued count.
 * Returns 0, or LR_EBADARG if i >= stats.shapes. */
int lr_sched_shape_at(const lr_sched_t *s, size_t i, const lr_res_req_t **r,
                      size_t *count);

#endif
