/* Actor handle counting. An actor's count is the number of clients holding
 * a handle to it (each client counts once, however many handles it has),
 * plus the actors being created with a handle to it among their init
 * arguments, plus the lends naming it (holds that come before the actor's
 * creation, over another connection, count from its creation): handles in flight from one process to
 * another, and handles inside objects the node stores. A non-detached actor
 * whose count drops to zero and is still zero env.handle_grace seconds later
 * ends; the grace only batches (no hand-off relies on it). Loop thread
 * only.
 *
 * Licensed under the MIT license; see LICENSE. */
#include "gcs/gcs_int.h"

#define GRACE_MS (g->grace_ms)

static gcs_actor_t *find(lr_gcs_t *g, const char *aid)
{
  gcs_actor_t *a;
  HASH_FIND_STR(g->actors, aid, a);
  return a;
}

/* -- The grace timer ------------------------------------------------------- */

static void on_grace(uv_timer_t *t)
{
  gcs_actor_t *a = t->data;
  if (!a || a->state == LR_ACTOR_DEAD) return;
  lr_gcs_t *g = a->g;
  if (a->hcount > 0) {
    /* Every drop to zero gets its check GRACE later; one that came while
     * this timer ran is due now or soon. */
    if (a->zero_at > a->armed_at) {
      uint64_t now = uv_now(g->env.loop), due = a->zero_at + GRACE_MS;
      a->armed_at = a->zero_at;
      uv_timer_start(t, on_grace, due > now ? due - now : 0, 0);
    }
    return;
  }
  lr_gcs_enter(g);
  lr_gcs_setf(&a->cause, "no handle to it remains (every handle was dropped)");
  a->no_restart = 1;
  lr_actors_end(a);
  lr_gcs_leave(g);
}

static void maybe_unreferenced(lr_gcs_t *g, gcs_actor_t *a)
{
  if (a->detached || a->state == LR_ACTOR_DEAD || a->hcount > 0) return;
  a->zero_at = uv_now(g->env.loop);
  if (!a->timer) {
    a->timer = lr_xmalloc(sizeof(*a->timer));
    uv_timer_init(g->env.loop, a->timer);
    a->timer->data = a;
  }
  if (uv_is_active((uv_handle_t *)a->timer)) return; /* on_grace re-arms */
  a->armed_at = a->zero_at;
  uv_timer_start(a->timer, on_grace, GRACE_MS, 0);
}

/* Changes the count of aid by delta (+1 or -1): its actor's, or its early
 * count while the head does not know it. */
static void count(lr_gcs_t *g, const char *aid, int delta)
{
  gcs_actor_t *a = find(g, aid);
  if (a) {
    a->hcount += delta;
    if (delta < 0) maybe_unreferenced(g, a);
    return;
  }
  gcs_early_t *e;
  HASH_FIND_STR(g->early, aid, e);
  if (!e) {
    e = lr_xcalloc(1, sizeof(*e));
    e->aid = lr_xstrdup(aid);
    HASH_ADD_KEYPTR(hh, g->early, e->aid, strlen(e->aid), e);
  }
  e->count += delta;
  if (e->count == 0) {
    HASH_DEL(g->early, e);
    lr_free(e->aid);
    lr_free(e);
  }
}

void lr_handles_adopt(lr_gcs_t *g, gcs_actor_t *a)
{
  gcs_early_t *e;
  HASH_FIND_STR(g->early, a->aid, e);
  if (!e) return;
  a->hcount += e->count;
  HASH_DEL(g->early, e);
  lr_free(e->aid);
  lr_free(e);
}

/* -- Clients' handles ------------------------------------------------------ */

static gcs_client_t *client_get(lr_gcs_t *g, uint64_t id, int make)
{
  gcs_client_t *c;
  HASH_FIND(hh, g->clients, &id, sizeof(id), c);
  if (!c && make) {
    c = lr_xcalloc(1, sizeof(*c));
    c->id = id;
    HASH_ADD(hh, g->clients, id, sizeof(c->id), c);
  }
  return c;
}

static void client_free(lr_gcs_t *g, gcs_client_t *c)
{
  gcs_held_t *h, *th;
  HASH_ITER(hh, c->held, h, th) {
    HASH_DEL(c->held, h);
    lr_free(h->aid);
    lr_free(h);
  }
  HASH_DEL(g->clients, c);
  lr_free(c);
}

