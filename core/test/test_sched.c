/* Tests of the node's queue policy (raylet/sched.c). */
#include "raylet/raylet.h"
#include "common/def.h"
#include "common/errdef.h"
#include "test/test.h"

#include <math.h>
#include <stdarg.h>
#include <time.h>

#define U LR_RES_UNIT

/* -- Helpers -------------------------------------------------------------- */

static int rid(lr_sched_t *s, const char *name)
{
  int id = lr_sched_res_id(s, name, strlen(name));
  ASSERT(id >= 0);
  return id;
}

/* A request from (name, amount) pairs ending with NULL. */
static lr_res_req_t R(lr_sched_t *s, ...)
{
  lr_res_req_t r;
  va_list ap;
  const char *name;
  lr_res_req_init(&r);
  va_start(ap, s);
  while ((name = va_arg(ap, const char *)) != NULL) {
    int64_t u = lr_res_units(va_arg(ap, double));
    ASSERT(u >= 0);
    ASSERT_EQ(lr_res_req_set(&r, rid(s, name), u), 0);
  }
  va_end(ap);
  return r;
}

/* A scheduler with these totals ((name, amount) pairs ending with NULL). */
static lr_sched_t *mk(double starve_after, ...)
{
  lr_sched_t *s;
  va_list ap;
  const char *name;
  ASSERT_EQ(lr_sched_new(starve_after, &s), 0);
  va_start(ap, starve_after);
  while ((name = va_arg(ap, const char *)) != NULL) {
    int64_t u = lr_res_units(va_arg(ap, double));
    ASSERT(u >= 0);
    ASSERT_EQ(lr_sched_set_total(s, rid(s, name), u), 0);
  }
  va_end(ap);
  return s;
}

static int64_t avail(lr_sched_t *s, const char *name)
{
  return lr_res_pool_avail(lr_sched_pool(s), rid(s, name));
}

/* The id lr_sched_next starts now, or -1 if none. */
static long long next_id(lr_sched_t *s, double now)
{
  lr_sched_grant_t g;
  return lr_sched_next(s, now, &g) ? (long long)g.id : -1;
}

static size_t queued(lr_sched_t *s)
{
  lr_sched_stats_t st;
  lr_sched_stats(s, &st);
  return st.queued;
}

