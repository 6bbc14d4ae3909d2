/* The head's node table: every node of the cluster (the head's own, client
 * 0, and those that joined over TCP), its address and resources as it last
 * reported them, and whether it is alive. A node that has not reported for
 * LR_GCS_NODE_TIMEOUT seconds, or whose connection closed, is dead, and
 * dead is final: it is told so (node_dead) and stays in the table, listed
 * with its cause. Answers `nodes` (reply.json). Loop thread only. */
#include <stdio.h>
#include <string.h>
#include "common/json.h"
#include "gcs/gcs_int.h"

typedef struct gcs_res_s {
  uint32_t n;
  char **names;
  int64_t *units;
} gcs_res_t;

typedef struct gcs_node_s {
  char *node_id, *address, *cause;
  uint64_t client; /* 0: the head's own node manager */
  int alive;
  int changed;        /* since the last view sent */
  uint64_t last_seen; /* loop time, ms */
  gcs_res_t total, avail;
  UT_hash_handle hh;
} gcs_node_t;

static void res_free(gcs_res_t *r)
{
  for (uint32_t i = 0; i < r->n; i++) lr_free(r->names[i]);
  lr_free(r->names);
  lr_free(r->units);
  memset(r, 0, sizeof(*r));
}

/* 1 when f says something else than r. */
static int res_differs(const gcs_res_t *r, const lr_pf_t *f)
{
  if (r->n != f->n) return 1;
  for (uint32_t i = 0; i < f->n; i++) {
    const lr_pstr_t *k = &f->items[i].key.s;
    if (r->units[i] != f->items[i].v.i || strlen(r->names[i]) != k->n ||
        memcmp(r->names[i], k->p, k->n))
      return 1;
  }
  return 0;
}

static void res_set(gcs_res_t *r, const lr_pf_t *f)
{
  res_free(r);
  r->n = f->n;
  r->names = lr_xcalloc(f->n ? f->n : 1, sizeof(char *));
  r->units = lr_xcalloc(f->n ? f->n : 1, sizeof(int64_t));
  for (uint32_t i = 0; i < f->n; i++) {
    const lr_pstr_t *k = &f->items[i].key.s;
    r->names[i] = lr_xmalloc(k->n + 1);
    memcpy(r->names[i], k->p, k->n);
    r->names[i][k->n] = 0;
    r->units[i] = f->items[i].v.i;
  }
}

static gcs_node_t *find(lr_gcs_t *g, const lr_pf_t *id)
{
  gcs_node_t *nd = NULL;
  if (LR_HAS(*id)) HASH_FIND(hh, g->nodes, id->v.s.p, id->v.s.n, nd);
  return nd;
}

static void node_died(lr_gcs_t *g, gcs_node_t *nd, const char *cause)
{
  if (!nd->alive) return;
  nd->alive = 0;
  nd->changed = g->view_dirty = 1;
  lr_gcs_setf(&nd->cause, "%s", cause);
  fprintf(stderr, "lray: node %s (%s) is dead: %s\n", nd->node_id,
          nd->address ? nd->address : "?", cause);
  if (nd->client) {
    char *how = NULL;
    lr_gcs_setf(&how, "its node %s (%s) died: %s", nd->node_id,
                nd->address ? nd->address : "?", cause);
    lr_actors_node_died(g, nd->client, how);
    lr_free(how);
    lr_m_node_dead_t m = LR_MSG_INIT(NODE_DEAD);
    LR_SET_CSTR(m.node_id, nd->node_id);
    LR_SET_CSTR(m.cause, cause);
    g->env.send(g->env.ud, nd->client, &m);
  }
}

static void on_check(uv_timer_t *t)
{
  lr_gcs_t *g = t->data;
  uint64_t now = uv_now(g->env.loop);
  if (now - g->alive_sent >= 1000) { /* the head lives: every node hears */
    lr_m_node_alive_t a = LR_MSG_INIT(NODE_ALIVE);
    g->alive_sent = now;
    for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next)
      if (nd->alive && nd->client) g->env.send(g->env.ud, nd->client, &a);
  }
  char cause[96];
  for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next)
    if (nd->alive && nd->client &&
        now - nd->last_seen > (uint64_t)(LR_GCS_NODE_TIMEOUT * 1000)) {
      snprintf(cause, sizeof(cause), "it stopped answering (nothing heard for %g s)",
               LR_GCS_NODE_TIMEOUT);
      node_died(g, nd, cause);
    }
}

/* -- The cluster view ------------------------------------------------------------ */

static lr_pitem_t *res_items(const gcs_res_t *r)
{
  lr_pitem_t *it = lr_xcalloc(r->n ? r->n : 1, sizeof(*it));
  for (uint32_t i = 0; i < r->n; i++) {
    it[i].key.s.p = r->names[i];
    it[i].key.s.n = strlen(r->names[i]);
    it[i].v.i = r->units[i];
  }
  return it;
}

/* Sends the nodes marked changed (or all, full) to client (0: our own node
 * manager; every node, when broadcast). */
