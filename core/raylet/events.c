/* The node's memory of what happened, for observability (`lray list`,
 * `lray logs`, `lray timeline`, the dashboard): a record per task that
 * ended (the last LR_EV_MAX_DONE), the jobs that came and went, each
 * worker's output in a log file of the session, and the execution spans
 * workers report. Tasks go from their submitter straight to a leased
 * worker, so the node learns of them from the workers' spans once they
 * ended, and of the ones under way from its leases (a lease asked for is a
 * PENDING task, a worker lent is RUNNING the task it last named). Tasks
 * still queued at their submitter are not seen. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/json.h"
#include "raylet/node.h"

#define LR_EV_MAX_DONE 10000  /* ended task records kept */
#define LR_EV_MAX_SPANS 100000 /* execution spans kept for the timeline */
#define LR_EV_MAX_JOBS 1000    /* ended jobs kept */

enum { ST_FINISHED, ST_FAILED, ST_CANCELLED, ST_N };
static const char *const state_names[ST_N] = {"FINISHED", "FAILED", "CANCELLED"};

typedef struct {
  char *tid, *name, *job, *type, *wid, *aid;
  int state;
  int64_t pid;
  double submitted, started, ended;
} done_t;

typedef struct {
  char *kind, *name, *id, *wid, *aid;
  int failed;
  int64_t pid;
  double start, dur;
} span_t;

typedef struct ev_job_s {
  char id[LR_ID_MAX];
  char *ns;
  int64_t pid;
  int alive;
  double start, end;
  UT_hash_handle hh;
} ev_job_t;

typedef struct lr_events_s {
  done_t *done; /* ring */
  size_t done_head, ndone;
  span_t *spans; /* ring */
  size_t span_head, nspans;
  uint64_t ended[ST_N];
  ev_job_t *jobs;
  char *ended_jobs[LR_EV_MAX_JOBS]; /* ring of ended job ids */
  size_t ended_head;
  char log_dir[PATH_MAX];
} ev_t;

static char *dup_or_null(const char *s) { return s && *s ? lr_xstrdup(s) : NULL; }

static char *dup_pstr(const lr_pstr_t *s)
{
  char *r = lr_xmalloc(s->n + 1);
  memcpy(r, s->p, s->n);
  r[s->n] = 0;
  return r;
}

void lr_ev_init(lr_node_t *n)
{
  ev_t *e = lr_xcalloc(1, sizeof(*e));
  e->done = lr_xcalloc(LR_EV_MAX_DONE, sizeof(done_t));
  e->spans = lr_xcalloc(LR_EV_MAX_SPANS, sizeof(span_t));
  snprintf(e->log_dir, sizeof(e->log_dir), "%s/logs", n->session_dir);
  n->ev = e;
}

/* -- Tasks ------------------------------------------------------------------------- */

static void push_done(ev_t *e, const done_t *d)
{
  done_t *slot = &e->done[e->done_head];
  if (e->ndone >= LR_EV_MAX_DONE) {
    lr_free(slot->tid);
    lr_free(slot->name);
    lr_free(slot->job);
    lr_free(slot->type);
    lr_free(slot->wid);
    lr_free(slot->aid);
  }
  *slot = *d;
  e->done_head = (e->done_head + 1) % LR_EV_MAX_DONE;
  e->ndone++;
  e->ended[d->state]++;
}

typedef struct {
  const char *tid, *name, *job, *type, *state, *wid, *aid;
  int64_t pid;
  double submitted, started, ended;
} task_rec_t;

static int cmp_task(const void *a, const void *b)
{
  const task_rec_t *x = a, *y = b;
  if (x->submitted != y->submitted) return x->submitted < y->submitted ? -1 : 1;
  return strcmp(x->tid, y->tid);
}

