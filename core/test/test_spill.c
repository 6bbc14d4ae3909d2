/* Tests for spilling (raylet/spill.c, unmap.c) on a fake node with a heap
 * buffer for the store: which objects may spill, that bytes come back
 * intact, that ranges and files are freed; the exchange with the holders of
 * an object (asked, agreed, called off, refused, unanswered, gone); and a
 * measure of spill and restore speed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common/errdef.h"
#include "test/fake_node.h"
#include "test/test.h"

static lr_node_t *spill_node(uint64_t store)
{
  lr_node_t *n = fake_node_new(1, 0, store);
  n->shm.base = lr_xmalloc(store);
  n->shm.size = store;
  const char *tmp = getenv("LRAY_TMPDIR");
  snprintf(n->session_dir, sizeof(n->session_dir), "%s/spilltest-XXXXXX", tmp ? tmp : "/tmp");
  mkdir(tmp ? tmp : "/tmp", 0700);
  ASSERT(mkdtemp(n->session_dir));
  return n;
}

/* A stored object of len bytes of byte b, counted by `inner` containing
 * objects and `held` other holders. */
static lr_obj_t *object(lr_node_t *n, const char *id, uint64_t len, int b, int inner, int held)
{
  lr_obj_t *o = lr_obj_get(n, id, strlen(id));
  int64_t off = lr_salloc_alloc(&n->region, len);
  ASSERT(off >= 0);
  memset(n->shm.base + off, b, len);
  o->st = LR_O_OK;
  o->shm_off = off;
  o->shm_len = (int64_t)len;
  o->inner = inner;
  o->count = inner + held;
  o->used_at = lr_node_now();
  return o;
}

static int no_objects(void *ud) { return ((lr_node_t *)ud)->objects == NULL; }
static int no_jobs(void *ud) { return ((lr_node_t *)ud)->spill_jobs == 0; }

static void spill_node_free(lr_node_t *n)
{
  for (lr_obj_t *o = n->objects; o; o = o->hh.next) {
    o->count = 1;
    o->inner = 0;
    lr_obj_decref(n, o->id, strlen(o->id));
  }
  ASSERT(fake_run(n, no_objects, n, 2000));
  ASSERT(fake_run(n, no_jobs, n, 5000)); /* (writes in the thread pool) */
  lr_spill_cleanup(n);
  ASSERT_EQ(rmdir(n->session_dir), 0); /* no file left behind */
  lr_free(n->shm.base);
  n->shm.base = NULL;
  fake_node_free(n);
}

TEST(spill_only_objects_counted_by_containers_alone)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_obj_t *held = object(n, "held", 1 << 20, 'h', 1, 1);
  lr_obj_t *inner = object(n, "inner", 1 << 20, 'i', 1, 0);
  ASSERT(!lr_spill_candidate(held));
  ASSERT(lr_spill_candidate(inner));
  ASSERT_EQ(lr_spill_one(n, held), LR_EBADARG);
  ASSERT_EQ(held->shm_len, 1 << 20);
  spill_node_free(n);
}

TEST(spill_makes_room_lru_first_and_restores_the_bytes)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_obj_t *a = object(n, "a", 1 << 20, 'a', 1, 0);
  lr_obj_t *b = object(n, "b", 1 << 20, 'b', 1, 0);
  object(n, "c", 2 << 20, 'c', 0, 1); /* held: stays */
  b->used_at = a->used_at + 1;
  ASSERT(lr_salloc_alloc(&n->region, 1 << 20) < 0);
  ASSERT_EQ(lr_spill_make_room(n, 1 << 20, NULL), 1);
  ASSERT_EQ(a->shm_len, -1); /* least recently used */
  ASSERT_EQ(a->spilled_len, 1 << 20);
  ASSERT_EQ(b->shm_len, 1 << 20);
  ASSERT_EQ(n->spilled_bytes, 1 << 20);
  int64_t off = lr_salloc_alloc(&n->region, 1 << 20);
  ASSERT(off >= 0);
  memset(n->shm.base + off, 'x', 1 << 20); /* a's old range is reused */
  /* No room to restore a: b is spilled for it, never a itself. */
  ASSERT_EQ(lr_spill_restore(n, a), 0);
  ASSERT_EQ(b->shm_len, -1);
  ASSERT_EQ(a->shm_len, 1 << 20);
  for (int i = 0; i < (1 << 20); i += 4093) ASSERT_EQ(n->shm.base[a->shm_off + i], 'a');
  ASSERT_EQ(n->restores, 1);
  lr_salloc_free(&n->region, (uint64_t)off, 1 << 20);
  spill_node_free(n); /* b's file goes with b */
}

