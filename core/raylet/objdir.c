/* The object directory: every object the node knows, where its bytes are
 * (inline, or a range of the shared-memory store), who holds references to
 * it, and who waits for it; and the store's ranges handed out but not yet
 * put.
 *
 * An object lives while its count is above zero. The count is the number of
 * processes holding an ObjectRef to it (each counts once), plus objects that
 * contain its id, plus actors placed here that take it as an argument, plus
 * lends. An object whose value holds actor handles holds those actors (a
 * lend to the head, token "o:<id>") until it is freed. At zero it is freed
 * after free_grace seconds: a batching delay
 * (freeing each object on the next turn cost a third of the put rate), not
 * a safety margin; no hand-off relies on it (the ownership specs run with
 * LRAY_FREE_GRACE_S=0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/errdef.h"
#include "raylet/node.h"

typedef struct lr_lend_s {
  char *token;
  char **ids;
  uint32_t n;
  int aids; /* it lent actor handles too: the head holds them */
  uint64_t from; /* the lender's client id (0: unknown, or asked already) */
  int64_t to;    /* the receiver's pid, a process of this node (0: unknown) */
  UT_hash_handle hh;
} lr_lend_t;

/* Objects whose count reached zero, freed by the sweep (an array of
 * pointers: an object is freed only from here, so none dangles). */
static lr_obj_t **doomed;
static size_t ndoomed, doomed_cap;

static char *dupn(const char *p, size_t n)
{
  char *s = lr_xmalloc(n + 1);
  memcpy(s, p, n);
  s[n] = 0;
  return s;
}

lr_obj_t *lr_obj_find(lr_node_t *n, const char *id, size_t len)
{
  lr_obj_t *o = NULL;
  HASH_FIND(hh, n->objects, id, len, o);
  return o;
}

lr_obj_t *lr_obj_get(lr_node_t *n, const char *id, size_t len)
{
  lr_obj_t *o = lr_obj_find(n, id, len);
  if (o) return o;
  o = lr_xcalloc(1, sizeof(*o));
  o->id = dupn(id, len);
  o->shm_len = -1;
  o->doomed_at = -1;
  o->spilled_len = -1;
  HASH_ADD_KEYPTR(hh, n->objects, o->id, len, o);
  return o;
}

/* Tells the head of a lend of aids under token (type LEND), or that the
 * lend of token is over (CLAIM or UNLEND). */
static void head_lend(lr_node_t *n, int type, const char *token, size_t len,
                      const lr_pf_t *aids)
{
  lr_m_lend_t l = LR_MSG_INIT(LEND);
  lr_m_claim_t c = LR_MSG_INIT(CLAIM);
  lr_m_unlend_t u = LR_MSG_INIT(UNLEND);
  if (type == LR_PT_LEND) {
    LR_SET_STR(l.token, token, len);
    l.aids = *aids;
    lr_node_to_head(n, 0, &l);
  } else if (type == LR_PT_CLAIM) {
    LR_SET_STR(c.token, token, len);
    lr_node_to_head(n, 0, &c);
  } else {
    LR_SET_STR(u.token, token, len);
    lr_node_to_head(n, 0, &u);
  }
}

/* An object's lend of the actors its value holds: token "o:<id>". */
static void object_lend(lr_node_t *n, lr_obj_t *o, int type, const lr_pf_t *aids)
{
  size_t len = strlen(o->id);
  char *token = lr_xmalloc(len + 3);
  memcpy(token, "o:", 2);
  memcpy(token + 2, o->id, len + 1);
  head_lend(n, type, token, len + 2, aids);
  lr_free(token);
}

static void free_obj(lr_node_t *n, lr_obj_t *o)
{
  HASH_DEL(n->objects, o);
  lr_xref_forget(n, o); /* its home, if another node, may let go too */
  if (o->holds_actors) object_lend(n, o, LR_PT_UNLEND, NULL);
  if (o->shm_len >= 0) lr_salloc_free(&n->region, (uint64_t)o->shm_off, (uint64_t)o->shm_len);
  lr_spill_forget(n, o);
  lr_unmap_forget(n, o);
  for (uint32_t i = 0; i < o->ndups; i++)
    lr_salloc_free(&n->region, (uint64_t)o->dups[2 * i], (uint64_t)o->dups[2 * i + 1]);
  lr_free(o->dups);
  for (uint32_t i = 0; i < o->ncontains; i++) {
    lr_obj_t *in = lr_obj_find(n, o->contains[i], strlen(o->contains[i]));
    if (in) in->inner--;
    lr_obj_decref(n, o->contains[i], strlen(o->contains[i]));
    lr_free(o->contains[i]);
  }
  lr_free(o->contains);
  for (lr_waiter_t *w = o->waiters, *next; w; w = next) {
    next = w->next;
    lr_free(w);
  }
  lr_free(o->id);
  lr_free(o->data);
  lr_free(o->err);
  lr_free(o->etype);
  lr_free(o->emsg);
  lr_free(o->arr);
  lr_free(o->call_site);
  lr_free(o);
}