void lr_handles_hold(lr_gcs_t *g, uint64_t client, const char *aid)
{
  gcs_client_t *c = client_get(g, client, 1);
  gcs_held_t *h;
  HASH_FIND_STR(c->held, aid, h);
  if (h) return;
  h = lr_xmalloc(sizeof(*h));
  h->aid = lr_xstrdup(aid);
  HASH_ADD_KEYPTR(hh, c->held, h->aid, strlen(h->aid), h);
  count(g, aid, 1);
}

void lr_handles_unhold(lr_gcs_t *g, uint64_t client, const char *aid)
{
  gcs_client_t *c = client_get(g, client, 0);
  gcs_held_t *h = NULL;
  if (!c) return;
  HASH_FIND_STR(c->held, aid, h);
  if (!h) return;
  HASH_DEL(c->held, h);
  count(g, h->aid, -1);
  lr_free(h->aid);
  lr_free(h);
  if (!c->held) client_free(g, c);
}

void lr_handles_drop_client(lr_gcs_t *g, uint64_t client)
{
  gcs_client_t *c = client_get(g, client, 0);
  if (!c) return;
  /* Detach the set first: unholding may end actors, whose ends touch
   * other clients' sets but never this one again. */
  gcs_held_t *held = c->held, *h, *th;
  c->held = NULL;
  client_free(g, c);
  HASH_ITER(hh, held, h, th) {
    HASH_DEL(held, h);
    count(g, h->aid, -1);
    lr_free(h->aid);
    lr_free(h);
  }
}

/* Handles in an actor's init arguments keep those actors alive until it
 * is dead. */
void lr_handles_hold_list(lr_gcs_t *g, gcs_actor_t *a, int delta)
{
  for (size_t i = 0; i < a->nholds; i++) {
    gcs_actor_t *b = find(g, a->holds[i]);
    if (!b) continue;
    b->hcount += delta;
    if (delta < 0) maybe_unreferenced(g, b);
  }
}

/* -- Lends ----------------------------------------------------------------- */
/* The node manager tells the head of a lend only when it was not claimed
 * first, and of its claim or unlend only when it told the lend, so a token
 * here is released at most once per lend. */

void lr_handles_lend(lr_gcs_t *g, const lr_m_lend_t *m)
{
  if (!LR_HAS(m->token) || !m->aids.n) return;
  const lr_pstr_t *t = &m->token.v.s;
  gcs_lend_t *l;
  HASH_FIND(hh, g->lends, t->p, t->n, l);
  if (!l) {
    l = lr_xcalloc(1, sizeof(*l));
    l->token = lr_xmalloc(t->n + 1);
    memcpy(l->token, t->p, t->n);
    l->token[t->n] = '\0';
    HASH_ADD_KEYPTR(hh, g->lends, l->token, t->n, l);
  }
  /* A token lent again before its release (never, from lray's clients)
   * holds both. */
  l->aids = lr_xrealloc(l->aids, (l->n + m->aids.n) * sizeof(*l->aids));
  for (uint32_t i = 0; i < m->aids.n; i++) {
    lr_pf_t one = {.n = 1, .v = m->aids.items[i].v};
    char *aid = lr_gcs_dup(&one); /* (as a C string, like every lookup) */
    l->aids[l->n++] = aid;
    count(g, aid, 1);
  }
}

static void lend_free(lr_gcs_t *g, gcs_lend_t *l, int let_go)
{
  HASH_DEL(g->lends, l);
  for (size_t i = 0; i < l->n; i++) {
    if (let_go) count(g, l->aids[i], -1);
    lr_free(l->aids[i]);
  }
  lr_free(l->aids);
  lr_free(l->token);
  lr_free(l);
}

void lr_handles_release(lr_gcs_t *g, const lr_pf_t *token)
{
  if (!LR_HAS(*token)) return;
  gcs_lend_t *l;
  HASH_FIND(hh, g->lends, token->v.s.p, token->v.s.n, l);
  if (l) lend_free(g, l, 1);
}

void lr_handles_free(lr_gcs_t *g)
{
  gcs_client_t *c, *tc;
  HASH_ITER(hh, g->clients, c, tc) client_free(g, c);
  gcs_lend_t *l, *tl;
  HASH_ITER(hh, g->lends, l, tl) lend_free(g, l, 0);
  gcs_early_t *e, *te;
  HASH_ITER(hh, g->early, e, te) {
    HASH_DEL(g->early, e);
    lr_free(e->aid);
    lr_free(e);
  }
}
