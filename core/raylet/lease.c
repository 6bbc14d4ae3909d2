/* Leases. A submitter asks for a worker for a resource shape; once the
 * scheduler (sched.c) grants the resources and a worker is idle, the worker
 * is lent to it (lease_start to the worker, the worker's address in the
 * reply), and tasks then go straight from the submitter to the worker. The
 * lease ends when the worker hands it back (lease_done), the submitter
 * returns it unused (lease_return), or the worker exits. A leased worker
 * blocked in get/wait gives its CPUs back meanwhile. */
#include <stdio.h>
#include <string.h>
#include "raylet/node.h"

uint64_t lr_node_number(lr_node_t *n) { return ++n->next_num; }

int lr_lease_req(lr_node_t *n, const lr_pf_t *res, lr_res_req_t *r, char *why, size_t whylen)
{
  lr_res_req_init(r);
  if (!res->n) {
    lr_res_req_set(r, LR_RES_CPU, LR_RES_UNIT);
    return 0;
  }
  for (uint32_t i = 0; i < res->n; i++) {
    const lr_pstr_t *name = &res->items[i].key.s;
    int64_t units = res->items[i].v.i;
    int id = lr_sched_res_id(n->sched, name->p, name->n);
    if (id < 0) {
      snprintf(why, whylen, "resource name '%.*s' is empty, longer than %d bytes, has a NUL,"
               " or is one name too many", (int)(name->n > 64 ? 64 : name->n), name->p,
               LR_RES_NAMEMAX);
      return -1;
    }
    if (units < 0 || units > LR_RES_MAXUNITS) {
      snprintf(why, whylen, "resource '%.*s' has a bad amount", (int)name->n, name->p);
      return -1;
    }
    if (lr_res_req_set(r, id, units) < 0) {
      if (r->n >= LR_RES_REQMAX)
        snprintf(why, whylen, "more than %d resource kinds", LR_RES_REQMAX);
      else
        snprintf(why, whylen, "resource '%.*s': amounts above 1 must be whole numbers",
                 (int)name->n, name->p);
      return -1;
    }
  }
  return 0;
}

/* -- Bookkeeping ------------------------------------------------------------------ */

static void owner_unlink(lr_lease_t *L)
{
  lr_client_t *c = L->owner;
  if (!c) return;
  if (L->owner_prev) L->owner_prev->owner_next = L->owner_next;
  else c->leases = L->owner_next;
  if (L->owner_next) L->owner_next->owner_prev = L->owner_prev;
  L->owner_next = L->owner_prev = NULL;
  L->owner = NULL;
}

static void granted_remove(lr_node_t *n, lr_lease_t *L)
{
  lr_lease_t **p = &n->granted_head, *prev = NULL;
  for (; *p; prev = *p, p = &(*p)->grant_next)
    if (*p == L) {
      *p = L->grant_next;
      if (n->granted_tail == L) n->granted_tail = prev;
      L->grant_next = NULL;
      return;
    }
}

/* Takes L out of every table; the caller frees it. */
static void forget(lr_node_t *n, lr_lease_t *L)
{
  HASH_DELETE(hh, n->leases, L);
  HASH_DELETE(hh_num, n->by_num, L);
  if (L->granted) granted_remove(n, L);
  owner_unlink(L);
}

static void lease_free(lr_lease_t *L)
{
  lr_free(L->rid);
  lr_free(L->name);
  lr_free(L);
}

static lr_lease_t *find_lid(lr_node_t *n, const lr_pf_t *lid)
{
  lr_lease_t *L = NULL;
  if (lid->n) HASH_FIND(hh, n->leases, lid->v.s.p, lid->v.s.n, L);
  return L;
}

static int owner_open(const lr_lease_t *L)
{
  return L->owner && !L->owner->gone && !L->owner->conn.closing;
}

/* -- Granting ------------------------------------------------------------------------ */