/* -- Counting ------------------------------------------------------------------- */

static void sweep(uv_timer_t *t);

static void arm_sweep(lr_node_t *n)
{
  if (n->sweeping) return;
  n->sweeping = 1;
  uint64_t ms = (uint64_t)(n->free_grace * 1000 + 0.5);
  uv_timer_start(&n->sweep_timer, sweep, ms, 0);
}

static void doom(lr_node_t *n, lr_obj_t *o)
{
  if (o->doomed_at < 0) {
    if (ndoomed == doomed_cap) {
      doomed_cap = doomed_cap ? doomed_cap * 2 : 256;
      doomed = lr_xrealloc(doomed, doomed_cap * sizeof(*doomed));
    }
    doomed[ndoomed++] = o;
  }
  o->doomed_at = lr_node_now();
  arm_sweep(n);
}

/* Frees the doomed objects still unreferenced: all of them (force), or
 * those whose grace is over. Objects freed here may doom others. */
static void reap(lr_node_t *n, int force)
{
  double now = lr_node_now();
  size_t k = 0;
  lr_obj_t **batch = doomed;
  size_t nb = ndoomed;
  doomed = NULL;
  ndoomed = doomed_cap = 0;
  for (size_t i = 0; i < nb; i++) {
    lr_obj_t *o = batch[i];
    if (o->count > 0) {
      o->doomed_at = -1; /* wanted again */
    } else if (force || now - o->doomed_at >= n->free_grace) {
      o->doomed_at = -1;
      free_obj(n, o);
    } else {
      batch[k++] = o;
    }
  }
  /* Keep the ones still in grace, after any doomed meanwhile. */
  for (size_t i = 0; i < k; i++) {
    lr_obj_t *o = batch[i];
    double at = o->doomed_at;
    o->doomed_at = -1;
    doom(n, o);
    o->doomed_at = at;
  }
  lr_free(batch);
}

static void sweep(uv_timer_t *t)
{
  lr_node_t *n = t->data;
  n->sweeping = 0;
  reap(n, 0);
  if (ndoomed) arm_sweep(n);
}

void lr_obj_incref(lr_node_t *n, const char *id, size_t len)
{
  lr_obj_t *o = lr_obj_get(n, id, len);
  o->count++;
  lr_unmap_touch(o); /* a new holder, lend or placement may know its range */
  if (o->home && !o->home_held) lr_xref_sync(n, o);
}

void lr_obj_decref(lr_node_t *n, const char *id, size_t len)
{
  lr_obj_t *o = lr_obj_find(n, id, len);
  if (!o) return;
  if (--o->count <= 0) {
    o->count = 0;
    doom(n, o);
  }
}

void lr_obj_hold(lr_node_t *n, lr_client_t *c, const char *id, size_t len)
{
  lr_strset_t *e;
  HASH_FIND(hh, c->held, id, len, e);
  if (e) { /* (it may learn the range again: a fetch's answer) */
    lr_obj_t *o = lr_obj_find(n, id, len);
    if (o) lr_unmap_touch(o);
    return;
  }
  e = lr_xcalloc(1, sizeof(*e));
  e->key = dupn(id, len);
  HASH_ADD_KEYPTR(hh, c->held, e->key, len, e);
  lr_obj_incref(n, id, len);
}

void lr_obj_unhold(lr_node_t *n, lr_client_t *c, const char *id, size_t len)
{
  lr_strset_t *e;
  HASH_FIND(hh, c->held, id, len, e);
  if (!e) return;
  HASH_DEL(c->held, e);
  lr_free(e->key);
  lr_free(e);
  lr_obj_decref(n, id, len);
}

/* -- Hand-offs --------------------------------------------------------------------- */
/* A process that sends references straight to another (an actor call's
 * arguments, an actor's reply, a pushed task) lends them first: the node
 * counts the lend until the receiver, having registered its own hold,
 * claims it. Actor handles in the message (aids) are counted by the head:
 * the node tells it of such a lend and of its end. Lend and claim come over different connections, so either may
 * arrive first. A lend that names its receiver ends with either process
 * (below, "Lenders and receivers that leave"); one that does not (a
 * receiver on another node) stays until its claim or unlend. */

/* A token claimed or unlent before its lend arrived (they come over other
 * connections): the lend, when it comes, is over at once. A lend that never
 * comes (an unlend of a result a killed worker never lent) would leave its
 * mark forever, so marks older than TOMB_TTL go once there are many. */
typedef struct lr_tomb_s {
  char *key;
  double at;
  UT_hash_handle hh;
} lr_tomb_t;

static void release_lend(lr_node_t *n, lr_lend_t *l, int type);

#define TOMB_TTL 30.0
#define TOMB_PRUNE_AT 1024

static void tomb_del(lr_node_t *n, lr_tomb_t *t)
{
  HASH_DEL(n->lends_claimed, t);
  n->ntombs--;
  lr_free(t->key);
  lr_free(t);
}

