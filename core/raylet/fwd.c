/* The head and the clients of nodes that joined it. A driver on a joined
 * node creates, finds and follows actors like one on the head's node: its
 * node wraps those messages in fwd (the client's number there, the frame)
 * and sends them up its link; the head gives each such client a proxy, a
 * client of its own whose messages go back down the same link, wrapped the
 * same way. The head's gcs never knows the difference. */
#include <stdio.h>
#include <string.h>
#include "raylet/node.h"

/* -- On the joined node ---------------------------------------------------- */

int lr_fwd_out(lr_node_t *n, uint64_t client, const void *m)
{
  if (!lr_headlink_up(n)) return -1;
  lr_buf_t b;
  lr_buf_init(&b);
  lr_proto_encode(&b, m);
  lr_m_fwd_t f = LR_MSG_INIT(FWD);
  LR_SET_INT(f.client, client);
  LR_SET_STR(f.frame, b.data, b.len);
  lr_headlink_send(n, &f);
  lr_buf_free(&b);
  return 0;
}

void lr_fwd_deliver(lr_node_t *n, const lr_m_fwd_t *m)
{
  if (!m->client.n || !m->frame.n) return;
  lr_client_t *c = lr_node_client(n, (uint64_t)m->client.v.i);
  if (!c || c->gone || c->conn.closing) return;
  size_t pos = lr_conn_begin_frame(&c->conn);
  lr_buf_append(&c->conn.out, m->frame.v.s.p, m->frame.v.s.n);
  lr_conn_end_frame(&c->conn, pos);
}

/* -- On the head ----------------------------------------------------------- */

lr_client_t *lr_fwd_proxy(lr_node_t *n, lr_client_t *nc, uint64_t remote, int create)
{
  lr_client_t *p, key;
  memset(&key.proxy, 0, sizeof(key.proxy));
  key.proxy.via = nc;
  key.proxy.remote_id = remote;
  HASH_FIND(hh_proxy, n->proxies, &key.proxy, sizeof(key.proxy), p);
  if (p || !create) return p;
  p = lr_xcalloc(1, sizeof(*p));
  p->node = n;
  p->kind = LR_CL_PROXY;
  p->proxy = key.proxy;
  p->id = ++n->next_client;
  HASH_ADD(hh, n->clients, id, sizeof(p->id), p);
  HASH_ADD(hh_proxy, n->proxies, proxy, sizeof(p->proxy), p);
  return p;
}

void lr_fwd_drop(lr_node_t *n, lr_client_t *p)
{
  lr_m_client_gone_t g = LR_MSG_INIT(CLIENT_GONE);
  LR_SET_INT(g.client, p->id);
  lr_node_to_head(n, 0, &g);
  HASH_DEL(n->clients, p);
  HASH_DELETE(hh_proxy, n->proxies, p);
  lr_free(p);
}

void lr_fwd_send(lr_client_t *p, const void *m)
{
  lr_client_t *nc = p->proxy.via;
  if (!nc || nc->gone || nc->conn.closing) return;
  lr_buf_t b;
  lr_buf_init(&b);
  lr_proto_encode(&b, m);
  lr_m_fwd_t f = LR_MSG_INIT(FWD);
  LR_SET_INT(f.client, p->proxy.remote_id);
  LR_SET_STR(f.frame, b.data, b.len);
  lr_node_send(nc, &f);
  lr_buf_free(&b);
}

void lr_fwd_in(lr_node_t *n, lr_client_t *nc, const lr_m_fwd_t *m)
{
  char err[LR_ERRLEN];
  void *inner;
  if (!n->gcs || !m->client.n || !m->frame.n) return;
  int type = lr_proto_decode(m->frame.v.s.p, m->frame.v.s.n, &n->arena2, &inner, err, sizeof(err));
  if (type < 0) {
    fprintf(stderr, "lray: a joined node forwarded a bad message: %s\n", err);
    lr_arena_reset(&n->arena2);
    return;
  }
  switch (type) { /* what a client may ask of the head, nothing else */
  case LR_PT_FN:
  case LR_PT_ACTOR_CREATE:
  case LR_PT_ACTOR_SUB:
  case LR_PT_ACTOR_REF:
  case LR_PT_ACTOR_UNREF:
  case LR_PT_KILL_ACTOR:
  case LR_PT_GET_ACTOR:
  case LR_PT_LIST: {
    lr_client_t *p = lr_fwd_proxy(n, nc, (uint64_t)m->client.v.i, 1);
    lr_node_to_head(n, p->id, inner);
    break;
  }
  default: break;
  }
  lr_arena_reset(&n->arena2);
}
