/* Named POSIX shared-memory regions: the bytes of a node's object store.
 *
 * The node manager creates its region (a file in /dev/shm) and unlinks it
 * at shutdown; workers and drivers on the node map it read-write by name.
 * A node killed with SIGKILL cannot unlink, so the next node on the machine
 * sweeps names whose creator pid is gone (lr_shm_sweep). Error codes are
 * -errno, which are libuv's UV_E* codes on Linux. Thread-safe: no state.
 *
 * Licensed under the MIT license; see LICENSE. */
#include "objstore/objstore.h"
#include "common/def.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

/* Where glibc's shm_open keeps its files; lr_shm_sweep lists it. */
#define SHM_DIR "/dev/shm"

/* Checks name and writes "/name" into path; returns the name without its
 * leading '/' (inside path), or NULL if the name is unusable. */
static const char *make_path(const char *name, char path[LR_SHM_NAMEMAX + 2])
{
  size_t n;
  if (!name) return NULL;
  if (name[0] == '/') name++;
  n = strlen(name);
  if (n == 0 || n > LR_SHM_NAMEMAX || strchr(name, '/') || !strcmp(name, ".") ||
      !strcmp(name, ".."))
    return NULL;
  path[0] = '/';
  memcpy(path + 1, name, n + 1);
  return path + 1;
}

static void set_closed(lr_shm_t *sh)
{
  sh->base = NULL;
  sh->size = 0;
  sh->fd = -1;
}

/* Maps fd's first size bytes into sh; returns 0 or -errno. */
static int map(lr_shm_t *sh, int fd, uint64_t size, const char *name)
{
  void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return -errno;
  sh->base = p;
  sh->size = size;
  sh->fd = fd;
  strcpy(sh->name, name);
  return 0;
}

int lr_shm_create(const char *name, uint64_t size, lr_shm_t *out)
{
  char path[LR_SHM_NAMEMAX + 2];
  const char *bare;
  struct statvfs vfs;
  int fd, rc;
  set_closed(out);
  out->name[0] = '\0';
  if (!(bare = make_path(name, path))) return UV_EINVAL;
  if (size == 0 || size > (uint64_t)INT64_MAX || size > SIZE_MAX)
    return UV_EINVAL;
  if ((fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR, 0600)) < 0) return -errno;
  /* tmpfs reserves nothing: a page first touched once the file system is
   * full raises SIGBUS in whoever touches it. Refuse what cannot fit now.
   * A tmpfs mounted without a size limit reports 0 blocks: no check. */
  if (fstatvfs(fd, &vfs) < 0) {
    rc = -errno;
    goto fail;
  }
  if (vfs.f_blocks && (uint64_t)vfs.f_bavail * vfs.f_frsize < size) {
    rc = UV_ENOSPC;
    goto fail;
  }
  if (ftruncate(fd, (off_t)size) < 0) {
    rc = -errno;
    goto fail;
  }
  if ((rc = map(out, fd, size, bare)) < 0) goto fail;
  return 0;
fail:
  close(fd);
  shm_unlink(path);
  return rc;
}

int lr_shm_open(const char *name, lr_shm_t *out)
{
  char path[LR_SHM_NAMEMAX + 2];
  const char *bare;
  struct stat st;
  int fd, rc;
  set_closed(out);
  out->name[0] = '\0';
  if (!(bare = make_path(name, path))) return UV_EINVAL;
  if ((fd = shm_open(path, O_RDWR, 0)) < 0) return -errno;
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    goto fail;
  }
  if (st.st_size <= 0 || (uint64_t)st.st_size > SIZE_MAX) {
    rc = UV_EINVAL;
    goto fail;
  }
  if ((rc = map(out, fd, (uint64_t)st.st_size, bare)) < 0) goto fail;
  return 0;
fail:
  close(fd);
  return rc;
}

void lr_shm_close(lr_shm_t *sh)
{
  if (sh->base) munmap(sh->base, (size_t)sh->size);
  if (sh->fd >= 0) close(sh->fd);
  set_closed(sh);
}

int lr_shm_unlink(const char *name)
{
  char path[LR_SHM_NAMEMAX + 2];
  if (!make_path(name, path)) return UV_EINVAL;
  return shm_unlink(path) < 0 ? -errno : 0;
}

/* The pid in "<pid>-...", or 0 if s does not start that way. */
static pid_t parse_pid(const char *s)
{
  long pid = 0;
  if (*s < '1' || *s > '9') return 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    pid = pid * 10 + (*s - '0');
    if (pid > INT_MAX) return 0;
  }
  return *s == '-' ? (pid_t)pid : 0;
}

int lr_shm_sweep(const char *prefix)
{
  size_t plen;
  DIR *dir;
  struct dirent *de;
  pid_t pid;
  int removed = 0;
  if (!prefix || !(plen = strlen(prefix)) || strchr(prefix, '/'))
    return UV_EINVAL;
  if (!(dir = opendir(SHM_DIR))) return -errno;
  while ((de = readdir(dir))) {
    if (strncmp(de->d_name, prefix, plen)) continue;
    if (!(pid = parse_pid(de->d_name + plen))) continue;
    if (kill(pid, 0) == 0 || errno != ESRCH) continue; /* alive, or EPERM */
    /* Another sweeper may win the race (ENOENT); a file of another user
     * cannot be removed (EPERM). Neither counts. */
    if (lr_shm_unlink(de->d_name) == 0) removed++;
  }
  closedir(dir);
  return removed;
}
