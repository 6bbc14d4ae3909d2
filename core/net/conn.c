/* Framed streams over libuv. Frames queue in an output buffer and go out in
 * one write per loop iteration (lr_conn_flush_all runs from a prepare
 * handle), so a burst of calls costs one syscall, not one each. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "common/errdef.h"
#include "net/net.h"

static lr_conn_t *dirty_head;

int lr_conn_init(uv_loop_t *loop, lr_conn_t *c, int is_tcp)
{
  memset(c, 0, sizeof(*c));
  lr_buf_init(&c->in);
  lr_buf_init(&c->out);
  lr_buf_init(&c->inflight);
  c->h.handle.data = c;
  c->max_frame = LR_MAX_FRAME;
  return is_tcp ? uv_tcp_init(loop, &c->h.tcp) : uv_pipe_init(loop, &c->h.pipe, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
  lr_conn_t *c = h->data;
  LR_UNUSED(hint);
  /* Room for what the current frame still needs, in pieces of at most
   * 16 MiB: never more than the peer has actually started to send. */
  size_t want = c->need > 65536 ? c->need : 65536;
  if (want > ((size_t)16 << 20)) want = (size_t)16 << 20;
  b->base = lr_buf_reserve(&c->in, want);
  b->len = c->in.cap - c->in.len;
}

int lr_conn_split(lr_conn_t *c)
{
  size_t pos = 0;
  int rc = 0;
  c->need = 0;
  while (!c->closing && c->in.len - pos >= 4) {
    uint32_t len;
    memcpy(&len, c->in.data + pos, 4);
    if (len > c->max_frame) {
      rc = LR_ETOOBIG;
      break;
    }
    if (c->in.len - pos - 4 < len) {
      c->need = len + 4 - (c->in.len - pos);
      break;
    }
    c->on_frame(c, c->in.data + pos + 4, len);
    pos += 4 + (size_t)len;
  }
  if (pos) {
    memmove(c->in.data, c->in.data + pos, c->in.len - pos);
    c->in.len -= pos;
  }
  return rc;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
  lr_conn_t *c = s->data;
  LR_UNUSED(b);
  if (n < 0) {
    lr_conn_close(c);
    return;
  }
  c->in.len += (size_t)n;
  if (lr_conn_split(c) < 0) {
    uint32_t len;
    memcpy(&len, c->in.data, 4);
    fprintf(stderr, "lray: closing a connection: its peer sent a frame of %u bytes"
            " (the limit is %zu)\n", len, c->max_frame);
    lr_conn_close(c);
  }
}

int lr_conn_start(lr_conn_t *c)
{
  return uv_read_start(&c->h.stream, on_alloc, on_read);
}

size_t lr_conn_begin_frame(lr_conn_t *c)
{
  size_t pos = c->out.len;
  lr_buf_reserve(&c->out, 4);
  c->out.len += 4;
  return pos;
}

int lr_conn_end_frame(lr_conn_t *c, size_t pos)
{
  size_t len = c->out.len - pos - 4;
  if (len > c->max_frame) {
    c->out.len = pos;
    return LR_ETOOBIG;
  }
  uint32_t l32 = (uint32_t)len;
  memcpy(c->out.data + pos, &l32, 4);
  if (!c->dirty && !c->closing) {
    c->dirty = 1;
    c->next_dirty = dirty_head;
    dirty_head = c;
  }
  return 0;
}

/* The peer stopped reading (it exited, or closed its end): nothing more
 * can be written, but what it sent before is still to be read. Reading goes
 * on until its end of stream closes the connection, so a reply the peer
 * wrote just before it died is not lost. */
static void write_failed(lr_conn_t *c)
{
  c->write_failed = 1;
  lr_buf_reset(&c->out);
  lr_buf_reset(&c->inflight);
}

static void on_written(uv_write_t *req, int status)
{
  lr_conn_t *c = req->data;
  c->writing = 0;
  lr_buf_reset(&c->inflight);
  if (status < 0) {
    write_failed(c);
    return;
  }
  if (c->out.len && !c->closing) lr_conn_flush(c);
}

void lr_conn_flush(lr_conn_t *c)
{
  if (c->write_failed) lr_buf_reset(&c->out);
  if (c->writing || c->closing || !c->out.len) return;
  /* Try the fast path first: most writes fit the socket buffer. */
  int n = uv_try_write(&c->h.stream, &(uv_buf_t){c->out.data, c->out.len}, 1);
  if (n > 0) {
    memmove(c->out.data, c->out.data + n, c->out.len - (size_t)n);
    c->out.len -= (size_t)n;
    if (!c->out.len) return;
  } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
    write_failed(c);
    return;
  }
  lr_buf_t t = c->inflight;
  c->inflight = c->out;
  c->out = t;
  lr_buf_reset(&c->out);
  c->writing = 1;
  c->wreq.data = c;
  uv_buf_t b = {c->inflight.data, c->inflight.len};
  if (uv_write(&c->wreq, &c->h.stream, &b, 1, on_written) < 0) {
    c->writing = 0;
    write_failed(c);
  }
}

void lr_conn_flush_all(void)
{
  while (dirty_head) {
    lr_conn_t *c = dirty_head;
    dirty_head = c->next_dirty;
    c->dirty = 0;
    lr_conn_flush(c);
  }
}

static void on_closed(uv_handle_t *h)
{
  lr_conn_t *c = h->data;
  lr_buf_free(&c->in);
  lr_buf_free(&c->out);
  lr_buf_free(&c->inflight);
  if (c->on_close) c->on_close(c);
}

void lr_conn_close(lr_conn_t *c)
{
  if (c->closing) return;
  c->closing = 1;
  if (c->dirty) { /* unlink from the dirty list */
    for (lr_conn_t **p = &dirty_head; *p; p = &(*p)->next_dirty)
      if (*p == c) {
        *p = c->next_dirty;
        break;
      }
    c->dirty = 0;
  }
  uv_close(&c->h.handle, on_closed);
}

int lr_net_parse_addr(const char *addr, int *is_tcp, char *host, size_t hostlen,
                      int *port)
{
  if (!strncmp(addr, "unix:", 5)) {
    if (strlen(addr + 5) + 1 > hostlen) return LR_EBADARG;
    strcpy(host, addr + 5);
    *is_tcp = 0;
    *port = 0;
    return 0;
  }
  if (!strncmp(addr, "tcp:", 4)) addr += 4;
  const char *colon = strrchr(addr, ':');
  if (!colon || (size_t)(colon - addr) + 1 > hostlen) return LR_EBADARG;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535) return LR_EBADARG;
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = 0;
  *is_tcp = 1;
  *port = (int)p;
  return 0;
}

void lr_tcp_liveness(uv_tcp_t *h)
{
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)h, &fd) != 0) return;
  int on = 1, idle = 1, intvl = 1, cnt = LR_TCP_DEAD_MS / 1000;
  unsigned int ms = LR_TCP_DEAD_MS;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}
