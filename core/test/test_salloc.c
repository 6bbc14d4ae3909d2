/* Tests of the shared-memory allocator (objstore/salloc.c). */
#include "objstore/objstore.h"
#include "common/def.h"
#include "common/errdef.h"
#include "test/test.h"

#include <time.h>

#define A LR_SALLOC_ALIGN

static lr_salloc_stats_t stats(const lr_salloc_t *a)
{
  lr_salloc_stats_t st;
  lr_salloc_stats(a, &st);
  return st;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

TEST(salloc_basic)
{
  lr_salloc_t a;
  ASSERT_EQ(lr_salloc_init(&a, 1000), 0);
  ASSERT_EQ(stats(&a).capacity, 960); /* rounded down to 64 */
  ASSERT_EQ(stats(&a).largest_free, 960);
  int64_t x = lr_salloc_alloc(&a, 1);
  int64_t y = lr_salloc_alloc(&a, 65);
  int64_t z = lr_salloc_alloc(&a, 0);
  ASSERT_EQ(x, 0);
  ASSERT_EQ(y, 64);
  ASSERT_EQ(z, 192);
  ASSERT_EQ(stats(&a).used, 256);
  ASSERT_EQ(stats(&a).nallocs, 3);
  ASSERT_EQ(stats(&a).largest_free, 960 - 256);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)y, 65), 0);
  ASSERT_EQ(stats(&a).used, 128);
  ASSERT_EQ(stats(&a).nallocs, 2);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)x, 1), 0);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)z, 0), 0);
  ASSERT_EQ(stats(&a).used, 0);
  ASSERT_EQ(stats(&a).nallocs, 0);
  ASSERT_EQ(stats(&a).largest_free, 960); /* all coalesced again */
  lr_salloc_close(&a);
}

TEST(salloc_alignment)
{
  lr_salloc_t a;
  ASSERT_EQ(lr_salloc_init(&a, 1 << 20), 0);
  uint64_t sizes[] = {1, 63, 64, 65, 100, 127, 128, 129, 1000, 4095, 4097};
  uint64_t total = 0;
  for (size_t i = 0; i < LR_ARRAY_SIZE(sizes); i++) {
    int64_t off = lr_salloc_alloc(&a, sizes[i]);
    ASSERT(off >= 0);
    ASSERT_EQ(off % A, 0);
    ASSERT_EQ((uint64_t)off, total); /* packed: each rounded to 64 */
    total += (sizes[i] + A - 1) / A * A;
  }
  ASSERT_EQ(stats(&a).used, total);
  lr_salloc_close(&a);
}

TEST(salloc_full)
{
  lr_salloc_t a;
  ASSERT_EQ(lr_salloc_init(&a, 4 * A), 0);
  ASSERT_EQ(lr_salloc_alloc(&a, 5 * A), LR_ESTOREFULL);
  ASSERT_EQ(lr_salloc_alloc(&a, UINT64_MAX), LR_ESTOREFULL);
  int64_t x = lr_salloc_alloc(&a, 3 * A);
  ASSERT_EQ(x, 0);
  ASSERT_EQ(lr_salloc_alloc(&a, A + 1), LR_ESTOREFULL);
  ASSERT_EQ(lr_salloc_alloc(&a, A), 3 * A);
  ASSERT_EQ(lr_salloc_alloc(&a, 1), LR_ESTOREFULL);
  ASSERT_EQ(stats(&a).largest_free, 0);
  ASSERT_EQ(stats(&a).used, 4 * A);
  lr_salloc_close(&a);

  /* Degenerate sizes. */
  ASSERT_EQ(lr_salloc_init(&a, 0), 0);
  ASSERT_EQ(lr_salloc_alloc(&a, 0), LR_ESTOREFULL);
  ASSERT_EQ(lr_salloc_free(&a, 0, 0), LR_EBADARG);
  lr_salloc_close(&a);
  ASSERT_EQ(lr_salloc_init(&a, A - 1), 0);
  ASSERT_EQ(stats(&a).capacity, 0);
  ASSERT_EQ(lr_salloc_alloc(&a, 1), LR_ESTOREFULL);
  lr_salloc_close(&a);
  ASSERT_EQ(lr_salloc_init(&a, LR_SALLOC_MAX + 1), LR_EBADARG);
  lr_salloc_close(&a);
}

