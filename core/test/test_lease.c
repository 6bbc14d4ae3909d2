/* Tests for the lease policy (raylet/lease.c) on a fake node (fake_node.h):
 * grants, waits, ends, blocked workers, depth-first order, returns,
 * cancels, clients and jobs leaving, refused and infeasible requests. */
#include "test/fake_node.h"
#include "test/test.h"

/* -- Helpers --------------------------------------------------------------- */

/* c asks for a worker for cpu CPUs and gpu GPUs (nothing when both are 0:
 * the node's default of 1 CPU). */
static void lease(lr_node_t *n, lr_client_t *c, const char *rid, double cpu,
                  double gpu)
{
  lr_m_lease_t m = LR_MSG_INIT(LEASE);
  lr_pitem_t res[2];
  uint32_t k = 0;
  if (cpu > 0) {
    res[k].key.s = (lr_pstr_t){"CPU", 3};
    res[k++].v.i = lr_res_units(cpu);
  }
  if (gpu > 0) {
    res[k].key.s = (lr_pstr_t){"GPU", 3};
    res[k++].v.i = lr_res_units(gpu);
  }
  LR_SET_CSTR(m.rid, rid);
  LR_SET_CSTR(m.name, "f");
  if (k) LR_SET_ITEMS(m.res, res, k);
  lr_lease_request(n, c, &m);
}

/* The lease id c was granted for rid, or NULL. */
static const char *lid_of(lr_client_t *c, const char *rid)
{
  lr_m_reply_t *r = fake_reply(c, rid);
  return r ? fake_str(&r->lid) : NULL;
}

static int waits(lr_client_t *c, const char *rid)
{
  lr_m_lease_wait_t *w;
  for (int i = 0; (w = fake_msg(c, LR_PT_LEASE_WAIT, i)); i++) {
    const char *got = fake_str(&w->rid);
    if (got && !strcmp(got, rid)) return 1;
  }
  return 0;
}

static void done(lr_node_t *n, lr_worker_t *w)
{
  lr_m_lease_done_t m = LR_MSG_INIT(LEASE_DONE);
  ASSERT(w->lease);
  LR_SET_CSTR(m.lid, w->lease->lid);
  lr_lease_done(n, w, &m);
}

static void give_back(lr_node_t *n, lr_client_t *c, const char *lid)
{
  lr_m_lease_return_t m = LR_MSG_INIT(LEASE_RETURN);
  LR_SET_CSTR(m.lid, lid);
  lr_lease_return(n, c, &m);
}

static void cancel(lr_node_t *n, lr_client_t *c, const char *rid)
{
  lr_m_lease_cancel_t m = LR_MSG_INIT(LEASE_CANCEL);
  LR_SET_CSTR(m.rid, rid);
  lr_lease_cancel(n, c, &m);
}

/* The worker holding the lease granted to c for rid. */
static lr_worker_t *holder(lr_node_t *n, lr_client_t *c, const char *rid)
{
  const char *lid = lid_of(c, rid);
  lr_lease_t *L = NULL;
  ASSERT(lid);
  HASH_FIND(hh, n->leases, lid, strlen(lid), L);
  ASSERT(L && L->worker && L->worker->lease == L);
  return L->worker;
}

static lr_worker_t *other(lr_worker_t *w, lr_worker_t *a, lr_worker_t *b)
{
  return w == a ? b : a;
}

static void check_books(lr_node_t *n) { ASSERT(lr_sched_check(n->sched)); }

/* -- Granting -------------------------------------------------------------- */

