/* The node manager (`lray _node`): one event loop that keeps this node's
 * workers, leases, objects and shared-memory store, runs the head (core/gcs)
 * beside it when it is the head node, and serves the state API. Private to
 * core/raylet: the files split by role and share these structs.
 *
 *   node.c      start, stop, clients, message dispatch, the head's glue
 *   pool.c      worker processes: spawn, output, exit, the idle stack
 *   lease.c     lease requests, grants, blocked workers, dispatch
 *   objdir.c    the object directory: counts, lends, the store's ranges
 *   placement.c actors the head placed here: resources, start, stop
 *   events.c    what happened, for `lray list/logs/timeline` and the dashboard
 *   state.c     the state API answers (JSON)
 *   headlink.c  this node in the cluster's node table; a joined node's link
 *               to the head
 *   view.c      every node's resources, as the head last said: where to spill
 *   fwd.c       a joined node's clients and the head (fwd, proxy clients)
 *   memmon.c    memory pressure: oom_score_adj, the memory monitor
 *   spill.c     spilling objects to disk when the store is full
 *   unmap.c     asking the processes that hold an object to let go of its
 *               range before it spills
 *   peer.c      authenticated links to other nodes (client side)
 *   transfer.c  objects between nodes: fetch, pull, chunks
 *   remote.c    drivers that do not share the store: the cookie, writes
 *   xref.c      references across nodes: holds at an object's home node,
 *               questions to it, claims passed on
 *
 * Loop thread only. Licensed under the MIT license; see LICENSE. */
#ifndef LR_RAYLET_NODE_H
#define LR_RAYLET_NODE_H

#include <limits.h>
#include <stdint.h>
#include <uthash.h>
#include <uv.h>
#include "common/buf.h"
#include "gcs/gcs.h"
#include "net/net.h"
#include "objstore/objstore.h"
#include "proto/proto.h"
#include "raylet/raylet.h"

#define LR_ID_MAX 64 /* longest id (job, worker, lease) the node makes */
/* The shm region is LR_COOKIE_SPACE bytes longer than the store: the cookie
 * (LR_COOKIE_BYTES hex digits, remote.c) lives there, where no allocation
 * reaches. lua/lray/store_link.lua reads it at the same place. */
#define LR_COOKIE_SPACE 64
#define LR_COOKIE_BYTES 32

typedef struct lr_node_s lr_node_t;
typedef struct lr_client_s lr_client_t;
typedef struct lr_worker_s lr_worker_t;
typedef struct lr_lease_s lr_lease_t;
typedef struct lr_obj_s lr_obj_t;
typedef struct lr_job_s lr_job_t;
typedef struct lr_placement_s lr_placement_t;

/* A string set or map entry keyed by its own bytes. */
typedef struct lr_strset_s {
  char *key;
  UT_hash_handle hh;
} lr_strset_t;

/* -- Clients: drivers and workers connected to the node ------------------- */

enum { LR_CL_NEW, LR_CL_DRIVER, LR_CL_WORKER, LR_CL_NODE, LR_CL_PROXY };

typedef struct lr_alloc_s { /* a store range a client was given, not yet put */
  uint64_t off, size;
  UT_hash_handle hh;
} lr_alloc_t;

struct lr_client_s {
  lr_conn_t conn; /* conn.data is the client */
  lr_node_t *node;
  uint64_t id; /* the head knows clients by this number */
  int kind;
  int64_t pid;
  char job[LR_ID_MAX]; /* a driver's job */
  lr_worker_t *worker; /* set for a worker's connection */
  lr_strset_t *held;   /* object ids this client holds a reference to */
  lr_alloc_t *allocs;
  lr_lease_t *leases; /* lease requests it made (owner list) */
  int gone;           /* closed: handlers ignore it */
  lr_auth_t *auth;    /* a TCP peer that has not proved the token yet */
  struct {
    lr_client_t *via;   /* a proxy: the joined node's link it stands behind */
    uint64_t remote_id; /* ...and that node's number for its client */
  } proxy;              /* (the key of node.proxies: no padding) */
  double accepted;      /* monotonic seconds, for the handshake's deadline */
  UT_hash_handle hh;    /* node.clients by id */
  UT_hash_handle hh_proxy; /* node.proxies by proxy (via, remote_id) */
};

/* -- Jobs: one per driver --------------------------------------------------- */

