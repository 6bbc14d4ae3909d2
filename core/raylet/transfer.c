/* Objects between nodes. A value record names its store range and the node
 * whose store it is (value.node, that node's TCP address). A process that
 * reads a record of another node asks its own node to `fetch` it; the node:
 *
 *   1. answers at once if it has the object stored (an earlier copy);
 *   2. joins the transfer under way for that object, if any (one copy per
 *      node, however many readers);
 *   3. else takes a range of its store for it (making room as a put does,
 *      and waiting up to 1 s while the store is full), opens (or reuses)
 *      an authenticated link to the holder (peer.c), and pulls the object
 *      in chunks of LRAY_TRANSFER_CHUNK bytes (4 MiB), LRAY_TRANSFER_WINDOW
 *      (8) in flight, each written straight into the range as it arrives:
 *      the bytes are never whole anywhere but in the two stores;
 *   4. stores the copy as an ordinary object of its own (later readers on
 *      this node get it from here, for as long as it is referenced) and
 *      answers each reader with the range, which it now holds.
 *
 * The holder keeps the object (a hold of the pulling link, as a client's
 * hold) from its first pull until the reader says done or the link closes,
 * so it is neither freed nor spilled while it streams. A transfer whose link
 * fails is tried again once from the start; a holder that still cannot
 * serve it (gone, the link fails again, or it answers chunk {err}) is
 * replaced by the other live nodes of the cluster view, one after another,
 * from the first byte (one of them may have a copy: a node that does not
 * answers chunk {err} at once); when none has it, the readers get
 * ObjectLostError naming the holder node and what happened.
 *
 * A pull or fetch of an object spilled here waits while the object is read
 * back from disk in libuv's thread pool (lr_spill_restore_async): it is
 * kept, encoded, and handled again when the read is done
 * (lr_transfer_restored), so the node's loop never blocks on the disk.
 *
 * The chunk bookkeeping (lr_xplan_*) is pure and unit-tested (test_transfer).
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/errdef.h"
#include "raylet/node.h"

#define RETRIES 1        /* tries from the start after the first */
#define ALLOC_TRIES 40   /* 25 ms apart: 1 s, as a put */
#define RETRY_MS 100     /* pause before trying a failed holder again */

/* -- Chunk bookkeeping (pure) ------------------------------------------------------ */

void lr_xplan_init(lr_xplan_t *p, uint64_t size, uint64_t chunk, int window)
{
  memset(p, 0, sizeof(*p));
  p->size = size;
  p->chunk = chunk ? chunk : 1;
  p->window = window > 0 ? window : 1;
}

int lr_xplan_next(lr_xplan_t *p, uint64_t *off, uint64_t *len)
{
  if (p->inflight >= p->window || p->asked >= p->size) return 0;
  *off = p->asked;
  *len = p->size - p->asked < p->chunk ? p->size - p->asked : p->chunk;
  p->asked += *len;
  p->inflight++;
  return 1;
}

int lr_xplan_got(lr_xplan_t *p, uint64_t off, uint64_t len)
{
  /* One link, answered in order: the next chunk is the one at p->got, of
   * the length it was asked for. */
  uint64_t want = p->size - p->got < p->chunk ? p->size - p->got : p->chunk;
  if (!p->inflight || off != p->got || len != want) return -1;
  p->got += len;
  p->inflight--;
  return p->got == p->size;
}

/* -- Transfers (reader's side) ------------------------------------------------------- */

typedef struct reader_s {
  uint64_t client;
  char *rid;
  struct reader_s *next;
} reader_t;

typedef struct lr_xfer_s {
  lr_node_t *n;
  char *id, *from, *arr;
  char *src;     /* the node pulled from now: from, or another with a copy */
  size_t alt;    /* the next node of the view to try instead */
  int nalt;      /* how many others were tried */
  char why[300]; /* why from could not serve it */
  int64_t size, off; /* off: the local range, -1 until taken */
  lr_xplan_t plan;
  lr_peer_t *peer;
  int tries, alloc_tries;
  double started;
  reader_t *readers;
  uv_timer_t timer; /* store-full and retry waits */
  int timer_on;
  UT_hash_handle hh; /* n->xfers by id */
} lr_xfer_t;

