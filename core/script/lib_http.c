/* Lua bindings for a small HTTP server (GNU libmicrohttpd), used by the
 * dashboard process (lua/lray/dashboard.lua).
 *
 * libmicrohttpd (opened with dlopen by the first http_listen) runs its own
 * threads (one per connection); Lua runs on the loop thread only. A request is
 * handed to the loop through a locked queue and a uv_async_t; its connection
 * thread then waits until Lua answers (req:respond) or turns it into a stream
 * (req:stream, for Server-Sent Events) that Lua feeds with req:send. Nothing on
 * the loop thread ever waits for a browser, so a slow or stuck client cannot
 * stall the process.
 *
 *   srv = core.http_listen{host = "127.0.0.1", port = 8265,
 *                          on_request = function(req) ... end}
 *   srv:port(); srv:close()
 *   req.method, req.path, req.query ("k=v&..."), req:header(name)
 *   req:respond(status, content_type, body)   -- once
 *   req:stream(content_type); req:send(data) -> false once the client left
 *   req:is_open(); req:close()
 *   core.dashboard_page() -> the page embedded in the binary
 *
 * License: same as lray. */
#include <lauxlib.h>
#include <microhttpd.h>
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>
#include "common/def.h"
#include "script/libs.h"
#include "script/vm.h"

#define HTTP_MT "lray.http"
#define REQ_MT "lray.http_req"
#define WAIT_SECONDS 30      /* a request Lua leaves unanswered gets 504 */
#define KEEPALIVE_SECONDS 15 /* an idle stream sends a comment this often */
#define STREAM_MAX (4 << 20) /* bytes a stream may have queued */

enum { R_WAITING, R_RESPONDED, R_STREAMING, R_CLOSED };

typedef struct hsrv_s hsrv_t;

typedef struct hreq_s {
  hsrv_t *srv;
  struct hreq_s *next; /* in srv->queue */
  int refs;            /* connection thread + Lua userdata; under srv->mu */
  int state;
  int status;
  char *ctype;
  char *body; /* response body, or queued stream bytes */
  size_t len, cap;
  char *method, *path, *query, *headers; /* copies of the request */
} hreq_t;

struct hsrv_s {
  struct MHD_Daemon *d;
  uv_mutex_t mu;
  uv_cond_t cv; /* signalled whenever a request's state or stream changes */
  uv_async_t async;
  hreq_t *queue, *tail;
  int closing;
  int cb_ref;
  int port;
};

/* -- libmicrohttpd, loaded when a dashboard starts ---------------------------
 * Only the dashboard process serves HTTP: loading the library (and the TLS
 * libraries it pulls in) into every driver, node and worker would slow each
 * process start, so it is opened with dlopen on first use. */

static struct {
  void *lib;
  struct MHD_Daemon *(*start_daemon)(unsigned int, uint16_t,
                                     MHD_AcceptPolicyCallback, void *,
                                     MHD_AccessHandlerCallback, void *, ...);
  void (*stop_daemon)(struct MHD_Daemon *);
  const union MHD_DaemonInfo *(*get_daemon_info)(struct MHD_Daemon *,
                                                 enum MHD_DaemonInfoType, ...);
  struct MHD_Response *(*create_response_from_buffer)(
      size_t, void *, enum MHD_ResponseMemoryMode);
  struct MHD_Response *(*create_response_from_callback)(
      uint64_t, size_t, MHD_ContentReaderCallback, void *,
      MHD_ContentReaderFreeCallback);
  enum MHD_Result (*add_response_header)(struct MHD_Response *, const char *,
                                         const char *);
  enum MHD_Result (*queue_response)(struct MHD_Connection *, unsigned int,
                                    struct MHD_Response *);
  void (*destroy_response)(struct MHD_Response *);
  int (*get_connection_values)(struct MHD_Connection *, enum MHD_ValueKind,
                               MHD_KeyValueIterator, void *);
} mhd;