struct lr_job_s {
  char id[LR_ID_MAX];
  lr_client_t *driver;
  char *ns, *path, *cpath;
  int log_to_driver;
  int64_t pid;
  double started; /* wall clock */
  UT_hash_handle hh;
};

/* -- Workers ---------------------------------------------------------------- */

enum { LR_W_STARTING, LR_W_IDLE, LR_W_LEASED, LR_W_ACTOR, LR_W_DEAD };

struct lr_worker_s {
  lr_node_t *node;
  char wid[LR_ID_MAX];
  char addr[PATH_MAX];
  char tcp[300]; /* host:port for submitters on other nodes ("" none) */
  int64_t pid;
  int state;
  uv_process_t proc;
  uv_pipe_t out[2];
  int open_handles; /* the process and its pipes: freed at 0 */
  int exited, in_table;
  int64_t exit_status;
  int exit_signal;
  lr_client_t *client;          /* after hello */
  lr_lease_t *lease;            /* lent to a submitter */
  int blocked;                  /* its task waits in get */
  lr_placement_t *actor;        /* the actor it runs */
  lr_placement_t *for_actor;    /* spawned to run this actor */
  char job[LR_ID_MAX];          /* the job of what it runs now */
  lr_strset_t *jobs;            /* jobs introduced to it */
  char *label;                  /* an actor's class name */
  char *labels[3];              /* the task printing on stdout/stderr */
  lr_buf_t partial[3];          /* an unfinished output line */
  uv_timer_t partial_timer;     /* shows an unfinished line after a while */
  int timer_open;
  FILE *logf[3];                /* <session>/logs/worker-PID.out|err */
  UT_hash_handle hh;            /* node.workers by wid */
};

/* -- Leases ----------------------------------------------------------------- */

enum { LR_L_PENDING, LR_L_GRANTED, LR_L_DONE };

struct lr_lease_s {
  char lid[LR_ID_MAX];
  uint64_t num; /* the scheduler's id */
  lr_client_t *owner;
  char *rid, *name;
  char job[LR_ID_MAX];
  lr_res_req_t req;
  int state;
  int granted; /* resources granted, waiting for an idle worker */
  int spilled; /* sent here by another node: stays (one hop) */
  int retriable; /* its tasks may be retried: the memory monitor's first pick */
  lr_res_gpus_t gpus;
  lr_worker_t *worker;
  double submitted, key; /* monotonic seconds; key orders the queue */
  lr_lease_t *owner_next, *owner_prev;
  lr_lease_t *grant_next; /* node.granted queue */
  UT_hash_handle hh;      /* node.leases by lid */
  UT_hash_handle hh_num;  /* node.by_num */
};

/* -- Objects ---------------------------------------------------------------- */

enum { LR_O_PENDING, LR_O_OK, LR_O_ERR };

typedef struct lr_waiter_s {
  uint64_t client;
  struct lr_waiter_s *next;
} lr_waiter_t;

struct lr_obj_s {
  char *id;
  int st;
  int64_t count;
  char *data;   /* inline bytes (with data_len), or NULL */
  size_t data_len;
  int has_data;
  int64_t shm_off, shm_len; /* shm_len < 0: not in the store */
  /* Ranges of later puts of the same id (a retried task finishing again):
   * {off, len} pairs. The retry's result names its own range to its caller,
   * who reads it, so they are freed with the object, not at the put. */
  int64_t *dups;
  uint32_t ndups;
  char *err;    /* encoded error, or NULL */
  size_t err_len;
  char *etype, *emsg; /* a failure the node made */
  char *arr;
  char **contains; /* ids the value holds */
  uint32_t ncontains;
  lr_waiter_t *waiters;
  uint64_t expected_from; /* client that promised to store it, or 0 */
  int64_t owner_pid;      /* who put it (for `lray memory`) */
  char *call_site;
  int holds_actors; /* its value holds handles: lent to the head (o:<id>) */
  double doomed_at; /* monotonic; < 0 while referenced */
  int64_t inner;       /* of count: objects that contain it */
  double used_at;      /* monotonic: stored or last asked for (LRU) */
  int64_t spilled_len; /* >= 0: on disk (spill.c), not in the store */
  /* unmap.c: gen counts the times its location was handed out or a new
   * count began; a spill its holders agreed to goes ahead only if gen is
   * still unmap_gen. unmap_from: holders asked that have not answered. */
  uint64_t gen, unmap_gen;
  uint64_t *unmap_from;
  uint32_t unmap_n;
  int unmapping;          /* holders are being asked */
  int spilling;           /* being written to disk (spill.c, off the loop) */
  int restoring;          /* being read back from disk (spill.c, off the loop) */
  int restore_err;        /* why its last read back failed (a negative errno), or 0 */
  double unmap_at, unmap_no; /* asked at; last refused or unanswered at */
  char *home;          /* xref.c: another node whose store holds it, or NULL */
  int home_held;       /* ...which holds it for this node (one ref) */
  int home_asked;      /* ...which was asked for its value (sub) */
  UT_hash_handle hh;
};

