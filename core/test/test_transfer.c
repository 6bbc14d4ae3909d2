/* Tests for objects between nodes (raylet/transfer.c): the chunk plan of a
 * copy (pieces asked in order, a window in flight, pieces checked as they
 * come) and the holder's side on a fake node (fake_node.h): pulls answered
 * with the object's bytes, the object held while it streams, refusals. */
#include "test/fake_node.h"
#include "test/test.h"

TEST(xplan_pieces_and_window)
{
  lr_xplan_t p;
  uint64_t off, len, seen = 0;
  lr_xplan_init(&p, 10 * 4 + 3, 4, 3); /* 11 pieces, the last of 3 bytes */
  int asked = 0;
  while (lr_xplan_next(&p, &off, &len)) asked++;
  ASSERT_EQ(asked, 3); /* the window */
  ASSERT_EQ(lr_xplan_got(&p, 0, 4), 0);
  ASSERT_EQ(lr_xplan_next(&p, &off, &len), 1);
  ASSERT_EQ(off, 12);
  ASSERT_EQ(lr_xplan_next(&p, &off, &len), 0);
  seen = 4;
  int rc = 0;
  while (rc == 0) {
    uint64_t want = p.size - seen < 4 ? p.size - seen : 4;
    rc = lr_xplan_got(&p, seen, want);
    seen += want;
    while (lr_xplan_next(&p, &off, &len)) ASSERT(off + len <= p.size);
  }
  ASSERT_EQ(rc, 1);
  ASSERT_EQ(seen, 43);
  ASSERT_EQ(p.inflight, 0);
}

TEST(xplan_refuses_pieces_not_due)
{
  lr_xplan_t p;
  uint64_t off, len;
  lr_xplan_init(&p, 8, 4, 2);
  ASSERT_EQ(lr_xplan_got(&p, 0, 4), -1); /* nothing asked yet */
  lr_xplan_next(&p, &off, &len);
  lr_xplan_next(&p, &off, &len);
  ASSERT_EQ(lr_xplan_got(&p, 4, 4), -1); /* out of order */
  ASSERT_EQ(lr_xplan_got(&p, 0, 3), -1); /* short */
  ASSERT_EQ(lr_xplan_got(&p, 0, 4), 0);
  ASSERT_EQ(lr_xplan_got(&p, 4, 4), 1);
  ASSERT_EQ(lr_xplan_got(&p, 8, 4), -1); /* past the end */
}

static void pull(lr_node_t *n, lr_client_t *c, const char *id, int64_t off, int64_t len, int done)
{
  lr_m_pull_t m = LR_MSG_INIT(PULL);
  LR_SET_CSTR(m.id, id);
  if (done) LR_SET_BOOL(m.done, 1);
  else {
    LR_SET_INT(m.off, off);
    LR_SET_INT(m.len, len);
  }
  lr_transfer_serve(n, c, &m);
}

TEST(holder_serves_pieces_and_holds_while_streaming)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 20);
  uint8_t *mem = calloc(1, 1 << 20);
  n->shm.base = mem;
  int64_t off = lr_obj_room(n, 1000);
  ASSERT(off >= 0);
  for (int i = 0; i < 1000; i++) mem[off + i] = (uint8_t)(i * 7);
  lr_obj_stored(n, "obj1", off, 1000, "uint8_t");
  lr_obj_incref(n, "obj1", 4); /* its owner's hold */
  lr_client_t *peer = fake_client(n, LR_CL_NEW, NULL);

  pull(n, peer, "obj1", 0, 400, 0);
  pull(n, peer, "obj1", 400, 600, 0);
  ASSERT_EQ(fake_count(peer, LR_PT_CHUNK), 2);
  lr_m_chunk_t *ch = fake_msg(peer, LR_PT_CHUNK, 1);
  ASSERT_EQ(ch->off.v.i, 400);
  ASSERT_EQ(ch->total.v.i, 1000);
  ASSERT_EQ(ch->data.v.s.n, 600);
  ASSERT_EQ((uint8_t)ch->data.v.s.p[5], (uint8_t)(405 * 7));
  lr_obj_t *o = lr_obj_find(n, "obj1", 4);
  ASSERT_EQ(o->count, 2); /* the owner, and the pulling peer */
  pull(n, peer, "obj1", 0, 0, 1);
  ASSERT_EQ(o->count, 1);

  /* Out of range, unknown: refused with err, nothing held. */
  fake_clear(peer);
  pull(n, peer, "obj1", 900, 200, 0);
  pull(n, peer, "nope", 0, 10, 0);
  ASSERT_EQ(fake_count(peer, LR_PT_CHUNK), 2);
  ASSERT(((lr_m_chunk_t *)fake_msg(peer, LR_PT_CHUNK, 0))->err.n);
  ASSERT(((lr_m_chunk_t *)fake_msg(peer, LR_PT_CHUNK, 1))->err.n);
  ASSERT_EQ(o->count, 1);

  /* A peer that goes away mid-stream lets go too. */
  pull(n, peer, "obj1", 0, 100, 0);
  ASSERT_EQ(o->count, 2);
  fake_leave(n, peer);
  ASSERT_EQ(o->count, 1);
  n->shm.base = NULL;
  free(mem);
  fake_node_free(n);
}
