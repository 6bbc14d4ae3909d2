/* Lua bindings for the event loop: listeners, framed connections carrying
 * codec-encoded messages, timers, child processes and signals. Every Lua
 * callback runs through lr_vm_pcall. Never call run/run_once/poll from inside
 * a callback: libuv's loop is not re-entrant (the Lua side queues work and
 * runs it from its main loop instead). */
#include <lauxlib.h>
#include <lualib.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "common/errdef.h"
#include "net/net.h"
#include "script/libs.h"
#include "script/ser.h"
#include "script/vm.h"

#define CONN_MT "lray.conn"
#define SERVER_MT "lray.server"
#define TIMER_MT "lray.timer"
#define PROC_MT "lray.proc"

/* -- Loop ---------------------------------------------------------------- */

static uv_loop_t *loop;
static uv_prepare_t flusher;
static lua_State *main_L;

static void on_prepare(uv_prepare_t *h)
{
  LR_UNUSED(h);
  lr_conn_flush_all();
}

uv_loop_t *lr_vm_loop(void)
{
  if (!loop) {
    loop = uv_default_loop();
    uv_prepare_init(loop, &flusher);
    uv_prepare_start(&flusher, on_prepare);
    uv_unref((uv_handle_t *)&flusher);
  }
  return loop;
}

lua_State *lr_vm_state(void) { return main_L; }
void lr_vm_set_state(lua_State *L) { main_L = L; }

static int traceback(lua_State *L)
{
  if (lua_type(L, 1) == LUA_TSTRING) luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

int lr_vm_in_callback;
int lr_vm_interrupted;

/* take_interrupt() -> true once after a Ctrl-C was caught in a callback. */
static int l_take_interrupt(lua_State *L)
{
  lua_pushboolean(L, lr_vm_interrupted);
  lr_vm_interrupted = 0;
  return 1;
}

int lr_vm_pcall(lua_State *L, int nargs, const char *where)
{
  int base = lua_gettop(L) - nargs;
  lr_vm_in_callback++;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, 0, base);
  if (rc) {
    const char *m = lua_tostring(L, -1);
    if (m && strstr(m, "interrupted!")) {
      /* Ctrl-C landed inside a callback: the code that runs the loop raises
       * it (see l_take_interrupt) instead of this callback swallowing it. */
      lr_vm_interrupted = 1;
    } else {
      fprintf(stderr, "lray: error in %s: %s\n", where, m ? m : "(error object)");
    }
    lua_pop(L, 1);
  }
  lua_remove(L, base);
  if (--lr_vm_in_callback == 0) lr_sys_cancel_rearm(L);
  return rc;
}

static int l_run(lua_State *L)
{
  LR_UNUSED(L);
  uv_run(lr_vm_loop(), UV_RUN_DEFAULT);
  return 0;
}

/* Blocks until at least one event was handled. Returns whether more remain. */
static int l_run_once(lua_State *L)
{
  lua_pushboolean(L, uv_run(lr_vm_loop(), UV_RUN_ONCE));
  return 1;
}

static int l_poll(lua_State *L)
{
  lua_pushboolean(L, uv_run(lr_vm_loop(), UV_RUN_NOWAIT));
  return 1;
}

static int l_stop(lua_State *L)
{
  LR_UNUSED(L);
  uv_stop(lr_vm_loop());
  return 0;
}

static int l_flush(lua_State *L)
{
  LR_UNUSED(L);
  lr_conn_flush_all();
  return 0;
}