/* Opens libmicrohttpd once; NULL, or why it cannot be had. */
static const char *mhd_load(void)
{
  if (mhd.lib) return NULL;
  void *lib = dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libmicrohttpd.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return "libmicrohttpd is not installed (Debian: libmicrohttpd12)";
#define SYM(f)                                                                 \
  if (!(*(void **)&mhd.f = dlsym(lib, "MHD_" #f))) goto missing;
  SYM(start_daemon)
  SYM(stop_daemon)
  SYM(get_daemon_info)
  SYM(create_response_from_buffer)
  SYM(create_response_from_callback)
  SYM(add_response_header)
  SYM(queue_response)
  SYM(destroy_response)
  SYM(get_connection_values)
#undef SYM
  mhd.lib = lib;
  return NULL;
missing:
  dlclose(lib);
  return "libmicrohttpd lacks a function lray needs";
}

/* -- Requests (any thread, under srv->mu where shared) ------------------- */

static void append(hreq_t *r, const char *p, size_t n)
{
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap : 256;
    while (cap < r->len + n) cap *= 2;
    char *b = realloc(r->body, cap);
    if (!b) abort();
    r->body = b;
    r->cap = cap;
  }
  memcpy(r->body + r->len, p, n);
  r->len += n;
}

static void req_free(hreq_t *r)
{
  free(r->ctype);
  free(r->body);
  free(r->method);
  free(r->path);
  free(r->query);
  free(r->headers);
  free(r);
}

/* Drops one reference; the caller holds srv->mu. Returns 1 if r is gone. */
static int req_unref_locked(hreq_t *r)
{
  if (--r->refs > 0) return 0;
  req_free(r);
  return 1;
}

static char *xstrdup(const char *s)
{
  char *d = strdup(s ? s : "");
  if (!d) abort();
  return d;
}

struct kv_acc {
  hreq_t *r;
  char sep;
};

static enum MHD_Result collect_kv(void *cls, enum MHD_ValueKind kind,
                                  const char *k, const char *v)
{
  struct kv_acc *a = cls;
  LR_UNUSED(kind);
  append(a->r, k, strlen(k));
  append(a->r, a->sep == '&' ? "=" : ": ", a->sep == '&' ? 1 : 2);
  if (v) append(a->r, v, strlen(v));
  append(a->r, a->sep == '&' ? "&" : "\n", 1);
  return MHD_YES;
}

/* Copies the query arguments ('&') or headers ('\n') into a string. */
static char *gather(struct MHD_Connection *c, hreq_t *r, enum MHD_ValueKind k,
                    char sep)
{
  struct kv_acc a = {r, sep};
  r->len = 0;
  mhd.get_connection_values(c, k, collect_kv, &a);
  append(r, "", 1);
  char *s = xstrdup(r->body);
  r->len = 0;
  return s;
}

/* -- Streams: the connection thread reads what Lua queued ---------------- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
  hreq_t *r = cls;
  hsrv_t *s = r->srv;
  LR_UNUSED(pos);
  ssize_t n;
  uv_mutex_lock(&s->mu);
  uint64_t waited = 0;
  while (r->len == 0 && r->state == R_STREAMING && !s->closing &&
         waited < (uint64_t)KEEPALIVE_SECONDS * 1000000000ull) {
    uint64_t t0 = uv_hrtime();
    uv_cond_timedwait(&s->cv, &s->mu, 1000000000ull);
    waited += uv_hrtime() - t0;
  }
  if (r->len > 0) {
    n = (ssize_t)(r->len < max ? r->len : max);
    memcpy(buf, r->body, (size_t)n);
    memmove(r->body, r->body + n, r->len - (size_t)n);
    r->len -= (size_t)n;
  } else if (r->state != R_STREAMING || s->closing) {
    n = MHD_CONTENT_READER_END_OF_STREAM;
  } else {
    /* Nothing for a while: a comment line keeps proxies and the browser
     * from giving up, and shows whether the client is still there. */
    static const char ka[] = ": keepalive\n\n";
    n = (ssize_t)(sizeof(ka) - 1 < max ? sizeof(ka) - 1 : max);
    memcpy(buf, ka, (size_t)n);
  }
  uv_mutex_unlock(&s->mu);
  return n;
}