static void tomb_add(lr_node_t *n, const char *token, size_t len)
{
  lr_tomb_t *t;
  HASH_FIND(hh, n->lends_claimed, token, len, t);
  if (t) return;
  double now = lr_node_now();
  if (n->ntombs >= TOMB_PRUNE_AT) {
    lr_tomb_t *e, *tmp;
    HASH_ITER(hh, n->lends_claimed, e, tmp) if (now - e->at > TOMB_TTL) tomb_del(n, e);
  }
  t = lr_xcalloc(1, sizeof(*t));
  t->key = dupn(token, len);
  t->at = now;
  HASH_ADD_KEYPTR(hh, n->lends_claimed, t->key, len, t);
  n->ntombs++;
}

void lr_obj_lend(lr_node_t *n, const lr_m_lend_t *m)
{
  if (!m->token.n) return;
  lr_tomb_t *c;
  HASH_FIND(hh, n->lends_claimed, m->token.v.s.p, m->token.v.s.n, c);
  if (c) {
    tomb_del(n, c);
    return;
  }
  lr_lend_t *old;
  HASH_FIND(hh, n->lends, m->token.v.s.p, m->token.v.s.n, old);
  if (old) release_lend(n, old, LR_PT_UNLEND); /* never two under one token */
  lr_lend_t *l = lr_xcalloc(1, sizeof(*l));
  l->token = dupn(m->token.v.s.p, m->token.v.s.n);
  l->n = m->ids.n;
  l->ids = lr_xcalloc(l->n ? l->n : 1, sizeof(char *));
  for (uint32_t i = 0; i < l->n; i++) {
    const lr_pstr_t *id = &m->ids.items[i].v.s;
    l->ids[i] = dupn(id->p, id->n);
    /* (An actor's arguments lent by a joined node: held there.) */
    if (m->home.n) lr_xref_home(n, lr_obj_get(n, id->p, id->n), &m->home);
    lr_obj_incref(n, id->p, id->n);
  }
  HASH_ADD_KEYPTR(hh, n->lends, l->token, m->token.v.s.n, l);
  if (m->aids.n) {
    /* Handles: the head counts them until the claim or unlend. (A lend
     * claimed first needs nothing: its receiver holds them already.) */
    l->aids = 1;
    head_lend(n, LR_PT_LEND, m->token.v.s.p, m->token.v.s.n, &m->aids);
  }
}

static void release_lend(lr_node_t *n, lr_lend_t *l, int type)
{
  HASH_DEL(n->lends, l);
  if (l->aids) head_lend(n, type, l->token, strlen(l->token), NULL);
  for (uint32_t i = 0; i < l->n; i++) {
    lr_obj_decref(n, l->ids[i], strlen(l->ids[i]));
    lr_free(l->ids[i]);
  }
  lr_free(l->ids);
  lr_free(l->token);
  lr_free(l);
}

void lr_obj_claim(lr_node_t *n, const char *token, size_t len)
{
  lr_lend_t *l;
  HASH_FIND(hh, n->lends, token, len, l);
  if (l) {
    release_lend(n, l, LR_PT_CLAIM);
    return;
  }
  tomb_add(n, token, len);
}

/* A lend is taken back: by its lender (the receiver died before it could
 * claim it; after the lend, on the same connection), or by the receiver of
 * a result whose sender died (the result never came; the lend may still be
 * on its way over the dead sender's connection: remembered). */
void lr_obj_unlend(lr_node_t *n, const char *token, size_t len)
{
  lr_lend_t *l;
  HASH_FIND(hh, n->lends, token, len, l);
  if (l) release_lend(n, l, LR_PT_UNLEND);
  else tomb_add(n, token, len);
}

/* -- Lenders and receivers that leave ---------------------------------------------- */
/* A lend whose receiver is a process of this node (lend.to, its pid) ends
 * when that receiver leaves: the node has read its connection to the end,
 * so a lend it has not claimed by then is one it never will. When the lender
 * leaves first, the node cannot tell whether the lent message still sits
 * unread in the receiver's socket (the receiver may be in a long task), so
 * a timeout is not safe: it asks the receiver (lender_gone), which unlends
 * each token whose message it never got and drops that message should it
 * still come, and claims the others as usual. A lend that names no receiver
 * (one on another node) stays until its claim or unlend. */

/* The live client of this node (over a unix socket) whose process is pid. */
static lr_client_t *local_client(lr_node_t *n, int64_t pid)
{
  if (pid <= 0) return NULL;
  for (lr_client_t *c = n->clients; c; c = c->hh.next)
    if (c->pid == pid && !c->gone && (c->kind == LR_CL_DRIVER || c->kind == LR_CL_WORKER) &&
        c->conn.h.handle.type != UV_TCP)
      return c;
  return NULL;
}