TEST(spill_restore_fails_when_the_store_stays_full)
{
  lr_node_t *n = spill_node(2 << 20);
  lr_obj_t *a = object(n, "a", 1 << 20, 'a', 1, 0);
  ASSERT_EQ(lr_spill_one(n, a), 0);
  object(n, "h", 2 << 20, 'h', 0, 1);
  ASSERT_EQ(lr_spill_restore(n, a), LR_ESTOREFULL);
  ASSERT_EQ(a->spilled_len, 1 << 20); /* still on disk */
  spill_node_free(n);
}

/* -- Restores for readers, off the loop ------------------------------------------ */

static int restore_done(void *ud) { return ((lr_node_t *)ud)->spill_jobs == 0; }

/* Object "a" (1 MiB of 'a', in a 4 MiB store), spilled; *c a driver. */
static lr_obj_t *spilled_a(lr_node_t **n, lr_client_t **c)
{
  *n = spill_node(4 << 20);
  *c = fake_driver(*n, "01000000");
  lr_obj_t *a = object(*n, "a", 1 << 20, 'a', 1, 0);
  ASSERT_EQ(lr_spill_one(*n, a), 0);
  return a;
}

TEST(spill_restore_for_a_reader_reads_off_the_loop_then_answers)
{
  lr_node_t *n;
  lr_client_t *c;
  lr_obj_t *a = spilled_a(&n, &c);
  lr_obj_subscribe(n, c, "a", 1);
  lr_obj_subscribe(n, c, "a", 1); /* one read, one answer */
  ASSERT(a->restoring);
  ASSERT_EQ(fake_nframes(c), 0); /* not until the bytes are back */
  ASSERT(!lr_spill_candidate(a));
  ASSERT(fake_run(n, restore_done, n, 5000));
  ASSERT(!a->restoring);
  ASSERT_EQ(a->spilled_len, -1);
  ASSERT_EQ(a->shm_len, 1 << 20);
  ASSERT_EQ(n->restores, 1);
  ASSERT_EQ(n->spilled_bytes, 0);
  for (int i = 0; i < (1 << 20); i += 4093) ASSERT_EQ(n->shm.base[a->shm_off + i], 'a');
  ASSERT_EQ(fake_count(c, LR_PT_OBJ), 1);
  lr_m_obj_t *m = fake_msg(c, LR_PT_OBJ, 0);
  ASSERT_STREQ(fake_str(&m->id), "a");
  ASSERT(LR_HAS(m->shm) && !LR_HAS(m->etype));
  ASSERT_EQ(m->shm.items[0].v.i, a->shm_off);
  fake_leave(n, c);
  spill_node_free(n); /* and the file went when the bytes came back */
}

TEST(spill_restore_of_an_object_freed_meanwhile_gives_its_range_back)
{
  lr_node_t *n;
  lr_client_t *c;
  lr_obj_t *a = spilled_a(&n, &c);
  lr_obj_subscribe(n, c, "a", 1);
  ASSERT(a->restoring);
  a->inner = 0;
  lr_obj_decref(n, "a", 1); /* doomed; freed by an alloc that needs room, */
  ASSERT(lr_obj_room(n, 4 << 20) < 0); /* before the loop runs the read's end */
  ASSERT(!lr_obj_find(n, "a", 1));
  ASSERT(fake_run(n, restore_done, n, 5000));
  lr_salloc_stats_t st;
  lr_salloc_stats(&n->region, &st);
  ASSERT_EQ(st.used, 0);
  ASSERT_EQ(st.nallocs, 0);
  ASSERT_EQ(n->restores, 0);
  fake_leave(n, c);
  spill_node_free(n);
}

