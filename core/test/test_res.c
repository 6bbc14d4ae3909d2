/* Tests of resource accounting (raylet/res.c): fixed-point units, exact
 * acquire/release, GPU id packing. */
#include "raylet/raylet.h"
#include "common/def.h"
#include "common/errdef.h"
#include "test/test.h"

#include <math.h>

#define U LR_RES_UNIT

/* A request of one kind. */
static lr_res_req_t req1(int id, int64_t units)
{
  lr_res_req_t r;
  lr_res_req_init(&r);
  ASSERT_EQ(lr_res_req_set(&r, id, units), 0);
  return r;
}

static lr_res_req_t req2(int id1, int64_t u1, int id2, int64_t u2)
{
  lr_res_req_t r = req1(id1, u1);
  ASSERT_EQ(lr_res_req_set(&r, id2, u2), 0);
  return r;
}

/* A pool with cpu and gpu totals (units). */
static void pool_with(lr_res_pool_t *p, int64_t cpu, int64_t gpu)
{
  lr_res_pool_init(p);
  ASSERT_EQ(lr_res_pool_set(p, LR_RES_CPU, cpu), 0);
  ASSERT_EQ(lr_res_pool_set(p, LR_RES_GPU, gpu), 0);
  ASSERT(lr_res_pool_check(p));
}

/* The only GPU id in g (which must hold exactly one). */
static int one_id(const lr_res_gpus_t *g)
{
  int ids[LR_RES_MAXGPU];
  ASSERT_EQ(lr_res_gpus_ids(g, ids), 1);
  return ids[0];
}

TEST(res_units)
{
  ASSERT_EQ(lr_res_units(0), 0);
  ASSERT_EQ(lr_res_units(1.0), U);
  ASSERT_EQ(lr_res_units(0.1), 1000);
  ASSERT_EQ(lr_res_units(0.3), 3000);
  ASSERT_EQ(lr_res_units(2.5), 25000);
  ASSERT_EQ(lr_res_units(1.0 / 3), 3333);
  ASSERT_EQ(lr_res_units(2.0 / 3), 6667);
  ASSERT_EQ(lr_res_units(0.0001), 1);
  ASSERT_EQ(lr_res_units(0.000149), 1); /* nearest */
  ASSERT_EQ(lr_res_units(0.000151), 2);
  ASSERT_EQ(lr_res_units(0.99996), U);
  ASSERT_EQ(lr_res_units(1e10), (int64_t)1e14); /* memory in bytes */
  ASSERT_EQ(lr_res_units(0.00009), LR_EBADARG); /* below 1/10000 */
  ASSERT_EQ(lr_res_units(1e-300), LR_EBADARG);
  ASSERT_EQ(lr_res_units(-1), LR_EBADARG);
  ASSERT_EQ(lr_res_units(-0.0001), LR_EBADARG);
  ASSERT_EQ(lr_res_units(NAN), LR_EBADARG);
  ASSERT_EQ(lr_res_units(INFINITY), LR_EBADARG);
  ASSERT_EQ(lr_res_units(1e20), LR_EBADARG);
}

TEST(res_names)
{
  lr_res_names_t t;
  lr_res_names_init(&t);
  ASSERT_EQ(lr_res_lookup(&t, "CPU", 3), LR_RES_CPU);
  ASSERT_EQ(lr_res_lookup(&t, "GPU", 3), LR_RES_GPU);
  ASSERT_EQ(lr_res_lookup(&t, "memory", 6), LR_RES_MEMORY);
  ASSERT_EQ(lr_res_lookup(&t, "object_store_memory", 19),
            LR_RES_OBJECT_STORE_MEMORY);
  ASSERT_EQ(lr_res_lookup(&t, "CP", 2), -1);
  ASSERT_EQ(lr_res_lookup(&t, "Custom", 6), -1);
  int c = lr_res_intern(&t, "Customized", 6); /* only the first 6 bytes */
  ASSERT_EQ(c, 4);
  ASSERT_EQ(lr_res_intern(&t, "Custom", 6), c);
  ASSERT_STREQ(lr_res_name(&t, c), "Custom");
  ASSERT(lr_res_name(&t, 99) == NULL);
  ASSERT(lr_res_name(&t, -1) == NULL);
  ASSERT_EQ(lr_res_intern(&t, "", 0), LR_EBADARG);
  ASSERT_EQ(lr_res_intern(&t, "a\0b", 3), LR_EBADARG);
  char big[LR_RES_NAMEMAX + 2];
  memset(big, 'x', sizeof(big));
  ASSERT_EQ(lr_res_intern(&t, big, LR_RES_NAMEMAX + 1), LR_EBADARG);
  ASSERT(lr_res_intern(&t, big, LR_RES_NAMEMAX) >= 0);
  /* The table is bounded. */
  int last = 0;
  for (int i = 0; i < LR_RES_MAXNAMES + 10; i++) {
    char nm[32];
    int n = snprintf(nm, sizeof(nm), "r%d", i);
    last = lr_res_intern(&t, nm, (size_t)n);
    if (last < 0) break;
  }
  ASSERT_EQ(last, LR_EBADARG);
  ASSERT_EQ(t.n, LR_RES_MAXNAMES);
  ASSERT_EQ(lr_res_intern(&t, "Custom", 6), c); /* known names still work */
  lr_res_names_close(&t);
}

