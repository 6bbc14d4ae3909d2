/* Spilling: when the store is full, objects nobody can be reading in place
 * are written to disk (<session>/spill/, or DIR/lray-spill-<node id>/ with
 * --spill-dir DIR or LRAY_SPILL_DIR) and their ranges freed; the node
 * restores one into the store before it next hands out its location.
 *
 * The safety rule (docs/architecture.md, "Spilling"): readers read store
 * ranges in place, and a location travels between processes without the
 * node (push.depv, results, an lray.array view kept mapped), so the node may
 * move only an object whose location no process can hold. Every process
 * that knows a location holds a reference the node counts (its own hold,
 * or a lend until the receiver holds it; an array view holds an ObjectRef;
 * a process forgets a location when it drops its last reference). So an
 * object whose count comes only from the objects containing it (no client,
 * lend or actor placement counts it) has no reader, and a reader it gets
 * later learns the location from the node (obj), which restores it first.
 * Objects that processes hold spill only once every holder has agreed to
 * forget the location (unmap.c, which then calls lr_spill_write).
 *
 * One file per object. A spill its holders agreed to is written by libuv's
 * thread pool (lr_spill_write_async), and a restore for a reader is read
 * there (lr_spill_restore_async); the other spills (of objects no process
 * holds, to make room at once) and restores (for actor placement and for
 * pulls by other nodes) read and write on the loop thread (blocking).
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/errdef.h"
#include "raylet/node.h"

int lr_spill_on(void)
{
  const char *e = getenv("LRAY_SPILL");
  return !(e && !strcmp(e, "0"));
}

const char *lr_spill_dir(lr_node_t *n, char *buf, size_t len)
{
  if (n->spill_dir[0]) snprintf(buf, len, "%s", n->spill_dir);
  else snprintf(buf, len, "%s/spill", n->session_dir);
  return buf;
}

static void path_of(lr_node_t *n, const lr_obj_t *o, char *out, size_t len)
{
  char dir[PATH_MAX];
  snprintf(out, len, "%s/%s", lr_spill_dir(n, dir, sizeof(dir)), o->id);
}

/* Makes the spill directory dir (and, for --spill-dir, the directory it
 * is in; dir is changed meanwhile); 0 or a negative errno. Any thread. */
static int make_dir(char *dir)
{
  if (mkdir(dir, 0700) == 0 || errno == EEXIST) return 0;
  char *slash = strrchr(dir, '/');
  if (errno != ENOENT || !slash || slash == dir) return -errno;
  *slash = 0;
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -errno;
  *slash = '/';
  return mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -errno;
}

static int write_all(int fd, const uint8_t *p, uint64_t len)
{
  while (len > 0) {
    ssize_t k = write(fd, p, len > (1u << 30) ? (1u << 30) : (size_t)len);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += k;
    len -= (uint64_t)k;
  }
  return 0;
}

static int read_all(int fd, uint8_t *p, uint64_t len)
{
  while (len > 0) {
    ssize_t k = read(fd, p, len > (1u << 30) ? (1u << 30) : (size_t)len);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (k == 0) return UV_EOF;
    p += k;
    len -= (uint64_t)k;
  }
  return 0;
}

/* Writes len bytes at p to a new file path in directory dir (made if
 * need be); 0, or a negative errno and no file. Any thread. */
static int write_file(char *dir, const char *path, const uint8_t *p, uint64_t len)
{
  int rc = make_dir(dir);
  int fd = rc < 0 ? -1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (rc == 0 && fd < 0) rc = -errno;
  if (fd >= 0) {
    rc = write_all(fd, p, len);
    if (close(fd) < 0 && rc == 0) rc = -errno;
    if (rc < 0) unlink(path);
  }
  return rc;
}

/* The range of o goes to disk: it is on disk now. */
static void spilled(lr_node_t *n, lr_obj_t *o)
{
  lr_salloc_free(&n->region, (uint64_t)o->shm_off, (uint64_t)o->shm_len);
  o->spilled_len = o->shm_len;
  o->shm_len = -1;
  o->shm_off = 0;
  o->restore_err = 0; /* a new file */
  n->spilled_bytes += (uint64_t)o->spilled_len;
  n->spills++;
}

int lr_spill_candidate(const lr_obj_t *o)
{
  return o->st == LR_O_OK && o->shm_len >= 0 && o->spilled_len < 0 && !o->waiters &&
         !o->spilling && !o->restoring && o->count > 0 && o->count == o->inner;
}

int lr_spill_one(lr_node_t *n, lr_obj_t *o)
{
  if (!lr_spill_candidate(o)) return LR_EBADARG;
  return lr_spill_write(n, o);
}

int lr_spill_write(lr_node_t *n, lr_obj_t *o)
{
  char path[PATH_MAX + 64], dir[PATH_MAX];
  if (o->shm_len < 0 || o->spilled_len >= 0 || o->spilling) return LR_EBADARG;
  path_of(n, o, path, sizeof(path));
  lr_spill_dir(n, dir, sizeof(dir));
  int rc = write_file(dir, path, n->shm.base + o->shm_off, (uint64_t)o->shm_len);
  n->spill_err = rc;
  if (rc < 0) return rc; /* disk full, or unwritable: the object stays in the store */
  spilled(n, o);
  return 0;
}

