/* Tests for drivers that do not share the store (raylet/remote.c) on a fake
 * node (fake_node.h): the cookie lands past the allocator's range, and a
 * `write` lands only inside a range its client was given and has not put. */
#include "common/errdef.h"
#include "test/fake_node.h"
#include "test/test.h"

/* Client c asks for n bytes of the store (alloc): the range's offset. */
static int64_t alloc(lr_node_t *n, lr_client_t *c, const char *rid, int64_t size)
{
  lr_m_alloc_t m = LR_MSG_INIT(ALLOC);
  LR_SET_CSTR(m.rid, rid);
  LR_SET_INT(m.size, size);
  lr_obj_alloc(n, c, &m);
  lr_m_reply_t *r = fake_reply(c, rid);
  ASSERT(r && r->off.n && !r->err.n);
  return r->off.v.i;
}

static int write_at(lr_node_t *n, lr_client_t *c, int64_t at, int64_t pos, const char *data)
{
  lr_m_write_t m = LR_MSG_INIT(WRITE);
  LR_SET_INT(m.at, at);
  LR_SET_INT(m.pos, pos);
  LR_SET_CSTR(m.data, data);
  return lr_remote_write_apply(n, c, &m);
}

TEST(cookie_lies_past_the_store)
{
  const uint64_t store = 1 << 16;
  lr_node_t *n = fake_node_new(1, 0, store);
  uint8_t *mem = calloc(1, store + LR_COOKIE_SPACE);
  n->shm.base = mem;
  lr_remote_cookie_init(n, store);
  ASSERT_EQ(strlen(n->cookie), LR_COOKIE_BYTES);
  ASSERT(memcmp(mem + store, n->cookie, LR_COOKIE_BYTES) == 0);
  char first[LR_COOKIE_BYTES + 1];
  memcpy(first, n->cookie, sizeof(first));
  lr_remote_cookie_init(n, store); /* another node start: another cookie */
  ASSERT(strcmp(first, n->cookie) != 0);
  for (uint64_t i = 0; i < store; i++) ASSERT_EQ(mem[i], 0); /* nothing in the store */
  n->shm.base = NULL;
  free(mem);
  fake_node_free(n);
}

TEST(writes_land_only_in_the_clients_own_unput_range)
{
  lr_node_t *n = fake_node_new(1, 0, 1 << 16);
  uint8_t *mem = calloc(1, 1 << 16);
  n->shm.base = mem;
  lr_client_t *d = fake_driver(n, "job1");
  lr_client_t *other = fake_driver(n, "job2");
  int64_t at = alloc(n, d, "r1", 100);

  ASSERT_EQ(write_at(n, d, at, 0, "hello"), 0);
  ASSERT_EQ(write_at(n, d, at, 95, "world"), 0); /* ends at the range's end */
  ASSERT(memcmp(mem + at, "hello", 5) == 0);
  ASSERT(memcmp(mem + at + 95, "world", 5) == 0);

  /* Past its end, before its start, not a range's start, someone else's. */
  ASSERT_EQ(write_at(n, d, at, 96, "world"), LR_EBADARG);
  ASSERT_EQ(write_at(n, d, at, -1, "x"), LR_EBADARG);
  ASSERT_EQ(write_at(n, d, at + 64, 0, "x"), LR_EBADARG);
  ASSERT_EQ(write_at(n, other, at, 0, "x"), LR_EBADARG);
  lr_m_write_t bare = LR_MSG_INIT(WRITE); /* no fields at all */
  ASSERT_EQ(lr_remote_write_apply(n, d, &bare), LR_EBADARG);

  /* Once put, the range is the object's: no more writes. */
  lr_m_put_t p = LR_MSG_INIT(PUT);
  lr_pitem_t shm[2];
  shm[0].v.i = at;
  shm[1].v.i = 100;
  LR_SET_CSTR(p.id, "obj1");
  LR_SET_ITEMS(p.shm, shm, 2);
  lr_obj_put(n, d, &p);
  ASSERT_EQ(write_at(n, d, at, 0, "x"), LR_EBADARG);
  ASSERT(memcmp(mem + at, "hello", 5) == 0);

  n->shm.base = NULL;
  free(mem);
  fake_node_free(n);
}