TEST(spill_restore_that_cannot_read_fails_its_readers_and_keeps_the_object)
{
  lr_node_t *n;
  lr_client_t *c;
  lr_obj_t *a = spilled_a(&n, &c);
  char dir[PATH_MAX], path[PATH_MAX + 300];
  lr_spill_dir(n, dir, sizeof(dir));
  DIR *d = opendir(dir);
  ASSERT(d);
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    ASSERT_EQ(unlink(path), 0); /* the disk lost it */
  }
  closedir(d);
  lr_obj_subscribe(n, c, "a", 1);
  ASSERT(fake_run(n, restore_done, n, 5000));
  lr_m_obj_t *m = fake_msg(c, LR_PT_OBJ, 0);
  ASSERT(m);
  ASSERT_STREQ(fake_str(&m->etype), "ObjectStoreFullError");
  ASSERT(strstr(fake_str(&m->emsg), "cannot be restored"));
  ASSERT(strstr(fake_str(&m->emsg), "no such file"));
  ASSERT_EQ(a->spilled_len, 1 << 20); /* still counted as on disk */
  lr_salloc_stats_t st;
  lr_salloc_stats(&n->region, &st);
  ASSERT_EQ(st.used, 0);
  fake_clear(c); /* a second reader is told at once: no second read */
  lr_obj_subscribe(n, c, "a", 1);
  ASSERT(!a->restoring);
  m = fake_msg(c, LR_PT_OBJ, 0);
  ASSERT(m && strstr(fake_str(&m->emsg), "no such file"));
  fake_leave(n, c);
  spill_node_free(n);
}

TEST(spill_an_actors_argument_is_read_back_off_the_loop_before_it_starts)
{
  lr_node_t *n;
  lr_client_t *c;
  lr_obj_t *a = spilled_a(&n, &c);
  lr_worker_t *w = fake_worker(n);
  lr_m_actor_place_t m = LR_MSG_INIT(ACTOR_PLACE);
  LR_SET_CSTR(m.aid, "actor1");
  lr_pitem_t dep = {.key.i = 1, .v.s = {"a", 1}};
  LR_SET_ITEMS(m.deps, &dep, 1);
  lr_place_actor(n, &m);
  ASSERT(a->restoring);
  ASSERT_EQ(fake_count(w->client, LR_PT_ACTOR_START), 0); /* not before its bytes are in */
  ASSERT(fake_run(n, restore_done, n, 5000));
  ASSERT_EQ(a->shm_len, 1 << 20);
  ASSERT_EQ(fake_count(w->client, LR_PT_ACTOR_START), 1);
  lr_m_actor_start_t *s = fake_msg(w->client, LR_PT_ACTOR_START, 0);
  ASSERT_EQ(s->depv.n, 1);
  const lr_m_value_t *v = s->depv.items[0].v.rec;
  ASSERT(LR_HAS(v->shm));
  ASSERT_EQ(v->shm.items[0].v.i, a->shm_off);
  lr_m_actor_stop_t stop = LR_MSG_INIT(ACTOR_STOP);
  LR_SET_CSTR(stop.aid, "actor1");
  LR_SET_BOOL(stop.final, 1);
  lr_place_stop(n, &stop);
  fake_leave(n, c);
  spill_node_free(n);
}

static void pull_piece(lr_node_t *n, lr_client_t *peer, int64_t off, int64_t len)
{
  lr_m_pull_t m = LR_MSG_INIT(PULL);
  LR_SET_CSTR(m.id, "a");
  LR_SET_INT(m.off, off);
  LR_SET_INT(m.len, len);
  lr_transfer_serve(n, peer, &m);
}