/* -- Writing off the loop ---------------------------------------------------------- */
/* A spill the holders agreed to is written by libuv's thread pool, so the
 * node's loop goes on meanwhile. The range stays the object's until the
 * write is done; whoever asks for the object meanwhile gets it from the
 * store, which bumps its gen and makes the finished file go unused. */

typedef struct {
  uv_work_t w;
  lr_node_t *n;
  char *id;
  const uint8_t *src;
  int64_t off, len;
  uint64_t gen;
  int rc;
  char dir[PATH_MAX];
  char path[PATH_MAX + 64];
} spill_job_t;

static void job_run(uv_work_t *w)
{
  spill_job_t *j = w->data;
  j->rc = write_file(j->dir, j->path, j->src, (uint64_t)j->len);
}

static void job_done(uv_work_t *w, int status)
{
  spill_job_t *j = w->data;
  lr_node_t *n = j->n;
  n->spill_jobs--;
  lr_obj_t *o = lr_obj_find(n, j->id, strlen(j->id));
  if (o) o->spilling = 0;
  int rc = status < 0 ? status : j->rc;
  if (rc < 0 || o) n->spill_err = rc;
  int still = o && o->gen == j->gen && o->st == LR_O_OK && !o->waiters &&
              o->shm_off == j->off && o->shm_len == j->len && o->spilled_len < 0;
  if (rc == 0 && still) {
    spilled(n, o);
    lr_obj_kick(n);
  } else {
    if (rc == 0) unlink(j->path); /* freed, or wanted meanwhile */
    if (o) o->unmap_no = lr_node_now();
  }
  lr_free(j->id);
  lr_free(j);
}

int lr_spill_write_async(lr_node_t *n, lr_obj_t *o)
{
  if (o->shm_len < 0 || o->spilled_len >= 0 || o->spilling) return LR_EBADARG;
  spill_job_t *j = lr_xcalloc(1, sizeof(*j));
  j->w.data = j;
  j->n = n;
  j->id = lr_xstrdup(o->id);
  j->src = n->shm.base + o->shm_off;
  j->off = o->shm_off;
  j->len = o->shm_len;
  j->gen = o->gen;
  lr_spill_dir(n, j->dir, sizeof(j->dir));
  path_of(n, o, j->path, sizeof(j->path));
  int rc = uv_queue_work(n->loop, &j->w, job_run, job_done);
  if (rc < 0) {
    lr_free(j->id);
    lr_free(j);
    return rc;
  }
  o->spilling = 1;
  n->spill_jobs++;
  return 0;
}

/* Least recently used first. */
static int by_use(const void *a, const void *b)
{
  double x = (*(lr_obj_t *const *)a)->used_at, y = (*(lr_obj_t *const *)b)->used_at;
  return x < y ? -1 : x > y;
}

int lr_spill_make_room(lr_node_t *n, uint64_t size, const lr_obj_t *keep)
{
  if (!lr_spill_on()) return 0;
  size_t cap = 0, k = 0;
  lr_obj_t **c = NULL;
  for (lr_obj_t *o = n->objects; o; o = o->hh.next) {
    if (o == keep || !lr_spill_candidate(o)) continue;
    if (k == cap) {
      cap = cap ? cap * 2 : 64;
      c = lr_xrealloc(c, cap * sizeof(*c));
    }
    c[k++] = o;
  }
  int freed = 0;
  if (k) qsort(c, k, sizeof(*c), by_use);
  lr_salloc_stats_t st;
  for (size_t i = 0; i < k; i++) {
    lr_salloc_stats(&n->region, &st);
    if (st.largest_free >= size) break;
    if (lr_spill_one(n, c[i]) < 0) break; /* disk full: stop trying */
    freed++;
  }
  lr_free(c);
  return freed;
}

/* A range of len bytes for a restore of o, making room if need be: its
 * offset, or -1 when the store stays full. */
static int64_t restore_range(lr_node_t *n, lr_obj_t *o, uint64_t len)
{
  int64_t off = lr_salloc_alloc(&n->region, len);
  if (off < 0 && lr_spill_make_room(n, len, o) > 0) off = lr_salloc_alloc(&n->region, len);
  return off;
}

static int read_file(const char *path, uint8_t *p, uint64_t len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int rc = fd < 0 ? -errno : read_all(fd, p, len);
  if (fd >= 0) close(fd);
  return rc;
}

/* o's bytes are at off now: its file goes. */
static void restored(lr_node_t *n, lr_obj_t *o, int64_t off, const char *path)
{
  unlink(path);
  n->spilled_bytes -= (uint64_t)o->spilled_len;
  o->shm_off = off;
  o->shm_len = o->spilled_len;
  o->spilled_len = -1;
  n->restores++;
}

