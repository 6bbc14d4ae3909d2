/* Lua tables <-> typed wire messages (proto/msgdef.h). A message is a table
 * whose `t` names its type; its other keys are the type's fields. Encoding
 * checks every field's type and, with LRAY_PROTO_STRICT set (the specs set
 * it), that the table has no field the type does not declare. Decoding
 * trusts nothing: malformed bytes give an error and push nothing. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/errdef.h"
#include "proto/proto.h"
#include "script/libs.h"

/* Registry refs: type name -> id; id -> type name; id -> {field names}.
 * Interned once so encoding and decoding push no new strings for keys. */
static int names_ref = LUA_NOREF, tnames_ref = LUA_NOREF, keys_ref = LUA_NOREF;
static int strict;

typedef struct {
  lua_State *L;
  lr_buf_t *out;
  char *err;
  size_t errlen;
  int type;          /* the message being encoded, for errors */
  const char *field; /* the field being encoded, for errors */
} enc_t;

static int enc_fail(enc_t *e, const char *what, int got)
{
  if (e->err)
    snprintf(e->err, e->errlen, "cannot send message '%s': field '%s' %s (got %s)",
             lr_proto_types[e->type].name, e->field, what,
             lua_typename(e->L, got));
  return LR_EPROTO;
}

static int enc_record(enc_t *e, int idx, int type, int depth);

static int enc_elem(enc_t *e, int idx, const lr_proto_field_t *f, int depth)
{
  lua_State *L = e->L;
  int lt = lua_type(L, idx);
  switch (f->elem) {
  case LR_ELEM_INT: {
    if (lt != LUA_TNUMBER) return enc_fail(e, "must be an integer", lt);
    double d = lua_tonumber(L, idx);
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) ||
        d != (double)(int64_t)d)
      return enc_fail(e, "must be an integer", lt);
    lr_proto_put_int(e->out, (int64_t)d);
    return 0;
  }
  case LR_ELEM_F64:
    if (lt != LUA_TNUMBER) return enc_fail(e, "must be a number", lt);
    lr_proto_put_f64(e->out, lua_tonumber(L, idx));
    return 0;
  case LR_ELEM_BOOL:
    if (lt != LUA_TBOOLEAN) return enc_fail(e, "must be a boolean", lt);
    lr_buf_putc(e->out, lua_toboolean(L, idx));
    return 0;
  case LR_ELEM_STR: {
    if (lt != LUA_TSTRING) return enc_fail(e, "must be a string", lt);
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    lr_proto_put_str(e->out, s, n);
    return 0;
  }
  case LR_ELEM_REC:
    if (lt != LUA_TTABLE) return enc_fail(e, "must be a table", lt);
    return enc_record(e, idx, f->rec, depth + 1);
  }
  return LR_EPROTO;
}

static int enc_field(enc_t *e, int idx, const lr_proto_field_t *f, int depth)
{
  lua_State *L = e->L;
  e->field = f->name;
  if (f->cont == LR_CONT_ONE) return enc_elem(e, idx, f, depth);
  if (lua_type(L, idx) != LUA_TTABLE) return enc_fail(e, "must be a table", lua_type(L, idx));
  if (f->cont == LR_CONT_LIST) {
    size_t n = lua_objlen(L, idx);
    if (strict) { /* a list has keys 1..n and nothing else */
      size_t keys = 0;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        keys++;
        lua_pop(L, 1);
      }
      if (keys != n) return enc_fail(e, "must be a list (keys 1..n only)", LUA_TTABLE);
    }
    lr_proto_put_varint(e->out, n);
    for (size_t i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, (int)i);
      int rc = lua_isnil(L, -1) ? enc_fail(e, "must be a list without holes", LUA_TNIL)
                                : enc_elem(e, lua_gettop(L), f, depth);
      lua_pop(L, 1);
      if (rc < 0) return rc;
      e->field = f->name;
    }
    return 0;
  }
  uint64_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    n++;
    lua_pop(L, 1);
  }
  lr_proto_put_varint(e->out, n);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2), rc;
    if (f->cont == LR_CONT_IMAP) {
      double d = kt == LUA_TNUMBER ? lua_tonumber(L, -2) : 0.5;
      /* The range first: converting a double outside int64 is undefined. */
      if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) ||
          d != (double)(int64_t)d) {
        lua_pop(L, 2);
        return enc_fail(e, "must have integer keys", kt);
      }
      lr_proto_put_int(e->out, (int64_t)d);
    } else {
      if (kt != LUA_TSTRING) {
        lua_pop(L, 2);
        return enc_fail(e, "must have string keys", kt);
      }
      size_t kn;
      const char *k = lua_tolstring(L, -2, &kn);
      lr_proto_put_str(e->out, k, kn);
    }
    rc = enc_elem(e, lua_gettop(L), f, depth);
    lua_pop(L, 1);
    if (rc < 0) {
      lua_pop(L, 1);
      return rc;
    }
    e->field = f->name;
  }
  return 0;
}