static void start(lr_node_t *n, lr_lease_t *L, lr_worker_t *w, const lr_res_gpus_t *gpus)
{
  L->granted = 0;
  if (!owner_open(L)) {
    /* The submitter left while this waited: nobody will use it. */
    lr_sched_release(n->sched, L->num);
    forget(n, L);
    lease_free(L);
    lr_pool_push_idle(n, w);
    return;
  }
  L->state = LR_L_GRANTED;
  L->worker = w;
  w->state = LR_W_LEASED;
  w->lease = L;
  snprintf(w->job, sizeof(w->job), "%s", L->job);
  lr_pool_introduce_job(n, w, L->job);
  lr_m_lease_start_t s = LR_MSG_INIT(LEASE_START);
  LR_SET_CSTR(s.lid, L->lid);
  int ids[LR_RES_MAXGPU];
  lr_pitem_t items[LR_RES_MAXGPU];
  int ng = lr_res_gpus_ids(gpus, ids);
  for (int i = 0; i < ng; i++) items[i].v.i = ids[i];
  if (ng) LR_SET_ITEMS(s.gpus, items, ng);
  lr_node_send(w->client, &s);
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  LR_SET_CSTR(r.rid, L->rid ? L->rid : "");
  LR_SET_CSTR(r.lid, L->lid);
  /* A submitter on another node reaches the worker over TCP. */
  LR_SET_CSTR(r.address, L->owner->conn.h.handle.type == UV_TCP && w->tcp[0] ? w->tcp : w->addr);
  LR_SET_INT(r.pid, w->pid);
  lr_node_send(L->owner, &r);
}

/* Tells the drivers of leases that wait for a worker that none can start. */
static void warn_pool_full(lr_node_t *n)
{
  if (n->nworkers < n->max_workers) return;
  char text[400];
  snprintf(text, sizeof(text),
           "tasks are waiting for a worker process, but this node already runs its limit"
           " of %d (LRAY_MAX_WORKERS), most of them blocked in lray.get; they start only"
           " as others finish", n->max_workers);
  for (lr_lease_t *L = n->granted_head; L; L = L->grant_next) lr_node_warn(n, L->job, text);
}

/* Starts whatever can start now. The scheduler decides what fits; a lease
 * that fits but finds no idle worker keeps its grant and gets the next
 * worker that frees up or starts (so tasks needing less than a CPU each
 * still run side by side). */
void lr_dispatch(lr_node_t *n)
{
  if (n->cleaned) return;
  while (n->granted_head) {
    lr_worker_t *w = lr_pool_take_idle(n);
    if (!w) break;
    lr_lease_t *L = n->granted_head;
    n->granted_head = L->grant_next;
    if (!n->granted_head) n->granted_tail = NULL;
    L->grant_next = NULL;
    start(n, L, w, &L->gpus);
  }
  lr_sched_stats_t st;
  lr_sched_stats(n->sched, &st);
  double now = lr_node_now();
  while (st.queued > 0) {
    lr_sched_grant_t g;
    if (!lr_sched_next(n->sched, now, &g)) break;
    st.queued--;
    lr_lease_t *L = NULL;
    HASH_FIND(hh_num, n->by_num, &g.id, sizeof(g.id), L);
    if (!L) { /* cannot happen: only leases queue */
      lr_sched_release(n->sched, g.id);
      continue;
    }
    lr_worker_t *w = lr_pool_take_idle(n);
    if (w) {
      start(n, L, w, &g.gpus);
    } else {
      L->granted = 1;
      L->gpus = g.gpus;
      if (n->granted_tail) n->granted_tail->grant_next = L;
      else n->granted_head = L;
      n->granted_tail = L;
    }
  }
  int want = 0;
  for (lr_lease_t *L = n->granted_head; L; L = L->grant_next) want++;
  if (!want) return;
  for (lr_worker_t *w = n->workers; w; w = w->hh.next)
    if (w->state == LR_W_STARTING && !w->for_actor) want--;
  int limit = lr_pool_limit(n);
  while (want > 0 && lr_pool_count_task_workers(n) < limit) {
    if (!lr_pool_spawn(n, NULL)) {
      warn_pool_full(n);
      break;
    }
    want--;
  }
}

/* -- Requests --------------------------------------------------------------------------- */

static void warn_infeasible(lr_node_t *n, lr_lease_t *L, const char *missing)
{
  const lr_res_names_t *names = lr_sched_names(n->sched);
  int id = lr_res_lookup(names, missing, strlen(missing));
  const lr_res_pool_t *p = lr_sched_pool(n->sched);
  char text[600];
  snprintf(text, sizeof(text),
           "task '%s' cannot be scheduled: it needs %g %s but no node has that much (this"
           " node has %g); it stays pending until a node that fits joins",
           L->name ? L->name : "nil",
           (double)lr_res_req_get(&L->req, id) / LR_RES_UNIT, missing,
           id >= 0 ? (double)lr_res_pool_total(p, id) / LR_RES_UNIT : 0.0);
  lr_node_warn(n, L->job, text);
}

