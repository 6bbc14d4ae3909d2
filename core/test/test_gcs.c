/* Tests for the head (core/gcs): a fake node manager records every message
 * the head sends (encoded, then decoded for the checks) and drives the actor
 * state machine through its messages: placement, readiness, restarts, kills,
 * names, jobs, owners, handles (the grace timer on a real loop), init
 * failures, lists, and messages with fields missing. */
#include <uv.h>
#include "gcs/gcs.h"
#include "proto/proto.h"
#include "test/test.h"

/* -- The fake env ---------------------------------------------------------- */

#define MAX_SENT 512

typedef struct {
  uint64_t client; /* 0: to the node manager */
  lr_buf_t b;
} sent_t;

static sent_t sent[MAX_SENT];
static int nsent;
static lr_arena_t arena;
static uv_loop_t loop;
static lr_gcs_t *g;

static void record(uint64_t client, const void *m)
{
  if (nsent == MAX_SENT) FAIL_("too many messages");
  sent[nsent].client = client;
  lr_buf_init(&sent[nsent].b);
  lr_proto_encode(&sent[nsent].b, m);
  nsent++;
}

static void on_send(void *ud, uint64_t client, const void *m)
{
  ASSERT(ud == &loop);
  ASSERT(client != 0);
  record(client, m);
}

static void on_raylet(void *ud, const void *m)
{
  ASSERT(ud == &loop);
  record(0, m);
}

/* A broadcast's bytes, encoded once by the head. */
static void on_send_encoded(void *ud, uint64_t client, const char *msg, size_t len)
{
  ASSERT(ud == &loop);
  ASSERT(client != 0);
  if (nsent == MAX_SENT) FAIL_("too many messages");
  sent[nsent].client = client;
  lr_buf_init(&sent[nsent].b);
  lr_buf_append(&sent[nsent].b, msg, len);
  nsent++;
}

static void *decode(int i)
{
  void *m = NULL;
  char err[128];
  if (lr_proto_decode(sent[i].b.data, sent[i].b.len, &arena, &m, err,
                      sizeof(err)) < 0)
    FAIL_("the head sent a message that does not decode: %s", err);
  return m;
}

static int type_at(int i) { return ((lr_prec_t *)decode(i))->type; }

/* The last message of type sent to client (0: the node manager) at or after
 * index from, or NULL. */
static void *last(int type, uint64_t client, int from)
{
  for (int i = nsent - 1; i >= from; i--)
    if (sent[i].client == client && type_at(i) == type) return decode(i);
  return NULL;
}

static int count(int type, uint64_t client, int from)
{
  int n = 0;
  for (int i = from; i < nsent; i++)
    n += sent[i].client == client && type_at(i) == type;
  return n;
}

/* A field as a C string in the arena ("" when absent would hide bugs:
 * NULL). */
static const char *sv(const lr_pstr_t *v)
{
  char *p = lr_arena_alloc(&arena, v->n + 1);
  memcpy(p, v->p, v->n);
  p[v->n] = '\0';
  return p;
}

static const char *s(const lr_pf_t *f)
{
  return LR_HAS(*f) ? sv(&f->v.s) : NULL;
}

/* A head whose handle grace is grace seconds. */
static void setup_grace(double grace)
{
  lr_gcs_env_t env = {.ud = &loop,
                      .loop = &loop,
                      .send = on_send,
                      .to_raylet = on_raylet,
                      .handle_grace = grace,
                      .send_encoded = on_send_encoded};
  uv_loop_init(&loop);
  g = lr_gcs_new(&env);
}

static void setup(void) { setup_grace(0); }

static void teardown(void)
{
  lr_gcs_free(g);
  uv_run(&loop, UV_RUN_NOWAIT); /* the grace timers close */
  ASSERT_EQ(uv_loop_close(&loop), 0);
  for (int i = 0; i < nsent; i++) lr_buf_free(&sent[i].b);
  nsent = 0;
  lr_arena_free(&arena);
}

/* -- Messages to the head -------------------------------------------------- */

static void job(const char *id, const char *ns)
{
  lr_m_job_t m = LR_MSG_INIT(JOB);
  LR_SET_CSTR(m.job, id);
  if (ns) LR_SET_CSTR(m.namespace, ns);
  lr_gcs_recv(g, 0, &m);
}

static void job_end(const char *id)
{
  lr_m_job_end_t m = LR_MSG_INIT(JOB_END);
  LR_SET_CSTR(m.job, id);
  lr_gcs_recv(g, 0, &m);
}

typedef struct {
  const char *name, *ns, *lifetime, *owner, *job, *hold;
  int get_if_exists;
  int max_restarts;
} copts_t;

/* client creates actor aid (class "Cls", method ping) with rid "c". */
static void create_ex(uint64_t client, const char *aid, const copts_t *o)
{
  lr_m_actor_create_t m = LR_MSG_INIT(ACTOR_CREATE);
  lr_m_actor_opts_t opts = LR_MSG_INIT(ACTOR_OPTS);
  lr_pitem_t meth = {.key.s = {"ping", 4}, .v.b = 1};
  lr_pitem_t held = {.v.s = {o && o->hold ? o->hold : "", 0}};
  LR_SET_CSTR(m.rid, "c");
  LR_SET_CSTR(m.aid, aid);
  LR_SET_CSTR(m.ch, "h1");
  LR_SET_STR(m.args, "A\0B", 3);
  LR_SET_CSTR(m.cname, "Cls");
  LR_SET_ITEMS(m.methods, &meth, 1);
  LR_SET_CSTR(m.job, o && o->job ? o->job : "j1");
  if (o && o->owner) LR_SET_CSTR(m.owner, o->owner);
  if (o && o->hold) {
    held.v.s.n = strlen(o->hold);
    LR_SET_ITEMS(m.actors, &held, 1);
  }
  if (o) {
    if (o->name) LR_SET_CSTR(opts.name, o->name);
    if (o->ns) LR_SET_CSTR(opts.namespace, o->ns);
    if (o->lifetime) LR_SET_CSTR(opts.lifetime, o->lifetime);
    if (o->get_if_exists) LR_SET_BOOL(opts.get_if_exists, 1);
    if (o->max_restarts) LR_SET_INT(opts.max_restarts, o->max_restarts);
    LR_SET_REC(m.opts, &opts);
  }
  lr_gcs_recv(g, client, &m);
}