void lr_obj_lend_peers(lr_node_t *n, lr_client_t *c, const lr_m_lend_t *m)
{
  lr_lend_t *l;
  if (!m->token.n) return;
  HASH_FIND(hh, n->lends, m->token.v.s.p, m->token.v.s.n, l);
  if (!l) return; /* claimed before it came */
  l->from = c ? c->id : 0;
  if (!m->to.n || m->to.v.i <= 0) return;
  l->to = m->to.v.i;
  /* Its receiver left already (a lender names only processes that said
   * hello here): it never claims. */
  if (!local_client(n, l->to)) release_lend(n, l, LR_PT_UNLEND);
}

typedef struct {
  lr_client_t *r; /* a receiver */
  lr_lend_t *l;   /* a lend to it whose lender left */
} ask_t;

static int by_receiver(const void *a, const void *b)
{
  uint64_t x = ((const ask_t *)a)->r->id, y = ((const ask_t *)b)->r->id;
  return x < y ? -1 : x > y;
}

/* Sends each receiver of asks (sorted by receiver) one lender_gone with its
 * tokens. */
static void ask_receivers(const ask_t *asks, size_t nask)
{
  for (size_t i = 0, j; i < nask; i = j) {
    for (j = i; j < nask && asks[j].r == asks[i].r; j++) {}
    lr_pitem_t *items = lr_xcalloc(j - i, sizeof(*items));
    for (size_t k = i; k < j; k++)
      items[k - i].v.s = (lr_pstr_t){asks[k].l->token, strlen(asks[k].l->token)};
    lr_m_lender_gone_t m = LR_MSG_INIT(LENDER_GONE);
    LR_SET_ITEMS(m.tokens, items, (uint32_t)(j - i));
    lr_node_send(asks[i].r, &m);
    lr_free(items);
  }
}

/* Client c left: the lends it received end, and the receivers of the lends
 * it made are asked about them. */
static void lends_client_gone(lr_node_t *n, lr_client_t *c)
{
  lr_lend_t *l, *tmp;
  ask_t *asks = NULL;
  size_t nask = 0, cap = 0;
  int local = c->pid > 0 && (c->kind == LR_CL_DRIVER || c->kind == LR_CL_WORKER) &&
              c->conn.h.handle.type != UV_TCP;
  HASH_ITER(hh, n->lends, l, tmp) {
    if (local && l->to == c->pid) {
      release_lend(n, l, LR_PT_UNLEND);
      continue;
    }
    if (!l->from || l->from != c->id || !l->to) continue;
    l->from = 0; /* asked once */
    lr_client_t *r = local_client(n, l->to);
    if (!r) {
      release_lend(n, l, LR_PT_UNLEND);
      continue;
    }
    if (nask == cap) {
      cap = cap ? 2 * cap : 16;
      asks = lr_xrealloc(asks, cap * sizeof(*asks));
    }
    asks[nask++] = (ask_t){r, l};
  }
  if (nask > 1) qsort(asks, nask, sizeof(*asks), by_receiver);
  ask_receivers(asks, nask);
  lr_free(asks);
}

/* -- Values ------------------------------------------------------------------------- */

void lr_obj_value(const lr_obj_t *o, lr_m_value_t *v, lr_pitem_t shm[2])
{
  if (o->has_data) LR_SET_STR(v->data, o->data ? o->data : "", o->data_len);
  if (o->shm_len >= 0) {
    shm[0].v.i = o->shm_off;
    shm[1].v.i = o->shm_len;
    LR_SET_ITEMS(v->shm, shm, 2);
  }
  if (o->err) LR_SET_STR(v->err, o->err, o->err_len);
  if (o->arr) LR_SET_CSTR(v->arr, o->arr);
  if (o->etype) LR_SET_CSTR(v->etype, o->etype);
  if (o->emsg) LR_SET_CSTR(v->emsg, o->emsg);
}

static void send_obj(lr_client_t *c, const lr_obj_t *o)
{
  lr_m_value_t v = LR_MSG_INIT(VALUE);
  lr_pitem_t shm[2];
  lr_obj_value(o, &v, shm);
  /* obj's fields are value's first ones, in the same order. */
  lr_m_obj_t m = LR_MSG_INIT(OBJ);
  LR_SET_CSTR(m.id, o->id);
  if (o->shm_len >= 0 && c && c->node->tcp_on) LR_SET_CSTR(m.node, c->node->tcp_addr);
  m.data = v.data;
  m.shm = v.shm;
  m.err = v.err;
  m.arr = v.arr;
  m.etype = v.etype;
  m.emsg = v.emsg;
  lr_node_send(c, &m);
}

/* Answers every reader waiting for o and forgets them: with m (another
 * node's value, or a failure), or with o's own record when m is NULL (o
 * was just stored). An o that no one holds (only asked about) is doomed:
 * the sweep frees it if it is still unheld then. */