TEST(lease_that_fits_is_granted_at_once)
{
  lr_node_t *n = fake_node_new(2, 2, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *w = fake_worker(n);
  lease(n, d, "r1", 1, 1);
  lr_m_lease_start_t *s = fake_msg(w->client, LR_PT_LEASE_START, 0);
  ASSERT(s);
  const char *lid = fake_str(&s->lid);
  ASSERT(lid && strlen(lid) == 16);
  ASSERT_EQ(s->gpus.n, 1);
  ASSERT_EQ(s->gpus.items[0].v.i, 0);
  ASSERT_EQ(fake_count(w->client, LR_PT_JOB), 1); /* introduced to job1 */
  lr_m_reply_t *r = fake_reply(d, "r1");
  ASSERT(r && !LR_HAS(r->err));
  ASSERT_STREQ(fake_str(&r->lid), lid);
  ASSERT_STREQ(fake_str(&r->address), "unix:/fake/w1.sock");
  ASSERT_EQ(r->pid.v.i, w->pid);
  ASSERT(!waits(d, "r1"));
  ASSERT_EQ(w->state, LR_W_LEASED);
  ASSERT_STREQ(w->job, "job1");
  ASSERT_EQ(fake_avail(n, "CPU"), lr_res_units(1));
  ASSERT_EQ(fake_avail(n, "GPU"), lr_res_units(1));
  check_books(n);
  fake_node_free(n);
}

TEST(lease_second_gpu_lease_gets_the_next_gpu_id)
{
  lr_node_t *n = fake_node_new(2, 2, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *a = fake_worker(n), *b = fake_worker(n);
  lease(n, d, "r1", 1, 1);
  lease(n, d, "r2", 1, 1);
  lr_worker_t *first = holder(n, d, "r1"), *second = other(first, a, b);
  lr_m_lease_start_t *s = fake_msg(second->client, LR_PT_LEASE_START, 0);
  ASSERT(s && s->gpus.n == 1);
  ASSERT_EQ(s->gpus.items[0].v.i, 1);
  ASSERT_STREQ(fake_str(&s->lid), lid_of(d, "r2"));
  check_books(n);
  fake_node_free(n);
}

TEST(lease_that_does_not_fit_waits_until_a_lease_is_done)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  fake_worker(n);
  fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lease(n, d, "r2", 1, 0);
  ASSERT(lid_of(d, "r1"));
  ASSERT(waits(d, "r2"));
  ASSERT(!fake_reply(d, "r2"));
  ASSERT_EQ(lr_lease_pending(n), 1);
  lr_worker_t *w1 = holder(n, d, "r1");
  done(n, w1);
  ASSERT(lid_of(d, "r2"));
  ASSERT_EQ(lr_lease_pending(n), 0);
  ASSERT_EQ(fake_avail(n, "CPU"), 0);
  /* The worker just freed is the warmest: it takes the next lease. */
  ASSERT(holder(n, d, "r2") == w1);
  check_books(n);
  fake_node_free(n);
}

TEST(lease_done_from_another_worker_is_ignored)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *a = fake_worker(n), *b = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lr_worker_t *w = holder(n, d, "r1");
  lr_m_lease_done_t m = LR_MSG_INIT(LEASE_DONE);
  LR_SET_CSTR(m.lid, w->lease->lid);
  lr_lease_done(n, other(w, a, b), &m);
  ASSERT(w->lease && w->state == LR_W_LEASED);
  ASSERT_EQ(fake_avail(n, "CPU"), 0);
  check_books(n);
  fake_node_free(n);
}

TEST(lease_worker_blocked_in_get_frees_its_cpu)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *a = fake_worker(n), *b = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lease(n, d, "r2", 1, 0);
  ASSERT(waits(d, "r2"));
  lr_worker_t *w1 = holder(n, d, "r1");
  lr_lease_blocked(n, w1, 1);
  ASSERT_EQ(w1->blocked, 1);
  ASSERT_EQ(n->nblocked, 1);
  ASSERT(holder(n, d, "r2") == other(w1, a, b));
  ASSERT_EQ(fake_avail(n, "CPU"), 0);
  /* Resuming takes the CPU back even if that overcommits. */
  lr_lease_blocked(n, w1, 0);
  ASSERT_EQ(n->nblocked, 0);
  ASSERT_EQ(fake_avail(n, "CPU"), -lr_res_units(1));
  done(n, w1);
  done(n, other(w1, a, b));
  ASSERT_EQ(fake_avail(n, "CPU"), lr_res_units(1));
  check_books(n);
  fake_node_free(n);
}

