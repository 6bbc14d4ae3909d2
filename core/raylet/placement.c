/* Actors the head placed on this node (actor_place): each waits until its
 * ObjectRef arguments exist and what placing needs (place: 1 CPU unless
 * asked otherwise) is free, then holds what it asked for (res) for as long
 * as its process lives and gets a worker of its own (actor_start). Its
 * arguments stay referenced until the head says it is over (actor_stop
 * final), so a restart can run init again. The head hears actor_placed
 * when a process takes it and worker_exit when that process ends.
 *
 * On a node that joined a cluster the arguments are held at the head's
 * node, which holds them for the actor's whole life (gcs/actors.c) and at
 * their own home while it does (xref.c). Such an argument not stored here
 * goes to the worker as a bare id: its worker asks this node, which asks
 * the head's node, and copies it here (transfer.c) in its init; the copy
 * is this node's, held by the placement, so a restart here reads it in
 * place. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "raylet/node.h"

static lr_placement_t *find(lr_node_t *n, const lr_pf_t *aid)
{
  lr_placement_t *p = NULL;
  if (aid->n) HASH_FIND(hh, n->placements, aid->v.s.p, aid->v.s.n, p);
  return p;
}

static void unplaced_remove(lr_node_t *n, lr_placement_t *p)
{
  if (!p->waiting) return;
  for (lr_placement_t **q = &n->unplaced_head; *q; q = &(*q)->next_unplaced)
    if (*q == p) {
      *q = p->next_unplaced;
      break;
    }
  p->next_unplaced = NULL;
  p->waiting = 0;
}

static void unplaced_add(lr_node_t *n, lr_placement_t *p)
{
  if (p->waiting) return;
  p->waiting = 1;
  p->next_unplaced = NULL;
  lr_placement_t **q = &n->unplaced_head;
  while (*q) q = &(*q)->next_unplaced;
  *q = p;
}

static void sock_unlink(lr_node_t *n, const char *aid)
{
  char path[PATH_MAX + 80];
  snprintf(path, sizeof(path), "%s/a-%s.sock", n->session_dir, aid);
  unlink(path);
}

static void release(lr_node_t *n, lr_placement_t *p)
{
  if (!p->placed) return;
  lr_sched_release(n->sched, p->num);
  p->placed = 0;
}

static void placement_free(lr_node_t *n, lr_placement_t *p)
{
  HASH_DEL(n->placements, p);
  unplaced_remove(n, p);
  release(n, p);
  if (p->spawned) p->spawned->for_actor = NULL; /* it becomes a task worker */
  for (uint32_t i = 0; i < p->nholds; i++) {
    lr_obj_decref(n, p->holds[i], strlen(p->holds[i]));
    lr_free(p->holds[i]);
  }
  lr_free(p->holds);
  lr_buf_free(&p->place_msg);
  lr_free(p->cname);
  lr_free(p->aid);
  lr_free(p);
}

static void tell_exit(lr_node_t *n, const char *aid, int64_t pid, int64_t status, int sig,
                      const char *cause)
{
  lr_m_worker_exit_t m = LR_MSG_INIT(WORKER_EXIT);
  LR_SET_CSTR(m.aid, aid);
  if (pid) LR_SET_INT(m.pid, pid);
  LR_SET_INT(m.status, status);
  LR_SET_INT(m.signal, sig);
  if (cause) LR_SET_CSTR(m.cause, cause);
  lr_node_to_head(n, 0, &m);
}

/* The actor can never be placed here: the head ends it with cause. */
static void never(lr_node_t *n, lr_placement_t *p, const char *cause)
{
  char *aid = lr_xstrdup(p->aid);
  p->final = 1;
  placement_free(n, p);
  tell_exit(n, aid, 0, 0, 0, cause);
  lr_free(aid);
}

/* The placement holds argument id; on a joined node, at the head's node. */
static void hold(lr_node_t *n, lr_placement_t *p, const lr_pstr_t *id)
{
  p->holds[p->nholds++] = lr_pstrdup(&(lr_pf_t){1, {.s = *id}, NULL});
  if (!n->gcs && n->head_address[0]) {
    lr_pf_t head = {1, {.s = {n->head_address, strlen(n->head_address)}}, NULL};
    lr_xref_home(n, lr_obj_get(n, id->p, id->n), &head);
  }
  lr_obj_incref(n, id->p, id->n);
}