/* 1 if every kind is back at its total and nothing is tracked. */
static int idle_exact(lr_sched_t *s)
{
  const lr_res_pool_t *p = lr_sched_pool(s);
  lr_sched_stats_t st;
  lr_sched_stats(s, &st);
  if (st.queued || st.running || st.held || st.shapes) return 0;
  if (!lr_sched_check(s)) return 0;
  for (uint32_t i = 0; i < p->n; i++)
    if (p->avail[i] != p->total[i]) return 0;
  for (int i = 0; i < p->ngpu; i++)
    if (p->gpu_free[i] != U) return 0;
  return lr_res_pool_check(p);
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* -- Policy --------------------------------------------------------------- */

TEST(sched_fifo_within_shape)
{
  lr_sched_t *s = mk(1.0, "CPU", 1.0, NULL);
  lr_res_req_t one = R(s, "CPU", 1.0, NULL);
  for (int i = 1; i <= 5; i++)
    ASSERT_EQ(lr_sched_submit(s, (uint64_t)i, &one, 0.1 * i), 0);
  /* Queued later, but submitted first (its arguments took longer). */
  ASSERT_EQ(lr_sched_submit(s, 9, &one, 0.05), 0);
  /* Same submit time as task 5: queue order breaks the tie. */
  ASSERT_EQ(lr_sched_submit(s, 10, &one, 0.5), 0);
  const long long want[] = {9, 1, 2, 3, 4, 5, 10};
  for (size_t i = 0; i < LR_ARRAY_SIZE(want); i++) {
    ASSERT_EQ(next_id(s, 0.6), want[i]);
    ASSERT_EQ(next_id(s, 0.6), -1); /* the one CPU is taken */
    ASSERT_EQ(lr_sched_release(s, (uint64_t)want[i]), 0);
  }
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_no_head_of_line_blocking)
{
  lr_sched_t *s = mk(1.0, "CPU", 2.0, NULL);
  lr_res_req_t one = R(s, "CPU", 1.0, NULL);
  lr_res_req_t two = R(s, "CPU", 2.0, NULL);
  ASSERT_EQ(lr_sched_submit(s, 1, &one, 0.0), 0);
  ASSERT_EQ(next_id(s, 0.0), 1);                  /* 1 CPU left */
  ASSERT_EQ(lr_sched_submit(s, 2, &two, 0.1), 0); /* queued first */
  ASSERT_EQ(lr_sched_submit(s, 3, &one, 0.2), 0);
  ASSERT_EQ(lr_sched_submit(s, 4, &one, 0.3), 0);
  ASSERT_EQ(next_id(s, 0.4), 3); /* not held back by task 2 */
  ASSERT_EQ(next_id(s, 0.4), -1);
  ASSERT_EQ(lr_sched_release(s, 3), 0);
  ASSERT_EQ(next_id(s, 0.5), 4);
  /* Shapes are listed oldest head first. */
  lr_sched_stats_t st;
  lr_sched_stats(s, &st);
  ASSERT_EQ(st.shapes, 1);
  ASSERT_EQ(st.running, 2);
  const lr_res_req_t *r;
  size_t n;
  ASSERT_EQ(lr_sched_shape_at(s, 0, &r, &n), 0);
  ASSERT(lr_res_req_eq(r, &two));
  ASSERT_EQ(n, 1);
  ASSERT_EQ(lr_sched_shape_at(s, 1, &r, &n), LR_EBADARG);
  ASSERT_EQ(lr_sched_release(s, 1), 0);
  ASSERT_EQ(lr_sched_release(s, 4), 0);
  ASSERT_EQ(next_id(s, 0.6), 2);
  ASSERT_EQ(lr_sched_release(s, 2), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_shape_order)
{
  lr_sched_t *s = mk(1.0, "CPU", 8.0, NULL);
  lr_res_req_t a = R(s, "CPU", 1.0, NULL);
  lr_res_req_t b = R(s, "CPU", 0.5, NULL);
  lr_res_req_t c = R(s, "CPU", 2.0, NULL);
  ASSERT_EQ(lr_sched_submit(s, 1, &b, 2.0), 0);
  ASSERT_EQ(lr_sched_submit(s, 2, &a, 1.0), 0);
  ASSERT_EQ(lr_sched_submit(s, 3, &c, 3.0), 0);
  ASSERT_EQ(lr_sched_submit(s, 4, &a, 4.0), 0);
  ASSERT_EQ(lr_sched_submit(s, 5, &c, 0.5), 0); /* makes c the oldest */
  const lr_res_req_t *r;
  size_t n;
  ASSERT_EQ(lr_sched_shape_at(s, 0, &r, &n), 0);
  ASSERT(lr_res_req_eq(r, &c) && n == 2);
  ASSERT_EQ(lr_sched_shape_at(s, 1, &r, &n), 0);
  ASSERT(lr_res_req_eq(r, &a) && n == 2);
  ASSERT_EQ(lr_sched_shape_at(s, 2, &r, &n), 0);
  ASSERT(lr_res_req_eq(r, &b) && n == 1);
  /* Everything fits: start order is global submit-time order. */
  const long long want[] = {5, 2, 1, 3, 4};
  for (size_t i = 0; i < LR_ARRAY_SIZE(want); i++)
    ASSERT_EQ(next_id(s, 5.0), want[i]);
  ASSERT_EQ(queued(s), 0);
  for (size_t i = 0; i < LR_ARRAY_SIZE(want); i++)
    ASSERT_EQ(lr_sched_release(s, (uint64_t)want[i]), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_starvation)
{
  /* A 4-CPU task behind a steady stream of 1-CPU tasks on 4 CPUs. */
  lr_sched_t *s = mk(1.0, "CPU", 4.0, "GPU", 1.0, NULL);
  lr_res_req_t one = R(s, "CPU", 1.0, NULL);
  lr_res_req_t four = R(s, "CPU", 4.0, NULL);
  lr_res_req_t gpu = R(s, "GPU", 1.0, NULL);
  uint64_t id = 100, running[4];
  double t = 0;
  for (int i = 0; i < 4; i++) {
    ASSERT_EQ(lr_sched_submit(s, id, &one, t), 0);
    running[i] = id++;
    ASSERT_EQ(next_id(s, t), (long long)running[i]);
  }
  ASSERT_EQ(lr_sched_submit(s, 1, &four, t), 0);
  /* Every 0.1 s one small task ends and two more arrive. */
  int big_started = 0, small_after_starve = 0, gpu_started = 0;
  for (int step = 1; step <= 100 && !big_started; step++) {
    t = 0.1 * step;
    for (int k = 0; k < 2; k++) ASSERT_EQ(lr_sched_submit(s, id++, &one, t), 0);
    if (step == 12) ASSERT_EQ(lr_sched_submit(s, 2, &gpu, t), 0);
    int slot = step % 4;
    if (running[slot]) {
      ASSERT_EQ(lr_sched_release(s, running[slot]), 0);
      running[slot] = 0;
    }
    long long got;
    while ((got = next_id(s, t)) >= 0) {
      if (got == 1) {
        big_started = step;
      } else if (got == 2) {
        gpu_started = step; /* GPU only: not what the big task lacks */
      } else {
        if (t > 1.0 + 1e-9) small_after_starve++;
        int k = 0;
        while (running[k]) k++;
        running[k] = (uint64_t)got;
      }
    }
  }
  /* Before 1 s the small tasks keep the CPUs busy; after it they stop,
   * the running ones drain, and the big task starts. */
  ASSERT_EQ(big_started, 14);
  ASSERT_EQ(small_after_starve, 0);
  ASSERT_EQ(gpu_started, 12);
  /* Once it runs, the small tasks wait for CPUs again, not for age. */
  ASSERT_EQ(lr_sched_release(s, 1), 0);
  ASSERT_EQ(next_id(s, t), 114); /* steps 1-10 started 104-113 */
  lr_sched_free(s);
}

TEST(sched_starvation_skips_impossible)
{
  /* A task that can never fit (more than the totals), or not while an actor
   * holds what it needs, must not stall the node once it is old. */
  lr_sched_t *s = mk(1.0, "CPU", 4.0, NULL);
  lr_res_req_t one = R(s, "CPU", 1.0, NULL);
  lr_res_req_t two = R(s, "CPU", 2.0, NULL);
  lr_res_req_t eight = R(s, "CPU", 8.0, NULL);
  lr_res_req_t three = R(s, "CPU", 3.0, NULL);
  lr_sched_grant_t g;
  ASSERT_EQ(lr_sched_submit(s, 1, &eight, 0.0), 0);
  ASSERT_EQ(lr_sched_hold(s, 50, &three, &g), 1); /* an actor: 3 CPUs */
  ASSERT_EQ(lr_sched_submit(s, 2, &two, 0.0), 0);
  ASSERT_EQ(lr_sched_submit(s, 3, &one, 10.0), 0);
  ASSERT_EQ(next_id(s, 20.0), 3); /* tasks 1 and 2 are old but impossible */
  /* The actor goes and another takes 2 CPUs: task 2 could now fit once
   * task 3 ends, so it is starved and 1-CPU tasks must wait for it. */
  ASSERT_EQ(lr_sched_release(s, 50), 0);
  ASSERT_EQ(lr_sched_hold(s, 51, &two, &g), 1);
  ASSERT_EQ(avail(s, "CPU"), U);
  ASSERT_EQ(lr_sched_submit(s, 4, &one, 20.0), 0);
  ASSERT_EQ(next_id(s, 21.0), -1);
  ASSERT_EQ(lr_sched_release(s, 3), 0);
  ASSERT_EQ(next_id(s, 21.0), 2);
  ASSERT_EQ(next_id(s, 21.0), -1);
  ASSERT_EQ(lr_sched_release(s, 51), 0);
  ASSERT_EQ(next_id(s, 21.0), 4);
  ASSERT_EQ(lr_sched_release(s, 2), 0);
  ASSERT_EQ(lr_sched_release(s, 4), 0);
  ASSERT_EQ(next_id(s, 30.0), -1);
  ASSERT_EQ(lr_sched_remove(s, 1), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_starvation_blocks_only_short_kinds)
{
  /* The starved task lacks GPU only: CPU-only tasks still start, GPU
   * fractions do not. */
  lr_sched_t *s = mk(0.5, "CPU", 4.0, "GPU", 1.0, NULL);
  lr_res_req_t g1 = R(s, "CPU", 1.0, "GPU", 1.0, NULL);
  lr_res_req_t gq = R(s, "CPU", 1.0, "GPU", 0.25, NULL);
  lr_res_req_t c1 = R(s, "CPU", 1.0, NULL);
  ASSERT_EQ(lr_sched_submit(s, 1, &gq, 0.0), 0);
  ASSERT_EQ(next_id(s, 0.0), 1); /* GPU 0 is partly used */
  ASSERT_EQ(lr_sched_submit(s, 2, &g1, 0.0), 0);
  ASSERT_EQ(lr_sched_submit(s, 3, &gq, 0.1), 0);
  ASSERT_EQ(lr_sched_submit(s, 4, &c1, 0.2), 0);
  ASSERT_EQ(next_id(s, 0.3), 3); /* not starved yet */
  ASSERT_EQ(lr_sched_submit(s, 5, &gq, 0.4), 0);
  ASSERT_EQ(next_id(s, 1.0), 4);  /* starved: CPU only is fine */
  ASSERT_EQ(next_id(s, 1.0), -1); /* but task 5 must wait */
  ASSERT_EQ(lr_sched_release(s, 1), 0);
  ASSERT_EQ(next_id(s, 1.0), -1);
  ASSERT_EQ(lr_sched_release(s, 3), 0);
  ASSERT_EQ(next_id(s, 1.0), 2);
  ASSERT_EQ(next_id(s, 1.0), -1); /* GPU fully used by task 2 */
  ASSERT_EQ(lr_sched_release(s, 2), 0);
  ASSERT_EQ(next_id(s, 1.0), 5);
  ASSERT_EQ(lr_sched_release(s, 5), 0);
  ASSERT_EQ(lr_sched_release(s, 4), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_block_unblock)
{
  lr_sched_t *s = mk(1.0, "CPU", 2.0, "GPU", 1.0, "Custom", 1.0, NULL);
  lr_res_req_t x = R(s, "CPU", 1.0, "GPU", 1.0, NULL);
  lr_res_req_t two = R(s, "CPU", 2.0, NULL);
  lr_res_req_t one = R(s, "CPU", 1.0, NULL);
  lr_res_req_t cus = R(s, "Custom", 1.0, NULL);
  ASSERT_EQ(lr_sched_submit(s, 1, &x, 0.0), 0);
  ASSERT_EQ(next_id(s, 0.0), 1);
  ASSERT_EQ(lr_sched_block(s, 1), 0);
  ASSERT_EQ(lr_sched_block(s, 1), 0); /* idempotent */
  ASSERT_EQ(avail(s, "CPU"), 2 * U);  /* its CPU came back */
  ASSERT_EQ(avail(s, "GPU"), 0);      /* its GPU did not */
  ASSERT_EQ(lr_sched_submit(s, 2, &two, 0.1), 0);
  ASSERT_EQ(next_id(s, 0.1), 2);
  ASSERT_EQ(lr_sched_unblock(s, 1), 0); /* overcommits */
  ASSERT_EQ(lr_sched_unblock(s, 1), 0);
  ASSERT_EQ(avail(s, "CPU"), -U);
  ASSERT_EQ(lr_sched_submit(s, 3, &one, 0.2), 0);
  ASSERT_EQ(lr_sched_submit(s, 4, &cus, 0.3), 0);
  ASSERT_EQ(next_id(s, 0.3), 4); /* needs no CPU */
  ASSERT_EQ(next_id(s, 0.3), -1);
  ASSERT_EQ(lr_sched_release(s, 2), 0);
  ASSERT_EQ(avail(s, "CPU"), U);
  ASSERT_EQ(next_id(s, 0.4), 3);
  /* Release while blocked gives back what is left, exactly. */
  ASSERT_EQ(lr_sched_block(s, 1), 0);
  ASSERT_EQ(avail(s, "CPU"), U);
  ASSERT_EQ(lr_sched_release(s, 1), 0);
  ASSERT_EQ(avail(s, "CPU"), U);
  ASSERT_EQ(avail(s, "GPU"), U);
  ASSERT_EQ(lr_sched_block(s, 1), LR_EBADARG); /* gone */
  ASSERT_EQ(lr_sched_submit(s, 5, &one, 0.5), 0);
  ASSERT_EQ(lr_sched_block(s, 5), LR_EBADARG); /* queued, not running */
  ASSERT_EQ(lr_sched_unblock(s, 5), LR_EBADARG);
  ASSERT_EQ(lr_sched_remove(s, 5), 0);
  ASSERT_EQ(lr_sched_release(s, 3), 0);
  ASSERT_EQ(lr_sched_release(s, 4), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_infeasible)
{
  lr_sched_t *s = mk(1.0, "CPU", 2.0, "GPU", 1.0, "Custom", 3.0, NULL);
  const char *m = NULL;
  lr_res_req_t r = R(s, "CPU", 3.0, NULL);
  ASSERT_EQ(lr_sched_infeasible(s, &r, &m), 1);
  ASSERT_STREQ(m, "CPU");
  r = R(s, "CPU", 1.0, "Foo", 1.0, NULL);
  ASSERT_EQ(lr_sched_infeasible(s, &r, &m), 1);
  ASSERT_STREQ(m, "Foo");
  r = R(s, "GPU", 2.0, NULL);
  ASSERT_EQ(lr_sched_infeasible(s, &r, &m), 1);
  ASSERT_STREQ(m, "GPU");
  r = R(s, "Custom", 3.5, NULL);
  ASSERT_EQ(lr_sched_infeasible(s, &r, &m), 1);
  ASSERT_STREQ(m, "Custom");
  m = NULL;
  r = R(s, "CPU", 2.0, "GPU", 0.5, "Custom", 3.0, NULL);
  ASSERT_EQ(lr_sched_infeasible(s, &r, &m), 0);
  ASSERT(m == NULL);
  lr_res_req_init(&r);
  ASSERT_EQ(lr_sched_infeasible(s, &r, NULL), 0);
  /* Infeasible tasks stay queued and never start. */
  r = R(s, "Foo", 1.0, NULL);
  ASSERT_EQ(lr_sched_submit(s, 1, &r, 0.0), 0);
  ASSERT_EQ(next_id(s, 100.0), -1);
  ASSERT_EQ(queued(s), 1);
  /* Until the node gets the resource. */
  ASSERT_EQ(lr_sched_set_total(s, rid(s, "Foo"), U), 0);
  ASSERT_EQ(next_id(s, 100.0), 1);
  ASSERT_EQ(lr_sched_release(s, 1), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_remove)
{
  lr_sched_t *s = mk(1.0, "CPU", 1.0, NULL);
  lr_res_req_t one = R(s, "CPU", 1.0, NULL);
  lr_res_req_t half = R(s, "CPU", 0.5, NULL);
  ASSERT_EQ(lr_sched_submit(s, 1, &one, 0.0), 0);
  ASSERT_EQ(lr_sched_submit(s, 2, &one, 0.1), 0);
  ASSERT_EQ(lr_sched_submit(s, 3, &half, 0.2), 0);
  ASSERT_EQ(lr_sched_submit(s, 4, &one, 0.3), 0);
  ASSERT_EQ(lr_sched_submit(s, 1, &one, 0.4), LR_EBADARG); /* duplicate */
  ASSERT_EQ(lr_sched_submit(s, 5, &one, NAN), LR_EBADARG);
  ASSERT_EQ(lr_sched_submit(s, 5, &one, INFINITY), LR_EBADARG);
  ASSERT_EQ(queued(s), 4);
  ASSERT_EQ(lr_sched_remove(s, 1), 0); /* the head of its shape */
  ASSERT_EQ(lr_sched_remove(s, 1), LR_EBADARG);
  ASSERT_EQ(lr_sched_remove(s, 77), LR_EBADARG);
  ASSERT_EQ(queued(s), 3);
  ASSERT_EQ(next_id(s, 1.0), 2);
  ASSERT_EQ(lr_sched_remove(s, 2), LR_EBADARG); /* running: release it */
  ASSERT_EQ(lr_sched_remove(s, 3), 0);          /* its shape is now empty */
  lr_sched_stats_t st;
  lr_sched_stats(s, &st);
  ASSERT_EQ(st.shapes, 1);
  ASSERT_EQ(st.queued, 1);
  ASSERT_EQ(lr_sched_release(s, 2), 0);
  ASSERT_EQ(lr_sched_release(s, 2), LR_EBADARG);
  ASSERT_EQ(next_id(s, 1.0), 4);
  ASSERT_EQ(lr_sched_release(s, 4), 0);
  /* An id can be used again once it is gone. */
  ASSERT_EQ(lr_sched_submit(s, 1, &half, 2.0), 0);
  ASSERT_EQ(lr_sched_remove(s, 1), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_hold_release)
{
  lr_sched_t *s = mk(1.0, "CPU", 2.0, "GPU", 2.0, NULL);
  lr_res_req_t a = R(s, "CPU", 1.0, "GPU", 0.5, NULL);
  lr_res_req_t b = R(s, "GPU", 2.0, NULL);
  lr_sched_grant_t g;
  int ids[LR_RES_MAXGPU];
  ASSERT_EQ(lr_sched_hold(s, 1, &a, &g), 1);
  ASSERT_EQ(g.id, 1);
  ASSERT_EQ(lr_res_gpus_ids(&g.gpus, ids), 1);
  ASSERT_EQ(ids[0], 0);
  ASSERT_EQ(lr_sched_hold(s, 2, &a, &g), 1);
  ASSERT_EQ(lr_res_gpus_ids(&g.gpus, ids), 1);
  ASSERT_EQ(ids[0], 0);                      /* packs onto the same GPU */
  ASSERT_EQ(lr_sched_hold(s, 3, &a, &g), 0); /* no CPU left */
  ASSERT_EQ(lr_sched_hold(s, 1, &a, &g), LR_EBADARG);
  ASSERT_EQ(avail(s, "CPU"), 0);
  ASSERT_EQ(avail(s, "GPU"), U);
  ASSERT_EQ(lr_sched_hold(s, 4, &b, &g), 0); /* GPU 0 is busy */
  lr_sched_stats_t st;
  lr_sched_stats(s, &st);
  ASSERT_EQ(st.held, 2);
  ASSERT_EQ(st.running, 0);
  /* A queued task waits for the actors. */
  ASSERT_EQ(lr_sched_submit(s, 5, &b, 0.0), 0);
  ASSERT_EQ(lr_sched_hold(s, 5, &b, &g), LR_EBADARG); /* known id */
  ASSERT_EQ(next_id(s, 0.0), -1);
  ASSERT_EQ(lr_sched_release(s, 1), 0);
  ASSERT_EQ(next_id(s, 0.0), -1);
  ASSERT_EQ(lr_sched_release(s, 2), 0);
  ASSERT_EQ(lr_sched_next(s, 0.0, &g), 1);
  ASSERT_EQ(g.id, 5);
  ASSERT_EQ(lr_res_gpus_ids(&g.gpus, ids), 2);
  ASSERT_EQ(lr_sched_release(s, 5), 0);
  /* Blocking a held actor gives back its CPU like a task's. */
  ASSERT_EQ(lr_sched_hold(s, 6, &a, &g), 1);
  ASSERT_EQ(lr_sched_block(s, 6), 0);
  ASSERT_EQ(avail(s, "CPU"), 2 * U);
  ASSERT_EQ(lr_sched_release(s, 6), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
}

TEST(sched_new_args)
{
  lr_sched_t *s = (lr_sched_t *)1;
  ASSERT_EQ(lr_sched_new(-1, &s), LR_EBADARG);
  ASSERT(s == NULL);
  ASSERT_EQ(lr_sched_new(NAN, &s), LR_EBADARG);
  ASSERT_EQ(lr_sched_new(INFINITY, &s), LR_EBADARG);
  ASSERT_EQ(lr_sched_new(0, &s), 0);
  ASSERT_EQ(lr_sched_set_total(s, 99, U), LR_EBADARG); /* not interned */
  ASSERT_EQ(lr_sched_set_total(s, LR_RES_GPU, U / 2), LR_EBADARG);
  ASSERT_EQ(lr_sched_set_total(s, LR_RES_GPU, 2 * U), 0);
  lr_res_req_t g = R(s, "GPU", 1.0, NULL);
  lr_sched_grant_t gr;
  ASSERT_EQ(lr_sched_hold(s, 1, &g, &gr), 1);
  ASSERT_EQ(lr_sched_set_total(s, LR_RES_GPU, 4 * U), LR_EBADARG); /* busy */
  ASSERT_EQ(lr_sched_release(s, 1), 0);
  ASSERT_EQ(lr_sched_set_total(s, LR_RES_GPU, 4 * U), 0);
  ASSERT(idle_exact(s));
  lr_sched_free(s);
  lr_sched_free(NULL);
}

TEST(sched_many_shapes)
{
  /* 100 shapes (memory amounts differ): with one CPU, tasks start one at a
   * time in global submit-time order, whatever their shape. */
  enum { NSH = 100, N = 2000 };
  lr_sched_t *s = mk(1.0, "CPU", 1.0, "memory", 1e9, NULL);
  lr_res_req_t *sh = lr_xmalloc(NSH * sizeof(*sh));
  for (int k = 0; k < NSH; k++)
    sh[k] = R(s, "CPU", 1.0, "memory", 1e6 * (k + 1), NULL);
  uint32_t rnd = 99;
  for (int i = 0; i < N; i++) {
    rnd = rnd * 1664525u + 1013904223u;
    /* Queued in a shuffled order; submit time is the id. */
    int id = (int)((i * 7919L) % N);
    ASSERT_EQ(
        lr_sched_submit(s, (uint64_t)id, &sh[(rnd >> 8) % NSH], (double)id), 0);
  }
  lr_sched_stats_t st;
  lr_sched_stats(s, &st);
  ASSERT_EQ(st.shapes, NSH);
  ASSERT(lr_sched_check(s));
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(next_id(s, 1e6), i);
    ASSERT_EQ(next_id(s, 1e6), -1);
    ASSERT_EQ(lr_sched_release(s, (uint64_t)i), 0);
    if (i % 97 == 0) ASSERT(lr_sched_check(s));
  }
  ASSERT(idle_exact(s));
  lr_free(sh);
  lr_sched_free(s);
}

/* -- Throughput ----------------------------------------------------------- */

TEST(sched_throughput_10k)
{
  enum { N = 10000 };
  lr_sched_t *s = mk(1.0, "CPU", 16.0, "GPU", 4.0, "Custom", 8.0, NULL);
  lr_res_req_t shape[5] = {
      R(s, "CPU", 1.0, NULL),
      R(s, "CPU", 2.0, NULL),
      R(s, "CPU", 1.0, "GPU", 0.5, NULL),
      R(s, "CPU", 0.5, "GPU", 1.0, NULL),
      R(s, "CPU", 0.25, "Custom", 1.0, "memory", 1e6, NULL),
  };
  ASSERT_EQ(lr_sched_set_total(s, LR_RES_MEMORY, lr_res_units(1e9)), 0);
  /* A ring of running ids: the oldest finishes first. */
  uint64_t *ring = lr_xmalloc(N * sizeof(*ring));
  size_t head = 0, tail = 0, placed = 0, maxq = 0;
  uint32_t rnd = 12345;
  double t0 = now_s();
  for (int i = 0; i < N; i++) {
    rnd = rnd * 1103515245u + 12345u;
    ASSERT_EQ(
        lr_sched_submit(s, (uint64_t)i, &shape[(rnd >> 16) % 5], i * 1e-6), 0);
  }
  double t1 = now_s();
  lr_sched_grant_t g;
  while (placed < N) {
    while (lr_sched_next(s, 0.5, &g)) {
      ring[tail++] = g.id;
      placed++;
    }
    ASSERT(head < tail); /* something runs, or we would be stuck */
    if (tail - head > maxq) maxq = tail - head;
    ASSERT_EQ(lr_sched_release(s, ring[head++]), 0);
  }
  while (head < tail) ASSERT_EQ(lr_sched_release(s, ring[head++]), 0);
  double t2 = now_s();
  ASSERT(idle_exact(s));
  printf("  sched: queued 10000 tasks of 5 shapes in %.2f ms; drained in "
         "%.2f ms: %.0f tasks placed/s (at most %zu running)\n",
         (t1 - t0) * 1e3, (t2 - t1) * 1e3, N / (t2 - t1), maxq);
  fflush(stdout); /* the runner's child ends with _exit */
  lr_free(ring);
  lr_sched_free(s);
}

/* -- Randomized ----------------------------------------------------------- */

TEST(sched_random_returns_to_totals)
{
  for (int round = 0; round < 20; round++) {
    lr_sched_t *s = mk(round % 3 ? 0.05 : 0.0, "CPU", 3.0 + round % 4, "GPU",
                       (double)(round % 4), "Custom", 2.5, NULL);
    ASSERT_EQ(lr_sched_set_total(s, LR_RES_MEMORY, lr_res_units(1e10)), 0);
    lr_res_req_t shapes[8] = {
        R(s, "CPU", 1.0, NULL),
        R(s, "CPU", 0.3, "GPU", 0.3, NULL),
        R(s, "CPU", 2.0, "GPU", 1.0, NULL),
        R(s, "GPU", 0.7, NULL),
        R(s, "CPU", 0.1, "Custom", 0.5, NULL),
        R(s, "CPU", 4.0, NULL),
        R(s, "Nope", 1.0, NULL), /* never fits */
        R(s, "CPU", 0.5, "memory", 3.3e9, "GPU", 2.0, NULL),
    };
    enum { MAXID = 400 };
    int state[MAXID] = {0}; /* 0 unknown, 1 queued, 2 running, 3 held */
    int blocked[MAXID] = {0}, shp[MAXID] = {0};
    uint32_t rnd = 777u + (uint32_t)round * 7919u;
    double t = 0;
    lr_sched_grant_t g;
#define RND() (rnd = rnd * 1664525u + 1013904223u, rnd >> 8)
    for (int op = 0; op < 20000; op++) {
      int id = (int)(RND() % MAXID), k = (int)(RND() % 8);
      t += 0.001;
      switch (RND() % 8) {
      case 0:
      case 1:
        if (state[id] == 0) {
          /* Submit times a little out of order, as arguments arrive. */
          double at = t - (double)(RND() % 50) * 0.001;
          ASSERT_EQ(lr_sched_submit(s, (uint64_t)id, &shapes[k], at), 0);
          state[id] = 1;
          shp[id] = k;
        } else {
          ASSERT_EQ(lr_sched_submit(s, (uint64_t)id, &shapes[k], t),
                    LR_EBADARG);
        }
        break;
      case 2:
      case 3:
        if (lr_sched_next(s, t, &g)) {
          ASSERT(g.id < MAXID && state[g.id] == 1);
          ASSERT(!lr_sched_infeasible(s, &shapes[shp[g.id]], NULL));
          state[g.id] = 2;
        }
        break;
      case 4:
        ASSERT_EQ(lr_sched_release(s, (uint64_t)id) == 0, state[id] >= 2);
        if (state[id] >= 2) state[id] = blocked[id] = 0;
        break;
      case 5:
        ASSERT_EQ(lr_sched_remove(s, (uint64_t)id) == 0, state[id] == 1);
        if (state[id] == 1) state[id] = 0;
        break;
      case 6:
        if (state[id] >= 2) {
          int on = !blocked[id];
          ASSERT_EQ(on ? lr_sched_block(s, (uint64_t)id)
                       : lr_sched_unblock(s, (uint64_t)id),
                    0);
          blocked[id] = on;
        } else {
          ASSERT_EQ(lr_sched_block(s, (uint64_t)id), LR_EBADARG);
        }
        break;
      case 7: {
        int rc = lr_sched_hold(s, (uint64_t)id, &shapes[k], &g);
        if (state[id]) {
          ASSERT_EQ(rc, LR_EBADARG);
        } else if (rc == 1) {
          state[id] = 3;
        } else {
          ASSERT_EQ(rc, 0);
        }
        break;
      }
      }
      ASSERT(lr_sched_check(s));
    }
#undef RND
    /* Drain: everything that can ever run starts once the node is idle;
     * what is left can never fit this node. */
    for (int id = 0; id < MAXID; id++)
      if (state[id] >= 2) {
        ASSERT_EQ(lr_sched_release(s, (uint64_t)id), 0);
        state[id] = 0;
      }
    while (lr_sched_next(s, t, &g)) {
      state[g.id] = 0;
      ASSERT_EQ(lr_sched_release(s, g.id), 0);
    }
    for (int id = 0; id < MAXID; id++)
      if (state[id] == 1) {
        ASSERT(lr_sched_infeasible(s, &shapes[shp[id]], NULL));
        ASSERT_EQ(lr_sched_remove(s, (uint64_t)id), 0);
      }
    ASSERT(lr_sched_check(s));
    ASSERT(idle_exact(s));
    lr_sched_free(s);
  }
}
