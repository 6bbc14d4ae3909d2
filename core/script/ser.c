/* The value codec (see ser.h for the format) and its Lua face: encode,
 * decode and ser_config in `lray._core`. The encoder walks the value with
 * raw access and a memo table (value -> index) that is cached in the
 * registry and reused, so encoding allocates nothing per value. The decoder
 * checks every length against the input before reading.
 * Licensed under the MIT license; see LICENSE. */
#include "script/ser.h"
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <lauxlib.h>
#include <luajit.h>
#include "common/def.h"
#include "common/errdef.h"
#include "script/libs.h"

#define TCDATA 10           /* lua_type() of LuaJIT cdata */
#define MEMO_KEEP 1024      /* larger memos are dropped, not cleared and kept */
#define BUF_KEEP (1 << 20)  /* larger scratch buffers are freed after use */
#define SIZE_HINT (1 << 24) /* cap on decoded table size hints */
#define NAME_SHOW 40        /* bytes of a name shown in an error path */

#if UINTPTR_MAX > 0xffffffffu
#define PTR_BITS "64"
#else
#define PTR_BITS "32"
#endif
_Static_assert(sizeof(void *) * 8 == (UINTPTR_MAX > 0xffffffffu ? 64 : 32),
               "pointer size");

/* Bytecode is only loaded by the build that wrote it. */
static const char build_tag[] = LUAJIT_VERSION "/" PTR_BITS;

/* Registry keys (their addresses, as light userdata). */
static char conf_key, memo_key, envmt_key, buf_key;
/* Marks a decoder memo slot whose value is still being built. */
static char pending;

/* Slots of the config table set by ser_config. */
enum {
  CONF_NAMES = 1,
  CONF_RESOLVE,
  CONF_CUSTOM,
  CONF_CDATA,
  CONF_GLOBALS,
};

/* -- Byte helpers ---------------------------------------------------------- */

static void put_varint(lr_buf_t *b, uint64_t v)
{
  unsigned char *p = (unsigned char *)lr_buf_reserve(b, 10);
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (unsigned char)v;
  b->len += n;
}

static void put_str(lr_buf_t *b, int tag, const char *s, size_t n)
{
  if (tag >= 0) lr_buf_putc(b, tag);
  put_varint(b, n);
  lr_buf_append(b, s, n);
}

static void put_num(lr_buf_t *b, double d)
{
  /* Exact integers in int64 range, except -0, travel as zigzag varints. */
  if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
    int64_t i = (int64_t)d;
    if ((double)i == d && !(i == 0 && signbit(d))) {
      uint64_t u = (uint64_t)i;
      lr_buf_putc(b, LR_SER_INT);
      put_varint(b, i < 0 ? ~(u << 1) : u << 1);
      return;
    }
  }
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  unsigned char *p = (unsigned char *)lr_buf_reserve(b, 9);
  p[0] = LR_SER_DBL;
  for (int k = 0; k < 8; k++) p[1 + k] = (unsigned char)(bits >> (8 * k));
  b->len += 9;
}

/* A bounded string builder over an error buffer; output is truncated. */
typedef struct sbuf_s {
  char *p;
  size_t cap, len;
} sbuf_t;

static void sb_vadd(sbuf_t *s, const char *fmt, va_list ap)
{
  if (s->len + 1 >= s->cap) return;
  int n = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
  if (n < 0) return;
  s->len += (size_t)n;
  if (s->len >= s->cap) s->len = s->cap - 1;
}

static void sb_add(sbuf_t *s, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf_t *s, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  sb_vadd(s, fmt, ap);
  va_end(ap);
}