static void answer_waiters(lr_node_t *n, lr_obj_t *o, const lr_m_obj_t *m)
{
  lr_waiter_t *w = o->waiters;
  o->waiters = NULL;
  for (lr_waiter_t *next; w; w = next) {
    next = w->next;
    lr_client_t *c = lr_node_client(n, w->client);
    if (m) lr_node_send(c, m);
    else send_obj(c, o);
    lr_free(w);
  }
  if (o->count <= 0) doom(n, o);
}

/* Stores the value (or failure) of o and tells everyone waiting. */
static void store(lr_node_t *n, lr_obj_t *o, const lr_m_put_t *m, const char *etype,
                  const char *emsg)
{
  int has_shm = m && m->shm.n == 2;
  if (o->st != LR_O_PENDING) {
    /* Already stored (a retried task finishing twice): keep the first. The
     * second copy's range is not freed now: the retry's result message names
     * it to the caller, which reads it, so it lives as long as the object
     * (freeing it here let a later allocation overwrite a result). */
    if (has_shm && !(o->shm_len >= 0 && o->shm_off == m->shm.items[0].v.i)) {
      o->dups = lr_xrealloc(o->dups, 2 * (o->ndups + 1) * sizeof(*o->dups));
      o->dups[2 * o->ndups] = m->shm.items[0].v.i;
      o->dups[2 * o->ndups + 1] = m->shm.items[1].v.i;
      o->ndups++;
    }
    return;
  }
  if (m) {
    if (m->data.n) {
      o->has_data = 1;
      o->data = dupn(m->data.v.s.p, m->data.v.s.n);
      o->data_len = m->data.v.s.n;
    }
    if (has_shm) {
      o->shm_off = m->shm.items[0].v.i;
      o->shm_len = m->shm.items[1].v.i;
    }
    if (m->err.n) {
      o->err = dupn(m->err.v.s.p, m->err.v.s.n);
      o->err_len = m->err.v.s.n;
    }
    if (m->arr.n) o->arr = lr_pstrdup(&m->arr);
    if (m->etype.n) o->etype = lr_pstrdup(&m->etype);
    if (m->emsg.n) o->emsg = lr_pstrdup(&m->emsg);
    if (m->refs.n) {
      o->ncontains = m->refs.n;
      o->contains = lr_xcalloc(m->refs.n, sizeof(char *));
      for (uint32_t i = 0; i < m->refs.n; i++) {
        const lr_pstr_t *id = &m->refs.items[i].v.s;
        o->contains[i] = dupn(id->p, id->n);
        lr_obj_incref(n, id->p, id->n);
        lr_obj_find(n, id->p, id->n)->inner++;
      }
    }
    if (m->actors.n) {
      o->holds_actors = 1;
      object_lend(n, o, LR_PT_LEND, &m->actors);
    }
  } else {
    o->etype = lr_xstrdup(etype);
    o->emsg = lr_xstrdup(emsg);
  }
  o->st = (o->err || o->etype) ? LR_O_ERR : LR_O_OK;
  o->used_at = lr_node_now();
  answer_waiters(n, o, NULL); /* dooms it if nobody holds it: swept later */
  if (n->unplaced_head) lr_place_waiting(n); /* actors waiting for arguments */
}

void lr_obj_put(lr_node_t *n, lr_client_t *c, const lr_m_put_t *m)
{
  if (!m->id.n) return;
  if (m->shm.n) {
    /* The node owns the store: a put may name only a range this client was
     * given (alloc) and has not put yet. Anything else is a confused or
     * hostile peer, which could make objects share memory. */
    uint64_t off = m->shm.n == 2 ? (uint64_t)m->shm.items[0].v.i : 0;
    lr_alloc_t *a = NULL;
    if (m->shm.n == 2) HASH_FIND(hh, c->allocs, &off, sizeof(off), a);
    if (!a || m->shm.items[1].v.i < 0 || (uint64_t)m->shm.items[1].v.i > a->size) {
      fprintf(stderr, "lray: closing a connection: 'put' of a store range it was not given\n");
      lr_conn_close(&c->conn);
      return;
    }
    HASH_DEL(c->allocs, a);
    lr_free(a);
  }
  lr_obj_t *o = lr_obj_get(n, m->id.v.s.p, m->id.v.s.n);
  if (m->cs.n && !o->call_site) o->call_site = lr_pstrdup(&m->cs);
  if (!o->owner_pid) o->owner_pid = c->worker ? c->worker->pid : c->pid;
  lr_obj_hold(n, c, m->id.v.s.p, m->id.v.s.n);
  store(n, o, m, NULL, NULL);
}

void lr_obj_expect(lr_node_t *n, lr_client_t *c, const lr_m_expect_t *m)
{
  if (!m->id.n) return;
  lr_obj_t *o = lr_obj_get(n, m->id.v.s.p, m->id.v.s.n);
  if (o->st == LR_O_PENDING) o->expected_from = c->id;
  lr_obj_hold(n, c, m->id.v.s.p, m->id.v.s.n);
}

