/* Tests for the object directory and the store's ranges (raylet/objdir.c) on
 * a fake node (fake_node.h): values and subscriptions, counts and the free
 * after the grace, lends, allocations (and a full store), owners leaving,
 * duplicate puts. */
#include "test/fake_node.h"
#include "test/test.h"

/* -- Helpers --------------------------------------------------------------- */

#define ID(s) (s), strlen(s)

typedef struct {
  const char *data;
  int64_t off, len; /* len < 0: no shm range */
  const char *refs[4];
} val_t;

static void put(lr_node_t *n, lr_client_t *c, const char *id, val_t v)
{
  lr_m_put_t m = LR_MSG_INIT(PUT);
  lr_pitem_t shm[2], refs[4];
  uint32_t k = 0;
  LR_SET_CSTR(m.id, id);
  if (v.data) LR_SET_CSTR(m.data, v.data);
  if (v.len >= 0) {
    shm[0].v.i = v.off;
    shm[1].v.i = v.len;
    LR_SET_ITEMS(m.shm, shm, 2);
  }
  for (; k < 4 && v.refs[k]; k++)
    refs[k].v.s = (lr_pstr_t){v.refs[k], strlen(v.refs[k])};
  if (k) LR_SET_ITEMS(m.refs, refs, k);
  lr_obj_put(n, c, &m);
}

static void put_data(lr_node_t *n, lr_client_t *c, const char *id,
                     const char *data)
{
  put(n, c, id, (val_t){.data = data, .len = -1});
}

static void expect(lr_node_t *n, lr_client_t *c, const char *id)
{
  lr_m_expect_t m = LR_MSG_INIT(EXPECT);
  LR_SET_CSTR(m.id, id);
  lr_obj_expect(n, c, &m);
}

static void alloc(lr_node_t *n, lr_client_t *c, const char *rid, int64_t size)
{
  lr_m_alloc_t m = LR_MSG_INIT(ALLOC);
  LR_SET_CSTR(m.rid, rid);
  LR_SET_INT(m.size, size);
  lr_obj_alloc(n, c, &m);
}

/* The offset c was given for rid (it must have been). */
static int64_t alloc_now(lr_node_t *n, lr_client_t *c, const char *rid,
                         int64_t size)
{
  alloc(n, c, rid, size);
  lr_m_reply_t *r = fake_reply(c, rid);
  ASSERT(r && LR_HAS(r->off) && !LR_HAS(r->err));
  return r->off.v.i;
}

static int64_t count(lr_node_t *n, const char *id)
{
  lr_obj_t *o = lr_obj_find(n, ID(id));
  return o ? o->count : -1;
}

static uint64_t nallocs(lr_node_t *n)
{
  lr_salloc_stats_t st;
  lr_salloc_stats(&n->region, &st);
  return st.nallocs;
}

/* Runs the loop until id is freed (at most a second). */
static int freed(lr_node_t *n, const char *id) { return fake_freed(n, id); }

typedef struct {
  lr_client_t *c;
  const char *rid;
} answer_t;

static int answered(void *ud)
{
  answer_t *a = ud;
  return fake_reply(a->c, a->rid) != NULL;
}

static int never(void *ud)
{
  (void)ud;
  return 0;
}

/* -- Values ---------------------------------------------------------------- */

TEST(objdir_put_then_subscribe_returns_the_value)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  put_data(n, a, "o1", "abc");
  ASSERT(lr_obj_ready(n, ID("o1")));
  lr_obj_subscribe(n, b, ID("o1"));
  lr_m_obj_t *m = fake_msg(b, LR_PT_OBJ, 0);
  ASSERT(m);
  ASSERT_STREQ(fake_str(&m->id), "o1");
  ASSERT_STREQ(fake_str(&m->data), "abc");
  ASSERT(!LR_HAS(m->shm) && !LR_HAS(m->etype));
  ASSERT_EQ(fake_count(a, LR_PT_OBJ), 0);
  fake_node_free(n);
}