static uint64_t env_u64(const char *name, uint64_t dflt)
{
  const char *e = getenv(name);
  long long v = e ? atoll(e) : 0;
  return v > 0 ? (uint64_t)v : dflt;
}

static void answer(lr_node_t *n, uint64_t client, const char *rid, int64_t off,
                   const char *id, const char *etype, const char *err)
{
  lr_client_t *c = lr_node_client(n, client);
  if (!c) return;
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  if (rid) LR_SET_CSTR(r.rid, rid);
  if (err) {
    LR_SET_CSTR(r.err, err);
    LR_SET_CSTR(r.etype, etype);
  } else {
    /* The reader knows the range from here on: the node counts it. */
    lr_obj_hold(n, c, id, strlen(id));
    LR_SET_INT(r.off, off);
  }
  lr_node_send(c, &r);
}

static void timer_closed(uv_handle_t *h)
{
  lr_xfer_t *x = h->data;
  lr_free(x->id);
  lr_free(x->from);
  lr_free(x->src);
  lr_free(x->arr);
  lr_free(x);
}

/* Answers every reader (err: with that failure) and forgets x. */
static void finish(lr_xfer_t *x, const char *etype, const char *err)
{
  lr_node_t *n = x->n;
  HASH_DEL(n->xfers, x);
  if (err && x->off >= 0) lr_salloc_free(&n->region, (uint64_t)x->off, (uint64_t)x->size);
  if (!err) { /* the range is the object's from here on */
    n->pulls++;
    n->pulled_bytes += (uint64_t)x->size;
    if (n->debug)
      fprintf(stderr, "lray node: pulled %s (%lld bytes) from %s in %.3f s\n", x->id,
              (long long)x->size, x->from, lr_node_now() - x->started);
    lr_obj_stored(n, x->id, x->off, x->size, x->arr);
    /* Stored meanwhile by other means (its range kept, ours freed): the
     * readers get that one. */
    lr_obj_t *o = lr_obj_find(n, x->id, strlen(x->id));
    if (!o || o->st != LR_O_OK || o->shm_len != x->size) {
      etype = "RayError";
      err = "the object was stored on this node in another form while it was copied";
    } else {
      x->off = o->shm_off;
    }
  }
  for (reader_t *r = x->readers, *next; r; r = next) {
    next = r->next;
    answer(n, r->client, r->rid, x->off, x->id, etype, err);
    lr_free(r->rid);
    lr_free(r);
  }
  uv_close((uv_handle_t *)&x->timer, timer_closed);
}

/* The node pulled from may let go of it. */
static void let_go(lr_xfer_t *x)
{
  if (x->peer && lr_peer_is_up(x->peer)) {
    lr_m_pull_t d = LR_MSG_INIT(PULL);
    LR_SET_CSTR(d.id, x->id);
    LR_SET_BOOL(d.done, 1);
    lr_peer_send(x->peer, &d);
  }
}

static void lost(lr_xfer_t *x, const char *what)
{
  char msg[1200];
  let_go(x);
  snprintf(msg, sizeof(msg), "object %s is lost: its only known copy is in the store of node"
           " %s, which this node (%s) could not copy it from (%s)%s", x->id, x->from,
           x->n->tcp_on ? x->n->tcp_addr : "?", x->nalt ? x->why : what,
           x->nalt ? ", and no other live node has a copy" : "");
  finish(x, "ObjectLostError", msg);
}

static void begin(lr_xfer_t *x);

/* The node pulled from cannot serve the object (what): the next live node
 * of the view is tried from the first byte, or the readers hear it is lost. */
static void fail_source(lr_xfer_t *x, const char *what)
{
  const char *next = lr_view_other(x->n, &x->alt, x->from);
  if (!next) {
    lost(x, what);
    return;
  }
  if (!x->nalt++) snprintf(x->why, sizeof(x->why), "%s", what);
  let_go(x);
  lr_free(x->src);
  x->src = lr_xstrdup(next);
  x->peer = NULL;
  x->tries = 0;
  begin(x);
}