static int l_hrtime(lua_State *L)
{
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

/* -- Connections ----------------------------------------------------------- */

typedef struct {
  lr_conn_t c;
  int self_ref, on_msg_ref, on_close_ref, on_connect_ref;
  int id;
  lr_auth_t *auth; /* during the token handshake of a TCP connect */
  int auth_state;
  const char *auth_err;
  int accept_ref;       /* a TCP server's accept handler, called once the
                           peer proved the token (LUA_NOREF otherwise) */
  uint64_t auth_deadline; /* loop time (ms) the peer must prove it by */
  void *next_pending;     /* the list of peers still proving the token */
  int auth_async;         /* an async connect: on_connect waits for the handshake */
  int handshaking;        /* a sync connect's handshake runs the loop: a close */
  int close_pending;      /* meanwhile is finished after it (lc stays valid) */
} lconn_t;

/* The client side of the token handshake (see "The cluster token"). */
enum { AUTH_WAIT_CHALLENGE = 1, AUTH_WAIT_PROOF, AUTH_DONE, AUTH_FAILED };
static void auth_async_done(lconn_t *lc);
static void auth_on_frame(lr_conn_t *c, const char *p, size_t n);

typedef struct {
  lconn_t *lc; /* NULL once closed */
} conn_ud_t;

static int next_conn_id = 1;

static lconn_t *check_conn(lua_State *L, int i)
{
  conn_ud_t *u = luaL_checkudata(L, i, CONN_MT);
  if (!u->lc || u->lc->c.closing) luaL_error(L, "connection is closed");
  return u->lc;
}

static void lconn_on_frame(lr_conn_t *c, const char *p, size_t n)
{
  lconn_t *lc = c->data;
  lua_State *L = main_L;
  char err[LR_ERRLEN];
  if (lc->on_msg_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc->on_msg_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc->self_ref);
  if (lr_proto_decode_lua(L, p, n, err, sizeof(err)) < 0) {
    fprintf(stderr, "lray: closing a connection: %s\n", err);
    lua_pop(L, 2);
    lr_conn_close(c);
    return;
  }
  lr_vm_pcall(L, 2, "message handler");
}

static void pending_remove(lconn_t *lc);

static void finish_close(lconn_t *lc);

static void lconn_on_close(lr_conn_t *c)
{
  lconn_t *lc = c->data;
  if (lc->handshaking) {
    lc->close_pending = 1;
    return;
  }
  finish_close(lc);
}

static void finish_close(lconn_t *lc)
{
  lua_State *L = main_L;
  if (lc->auth_async) { /* closed during an async connect's handshake */
    if (lc->auth_state == AUTH_WAIT_PROOF)
      lc->auth_err = "the node refused the cluster token (a wrong token, or none)";
    else if (!lc->auth_err)
      lc->auth_err = "the node closed the connection before the token handshake";
    lc->auth_state = AUTH_FAILED;
    auth_async_done(lc);
  }
  if (lc->accept_ref != LUA_NOREF) { /* closed while proving the token */
    pending_remove(lc);
    luaL_unref(L, LUA_REGISTRYINDEX, lc->accept_ref);
    lc->accept_ref = LUA_NOREF;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc->self_ref);
  conn_ud_t *u = lua_touserdata(L, -1);
  if (lc->on_close_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lc->on_close_ref);
    lua_pushvalue(L, -2);
    lr_vm_pcall(L, 1, "close handler");
  }
  u->lc = NULL;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, lc->self_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lc->on_msg_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lc->on_close_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lc->on_connect_ref);
  lr_free(lc);
}

/* Pushes a userdata for a fresh connection; pinned until it closes. */
static lconn_t *new_conn(lua_State *L, int is_tcp)
{
  conn_ud_t *u = lua_newuserdata(L, sizeof(*u));
  lconn_t *lc = lr_xcalloc(1, sizeof(*lc));
  u->lc = lc;
  luaL_getmetatable(L, CONN_MT);
  lua_setmetatable(L, -2);
  lr_conn_init(lr_vm_loop(), &lc->c, is_tcp);
  lc->c.data = lc;
  lc->c.on_frame = lconn_on_frame;
  lc->c.on_close = lconn_on_close;
  lc->on_msg_ref = lc->on_close_ref = lc->on_connect_ref = lc->accept_ref = LUA_NOREF;
  lc->id = next_conn_id++;
  lua_pushvalue(L, -1);
  lc->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return lc;
}

/* conn:send(msg): encodes the typed message msg (proto/msgdef.h) into the
 * output buffer; sent at the next flush. */
static int l_conn_send(lua_State *L)
{
  lconn_t *lc = check_conn(L, 1);
  char err[LR_ERRLEN];
  size_t pos = lr_conn_begin_frame(&lc->c);
  int rc = lr_proto_encode_lua(L, 2, &lc->c.out, err, sizeof(err));
  if (rc < 0) {
    lc->c.out.len = pos;
    lua_pushstring(L, err);
    return lua_error(L);
  }
  if (lr_conn_end_frame(&lc->c, pos) < 0)
    return luaL_error(L, "message too large (the limit is %zu bytes): pass large values"
                      " with lray.put", lc->c.max_frame);
  return 0;
}