TEST(objdir_subscribe_before_put_gets_the_obj_at_put)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  lr_obj_subscribe(n, b, ID("o1"));
  lr_obj_subscribe(n, b, ID("o1")); /* one waiter per client */
  ASSERT_EQ(fake_nframes(b), 0);
  ASSERT(!lr_obj_ready(n, ID("o1")));
  int64_t off = alloc_now(n, a, "a1", 100);
  put(n, a, "o1", (val_t){.off = off, .len = 100});
  ASSERT_EQ(fake_count(b, LR_PT_OBJ), 1);
  lr_m_obj_t *m = fake_msg(b, LR_PT_OBJ, 0);
  ASSERT_STREQ(fake_str(&m->id), "o1");
  ASSERT_EQ(m->shm.n, 2);
  ASSERT_EQ(m->shm.items[0].v.i, off);
  ASSERT_EQ(m->shm.items[1].v.i, 100);
  ASSERT(!LR_HAS(m->data));
  ASSERT(!lr_obj_find(n, ID("o1"))->waiters);
  fake_node_free(n);
}

/* -- Counts ---------------------------------------------------------------- */

TEST(objdir_hold_counts_each_client_once)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  put_data(n, a, "o1", "x"); /* the putter holds it */
  ASSERT_EQ(count(n, "o1"), 1);
  lr_obj_hold(n, a, ID("o1"));
  ASSERT_EQ(count(n, "o1"), 1);
  lr_obj_hold(n, b, ID("o1"));
  lr_obj_hold(n, b, ID("o1"));
  ASSERT_EQ(count(n, "o1"), 2);
  lr_obj_unhold(n, b, ID("o1"));
  lr_obj_unhold(n, b, ID("o1"));
  ASSERT_EQ(count(n, "o1"), 1);
  ASSERT_EQ(lr_obj_find(n, ID("o1"))->doomed_at < 0, 1);
  fake_node_free(n);
}

TEST(objdir_unreferenced_object_is_freed_after_the_grace)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  n->free_grace = 0;
  int64_t off = alloc_now(n, a, "a1", 1000);
  put(n, a, "o1", (val_t){.off = off, .len = 1000});
  ASSERT_EQ(nallocs(n), 1);
  ASSERT_EQ(HASH_COUNT(a->allocs), 0); /* put: no longer a's to free */
  lr_obj_unhold(n, a, ID("o1"));
  ASSERT(lr_obj_find(n, ID("o1"))); /* freed by the sweep, not at once */
  ASSERT(freed(n, "o1"));
  ASSERT_EQ(nallocs(n), 0);
  ASSERT_EQ(alloc_now(n, a, "a2", 1000), off); /* the range is free again */
  fake_node_free(n);
}

TEST(objdir_object_held_again_during_the_grace_lives)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  n->free_grace = 0.02;
  put_data(n, a, "o1", "x");
  lr_obj_unhold(n, a, ID("o1"));
  lr_obj_hold(n, a, ID("o1"));
  ASSERT(!freed(n, "o1")); /* runs until the sweep has nothing left */
  ASSERT_EQ(count(n, "o1"), 1);
  fake_node_free(n);
}

TEST(objdir_contained_refs_live_while_their_container_does)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  n->free_grace = 0;
  put_data(n, a, "inner", "i");
  put(n, a, "outer", (val_t){.data = "o", .len = -1, .refs = {"inner"}});
  ASSERT_EQ(count(n, "inner"), 2);
  lr_obj_unhold(n, a, ID("inner"));
  ASSERT(!freed(n, "inner"));
  ASSERT_EQ(count(n, "inner"), 1);
  lr_obj_unhold(n, a, ID("outer"));
  ASSERT(freed(n, "outer"));
  ASSERT(freed(n, "inner"));
  ASSERT_EQ(HASH_COUNT(n->objects), 0);
  fake_node_free(n);
}

/* -- Lends ----------------------------------------------------------------- */

static void lend(lr_node_t *n, const char *token, const char *id)
{
  lr_m_lend_t m = LR_MSG_INIT(LEND);
  lr_pitem_t ids[1] = {{.v.s = {id, strlen(id)}}};
  LR_SET_CSTR(m.token, token);
  LR_SET_ITEMS(m.ids, ids, 1);
  lr_obj_lend(n, &m);
}