/* Appends at most NAME_SHOW bytes of name, non-printing bytes as '?'. */
static void sb_name(sbuf_t *s, const char *name, size_t n)
{
  char tmp[NAME_SHOW + 4];
  size_t k, m = n < NAME_SHOW ? n : NAME_SHOW;
  for (k = 0; k < m; k++) {
    unsigned char c = (unsigned char)name[k];
    tmp[k] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  if (m < n) {
    memcpy(tmp + k, "...", 3);
    k += 3;
  }
  tmp[k] = '\0';
  sb_add(s, "%s", tmp);
}

/* -- Encoder --------------------------------------------------------------- */

/* One step of the path from the root to the value being encoded. */
enum {
  SEG_FIELD,   /* value under a key */
  SEG_INDEX,   /* array item */
  SEG_KEY,     /* a key itself */
  SEG_UPVAL,   /* upvalue of a function */
  SEG_GLOBAL,  /* captured global of a function */
  SEG_META,    /* metatable */
  SEG_PAYLOAD, /* payload of a CUSTOM value */
};

typedef struct seg_s {
  int kind;
  int ref;          /* stack slot: the key (FIELD), the function (UPVAL...) */
  const char *name; /* upvalue or global name, custom kind */
  size_t n;         /* INDEX */
} seg_t;

typedef struct enc_s {
  lua_State *L;
  lr_buf_t *out;
  const char *root;
  char *err;
  size_t errlen;
  int conf, names, memo; /* stack slots */
  int have_names, have_memo;
  long nmemo;    /* indices handed out */
  long nentries; /* memo entries, including upvalue cells */
  int nseg;
  seg_t seg[LR_SER_MAX_DEPTH + 1];
} enc_t;

static int enc(enc_t *E, int idx);

static void func_where(lua_State *L, int f, sbuf_t *s)
{
  lua_Debug ar;
  lua_pushvalue(L, f);
  if (lua_getinfo(L, ">S", &ar))
    sb_add(s, "function at %s:%d", ar.short_src, ar.linedefined);
  else
    sb_add(s, "function");
}

static void seg_print(enc_t *E, const seg_t *g, sbuf_t *s)
{
  lua_State *L = E->L;
  switch (g->kind) {
  case SEG_FIELD:
    switch (lua_type(L, g->ref)) {
    case LUA_TSTRING: {
      size_t n;
      const char *k = lua_tolstring(L, g->ref, &n);
      sb_add(s, "field '");
      sb_name(s, k, n);
      sb_add(s, "'");
      break;
    }
    case LUA_TNUMBER:
      sb_add(s, "index %.14g", (double)lua_tonumber(L, g->ref));
      break;
    case LUA_TBOOLEAN:
      sb_add(s, "field [%s]", lua_toboolean(L, g->ref) ? "true" : "false");
      break;
    default:
      sb_add(s, "value for %s key", luaL_typename(L, g->ref));
    }
    break;
  case SEG_INDEX:
    sb_add(s, "index %zu", g->n);
    break;
  case SEG_KEY:
    sb_add(s, "key");
    break;
  case SEG_UPVAL:
  case SEG_GLOBAL:
    sb_add(s, "%s '", g->kind == SEG_UPVAL ? "upvalue" : "global");
    sb_name(s, g->name, strlen(g->name));
    sb_add(s, "' of ");
    func_where(L, g->ref, s);
    break;
  case SEG_META:
    sb_add(s, "metatable");
    break;
  case SEG_PAYLOAD:
    sb_add(s, "payload of '");
    sb_name(s, g->name, strlen(g->name));
    sb_add(s, "'");
    break;
  }
}

/* Fills err with the message and the path, innermost step first. Long paths
 * keep their four innermost and three outermost steps. */
static int efail(enc_t *E, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
static int efail(enc_t *E, const char *fmt, ...)
{
  if (!E->err || !E->errlen) return LR_ECODEC;
  sbuf_t s = {E->err, E->errlen, 0};
  E->err[0] = '\0';
  va_list ap;
  va_start(ap, fmt);
  sb_vadd(&s, fmt, ap);
  va_end(ap);
  if (!E->nseg && !E->root) return LR_ECODEC;
  lua_checkstack(E->L, 4);
  int n = E->nseg, first = 1;
  sb_add(&s, " (");
  for (int i = n - 1; i >= 0; i--) {
    if (!first) sb_add(&s, " of ");
    first = 0;
    if (n > 8 && i == n - 5) {
      sb_add(&s, "...");
      i = 3;
      continue;
    }
    seg_print(E, &E->seg[i], &s);
  }
  if (E->root) sb_add(&s, "%s%s", first ? "" : " of ", E->root);
  sb_add(&s, ")");
  return LR_ECODEC;
}

/* Message of the error value on top of the stack (left there). */
static const char *top_msg(lua_State *L)
{
  const char *m = lua_tostring(L, -1);
  return m ? m : "(error object is not a string)";
}

/* Encodes the value at idx as the child of the current value. */
static int child(enc_t *E, int idx, int kind, int ref, const char *name,
                 size_t n)
{
  lr_assert(E->nseg < (int)LR_ARRAY_SIZE(E->seg));
  seg_t *g = &E->seg[E->nseg++];
  g->kind = kind;
  g->ref = ref;
  g->name = name;
  g->n = n;
  int rc = enc(E, idx);
  E->nseg--;
  return rc;
}

/* The memo is taken out of the registry while in use, so a hook that
 * encodes gets its own. */
static void memo_open(enc_t *E)
{
  lua_State *L = E->L;
  lua_pushlightuserdata(L, &memo_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, -1)) {
    lua_pushlightuserdata(L, &memo_key);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
    lua_createtable(L, 0, 32);
  }
  lua_replace(L, E->memo);
  E->have_memo = 1;
}

static void memo_close(enc_t *E)
{
  lua_State *L = E->L;
  if (!E->have_memo || E->nentries > MEMO_KEEP) return;
  lua_pushnil(L);
  while (lua_next(L, E->memo)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, E->memo);
  }
  lua_pushlightuserdata(L, &memo_key);
  lua_pushvalue(L, E->memo);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

static long memo_add(enc_t *E, int idx)
{
  lua_State *L = E->L;
  if (!E->have_memo) memo_open(E);
  lua_pushvalue(L, idx);
  lua_pushnumber(L, (lua_Number)++E->nmemo);
  lua_rawset(L, E->memo);
  E->nentries++;
  return E->nmemo;
}

static int too_deep(enc_t *E)
{
  return E->nseg >= LR_SER_MAX_DEPTH;
}

/* Is the key at k an integer in 1..narr (so it was sent in the array)? */
static inline int in_array(lua_State *L, int k, size_t narr)
{
  if (!narr || lua_type(L, k) != LUA_TNUMBER) return 0;
  lua_Number d = lua_tonumber(L, k);
  return d >= 1 && d <= (lua_Number)narr && d == (lua_Number)(size_t)d;
}

/* mt: stack slot of the metatable, or 0. */
static int enc_table(enc_t *E, int idx, int mt)
{
  lua_State *L = E->L;
  lr_buf_t *b = E->out;
  size_t narr = lua_objlen(L, idx), nhash = 0, i;
  int rc;

  if (too_deep(E)) return efail(E, "value nested too deeply");
  memo_add(E, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!in_array(L, -1, narr)) nhash++;
  }
  lr_buf_putc(b, mt ? LR_SER_TABLE_MT : LR_SER_TABLE);
  put_varint(b, narr);
  put_varint(b, nhash);
  for (i = 1; i <= narr; i++) {
    lua_rawgeti(L, idx, (int)i);
    rc = child(E, lua_gettop(L), SEG_INDEX, 0, NULL, i);
    lua_pop(L, 1);
    if (rc < 0) return rc;
  }
  if (nhash) {
    size_t seen = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int v = lua_gettop(L), k = v - 1;
      if (in_array(L, k, narr)) {
        lua_pop(L, 1);
        continue;
      }
      if (++seen > nhash)
        rc = efail(E, "table was modified while being encoded");
      else if ((rc = child(E, k, SEG_KEY, 0, NULL, 0)) >= 0)
        rc = child(E, v, SEG_FIELD, k, NULL, 0);
      if (rc < 0) {
        lua_pop(L, 2);
        return rc;
      }
      lua_pop(L, 1);
    }
    if (seen != nhash)
      return efail(E, "table was modified while being encoded");
  }
  return mt ? child(E, mt, SEG_META, 0, NULL, 0) : 0;
}