static void send_view(lr_gcs_t *g, int full, int broadcast, uint64_t client)
{
  size_t k = HASH_COUNT(g->nodes), i = 0;
  lr_m_node_info_t *infos = lr_xcalloc(k ? k : 1, sizeof(*infos));
  lr_pitem_t *items = lr_xcalloc(k ? k : 1, sizeof(*items));
  for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next) {
    if (!full && !nd->changed) continue;
    lr_m_node_info_t *in = &infos[i];
    in->type = LR_PT_NODE_INFO;
    LR_SET_CSTR(in->node_id, nd->node_id);
    if (nd->address) LR_SET_CSTR(in->address, nd->address);
    LR_SET_BOOL(in->alive, nd->alive);
    LR_SET_ITEMS(in->res, res_items(&nd->total), nd->total.n);
    LR_SET_ITEMS(in->avail, res_items(&nd->avail), nd->avail.n);
    items[i].v.rec = in;
    i++;
  }
  lr_m_cluster_view_t v = LR_MSG_INIT(CLUSTER_VIEW);
  LR_SET_ITEMS(v.nodes, items, i);
  if (full) LR_SET_BOOL(v.full, 1);
  if (broadcast) {
    g->env.to_raylet(g->env.ud, &v);
    /* Every node gets the same bytes: encoded once, not once per node
     * (the fan-out is N nodes x the changes; docs/scale.md). */
    lr_buf_t enc;
    lr_buf_init(&enc);
    if (g->env.send_encoded) lr_proto_encode(&enc, &v);
    for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next) {
      if (!nd->alive || !nd->client) continue;
      if (g->env.send_encoded) g->env.send_encoded(g->env.ud, nd->client, enc.data, enc.len);
      else g->env.send(g->env.ud, nd->client, &v);
    }
    lr_buf_free(&enc);
  } else if (client) {
    g->env.send(g->env.ud, client, &v);
  } else {
    g->env.to_raylet(g->env.ud, &v);
  }
  for (size_t j = 0; j < i; j++) {
    lr_free(infos[j].res.items);
    lr_free(infos[j].avail.items);
  }
  lr_free(infos);
  lr_free(items);
}

/* Every 100 ms: the nodes that changed, to every node manager. */
static void on_view_timer(uv_timer_t *t)
{
  lr_gcs_t *g = t->data;
  if (!g->view_dirty) return;
  g->view_dirty = 0;
  send_view(g, 0, 1, 0);
  for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next) nd->changed = 0;
}

void lr_nodes_register(lr_gcs_t *g, uint64_t client, const lr_m_node_register_t *m)
{
  if (!LR_HAS(m->node_id)) return;
  gcs_node_t *nd = find(g, &m->node_id);
  if (nd && !nd->alive) {
    /* Dead is final: a node id comes back only as a new node. */
    lr_m_node_dead_t d = LR_MSG_INIT(NODE_DEAD);
    d.node_id = m->node_id;
    LR_SET_CSTR(d.cause, nd->cause ? nd->cause : "it was declared dead before");
    if (client) g->env.send(g->env.ud, client, &d);
    return;
  }
  if (!nd) {
    nd = lr_xcalloc(1, sizeof(*nd));
    nd->node_id = lr_gcs_dup(&m->node_id);
    HASH_ADD_KEYPTR(hh, g->nodes, nd->node_id, strlen(nd->node_id), nd);
  }
  lr_free(nd->address);
  nd->address = lr_gcs_dup(&m->address);
  nd->client = client;
  nd->alive = 1;
  nd->last_seen = uv_now(g->env.loop);
  res_set(&nd->total, &m->res);
  res_set(&nd->avail, &m->avail);
  nd->changed = g->view_dirty = 1;
  if (!g->view_timer) {
    g->view_timer = lr_xcalloc(1, sizeof(uv_timer_t));
    uv_timer_init(g->env.loop, g->view_timer);
    g->view_timer->data = g;
    uv_timer_start(g->view_timer, on_view_timer, 100, 100);
    uv_unref((uv_handle_t *)g->view_timer);
  }
  /* A node that joins hears of every node at once, and so does the head's
   * own node manager (a function call); the others hear of it with the
   * next batch (at most 100 ms), so 1,000 joins cost 1,000 full views, not
   * a million messages. */
  if (client) send_view(g, 1, 0, client);
  send_view(g, 0, 0, 0); /* and the head's own node manager, at once */
  if (client && !g->node_timer) {
    g->node_timer = lr_xcalloc(1, sizeof(uv_timer_t));
    uv_timer_init(g->env.loop, g->node_timer);
    g->node_timer->data = g;
    uv_timer_start(g->node_timer, on_check, 500, 500);
    uv_unref((uv_handle_t *)g->node_timer);
  }
}

void lr_nodes_view(lr_gcs_t *g, uint64_t client, const lr_m_node_view_t *m)
{
  gcs_node_t *nd = find(g, &m->node_id);
  if (!nd || !nd->alive || nd->client != client) return;
  nd->last_seen = uv_now(g->env.loop);
  if (res_differs(&nd->total, &m->res) || res_differs(&nd->avail, &m->avail)) {
    nd->changed = g->view_dirty = 1;
    res_set(&nd->total, &m->res);
    res_set(&nd->avail, &m->avail);
  }
}

