/* Descriptors for every wire type (from msgdef.h) and the validating reader.
 * The reader never reads past its input and never trusts a count: hostile
 * bytes give LR_EPROTO, never a crash or a large allocation. */
#include <stdio.h>
#include <string.h>
#include "common/errdef.h"
#include "proto/proto.h"

/* -- Descriptors ----------------------------------------------------------- */

#define FIELD_(name, elem, cont, rec)                                         \
  {#name, LR_ELEM_##elem, LR_CONT_##cont, LR_PT_##rec},
#define FIELDS_(ID, name, kind)                                               \
  static const lr_proto_field_t fields_##name[] = {                           \
    LR_FIELDS_##name(FIELD_){NULL, 0, 0, 0}};
LR_PROTO_TYPES(FIELDS_)
#undef FIELDS_
#undef FIELD_

#define IS_MSG_MSG 1
#define IS_MSG_REC 0
#define TYPE_(ID, name, kind)                                                 \
  [LR_PT_##ID] = {#name, fields_##name,                                       \
                  (uint8_t)(sizeof(fields_##name) / sizeof(lr_proto_field_t) - 1), \
                  IS_MSG_##kind},
const lr_proto_type_t lr_proto_types[LR_PT_COUNT_] = {LR_PROTO_TYPES(TYPE_)};
#undef TYPE_

int lr_proto_find(const char *name, size_t n)
{
  for (int i = 0; i < LR_PT_COUNT_; i++) {
    const char *t = lr_proto_types[i].name;
    if (strlen(t) == n && !memcmp(t, name, n)) return i;
  }
  return LR_PT_NONE;
}

/* -- Writing --------------------------------------------------------------- */

void lr_proto_put_varint(lr_buf_t *b, uint64_t v)
{
  char *p = lr_buf_reserve(b, 10);
  size_t i = 0;
  while (v >= 0x80) {
    p[i++] = (char)(v | 0x80);
    v >>= 7;
  }
  p[i++] = (char)v;
  b->len += i;
}

void lr_proto_put_int(lr_buf_t *b, int64_t v)
{
  lr_proto_put_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void lr_proto_put_f64(lr_buf_t *b, double v)
{
  uint64_t u;
  memcpy(&u, &v, 8);
  char *p = lr_buf_reserve(b, 8);
  for (int i = 0; i < 8; i++) p[i] = (char)(u >> (8 * i));
  b->len += 8;
}

void lr_proto_put_str(lr_buf_t *b, const char *s, size_t n)
{
  lr_proto_put_varint(b, n);
  lr_buf_append(b, s, n);
}

/* -- Reading --------------------------------------------------------------- */

int lr_proto_get_varint(lr_proto_rd_t *r, uint64_t *v)
{
  uint64_t x = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (r->p >= r->end) return LR_EPROTO;
    uint8_t c = *r->p++;
    if (shift == 63 && c > 1) return LR_EPROTO; /* more than 64 bits */
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return LR_EPROTO;
}

int lr_proto_get_int(lr_proto_rd_t *r, int64_t *v)
{
  uint64_t u;
  if (lr_proto_get_varint(r, &u) < 0) return LR_EPROTO;
  *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
  return 0;
}

int lr_proto_get_f64(lr_proto_rd_t *r, double *v)
{
  if (r->end - r->p < 8) return LR_EPROTO;
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u |= (uint64_t)r->p[i] << (8 * i);
  r->p += 8;
  memcpy(v, &u, 8);
  return 0;
}

int lr_proto_get_bool(lr_proto_rd_t *r, int *v)
{
  if (r->p >= r->end || *r->p > 1) return LR_EPROTO;
  *v = *r->p++;
  return 0;
}

int lr_proto_get_str(lr_proto_rd_t *r, const char **s, size_t *n)
{
  uint64_t len;
  if (lr_proto_get_varint(r, &len) < 0) return LR_EPROTO;
  if (len > (uint64_t)(r->end - r->p)) return LR_EPROTO;
  *s = (const char *)r->p;
  *n = (size_t)len;
  r->p += len;
  return 0;
}

int lr_proto_get_count(lr_proto_rd_t *r, uint64_t *n)
{
  if (lr_proto_get_varint(r, n) < 0) return LR_EPROTO;
  if (*n > LR_PROTO_MAX_ITEMS || *n > (uint64_t)(r->end - r->p)) return LR_EPROTO;
  return 0;
}

int lr_proto_get_bitmap(lr_proto_rd_t *r, int type, uint64_t *bits)
{
  if (lr_proto_get_varint(r, bits) < 0) return LR_EPROTO;
  unsigned nf = lr_proto_types[type].nfields;
  if (nf < 64 && (*bits >> nf)) return LR_EPROTO; /* a field it has not got */
  return 0;
}

/* -- Validation ------------------------------------------------------------ */

typedef struct {
  lr_proto_rd_t r;
  const char *what; /* the field being read, for the error */
} vstate_t;

static int check_record(vstate_t *v, int type, int depth);

static int check_elem(vstate_t *v, const lr_proto_field_t *f, int depth)
{
  int64_t i;
  double d;
  int b;
  const char *s;
  size_t n;
  switch (f->elem) {
  case LR_ELEM_INT: return lr_proto_get_int(&v->r, &i);
  case LR_ELEM_F64: return lr_proto_get_f64(&v->r, &d);
  case LR_ELEM_BOOL: return lr_proto_get_bool(&v->r, &b);
  case LR_ELEM_STR: return lr_proto_get_str(&v->r, &s, &n);
  case LR_ELEM_REC: return check_record(v, f->rec, depth + 1);
  }
  return LR_EPROTO;
}

static int check_field(vstate_t *v, const lr_proto_field_t *f, int depth)
{
  uint64_t count;
  int64_t key;
  const char *s;
  size_t n;
  v->what = f->name;
  if (f->cont == LR_CONT_ONE) return check_elem(v, f, depth);
  if (lr_proto_get_count(&v->r, &count) < 0) return LR_EPROTO;
  for (uint64_t k = 0; k < count; k++) {
    if (f->cont == LR_CONT_IMAP && lr_proto_get_int(&v->r, &key) < 0) return LR_EPROTO;
    if (f->cont == LR_CONT_SMAP && lr_proto_get_str(&v->r, &s, &n) < 0) return LR_EPROTO;
    if (check_elem(v, f, depth) < 0) return LR_EPROTO;
  }
  return 0;
}

static int check_record(vstate_t *v, int type, int depth)
{
  uint64_t bits;
  if (depth > LR_PROTO_MAX_DEPTH) return LR_EPROTO;
  if (lr_proto_get_bitmap(&v->r, type, &bits) < 0) return LR_EPROTO;
  const lr_proto_type_t *t = &lr_proto_types[type];
  for (unsigned i = 0; i < t->nfields; i++)
    if ((bits >> i) & 1)
      if (check_field(v, &t->fields[i], depth) < 0) return LR_EPROTO;
  return 0;
}

int lr_proto_validate(const char *p, size_t n, char *err, size_t errlen)
{
  vstate_t v = {{(const uint8_t *)p, (const uint8_t *)p + n}, "type"};
  uint64_t type;
  if (lr_proto_get_varint(&v.r, &type) < 0 || type >= LR_PT_COUNT_ ||
      !lr_proto_types[type].is_msg) {
    if (err) snprintf(err, errlen, "unknown message type");
    return LR_EPROTO;
  }
  if (check_record(&v, (int)type, 0) < 0) {
    if (err)
      snprintf(err, errlen, "malformed '%s' message (at field '%s')",
               lr_proto_types[type].name, v.what);
    return LR_EPROTO;
  }
  if (v.r.p != v.r.end) {
    if (err) snprintf(err, errlen, "trailing bytes after a '%s' message", lr_proto_types[type].name);
    return LR_EPROTO;
  }
  return (int)type;
}