static void create(const char *aid, const copts_t *o) { create_ex(1, aid, o); }

static void aid_msg(int type, uint64_t client, const char *aid)
{
  /* Room for the largest of them; aid is the first field of each. */
  lr_m_actor_create_t room[2];
  memset(room, 0, sizeof(room));
  lr_m_actor_sub_t *m = (lr_m_actor_sub_t *)room;
  m->type = type;
  LR_SET_CSTR(m->aid, aid);
  lr_gcs_recv(g, client, m);
}

static void placed(const char *aid, int64_t pid)
{
  lr_m_actor_placed_t m = LR_MSG_INIT(ACTOR_PLACED);
  LR_SET_CSTR(m.aid, aid);
  LR_SET_INT(m.pid, pid);
  LR_SET_CSTR(m.node_id, "n1");
  lr_gcs_recv(g, 0, &m);
}

static void ready(const char *aid)
{
  lr_m_actor_ready_t m = LR_MSG_INIT(ACTOR_READY);
  LR_SET_CSTR(m.aid, aid);
  LR_SET_CSTR(m.addr, "unix:/w");
  lr_gcs_recv(g, 3, &m);
}

static void exited(const char *aid, int64_t pid, int status, int sig)
{
  lr_m_worker_exit_t m = LR_MSG_INIT(WORKER_EXIT);
  LR_SET_CSTR(m.aid, aid);
  LR_SET_INT(m.pid, pid);
  LR_SET_INT(m.status, status);
  LR_SET_INT(m.signal, sig);
  lr_gcs_recv(g, 0, &m);
}

static void kill_actor(const char *aid, int no_restart)
{
  lr_m_kill_actor_t m = LR_MSG_INIT(KILL_ACTOR);
  LR_SET_CSTR(m.rid, "k");
  LR_SET_CSTR(m.aid, aid);
  if (no_restart >= 0) LR_SET_BOOL(m.no_restart, no_restart);
  lr_gcs_recv(g, 2, &m);
}

static void client_gone(uint64_t client)
{
  lr_m_client_gone_t m = LR_MSG_INIT(CLIENT_GONE);
  LR_SET_INT(m.client, client);
  lr_gcs_recv(g, 0, &m);
}

/* Subscribes client 2 and returns the notice it gets now. */
static lr_m_actor_t *sub(const char *aid)
{
  aid_msg(LR_PT_ACTOR_SUB, 2, aid);
  lr_m_actor_t *n = last(LR_PT_ACTOR, 2, 0);
  ASSERT(n);
  return n;
}

/* The state actor aid is in, by a fresh subscription (client 9). */
static const char *state_of(const char *aid)
{
  aid_msg(LR_PT_ACTOR_SUB, 9, aid);
  lr_m_actor_t *n = last(LR_PT_ACTOR, 9, 0);
  ASSERT(n);
  return s(&n->state);
}

static const char *cause_of(const char *aid)
{
  aid_msg(LR_PT_ACTOR_SUB, 9, aid);
  return s(&((lr_m_actor_t *)last(LR_PT_ACTOR, 9, 0))->cause);
}

/* A running, ready actor "a1" (pid 100) with client 2 subscribed. */
static void alive_actor(const copts_t *o)
{
  create("a1", o);
  sub("a1");
  placed("a1", 100);
  ready("a1");
  ASSERT_STREQ(state_of("a1"), "ALIVE");
}

/* -- Creation and readiness ------------------------------------------------ */

TEST(gcs_create_places)
{
  setup();
  job("j1", "ns1");
  lr_m_fn_t fn = LR_MSG_INIT(FN);
  LR_SET_CSTR(fn.h, "h1");
  LR_SET_STR(fn.code, "co\0de", 5);
  lr_gcs_recv(g, 1, &fn);
  create("a1", NULL);
  lr_m_actor_place_t *p = last(LR_PT_ACTOR_PLACE, 0, 0);
  ASSERT(p);
  ASSERT_STREQ(s(&p->aid), "a1");
  ASSERT_STREQ(s(&p->job), "j1");
  ASSERT_STREQ(s(&p->cname), "Cls");
  ASSERT_EQ(p->code.v.s.n, 5);
  ASSERT(!memcmp(p->code.v.s.p, "co\0de", 5));
  ASSERT_EQ(p->args.v.s.n, 3);
  ASSERT_EQ(p->place.n, 1); /* one CPU, as nothing was asked */
  ASSERT_STREQ(sv(&p->place.items[0].key.s), "CPU");
  ASSERT_EQ(p->place.items[0].v.i, 10000);
  lr_m_reply_t *r = last(LR_PT_REPLY, 1, 0);
  ASSERT(r);
  ASSERT_STREQ(s(&r->rid), "c");
  ASSERT_STREQ(s(&r->aid), "a1");
  ASSERT(LR_HAS(r->existed) && !r->existed.v.b);
  ASSERT_STREQ(s(&r->cname), "Cls");
  ASSERT_EQ(r->methods.n, 1);
  ASSERT_STREQ(sv(&r->methods.items[0].key.s), "ping");
  ASSERT(!LR_HAS(r->err));

  lr_m_actor_t *n = sub("a1");
  ASSERT_STREQ(s(&n->state), "PENDING");
  ASSERT_EQ(n->restarts.v.i, 0);
  int mark = nsent;
  placed("a1", 100);
  ASSERT_EQ(nsent, mark); /* still PENDING: nothing to tell */
  ready("a1");
  n = last(LR_PT_ACTOR, 2, mark);
  ASSERT(n);
  ASSERT_STREQ(s(&n->state), "ALIVE");
  ASSERT_STREQ(s(&n->addr), "unix:/w");
  ASSERT_EQ(n->pid.v.i, 100);
  ASSERT_STREQ(s(&n->cname), "Cls");
  teardown();
}

