/* A fake environment for unit tests of the node manager's parts (lease.c,
 * objdir.c): a real lr_node_t on a private loop, with a real scheduler and
 * store allocator but no sockets, no shared memory and no processes.
 *
 * Clients are lr_client_t records whose connection was never opened: what
 * the node sends them collects in conn.out as frames (u32 little-endian
 * length + payload), read back here with lr_proto_decode. Their conn.dirty
 * is set from the start, so lr_conn_end_frame never links them into
 * conn.c's list of connections to flush (nothing here ever flushes, and a
 * freed fake must not be left on that list). Workers are lr_worker_t records
 * put straight into node.workers; the pool's limit is kept at the number of
 * fakes, so lr_dispatch never forks a real `lray _worker`.
 *
 * One fake node per test process (the runner forks each test). */
#ifndef LR_TEST_FAKE_NODE_H
#define LR_TEST_FAKE_NODE_H

#include "raylet/node.h"

/* A node with cpus and gpus (whole numbers of 1.0) and a store allocator of
 * store bytes. free_grace is 0.05 s, as in lray's default. */
lr_node_t *fake_node_new(double cpus, double gpus, uint64_t store);
void fake_node_free(lr_node_t *n);

/* A client of kind (LR_CL_DRIVER, LR_CL_WORKER, LR_CL_NEW). A driver also
 * gets job (a row in node.jobs, with it as the driver). */
lr_client_t *fake_client(lr_node_t *n, int kind, const char *job);
lr_client_t *fake_driver(lr_node_t *n, const char *job);

/* A worker that said hello (lr_pool_hello): idle, with its own client,
 * dispatched to at once. Its address is unix:/fake/w<N>.sock, its pid
 * 1000 + N (N counts from 1). */
lr_worker_t *fake_worker(lr_node_t *n);

/* c's connection closed: what node.c's on_conn_close does for the parts
 * under test (objects, leases, the job of a driver); then c is freed. */
void fake_leave(lr_node_t *n, lr_client_t *c);

/* -- What the node sent ---------------------------------------------------- */

int fake_count(lr_client_t *c, int type); /* frames of type in c's output */
int fake_nframes(lr_client_t *c);
/* The nth (from 0) frame of type sent to c, decoded, or NULL. Strings in it
 * point into c's output: valid until the next send to c or fake_clear. */
void *fake_msg(lr_client_t *c, int type, int nth);
/* The reply to request rid sent to c (as fake_msg), or NULL. */
lr_m_reply_t *fake_reply(lr_client_t *c, const char *rid);
/* Forgets what was sent to c. */
void fake_clear(lr_client_t *c);
/* A string field as a C string (a copy that lives until fake_node_free), or
 * NULL when the field is absent. */
const char *fake_str(const lr_pf_t *f);

/* -- Loop and resources ---------------------------------------------------- */

/* Runs the loop until done(ud) is true or max_ms passed; returns done(ud). */
int fake_run(lr_node_t *n, int (*done)(void *ud), void *ud, int max_ms);
/* Runs the loop until object id is freed (at most a second): 1 if it was. */
int fake_freed(lr_node_t *n, const char *id);
/* Available units of resource name now. */
int64_t fake_avail(lr_node_t *n, const char *name);

#endif