static void task_list(lr_node_t *n, lr_json_t *j)
{
  ev_t *e = n->ev;
  size_t nd = e->ndone < LR_EV_MAX_DONE ? e->ndone : LR_EV_MAX_DONE;
  size_t nl = HASH_CNT(hh, n->leases);
  task_rec_t *r = lr_xcalloc(nd + nl + 1, sizeof(*r));
  size_t k = 0;
  for (size_t i = 0; i < nd; i++) {
    done_t *d = &e->done[i];
    r[k++] = (task_rec_t){d->tid, d->name, d->job, d->type, state_names[d->state], d->wid,
                          d->aid, d->pid, d->submitted, d->started, d->ended};
  }
  double offset = lr_node_time() - lr_node_now();
  for (lr_lease_t *L = n->leases; L; L = L->hh.next) {
    lr_worker_t *w = L->worker;
    r[k++] = (task_rec_t){L->lid, w && w->labels[1] ? w->labels[1] : L->name, L->job, "task",
                          w ? "RUNNING" : "PENDING", w ? w->wid : NULL, NULL,
                          w ? w->pid : 0, L->submitted + offset, 0, 0};
  }
  qsort(r, k, sizeof(*r), cmp_task);
  for (size_t i = 0; i < k; i++) {
    lr_json_obj(j);
    lr_json_kstr(j, "task_id", r[i].tid);
    lr_json_kstr_opt(j, "name", r[i].name);
    lr_json_kstr_opt(j, "job_id", r[i].job && *r[i].job ? r[i].job : NULL);
    lr_json_kstr(j, "state", r[i].state);
    lr_json_kstr(j, "type", r[i].type);
    lr_json_kstr(j, "node_id", n->node_id);
    if (r[i].pid) lr_json_kint(j, "pid", r[i].pid);
    lr_json_kstr_opt(j, "worker_id", r[i].wid);
    lr_json_kstr_opt(j, "actor_id", r[i].aid);
    lr_json_knum(j, "submitted", r[i].submitted);
    if (r[i].started) lr_json_knum(j, "started", r[i].started);
    if (r[i].ended) lr_json_knum(j, "ended", r[i].ended);
    lr_json_end(j);
  }
  lr_free(r);
}

/* -- Jobs ------------------------------------------------------------------------- */

void lr_ev_job_started(lr_node_t *n, const lr_job_t *jb)
{
  ev_t *e = n->ev;
  ev_job_t *r = lr_xcalloc(1, sizeof(*r));
  snprintf(r->id, sizeof(r->id), "%s", jb->id);
  r->ns = lr_xstrdup(jb->ns);
  r->pid = jb->pid;
  r->alive = 1;
  r->start = jb->started;
  HASH_ADD_STR(e->jobs, id, r);
}

void lr_ev_job_ended(lr_node_t *n, const char *job)
{
  ev_t *e = n->ev;
  ev_job_t *r;
  HASH_FIND_STR(e->jobs, job, r);
  if (!r) return;
  r->alive = 0;
  r->end = lr_node_time();
  char *old = e->ended_jobs[e->ended_head];
  if (old) {
    ev_job_t *o;
    HASH_FIND_STR(e->jobs, old, o);
    if (o) {
      HASH_DEL(e->jobs, o);
      lr_free(o->ns);
      lr_free(o);
    }
    lr_free(old);
  }
  e->ended_jobs[e->ended_head] = lr_xstrdup(job);
  e->ended_head = (e->ended_head + 1) % LR_EV_MAX_JOBS;
}

static int cmp_job(const void *a, const void *b)
{
  return strcmp((*(ev_job_t *const *)a)->id, (*(ev_job_t *const *)b)->id);
}