TEST(objdir_lend_then_claim)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  put_data(n, a, "o1", "x");
  lend(n, "t1", "o1");
  ASSERT_EQ(count(n, "o1"), 2);
  lr_obj_claim(n, ID("t1"));
  ASSERT_EQ(count(n, "o1"), 1);
  ASSERT(!n->lends);
  ASSERT_EQ(n->ntombs, 0);
  fake_node_free(n);
}

TEST(objdir_claim_then_lend)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  put_data(n, a, "o1", "x");
  lr_obj_claim(n, ID("t1"));
  ASSERT_EQ(n->ntombs, 1);
  lend(n, "t1", "o1");
  ASSERT_EQ(count(n, "o1"), 1);
  ASSERT(!n->lends);
  ASSERT_EQ(n->ntombs, 0);
  fake_node_free(n);
}

TEST(objdir_unlend_takes_the_lend_back)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  n->free_grace = 0;
  put_data(n, a, "o1", "x");
  lend(n, "t1", "o1");
  lr_obj_unhold(n, a, ID("o1"));
  ASSERT(!freed(n, "o1")); /* the lend keeps it */
  lr_obj_unlend(n, ID("t1"));
  lr_obj_unlend(n, ID("t1")); /* gone: nothing */
  lr_obj_unlend(n, ID("never"));
  ASSERT(!n->lends);
  ASSERT(freed(n, "o1"));
  fake_node_free(n);
}

/* A result's receiver takes back the lend of a sender that died before the
 * result came; the lend may arrive later, over the dead sender's
 * connection: it is over at once (chaos case 4 leaked such objects). */
TEST(objdir_unlend_before_its_lend)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  put_data(n, a, "o1", "x");
  lr_obj_unlend(n, ID("t1#1:ret"));
  ASSERT_EQ(n->ntombs, 1);
  lend(n, "t1#1:ret", "o1");
  ASSERT_EQ(count(n, "o1"), 1);
  ASSERT(!n->lends);
  ASSERT_EQ(n->ntombs, 0);
  /* A lend under a token already lent replaces it: never two. */
  lend(n, "t2", "o1");
  lend(n, "t2", "o1");
  ASSERT_EQ(count(n, "o1"), 2);
  lr_obj_claim(n, ID("t2"));
  ASSERT_EQ(count(n, "o1"), 1);
  fake_node_free(n);
}

/* -- Lenders and receivers that leave --------------------------------------- */

/* Client c lends id under token to the process with pid to (0: none named). */
static void lend_to(lr_node_t *n, lr_client_t *c, const char *token, const char *id, int64_t to)
{
  lr_m_lend_t m = LR_MSG_INIT(LEND);
  lr_pitem_t ids[1] = {{.v.s = {id, strlen(id)}}};
  LR_SET_CSTR(m.token, token);
  LR_SET_ITEMS(m.ids, ids, 1);
  if (to) LR_SET_INT(m.to, to);
  lr_obj_lend(n, &m);
  lr_obj_lend_peers(n, c, &m);
}

/* The tokens of the nth lender_gone sent to c, joined by spaces ("" none). */
static const char *asked(lr_client_t *c, int nth)
{
  static char out[256];
  lr_m_lender_gone_t *m = fake_msg(c, LR_PT_LENDER_GONE, nth);
  out[0] = 0;
  if (!m) return out;
  for (uint32_t i = 0; i < m->tokens.n; i++)
    snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%.*s", i ? " " : "",
             (int)m->tokens.items[i].v.s.n, m->tokens.items[i].v.s.p);
  return out;
}

/* The lender died before its receiver read the message (it may still sit
 * in the receiver's socket): the node asks the receiver, whose unlend ends
 * the lend. Chaos case (4) leaked such objects. */
