/* Typed messages as C structs (proto.h, "Messages as C structs"): decoding a
 * frame into the struct of its type, and encoding a struct into a frame. The
 * C control plane (raylet, gcs) speaks through these; the Lua binding has
 * its own walk in script/lib_proto.c. Decoding trusts nothing: every count is
 * bounded by the bytes left and every allocation by the arena's limit. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "common/errdef.h"
#include "proto/proto.h"

/* Each struct is the type id, then one lr_pf_t per field in declaration
 * order: the decoder and encoder index them as lr_prec_t.f[i]. */
#define CHECK_FIELD_(name, elem, cont, rec) +1
#define CHECK_(ID, tname, kind)                                               \
  _Static_assert(sizeof(lr_m_##tname##_t) ==                                  \
                     offsetof(lr_prec_t, f) +                                 \
                         (0 LR_FIELDS_##tname(CHECK_FIELD_)) * sizeof(lr_pf_t) || \
                     (0 LR_FIELDS_##tname(CHECK_FIELD_)) == 0,                \
                 "lr_m_" #tname "_t is not laid out as lr_prec_t");
LR_PROTO_TYPES(CHECK_)
#undef CHECK_
#undef CHECK_FIELD_

/* -- Arena ----------------------------------------------------------------- */

struct lr_arena_chunk_s {
  lr_arena_chunk_t *next;
  size_t size, used;
  max_align_t data[];
};

#define CHUNK_MIN 16384

void *lr_arena_alloc(lr_arena_t *a, size_t n)
{
  size_t limit = a->limit ? a->limit : LR_ARENA_LIMIT;
  n = (n + 15) & ~(size_t)15;
  if (n > limit || a->used + n > limit) return NULL;
  lr_arena_chunk_t *c = a->head;
  if (!c || c->size - c->used < n) {
    size_t size = n > CHUNK_MIN ? n : CHUNK_MIN;
    c = lr_xmalloc(sizeof(*c) + size);
    c->size = size;
    c->used = 0;
    c->next = a->head;
    a->head = c;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  a->used += n;
  return p;
}

void lr_arena_reset(lr_arena_t *a)
{
  lr_arena_chunk_t *c = a->head;
  if (!c) return;
  /* Keep one chunk (the newest, largest for big frames only while needed). */
  while (c->next) {
    lr_arena_chunk_t *next = c->next;
    c->next = next->next;
    lr_free(next);
  }
  if (c->size > 4 * CHUNK_MIN) {
    lr_free(c);
    a->head = NULL;
  } else {
    c->used = 0;
  }
  a->used = 0;
}

void lr_arena_free(lr_arena_t *a)
{
  lr_arena_reset(a);
  lr_free(a->head);
  a->head = NULL;
}

/* -- Decoding -------------------------------------------------------------- */

typedef struct {
  lr_proto_rd_t r;
  lr_arena_t *a;
  int nomem;
} dstate_t;

static int dec_record(dstate_t *d, int type, int depth, void **out);

static int dec_elem(dstate_t *d, const lr_proto_field_t *f, int depth, lr_pval_t *v)
{
  size_t n;
  switch (f->elem) {
  case LR_ELEM_INT: return lr_proto_get_int(&d->r, &v->i);
  case LR_ELEM_F64: return lr_proto_get_f64(&d->r, &v->d);
  case LR_ELEM_BOOL: return lr_proto_get_bool(&d->r, &v->b);
  case LR_ELEM_STR:
    if (lr_proto_get_str(&d->r, &v->s.p, &n) < 0) return LR_EPROTO;
    v->s.n = n;
    return 0;
  case LR_ELEM_REC: return dec_record(d, f->rec, depth + 1, &v->rec);
  }
  return LR_EPROTO;
}

static int dec_field(dstate_t *d, const lr_proto_field_t *f, int depth, lr_pf_t *pf)
{
  uint64_t count;
  if (f->cont == LR_CONT_ONE) {
    pf->n = 1;
    return dec_elem(d, f, depth, &pf->v);
  }
  if (lr_proto_get_count(&d->r, &count) < 0) return LR_EPROTO;
  if (count == 0) return 0;
  pf->items = lr_arena_alloc(d->a, count * sizeof(lr_pitem_t));
  if (!pf->items) {
    d->nomem = 1;
    return LR_EPROTO;
  }
  pf->n = (uint32_t)count;
  for (uint64_t k = 0; k < count; k++) {
    lr_pitem_t *it = &pf->items[k];
    size_t n;
    if (f->cont == LR_CONT_IMAP && lr_proto_get_int(&d->r, &it->key.i) < 0) return LR_EPROTO;
    if (f->cont == LR_CONT_SMAP) {
      if (lr_proto_get_str(&d->r, &it->key.s.p, &n) < 0) return LR_EPROTO;
      it->key.s.n = n;
    }
    if (dec_elem(d, f, depth, &it->v) < 0) return LR_EPROTO;
  }
  return 0;
}

static int dec_record(dstate_t *d, int type, int depth, void **out)
{
  uint64_t bits;
  if (depth > LR_PROTO_MAX_DEPTH) return LR_EPROTO;
  if (lr_proto_get_bitmap(&d->r, type, &bits) < 0) return LR_EPROTO;
  const lr_proto_type_t *t = &lr_proto_types[type];
  lr_prec_t *rec = lr_arena_alloc(d->a, offsetof(lr_prec_t, f) + t->nfields * sizeof(lr_pf_t));
  if (!rec) {
    d->nomem = 1;
    return LR_EPROTO;
  }
  memset(rec, 0, offsetof(lr_prec_t, f) + t->nfields * sizeof(lr_pf_t));
  rec->type = type;
  for (unsigned i = 0; i < t->nfields; i++)
    if ((bits >> i) & 1)
      if (dec_field(d, &t->fields[i], depth, &rec->f[i]) < 0) return LR_EPROTO;
  *out = rec;
  return 0;
}

int lr_proto_decode(const char *p, size_t n, lr_arena_t *a, void **out,
                    char *err, size_t errlen)
{
  dstate_t d = {{(const uint8_t *)p, (const uint8_t *)p + n}, a, 0};
  uint64_t type;
  if (lr_proto_get_varint(&d.r, &type) < 0 || type >= LR_PT_COUNT_ ||
      !lr_proto_types[type].is_msg) {
    if (err) snprintf(err, errlen, "unknown message type");
    return LR_EPROTO;
  }
  if (dec_record(&d, (int)type, 0, out) < 0) {
    if (err)
      snprintf(err, errlen, "%s '%s' message",
               d.nomem ? "too many items in a" : "malformed",
               lr_proto_types[type].name);
    return LR_EPROTO;
  }
  if (d.r.p != d.r.end) {
    if (err) snprintf(err, errlen, "trailing bytes after a '%s' message", lr_proto_types[type].name);
    return LR_EPROTO;
  }
  return (int)type;
}

/* -- Encoding -------------------------------------------------------------- */

static void enc_record(lr_buf_t *b, const lr_prec_t *rec);

static void enc_elem(lr_buf_t *b, const lr_proto_field_t *f, const lr_pval_t *v)
{
  switch (f->elem) {
  case LR_ELEM_INT: lr_proto_put_int(b, v->i); break;
  case LR_ELEM_F64: lr_proto_put_f64(b, v->d); break;
  case LR_ELEM_BOOL: lr_buf_putc(b, v->b ? 1 : 0); break;
  case LR_ELEM_STR: lr_proto_put_str(b, v->s.p ? v->s.p : "", v->s.p ? v->s.n : 0); break;
  case LR_ELEM_REC:
    lr_assert(v->rec && ((const lr_prec_t *)v->rec)->type == f->rec);
    enc_record(b, v->rec);
    break;
  }
}

static void enc_record(lr_buf_t *b, const lr_prec_t *rec)
{
  lr_assert(rec->type >= 0 && rec->type < LR_PT_COUNT_);
  const lr_proto_type_t *t = &lr_proto_types[rec->type];
  uint64_t bits = 0;
  for (unsigned i = 0; i < t->nfields; i++)
    if (rec->f[i].n) bits |= (uint64_t)1 << i;
  lr_proto_put_varint(b, bits);
  for (unsigned i = 0; i < t->nfields; i++) {
    const lr_pf_t *pf = &rec->f[i];
    const lr_proto_field_t *f = &t->fields[i];
    if (!pf->n) continue;
    if (f->cont == LR_CONT_ONE) {
      enc_elem(b, f, &pf->v);
      continue;
    }
    lr_proto_put_varint(b, pf->n);
    for (uint32_t k = 0; k < pf->n; k++) {
      const lr_pitem_t *it = &pf->items[k];
      if (f->cont == LR_CONT_IMAP) lr_proto_put_int(b, it->key.i);
      if (f->cont == LR_CONT_SMAP) lr_proto_put_str(b, it->key.s.p, it->key.s.n);
      enc_elem(b, f, &it->v);
    }
  }
}

void lr_proto_encode(lr_buf_t *b, const void *m)
{
  const lr_prec_t *rec = m;
  lr_assert(rec->type >= 0 && rec->type < LR_PT_COUNT_ && lr_proto_types[rec->type].is_msg);
  lr_proto_put_varint(b, (uint64_t)rec->type);
  enc_record(b, rec);
}
