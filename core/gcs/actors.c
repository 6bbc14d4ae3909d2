/* The actor table and its state machine (docs/actors.md):
 *
 *   PENDING --ready--> ALIVE --exit, restarts left--> (RESTARTING) PENDING
 *      \                 \
 *       +-----------------+--exit, init error, kill, owner gone--> DEAD
 *
 * The head never runs a process: it asks the node manager to place an actor
 * (actor_place, again at each restart) and to stop one (actor_stop), and
 * learns from it that the process runs (actor_placed) or ended
 * (worker_exit). An actor with a process is ended by stopping the process
 * and waiting for its exit; one without is DEAD at once. Names belong to
 * live actors only. Dead actors stay in the table, for lists and late
 * subscribers. Port of lua/lray/_node/actors.lua: the causes are the same
 * bytes. Loop thread only.
 *
 * Licensed under the MIT license; see LICENSE. */
#include "gcs/gcs_int.h"

static void drop_owned(gcs_actor_t *owner, const char *how);

#define OR_NIL(s) ((s) ? (s) : "nil") /* Lua's tostring(nil) */

/* -- Names ----------------------------------------------------------------- */

/* namespace "\0" name, as the Lua keyed its names (nil namespace: "nil"). */
static char *name_key(const char *ns, const char *name, size_t *len)
{
  size_t a = strlen(OR_NIL(ns)), b = strlen(name);
  char *k = lr_xmalloc(a + b + 2);
  memcpy(k, OR_NIL(ns), a + 1);
  memcpy(k + a + 1, name, b + 1);
  *len = a + 1 + b;
  return k;
}

gcs_actor_t *lr_actors_lookup(lr_gcs_t *g, const char *ns, const char *name)
{
  size_t n;
  char *k = name_key(ns, name, &n);
  gcs_actor_t *a;
  HASH_FIND(hh_name, g->names, k, n, a);
  lr_free(k);
  return a && a->state != LR_ACTOR_DEAD ? a : NULL;
}

static void release_name(gcs_actor_t *a)
{
  if (!a->name_key) return;
  HASH_DELETE(hh_name, a->g->names, a);
  lr_free(a->name_key);
  a->name_key = NULL;
}

/* -- Asking the node manager ----------------------------------------------- */

static void stop(gcs_actor_t *a, int final)
{
  lr_m_actor_stop_t m = LR_MSG_INIT(ACTOR_STOP);
  LR_SET_CSTR(m.aid, a->aid);
  if (final) LR_SET_BOOL(m.final, 1);
  a->stop_sent = 1;
  if (final) a->final_sent = 1;
  if (a->node_client) a->g->env.send(a->g->env.ud, a->node_client, &m);
  else a->g->env.to_raylet(a->g->env.ud, &m);
}

/* The head's node holds an actor's ObjectRef arguments (deps and the refs
 * inside its values) from its creation until it is DEAD, wherever it runs:
 * a lend under "args:<aid>" that only the unlend at its end takes back. The
 * creator's hold is counted until then (its actor_create comes before its
 * unrefs), so the node that places it, which holds them at the head's node,
 * may be any node, and a restart after that node died finds them. A driver
 * on a joined node: that node lent them (c->lnode, the same token), so the
 * head's node holds them there (lend.home, xref.c); lend_over then ends
 * that node's lend, after the hold on the same link. */
static void hold_args(gcs_actor_t *a, const lr_m_actor_create_t *c, int on)
{
  if (!c || (!LR_HAS(c->deps) && !LR_HAS(c->refs))) return;
  char *token = NULL;
  lr_gcs_setf(&token, "args:%s", a->aid);
  if (on) {
    uint32_t n = c->deps.n + c->refs.n, k = 0;
    lr_pitem_t *ids = lr_xcalloc(n, sizeof(*ids));
    for (uint32_t i = 0; i < c->deps.n; i++) ids[k++].v = c->deps.items[i].v;
    for (uint32_t i = 0; i < c->refs.n; i++) ids[k++].v = c->refs.items[i].v;
    lr_m_lend_t m = LR_MSG_INIT(LEND);
    LR_SET_CSTR(m.token, token);
    LR_SET_ITEMS(m.ids, ids, k);
    m.home = c->lnode;
    a->g->env.to_raylet(a->g->env.ud, &m);
    lr_free(ids);
  } else {
    lr_m_unlend_t m = LR_MSG_INIT(UNLEND);
    LR_SET_CSTR(m.token, token);
    a->g->env.to_raylet(a->g->env.ud, &m);
  }
  lr_free(token);
}