static void stream_done(void *cls)
{
  hreq_t *r = cls;
  hsrv_t *s = r->srv;
  uv_mutex_lock(&s->mu);
  r->state = R_CLOSED;
  req_unref_locked(r);
  uv_mutex_unlock(&s->mu);
}

/* -- The access handler (connection threads) ----------------------------- */

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status,
                                  const char *text)
{
  struct MHD_Response *resp = mhd.create_response_from_buffer(
      strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
  if (!resp) return MHD_NO;
  mhd.add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
  enum MHD_Result rc = mhd.queue_response(c, status, resp);
  mhd.destroy_response(resp);
  return rc;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
  hsrv_t *s = cls;
  static int first;
  LR_UNUSED(version);
  LR_UNUSED(upload);
  if (*con_cls == NULL) { /* headers only so far */
    *con_cls = &first;
    return MHD_YES;
  }
  if (*upload_size) { /* request bodies are not used: drop them */
    *upload_size = 0;
    return MHD_YES;
  }
  hreq_t *r = calloc(1, sizeof(*r));
  if (!r) abort();
  r->srv = s;
  r->refs = 2; /* this thread, and the Lua side */
  r->method = xstrdup(method);
  r->path = xstrdup(url);
  r->query = gather(c, r, MHD_GET_ARGUMENT_KIND, '&');
  r->headers = gather(c, r, MHD_HEADER_KIND, '\n');
  uv_mutex_lock(&s->mu);
  if (s->closing) {
    uv_mutex_unlock(&s->mu);
    req_free(r);
    return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "closing\n");
  }
  if (s->tail)
    s->tail->next = r;
  else
    s->queue = r;
  s->tail = r;
  uv_mutex_unlock(&s->mu);
  uv_async_send(&s->async);

  uv_mutex_lock(&s->mu);
  uint64_t deadline = uv_hrtime() + (uint64_t)WAIT_SECONDS * 1000000000ull;
  while (r->state == R_WAITING && !s->closing && uv_hrtime() < deadline)
    uv_cond_timedwait(&s->cv, &s->mu, 1000000000ull);
  enum MHD_Result rc;
  struct MHD_Response *resp = NULL;
  int status = r->status;
  if (r->state == R_RESPONDED) {
    resp =
        mhd.create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_COPY);
  } else if (r->state == R_STREAMING) {
    r->refs++; /* the stream's; dropped by stream_done */
    resp = mhd.create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
                                             stream_read, r, stream_done);
    if (!resp) r->refs--;
  }
  char *ctype = xstrdup(r->ctype ? r->ctype : "text/plain; charset=utf-8");
  int state = r->state;
  if (state == R_WAITING)
    r->state = R_CLOSED; /* Lua may still answer: ignored */
  req_unref_locked(r);
  uv_mutex_unlock(&s->mu);
  if (state != R_RESPONDED && state != R_STREAMING) {
    free(ctype);
    return reply_text(c, MHD_HTTP_GATEWAY_TIMEOUT, "no answer\n");
  }
  if (!resp) {
    free(ctype);
    return MHD_NO;
  }
  mhd.add_response_header(resp, "Content-Type", ctype);
  mhd.add_response_header(resp, "Cache-Control", "no-store");
  mhd.add_response_header(resp, "X-Content-Type-Options", "nosniff");
  free(ctype);
  rc = mhd.queue_response(c, (unsigned)status, resp);
  mhd.destroy_response(resp);
  return rc;
}

/* -- Loop thread --------------------------------------------------------- */

typedef struct {
  hreq_t *r;
} lreq_t;

