/* The head's front: lr_gcs_new/free, message dispatch, the jobs (their
 * namespaces and liveness) and the function table. The actor table is
 * actors.c; handle counting is handles.c. Loop thread only.
 *
 * Licensed under the MIT license; see LICENSE. */
#include <stdarg.h>
#include <stdio.h>
#include "gcs/gcs_int.h"

/* -- Helpers shared by the head's files ------------------------------------ */

char *lr_gcs_dup(const lr_pf_t *f)
{
  if (!LR_HAS(*f)) return NULL;
  char *s = lr_xmalloc(f->v.s.n + 1);
  memcpy(s, f->v.s.p, f->v.s.n);
  s[f->v.s.n] = '\0';
  return s;
}

void lr_gcs_setf(char **dst, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = lr_xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  lr_free(*dst);
  *dst = s;
}

/* Ids are looked up as C strings: a key with a NUL in it finds what its
 * first part names, the same way it was stored. */
gcs_actor_t *lr_gcs_actor(lr_gcs_t *g, const lr_pf_t *aid)
{
  if (!LR_HAS(*aid)) return NULL;
  gcs_actor_t *a;
  size_t n = strnlen(aid->v.s.p, aid->v.s.n);
  HASH_FIND(hh, g->actors, aid->v.s.p, n, a);
  return a;
}

const gcs_job_t *lr_gcs_job(lr_gcs_t *g, const char *job)
{
  gcs_job_t *j = NULL;
  if (job) HASH_FIND_STR(g->jobs, job, j);
  return j;
}

const gcs_fn_t *lr_gcs_fn(lr_gcs_t *g, const lr_pf_t *h)
{
  if (!LR_HAS(*h)) return NULL;
  gcs_fn_t *f;
  HASH_FIND(hh, g->fns, h->v.s.p, strnlen(h->v.s.p, h->v.s.n), f);
  return f;
}

void *lr_gcs_decode(lr_gcs_t *g, const lr_buf_t *b)
{
  void *m = NULL;
  if (lr_proto_decode(b->data, b->len, &g->scratch, &m, NULL, 0) < 0)
    return NULL;
  return m;
}

void lr_gcs_reply(lr_gcs_t *g, uint64_t client, const char *rid,
                  lr_m_reply_t *r)
{
  if (rid) LR_SET_CSTR(r->rid, rid);
  g->env.send(g->env.ud, client, r);
}

void lr_gcs_enter(lr_gcs_t *g) { g->depth++; }

/* Decoded copies stay valid until the outermost call returns: a message the
 * head sends may call back into it (a node manager in the same process). */
void lr_gcs_leave(lr_gcs_t *g)
{
  if (--g->depth == 0) lr_arena_reset(&g->scratch);
}

/* -- Jobs and functions ---------------------------------------------------- */

static void on_job(lr_gcs_t *g, const lr_m_job_t *m)
{
  if (!LR_HAS(m->job)) return;
  char *id = lr_gcs_dup(&m->job);
  gcs_job_t *j;
  HASH_FIND_STR(g->jobs, id, j);
  if (!j) {
    j = lr_xcalloc(1, sizeof(*j));
    j->job = id;
    HASH_ADD_KEYPTR(hh, g->jobs, j->job, strlen(j->job), j);
  } else {
    lr_free(id);
  }
  lr_free(j->ns);
  j->ns = lr_gcs_dup(&m->namespace);
}

static void free_job(lr_gcs_t *g, gcs_job_t *j)
{
  HASH_DEL(g->jobs, j);
  lr_free(j->job);
  lr_free(j->ns);
  lr_free(j);
}

/* The job's driver left: the job is no longer alive (its actors do not
 * restart) and its non-detached actors end. */
static void on_job_end(lr_gcs_t *g, const lr_m_job_end_t *m)
{
  char *id = lr_gcs_dup(&m->job);
  if (!id) return;
  gcs_job_t *j;
  HASH_FIND_STR(g->jobs, id, j);
  if (j) free_job(g, j);
  lr_actors_drop_job(g, id);
  lr_free(id);
}

/* A class's code by content hash; actor_create names it by ch. */
static void on_fn(lr_gcs_t *g, const lr_m_fn_t *m)
{
  if (!LR_HAS(m->h) || !LR_HAS(m->code)) return;
  gcs_fn_t *f = (gcs_fn_t *)lr_gcs_fn(g, &m->h);
  if (!f) {
    f = lr_xcalloc(1, sizeof(*f));
    f->h = lr_gcs_dup(&m->h);
    HASH_ADD_KEYPTR(hh, g->fns, f->h, strlen(f->h), f);
  }
  lr_free(f->code);
  f->n = m->code.v.s.n;
  f->code = lr_xmalloc(f->n ? f->n : 1);
  memcpy(f->code, m->code.v.s.p, f->n);
}

/* -- Dispatch -------------------------------------------------------------- */

lr_gcs_t *lr_gcs_new(const lr_gcs_env_t *env)
{
  lr_gcs_t *g = lr_xcalloc(1, sizeof(*g));
  g->env = *env;
  double grace = env->handle_grace > 0 ? env->handle_grace : 0;
  g->grace_ms = (uint64_t)(grace * 1000 + 0.5);
  return g;
}

