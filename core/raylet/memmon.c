/* Memory pressure: who the kernel's OOM killer picks, and a monitor that
 * acts before it has to.
 *
 * oom_score_adj: the node lowers its own (LR_OOM_NODE, when allowed: it
 * needs CAP_SYS_RESOURCE; otherwise it stays as it was) and raises its task
 * workers' to LR_OOM_TASK (the kernel's first pick), actor workers to
 * LR_OOM_ACTOR (in between: a restart loses their state). Raising a child's
 * score needs no privilege.
 *
 * The monitor (as Ray's memory monitor): every LRAY_MEMORY_MONITOR_REFRESH_MS
 * (250; 0 turns it off) it reads how much memory is used; at or above
 * LRAY_MEMORY_USAGE_THRESHOLD (0.95) of the limit it kills the worker of the
 * newest granted task lease whose tasks may be retried (lease.retriable), else
 * the newest of any (never an actor, never the node), one at a time:
 * not again until that process is gone. Before the kill the lease's
 * submitter is told (lease_oom), so it retries the task later (an OOM kill
 * does not use up max_retries, as in Ray) or, when the task has
 * max_retries = 0, fails it with WorkerCrashedError naming memory pressure;
 * the job's driver gets a warning.
 *
 * The limit is the machine's (MemTotal, used = MemTotal - MemAvailable) or
 * the node's cgroup v2 memory.max when lower (used = memory.current minus
 * inactive file pages). For tests, LRAY_MEMORY_LIMIT_BYTES sets a limit and
 * the usage becomes the resident memory of the node and its workers only, so
 * a spec can create pressure without exhausting the machine.
 *
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "raylet/node.h"

typedef struct lr_memmon_s {
  uv_timer_t timer, kill_timer;
  int on;
  uint64_t fake_limit;  /* LRAY_MEMORY_LIMIT_BYTES, or 0 */
  double threshold;     /* of the limit */
  char cg[PATH_MAX];    /* the node's cgroup v2 directory, or "" */
  char victim[LR_ID_MAX]; /* wid of the worker being killed, or "" */
  uint64_t kills;
} lr_memmon_t;

/* -- oom_score_adj ---------------------------------------------------------- */

int lr_memmon_set_score(int64_t pid, int score)
{
  char path[64], val[16];
  if (pid > 0) snprintf(path, sizeof(path), "/proc/%lld/oom_score_adj", (long long)pid);
  else snprintf(path, sizeof(path), "/proc/self/oom_score_adj");
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int len = snprintf(val, sizeof(val), "%d", score);
  int rc = write(fd, val, (size_t)len) == len ? 0 : -errno;
  close(fd);
  return rc;
}

void lr_memmon_worker_role(lr_worker_t *w, int actor)
{
  /* Only processes this node started (fakes in the C tests have none). */
  if (w->proc.pid > 0 && !w->exited)
    lr_memmon_set_score(w->proc.pid, actor ? LR_OOM_ACTOR : LR_OOM_TASK);
}

/* -- Reading memory ----------------------------------------------------------- */

static int read_file(const char *path, char *buf, size_t len)
{
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  size_t got = fread(buf, 1, len - 1, f);
  fclose(f);
  buf[got] = 0;
  return (int)got;
}

static uint64_t field_kb(const char *text, const char *name)
{
  const char *p = strstr(text, name);
  return p ? strtoull(p + strlen(name), NULL, 10) * 1024 : 0;
}