/* Calls the hook at slot h with the value at idx and encodes the kind and
 * payload it returns as CUSTOM. what names the hook in errors. */
static int enc_custom(enc_t *E, int idx, int h, const char *what)
{
  lua_State *L = E->L;
  int rc;

  if (too_deep(E)) return efail(E, "value nested too deeply");
  memo_add(E, idx);
  lua_pushvalue(L, h);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 2, 0)) {
    rc = efail(E, "%s", top_msg(L));
    lua_pop(L, 1);
    return rc;
  }
  if (lua_isnil(L, -2) && lua_type(L, idx) == TCDATA)
    rc = efail(E, "cannot send cdata");
  else if (lua_type(L, -2) != LUA_TSTRING)
    rc = efail(E, "%s returned a %s kind, not a string", what,
               luaL_typename(L, -2));
  else {
    size_t n;
    const char *kind = lua_tolstring(L, -2, &n);
    put_str(E->out, LR_SER_CUSTOM, kind, n);
    rc = child(E, lua_gettop(L), SEG_PAYLOAD, 0, kind, 0);
  }
  lua_pop(L, 2);
  return rc;
}

static int l_index(lua_State *L)
{
  lua_gettable(L, 1);
  return 1;
}

/* The globals section of the function at f (see ser.h). */
static int enc_globals(enc_t *E, int f)
{
  lua_State *L = E->L;
  lr_buf_t *b = E->out;
  int rc = 0, names, env;
  size_t n, i;

  if (lua_type(L, E->conf) != LUA_TTABLE) goto none;
  lua_rawgeti(L, E->conf, CONF_GLOBALS);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    goto none;
  }
  lua_pushvalue(L, f);
  if (lua_pcall(L, 1, 1, 0)) {
    rc = efail(E, "globals hook failed: %s", top_msg(L));
    lua_pop(L, 1);
    return rc;
  }
  if (lua_isnil(L, -1) || (lua_istable(L, -1) && !lua_objlen(L, -1))) {
    lua_pop(L, 1);
    goto none;
  }
  if (!lua_istable(L, -1)) {
    rc = efail(E, "globals hook returned a %s, not a table",
               luaL_typename(L, -1));
    lua_pop(L, 1);
    return rc;
  }
  names = lua_gettop(L);
  n = lua_objlen(L, names);
  lua_getfenv(L, f);
  env = lua_gettop(L);
  lr_buf_putc(b, 1);
  for (i = 1; i <= n && rc >= 0; i++) {
    size_t len;
    lua_rawgeti(L, names, (int)i);
    if (lua_type(L, -1) != LUA_TSTRING) {
      rc = efail(E, "globals hook returned a %s name, not a string",
                 luaL_typename(L, -1));
      lua_pop(L, 1);
      break;
    }
    const char *name = lua_tolstring(L, -1, &len);
    lua_pushvalue(L, -1);
    lua_rawget(L, env);
    if (lua_isnil(L, -1) && lua_getmetatable(L, env)) {
      /* The env has a metatable (strict mode, sandboxes): read as f would. */
      lua_pop(L, 2);
      lua_pushcfunction(L, l_index);
      lua_pushvalue(L, env);
      lua_pushvalue(L, -3);
      if (lua_pcall(L, 2, 1, 0)) {
        rc = efail(E, "reading global '%s' failed: %s", name, top_msg(L));
        lua_pop(L, 2);
        break;
      }
    }
    if (!lua_isnil(L, -1)) {
      put_varint(b, (uint64_t)len + 1);
      lr_buf_append(b, name, len);
      rc = child(E, lua_gettop(L), SEG_GLOBAL, f, name, 0);
    }
    lua_pop(L, 2);
  }
  put_varint(b, 0);
  lua_pop(L, 2);
  return rc;