void lr_place_actor(lr_node_t *n, const lr_m_actor_place_t *m)
{
  if (!m->aid.n) return;
  lr_placement_t *p = find(n, &m->aid);
  if (p) { /* a restart: arguments are still held */
    if (!p->worker && !p->placed) unplaced_add(n, p);
    lr_place_waiting(n);
    return;
  }
  p = lr_xcalloc(1, sizeof(*p));
  p->aid = lr_pstrdup(&m->aid);
  p->cname = m->cname.n ? lr_pstrdup(&m->cname) : lr_xstrdup("actor");
  if (m->job.n && m->job.v.s.n < sizeof(p->job)) memcpy(p->job, m->job.v.s.p, m->job.v.s.n);
  lr_buf_init(&p->place_msg);
  lr_proto_encode(&p->place_msg, m);
  p->num = lr_node_number(n);
  HASH_ADD_KEYPTR(hh, n->placements, p->aid, strlen(p->aid), p);
  p->holds = lr_xcalloc((size_t)m->deps.n + m->refs.n + 1, sizeof(char *));
  for (uint32_t i = 0; i < m->deps.n; i++) hold(n, p, &m->deps.items[i].v.s);
  for (uint32_t i = 0; i < m->refs.n; i++) hold(n, p, &m->refs.items[i].v.s);
  char why[300], cause[400];
  lr_pf_t cpu1 = {0};
  if (lr_lease_req(n, m->place.n ? &m->place : &cpu1, &p->place, why, sizeof(why)) < 0 ||
      lr_lease_req(n, &m->res, &p->res, why, sizeof(why)) < 0) {
    snprintf(cause, sizeof(cause), "it cannot be placed: %s", why);
    never(n, p, cause);
    return;
  }
  if (!m->res.n) lr_res_req_init(&p->res); /* asked for nothing: holds nothing */
  const char *missing = NULL;
  if (lr_sched_infeasible(n->sched, &p->place, &missing) ||
      lr_sched_infeasible(n->sched, &p->res, &missing)) {
    char text[600];
    snprintf(text, sizeof(text), "actor %s cannot be placed: it needs %s that no node has;"
             " it stays pending until a node that fits joins", p->cname, missing);
    lr_node_warn(n, p->job, text);
  }
  unplaced_add(n, p);
  lr_place_waiting(n);
}

/* Stored here, or another node's to copy (its worker does, in its init).
 * One spilled here is read back first, off the loop (lr_obj_restored then
 * walks the waiting placements again); one that cannot be is left to
 * start_on, whose blocking restore says why. */
static int deps_ready(lr_node_t *n, const lr_m_actor_place_t *m)
{
  int ready = 1;
  for (uint32_t i = 0; i < m->deps.n; i++) {
    const lr_pstr_t *id = &m->deps.items[i].v.s;
    lr_obj_t *o = lr_obj_find(n, id->p, id->n);
    if (!lr_obj_ready(n, id->p, id->n) && !(o && o->home)) return 0;
    if (o && o->st == LR_O_OK && o->spilled_len >= 0 && lr_spill_restore_async(n, o) == 1)
      ready = 0; /* (and the others' reads start meanwhile) */
  }
  return ready;
}

/* Sends actor_start to w: the class, the init arguments and the values of
 * the ObjectRef ones stored here, so the worker need not ask (it asks for
 * those of another node, sent as ids alone). */
static void start_on(lr_node_t *n, lr_placement_t *p, lr_worker_t *w)
{
  lr_arena_t ar = {0};
  void *out;
  int type = lr_proto_decode(p->place_msg.data, p->place_msg.len, &ar, &out, NULL, 0);
  lr_assert(type == LR_PT_ACTOR_PLACE);
  const lr_m_actor_place_t *m = out;
  p->worker = w;
  p->spawned = NULL;
  w->actor = p;
  w->for_actor = NULL;
  w->state = LR_W_ACTOR;
  lr_memmon_worker_role(w, 1);
  snprintf(w->job, sizeof(w->job), "%s", p->job);
  lr_free(w->label);
  w->label = lr_xstrdup(p->cname);
  lr_pool_introduce_job(n, w, p->job);
  lr_m_actor_start_t s = LR_MSG_INIT(ACTOR_START);
  s.aid = m->aid;
  s.code = m->code;
  s.args = m->args;
  s.cname = m->cname;
  s.job = m->job;
  s.opts = m->opts;
  LR_SET_CSTR(s.session, n->session_dir);
  uint32_t nd = m->deps.n;
  lr_m_value_t *vals = lr_xcalloc(nd ? nd : 1, sizeof(*vals));
  lr_pitem_t *shm = lr_xcalloc(nd ? 2 * nd : 1, sizeof(*shm));
  lr_pitem_t *depv = lr_xcalloc(nd ? nd : 1, sizeof(*depv));
  for (uint32_t i = 0; i < nd; i++) {
    const lr_pstr_t *id = &m->deps.items[i].v.s;
    vals[i].type = LR_PT_VALUE;
    vals[i].id.n = 1;
    vals[i].id.v.s = *id;
    lr_obj_t *o = lr_obj_find(n, id->p, id->n);
    if (o) lr_spill_restore(n, o); /* (it stays on disk only when the store is full) */
    if (o) lr_obj_value(o, &vals[i], &shm[2 * i]);
    depv[i].key.i = m->deps.items[i].key.i;
    depv[i].v.rec = &vals[i];
  }
  if (nd) LR_SET_ITEMS(s.depv, depv, nd);
  int ids[LR_RES_MAXGPU];
  lr_pitem_t gitems[LR_RES_MAXGPU];
  int ng = lr_res_gpus_ids(&p->gpus, ids);
  for (int i = 0; i < ng; i++) gitems[i].v.i = ids[i];
  if (ng) LR_SET_ITEMS(s.gpus, gitems, ng);
  lr_node_send(w->client, &s);
  lr_free(vals);
  lr_free(shm);
  lr_free(depv);
  lr_arena_free(&ar);
  lr_m_actor_placed_t pl = LR_MSG_INIT(ACTOR_PLACED);
  LR_SET_CSTR(pl.aid, p->aid);
  LR_SET_INT(pl.pid, w->pid);
  LR_SET_CSTR(pl.node_id, n->node_id);
  lr_node_to_head(n, 0, &pl);
}

