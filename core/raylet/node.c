/* `lray _node`: start and stop, the clients (drivers and workers on the unix
 * socket, others on TCP), and the table that sends each message to the part
 * that handles it. The head (core/gcs) runs here too, spoken to only in
 * messages (lr_node_to_head, head_send, head_to_raylet). See node.h. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common/errdef.h"
#include "raylet/node.h"

/* -- Small helpers ---------------------------------------------------------- */

double lr_node_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double lr_node_time(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void lr_node_random_hex(char *out, int nbytes)
{
  unsigned char b[64];
  lr_assert(nbytes > 0 && nbytes <= 64);
  if (uv_random(NULL, NULL, b, (size_t)nbytes, 0, NULL) < 0)
    for (int i = 0; i < nbytes; i++) b[i] = (unsigned char)(rand() ^ getpid() ^ i);
  for (int i = 0; i < nbytes; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

char *lr_pstrdup(const lr_pf_t *f)
{
  if (!f->n) return NULL;
  char *s = lr_xmalloc(f->v.s.n + 1);
  memcpy(s, f->v.s.p, f->v.s.n);
  s[f->v.s.n] = 0;
  return s;
}

int lr_pstreq(const lr_pf_t *f, const char *s)
{
  return f->n && f->v.s.n == strlen(s) && !memcmp(f->v.s.p, s, f->v.s.n);
}

void lr_node_send(lr_client_t *c, const void *m)
{
  if (c && c->kind == LR_CL_PROXY) {
    lr_fwd_send(c, m);
    return;
  }
  if (!c || c->gone || c->conn.closing) return;
  size_t pos = lr_conn_begin_frame(&c->conn);
  lr_proto_encode(&c->conn.out, m);
  if (lr_conn_end_frame(&c->conn, pos) < 0)
    fprintf(stderr, "lray node: a '%s' message was too large to send\n",
            lr_proto_name(((const lr_prec_t *)m)->type));
}

lr_client_t *lr_node_client(lr_node_t *n, uint64_t id)
{
  lr_client_t *c;
  HASH_FIND(hh, n->clients, &id, sizeof(id), c);
  return c;
}

lr_job_t *lr_node_job(lr_node_t *n, const char *id)
{
  lr_job_t *j;
  if (!id || !*id) return NULL;
  HASH_FIND_STR(n->jobs, id, j);
  return j;
}

void lr_node_warn(lr_node_t *n, const char *job, const char *text)
{
  lr_job_t *j = lr_node_job(n, job);
  if (!j || !j->driver) return;
  lr_m_warn_t w = LR_MSG_INIT(WARN);
  LR_SET_CSTR(w.text, text);
  lr_node_send(j->driver, &w);
}

const char *lr_node_address(lr_node_t *n, char *buf, size_t len)
{
  if (n->tcp_on) return n->tcp_addr;
  snprintf(buf, len, "unix:%s", n->sock);
  return buf;
}

static void reply(lr_client_t *c, const lr_pf_t *rid, lr_m_reply_t *r)
{
  if (rid->n) r->rid = *rid;
  lr_node_send(c, r);
}

static void reply_json(lr_client_t *c, const lr_pf_t *rid, lr_buf_t *json)
{
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  LR_SET_STR(r.json, json->data ? json->data : "", json->len);
  reply(c, rid, &r);
}

/* -- The head, in this process ------------------------------------------------ */

static void head_send(void *ud, uint64_t client, const void *m)
{
  lr_node_send(lr_node_client(ud, client), m);
}

static void head_send_encoded(void *ud, uint64_t client, const char *msg, size_t len)
{
  lr_client_t *c = lr_node_client(ud, client);
  /* Only nodes get broadcasts, and a node is never a proxy client. */
  if (!c || c->kind == LR_CL_PROXY || c->gone || c->conn.closing) return;
  size_t pos = lr_conn_begin_frame(&c->conn);
  lr_buf_append(&c->conn.out, msg, len);
  lr_conn_end_frame(&c->conn, pos);
}

static void head_to_raylet(void *ud, const void *m)
{
  lr_node_t *n = ud;
  const lr_prec_t *r = m;
  switch (r->type) {
  case LR_PT_ACTOR_PLACE: lr_place_actor(n, m); break;
  case LR_PT_ACTOR_STOP: lr_place_stop(n, m); break;
  /* The head holds an actor's ObjectRef arguments for its life (actors.c). */
  case LR_PT_LEND: lr_obj_lend(n, m); break;
  case LR_PT_CLAIM: /* ...of a joined node's lend of them (its own token) */
    lr_xref_forward(n, &((const lr_m_claim_t *)m)->node, m);
    break;
  case LR_PT_UNLEND: {
    const lr_m_unlend_t *u = m;
    if (u->token.n) lr_obj_unlend(n, u->token.v.s.p, u->token.v.s.n);
    break;
  }
  case LR_PT_CLUSTER_VIEW: lr_view_update(n, m); break;
  case LR_PT_WARN: {
    const lr_m_warn_t *w = m;
    char job[LR_ID_MAX] = "";
    if (w->job.n && w->job.v.s.n < sizeof(job)) memcpy(job, w->job.v.s.p, w->job.v.s.n);
    char *text = lr_pstrdup(&w->text);
    if (text) lr_node_warn(n, job, text);
    lr_free(text);
    break;
  }
  default: break;
  }
}

/* A node that joined a cluster has no head in its process and relays its
 * clients' actor messages to it (fwd); while its link to the head is not
 * up, they get a clear error, never silence. */
static void no_head(lr_node_t *n, uint64_t client, const void *m)
{
  static const char why[] = "this node is not connected to the head of its cluster (it is"
                            " joining, or its head is gone): try again once `lray status`"
                            " lists it alive";
  lr_client_t *c = lr_node_client(n, client);
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  switch (((const lr_prec_t *)m)->type) {
  case LR_PT_ACTOR_CREATE: {
    const lr_m_actor_create_t *a = m;
    if (!a->rid.n) return;
    r.rid = a->rid;
    LR_SET_CSTR(r.err, why);
    break;
  }
  case LR_PT_GET_ACTOR:
    r.rid = ((const lr_m_get_actor_t *)m)->rid;
    LR_SET_CSTR(r.err, why);
    break;
  case LR_PT_KILL_ACTOR:
    r.rid = ((const lr_m_kill_actor_t *)m)->rid;
    break;
  case LR_PT_LIST:
    r.rid = ((const lr_m_list_t *)m)->rid;
    LR_SET_CSTR(r.json, "{\"items\":[]}");
    break;
  case LR_PT_ACTOR_SUB: {
    lr_m_actor_t s = LR_MSG_INIT(ACTOR);
    s.aid = ((const lr_m_actor_sub_t *)m)->aid;
    LR_SET_CSTR(s.state, "DEAD");
    LR_SET_CSTR(s.cause, why);
    lr_node_send(c, &s);
    return;
  }
  default: return;
  }
  if (r.rid.n) lr_node_send(c, &r);
}

/* An actor whose init takes ObjectRefs, created by a driver on a node that
 * joined: the head's node holds its arguments for its life (gcs/actors.c,
 * hold_args) but knows neither them nor where they are stored. This node
 * lends them (token "args:<aid>", read before the driver's later unrefs)
 * and names itself in actor_create.lnode: the head's node holds them here
 * (xref.c), as it would the refs of any lent message, then claims the
 * lend. Returns 0, or -1 when the head cannot be reached (nothing lent). */
static int create_with_args(lr_node_t *n, uint64_t client, const lr_m_actor_create_t *a)
{
  if ((!LR_HAS(a->deps) && !LR_HAS(a->refs)) || !n->tcp_on || !a->aid.n)
    return lr_fwd_out(n, client, a);
  size_t tl = a->aid.v.s.n + 5;
  char *token = lr_xmalloc(tl + 1);
  memcpy(token, "args:", 5);
  memcpy(token + 5, a->aid.v.s.p, a->aid.v.s.n);
  token[tl] = 0;
  uint32_t k = 0;
  lr_pitem_t *ids = lr_xcalloc((size_t)a->deps.n + a->refs.n, sizeof(*ids));
  for (uint32_t i = 0; i < a->deps.n; i++) ids[k++].v = a->deps.items[i].v;
  for (uint32_t i = 0; i < a->refs.n; i++) ids[k++].v = a->refs.items[i].v;
  lr_m_lend_t l = LR_MSG_INIT(LEND);
  LR_SET_CSTR(l.token, token);
  LR_SET_ITEMS(l.ids, ids, k);
  lr_obj_lend(n, &l);
  lr_free(ids);
  lr_m_actor_create_t c = *a;
  LR_SET_CSTR(c.lnode, n->tcp_addr);
  int rc = lr_fwd_out(n, client, &c);
  if (rc < 0) lr_obj_unlend(n, token, tl);
  lr_free(token);
  return rc;
}

void lr_node_to_head(lr_node_t *n, uint64_t client, const void *m)
{
  if (n->gcs) {
    lr_gcs_recv(n->gcs, client, m);
    return;
  }
  switch (((const lr_prec_t *)m)->type) {
  case LR_PT_ACTOR_PLACED: /* about actors the head placed here */
  case LR_PT_WORKER_EXIT:
  case LR_PT_ACTOR_READY:
  case LR_PT_ACTOR_FAILED: lr_headlink_send(n, m); break;
  case LR_PT_JOB: /* this node's own: its drivers come and go */
  case LR_PT_JOB_END:
  case LR_PT_CLIENT_GONE:
  case LR_PT_LEND: /* handles in flight here (objdir) */
  case LR_PT_CLAIM:
  case LR_PT_UNLEND:
    if (!client) lr_headlink_send(n, m);
    break;
  case LR_PT_ACTOR_CREATE:
    if (client && create_with_args(n, client, m) < 0) no_head(n, client, m);
    break;
  default: /* a client's: to the head, wrapped */
    if (client && lr_fwd_out(n, client, m) < 0) no_head(n, client, m);
  }
}

/* -- Messages from clients ----------------------------------------------------- */

static void on_hello(lr_node_t *n, lr_client_t *c, lr_m_hello_t *m)
{
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  char err[300], addr[PATH_MAX + 8], ns[LR_ID_MAX + 32];
  if (!m->proto.n || m->proto.v.i != LR_PROTO_VERSION) {
    char got[32] = "nil";
    if (m->proto.n) snprintf(got, sizeof(got), "%lld", (long long)m->proto.v.i);
    snprintf(err, sizeof(err),
             "this lray node speaks protocol version %d, the client %s: use the"
             " same lray build for the whole cluster", LR_PROTO_VERSION, got);
    LR_SET_CSTR(r.err, err);
    reply(c, &m->rid, &r);
    return;
  }
  if (c->kind != LR_CL_NEW) return;
  c->pid = m->pid.n ? m->pid.v.i : 0;
  if (lr_pstreq(&m->role, "worker")) {
    lr_worker_t *w = NULL;
    if (m->wid.n) HASH_FIND(hh, n->workers, m->wid.v.s.p, m->wid.v.s.n, w);
    if (!w || w->client) {
      lr_conn_close(&c->conn);
      return;
    }
    c->kind = LR_CL_WORKER;
    if (m->tcp.n && m->tcp.v.s.n < sizeof(w->tcp))
      snprintf(w->tcp, sizeof(w->tcp), "%.*s", (int)m->tcp.v.s.n, m->tcp.v.s.p);
    if (n->token[0]) LR_SET_CSTR(r.token, n->token); /* a unix peer: trusted */
    LR_SET_CSTR(r.node_id, n->node_id);
    LR_SET_CSTR(r.address, lr_node_address(n, addr, sizeof(addr)));
    LR_SET_CSTR(r.shm, n->shm_name);
    LR_SET_CSTR(r.session_dir, n->session_dir);
    reply(c, &m->rid, &r);
    lr_pool_hello(n, w, c);
    return;
  }
  lr_job_t *j = lr_xcalloc(1, sizeof(*j));
  /* Unique in the cluster: a joined node's start with its own prefix. */
  if (n->gcs)
    snprintf(j->id, sizeof(j->id), "%08llx", (unsigned long long)++n->next_job);
  else
    snprintf(j->id, sizeof(j->id), "%04x%04llx", n->job_prefix,
             (unsigned long long)(++n->next_job & 0xffff));
  c->kind = LR_CL_DRIVER;
  snprintf(c->job, sizeof(c->job), "%s", j->id);
  if (m->namespace.n) {
    j->ns = lr_pstrdup(&m->namespace);
  } else {
    char hex[9];
    lr_node_random_hex(hex, 4);
    snprintf(ns, sizeof(ns), "anon-%s-%s", j->id, hex);
    j->ns = lr_xstrdup(ns);
  }
  j->driver = c;
  j->path = lr_pstrdup(&m->path);
  j->cpath = lr_pstrdup(&m->cpath);
  j->log_to_driver = !m->log_to_driver.n || m->log_to_driver.v.b;
  j->pid = c->pid;
  j->started = lr_node_time();
  HASH_ADD_STR(n->jobs, id, j);
  lr_ev_job_started(n, j);
  lr_m_job_t jm = LR_MSG_INIT(JOB);
  LR_SET_CSTR(jm.job, j->id);
  LR_SET_CSTR(jm.namespace, j->ns);
  if (j->path) LR_SET_CSTR(jm.path, j->path);
  if (j->cpath) LR_SET_CSTR(jm.cpath, j->cpath);
  lr_node_to_head(n, 0, &jm);
  LR_SET_CSTR(r.node_id, n->node_id);
  LR_SET_CSTR(r.job_id, j->id);
  LR_SET_CSTR(r.shm, n->shm_name);
  LR_SET_CSTR(r.session_dir, n->session_dir);
  LR_SET_CSTR(r.namespace, j->ns);
  LR_SET_CSTR(r.address, lr_node_address(n, addr, sizeof(addr)));
  LR_SET_CSTR(r.cookie, n->cookie); /* proves a mapping of shm is this store's */
  if (n->token[0] && c->conn.h.handle.type != UV_TCP) LR_SET_CSTR(r.token, n->token);
  reply(c, &m->rid, &r);
}

/* The job a client works for: a driver's own, or what its worker runs. */
static const char *client_job(lr_client_t *c)
{
  if (c->kind == LR_CL_DRIVER) return c->job;
  if (c->worker && c->worker->job[0]) return c->worker->job;
  return NULL;
}

/* A driver's get has waited long for these objects: say what holds each up. */
static void on_why(lr_node_t *n, lr_client_t *c, const lr_m_why_t *m)
{
  char text[600], line[700];
  for (uint32_t i = 0; i < m->ids.n && i < 1000; i++) {
    const lr_pstr_t *id = &m->ids.items[i].v.s;
    if (!lr_obj_why(n, id->p, id->n, text, sizeof(text))) continue;
    snprintf(line, sizeof(line), "lray.get has waited %g s: %s",
             m->after.n ? m->after.v.d : 0.0, text);
    lr_m_warn_t w = LR_MSG_INIT(WARN);
    LR_SET_CSTR(w.text, line);
    lr_node_send(c, &w);
  }
}

typedef struct {
  lr_node_t *n;
  uint64_t client;
  char *rid_copy;
  char job[LR_ID_MAX];
  uv_timer_t t;
} shutdown_t;

static void shutdown_closed(uv_handle_t *h)
{
  shutdown_t *s = h->data;
  lr_free(s->rid_copy);
  lr_free(s);
}

/* One loop turn after the shutdown request: what the driver's tasks printed
 * is read from the workers' pipes first and goes out ahead of the reply. */
static void shutdown_later(uv_timer_t *t)
{
  shutdown_t *s = t->data;
  lr_node_t *n = s->n;
  lr_client_t *c = lr_node_client(n, s->client);
  lr_pool_flush_output(n, s->job, c);
  if (c && s->rid_copy) {
    lr_m_reply_t r = LR_MSG_INIT(REPLY);
    LR_SET_CSTR(r.rid, s->rid_copy);
    lr_node_send(c, &r);
  }
  /* The owner leaving ends the node when its connection closes, after the
   * reply: ending here (_exit) lost the output and reply still queued in
   * the connection (a worker's lines missing now and then under load). */
  uv_close((uv_handle_t *)t, shutdown_closed);
}

static void on_shutdown(lr_node_t *n, lr_client_t *c, const lr_m_shutdown_t *m)
{
  shutdown_t *s = lr_xcalloc(1, sizeof(*s));
  s->n = n;
  s->client = c->id;
  s->rid_copy = lr_pstrdup(&m->rid);
  snprintf(s->job, sizeof(s->job), "%s", c->kind == LR_CL_DRIVER ? c->job : "");
  uv_timer_init(n->loop, &s->t);
  s->t.data = s;
  uv_timer_start(&s->t, shutdown_later, 1, 0);
}

static void on_list(lr_node_t *n, lr_client_t *c, const lr_m_list_t *m)
{
  if (lr_pstreq(&m->what, "actors")) {
    lr_node_to_head(n, c->id, m);
    return;
  }
  lr_buf_t b;
  lr_buf_init(&b);
  if (lr_ev_list(n, m, &b) < 0) {
    lr_buf_reset(&b);
    lr_buf_append(&b, "{}", 2);
  }
  reply_json(c, &m->rid, &b);
  lr_buf_free(&b);
}

static void on_state(lr_node_t *n, lr_client_t *c, int type, const lr_pf_t *rid)
{
  lr_buf_t b;
  lr_buf_init(&b);
  if (type == LR_PT_RESOURCES) lr_state_resources(n, &b);
  else if (type == LR_PT_NODES) lr_state_nodes(n, &b);
  else lr_state_status(n, &b);
  reply_json(c, rid, &b);
  lr_buf_free(&b);
}

/* Fills in what the head cannot know of a client's actor message. */
static void forward_actor_create(lr_node_t *n, lr_client_t *c, lr_m_actor_create_t *m)
{
  const char *job = client_job(c);
  if (c->kind == LR_CL_DRIVER || !m->job.n) {
    if (job) LR_SET_CSTR(m->job, job);
  }
  if (c->worker && c->worker->actor) LR_SET_CSTR(m->owner, c->worker->actor->aid);
  lr_node_to_head(n, c->id, m);
}

static void forward_get_actor(lr_node_t *n, lr_client_t *c, lr_m_get_actor_t *m)
{
  if (!m->namespace.n) {
    lr_job_t *j = lr_node_job(n, client_job(c));
    if (j) LR_SET_CSTR(m->namespace, j->ns);
  }
  lr_node_to_head(n, c->id, m);
}

static void dispatch_msg(lr_node_t *n, lr_client_t *c, int type, void *msg)
{
  lr_worker_t *w = c->worker;
  switch (type) {
  case LR_PT_HELLO: on_hello(n, c, msg); break;
  case LR_PT_LEASE: lr_lease_request(n, c, msg); break;
  case LR_PT_LEASE_DONE: if (w) lr_lease_done(n, w, msg); break;
  case LR_PT_LEASE_RETURN: lr_lease_return(n, c, msg); break;
  case LR_PT_LEASE_CANCEL: lr_lease_cancel(n, c, msg); break;
  case LR_PT_PUT: lr_obj_put(n, c, msg); break;
  case LR_PT_EXPECT: lr_obj_expect(n, c, msg); break;
  case LR_PT_SUB: {
    lr_m_sub_t *m = msg;
    for (uint32_t i = 0; i < m->ids.n; i++) {
      const lr_pstr_t *id = &m->ids.items[i].v.s;
      /* home: who to ask if nobody here produces it (xref.c) */
      if (m->home.n) {
        lr_obj_t *o = lr_obj_get(n, id->p, id->n);
        lr_xref_home(n, o, &m->home);
      }
      lr_obj_subscribe(n, c, id->p, id->n);
    }
    break;
  }
  case LR_PT_REF: {
    lr_m_ref_t *m = msg;
    if (!m->id.n) break;
    lr_obj_hold(n, c, m->id.v.s.p, m->id.v.s.n);
    if (m->home.n) lr_xref_home(n, lr_obj_find(n, m->id.v.s.p, m->id.v.s.n), &m->home);
    break;
  }
  case LR_PT_UNREF: {
    lr_m_unref_t *m = msg;
    for (uint32_t i = 0; i < m->ids.n; i++)
      lr_obj_unhold(n, c, m->ids.items[i].v.s.p, m->ids.items[i].v.s.n);
    break;
  }
  case LR_PT_FWD: if (c->kind == LR_CL_NODE) lr_fwd_in(n, c, msg); break;
  case LR_PT_JOB:
  case LR_PT_JOB_END: if (c->kind == LR_CL_NODE) lr_node_to_head(n, 0, msg); break;
  case LR_PT_CLIENT_GONE:
    if (c->kind == LR_CL_NODE) {
      lr_m_client_gone_t *g = msg;
      lr_client_t *p = g->client.n ? lr_fwd_proxy(n, c, (uint64_t)g->client.v.i, 0) : NULL;
      if (p) lr_fwd_drop(n, p);
    }
    break;
  case LR_PT_LEND:
    if (c->kind == LR_CL_NODE) lr_node_to_head(n, 0, msg); /* handles on that node */
    else {
      lr_obj_lend(n, msg);
      lr_obj_lend_peers(n, c, msg);
    }
    break;
  case LR_PT_CLAIM: {
    lr_m_claim_t *m = msg;
    if (c->kind == LR_CL_NODE) {
      lr_node_to_head(n, 0, msg);
      break;
    }
    if (m->token.n && !lr_xref_forward(n, &m->node, m))
      lr_obj_claim(n, m->token.v.s.p, m->token.v.s.n);
    break;
  }
  case LR_PT_UNLEND: {
    lr_m_unlend_t *m = msg;
    if (c->kind == LR_CL_NODE) {
      lr_node_to_head(n, 0, msg);
      break;
    }
    if (m->token.n && !lr_xref_forward(n, &m->node, m))
      lr_obj_unlend(n, m->token.v.s.p, m->token.v.s.n);
    break;
  }
  case LR_PT_ALLOC: lr_obj_alloc(n, c, msg); break;
  case LR_PT_UNMAPPED: lr_unmap_answer(n, c, msg); break;
  case LR_PT_BLOCKED: if (w) lr_lease_blocked(n, w, 1); break;
  case LR_PT_UNBLOCKED: if (w) lr_lease_blocked(n, w, 0); break;
  case LR_PT_WHY: on_why(n, c, msg); break;
  case LR_PT_FN:
  case LR_PT_ACTOR_SUB:
  case LR_PT_ACTOR_REF:
  case LR_PT_ACTOR_UNREF:
  case LR_PT_KILL_ACTOR: lr_node_to_head(n, c->id, msg); break;
  case LR_PT_ACTOR_READY:
  case LR_PT_ACTOR_FAILED:
    if (w || c->kind == LR_CL_NODE) lr_node_to_head(n, c->id, msg);
    break;
  case LR_PT_ACTOR_PLACED:
  case LR_PT_WORKER_EXIT:
    /* A joined node's reports on the actors the head placed there. */
    if (c->kind == LR_CL_NODE) lr_node_to_head(n, c->id, msg);
    break;
  case LR_PT_ACTOR_CREATE: forward_actor_create(n, c, msg); break;
  case LR_PT_GET_ACTOR: forward_get_actor(n, c, msg); break;
  case LR_PT_RESOURCES: on_state(n, c, type, &((lr_m_resources_t *)msg)->rid); break;
  case LR_PT_NODES: {
    lr_m_nodes_t *m = msg;
    if (n->gcs) lr_node_to_head(n, c->id, m);
    else if (lr_headlink_relay(n, c, &m->rid, m) < 0) on_state(n, c, type, &m->rid);
    break;
  }
  case LR_PT_NODE_REGISTER:
  case LR_PT_NODE_VIEW:
    /* A node that joined, over TCP (the token proved). */
    if (!n->gcs || c->kind == LR_CL_DRIVER || c->kind == LR_CL_WORKER) break;
    c->kind = LR_CL_NODE;
    lr_node_to_head(n, c->id, msg);
    break;
  case LR_PT_STATUS: on_state(n, c, type, &((lr_m_status_t *)msg)->rid); break;
  case LR_PT_LIST: on_list(n, c, msg); break;
  case LR_PT_SHUTDOWN: on_shutdown(n, c, msg); break;
  case LR_PT_STOP: lr_node_cleanup(n, 0); break;
  case LR_PT_SPANS: lr_ev_spans(n, c, msg); break;
  case LR_PT_FETCH: lr_transfer_fetch(n, c, msg); break;
  case LR_PT_PULL: lr_transfer_serve(n, c, msg); break;
  case LR_PT_WRITE: lr_remote_write(n, c, msg); break;
  default: break; /* messages for other processes: ignored */
  }
}

/* -- The cluster token, node side ----------------------------------------------
 * A TCP peer must prove it holds the token (net/auth.h) before anything it
 * sends is decoded: until then its frames may be at most an ANSWER long, and
 * it has LR_NODE_AUTH_DEADLINE seconds. Unix-socket peers are trusted
 * through the socket's file permissions. */

#define LR_NODE_AUTH_DEADLINE 5.0

static void peer_name(lr_client_t *c, char *out, size_t len)
{
  struct sockaddr_storage sa;
  int sl = sizeof(sa);
  char ip[64] = "?";
  snprintf(out, len, "?");
  if (uv_tcp_getpeername(&c->conn.h.tcp, (struct sockaddr *)&sa, &sl) < 0) return;
  if (sa.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof(ip));
    snprintf(out, len, "[%s]:%d", ip, ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
    snprintf(out, len, "%s:%d", ip, ntohs(((struct sockaddr_in *)&sa)->sin_port));
  }
}

static void auth_refuse(lr_client_t *c, const char *why)
{
  char peer[96];
  peer_name(c, peer, sizeof(peer));
  fprintf(stderr, "lray: closing a connection from %s: %s\n", peer, why);
  lr_auth_close(c->auth);
  lr_free(c->auth);
  c->auth = NULL;
  lr_conn_close(&c->conn);
}

static void auth_start(lr_node_t *n, lr_client_t *c)
{
  uint8_t ch[LR_AUTH_CHALLENGE_LEN];
  c->auth = lr_xcalloc(1, sizeof(*c->auth));
  c->accepted = lr_node_now();
  c->conn.max_frame = LR_AUTH_ANSWER_LEN;
  if (lr_auth_init(c->auth, n->token) < 0) {
    auth_refuse(c, "this node has no usable cluster token");
    return;
  }
  lr_auth_server_challenge(c->auth, ch);
  size_t pos = lr_conn_begin_frame(&c->conn);
  lr_buf_append(&c->conn.out, ch, sizeof(ch));
  lr_conn_end_frame(&c->conn, pos);
}

static void auth_answer(lr_client_t *c, const char *p, size_t len)
{
  uint8_t proof[LR_AUTH_PROOF_LEN];
  if (lr_auth_server_verify(c->auth, (const uint8_t *)p, len, proof) < 0) {
    auth_refuse(c, "it did not prove the cluster token");
    return;
  }
  lr_auth_close(c->auth);
  lr_free(c->auth);
  c->auth = NULL;
  c->conn.max_frame = LR_MAX_FRAME;
  size_t pos = lr_conn_begin_frame(&c->conn);
  lr_buf_append(&c->conn.out, proof, sizeof(proof));
  lr_conn_end_frame(&c->conn, pos);
}

static void on_auth_timer(uv_timer_t *t)
{
  lr_node_t *n = t->data;
  double now = lr_node_now();
  for (lr_client_t *c = n->clients; c; c = c->hh.next)
    if (c->auth && !c->conn.closing && now - c->accepted > LR_NODE_AUTH_DEADLINE)
      auth_refuse(c, "it did not prove the cluster token within 5 s");
}

static void on_frame(lr_conn_t *conn, const char *p, size_t len)
{
  lr_client_t *c = conn->data;
  lr_node_t *n = c->node;
  char err[LR_ERRLEN];
  void *msg;
  if (c->auth) {
    auth_answer(c, p, len);
    return;
  }
  int type = lr_proto_decode(p, len, &n->arena, &msg, err, sizeof(err));
  if (type < 0) {
    fprintf(stderr, "lray: closing a connection: %s\n", err);
    lr_arena_reset(&n->arena);
    lr_conn_close(conn);
    return;
  }
  if (n->debug)
    fprintf(stderr, "node <- %s %s\n",
            c->kind == LR_CL_DRIVER ? "driver" : c->kind == LR_CL_WORKER ? "worker" : "nil",
            lr_proto_name(type));
  dispatch_msg(n, c, type, msg);
  lr_arena_reset(&n->arena);
}

/* -- Connections ------------------------------------------------------------------ */

static void job_ended(lr_node_t *n, lr_client_t *c)
{
  lr_job_t *j = lr_node_job(n, c->job);
  if (!j) return;
  int owner = n->owner_pid && j->pid == n->owner_pid;
  HASH_DEL(n->jobs, j);
  lr_ev_job_ended(n, j->id);
  lr_m_job_end_t m = LR_MSG_INIT(JOB_END);
  LR_SET_CSTR(m.job, j->id);
  lr_node_to_head(n, 0, &m);
  lr_lease_drop_job(n, j->id);
  lr_free(j->ns);
  lr_free(j->path);
  lr_free(j->cpath);
  lr_free(j);
  if (owner) lr_node_cleanup(n, 0);
}

static void on_conn_close(lr_conn_t *conn)
{
  lr_client_t *c = conn->data;
  lr_node_t *n = c->node;
  c->gone = 1;
  lr_obj_drop_client(n, c);
  lr_lease_drop_client(n, c);
  lr_m_client_gone_t g = LR_MSG_INIT(CLIENT_GONE);
  LR_SET_INT(g.client, c->id);
  lr_node_to_head(n, 0, &g);
  HASH_DEL(n->clients, c);
  if (c->kind == LR_CL_NODE) { /* the clients behind it are gone too */
    lr_client_t *p, *tmp;
    HASH_ITER(hh_proxy, n->proxies, p, tmp) if (p->proxy.via == c) lr_fwd_drop(n, p);
  }
  if (c->auth) {
    lr_auth_close(c->auth);
    lr_free(c->auth);
  }
  if (c->kind == LR_CL_DRIVER) {
    job_ended(n, c);
  } else if (c->worker) {
    /* A worker that hangs up is finished; make sure its process is too. */
    lr_worker_t *w = c->worker;
    if (w->state != LR_W_DEAD) lr_pool_kill(w, SIGKILL);
    lr_pool_client_gone(w);
  }
  lr_free(c);
}

static void on_connection(uv_stream_t *srv, int status)
{
  lr_node_t *n = srv->data;
  if (status < 0) return;
  int is_tcp = srv->type == UV_TCP;
  lr_client_t *c = lr_xcalloc(1, sizeof(*c));
  lr_conn_init(n->loop, &c->conn, is_tcp);
  if (uv_accept(srv, &c->conn.h.stream) < 0) {
    lr_free(c);
    return;
  }
  c->node = n;
  c->id = ++n->next_client;
  c->conn.data = c;
  c->conn.on_frame = on_frame;
  c->conn.on_close = on_conn_close;
  HASH_ADD(hh, n->clients, id, sizeof(c->id), c);
  if (is_tcp) uv_tcp_nodelay(&c->conn.h.tcp, 1); /* small answers to other nodes, at once */
  lr_conn_start(&c->conn);
  if (is_tcp) {
    lr_tcp_liveness(&c->conn.h.tcp);
    auth_start(n, c);
  }
}

/* -- Start and stop --------------------------------------------------------------- */

static lr_node_t *the_node; /* for signal and exit paths */

static void unlink_in(const char *dir, const char *name)
{
  char p[PATH_MAX + 64];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  unlink(p);
}

void lr_node_cleanup(lr_node_t *n, int code)
{
  if (n->cleaned) return;
  n->cleaned = 1;
  for (lr_worker_t *w = n->workers, *tmp; w; w = tmp) {
    tmp = w->hh.next;
    if (!w->exited) uv_process_kill(&w->proc, SIGKILL);
    unlink(w->addr + 5);
  }
  lr_place_unlink_all(n);
  lr_spill_cleanup(n);
  lr_shm_close(&n->shm);
  if (n->shm_name[0]) lr_shm_unlink(n->shm_name);
  if (n->session_dir[0]) {
    lr_ev_remove_logs(n);
    /* A node that failed keeps its log: whoever started it reads it. */
    unlink_in(n->session_dir, "node.sock");
    unlink_in(n->session_dir, "address");
    unlink_in(n->session_dir, "token");
    if (code == 0) unlink_in(n->session_dir, "node.log");
    rmdir(n->session_dir);
  }
  fflush(stdout);
  fflush(stderr);
  _exit(code);
}

static void on_signal(uv_signal_t *h, int sig)
{
  LR_UNUSED(sig);
  lr_node_cleanup(h->data, 0);
}

static void on_prepare(uv_prepare_t *h)
{
  LR_UNUSED(h);
  lr_conn_flush_all();
}

typedef struct {
  const char *session, *host, *token_file, *head_address, *spill_dir;
  double num_cpus, num_gpus, memory;
  int64_t store, owner, port, prestart, dashboard_fd;
  int has_port;
  char **res_names;
  double *res_amounts;
  int nres;
} args_t;

static int parse_args(int argc, char **argv, args_t *a)
{
  memset(a, 0, sizeof(*a));
  a->num_cpus = 1;
  a->store = (int64_t)512 << 20;
  a->prestart = 4;
  a->dashboard_fd = -1;
  a->res_names = lr_xcalloc((size_t)argc + 1, sizeof(char *));
  a->res_amounts = lr_xcalloc((size_t)argc + 1, sizeof(double));
  for (int i = 0; i < argc; i += 2) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v || strncmp(k, "--", 2)) {
      fprintf(stderr, "lray _node: unexpected argument %s\n", k);
      return -1;
    }
    k += 2;
    if (!strcmp(k, "session")) a->session = v;
    else if (!strcmp(k, "owner")) a->owner = strtoll(v, NULL, 10);
    else if (!strcmp(k, "num-cpus")) a->num_cpus = strtod(v, NULL);
    else if (!strcmp(k, "num-gpus")) a->num_gpus = strtod(v, NULL);
    else if (!strcmp(k, "memory")) a->memory = strtod(v, NULL);
    else if (!strcmp(k, "object-store-memory")) a->store = (int64_t)strtod(v, NULL);
    else if (!strcmp(k, "port")) a->port = strtoll(v, NULL, 10), a->has_port = 1;
    else if (!strcmp(k, "host")) a->host = v;
    else if (!strcmp(k, "prestart")) a->prestart = strtoll(v, NULL, 10);
    else if (!strcmp(k, "dashboard-fd")) a->dashboard_fd = strtoll(v, NULL, 10);
    else if (!strcmp(k, "token-file")) a->token_file = v;
    else if (!strcmp(k, "spill-dir")) a->spill_dir = v;
    else if (!strcmp(k, "head-address")) a->head_address = v;
    else if (!strcmp(k, "resource")) { /* NAME=AMOUNT, one per custom kind */
      const char *eq = strrchr(v, '=');
      if (!eq || eq == v) {
        fprintf(stderr, "lray _node: bad --resource %s (want NAME=AMOUNT)\n", v);
        return -1;
      }
      a->res_names[a->nres] = lr_xmalloc((size_t)(eq - v) + 1);
      memcpy(a->res_names[a->nres], v, (size_t)(eq - v));
      a->res_names[a->nres][eq - v] = 0;
      a->res_amounts[a->nres++] = strtod(eq + 1, NULL);
    } else {
      fprintf(stderr, "lray _node: unknown option --%s\n", k);
      return -1;
    }
  }
  if (!a->session) {
    fprintf(stderr, "lray _node: --session is required\n");
    return -1;
  }
  return 0;
}

static void set_total(lr_node_t *n, const char *name, double amount, int keep_zero)
{
  int64_t u = lr_res_units(amount);
  if (u < 0) {
    fprintf(stderr, "lray _node: bad amount %g of %s\n", amount, name);
    return;
  }
  if (u == 0 && !keep_zero) return;
  int id = lr_sched_res_id(n->sched, name, strlen(name));
  if (id < 0 || lr_sched_set_total(n->sched, id, u) < 0)
    fprintf(stderr, "lray _node: cannot use resource %s = %g\n", name, amount);
}

static void start_dashboard(uv_timer_t *t)
{
  lr_node_t *n = t->data;
  int fd = n->dashboard_fd;
  char node[PATH_MAX + 8], fds[24], owner[24];
  snprintf(node, sizeof(node), "unix:%s", n->sock);
  snprintf(fds, sizeof(fds), "%d", fd);
  snprintf(owner, sizeof(owner), "%d", (int)getpid());
  char *args[] = {n->exe, "_dashboard", "--node", node, "--fd", fds, "--host", "127.0.0.1",
                  "--owner", owner, NULL};
  fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) & ~FD_CLOEXEC);
  /* Twice forked, so it is nobody's child to reap; it ends with this node
   * (--owner). */
  pid_t pid = fork();
  if (pid == 0) {
    if (fork() == 0) {
      setsid();
      int nul = open("/dev/null", O_RDWR);
      if (nul >= 0) {
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
      }
      execv(n->exe, args);
    }
    _exit(0);
  }
  if (pid > 0) waitpid(pid, NULL, 0);
  close(fd);
  n->dashboard_fd = -1;
  uv_close((uv_handle_t *)t, NULL);
}