TEST(spill_pulls_of_a_spilled_object_wait_for_its_read_off_the_loop)
{
  lr_node_t *n;
  lr_client_t *c;
  lr_obj_t *a = spilled_a(&n, &c);
  lr_client_t *peer = fake_client(n, LR_CL_NEW, NULL); /* another node's link */
  pull_piece(n, peer, 0, 4096);
  pull_piece(n, peer, 4096, 4096);
  ASSERT(a->restoring);
  ASSERT_EQ(fake_count(peer, LR_PT_CHUNK), 0); /* not before its bytes are in */
  ASSERT(fake_run(n, restore_done, n, 5000));
  ASSERT_EQ(fake_count(peer, LR_PT_CHUNK), 2); /* in the order asked */
  for (int i = 0; i < 2; i++) {
    lr_m_chunk_t *ch = fake_msg(peer, LR_PT_CHUNK, i);
    ASSERT(!LR_HAS(ch->err));
    ASSERT_EQ(ch->off.v.i, 4096 * i);
    ASSERT_EQ(ch->total.v.i, 1 << 20);
    ASSERT_EQ(ch->data.v.s.n, 4096);
    ASSERT_EQ(ch->data.v.s.p[4095], 'a');
  }
  fake_leave(n, peer);
  fake_leave(n, c);
  spill_node_free(n);
}

TEST(spill_a_pull_of_an_object_freed_while_read_back_is_refused)
{
  lr_node_t *n;
  lr_client_t *c;
  lr_obj_t *a = spilled_a(&n, &c);
  lr_client_t *peer = fake_client(n, LR_CL_NEW, NULL);
  pull_piece(n, peer, 0, 4096);
  ASSERT(a->restoring);
  a->inner = 0;
  lr_obj_decref(n, "a", 1);
  ASSERT(lr_obj_room(n, 4 << 20) < 0); /* frees it, before the read's end */
  ASSERT(fake_run(n, restore_done, n, 5000));
  lr_m_chunk_t *ch = fake_msg(peer, LR_PT_CHUNK, 0);
  ASSERT(ch && LR_HAS(ch->err)); /* told, not left waiting */
  fake_leave(n, peer);
  fake_leave(n, c);
  spill_node_free(n);
}

TEST(spill_bench)
{
  const uint64_t size = 64 << 20;
  const int k = 4;
  lr_node_t *n = spill_node(size * (uint64_t)k + (1 << 20));
  lr_obj_t *o[4];
  char id[16];
  for (int i = 0; i < k; i++) {
    snprintf(id, sizeof(id), "o%d", i);
    o[i] = object(n, id, size, 'a' + i, 1, 0);
  }
  double t0 = lr_node_now();
  for (int i = 0; i < k; i++) ASSERT_EQ(lr_spill_one(n, o[i]), 0);
  double t1 = lr_node_now();
  for (int i = 0; i < k; i++) ASSERT_EQ(lr_spill_restore(n, o[i]), 0);
  double t2 = lr_node_now();
  for (int i = 0; i < k; i++) ASSERT_EQ(n->shm.base[o[i]->shm_off + size - 1], 'a' + i);
  double gb = (double)size * k / 1e9;
  fprintf(stderr, "  spill: %d x %llu MiB: spill %.2f GB/s, restore %.2f GB/s (page cache, %s)\n",
          k, (unsigned long long)(size >> 20), gb / (t1 - t0), gb / (t2 - t1), n->session_dir);
  spill_node_free(n);
}

/* -- Asking holders (raylet/unmap.c) ------------------------------------------ */

/* A stored object of len bytes held by the clients given (NULL-ended). */
static lr_obj_t *held_by(lr_node_t *n, const char *id, uint64_t len, lr_client_t *a,
                         lr_client_t *b)
{
  lr_obj_t *o = object(n, id, len, id[0], 0, 0);
  if (a) lr_obj_hold(n, a, id, strlen(id));
  if (b) lr_obj_hold(n, b, id, strlen(id));
  return o;
}

/* c's answer to the node: forgot ids (gone) or keeps them (kept). */
static void answer(lr_node_t *n, lr_client_t *c, const char *gone, const char *kept)
{
  lr_m_unmapped_t m = LR_MSG_INIT(UNMAPPED);
  lr_pitem_t g, k;
  memset(&g, 0, sizeof(g));
  memset(&k, 0, sizeof(k));
  if (gone) {
    g.v.s.p = gone;
    g.v.s.n = strlen(gone);
    LR_SET_ITEMS(m.ids, &g, 1);
  }
  if (kept) {
    k.v.s.p = kept;
    k.v.s.n = strlen(kept);
    LR_SET_ITEMS(m.kept, &k, 1);
  }
  lr_unmap_answer(n, c, &m);
}