none:
  lr_buf_putc(b, 0);
  return 0;
}

static int on_dump(lua_State *L, const void *p, size_t n, void *ud)
{
  LR_UNUSED(L);
  lr_buf_append(ud, p, n);
  return 0;
}

static int enc_func(enc_t *E, int f)
{
  lua_State *L = E->L;
  lr_buf_t *b = E->out;
  lua_Debug ar;
  int rc, i;

  if (too_deep(E)) return efail(E, "value nested too deeply");
  long fi = memo_add(E, f);
  put_str(b, LR_SER_FUNC, build_tag, sizeof build_tag - 1);
  size_t at = b->len;
  lr_buf_reserve(b, 4);
  b->len += 4;
  lua_pushvalue(L, f);
  rc = lua_dump(L, on_dump, b);
  lua_pop(L, 1);
  size_t n = b->len - at - 4;
  if (rc || n > UINT32_MAX) return efail(E, "cannot dump function");
  for (int k = 0; k < 4; k++) b->data[at + k] = (char)(n >> (8 * k));

  lua_pushvalue(L, f);
  lua_getinfo(L, ">u", &ar);
  put_varint(b, (uint64_t)ar.nups);
  for (i = 1; i <= ar.nups; i++) {
    /* Closures sharing an upvalue cell still share it on arrival. */
    lua_pushlightuserdata(L, lua_upvalueid(L, f, i));
    lua_rawget(L, E->memo);
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) < 0) {
      uint64_t cell = (uint64_t)-lua_tonumber(L, -1);
      lua_pop(L, 1);
      lr_buf_putc(b, LR_SER_UPREF);
      put_varint(b, cell >> 8);
      put_varint(b, cell & 0xff);
      continue;
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, lua_upvalueid(L, f, i));
    lua_pushnumber(L, -(lua_Number)((uint64_t)fi << 8 | (uint64_t)i));
    lua_rawset(L, E->memo);
    E->nentries++;
    const char *name = lua_getupvalue(L, f, i);
    rc = child(E, lua_gettop(L), SEG_UPVAL, f, name ? name : "?", 0);
    lua_pop(L, 1);
    if (rc < 0) return rc;
  }
  return enc_globals(E, f);
}

/* Tables, functions, userdata, threads, cdata. */
static int enc_ref(enc_t *E, int idx)
{
  lua_State *L = E->L;
  int t = lua_type(L, idx), rc;

  if (!lua_checkstack(L, 16)) return efail(E, "value nested too deeply");
  if (E->have_memo) {
    lua_pushvalue(L, idx);
    lua_rawget(L, E->memo);
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) > 0) {
      uint64_t r = (uint64_t)lua_tonumber(L, -1);
      lua_pop(L, 1);
      lr_buf_putc(E->out, LR_SER_REF);
      put_varint(E->out, r);
      return 0;
    }
    lua_pop(L, 1);
  }
  if (E->have_names) {
    lua_pushvalue(L, idx);
    lua_rawget(L, E->names);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t n;
      const char *name = lua_tolstring(L, -1, &n);
      memo_add(E, idx);
      put_str(E->out, LR_SER_NAMED, name, n);
      lua_pop(L, 1);
      return 0;
    }
    if (!lua_isnil(L, -1)) {
      rc = efail(E, "names maps a %s to a %s, not a string",
                 luaL_typename(L, idx), luaL_typename(L, -1));
      lua_pop(L, 1);
      return rc;
    }
    lua_pop(L, 1);
  }
  switch (t) {
  case LUA_TTABLE:
  case LUA_TUSERDATA:
    if (lua_getmetatable(L, idx)) {
      lua_pushliteral(L, "__lray_ser");
      lua_rawget(L, -2);
      if (lua_isfunction(L, -1))
        rc = enc_custom(E, idx, lua_gettop(L), "__lray_ser");
      else if (t == LUA_TTABLE)
        rc = enc_table(E, idx, lua_gettop(L) - 1);
      else
        rc = efail(E, "cannot send userdata");
      lua_pop(L, 2);
      return rc;
    }
    if (t == LUA_TTABLE) return enc_table(E, idx, 0);
    return efail(E, "cannot send userdata");
  case LUA_TFUNCTION:
    if (lua_iscfunction(L, idx)) return efail(E, "cannot send function (C)");
    return enc_func(E, idx);
  case LUA_TLIGHTUSERDATA:
    return efail(E, "cannot send light userdata");
  case LUA_TTHREAD:
    return efail(E, "cannot send thread");
  case TCDATA:
    if (lua_type(L, E->conf) == LUA_TTABLE) {
      lua_rawgeti(L, E->conf, CONF_CDATA);
      if (lua_isfunction(L, -1)) {
        rc = enc_custom(E, idx, lua_gettop(L), "cdata hook");
        lua_pop(L, 1);
        return rc;
      }
      lua_pop(L, 1);
    }
    return efail(E, "cannot send cdata");
  default:
    return efail(E, "cannot send %s", luaL_typename(L, idx));
  }
}