static void pump(lr_xfer_t *x)
{
  uint64_t off, len;
  while (lr_xplan_next(&x->plan, &off, &len)) {
    lr_m_pull_t m = LR_MSG_INIT(PULL);
    LR_SET_CSTR(m.id, x->id);
    LR_SET_INT(m.off, off);
    LR_SET_INT(m.len, len);
    lr_peer_send(x->peer, &m);
  }
}

/* (Re)starts pulling from the first byte over a link to the holder. */
static void begin(lr_xfer_t *x)
{
  char err[LR_ERRLEN];
  lr_xplan_init(&x->plan, (uint64_t)x->size, env_u64("LRAY_TRANSFER_CHUNK", 4u << 20),
                (int)env_u64("LRAY_TRANSFER_WINDOW", 8));
  x->peer = lr_peer_get(x->n, x->src, err);
  if (!x->peer) {
    fail_source(x, err);
    return;
  }
  if (lr_peer_is_up(x->peer)) pump(x);
}

static void on_timer(uv_timer_t *t);

/* Takes the local range: 1 when taken, 0 to try again later, -1 failed. */
static int take_range(lr_xfer_t *x)
{
  lr_node_t *n = x->n;
  x->off = lr_obj_room(n, (uint64_t)x->size);
  if (x->off >= 0) return 1;
  if (x->alloc_tries == 0) {
    lr_m_gc_t gc = LR_MSG_INIT(GC);
    for (lr_client_t *c = n->clients; c; c = c->hh.next)
      if (c->kind == LR_CL_DRIVER || c->kind == LR_CL_WORKER) lr_node_send(c, &gc);
  }
  if (++x->alloc_tries < ALLOC_TRIES) return 0;
  lr_salloc_stats_t st;
  lr_salloc_stats(&n->region, &st);
  char msg[500];
  snprintf(msg, sizeof(msg), "the object store is full: cannot copy object %s (%lld bytes) from"
           " node %s (%llu of %llu bytes in use by live objects); release ObjectRefs you no"
           " longer need or start with a larger object_store_memory", x->id, (long long)x->size,
           x->from, (unsigned long long)st.used, (unsigned long long)st.capacity);
  finish(x, "ObjectStoreFullError", msg);
  return -1;
}

static void on_timer(uv_timer_t *t)
{
  lr_xfer_t *x = t->data;
  if (x->off < 0) {
    int rc = take_range(x);
    if (rc == 0) return;
    uv_timer_stop(t);
    if (rc > 0) begin(x);
    return;
  }
  uv_timer_stop(t); /* a retry's pause is over */
  begin(x);
}

/* -- Waiting for a restore -------------------------------------------------------- */
/* Pulls and fetches of an object being read back from disk, in arrival order. */
typedef struct deferred_s {
  struct deferred_s *next;
  char *id;
  uint64_t client;
  lr_buf_t msg; /* the pull or fetch, encoded */
} deferred_t;

static deferred_t *deferred, **deferred_tail = &deferred;

/* Starts reading spilled o back if need be: 1 when m (from c) was kept for
 * lr_transfer_restored, 0 when o is in the store now, or why it cannot be
 * read back (<0: the caller answers with it). */
static int wait_restore(lr_node_t *n, lr_client_t *c, lr_obj_t *o, const void *m)
{
  int rc = lr_spill_restore_async(n, o);
  if (rc != 1) return rc;
  deferred_t *d = lr_xcalloc(1, sizeof(*d));
  d->id = lr_xstrdup(o->id);
  d->client = c->id;
  lr_buf_init(&d->msg);
  lr_proto_encode(&d->msg, m);
  *deferred_tail = d;
  deferred_tail = &d->next;
  return 1;
}