/* The ids of the nth unmap sent to c, joined by ',' in out. */
static const char *asked(lr_client_t *c, int nth, char *out, size_t len)
{
  lr_m_unmap_t *m = fake_msg(c, LR_PT_UNMAP, nth);
  out[0] = 0;
  if (!m) return out;
  for (uint32_t i = 0; i < m->ids.n; i++)
    snprintf(out + strlen(out), len - strlen(out), "%s%.*s", i ? "," : "",
             (int)m->ids.items[i].v.s.n, m->ids.items[i].v.s.p);
  return out;
}

/* Spill writes (in the thread pool) are done. */
static void jobs_done(lr_node_t *n) { ASSERT(fake_run(n, no_jobs, n, 5000)); }

static int spill_file(lr_node_t *n, const char *id)
{
  char path[PATH_MAX + 64], dir[PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s", lr_spill_dir(n, dir, sizeof(dir)), id);
  return access(path, F_OK) == 0;
}

TEST(unmap_asks_every_holder_lru_first_and_spills_when_all_forgot)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_client_t *d1 = fake_driver(n, "j1"), *w = fake_client(n, LR_CL_WORKER, NULL);
  char ids[256];
  lr_obj_t *a = held_by(n, "a", 1 << 20, d1, w);
  lr_obj_t *b = held_by(n, "b", 1 << 20, d1, NULL);
  held_by(n, "c", 2 << 20, d1, NULL);
  a->used_at = 1;
  b->used_at = 2; /* a is the least recently used */
  ASSERT(lr_unmap_candidate(n, a));
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  ASSERT_STREQ(asked(d1, 0, ids, sizeof(ids)), "a"); /* one message per holder */
  ASSERT_STREQ(asked(w, 0, ids, sizeof(ids)), "a");
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 0); /* already asked enough */
  answer(n, d1, "a", NULL);
  ASSERT_EQ(a->shm_len, 1 << 20); /* w has not answered */
  answer(n, w, "a", NULL);
  ASSERT_EQ(n->spill_jobs, 1);
  jobs_done(n);
  ASSERT_EQ(a->shm_len, -1);
  ASSERT_EQ(a->spilled_len, 1 << 20);
  ASSERT(spill_file(n, "a"));
  ASSERT_EQ(n->unmap_live, 0);
  ASSERT_EQ(n->unmap_bytes, 0);
  /* Asked for more, the next least recently used goes. */
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  ASSERT_STREQ(asked(d1, 1, ids, sizeof(ids)), "b");
  answer(n, d1, "b", NULL);
  jobs_done(n);
  ASSERT_EQ(b->spilled_len, 1 << 20);
  spill_node_free(n);
}

TEST(unmap_is_called_off_when_the_location_goes_out_again)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_client_t *d1 = fake_driver(n, "j1"), *d2 = fake_driver(n, "j2");
  lr_obj_t *a = held_by(n, "a", 1 << 20, d1, NULL);
  /* A new holder during the exchange (its ref came before d1's answer). */
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  lr_obj_hold(n, d2, "a", 1);
  answer(n, d1, "a", NULL);
  ASSERT_EQ(a->shm_len, 1 << 20);
  ASSERT_EQ(n->unmap_live, 0);
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 0); /* paused a while */
  /* A holder asking for it (sub) during the exchange: it gets the location. */
  a->unmap_no = -10;
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  lr_obj_subscribe(n, d2, "a", 1);
  ASSERT_EQ(fake_count(d2, LR_PT_OBJ), 1);
  answer(n, d1, "a", NULL);
  answer(n, d2, "a", NULL);
  ASSERT_EQ(a->shm_len, 1 << 20);
  /* A lend of it: counted by something no one can ask. */
  a->unmap_no = -10;
  lr_m_lend_t l = LR_MSG_INIT(LEND);
  lr_pitem_t id = {.v.s = {"a", 1}};
  LR_SET_CSTR(l.token, "t1");
  LR_SET_ITEMS(l.ids, &id, 1);
  lr_obj_lend(n, &l);
  ASSERT(!lr_unmap_candidate(n, a));
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 0);
  lr_obj_claim(n, "t1", 2);
  ASSERT(lr_unmap_candidate(n, a));
  spill_node_free(n);
}