/* -- Waiting for room ------------------------------------------------------------- */
/* Allocs and restores waiting for room retry every 25 ms; a spill that its
 * holders agreed to (unmap.c) frees room between two tries, and wakes them
 * at once (lr_obj_kick) without using up their tries. */
typedef struct {
  uv_timer_t *t;
  uv_timer_cb cb;
  int *tries;
} waiting_t;

static waiting_t *waiting;
static size_t nwaiting, waiting_cap;

static void wait_add(uv_timer_t *t, uv_timer_cb cb, int *tries)
{
  if (nwaiting == waiting_cap) {
    waiting_cap = waiting_cap ? waiting_cap * 2 : 16;
    waiting = lr_xrealloc(waiting, waiting_cap * sizeof(*waiting));
  }
  waiting[nwaiting++] = (waiting_t){t, cb, tries};
}

static void wait_del(uv_timer_t *t)
{
  for (size_t i = 0; i < nwaiting; i++)
    if (waiting[i].t == t) {
      waiting[i] = waiting[--nwaiting];
      return;
    }
}

void lr_obj_kick(lr_node_t *n)
{
  LR_UNUSED(n);
  for (size_t i = 0; i < nwaiting; i++) {
    if (*waiting[i].tries > 0) (*waiting[i].tries)--; /* this try is extra */
    uv_timer_start(waiting[i].t, waiting[i].cb, 0, 25);
  }
}

/* A read of a spilled object waits while the store is full, as a put does:
 * every process is asked to collect, and the restore is retried for a while
 * before the reader gets ObjectStoreFullError. */
typedef struct {
  lr_node_t *n;
  uint64_t client;
  char *id;
  int tries;
  uv_timer_t t;
} restore_try_t;

static void restore_closed(uv_handle_t *h)
{
  restore_try_t *r = h->data;
  lr_free(r->id);
  lr_free(r);
}

/* c waits for o: answered when o is stored, or restored from disk. */
static void add_waiter(lr_obj_t *o, lr_client_t *c)
{
  for (lr_waiter_t *w = o->waiters; w; w = w->next)
    if (w->client == c->id) return;
  lr_waiter_t *w = lr_xcalloc(1, sizeof(*w));
  w->client = c->id;
  w->next = o->waiters;
  o->waiters = w;
}

/* Why a spilled object could not be read back, for its readers. */
static void restore_failure(const lr_obj_t *o, int rc, char *msg, size_t len)
{
  snprintf(msg, len, "object %s is spilled to disk and cannot be restored into"
           " the object store: %s", o->id, rc == LR_ESTOREFULL ? "the store is full" :
           uv_strerror(rc));
}

/* Sends o (restored first, if spilled) to c; 1 when answered or to be
 * answered when the restore under way is done, 0 to try again later. */
static int send_restored(lr_node_t *n, lr_client_t *c, lr_obj_t *o, int tries)
{
  o->used_at = lr_node_now();
  lr_unmap_touch(o); /* its location goes out */
  int rc = lr_spill_restore_async(n, o);
  if (rc == 1) { /* read off the loop: lr_obj_restored answers */
    add_waiter(o, c);
    return 1;
  }
  if (rc == LR_ESTOREFULL && tries < 40) {
    lr_unmap_ask(n, (uint64_t)o->spilled_len, o); /* holders of others may let go */
    if (tries == 0) {
      lr_m_gc_t gc = LR_MSG_INIT(GC);
      for (lr_client_t *x = n->clients; x; x = x->hh.next) lr_node_send(x, &gc);
    }
    return 0;
  }
  if (rc < 0) { /* still on disk: this reader gets the failure */
    char msg[300];
    restore_failure(o, rc, msg, sizeof(msg));
    lr_obj_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.id = o->id;
    tmp.shm_len = -1;
    tmp.etype = "ObjectStoreFullError";
    tmp.emsg = msg;
    send_obj(c, &tmp);
    return 1;
  }
  send_obj(c, o);
  return 1;
}

void lr_obj_restored(lr_node_t *n, lr_obj_t *o, int rc)
{
  if (o->waiters && rc == 0) {
    answer_waiters(n, o, NULL);
  } else if (o->waiters) {
    char msg[300];
    restore_failure(o, rc, msg, sizeof(msg));
    lr_obj_fail_waiters(n, o, "ObjectStoreFullError", msg);
  }
  lr_transfer_restored(n, o->id); /* pulls and fetches waiting for it */
  if (n->unplaced_head) lr_place_waiting(n); /* actors waiting for it */
}

static void restore_retry(uv_timer_t *t)
{
  restore_try_t *r = t->data;
  lr_client_t *c = lr_node_client(r->n, r->client);
  lr_obj_t *o = lr_obj_find(r->n, r->id, strlen(r->id));
  r->tries++;
  if (!c || !o || send_restored(r->n, c, o, r->tries)) {
    wait_del(t);
    uv_close((uv_handle_t *)t, restore_closed);
  }
}