/* -- Restarts -------------------------------------------------------------- */

TEST(gcs_restart_then_dead)
{
  setup();
  job("j1", "ns1");
  alive_actor(&(copts_t){.max_restarts = 1});
  int mark = nsent;
  exited("a1", 100, 1, 0);
  lr_m_actor_t *n = last(LR_PT_ACTOR, 2, mark);
  ASSERT(n);
  ASSERT_STREQ(s(&n->state), "RESTARTING");
  ASSERT_STREQ(s(&n->cause), "its worker process (pid 100) exited with code 1");
  ASSERT_EQ(n->restarts.v.i, 1);
  ASSERT(!LR_HAS(n->pid));
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 1);
  ASSERT_EQ(count(LR_PT_ACTOR_STOP, 0, mark), 0);
  ASSERT_STREQ(state_of("a1"), "PENDING");

  placed("a1", 101);
  exited("a1", 100, 0, 9); /* the first process again: stale */
  ASSERT_STREQ(state_of("a1"), "PENDING");
  ready("a1");
  ASSERT_STREQ(state_of("a1"), "ALIVE");
  mark = nsent;
  exited("a1", 101, 0, 9);
  n = last(LR_PT_ACTOR, 2, mark);
  ASSERT_STREQ(s(&n->state), "DEAD");
  ASSERT_STREQ(s(&n->cause),
               "its worker process (pid 101) was killed by signal "
               "9 (after 1 restart; max_restarts = 1)");
  lr_m_actor_stop_t *st = last(LR_PT_ACTOR_STOP, 0, mark);
  ASSERT(st && LR_HAS(st->final) && st->final.v.b);
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 0);
  teardown();
}

/* Only actors of a live job (or detached ones) come back. */
TEST(gcs_no_restart_without_job)
{
  setup();
  job("j1", "ns1");
  alive_actor(&(copts_t){.max_restarts = -1});
  create("x1", &(copts_t){.max_restarts = -1, .job = "gone"});
  placed("x1", 300);
  exited("a1", 100, 0, 0);
  ASSERT_STREQ(state_of("a1"), "PENDING"); /* restarted: j1 lives */
  exited("x1", 300, 0, 0);
  ASSERT_STREQ(state_of("x1"), "DEAD");
  ASSERT_STREQ(cause_of("x1"),
               "its worker process (pid 300) exited with code 0");
  teardown();
}

TEST(gcs_unplaceable)
{
  setup();
  job("j1", "ns1");
  create("a1", &(copts_t){.max_restarts = 3});
  lr_m_worker_exit_t m = LR_MSG_INIT(WORKER_EXIT);
  LR_SET_CSTR(m.aid, "a1");
  LR_SET_CSTR(m.cause, "it cannot be placed: no GPU");
  int mark = nsent;
  lr_gcs_recv(g, 0, &m);
  ASSERT_STREQ(state_of("a1"), "DEAD");
  ASSERT_STREQ(cause_of("a1"), "it cannot be placed: no GPU");
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 0);
  ASSERT_EQ(count(LR_PT_ACTOR_STOP, 0, mark), 1);
  teardown();
}

/* -- Kills ----------------------------------------------------------------- */

TEST(gcs_kill_waits_for_exit)
{
  setup();
  job("j1", "ns1");
  alive_actor(&(copts_t){.max_restarts = 5});
  int mark = nsent;
  kill_actor("a1", 1);
  lr_m_actor_stop_t *st = last(LR_PT_ACTOR_STOP, 0, mark);
  ASSERT(st && LR_HAS(st->final) && st->final.v.b);
  ASSERT_STREQ(s(&st->aid), "a1");
  ASSERT(!last(LR_PT_REPLY, 2, mark)); /* not dead yet */
  ASSERT_STREQ(state_of("a1"), "ALIVE");
  exited("a1", 100, 0, 9);
  lr_m_reply_t *r = last(LR_PT_REPLY, 2, mark);
  ASSERT(r);
  ASSERT_STREQ(s(&r->rid), "k");
  ASSERT(!LR_HAS(r->err));
  ASSERT_STREQ(state_of("a1"), "DEAD");
  ASSERT_STREQ(cause_of("a1"), "it was killed by lray.kill");
  ASSERT_EQ(count(LR_PT_ACTOR_STOP, 0, mark), 1); /* final went once */
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 0);
  /* Killing the dead answers at once. */
  mark = nsent;
  kill_actor("a1", -1);
  ASSERT(last(LR_PT_REPLY, 2, mark));
  kill_actor("nobody", 1);
  ASSERT_EQ(count(LR_PT_REPLY, 2, mark), 2);
  teardown();
}

TEST(gcs_kill_with_restart)
{
  setup();
  job("j1", "ns1");
  alive_actor(&(copts_t){.max_restarts = 1});
  int mark = nsent;
  kill_actor("a1", 0);
  ASSERT(last(LR_PT_REPLY, 2, mark)); /* it comes back: no wait */
  lr_m_actor_stop_t *st = last(LR_PT_ACTOR_STOP, 0, mark);
  ASSERT(st && !LR_HAS(st->final));
  exited("a1", 100, 0, 9);
  lr_m_actor_t *n = last(LR_PT_ACTOR, 2, mark);
  ASSERT_STREQ(s(&n->state), "RESTARTING");
  ASSERT_STREQ(s(&n->cause), "it was killed by lray.kill");
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 1);
  /* Not yet placed again: a kill ends it at once. */
  mark = nsent;
  kill_actor("a1", 1);
  ASSERT(last(LR_PT_REPLY, 2, mark));
  ASSERT_STREQ(state_of("a1"), "DEAD");
  st = last(LR_PT_ACTOR_STOP, 0, mark);
  ASSERT(st && st->final.v.b);
  teardown();
}

