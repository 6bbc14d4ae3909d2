/* Drivers that do not share their node's store: a driver on a machine that
 * runs no node of the cluster (or in another /dev/shm) connects over TCP and
 * cannot map the region its hello reply names, or maps a file of that name
 * that is not the node's. The rule that tells the two apart:
 *
 *   The node writes a fresh random cookie (LR_COOKIE_BYTES hex digits) at
 *   the start of the last LR_COOKIE_SPACE bytes of its region, outside the
 *   allocator's range, and sends it in the hello reply. A driver shares the
 *   store only when the region opens and holds that cookie there; any other
 *   driver is remote, and its objects travel over its connection.
 *
 * A remote driver writes a large value into a range it was given (alloc,
 * admitted by free store memory as any put) in `write` frames of at most
 * LRAY_TRANSFER_CHUNK bytes, each copied straight into the range as it
 * arrives, then stores it with put as usual. It reads stored objects with
 * pull/chunk, as a node does (transfer.c serves them).
 *
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#include <stdio.h>
#include <string.h>
#include "common/errdef.h"
#include "raylet/node.h"

void lr_remote_cookie_init(lr_node_t *n, uint64_t store)
{
  lr_node_random_hex(n->cookie, LR_COOKIE_BYTES / 2);
  memcpy(n->shm.base + store, n->cookie, LR_COOKIE_BYTES);
}

int lr_remote_write_apply(lr_node_t *n, lr_client_t *c, const lr_m_write_t *m)
{
  lr_alloc_t *a = NULL;
  uint64_t at = m->at.n ? (uint64_t)m->at.v.i : 0;
  int64_t pos = m->pos.n ? m->pos.v.i : -1;
  uint64_t len = m->data.n ? m->data.v.s.n : 0;
  if (m->at.n) HASH_FIND(hh, c->allocs, &at, sizeof(at), a);
  /* Only inside a range this client was given and has not put: it can
   * overwrite nothing another process reads. */
  if (!a || pos < 0 || (uint64_t)pos > a->size || len > a->size - (uint64_t)pos)
    return LR_EBADARG;
  memcpy(n->shm.base + at + (uint64_t)pos, m->data.v.s.p, len);
  return 0;
}

void lr_remote_write(lr_node_t *n, lr_client_t *c, const lr_m_write_t *m)
{
  if (lr_remote_write_apply(n, c, m) == 0) return;
  fprintf(stderr, "lray: closing a connection: 'write' outside a store range it was given\n");
  lr_conn_close(&c->conn);
}