TEST(salloc_coalesce)
{
  lr_salloc_t a;
  int64_t o[8];
  ASSERT_EQ(lr_salloc_init(&a, 8 * A), 0);
  for (int i = 0; i < 8; i++) ASSERT_EQ(o[i] = lr_salloc_alloc(&a, A), i * A);
  /* Free 1, 3, 2: the three must merge into one 3-unit range. */
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[1], A), 0);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[3], A), 0);
  ASSERT_EQ(stats(&a).largest_free, A);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[2], A), 0);
  ASSERT_EQ(stats(&a).largest_free, 3 * A);
  ASSERT_EQ(lr_salloc_alloc(&a, 3 * A), A);
  ASSERT_EQ(lr_salloc_free(&a, A, 3 * A), 0);
  /* Free the rest in an order that merges on both sides. */
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[0], A), 0);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[5], A), 0);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[7], A), 0);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[6], A), 0);
  ASSERT_EQ(stats(&a).largest_free, 4 * A);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[4], A), 0);
  ASSERT_EQ(stats(&a).largest_free, 8 * A);
  ASSERT_EQ(lr_salloc_alloc(&a, 8 * A), 0);
  lr_salloc_close(&a);
}

TEST(salloc_best_fit_lowest)
{
  lr_salloc_t a;
  int64_t o[10];
  ASSERT_EQ(lr_salloc_init(&a, 100 * A), 0);
  /* Layout: holes of 3, 1, 2, 1, 2 units separated by live units. */
  uint64_t len[10] = {3, 1, 1, 1, 2, 1, 1, 1, 2, 1};
  for (int i = 0; i < 10; i++)
    ASSERT((o[i] = lr_salloc_alloc(&a, len[i] * A)) >= 0);
  for (int i = 0; i < 10; i += 2)
    ASSERT_EQ(lr_salloc_free(&a, (uint64_t)o[i], len[i] * A), 0);
  /* Tail: 100 - 14 = 86 units, the largest. */
  ASSERT_EQ(stats(&a).largest_free, 86 * A);
  /* 1 unit: the 1-unit hole at o[2], not the lower 3-unit one. */
  ASSERT_EQ(lr_salloc_alloc(&a, A), o[2]);
  /* Next 1-unit hole is o[6]. */
  ASSERT_EQ(lr_salloc_alloc(&a, 1), o[6]);
  /* 2 units: two equal holes at o[4] and o[8]: the lower one. */
  ASSERT_EQ(lr_salloc_alloc(&a, 2 * A), o[4]);
  ASSERT_EQ(lr_salloc_alloc(&a, 2 * A), o[8]);
  /* 1 unit: only the 3-unit hole and the tail remain; the hole fits best,
   * and its front is used. */
  ASSERT_EQ(lr_salloc_alloc(&a, A), o[0]);
  ASSERT_EQ(lr_salloc_alloc(&a, 2 * A), o[0] + A);
  /* Now only the tail. */
  ASSERT_EQ(lr_salloc_alloc(&a, A), 14 * A);
  lr_salloc_close(&a);
}

TEST(salloc_reuse_freed_first)
{
  /* Freed memory is reused before fresh tail pages. */
  lr_salloc_t a;
  ASSERT_EQ(lr_salloc_init(&a, 1 << 20), 0);
  int64_t x = lr_salloc_alloc(&a, 4096);
  int64_t y = lr_salloc_alloc(&a, 4096);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)x, 4096), 0);
  ASSERT_EQ(lr_salloc_alloc(&a, 1000), x);
  ASSERT_EQ(lr_salloc_alloc(&a, 3072), x + 1024);
  /* Freeing the last object merges with the tail at the front, which is
   * then handed out first. */
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)y, 4096), 0);
  ASSERT_EQ(lr_salloc_alloc(&a, 64), y);
  lr_salloc_close(&a);
}