/* -- Names
 * ---------------------------------------------------------------------- */

TEST(gcs_names)
{
  setup();
  job("j1", "ns1");
  create("a1", &(copts_t){.name = "svc"});
  int mark = nsent;
  create("a2", &(copts_t){.name = "svc"});
  lr_m_reply_t *r = last(LR_PT_REPLY, 1, mark);
  ASSERT_STREQ(s(&r->err), "an actor named 'svc' already exists in namespace "
                           "'ns1'; pick another name, kill the old actor, or "
                           "pass get_if_exists = true");
  ASSERT(!LR_HAS(r->aid));
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 0);
  mark = nsent;
  create("a3", &(copts_t){.name = "svc", .get_if_exists = 1});
  r = last(LR_PT_REPLY, 1, mark);
  ASSERT_STREQ(s(&r->aid), "a1");
  ASSERT(r->existed.v.b);
  ASSERT_EQ(r->methods.n, 1);
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 0);
  /* Another namespace is another name. */
  create("a4", &(copts_t){.name = "svc", .ns = "other"});
  ASSERT_STREQ(state_of("a4"), "PENDING");

  lr_m_get_actor_t ga = LR_MSG_INIT(GET_ACTOR);
  LR_SET_CSTR(ga.rid, "g");
  LR_SET_CSTR(ga.name, "svc");
  LR_SET_CSTR(ga.namespace, "ns1");
  mark = nsent;
  lr_gcs_recv(g, 5, &ga);
  r = last(LR_PT_REPLY, 5, mark);
  ASSERT_STREQ(s(&r->rid), "g");
  ASSERT_STREQ(s(&r->aid), "a1");
  ASSERT_STREQ(s(&r->cname), "Cls");
  ASSERT_EQ(r->methods.n, 1);
  ASSERT(!LR_HAS(r->existed));
  LR_SET_CSTR(ga.name, "nope");
  lr_gcs_recv(g, 5, &ga);
  r = last(LR_PT_REPLY, 5, mark);
  ASSERT_STREQ(s(&r->err), "no live actor named 'nope' in namespace 'ns1'");

  /* A dead actor's name is free again. */
  kill_actor("a1", 1);
  LR_SET_CSTR(ga.name, "svc");
  lr_gcs_recv(g, 5, &ga);
  r = last(LR_PT_REPLY, 5, mark);
  ASSERT_STREQ(s(&r->err), "no live actor named 'svc' in namespace 'ns1'");
  mark = nsent;
  create("a5", &(copts_t){.name = "svc"});
  r = last(LR_PT_REPLY, 1, mark);
  ASSERT(!LR_HAS(r->err));
  ASSERT_STREQ(s(&r->aid), "a5");
  teardown();
}

/* -- Jobs and owners
 * ------------------------------------------------------------ */

TEST(gcs_job_end)
{
  setup();
  job("j1", "ns1");
  job("j2", "ns2");
  create("a1", NULL);
  create("a2", &(copts_t){.lifetime = "detached", .max_restarts = 1});
  create("a3", &(copts_t){.job = "j2"});
  placed("a2", 200);
  placed("a1", 100);
  int mark = nsent;
  job_end("j1");
  lr_m_actor_stop_t *st = last(LR_PT_ACTOR_STOP, 0, mark);
  ASSERT(st && st->final.v.b);
  ASSERT_STREQ(s(&st->aid), "a1");
  ASSERT_EQ(count(LR_PT_ACTOR_STOP, 0, mark), 1);
  exited("a1", 100, 0, 9);
  ASSERT_STREQ(state_of("a1"), "DEAD");
  ASSERT_STREQ(cause_of("a1"), "its owner (job j1) exited");
  ASSERT_STREQ(state_of("a2"), "PENDING");
  ASSERT_STREQ(state_of("a3"), "PENDING");
  /* A detached actor restarts though its job is gone. */
  exited("a2", 200, 1, 0);
  ASSERT_STREQ(state_of("a2"), "PENDING");
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 1);
  teardown();
}

TEST(gcs_owner_fate_sharing)
{
  setup();
  job("j1", "ns1");
  alive_actor(NULL);
  create("b1", &(copts_t){.owner = "a1"});
  create("b2", &(copts_t){.owner = "a1", .lifetime = "detached"});
  create("b3", &(copts_t){.owner = "a1"});
  placed("b3", 300);
  int mark = nsent;
  exited("a1", 100, 0, 9);
  ASSERT_STREQ(state_of("b1"), "DEAD");
  ASSERT_STREQ(cause_of("b1"), "its owner, actor Cls(a1), died");
  ASSERT_STREQ(state_of("b2"), "PENDING");
  /* b3 runs: stopped, and dead once its process exits; set_dead of a1 told
   * it again, as the Lua did. */
  ASSERT_STREQ(state_of("b3"), "PENDING");
  lr_m_actor_stop_t *st = NULL;
  for (int i = mark; i < nsent; i++)
    if (sent[i].client == 0 && type_at(i) == LR_PT_ACTOR_STOP) {
      lr_m_actor_stop_t *x = decode(i);
      if (!strcmp(s(&x->aid), "b3")) st = x;
    }
  ASSERT(st && st->final.v.b);
  exited("b3", 300, 0, 9);
  ASSERT_STREQ(state_of("b3"), "DEAD");
  ASSERT_STREQ(cause_of("b3"),
               "its owner, actor Cls(a1), ended (its worker process (pid 100) "
               "was killed by signal 9)");
  teardown();
}

/* -- Handles
 * --------------------------------------------------------------------- */