static void job_list(lr_node_t *n, lr_json_t *j)
{
  ev_t *e = n->ev;
  size_t k = HASH_COUNT(e->jobs), i = 0;
  ev_job_t **v = lr_xcalloc(k + 1, sizeof(*v));
  for (ev_job_t *r = e->jobs; r; r = r->hh.next) v[i++] = r;
  qsort(v, k, sizeof(*v), cmp_job);
  for (i = 0; i < k; i++) {
    lr_json_obj(j);
    lr_json_kstr(j, "job_id", v[i]->id);
    lr_json_kstr(j, "namespace", v[i]->ns);
    if (v[i]->pid) lr_json_kint(j, "pid", v[i]->pid);
    lr_json_kbool(j, "alive", v[i]->alive);
    lr_json_knum(j, "start_time", v[i]->start);
    if (!v[i]->alive) lr_json_knum(j, "end_time", v[i]->end);
    lr_json_end(j);
  }
  lr_free(v);
}

/* -- Worker logs ---------------------------------------------------------------------- */
/* Each worker's stdout and stderr go, as they arrive, to
 * <session>/logs/worker-<pid>.out and .err, unbuffered: nothing printed is
 * lost when the driver (or the node) dies. */

void lr_ev_output(lr_node_t *n, lr_worker_t *w, int stream, const char *data, size_t len)
{
  ev_t *e = n->ev;
  if (!w->logf[stream]) {
    char path[PATH_MAX + 64];
    mkdir(e->log_dir, 0700);
    snprintf(path, sizeof(path), "%s/worker-%lld.%s", e->log_dir, (long long)w->pid,
             stream == 2 ? "err" : "out");
    w->logf[stream] = fopen(path, "a");
    if (!w->logf[stream]) return;
    setvbuf(w->logf[stream], NULL, _IONBF, 0);
  }
  fwrite(data, 1, len, w->logf[stream]);
}

void lr_ev_worker_exited(lr_node_t *n, lr_worker_t *w)
{
  LR_UNUSED(n);
  for (int s = 1; s <= 2; s++)
    if (w->logf[s]) {
      fclose(w->logf[s]);
      w->logf[s] = NULL;
    }
}