static int enc(enc_t *E, int idx)
{
  lua_State *L = E->L;
  lr_buf_t *b = E->out;
  size_t n;
  const char *s;

  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    lr_buf_putc(b, LR_SER_NIL);
    return 0;
  case LUA_TBOOLEAN:
    lr_buf_putc(b, lua_toboolean(L, idx) ? LR_SER_TRUE : LR_SER_FALSE);
    return 0;
  case LUA_TNUMBER:
    put_num(b, lua_tonumber(L, idx));
    return 0;
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &n);
    put_str(b, LR_SER_STR, s, n);
    return 0;
  default:
    return enc_ref(E, idx);
  }
}

int lr_ser_encode(lua_State *L, int idx, const char *root, lr_buf_t *out,
                  char *err, size_t errlen)
{
  enc_t E;
  int base = lua_gettop(L), rc;
  size_t start = out->len;

  E.L = L;
  E.out = out;
  E.root = root;
  E.err = err;
  E.errlen = errlen;
  E.have_memo = E.have_names = 0;
  E.nmemo = E.nentries = 0;
  E.nseg = 0;
  if (err && errlen) err[0] = '\0';
  if (!lua_checkstack(L, 8)) return efail(&E, "Lua stack overflow");
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, &conf_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  E.conf = base + 2;
  if (lua_istable(L, E.conf))
    lua_rawgeti(L, E.conf, CONF_NAMES);
  else
    lua_pushnil(L);
  E.names = base + 3;
  E.have_names = lua_istable(L, E.names);
  lua_pushnil(L);
  E.memo = base + 4;

  lr_buf_putc(out, LR_SER_VERSION);
  rc = enc(&E, base + 1);
  if (rc < 0) out->len = start;
  memo_close(&E);
  lua_settop(L, base);
  return rc < 0 ? rc : 0;
}

/* -- Decoder --------------------------------------------------------------- */

typedef struct dec_s {
  lua_State *L;
  const unsigned char *p, *start, *end;
  char *err;
  size_t errlen;
  int conf, memo; /* stack slots */
  int have_memo;
  int no_code; /* lr_ser_decode_data: refuse FUNC */
  long nmemo;
} dec_t;

static int dec(dec_t *D, int depth);

static int dmsg(dec_t *D, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
static int dmsg(dec_t *D, const char *fmt, ...)
{
  if (D->err && D->errlen) {
    sbuf_t s = {D->err, D->errlen, 0};
    va_list ap;
    D->err[0] = '\0';
    va_start(ap, fmt);
    sb_vadd(&s, fmt, ap);
    va_end(ap);
  }
  return LR_ECODEC;
}

/* Malformed input: the message says where. */
#define dfail(D, fmt, ...)                                                    \
  dmsg(D, "cannot decode value: " fmt " (at byte %zu)", ##__VA_ARGS__,        \
       (size_t)((D)->p - (D)->start))

static size_t left(const dec_t *D)
{
  return (size_t)(D->end - D->p);
}

static int get_varint(dec_t *D, uint64_t *v)
{
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (D->p >= D->end) return dfail(D, "data is truncated");
    unsigned c = *D->p++;
    if (shift == 63 && c > 1) return dfail(D, "varint overflows 64 bits");
    r |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return dfail(D, "varint overflows 64 bits");
}

/* A length-prefixed byte string, left in the input. */
static int get_bytes(dec_t *D, const char **s, size_t *n)
{
  uint64_t len;
  int rc = get_varint(D, &len);
  if (rc < 0) return rc;
  if (len > left(D)) return dfail(D, "data is truncated");
  *s = (const char *)D->p;
  *n = (size_t)len;
  D->p += len;
  return 0;
}

/* Hands out the next memo index and stores the value at idx there (0:
 * a pending marker). */
static int memo_put(dec_t *D, int idx, long *out)
{
  lua_State *L = D->L;
  if (D->nmemo >= INT32_MAX) return dfail(D, "too many values");
  if (!D->have_memo) {
    lua_createtable(L, 16, 0);
    lua_replace(L, D->memo);
    D->have_memo = 1;
  }
  if (idx)
    lua_pushvalue(L, idx);
  else
    lua_pushlightuserdata(L, &pending);
  lua_rawseti(L, D->memo, (int)++D->nmemo);
  if (out) *out = D->nmemo;
  return 0;
}

static void memo_set(dec_t *D, long i, int idx)
{
  lua_pushvalue(D->L, idx);
  lua_rawseti(D->L, D->memo, (int)i);
}

/* Pushes hook CONF_* or returns an error naming it. */
static int get_hook(dec_t *D, int which)
{
  lua_State *L = D->L;
  if (lua_istable(L, D->conf)) {
    lua_rawgeti(L, D->conf, which);
    if (lua_isfunction(L, -1)) return 0;
    lua_pop(L, 1);
  }
  return LR_ECODEC;
}

static int dec_table(dec_t *D, int tag, int depth)
{
  lua_State *L = D->L;
  uint64_t narr, nhash, i;
  int rc, t;

  if (depth >= LR_SER_MAX_DEPTH) return dfail(D, "value nested too deeply");
  if ((rc = get_varint(D, &narr)) < 0 || (rc = get_varint(D, &nhash)) < 0)
    return rc;
  /* Every value takes at least one byte. */
  if (narr > left(D) || nhash > left(D) / 2 || narr > INT32_MAX)
    return dfail(D, "table is larger than the data");
  lua_createtable(L, (int)(narr < SIZE_HINT ? narr : SIZE_HINT),
                  (int)(nhash < SIZE_HINT ? nhash : SIZE_HINT));
  t = lua_gettop(L);
  if ((rc = memo_put(D, t, NULL)) < 0) return rc;
  for (i = 1; i <= narr; i++) {
    if ((rc = dec(D, depth + 1)) < 0) return rc;
    lua_rawseti(L, t, (int)i);
  }
  for (i = 0; i < nhash; i++) {
    if ((rc = dec(D, depth + 1)) < 0) return rc;
    if (lua_isnil(L, -1)) return dfail(D, "table key is nil");
    if (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1)))
      return dfail(D, "table key is NaN");
    if ((rc = dec(D, depth + 1)) < 0) return rc;
    lua_rawset(L, t);
  }
  if (tag == LR_SER_TABLE_MT) {
    if ((rc = dec(D, depth + 1)) < 0) return rc;
    if (lua_istable(L, -1))
      lua_setmetatable(L, t);
    else if (!lua_isnil(L, -1))
      return dfail(D, "metatable is a %s", luaL_typename(L, -1));
    else
      lua_pop(L, 1);
  }
  return 0;
}

