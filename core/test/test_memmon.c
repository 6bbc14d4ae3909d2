/* Tests for the memory monitor's policy (raylet/memmon.c) on a fake node:
 * which worker it would kill, and reading the memory in use. */
#include "test/fake_node.h"
#include "test/test.h"

static void lease_of(lr_node_t *n, lr_client_t *c, const char *rid, int retriable)
{
  lr_m_lease_t m = LR_MSG_INIT(LEASE);
  lr_pitem_t res[1];
  res[0].key.s = (lr_pstr_t){"CPU", 3};
  res[0].v.i = lr_res_units(1);
  LR_SET_CSTR(m.rid, rid);
  LR_SET_CSTR(m.name, "f");
  LR_SET_ITEMS(m.res, res, 1);
  if (retriable >= 0) LR_SET_BOOL(m.retriable, retriable);
  lr_lease_request(n, c, &m);
}

static void lease(lr_node_t *n, lr_client_t *c, const char *rid)
{
  lease_of(n, c, rid, -1);
}

TEST(memmon_picks_nothing_without_a_leased_task_worker)
{
  lr_node_t *n = fake_node_new(2, 0, 1 << 20);
  fake_worker(n);
  ASSERT(lr_memmon_pick(n) == NULL);
  fake_node_free(n);
}

TEST(memmon_picks_the_newest_lease_and_never_an_actor)
{
  lr_node_t *n = fake_node_new(3, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *w1 = fake_worker(n), *w2 = fake_worker(n), *w3 = fake_worker(n);
  lease(n, d, "r1");
  lease(n, d, "r2");
  lease(n, d, "r3");
  ASSERT_EQ(w1->state, LR_W_LEASED);
  ASSERT_EQ(w2->state, LR_W_LEASED);
  ASSERT_EQ(w3->state, LR_W_LEASED);
  lr_lease_t *L = lr_memmon_pick(n);
  ASSERT(L);
  /* The newest grant: the lease with the highest number. */
  lr_worker_t *newest = L->worker;
  for (lr_lease_t *o = n->leases; o; o = o->hh.next) ASSERT(o->num <= L->num);
  /* A worker running an actor is never picked. */
  lr_placement_t fake_actor;
  memset(&fake_actor, 0, sizeof(fake_actor));
  newest->actor = &fake_actor;
  lr_lease_t *L2 = lr_memmon_pick(n);
  ASSERT(L2 && L2 != L && L2->worker != newest);
  newest->actor = NULL;
  fake_node_free(n);
}

/* Retriable leases go first, newest first; then the newest of the rest
 * (a lease that does not say is not retriable). */
TEST(memmon_picks_the_newest_retriable_lease_first)
{
  lr_node_t *n = fake_node_new(4, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  for (int i = 0; i < 4; i++) fake_worker(n);
  lease_of(n, d, "once1", 0);
  lease_of(n, d, "retry1", 1);
  lease_of(n, d, "retry2", 1);
  lease_of(n, d, "once2", 0);
  lr_lease_t *L = lr_memmon_pick(n);
  ASSERT(L && L->retriable);
  for (lr_lease_t *o = n->leases; o; o = o->hh.next)
    if (o->retriable) ASSERT(o->num <= L->num);
  lr_lease_t *older = NULL;
  for (lr_lease_t *o = n->leases; o; o = o->hh.next)
    if (o->retriable && o != L) older = o;
  ASSERT(older);
  /* Its worker gone (killed), the older retriable lease is next... */
  lr_placement_t fake_actor;
  memset(&fake_actor, 0, sizeof(fake_actor));
  L->worker->actor = &fake_actor; /* never picked: as good as gone here */
  ASSERT(lr_memmon_pick(n) == older);
  older->worker->actor = &fake_actor;
  /* ...then the newest of those that may not be retried. */
  lr_lease_t *last = lr_memmon_pick(n);
  ASSERT(last && !last->retriable);
  for (lr_lease_t *o = n->leases; o; o = o->hh.next)
    if (!o->retriable) ASSERT(o->num <= last->num);
  L->worker->actor = older->worker->actor = NULL;
  fake_node_free(n);
}

TEST(memmon_reads_the_machine_memory)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  uint64_t used = 0, limit = 0;
  ASSERT_EQ(lr_memmon_usage(n, &used, &limit), 0);
  ASSERT(limit > 0);
  ASSERT(used > 0 && used <= limit);
  fake_node_free(n);
}
