/* The wire messages of lray, one table. Every control message any process
 * sends is declared here once, with typed fields; core/proto/codec.c and the
 * Lua binding (script/lib_proto.c) are driven by this table and nothing
 * else. User payloads (task arguments, results, function code, error values)
 * are opaque STR blobs: the control plane carries them and never decodes
 * them; only the processes that run user code do.
 *
 * LR_PROTO_TYPES(T) lists the types: T(ID, name, KIND). KIND is MSG (sent in
 * a frame of its own) or REC (a record nested in messages). The wire id of a
 * type is its position in this list: append new types at the end, never
 * reorder, and bump LR_PROTO_VERSION when a field changes meaning. (4:
 * actor handles are lent like ObjectRefs: value.actors, lend.aids. 6: a
 * driver that does not share its node's store writes and reads objects
 * over its connection: reply.cookie, write; lends name their receiver,
 * lend.to, push.from, call.from, lender_gone; the memory monitor prefers
 * retriable leases, lease.retriable; spillback is grant-or-reject,
 * lease.reject, reply.spill_now, reply.rejected; result.lost for lineage;
 * references across nodes: ref.home, sub.home, claim/unlend.node, lnode.
 * 7: a driver on a joined node creates actors with ObjectRef arguments:
 * actor_create.lnode, lend.home.)
 *
 * LR_FIELDS_<name>(F) lists a type's fields: F(name, ELEM, CONT, REC).
 *   ELEM  INT (int64), F64 (double), BOOL, STR (bytes), REC (a record)
 *   CONT  ONE (a value), LIST (1..n), IMAP (sparse integer keys -> values),
 *         SMAP (string keys -> values)
 *   REC   for ELEM REC, the record's ID; else NONE
 * Every field is optional; a type has at most 64 fields. */
#ifndef LR_MSGDEF_H
#define LR_MSGDEF_H

#define LR_PROTO_VERSION 7