/* Pushes the shared metatable {__index = _G} of captured-globals envs. */
static void push_envmt(lua_State *L)
{
  lua_pushlightuserdata(L, &envmt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, &envmt_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

static int nups_of(lua_State *L, int f)
{
  lua_Debug ar;
  if (!lua_isfunction(L, f) || lua_iscfunction(L, f)) return -1;
  lua_pushvalue(L, f);
  lua_getinfo(L, ">u", &ar);
  return ar.nups;
}

static int dec_upvalue(dec_t *D, int f, int i, int depth)
{
  lua_State *L = D->L;
  uint64_t g, n;
  int rc;

  if (left(D) && *D->p == LR_SER_UPREF) {
    D->p++;
    if ((rc = get_varint(D, &g)) < 0 || (rc = get_varint(D, &n)) < 0)
      return rc;
    if (g < 1 || g > (uint64_t)D->nmemo)
      return dfail(D, "bad upvalue reference");
    lua_rawgeti(L, D->memo, (int)g);
    if (n < 1 || (int64_t)n > nups_of(L, -1))
      return dfail(D, "bad upvalue reference");
    lua_upvaluejoin(L, f, i, lua_gettop(L), (int)n);
    lua_pop(L, 1);
    return 0;
  }
  if ((rc = dec(D, depth + 1)) < 0) return rc;
  if (!lua_setupvalue(L, f, i)) return dfail(D, "bad upvalue");
  return 0;
}

static int dec_func(dec_t *D, int depth)
{
  lua_State *L = D->L;
  const char *s;
  size_t n;
  uint64_t nups, k;
  int rc, f, i;

  if (depth >= LR_SER_MAX_DEPTH) return dfail(D, "value nested too deeply");
  if ((rc = get_bytes(D, &s, &n)) < 0) return rc;
  if (n != sizeof build_tag - 1 || memcmp(s, build_tag, n)) {
    char tag[64];
    sbuf_t sb = {tag, sizeof tag, 0};
    tag[0] = '\0';
    sb_name(&sb, s, n);
    return dmsg(D,
                "function was compiled by a different LuaJIT build "
                "(sender %s, receiver %s)",
                tag, build_tag);
  }
  if (left(D) < 4) return dfail(D, "data is truncated");
  n = 0;
  for (int b = 0; b < 4; b++) n |= (size_t)D->p[b] << (8 * b);
  D->p += 4;
  if (n > left(D)) return dfail(D, "data is truncated");
  if (n < 3 || memcmp(D->p, "\x1bLJ", 3))
    return dfail(D, "function is not LuaJIT bytecode");
  if (luaL_loadbufferx(L, (const char *)D->p, n, "=?", "b")) {
    rc = dfail(D, "cannot load function: %s", top_msg(L));
    return rc;
  }
  D->p += n;
  f = lua_gettop(L);
  if ((rc = memo_put(D, f, NULL)) < 0) return rc;
  if ((rc = get_varint(D, &nups)) < 0) return rc;
  if ((int64_t)nups != nups_of(L, f))
    return dfail(D, "function has a different number of upvalues");
  for (i = 1; i <= (int)nups; i++)
    if ((rc = dec_upvalue(D, f, i, depth)) < 0) return rc;

  if (!left(D)) return dfail(D, "data is truncated");
  switch (*D->p++) {
  case 0:
    return 0;
  case 1:
    break;
  default:
    return dfail(D, "bad globals marker");
  }
  lua_newtable(L);
  for (;;) {
    if ((rc = get_varint(D, &k)) < 0) return rc;
    if (!k) break;
    if (k - 1 > left(D)) return dfail(D, "data is truncated");
    lua_pushlstring(L, (const char *)D->p, (size_t)(k - 1));
    D->p += k - 1;
    if ((rc = dec(D, depth + 1)) < 0) return rc;
    lua_rawset(L, -3);
  }
  push_envmt(L);
  lua_setmetatable(L, -2);
  lua_setfenv(L, f);
  return 0;
}

static int dec_named(dec_t *D)
{
  lua_State *L = D->L;
  const char *name;
  size_t n;
  long i;
  int rc;

  if ((rc = get_bytes(D, &name, &n)) < 0 || (rc = memo_put(D, 0, &i)) < 0)
    return rc;
  if (get_hook(D, CONF_RESOLVE) < 0) {
    char shown[64];
    sbuf_t sb = {shown, sizeof shown, 0};
    shown[0] = '\0';
    sb_name(&sb, name, n);
    return dmsg(D, "cannot resolve '%s': no resolve hook", shown);
  }
  lua_pushlstring(L, name, n);
  if (lua_pcall(L, 1, 1, 0)) return dmsg(D, "%s", top_msg(L));
  memo_set(D, i, lua_gettop(L));
  return 0;
}

static int dec_custom(dec_t *D, int depth)
{
  lua_State *L = D->L;
  const char *kind;
  size_t n;
  long i;
  int rc;

  if (depth >= LR_SER_MAX_DEPTH) return dfail(D, "value nested too deeply");
  if ((rc = get_bytes(D, &kind, &n)) < 0 || (rc = memo_put(D, 0, &i)) < 0)
    return rc;
  if ((rc = dec(D, depth + 1)) < 0) return rc;
  if (get_hook(D, CONF_CUSTOM) < 0) {
    char shown[64];
    sbuf_t sb = {shown, sizeof shown, 0};
    shown[0] = '\0';
    sb_name(&sb, kind, n);
    return dmsg(D, "cannot decode custom value '%s': no custom_decode hook",
                shown);
  }
  lua_pushlstring(L, kind, n);
  lua_pushvalue(L, -3);
  if (lua_pcall(L, 2, 1, 0)) return dmsg(D, "%s", top_msg(L));
  lua_remove(L, -2);
  memo_set(D, i, lua_gettop(L));
  return 0;
}

static int dec(dec_t *D, int depth)
{
  lua_State *L = D->L;
  const char *s;
  size_t n;
  uint64_t u;
  int rc;

  if (!lua_checkstack(L, 16)) return dfail(D, "value nested too deeply");
  if (!left(D)) return dfail(D, "data is truncated");
  int tag = *D->p++;
  switch (tag) {
  case LR_SER_NIL:
    lua_pushnil(L);
    return 0;
  case LR_SER_FALSE:
  case LR_SER_TRUE:
    lua_pushboolean(L, tag == LR_SER_TRUE);
    return 0;
  case LR_SER_INT:
    if ((rc = get_varint(D, &u)) < 0) return rc;
    u = (u >> 1) ^ (0 - (u & 1));
    lua_pushnumber(L, (lua_Number)(int64_t)u);
    return 0;
  case LR_SER_DBL: {
    double d;
    if (left(D) < 8) return dfail(D, "data is truncated");
    u = 0;
    for (int k = 0; k < 8; k++) u |= (uint64_t)D->p[k] << (8 * k);
    D->p += 8;
    memcpy(&d, &u, sizeof d);
    lua_pushnumber(L, d);
    return 0;
  }
  case LR_SER_STR:
    if ((rc = get_bytes(D, &s, &n)) < 0) return rc;
    lua_pushlstring(L, s, n);
    return 0;
  case LR_SER_TABLE:
  case LR_SER_TABLE_MT:
    return dec_table(D, tag, depth);
  case LR_SER_REF:
    if ((rc = get_varint(D, &u)) < 0) return rc;
    if (u < 1 || u > (uint64_t)D->nmemo)
      return dfail(D, "back-reference %llu out of range",
                   (unsigned long long)u);
    lua_rawgeti(L, D->memo, (int)u);
    if (lua_touserdata(L, -1) == &pending)
      return dfail(D, "back-reference into a custom value being decoded");
    return 0;
  case LR_SER_FUNC:
    if (D->no_code) {
      D->p--;
      return dfail(D, "function bytecode is not accepted here");
    }
    return dec_func(D, depth);
  case LR_SER_NAMED:
    return dec_named(D);
  case LR_SER_CUSTOM:
    return dec_custom(D, depth);
  default:
    D->p--;
    return dfail(D, "unknown tag 0x%02x", (unsigned)tag);
  }
}

static long decode(lua_State *L, const char *p, size_t n, int no_code,
                   char *err, size_t errlen)
{
  dec_t D;
  int base = lua_gettop(L), rc;

  D.L = L;
  D.p = D.start = (const unsigned char *)p;
  D.end = D.p + n;
  D.err = err;
  D.errlen = errlen;
  D.have_memo = 0;
  D.no_code = no_code;
  D.nmemo = 0;
  if (err && errlen) err[0] = '\0';
  if (!lua_checkstack(L, 8)) return dmsg(&D, "Lua stack overflow");
  lua_pushlightuserdata(L, &conf_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  D.conf = base + 1;
  lua_pushnil(L);
  D.memo = base + 2;

  if (!n)
    rc = dfail(&D, "data is truncated");
  else if (*D.p != LR_SER_VERSION)
    rc = dfail(&D, "unknown format version %u", (unsigned)*D.p);
  else {
    D.p++;
    rc = dec(&D, 0);
  }
  if (rc < 0) {
    lua_settop(L, base);
    return rc;
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return (long)(D.p - D.start);
}

long lr_ser_decode(lua_State *L, const char *p, size_t n, char *err,
                   size_t errlen)
{
  return decode(L, p, n, 0, err, errlen);
}

long lr_ser_decode_data(lua_State *L, const char *p, size_t n, char *err,
                        size_t errlen)
{
  return decode(L, p, n, 1, err, errlen);
}

/* -- Lua API --------------------------------------------------------------- */

static int l_buf_gc(lua_State *L)
{
  lr_buf_free((lr_buf_t *)lua_touserdata(L, 1));
  return 0;
}

/* Pushes the cached scratch buffer's userdata (taken out of the registry so
 * a nested encode makes its own) and returns the buffer. */
static lr_buf_t *buf_take(lua_State *L)
{
  lr_buf_t *b;
  lua_pushlightuserdata(L, &buf_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isuserdata(L, -1)) {
    lua_pushlightuserdata(L, &buf_key);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return (lr_buf_t *)lua_touserdata(L, -1);
  }
  lua_pop(L, 1);
  b = (lr_buf_t *)lua_newuserdata(L, sizeof *b);
  lr_buf_init(b);
  if (luaL_newmetatable(L, "lray.ser.buf")) {
    lua_pushcfunction(L, l_buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

static void buf_give(lua_State *L, int ud, lr_buf_t *b)
{
  if (b->cap > BUF_KEEP)
    lr_buf_free(b);
  else
    lr_buf_reset(b);
  lua_pushlightuserdata(L, &buf_key);
  lua_pushvalue(L, ud);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* encode(v [, root]) -> string */
static int l_encode(lua_State *L)
{
  char err[LR_ERRLEN];
  const char *root;
  lr_buf_t *b;
  int rc;

  luaL_checkany(L, 1);
  root = luaL_optstring(L, 2, NULL);
  lua_settop(L, 2);
  b = buf_take(L);
  rc = lr_ser_encode(L, 1, root, b, err, sizeof err);
  if (rc < 0) {
    buf_give(L, 3, b);
    lua_pushstring(L, err);
    return lua_error(L);
  }
  lua_pushlstring(L, b->data, b->len);
  buf_give(L, 3, b);
  return 1;
}

/* decode(s [, pos]) -> value, next_pos */
static int l_decode(lua_State *L)
{
  char err[LR_ERRLEN];
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer pos = luaL_optinteger(L, 2, 1);
  long n;

  if (pos < 1 || (size_t)pos > len + 1)
    return luaL_argerror(L, 2, "position out of range");
  n = lr_ser_decode(L, s + pos - 1, len - (size_t)(pos - 1), err, sizeof err);
  if (n < 0) {
    lua_pushstring(L, err);
    return lua_error(L);
  }
  lua_pushinteger(L, pos + (lua_Integer)n);
  return 2;
}

/* ser_config{names=, resolve=, custom_decode=, cdata=, globals=} replaces
 * all hooks; ser_config(nil) removes them. */
static int l_ser_config(lua_State *L)
{
  static const struct {
    const char *name;
    int type;
  } fields[] = {
    [CONF_NAMES] = {"names", LUA_TTABLE},
    [CONF_RESOLVE] = {"resolve", LUA_TFUNCTION},
    [CONF_CUSTOM] = {"custom_decode", LUA_TFUNCTION},
    [CONF_CDATA] = {"cdata", LUA_TFUNCTION},
    [CONF_GLOBALS] = {"globals", LUA_TFUNCTION},
  };
  int i, n = (int)LR_ARRAY_SIZE(fields) - 1;

  if (lua_isnoneornil(L, 1)) {
    lua_pushlightuserdata(L, &conf_key);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    lua_getfield(L, 1, fields[i].name);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != fields[i].type)
      return luaL_error(L, "ser_config: '%s' must be a %s or nil",
                        fields[i].name, lua_typename(L, fields[i].type));
    lua_rawseti(L, -2, i);
  }
  lua_pushlightuserdata(L, &conf_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

void lr_lib_ser_open(lua_State *L)
{
  static const luaL_Reg fns[] = {
    {"encode", l_encode},
    {"decode", l_decode},
    {"ser_config", l_ser_config},
    {NULL, NULL},
  };
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
}