/* The joined node that lent the arguments of actor_create c (c->lnode)
 * holds them no longer: the head's node holds them now, or the actor was
 * not created (its name was taken, ...). Claimed over that node's link. */
static void lend_over(lr_gcs_t *g, const lr_m_actor_create_t *c)
{
  if (!LR_HAS(c->lnode) || !LR_HAS(c->aid) || (!LR_HAS(c->deps) && !LR_HAS(c->refs))) return;
  char *token = NULL;
  lr_gcs_setf(&token, "args:%.*s", (int)c->aid.v.s.n, c->aid.v.s.p);
  lr_m_claim_t m = LR_MSG_INIT(CLAIM);
  LR_SET_CSTR(m.token, token);
  m.node = c->lnode;
  g->env.to_raylet(g->env.ud, &m);
  lr_free(token);
}

/* What placing needs free when the creator asked nothing: one CPU. */
static lr_pitem_t one_cpu = {.key.s = {"CPU", 3}, .v.i = 10000};

/* Sends actor_place with everything the creator sent (kept in a->create)
 * and the class's code as the function table has it now. */
static void place(gcs_actor_t *a)
{
  lr_gcs_t *g = a->g;
  const lr_m_actor_create_t *c = lr_gcs_decode(g, &a->create);
  lr_m_actor_place_t m = LR_MSG_INIT(ACTOR_PLACE);
  LR_SET_CSTR(m.aid, a->aid);
  if (a->job) LR_SET_CSTR(m.job, a->job);
  if (a->cname) LR_SET_CSTR(m.cname, a->cname);
  if (c) {
    const gcs_fn_t *f = lr_gcs_fn(g, &c->ch);
    if (f) LR_SET_STR(m.code, f->code, f->n);
    m.args = c->args;
    m.deps = c->deps;
    m.refs = c->refs;
    m.res = c->res;
    m.place = c->place;
    m.opts = c->opts;
  }
  if (!LR_HAS(m.place)) LR_SET_ITEMS(m.place, &one_cpu, 1);
  a->running = a->stop_sent = 0;
  uint64_t before = a->node_client;
  a->node_client = lr_nodes_pick(g, &m.place, &m.res, 0);
  if (a->placed_once && before != a->node_client) {
    /* A restart elsewhere while the node it ran on lives: that placement
     * (and its hold of the arguments) is over. */
    lr_m_actor_stop_t s = LR_MSG_INIT(ACTOR_STOP);
    LR_SET_CSTR(s.aid, a->aid);
    LR_SET_BOOL(s.final, 1);
    if (before) g->env.send(g->env.ud, before, &s);
    else g->env.to_raylet(g->env.ud, &s);
  }
  a->placed_once = 1;
  if (a->node_client) g->env.send(g->env.ud, a->node_client, &m);
  else g->env.to_raylet(g->env.ud, &m);
}

/* -- Transitions ----------------------------------------------------------- */

/* Lua's set_dead: the first cause set wins. Tells the node manager the
 * actor is over (it kills a process still running and lets go of its
 * arguments), frees its name and the handles it held, tells subscribers and
 * answers the kills waiting for this. */