#define LR_PROTO_TYPES(T)                                                     \
  T(HELLO, hello, MSG)             /* client -> node: a driver or worker */   \
  T(REPLY, reply, MSG)             /* node -> client: answers an rpc */       \
  T(FN, fn, MSG)                   /* a function/class definition, once */    \
  T(PUT, put, MSG)                 /* store an object's value */              \
  T(EXPECT, expect, MSG)           /* announce an object this process owns */ \
  T(SUB, sub, MSG)                 /* ask for objects' values */              \
  T(REF, ref, MSG)                 /* this process now holds a reference */   \
  T(UNREF, unref, MSG)             /* ...and no longer does */                \
  T(ALLOC, alloc, MSG)             /* a range of the shm store, please */     \
  T(BLOCKED, blocked, MSG)         /* worker waits in get: CPU is free */     \
  T(UNBLOCKED, unblocked, MSG)                                                \
  T(CANCEL, cancel, MSG)           /* submitter -> worker: cancel a task */   \
  T(ACTOR_CREATE, actor_create, MSG)                                          \
  T(ACTOR_SUB, actor_sub, MSG)     /* follow an actor's state */              \
  T(ACTOR_REF, actor_ref, MSG)     /* handle counting */                      \
  T(ACTOR_UNREF, actor_unref, MSG)                                            \
  T(ACTOR_READY, actor_ready, MSG) /* worker -> node: init succeeded */       \
  T(ACTOR_FAILED, actor_failed, MSG)                                          \
  T(KILL_ACTOR, kill_actor, MSG)                                              \
  T(GET_ACTOR, get_actor, MSG)     /* look up a named actor */                \
  T(RESOURCES, resources, MSG)     /* state API requests: the reply */        \
  T(NODES, nodes, MSG)             /* carries JSON (reply.json) */            \
  T(LIST, list, MSG)                                                          \
  T(STATUS, status, MSG)                                                      \
  T(SHUTDOWN, shutdown, MSG)       /* the embedded cluster's owner leaves */  \
  T(STOP, stop, MSG)               /* `lray stop` */                          \
  T(OBJ, obj, MSG)                 /* node -> client: an object's value */    \
  T(OUT, out, MSG)                 /* node -> driver: worker output */        \
  T(WARN, warn, MSG)               /* node -> driver: a warning */            \
  T(GC, gc, MSG)                   /* node -> all: store short, collect */    \
  T(JOB, job, MSG)                 /* node -> worker: a job's paths */        \
  T(ACTOR, actor, MSG)             /* node -> client: an actor's state */     \
  T(ACTOR_START, actor_start, MSG) /* node -> worker: become an actor */      \
  T(CALL, call, MSG)               /* caller -> actor: a method call */       \
  T(RET, ret, MSG)                 /* actor -> caller: its results */         \
  T(CANCEL_CALL, cancel_call, MSG)                                            \
  T(LEASE, lease, MSG)             /* submitter -> node: a worker, please */  \
  T(LEASE_START, lease_start, MSG) /* node -> worker: you are lent */         \
  T(LEASE_DONE, lease_done, MSG)   /* worker -> node: idle, lease back */     \
  T(LEASE_RETURN, lease_return, MSG) /* submitter -> node: unused, back */    \
  T(LEASE_CANCEL, lease_cancel, MSG) /* submitter -> node: request withdrawn */ \
  T(LEASE_STOP, lease_stop, MSG)   /* node -> worker: returned unused */      \
  T(LEASE_END, lease_end, MSG)     /* worker -> submitter: lease is over */   \
  T(PUSH, push, MSG)               /* submitter -> worker: run a task */      \
  T(RESULT, result, MSG)           /* worker -> submitter: a task's results */ \
  T(LEASE_WAIT, lease_wait, MSG)   /* node -> submitter: no worker free yet */ \
  T(SPANS, spans, MSG)             /* worker -> node: what it ran, batched */ \
  T(LEND, lend, MSG)               /* refs handed on directly: keep them */   \
  T(CLAIM, claim, MSG)             /* the receiver holds them: lend is over */ \
  T(UNLEND, unlend, MSG)           /* never received: take the lend back */   \
  T(WHY, why, MSG)                 /* a get waits long: explain these ids */  \
  T(VALUE, value, REC)             /* an object's value or failure */         \
  T(ACTOR_OPTS, actor_opts, REC)   /* what the node reads of .options */      \
  /* Between the head (core/gcs) and a node manager (core/raylet). */         \
  T(JOB_END, job_end, MSG)         /* raylet -> head: a job's driver left */  \
  T(CLIENT_GONE, client_gone, MSG) /* raylet -> head: drop its handles */     \
  T(ACTOR_PLACE, actor_place, MSG) /* head -> raylet: start this actor */     \
  T(ACTOR_PLACED, actor_placed, MSG) /* raylet -> head: it runs in pid */     \
  T(ACTOR_STOP, actor_stop, MSG)   /* head -> raylet: end its process */      \
  T(WORKER_EXIT, worker_exit, MSG) /* raylet -> head: an actor's process ended */ \
  T(NODE_REGISTER, node_register, MSG) /* raylet -> head: a node joins */     \
  T(NODE_VIEW, node_view, MSG)     /* raylet -> head: resources; heartbeat */ \
  T(NODE_DEAD, node_dead, MSG)     /* head -> raylet: you are dead: exit */ \
  T(LEASE_OOM, lease_oom, MSG)     /* node -> submitter: killed for memory */ \
  T(NODE_INFO, node_info, REC)     /* one node in a cluster view */           \
  T(CLUSTER_VIEW, cluster_view, MSG) /* head -> raylets: every node's resources */ \
  T(NODE_ALIVE, node_alive, MSG)   /* head -> raylets: the head lives (1 s) */ \
  T(FWD, fwd, MSG)                 /* a joined node's client <-> the head */ \
  /* Objects between nodes (core/raylet/transfer.c). */                      \
  T(FETCH, fetch, MSG)             /* client -> node: copy a remote object */ \
  T(PULL, pull, MSG)               /* node -> node: send me a piece */        \
  T(CHUNK, chunk, MSG)             /* node -> node: a piece of an object */ \
  /* A driver that does not share its node's store (core/raylet/remote.c). */ \
  T(WRITE, write, MSG)             /* driver -> node: bytes of an alloc */  \
  T(LENDER_GONE, lender_gone, MSG) /* node -> receiver: their lender is gone */  \
  /* Spilling objects processes hold (core/raylet/unmap.c). */                \
  T(UNMAP, unmap, MSG)             /* node -> holder: forget these ranges */  \
  T(UNMAPPED, unmapped, MSG)       /* holder -> node: forgot (ids) or not */