static int set_cb(lua_State *L, int *ref)
{
  lconn_t *lc = check_conn(L, 1);
  LR_UNUSED(lc);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  lua_pushvalue(L, 2);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int l_conn_on_message(lua_State *L)
{
  lconn_t *lc = check_conn(L, 1);
  set_cb(L, &lc->on_msg_ref);
  int rc = lr_conn_start(&lc->c);
  if (rc < 0 && rc != UV_EALREADY) return luaL_error(L, "read: %s", uv_strerror(rc));
  return 0;
}

static int l_conn_on_close(lua_State *L)
{
  lconn_t *lc = check_conn(L, 1);
  return set_cb(L, &lc->on_close_ref);
}

static int l_conn_close(lua_State *L)
{
  conn_ud_t *u = luaL_checkudata(L, 1, CONN_MT);
  if (u->lc && !u->lc->c.closing) {
    lr_conn_flush(&u->lc->c);
    lr_conn_close(&u->lc->c);
  }
  return 0;
}

static int l_conn_is_open(lua_State *L)
{
  conn_ud_t *u = luaL_checkudata(L, 1, CONN_MT);
  lua_pushboolean(L, u->lc && !u->lc->c.closing);
  return 1;
}

static int l_conn_id(lua_State *L)
{
  conn_ud_t *u = luaL_checkudata(L, 1, CONN_MT);
  lua_pushinteger(L, u->lc ? u->lc->id : 0);
  return 1;
}

static int l_conn_pending(lua_State *L)
{
  lconn_t *lc = check_conn(L, 1);
  lua_pushnumber(L, (double)(lc->c.out.len + lc->c.inflight.len));
  return 1;
}

static int l_conn_tostring(lua_State *L)
{
  conn_ud_t *u = luaL_checkudata(L, 1, CONN_MT);
  lua_pushfstring(L, "conn(%d)", u->lc ? u->lc->id : 0);
  return 1;
}

/* -- Connect and listen ---------------------------------------------------- */

/* An async TCP connect's handshake ended (or its connection closed):
 * on_connect(conn, err) runs now. */
static void auth_async_done(lconn_t *lc)
{
  lua_State *L = main_L;
  int ok = lc->auth_state == AUTH_DONE;
  lc->auth_async = 0;
  if (lc->auth) {
    lr_auth_close(lc->auth);
    lr_free(lc->auth);
    lc->auth = NULL;
  }
  lc->c.on_frame = lconn_on_frame;
  lc->c.max_frame = LR_MAX_FRAME;
  if (!lc->c.closing) uv_read_stop(&lc->c.h.stream);
  int ref = lc->on_connect_ref;
  lc->on_connect_ref = LUA_NOREF;
  if (ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc->self_ref);
  if (ok) {
    lua_pushnil(L);
  } else {
    lua_pushstring(L, lc->auth_err ? lc->auth_err
                                   : "the node refused the cluster token (a wrong token, or none)");
    if (!lc->c.closing) lr_conn_close(&lc->c);
  }
  lr_vm_pcall(L, 2, "connect handler");
}

static void on_connect(uv_connect_t *req, int status)
{
  lconn_t *lc = req->data;
  lc->c.connect_status = status ? status : 1;
  if (lc->auth_async && status == 0) {
    lc->auth_state = AUTH_WAIT_CHALLENGE;
    lc->c.on_frame = auth_on_frame;
    lc->c.max_frame = LR_AUTH_ANSWER_LEN;
    lr_conn_start(&lc->c);
    return;
  }
  if (lc->auth_async) { /* could not connect */
    lc->auth_async = 0;
    lr_auth_close(lc->auth);
    lr_free(lc->auth);
    lc->auth = NULL;
  }
  if (lc->on_connect_ref == LUA_NOREF) return;
  lua_State *L = main_L;
  int ref = lc->on_connect_ref;
  lc->on_connect_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc->self_ref);
  if (status < 0) {
    lua_pushstring(L, uv_strerror(status));
    lr_conn_close(&lc->c);
  } else {
    lua_pushnil(L);
  }
  lr_vm_pcall(L, 2, "connect handler");
}

/* connect(addr [, on_connect] [, token]) -> conn | nil, err [, kind].
 * Runs the loop until connected: call it only from the main Lua code, never
 * from a callback. A TCP connection then proves the cluster token (kind is
 * "AuthenticationError" when that fails; token nil: the node's challenge
 * fails with "needs its token").
 * connect(addr, cb) -> conn at once; cb(conn, err|nil) runs when connected
 * (safe inside callbacks). Send nothing before cb says it is connected. */
/* -- The cluster token, client side ------------------------------------------
 * A TCP connection to a node starts with the handshake of net/auth.h over
 * its first frames: the node's CHALLENGE, our ANSWER, the node's PROOF.
 * Nothing else is sent until the node proved it holds the token too. */

static void auth_fail(lconn_t *lc, const char *why)
{
  lc->auth_state = AUTH_FAILED;
  lc->auth_err = why;
}

static void auth_on_frame(lr_conn_t *c, const char *p, size_t n)
{
  lconn_t *lc = c->data;
  if (lc->auth_async) {
    lc->auth_async = 0; /* handled below, then finished */
    auth_on_frame(c, p, n);
    if (lc->auth_state >= AUTH_DONE) auth_async_done(lc);
    else lc->auth_async = 1;
    return;
  }
  if (lc->auth_state == AUTH_WAIT_CHALLENGE) {
    uint8_t ans[LR_AUTH_ANSWER_LEN];
    if (n != LR_AUTH_CHALLENGE_LEN || memcmp(p, LR_AUTH_LABEL, LR_AUTH_LABEL_LEN)) {
      auth_fail(lc, "it did not start lray's token handshake (is it an lray node of this version?)");
      return;
    }
    if (!lc->auth) {
      auth_fail(lc, "the cluster needs its token and none was given");
      return;
    }
    if (lr_auth_client_answer(lc->auth, (const uint8_t *)p, n, ans) < 0) {
      auth_fail(lc, "it did not start lray's token handshake");
      return;
    }
    size_t pos = lr_conn_begin_frame(c);
    lr_buf_append(&c->out, ans, sizeof(ans));
    lr_conn_end_frame(c, pos);
    lr_conn_flush(c);
    lc->auth_state = AUTH_WAIT_PROOF;
  } else if (lc->auth_state == AUTH_WAIT_PROOF) {
    if (lr_auth_client_check(lc->auth, (const uint8_t *)p, n) < 0)
      auth_fail(lc, "it does not hold this cluster's token (do not trust it)");
    else
      lc->auth_state = AUTH_DONE;
  }
}

