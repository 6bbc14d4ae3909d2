/* The head (Ray's GCS): the cluster's jobs and their namespaces, the actor
 * table and its state machine (docs/actors.md), actor names per namespace,
 * handle counts, and the function table (actor classes by content hash).
 *
 * The head speaks only the protocol (proto/msgdef.h). It receives the
 * clients' actor messages, forwarded by the node manager with the client's
 * number and with job, owner and namespace filled in, and the node
 * manager's own messages (client 0): job, job_end, client_gone,
 * actor_placed, worker_exit, lend/claim/unlend of actor handles (aids) in
 * flight or inside stored objects, and node_register / node_view for its
 * own node. Nodes that joined send node_register and node_view as clients.
 * It also answers `list` with what = "actors"
 * (reply.json: {items = [actor records]}). It answers clients through env.send and asks
 * the node manager through env.to_raylet: actor_place, actor_stop, and warn
 * (with job: for that job's driver). Today both run in the node process and
 * these are function calls; the messages are the same when they cross a
 * socket. Needs: common/, proto/, libuv (timers). Loop thread only.
 *
 * Licensed under the MIT license; see LICENSE. */
#ifndef LR_GCS_H
#define LR_GCS_H

#include <stdint.h>
#include <uv.h>
#include "common/buf.h"

typedef struct lr_gcs_s lr_gcs_t;

typedef struct lr_gcs_env_s {
  void *ud;
  uv_loop_t *loop;
  /* Sends message m (an lr_m_<type>_t) to client number client. */
  void (*send)(void *ud, uint64_t client, const void *m);
  /* Sends message m to the node manager. */
  void (*to_raylet)(void *ud, const void *m);
  /* Seconds a non-detached actor with no handle left lives on before it
   * ends (LR_GCS_HANDLE_GRACE in the node; 0 in tests). */
  double handle_grace;
  /* Sends a message already encoded (lr_proto_encode's bytes) to client,
   * so a broadcast to every node encodes it once. NULL: send is used. */
  void (*send_encoded)(void *ud, uint64_t client, const char *msg, size_t len);
} lr_gcs_env_t;

/* The node's default handle_grace (LRAY_ACTOR_GRACE_S overrides it): a
 * delay that only batches ends, not a safety margin. Every hand-off of a
 * handle is counted (lends, handles inside stored objects), and the specs
 * that prove it run at 0. */
#define LR_GCS_HANDLE_GRACE 0.05

/* Seconds without a node_view after which a joined node is dead. */
#define LR_GCS_NODE_TIMEOUT 5.0

/* env is copied. */
lr_gcs_t *lr_gcs_new(const lr_gcs_env_t *env);
/* Frees the head. Its grace timers are closed: run env.loop once more (or
 * close it) to free their memory. Sends nothing. */
void lr_gcs_free(lr_gcs_t *g);

/* Handles message m (an lr_m_<type>_t) from client number client, or from
 * the node manager when client is 0. Strings in m are borrowed for the
 * call: the head copies what it keeps. Unknown types are ignored. */
void lr_gcs_recv(lr_gcs_t *g, uint64_t client, const void *m);

#endif