static void on_async(uv_async_t *a)
{
  hsrv_t *s = a->data;
  lua_State *L = lr_vm_state();
  for (;;) {
    uv_mutex_lock(&s->mu);
    hreq_t *r = s->queue;
    if (r) {
      s->queue = r->next;
      if (!s->queue) s->tail = NULL;
      r->next = NULL;
    }
    uv_mutex_unlock(&s->mu);
    if (!r) break;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cb_ref);
    lreq_t *lr = lua_newuserdata(L, sizeof(*lr));
    lr->r = r; /* the Lua side's reference */
    luaL_getmetatable(L, REQ_MT);
    lua_setmetatable(L, -2);
    lr_vm_pcall(L, 1, "dashboard request");
  }
}

static hreq_t *check_req(lua_State *L)
{
  lreq_t *lr = luaL_checkudata(L, 1, REQ_MT);
  if (!lr->r) luaL_error(L, "request already released");
  return lr->r;
}

/* Gives a waiting request its answer (state R_RESPONDED with a body, or
 * R_STREAMING); the caller holds srv->mu. 0 when it was not waiting. */
static int answer(hreq_t *r, int state, int status, const char *ct,
                  const char *body, size_t n)
{
  if (r->state != R_WAITING) return 0;
  r->status = status;
  free(r->ctype);
  r->ctype = xstrdup(ct);
  r->len = 0;
  if (body) append(r, body, n);
  r->state = state;
  uv_cond_broadcast(&r->srv->cv);
  return 1;
}

/* req:respond(status, content_type, body) -> true, or false if too late */
static int l_req_respond(lua_State *L)
{
  hreq_t *r = check_req(L);
  int status = (int)luaL_checkinteger(L, 2);
  const char *ct = luaL_checkstring(L, 3);
  size_t n;
  const char *body = luaL_checklstring(L, 4, &n);
  uv_mutex_lock(&r->srv->mu);
  int ok = answer(r, R_RESPONDED, status, ct, body, n);
  uv_mutex_unlock(&r->srv->mu);
  lua_pushboolean(L, ok);
  return 1;
}

/* req:stream(content_type) -> true: a 200 whose body req:send feeds */
static int l_req_stream(lua_State *L)
{
  hreq_t *r = check_req(L);
  const char *ct = luaL_checkstring(L, 2);
  uv_mutex_lock(&r->srv->mu);
  int ok = answer(r, R_STREAMING, 200, ct, NULL, 0);
  uv_mutex_unlock(&r->srv->mu);
  lua_pushboolean(L, ok);
  return 1;
}

/* req:send(data) -> true while the stream is open (false: client left, or
 * it stopped reading and STREAM_MAX bytes wait) */