/* -- Actors placed on this node --------------------------------------------- */

struct lr_placement_s {
  char *aid;
  char job[LR_ID_MAX];
  char *cname;
  lr_buf_t place_msg; /* the actor_place message, encoded: read at start */
  char **holds; /* every object id it keeps alive while it lives */
  uint32_t nholds;
  lr_res_req_t res, place;
  uint64_t num; /* the scheduler's id for its hold */
  int placed;   /* holds res */
  int waiting;  /* in node.unplaced */
  int final;    /* stopped for good: freed once its process is gone */
  lr_res_gpus_t gpus;
  lr_worker_t *worker;  /* runs it */
  lr_worker_t *spawned; /* started for it, not yet said hello */
  lr_placement_t *next_unplaced;
  UT_hash_handle hh; /* node.placements by aid */
};

/* -- The node ----------------------------------------------------------------- */

struct lr_node_s {
  uv_loop_t *loop;
  char node_id[LR_ID_MAX];
  char session_dir[PATH_MAX / 2]; /* room for the names inside it */
  char sock[PATH_MAX];
  char tcp_addr[300];
  char exe[PATH_MAX];
  char shm_name[LR_SHM_NAMEMAX + 1];
  lr_shm_t shm;
  lr_salloc_t region;
  int64_t store_size;
  int64_t owner_pid; /* the driver that started this node, if embedded */
  int prestart;
  int max_workers;
  int dashboard_fd;
  uv_pipe_t unix_srv;
  uv_tcp_t tcp_srv;
  int tcp_on;
  uv_prepare_t flusher;
  uv_signal_t sigs[3];
  uv_timer_t sweep_timer, dash_timer;
  lr_arena_t arena;
  lr_arena_t arena2;  /* for a message inside another (fwd) */
  uint16_t job_prefix; /* a joined node's job ids start with it */
  lr_sched_t *sched;
  lr_gcs_t *gcs;
  uint64_t next_client, next_num, next_job, next_wid;
  lr_client_t *clients;
  lr_client_t *proxies; /* the head's proxy clients, by (via, remote_id) */
  lr_job_t *jobs;
  lr_worker_t *workers;
  int nworkers, starting, nblocked;
  lr_worker_t **idle; /* a stack: the warmest first */
  int nidle, idle_cap;
  lr_lease_t *leases, *by_num;
  lr_lease_t *granted_head, *granted_tail;
  lr_obj_t *objects;
  int sweeping;
  struct lr_tomb_s *lends_claimed; /* tokens claimed or unlent before their lend */
  size_t ntombs;
  struct lr_lend_s *lends;
  lr_placement_t *placements;
  lr_placement_t *unplaced_head;
  double free_grace; /* seconds an unreferenced object lingers */
  int cleaned;
  int debug;
  char token[LR_AUTH_TOKEN_MAX_HEX + 1]; /* the cluster token, "" if none */
  char cookie[LR_COOKIE_BYTES + 1];       /* remote.c: in the region's tail */
  uv_timer_t auth_timer;                  /* closes handshakes past their deadline */
  /* headlink.c: this node in the cluster's node table */
  lr_conn_t head; /* a joined node's connection to the head */
  int hl_state;
  lr_auth_t hl_auth;
  char head_address[300];
  uv_timer_t view_timer;
  uint64_t view_digest, view_sent;
  uint64_t head_heard; /* loop time (ms) of the head's last frame */
  struct lr_view_s *view; /* view.c: the cluster as the head last said */
  struct lr_events_s *ev;
  struct lr_memmon_s *memmon;
  uint64_t spilled_bytes, spills, restores;
  char spill_dir[PATH_MAX];  /* spill.c: where files go ("": <session>/spill) */
  int spill_err;             /* the last spill's error (0: it worked) */
  int spill_jobs;            /* spill.c: writes and reads under way in the thread pool */
  uint64_t unmap_bytes;      /* unmap.c: bytes of objects whose holders are asked */
  int unmap_live;            /* ...and how many objects */
  uv_timer_t unmap_timer;
  int unmap_timer_on;
  struct lr_peer_s *peers;    /* peer.c: links to other nodes, by address */
  struct lr_xfer_s *xfers;    /* transfer.c: copies under way, by object id */
  uint64_t pulled_bytes, pulls; /* transfer.c: copies made here */
  /* xref.c sends to other nodes with this (NULL: lr_peer_to); tests set it. */
  int (*to_peer)(lr_node_t *n, const char *address, const void *m);
};