void lr_transfer_restored(lr_node_t *n, const char *id)
{
  /* Split off first, in order: handling one may defer it again. */
  deferred_t *all = deferred, *mine = NULL, **mt = &mine;
  deferred = NULL;
  deferred_tail = &deferred;
  for (deferred_t *d = all, *next; d; d = next) {
    next = d->next;
    d->next = NULL;
    if (strcmp(d->id, id)) { /* stays */
      *deferred_tail = d;
      deferred_tail = &d->next;
    } else {
      *mt = d;
      mt = &d->next;
    }
  }
  for (deferred_t *d = mine, *next; d; d = next) {
    next = d->next;
    lr_client_t *c = lr_node_client(n, d->client);
    lr_arena_t ar = {0};
    void *m;
    int type = c ? lr_proto_decode(d->msg.data, d->msg.len, &ar, &m, NULL, 0) : -1;
    if (type == LR_PT_PULL) lr_transfer_serve(n, c, m);
    else if (type == LR_PT_FETCH) lr_transfer_fetch(n, c, m);
    lr_arena_free(&ar);
    lr_buf_free(&d->msg);
    lr_free(d->id);
    lr_free(d);
  }
}

void lr_transfer_fetch(lr_node_t *n, lr_client_t *c, const lr_m_fetch_t *m)
{
  char *rid = lr_pstrdup(&m->rid);
  char msg[600];
  if (!m->id.n || !m->from.n || !m->size.n || m->size.v.i <= 0 || m->id.v.s.n > 200) {
    answer(n, c->id, rid, 0, NULL, "RayError", "a fetch needs id, from and size");
    lr_free(rid);
    return;
  }
  lr_obj_t *o = lr_obj_find(n, m->id.v.s.p, m->id.v.s.n);
  if (o && o->st == LR_O_OK && o->spilled_len >= 0 && wait_restore(n, c, o, m) == 1) {
    lr_free(rid);
    return;
  }
  if (o && o->st == LR_O_OK && o->shm_len == m->size.v.i) { /* a copy is here */
    o->used_at = lr_node_now();
    answer(n, c->id, rid, o->shm_off, o->id, NULL, NULL);
    lr_free(rid);
    return;
  }
  char *id = lr_pstrdup(&m->id);
  if (n->tcp_on && lr_pstreq(&m->from, n->tcp_addr)) {
    snprintf(msg, sizeof(msg), "object %s is lost: it is not in the store of node %s, where"
             " it was (it was freed)", id, n->tcp_addr);
    answer(n, c->id, rid, 0, NULL, "ObjectLostError", msg);
    lr_free(rid);
    lr_free(id);
    return;
  }
  if ((uint64_t)m->size.v.i > (uint64_t)n->store_size) {
    snprintf(msg, sizeof(msg), "object %s (%lld bytes) is larger than this node's object store"
             " (%lld bytes)", id, (long long)m->size.v.i, (long long)n->store_size);
    answer(n, c->id, rid, 0, NULL, "ObjectStoreFullError", msg);
    lr_free(rid);
    lr_free(id);
    return;
  }
  reader_t *r = lr_xcalloc(1, sizeof(*r));
  r->client = c->id;
  r->rid = rid;
  lr_xfer_t *x;
  HASH_FIND_STR(n->xfers, id, x);
  if (x) { /* one copy for every reader on this node */
    r->next = x->readers;
    x->readers = r;
    lr_free(id);
    return;
  }
  x = lr_xcalloc(1, sizeof(*x));
  x->n = n;
  x->id = id;
  x->from = lr_pstrdup(&m->from);
  x->src = lr_xstrdup(x->from);
  x->arr = lr_pstrdup(&m->arr);
  x->size = m->size.v.i;
  x->off = -1;
  x->readers = r;
  x->started = lr_node_now();
  uv_timer_init(n->loop, &x->timer);
  x->timer.data = x;
  HASH_ADD_KEYPTR(hh, n->xfers, x->id, strlen(x->id), x);
  int rc = take_range(x);
  if (rc > 0) begin(x);
  else if (rc == 0) uv_timer_start(&x->timer, on_timer, 25, 25);
}

void lr_transfer_peer_up(lr_node_t *n, lr_peer_t *p)
{
  lr_xfer_t *x, *tmp;
  HASH_ITER(hh, n->xfers, x, tmp)
    if (x->peer == p) pump(x);
}