void lr_obj_subscribe(lr_node_t *n, lr_client_t *c, const char *id, size_t len)
{
  lr_obj_t *o = lr_obj_get(n, id, len);
  if (o->st != LR_O_PENDING) {
    if (send_restored(n, c, o, 0)) return;
    restore_try_t *r = lr_xcalloc(1, sizeof(*r));
    r->n = n;
    r->client = c->id;
    r->id = dupn(id, len);
    uv_timer_init(n->loop, &r->t);
    r->t.data = r;
    uv_timer_start(&r->t, restore_retry, 25, 25);
    wait_add(&r->t, restore_retry, &r->tries);
    return;
  }
  add_waiter(o, c);
  if (o->home) lr_xref_ask(n, o); /* another node stores it */
}

void lr_obj_remote_value(lr_node_t *n, const lr_m_obj_t *m)
{
  lr_obj_t *o = m->id.n ? lr_obj_find(n, m->id.v.s.p, m->id.v.s.n) : NULL;
  if (!o) return;
  o->home_asked = 0;
  if (o->st != LR_O_PENDING) return; /* stored here meanwhile: told already */
  answer_waiters(n, o, m);
}

void lr_obj_fail_waiters(lr_node_t *n, lr_obj_t *o, const char *etype, const char *msg)
{
  lr_m_obj_t m = LR_MSG_INIT(OBJ);
  LR_SET_CSTR(m.id, o->id);
  LR_SET_CSTR(m.etype, etype);
  LR_SET_CSTR(m.emsg, msg);
  answer_waiters(n, o, &m);
}

int lr_obj_ready(lr_node_t *n, const char *id, size_t len)
{
  lr_obj_t *o = lr_obj_find(n, id, len);
  return o && o->st != LR_O_PENDING;
}

/* -- Clients leaving ------------------------------------------------------------------ */

void lr_obj_drop_client(lr_node_t *n, lr_client_t *c)
{
  lr_strset_t *e, *tmp;
  HASH_ITER(hh, c->held, e, tmp) {
    HASH_DEL(c->held, e);
    lr_obj_decref(n, e->key, strlen(e->key));
    lr_free(e->key);
    lr_free(e);
  }
  lends_client_gone(n, c);
  lr_alloc_t *a, *atmp;
  HASH_ITER(hh, c->allocs, a, atmp) {
    HASH_DEL(c->allocs, a);
    lr_salloc_free(&n->region, a->off, a->size);
    lr_free(a);
  }
  lr_obj_t *o, *otmp;
  HASH_ITER(hh, n->objects, o, otmp) {
    for (lr_waiter_t **p = &o->waiters; *p;) {
      if ((*p)->client == c->id) {
        lr_waiter_t *dead = *p;
        *p = dead->next;
        lr_free(dead);
      } else {
        p = &(*p)->next;
      }
    }
    if (o->expected_from == c->id && o->st == LR_O_PENDING) {
      /* Its owner (the actor's caller) was to store it and is gone. */
      char msg[400];
      char pid[32] = "?";
      if (c->pid) snprintf(pid, sizeof(pid), "%lld", (long long)c->pid);
      snprintf(msg, sizeof(msg), "object %s is lost: the process that owned it (pid %s,"
               " which made the actor call that returns it) exited before it was stored",
               o->id, pid);
      store(n, o, NULL, "OwnerDiedError", msg);
    }
  }
}

/* -- Store space --------------------------------------------------------------------- */

typedef struct {
  lr_node_t *n;
  uint64_t client;
  char *rid;
  int64_t size;
  int tries;
  uv_timer_t t;
} alloc_try_t;

static void alloc_closed(uv_handle_t *h)
{
  alloc_try_t *a = h->data;
  lr_free(a->rid);
  lr_free(a);
}

static void alloc_reply(lr_client_t *c, const char *rid, int64_t off, const char *err)
{
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  if (rid) LR_SET_CSTR(r.rid, rid);
  if (err) LR_SET_CSTR(r.err, err);
  else LR_SET_INT(r.off, off);
  lr_node_send(c, &r);
}

/* Why spilling did not make room, for a full store's error: "" when it
 * was not tried or simply found nothing to spill. */
static void spill_why(lr_node_t *n, char *out, size_t len)
{
  char dir[PATH_MAX];
  if (!lr_spill_on()) snprintf(out, len, "; spilling to disk is off (LRAY_SPILL=0)");
  else if (n->spill_err < 0)
    snprintf(out, len, "; spilling to disk failed: %s: %s", lr_spill_dir(n, dir, sizeof(dir)),
             uv_strerror(n->spill_err));
  else out[0] = 0;
}

/* Space in the shared-memory store. When it is short, every process is
 * asked to collect garbage (dropping ObjectRefs Lua no longer reaches),
 * then the request is retried for a while before it fails. Returns 1 when
 * answered. */
