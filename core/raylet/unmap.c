/* Spilling objects that processes hold: the node asks each holder to
 * forget where the object is in the store (unmap), and writes it to disk
 * once every holder has (unmapped).
 *
 * Why asking is enough (docs/architecture.md, "Spilling"): a process that
 * knows a range holds a reference the node counts, or a lend counts for it
 * until it does. A holder forgets a range only when it is not reading it (no
 * lray.array view of it alive, no read under way) and answers with the ids
 * it forgot; it passes ranges on only with a lend, which the node sees
 * first (a lend, like every new count, comes before the answer on the same
 * connection). So when every holder has forgotten and nothing else counts
 * the object, no process can read its range, and the next reader learns
 * the new location from the node (sub), which restores it first.
 *
 * What calls an exchange off: anything that may hand the location out again
 * while the holders are asked — a new hold (ref, a fetch's answer), a lend,
 * an actor placement, a containing object (lr_obj_incref), the node
 * answering a sub — bumps o->gen (lr_unmap_touch); the spill goes ahead
 * only if gen is what it was when the holders were asked. A holder that
 * keeps the range (kept) ends the exchange; one that does not answer
 * within UNMAP_WAIT (a worker busy in a long task) leaves the object in the
 * store. Either way the object is not asked about for UNMAP_PAUSE.
 *
 * Nothing here blocks the loop: the file is written by libuv's thread pool
 * (lr_spill_write_async, which spills the object only if its gen is still
 * the same when the write is done), and the alloc or restore that needs
 * room retries as before (every 25 ms for a second) and is woken when a
 * spill frees room (lr_obj_kick).
 *
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#include <stdlib.h>
#include <string.h>
#include "common/errdef.h"
#include "raylet/node.h"

#define UNMAP_WAIT 0.5  /* seconds the holders have to answer */
#define UNMAP_PAUSE 0.2 /* seconds before an object refused is asked again */
/* Seconds an unanswered ask counts as room on its way: after that, other
 * objects are asked too (the holder may be busy in a long task). */
#define UNMAP_FRESH 0.1
#define SWEEP_MS 100

static int holds(const lr_client_t *c, const char *id)
{
  lr_strset_t *e;
  HASH_FIND(hh, c->held, id, strlen(id), e);
  return e != NULL;
}

static int askable(const lr_client_t *c)
{
  return !c->gone && (c->kind == LR_CL_DRIVER || c->kind == LR_CL_WORKER);
}

/* How many clients hold o, or -1 when one of them cannot be asked (a node
 * pulling it, a proxy). */
static int64_t holders(lr_node_t *n, const lr_obj_t *o)
{
  int64_t k = 0;
  for (lr_client_t *c = n->clients; c; c = c->hh.next) {
    if (!c->held || !holds(c, o->id)) continue;
    if (!askable(c)) return -1;
    k++;
  }
  return k;
}

/* The cheap half of lr_unmap_candidate: what the object itself says. */
static int may_ask(const lr_obj_t *o)
{
  if (o->st != LR_O_OK || o->shm_len < 0 || o->spilled_len >= 0 || o->waiters) return 0;
  return !o->spilling && o->count > o->inner; /* (else nobody to ask: spill.c spills it as it is) */
}

int lr_unmap_candidate(lr_node_t *n, const lr_obj_t *o)
{
  return may_ask(o) && holders(n, o) == o->count - o->inner;
}

/* -- One object's exchange ------------------------------------------------------ */

static void end_exchange(lr_node_t *n, lr_obj_t *o, int refused)
{
  if (!o->unmapping) return;
  o->unmapping = 0;
  lr_free(o->unmap_from);
  o->unmap_from = NULL;
  o->unmap_n = 0;
  n->unmap_live--;
  /* (It may have spilled as it was meanwhile: its holders let go of it.) */
  n->unmap_bytes -= (uint64_t)(o->shm_len >= 0 ? o->shm_len : o->spilled_len);
  if (refused) o->unmap_no = lr_node_now();
}

void lr_unmap_forget(lr_node_t *n, lr_obj_t *o)
{
  end_exchange(n, o, 0);
}

/* Holders asked that still owe an answer: those gone or no longer holding
 * it owe nothing. */
static uint32_t owed(lr_node_t *n, lr_obj_t *o)
{
  uint32_t k = 0;
  for (uint32_t i = 0; i < o->unmap_n; i++) {
    lr_client_t *c = lr_node_client(n, o->unmap_from[i]);
    if (c && !c->gone && holds(c, o->id)) o->unmap_from[k++] = o->unmap_from[i];
  }
  o->unmap_n = k;
  return k;
}

/* Every holder answered: spill, unless the location went out again. */
static void settle(lr_node_t *n, lr_obj_t *o)
{
  if (!o->unmapping || owed(n, o) > 0) return;
  int ok = o->gen == o->unmap_gen && lr_unmap_candidate(n, o);
  end_exchange(n, o, !ok);
  if (!ok) return;
  if (lr_spill_write_async(n, o) < 0) o->unmap_no = lr_node_now();
}

/* -- Asking ------------------------------------------------------------------------ */

static void sweep(uv_timer_t *t);