static int listen_tcp(lr_node_t *n, const char *host, int port)
{
  struct sockaddr_storage sa;
  int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)
                             : uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
  if (rc < 0) return rc;
  uv_tcp_init(n->loop, &n->tcp_srv);
  n->tcp_srv.data = n;
  if ((rc = uv_tcp_bind(&n->tcp_srv, (struct sockaddr *)&sa, 0)) < 0) return rc;
  if ((rc = uv_listen((uv_stream_t *)&n->tcp_srv, 511, on_connection)) < 0) return rc;
  struct sockaddr_storage got;
  int len = sizeof(got);
  uv_tcp_getsockname(&n->tcp_srv, (struct sockaddr *)&got, &len);
  int bound = ntohs(((struct sockaddr_in *)&got)->sin_port);
  snprintf(n->tcp_addr, sizeof(n->tcp_addr), "%s:%d",
           !strcmp(host, "0.0.0.0") ? "127.0.0.1" : host, bound);
  n->tcp_on = 1;
  return 0;
}

int lr_raylet_main(int argc, char **argv)
{
  args_t a;
  if (parse_args(argc, argv, &a) < 0) return 2;
  lr_node_t *n = lr_xcalloc(1, sizeof(*n));
  the_node = n;
  n->loop = uv_default_loop();
  n->debug = getenv("LRAY_DEBUG") != NULL;
  n->dashboard_fd = (int)a.dashboard_fd;
  n->owner_pid = a.owner;
  const char *grace = getenv("LRAY_FREE_GRACE_S");
  n->free_grace = grace ? strtod(grace, NULL) : 0.05;
  /* Queued frames go out once per loop turn, before it polls. */
  uv_prepare_init(n->loop, &n->flusher);
  uv_prepare_start(&n->flusher, on_prepare);
  uv_unref((uv_handle_t *)&n->flusher);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGCHLD, SIG_DFL);
  if (n->owner_pid) {
    /* Embedded: die with the driver that started us, even on SIGKILL. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != n->owner_pid) return 0;
  }
  ssize_t el = readlink("/proc/self/exe", n->exe, sizeof(n->exe) - 1);
  if (el <= 0) return 1;
  n->exe[el] = 0;
  lr_node_random_hex(n->node_id, 14);
  snprintf(n->session_dir, sizeof(n->session_dir), "%s", a.session);
  mkdir(n->session_dir, 0700);
  snprintf(n->sock, sizeof(n->sock), "%s/node.sock", n->session_dir);
  /* Spill files of a node given a directory go in one of its own there,
   * which it removes when it ends (spill.c); those of nodes that could not
   * (SIGKILL) go when the next node starts there, as /dev/shm files do. */
  const char *sd = a.spill_dir ? a.spill_dir : getenv("LRAY_SPILL_DIR");
  if (sd && *sd) {
    snprintf(n->spill_dir, sizeof(n->spill_dir), "%.*s/lray-spill-%ld-%s",
             PATH_MAX - LR_ID_MAX - 40, sd, (long)getpid(), n->node_id);
    lr_spill_sweep(sd);
  }
  if (lr_sched_new(LR_SCHED_STARVE_AFTER, &n->sched) < 0) return 1;
  set_total(n, "CPU", a.num_cpus, 1);
  set_total(n, "GPU", a.num_gpus, 0);
  set_total(n, "memory", a.memory, 0);
  set_total(n, "object_store_memory", (double)a.store, 0);
  for (int i = 0; i < a.nres; i++) set_total(n, a.res_names[i], a.res_amounts[i], 0);
  n->store_size = a.store;
  n->prestart = (int)a.prestart;
  const char *mw = getenv("LRAY_MAX_WORKERS");
  uint64_t mem = uv_get_total_memory();
  int64_t by_mem = (int64_t)(mem / (32u << 20));
  n->max_workers = mw ? atoi(mw) : (int)(by_mem < 64 ? 64 : by_mem > 4096 ? 4096 : by_mem);
  lr_ev_init(n);
  lr_obj_init(n);
  lr_memmon_start(n);
  const char *agrace = getenv("LRAY_ACTOR_GRACE_S");
  lr_gcs_env_t env = {n, n->loop, head_send, head_to_raylet,
                      agrace ? strtod(agrace, NULL) : LR_GCS_HANDLE_GRACE, head_send_encoded};
  if (!a.head_address) n->gcs = lr_gcs_new(&env); /* a joined node has no head */
  uv_random(NULL, NULL, &n->job_prefix, sizeof(n->job_prefix), 0, NULL);
  n->job_prefix |= 0x8000; /* never 0000: the head's own */
  lr_shm_sweep("lray-");
  char hex[9];
  lr_node_random_hex(hex, 4);
  snprintf(n->shm_name, sizeof(n->shm_name), "lray-%d-%s", (int)getpid(), hex);
  int rc = lr_shm_create(n->shm_name, (uint64_t)a.store + LR_COOKIE_SPACE, &n->shm);
  if (rc < 0) {
    fprintf(stderr, "lray node: cannot create the object store (%lld bytes): %s\n",
            (long long)a.store, uv_strerror(rc));
    n->shm_name[0] = 0;
    lr_node_cleanup(n, 1);
  }
  lr_salloc_init(&n->region, (uint64_t)a.store);
  lr_remote_cookie_init(n, (uint64_t)a.store);
  if (a.token_file) {
    char err[LR_ERRLEN];
    if (lr_auth_token_read(a.token_file, n->token, sizeof(n->token), err) < 0) {
      fprintf(stderr, "lray node: %s\n", err);
      lr_node_cleanup(n, 1);
    }
  }
  if (a.has_port) {
    /* Loopback unless --host says otherwise: nothing listens beyond this
     * machine by default; and every TCP peer proves the cluster token. */
    if (!n->token[0]) {
      fprintf(stderr, "lray node: listening on TCP needs the cluster token (--token-file)\n");
      lr_node_cleanup(n, 1);
    }
    uv_timer_init(n->loop, &n->auth_timer);
    n->auth_timer.data = n;
    uv_timer_start(&n->auth_timer, on_auth_timer, 1000, 1000);
    uv_unref((uv_handle_t *)&n->auth_timer);
    const char *host = a.host ? a.host : "127.0.0.1";
    if ((rc = listen_tcp(n, host, (int)a.port)) < 0) {
      fprintf(stderr, "cannot listen on %s:%lld: %s\n", host, (long long)a.port, uv_strerror(rc));
      lr_node_cleanup(n, 1);
    }
  }
  if (a.head_address) {
    /* Join first: drivers and `lray start` see this node only once it is
     * part of the cluster. */
    if (!a.has_port) {
      fprintf(stderr, "lray node: a node that joins a cluster listens on TCP (--port)\n");
      lr_node_cleanup(n, 1);
    }
    if (lr_headlink_start(n, a.head_address) < 0) lr_node_cleanup(n, 1);
  }
  uv_pipe_init(n->loop, &n->unix_srv, 0);
  n->unix_srv.data = n;
  unlink(n->sock);
  if ((rc = uv_pipe_bind(&n->unix_srv, n->sock)) < 0 ||
      (rc = uv_listen((uv_stream_t *)&n->unix_srv, 511, on_connection)) < 0) {
    fprintf(stderr, "lray node: cannot listen on %s: %s\n", n->sock, uv_strerror(rc));
    lr_node_cleanup(n, 1);
  }
  if (!a.head_address) lr_headlink_self(n);
  int sigs[3] = {SIGHUP, SIGINT, SIGTERM};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(n->loop, &n->sigs[i]);
    n->sigs[i].data = n;
    uv_signal_start(&n->sigs[i], on_signal, sigs[i]);
  }
  int ncpu = (int)floor(a.num_cpus);
  int pre = ncpu < 1 ? 1 : ncpu;
  if (pre > n->prestart) pre = n->prestart;
  lr_pool_prestart(n, pre);
  if (n->dashboard_fd >= 0) {
    /* After the node's own start, so it stays off the first task's path;
     * workers started meanwhile must not inherit the socket. */
    fcntl(n->dashboard_fd, F_SETFD, fcntl(n->dashboard_fd, F_GETFD) | FD_CLOEXEC);
    uv_timer_init(n->loop, &n->dash_timer);
    n->dash_timer.data = n;
    uv_timer_start(&n->dash_timer, start_dashboard, 200, 0);
  }
  for (int i = 0; i < a.nres; i++) lr_free(a.res_names[i]);
  lr_free(a.res_names);
  lr_free(a.res_amounts);
  uv_run(n->loop, UV_RUN_DEFAULT);
  lr_node_cleanup(n, 0);
  return 0;
}