TEST(salloc_bad_free)
{
  lr_salloc_t a;
  ASSERT_EQ(lr_salloc_init(&a, 64 * A), 0);
  int64_t x = lr_salloc_alloc(&a, 2 * A);
  int64_t y = lr_salloc_alloc(&a, 100);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)x, 3 * A), LR_EBADARG); /* size */
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)x, A), LR_EBADARG);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)x + A, A), LR_EBADARG); /* inside */
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)x + 1, A), LR_EBADARG); /* align */
  ASSERT_EQ(lr_salloc_free(&a, 10 * A, A), LR_EBADARG);   /* free range */
  ASSERT_EQ(lr_salloc_free(&a, 1000 * A, A), LR_EBADARG); /* outside */
  ASSERT_EQ(lr_salloc_free(&a, 0, UINT64_MAX), LR_EBADARG);
  ASSERT_EQ(lr_salloc_free(&a, UINT64_MAX - 63, A), LR_EBADARG);
  ASSERT_EQ(stats(&a).used, 2 * A + 2 * A);
  ASSERT_EQ(stats(&a).nallocs, 2);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)y, 128), 0); /* same rounding */
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)y, 100), LR_EBADARG); /* double */
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)x, 2 * A), 0);
  ASSERT_EQ(lr_salloc_free(&a, (uint64_t)x, 2 * A), LR_EBADARG); /* double */
  ASSERT_EQ(stats(&a).used, 0);
  ASSERT_EQ(stats(&a).nallocs, 0);
  ASSERT_EQ(stats(&a).largest_free, 64 * A);
  lr_salloc_close(&a);
}

/* -- Randomized stress against a shadow bitmap ---------------------------- */

#define UNITS 2048 /* region of UNITS * 64 bytes */
#define SLOTS 400

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Best fit, lowest offset, computed the slow way from the shadow. */
static int64_t shadow_best(const unsigned char *used, uint64_t units)
{
  int64_t best = -1;
  uint64_t best_len = UINT64_MAX;
  for (uint64_t i = 0; i < UNITS;) {
    if (used[i]) {
      i++;
      continue;
    }
    uint64_t j = i;
    while (j < UNITS && !used[j]) j++;
    if (j - i >= units && j - i < best_len) {
      best_len = j - i;
      best = (int64_t)i;
    }
    i = j;
  }
  return best;
}

static uint64_t shadow_largest(const unsigned char *used)
{
  uint64_t best = 0;
  for (uint64_t i = 0; i < UNITS;) {
    uint64_t j = i;
    while (j < UNITS && !used[j]) j++;
    if (j - i > best) best = j - i;
    i = j + 1;
  }
  return best;
}