/* An object's value: inline bytes (data), a range of the node's shm store
 * (shm = {offset, length}; node: the TCP address of the node whose store it
 * is, when it has one), or an encoded error (err); arr names the element
 * type of an lray.array stored raw; refs are the ids the value contains.
 * etype and emsg: a failure the control plane made (it never encodes user
 * values): the receiver raises an error of that type and message. */
#define LR_VALUE_FIELDS_(F)                                                   \
  F(id, STR, ONE, NONE)                                                       \
  F(data, STR, ONE, NONE)                                                     \
  F(shm, INT, LIST, NONE)                                                     \
  F(err, STR, ONE, NONE)                                                      \
  F(arr, STR, ONE, NONE)                                                      \
  F(etype, STR, ONE, NONE)                                                    \
  F(emsg, STR, ONE, NONE)                                                     \
  F(node, STR, ONE, NONE)

/* A call's arguments: the encoded list (args), the ObjectRefs passed at the
 * top level, by position (deps), and the ids nested in args (refs). */
#define LR_ARGS_FIELDS_(F)                                                    \
  F(args, STR, ONE, NONE)                                                     \
  F(deps, STR, IMAP, NONE)                                                    \
  F(refs, STR, LIST, NONE)

/* refs: the object ids the value holds; actors: the actor ids of the
 * handles it holds (the node keeps a stored value's actors alive). */
#define LR_FIELDS_value(F)                                                    \
  LR_VALUE_FIELDS_(F)                                                         \
  F(refs, STR, LIST, NONE)                                                    \
  F(actors, STR, LIST, NONE)

#define LR_FIELDS_actor_opts(F)                                               \
  F(name, STR, ONE, NONE)                                                     \
  F(namespace, STR, ONE, NONE)                                                \
  F(lifetime, STR, ONE, NONE)                                                 \
  F(get_if_exists, BOOL, ONE, NONE)                                           \
  F(max_concurrency, INT, ONE, NONE)                                          \
  F(concurrency_groups, INT, SMAP, NONE)                                      \
  F(max_restarts, INT, ONE, NONE)                                             \
  F(max_task_retries, INT, ONE, NONE)

#define LR_FIELDS_hello(F)                                                    \
  F(rid, STR, ONE, NONE)                                                      \
  F(proto, INT, ONE, NONE)                                                    \
  F(role, STR, ONE, NONE)                                                     \
  F(wid, STR, ONE, NONE)                                                      \
  F(pid, INT, ONE, NONE)                                                      \
  F(path, STR, ONE, NONE)                                                     \
  F(cpath, STR, ONE, NONE)                                                    \
  F(namespace, STR, ONE, NONE)                                                \
  F(log_to_driver, BOOL, ONE, NONE)                                           \
  F(tcp, STR, ONE, NONE)

/* One reply type for every rpc; each request fills the fields it needs. The
 * state API (resources, nodes, list, status) answers in json. */
#define LR_FIELDS_reply(F)                                                    \
  F(rid, STR, ONE, NONE)                                                      \
  F(err, STR, ONE, NONE)                                                      \
  F(node_id, STR, ONE, NONE)                                                  \
  F(job_id, STR, ONE, NONE)                                                   \
  F(shm, STR, ONE, NONE)                                                      \
  F(session_dir, STR, ONE, NONE)                                              \
  F(namespace, STR, ONE, NONE)                                                \
  F(address, STR, ONE, NONE)                                                  \
  F(off, INT, ONE, NONE)                                                      \
  F(aid, STR, ONE, NONE)                                                      \
  F(existed, BOOL, ONE, NONE)                                                 \
  F(cname, STR, ONE, NONE)                                                    \
  F(methods, BOOL, SMAP, NONE)                                                \
  F(json, STR, ONE, NONE)                                                     \
  F(lid, STR, ONE, NONE)                                                      \
  F(pid, INT, ONE, NONE)                                                      \
  F(token, STR, ONE, NONE)                                                    \
  F(spill, STR, ONE, NONE) \
  F(etype, STR, ONE, NONE)                                                    \
  F(spill_now, BOOL, ONE, NONE)                                               \
  F(rejected, BOOL, ONE, NONE)                                                \
  F(cookie, STR, ONE, NONE)

#define LR_FIELDS_fn(F)                                                       \
  F(h, STR, ONE, NONE)                                                        \
  F(code, STR, ONE, NONE)                                                     \
  F(refs, STR, LIST, NONE)