static void run_until_dead(const char *aid, double limit)
{
  uint64_t end = uv_now(&loop) + (uint64_t)(limit * 1000);
  while (strcmp(state_of(aid), "DEAD") && uv_now(&loop) < end) {
    uv_run(&loop, UV_RUN_ONCE);
    uv_update_time(&loop);
  }
}

TEST(gcs_handles_grace)
{
  setup_grace(0.5);
  job("j1", "ns1");
  create("a1", NULL); /* client 1 holds it */
  create("a2", NULL);
  aid_msg(LR_PT_ACTOR_REF, 4, "a2"); /* a2: clients 1 and 4 */
  aid_msg(LR_PT_ACTOR_REF, 4, "a2"); /* once per client */
  create("d1", &(copts_t){.lifetime = "detached"});
  create_ex(7, "h1", &(copts_t){.hold = "a2"}); /* holds a2 while alive */
  client_gone(1);
  aid_msg(LR_PT_ACTOR_UNREF, 4, "a2");
  uint64_t t0 = uv_now(&loop);
  run_until_dead("a1", 3);
  ASSERT_STREQ(state_of("a1"), "DEAD");
  ASSERT(uv_now(&loop) - t0 >= 450);
  ASSERT_STREQ(cause_of("a1"),
               "no handle to it remains (every handle was dropped)");
  ASSERT_STREQ(state_of("a2"), "PENDING"); /* h1 holds it */
  ASSERT_STREQ(state_of("d1"), "PENDING"); /* detached */
  kill_actor("h1", 1);
  run_until_dead("a2", 3);
  ASSERT_STREQ(state_of("a2"), "DEAD");
  ASSERT_STREQ(state_of("h1"), "DEAD");
  teardown();
}

static void on_stop(uv_timer_t *t) { uv_stop(t->loop); }

/* A handle taken back within the grace keeps the actor. */
TEST(gcs_handles_back)
{
  setup_grace(0.5);
  job("j1", "ns1");
  create("a1", NULL);
  aid_msg(LR_PT_ACTOR_UNREF, 1, "a1");
  aid_msg(LR_PT_ACTOR_REF, 2, "a1");
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, on_stop, 800, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_STREQ(state_of("a1"), "PENDING");
  uv_close((uv_handle_t *)&t, NULL);
  teardown();
}

/* Runs the loop until nothing is due now: grace timers of 0 fire. */
static void run_due(void)
{
  for (int i = 0; i < 3; i++) uv_run(&loop, UV_RUN_NOWAIT);
}

static void lend(const char *token, const char *aid1, const char *aid2)
{
  lr_m_lend_t m = LR_MSG_INIT(LEND);
  lr_pitem_t aids[2] = {{.v.s = {aid1, strlen(aid1)}},
                        {.v.s = {aid2 ? aid2 : "", aid2 ? strlen(aid2) : 0}}};
  LR_SET_CSTR(m.token, token);
  LR_SET_ITEMS(m.aids, aids, aid2 ? 2 : 1);
  lr_gcs_recv(g, 0, &m);
}

static void settle(int type, const char *token)
{
  lr_m_claim_t c = LR_MSG_INIT(CLAIM);
  lr_m_unlend_t u = LR_MSG_INIT(UNLEND);
  LR_SET_CSTR(c.token, token);
  LR_SET_CSTR(u.token, token);
  if (type == LR_PT_CLAIM) lr_gcs_recv(g, 0, &c);
  else lr_gcs_recv(g, 0, &u);
}

/* With no grace, a lend is what keeps an actor whose handle is in flight:
 * it counts until its claim (or unlend), once, however often either
 * comes. */
TEST(gcs_handles_lend)
{
  setup();
  job("j1", "ns1");
  create("a1", NULL); /* client 1 holds each */
  create("a2", NULL);
  create("a3", NULL);
  lend("t1", "a1", "nosuch");
  lend("t2", "a2", NULL);
  lend("o:x", "a3", "a1"); /* an object holding handles */
  client_gone(1);
  run_due();
  ASSERT_STREQ(state_of("a1"), "PENDING");
  ASSERT_STREQ(state_of("a2"), "PENDING");
  ASSERT_STREQ(state_of("a3"), "PENDING");
  settle(LR_PT_CLAIM, "t1");
  settle(LR_PT_CLAIM, "t1"); /* a second release changes nothing */
  run_due();
  ASSERT_STREQ(state_of("a1"), "PENDING"); /* o:x holds it too */
  settle(LR_PT_UNLEND, "t2");
  run_due();
  ASSERT_STREQ(state_of("a2"), "DEAD");
  ASSERT_STREQ(cause_of("a2"),
               "no handle to it remains (every handle was dropped)");
  aid_msg(LR_PT_ACTOR_REF, 4, "a3"); /* the receiver holds it now */
  settle(LR_PT_UNLEND, "o:x");       /* the object is freed */
  run_due();
  ASSERT_STREQ(state_of("a1"), "DEAD");
  ASSERT_STREQ(state_of("a3"), "PENDING");
  aid_msg(LR_PT_ACTOR_UNREF, 4, "a3");
  run_due();
  ASSERT_STREQ(state_of("a3"), "DEAD");
  lend("t3", "a3", NULL); /* lends left at the end are freed */
  teardown();
}

/* A receiver's actor_ref, or a lend, may reach the head before the
 * creator's actor_create (other connections): they count from creation. */