/* Reports the first key of the table at idx that type does not declare. */
static int check_unknown(enc_t *e, int idx, int type, int is_msg)
{
  lua_State *L = e->L;
  const lr_proto_type_t *t = &lr_proto_types[type];
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int known = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      known = is_msg && !strcmp(k, "t");
      for (unsigned i = 0; !known && i < t->nfields; i++) known = !strcmp(k, t->fields[i].name);
    }
    if (!known) {
      if (e->err)
        snprintf(e->err, e->errlen, "cannot send message '%s': '%s' has no field '%s'",
                 lr_proto_types[e->type].name, t->name,
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
      lua_pop(L, 1);
      return LR_EPROTO;
    }
  }
  return 0;
}

static int enc_record(enc_t *e, int idx, int type, int depth)
{
  lua_State *L = e->L;
  if (depth > LR_PROTO_MAX_DEPTH) {
    if (e->err) snprintf(e->err, e->errlen, "message nests too deep");
    return LR_EPROTO;
  }
  const lr_proto_type_t *t = &lr_proto_types[type];
  int base = lua_gettop(L);
  luaL_checkstack(L, t->nfields + 4, "message");
  lua_rawgeti(L, LUA_REGISTRYINDEX, keys_ref);
  lua_rawgeti(L, -1, type + 1);
  lua_replace(L, -2);
  int keys = base + 1;
  uint64_t bits = 0;
  for (unsigned i = 0; i < t->nfields; i++) {
    lua_rawgeti(L, keys, (int)i + 1);
    lua_rawget(L, idx);
    if (!lua_isnil(L, -1)) bits |= (uint64_t)1 << i;
  }
  lr_proto_put_varint(e->out, bits);
  int rc = 0;
  for (unsigned i = 0; i < t->nfields && rc == 0; i++)
    if ((bits >> i) & 1) rc = enc_field(e, keys + 1 + (int)i, &t->fields[i], depth);
  if (rc == 0 && strict) rc = check_unknown(e, idx, type, t->is_msg);
  lua_settop(L, base);
  return rc;
}

int lr_proto_encode_lua(lua_State *L, int idx, lr_buf_t *out, char *err, size_t errlen)
{
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  enc_t e = {L, out, err, errlen, 0, "t"};
  if (lua_type(L, idx) != LUA_TTABLE) {
    if (err) snprintf(err, errlen, "cannot send a %s as a message", luaL_typename(L, idx));
    return LR_EPROTO;
  }
  lua_getfield(L, idx, "t");
  lua_rawgeti(L, LUA_REGISTRYINDEX, names_ref);
  lua_pushvalue(L, -2);
  lua_rawget(L, -2);
  int type = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : LR_PT_NONE;
  if (type == LR_PT_NONE || !lr_proto_types[type].is_msg) {
    if (err)
      snprintf(err, errlen, "cannot send message: unknown message type '%s'",
               lua_type(L, -3) == LUA_TSTRING ? lua_tostring(L, -3) : "(none)");
    lua_pop(L, 3);
    return LR_EPROTO;
  }
  lua_pop(L, 3);
  e.type = type;
  size_t start = out->len;
  lr_proto_put_varint(out, (uint64_t)type);
  int rc = enc_record(&e, idx, type, 0);
  if (rc < 0) out->len = start;
  return rc < 0 ? rc : type;
}

/* -- Decoding -------------------------------------------------------------- */

static int dec_record(lua_State *L, lr_proto_rd_t *r, int type, int depth);

static int dec_elem(lua_State *L, lr_proto_rd_t *r, const lr_proto_field_t *f, int depth)
{
  int64_t i;
  double d;
  int b;
  const char *s;
  size_t n;
  switch (f->elem) {
  case LR_ELEM_INT:
    if (lr_proto_get_int(r, &i) < 0) return LR_EPROTO;
    lua_pushnumber(L, (lua_Number)i);
    return 0;
  case LR_ELEM_F64:
    if (lr_proto_get_f64(r, &d) < 0) return LR_EPROTO;
    lua_pushnumber(L, d);
    return 0;
  case LR_ELEM_BOOL:
    if (lr_proto_get_bool(r, &b) < 0) return LR_EPROTO;
    lua_pushboolean(L, b);
    return 0;
  case LR_ELEM_STR:
    if (lr_proto_get_str(r, &s, &n) < 0) return LR_EPROTO;
    lua_pushlstring(L, s, n);
    return 0;
  case LR_ELEM_REC:
    if (depth >= LR_PROTO_MAX_DEPTH) return LR_EPROTO;
    return dec_record(L, r, f->rec, depth + 1);
  }
  return LR_EPROTO;
}