static void set_dead(gcs_actor_t *a, const char *cause)
{
  lr_gcs_t *g = a->g;
  if (a->state == LR_ACTOR_DEAD) return;
  a->state = LR_ACTOR_DEAD;
  char *how = NULL;
  lr_gcs_setf(&how, "ended (%s)", OR_NIL(a->cause ? a->cause : cause));
  drop_owned(a, how);
  lr_free(how);
  if (!a->cause && cause) a->cause = lr_xstrdup(cause);
  lr_free(a->addr);
  lr_free(a->tcp);
  a->addr = a->tcp = NULL;
  release_name(a);
  if (!a->final_sent) stop(a, 1);
  hold_args(a, lr_gcs_decode(g, &a->create), 0);
  a->running = 0;
  lr_handles_hold_list(g, a, -1);
  for (size_t i = 0; i < a->nholds; i++) lr_free(a->holds[i]);
  lr_free(a->holds);
  a->holds = NULL;
  a->nholds = 0;
  lr_actinfo_notify(a);
  gcs_waiter_t *w = a->waiters;
  size_t n = a->nwaiters;
  a->waiters = NULL;
  a->nwaiters = 0;
  for (size_t i = 0; i < n; i++) {
    lr_m_reply_t r = LR_MSG_INIT(REPLY);
    lr_gcs_reply(g, w[i].client, w[i].rid, &r);
    lr_free(w[i].rid);
  }
  lr_free(w);
}

void lr_actors_end(gcs_actor_t *a)
{
  if (!a->running) {
    set_dead(a, a->cause);
  } else if (a->no_restart) {
    if (!a->final_sent) stop(a, 1);
  } else if (!a->stop_sent) {
    stop(a, 0); /* its exit restarts it */
  }
}

/* The process of actor owner is gone (killed, crashed, restarting): the
 * non-detached actors it created end with it, whatever handles remain. */
static void drop_owned(gcs_actor_t *owner, const char *how)
{
  gcs_actor_t *a, *t;
  HASH_ITER(hh, owner->g->actors, a, t) {
    if (a->owner && !strcmp(a->owner, owner->aid) && !a->detached &&
        a->state != LR_ACTOR_DEAD) {
      lr_gcs_setf(&a->cause, "its owner, actor %s(%s), %s",
                  OR_NIL(owner->cname), owner->aid, how);
      a->no_restart = 1;
      lr_actors_end(a);
    }
  }
}

/* The process died and restarts remain: init runs again with the original
 * arguments. Subscribers see RESTARTING (with the cause), then ALIVE. */
static void restart(gcs_actor_t *a, char *how)
{
  a->restarts++;
  lr_free(a->cause);
  a->cause = how;
  a->state = LR_ACTOR_RESTARTING;
  lr_free(a->addr);
  lr_free(a->tcp);
  a->addr = a->tcp = NULL;
  a->pid = 0;
  a->killed = 0;
  lr_actinfo_notify(a);
  a->state = LR_ACTOR_PENDING;
  lr_free(a->cause);
  a->cause = NULL;
  place(a);
}

/* -- Messages -------------------------------------------------------------- */

static void copy_holds(lr_gcs_t *g, gcs_actor_t *a, const lr_pf_t *aids)
{
  if (!aids->n) return;
  a->holds = lr_xcalloc(aids->n, sizeof(*a->holds));
  for (uint32_t i = 0; i < aids->n; i++) {
    lr_pf_t one = {.n = 1, .v = aids->items[i].v};
    gcs_actor_t *b = lr_gcs_actor(g, &one);
    /* Only actors that exist now are held, so only they are let go. */
    if (b) a->holds[a->nholds++] = lr_xstrdup(b->aid);
  }
}

static int str_is(const lr_pf_t *f, const char *s)
{
  return LR_HAS(*f) && f->v.s.n == strlen(s) && !memcmp(f->v.s.p, s, f->v.s.n);
}