static void arm(lr_node_t *n)
{
  if (!n->unmap_timer_on) {
    uv_timer_init(n->loop, &n->unmap_timer);
    n->unmap_timer.data = n;
    n->unmap_timer_on = 1;
  }
  if (!uv_is_active((uv_handle_t *)&n->unmap_timer))
    uv_timer_start(&n->unmap_timer, sweep, SWEEP_MS, SWEEP_MS);
}

/* Exchanges whose holders went away are settled; those unanswered for
 * UNMAP_WAIT end with the object in the store. */
static void sweep(uv_timer_t *t)
{
  lr_node_t *n = t->data;
  double now = lr_node_now();
  lr_obj_t *o, *tmp;
  HASH_ITER(hh, n->objects, o, tmp) {
    if (!o->unmapping) continue;
    if (now - o->unmap_at > UNMAP_WAIT) end_exchange(n, o, 1);
    else settle(n, o);
  }
  if (!n->unmap_live) uv_timer_stop(t);
}

/* Least recently used first. */
static int by_use(const void *a, const void *b)
{
  double x = (*(lr_obj_t *const *)a)->used_at, y = (*(lr_obj_t *const *)b)->used_at;
  return x < y ? -1 : x > y;
}

/* Starts o's exchange: its holders are the clients to ask. */
static void begin(lr_node_t *n, lr_obj_t *o, double now)
{
  o->unmapping = 1;
  o->unmap_gen = o->gen;
  o->unmap_at = now;
  o->unmap_n = 0;
  o->unmap_from = lr_xcalloc((size_t)(o->count - o->inner), sizeof(*o->unmap_from));
  for (lr_client_t *c = n->clients; c; c = c->hh.next)
    if (c->held && holds(c, o->id)) o->unmap_from[o->unmap_n++] = c->id;
  n->unmap_live++;
  n->unmap_bytes += (uint64_t)o->shm_len;
}

int lr_unmap_ask(lr_node_t *n, uint64_t size, const lr_obj_t *keep)
{
  if (!lr_spill_on()) return 0;
  double now = lr_node_now();
  uint64_t coming = 0; /* bytes of objects asked about lately */
  size_t cap = 0, k = 0;
  lr_obj_t **c = NULL;
  for (lr_obj_t *o = n->objects; o; o = o->hh.next) {
    if (o->unmapping || o->spilling) { /* (a write under way frees room soon) */
      if (o->spilling || now - o->unmap_at < UNMAP_FRESH) coming += (uint64_t)o->shm_len;
      continue;
    }
    if (o == keep || now - o->unmap_no < UNMAP_PAUSE || !may_ask(o)) continue;
    if (k == cap) {
      cap = cap ? cap * 2 : 64;
      c = lr_xrealloc(c, cap * sizeof(*c));
    }
    c[k++] = o;
  }
  /* Least recently used first; the holders (a walk over the clients) are
   * looked at only for as many as it takes. */
  size_t asked = 0;
  if (k && coming < size) qsort(c, k, sizeof(*c), by_use);
  for (size_t i = 0; i < k && coming < size; i++) {
    if (holders(n, c[i]) != c[i]->count - c[i]->inner) continue;
    begin(n, c[i], now);
    coming += (uint64_t)c[i]->shm_len;
    c[asked++] = c[i];
  }
  /* One message per holder, naming every object it is asked about. */
  for (lr_client_t *cl = n->clients; asked && cl; cl = cl->hh.next) {
    if (!cl->held || !askable(cl)) continue;
    lr_pitem_t *ids = NULL;
    uint32_t nids = 0;
    for (size_t i = 0; i < asked; i++) {
      if (!holds(cl, c[i]->id)) continue;
      if (!ids) ids = lr_xcalloc(asked, sizeof(*ids));
      ids[nids].v.s.p = c[i]->id;
      ids[nids++].v.s.n = strlen(c[i]->id);
    }
    if (!nids) continue;
    lr_m_unmap_t m = LR_MSG_INIT(UNMAP);
    LR_SET_ITEMS(m.ids, ids, nids);
    lr_node_send(cl, &m);
    lr_free(ids);
  }
  lr_free(c);
  if (asked) arm(n);
  return (int)asked;
}

/* -- Answers -------------------------------------------------------------------------- */

void lr_unmap_answer(lr_node_t *n, lr_client_t *c, const lr_m_unmapped_t *m)
{
  for (uint32_t i = 0; i < m->kept.n; i++) {
    const lr_pstr_t *id = &m->kept.items[i].v.s;
    lr_obj_t *o = lr_obj_find(n, id->p, id->n);
    if (o) end_exchange(n, o, 1);
  }
  for (uint32_t i = 0; i < m->ids.n; i++) {
    const lr_pstr_t *id = &m->ids.items[i].v.s;
    lr_obj_t *o = lr_obj_find(n, id->p, id->n);
    if (!o || !o->unmapping) continue; /* (late: the exchange ended) */
    for (uint32_t j = 0; j < o->unmap_n; j++)
      if (o->unmap_from[j] == c->id) {
        o->unmap_from[j] = o->unmap_from[--o->unmap_n];
        break;
      }
    settle(n, o);
  }
}
