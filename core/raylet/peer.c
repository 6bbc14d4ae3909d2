/* Links from this node to other nodes, one per address, kept while they
 * work: a TCP connection on which this node is the client, proves the
 * cluster token (net/auth.h, client side, as headlink.c does to the head),
 * then carries typed frames. The other node sees an ordinary authenticated
 * TCP client (node.c) and answers on the same connection. Used by
 * transfer.c to pull objects and by xref.c to hold and ask about objects
 * at their home; a link that fails or closes is forgotten (the next
 * lr_peer_get connects again) and both are told. Messages sent while the
 * link connects wait, in order, until it is up (at most PENDING_MAX bytes).
 *
 * TODO(lead): headlink.c could run over this link too.
 *
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/errdef.h"
#include "raylet/node.h"

enum { P_CONNECTING, P_CHALLENGE, P_PROOF, P_UP, P_DOWN };

#define PENDING_MAX ((size_t)16 << 20)

struct lr_peer_s {
  lr_node_t *n;
  char addr[300];
  lr_conn_t conn; /* conn.data is the peer */
  lr_auth_t auth;
  int state;
  int was_up;
  lr_buf_t pending; /* frames (u32 length, payload) sent before it was up */
  char why[300]; /* why it went down */
  UT_hash_handle hh; /* n->peers by addr, while not down */
};

int lr_peer_is_up(const lr_peer_t *p) { return p->state == P_UP; }
const char *lr_peer_address(const lr_peer_t *p) { return p->addr; }

int lr_peer_send(lr_peer_t *p, const void *m)
{
  if (p->state == P_DOWN || p->conn.closing) return -1;
  if (p->state != P_UP) {
    if (p->pending.len > PENDING_MAX) return -1;
    size_t pos = p->pending.len;
    uint32_t l32 = 0;
    lr_buf_append(&p->pending, &l32, 4);
    lr_proto_encode(&p->pending, m);
    l32 = (uint32_t)(p->pending.len - pos - 4);
    memcpy(p->pending.data + pos, &l32, 4);
    return 0;
  }
  size_t pos = lr_conn_begin_frame(&p->conn);
  lr_proto_encode(&p->conn.out, m);
  return lr_conn_end_frame(&p->conn, pos) < 0 ? -1 : 0;
}

int lr_peer_to(lr_node_t *n, const char *address, const void *m)
{
  char err[LR_ERRLEN];
  lr_peer_t *p = lr_peer_get(n, address, err);
  return p ? lr_peer_send(p, m) : -1;
}

/* The link is up: what waited goes first, in order. */
static void send_pending(lr_peer_t *p)
{
  size_t at = 0;
  while (at + 4 <= p->pending.len) {
    uint32_t l32;
    memcpy(&l32, p->pending.data + at, 4);
    size_t pos = lr_conn_begin_frame(&p->conn);
    lr_buf_append(&p->conn.out, p->pending.data + at + 4, l32);
    lr_conn_end_frame(&p->conn, pos);
    at += 4 + (size_t)l32;
  }
  lr_buf_free(&p->pending);
  lr_buf_init(&p->pending);
}

int lr_peer_handshake(lr_conn_t *c, lr_auth_t *a, int proof, const char *p, size_t len,
                      const char **why)
{
  if (!proof) {
    uint8_t ans[LR_AUTH_ANSWER_LEN];
    if (lr_auth_client_answer(a, (const uint8_t *)p, len, ans) < 0) {
      *why = "it did not start lray's token handshake";
      return -1;
    }
    size_t pos = lr_conn_begin_frame(c);
    lr_buf_append(&c->out, ans, sizeof(ans));
    lr_conn_end_frame(c, pos);
    return 0;
  }
  if (lr_auth_client_check(a, (const uint8_t *)p, len) < 0) {
    *why = "it does not hold this cluster's token";
    return -1;
  }
  lr_auth_close(a);
  c->max_frame = LR_MAX_FRAME;
  return 1;
}

/* Ends the link: it leaves the table now, transfer.c hears on close. */
static void down(lr_peer_t *p, const char *why)
{
  if (p->state == P_DOWN) return;
  if (!p->why[0]) snprintf(p->why, sizeof(p->why), "%s", why);
  p->state = P_DOWN;
  HASH_DEL(p->n->peers, p);
  lr_auth_close(&p->auth);
  lr_conn_close(&p->conn);
}