void lr_nodes_client_gone(lr_gcs_t *g, uint64_t client)
{
  for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next)
    if (nd->alive && nd->client && nd->client == client)
      node_died(g, nd, "its connection to the head closed (its process exited, or its"
                       " machine cannot be reached)");
}

static void res_json(lr_json_t *j, const gcs_res_t *r)
{
  lr_json_obj(j);
  for (uint32_t i = 0; i < r->n; i++)
    lr_json_knum(j, r->names[i], (double)r->units[i] / 10000.0);
  lr_json_end(j);
}

void lr_nodes_list(lr_gcs_t *g, uint64_t client, const lr_pf_t *rid)
{
  lr_buf_t b;
  lr_buf_init(&b);
  lr_json_t j;
  lr_json_init(&j, &b);
  lr_json_obj(&j);
  lr_json_key(&j, "nodes");
  lr_json_arr(&j);
  /* The head first, then the others in the order they joined. */
  for (int pass = 0; pass < 2; pass++)
    for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next) {
      if ((pass == 0) != (nd->client == 0)) continue;
      lr_json_obj(&j);
      lr_json_kstr(&j, "node_id", nd->node_id);
      lr_json_kstr_opt(&j, "address", nd->address);
      lr_json_kbool(&j, "alive", nd->alive);
      lr_json_kbool(&j, "is_head", nd->client == 0);
      lr_json_key(&j, "resources");
      res_json(&j, &nd->total);
      lr_json_key(&j, "available");
      res_json(&j, &nd->avail);
      lr_json_kstr_opt(&j, "cause", nd->cause);
      lr_json_end(&j);
    }
  lr_json_end(&j);
  lr_json_end(&j);
  lr_m_reply_t r = LR_MSG_INIT(REPLY);
  if (LR_HAS(*rid)) r.rid = *rid;
  LR_SET_STR(r.json, b.data, b.len);
  g->env.send(g->env.ud, client, &r);
  lr_buf_free(&b);
}

static void timer_closed(uv_handle_t *h) { lr_free(h); }

void lr_nodes_free(lr_gcs_t *g)
{
  gcs_node_t *nd, *tmp;
  HASH_ITER(hh, g->nodes, nd, tmp) {
    HASH_DEL(g->nodes, nd);
    res_free(&nd->total);
    res_free(&nd->avail);
    lr_free(nd->node_id);
    lr_free(nd->address);
    lr_free(nd->cause);
    lr_free(nd);
  }
  if (g->node_timer) uv_close((uv_handle_t *)g->node_timer, timer_closed);
  if (g->view_timer) uv_close((uv_handle_t *)g->view_timer, timer_closed);
  g->node_timer = g->view_timer = NULL;
}

/* Units of kind name (n bytes) in r, 0 when absent. */
static int64_t res_get(const gcs_res_t *r, const char *name, size_t n)
{
  for (uint32_t i = 0; i < r->n; i++)
    if (strlen(r->names[i]) == n && !memcmp(r->names[i], name, n)) return r->units[i];
  return 0;
}

static int fits(const gcs_res_t *r, const lr_pf_t *need)
{
  for (uint32_t i = 0; i < need->n; i++)
    if (res_get(r, need->items[i].key.s.p, need->items[i].key.s.n) < need->items[i].v.i) return 0;
  return 1;
}

static void take(gcs_res_t *r, const lr_pf_t *need)
{
  for (uint32_t i = 0; i < need->n; i++)
    for (uint32_t k = 0; k < r->n; k++)
      if (strlen(r->names[k]) == need->items[i].key.s.n &&
          !memcmp(r->names[k], need->items[i].key.s.p, need->items[i].key.s.n))
        r->units[k] -= need->items[i].v.i;
}

uint64_t lr_nodes_pick(lr_gcs_t *g, const lr_pf_t *place, const lr_pf_t *res, int local_only)
{
  gcs_node_t *own = NULL, *best = NULL, *ever = NULL;
  for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next)
    if (nd->alive && !nd->client) own = nd;
  if (local_only || !own) return 0;
  if (fits(&own->avail, place) && fits(&own->avail, res)) {
    take(&own->avail, res);
    return 0;
  }
  for (gcs_node_t *nd = g->nodes; nd; nd = nd->hh.next) {
    if (!nd->alive || !nd->client) continue;
    if (fits(&nd->avail, place) && fits(&nd->avail, res)) {
      if (!best || res_get(&nd->avail, "CPU", 3) > res_get(&best->avail, "CPU", 3)) best = nd;
    } else if (!ever && fits(&nd->total, place) && fits(&nd->total, res)) {
      ever = nd;
    }
  }
  if (best) {
    take(&best->avail, res);
    return best->client;
  }
  if (fits(&own->total, place) && fits(&own->total, res)) return 0; /* wait here */
  return ever ? ever->client : 0;
}
