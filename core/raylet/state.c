/* The state API's answers about this node (`resources`, `nodes`, `status`),
 * in JSON: the records `lray status` and `lray list --format json` print
 * and the dashboard serves. */
#include <stdio.h>
#include <string.h>
#include "common/json.h"
#include "raylet/node.h"

/* {name: amount} of every kind the node has; avail: what is free now. */
static void pool(lr_node_t *n, lr_json_t *j, int avail)
{
  const lr_res_pool_t *p = lr_sched_pool(n->sched);
  const lr_res_names_t *nm = lr_sched_names(n->sched);
  lr_json_obj(j);
  for (uint32_t i = 0; i < p->n; i++) {
    if (p->total[i] <= 0) continue;
    lr_json_knum(j, lr_res_name(nm, (int)i),
                 (double)(avail ? p->avail[i] : p->total[i]) / LR_RES_UNIT);
  }
  lr_json_end(j);
}

/* "total": {...}, "avail": {...} */
static void totals(lr_node_t *n, lr_json_t *j)
{
  lr_json_key(j, "total");
  pool(n, j, 0);
  lr_json_key(j, "avail");
  pool(n, j, 1);
}

void lr_state_resources(lr_node_t *n, lr_buf_t *b)
{
  lr_json_t j;
  lr_json_init(&j, b);
  lr_json_obj(&j);
  totals(n, &j);
  lr_json_end(&j);
}

void lr_state_nodes(lr_node_t *n, lr_buf_t *b)
{
  char addr[PATH_MAX + 8];
  lr_json_t j;
  lr_json_init(&j, b);
  lr_json_obj(&j);
  lr_json_key(&j, "nodes");
  lr_json_arr(&j);
  lr_json_obj(&j);
  lr_json_kstr(&j, "node_id", n->node_id);
  lr_json_kstr(&j, "address", lr_node_address(n, addr, sizeof(addr)));
  lr_json_kbool(&j, "alive", 1);
  lr_json_key(&j, "resources");
  pool(n, &j, 0);
  lr_json_end(&j);
  lr_json_end(&j);
  lr_json_end(&j);
}

/* What queued lease requests ask for, by shape: "{CPU: 1, GPU: 0.5}". */
static void demand(lr_node_t *n, lr_json_t *j)
{
  lr_sched_stats_t st;
  lr_sched_stats(n->sched, &st);
  const lr_res_names_t *nm = lr_sched_names(n->sched);
  lr_json_arr(j);
  for (size_t i = 0; i < st.shapes; i++) {
    const lr_res_req_t *r;
    size_t count;
    if (lr_sched_shape_at(n->sched, i, &r, &count) < 0) break;
    /* names sorted, as Lua's table.sort did */
    const char *names[LR_RES_REQMAX];
    double amounts[LR_RES_REQMAX];
    for (uint32_t k = 0; k < r->n; k++) {
      names[k] = lr_res_name(nm, r->id[k]);
      amounts[k] = (double)r->units[k] / LR_RES_UNIT;
    }
    for (uint32_t a = 1; a < r->n; a++)
      for (uint32_t b = a; b > 0 && strcmp(names[b - 1], names[b]) > 0; b--) {
        const char *t = names[b];
        names[b] = names[b - 1];
        names[b - 1] = t;
        double d = amounts[b];
        amounts[b] = amounts[b - 1];
        amounts[b - 1] = d;
      }
    char shape[1024];
    size_t len = 0;
    shape[len++] = '{';
    for (uint32_t k = 0; k < r->n && len < sizeof(shape) - 64; k++)
      len += (size_t)snprintf(shape + len, sizeof(shape) - len, "%s%s: %.14g",
                              k ? ", " : "", names[k], amounts[k]);
    snprintf(shape + len, sizeof(shape) - len, "}");
    lr_json_obj(j);
    lr_json_kstr(j, "shape", shape);
    lr_json_kint(j, "count", (int64_t)count);
    lr_json_kbool(j, "infeasible", lr_sched_infeasible(n->sched, r, NULL));
    lr_json_end(j);
  }
  lr_json_end(j);
}

void lr_state_status(lr_node_t *n, lr_buf_t *b)
{
  char addr[PATH_MAX + 8];
  size_t nobj;
  uint64_t bytes;
  lr_obj_stats(n, &nobj, &bytes);
  lr_salloc_stats_t ss;
  lr_salloc_stats(&n->region, &ss);
  lr_json_t j;
  lr_json_init(&j, b);
  lr_json_obj(&j);
  totals(n, &j);
  lr_json_kint(&j, "queued", (int64_t)lr_lease_pending(n));
  lr_json_key(&j, "demand");
  demand(n, &j);
  lr_json_kint(&j, "objects", (int64_t)nobj);
  lr_json_kint(&j, "object_bytes", (int64_t)bytes);
  lr_json_kint(&j, "workers", n->nworkers);
  lr_json_key(&j, "store");
  lr_json_obj(&j);
  lr_json_kint(&j, "capacity", (int64_t)ss.capacity);
  lr_json_kint(&j, "used", (int64_t)ss.used);
  lr_json_kint(&j, "largest_free", (int64_t)ss.largest_free);
  lr_json_kint(&j, "nallocs", (int64_t)ss.nallocs);
  lr_json_end(&j);
  lr_json_kstr(&j, "node_id", n->node_id);
  lr_json_kstr(&j, "address", lr_node_address(n, addr, sizeof(addr)));
  lr_json_end(&j);
}