/* cs: the call site that made the object (`lray memory`). */
#define LR_FIELDS_put(F)                                                      \
  LR_FIELDS_value(F)                                                          \
  F(cs, STR, ONE, NONE)

#define LR_FIELDS_expect(F) F(id, STR, ONE, NONE)
/* home: a node (TCP address) that knows ids this node does not: the node
 * asks it (sub, ref) and holds the object there while it holds it here. */
#define LR_FIELDS_sub(F)                                                      \
  F(ids, STR, LIST, NONE)                                                     \
  F(home, STR, ONE, NONE)
#define LR_FIELDS_ref(F)                                                      \
  F(id, STR, ONE, NONE)                                                       \
  F(home, STR, ONE, NONE)
#define LR_FIELDS_unref(F) F(ids, STR, LIST, NONE)

#define LR_FIELDS_alloc(F)                                                    \
  F(rid, STR, ONE, NONE)                                                      \
  F(size, INT, ONE, NONE)

#define LR_FIELDS_blocked(F)
#define LR_FIELDS_unblocked(F)

/* Submitter -> leased worker: cancel task tid (and, recursive, the tasks it
 * submitted). */
#define LR_FIELDS_cancel(F)                                                   \
  F(tid, STR, ONE, NONE)                                                      \
  F(recursive, BOOL, ONE, NONE)

/* lnode: set by a joined node for its driver's actor whose init takes
 * ObjectRefs (deps, refs): that node (its TCP address) lends them under
 * token "args:<aid>" until the head's node, holding them there, claims it
 * (gcs/actors.c, hold_args). */
#define LR_FIELDS_actor_create(F)                                             \
  F(rid, STR, ONE, NONE)                                                      \
  F(aid, STR, ONE, NONE)                                                      \
  F(ch, STR, ONE, NONE)                                                       \
  LR_ARGS_FIELDS_(F)                                                          \
  F(actors, STR, LIST, NONE)                                                  \
  F(cname, STR, ONE, NONE)                                                    \
  F(methods, BOOL, SMAP, NONE)                                                \
  F(res, INT, SMAP, NONE)                                                     \
  F(place, INT, SMAP, NONE)                                                   \
  F(job, STR, ONE, NONE)                                                      \
  F(opts, REC, ONE, ACTOR_OPTS)                                               \
  F(owner, STR, ONE, NONE)                                                    \
  F(lnode, STR, ONE, NONE)

#define LR_FIELDS_actor_sub(F) F(aid, STR, ONE, NONE)
#define LR_FIELDS_actor_ref(F) F(aid, STR, ONE, NONE)
#define LR_FIELDS_actor_unref(F) F(aid, STR, ONE, NONE)

#define LR_FIELDS_actor_ready(F)                                              \
  F(aid, STR, ONE, NONE)                                                      \
  F(addr, STR, ONE, NONE)                                                     \
  F(tcp, STR, ONE, NONE)

/* err: the encoded error (for the actor's callers); message: its text, so
 * the node never decodes a payload. */
#define LR_FIELDS_actor_failed(F)                                             \
  F(aid, STR, ONE, NONE)                                                      \
  F(err, STR, ONE, NONE)                                                      \
  F(message, STR, ONE, NONE)

#define LR_FIELDS_kill_actor(F)                                               \
  F(rid, STR, ONE, NONE)                                                      \
  F(aid, STR, ONE, NONE)                                                      \
  F(no_restart, BOOL, ONE, NONE)

#define LR_FIELDS_get_actor(F)                                                \
  F(rid, STR, ONE, NONE)                                                      \
  F(name, STR, ONE, NONE)                                                     \
  F(namespace, STR, ONE, NONE)

#define LR_FIELDS_resources(F) F(rid, STR, ONE, NONE)
#define LR_FIELDS_nodes(F) F(rid, STR, ONE, NONE)
#define LR_FIELDS_list(F)                                                     \
  F(rid, STR, ONE, NONE)                                                      \
  F(what, STR, ONE, NONE)                                                     \
  F(since, F64, ONE, NONE)
#define LR_FIELDS_status(F) F(rid, STR, ONE, NONE)
#define LR_FIELDS_shutdown(F) F(rid, STR, ONE, NONE)
#define LR_FIELDS_stop(F)

#define LR_FIELDS_obj(F) LR_VALUE_FIELDS_(F)