TEST(unmap_a_holder_that_keeps_it_or_never_answers_leaves_it_in_the_store)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_client_t *d1 = fake_driver(n, "j1"), *d2 = fake_driver(n, "j2");
  lr_obj_t *a = held_by(n, "a", 1 << 20, d1, d2);
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  answer(n, d1, NULL, "a"); /* an array view of it is alive there */
  answer(n, d2, "a", NULL);
  ASSERT_EQ(a->shm_len, 1 << 20);
  ASSERT_EQ(n->unmap_live, 0);
  /* Asked again after the pause; d2 is busy and never answers. */
  a->unmap_no = -10;
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  answer(n, d1, "a", NULL);
  ASSERT(!fake_run(n, no_objects, n, 800)); /* past UNMAP_WAIT */
  ASSERT_EQ(n->unmap_live, 0);
  ASSERT_EQ(a->shm_len, 1 << 20);
  answer(n, d2, "a", NULL); /* late: nothing happens */
  ASSERT_EQ(a->shm_len, 1 << 20);
  spill_node_free(n);
}

static int spilled(void *ud) { return ((lr_obj_t *)ud)->spilled_len >= 0; }

TEST(unmap_a_holder_that_leaves_owes_no_answer)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_client_t *d1 = fake_driver(n, "j1"), *d2 = fake_driver(n, "j2");
  lr_obj_t *a = held_by(n, "a", 1 << 20, d1, d2);
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  answer(n, d1, "a", NULL);
  fake_leave(n, d2);
  ASSERT(fake_run(n, spilled, a, 500)); /* the sweep settles it */
  spill_node_free(n);
}

TEST(unmap_never_asks_about_what_a_node_pulls_or_someone_waits_for)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_client_t *d1 = fake_driver(n, "j1"), *peer = fake_client(n, LR_CL_NODE, NULL);
  lr_obj_t *a = held_by(n, "a", 1 << 20, d1, peer);
  ASSERT(!lr_unmap_candidate(n, a));
  lr_obj_t *in = object(n, "in", 1 << 20, 'i', 1, 0); /* spill.c's: nobody to ask */
  ASSERT(!lr_unmap_candidate(n, in));
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 0);
  setenv("LRAY_SPILL", "0", 1);
  lr_obj_unhold(n, peer, "a", 1);
  ASSERT(lr_unmap_candidate(n, a));
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 0);
  unsetenv("LRAY_SPILL");
  spill_node_free(n);
}

TEST(unmap_full_disk_keeps_the_object_and_says_why)
{
  lr_node_t *n = spill_node(4 << 20);
  snprintf(n->spill_dir, sizeof(n->spill_dir), "/proc/lray-no-such-dir/x");
  lr_client_t *d1 = fake_driver(n, "j1");
  lr_obj_t *a = held_by(n, "a", 1 << 20, d1, NULL);
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  answer(n, d1, "a", NULL);
  jobs_done(n);
  ASSERT_EQ(a->shm_len, 1 << 20);
  ASSERT(n->spill_err < 0);
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 0); /* paused */
  n->spill_dir[0] = 0;
  spill_node_free(n);
}

static int never(void *ud)
{
  LR_UNUSED(ud);
  return 0;
}

TEST(unmap_asks_others_when_a_holder_is_slow_to_answer)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_client_t *d1 = fake_driver(n, "j1"), *busy = fake_client(n, LR_CL_WORKER, NULL);
  char ids[64];
  lr_obj_t *a = held_by(n, "a", 1 << 20, busy, NULL);
  lr_obj_t *b = held_by(n, "b", 1 << 20, d1, NULL);
  a->used_at = 1;
  b->used_at = 2;
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  ASSERT_STREQ(asked(busy, 0, ids, sizeof(ids)), "a");
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 0); /* a's room may be coming */
  fake_run(n, never, NULL, 150);                /* past UNMAP_FRESH */
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  ASSERT_STREQ(asked(d1, 0, ids, sizeof(ids)), "b");
  answer(n, d1, "b", NULL);
  jobs_done(n);
  ASSERT_EQ(b->spilled_len, 1 << 20);
  ASSERT_EQ(a->shm_len, 1 << 20);
  spill_node_free(n);
}

