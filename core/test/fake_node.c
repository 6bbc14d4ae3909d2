/* The fake node environment of fake_node.h. */
#include "test/fake_node.h"
#include "test/test.h"

static uv_loop_t loop;
static lr_arena_t decoded, kept; /* fake_msg's, fake_str's */
static int nworker;

static void set_total(lr_node_t *n, const char *name, double amount)
{
  int id = lr_sched_res_id(n->sched, name, strlen(name));
  ASSERT(id >= 0);
  ASSERT_EQ(lr_sched_set_total(n->sched, id, lr_res_units(amount)), 0);
}

lr_node_t *fake_node_new(double cpus, double gpus, uint64_t store)
{
  lr_node_t *n = lr_xcalloc(1, sizeof(*n));
  ASSERT_EQ(uv_loop_init(&loop), 0);
  n->loop = &loop;
  snprintf(n->node_id, sizeof(n->node_id), "fakenode");
  snprintf(n->session_dir, sizeof(n->session_dir), "/fake");
  ASSERT_EQ(lr_sched_new(LR_SCHED_STARVE_AFTER, &n->sched), 0);
  set_total(n, "CPU", cpus);
  if (gpus > 0) set_total(n, "GPU", gpus);
  ASSERT_EQ(lr_salloc_init(&n->region, store), 0);
  n->store_size = (int64_t)store;
  n->free_grace = 0.05;
  n->max_workers = 0; /* raised by fake_worker: lr_pool_spawn refuses */
  lr_obj_init(n);
  return n;
}

