/* The cluster as this node manager last heard it from the head
 * (cluster_view): every node's address and its total and free resources.
 * It decides where a lease request that does not fit here goes: Ray's
 * hybrid policy in short — run here while it fits now; else on a node
 * where it fits now (the one with the most free CPU), which grants it now
 * or rejects it (our view may be stale; lease.reject); else queue here if
 * it can ever fit here; else on a node where it can ever fit, to wait
 * there until some node has room now. */
#include <stdio.h>
#include <string.h>
#include "raylet/node.h"

#define VIEW_MAXKINDS 64

typedef struct view_node_s {
  char node_id[LR_ID_MAX];
  char address[300];
  int alive;
  int n;
  int ids[VIEW_MAXKINDS]; /* resource ids in this node's scheduler's table */
  int64_t total[VIEW_MAXKINDS], avail[VIEW_MAXKINDS];
} view_node_t;

struct lr_view_s {
  view_node_t *nodes;
  size_t n, cap;
};

static void fill(lr_node_t *n, view_node_t *v, const lr_pf_t *res, int64_t *out, int set_ids)
{
  for (uint32_t i = 0; i < res->n; i++) {
    const lr_pstr_t *k = &res->items[i].key.s;
    int id = lr_sched_res_id(n->sched, k->p, k->n);
    if (id < 0) continue;
    int slot = -1;
    for (int j = 0; j < v->n; j++)
      if (v->ids[j] == id) slot = j;
    if (slot < 0) {
      if (!set_ids || v->n >= VIEW_MAXKINDS) continue;
      slot = v->n++;
      v->ids[slot] = id;
    }
    out[slot] = res->items[i].v.i;
  }
}

void lr_view_update(lr_node_t *n, const lr_m_cluster_view_t *m)
{
  struct lr_view_s *vw = n->view;
  if (!vw) vw = n->view = lr_xcalloc(1, sizeof(*vw));
  if (m->full.n && m->full.v.b) vw->n = 0;
  for (size_t i = 0; i < m->nodes.n; i++) {
    const lr_m_node_info_t *in = m->nodes.items[i].v.rec;
    char id[LR_ID_MAX] = "";
    if (in->node_id.n)
      snprintf(id, sizeof(id), "%.*s", (int)in->node_id.v.s.n, in->node_id.v.s.p);
    view_node_t *v = NULL;
    for (size_t j = 0; j < vw->n && !v; j++)
      if (!strcmp(vw->nodes[j].node_id, id)) v = &vw->nodes[j];
    if (!v) {
      if (vw->n == vw->cap) {
        vw->cap = vw->cap ? vw->cap * 2 : 8;
        vw->nodes = lr_xrealloc(vw->nodes, vw->cap * sizeof(view_node_t));
      }
      v = &vw->nodes[vw->n++];
    }
    memset(v, 0, sizeof(*v));
    snprintf(v->node_id, sizeof(v->node_id), "%s", id);
    if (in->address.n)
      snprintf(v->address, sizeof(v->address), "%.*s", (int)in->address.v.s.n, in->address.v.s.p);
    v->alive = in->alive.n && in->alive.v.b;
    fill(n, v, &in->res, v->total, 1);
    fill(n, v, &in->avail, v->avail, 0);
  }
  lr_lease_respill(n);
}

/* 1 if r fits the node's free (now) or total (ever) resources. */
static int view_fits(const view_node_t *v, const lr_res_req_t *r, int now)
{
  for (uint32_t i = 0; i < r->n; i++) {
    int64_t have = 0;
    for (int j = 0; j < v->n; j++)
      if (v->ids[j] == r->id[i]) have = now ? v->avail[j] : v->total[j];
    if (have < r->units[i]) return 0;
  }
  return 1;
}

static int64_t free_cpu(const view_node_t *v)
{
  for (int j = 0; j < v->n; j++)
    if (v->ids[j] == LR_RES_CPU) return v->avail[j];
  return 0;
}

const char *lr_view_spill(lr_node_t *n, const lr_res_req_t *r, int *now)
{
  *now = 0;
  struct lr_view_s *vw = n->view;
  if (!vw || vw->n < 2) return NULL;
  const lr_res_pool_t *p = lr_sched_pool(n->sched);
  if (lr_res_fits(p, r)) return NULL;
  view_node_t *best = NULL;
  for (size_t i = 0; i < vw->n; i++) {
    view_node_t *v = &vw->nodes[i];
    if (!v->alive || !strcmp(v->node_id, n->node_id) || !v->address[0]) continue;
    if (view_fits(v, r, 1) && (!best || free_cpu(v) > free_cpu(best))) best = v;
  }
  if (best) {
    /* Count it as taken until that node's next view: a burst of requests
     * spreads over the nodes instead of piling onto the first. */
    for (uint32_t i = 0; i < r->n; i++)
      for (int j = 0; j < best->n; j++)
        if (best->ids[j] == r->id[i]) best->avail[j] -= r->units[i];
    *now = 1;
    return best->address;
  }
  if (!lr_sched_infeasible(n->sched, r, NULL)) return NULL; /* wait here */
  for (size_t i = 0; i < vw->n; i++) {
    const view_node_t *v = &vw->nodes[i];
    if (v->alive && strcmp(v->node_id, n->node_id) && v->address[0] && view_fits(v, r, 0))
      return v->address;
  }
  return NULL;
}

const char *lr_view_other(lr_node_t *n, size_t *i, const char *skip)
{
  struct lr_view_s *vw = n->view;
  for (; vw && *i < vw->n; (*i)++) {
    const view_node_t *v = &vw->nodes[*i];
    if (!v->alive || !v->address[0] || !strcmp(v->node_id, n->node_id)) continue;
    if (skip && !strcmp(v->address, skip)) continue;
    return vw->nodes[(*i)++].address;
  }
  return NULL;
}