TEST(unmap_an_object_that_spills_as_it_is_meanwhile_ends_its_exchange)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_client_t *d1 = fake_driver(n, "j1");
  lr_obj_t *a = object(n, "a", 1 << 20, 'a', 1, 0); /* inside another object */
  lr_obj_hold(n, d1, "a", 1);
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  lr_obj_unhold(n, d1, "a", 1); /* only its container counts it now */
  ASSERT_EQ(lr_spill_make_room(n, 4 << 20, NULL), 1);
  ASSERT_EQ(a->spilled_len, 1 << 20);
  answer(n, d1, "a", NULL);
  ASSERT_EQ(n->unmap_live, 0);
  ASSERT_EQ(n->unmap_bytes, 0);
  spill_node_free(n);
}

TEST(unmap_a_location_handed_out_during_the_write_keeps_the_object)
{
  lr_node_t *n = spill_node(4 << 20);
  lr_client_t *d1 = fake_driver(n, "j1");
  lr_obj_t *a = held_by(n, "a", 1 << 20, d1, NULL);
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 1);
  answer(n, d1, "a", NULL);
  ASSERT(a->spilling);
  ASSERT(!lr_unmap_candidate(n, a));
  ASSERT_EQ(lr_unmap_ask(n, 1 << 20, NULL), 0); /* its write frees the room */
  lr_obj_subscribe(n, d1, "a", 1);              /* d1 reads it again */
  ASSERT_EQ(fake_count(d1, LR_PT_OBJ), 1);
  jobs_done(n);
  ASSERT_EQ(a->shm_len, 1 << 20);
  ASSERT_EQ(a->spilled_len, -1);
  ASSERT(!spill_file(n, "a")); /* the file written went */
  ASSERT(!a->spilling);
  spill_node_free(n);
}

/* A node killed with SIGKILL leaves its --spill-dir directory behind; the
 * next node started there removes it, and never a live node's. */
TEST(spill_sweep_removes_only_dead_nodes_dirs)
{
  const char *tmp = getenv("LRAY_TMPDIR");
  char parent[PATH_MAX], p[PATH_MAX + 128];
  snprintf(parent, sizeof(parent), "%s/sweeptest-XXXXXX", tmp ? tmp : "/tmp");
  ASSERT(mkdtemp(parent));
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  ASSERT(dead > 0);
  ASSERT_EQ(waitpid(dead, NULL, 0), dead);
  snprintf(p, sizeof(p), "%s/lray-spill-%ld-aaaa", parent, (long)dead);
  ASSERT_EQ(mkdir(p, 0700), 0);
  snprintf(p, sizeof(p), "%s/lray-spill-%ld-aaaa/0123", parent, (long)dead);
  FILE *f = fopen(p, "w");
  ASSERT(f);
  fputs("spilled bytes", f);
  fclose(f);
  snprintf(p, sizeof(p), "%s/lray-spill-%ld-bbbb", parent, (long)getpid());
  ASSERT_EQ(mkdir(p, 0700), 0);
  snprintf(p, sizeof(p), "%s/not-lray", parent);
  ASSERT_EQ(mkdir(p, 0700), 0);
  ASSERT_EQ(lr_spill_sweep(parent), 1);
  struct stat st;
  snprintf(p, sizeof(p), "%s/lray-spill-%ld-aaaa", parent, (long)dead);
  ASSERT(stat(p, &st) < 0);
  snprintf(p, sizeof(p), "%s/lray-spill-%ld-bbbb", parent, (long)getpid());
  ASSERT_EQ(stat(p, &st), 0);
  rmdir(p);
  snprintf(p, sizeof(p), "%s/not-lray", parent);
  ASSERT_EQ(stat(p, &st), 0);
  rmdir(p);
  ASSERT_EQ(rmdir(parent), 0);
}