/* -- node.c ------------------------------------------------------------------ */

double lr_node_now(void);  /* monotonic seconds */
double lr_node_time(void); /* wall clock seconds */
void lr_node_random_hex(char *out, int nbytes); /* out: 2 * nbytes + 1 */
/* Sends message m to client c unless it is gone. */
void lr_node_send(lr_client_t *c, const void *m);
lr_client_t *lr_node_client(lr_node_t *n, uint64_t id);
lr_job_t *lr_node_job(lr_node_t *n, const char *id);
/* Tells job's driver text as a warning (the driver prints each once). */
void lr_node_warn(lr_node_t *n, const char *job, const char *text);
/* Sends m to the head. */
void lr_node_to_head(lr_node_t *n, uint64_t client, const void *m);
void lr_node_cleanup(lr_node_t *n, int code);

/* pstr helpers: a C string copy of a message string (NULL when absent). */
char *lr_pstrdup(const lr_pf_t *f);
int lr_pstreq(const lr_pf_t *f, const char *s);

/* -- pool.c -------------------------------------------------------------------- */

/* Starts a worker process; for_actor: dedicated to that actor. NULL when
 * the node already runs its limit of processes or the spawn failed. */
lr_worker_t *lr_pool_spawn(lr_node_t *n, lr_placement_t *for_actor);
void lr_pool_hello(lr_node_t *n, lr_worker_t *w, lr_client_t *c);
lr_worker_t *lr_pool_take_idle(lr_node_t *n);
void lr_pool_push_idle(lr_node_t *n, lr_worker_t *w);
void lr_pool_introduce_job(lr_node_t *n, lr_worker_t *w, const char *job);
void lr_pool_kill(lr_worker_t *w, int sig);
/* Its connection closed: freed once its process is gone too. */
void lr_pool_client_gone(lr_worker_t *w);
/* Sends what the workers of job, or lent to owner, printed and the node has
 * not read or sent yet (a driver or remote submitter is leaving). */
void lr_pool_flush_output(lr_node_t *n, const char *job, const lr_client_t *owner);
void lr_pool_flush_partial(lr_worker_t *w);
/* Task workers that count against the pool's soft limit. */
int lr_pool_count_task_workers(lr_node_t *n);
int lr_pool_limit(lr_node_t *n);
void lr_pool_prestart(lr_node_t *n, int count);

/* -- lease.c ------------------------------------------------------------------- */

/* Reads a message's resource map (units) into r; 0, or -1 with why. */
int lr_lease_req(lr_node_t *n, const lr_pf_t *res, lr_res_req_t *r, char *why, size_t whylen);
void lr_lease_request(lr_node_t *n, lr_client_t *c, const lr_m_lease_t *m);
void lr_lease_done(lr_node_t *n, lr_worker_t *w, const lr_m_lease_done_t *m);
void lr_lease_return(lr_node_t *n, lr_client_t *c, const lr_m_lease_return_t *m);
void lr_lease_cancel(lr_node_t *n, lr_client_t *c, const lr_m_lease_cancel_t *m);
void lr_lease_blocked(lr_node_t *n, lr_worker_t *w, int on);
void lr_lease_end(lr_node_t *n, lr_lease_t *L);
void lr_lease_drop_client(lr_node_t *n, lr_client_t *c);
void lr_lease_drop_job(lr_node_t *n, const char *job);
/* Starts whatever can start now. */
void lr_dispatch(lr_node_t *n);
uint64_t lr_node_number(lr_node_t *n);
size_t lr_lease_pending(lr_node_t *n);
/* The cluster view changed: requests waiting here that fit elsewhere now
 * go there (their submitters hear spill). */
void lr_lease_respill(lr_node_t *n);

/* -- objdir.c ------------------------------------------------------------------ */