TEST(res_req)
{
  lr_res_req_t r, q;
  lr_res_req_init(&r);
  ASSERT_EQ(lr_res_req_set(&r, 7, 5), 0);
  ASSERT_EQ(lr_res_req_set(&r, LR_RES_CPU, U), 0);
  ASSERT_EQ(lr_res_req_set(&r, 3, 0), 0); /* zero: left out */
  ASSERT_EQ(r.n, 2);
  ASSERT_EQ(r.id[0], LR_RES_CPU); /* sorted by id */
  ASSERT_EQ(lr_res_req_get(&r, 7), 5);
  ASSERT_EQ(lr_res_req_get(&r, 3), 0);
  /* Same content in another order compares equal. */
  lr_res_req_init(&q);
  ASSERT_EQ(lr_res_req_set(&q, LR_RES_CPU, U), 0);
  ASSERT_EQ(lr_res_req_set(&q, 7, 5), 0);
  ASSERT(lr_res_req_eq(&r, &q));
  ASSERT_EQ(lr_res_req_set(&q, 7, 0), 0); /* removes */
  ASSERT_EQ(q.n, 1);
  ASSERT(!lr_res_req_eq(&r, &q));
  /* GPU: fractions up to 1, whole numbers above. */
  ASSERT_EQ(lr_res_req_set(&q, LR_RES_GPU, U / 2), 0);
  ASSERT_EQ(lr_res_req_set(&q, LR_RES_GPU, U), 0);
  ASSERT_EQ(lr_res_req_set(&q, LR_RES_GPU, 3 * U), 0);
  ASSERT_EQ(lr_res_req_set(&q, LR_RES_GPU, U + U / 2), LR_EBADARG);
  ASSERT_EQ(lr_res_req_get(&q, LR_RES_GPU), 3 * U);
  ASSERT_EQ(lr_res_req_set(&q, -1, 1), LR_EBADARG);
  ASSERT_EQ(lr_res_req_set(&q, LR_RES_MAXNAMES, 1), LR_EBADARG);
  ASSERT_EQ(lr_res_req_set(&q, 5, -1), LR_EBADARG);
  ASSERT_EQ(lr_res_req_set(&q, 5, LR_RES_MAXUNITS + 1), LR_EBADARG);
  /* At most LR_RES_REQMAX kinds. */
  lr_res_req_init(&q);
  for (int i = 0; i < LR_RES_REQMAX; i++)
    ASSERT_EQ(lr_res_req_set(&q, 100 + i, 1), 0);
  ASSERT_EQ(lr_res_req_set(&q, 99, 1), LR_EBADARG);
  ASSERT_EQ(lr_res_req_set(&q, 100, 2), 0); /* replacing is fine */
}