void lr_actors_create(lr_gcs_t *g, uint64_t client,
                      const lr_m_actor_create_t *m)
{
  char *rid = lr_gcs_dup(&m->rid);
  const lr_m_actor_opts_t *o = LR_HAS(m->opts) ? m->opts.v.rec : NULL;
  char *job = lr_gcs_dup(&m->job), *ns = NULL, *name = NULL, *key = NULL;
  size_t klen = 0;
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  gcs_actor_t *a;

  if (!LR_HAS(m->aid) || lr_gcs_actor(g, &m->aid)) {
    /* Not in the Lua, which trusted its clients: ids are fresh. */
    if (rid) {
      LR_SET_CSTR(r.err, LR_HAS(m->aid) ? "an actor with this id exists already"
                                        : "actor_create without an aid");
      lr_gcs_reply(g, client, rid, &r);
    }
    goto out;
  }
  if (o && LR_HAS(o->namespace)) {
    ns = lr_gcs_dup(&o->namespace);
  } else {
    const gcs_job_t *j = lr_gcs_job(g, job);
    if (j && j->ns) ns = lr_xstrdup(j->ns);
  }
  if (o && LR_HAS(o->name)) {
    name = lr_gcs_dup(&o->name);
    key = name_key(ns, name, &klen);
    gcs_actor_t *e;
    HASH_FIND(hh_name, g->names, key, klen, e);
    if (e && e->state != LR_ACTOR_DEAD) {
      if (LR_HAS(o->get_if_exists) && o->get_if_exists.v.b) {
        lr_handles_hold(g, client, e->aid); /* as lr_actinfo_get */
        if (rid) lr_actinfo_reply(g, client, rid, e, !str_is(&m->aid, e->aid));
      } else if (rid) {
        char *err = NULL;
        lr_gcs_setf(&err,
                    "an actor named '%s' already exists in namespace '%s'; "
                    "pick another name, kill the old actor, or pass "
                    "get_if_exists = true",
                    name, OR_NIL(ns));
        LR_SET_CSTR(r.err, err);
        lr_gcs_reply(g, client, rid, &r);
        lr_free(err);
      }
      goto out;
    }
  }

  a = lr_xcalloc(1, sizeof(*a));
  a->g = g;
  a->aid = lr_gcs_dup(&m->aid);
  a->cname = lr_gcs_dup(&m->cname);
  a->name = name;
  a->ns = ns;
  a->job = job;
  a->owner = lr_gcs_dup(&m->owner);
  name = ns = job = NULL;
  a->state = LR_ACTOR_PENDING;
  a->detached = o && str_is(&o->lifetime, "detached");
  a->max_restarts = o && LR_HAS(o->max_restarts) ? o->max_restarts.v.i : 0;
  a->max_task_retries =
      o && LR_HAS(o->max_task_retries) ? o->max_task_retries.v.i : 0;
  lr_proto_encode(&a->create, m);
  HASH_ADD_KEYPTR(hh, g->actors, a->aid, strlen(a->aid), a);
  if (key) {
    a->name_key = key;
    a->name_klen = klen;
    key = NULL;
    gcs_actor_t *e;
    HASH_FIND(hh_name, g->names, a->name_key, a->name_klen, e);
    if (e) release_name(e); /* a dead holder: never, set_dead frees it */
    HASH_ADD_KEYPTR(hh_name, g->names, a->name_key, a->name_klen, a);
  }
  lr_handles_adopt(g, a); /* holds that came first, over other connections */
  lr_handles_hold(g, client, a->aid); /* the creator holds what it gets */
  copy_holds(g, a, &m->actors);
  lr_handles_hold_list(g, a, 1);
  hold_args(a, m, 1);
  place(a);
  if (rid) lr_actinfo_reply(g, client, rid, a, 0);
out:
  lend_over(g, m);
  lr_free(rid);
  lr_free(job);
  lr_free(ns);
  lr_free(name);
  lr_free(key);
}

/* The node manager started the actor's process: still PENDING until its
 * init succeeds (actor_ready). */
void lr_actors_placed(lr_gcs_t *g, const lr_m_actor_placed_t *m)
{
  gcs_actor_t *a = lr_gcs_actor(g, &m->aid);
  if (!a || a->state != LR_ACTOR_PENDING || !LR_HAS(m->pid)) return;
  a->pid = m->pid.v.i;
  a->running = 1;
  if (LR_HAS(m->node_id)) {
    lr_free(a->node_id);
    a->node_id = lr_gcs_dup(&m->node_id);
  }
}

void lr_actors_ready(lr_gcs_t *g, const lr_m_actor_ready_t *m)
{
  gcs_actor_t *a = lr_gcs_actor(g, &m->aid);
  if (!a || a->state != LR_ACTOR_PENDING) return;
  a->state = LR_ACTOR_ALIVE;
  lr_free(a->addr);
  a->addr = lr_gcs_dup(&m->addr);
  lr_free(a->tcp);
  a->tcp = lr_gcs_dup(&m->tcp);
  lr_actinfo_notify(a);
}