static void auth_wake(uv_timer_t *t) { LR_UNUSED(t); }

/* Runs the handshake on a connected lc; 0, or -1 with lc->auth_err set. */
static int auth_handshake(lconn_t *lc, const char *token)
{
  static uv_timer_t wake;
  static int wake_init;
  lr_auth_t a;
  if (token) {
    if (lr_auth_init(&a, token) < 0) {
      lc->auth_err = "the token given is not a cluster token (32 to 128 hex digits)";
      return -1;
    }
    lc->auth = &a;
  }
  if (!wake_init) {
    uv_timer_init(lr_vm_loop(), &wake);
    uv_unref((uv_handle_t *)&wake);
    wake_init = 1;
  }
  lc->auth_state = AUTH_WAIT_CHALLENGE;
  lc->handshaking = 1;
  lc->c.on_frame = auth_on_frame;
  lc->c.max_frame = LR_AUTH_ANSWER_LEN; /* the largest handshake frame, both ways */
  uint64_t deadline = uv_now(lr_vm_loop()) + 10000;
  uv_timer_start(&wake, auth_wake, 100, 100);
  lr_conn_start(&lc->c);
  while (lc->auth_state < AUTH_DONE && !lc->c.closing && !lc->c.write_failed &&
         uv_now(lr_vm_loop()) < deadline)
    uv_run(lr_vm_loop(), UV_RUN_ONCE);
  uv_timer_stop(&wake);
  lc->handshaking = 0;
  if (!lc->c.closing) uv_read_stop(&lc->c.h.stream); /* on_message starts it again */
  int state = lc->auth_state;
  if (token) lr_auth_close(&a);
  lc->auth = NULL;
  lc->c.on_frame = lconn_on_frame;
  lc->c.max_frame = LR_MAX_FRAME;
  if (state == AUTH_DONE) return 0;
  if (state != AUTH_FAILED) {
    lc->auth_err = state == AUTH_WAIT_PROOF
                       ? "the node refused the cluster token (a wrong token, or none)"
                       : "the node closed the connection before the token handshake";
    if (!lc->c.closing && !lc->c.write_failed)
      lc->auth_err = "the node did not finish the token handshake within 10 s";
  }
  return -1;
}

static int l_connect(lua_State *L)
{
  const char *addr = luaL_checkstring(L, 1);
  char host[512];
  int is_tcp, port;
  if (lr_net_parse_addr(addr, &is_tcp, host, sizeof(host), &port) < 0)
    return luaL_error(L, "bad address '%s' (want unix:/path or host:port)", addr);
  int async = lua_isfunction(L, 2);
  lconn_t *lc = new_conn(L, is_tcp);
  lc->c.creq.data = lc;
  if (async) {
    lua_pushvalue(L, 2);
    lc->on_connect_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  int rc = 0;
  if (is_tcp) {
    struct sockaddr_storage sa;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa)) {
      struct addrinfo hints = {0}, *res = NULL;
      hints.ai_socktype = SOCK_STREAM;
      rc = getaddrinfo(host, NULL, &hints, &res);
      if (rc || !res) {
        rc = UV_EAI_NONAME;
        goto fail;
      }
      memcpy(&sa, res->ai_addr, res->ai_addrlen);
      ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
      freeaddrinfo(res);
    }
    rc = uv_tcp_connect(&lc->c.creq, &lc->c.h.tcp, (struct sockaddr *)&sa, on_connect);
    if (rc < 0) goto fail;
    uv_tcp_nodelay(&lc->c.h.tcp, 1);
    lr_tcp_liveness(&lc->c.h.tcp); /* a worker or node whose machine vanished */
  } else {
    uv_pipe_connect(&lc->c.creq, &lc->c.h.pipe, host, on_connect);
  }
  if (async && is_tcp && lua_isstring(L, 3)) {
    lc->auth = lr_xcalloc(1, sizeof(*lc->auth));
    if (lr_auth_init(lc->auth, lua_tostring(L, 3)) < 0) {
      lr_free(lc->auth);
      lc->auth = NULL;
    } else {
      lc->auth_async = 1;
    }
  }
  if (async) return 1;
  while (!lc->c.connect_status) uv_run(lr_vm_loop(), UV_RUN_ONCE);
  if (lc->c.connect_status < 0) {
    rc = lc->c.connect_status;
    goto fail;
  }
  if (is_tcp && auth_handshake(lc, lua_tostring(L, 3)) < 0) {
    const char *why = lc->auth_err;
    if (lc->close_pending) finish_close(lc); /* closed during the handshake */
    else lr_conn_close(&lc->c);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot join the cluster at %s: %s", addr, why);
    lua_pushliteral(L, "AuthenticationError");
    return 3;
  }
  if (is_tcp && lc->close_pending) { /* proved, then closed at once */
    finish_close(lc);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot connect to %s: the node closed the connection", addr);
    return 2;
  }
  return 1;