TEST(res_fits_acquire_release)
{
  lr_res_pool_t p;
  pool_with(&p, 2 * U, 0);
  ASSERT_EQ(lr_res_pool_set(&p, 4, 3 * U), 0); /* a custom kind */
  lr_res_req_t a = req2(LR_RES_CPU, U, 4, 2 * U);
  lr_res_req_t b = req1(LR_RES_CPU, 2 * U);
  lr_res_req_t c = req1(9, 1); /* a kind the pool lacks */
  lr_res_req_t none;
  lr_res_req_init(&none);
  ASSERT(lr_res_fits(&p, &a));
  ASSERT(lr_res_fits(&p, &b));
  ASSERT(!lr_res_fits(&p, &c));
  ASSERT(lr_res_fits(&p, &none));
  ASSERT_EQ(lr_res_acquire(&p, &a, NULL), 1);
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_CPU), U);
  ASSERT_EQ(lr_res_pool_avail(&p, 4), U);
  ASSERT(!lr_res_fits(&p, &a));
  ASSERT(!lr_res_fits(&p, &b));
  ASSERT_EQ(lr_res_acquire(&p, &b, NULL), 0); /* changes nothing */
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_CPU), U);
  lr_res_release(&p, &a, NULL);
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_CPU), 2 * U);
  ASSERT_EQ(lr_res_pool_avail(&p, 4), 3 * U);
  ASSERT_EQ(lr_res_pool_total(&p, 4), 3 * U);
  ASSERT_EQ(lr_res_pool_total(&p, 9), 0);
  ASSERT(lr_res_pool_check(&p));
  /* Changing a total moves what is available by the same delta. */
  ASSERT_EQ(lr_res_acquire(&p, &a, NULL), 1);
  ASSERT_EQ(lr_res_pool_set(&p, 4, 5 * U), 0);
  ASSERT_EQ(lr_res_pool_avail(&p, 4), 3 * U);
  lr_res_release(&p, &a, NULL);
  ASSERT_EQ(lr_res_pool_avail(&p, 4), 5 * U);
  /* Infeasible: more than the total, or a kind the pool lacks. */
  ASSERT_EQ(lr_res_infeasible(&p, &a), -1);
  ASSERT_EQ(lr_res_infeasible(&p, &c), 9);
  lr_res_req_t big = req1(LR_RES_CPU, 3 * U);
  ASSERT_EQ(lr_res_infeasible(&p, &big), LR_RES_CPU);
  lr_res_pool_close(&p);
}

TEST(res_exact_after_many_fractions)
{
  lr_res_pool_t p;
  pool_with(&p, 4 * U, 2 * U);
  ASSERT_EQ(lr_res_pool_set(&p, LR_RES_MEMORY, lr_res_units(1e9)), 0);
  lr_res_req_t tenth =
      req2(LR_RES_CPU, lr_res_units(0.1), LR_RES_GPU, lr_res_units(0.1));
  ASSERT_EQ(lr_res_req_set(&tenth, LR_RES_MEMORY, lr_res_units(0.1)), 0);
  lr_res_gpus_t g[10];
  /* 0.1 GPU x 10 fills GPU 0 exactly; then everything comes back. */
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(lr_res_acquire(&p, &tenth, &g[i]), 1);
    ASSERT_EQ(one_id(&g[i]), 0);
  }
  ASSERT_EQ(p.gpu_free[0], 0);
  ASSERT_EQ(p.gpu_free[1], U);
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_CPU), 3 * U);
  ASSERT(lr_res_pool_check(&p));
  for (int i = 0; i < 10; i++) lr_res_release(&p, &tenth, &g[i]);
  ASSERT_EQ(p.gpu_free[0], U);
  /* 10,000 fractional pairs, interleaved, of several odd amounts. */
  const double amt[] = {0.1, 0.3, 1.0 / 3, 0.7, 0.0001, 0.25};
  lr_res_req_t r[6];
  for (int k = 0; k < 6; k++)
    r[k] = req2(LR_RES_CPU, lr_res_units(amt[k]), LR_RES_GPU,
                lr_res_units(amt[k]));
  lr_res_gpus_t held[6];
  for (int i = 0; i < 10000; i++) {
    int k = i % 6;
    ASSERT_EQ(lr_res_acquire(&p, &r[k], &held[k]), 1);
    ASSERT(lr_res_pool_check(&p));
    if (k == 5)
      for (int j = 0; j < 6; j++) lr_res_release(&p, &r[j], &held[j]);
    else if (i == 9999)
      for (int j = 0; j <= k; j++) lr_res_release(&p, &r[j], &held[j]);
  }
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_CPU), 4 * U);
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_GPU), 2 * U);
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_MEMORY), lr_res_units(1e9));
  ASSERT_EQ(p.gpu_free[0], U);
  ASSERT_EQ(p.gpu_free[1], U);
  ASSERT(lr_res_pool_check(&p));
  lr_res_pool_close(&p);
}

