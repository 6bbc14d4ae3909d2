/* Tests for the typed protocol (proto/codec.c, script/lib_proto.c): every
 * declared type round-trips with every field set, bad messages are refused
 * at the sender with the field named, and hostile bytes (random, truncated,
 * bit-flipped, lying counts) are refused by the reader and the Lua decoder
 * alike without a crash or an allocation beyond the input's size. */
#include <lauxlib.h>
#include <lualib.h>
#include "common/buf.h"
#include "common/errdef.h"
#include "proto/proto.h"
#include "script/libs.h"
#include "test/test.h"

static lua_State *new_state(void)
{
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  lr_lib_proto_open(L);
  lua_setglobal(L, "core");
  return L;
}

static void push_elem(lua_State *L, const lr_proto_field_t *f, int depth, int salt);

/* A table of type `type` with every field set (records down to depth 2). */
static void push_record(lua_State *L, int type, int depth, int salt)
{
  const lr_proto_type_t *t = &lr_proto_types[type];
  lua_newtable(L);
  if (t->is_msg) {
    lua_pushstring(L, t->name);
    lua_setfield(L, -2, "t");
  }
  for (unsigned i = 0; i < t->nfields; i++) {
    const lr_proto_field_t *f = &t->fields[i];
    if (f->elem == LR_ELEM_REC && depth >= 2) continue;
    switch (f->cont) {
    case LR_CONT_ONE: push_elem(L, f, depth, salt + (int)i); break;
    case LR_CONT_LIST:
      lua_newtable(L);
      for (int k = 1; k <= 3; k++) {
        push_elem(L, f, depth, salt + k);
        lua_rawseti(L, -2, k);
      }
      break;
    case LR_CONT_IMAP: /* one entry: the order of keys is then fixed */
      lua_newtable(L);
      push_elem(L, f, depth, salt);
      lua_rawseti(L, -2, 7);
      break;
    case LR_CONT_SMAP:
      lua_newtable(L);
      push_elem(L, f, depth, salt);
      lua_setfield(L, -2, "CPU");
      break;
    }
    lua_setfield(L, -2, f->name);
  }
}

static void push_elem(lua_State *L, const lr_proto_field_t *f, int depth, int salt)
{
  switch (f->elem) {
  case LR_ELEM_INT: lua_pushnumber(L, (salt % 2 ? -1 : 1) * (double)salt * 1000003.0); break;
  case LR_ELEM_F64: lua_pushnumber(L, salt + 0.25); break;
  case LR_ELEM_BOOL: lua_pushboolean(L, salt % 2); break;
  case LR_ELEM_STR: lua_pushfstring(L, "%s-%d\x01\x02", f->name, salt); break;
  case LR_ELEM_REC: push_record(L, f->rec, depth + 1, salt); break;
  }
}

static void encode_top(lua_State *L, lr_buf_t *b)
{
  char err[256];
  lr_buf_reset(b);
  int rc = lr_proto_encode_lua(L, -1, b, err, sizeof(err));
  if (rc < 0) FAIL_("encode: %s", err);
}

TEST(proto_every_type_round_trips)
{
  lua_State *L = new_state();
  lr_buf_t a, b;
  lr_buf_init(&a);
  lr_buf_init(&b);
  int nmsg = 0;
  for (int type = 0; type < LR_PT_COUNT_; type++) {
    if (!lr_proto_types[type].is_msg) continue;
    nmsg++;
    push_record(L, type, 0, type * 10);
    encode_top(L, &a);
    lua_pop(L, 1);
    char err[256];
    ASSERT_EQ(lr_proto_validate(a.data, a.len, err, sizeof(err)), type);
    ASSERT_EQ(lr_proto_decode_lua(L, a.data, a.len, err, sizeof(err)), type);
    lua_getfield(L, -1, "t");
    ASSERT_STREQ(lua_tostring(L, -1), lr_proto_types[type].name);
    lua_pop(L, 1);
    encode_top(L, &b); /* decode then encode gives the same bytes */
    lua_pop(L, 1);
    ASSERT_EQ(a.len, b.len);
    ASSERT(!memcmp(a.data, b.data, a.len));
    /* ... and so do the C structs */
    lr_arena_t ar = {0};
    void *m = NULL;
    ASSERT_EQ(lr_proto_decode(a.data, a.len, &ar, &m, err, sizeof(err)), type);
    ASSERT_EQ(((lr_prec_t *)m)->type, type);
    lr_buf_reset(&b);
    lr_proto_encode(&b, m);
    ASSERT_EQ(a.len, b.len);
    ASSERT(!memcmp(a.data, b.data, a.len));
    lr_arena_free(&ar);
  }
  ASSERT(nmsg >= 30);
  lr_buf_free(&a);
  lr_buf_free(&b);
  lua_close(L);
}