void lr_place_waiting(lr_node_t *n)
{
  /* Those that cannot get a process are told to the head after the walk:
   * what the head does then may change this list. */
  char **failed = NULL;
  size_t nfailed = 0;
  lr_placement_t *p = n->unplaced_head, *next;
  for (; p; p = next) {
    next = p->next_unplaced;
    lr_arena_t ar = {0};
    void *out;
    lr_proto_decode(p->place_msg.data, p->place_msg.len, &ar, &out, NULL, 0);
    int ready = deps_ready(n, out);
    lr_arena_free(&ar);
    lr_sched_grant_t g;
    /* Placing needs `place` free right now; the actor then holds only what
     * it asked for, for its whole life. */
    if (!ready || lr_sched_hold(n->sched, p->num, &p->place, &g) != 1) continue;
    lr_sched_release(n->sched, p->num);
    if (lr_sched_hold(n->sched, p->num, &p->res, &g) != 1) continue;
    p->gpus = g.gpus;
    p->placed = 1;
    unplaced_remove(n, p);
    lr_worker_t *w = lr_pool_take_idle(n);
    if (w) {
      start_on(n, p, w);
    } else if ((w = lr_pool_spawn(n, p))) {
      p->spawned = w;
    } else {
      failed = lr_xrealloc(failed, (nfailed + 1) * sizeof(char *));
      failed[nfailed++] = lr_xstrdup(p->aid);
    }
  }
  for (size_t i = 0; i < nfailed; i++) {
    lr_placement_t *f = NULL;
    HASH_FIND_STR(n->placements, failed[i], f);
    if (f && !f->worker) never(n, f, "no worker process could be started for it");
    lr_free(failed[i]);
  }
  lr_free(failed);
}

int lr_place_on_hello(lr_node_t *n, lr_worker_t *w)
{
  lr_placement_t *p = w->for_actor;
  if (!p || p->worker || p->final) return 0;
  start_on(n, p, w);
  return 1;
}

void lr_place_worker_exited(lr_node_t *n, lr_worker_t *w)
{
  lr_placement_t *p = w->actor ? w->actor : w->for_actor;
  if (!p) return;
  w->actor = NULL;
  w->for_actor = NULL;
  if (p->worker && p->worker != w) return; /* an older process of it */
  if (p->spawned == w) p->spawned = NULL;
  p->worker = NULL;
  release(n, p);
  sock_unlink(n, p->aid);
  char *aid = lr_xstrdup(p->aid);
  int final = p->final;
  if (final) placement_free(n, p);
  /* The head decides: a restart (actor_place again) or the end. */
  tell_exit(n, aid, w->pid, w->exit_status, w->exit_signal, NULL);
  lr_free(aid);
  lr_place_waiting(n);
}

void lr_place_stop(lr_node_t *n, const lr_m_actor_stop_t *m)
{
  lr_placement_t *p = find(n, &m->aid);
  if (!p) return;
  int final = m->final.n && m->final.v.b;
  unplaced_remove(n, p);
  if (p->worker) {
    if (final) p->final = 1; /* freed once its process is gone */
    lr_pool_kill(p->worker, SIGKILL);
    return;
  }
  release(n, p);
  if (p->spawned) {
    p->spawned->for_actor = NULL;
    p->spawned = NULL;
  }
  if (final) placement_free(n, p);
  lr_dispatch(n);
}

void lr_place_unlink_all(lr_node_t *n)
{
  for (lr_placement_t *p = n->placements; p; p = p->hh.next) sock_unlink(n, p->aid);
}