fail:
  if (async) {
    luaL_unref(L, LUA_REGISTRYINDEX, lc->on_connect_ref);
    lc->on_connect_ref = LUA_NOREF;
  }
  lr_conn_close(&lc->c);
  lua_pushnil(L);
  lua_pushfstring(L, "cannot connect to %s: %s", addr, uv_strerror(rc));
  return 2;
}

typedef struct {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  int is_tcp, cb_ref, self_ref, closed;
  char token[LR_AUTH_TOKEN_MAX_HEX + 1]; /* TCP peers prove it first ("" none) */
} server_t;

static void on_server_closed(uv_handle_t *h)
{
  server_t *s = h->data;
  luaL_unref(main_L, LUA_REGISTRYINDEX, s->cb_ref);
  luaL_unref(main_L, LUA_REGISTRYINDEX, s->self_ref);
}

/* -- The cluster token, server side -------------------------------------------
 * A TCP server with a token (a worker's listener) hands a peer to Lua only
 * once it proved the token: until then its frames are at most an ANSWER
 * long, and it has 5 s. */

static lconn_t *pending_auth; /* accepted, not yet proved */
static uv_timer_t pending_timer;

static void pending_remove(lconn_t *lc)
{
  for (lconn_t **p = &pending_auth; *p; p = (lconn_t **)&(*p)->next_pending)
    if (*p == lc) {
      *p = lc->next_pending;
      break;
    }
  lc->next_pending = NULL;
  if (lc->auth) {
    lr_auth_close(lc->auth);
    lr_free(lc->auth);
    lc->auth = NULL;
  }
  if (!pending_auth) uv_timer_stop(&pending_timer);
}

static void pending_refuse(lconn_t *lc, const char *why)
{
  fprintf(stderr, "lray: closing a connection: %s\n", why);
  luaL_unref(main_L, LUA_REGISTRYINDEX, lc->accept_ref);
  lc->accept_ref = LUA_NOREF;
  pending_remove(lc);
  lr_conn_close(&lc->c);
}

static void on_pending_timer(uv_timer_t *t)
{
  uint64_t now = uv_now(t->loop);
  for (lconn_t *lc = pending_auth, *next; lc; lc = next) {
    next = lc->next_pending;
    if (now >= lc->auth_deadline) pending_refuse(lc, "it did not prove the cluster token within 5 s");
  }
}

static void auth_server_on_frame(lr_conn_t *c, const char *p, size_t n)
{
  lconn_t *lc = c->data;
  uint8_t proof[LR_AUTH_PROOF_LEN];
  if (!lc->auth) return;
  if (lr_auth_server_verify(lc->auth, (const uint8_t *)p, n, proof) < 0) {
    pending_refuse(lc, "it did not prove the cluster token");
    return;
  }
  pending_remove(lc);
  size_t pos = lr_conn_begin_frame(c);
  lr_buf_append(&c->out, proof, sizeof(proof));
  lr_conn_end_frame(c, pos);
  c->on_frame = lconn_on_frame;
  c->max_frame = LR_MAX_FRAME;
  /* Reading stops until Lua sets a message handler (as for a new conn). */
  uv_read_stop(&c->h.stream);
  lua_State *L = main_L;
  int ref = lc->accept_ref;
  lc->accept_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc->self_ref);
  lr_vm_pcall(L, 1, "accept handler");
}

static void auth_server_start(server_t *s, lconn_t *lc)
{
  uint8_t ch[LR_AUTH_CHALLENGE_LEN];
  static int timer_init;
  lc->auth = lr_xcalloc(1, sizeof(*lc->auth));
  if (lr_auth_init(lc->auth, s->token) < 0) {
    pending_refuse(lc, "this process has no usable cluster token");
    return;
  }
  lr_auth_server_challenge(lc->auth, ch);
  lc->c.on_frame = auth_server_on_frame;
  lc->c.max_frame = LR_AUTH_ANSWER_LEN;
  if (!timer_init) {
    uv_timer_init(lr_vm_loop(), &pending_timer);
    uv_unref((uv_handle_t *)&pending_timer);
    timer_init = 1;
  }
  lc->auth_deadline = uv_now(lr_vm_loop()) + 5000;
  lc->next_pending = pending_auth;
  pending_auth = lc;
  uv_timer_start(&pending_timer, on_pending_timer, 500, 500);
  size_t pos = lr_conn_begin_frame(&lc->c);
  lr_buf_append(&lc->c.out, ch, sizeof(ch));
  lr_conn_end_frame(&lc->c, pos);
  lr_conn_start(&lc->c);
}