#define LR_FIELDS_out(F)                                                      \
  F(name, STR, ONE, NONE)                                                     \
  F(pid, INT, ONE, NONE)                                                      \
  F(text, STR, ONE, NONE)                                                     \
  F(stream, INT, ONE, NONE)

/* job: for the head's warnings, the job whose driver is told. */
#define LR_FIELDS_warn(F)                                                     \
  F(text, STR, ONE, NONE)                                                     \
  F(job, STR, ONE, NONE)
#define LR_FIELDS_gc(F)

#define LR_FIELDS_job(F)                                                      \
  F(job, STR, ONE, NONE)                                                      \
  F(path, STR, ONE, NONE)                                                     \
  F(cpath, STR, ONE, NONE)                                                    \
  F(namespace, STR, ONE, NONE)

#define LR_FIELDS_actor(F)                                                    \
  F(aid, STR, ONE, NONE)                                                      \
  F(state, STR, ONE, NONE)                                                    \
  F(addr, STR, ONE, NONE)                                                     \
  F(pid, INT, ONE, NONE)                                                      \
  F(cause, STR, ONE, NONE)                                                    \
  F(cname, STR, ONE, NONE)                                                    \
  F(name, STR, ONE, NONE)                                                     \
  F(restarts, INT, ONE, NONE)                                                 \
  F(max_task_retries, INT, ONE, NONE)                                         \
  F(init_error, STR, ONE, NONE)                                               \
  F(tcp, STR, ONE, NONE)                                                      \
  F(node_id, STR, ONE, NONE)

#define LR_FIELDS_actor_start(F)                                              \
  F(aid, STR, ONE, NONE)                                                      \
  F(code, STR, ONE, NONE)                                                     \
  F(args, STR, ONE, NONE)                                                     \
  F(depv, REC, IMAP, VALUE)                                                   \
  F(cname, STR, ONE, NONE)                                                    \
  F(job, STR, ONE, NONE)                                                      \
  F(opts, REC, ONE, ACTOR_OPTS)                                               \
  F(session, STR, ONE, NONE)                                                  \
  F(gpus, INT, LIST, NONE)

#define LR_FIELDS_call(F)                                                     \
  F(cid, STR, ONE, NONE)                                                      \
  F(m, STR, ONE, NONE)                                                        \
  LR_ARGS_FIELDS_(F)                                                          \
  F(rets, STR, LIST, NONE)                                                    \
  F(lend, STR, ONE, NONE) \
  F(try, INT, ONE, NONE)                                                      \
  F(from, INT, ONE, NONE)                                                     \
  F(lnode, STR, ONE, NONE)

#define LR_FIELDS_ret(F)                                                      \
  F(cid, STR, ONE, NONE)                                                      \
  F(results, REC, LIST, VALUE)                                                \
  F(lend, STR, ONE, NONE)                                                     \
  F(lnode, STR, ONE, NONE)

#define LR_FIELDS_cancel_call(F) F(cid, STR, ONE, NONE)

/* ObjectRefs and actor handles sent straight from one process to another
 * (in a call, a push, a reply) are lent: the sender asks the node to keep
 * ids (objects) and aids (actors) under token before it sends them, and the
 * receiver claims the token once it holds what it keeps; a message that
 * never arrived is unlent by its sender. The node hands the aids of a lend
 * on to the head (client 0), and the claim or unlend of such a token.
 * to: the receiver's pid, when it is a process of this node (reached over a
 * unix socket): its leaving ends the lend, and the lender's leaving asks it
 * (lender_gone) which of the lend's messages it never got. A message that
 * carries a lend names the lender's node (lnode, its TCP address); a claim
 * or unlend of a lend held by another node names it (node): the receiver's
 * node passes it on over its link to that node, after the refs the
 * receiver sent before it. home (the head to its node: an actor's
 * arguments lent by a joined node): ids this node neither stores nor knows
 * a home of are held there, as ref.home. */
#define LR_FIELDS_lend(F)                                                     \
  F(token, STR, ONE, NONE)                                                    \
  F(ids, STR, LIST, NONE)                                                     \
  F(aids, STR, LIST, NONE)                                                    \
  F(to, INT, ONE, NONE)                                                       \
  F(home, STR, ONE, NONE)
#define LR_FIELDS_claim(F)                                                    \
  F(token, STR, ONE, NONE)                                                    \
  F(node, STR, ONE, NONE)