TEST(gcs_handles_before_create)
{
  setup();
  job("j1", "ns1");
  aid_msg(LR_PT_ACTOR_REF, 4, "a1");
  lend("t1", "a2", NULL);
  aid_msg(LR_PT_ACTOR_REF, 4, "a3");
  aid_msg(LR_PT_ACTOR_UNREF, 4, "a3"); /* came and went before it */
  create("a1", NULL);
  create("a2", NULL);
  create("a3", NULL);
  client_gone(1); /* the creator lets go of all three */
  run_due();
  ASSERT_STREQ(state_of("a1"), "PENDING"); /* client 4 holds it */
  ASSERT_STREQ(state_of("a2"), "PENDING"); /* t1 holds it */
  ASSERT_STREQ(state_of("a3"), "DEAD");
  aid_msg(LR_PT_ACTOR_UNREF, 4, "a1");
  settle(LR_PT_CLAIM, "t1");
  run_due();
  ASSERT_STREQ(state_of("a1"), "DEAD");
  ASSERT_STREQ(state_of("a2"), "DEAD");
  aid_msg(LR_PT_ACTOR_REF, 5, "never"); /* freed with the head */
  teardown();
}

/* get_actor (and get_if_exists) count the asking client as a holder from
 * the reply on, so the creator's drop right after cannot end the actor. */
TEST(gcs_handles_get_actor_holds)
{
  setup();
  job("j1", "ns1");
  create("a1", &(copts_t){.name = "svc"});
  lr_m_get_actor_t m = LR_MSG_INIT(GET_ACTOR);
  LR_SET_CSTR(m.rid, "g");
  LR_SET_CSTR(m.name, "svc");
  LR_SET_CSTR(m.namespace, "ns1");
  lr_gcs_recv(g, 5, &m);
  ASSERT_STREQ(s(&((lr_m_reply_t *)last(LR_PT_REPLY, 5, 0))->aid), "a1");
  create_ex(6, "a2", &(copts_t){.name = "svc", .get_if_exists = 1});
  client_gone(1);
  client_gone(5);
  run_due();
  ASSERT_STREQ(state_of("a1"), "PENDING"); /* client 6 holds it */
  client_gone(6);
  run_due();
  ASSERT_STREQ(state_of("a1"), "DEAD");
  teardown();
}

/* -- Init failure, subscriptions, lists
 * ------------------------------------------- */

TEST(gcs_init_failed)
{
  setup();
  job("j1", "ns1");
  create("a1", &(copts_t){.max_restarts = 3});
  sub("a1");
  placed("a1", 100);
  lr_m_actor_failed_t f = LR_MSG_INIT(ACTOR_FAILED);
  LR_SET_CSTR(f.aid, "a1");
  LR_SET_STR(f.err, "E\0rr", 4);
  LR_SET_CSTR(f.message, "boom");
  int mark = nsent;
  lr_gcs_recv(g, 3, &f);
  lr_m_actor_t *n = last(LR_PT_ACTOR, 2, mark);
  ASSERT_STREQ(s(&n->state), "DEAD");
  ASSERT_STREQ(s(&n->cause), "its init raised an error: boom");
  ASSERT_EQ(n->init_error.v.s.n, 4);
  ASSERT(!memcmp(n->init_error.v.s.p, "E\0rr", 4));
  lr_m_actor_stop_t *st = last(LR_PT_ACTOR_STOP, 0, mark);
  ASSERT(st && st->final.v.b);
  exited("a1", 100, 1, 0); /* no restart after an init error */
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 0);
  n = sub("a1");
  ASSERT_EQ(n->init_error.v.s.n, 4);
  teardown();
}

TEST(gcs_sub_unknown)
{
  setup();
  lr_m_actor_t *n = sub("zz");
  ASSERT_STREQ(s(&n->aid), "zz");
  ASSERT_STREQ(s(&n->state), "DEAD");
  ASSERT_STREQ(s(&n->cause), "no such actor on this cluster (it ended before, "
                             "or never existed)");
  teardown();
}

TEST(gcs_list)
{
  setup();
  job("j1", "ns1");
  create("b2", &(copts_t){.name = "x\"y"});
  create("a1", &(copts_t){.lifetime = "detached"});
  placed("a1", 100);
  kill_actor("b2", 1);
  lr_m_list_t l = LR_MSG_INIT(LIST);
  LR_SET_CSTR(l.rid, "l");
  LR_SET_CSTR(l.what, "actors");
  int mark = nsent;
  lr_gcs_recv(g, 2, &l);
  lr_m_reply_t *r = last(LR_PT_REPLY, 2, mark);
  ASSERT(r);
  const char *j = s(&r->json);
  ASSERT(!strncmp(j, "{\"items\":[{\"actor_id\":\"a1\"", 26));
  ASSERT(strstr(j, "\"class_name\":\"Cls\""));
  ASSERT(strstr(j, "\"namespace\":\"ns1\""));
  ASSERT(strstr(j, "\"pid\":100"));
  ASSERT(strstr(j, "\"detached\":true"));
  ASSERT(strstr(j, "\"node_id\":\"n1\""));
  ASSERT(strstr(j, "\"actor_id\":\"b2\""));
  ASSERT(strstr(j, "\"name\":\"x\\\"y\""));
  ASSERT(
      strstr(j, "\"state\":\"DEAD\",\"cause\":\"it was killed by lray.kill\""));
  ASSERT(strstr(j, "\"restarts\":0"));
  ASSERT(strstr(j, "]}") == j + strlen(j) - 2);
  /* Other lists are the node manager's. */
  LR_SET_CSTR(l.what, "tasks");
  mark = nsent;
  lr_gcs_recv(g, 2, &l);
  ASSERT_EQ(nsent, mark);
  teardown();
}

/* -- Hostile input
 * ---------------------------------------------------------------- */