void lr_ev_remove_logs(lr_node_t *n)
{
  ev_t *e = n->ev;
  if (!e) return;
  DIR *d = opendir(e->log_dir);
  if (!d) return;
  struct dirent *de;
  char path[PATH_MAX + 300];
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    snprintf(path, sizeof(path), "%s/%s", e->log_dir, de->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(e->log_dir);
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void log_list(lr_node_t *n, lr_json_t *j)
{
  ev_t *e = n->ev;
  DIR *d = opendir(e->log_dir);
  if (!d) return;
  char **names = NULL;
  size_t k = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    long long pid;
    char ext[8];
    if (sscanf(de->d_name, "worker-%lld.%7[a-z]", &pid, ext) != 2) continue;
    names = lr_xrealloc(names, (k + 1) * sizeof(char *));
    names[k++] = lr_xstrdup(de->d_name);
  }
  closedir(d);
  qsort(names, k, sizeof(char *), cmp_str);
  char path[PATH_MAX + 300];
  for (size_t i = 0; i < k; i++) {
    long long pid = 0;
    char ext[8] = "";
    sscanf(names[i], "worker-%lld.%7[a-z]", &pid, ext);
    lr_worker_t *live = NULL;
    for (lr_worker_t *w = n->workers; w; w = w->hh.next)
      if (w->pid == pid) live = w;
    snprintf(path, sizeof(path), "%s/%s", e->log_dir, names[i]);
    lr_json_obj(j);
    lr_json_kstr(j, "file", path);
    lr_json_kint(j, "pid", pid);
    lr_json_kstr(j, "stream", !strcmp(ext, "err") ? "stderr" : "stdout");
    lr_json_kstr(j, "node_id", n->node_id);
    if (live) lr_json_kstr(j, "worker_id", live->wid);
    lr_json_kbool(j, "alive", live != NULL);
    if (live && live->actor) lr_json_kstr(j, "actor_id", live->actor->aid);
    lr_json_end(j);
    lr_free(names[i]);
  }
  lr_free(names);
}

/* -- Spans ------------------------------------------------------------------------------ */

void lr_ev_spans(lr_node_t *n, lr_client_t *c, const lr_m_spans_t *m)
{
  ev_t *e = n->ev;
  lr_worker_t *w = c->worker;
  const char *aid = w && w->actor ? w->actor->aid : NULL;
  uint32_t k = m->start.n;
  if (m->kind.n != k || m->name.n != k || m->id.n != k || m->dur.n != k || m->failed.n != k)
    return;
  for (uint32_t i = 0; i < k; i++) {
    span_t *s = &e->spans[e->span_head];
    if (e->nspans >= LR_EV_MAX_SPANS) {
      lr_free(s->kind);
      lr_free(s->name);
      lr_free(s->id);
      lr_free(s->wid);
      lr_free(s->aid);
    }
    double st = m->start.items[i].v.d, du = m->dur.items[i].v.d;
    int failed = m->failed.items[i].v.b;
    s->kind = dup_pstr(&m->kind.items[i].v.s);
    s->name = dup_pstr(&m->name.items[i].v.s);
    s->id = dup_pstr(&m->id.items[i].v.s);
    s->wid = w ? lr_xstrdup(w->wid) : NULL;
    s->aid = dup_or_null(aid);
    s->pid = w ? w->pid : 0;
    s->failed = failed;
    s->start = st;
    s->dur = du;
    e->span_head = (e->span_head + 1) % LR_EV_MAX_SPANS;
    e->nspans++;
    /* Tasks and actor calls go straight from caller to worker: the node
     * learns of them only here, once they ended. */
    done_t d = {dup_pstr(&m->id.items[i].v.s), dup_pstr(&m->name.items[i].v.s),
                w && w->job[0] ? lr_xstrdup(w->job) : NULL, dup_pstr(&m->kind.items[i].v.s),
                w ? lr_xstrdup(w->wid) : NULL, dup_or_null(aid),
                failed ? ST_FAILED : ST_FINISHED, w ? w->pid : 0, st, st, st + du};
    push_done(e, &d);
  }
}

static int cmp_span(const void *a, const void *b)
{
  const span_t *x = *(span_t *const *)a, *y = *(span_t *const *)b;
  return x->start < y->start ? -1 : x->start > y->start;
}

static void span_list(lr_node_t *n, const lr_m_list_t *m, lr_json_t *j)
{
  ev_t *e = n->ev;
  size_t ns = e->nspans < LR_EV_MAX_SPANS ? e->nspans : LR_EV_MAX_SPANS, k = 0;
  span_t **v = lr_xcalloc(ns + 1, sizeof(*v));
  for (size_t i = 0; i < ns; i++) {
    span_t *s = &e->spans[i];
    if (!m->since.n || s->start + s->dur > m->since.v.d) v[k++] = s;
  }
  qsort(v, k, sizeof(*v), cmp_span);
  for (size_t i = 0; i < k; i++) {
    span_t *s = v[i];
    lr_json_obj(j);
    lr_json_kstr(j, "kind", s->kind);
    lr_json_kstr(j, "name", s->name);
    lr_json_kstr(j, "id", s->id);
    lr_json_knum(j, "start", s->start);
    lr_json_knum(j, "dur", s->dur);
    if (s->failed) lr_json_kbool(j, "failed", 1);
    if (s->pid) lr_json_kint(j, "pid", s->pid);
    lr_json_kstr_opt(j, "worker_id", s->wid);
    lr_json_kstr_opt(j, "actor_id", s->aid);
    lr_json_kstr(j, "node_id", n->node_id);
    lr_json_end(j);
  }
  lr_free(v);
}

/* -- Objects, workers, counters ------------------------------------------------------------ */

/* Its size wherever it is: inline, in the store, or spilled to disk. */
static int64_t obj_size(const lr_obj_t *o)
{
  if (o->has_data) return (int64_t)o->data_len;
  return o->shm_len > 0 ? o->shm_len : o->spilled_len > 0 ? o->spilled_len : 0;
}

static int cmp_obj(const void *a, const void *b)
{
  const lr_obj_t *x = *(lr_obj_t *const *)a, *y = *(lr_obj_t *const *)b;
  int64_t sx = obj_size(x), sy = obj_size(y);
  if (sx != sy) return sx > sy ? -1 : 1;
  return strcmp(x->id, y->id);
}

static void object_list(lr_node_t *n, lr_json_t *j)
{
  size_t k = HASH_COUNT(n->objects), i = 0;
  lr_obj_t **v = lr_xcalloc(k + 1, sizeof(*v));
  for (lr_obj_t *o = n->objects; o; o = o->hh.next) v[i++] = o;
  qsort(v, k, sizeof(*v), cmp_obj);
  for (i = 0; i < k; i++) {
    lr_obj_t *o = v[i];
    int64_t size = obj_size(o);
    lr_json_obj(j);
    lr_json_kstr(j, "object_id", o->id);
    lr_json_kbool(j, "ready", o->st != LR_O_PENDING);
    lr_json_kint(j, "count", o->count);
    lr_json_kint(j, "size", size);
    lr_json_kstr(j, "where", o->shm_len >= 0 ? "shm" : o->spilled_len >= 0 ? "disk" : "inline");
    lr_json_kstr(j, "node_id", n->node_id);
    lr_json_kstr_opt(j, "call_site", o->call_site);
    if (o->owner_pid) lr_json_kint(j, "owner_pid", o->owner_pid);
    lr_json_kstr(j, "state", o->st == LR_O_ERR ? "ERROR" : o->st == LR_O_OK ? "READY" : "PENDING");
    lr_json_end(j);
  }
  lr_free(v);
}

static const char *worker_state(int st)
{
  switch (st) {
  case LR_W_STARTING: return "starting";
  case LR_W_IDLE: return "idle";
  case LR_W_LEASED: return "leased";
  case LR_W_ACTOR: return "actor";
  default: return "dead";
  }
}

static void worker_list(lr_node_t *n, lr_json_t *j)
{
  for (lr_worker_t *w = n->workers; w; w = w->hh.next) {
    lr_json_obj(j);
    lr_json_kstr(j, "worker_id", w->wid);
    lr_json_kint(j, "pid", w->pid);
    lr_json_kstr(j, "state", worker_state(w->state));
    lr_json_end(j);
  }
}

static void counters(lr_node_t *n, lr_json_t *j)
{
  ev_t *e = n->ev;
  for (int s = 0; s < ST_N; s++) {
    lr_json_obj(j);
    lr_json_kstr(j, "what", "tasks_ended");
    lr_json_kstr(j, "state", state_names[s]);
    lr_json_kint(j, "count", (int64_t)e->ended[s]);
    lr_json_end(j);
  }
}

int lr_ev_list(lr_node_t *n, const lr_m_list_t *m, lr_buf_t *json)
{
  lr_json_t j;
  lr_json_init(&j, json);
  lr_json_obj(&j);
  lr_json_key(&j, "items");
  lr_json_arr(&j);
  if (lr_pstreq(&m->what, "tasks")) task_list(n, &j);
  else if (lr_pstreq(&m->what, "jobs")) job_list(n, &j);
  else if (lr_pstreq(&m->what, "spans")) span_list(n, m, &j);
  else if (lr_pstreq(&m->what, "counters")) counters(n, &j);
  else if (lr_pstreq(&m->what, "objects")) object_list(n, &j);
  else if (lr_pstreq(&m->what, "logs")) log_list(n, &j);
  else if (lr_pstreq(&m->what, "workers")) worker_list(n, &j);
  else return -1;
  lr_json_end(&j);
  lr_json_end(&j);
  return 0;
}