static int run(lua_State *L, const char *code)
{
  if (luaL_loadstring(L, code) || lua_pcall(L, 0, 0, 0)) {
    fprintf(stderr, "  lua: %s\n", lua_tostring(L, -1));
    return 0;
  }
  return 1;
}

TEST(proto_sender_names_the_bad_field)
{
  lua_State *L = new_state();
  ASSERT(run(L,
    "local function err(m) local ok, e = pcall(core.proto_encode, m); assert(not ok); return e end\n"
    "local function has(s, p) assert(s:find(p, 1, true), s) end\n"
    "has(err{t = 'lease', res = {CPU = 'x'}}, \"field 'res' must be an integer (got string)\")\n"
    "has(err{t = 'lease', res = {CPU = 1.5}}, \"field 'res' must be an integer\")\n"
    "has(err{t = 'push', rets = 'x'}, \"field 'rets' must be a table\")\n"
    "has(err{t = 'push', rets = {1}}, \"field 'rets' must be a string\")\n"
    "has(err{t = 'call', deps = {a = 'x'}}, \"field 'deps' must have integer keys\")\n"
    /* 2^63 is no int64 (once converted without a range check: undefined) */
    "has(err{t = 'call', deps = {[2^63] = 'x'}}, \"field 'deps' must have integer keys\")\n"
    "has(err{t = 'call', deps = {[-2^64] = 'x'}}, \"field 'deps' must have integer keys\")\n"
    "has(err{t = 'result', results = {{shm = {1, 'x'}}}}, \"field 'shm' must be an integer\")\n"
    "has(err{t = 'warn', text = true}, \"field 'text' must be a string (got boolean)\")\n"
    "has(err{t = 'nope'}, \"unknown message type 'nope'\")\n"
    "has(err{}, \"unknown message type '(none)'\")\n"
    "has(err{t = 'value'}, \"unknown message type 'value'\")\n"  /* a record, not a message */
    "assert(core.proto_decode(core.proto_encode{t = 'gc'}).t == 'gc')\n"
    "local m = core.proto_decode(core.proto_encode{t = 'actor', restarts = -1})\n"
    "assert(m.restarts == -1)\n"
    "m = core.proto_decode(core.proto_encode{t = 'call', deps = {[3] = 'a', [-2] = 'b'}})\n"
    "assert(m.deps[3] == 'a' and m.deps[-2] == 'b')\n"
    "m = core.proto_decode(core.proto_encode{t = 'lease', res = {CPU = 2^40}})\n"
    "assert(m.res.CPU == 2^40)\n"));
  lua_close(L);
}

/* The three readers must agree on every input, and never crash. */
static void check_agree(lua_State *L, const char *p, size_t n)
{
  char err[256];
  int v = lr_proto_validate(p, n, err, sizeof(err));
  lr_arena_t ar = {0};
  void *m = NULL;
  int c = lr_proto_decode(p, n, &ar, &m, err, sizeof(err));
  lr_arena_free(&ar);
  if (c != v) FAIL_("validate %d but C decode %d on %zu bytes", v, c, n);
  int top = lua_gettop(L);
  int d = lr_proto_decode_lua(L, p, n, err, sizeof(err));
  if ((v < 0) != (d < 0)) FAIL_("validate %d but decode %d on %zu bytes", v, d, n);
  if (d >= 0) {
    ASSERT_EQ(v, d);
    ASSERT_EQ(lua_gettop(L), top + 1);
    lua_pop(L, 1);
  } else {
    ASSERT_EQ(lua_gettop(L), top);
  }
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)rng;
}

