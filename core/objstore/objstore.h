/* The object store unit: a per-node shared-memory region (shm.c) and the
 * allocator that hands out ranges of it (salloc.c).
 *
 * Provides: create/open/close/unlink of a named POSIX shared-memory region
 * and a sweep of regions left behind by dead nodes; an offset allocator that
 * the node manager (the only allocator of its node's region) runs in its own
 * heap. Needs: common/ only. Workers and drivers map the same region with
 * lr_shm_open and read and write objects at offsets the node gave them.
 *
 * Licensed under the MIT license; see LICENSE. */
#ifndef LR_OBJSTORE_H
#define LR_OBJSTORE_H

#include <stdint.h>

/* -- Allocator ------------------------------------------------------------ */

/* Every offset handed out is a multiple of this, and every size is rounded up
 * to it, so objects never share a cache line. */
#define LR_SALLOC_ALIGN 64
/* Largest region lr_salloc_init accepts (bytes). */
#define LR_SALLOC_MAX ((uint64_t)1 << 62)

typedef struct lr_salloc_blk_s lr_salloc_blk_t; /* private to salloc.c */

/* Allocator over the offsets [0, capacity). Lives in the caller's memory
 * (init/close); its metadata lives in the process heap, never in the region
 * it describes. Not thread-safe: the node's loop thread only. */
typedef struct lr_salloc_s {
  uint64_t capacity; /* bytes managed: size rounded down to the alignment */
  uint64_t used;     /* bytes allocated, counting each rounded-up size */
  uint64_t nallocs;  /* live allocations */
  lr_salloc_blk_t *by_size; /* free blocks, ordered by (length, offset) */
  lr_salloc_blk_t *by_off;  /* allocated blocks, ordered by offset */
  lr_salloc_blk_t *first;   /* all blocks in address order */
  lr_salloc_blk_t *spare;   /* recycled block records */
  uint32_t seed;            /* treap priorities */
} lr_salloc_t;

typedef struct lr_salloc_stats_s {
  uint64_t capacity;     /* bytes managed */
  uint64_t used;         /* bytes allocated (rounded sizes) */
  uint64_t largest_free; /* the largest allocation that would succeed now */
  uint64_t nallocs;      /* live allocations */
} lr_salloc_stats_t;

/* Starts managing [0, size rounded down to LR_SALLOC_ALIGN), all free.
 * Returns 0, or LR_EBADARG if size > LR_SALLOC_MAX. A size below the
 * alignment gives an allocator where every allocation fails. */
int lr_salloc_init(lr_salloc_t *a, uint64_t size);

/* Frees the metadata. Outstanding allocations are forgotten. */
void lr_salloc_close(lr_salloc_t *a);

/* Allocates n bytes (0 counts as 1) rounded up to LR_SALLOC_ALIGN, best fit,
 * lowest offset among equal fits. Returns the offset (a multiple of
 * LR_SALLOC_ALIGN) or LR_ESTOREFULL when no free range is large enough,
 * including when n exceeds the capacity. O(log n) in live blocks. */
int64_t lr_salloc_alloc(lr_salloc_t *a, uint64_t n);

/* Frees the allocation at off; n is the size that was passed to
 * lr_salloc_alloc (any n rounding to the same size is accepted). Adjacent
 * free ranges coalesce. Returns 0, or LR_EBADARG, changing nothing, when off
 * is not the start of a live allocation of that size (a double free, a wrong
 * size, an offset from a confused peer). O(log n). */
int lr_salloc_free(lr_salloc_t *a, uint64_t off, uint64_t n);

/* Fills st. O(log n). */
void lr_salloc_stats(const lr_salloc_t *a, lr_salloc_stats_t *st);

/* -- Shared memory -------------------------------------------------------- */

/* Longest region name, not counting the NUL (what glibc shm_open takes). */
#define LR_SHM_NAMEMAX 253

/* A mapped region. Lives in the caller's memory. After a failed create or
 * open, and after close, it is in the closed state (base NULL, fd -1), in
 * which lr_shm_close does nothing. */
typedef struct lr_shm_s {
  char name[LR_SHM_NAMEMAX + 1]; /* as given, without a leading '/' */
  uint8_t *base;                 /* mapping, read-write, MAP_SHARED */
  uint64_t size;                 /* bytes mapped */
  int fd;
} lr_shm_t;

/* Names: "lray-<pid>-<random>" by convention (see lr_shm_sweep); one leading
 * '/' is accepted and dropped; otherwise no '/', not empty, not "." or "..",
 * at most LR_SHM_NAMEMAX bytes, else UV_EINVAL. */

/* Creates the region name (shm_open O_CREAT|O_EXCL, mode 0600), sizes it
 * and maps it into out. Returns 0 or a negative errno code (libuv's UV_E*
 * on Linux): UV_EEXIST if the name exists, UV_EINVAL for a bad name or a
 * size of 0, UV_ENOSPC if the shm file system has less than size free
 * (tmpfs does not reserve: a page touched after it fills up raises SIGBUS,
 * so this is checked up front). On failure nothing is left behind. */
int lr_shm_create(const char *name, uint64_t size, lr_shm_t *out);

/* Maps the existing region name read-write into out; the size is the file's.
 * Returns 0 or a negative errno code: UV_ENOENT if it does not exist,
 * UV_EINVAL for a bad name or an empty (not yet sized) region. */
int lr_shm_open(const char *name, lr_shm_t *out);

/* Unmaps and closes; leaves sh closed. Pointers into the mapping dangle. */
void lr_shm_close(lr_shm_t *sh);

/* Removes the name; mappings stay valid until closed. Returns 0 or a
 * negative errno code (UV_ENOENT, UV_EINVAL for a bad name). */
int lr_shm_unlink(const char *name);

/* Removes the regions named "<prefix><pid>-..." whose pid no longer exists
 * (kill(pid, 0) fails with ESRCH): what a node killed with SIGKILL leaves
 * behind. A zombie or a reused pid counts as alive, so such files stay.
 * prefix must be non-empty and contain no '/'. Returns the number removed,
 * or a negative errno code (UV_EINVAL for a bad prefix, or from opendir). */
int lr_shm_sweep(const char *prefix);

#endif