lr_obj_t *lr_obj_get(lr_node_t *n, const char *id, size_t len); /* creates */
lr_obj_t *lr_obj_find(lr_node_t *n, const char *id, size_t len);
void lr_obj_incref(lr_node_t *n, const char *id, size_t len);
void lr_obj_decref(lr_node_t *n, const char *id, size_t len);
void lr_obj_hold(lr_node_t *n, lr_client_t *c, const char *id, size_t len);
void lr_obj_unhold(lr_node_t *n, lr_client_t *c, const char *id, size_t len);
void lr_obj_put(lr_node_t *n, lr_client_t *c, const lr_m_put_t *m);
void lr_obj_expect(lr_node_t *n, lr_client_t *c, const lr_m_expect_t *m);
void lr_obj_subscribe(lr_node_t *n, lr_client_t *c, const char *id, size_t len);
/* Holds m->ids under m->token until its claim or unlend; with m->home, ids
 * this node neither stores nor knows a home of are held there (xref.c). */
void lr_obj_lend(lr_node_t *n, const lr_m_lend_t *m);
/* After lr_obj_lend of m from client c (the lender): records who lent it
 * and its receiver (m->to), so the lend ends when either leaves (objdir.c,
 * "Lenders and receivers that leave"). */
void lr_obj_lend_peers(lr_node_t *n, lr_client_t *c, const lr_m_lend_t *m);
void lr_obj_claim(lr_node_t *n, const char *token, size_t len);
void lr_obj_unlend(lr_node_t *n, const char *token, size_t len);
void lr_obj_alloc(lr_node_t *n, lr_client_t *c, const lr_m_alloc_t *m);
void lr_obj_drop_client(lr_node_t *n, lr_client_t *c);
/* Fills v (an lr_m_value_t) with o's value; strings borrowed from o. */
void lr_obj_value(const lr_obj_t *o, lr_m_value_t *v, lr_pitem_t shm[2]);
int lr_obj_ready(lr_node_t *n, const char *id, size_t len);
void lr_obj_stats(lr_node_t *n, size_t *count, uint64_t *bytes);
void lr_obj_init(lr_node_t *n);
/* Space came free (a spill its holders agreed to): allocs and restores
 * waiting for room try again now. */
void lr_obj_kick(lr_node_t *n);
/* Why id is not ready, as a sentence in out, or 0 when it is on its way. */
int lr_obj_why(lr_node_t *n, const char *id, size_t len, char *out, size_t outlen);
/* A range of size bytes of the store, making room as a put does (freeing
 * unreferenced objects, spilling); its offset, or -1 when full. */
int64_t lr_obj_room(lr_node_t *n, uint64_t size);
/* Object id's bytes are now at [off, off+len) of the store (a copy from
 * another node, arr: an lray.array's element type or NULL): stored as if
 * put, waiters told; if it was stored already the range is freed. */
void lr_obj_stored(lr_node_t *n, const char *id, int64_t off, int64_t len, const char *arr);
/* The value record m of a pending object came from another node (its
 * home): every reader waiting here gets it as it is (it names that node's
 * store); the object stays pending here. */
void lr_obj_remote_value(lr_node_t *n, const lr_m_obj_t *m);
/* Every reader waiting for o gets the failure etype: msg. */
void lr_obj_fail_waiters(lr_node_t *n, lr_obj_t *o, const char *etype, const char *msg);
/* A read of spilled o from disk ended (spill.c): rc 0 and o in the store,
 * or why not. Answers the readers waiting for it. */
void lr_obj_restored(lr_node_t *n, lr_obj_t *o, int rc);

/* -- placement.c ---------------------------------------------------------------- */

void lr_place_actor(lr_node_t *n, const lr_m_actor_place_t *m);
void lr_place_stop(lr_node_t *n, const lr_m_actor_stop_t *m);
/* Places waiting actors that fit now (after resources or objects came). */
void lr_place_waiting(lr_node_t *n);
/* A worker spawned for an actor said hello: 1 if it took the actor. */
int lr_place_on_hello(lr_node_t *n, lr_worker_t *w);
void lr_place_worker_exited(lr_node_t *n, lr_worker_t *w);
void lr_place_unlink_all(lr_node_t *n);

/* -- events.c ------------------------------------------------------------------- */