static int l_req_send(lua_State *L)
{
  hreq_t *r = check_req(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  hsrv_t *s = r->srv;
  uv_mutex_lock(&s->mu);
  int ok = r->state == R_STREAMING && !s->closing && r->len + n <= STREAM_MAX;
  if (ok) {
    append(r, p, n);
    uv_cond_broadcast(&s->cv);
  }
  uv_mutex_unlock(&s->mu);
  lua_pushboolean(L, ok);
  return 1;
}

static int l_req_is_open(lua_State *L)
{
  hreq_t *r = check_req(L);
  uv_mutex_lock(&r->srv->mu);
  int open =
      (r->state == R_STREAMING || r->state == R_WAITING) && !r->srv->closing;
  uv_mutex_unlock(&r->srv->mu);
  lua_pushboolean(L, open);
  return 1;
}

/* req:close(): ends a stream (or drops an unanswered request). */
static int l_req_close(lua_State *L)
{
  hreq_t *r = check_req(L);
  uv_mutex_lock(&r->srv->mu);
  if (r->state == R_STREAMING || r->state == R_WAITING) r->state = R_CLOSED;
  uv_cond_broadcast(&r->srv->cv);
  uv_mutex_unlock(&r->srv->mu);
  return 0;
}

static int l_req_gc(lua_State *L)
{
  lreq_t *lr = luaL_checkudata(L, 1, REQ_MT);
  hreq_t *r = lr->r;
  if (!r) return 0;
  lr->r = NULL;
  hsrv_t *s = r->srv;
  uv_mutex_lock(&s->mu);
  /* Lua dropped it unanswered; a stream nobody can feed any more ends. */
  answer(r, R_RESPONDED, 500, "text/plain; charset=utf-8", "no answer\n", 10);
  if (r->state == R_STREAMING) r->state = R_CLOSED;
  uv_cond_broadcast(&s->cv);
  req_unref_locked(r);
  uv_mutex_unlock(&s->mu);
  return 0;
}

static int l_req_index(lua_State *L)
{
  hreq_t *r = check_req(L);
  const char *k = luaL_checkstring(L, 2);
  if (!strcmp(k, "method"))
    lua_pushstring(L, r->method);
  else if (!strcmp(k, "path"))
    lua_pushstring(L, r->path);
  else if (!strcmp(k, "query"))
    lua_pushstring(L, r->query);
  else if (!strcmp(k, "headers"))
    lua_pushstring(L, r->headers); /* "Name: value\n" lines */
  else {
    luaL_getmetatable(L, REQ_MT);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
  }
  return 1;
}

/* -- Server -------------------------------------------------------------- */

typedef struct {
  hsrv_t *s;
} lsrv_t;

static void on_async_closed(uv_handle_t *h)
{
  hsrv_t *s = h->data;
  uv_mutex_destroy(&s->mu);
  uv_cond_destroy(&s->cv);
  free(s);
}

static void srv_close(lua_State *L, lsrv_t *ls)
{
  hsrv_t *s = ls->s;
  if (!s) return;
  ls->s = NULL;
  uv_mutex_lock(&s->mu);
  s->closing = 1;
  uv_cond_broadcast(&s->cv);
  uv_mutex_unlock(&s->mu);
  mhd.stop_daemon(s->d); /* joins the connection threads */
  /* Requests queued but never seen by Lua. */
  uv_mutex_lock(&s->mu);
  while (s->queue) {
    hreq_t *r = s->queue;
    s->queue = r->next;
    req_unref_locked(r);
  }
  uv_mutex_unlock(&s->mu);
  luaL_unref(L, LUA_REGISTRYINDEX, s->cb_ref);
  uv_close((uv_handle_t *)&s->async, on_async_closed);
}

static int l_srv_close(lua_State *L)
{
  srv_close(L, luaL_checkudata(L, 1, HTTP_MT));
  return 0;
}

static int l_srv_port(lua_State *L)
{
  lsrv_t *ls = luaL_checkudata(L, 1, HTTP_MT);
  if (!ls->s) return 0;
  lua_pushinteger(L, ls->s->port);
  return 1;
}

/* Fills sa with host:port; else pushes nil and a message, returns -1. */
static int ipv4_of(lua_State *L, const char *host, int port, struct sockaddr_in *sa)
{
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &sa->sin_addr) == 1) return 0;
  lua_pushnil(L);
  lua_pushfstring(L, "not an IPv4 address: %s", host);
  return -1;
}

/* http_bind(host, port) -> fd, port: a listening TCP socket that a child
 * process inherits (no close-on-exec) and serves with http_listen{fd=};
 * nil, message when the address is taken or bad. */
static int l_http_bind(lua_State *L)
{
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  struct sockaddr_in sa;
  if (ipv4_of(L, host, port, &sa) < 0) return 2;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0) goto fail;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
    goto fail;
  socklen_t len = sizeof(sa);
  getsockname(fd, (struct sockaddr *)&sa, &len);
  lua_pushinteger(L, fd);
  lua_pushinteger(L, ntohs(sa.sin_port));
  return 2;
fail:
  lua_pushnil(L);
  lua_pushfstring(L, "%s:%d: %s", host, port, strerror(errno));
  if (fd >= 0) close(fd);
  return 2;
}

/* fd_cloexec(fd, on): whether children started from now on inherit fd. */
static int l_fd_cloexec(lua_State *L)
{
  int fd = (int)luaL_checkinteger(L, 1);
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return 0;
  flags = lua_toboolean(L, 2) ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
  fcntl(fd, F_SETFD, flags);
  return 0;
}