TEST(res_gpu_packing)
{
  lr_res_pool_t p;
  pool_with(&p, 100 * U, 4 * U);
  ASSERT_EQ(p.ngpu, 4);
  lr_res_req_t half = req1(LR_RES_GPU, U / 2);
  lr_res_req_t f3 = req1(LR_RES_GPU, lr_res_units(0.3));
  lr_res_req_t two = req1(LR_RES_GPU, 2 * U);
  lr_res_req_t one = req1(LR_RES_GPU, U);
  lr_res_gpus_t a, b, c[4], d, e;
  int ids[LR_RES_MAXGPU];

  /* 0.5 + 0.5 share id 0. */
  ASSERT_EQ(lr_res_acquire(&p, &half, &a), 1);
  ASSERT_EQ(lr_res_acquire(&p, &half, &b), 1);
  ASSERT_EQ(one_id(&a), 0);
  ASSERT_EQ(one_id(&b), 0);
  ASSERT_EQ(a.each, U / 2);
  ASSERT_EQ(p.gpu_free[0], 0);
  ASSERT(lr_res_pool_check(&p));
  lr_res_release(&p, &half, &a);
  lr_res_release(&p, &half, &b);

  /* 0.3 x 4: three on id 0 (0.1 left, too little), the fourth on id 1. */
  for (int i = 0; i < 4; i++) ASSERT_EQ(lr_res_acquire(&p, &f3, &c[i]), 1);
  ASSERT_EQ(one_id(&c[0]), 0);
  ASSERT_EQ(one_id(&c[1]), 0);
  ASSERT_EQ(one_id(&c[2]), 0);
  ASSERT_EQ(one_id(&c[3]), 1);
  ASSERT_EQ(p.gpu_free[0], 1000);
  ASSERT_EQ(p.gpu_free[1], 7000);
  ASSERT(lr_res_pool_check(&p));

  /* Whole 2 takes two completely free ids: 2 and 3, not 0 or 1. */
  ASSERT_EQ(lr_res_acquire(&p, &two, &d), 1);
  ASSERT_EQ(lr_res_gpus_ids(&d, ids), 2);
  ASSERT_EQ(ids[0], 2);
  ASSERT_EQ(ids[1], 3);
  ASSERT_EQ(d.each, U);
  /* No free id remains for a whole GPU, though 0.8 is free in total. */
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_GPU), 8000);
  ASSERT(!lr_res_fits(&p, &one));
  ASSERT_EQ(lr_res_acquire(&p, &one, &e), 0);
  /* A fraction picks the fullest id that still fits: 0.1 -> id 0. */
  lr_res_req_t tenth = req1(LR_RES_GPU, 1000);
  ASSERT_EQ(lr_res_acquire(&p, &tenth, &e), 1);
  ASSERT_EQ(one_id(&e), 0);
  lr_res_release(&p, &tenth, &e);
  /* 0.5 does not fit id 0 (0.1 free): it goes to id 1 (0.7 free). */
  ASSERT_EQ(lr_res_acquire(&p, &half, &e), 1);
  ASSERT_EQ(one_id(&e), 1);
  lr_res_release(&p, &half, &e);
  ASSERT(lr_res_pool_check(&p));

  /* Release restores exactly those ids. */
  lr_res_release(&p, &two, &d);
  ASSERT_EQ(p.gpu_free[2], U);
  ASSERT_EQ(p.gpu_free[3], U);
  ASSERT_EQ(lr_res_acquire(&p, &one, &e), 1);
  ASSERT_EQ(one_id(&e), 2); /* lowest completely free id */
  lr_res_release(&p, &one, &e);
  lr_res_release(&p, &f3, &c[3]);
  ASSERT_EQ(p.gpu_free[1], U);
  for (int i = 0; i < 3; i++) lr_res_release(&p, &f3, &c[i]);
  for (int i = 0; i < 4; i++) ASSERT_EQ(p.gpu_free[i], U);
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_GPU), 4 * U);
  ASSERT(lr_res_pool_check(&p));

  /* Ties go to the lowest id; the fullest wins over a lower emptier id. */
  lr_res_req_t q = req1(LR_RES_GPU, 2500);
  ASSERT_EQ(lr_res_acquire(&p, &two, &d), 1); /* ids 0, 1 */
  ASSERT_EQ(lr_res_acquire(&p, &q, &a), 1);
  ASSERT_EQ(one_id(&a), 2);
  lr_res_release(&p, &two, &d);
  ASSERT_EQ(lr_res_acquire(&p, &q, &b), 1); /* id 2 (0.75) beats id 0 (1.0) */
  ASSERT_EQ(one_id(&b), 2);
  lr_res_release(&p, &q, &a);
  lr_res_release(&p, &q, &b);

  /* 1.5 GPUs is rejected when building the request. */
  lr_res_req_t bad;
  lr_res_req_init(&bad);
  ASSERT_EQ(lr_res_req_set(&bad, LR_RES_GPU, lr_res_units(1.5)), LR_EBADARG);
  ASSERT_EQ(bad.n, 0);
  /* More GPUs than the node has can never fit. */
  lr_res_req_t five = req1(LR_RES_GPU, 5 * U);
  ASSERT_EQ(lr_res_infeasible(&p, &five), LR_RES_GPU);
  ASSERT_EQ(lr_res_infeasible(&p, &two), -1);
  ASSERT(lr_res_pool_check(&p));
  lr_res_pool_close(&p);
}