void lr_ev_init(lr_node_t *n);
void lr_ev_job_started(lr_node_t *n, const lr_job_t *j);
void lr_ev_job_ended(lr_node_t *n, const char *job);
void lr_ev_output(lr_node_t *n, lr_worker_t *w, int stream, const char *data, size_t len);
void lr_ev_worker_exited(lr_node_t *n, lr_worker_t *w);
void lr_ev_spans(lr_node_t *n, lr_client_t *c, const lr_m_spans_t *m);
void lr_ev_remove_logs(lr_node_t *n);
/* Writes {"items": [...]} for list what (tasks, jobs, spans, counters,
 * objects, logs, workers); 0, or -1 when what is not one of them. */
int lr_ev_list(lr_node_t *n, const lr_m_list_t *m, lr_buf_t *json);

/* -- headlink.c ------------------------------------------------------------------ */

/* Joins the cluster whose head is at address (host:port): connects, proves
 * the token, registers; returns once registered (0) or failed (-1). */
int lr_headlink_start(lr_node_t *n, const char *address);
/* The head's own node: registers with the head in this process. */
void lr_headlink_self(lr_node_t *n);
/* Sends client c's rpc m (rid: its rid field, rewritten) to the head; -1
 * when there is no head link. */
int lr_headlink_relay(lr_node_t *n, lr_client_t *c, lr_pf_t *rid, const void *m);
/* Sends m to the head (a joined node; dropped while the link is down). */
void lr_headlink_send(lr_node_t *n, const void *m);
int lr_headlink_up(const lr_node_t *n);
/* fwd.c: a joined node's clients and the head. */
/* Joined node: client's message m for the head, wrapped; -1 if no link. */
int lr_fwd_out(lr_node_t *n, uint64_t client, const void *m);
/* Joined node: the head's fwd for one of our clients. */
void lr_fwd_deliver(lr_node_t *n, const lr_m_fwd_t *m);
/* Head: a fwd from the joined node behind nc. */
void lr_fwd_in(lr_node_t *n, lr_client_t *nc, const lr_m_fwd_t *m);
/* Head: sends m to proxy p (over its node's link). */
void lr_fwd_send(lr_client_t *p, const void *m);
/* Head: the proxy for client remote of the node behind nc (NULL: none). */
lr_client_t *lr_fwd_proxy(lr_node_t *n, lr_client_t *nc, uint64_t remote, int create);
void lr_fwd_drop(lr_node_t *n, lr_client_t *proxy);

/* -- memmon.c ------------------------------------------------------------------- */

enum { LR_OOM_NODE = -500, LR_OOM_ACTOR = 500, LR_OOM_TASK = 1000 };

/* Sets pid's oom_score_adj (0: this process); 0 or a negative errno. */
int lr_memmon_set_score(int64_t pid, int score);
/* w runs tasks (actor 0) or an actor (1) from now on: its score follows. */
void lr_memmon_worker_role(lr_worker_t *w, int actor);
/* Lowers the node's own score and starts the monitor (see memmon.c). */
void lr_memmon_start(lr_node_t *n);
/* Memory in use and its limit, in bytes; 0, or -1 when unreadable. */
int lr_memmon_usage(lr_node_t *n, uint64_t *used, uint64_t *limit);
/* The lease whose worker the monitor would kill now: the newest granted
 * task lease whose tasks may be retried, else the newest of any; or NULL. */
lr_lease_t *lr_memmon_pick(lr_node_t *n);
uint64_t lr_memmon_kills(lr_node_t *n);

/* -- spill.c -------------------------------------------------------------------- */

/* 1 when o may be spilled: stored, in the store, and counted only by the
 * objects containing it, so no process can be reading its range. */
int lr_spill_candidate(const lr_obj_t *o);
/* Writes o to disk and frees its range: 0, LR_EBADARG (not a candidate) or
 * a negative errno (the disk; o stays in the store). */
int lr_spill_one(lr_node_t *n, lr_obj_t *o);
/* Spills candidates, least recently used first, until a range of size fits
 * (never keep); returns how many it spilled. LRAY_SPILL=0: none. */
int lr_spill_make_room(lr_node_t *n, uint64_t size, const lr_obj_t *keep);
/* Brings a spilled o back into the store (0 when it is not spilled), or
 * LR_ESTOREFULL / a negative errno, leaving it on disk. */
int lr_spill_restore(lr_node_t *n, lr_obj_t *o);
/* lr_spill_restore with the read in libuv's thread pool, for readers: 0
 * when o is in the store now, 1 when it is being read back (`restoring`:
 * lr_obj_restored is called when that is done), or LR_ESTOREFULL / a
 * negative errno, leaving it on disk (the error of its last read, which is
 * not tried again off the loop). */