void fake_node_free(lr_node_t *n)
{
  while (n->clients) fake_leave(n, n->clients);
  uv_close((uv_handle_t *)&n->sweep_timer, NULL);
  if (n->unmap_timer_on) uv_close((uv_handle_t *)&n->unmap_timer, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  lr_worker_t *w, *tmp;
  HASH_ITER(hh, n->workers, w, tmp)
  {
    HASH_DEL(n->workers, w);
    lr_free(w);
  }
  lr_free(n->idle);
  lr_sched_free(n->sched);
  lr_salloc_close(&n->region);
  lr_arena_free(&decoded);
  lr_arena_free(&kept);
  lr_free(n);
}

lr_client_t *fake_client(lr_node_t *n, int kind, const char *job)
{
  lr_client_t *c = lr_xcalloc(1, sizeof(*c));
  lr_buf_init(&c->conn.out);
  c->conn.data = c;
  c->conn.max_frame = LR_MAX_FRAME;
  c->conn.dirty = 1; /* never on conn.c's flush list: see fake_node.h */
  c->node = n;
  c->id = ++n->next_client;
  c->kind = kind;
  c->pid = 100 + (int64_t)c->id;
  HASH_ADD(hh, n->clients, id, sizeof(c->id), c);
  if (kind == LR_CL_DRIVER && job) {
    snprintf(c->job, sizeof(c->job), "%s", job);
    lr_job_t *j = lr_xcalloc(1, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "%s", job);
    j->driver = c;
    j->ns = lr_xstrdup("ns");
    j->pid = c->pid;
    HASH_ADD_STR(n->jobs, id, j);
  }
  return c;
}

lr_client_t *fake_driver(lr_node_t *n, const char *job)
{
  return fake_client(n, LR_CL_DRIVER, job);
}

lr_worker_t *fake_worker(lr_node_t *n)
{
  lr_worker_t *w = lr_xcalloc(1, sizeof(*w));
  int k = ++nworker;
  w->node = n;
  snprintf(w->wid, sizeof(w->wid), "w%d", k);
  snprintf(w->addr, sizeof(w->addr), "unix:/fake/w%d.sock", k);
  w->pid = 1000 + k;
  w->exited = 1; /* no process: lr_pool_kill does nothing */
  w->state = LR_W_STARTING;
  HASH_ADD_STR(n->workers, wid, w);
  w->in_table = 1;
  n->nworkers++;
  n->starting++;
  n->max_workers = n->nworkers;
  lr_client_t *c = fake_client(n, LR_CL_WORKER, NULL);
  c->pid = w->pid;
  lr_pool_hello(n, w, c);
  return w;
}

void fake_leave(lr_node_t *n, lr_client_t *c)
{
  c->conn.closing = 1; /* lr_conn_close's first step */
  c->gone = 1;
  lr_obj_drop_client(n, c);
  lr_lease_drop_client(n, c);
  HASH_DEL(n->clients, c);
  lr_job_t *j = c->kind == LR_CL_DRIVER ? lr_node_job(n, c->job) : NULL;
  if (j) {
    HASH_DEL(n->jobs, j);
    lr_lease_drop_job(n, j->id);
    lr_free(j->ns);
    lr_free(j);
  }
  if (c->worker) {
    c->worker->client = NULL;
    c->worker->state = LR_W_DEAD;
  }
  lr_strset_t *e, *tmp;
  HASH_ITER(hh, c->held, e, tmp)
  { /* none: drop_client released them */
    HASH_DEL(c->held, e);
    lr_free(e->key);
    lr_free(e);
  }
  lr_buf_free(&c->conn.out);
  lr_free(c);
}

/* -- What the node sent ---------------------------------------------------- */

/* Calls each frame of c's output with its type; stops when f returns 1 and
 * gives back that frame's decoded message. */
static void *each_frame(lr_client_t *c, int (*f)(int type, void *ud), void *ud)
{
  const char *p = c->conn.out.data, *end = p + c->conn.out.len;
  while (p < end) {
    uint32_t len;
    ASSERT(end - p >= 4);
    memcpy(&len, p, 4);
    ASSERT((size_t)(end - p - 4) >= len);
    void *m = NULL;
    char err[128];
    int type = lr_proto_decode(p + 4, len, &decoded, &m, err, sizeof(err));
    if (type < 0) FAIL_("the node sent a frame that does not decode: %s", err);
    if (f(type, ud)) return m;
    p += 4 + len;
  }
  return NULL;
}

typedef struct {
  int type, nth, seen;
} match_t;

static int count_one(int type, void *ud)
{
  match_t *m = ud;
  m->seen += m->type < 0 || m->type == type;
  return 0;
}

static int nth_one(int type, void *ud)
{
  match_t *m = ud;
  return type == m->type && m->seen++ == m->nth;
}

int fake_count(lr_client_t *c, int type)
{
  match_t m = {type, 0, 0};
  each_frame(c, count_one, &m);
  return m.seen;
}

int fake_nframes(lr_client_t *c) { return fake_count(c, -1); }

void *fake_msg(lr_client_t *c, int type, int nth)
{
  match_t m = {type, nth, 0};
  return each_frame(c, nth_one, &m);
}

lr_m_reply_t *fake_reply(lr_client_t *c, const char *rid)
{
  lr_m_reply_t *r;
  for (int i = 0; (r = fake_msg(c, LR_PT_REPLY, i)); i++) {
    const char *got = fake_str(&r->rid);
    if (got && !strcmp(got, rid)) return r;
  }
  return NULL;
}

void fake_clear(lr_client_t *c)
{
  lr_buf_reset(&c->conn.out);
  lr_arena_reset(&decoded);
}

const char *fake_str(const lr_pf_t *f)
{
  if (!LR_HAS(*f)) return NULL;
  char *s = lr_arena_alloc(&kept, f->v.s.n + 1);
  memcpy(s, f->v.s.p, f->v.s.n);
  s[f->v.s.n] = 0;
  return s;
}

/* -- Loop and resources ---------------------------------------------------- */

int fake_run(lr_node_t *n, int (*done)(void *ud), void *ud, int max_ms)
{
  uv_update_time(n->loop);
  uint64_t until = uv_now(n->loop) + (uint64_t)max_ms;
  while (!done(ud) && uv_now(n->loop) < until)
    if (!uv_run(n->loop, UV_RUN_ONCE) && !done(ud)) break; /* nothing left */
  return done(ud);
}

int64_t fake_avail(lr_node_t *n, const char *name)
{
  int id = lr_res_lookup(lr_sched_names(n->sched), name, strlen(name));
  return id < 0 ? 0 : lr_res_pool_avail(lr_sched_pool(n->sched), id);
}

typedef struct {
  lr_node_t *n;
  const char *id;
} gone_t;

static int is_gone(void *ud)
{
  gone_t *g = ud;
  return !lr_obj_find(g->n, g->id, strlen(g->id));
}

int fake_freed(lr_node_t *n, const char *id)
{
  gone_t g = {n, id};
  return fake_run(n, is_gone, &g, 1000);
}