void lr_lease_request(lr_node_t *n, lr_client_t *c, const lr_m_lease_t *m)
{
  char why[300];
  lr_res_req_t req;
  if (lr_lease_req(n, &m->res, &req, why, sizeof(why)) < 0) {
    /* Refused, and the submitter fails its tasks; never dropped. */
    char text[500];
    snprintf(text, sizeof(text), "task '%.*s' cannot be scheduled: %s",
             m->name.n ? (int)m->name.v.s.n : 3, m->name.n ? m->name.v.s.p : "nil", why);
    lr_m_reply_t r = LR_MSG_INIT(REPLY);
    if (m->rid.n) r.rid = m->rid;
    LR_SET_CSTR(r.err, text);
    lr_node_send(c, &r);
    return;
  }
  int spilled = m->spilled.n && m->spilled.v.b, now = 0;
  if (spilled && m->reject.n && m->reject.v.b && !lr_res_fits(lr_sched_pool(n->sched), &req)) {
    /* Sent here for room the sender's view showed, and there is none now:
     * no, rather than wait here while another node may have room. */
    lr_m_reply_t r = LR_MSG_INIT(REPLY);
    if (m->rid.n) r.rid = m->rid;
    LR_SET_BOOL(r.rejected, 1);
    lr_node_send(c, &r);
    return;
  }
  /* One that was sent here to wait (it can ever fit here) goes on only to
   * a node with room now, which grants it or rejects it. */
  const char *to = NULL;
  if (!spilled || !lr_res_fits(lr_sched_pool(n->sched), &req)) {
    to = lr_view_spill(n, &req, &now);
    if (spilled && !now) to = NULL;
  }
  if (to) { /* it fits better elsewhere: the submitter asks there */
    lr_m_reply_t r = LR_MSG_INIT(REPLY);
    if (m->rid.n) r.rid = m->rid;
    LR_SET_CSTR(r.spill, to);
    if (now) LR_SET_BOOL(r.spill_now, 1);
    lr_node_send(c, &r);
    return;
  }
  lr_lease_t *L = lr_xcalloc(1, sizeof(*L));
  lr_node_random_hex(L->lid, 8);
  L->owner = c;
  L->rid = lr_pstrdup(&m->rid);
  L->name = lr_pstrdup(&m->name);
  const char *job = NULL;
  char jb[LR_ID_MAX] = "";
  if (m->job.n && m->job.v.s.n < sizeof(jb)) {
    memcpy(jb, m->job.v.s.p, m->job.v.s.n);
    job = jb;
  } else if (c->kind == LR_CL_DRIVER) {
    job = c->job;
  } else if (c->worker) {
    job = c->worker->job;
  }
  snprintf(L->job, sizeof(L->job), "%s", job ? job : "");
  L->req = req;
  L->spilled = spilled;
  L->retriable = m->retriable.n && m->retriable.v.b;
  L->num = lr_node_number(n);
  L->state = LR_L_PENDING;
  L->submitted = lr_node_now();
  /* The queue's order key. A request from a worker that runs a task goes
   * just ahead of that task's own lease: the deepest work runs first
   * (depth-first), so a recursion finishes its leaves and frees blocked
   * parents instead of starting every branch at once, each blocking a
   * worker of its own. */
  lr_lease_t *parent = c->worker ? c->worker->lease : NULL;
  L->key = parent ? parent->key - 1e-6 : L->submitted;
  HASH_ADD(hh, n->leases, lid, strlen(L->lid), L);
  HASH_ADD(hh_num, n->by_num, num, sizeof(L->num), L);
  L->owner_next = c->leases;
  if (c->leases) c->leases->owner_prev = L;
  c->leases = L;
  const char *missing = NULL;
  if (lr_sched_infeasible(n->sched, &req, &missing)) warn_infeasible(n, L, missing);
  uint64_t num = L->num;
  lr_sched_submit(n->sched, num, &req, L->key);
  lr_dispatch(n);
  /* Not granted at once: the submitter may then pipeline short tasks onto
   * the workers it has. (L may be freed: started for a submitter that left;
   * so look it up by its number, never through L.) */
  lr_lease_t *again = NULL;
  HASH_FIND(hh_num, n->by_num, &num, sizeof(num), again);
  if (again && again->state == LR_L_PENDING) {
    lr_m_lease_wait_t w = LR_MSG_INIT(LEASE_WAIT);
    if (m->rid.n) w.rid = m->rid;
    lr_node_send(c, &w);
  }
}