/* init raised: the actor is dead with the error as its cause; callers get
 * the error itself (init_error). set_dead's final stop ends the process. */
void lr_actors_failed(lr_gcs_t *g, const lr_m_actor_failed_t *m)
{
  gcs_actor_t *a = lr_gcs_actor(g, &m->aid);
  if (!a) return;
  if (LR_HAS(m->err)) {
    lr_free(a->init_error);
    a->init_error_n = m->err.v.s.n;
    a->init_error = lr_xmalloc(a->init_error_n + 1);
    memcpy(a->init_error, m->err.v.s.p, a->init_error_n);
  }
  char *msg = lr_gcs_dup(&m->message), *cause = NULL;
  lr_gcs_setf(&cause, "its init raised an error: %s", OR_NIL(msg));
  set_dead(a, cause);
  lr_free(cause);
  lr_free(msg);
}

void lr_actors_exit(lr_gcs_t *g, const lr_m_worker_exit_t *m)
{
  gcs_actor_t *a = lr_gcs_actor(g, &m->aid);
  if (!a || a->state == LR_ACTOR_DEAD) return;
  if (LR_HAS(m->cause)) { /* it can never be placed */
    char *cause = lr_gcs_dup(&m->cause);
    set_dead(a, cause);
    lr_free(cause);
    return;
  }
  /* An exit while no actor_placed came since the last place is of a process
   * started for this placement that never said so: it counts. */
  int64_t pid = LR_HAS(m->pid) ? m->pid.v.i : a->pid;
  if (a->pid && pid != a->pid) return; /* an earlier process's exit */
  drop_owned(a, a->killed ? "was killed" : "died");
  int job_alive = a->detached || lr_gcs_job(g, a->job);
  int64_t sig = LR_HAS(m->signal) ? m->signal.v.i : 0;
  int64_t status = LR_HAS(m->status) ? m->status.v.i : 0;
  char pidtext[24] = "nil", *how = NULL;
  if (pid) snprintf(pidtext, sizeof(pidtext), "%lld", (long long)pid);
  if (a->killed)
    lr_gcs_setf(&how, "it was killed by lray.kill");
  else if (LR_HAS(m->how))
    how = lr_gcs_dup(&m->how);
  else if (sig != 0)
    lr_gcs_setf(&how, "its worker process (pid %s) was killed by signal %lld",
                pidtext, (long long)sig);
  else
    lr_gcs_setf(&how, "its worker process (pid %s) exited with code %lld",
                pidtext, (long long)status);
  a->running = 0;
  /* After a final stop the node manager has let go of the actor's
   * arguments: it cannot come back. */
  if (!a->no_restart && !a->init_error && !a->final_sent && job_alive &&
      (a->max_restarts == -1 || a->restarts < a->max_restarts)) {
    restart(a, how);
    return;
  }
  if (a->restarts > 0) {
    char *more = NULL;
    lr_gcs_setf(&more, "%s (after %lld restart%s; max_restarts = %lld)", how,
                (long long)a->restarts, a->restarts == 1 ? "" : "s",
                (long long)a->max_restarts);
    lr_free(how);
    how = more;
  }
  set_dead(a, how);
  lr_free(how);
}

/* Kills the actor. The reply goes once it is dead; at once when it will
 * restart (no_restart = false: nothing to wait for) or is unknown or dead. */
