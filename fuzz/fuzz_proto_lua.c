/* libFuzzer target: the Lua reader of the control protocol
 * (lr_proto_decode_lua in script/lib_proto.c) agrees with the C readers. On
 * every input it accepts exactly what lr_proto_validate accepts, leaves the
 * stack as it was when it refuses, and builds the table that matches the C
 * struct lr_proto_decode gives, field by field (maps: the last item of each
 * key, as Lua keeps it). That table, encoded by lr_proto_encode_lua, decodes
 * in C to a struct that matches it again, unless it holds an integer that
 * became 2^63 as a Lua number (Lua numbers are doubles: integers beyond
 * 2^53 arrive rounded, and 2^63 is no int64, so the encoder refuses it).
 * One lua_State per process. */
#include <math.h>
#include <string.h>
#include "common/errdef.h"
#include "fuzz.h"
#include "proto/proto.h"
#include "script/libs.h"

static lua_State *L;
static lr_arena_t ar;
static lr_buf_t out;
static int big; /* an INT element or IMAP key became 2^63 in Lua */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  L = fz_new_state(lr_lib_proto_open);
  return 0;
}

static void match_rec(int tbl, const lr_prec_t *rec, int depth);

/* The Lua value at idx matches element v of field f. */
static void match_elem(int idx, const lr_proto_field_t *f, const lr_pval_t *v, int depth)
{
  int lt = lua_type(L, idx);
  size_t n;
  const char *s;
  switch (f->elem) {
  case LR_ELEM_INT:
    big |= (lua_Number)v->i >= 9223372036854775808.0;
    FZ_CHECK(lt == LUA_TNUMBER && lua_tonumber(L, idx) == (lua_Number)v->i,
             "field %s: int %lld", f->name, (long long)v->i);
    break;
  case LR_ELEM_F64: {
    double d = lua_tonumber(L, idx);
    FZ_CHECK(lt == LUA_TNUMBER && ((isnan(d) && isnan(v->d)) || !memcmp(&d, &v->d, 8)),
             "field %s: f64 %g, Lua %g", f->name, v->d, d);
    break;
  }
  case LR_ELEM_BOOL:
    FZ_CHECK(lt == LUA_TBOOLEAN && lua_toboolean(L, idx) == v->b, "field %s: bool", f->name);
    break;
  case LR_ELEM_STR:
    s = lua_tolstring(L, idx, &n);
    FZ_CHECK(lt == LUA_TSTRING && n == v->s.n && !memcmp(s, v->s.p, n),
             "field %s: string", f->name);
    break;
  case LR_ELEM_REC:
    FZ_CHECK(lt == LUA_TTABLE, "field %s: record is a %s", f->name, lua_typename(L, lt));
    match_rec(idx, v->rec, depth + 1);
    break;
  }
}

static size_t count_keys(int tbl)
{
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, tbl)) {
    n++;
    lua_pop(L, 1);
  }
  return n;
}

static void push_key(const lr_proto_field_t *f, const lr_pitem_t *it)
{
  if (f->cont == LR_CONT_IMAP) {
    big |= (lua_Number)it->key.i >= 9223372036854775808.0;
    lua_pushnumber(L, (lua_Number)it->key.i);
  }
  else
    lua_pushlstring(L, it->key.s.p, it->key.s.n);
}