void lr_transfer_peer_down(lr_node_t *n, lr_peer_t *p, const char *why)
{
  lr_xfer_t *x, *tmp;
  HASH_ITER(hh, n->xfers, x, tmp) {
    if (x->peer != p) continue;
    x->peer = NULL;
    if (x->tries++ < RETRIES) {
      uv_timer_start(&x->timer, on_timer, RETRY_MS, 0);
    } else {
      char what[400];
      snprintf(what, sizeof(what), "%s, after %d tries", why, x->tries);
      fail_source(x, what);
    }
  }
}

void lr_transfer_chunk(lr_node_t *n, lr_peer_t *p, const lr_m_chunk_t *m)
{
  lr_xfer_t *x = NULL;
  if (m->id.n) HASH_FIND(hh, n->xfers, m->id.v.s.p, m->id.v.s.n, x);
  if (!x || x->peer != p) return; /* a late piece of a transfer that is over */
  if (m->err.n) {
    char what[400];
    snprintf(what, sizeof(what), "%.*s", (int)m->err.v.s.n, m->err.v.s.p);
    fail_source(x, what);
    return;
  }
  uint64_t off = m->off.n ? (uint64_t)m->off.v.i : 0;
  uint64_t len = m->data.n ? m->data.v.s.n : 0;
  if ((m->total.n && m->total.v.i != x->size) || lr_xplan_got(&x->plan, off, len) < 0) {
    lost(x, "the holder sent pieces of another size or order than asked");
    return;
  }
  memcpy(n->shm.base + x->off + off, m->data.v.s.p, len);
  if (x->plan.got < x->plan.size) {
    pump(x);
    return;
  }
  /* The holder may let go of it: unless this node holds it there anyway
   * (xref.c), since the link is one holder there and done would end both. */
  if (!lr_xref_held_at(lr_obj_find(n, x->id, strlen(x->id)), lr_peer_address(p))) {
    lr_m_pull_t d = LR_MSG_INIT(PULL);
    LR_SET_CSTR(d.id, x->id);
    LR_SET_BOOL(d.done, 1);
    lr_peer_send(p, &d);
  }
  finish(x, NULL, NULL);
}

/* -- Serving pulls (holder's side) -------------------------------------------------- */

#define MAX_CHUNK ((int64_t)64 << 20)

void lr_transfer_serve(lr_node_t *n, lr_client_t *c, const lr_m_pull_t *m)
{
  if (!m->id.n) return;
  lr_m_chunk_t r = LR_MSG_INIT(CHUNK);
  r.id = m->id;
  if (m->off.n) r.off = m->off;
  if (m->done.n && m->done.v.b) {
    lr_obj_unhold(n, c, m->id.v.s.p, m->id.v.s.n);
    return;
  }
  lr_obj_t *o = lr_obj_find(n, m->id.v.s.p, m->id.v.s.n);
  char err[400];
  int rc = 0;
  if (o && o->st == LR_O_OK && o->spilled_len >= 0 && (rc = wait_restore(n, c, o, m)) == 1)
    return;
  if (!o || o->st != LR_O_OK || o->shm_len < 0) {
    snprintf(err, sizeof(err), "the object is not in the store of node %s%s%s",
             n->tcp_on ? n->tcp_addr : "?", rc < 0 ? ": it is spilled and cannot be restored: " :
             " (it was freed)", rc < 0 ? lr_strerror(rc) : "");
    LR_SET_CSTR(r.err, err);
    lr_node_send(c, &r);
    return;
  }
  int64_t off = m->off.n ? m->off.v.i : 0, len = m->len.n ? m->len.v.i : 0;
  if (off < 0 || len <= 0 || len > MAX_CHUNK || off > o->shm_len || len > o->shm_len - off) {
    LR_SET_CSTR(r.err, "a pull asked for bytes outside the object");
    lr_node_send(c, &r);
    return;
  }
  lr_obj_hold(n, c, m->id.v.s.p, m->id.v.s.n); /* kept while it streams */
  o->used_at = lr_node_now();
  LR_SET_INT(r.total, o->shm_len);
  LR_SET_STR(r.data, (const char *)n->shm.base + o->shm_off + off, (size_t)len);
  lr_node_send(c, &r);
}