TEST(objdir_dead_lenders_lend_ends_when_its_receiver_says_it_never_got_it)
{
  lr_node_t *n = fake_node_new(2, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *lender = fake_worker(n), *recv = fake_worker(n);
  n->free_grace = 0;
  put_data(n, d, "o1", "x");
  lend_to(n, lender->client, "t1#1", "o1", recv->pid);
  lr_obj_unhold(n, d, ID("o1"));
  fake_leave(n, lender->client);
  ASSERT_STREQ(asked(recv->client, 0), "t1#1");
  ASSERT(!freed(n, "o1")); /* not before the receiver answers */
  lr_obj_unlend(n, ID("t1#1"));
  ASSERT(freed(n, "o1"));
  ASSERT(!n->lends);
  fake_node_free(n);
}

/* A receiver that got the message claims it: asking changes nothing. */
TEST(objdir_dead_lenders_lend_claimed_by_its_receiver_stays_claimed)
{
  lr_node_t *n = fake_node_new(2, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *lender = fake_worker(n), *recv = fake_worker(n);
  put_data(n, d, "o1", "x");
  lend_to(n, lender->client, "t1#1", "o1", recv->pid);
  fake_leave(n, lender->client);
  ASSERT_EQ(count(n, "o1"), 2);
  lr_obj_hold(n, recv->client, ID("o1"));
  lr_obj_claim(n, ID("t1#1"));
  ASSERT_EQ(count(n, "o1"), 2); /* the driver and the receiver */
  ASSERT(!n->lends);
  fake_node_free(n);
}

/* A lend whose receiver leaves unclaimed ends with it (a reply whose caller
 * died before reading it), whether the lender lives or not; one naming a
 * receiver that left already ends at once. */
TEST(objdir_lend_ends_when_its_receiver_leaves)
{
  lr_node_t *n = fake_node_new(2, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *w = fake_worker(n);
  lr_client_t *caller = fake_client(n, LR_CL_WORKER, NULL);
  int64_t caller_pid = caller->pid;
  n->free_grace = 0;
  put_data(n, d, "o1", "x");
  put_data(n, d, "o2", "y");
  lend_to(n, w->client, "t1#1:ret", "o1", caller_pid);
  lr_obj_unhold(n, d, ID("o1"));
  ASSERT(!freed(n, "o1"));
  fake_leave(n, caller);
  ASSERT(freed(n, "o1"));
  ASSERT(!n->lends);
  lend_to(n, w->client, "t2#1:ret", "o2", caller_pid);
  ASSERT(!n->lends);
  ASSERT_EQ(count(n, "o2"), 1);
  ASSERT_EQ(fake_count(w->client, LR_PT_LENDER_GONE), 0);
  fake_node_free(n);
}

/* Each receiver is asked once, with all its tokens; a lend with no
 * receiver named (one on another node) stays; a receiver that is gone
 * when its lender leaves needs no asking. */
TEST(objdir_dead_lender_asks_each_receiver_once)
{
  lr_node_t *n = fake_node_new(4, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *lender = fake_worker(n), *r1 = fake_worker(n), *r2 = fake_worker(n);
  put_data(n, d, "o1", "x");
  lend_to(n, lender->client, "a#1", "o1", r1->pid);
  lend_to(n, lender->client, "b#1", "o1", r2->pid);
  lend_to(n, lender->client, "c#1", "o1", r1->pid);
  lend_to(n, lender->client, "d#1", "o1", 0);
  lend_to(n, d, "e#1", "o1", r1->pid); /* another lender's: not asked */
  fake_leave(n, lender->client);
  ASSERT_EQ(fake_count(r1->client, LR_PT_LENDER_GONE), 1);
  ASSERT_EQ(fake_count(r2->client, LR_PT_LENDER_GONE), 1);
  const char *t = asked(r1->client, 0);
  ASSERT(!strcmp(t, "a#1 c#1") || !strcmp(t, "c#1 a#1"));
  ASSERT_STREQ(asked(r2->client, 0), "b#1");
  ASSERT_EQ(count(n, "o1"), 6);
  fake_leave(n, r2->client); /* never answered: its leaving ends b#1 */
  ASSERT_EQ(count(n, "o1"), 5);
  fake_leave(n, r1->client); /* a#1, c#1 and the driver's e#1 */
  ASSERT_EQ(count(n, "o1"), 2); /* the driver and d#1, which names no one */
  fake_node_free(n);
}

/* -- Store space ----------------------------------------------------------- */

TEST(objdir_alloc_replies_with_an_offset)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  int64_t off1 = alloc_now(n, a, "a1", 100);
  int64_t off2 = alloc_now(n, a, "a2", 100);
  ASSERT(off1 >= 0 && off2 >= 0 && off1 != off2);
  ASSERT_EQ(off1 % LR_SALLOC_ALIGN, 0);
  ASSERT_EQ(HASH_COUNT(a->allocs), 2);
  ASSERT_EQ(nallocs(n), 2);
  fake_node_free(n);
}

TEST(objdir_alloc_in_a_full_store_fails_after_retries)
{
  lr_node_t *n = fake_node_new(1, 0, 4096);
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  alloc_now(n, a, "a1", 4096);
  fake_clear(a);
  alloc(n, a, "a2", 1000);
  ASSERT(!fake_reply(a, "a2")); /* not yet: it retries */
  ASSERT_EQ(fake_count(b, LR_PT_GC), 1);
  ASSERT_EQ(fake_count(a, LR_PT_GC), 0);
  answer_t w = {a, "a2"};
  ASSERT(fake_run(n, answered, &w, 5000));
  lr_m_reply_t *r = fake_reply(a, "a2");
  ASSERT(!LR_HAS(r->off));
  const char *err = fake_str(&r->err);
  ASSERT(err && strstr(err, "the object store is full"));
  ASSERT(strstr(err, "cannot store 1000 bytes"));
  ASSERT(strstr(err, "4096 of 4096 bytes in use"));
  ASSERT_EQ(fake_count(b, LR_PT_GC), 1); /* asked once */
  fake_node_free(n);
}

TEST(objdir_alloc_waits_until_space_frees)
{
  lr_node_t *n = fake_node_new(1, 0, 4096);
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  alloc_now(n, b, "b1", 4096);
  alloc(n, a, "a1", 1000);
  ASSERT(!fake_reply(a, "a1"));
  fake_leave(n, b); /* its unput range goes back */
  answer_t w = {a, "a1"};
  ASSERT(fake_run(n, answered, &w, 2000));
  lr_m_reply_t *r = fake_reply(a, "a1");
  ASSERT(LR_HAS(r->off) && !LR_HAS(r->err));
  ASSERT_EQ(HASH_COUNT(a->allocs), 1);
  fake_node_free(n);
}

TEST(objdir_alloc_frees_objects_in_their_grace_at_once)
{
  lr_node_t *n = fake_node_new(1, 0, 4096);
  lr_client_t *a = fake_driver(n, "job1");
  n->free_grace = 60;
  int64_t off = alloc_now(n, a, "a1", 4096);
  put(n, a, "o1", (val_t){.off = off, .len = 4096});
  lr_obj_unhold(n, a, ID("o1"));
  ASSERT(lr_obj_find(n, ID("o1")));
  ASSERT_EQ(alloc_now(n, a, "a2", 4096), off);
  ASSERT(!lr_obj_find(n, ID("o1")));
  fake_node_free(n);
}

TEST(objdir_alloc_for_a_client_that_left_is_dropped)
{
  lr_node_t *n = fake_node_new(1, 0, 4096);
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  alloc_now(n, b, "b1", 4096);
  alloc(n, a, "a1", 1000);
  fake_leave(n, a);
  /* The retry timer sees no client, answers nobody and closes. */
  fake_run(n, never, NULL, 1000);
  ASSERT(!uv_loop_alive(n->loop));
  ASSERT_EQ(nallocs(n), 1);
  fake_node_free(n);
}

TEST(objdir_alloc_of_zero_bytes_is_freed_when_its_client_leaves)
{
  lr_node_t *n = fake_node_new(1, 0, 4096);
  lr_client_t *a = fake_driver(n, "job1");
  alloc_now(n, a, "a1", 0);
  alloc_now(n, a, "a2", -5);
  ASSERT_EQ(nallocs(n), 2);
  fake_leave(n, a);
  ASSERT_EQ(nallocs(n), 0);
  fake_node_free(n);
}

/* -- Owners leaving -------------------------------------------------------- */

TEST(objdir_expected_object_fails_when_its_owner_leaves)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *owner = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  expect(n, owner, "o1");
  ASSERT_EQ(count(n, "o1"), 1);
  lr_obj_subscribe(n, b, ID("o1"));
  int64_t pid = owner->pid;
  fake_leave(n, owner);
  lr_m_obj_t *m = fake_msg(b, LR_PT_OBJ, 0);
  ASSERT(m);
  ASSERT_STREQ(fake_str(&m->id), "o1");
  ASSERT_STREQ(fake_str(&m->etype), "OwnerDiedError");
  const char *msg = fake_str(&m->emsg);
  char want[64];
  snprintf(want, sizeof(want), "(pid %lld,", (long long)pid);
  ASSERT(msg && strstr(msg, "object o1 is lost") && strstr(msg, want));
  ASSERT(!LR_HAS(m->data) && !LR_HAS(m->shm));
  lr_obj_t *o = lr_obj_find(n, ID("o1"));
  ASSERT(o && o->st == LR_O_ERR);
  fake_node_free(n);
}

TEST(objdir_expected_object_put_before_its_owner_leaves_stays)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *owner = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  expect(n, owner, "o1");
  lr_obj_hold(n, b, ID("o1"));
  put_data(n, owner, "o1", "v");
  fake_leave(n, owner);
  lr_obj_t *o = lr_obj_find(n, ID("o1"));
  ASSERT(o && o->st == LR_O_OK && !o->etype);
  ASSERT_EQ(count(n, "o1"), 1);
  fake_node_free(n);
}

TEST(objdir_why_says_nothing_produces_an_unknown_object)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  char text[300];
  ASSERT_EQ(lr_obj_why(n, ID("o1"), text, sizeof(text)), 1);
  ASSERT(strstr(text, "object o1: nothing is producing it"));
  lr_obj_hold(n, a, ID("o1")); /* held, but nobody stores it */
  ASSERT_EQ(lr_obj_why(n, ID("o1"), text, sizeof(text)), 1);
  expect(n, a, "o1");
  ASSERT_EQ(lr_obj_why(n, ID("o1"), text, sizeof(text)), 0);
  put_data(n, a, "o2", "v");
  ASSERT_EQ(lr_obj_why(n, ID("o2"), text, sizeof(text)), 0);
  fake_node_free(n);
}

