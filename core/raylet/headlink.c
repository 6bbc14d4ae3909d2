/* This node in the cluster's node table. The head's own node manager
 * reports to the head in its process; a node that joined (`lray start
 * --address`) connects to the head over TCP, proves the cluster token
 * (net/auth.h, client side), registers, and from then on reports its
 * resources when they change (at most every 100 ms) and at least every
 * second, which is also how the head knows it is alive. Losing the head
 * ends the node: the cluster is gone. A node the head declares dead
 * (node_dead) exits too: dead is final.
 *
 * RPCs a client of a joined node makes of the head (`nodes`) go to the head
 * with the rid "<client>:<rid>" and their replies come back the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "common/errdef.h"
#include "raylet/node.h"

#define VIEW_EVERY_MS 100   /* at most this often on a change */
#define VIEW_ALIVE_MS 1000  /* at least this often */

enum { HL_OFF, HL_CONNECTING, HL_CHALLENGE, HL_PROOF, HL_UP };

static void head_lost(lr_node_t *n, const char *why);

/* The node's resources in units: totals (avail 0) or what is free now. */
static lr_pitem_t *res_items(lr_node_t *n, int avail, uint32_t *count)
{
  const lr_res_pool_t *p = lr_sched_pool(n->sched);
  const lr_res_names_t *nm = lr_sched_names(n->sched);
  lr_pitem_t *it = lr_xcalloc(p->n ? p->n : 1, sizeof(*it));
  uint32_t k = 0;
  for (uint32_t i = 0; i < p->n; i++) {
    if (p->total[i] <= 0) continue;
    const char *name = lr_res_name(nm, (int)i);
    it[k].key.s.p = name;
    it[k].key.s.n = strlen(name);
    it[k].v.i = avail ? p->avail[i] : p->total[i];
    k++;
  }
  *count = k;
  return it;
}

static void to_head(lr_node_t *n, const void *m)
{
  if (n->gcs) {
    lr_node_to_head(n, 0, m);
    return;
  }
  if (n->hl_state != HL_UP) return;
  size_t pos = lr_conn_begin_frame(&n->head);
  lr_proto_encode(&n->head.out, m);
  lr_conn_end_frame(&n->head, pos);
}

/* Sends node_register (register) or node_view with the node's resources. */
static void send_node(lr_node_t *n, int reg)
{
  char addr[PATH_MAX + 8];
  uint32_t nt, na;
  lr_pitem_t *t = res_items(n, 0, &nt), *a = res_items(n, 1, &na);
  lr_m_node_register_t r = LR_MSG_INIT(NODE_REGISTER);
  lr_m_node_view_t v = LR_MSG_INIT(NODE_VIEW);
  if (reg) {
    LR_SET_CSTR(r.node_id, n->node_id);
    LR_SET_CSTR(r.address, lr_node_address(n, addr, sizeof(addr)));
    LR_SET_ITEMS(r.res, t, nt);
    LR_SET_ITEMS(r.avail, a, na);
    to_head(n, &r);
  } else {
    LR_SET_CSTR(v.node_id, n->node_id);
    LR_SET_ITEMS(v.res, t, nt);
    LR_SET_ITEMS(v.avail, a, na);
    to_head(n, &v);
  }
  lr_free(t);
  lr_free(a);
}

/* A digest of what is free now, to see a change cheaply. */
static uint64_t avail_digest(lr_node_t *n)
{
  const lr_res_pool_t *p = lr_sched_pool(n->sched);
  uint64_t h = 1469598103934665603ull;
  for (uint32_t i = 0; i < p->n; i++) h = (h ^ (uint64_t)p->avail[i]) * 1099511628211ull;
  return h;
}

