/* The head's private structs, shared by gcs.c (dispatch, jobs, functions),
 * actors.c (the actor table and its state machine) and handles.c (handle
 * counting). Loop thread only.
 *
 * Licensed under the MIT license; see LICENSE. */
#ifndef LR_GCS_INT_H
#define LR_GCS_INT_H

#include <uthash.h>
#include "gcs/gcs.h"
#include "proto/proto.h"

enum { LR_ACTOR_PENDING, LR_ACTOR_ALIVE, LR_ACTOR_RESTARTING, LR_ACTOR_DEAD };

/* A kill_actor waiting for the actor to be dead: its reply goes then. */
typedef struct gcs_waiter_s {
  uint64_t client;
  char *rid;
} gcs_waiter_t;

typedef struct gcs_actor_s {
  char *aid;
  char *cname, *name, *ns, *job, *owner; /* owner: the creating actor */
  char *addr, *cause, *node_id;
  char *tcp;            /* its address for callers on other nodes */
  uint64_t node_client; /* the node it is placed on (0: the head's own) */
  char *init_error; /* the encoded error (a blob: see init_error_n) */
  size_t init_error_n;
  /* The actor_create message as received, encoded: what every placement
   * sends again (code aside) and the methods replies carry. Decoded on
   * demand, so an actor costs its bytes and not an arena. */
  lr_buf_t create;
  int state;
  int64_t pid;          /* its last process (kept once DEAD, as listed) */
  int running;          /* actor_placed since the last place or exit */
  int stop_sent;        /* an actor_stop went to this process */
  int final_sent;       /* actor_stop{final}: the node manager forgot it */
  int placed_once;      /* an actor_place went out (to node_client) */
  int detached, killed, no_restart;
  int64_t restarts, max_restarts, max_task_retries;
  /* Handle counting (handles.c). */
  int64_t hcount;
  char **holds; /* actors this one holds until it dies (actor_create.actors) */
  size_t nholds;
  uv_timer_t *timer; /* the grace timer, made on first use */
  uint64_t zero_at;  /* loop time (ms) of the count's last drop to 0 */
  uint64_t armed_at; /* ...and of the drop the running timer checks */
  /* Clients following its state, and kills waiting for its end. */
  uint64_t *subs;
  size_t nsubs, subcap;
  gcs_waiter_t *waiters;
  size_t nwaiters;
  char *name_key; /* namespace "\0" name, while it owns the name */
  size_t name_klen;
  lr_gcs_t *g;
  UT_hash_handle hh;      /* g->actors, by aid */
  UT_hash_handle hh_name; /* g->names, by name_key */
} gcs_actor_t;

typedef struct gcs_job_s {
  char *job;
  char *ns;
  UT_hash_handle hh;
} gcs_job_t;

typedef struct gcs_fn_s {
  char *h;
  char *code;
  size_t n;
  UT_hash_handle hh;
} gcs_fn_t;

/* An actor id a client holds a handle to. */
typedef struct gcs_held_s {
  char *aid;
  UT_hash_handle hh;
} gcs_held_t;

typedef struct gcs_client_s {
  uint64_t id;
  gcs_held_t *held;
  UT_hash_handle hh;
} gcs_client_t;

/* Holds of an actor id the head does not know yet: a handle's receiver (or
 * a lender) may reach the head before its creator's actor_create, over
 * another connection. The actor adopts the count when it is created. */
typedef struct gcs_early_s {
  char *aid;
  int64_t count;
  UT_hash_handle hh;
} gcs_early_t;

/* Handles lent under a token (in flight, or inside a stored object): each
 * aid counts as a holder until the token is claimed or unlent. */
typedef struct gcs_lend_s {
  char *token;
  char **aids;
  size_t n;
  UT_hash_handle hh;
} gcs_lend_t;

struct lr_gcs_s {
  lr_gcs_env_t env;
  gcs_actor_t *actors;
  gcs_actor_t *names;
  gcs_job_t *jobs;
  gcs_fn_t *fns;
  gcs_client_t *clients;
  struct gcs_node_s *nodes; /* nodes.c */
  uv_timer_t *node_timer;   /* declares silent nodes dead */
  uv_timer_t *view_timer;   /* sends the cluster view when it changed */
  int view_dirty;
  uint64_t alive_sent; /* loop time of the last node_alive */
  gcs_lend_t *lends;
  gcs_early_t *early;
  uint64_t grace_ms; /* env.handle_grace */
  /* Decoded copies of kept messages live here until the outermost
   * lr_gcs_recv (or timer callback) returns. */
  lr_arena_t scratch;
  int depth;
};

/* -- gcs.c ----------------------------------------------------------------- */