TEST(lease_ending_while_blocked_gives_back_only_what_it_holds)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lr_worker_t *w = holder(n, d, "r1");
  lr_lease_blocked(n, w, 1);
  ASSERT_EQ(fake_avail(n, "CPU"), lr_res_units(1));
  done(n, w);
  ASSERT_EQ(w->blocked, 0);
  ASSERT_EQ(n->nblocked, 0);
  ASSERT_EQ(fake_avail(n, "CPU"), lr_res_units(1));
  check_books(n);
  fake_node_free(n);
}

TEST(lease_request_from_a_leased_worker_goes_before_older_driver_requests)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *a = fake_worker(n), *b = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lease(n, d, "r2", 1, 0); /* older than the nested request below */
  lr_worker_t *parent = holder(n, d, "r1");
  lease(n, parent->client, "nested", 1, 0);
  ASSERT(waits(parent->client, "nested"));
  lr_lease_blocked(n, parent, 1); /* the parent waits for its child */
  ASSERT(lid_of(parent->client, "nested"));
  ASSERT(!fake_reply(d, "r2"));
  lr_worker_t *child = other(parent, a, b);
  ASSERT(child->lease && child->lease->owner == parent->client);
  ASSERT_STREQ(child->lease->job, "job1"); /* the parent's job */
  check_books(n);
  fake_node_free(n);
}

/* -- Returning and withdrawing --------------------------------------------- */

TEST(lease_return_stops_the_worker_and_frees_it)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *w = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  const char *lid = lid_of(d, "r1");
  give_back(n, d, lid);
  lr_m_lease_stop_t *s = fake_msg(w->client, LR_PT_LEASE_STOP, 0);
  ASSERT(s);
  ASSERT_STREQ(fake_str(&s->lid), lid);
  ASSERT(!w->lease);
  ASSERT_EQ(w->state, LR_W_IDLE);
  ASSERT_EQ(HASH_COUNT(n->leases), 0);
  ASSERT_EQ(fake_avail(n, "CPU"), lr_res_units(1));
  check_books(n);
  fake_node_free(n);
}

TEST(lease_return_by_another_client_is_ignored)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1"), *e = fake_driver(n, "job2");
  lr_worker_t *w = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  give_back(n, e, lid_of(d, "r1"));
  ASSERT_EQ(fake_count(w->client, LR_PT_LEASE_STOP), 0);
  ASSERT(w->lease && w->state == LR_W_LEASED);
  check_books(n);
  fake_node_free(n);
}

TEST(lease_cancel_withdraws_a_pending_request)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *w = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lease(n, d, "r2", 1, 0);
  fake_clear(d);
  cancel(n, d, "r2");
  lr_m_reply_t *r = fake_reply(d, "r2");
  ASSERT(r && !LR_HAS(r->lid) && !LR_HAS(r->err));
  ASSERT_EQ(lr_lease_pending(n), 0);
  lr_sched_stats_t st;
  lr_sched_stats(n->sched, &st);
  ASSERT_EQ(st.queued, 0);
  /* The running lease stays; when it ends nothing else starts. */
  cancel(n, d, "r1");
  ASSERT(w->lease);
  fake_clear(d);
  done(n, w);
  ASSERT_EQ(fake_nframes(d), 0);
  ASSERT_EQ(w->state, LR_W_IDLE);
  check_books(n);
  fake_node_free(n);
}

