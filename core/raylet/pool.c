/* The worker pool: worker processes the node starts (a few before any task)
 * and reuses, their output (to the driver of what they run, and to log
 * files), their exit, and the stack of idle ones (the warmest first). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;
#include "raylet/node.h"

/* -- Idle stack ---------------------------------------------------------------- */

void lr_pool_push_idle(lr_node_t *n, lr_worker_t *w)
{
  if (n->nidle == n->idle_cap) {
    n->idle_cap = n->idle_cap ? n->idle_cap * 2 : 16;
    n->idle = lr_xrealloc(n->idle, (size_t)n->idle_cap * sizeof(*n->idle));
  }
  n->idle[n->nidle++] = w;
}

lr_worker_t *lr_pool_take_idle(lr_node_t *n)
{
  while (n->nidle > 0) {
    lr_worker_t *w = n->idle[--n->nidle];
    if (w->state == LR_W_IDLE) return w;
  }
  return NULL;
}

static void idle_remove(lr_node_t *n, lr_worker_t *w)
{
  int k = 0;
  for (int i = 0; i < n->nidle; i++)
    if (n->idle[i] != w) n->idle[k++] = n->idle[i];
  n->nidle = k;
}

/* -- Output ---------------------------------------------------------------------- */

/* One or more whole lines a worker printed on stream (1 stdout, 2 stderr). */
static void flush_line(lr_worker_t *w, int stream, const char *text, size_t len)
{
  lr_node_t *n = w->node;
  lr_job_t *j = lr_node_job(n, w->job);
  /* A task lent to a submitter on another node: its job's driver is not
   * here, so the lines go to that submitter, which prints them (and its own
   * node takes them on to the driver). */
  lr_client_t *remote = !j && w->lease && w->lease->owner && !w->lease->owner->gone &&
                                w->lease->owner->conn.h.handle.type == UV_TCP
                            ? w->lease->owner
                            : NULL;
  if ((j && j->driver && !j->driver->gone) || remote) {
    if (j && !j->log_to_driver) return;
    lr_m_out_t m = LR_MSG_INIT(OUT);
    const char *name = w->labels[stream] ? w->labels[stream] : w->label ? w->label : "worker";
    LR_SET_CSTR(m.name, name);
    LR_SET_INT(m.pid, w->pid);
    LR_SET_STR(m.text, text, len);
    LR_SET_INT(m.stream, stream);
    lr_node_send(remote ? remote : j->driver, &m);
  } else if (stream == 2) {
    /* No driver to tell (a worker failing before its first task): the
     * node's own stderr (the terminal, or node.log for `lray start`). */
    fprintf(stderr, "(worker pid=%lld) %.*s", (long long)w->pid, (int)len, text);
  }
}

void lr_pool_flush_partial(lr_worker_t *w)
{
  for (int s = 1; s <= 2; s++) {
    lr_buf_t *b = &w->partial[s];
    if (!b->len) continue;
    lr_buf_putc(b, '\n');
    flush_line(w, s, b->data, b->len);
    lr_buf_reset(b);
  }
}

static void on_output(lr_worker_t *w, int stream, const char *data, size_t len);

/* Reads what w's pipes hold now, without waiting (its driver is leaving:
 * what its tasks printed before their results must reach it first, even
 * when the loop has not come round to those pipes yet). */
static void drain(lr_worker_t *w)
{
  char buf[65536];
  for (int i = 0; i < 2; i++) {
    uv_os_fd_t fd;
    if (uv_is_closing((uv_handle_t *)&w->out[i]) || uv_fileno((uv_handle_t *)&w->out[i], &fd))
      continue;
    for (int k = 0; k < 64; k++) { /* at most 4 MiB: the rest comes as usual */
      ssize_t got = read(fd, buf, sizeof(buf));
      if (got <= 0) break;
      on_output(w, i + 1, buf, (size_t)got);
    }
  }
}

void lr_pool_flush_output(lr_node_t *n, const char *job, const lr_client_t *owner)
{
  for (lr_worker_t *w = n->workers; w; w = w->hh.next)
    if ((job[0] && !strcmp(w->job, job)) || (owner && w->lease && w->lease->owner == owner)) {
      if (!w->exited) drain(w);
      lr_pool_flush_partial(w);
    }
}

/* A line left unfinished (a prompt, io.write without "\n") still shows up
 * after a moment, under the name of what printed it. */
static void on_partial_timer(uv_timer_t *t)
{
  lr_pool_flush_partial(t->data);
}

static const char MARK[] = "lray:label "; /* after a NUL byte, up to "\n" */

/* A leased worker writes "\0lray:label NAME\n" to stdout and stderr before
 * the output of a task of another name: the lines after it are that task's. */