/* close_fd(fd): closes a descriptor from http_bind in this process. */
static int l_close_fd(lua_State *L)
{
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

/* http_listen{host=, port=, fd=, on_request=} -> server, or nil, message.
 * With fd (from http_bind), serves that socket; else binds host:port. */
static int l_http_listen(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "fd");
  int fd = (int)luaL_optinteger(L, -1, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_getfield(L, 1, "port");
  int port = (int)luaL_optinteger(L, -1, 8265);
  lua_getfield(L, 1, "on_request");
  luaL_checktype(L, -1, LUA_TFUNCTION);
  struct sockaddr_in sa;
  if (ipv4_of(L, host, port, &sa) < 0) return 2;
  const char *why = mhd_load();
  if (why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  hsrv_t *s = calloc(1, sizeof(*s));
  if (!s) abort();
  uv_mutex_init(&s->mu);
  uv_cond_init(&s->cv);
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION |
                   MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG;
  if (fd >= 0)
    s->d = mhd.start_daemon(flags, (uint16_t)port, NULL, NULL, on_access, s,
                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                            MHD_OPTION_CONNECTION_LIMIT, 64,
                            MHD_OPTION_CONNECTION_TIMEOUT, 120, MHD_OPTION_END);
  else
    s->d = mhd.start_daemon(flags, (uint16_t)port, NULL, NULL, on_access, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_LIMIT, 64,
                            MHD_OPTION_CONNECTION_TIMEOUT, 120, MHD_OPTION_END);
  if (!s->d) {
    uv_mutex_destroy(&s->mu);
    uv_cond_destroy(&s->cv);
    free(s);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s:%d", host, port);
    return 2;
  }
  const union MHD_DaemonInfo *di =
      mhd.get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : port;
  lua_pushvalue(L, -1); /* on_request */
  s->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_async_init(lr_vm_loop(), &s->async, on_async);
  s->async.data = s;
  uv_unref((uv_handle_t *)&s->async);
  lsrv_t *ls = lua_newuserdata(L, sizeof(*ls));
  ls->s = s;
  luaL_getmetatable(L, HTTP_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_srv_gc(lua_State *L)
{
  srv_close(L, luaL_checkudata(L, 1, HTTP_MT));
  return 0;
}

/* -- The embedded page --------------------------------------------------- */

extern const char _binary_core_dash_page_html_start[];
extern const char _binary_core_dash_page_html_end[];

static int l_dashboard_page(lua_State *L)
{
  lua_pushlstring(L, _binary_core_dash_page_html_start,
                  (size_t)(_binary_core_dash_page_html_end -
                           _binary_core_dash_page_html_start));
  return 1;
}

void lr_lib_http_open(lua_State *L)
{
  static const luaL_Reg srv_m[] = {
      {"close", l_srv_close}, {"port", l_srv_port}, {NULL, NULL}};
  static const luaL_Reg req_m[] = {
      {"respond", l_req_respond}, {"stream", l_req_stream},
      {"send", l_req_send},       {"is_open", l_req_is_open},
      {"close", l_req_close},     {NULL, NULL}};
  luaL_newmetatable(L, HTTP_MT);
  lua_newtable(L);
  luaL_register(L, NULL, srv_m);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_srv_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, REQ_MT);
  lua_newtable(L);
  luaL_register(L, NULL, req_m);
  lua_setfield(L, -2, "methods");
  lua_pushcfunction(L, l_req_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_req_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_http_listen);
  lua_setfield(L, -2, "http_listen");
  lua_pushcfunction(L, l_http_bind);
  lua_setfield(L, -2, "http_bind");
  lua_pushcfunction(L, l_fd_cloexec);
  lua_setfield(L, -2, "fd_cloexec");
  lua_pushcfunction(L, l_close_fd);
  lua_setfield(L, -2, "close_fd");
  lua_pushcfunction(L, l_dashboard_page);
  lua_setfield(L, -2, "dashboard_page");
}
