/* Spilling: when the store is full, objects nobody can be reading in place
 * are written to disk (<session>/spill/, or LRAY_SPILL_DIR) and their
 * ranges freed; the node restores one into the store before it next hands
 * out its location.
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
 * Objects that processes hold are not spilled: that needs a protocol with
 * the holders (see the doc), which lray does not have yet.
 *
 * Disk I/O runs on the loop thread (blocking), one file per object.
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/errdef.h"
#include "raylet/node.h"

static int spill_off(void)
{
  const char *e = getenv("LRAY_SPILL");
  return e && !strcmp(e, "0");
}

static void path_of(lr_node_t *n, const lr_obj_t *o, char *out, size_t len)
{
  const char *dir = getenv("LRAY_SPILL_DIR");
  if (dir && *dir) snprintf(out, len, "%s/%s", dir, o->id);
  else snprintf(out, len, "%s/spill/%s", n->session_dir, o->id);
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

int lr_spill_candidate(const lr_obj_t *o)
{
  return o->st == LR_O_OK && o->shm_len >= 0 && o->spilled_len < 0 && !o->waiters &&
         o->count > 0 && o->count == o->inner;
}

int lr_spill_one(lr_node_t *n, lr_obj_t *o)
{
  char path[PATH_MAX + 64];
  if (!lr_spill_candidate(o)) return LR_EBADARG;
  path_of(n, o, path, sizeof(path));
  if (!getenv("LRAY_SPILL_DIR")) {
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof(dir), "%s/spill", n->session_dir);
    mkdir(dir, 0700);
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  int rc = write_all(fd, n->shm.base + o->shm_off, (uint64_t)o->shm_len);
  if (close(fd) < 0 && rc == 0) rc = -errno;
  if (rc < 0) { /* disk full, or unwritable: the object stays in the store */
    unlink(path);
    return rc;
  }
  lr_salloc_free(&n->region, (uint64_t)o->shm_off, (uint64_t)o->shm_len);
  o->spilled_len = o->shm_len;
  o->shm_len = -1;
  o->shm_off = 0;
  n->spilled_bytes += (uint64_t)o->spilled_len;
  n->spills++;
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
  if (spill_off()) return 0;
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

int lr_spill_restore(lr_node_t *n, lr_obj_t *o)
{
  char path[PATH_MAX + 64];
  if (o->spilled_len < 0) return 0;
  uint64_t len = (uint64_t)o->spilled_len;
  int64_t off = lr_salloc_alloc(&n->region, len);
  if (off < 0 && lr_spill_make_room(n, len, o) > 0) off = lr_salloc_alloc(&n->region, len);
  if (off < 0) return LR_ESTOREFULL;
  path_of(n, o, path, sizeof(path));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int rc = fd < 0 ? -errno : read_all(fd, n->shm.base + off, len);
  if (fd >= 0) close(fd);
  if (rc < 0) {
    lr_salloc_free(&n->region, (uint64_t)off, len);
    return rc;
  }
  unlink(path);
  o->shm_off = off;
  o->shm_len = o->spilled_len;
  o->spilled_len = -1;
  n->spilled_bytes -= len;
  n->restores++;
  return 0;
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
  for (lr_obj_t *o = n->objects; o; o = o->hh.next) lr_spill_forget(n, o);
  char dir[PATH_MAX + 16];
  snprintf(dir, sizeof(dir), "%s/spill", n->session_dir);
  rmdir(dir);
}