static uint64_t rss_of(int64_t pid)
{
  char path[64], buf[128];
  if (pid > 0) snprintf(path, sizeof(path), "/proc/%lld/statm", (long long)pid);
  else snprintf(path, sizeof(path), "/proc/self/statm");
  if (read_file(path, buf, sizeof(buf)) <= 0) return 0;
  unsigned long long size = 0, res = 0;
  if (sscanf(buf, "%llu %llu", &size, &res) != 2) return 0;
  return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void find_cgroup(lr_memmon_t *mm)
{
  char buf[PATH_MAX];
  mm->cg[0] = 0;
  if (read_file("/proc/self/cgroup", buf, sizeof(buf)) <= 0) return;
  char *p = strstr(buf, "0::");
  if (!p) return;
  p += 3;
  char *nl = strchr(p, '\n');
  if (nl) *nl = 0;
  snprintf(mm->cg, sizeof(mm->cg), "/sys/fs/cgroup%s", strcmp(p, "/") ? p : "");
}

int lr_memmon_usage(lr_node_t *n, uint64_t *used, uint64_t *limit)
{
  lr_memmon_t *mm = n->memmon;
  *used = *limit = 0;
  if (mm && mm->fake_limit) {
    *limit = mm->fake_limit;
    *used = rss_of(0);
    for (lr_worker_t *w = n->workers; w; w = w->hh.next)
      if (!w->exited && w->proc.pid > 0) *used += rss_of(w->pid);
    return 0;
  }
  char buf[4096], path[PATH_MAX + 32];
  if (read_file("/proc/meminfo", buf, sizeof(buf)) <= 0) return -1;
  uint64_t total = field_kb(buf, "MemTotal:"), avail = field_kb(buf, "MemAvailable:");
  if (!total) return -1;
  *limit = total;
  *used = total > avail ? total - avail : 0;
  if (mm && mm->cg[0]) {
    snprintf(path, sizeof(path), "%s/memory.max", mm->cg);
    if (read_file(path, buf, sizeof(buf)) > 0 && buf[0] != 'm') {
      uint64_t max = strtoull(buf, NULL, 10);
      snprintf(path, sizeof(path), "%s/memory.current", mm->cg);
      if (max > 0 && max < total && read_file(path, buf, sizeof(buf)) > 0) {
        uint64_t cur = strtoull(buf, NULL, 10), inactive = 0;
        snprintf(path, sizeof(path), "%s/memory.stat", mm->cg);
        if (read_file(path, buf, sizeof(buf)) > 0) {
          const char *p = strstr(buf, "inactive_file ");
          if (p) inactive = strtoull(p + 14, NULL, 10);
        }
        *limit = max;
        *used = cur > inactive ? cur - inactive : 0;
      }
    }
  }
  return 0;
}

/* -- Policy ----------------------------------------------------------------------- */

lr_lease_t *lr_memmon_pick(lr_node_t *n)
{
  lr_lease_t *best = NULL;
  for (lr_lease_t *L = n->leases; L; L = L->hh.next) {
    lr_worker_t *w = L->worker;
    if (L->state != LR_L_GRANTED || !w || w->lease != L || w->actor ||
        w->state != LR_W_LEASED)
      continue;
    /* A retriable lease beats one that is not (as Ray: a kill then costs a
     * retry, not a failure); among equals the newest, which has done the
     * least work. */
    if (!best || (L->retriable && !best->retriable) ||
        (L->retriable == best->retriable && L->num > best->num))
      best = L;
  }
  return best;
}

/* -- The monitor -------------------------------------------------------------------- */

static void on_kill_timer(uv_timer_t *t)
{
  lr_node_t *n = t->data;
  lr_memmon_t *mm = n->memmon;
  lr_worker_t *w = NULL;
  HASH_FIND_STR(n->workers, mm->victim, w);
  if (w) lr_pool_kill(w, SIGKILL);
}

static void on_tick(uv_timer_t *t)
{
  lr_node_t *n = t->data;
  lr_memmon_t *mm = n->memmon;
  if (mm->victim[0]) {
    lr_worker_t *w = NULL;
    HASH_FIND_STR(n->workers, mm->victim, w);
    if (w && !w->exited) return; /* one at a time: wait for it to go */
    mm->victim[0] = 0;
  }
  uint64_t used, limit;
  if (lr_memmon_usage(n, &used, &limit) < 0 || !limit) return;
  if ((double)used < mm->threshold * (double)limit) return;
  lr_lease_t *L = lr_memmon_pick(n);
  if (!L) return;
  lr_worker_t *w = L->worker;
  char text[600];
  snprintf(text, sizeof(text), "the node's memory monitor killed worker pid %lld (running"
           " tasks of lease %s) to relieve memory pressure: %.2f of %.2f GiB in use, above"
           " the threshold of %.2f (LRAY_MEMORY_USAGE_THRESHOLD)", (long long)w->pid, L->lid,
           (double)used / (1 << 30), (double)limit / (1 << 30), mm->threshold);
  lr_m_lease_oom_t m = LR_MSG_INIT(LEASE_OOM);
  LR_SET_CSTR(m.lid, L->lid);
  LR_SET_CSTR(m.text, text);
  if (L->owner && !L->owner->gone) lr_node_send(L->owner, &m);
  /* The driver hears it once (it prints each text once), the submitter
   * each time, with this kill's figures. */
  lr_node_warn(n, L->job, "the node's memory monitor is killing task workers to relieve"
               " memory pressure (LRAY_MEMORY_USAGE_THRESHOLD of the memory limit in use);"
               " their tasks are retried unless they have max_retries = 0. Run fewer tasks"
               " at once (more num_cpus or memory per task) or use less memory per task.");
  if (n->debug) fprintf(stderr, "lray node: %s\n", text);
  snprintf(mm->victim, sizeof(mm->victim), "%s", w->wid);
  mm->kills++;
  /* Messages go out when the loop next flushes: kill a moment later, so
   * the submitter has heard why before it sees the connection close. */
  uv_timer_start(&mm->kill_timer, on_kill_timer, 20, 0);
}

uint64_t lr_memmon_kills(lr_node_t *n)
{
  return n->memmon ? n->memmon->kills : 0;
}

void lr_memmon_start(lr_node_t *n)
{
  const char *e;
  int rc = lr_memmon_set_score(0, LR_OOM_NODE);
  if (rc < 0 && n->debug)
    fprintf(stderr, "lray node: cannot lower its oom_score_adj: %s\n", uv_strerror(rc));
  lr_memmon_t *mm = lr_xcalloc(1, sizeof(*mm));
  n->memmon = mm;
  mm->threshold = (e = getenv("LRAY_MEMORY_USAGE_THRESHOLD")) ? strtod(e, NULL) : 0.95;
  if ((e = getenv("LRAY_MEMORY_LIMIT_BYTES"))) mm->fake_limit = strtoull(e, NULL, 10);
  long ms = (e = getenv("LRAY_MEMORY_MONITOR_REFRESH_MS")) ? strtol(e, NULL, 10) : 250;
  find_cgroup(mm);
  uv_timer_init(n->loop, &mm->timer);
  uv_timer_init(n->loop, &mm->kill_timer);
  mm->timer.data = mm->kill_timer.data = n;
  uv_unref((uv_handle_t *)&mm->timer);
  uv_unref((uv_handle_t *)&mm->kill_timer);
  if (ms > 0 && mm->threshold > 0) {
    mm->on = 1;
    uv_timer_start(&mm->timer, on_tick, (uint64_t)ms, (uint64_t)ms);
  }
}