static void on_view_timer(uv_timer_t *t)
{
  lr_node_t *n = t->data;
  uint64_t now = uv_now(n->loop), d = avail_digest(n);
  if (!n->gcs && n->hl_state == HL_UP &&
      now - n->head_heard > (uint64_t)(LR_GCS_NODE_TIMEOUT * 1000)) {
    /* The head sends node_alive every second: silence is a hung or cut-off
     * head, which TCP alone would not notice for minutes. */
    char why[400];
    snprintf(why, sizeof(why), "the head at %s stopped answering (nothing heard for %g s)",
             n->head_address, LR_GCS_NODE_TIMEOUT);
    head_lost(n, why);
    return;
  }
  if (d == n->view_digest && now - n->view_sent < VIEW_ALIVE_MS) return;
  n->view_digest = d;
  n->view_sent = now;
  send_node(n, 0);
}

static void start_views(lr_node_t *n)
{
  send_node(n, 1);
  uv_timer_init(n->loop, &n->view_timer);
  n->view_timer.data = n;
  uv_timer_start(&n->view_timer, on_view_timer, VIEW_EVERY_MS, VIEW_EVERY_MS);
  uv_unref((uv_handle_t *)&n->view_timer);
}

/* -- The joined node's connection to the head --------------------------------------- */

static void head_lost(lr_node_t *n, const char *why)
{
  if (n->hl_state == HL_UP)
    fprintf(stderr, "lray node: %s; this node stops (its cluster is gone)\n", why);
  else if (n->hl_state == HL_PROOF) /* it never joined: say what to check */
    fprintf(stderr, "lray node: %s; check the token (--token or $LRAY_TOKEN: the one"
            " `lray start --head` printed)\n", why);
  else
    fprintf(stderr, "lray node: %s; is `lray start --head` running there, and is that its"
            " address for other machines?\n", why);
  lr_node_cleanup(n, n->hl_state == HL_UP ? 0 : 1);
}

/* A reply the head sent for a client of ours: rid "<client>:<rid>". */
static void relay_reply(lr_node_t *n, lr_m_reply_t *r)
{
  if (!LR_HAS(r->rid)) return;
  const char *p = r->rid.v.s.p, *colon = memchr(p, ':', r->rid.v.s.n);
  if (!colon) return;
  uint64_t cid = strtoull(p, NULL, 10);
  r->rid.v.s.n -= (size_t)(colon + 1 - p);
  r->rid.v.s.p = colon + 1;
  lr_node_send(lr_node_client(n, cid), r);
}

static void on_head_frame(lr_conn_t *c, const char *p, size_t len)
{
  lr_node_t *n = c->data;
  char err[LR_ERRLEN];
  if (n->hl_state == HL_CHALLENGE || n->hl_state == HL_PROOF) {
    const char *why;
    int rc = lr_peer_handshake(c, &n->hl_auth, n->hl_state == HL_PROOF, p, len, &why);
    if (rc < 0) {
      head_lost(n, n->hl_state == HL_PROOF ? "the head does not hold this cluster's token" :
                "the head did not start lray's token handshake");
    } else if (rc == 0) {
      n->hl_state = HL_PROOF;
    } else {
      n->hl_state = HL_UP;
      n->head_heard = uv_now(n->loop);
      start_views(n);
    }
    return;
  }
  void *msg;
  n->head_heard = uv_now(n->loop);
  int type = lr_proto_decode(p, len, &n->arena, &msg, err, sizeof(err));
  if (type < 0) {
    head_lost(n, "the head sent a message this node cannot read");
    return;
  }
  if (type == LR_PT_NODE_DEAD) {
    const lr_m_node_dead_t *d = msg;
    char why[400];
    snprintf(why, sizeof(why), "the head declared this node dead (%.*s)",
             d->cause.n ? (int)d->cause.v.s.n : 0, d->cause.n ? d->cause.v.s.p : "");
    lr_arena_reset(&n->arena);
    head_lost(n, why);
    return;
  }
  if (type == LR_PT_REPLY) relay_reply(n, msg);
  else if (type == LR_PT_CLUSTER_VIEW) lr_view_update(n, msg);
  else if (type == LR_PT_ACTOR_PLACE) lr_place_actor(n, msg);
  else if (type == LR_PT_FWD) lr_fwd_deliver(n, msg);
  else if (type == LR_PT_ACTOR_STOP) lr_place_stop(n, msg);
  lr_arena_reset(&n->arena);
}