void lr_actors_kill(lr_gcs_t *g, uint64_t client, const lr_m_kill_actor_t *m)
{
  gcs_actor_t *a = lr_gcs_actor(g, &m->aid);
  int restart_ok = LR_HAS(m->no_restart) && !m->no_restart.v.b;
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  if (!a || a->state == LR_ACTOR_DEAD) {
    if (LR_HAS(m->rid)) {
      char *rid = lr_gcs_dup(&m->rid);
      lr_gcs_reply(g, client, rid, &r);
      lr_free(rid);
    }
    return;
  }
  if (LR_HAS(m->rid)) {
    char *rid = lr_gcs_dup(&m->rid);
    if (restart_ok) {
      lr_gcs_reply(g, client, rid, &r);
      lr_free(rid);
    } else {
      size_t n = a->nwaiters + 1;
      a->waiters = lr_xrealloc(a->waiters, n * sizeof(*a->waiters));
      a->waiters[a->nwaiters].client = client;
      a->waiters[a->nwaiters++].rid = rid;
    }
  }
  a->killed = 1;
  a->no_restart = !restart_ok;
  if (a->no_restart) lr_gcs_setf(&a->cause, "it was killed by lray.kill");
  lr_actors_end(a);
}

/* The job's driver left: its non-detached actors end with it. */
void lr_actors_drop_job(lr_gcs_t *g, const char *job)
{
  gcs_actor_t *a, *t;
  HASH_ITER(hh, g->actors, a, t) {
    if (a->job && !strcmp(a->job, job) && !a->detached &&
        a->state != LR_ACTOR_DEAD) {
      lr_gcs_setf(&a->cause, "its owner (job %s) exited", job);
      a->no_restart = 1;
      lr_actors_end(a);
    }
  }
}

/* The client is gone: no notices or kill replies go to it any more, and its
 * handles are dropped. */
void lr_actors_drop_client(lr_gcs_t *g, uint64_t client)
{
  gcs_actor_t *a, *t;
  HASH_ITER(hh, g->actors, a, t) {
    size_t k = 0;
    for (size_t i = 0; i < a->nsubs; i++)
      if (a->subs[i] != client) a->subs[k++] = a->subs[i];
    a->nsubs = k;
    k = 0;
    for (size_t i = 0; i < a->nwaiters; i++) {
      if (a->waiters[i].client != client) a->waiters[k++] = a->waiters[i];
      else lr_free(a->waiters[i].rid);
    }
    a->nwaiters = k;
  }
  lr_handles_drop_client(g, client);
}

static void on_timer_close(uv_handle_t *h) { lr_free(h); }

void lr_actors_free(gcs_actor_t *a)
{
  if (a->timer) {
    a->timer->data = NULL;
    uv_close((uv_handle_t *)a->timer, on_timer_close);
  }
  lr_free(a->aid);
  lr_free(a->cname);
  lr_free(a->name);
  lr_free(a->ns);
  lr_free(a->job);
  lr_free(a->owner);
  lr_free(a->addr);
  lr_free(a->cause);
  lr_free(a->node_id);
  lr_free(a->tcp);
  lr_free(a->init_error);
  lr_buf_free(&a->create);
  for (size_t i = 0; i < a->nholds; i++) lr_free(a->holds[i]);
  lr_free(a->holds);
  lr_free(a->subs);
  for (size_t i = 0; i < a->nwaiters; i++) lr_free(a->waiters[i].rid);
  lr_free(a->waiters);
  lr_free(a->name_key);
  lr_free(a);
}

void lr_actors_node_died(lr_gcs_t *g, uint64_t client, const char *how)
{
  /* Each actor on it ends as if its process died (restarts count); the
   * node can no longer say so itself. */
  char **aids = NULL;
  size_t n = 0;
  for (gcs_actor_t *a = g->actors; a; a = a->hh.next)
    if (a->node_client == client && a->state != LR_ACTOR_DEAD) {
      aids = lr_xrealloc(aids, (n + 1) * sizeof(char *));
      aids[n++] = lr_xstrdup(a->aid);
    }
  for (size_t i = 0; i < n; i++) {
    lr_m_worker_exit_t m = LR_MSG_INIT(WORKER_EXIT);
    LR_SET_CSTR(m.aid, aids[i]);
    LR_SET_CSTR(m.how, how);
    gcs_actor_t *a = lr_gcs_actor(g, &m.aid);
    if (a && a->pid) LR_SET_INT(m.pid, a->pid);
    if (a) a->final_sent = 0, a->node_client = 0; /* nothing is left there */
    lr_actors_exit(g, &m);
    lr_free(aids[i]);
  }
  lr_free(aids);
}
