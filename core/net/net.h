/* Framed message streams over libuv: one frame = u32 little-endian length +
 * payload. The same frames run over unix sockets on a node and TCP between
 * nodes. Loop thread only. Needs common/. */
#ifndef LR_NET_H
#define LR_NET_H

#include <uv.h>
#include "common/buf.h"
#include "net/auth.h"

/* The largest frame a connection accepts unless told otherwise (see
 * max_frame). A peer announcing more is closed at once; memory for a frame
 * grows only as its bytes arrive, so a header alone reserves nothing. */
#define LR_MAX_FRAME ((size_t)1 << 30)

typedef struct lr_conn_s lr_conn_t;
typedef void (*lr_conn_frame_cb)(lr_conn_t *c, const char *p, size_t n);
typedef void (*lr_conn_close_cb)(lr_conn_t *c);

struct lr_conn_s {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  uv_write_t wreq;
  uv_connect_t creq;
  lr_buf_t in;       /* bytes read, not yet a whole frame */
  lr_buf_t out;      /* frames queued, not yet handed to the kernel */
  lr_buf_t inflight; /* frames in the current uv_write */
  size_t need;      /* bytes still missing from the frame being read */
  size_t max_frame; /* frames longer than this close the connection */
  int writing, closing, dirty, connect_status;
  int write_failed; /* the peer stopped reading: drop output, keep reading */
  lr_conn_t *next_dirty;
  lr_conn_frame_cb on_frame;
  lr_conn_close_cb on_close;
  void *data;
};

/* Sets up c over a new pipe (is_tcp = 0) or TCP handle on loop. */
int lr_conn_init(uv_loop_t *loop, lr_conn_t *c, int is_tcp);
/* Starts reading frames; on_frame runs once per whole frame. A frame longer
 * than c->max_frame (LR_MAX_FRAME unless changed) closes the connection,
 * with a line on stderr naming the peer's claim. */
int lr_conn_start(lr_conn_t *c);
/* The frame reader without the I/O (on_read appends to c->in, then calls
 * this): hands each whole frame at the front of c->in to c->on_frame, in
 * order, stopping once c->closing is set; drops them from c->in; sets
 * c->need to what the next frame still lacks (0 while its header is
 * incomplete). 0, or LR_ETOOBIG when the next frame announces more than
 * c->max_frame: its header is then first in c->in, and the caller closes. */
int lr_conn_split(lr_conn_t *c);
/* Starts a frame: reserves the length prefix, returns its position in out.
 * Append the payload to c->out, then call lr_conn_end_frame. */
size_t lr_conn_begin_frame(lr_conn_t *c);
int lr_conn_end_frame(lr_conn_t *c, size_t pos); /* 0 or LR_ETOOBIG */
/* Hands queued frames to the kernel: one write for all of them. */
void lr_conn_flush(lr_conn_t *c);
/* Flushes every connection with queued frames (called before each poll). */
void lr_conn_flush_all(void);
/* Closes the stream; on_close runs once the handle is closed (may be async). */
void lr_conn_close(lr_conn_t *c);

/* How long a TCP peer may be silent before its connection is given up:
 * the head's node timeout, so a cut link or a dead machine ends every
 * connection to it as soon as the head declares that node dead. */
#define LR_TCP_DEAD_MS 5000
/* Makes a TCP connection notice a peer that vanished without closing it
 * (machine dead, link cut): keepalive probes after 1 s idle, every 1 s, and
 * TCP_USER_TIMEOUT of LR_TCP_DEAD_MS for probes and data unacknowledged;
 * the read then fails with ETIMEDOUT and the connection closes. Call it
 * once the handle has its socket (after uv_tcp_connect or uv_accept). */
void lr_tcp_liveness(uv_tcp_t *h);

/* Parses "unix:/path" or "tcp:host:port". Returns 0 and fills out, or
 * LR_EBADARG. For unix, host holds the path. */
int lr_net_parse_addr(const char *addr, int *is_tcp, char *host, size_t hostlen,
                      int *port);

#endif