/* Node -> a lend's receiver: the process that lent tokens to it is gone.
 * The receiver unlends each token whose message it never got (and drops
 * that message should it still come); the rest it claims as usual. */
#define LR_FIELDS_lender_gone(F) F(tokens, STR, LIST, NONE)
#define LR_FIELDS_unlend(F)                                                   \
  F(token, STR, ONE, NONE)                                                    \
  F(node, STR, ONE, NONE)

/* A get or wait has waited `after` seconds for ids: the node warns why. */
#define LR_FIELDS_why(F)                                                      \
  F(ids, STR, LIST, NONE)                                                     \
  F(after, F64, ONE, NONE)

/* Leases. A submitter asks for a worker for a resource shape (name: its
 * first task's, for warnings); the reply has the lease id (lid), the
 * worker's address and pid, or err, or neither once withdrawn. spilled:
 * another node sent it here; reject: it was sent here because it fit now,
 * so grant it now or answer rejected (the sender's view was stale; the
 * submitter asks its own node again, as Ray's grant-or-reject spillback).
 * retriable: the lease's tasks may be retried (max_retries != 0), so the
 * memory monitor kills its worker before one whose tasks may not. */
#define LR_FIELDS_lease(F)                                                    \
  F(rid, STR, ONE, NONE)                                                      \
  F(res, INT, SMAP, NONE)                                                     \
  F(name, STR, ONE, NONE)                                                     \
  F(job, STR, ONE, NONE)                                                      \
  F(spilled, BOOL, ONE, NONE)                                                 \
  F(reject, BOOL, ONE, NONE)                                                  \
  F(retriable, BOOL, ONE, NONE)

#define LR_FIELDS_lease_start(F)                                              \
  F(lid, STR, ONE, NONE)                                                      \
  F(gpus, INT, LIST, NONE)

#define LR_FIELDS_lease_done(F) F(lid, STR, ONE, NONE)
#define LR_FIELDS_lease_return(F) F(lid, STR, ONE, NONE)
#define LR_FIELDS_lease_cancel(F) F(rid, STR, ONE, NONE)
#define LR_FIELDS_lease_stop(F) F(lid, STR, ONE, NONE)
#define LR_FIELDS_lease_end(F) F(lid, STR, ONE, NONE)
#define LR_FIELDS_lease_wait(F) F(rid, STR, ONE, NONE)

/* The node's memory monitor is about to kill this lease's worker: text says
 * why (its tasks are retried, or fail naming memory pressure). */
#define LR_FIELDS_lease_oom(F)                                                \
  F(lid, STR, ONE, NONE)                                                      \
  F(text, STR, ONE, NONE)

/* Spans a worker ran (tasks, actor calls), in columns of equal length:
 * wall-clock start and duration in seconds; failed: it raised. */
#define LR_FIELDS_spans(F)                                                    \
  F(kind, STR, LIST, NONE)                                                    \
  F(name, STR, LIST, NONE)                                                    \
  F(id, STR, LIST, NONE)                                                      \
  F(start, F64, LIST, NONE)                                                   \
  F(dur, F64, LIST, NONE)                                                     \
  F(failed, BOOL, LIST, NONE)

/* try: which attempt this is (1, 2, ... for a task; 0, 1, ... for a call):
 * each try lends its arguments (lend) and its results (tid#try:ret,
 * cid#try:ret) under tokens of its own, so a killed try's lends are taken
 * back without touching the next one's. */
/* A task for a leased worker. depv: the values of ObjectRef arguments, by
 * argument position (deps: there were some). code: the function's encoding,
 * only in the first task of fh this worker gets from this submitter. seq:
 * names the task to the cancel signal. cs: the .remote() call site. */
#define LR_FIELDS_push(F)                                                     \
  F(lid, STR, ONE, NONE)                                                      \
  F(tid, STR, ONE, NONE)                                                      \
  F(seq, INT, ONE, NONE)                                                      \
  F(fh, STR, ONE, NONE)                                                       \
  F(code, STR, ONE, NONE)                                                     \
  F(args, STR, ONE, NONE)                                                     \
  F(depv, REC, IMAP, VALUE)                                                   \
  F(deps, BOOL, ONE, NONE)                                                    \
  F(rets, STR, LIST, NONE)                                                    \
  F(name, STR, ONE, NONE)                                                     \
  F(job, STR, ONE, NONE)                                                      \
  F(refs, STR, LIST, NONE)                                                    \
  F(actors, STR, LIST, NONE)                                                  \
  F(cs, STR, ONE, NONE)                                                       \
  F(lend, STR, ONE, NONE) \
  F(try, INT, ONE, NONE)                                                      \
  F(from, INT, ONE, NONE)                                                     \
  F(lnode, STR, ONE, NONE)