int lr_spill_restore_async(lr_node_t *n, lr_obj_t *o);
/* o is freed: its file goes. */
void lr_spill_forget(lr_node_t *n, lr_obj_t *o);
void lr_spill_cleanup(lr_node_t *n);
/* 1 unless LRAY_SPILL=0. */
int lr_spill_on(void);
/* Writes o to disk and frees its range whoever counts it: the caller knows
 * no process can read its range (unmap.c, with the holders' consent). 0 or
 * a negative errno (o stays in the store; n->spill_err says why). */
int lr_spill_write(lr_node_t *n, lr_obj_t *o);
/* lr_spill_write in libuv's thread pool: 0 when queued (o is then
 * `spilling`), or a negative code. When the write is done, o spills if its
 * gen is unchanged (nobody was handed its location meanwhile) and waiting
 * allocs are woken; else the file goes and o stays in the store. */
int lr_spill_write_async(lr_node_t *n, lr_obj_t *o);
/* The directory spill files go to (made on the first spill). */
const char *lr_spill_dir(lr_node_t *n, char *buf, size_t len);
/* Removes, in a --spill-dir parent, the lray-spill-<pid>-<node id>
 * directories (and their files) of nodes whose pid is gone (killed with
 * SIGKILL, they could not clean up); returns how many. */
int lr_spill_sweep(const char *parent);

/* -- unmap.c --------------------------------------------------------------------- */

/* 1 when o may spill once its holders let go: stored in the store, no one
 * waits for it, and every count is a driver's or worker's hold or a
 * containing object's (no lend, actor placement or node pulling it). */
int lr_unmap_candidate(lr_node_t *n, const lr_obj_t *o);
/* Asks the holders of candidates, least recently used first (never keep),
 * to forget their ranges until the objects asked cover size bytes with
 * those already asked. Answers come later (lr_unmap_answer); objects spill
 * as their last holder agrees. Returns how many objects it asked about. */
int lr_unmap_ask(lr_node_t *n, uint64_t size, const lr_obj_t *keep);
/* Client c's answer. */
void lr_unmap_answer(lr_node_t *n, lr_client_t *c, const lr_m_unmapped_t *m);
/* o's location was handed out, or a new count began: an exchange about it
 * is off (it may start again later). */
static inline void lr_unmap_touch(lr_obj_t *o) { o->gen++; }
/* o is freed: forget its exchange. */
void lr_unmap_forget(lr_node_t *n, lr_obj_t *o);

/* -- view.c ------------------------------------------------------------------------ */

void lr_view_update(lr_node_t *n, const lr_m_cluster_view_t *m);
/* The address of the node a lease request r should go to instead of
 * waiting here, or NULL (run or queue it here). *now: 1 when r fits there
 * now (that node grants it or rejects it), 0 when only some day. */
const char *lr_view_spill(lr_node_t *n, const lr_res_req_t *r, int *now);
/* The address of the next live node of the view from index *i on (moved
 * past it), other than this one and skip; NULL when there is none. */
const char *lr_view_other(lr_node_t *n, size_t *i, const char *skip);

/* -- peer.c --------------------------------------------------------------------- */

typedef struct lr_peer_s lr_peer_t;

/* The link to the node at address (host:port), connecting and proving the
 * token if there is none yet; NULL (why in err, LR_ERRLEN) when address is
 * unusable. transfer.c hears when it is up or down. */
lr_peer_t *lr_peer_get(lr_node_t *n, const char *address, char *err);
int lr_peer_is_up(const lr_peer_t *p);
const char *lr_peer_address(const lr_peer_t *p);
/* Sends m over p: at once when up, after the handshake while it connects
 * (kept in order, bounded); 0, or -1 when p is down or its queue full. */
int lr_peer_send(lr_peer_t *p, const void *m);
/* lr_peer_get, then lr_peer_send: 0, or -1. */
int lr_peer_to(lr_node_t *n, const char *address, const void *m);
/* The client side of the token handshake (net/auth.h) on c, whose frame p
 * is the server's CHALLENGE (proof 0: answers it) or PROOF (proof 1: checks
 * it, closes a, lets c take whole frames). 0 answered, 1 proved, or -1 with
 * why (a static sentence). Shared by peer links and the head link. */