/* -- Duplicates and leftovers ---------------------------------------------- */

TEST(objdir_second_put_keeps_the_duplicate_range_until_the_object_is_freed)
{
  /* A retried task's worker puts the result again and sends its caller the
   * second range: that range must not be handed out again while the object
   * lives (bench: chaos/chaos_spec.lua (4), a ref read another task's
   * result). */
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1");
  n->free_grace = 0;
  int64_t first = alloc_now(n, a, "a1", 100);
  int64_t second = alloc_now(n, a, "a2", 100);
  put(n, a, "o1", (val_t){.off = first, .len = 100});
  put(n, a, "o1", (val_t){.off = second, .len = 100});
  ASSERT_EQ(nallocs(n), 2);
  ASSERT_EQ(HASH_COUNT(a->allocs), 0);
  lr_obj_t *o = lr_obj_find(n, ID("o1"));
  ASSERT_EQ(o->shm_off, first);
  /* (Putting a range again is refused: spec/protocol_spec.lua, RANGE.) */
  ASSERT_EQ(count(n, "o1"), 1);
  int64_t third = alloc_now(n, a, "a3", 100);
  ASSERT(third != first && third != second);
  lr_obj_unhold(n, a, ID("o1"));
  ASSERT(freed(n, "o1"));
  ASSERT_EQ(nallocs(n), 1); /* only a3 is left */
  fake_node_free(n);
}

TEST(objdir_client_leaving_frees_its_unput_allocations)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *a = fake_driver(n, "job1"), *b = fake_driver(n, "job2");
  n->free_grace = 0;
  int64_t kept = alloc_now(n, a, "a1", 100);
  alloc_now(n, a, "a2", 100);
  alloc_now(n, a, "a3", 5000);
  put(n, a, "o1", (val_t){.off = kept, .len = 100});
  lr_obj_hold(n, b, ID("o1"));
  ASSERT_EQ(nallocs(n), 3);
  fake_leave(n, a);
  ASSERT_EQ(nallocs(n), 1); /* the put one stays: b holds it */
  ASSERT_EQ(count(n, "o1"), 1);
  ASSERT(!freed(n, "o1"));
  fake_node_free(n);
}