void lr_gcs_free(lr_gcs_t *g)
{
  if (!g) return;
  gcs_actor_t *a, *ta;
  HASH_CLEAR(hh_name, g->names);
  HASH_ITER(hh, g->actors, a, ta) {
    HASH_DELETE(hh, g->actors, a);
    lr_actors_free(a);
  }
  gcs_job_t *j, *tj;
  HASH_ITER(hh, g->jobs, j, tj) free_job(g, j);
  gcs_fn_t *f, *tf;
  HASH_ITER(hh, g->fns, f, tf) {
    HASH_DEL(g->fns, f);
    lr_free(f->h);
    lr_free(f->code);
    lr_free(f);
  }
  lr_handles_free(g);
  lr_nodes_free(g);
  lr_arena_free(&g->scratch);
  lr_free(g);
}

static void from_raylet(lr_gcs_t *g, const void *m)
{
  switch (((const lr_prec_t *)m)->type) {
  case LR_PT_JOB: on_job(g, m); break;
  case LR_PT_JOB_END: on_job_end(g, m); break;
  case LR_PT_CLIENT_GONE: {
    const lr_m_client_gone_t *c = m;
    if (LR_HAS(c->client)) {
      lr_actors_drop_client(g, (uint64_t)c->client.v.i);
      lr_nodes_client_gone(g, (uint64_t)c->client.v.i);
    }
    break;
  }
  case LR_PT_NODE_REGISTER: lr_nodes_register(g, 0, m); break;
  case LR_PT_NODE_VIEW: lr_nodes_view(g, 0, m); break;
  case LR_PT_ACTOR_PLACED: lr_actors_placed(g, m); break;
  case LR_PT_WORKER_EXIT: lr_actors_exit(g, m); break;
  case LR_PT_LEND: lr_handles_lend(g, m); break;
  case LR_PT_CLAIM:
    lr_handles_release(g, &((const lr_m_claim_t *)m)->token);
    break;
  case LR_PT_UNLEND:
    lr_handles_release(g, &((const lr_m_unlend_t *)m)->token);
    break;
  default: break;
  }
}

static void from_client(lr_gcs_t *g, uint64_t client, const void *m)
{
  switch (((const lr_prec_t *)m)->type) {
  case LR_PT_FN: on_fn(g, m); break;
  case LR_PT_ACTOR_CREATE: lr_actors_create(g, client, m); break;
  case LR_PT_ACTOR_SUB:
    lr_actinfo_subscribe(g, client, &((const lr_m_actor_sub_t *)m)->aid);
    break;
  case LR_PT_ACTOR_REF: {
    /* Perhaps before its creator's actor_create: counted from then. */
    char *aid = lr_gcs_dup(&((const lr_m_actor_ref_t *)m)->aid);
    if (aid) lr_handles_hold(g, client, aid);
    lr_free(aid);
    break;
  }
  case LR_PT_ACTOR_UNREF: {
    char *aid = lr_gcs_dup(&((const lr_m_actor_unref_t *)m)->aid);
    if (aid) lr_handles_unhold(g, client, aid);
    lr_free(aid);
    break;
  }
  case LR_PT_ACTOR_READY: lr_actors_ready(g, m); break;
  case LR_PT_ACTOR_FAILED: lr_actors_failed(g, m); break;
  case LR_PT_KILL_ACTOR: lr_actors_kill(g, client, m); break;
  case LR_PT_GET_ACTOR: lr_actinfo_get(g, client, m); break;
  case LR_PT_NODE_REGISTER: lr_nodes_register(g, client, m); break;
  case LR_PT_NODE_VIEW: lr_nodes_view(g, client, m); break;
  /* A joined node's reports on the actors the head placed there: only
   * from that node. */
  case LR_PT_ACTOR_PLACED: {
    gcs_actor_t *a = lr_gcs_actor(g, &((const lr_m_actor_placed_t *)m)->aid);
    if (a && a->node_client == client) lr_actors_placed(g, m);
    break;
  }
  case LR_PT_WORKER_EXIT: {
    gcs_actor_t *a = lr_gcs_actor(g, &((const lr_m_worker_exit_t *)m)->aid);
    if (a && a->node_client == client) lr_actors_exit(g, m);
    break;
  }
  case LR_PT_NODES: lr_nodes_list(g, client, &((const lr_m_nodes_t *)m)->rid); break;
  case LR_PT_LIST: {
    const lr_m_list_t *l = m;
    if (LR_HAS(l->what) && l->what.v.s.n == 6 &&
        !memcmp(l->what.v.s.p, "actors", 6))
      lr_actinfo_list(g, client, l);
    break;
  }
  default: break;
  }
}

void lr_gcs_recv(lr_gcs_t *g, uint64_t client, const void *m)
{
  lr_gcs_enter(g);
  if (client == 0) from_raylet(g, m);
  else from_client(g, client, m);
  lr_gcs_leave(g);
}