TEST(res_gpu_totals)
{
  lr_res_pool_t p;
  lr_res_pool_init(&p);
  ASSERT_EQ(lr_res_pool_set(&p, LR_RES_GPU, U / 2), LR_EBADARG); /* whole */
  ASSERT_EQ(lr_res_pool_set(&p, LR_RES_GPU, (LR_RES_MAXGPU + 1) * (int64_t)U),
            LR_EBADARG);
  ASSERT_EQ(lr_res_pool_set(&p, LR_RES_GPU, LR_RES_MAXGPU * (int64_t)U), 0);
  ASSERT_EQ(p.ngpu, LR_RES_MAXGPU);
  lr_res_req_t all = req1(LR_RES_GPU, LR_RES_MAXGPU * (int64_t)U);
  lr_res_gpus_t g;
  ASSERT_EQ(lr_res_acquire(&p, &all, &g), 1);
  ASSERT_EQ(g.mask, ~(uint64_t)0);
  /* GPUs in use: the count cannot change. */
  ASSERT_EQ(lr_res_pool_set(&p, LR_RES_GPU, 2 * U), LR_EBADARG);
  lr_res_release(&p, &all, &g);
  ASSERT_EQ(lr_res_pool_set(&p, LR_RES_GPU, 2 * U), 0);
  ASSERT_EQ(p.ngpu, 2);
  ASSERT(lr_res_pool_check(&p));
  /* A fraction on a node without GPUs is infeasible. */
  ASSERT_EQ(lr_res_pool_set(&p, LR_RES_GPU, 0), 0);
  lr_res_req_t f = req1(LR_RES_GPU, 1);
  ASSERT_EQ(lr_res_infeasible(&p, &f), LR_RES_GPU);
  ASSERT(!lr_res_fits(&p, &f));
  lr_res_pool_close(&p);
}

TEST(res_acquire_as)
{
  lr_res_pool_t p, q;
  pool_with(&p, 4 * U, 2 * U);
  pool_with(&q, 4 * U, 2 * U);
  lr_res_req_t r = req2(LR_RES_CPU, U, LR_RES_GPU, U / 4);
  lr_res_gpus_t g;
  ASSERT_EQ(lr_res_acquire(&p, &r, &g), 1);
  ASSERT_EQ(lr_res_acquire_as(&q, &r, &g), 1);
  ASSERT_EQ(q.gpu_free[0], p.gpu_free[0]);
  /* A mismatched assignment is refused and changes nothing. */
  lr_res_gpus_t wrong = {1, U / 2};
  ASSERT_EQ(lr_res_acquire_as(&q, &r, &wrong), 0);
  lr_res_gpus_t outside = {(uint64_t)1 << 5, U / 4};
  ASSERT_EQ(lr_res_acquire_as(&q, &r, &outside), 0);
  ASSERT_EQ(lr_res_acquire_as(&q, &r, NULL), 0);
  ASSERT_EQ(lr_res_pool_avail(&q, LR_RES_CPU), 3 * U);
  lr_res_release(&q, &r, &g);
  lr_res_release(&p, &r, &g);
  ASSERT_EQ(q.gpu_free[0], U);
  ASSERT(lr_res_pool_check(&p) && lr_res_pool_check(&q));
  /* CPU may be adjusted below zero (blocked tasks resuming); GPU not. */
  ASSERT_EQ(lr_res_pool_adjust(&p, LR_RES_CPU, -5 * U), 0);
  ASSERT_EQ(lr_res_pool_avail(&p, LR_RES_CPU), -U);
  ASSERT(!lr_res_fits(&p, &r));
  ASSERT_EQ(lr_res_pool_adjust(&p, LR_RES_GPU, 1), LR_EBADARG);
  ASSERT_EQ(lr_res_pool_adjust(&p, LR_RES_CPU, 5 * U), 0);
  ASSERT(lr_res_pool_check(&p));
  lr_res_pool_close(&p);
  lr_res_pool_close(&q);
}