static void match_field(int idx, const lr_proto_field_t *f, const lr_pf_t *pf, int depth)
{
  int lt = lua_type(L, idx);
  if (f->cont == LR_CONT_ONE) {
    if (!pf->n) {
      FZ_CHECK(lt == LUA_TNIL, "field %s: absent in C, a %s in Lua", f->name,
               lua_typename(L, lt));
      return;
    }
    match_elem(idx, f, &pf->v, depth);
    return;
  }
  if (!pf->n) { /* C keeps no empty containers; Lua has an empty table */
    FZ_CHECK(lt == LUA_TNIL || (lt == LUA_TTABLE && count_keys(idx) == 0),
             "field %s: empty in C, not in Lua", f->name);
    return;
  }
  FZ_CHECK(lt == LUA_TTABLE, "field %s: a %s in Lua", f->name, lua_typename(L, lt));
  luaL_checkstack(L, 8, "fuzz");
  if (f->cont == LR_CONT_LIST) {
    FZ_CHECK(lua_objlen(L, idx) == pf->n && count_keys(idx) == pf->n,
             "field %s: list of %u in C", f->name, pf->n);
    for (uint32_t k = 0; k < pf->n; k++) {
      lua_rawgeti(L, idx, (int)k + 1);
      match_elem(lua_gettop(L), f, &pf->items[k].v, depth);
      lua_pop(L, 1);
    }
    return;
  }
  /* A map: Lua keeps the last item of each key (IMAP keys as doubles). */
  lua_newtable(L);
  int seen = lua_gettop(L);
  size_t distinct = 0;
  for (uint32_t k = pf->n; k-- > 0;) {
    push_key(f, &pf->items[k]);
    lua_pushvalue(L, -1);
    lua_rawget(L, seen);
    int dup = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (dup) {
      lua_pop(L, 1);
      continue;
    }
    distinct++;
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    lua_rawget(L, idx);
    match_elem(lua_gettop(L), f, &pf->items[k].v, depth);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  FZ_CHECK(count_keys(idx) == distinct, "field %s: %zu keys in C", f->name, distinct);
}

static void match_rec(int tbl, const lr_prec_t *rec, int depth)
{
  const lr_proto_type_t *t = &lr_proto_types[rec->type];
  size_t present = t->is_msg;
  FZ_CHECK(depth <= LR_PROTO_MAX_DEPTH, "depth %d", depth);
  luaL_checkstack(L, 8, "fuzz");
  if (t->is_msg) {
    lua_getfield(L, tbl, "t");
    FZ_CHECK(lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), t->name), "t is not %s",
             t->name);
    lua_pop(L, 1);
  }
  for (unsigned i = 0; i < t->nfields; i++) {
    lua_getfield(L, tbl, t->fields[i].name);
    present += !lua_isnil(L, -1);
    match_field(lua_gettop(L), &t->fields[i], &rec->f[i], depth);
    lua_pop(L, 1);
  }
  FZ_CHECK(count_keys(tbl) == present, "a '%s' table has keys it should not", t->name);
}

typedef struct {
  const char *p;
  size_t n;
  int rc, grew;
  char err[256];
} call_t;

/* lr_proto_decode_lua under lua_cpcall: a Lua error out of it is a bug. */
static int decode_in_lua(lua_State *L1)
{
  call_t *c = lua_touserdata(L1, 1);
  int top = lua_gettop(L1);
  c->rc = lr_proto_decode_lua(L1, c->p, c->n, c->err, sizeof(c->err));
  c->grew = lua_gettop(L1) - top;
  if (c->rc >= 0) {
    lua_pushvalue(L1, -1);
    lua_setglobal(L1, "msg");
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  call_t c = {(const char *)data, size, 0, 0, ""};
  big = 0;
  char err[256];
  void *m = NULL;
  int v = lr_proto_validate(c.p, size, err, sizeof(err));
  int d = lr_proto_decode(c.p, size, &ar, &m, err, sizeof(err));
  FZ_CHECK(lua_cpcall(L, decode_in_lua, &c) == 0, "Lua error: %s", lua_tostring(L, -1));
  FZ_CHECK(c.rc == v, "validate %d, Lua decode %d (%s)", v, c.rc, c.err);
  FZ_CHECK(c.grew == (c.rc >= 0), "Lua decode %d pushed %d values", c.rc, c.grew);
  if (v >= 0) {
    FZ_CHECK(d == v, "validate %d, C decode %d", v, d);
    lua_getglobal(L, "msg");
    int tbl = lua_gettop(L);
    match_rec(tbl, m, 0);
    /* The table goes back to bytes the C reader takes to the same fields. */
    lr_buf_reset(&out);
    int e = lr_proto_encode_lua(L, tbl, &out, err, sizeof(err));
    if (e < 0 && big && strstr(err, "integer")) goto out;
    FZ_CHECK(e == v, "encoding the decoded table: %d (%s)", e, err);
    lr_arena_reset(&ar);
    FZ_CHECK(lr_proto_decode(out.data, out.len, &ar, &m, err, sizeof(err)) == v,
             "its encoding does not decode: %s", err);
    match_rec(tbl, m, 0);
  }
out:
  lua_pushnil(L);
  lua_setglobal(L, "msg");
  lua_settop(L, 0);
  lr_arena_reset(&ar);
  return 0;
}