static void on_output(lr_worker_t *w, int stream, const char *data, size_t len)
{
  lr_buf_t *b = &w->partial[stream];
  const size_t ml = sizeof(MARK) - 1;
  lr_ev_output(w->node, w, stream, data, len);
  lr_buf_append(b, data, len);
  size_t pos = 0, limit = SIZE_MAX; /* limit: where a mark may be cut off */
  while (pos < b->len) {
    char *nul = memchr(b->data + pos, 0, b->len - pos);
    if (!nul) break;
    size_t at = (size_t)(nul - b->data);
    size_t rest = b->len - at - 1;
    if (memcmp(nul + 1, MARK, rest < ml ? rest : ml)) { /* a NUL, not a mark */
      pos = at + 1;
      continue;
    }
    char *nl = rest > ml ? memchr(nul + 1 + ml, '\n', rest - ml) : NULL;
    if (!nl) {
      limit = at;
      break;
    }
    if (at > 0) { /* what came before the mark belongs to the last task */
      if (b->data[at - 1] != '\n') {
        lr_buf_t before;
        lr_buf_init(&before);
        lr_buf_append(&before, b->data, at);
        lr_buf_putc(&before, '\n');
        flush_line(w, stream, before.data, before.len);
        lr_buf_free(&before);
      } else {
        flush_line(w, stream, b->data, at);
      }
    }
    lr_free(w->labels[stream]);
    size_t nlen = (size_t)(nl - (nul + 1 + ml));
    w->labels[stream] = lr_xmalloc(nlen + 1);
    memcpy(w->labels[stream], nul + 1 + ml, nlen);
    w->labels[stream][nlen] = 0;
    size_t consumed = (size_t)(nl - b->data) + 1;
    memmove(b->data, b->data + consumed, b->len - consumed);
    b->len -= consumed;
    pos = 0;
  }
  /* Whole lines go now, up to where a mark may still be arriving. */
  size_t end = limit < b->len ? limit : b->len, last = 0;
  for (size_t i = end; i > 0; i--)
    if (b->data[i - 1] == '\n') {
      last = i;
      break;
    }
  if (last) {
    flush_line(w, stream, b->data, last);
    memmove(b->data, b->data + last, b->len - last);
    b->len -= last;
  }
  if (b->len && w->timer_open) uv_timer_start(&w->partial_timer, on_partial_timer, 200, 0);
}

/* -- Processes ------------------------------------------------------------------ */

static void maybe_free(lr_worker_t *w)
{
  if (w->open_handles > 0 || w->client || !w->exited || w->timer_open) return;
  for (int s = 0; s < 3; s++) {
    lr_free(w->labels[s]);
    lr_buf_free(&w->partial[s]);
  }
  lr_free(w->label);
  lr_strset_t *e, *tmp;
  HASH_ITER(hh, w->jobs, e, tmp) {
    HASH_DEL(w->jobs, e);
    lr_free(e->key);
    lr_free(e);
  }
  lr_free(w);
}

static void on_handle_closed(uv_handle_t *h)
{
  lr_worker_t *w = h->data;
  w->open_handles--;
  maybe_free(w);
}

static void on_timer_closed(uv_handle_t *h)
{
  lr_worker_t *w = h->data;
  w->timer_open = 0;
  maybe_free(w);
}

static void on_out_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
  static char slab[65536];
  LR_UNUSED(h);
  LR_UNUSED(hint);
  b->base = slab;
  b->len = sizeof(slab);
}

static void on_out_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
  lr_worker_t *w = s->data;
  if (nread < 0) {
    uv_close((uv_handle_t *)s, on_handle_closed);
    return;
  }
  if (nread > 0) on_output(w, (uv_pipe_t *)s == &w->out[0] ? 1 : 2, b->base, (size_t)nread);
}

/* A worker process ended (crash, kill, or cancel with force). Its submitter
 * sees the connection close and retries or fails its tasks. */
static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
  lr_worker_t *w = p->data;
  lr_node_t *n = w->node;
  if (w->state == LR_W_STARTING) n->starting--;
  w->state = LR_W_DEAD;
  w->exited = 1;
  w->exit_status = status;
  w->exit_signal = sig;
  if (w->in_table) {
    HASH_DEL(n->workers, w);
    w->in_table = 0;
    n->nworkers--;
  }
  idle_remove(n, w);
  if (w->blocked) {
    w->blocked = 0;
    n->nblocked--;
  }
  if (w->lease) lr_lease_end(n, w->lease);
  unlink(w->addr + 5);
  lr_place_worker_exited(n, w);
  lr_ev_worker_exited(n, w);
  uv_close((uv_handle_t *)p, on_handle_closed);
  if (w->timer_open) uv_close((uv_handle_t *)&w->partial_timer, on_timer_closed);
  lr_dispatch(n);
}