static void on_incoming(uv_stream_t *st, int status)
{
  server_t *s = st->data;
  lua_State *L = main_L;
  if (status < 0) return;
  if (s->is_tcp && s->token[0]) {
    lconn_t *lc = new_conn(L, 1);
    lua_pop(L, 1); /* pinned by its self_ref */
    if (uv_accept(st, &lc->c.h.stream) < 0) {
      lr_conn_close(&lc->c);
      return;
    }
    uv_tcp_nodelay(&lc->c.h.tcp, 1);
    lr_tcp_liveness(&lc->c.h.tcp);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->cb_ref);
    lc->accept_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    auth_server_start(s, lc);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->cb_ref);
  lconn_t *lc = new_conn(L, s->is_tcp);
  if (uv_accept(st, &lc->c.h.stream) < 0) {
    lr_conn_close(&lc->c);
    lua_pop(L, 2);
    return;
  }
  if (s->is_tcp) {
    uv_tcp_nodelay(&lc->c.h.tcp, 1);
    lr_tcp_liveness(&lc->c.h.tcp);
  }
  lr_vm_pcall(L, 1, "accept handler");
}

/* listen(addr, on_conn [, token]) -> server. addr: "unix:/path" or
 * "host:port" (port 0 picks a free one; server:port() tells which). With a
 * token, a TCP peer reaches on_conn only once it proved it (net/auth.h). */
static int l_listen(lua_State *L)
{
  const char *addr = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  char host[512];
  int is_tcp, port, rc;
  if (lr_net_parse_addr(addr, &is_tcp, host, sizeof(host), &port) < 0)
    return luaL_error(L, "bad address '%s' (want unix:/path or host:port)", addr);
  server_t *s = lua_newuserdata(L, sizeof(*s));
  memset(s, 0, sizeof(*s));
  s->is_tcp = is_tcp;
  s->h.handle.data = s;
  if (lua_isstring(L, 3)) snprintf(s->token, sizeof(s->token), "%s", lua_tostring(L, 3));
  if (is_tcp) {
    struct sockaddr_storage sa;
    uv_tcp_init(lr_vm_loop(), &s->h.tcp);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa))
      rc = UV_EINVAL;
    else
      rc = uv_tcp_bind(&s->h.tcp, (struct sockaddr *)&sa, 0);
  } else {
    uv_pipe_init(lr_vm_loop(), &s->h.pipe, 0);
    rc = uv_pipe_bind(&s->h.pipe, host);
  }
  /* A deep backlog: a burst of hundreds of workers starting at once all
   * connect to the node within milliseconds. */
  if (rc == 0) rc = uv_listen(&s->h.stream, 4096, on_incoming);
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 2);
  s->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (rc < 0) {
    s->closed = 1;
    uv_close(&s->h.handle, on_server_closed);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s: %s", addr, uv_strerror(rc));
    return 2;
  }
  return 1;
}

static int l_server_port(lua_State *L)
{
  server_t *s = luaL_checkudata(L, 1, SERVER_MT);
  struct sockaddr_storage sa;
  int len = sizeof(sa);
  if (!s->is_tcp || uv_tcp_getsockname(&s->h.tcp, (struct sockaddr *)&sa, &len))
    return 0;
  lua_pushinteger(L, ntohs(((struct sockaddr_in *)&sa)->sin_port));
  return 1;
}

static int l_server_close(lua_State *L)
{
  server_t *s = luaL_checkudata(L, 1, SERVER_MT);
  if (!s->closed) {
    s->closed = 1;
    uv_close(&s->h.handle, on_server_closed);
  }
  return 0;
}

/* -- Timers ---------------------------------------------------------------- */

typedef struct {
  uv_timer_t t;
  int cb_ref, self_ref, closed;
} ltimer_t;

static void on_timer_closed(uv_handle_t *h)
{
  ltimer_t *t = h->data;
  luaL_unref(main_L, LUA_REGISTRYINDEX, t->cb_ref);
  luaL_unref(main_L, LUA_REGISTRYINDEX, t->self_ref);
}

static void timer_close(ltimer_t *t)
{
  if (t->closed) return;
  t->closed = 1;
  uv_close((uv_handle_t *)&t->t, on_timer_closed);
}

static void on_timer(uv_timer_t *h)
{
  ltimer_t *t = h->data;
  lua_State *L = main_L;
  int once = uv_timer_get_repeat(h) == 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->cb_ref);
  if (once) timer_close(t); /* refs drop in the close callback, after this */
  lr_vm_pcall(L, 0, "timer");
}

/* timer(seconds, repeat_seconds|0, fn [, unref]) -> timer with :stop().
 * unref: the timer alone does not keep run() going. */