TEST(proto_hostile_bytes)
{
  lua_State *L = new_state();
  lr_buf_t a;
  lr_buf_init(&a);
  char buf[512];
  for (int i = 0; i < 200000; i++) { /* random bytes, often a valid type */
    size_t n = next_rand() % sizeof(buf);
    for (size_t k = 0; k < n; k++) buf[k] = (char)next_rand();
    if (n) buf[0] = (char)(next_rand() % (LR_PT_COUNT_ + 2));
    check_agree(L, buf, n);
  }
  for (int type = 0; type < LR_PT_COUNT_; type++) {
    if (!lr_proto_types[type].is_msg) continue;
    push_record(L, type, 0, type);
    encode_top(L, &a);
    lua_pop(L, 1);
    for (size_t n = 0; n < a.len; n++) { /* every truncation fails */
      ASSERT(lr_proto_validate(a.data, n, NULL, 0) < 0);
      check_agree(L, a.data, n);
    }
    for (int k = 0; k < 2000; k++) { /* bit flips */
      char *c = lr_xmalloc(a.len);
      memcpy(c, a.data, a.len);
      c[next_rand() % a.len] ^= (char)(1 << (next_rand() % 8));
      check_agree(L, c, a.len);
      lr_free(c);
    }
  }
  /* A list claiming 2^24 - 1 items in a 6-byte frame: refused, not allocated. */
  lr_buf_reset(&a);
  lr_proto_put_varint(&a, LR_PT_SUB);
  lr_proto_put_varint(&a, 1);
  lr_proto_put_varint(&a, (1u << 24) - 1);
  check_agree(L, a.data, a.len);
  ASSERT(lr_proto_validate(a.data, a.len, NULL, 0) < 0);
  /* A string longer than the frame; a varint of 11 bytes; a field bit the
   * type has not got; trailing bytes. */
  char bad[4][16];
  size_t badn[4];
  bad[0][0] = LR_PT_REF; /* id: 127 bytes announced, none there */
  memcpy(bad[0] + 1, "\x01\x7f", 2);
  badn[0] = 3;
  bad[1][0] = LR_PT_UNREF; /* a count in an 11-byte varint */
  memcpy(bad[1] + 1, "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12);
  badn[1] = 13;
  bad[2][0] = LR_PT_REF; /* field 2 of a type with one field */
  bad[2][1] = 2;
  badn[2] = 2;
  bad[3][0] = LR_PT_GC; /* trailing bytes */
  bad[3][1] = bad[3][2] = 0;
  badn[3] = 3;
  for (int k = 0; k < 4; k++) {
    ASSERT(lr_proto_validate(bad[k], badn[k], NULL, 0) < 0);
    check_agree(L, bad[k], badn[k]);
  }
  lr_buf_free(&a);
  lua_close(L);
}

TEST(proto_c_structs_by_name)
{
  lr_m_push_t m = LR_MSG_INIT(PUSH);
  LR_SET_CSTR(m.tid, "t1");
  LR_SET_INT(m.seq, -7);
  LR_SET_BOOL(m.deps, 1);
  lr_m_value_t v = LR_MSG_INIT(VALUE);
  LR_SET_CSTR(v.id, "obj");
  lr_pitem_t shm[2] = {{.v.i = 4096}, {.v.i = 100}};
  LR_SET_ITEMS(v.shm, shm, 2);
  lr_pitem_t depv[1] = {{.key.i = 3, .v.rec = &v}};
  LR_SET_ITEMS(m.depv, depv, 1);
  lr_pitem_t rets[2] = {{.v.s = {"r1", 2}}, {.v.s = {"r2", 2}}};
  LR_SET_ITEMS(m.rets, rets, 2);
  lr_buf_t b;
  lr_buf_init(&b);
  lr_proto_encode(&b, &m);
  lr_arena_t ar = {0};
  void *out;
  char err[128];
  ASSERT_EQ(lr_proto_decode(b.data, b.len, &ar, &out, err, sizeof(err)), LR_PT_PUSH);
  lr_m_push_t *d = out;
  ASSERT(LR_HAS(d->tid) && d->tid.v.s.n == 2 && !memcmp(d->tid.v.s.p, "t1", 2));
  ASSERT_EQ(d->seq.v.i, -7);
  ASSERT(d->deps.v.b);
  ASSERT(!LR_HAS(d->fh) && !LR_HAS(d->code));
  ASSERT_EQ(d->rets.n, 2);
  ASSERT(!memcmp(d->rets.items[1].v.s.p, "r2", 2));
  ASSERT_EQ(d->depv.n, 1);
  ASSERT_EQ(d->depv.items[0].key.i, 3);
  lr_m_value_t *dv = d->depv.items[0].v.rec;
  ASSERT_EQ(dv->type, LR_PT_VALUE);
  ASSERT_EQ(dv->shm.n, 2);
  ASSERT_EQ(dv->shm.items[0].v.i, 4096);
  /* An arena limit bounds what a frame of many tiny items may take. */
  lr_buf_reset(&b);
  lr_proto_put_varint(&b, LR_PT_UNREF);
  lr_proto_put_varint(&b, 1);
  lr_proto_put_varint(&b, 100000);
  for (int i = 0; i < 100000; i++) lr_proto_put_varint(&b, 0);
  lr_arena_t small = {.limit = 65536};
  ASSERT(lr_proto_decode(b.data, b.len, &small, &out, err, sizeof(err)) < 0);
  ASSERT(strstr(err, "too many items"));
  ASSERT_EQ(lr_proto_decode(b.data, b.len, &ar, &out, err, sizeof(err)), LR_PT_UNREF);
  lr_arena_free(&small);
  lr_arena_free(&ar);
  lr_buf_free(&b);
}
