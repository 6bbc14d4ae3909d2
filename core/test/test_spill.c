/* Tests for spilling (raylet/spill.c) on a fake node with a heap buffer for
 * the store: which objects may spill, that bytes come back intact, that
 * ranges and files are freed; and a measure of spill and restore speed. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/errdef.h"
#include "test/fake_node.h"
#include "test/test.h"

static lr_node_t *spill_node(uint64_t store)
{
  lr_node_t *n = fake_node_new(1, 0, store);
  n->shm.base = lr_xmalloc(store);
  n->shm.size = store;
  const char *tmp = getenv("LRAY_TMPDIR");
  snprintf(n->session_dir, sizeof(n->session_dir), "%s/spilltest-XXXXXX", tmp ? tmp : "/tmp");
  mkdir(tmp ? tmp : "/tmp", 0700);
  ASSERT(mkdtemp(n->session_dir));
  return n;
}

/* A stored object of len bytes of byte b, counted by `inner` containing
 * objects and `held` other holders. */
static lr_obj_t *object(lr_node_t *n, const char *id, uint64_t len, int b, int inner, int held)
{
  lr_obj_t *o = lr_obj_get(n, id, strlen(id));
  int64_t off = lr_salloc_alloc(&n->region, len);
  ASSERT(off >= 0);
  memset(n->shm.base + off, b, len);
  o->st = LR_O_OK;
  o->shm_off = off;
  o->shm_len = (int64_t)len;
  o->inner = inner;
  o->count = inner + held;
  o->used_at = lr_node_now();
  return o;
}

static int no_objects(void *ud) { return ((lr_node_t *)ud)->objects == NULL; }

static void spill_node_free(lr_node_t *n)
{
  for (lr_obj_t *o = n->objects; o; o = o->hh.next) {
    o->count = 1;
    o->inner = 0;
    lr_obj_decref(n, o->id, strlen(o->id));
  }
  ASSERT(fake_run(n, no_objects, n, 2000));
  lr_spill_cleanup(n);
  ASSERT_EQ(rmdir(n->session_dir), 0); /* no file left behind */
  lr_free(n->shm.base);
  n->shm.base = NULL;
  fake_node_free(n);
}

TEST(spill_only_objects_counted_by_containers_alone)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_obj_t *held = object(n, "held", 1 << 20, 'h', 1, 1);
  lr_obj_t *inner = object(n, "inner", 1 << 20, 'i', 1, 0);
  ASSERT(!lr_spill_candidate(held));
  ASSERT(lr_spill_candidate(inner));
  ASSERT_EQ(lr_spill_one(n, held), LR_EBADARG);
  ASSERT_EQ(held->shm_len, 1 << 20);
  spill_node_free(n);
}

TEST(spill_makes_room_lru_first_and_restores_the_bytes)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_obj_t *a = object(n, "a", 1 << 20, 'a', 1, 0);
  lr_obj_t *b = object(n, "b", 1 << 20, 'b', 1, 0);
  object(n, "c", 2 << 20, 'c', 0, 1); /* held: stays */
  b->used_at = a->used_at + 1;
  ASSERT(lr_salloc_alloc(&n->region, 1 << 20) < 0);
  ASSERT_EQ(lr_spill_make_room(n, 1 << 20, NULL), 1);
  ASSERT_EQ(a->shm_len, -1); /* least recently used */
  ASSERT_EQ(a->spilled_len, 1 << 20);
  ASSERT_EQ(b->shm_len, 1 << 20);
  ASSERT_EQ(n->spilled_bytes, 1 << 20);
  int64_t off = lr_salloc_alloc(&n->region, 1 << 20);
  ASSERT(off >= 0);
  memset(n->shm.base + off, 'x', 1 << 20); /* a's old range is reused */
  /* No room to restore a: b is spilled for it, never a itself. */
  ASSERT_EQ(lr_spill_restore(n, a), 0);
  ASSERT_EQ(b->shm_len, -1);
  ASSERT_EQ(a->shm_len, 1 << 20);
  for (int i = 0; i < (1 << 20); i += 4093) ASSERT_EQ(n->shm.base[a->shm_off + i], 'a');
  ASSERT_EQ(n->restores, 1);
  lr_salloc_free(&n->region, (uint64_t)off, 1 << 20);
  spill_node_free(n); /* b's file goes with b */
}

TEST(spill_restore_fails_when_the_store_stays_full)
{
  lr_node_t *n = spill_node(2 << 20);
  lr_obj_t *a = object(n, "a", 1 << 20, 'a', 1, 0);
  ASSERT_EQ(lr_spill_one(n, a), 0);
  object(n, "h", 2 << 20, 'h', 0, 1);
  ASSERT_EQ(lr_spill_restore(n, a), LR_ESTOREFULL);
  ASSERT_EQ(a->spilled_len, 1 << 20); /* still on disk */
  spill_node_free(n);
}

TEST(spill_bench)
{
  const uint64_t size = 64 << 20;
  const int k = 4;
  lr_node_t *n = spill_node(size * (uint64_t)k + (1 << 20));
  lr_obj_t *o[4];
  char id[16];
  for (int i = 0; i < k; i++) {
    snprintf(id, sizeof(id), "o%d", i);
    o[i] = object(n, id, size, 'a' + i, 1, 0);
  }
  double t0 = lr_node_now();
  for (int i = 0; i < k; i++) ASSERT_EQ(lr_spill_one(n, o[i]), 0);
  double t1 = lr_node_now();
  for (int i = 0; i < k; i++) ASSERT_EQ(lr_spill_restore(n, o[i]), 0);
  double t2 = lr_node_now();
  for (int i = 0; i < k; i++) ASSERT_EQ(n->shm.base[o[i]->shm_off + size - 1], 'a' + i);
  double gb = (double)size * k / 1e9;
  fprintf(stderr, "  spill: %d x %llu MiB: spill %.2f GB/s, restore %.2f GB/s (page cache, %s)\n",
          k, (unsigned long long)(size >> 20), gb / (t1 - t0), gb / (t2 - t1), n->session_dir);
  spill_node_free(n);
}
