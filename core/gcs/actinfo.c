/* What the head tells about actors: state notices to subscribers, the
 * answers to actor_create and get_actor (aid, class, methods) and the
 * state API's actor list. Reads the table; changes nothing in it but the
 * subscriber sets. Loop thread only.
 *
 * Licensed under the MIT license; see LICENSE. */
#include <stdlib.h>
#include "common/json.h"
#include "gcs/gcs_int.h"

static const char *const state_names[] = {"PENDING", "ALIVE", "RESTARTING",
                                          "DEAD"};

static void send_info(gcs_actor_t *a, uint64_t client)
{
  lr_m_actor_t m = LR_MSG_INIT(ACTOR);
  LR_SET_CSTR(m.aid, a->aid);
  LR_SET_CSTR(m.state, state_names[a->state]);
  if (a->addr) LR_SET_CSTR(m.addr, a->addr);
  if (a->pid) LR_SET_INT(m.pid, a->pid);
  if (a->cause) LR_SET_CSTR(m.cause, a->cause);
  if (a->cname) LR_SET_CSTR(m.cname, a->cname);
  if (a->name) LR_SET_CSTR(m.name, a->name);
  LR_SET_INT(m.restarts, a->restarts);
  LR_SET_INT(m.max_task_retries, a->max_task_retries);
  if (a->init_error) LR_SET_STR(m.init_error, a->init_error, a->init_error_n);
  if (a->tcp) LR_SET_CSTR(m.tcp, a->tcp);
  if (a->node_id) LR_SET_CSTR(m.node_id, a->node_id);
  a->g->env.send(a->g->env.ud, client, &m);
}

void lr_actinfo_notify(gcs_actor_t *a)
{
  for (size_t i = 0; i < a->nsubs; i++) send_info(a, a->subs[i]);
}

void lr_actinfo_subscribe(lr_gcs_t *g, uint64_t client, const lr_pf_t *aid)
{
  gcs_actor_t *a = lr_gcs_actor(g, aid);
  if (!a) {
    lr_m_actor_t m = LR_MSG_INIT(ACTOR);
    m.aid = *aid;
    LR_SET_CSTR(m.state, "DEAD");
    LR_SET_CSTR(m.cause, "no such actor on this cluster (it ended before, "
                         "or never existed)");
    g->env.send(g->env.ud, client, &m);
    return;
  }
  size_t i = 0;
  while (i < a->nsubs && a->subs[i] != client) i++;
  if (i == a->nsubs) {
    if (a->nsubs == a->subcap) {
      a->subcap = a->subcap ? 2 * a->subcap : 4;
      a->subs = lr_xrealloc(a->subs, a->subcap * sizeof(*a->subs));
    }
    a->subs[a->nsubs++] = client;
  }
  send_info(a, client);
}

/* existed < 0: a get_actor answer, which has no `existed`. */
void lr_actinfo_reply(lr_gcs_t *g, uint64_t client, const char *rid,
                      gcs_actor_t *a, int existed)
{
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  const lr_m_actor_create_t *c = lr_gcs_decode(g, &a->create);
  LR_SET_CSTR(r.aid, a->aid);
  if (existed >= 0) LR_SET_BOOL(r.existed, existed);
  if (a->cname) LR_SET_CSTR(r.cname, a->cname);
  if (c) r.methods = c->methods;
  lr_gcs_reply(g, client, rid, &r);
}

void lr_actinfo_get(lr_gcs_t *g, uint64_t client, const lr_m_get_actor_t *m)
{
  char *rid = lr_gcs_dup(&m->rid), *ns = lr_gcs_dup(&m->namespace);
  char *name = lr_gcs_dup(&m->name);
  gcs_actor_t *a = name ? lr_actors_lookup(g, ns, name) : NULL;
  if (a) {
    /* The client holds what it gets, from now: no other holder's drop can
     * end the actor before its own actor_ref would come. */
    lr_handles_hold(g, client, a->aid);
    lr_actinfo_reply(g, client, rid, a, -1);
  } else {
    lr_m_reply_t r = LR_MSG_INIT(REPLY);
    char *err = NULL;
    lr_gcs_setf(&err, "no live actor named '%s' in namespace '%s'",
                name ? name : "nil", ns ? ns : "nil");
    LR_SET_CSTR(r.err, err);
    lr_gcs_reply(g, client, rid, &r);
    lr_free(err);
  }
  lr_free(rid);
  lr_free(ns);
  lr_free(name);
}

static int by_aid(const void *x, const void *y)
{
  const gcs_actor_t *a = *(gcs_actor_t *const *)x;
  const gcs_actor_t *b = *(gcs_actor_t *const *)y;
  return strcmp(a->aid, b->aid);
}

/* {"items": [...]}, the records `lray list actors` prints, by actor id. */
void lr_actinfo_list(lr_gcs_t *g, uint64_t client, const lr_m_list_t *m)
{
  size_t n = HASH_COUNT(g->actors), i = 0;
  gcs_actor_t **v = lr_xmalloc((n ? n : 1) * sizeof(*v)), *a, *t;
  HASH_ITER(hh, g->actors, a, t) v[i++] = a;
  qsort(v, n, sizeof(*v), by_aid);
  lr_buf_t b;
  lr_json_t j;
  lr_buf_init(&b);
  lr_json_init(&j, &b);
  lr_json_obj(&j);
  lr_json_key(&j, "items");
  lr_json_arr(&j);
  for (i = 0; i < n; i++) {
    a = v[i];
    lr_json_obj(&j);
    lr_json_kstr(&j, "actor_id", a->aid);
    lr_json_kstr_opt(&j, "class_name", a->cname);
    lr_json_kstr_opt(&j, "name", a->name);
    lr_json_kstr_opt(&j, "namespace", a->ns);
    lr_json_kstr(&j, "state", state_names[a->state]);
    if (a->pid) lr_json_kint(&j, "pid", a->pid);
    lr_json_kstr_opt(&j, "cause", a->cause);
    lr_json_kint(&j, "restarts", a->restarts);
    lr_json_kbool(&j, "detached", a->detached);
    /* Holders (processes, lends, stored objects, creations): see handles.c */
    lr_json_kint(&j, "handles", a->hcount);
    lr_json_kstr_opt(&j, "node_id", a->node_id);
    lr_json_end(&j);
  }
  lr_json_end(&j);
  lr_json_end(&j);
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  char *rid = lr_gcs_dup(&m->rid);
  LR_SET_STR(r.json, b.data, b.len);
  lr_gcs_reply(g, client, rid, &r);
  lr_free(rid);
  lr_free(v);
  lr_buf_free(&b);
}