int lr_peer_handshake(lr_conn_t *c, lr_auth_t *a, int proof, const char *p, size_t len,
                      const char **why);

/* -- transfer.c ------------------------------------------------------------------ */

/* The pieces of one copy: asked in order, at most window in flight, and
 * (one link, answered in order) received in the order asked. Pure. */
typedef struct lr_xplan_s {
  uint64_t size, chunk, asked, got;
  int window, inflight;
} lr_xplan_t;

void lr_xplan_init(lr_xplan_t *p, uint64_t size, uint64_t chunk, int window);
/* The next piece to ask for (1, with off and len), or 0: none now. */
int lr_xplan_next(lr_xplan_t *p, uint64_t *off, uint64_t *len);
/* Piece [off, off+len) arrived: 1 when it completes the object, 0 when
 * more is due, -1 when it is not the piece due (the copy is bad). */
int lr_xplan_got(lr_xplan_t *p, uint64_t off, uint64_t len);


/* Reader's side: client c asks for a copy of a remote object (fetch). */
void lr_transfer_fetch(lr_node_t *n, lr_client_t *c, const lr_m_fetch_t *m);
/* Holder's side: peer c asks for a piece (pull). */
void lr_transfer_serve(lr_node_t *n, lr_client_t *c, const lr_m_pull_t *m);
/* Spilled object id was read back (or could not be, or was freed
 * meanwhile): the pulls and fetches that waited for it are handled again. */
void lr_transfer_restored(lr_node_t *n, const char *id);
/* From peer.c: p is up, p went down (why), p brought a chunk. */
void lr_transfer_peer_up(lr_node_t *n, lr_peer_t *p);
void lr_transfer_peer_down(lr_node_t *n, lr_peer_t *p, const char *why);
void lr_transfer_chunk(lr_node_t *n, lr_peer_t *p, const lr_m_chunk_t *m);

/* -- remote.c ------------------------------------------------------------------- */

/* Writes a fresh cookie just past the store's [0, store) in the region. */
void lr_remote_cookie_init(lr_node_t *n, uint64_t store);
/* A client's `write`: copies its bytes into a range it was given by alloc
 * and has not put. Returns 0, or LR_EBADARG (nothing written) when they
 * would fall anywhere else. */
int lr_remote_write_apply(lr_node_t *n, lr_client_t *c, const lr_m_write_t *m);
/* The handler: lr_remote_write_apply, and a refused write closes c. */
void lr_remote_write(lr_node_t *n, lr_client_t *c, const lr_m_write_t *m);
/* -- xref.c -------------------------------------------------------------------- */

#define LR_XREF_ADDR_MAX 300 /* longest node address accepted as a home */

/* 1 when addr (len bytes) is another node's TCP address, not this node's. */
int lr_xref_is_remote(const lr_node_t *n, const char *addr, size_t len);
/* o's home is the node at home (ignored if o has one, is stored or
 * promised here, or home is this node): o is held there while counted
 * here. */
void lr_xref_home(lr_node_t *n, lr_obj_t *o, const lr_pf_t *home);
/* o is counted: holds it at its home if it has one and does not yet. */
void lr_xref_sync(lr_node_t *n, lr_obj_t *o);
/* 1 if this node holds o at the node at addr (its home): the link there is
 * one holder of it, which a copy's `pull {done}` would end too (transfer.c
 * does not send it then); else 0. */
int lr_xref_held_at(const lr_obj_t *o, const char *addr);
/* A reader waits for pending o: asks its home (once) for the record. */
void lr_xref_ask(lr_node_t *n, lr_obj_t *o);
/* o is freed here: lets go of it at its home. */
void lr_xref_forget(lr_node_t *n, lr_obj_t *o);
/* A claim or unlend m (node: where the lend is) for another node: passed
 * on, 1; or 0, this node's own. */
int lr_xref_forward(lr_node_t *n, const lr_pf_t *node, const void *m);
/* The link to addr closed (was_up: after the handshake). */
void lr_xref_peer_down(lr_node_t *n, const char *addr, int was_up);

/* -- state.c -------------------------------------------------------------------- */

void lr_state_resources(lr_node_t *n, lr_buf_t *json);
void lr_state_nodes(lr_node_t *n, lr_buf_t *json);
void lr_state_status(lr_node_t *n, lr_buf_t *json);
const char *lr_node_address(lr_node_t *n, char *buf, size_t len);

int lr_raylet_main(int argc, char **argv);

#endif