static int dec_field(lua_State *L, lr_proto_rd_t *r, const lr_proto_field_t *f, int depth)
{
  if (f->cont == LR_CONT_ONE) return dec_elem(L, r, f, depth);
  uint64_t n;
  if (lr_proto_get_count(r, &n) < 0) return LR_EPROTO;
  if (f->cont == LR_CONT_LIST)
    lua_createtable(L, (int)n, 0);
  else
    lua_createtable(L, 0, (int)n);
  for (uint64_t k = 0; k < n; k++) {
    if (f->cont == LR_CONT_IMAP) {
      int64_t key;
      if (lr_proto_get_int(r, &key) < 0) return LR_EPROTO;
      lua_pushnumber(L, (lua_Number)key);
    } else if (f->cont == LR_CONT_SMAP) {
      const char *s;
      size_t sn;
      if (lr_proto_get_str(r, &s, &sn) < 0) return LR_EPROTO;
      lua_pushlstring(L, s, sn);
    }
    if (dec_elem(L, r, f, depth) < 0) return LR_EPROTO;
    if (f->cont == LR_CONT_LIST)
      lua_rawseti(L, -2, (int)k + 1);
    else
      lua_rawset(L, -3);
  }
  return 0;
}

static int dec_record(lua_State *L, lr_proto_rd_t *r, int type, int depth)
{
  uint64_t bits;
  if (lr_proto_get_bitmap(r, type, &bits) < 0) return LR_EPROTO;
  const lr_proto_type_t *t = &lr_proto_types[type];
  luaL_checkstack(L, 8, "message");
  lua_createtable(L, 0, __builtin_popcountll(bits) + t->is_msg);
  int tbl = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, keys_ref);
  lua_rawgeti(L, -1, type + 1);
  lua_replace(L, -2);
  for (unsigned i = 0; i < t->nfields; i++) {
    if (!((bits >> i) & 1)) continue;
    lua_rawgeti(L, tbl + 1, (int)i + 1);
    if (dec_field(L, r, &t->fields[i], depth) < 0) return LR_EPROTO;
    lua_rawset(L, tbl);
  }
  lua_pop(L, 1);
  return 0;
}

int lr_proto_decode_lua(lua_State *L, const char *p, size_t n, char *err, size_t errlen)
{
  lr_proto_rd_t r = {(const uint8_t *)p, (const uint8_t *)p + n};
  int base = lua_gettop(L);
  uint64_t type;
  if (lr_proto_get_varint(&r, &type) < 0 || type >= LR_PT_COUNT_ ||
      !lr_proto_types[type].is_msg) {
    if (err) snprintf(err, errlen, "unknown message type");
    return LR_EPROTO;
  }
  if (dec_record(L, &r, (int)type, 0) < 0 || r.p != r.end) {
    lua_settop(L, base);
    if (err) snprintf(err, errlen, "malformed '%s' message", lr_proto_types[type].name);
    return LR_EPROTO;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, tnames_ref);
  lua_rawgeti(L, -1, (int)type + 1);
  lua_setfield(L, -3, "t");
  lua_pop(L, 1);
  return (int)type;
}

/* -- Lua functions --------------------------------------------------------- */

/* proto_encode(msg) -> string (the frame payload); raises on a bad message. */
static int l_proto_encode(lua_State *L)
{
  lr_buf_t b;
  char err[256];
  lr_buf_init(&b);
  int rc = lr_proto_encode_lua(L, 1, &b, err, sizeof(err));
  if (rc < 0) {
    lr_buf_free(&b);
    return luaL_error(L, "%s", err);
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  lr_buf_free(&b);
  return 1;
}

/* proto_decode(s) -> msg | nil, err */
static int l_proto_decode(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char err[256];
  if (lr_proto_decode_lua(L, s, n, err, sizeof(err)) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* proto_types() -> {name = {field, ...}} for messages (docs and tests). */
static int l_proto_types(lua_State *L)
{
  lua_newtable(L);
  for (int i = 0; i < LR_PT_COUNT_; i++) {
    const lr_proto_type_t *t = &lr_proto_types[i];
    lua_createtable(L, t->nfields, 0);
    for (unsigned k = 0; k < t->nfields; k++) {
      lua_pushstring(L, t->fields[k].name);
      lua_rawseti(L, -2, (int)k + 1);
    }
    lua_setfield(L, -2, t->name);
  }
  return 1;
}

void lr_lib_proto_open(lua_State *L)
{
  const char *s = getenv("LRAY_PROTO_STRICT");
  strict = s && *s && strcmp(s, "0");
  lua_newtable(L); /* names */
  lua_newtable(L); /* tnames */
  lua_newtable(L); /* keys */
  for (int i = 0; i < LR_PT_COUNT_; i++) {
    const lr_proto_type_t *t = &lr_proto_types[i];
    lua_pushinteger(L, i);
    lua_setfield(L, -4, t->name);
    lua_pushstring(L, t->name);
    lua_rawseti(L, -3, i + 1);
    lua_createtable(L, t->nfields, 0);
    for (unsigned k = 0; k < t->nfields; k++) {
      lua_pushstring(L, t->fields[k].name);
      lua_rawseti(L, -2, (int)k + 1);
    }
    lua_rawseti(L, -2, i + 1);
  }
  keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  tnames_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  static const luaL_Reg f[] = {{"proto_encode", l_proto_encode},
                               {"proto_decode", l_proto_decode},
                               {"proto_types", l_proto_types},
                               {NULL, NULL}};
  luaL_register(L, NULL, f);
  lua_pushinteger(L, LR_PROTO_VERSION);
  lua_setfield(L, -2, "PROTO_VERSION");
}