/* rejected: the lease had ended before the task came (send it again);
 * dur: seconds it ran, so the submitter knows short functions; lost: the
 * ObjectRef argument whose value could not be read (its node is gone), so
 * its owner may rebuild it and run the task again. */
#define LR_FIELDS_result(F)                                                   \
  F(tid, STR, ONE, NONE)                                                      \
  F(results, REC, LIST, VALUE)                                                \
  F(lua_error, BOOL, ONE, NONE)                                               \
  F(rejected, BOOL, ONE, NONE)                                                \
  F(dur, F64, ONE, NONE)                                                      \
  F(lend, STR, ONE, NONE)                                                     \
  F(lost, STR, ONE, NONE)                                                     \
  F(lnode, STR, ONE, NONE)

/* -- Head <-> node manager --------------------------------------------------
 * The head (core/gcs) keeps jobs' namespaces, the actor table, names and the
 * function table; a node manager (core/raylet) keeps workers, leases and
 * objects. They speak only these messages (and forward the clients' actor
 * messages, with job, owner and namespace filled in), so the head can move
 * to another process without changing either. client: the node manager's
 * number for a connection. */
#define LR_FIELDS_job_end(F) F(job, STR, ONE, NONE)
#define LR_FIELDS_client_gone(F) F(client, INT, ONE, NONE)

/* Start actor aid on a worker once its ObjectRef arguments (deps, refs) exist
 * and place (what placing needs free) and res (what it holds for life) fit. */
#define LR_FIELDS_actor_place(F)                                              \
  F(aid, STR, ONE, NONE)                                                      \
  F(job, STR, ONE, NONE)                                                      \
  F(code, STR, ONE, NONE)                                                     \
  F(cname, STR, ONE, NONE)                                                    \
  LR_ARGS_FIELDS_(F)                                                          \
  F(res, INT, SMAP, NONE)                                                     \
  F(place, INT, SMAP, NONE)                                                   \
  F(opts, REC, ONE, ACTOR_OPTS)

#define LR_FIELDS_actor_placed(F)                                             \
  F(aid, STR, ONE, NONE)                                                      \
  F(pid, INT, ONE, NONE)                                                      \
  F(node_id, STR, ONE, NONE)

/* Kill actor aid's process if it runs (its worker_exit follows) and drop a
 * placement not yet made. final: the actor is over: also forget it and let
 * go of its arguments; without final an actor_place follows (a restart). */
#define LR_FIELDS_actor_stop(F)                                               \
  F(aid, STR, ONE, NONE)                                                      \
  F(final, BOOL, ONE, NONE)

/* Actor aid's process (pid) ended with status or signal; or (cause) it can
 * never be placed. */
#define LR_FIELDS_worker_exit(F)                                              \
  F(aid, STR, ONE, NONE)                                                      \
  F(pid, INT, ONE, NONE)                                                      \
  F(status, INT, ONE, NONE)                                                   \
  F(signal, INT, ONE, NONE)                                                   \
  F(cause, STR, ONE, NONE)                                                    \
  F(how, STR, ONE, NONE)

/* -- Nodes -------------------------------------------------------------------
 * A node manager that joins a cluster (`lray start --address`) connects to
 * the head over TCP, proves the token, and registers: its id, the address
 * others reach it at, its resources in units (res: totals, avail: free
 * now). It then sends node_view when its resources change (at most every
 * 100 ms) and at least every second: a node silent for 5 s is dead, and
 * dead is final (node_dead: the node stops its workers and exits). */
#define LR_FIELDS_node_register(F)                                            \
  F(node_id, STR, ONE, NONE)                                                  \
  F(address, STR, ONE, NONE)                                                  \
  F(res, INT, SMAP, NONE)                                                     \
  F(avail, INT, SMAP, NONE)

#define LR_FIELDS_node_view(F)                                                \
  F(node_id, STR, ONE, NONE)                                                  \
  F(res, INT, SMAP, NONE)                                                     \
  F(avail, INT, SMAP, NONE)