TEST(salloc_stress)
{
  static unsigned char used[UNITS];
  struct {
    int64_t off;
    uint64_t n;
  } slot[SLOTS];
  uint64_t bytes = 0, live = 0;
  lr_salloc_t a;
  ASSERT_EQ(lr_salloc_init(&a, UNITS * A + 17), 0);
  for (int i = 0; i < SLOTS; i++) slot[i].off = -1;
  for (int op = 0; op < 20000; op++) {
    int i = (int)(rnd() % SLOTS);
    if (slot[i].off < 0) {
      /* Mostly small, sometimes large sizes; exact multiples too. */
      uint64_t r = rnd();
      uint64_t n = (r & 3) == 0 ? rnd() % (64 * A) : rnd() % (4 * A);
      if ((r & 12) == 0) n = (n / A) * A;
      uint64_t units = n ? (n + A - 1) / A : 1;
      int64_t want = shadow_best(used, units);
      int64_t off = lr_salloc_alloc(&a, n);
      if (want < 0) {
        ASSERT_EQ(off, LR_ESTOREFULL);
        continue;
      }
      ASSERT_EQ(off, want * A);
      for (uint64_t u = 0; u < units; u++) {
        ASSERT(!used[(uint64_t)want + u]); /* no overlap */
        used[(uint64_t)want + u] = 1;
      }
      slot[i].off = off;
      slot[i].n = n;
      bytes += units * A;
      live++;
    } else {
      uint64_t units = slot[i].n ? (slot[i].n + A - 1) / A : 1;
      if (rnd() % 8 == 0) /* a wrong size is refused and changes nothing */
        ASSERT_EQ(lr_salloc_free(&a, (uint64_t)slot[i].off, (units + 1) * A),
                  LR_EBADARG);
      ASSERT_EQ(lr_salloc_free(&a, (uint64_t)slot[i].off, slot[i].n), 0);
      ASSERT_EQ(lr_salloc_free(&a, (uint64_t)slot[i].off, slot[i].n),
                LR_EBADARG);
      for (uint64_t u = 0; u < units; u++)
        used[(uint64_t)slot[i].off / A + u] = 0;
      slot[i].off = -1;
      bytes -= units * A;
      live--;
    }
    lr_salloc_stats_t st = stats(&a);
    ASSERT_EQ(st.used, bytes);
    ASSERT_EQ(st.nallocs, live);
    ASSERT_EQ(st.capacity, UNITS * A);
    ASSERT_EQ(st.largest_free, shadow_largest(used) * A);
  }
  for (int i = 0; i < SLOTS; i++)
    if (slot[i].off >= 0)
      ASSERT_EQ(lr_salloc_free(&a, (uint64_t)slot[i].off, slot[i].n), 0);
  ASSERT_EQ(stats(&a).used, 0);
  ASSERT_EQ(stats(&a).nallocs, 0);
  ASSERT_EQ(stats(&a).largest_free, UNITS * A);
  lr_salloc_close(&a);
}

/* -- Scale ---------------------------------------------------------------- */

TEST(salloc_100k_fast)
{
  enum { N = 100000 };
  static int64_t off[N];
  static uint64_t len[N];
  lr_salloc_t a;
  ASSERT_EQ(lr_salloc_init(&a, (uint64_t)N * 4096), 0);
  double t0 = now_s();
  for (int i = 0; i < N; i++) {
    len[i] = 1 + rnd() % 2048;
    ASSERT((off[i] = lr_salloc_alloc(&a, len[i])) >= 0);
  }
  ASSERT_EQ(stats(&a).nallocs, N);
  /* Punch 50k holes of mixed sizes, then refill them with 100k more
   * operations while 50k-100k allocations stay live. */
  for (int i = 0; i < N; i += 2)
    ASSERT_EQ(lr_salloc_free(&a, (uint64_t)off[i], len[i]), 0);
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < N; i += 2) {
      if (round) ASSERT_EQ(lr_salloc_free(&a, (uint64_t)off[i], len[i]), 0);
      len[i] = 1 + rnd() % 2048;
      ASSERT((off[i] = lr_salloc_alloc(&a, len[i])) >= 0);
    }
  ASSERT_EQ(stats(&a).nallocs, N);
  for (int i = 0; i < N; i++)
    ASSERT_EQ(lr_salloc_free(&a, (uint64_t)off[i], len[i]), 0);
  double dt = now_s() - t0;
  ASSERT_EQ(stats(&a).used, 0);
  ASSERT_EQ(stats(&a).largest_free, (uint64_t)N * 4096);
  /* 400k operations; O(n) per operation would take minutes. */
  printf("  salloc: 400k ops with up to 100k live in %.3f s\n", dt);
  fflush(stdout);
  ASSERT(dt < 2.0);
  lr_salloc_close(&a);
}