TEST(gcs_missing_fields)
{
  setup();
  int types[] = {LR_PT_FN,           LR_PT_ACTOR_CREATE, LR_PT_ACTOR_SUB,
                 LR_PT_ACTOR_REF,    LR_PT_ACTOR_UNREF,  LR_PT_ACTOR_READY,
                 LR_PT_ACTOR_FAILED, LR_PT_KILL_ACTOR,   LR_PT_GET_ACTOR,
                 LR_PT_LIST,         LR_PT_JOB,          LR_PT_JOB_END,
                 LR_PT_CLIENT_GONE,  LR_PT_ACTOR_PLACED, LR_PT_WORKER_EXIT,
                 LR_PT_PUT,          LR_PT_ACTOR};
  /* Every message with no field set (the largest struct is big enough). */
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    lr_m_actor_create_t m[4];
    memset(m, 0, sizeof(m));
    m[0].type = types[i];
    lr_gcs_recv(g, 1, m);
    lr_gcs_recv(g, 0, m);
  }
  /* Unknown actors everywhere. */
  int mark = nsent;
  aid_msg(LR_PT_ACTOR_REF, 1, "x");
  aid_msg(LR_PT_ACTOR_UNREF, 1, "x");
  aid_msg(LR_PT_ACTOR_READY, 1, "x");
  aid_msg(LR_PT_ACTOR_FAILED, 1, "x");
  aid_msg(LR_PT_ACTOR_PLACED, 0, "x");
  aid_msg(LR_PT_WORKER_EXIT, 0, "x");
  client_gone(1);
  client_gone(42);
  job_end("nojob");
  ASSERT_EQ(nsent, mark);
  /* The node manager's messages from a client's number are refused. */
  create("a1", NULL);
  aid_msg(LR_PT_WORKER_EXIT, 5, "a1");
  ASSERT_STREQ(state_of("a1"), "PENDING");
  /* The same id twice, and an exit with nothing but the id. */
  mark = nsent;
  create("a1", NULL);
  lr_m_reply_t *r = last(LR_PT_REPLY, 1, mark);
  ASSERT(r && LR_HAS(r->err));
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, mark), 0);
  placed("a1", 100);
  aid_msg(LR_PT_WORKER_EXIT, 0, "a1");
  ASSERT_STREQ(state_of("a1"), "DEAD");
  ASSERT_STREQ(cause_of("a1"),
               "its worker process (pid 100) exited with code 0");
  /* An id with a NUL in it. */
  lr_m_actor_sub_t sm = LR_MSG_INIT(ACTOR_SUB);
  LR_SET_STR(sm.aid, "a\0b", 3);
  lr_gcs_recv(g, 2, &sm);
  teardown();
}

/* -- The node table and the cluster view ------------------------------------ */

static void node_msg(uint64_t client, int type, const char *id, int64_t cpu_free)
{
  lr_pitem_t res = {.key.s = {"CPU", 3}, .v.i = 20000};
  lr_pitem_t avail = {.key.s = {"CPU", 3}, .v.i = cpu_free};
  if (type == LR_PT_NODE_REGISTER) {
    lr_m_node_register_t m = LR_MSG_INIT(NODE_REGISTER);
    LR_SET_CSTR(m.node_id, id);
    LR_SET_CSTR(m.address, "127.0.0.9:1");
    LR_SET_ITEMS(m.res, &res, 1);
    LR_SET_ITEMS(m.avail, &avail, 1);
    lr_gcs_recv(g, client, &m);
  } else {
    lr_m_node_view_t m = LR_MSG_INIT(NODE_VIEW);
    LR_SET_CSTR(m.node_id, id);
    LR_SET_ITEMS(m.res, &res, 1);
    LR_SET_ITEMS(m.avail, &avail, 1);
    lr_gcs_recv(g, client, &m);
  }
}

static void tick(uv_timer_t *t) { (void)t; }