/* A NUL-terminated copy of a received string (NULL when absent). */
char *lr_gcs_dup(const lr_pf_t *f);
/* Replaces *dst with a copy of the formatted string. */
void lr_gcs_setf(char **dst, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
gcs_actor_t *lr_gcs_actor(lr_gcs_t *g, const lr_pf_t *aid);
const gcs_job_t *lr_gcs_job(lr_gcs_t *g, const char *job);
const gcs_fn_t *lr_gcs_fn(lr_gcs_t *g, const lr_pf_t *h);
/* Decodes an encoded message we kept into g->scratch; NULL if it does not
 * decode (it always should: we encoded it). */
void *lr_gcs_decode(lr_gcs_t *g, const lr_buf_t *b);
/* Sends a reply with rid (may be NULL) and the fields set in r. */
void lr_gcs_reply(lr_gcs_t *g, uint64_t client, const char *rid,
                  lr_m_reply_t *r);
/* Called by the grace timer around its work, like lr_gcs_recv. */
void lr_gcs_enter(lr_gcs_t *g);
void lr_gcs_leave(lr_gcs_t *g);

/* -- actors.c -------------------------------------------------------------- */

void lr_actors_create(lr_gcs_t *g, uint64_t client,
                      const lr_m_actor_create_t *m);
void lr_actors_placed(lr_gcs_t *g, const lr_m_actor_placed_t *m);
void lr_actors_ready(lr_gcs_t *g, const lr_m_actor_ready_t *m);
void lr_actors_failed(lr_gcs_t *g, const lr_m_actor_failed_t *m);
void lr_actors_exit(lr_gcs_t *g, const lr_m_worker_exit_t *m);
void lr_actors_kill(lr_gcs_t *g, uint64_t client, const lr_m_kill_actor_t *m);
/* The live actor named name in namespace ns (NULL: none), or NULL. */
gcs_actor_t *lr_actors_lookup(lr_gcs_t *g, const char *ns, const char *name);
void lr_actors_drop_job(lr_gcs_t *g, const char *job);
void lr_actors_drop_client(lr_gcs_t *g, uint64_t client);
/* The node at client died: its actors restart elsewhere or end (how). */
void lr_actors_node_died(lr_gcs_t *g, uint64_t client, const char *how);
/* Ends actor a for the cause already set: kills its process (the exit
 * finishes the job) or, when none runs, makes it DEAD now. */
void lr_actors_end(gcs_actor_t *a);
void lr_actors_free(gcs_actor_t *a);

/* -- nodes.c --------------------------------------------------------------- */

void lr_nodes_register(lr_gcs_t *g, uint64_t client, const lr_m_node_register_t *m);
void lr_nodes_view(lr_gcs_t *g, uint64_t client, const lr_m_node_view_t *m);
void lr_nodes_client_gone(lr_gcs_t *g, uint64_t client);
void lr_nodes_list(lr_gcs_t *g, uint64_t client, const lr_pf_t *rid);
void lr_nodes_free(lr_gcs_t *g);
/* The node an actor needing place and res (SMAP units) goes to: the head's
 * own node (0) while it fits now, else the node with the most free CPU
 * where it fits now, else one where it can ever fit; local_only: 0. The
 * pick's free resources are lowered at once, so a burst spreads. */
uint64_t lr_nodes_pick(lr_gcs_t *g, const lr_pf_t *place, const lr_pf_t *res, int local_only);

/* -- actinfo.c ------------------------------------------------------------- */

/* Sends a's state to its subscribers. */
void lr_actinfo_notify(gcs_actor_t *a);
void lr_actinfo_subscribe(lr_gcs_t *g, uint64_t client, const lr_pf_t *aid);
/* Replies to rid with a's aid, class name and methods. */
void lr_actinfo_reply(lr_gcs_t *g, uint64_t client, const char *rid,
                      gcs_actor_t *a, int existed);
void lr_actinfo_get(lr_gcs_t *g, uint64_t client, const lr_m_get_actor_t *m);
void lr_actinfo_list(lr_gcs_t *g, uint64_t client, const lr_m_list_t *m);

/* -- handles.c ------------------------------------------------------------- */

/* Counts client as a holder of aid (once), known or not yet. */
void lr_handles_hold(lr_gcs_t *g, uint64_t client, const char *aid);
void lr_handles_unhold(lr_gcs_t *g, uint64_t client, const char *aid);
/* Holds (delta 1) or lets go of (-1) the actors a holds for its life. */
void lr_handles_hold_list(lr_gcs_t *g, gcs_actor_t *a, int delta);
/* Lets go of every handle client holds. */
void lr_handles_drop_client(lr_gcs_t *g, uint64_t client);
/* The node manager's lend {token, aids}: the aids are held until claim or
 * unlend of token (lr_handles_release). */
void lr_handles_lend(lr_gcs_t *g, const lr_m_lend_t *m);
void lr_handles_release(lr_gcs_t *g, const lr_pf_t *token);
/* a was just created: it takes the holds made before it was known. */
void lr_handles_adopt(lr_gcs_t *g, gcs_actor_t *a);
void lr_handles_free(lr_gcs_t *g);

#endif