static int l_timer(lua_State *L)
{
  double after = luaL_checknumber(L, 1), rep = luaL_optnumber(L, 2, 0);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  ltimer_t *t = lua_newuserdata(L, sizeof(*t));
  memset(t, 0, sizeof(*t));
  luaL_getmetatable(L, TIMER_MT);
  lua_setmetatable(L, -2);
  uv_timer_init(lr_vm_loop(), &t->t);
  t->t.data = t;
  lua_pushvalue(L, 3);
  t->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The loop's clock is only updated when it runs: refresh it, or a timer
   * started after busy Lua code would fire early. */
  uv_update_time(lr_vm_loop());
  uv_timer_start(&t->t, on_timer, (uint64_t)(after * 1000 + 0.5),
                 (uint64_t)(rep * 1000 + 0.5));
  if (lua_toboolean(L, 4)) uv_unref((uv_handle_t *)&t->t);
  return 1;
}

static int l_timer_stop(lua_State *L)
{
  timer_close(luaL_checkudata(L, 1, TIMER_MT));
  return 0;
}

/* -- Child processes ------------------------------------------------------- */

typedef struct {
  uv_process_t p;
  uv_pipe_t out[2];
  int nout, open_handles;
  int exit_ref, output_ref, self_ref;
  int exited;
} lproc_t;

static void proc_unpin(lproc_t *pr)
{
  if (--pr->open_handles > 0) return;
  luaL_unref(main_L, LUA_REGISTRYINDEX, pr->exit_ref);
  luaL_unref(main_L, LUA_REGISTRYINDEX, pr->output_ref);
  luaL_unref(main_L, LUA_REGISTRYINDEX, pr->self_ref);
}

static void on_proc_handle_closed(uv_handle_t *h) { proc_unpin(h->data); }

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
  lproc_t *pr = p->data;
  lua_State *L = main_L;
  pr->exited = 1;
  if (pr->exit_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, pr->exit_ref);
    lua_pushinteger(L, (lua_Integer)status);
    lua_pushinteger(L, sig);
    lr_vm_pcall(L, 2, "process exit handler");
  }
  uv_close((uv_handle_t *)p, on_proc_handle_closed);
}

static void on_out_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
  static char slab[65536];
  LR_UNUSED(h);
  LR_UNUSED(hint);
  b->base = slab;
  b->len = sizeof(slab);
}

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
  lproc_t *pr = s->data;
  lua_State *L = main_L;
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_proc_handle_closed);
    return;
  }
  if (n == 0 || pr->output_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, pr->output_ref);
  lua_pushinteger(L, (uv_pipe_t *)s == &pr->out[0] ? 1 : 2);
  lua_pushlstring(L, b->base, (size_t)n);
  lr_vm_pcall(L, 2, "process output handler");
}

/* spawn{file=, args={...}, env={"K=V",...}|nil, cwd=, capture=bool,
 *       on_exit=fn(status, signal), on_output=fn(stream 1|2, data),
 *       detached=bool, log=path} -> pid, proc. With capture, stdout and
 * stderr are pipes read by on_output; with log, they append to that file
 * (a daemon must not hold its starter's terminal or pipe open); otherwise
 * they are inherited. */