TEST(lease_cancel_of_a_grant_waiting_for_a_worker_gives_it_back)
{
  lr_node_t *n = fake_node_new(2, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *w = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lease(n, d, "r2", 1, 0); /* fits, but no idle worker: granted, waiting */
  ASSERT(n->granted_head && n->granted_head->granted);
  ASSERT_EQ(fake_avail(n, "CPU"), 0);
  cancel(n, d, "r2");
  lr_m_reply_t *r = fake_reply(d, "r2");
  ASSERT(r && !LR_HAS(r->lid));
  ASSERT(!n->granted_head && !n->granted_tail);
  ASSERT_EQ(fake_avail(n, "CPU"), lr_res_units(1));
  fake_clear(d);
  done(n, w);
  ASSERT_EQ(fake_nframes(d), 0);
  ASSERT_EQ(w->state, LR_W_IDLE);
  check_books(n);
  fake_node_free(n);
}

TEST(lease_waiting_for_a_worker_at_the_process_limit_warns_the_driver)
{
  lr_node_t *n = fake_node_new(2, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  fake_worker(n); /* the limit is one process */
  lease(n, d, "r1", 1, 0);
  ASSERT_EQ(fake_count(d, LR_PT_WARN), 0);
  lease(n, d, "r2", 1, 0);
  lr_m_warn_t *w = fake_msg(d, LR_PT_WARN, 0);
  ASSERT(w && strstr(fake_str(&w->text), "limit of 1 (LRAY_MAX_WORKERS)"));
  ASSERT_EQ(n->nworkers, 1); /* nothing was spawned */
  check_books(n);
  fake_node_free(n);
}

TEST(lease_client_leaving_withdraws_requests_and_orphans_leases)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1"), *e = fake_driver(n, "job2");
  lr_worker_t *w = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lease(n, d, "r2", 1, 0);
  lease(n, e, "e1", 1, 0);
  ASSERT_EQ(lr_lease_pending(n), 2);
  lr_lease_t *L = w->lease;
  fake_leave(n, d);
  ASSERT_EQ(lr_lease_pending(n), 1); /* e1 only */
  ASSERT(w->lease == L && L->owner == NULL);
  ASSERT_EQ(L->state, LR_L_GRANTED);
  done(n, w); /* the worker sees its submitter gone and hands it back */
  ASSERT(lid_of(e, "e1"));
  ASSERT(w->lease && w->lease->owner == e);
  check_books(n);
  fake_node_free(n);
}

TEST(lease_granted_to_a_closing_submitter_is_dropped_at_start)
{
  lr_node_t *n = fake_node_new(2, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *w = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lease(n, d, "r2", 1, 0); /* fits, but no idle worker: granted, waiting */
  ASSERT(waits(d, "r2"));
  ASSERT(n->granted_head && n->granted_head->owner == d);
  ASSERT_EQ(fake_avail(n, "CPU"), 0);
  d->conn.closing = 1; /* the connection is closing, not yet closed */
  done(n, w);
  ASSERT_EQ(HASH_COUNT(n->leases), 0);
  ASSERT(!n->granted_head && !n->granted_tail);
  ASSERT_EQ(w->state, LR_W_IDLE);
  ASSERT(!w->lease);
  ASSERT_EQ(fake_avail(n, "CPU"), lr_res_units(2));
  check_books(n);
  fake_node_free(n);
}

TEST(lease_request_of_a_closing_client_is_dropped_without_a_reply)
{
  lr_node_t *n = fake_node_new(2, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1"), *e = fake_driver(n, "job2");
  fake_worker(n);
  fake_worker(n);
  lease(n, e, "e1", 1, 0); /* another lease: the tables are not empty */
  d->conn.closing = 1;
  lease(n, d, "r1", 1, 0); /* started for a submitter that left: freed */
  ASSERT_EQ(HASH_COUNT(n->leases), 1);
  ASSERT_EQ(fake_nframes(d), 0);
  ASSERT_EQ(n->nidle, 1);
  ASSERT_EQ(n->idle[0]->state, LR_W_IDLE);
  ASSERT_EQ(fake_avail(n, "CPU"), lr_res_units(1));
  check_books(n);
  fake_node_free(n);
}

TEST(lease_drop_job_withdraws_only_that_jobs_pending_requests)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1"), *e = fake_driver(n, "job2");
  lr_worker_t *w = fake_worker(n);
  lease(n, d, "r1", 1, 0);
  lease(n, d, "r2", 1, 0);
  lease(n, e, "e1", 1, 0);
  lr_lease_drop_job(n, "job1");
  lr_m_reply_t *r = fake_reply(d, "r2");
  ASSERT(r && !LR_HAS(r->lid));
  ASSERT(!fake_reply(e, "e1"));
  ASSERT_EQ(lr_lease_pending(n), 1);
  ASSERT(w->lease && w->lease->state == LR_L_GRANTED); /* r1 runs on */
  done(n, w);
  ASSERT(lid_of(e, "e1"));
  check_books(n);
  fake_node_free(n);
}

/* -- Refused and infeasible ------------------------------------------------ */

TEST(lease_with_17_resource_kinds_is_refused)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  fake_worker(n);
  char names[17][16];
  lr_pitem_t res[17];
  for (int i = 0; i < 17; i++) {
    snprintf(names[i], sizeof(names[i]), "k%d", i);
    res[i].key.s = (lr_pstr_t){names[i], strlen(names[i])};
    res[i].v.i = LR_RES_UNIT;
  }
  lr_m_lease_t m = LR_MSG_INIT(LEASE);
  LR_SET_CSTR(m.rid, "r1");
  LR_SET_CSTR(m.name, "wide");
  LR_SET_ITEMS(m.res, res, 17);
  lr_lease_request(n, d, &m);
  lr_m_reply_t *r = fake_reply(d, "r1");
  ASSERT(r && !LR_HAS(r->lid));
  const char *err = fake_str(&r->err);
  ASSERT(err && strstr(err, "resource kinds") && strstr(err, "'wide'"));
  ASSERT(strstr(err, "cannot be scheduled"));
  ASSERT_EQ(HASH_COUNT(n->leases), 0);
  ASSERT(!waits(d, "r1"));
  check_books(n);
  fake_node_free(n);
}

TEST(lease_infeasible_warns_the_jobs_driver_and_stays_pending)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  fake_worker(n);
  lease(n, d, "r1", 4, 0);
  lr_m_warn_t *w = fake_msg(d, LR_PT_WARN, 0);
  ASSERT(w);
  const char *text = fake_str(&w->text);
  ASSERT(strstr(text, "cannot be scheduled") && strstr(text, "needs 4 CPU"));
  ASSERT(strstr(text, "this node has 1"));
  ASSERT(waits(d, "r1"));
  ASSERT_EQ(lr_lease_pending(n), 1);
  fake_clear(d);
  lease(n, d, "r2", 0, 1); /* a kind this node lacks */
  w = fake_msg(d, LR_PT_WARN, 0);
  ASSERT(w && strstr(fake_str(&w->text), "needs 1 GPU"));
  ASSERT_EQ(lr_lease_pending(n), 2);
  check_books(n);
  fake_node_free(n);
}

TEST(lease_actor_worker_blocking_keeps_its_cpu)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  lr_client_t *d = fake_driver(n, "job1");
  lr_worker_t *actor = fake_worker(n);
  fake_worker(n);
  /* The actor holds its CPU for life, as placement.c does. */
  lr_placement_t p;
  memset(&p, 0, sizeof(p));
  lr_res_req_t one;
  lr_res_req_init(&one);
  lr_res_req_set(&one, LR_RES_CPU, lr_res_units(1));
  lr_sched_grant_t g;
  p.num = lr_node_number(n);
  ASSERT_EQ(lr_sched_hold(n->sched, p.num, &one, &g), 1);
  actor->actor = &p;
  actor->state = LR_W_ACTOR;
  lease(n, d, "r1", 1, 0);
  ASSERT(waits(d, "r1"));
  lr_lease_blocked(n, actor, 1);
  ASSERT_EQ(actor->blocked, 0);
  ASSERT_EQ(n->nblocked, 0);
  ASSERT_EQ(fake_avail(n, "CPU"), 0);
  ASSERT(!fake_reply(d, "r1"));
  actor->actor = NULL;
  check_books(n);
  fake_node_free(n);
}