void lr_lease_end(lr_node_t *n, lr_lease_t *L)
{
  lr_worker_t *w = L->worker;
  forget(n, L);
  lr_sched_release(n->sched, L->num);
  L->state = LR_L_DONE;
  if (w && w->lease == L) {
    lr_pool_flush_partial(w);
    w->lease = NULL;
    if (w->blocked) {
      w->blocked = 0;
      n->nblocked--;
    }
    if (w->state == LR_W_LEASED) {
      w->state = LR_W_IDLE;
      lr_pool_push_idle(n, w);
    }
  }
  lease_free(L);
  /* Resources came back: actors waiting to be placed may fit now. */
  lr_place_waiting(n);
  lr_dispatch(n);
}

void lr_lease_done(lr_node_t *n, lr_worker_t *w, const lr_m_lease_done_t *m)
{
  lr_lease_t *L = find_lid(n, &m->lid);
  if (L && L->worker == w) lr_lease_end(n, L);
}

void lr_lease_return(lr_node_t *n, lr_client_t *c, const lr_m_lease_return_t *m)
{
  lr_lease_t *L = find_lid(n, &m->lid);
  if (!L || L->owner != c) return;
  if (L->worker) {
    lr_m_lease_stop_t s = LR_MSG_INIT(LEASE_STOP);
    LR_SET_CSTR(s.lid, L->lid);
    lr_node_send(L->worker->client, &s);
  }
  lr_lease_end(n, L);
}

/* Withdraws a request not yet started; its submitter (if still there) hears
 * a reply with no lease. */
static void withdraw(lr_node_t *n, lr_lease_t *L)
{
  if (L->granted) lr_sched_release(n->sched, L->num);
  else lr_sched_remove(n->sched, L->num);
  L->state = LR_L_DONE;
  lr_client_t *owner = owner_open(L) ? L->owner : NULL;
  forget(n, L);
  if (owner) {
    lr_m_reply_t r = LR_MSG_INIT(REPLY);
    LR_SET_CSTR(r.rid, L->rid ? L->rid : "");
    lr_node_send(owner, &r);
  }
  lease_free(L);
}

void lr_lease_cancel(lr_node_t *n, lr_client_t *c, const lr_m_lease_cancel_t *m)
{
  for (lr_lease_t *L = c->leases; L; L = L->owner_next)
    if (L->state == LR_L_PENDING && L->rid && lr_pstreq(&m->rid, L->rid)) {
      withdraw(n, L);
      return;
    }
}

/* A client left: its requests go; granted leases end when their workers
 * see the submitter gone and hand them back. */
void lr_lease_drop_client(lr_node_t *n, lr_client_t *c)
{
  lr_lease_t *L = c->leases, *next;
  for (; L; L = next) {
    next = L->owner_next;
    if (L->state == LR_L_PENDING) withdraw(n, L);
    else owner_unlink(L);
  }
  c->leases = NULL;
}

void lr_lease_drop_job(lr_node_t *n, const char *job)
{
  lr_lease_t *L, *tmp;
  HASH_ITER(hh, n->leases, L, tmp) {
    if (L->state == LR_L_PENDING && !strcmp(L->job, job)) withdraw(n, L);
  }
}

void lr_lease_blocked(lr_node_t *n, lr_worker_t *w, int on)
{
  /* An actor keeps what it holds while it waits: it asked for it for its
   * whole life (API.md; Ray's test_blocking_actor_task). */
  if (w->actor) return;
  lr_lease_t *L = w->lease;
  if (!L) return;
  if (on && !w->blocked) {
    w->blocked = 1;
    n->nblocked++;
    lr_sched_block(n->sched, L->num);
    lr_dispatch(n);
  } else if (!on && w->blocked) {
    w->blocked = 0;
    n->nblocked--;
    lr_sched_unblock(n->sched, L->num);
  }
}

void lr_lease_respill(lr_node_t *n)
{
  lr_lease_t *L, *tmp;
  HASH_ITER(hh, n->leases, L, tmp) {
    if (L->state != LR_L_PENDING || L->granted || !owner_open(L)) continue;
    int now;
    const char *to = lr_view_spill(n, &L->req, &now);
    if (!to || (L->spilled && !now)) continue;
    lr_m_reply_t r = LR_MSG_INIT(REPLY);
    LR_SET_CSTR(r.rid, L->rid ? L->rid : "");
    LR_SET_CSTR(r.spill, to);
    if (now) LR_SET_BOOL(r.spill_now, 1);
    lr_node_send(L->owner, &r);
    lr_sched_remove(n->sched, L->num);
    L->state = LR_L_DONE;
    forget(n, L);
    lease_free(L);
  }
}

size_t lr_lease_pending(lr_node_t *n)
{
  size_t k = 0;
  for (lr_lease_t *L = n->leases; L; L = L->hh.next)
    if (L->state == LR_L_PENDING) k++;
  return k;
}