#define LR_FIELDS_node_dead(F)                                                \
  F(node_id, STR, ONE, NONE)                                                  \
  F(cause, STR, ONE, NONE)

/* The head's view of the nodes, sent to each node manager when it changes
 * (at most every 100 ms): the nodes that changed since the last one, or
 * (full) all of them, to a node that just joined. A lease that does not
 * fit here spills to a node whose free resources fit (one hop: a request
 * marked spilled stays). node_alive: the head sends it every second, so a
 * node tells a hung head from a quiet one (5 s of silence: the head is
 * lost). */
#define LR_FIELDS_node_info(F)                                                \
  F(node_id, STR, ONE, NONE)                                                  \
  F(address, STR, ONE, NONE)                                                  \
  F(alive, BOOL, ONE, NONE)                                                   \
  F(res, INT, SMAP, NONE)                                                     \
  F(avail, INT, SMAP, NONE)

#define LR_FIELDS_cluster_view(F)                                             \
  F(nodes, REC, LIST, NODE_INFO)                                              \
  F(full, BOOL, ONE, NONE)
#define LR_FIELDS_node_alive(F)

/* -- Objects between nodes --------------------------------------------------
 * A process reads an object whose value record names another node's store
 * (value.node) by asking its own node to fetch it: size bytes of the range
 * at node `from`, an lray.array's element type arr. The node copies it into
 * its own store (one transfer per object, shared by every reader) and
 * answers reply {off} (a range of its own store, now held by the reader),
 * or reply {err, etype}. */
#define LR_FIELDS_fetch(F)                                                    \
  F(rid, STR, ONE, NONE)                                                      \
  F(id, STR, ONE, NONE)                                                       \
  F(from, STR, ONE, NONE)                                                     \
  F(size, INT, ONE, NONE)                                                     \
  F(arr, STR, ONE, NONE)

/* The reading node asks the holding node for len bytes at off of object id
 * (several pulls in flight); the holder keeps the object while the pulling
 * peer has asked and not said done (or its link closed). */
#define LR_FIELDS_pull(F)                                                     \
  F(id, STR, ONE, NONE)                                                       \
  F(off, INT, ONE, NONE)                                                      \
  F(len, INT, ONE, NONE)                                                      \
  F(done, BOOL, ONE, NONE)

/* The answer to a pull: the bytes at off (total: the object's size), or err
 * (the holder does not have it). */
#define LR_FIELDS_chunk(F)                                                    \
  F(id, STR, ONE, NONE)                                                       \
  F(off, INT, ONE, NONE)                                                      \
  F(total, INT, ONE, NONE)                                                    \
  F(data, STR, ONE, NONE)                                                     \
  F(err, STR, ONE, NONE)

/* -- Drivers that do not share the store ------------------------------------
 * The hello reply's cookie is what the node wrote at the start of the last
 * LR_COOKIE_SPACE bytes of its shm region: a driver that maps the region
 * and finds it there shares the store; any other is a remote driver, whose
 * objects travel over its connection. It writes a large value into a range
 * it was given (alloc) in pieces, each written straight into the store: data
 * at pos of the range that starts at at; then puts it as usual. It reads a
 * stored object with pull/chunk, as a node does. */
#define LR_FIELDS_write(F)                                                    \
  F(at, INT, ONE, NONE)                                                       \
  F(pos, INT, ONE, NONE)                                                      \
  F(data, STR, ONE, NONE)

/* The node wants to spill objects ids, which the receiver holds: it asks
 * the receiver to forget where they are in the store. The answer: ids it
 * forgot (it asks the node again before it next reads one) and kept, those
 * it still reads (an lray.array view, a read under way). */
#define LR_FIELDS_unmap(F) F(ids, STR, LIST, NONE)
#define LR_FIELDS_unmapped(F)                                                 \
  F(ids, STR, LIST, NONE)                                                     \
  F(kept, STR, LIST, NONE)

/* What a client of a joined node says to the head (actor messages, the
 * class table), and what the head answers it, travel over that node's link
 * wrapped in fwd: client is the joined node's number for it, frame the
 * message. The head answers through a proxy client of its own. */
#define LR_FIELDS_fwd(F)                                                      \
  F(client, INT, ONE, NONE)                                                   \
  F(frame, STR, ONE, NONE)

#endif