static int l_spawn(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "file");
  const char *file = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "args");
  luaL_checktype(L, -1, LUA_TTABLE);
  int nargs = (int)lua_objlen(L, -1);
  char **args = lr_xcalloc((size_t)nargs + 2, sizeof(char *));
  args[0] = (char *)file;
  for (int i = 1; i <= nargs; i++) {
    lua_rawgeti(L, -1, i);
    args[i] = (char *)lua_tostring(L, -1); /* kept alive by the args table */
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "env");
  char **env = NULL;
  if (lua_istable(L, -1)) {
    int ne = (int)lua_objlen(L, -1);
    env = lr_xcalloc((size_t)ne + 1, sizeof(char *));
    for (int i = 1; i <= ne; i++) {
      lua_rawgeti(L, -1, i);
      env[i - 1] = (char *)lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_getfield(L, 1, "cwd");
  const char *cwd = lua_tostring(L, -1);
  lua_getfield(L, 1, "capture");
  int capture = lua_toboolean(L, -1);
  lua_getfield(L, 1, "detached");
  int detached = lua_toboolean(L, -1);
  lua_getfield(L, 1, "log");
  const char *log = lua_tostring(L, -1);
  int logfd = -1;
  if (log && !capture) {
    logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) {
      lr_free(args);
      lr_free(env);
      return luaL_error(L, "cannot open log file %s: %s", log, strerror(errno));
    }
  }

  lproc_t *pr = lua_newuserdata(L, sizeof(*pr));
  memset(pr, 0, sizeof(*pr));
  luaL_getmetatable(L, PROC_MT);
  lua_setmetatable(L, -2);
  pr->exit_ref = pr->output_ref = LUA_NOREF;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  for (int i = 1; i <= 2; i++) {
    if (capture) {
      uv_pipe_init(lr_vm_loop(), &pr->out[i - 1], 0);
      pr->out[i - 1].data = pr;
      stdio[i].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
      stdio[i].data.stream = (uv_stream_t *)&pr->out[i - 1];
    } else {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = logfd >= 0 ? logfd : i;
    }
  }
  uv_process_options_t o;
  memset(&o, 0, sizeof(o));
  o.file = file;
  o.args = args;
  o.env = env;
  o.cwd = cwd;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.exit_cb = on_proc_exit;
  if (detached) o.flags |= UV_PROCESS_DETACHED;
  pr->p.data = pr;
  int rc = uv_spawn(lr_vm_loop(), &pr->p, &o);
  lr_free(args);
  lr_free(env);
  if (logfd >= 0) close(logfd);
  if (rc < 0) {
    pr->open_handles = 1 + (capture ? 2 : 0);
    pr->self_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&pr->p, NULL);
    if (capture)
      for (int i = 0; i < 2; i++) uv_close((uv_handle_t *)&pr->out[i], NULL);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot start %s: %s", file, uv_strerror(rc));
    return 2;
  }
  pr->open_handles = 1;
  lua_getfield(L, 1, "on_exit");
  if (lua_isfunction(L, -1))
    pr->exit_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  if (capture) {
    lua_getfield(L, 1, "on_output");
    if (lua_isfunction(L, -1))
      pr->output_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
      lua_pop(L, 1);
    for (int i = 0; i < 2; i++) {
      pr->open_handles++;
      uv_read_start((uv_stream_t *)&pr->out[i], on_out_alloc, on_out_read);
    }
  }
  lua_pushvalue(L, -1);
  pr->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushinteger(L, pr->p.pid);
  lua_insert(L, -2);
  return 2;
}

static int l_proc_kill(lua_State *L)
{
  lproc_t *pr = luaL_checkudata(L, 1, PROC_MT);
  int sig = (int)luaL_optinteger(L, 2, SIGTERM);
  if (!pr->exited) uv_process_kill(&pr->p, sig);
  return 0;
}

/* -- Signals --------------------------------------------------------------- */

typedef struct {
  uv_signal_t s;
  int cb_ref;
} lsignal_t;

static void on_signal(uv_signal_t *h, int sig)
{
  lsignal_t *s = h->data;
  lua_rawgeti(main_L, LUA_REGISTRYINDEX, s->cb_ref);
  lua_pushinteger(main_L, sig);
  lr_vm_pcall(main_L, 1, "signal handler");
}

/* signal(signum, fn): fn(signum) runs on the loop; the handle does not keep
 * the loop alive. Lives for the whole process. */
static int l_signal(lua_State *L)
{
  int sig = (int)luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lsignal_t *s = lr_xcalloc(1, sizeof(*s));
  uv_signal_init(lr_vm_loop(), &s->s);
  s->s.data = s;
  lua_pushvalue(L, 2);
  s->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_signal_start(&s->s, on_signal, sig);
  uv_unref((uv_handle_t *)&s->s);
  return 0;
}

/* -- Registration ---------------------------------------------------------- */

static void new_mt(lua_State *L, const char *name, const luaL_Reg *m)
{
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_register(L, NULL, m);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void lr_lib_loop_open(lua_State *L)
{
  static const luaL_Reg conn_m[] = {
    {"send", l_conn_send},
    {"on_message", l_conn_on_message}, {"on_close", l_conn_on_close},
    {"close", l_conn_close},     {"is_open", l_conn_is_open},
    {"id", l_conn_id},           {"pending", l_conn_pending},
    {NULL, NULL}};
  static const luaL_Reg server_m[] = {
    {"port", l_server_port}, {"close", l_server_close}, {NULL, NULL}};
  static const luaL_Reg timer_m[] = {{"stop", l_timer_stop}, {NULL, NULL}};
  static const luaL_Reg proc_m[] = {{"kill", l_proc_kill}, {NULL, NULL}};
  static const luaL_Reg f[] = {
    {"run", l_run},       {"run_once", l_run_once}, {"poll", l_poll},
    {"stop", l_stop},     {"flush", l_flush},       {"hrtime", l_hrtime},
    {"connect", l_connect}, {"listen", l_listen},   {"timer", l_timer},
    {"spawn", l_spawn},   {"signal", l_signal},
    {"take_interrupt", l_take_interrupt}, {NULL, NULL}};
  if (!main_L) main_L = L;
  lr_vm_loop();
  new_mt(L, CONN_MT, conn_m);
  luaL_getmetatable(L, CONN_MT);
  lua_pushcfunction(L, l_conn_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  new_mt(L, SERVER_MT, server_m);
  new_mt(L, TIMER_MT, timer_m);
  new_mt(L, PROC_MT, proc_m);
  luaL_register(L, NULL, f);
}