int lr_spill_restore(lr_node_t *n, lr_obj_t *o)
{
  char path[PATH_MAX + 64];
  if (o->spilled_len < 0) return 0;
  uint64_t len = (uint64_t)o->spilled_len;
  int64_t off = restore_range(n, o, len);
  if (off < 0) return LR_ESTOREFULL;
  path_of(n, o, path, sizeof(path));
  int rc = read_file(path, n->shm.base + off, len);
  if (rc < 0) {
    lr_salloc_free(&n->region, (uint64_t)off, len);
    return rc;
  }
  restored(n, o, off, path);
  return 0;
}

/* -- Reading back off the loop ------------------------------------------------------ */
/* A reader's restore reads the file in the thread pool into a range the
 * job owns until it is done; then, if o is still spilled (not freed, nor
 * restored meanwhile by a blocking restore), the range becomes o's, and
 * the readers waiting for it are answered. */

typedef struct {
  uv_work_t w;
  lr_node_t *n;
  char *id;
  uint8_t *dst;
  int64_t off;
  uint64_t len;
  int rc;
  char path[PATH_MAX + 64];
} restore_job_t;

static void restore_run(uv_work_t *w)
{
  restore_job_t *j = w->data;
  j->rc = read_file(j->path, j->dst, j->len);
}

static void restore_done(uv_work_t *w, int status)
{
  restore_job_t *j = w->data;
  lr_node_t *n = j->n;
  n->spill_jobs--;
  int rc = status < 0 ? status : j->rc;
  lr_obj_t *o = lr_obj_find(n, j->id, strlen(j->id));
  if (o && !o->restoring) o = NULL; /* freed, and the id stored again since */
  if (o) o->restoring = 0;
  if (o && rc == 0 && o->st == LR_O_OK && o->spilled_len == (int64_t)j->len) {
    restored(n, o, j->off, j->path);
  } else {
    lr_salloc_free(&n->region, (uint64_t)j->off, j->len);
    if (o && rc < 0 && o->spilled_len >= 0) o->restore_err = rc;
  }
  if (o) lr_obj_restored(n, o, o->spilled_len < 0 ? 0 : rc < 0 ? rc : LR_EBADARG);
  else lr_transfer_restored(n, j->id); /* freed meanwhile: they are told so */
  lr_free(j->id);
  lr_free(j);
}

int lr_spill_restore_async(lr_node_t *n, lr_obj_t *o)
{
  if (o->spilled_len < 0) return 0;
  if (o->restoring) return 1;
  if (o->restore_err) return o->restore_err;
  uint64_t len = (uint64_t)o->spilled_len;
  int64_t off = restore_range(n, o, len);
  if (off < 0) return LR_ESTOREFULL;
  restore_job_t *j = lr_xcalloc(1, sizeof(*j));
  j->w.data = j;
  j->n = n;
  j->id = lr_xstrdup(o->id);
  j->dst = n->shm.base + off;
  j->off = off;
  j->len = len;
  path_of(n, o, j->path, sizeof(j->path));
  int rc = uv_queue_work(n->loop, &j->w, restore_run, restore_done);
  if (rc < 0) {
    lr_salloc_free(&n->region, (uint64_t)off, len);
    lr_free(j->id);
    lr_free(j);
    return lr_spill_restore(n, o); /* on the loop, then */
  }
  o->restoring = 1;
  n->spill_jobs++;
  return 1;
}

void lr_spill_forget(lr_node_t *n, lr_obj_t *o)
{
  char path[PATH_MAX + 64];
  if (o->spilled_len < 0) return;
  path_of(n, o, path, sizeof(path));
  unlink(path);
  n->spilled_bytes -= (uint64_t)o->spilled_len;
  o->spilled_len = -1;
}

void lr_spill_cleanup(lr_node_t *n)
{
  char path[PATH_MAX + 64];
  for (lr_obj_t *o = n->objects; o; o = o->hh.next) {
    lr_spill_forget(n, o);
    if (o->spilling) { /* a write under way: its file goes too */
      path_of(n, o, path, sizeof(path));
      unlink(path);
    }
  }
  char dir[PATH_MAX];
  rmdir(lr_spill_dir(n, dir, sizeof(dir)));
}

int lr_spill_sweep(const char *parent)
{
  DIR *d = opendir(parent);
  if (!d) return 0;
  int swept = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    long pid;
    char rest;
    if (sscanf(e->d_name, "lray-spill-%ld-%c", &pid, &rest) != 2 || pid <= 0) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to ask */
    char dir[PATH_MAX], path[PATH_MAX + 300];
    snprintf(dir, sizeof(dir), "%s/%s", parent, e->d_name);
    DIR *sd = opendir(dir);
    if (sd) {
      struct dirent *f;
      while ((f = readdir(sd))) {
        if (f->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "%s/%s", dir, f->d_name);
        unlink(path);
      }
      closedir(sd);
    }
    if (rmdir(dir) == 0) swept++;
  }
  closedir(d);
  return swept;
}