static void on_close(lr_conn_t *c)
{
  lr_peer_t *p = c->data;
  if (p->state != P_DOWN) {
    snprintf(p->why, sizeof(p->why), "the connection closed");
    p->state = P_DOWN;
    HASH_DEL(p->n->peers, p);
    lr_auth_close(&p->auth);
  }
  lr_transfer_peer_down(p->n, p, p->why);
  lr_xref_peer_down(p->n, p->addr, p->was_up);
  lr_buf_free(&p->pending);
  lr_free(p);
}

static void on_frame(lr_conn_t *c, const char *d, size_t len)
{
  lr_peer_t *p = c->data;
  lr_node_t *n = p->n;
  if (p->state == P_CHALLENGE || p->state == P_PROOF) {
    const char *why;
    int rc = lr_peer_handshake(c, &p->auth, p->state == P_PROOF, d, len, &why);
    if (rc < 0) {
      down(p, why);
    } else if (rc == 0) {
      p->state = P_PROOF;
    } else {
      p->state = P_UP;
      p->was_up = 1;
      send_pending(p);
      lr_transfer_peer_up(n, p);
    }
    return;
  }
  if (p->state != P_UP) return;
  char err[LR_ERRLEN];
  void *msg;
  int type = lr_proto_decode(d, len, &n->arena, &msg, err, sizeof(err));
  if (type < 0) {
    lr_arena_reset(&n->arena);
    down(p, "it sent a message this node cannot read");
    return;
  }
  if (type == LR_PT_CHUNK) lr_transfer_chunk(n, p, msg);
  else if (type == LR_PT_OBJ) lr_obj_remote_value(n, msg); /* asked by xref.c */
  lr_arena_reset(&n->arena);
}

static void on_connect(uv_connect_t *req, int status)
{
  lr_peer_t *p = req->data;
  if (p->state == P_DOWN) return;
  if (status < 0) {
    char why[300];
    snprintf(why, sizeof(why), "cannot connect: %s", uv_strerror(status));
    down(p, why);
    return;
  }
  p->state = P_CHALLENGE;
  /* Questions and holds are small frames answered at once: no Nagle delay
   * (frames already go out in one write per loop turn). */
  uv_tcp_nodelay(&p->conn.h.tcp, 1);
  lr_conn_start(&p->conn);
}

/* host:port (an IPv4 or IPv6 literal, or a name) into sa. */
static int resolve(const char *address, struct sockaddr_storage *sa, char *err)
{
  char host[256];
  int is_tcp, port;
  if (lr_net_parse_addr(address, &is_tcp, host, sizeof(host), &port) < 0 || !is_tcp) {
    snprintf(err, LR_ERRLEN, "%s is not a node's TCP address (HOST:PORT)", address);
    return -1;
  }
  if (!uv_ip4_addr(host, port, (struct sockaddr_in *)sa)) return 0;
  if (!uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa)) return 0;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, NULL, &hints, &res) || !res) {
    snprintf(err, LR_ERRLEN, "cannot resolve the host of %s", address);
    return -1;
  }
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
  freeaddrinfo(res);
  return 0;
}

lr_peer_t *lr_peer_get(lr_node_t *n, const char *address, char *err)
{
  lr_peer_t *p;
  HASH_FIND_STR(n->peers, address, p);
  if (p) return p;
  struct sockaddr_storage sa;
  if (strlen(address) >= sizeof(p->addr)) {
    snprintf(err, LR_ERRLEN, "a node address is too long");
    return NULL;
  }
  if (resolve(address, &sa, err) < 0) return NULL;
  if (lr_auth_token_check(n->token) < 0) {
    snprintf(err, LR_ERRLEN, "this node has no cluster token to reach %s with", address);
    return NULL;
  }
  p = lr_xcalloc(1, sizeof(*p));
  p->n = n;
  lr_buf_init(&p->pending);
  snprintf(p->addr, sizeof(p->addr), "%s", address);
  lr_auth_init(&p->auth, n->token);
  lr_conn_init(n->loop, &p->conn, 1);
  p->conn.data = p;
  p->conn.on_frame = on_frame;
  p->conn.on_close = on_close;
  p->conn.max_frame = LR_AUTH_ANSWER_LEN; /* both ways: our ANSWER too */
  p->conn.creq.data = p;
  p->state = P_CONNECTING;
  HASH_ADD_STR(n->peers, addr, p);
  int rc = uv_tcp_connect(&p->conn.creq, &p->conn.h.tcp, (struct sockaddr *)&sa, on_connect);
  if (rc == 0) lr_tcp_liveness(&p->conn.h.tcp);
  if (rc < 0) {
    char why[300];
    snprintf(why, sizeof(why), "cannot connect: %s", uv_strerror(rc));
    down(p, why); /* transfer.c hears it once the handle is closed */
  }
  return p;
}