static void on_head_close(lr_conn_t *c)
{
  lr_node_t *n = c->data;
  char why[400];
  snprintf(why, sizeof(why), "%s the head at %s",
           n->hl_state == HL_UP ? "lost the connection to" :
           n->hl_state == HL_PROOF ? "the cluster token was refused by" : "cannot reach",
           n->head_address);
  head_lost(n, why);
}

static void on_head_connect(uv_connect_t *req, int status)
{
  lr_node_t *n = req->data;
  if (status < 0) {
    char why[400];
    snprintf(why, sizeof(why), "cannot reach the head at %s: %s", n->head_address,
             uv_strerror(status));
    n->hl_state = HL_OFF;
    head_lost(n, why);
    return;
  }
  /* A cut path shows here as our node_views going unacknowledged: give up
   * on them after the head's own node timeout (5 s), not after TCP's ~15
   * min of retransmissions. */
  lr_tcp_liveness(&n->head.h.tcp);
  n->hl_state = HL_CHALLENGE;
  lr_conn_start(&n->head);
}

int lr_headlink_start(lr_node_t *n, const char *address)
{
  char host[256];
  int is_tcp, port;
  snprintf(n->head_address, sizeof(n->head_address), "%s", address);
  if (lr_net_parse_addr(address, &is_tcp, host, sizeof(host), &port) < 0 || !is_tcp) {
    fprintf(stderr, "lray node: bad head address %s (want HOST:PORT)\n", address);
    return -1;
  }
  if (lr_auth_init(&n->hl_auth, n->token) < 0) {
    fprintf(stderr, "lray node: joining needs the cluster token\n");
    return -1;
  }
  struct sockaddr_storage sa;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) || !res) {
      fprintf(stderr, "lray node: cannot resolve the head's host %s\n", host);
      return -1;
    }
    memcpy(&sa, res->ai_addr, res->ai_addrlen);
    ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
  }
  lr_conn_init(n->loop, &n->head, 1);
  n->head.data = n;
  n->head.on_frame = on_head_frame;
  n->head.on_close = on_head_close;
  n->head.max_frame = LR_AUTH_ANSWER_LEN;
  n->head.creq.data = n;
  n->hl_state = HL_CONNECTING;
  int rc = uv_tcp_connect(&n->head.creq, &n->head.h.tcp, (struct sockaddr *)&sa, on_head_connect);
  if (rc < 0) {
    fprintf(stderr, "lray node: cannot reach the head at %s: %s\n", address, uv_strerror(rc));
    return -1;
  }
  /* Serve nothing until the head took us in. */
  while (n->hl_state != HL_UP && !n->cleaned) uv_run(n->loop, UV_RUN_ONCE);
  return n->hl_state == HL_UP ? 0 : -1;
}

void lr_headlink_self(lr_node_t *n) { start_views(n); }

/* An rpc of client c for the head, from a node that joined. */
int lr_headlink_relay(lr_node_t *n, lr_client_t *c, lr_pf_t *rid, const void *m)
{
  if (n->hl_state != HL_UP) return -1;
  char buf[300];
  int len = snprintf(buf, sizeof(buf), "%llu:%.*s", (unsigned long long)c->id,
                     rid->n ? (int)rid->v.s.n : 0, rid->n ? rid->v.s.p : "");
  if (len < 0 || (size_t)len >= sizeof(buf)) return -1;
  LR_SET_STR(*rid, buf, (size_t)len);
  to_head(n, m);
  return 0;
}

void lr_headlink_send(lr_node_t *n, const void *m) { to_head(n, m); }

int lr_headlink_up(const lr_node_t *n) { return n->hl_state == HL_UP; }