lr_worker_t *lr_pool_spawn(lr_node_t *n, lr_placement_t *for_actor)
{
  if (n->nworkers >= n->max_workers) return NULL;
  lr_worker_t *w = lr_xcalloc(1, sizeof(*w));
  w->node = n;
  snprintf(w->wid, sizeof(w->wid), "w%llu", (unsigned long long)++n->next_wid);
  w->state = LR_W_STARTING;
  w->for_actor = for_actor;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  for (int i = 0; i < 2; i++) {
    uv_pipe_init(n->loop, &w->out[i], 0);
    w->out[i].data = w;
    stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[i + 1].data.stream = (uv_stream_t *)&w->out[i];
  }
  char *args[9] = {n->exe, "_worker", "--node", n->sock, "--wid", w->wid, NULL};
  char host[300] = "", tokenv[LR_AUTH_TOKEN_MAX_HEX + 32] = "";
  char **env = NULL;
  if (n->tcp_on && n->token[0]) {
    /* Submitters on other nodes reach it over TCP, on the node's address,
     * and prove the token; the token comes in its environment (readable by
     * this user only), not its command line (readable by all). */
    snprintf(host, sizeof(host), "%s", n->tcp_addr);
    char *colon = strrchr(host, ':');
    if (colon) *colon = 0;
    args[6] = "--host";
    args[7] = host;
    snprintf(tokenv, sizeof(tokenv), "LRAY_NODE_TOKEN=%s", n->token);
    size_t ne = 0;
    while (environ[ne]) ne++;
    env = lr_xcalloc(ne + 2, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < ne; i++)
      if (strncmp(environ[i], "LRAY_NODE_TOKEN=", 16)) env[k++] = environ[i];
    env[k++] = tokenv;
  }
  uv_process_options_t o;
  memset(&o, 0, sizeof(o));
  o.file = n->exe;
  o.args = args;
  o.env = env;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.exit_cb = on_proc_exit;
  w->proc.data = w;
  int rc = uv_spawn(n->loop, &w->proc, &o);
  lr_free(env);
  if (rc < 0) {
    fprintf(stderr, "lray node: cannot start %s: %s\n", n->exe, uv_strerror(rc));
    w->exited = 1;
    w->open_handles = 3;
    uv_close((uv_handle_t *)&w->proc, on_handle_closed);
    for (int i = 0; i < 2; i++) uv_close((uv_handle_t *)&w->out[i], on_handle_closed);
    return NULL;
  }
  w->open_handles = 3;
  for (int i = 0; i < 2; i++) uv_read_start((uv_stream_t *)&w->out[i], on_out_alloc, on_out_read);
  uv_timer_init(n->loop, &w->partial_timer);
  w->partial_timer.data = w;
  w->timer_open = 1;
  w->pid = w->proc.pid;
  lr_memmon_worker_role(w, 0);
  snprintf(w->addr, sizeof(w->addr), "unix:%s/w-%s.sock", n->session_dir, w->wid);
  HASH_ADD_STR(n->workers, wid, w);
  w->in_table = 1;
  n->nworkers++;
  n->starting++;
  return w;
}

void lr_pool_hello(lr_node_t *n, lr_worker_t *w, lr_client_t *c)
{
  w->client = c;
  c->worker = w;
  if (w->state == LR_W_STARTING) n->starting--;
  w->state = LR_W_IDLE;
  if (lr_place_on_hello(n, w)) {
    lr_dispatch(n);
    return;
  }
  lr_pool_push_idle(n, w);
  lr_dispatch(n);
}

void lr_pool_introduce_job(lr_node_t *n, lr_worker_t *w, const char *job)
{
  lr_job_t *j = lr_node_job(n, job);
  lr_strset_t *e;
  if (!j || !w->client) return;
  HASH_FIND_STR(w->jobs, job, e);
  if (e) return;
  e = lr_xcalloc(1, sizeof(*e));
  e->key = lr_xstrdup(job);
  HASH_ADD_KEYPTR(hh, w->jobs, e->key, strlen(e->key), e);
  lr_m_job_t m = LR_MSG_INIT(JOB);
  LR_SET_CSTR(m.job, job);
  if (j->path) LR_SET_CSTR(m.path, j->path);
  if (j->cpath) LR_SET_CSTR(m.cpath, j->cpath);
  LR_SET_CSTR(m.namespace, j->ns);
  lr_node_send(w->client, &m);
}

void lr_pool_kill(lr_worker_t *w, int sig)
{
  if (!w->exited) uv_process_kill(&w->proc, sig);
}

/* A client (a worker's connection) closed: the worker may be freed now. */
void lr_pool_client_gone(lr_worker_t *w)
{
  w->client = NULL;
  maybe_free(w);
}

int lr_pool_count_task_workers(lr_node_t *n)
{
  int k = 0;
  for (lr_worker_t *w = n->workers; w; w = w->hh.next)
    if (!w->actor && w->state != LR_W_DEAD && !w->blocked) k++;
  return k;
}

/* Workers are started only for leases the scheduler already granted, so
 * the resources are the real limit; this soft bound only keeps bursts of
 * fractional-CPU tasks from forking too many processes at once. Workers
 * blocked in get/wait do not count (as in Ray): a task they wait for must
 * be able to start, however deep the recursion. */
int lr_pool_limit(lr_node_t *n)
{
  const lr_res_pool_t *p = lr_sched_pool(n->sched);
  int64_t cpu = lr_res_pool_total(p, LR_RES_CPU) / LR_RES_UNIT;
  return (int)((cpu > 1 ? cpu : 1) * 4 + 8);
}

void lr_pool_prestart(lr_node_t *n, int count)
{
  for (int i = 0; i < count; i++) lr_pool_spawn(n, NULL);
}