/* Runs the loop for ms milliseconds (the head's timers are unref'd). */
static void run_ms(uint64_t ms)
{
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, tick, ms, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* The index of the last cluster_view sent to client at or after from. */
static int last_view(uint64_t client, int from)
{
  for (int i = nsent - 1; i >= from; i--)
    if (sent[i].client == client && type_at(i) == LR_PT_CLUSTER_VIEW) return i;
  return -1;
}

TEST(gcs_view_broadcast)
{
  setup();
  node_msg(11, LR_PT_NODE_REGISTER, "n1", 20000);
  node_msg(12, LR_PT_NODE_REGISTER, "n2", 20000);
  /* A joiner hears the whole table at once. */
  lr_m_cluster_view_t *v = last(LR_PT_CLUSTER_VIEW, 12, 0);
  ASSERT(v && LR_HAS(v->full));
  ASSERT_EQ(v->nodes.n, 2);
  run_ms(150); /* n1 hears of n2 with the next batch */
  ASSERT(last_view(11, 0) >= 0);
  int mark = nsent;
  node_msg(11, LR_PT_NODE_VIEW, "n1", 5000); /* n1 got busy */
  node_msg(12, LR_PT_NODE_VIEW, "n2", 20000); /* no change */
  /* Within the next 100 ms tick both nodes hear the change, and only it. */
  run_ms(150);
  int a = last_view(11, mark), b = last_view(12, mark);
  ASSERT(a >= 0 && b >= 0);
  ASSERT_EQ(sent[a].b.len, sent[b].b.len); /* the same bytes to each */
  ASSERT_EQ(memcmp(sent[a].b.data, sent[b].b.data, sent[a].b.len), 0);
  v = decode(a);
  ASSERT(!LR_HAS(v->full));
  ASSERT_EQ(v->nodes.n, 1);
  const lr_m_node_info_t *in = (const void *)v->nodes.items[0].v.rec;
  ASSERT_STREQ(sv(&in->node_id.v.s), "n1");
  ASSERT_EQ(in->avail.n, 1);
  ASSERT_EQ(in->avail.items[0].v.i, 5000);
  /* The head's own node manager hears it too. */
  ASSERT(last_view(0, mark) >= 0);
  teardown();
}

/* -- ObjectRef arguments --------------------------------------------------- */

/* An actor whose init takes ObjectRefs is placed on any node (here the only
 * one with a free CPU); the head's node holds the arguments ("args:<aid>")
 * from creation to death, and a restart elsewhere ends the old placement. */
TEST(gcs_args_held_and_placed_anywhere)
{
  setup();
  job("j1", "ns1");
  node_msg(0, LR_PT_NODE_REGISTER, "own", 0);
  node_msg(11, LR_PT_NODE_REGISTER, "n1", 20000);
  lr_m_actor_create_t m = LR_MSG_INIT(ACTOR_CREATE);
  lr_pitem_t dep = {.key.i = 1, .v.s = {"o1", 2}}, ref = {.v.s = {"o2", 2}};
  lr_m_actor_opts_t opts = LR_MSG_INIT(ACTOR_OPTS);
  LR_SET_INT(opts.max_restarts, 1);
  LR_SET_CSTR(m.aid, "a1");
  LR_SET_CSTR(m.ch, "h1");
  LR_SET_CSTR(m.cname, "Cls");
  LR_SET_CSTR(m.job, "j1");
  LR_SET_ITEMS(m.deps, &dep, 1);
  LR_SET_ITEMS(m.refs, &ref, 1);
  LR_SET_REC(m.opts, &opts);
  lr_gcs_recv(g, 1, &m);
  lr_m_lend_t *l = last(LR_PT_LEND, 0, 0);
  ASSERT(l);
  ASSERT_STREQ(s(&l->token), "args:a1");
  ASSERT_EQ(l->ids.n, 2);
  ASSERT_STREQ(sv(&l->ids.items[0].v.s), "o1");
  ASSERT_STREQ(sv(&l->ids.items[1].v.s), "o2");
  lr_m_actor_place_t *p = last(LR_PT_ACTOR_PLACE, 11, 0);
  ASSERT(p && p->deps.n == 1 && p->refs.n == 1);
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 0, 0), 0);

  /* n1 is full now and n2 joins: the restart goes there, n1 lets go. */
  placed("a1", 100);
  node_msg(11, LR_PT_NODE_VIEW, "n1", 0);
  node_msg(12, LR_PT_NODE_REGISTER, "n2", 20000);
  int mark = nsent;
  exited("a1", 100, 0, 9);
  ASSERT_EQ(count(LR_PT_ACTOR_PLACE, 12, mark), 1);
  lr_m_actor_stop_t *st = last(LR_PT_ACTOR_STOP, 11, mark);
  ASSERT(st && LR_HAS(st->final) && st->final.v.b);
  ASSERT_EQ(count(LR_PT_LEND, 0, mark), 0); /* held once, for its life */
  ASSERT_EQ(count(LR_PT_UNLEND, 0, mark), 0);

  kill_actor("a1", 1);
  lr_m_unlend_t *u = last(LR_PT_UNLEND, 0, mark);
  ASSERT(u);
  ASSERT_STREQ(s(&u->token), "args:a1");
  teardown();
}

/* A driver on a joined node: that node lent the arguments (lnode, same
 * token). The head's node holds them there (lend.home), then the head ends
 * the joined node's lend with a claim passed on to it (claim.node), after
 * the lend; an actor not created (its name taken) ends it too. */
TEST(gcs_args_lent_by_a_joined_node_held_there_then_claimed)
{
  setup();
  job("j1", "ns1");
  lr_m_actor_create_t m = LR_MSG_INIT(ACTOR_CREATE);
  lr_pitem_t dep = {.key.i = 1, .v.s = {"o1", 2}};
  lr_m_actor_opts_t opts = LR_MSG_INIT(ACTOR_OPTS);
  LR_SET_CSTR(opts.name, "held");
  LR_SET_CSTR(m.rid, "r1");
  LR_SET_CSTR(m.aid, "a1");
  LR_SET_CSTR(m.ch, "h1");
  LR_SET_CSTR(m.job, "j1");
  LR_SET_CSTR(m.lnode, "127.0.0.2:7000");
  LR_SET_ITEMS(m.deps, &dep, 1);
  LR_SET_REC(m.opts, &opts);
  lr_gcs_recv(g, 1, &m);
  int lend_at = -1, claim_at = -1;
  for (int i = 0; i < nsent; i++) {
    if (sent[i].client != 0) continue;
    if (type_at(i) == LR_PT_LEND) lend_at = i;
    if (type_at(i) == LR_PT_CLAIM) claim_at = i;
  }
  ASSERT(lend_at >= 0 && claim_at > lend_at);
  lr_m_lend_t *l = decode(lend_at);
  ASSERT_STREQ(s(&l->token), "args:a1");
  ASSERT_STREQ(s(&l->home), "127.0.0.2:7000");
  lr_m_claim_t *c = decode(claim_at);
  ASSERT_STREQ(s(&c->token), "args:a1");
  ASSERT_STREQ(s(&c->node), "127.0.0.2:7000");

  /* The name is taken: nothing held, the joined node's lend ends. */
  int mark = nsent;
  LR_SET_CSTR(m.rid, "r2");
  LR_SET_CSTR(m.aid, "a2");
  lr_gcs_recv(g, 1, &m);
  ASSERT_EQ(count(LR_PT_LEND, 0, mark), 0);
  c = last(LR_PT_CLAIM, 0, mark);
  ASSERT(c);
  ASSERT_STREQ(s(&c->token), "args:a2");
  ASSERT_STREQ(s(&c->node), "127.0.0.2:7000");
  /* A driver on the head's node lends nothing: no claim. */
  mark = nsent;
  lr_m_actor_create_t h = LR_MSG_INIT(ACTOR_CREATE);
  LR_SET_CSTR(h.aid, "a3");
  LR_SET_CSTR(h.ch, "h1");
  LR_SET_CSTR(h.job, "j1");
  LR_SET_ITEMS(h.deps, &dep, 1);
  lr_gcs_recv(g, 1, &h);
  l = last(LR_PT_LEND, 0, mark);
  ASSERT(l && !LR_HAS(l->home));
  ASSERT_EQ(count(LR_PT_CLAIM, 0, mark), 0);
  teardown();
}