static int try_alloc(alloc_try_t *a)
{
  lr_node_t *n = a->n;
  lr_client_t *c = lr_node_client(n, a->client);
  if (!c) return 1;
  int64_t off = lr_salloc_alloc(&n->region, (uint64_t)a->size);
  if (off < 0) {
    reap(n, 1);
    off = lr_salloc_alloc(&n->region, (uint64_t)a->size);
  }
  if (off < 0 && lr_spill_make_room(n, (uint64_t)a->size, NULL) > 0)
    off = lr_salloc_alloc(&n->region, (uint64_t)a->size);
  if (off < 0) lr_unmap_ask(n, (uint64_t)a->size, NULL); /* room comes later */
  if (off >= 0) {
    lr_alloc_t *r = lr_xcalloc(1, sizeof(*r));
    r->off = (uint64_t)off;
    r->size = (uint64_t)a->size;
    HASH_ADD(hh, c->allocs, off, sizeof(r->off), r);
    alloc_reply(c, a->rid, off, NULL);
    return 1;
  }
  if (a->tries == 0) {
    lr_m_gc_t gc = LR_MSG_INIT(GC);
    for (lr_client_t *o = n->clients; o; o = o->hh.next)
      if (o != c) lr_node_send(o, &gc);
  }
  if (a->tries >= 40) {
    lr_salloc_stats_t st;
    lr_salloc_stats(&n->region, &st);
    char err[PATH_MAX + 600], why[PATH_MAX + 100];
    spill_why(n, why, sizeof(why));
    snprintf(err, sizeof(err), "the object store is full: cannot store %lld bytes (%llu of"
             " %llu bytes in use by live objects%s); release ObjectRefs you no longer need or"
             " start with a larger object_store_memory", (long long)a->size,
             (unsigned long long)st.used, (unsigned long long)st.capacity, why);
    alloc_reply(c, a->rid, 0, err);
    return 1;
  }
  return 0;
}

static void alloc_retry(uv_timer_t *t)
{
  alloc_try_t *a = t->data;
  a->tries++;
  if (try_alloc(a)) {
    wait_del(t);
    uv_close((uv_handle_t *)t, alloc_closed);
  }
}

void lr_obj_alloc(lr_node_t *n, lr_client_t *c, const lr_m_alloc_t *m)
{
  alloc_try_t a0;
  memset(&a0, 0, sizeof(a0));
  a0.n = n;
  a0.client = c->id;
  a0.size = m->size.n && m->size.v.i > 0 ? m->size.v.i : 0;
  a0.rid = lr_pstrdup(&m->rid);
  if (try_alloc(&a0)) {
    lr_free(a0.rid);
    return;
  }
  alloc_try_t *a = lr_xmalloc(sizeof(*a));
  *a = a0;
  uv_timer_init(n->loop, &a->t);
  a->t.data = a;
  uv_timer_start(&a->t, alloc_retry, 25, 25);
  wait_add(&a->t, alloc_retry, &a->tries);
}

/* -- Copies from other nodes (transfer.c) --------------------------------------------- */

int64_t lr_obj_room(lr_node_t *n, uint64_t size)
{
  int64_t off = lr_salloc_alloc(&n->region, size);
  if (off < 0) {
    reap(n, 1);
    off = lr_salloc_alloc(&n->region, size);
  }
  if (off < 0 && lr_spill_make_room(n, size, NULL) > 0) off = lr_salloc_alloc(&n->region, size);
  if (off < 0) lr_unmap_ask(n, size, NULL);
  return off;
}

void lr_obj_stored(lr_node_t *n, const char *id, int64_t off, int64_t len, const char *arr)
{
  lr_m_put_t m = LR_MSG_INIT(PUT);
  lr_pitem_t shm[2];
  shm[0].v.i = off;
  shm[1].v.i = len;
  LR_SET_CSTR(m.id, id);
  LR_SET_ITEMS(m.shm, shm, 2);
  if (arr && *arr) LR_SET_CSTR(m.arr, arr);
  store(n, lr_obj_get(n, id, strlen(id)), &m, NULL, NULL);
}

/* -- Questions ----------------------------------------------------------------------- */

int lr_obj_why(lr_node_t *n, const char *id, size_t len, char *out, size_t outlen)
{
  lr_obj_t *o = lr_obj_find(n, id, len);
  if (o && (o->st != LR_O_PENDING || o->expected_from)) return 0;
  snprintf(out, outlen, "object %.*s: nothing is producing it (no process has stored or"
           " promised it); it may have been freed before this reference to it was registered",
           (int)len, id);
  return 1;
}

void lr_obj_stats(lr_node_t *n, size_t *count, uint64_t *bytes)
{
  *count = HASH_COUNT(n->objects);
  *bytes = 0;
  for (lr_obj_t *o = n->objects; o; o = o->hh.next)
    *bytes += o->data_len + (o->shm_len > 0 ? (uint64_t)o->shm_len : 0);
}

void lr_obj_init(lr_node_t *n)
{
  uv_timer_init(n->loop, &n->sweep_timer);
  n->sweep_timer.data = n;
}
