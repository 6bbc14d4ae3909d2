/* The typed wire protocol: descriptors built from msgdef.h, a validating
 * reader and the primitives both encoders share. No I/O, no Lua (the Lua
 * binding is script/lib_proto.c). Needs common/.
 *
 * A frame's payload is one message:
 *   varint type id, then a record
 * A record is a varint bitmap of the fields present (bit i = field i), then
 * each present field in declaration order:
 *   ONE   an element
 *   LIST  varint n, n elements
 *   IMAP  varint n, n times (zigzag varint key, element)
 *   SMAP  varint n, n times (string key, element)
 * Elements: INT zigzag varint; F64 8 bytes little-endian; BOOL one byte (0 or
 * 1); STR varint length, bytes; REC a record. Varints are unsigned LEB128 of
 * at most 10 bytes. Records nest at most LR_PROTO_MAX_DEPTH deep. */
#ifndef LR_PROTO_H
#define LR_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "common/buf.h"
#include "proto/msgdef.h"

#define LR_PROTO_MAX_DEPTH 8
#define LR_PROTO_MAX_ITEMS (1u << 24) /* per container */

enum { LR_ELEM_INT, LR_ELEM_F64, LR_ELEM_BOOL, LR_ELEM_STR, LR_ELEM_REC };
enum { LR_CONT_ONE, LR_CONT_LIST, LR_CONT_IMAP, LR_CONT_SMAP };

enum {
#define LR_PT_ENUM_(ID, name, kind) LR_PT_##ID,
  LR_PROTO_TYPES(LR_PT_ENUM_)
#undef LR_PT_ENUM_
  LR_PT_COUNT_,
  LR_PT_NONE = -1
};

typedef struct lr_proto_field_s {
  const char *name;
  uint8_t elem, cont;
  int16_t rec; /* record type id for LR_ELEM_REC, else LR_PT_NONE */
} lr_proto_field_t;

typedef struct lr_proto_type_s {
  const char *name;
  const lr_proto_field_t *fields;
  uint8_t nfields, is_msg;
} lr_proto_type_t;

/* Indexed by type id. */
extern const lr_proto_type_t lr_proto_types[LR_PT_COUNT_];

/* The id of the type called name (n bytes), or LR_PT_NONE. */
int lr_proto_find(const char *name, size_t n);

/* -- Primitives ----------------------------------------------------------- */

typedef struct lr_proto_rd_s {
  const uint8_t *p, *end;
} lr_proto_rd_t;

void lr_proto_put_varint(lr_buf_t *b, uint64_t v);
void lr_proto_put_int(lr_buf_t *b, int64_t v); /* zigzag */
void lr_proto_put_f64(lr_buf_t *b, double v);
void lr_proto_put_str(lr_buf_t *b, const char *s, size_t n);

/* Each returns 0, or LR_EPROTO when the input ends early or is malformed. */
int lr_proto_get_varint(lr_proto_rd_t *r, uint64_t *v);
int lr_proto_get_int(lr_proto_rd_t *r, int64_t *v);
int lr_proto_get_f64(lr_proto_rd_t *r, double *v);
int lr_proto_get_bool(lr_proto_rd_t *r, int *v);
int lr_proto_get_str(lr_proto_rd_t *r, const char **s, size_t *n);
/* A container's item count: at most LR_PROTO_MAX_ITEMS, and no more than
 * the bytes left (every item takes at least one), so a hostile count can
 * never make a reader allocate more than the frame's size. */
int lr_proto_get_count(lr_proto_rd_t *r, uint64_t *n);
/* A record's presence bitmap: no bit beyond the type's fields. */
int lr_proto_get_bitmap(lr_proto_rd_t *r, int type, uint64_t *bits);

/* Checks that p[0..n) is one whole, well-formed message. Returns its type
 * id, or LR_EPROTO with the reason in err (errlen bytes, may be NULL). */
int lr_proto_validate(const char *p, size_t n, char *err, size_t errlen);

/* -- Messages as C structs ------------------------------------------------- */
/* Every type has a struct lr_m_<name>_t whose members are its fields, by
 * name, each an lr_pf_t, after the type id:
 *
 *   lr_m_lease_t m = LR_MSG_INIT(LEASE);
 *   LR_SET_CSTR(m.rid, "r1");
 *   lr_proto_encode(&buf, &m);
 *
 * A ONE field holds its value in v (n = 1 when present); a LIST, IMAP or SMAP
 * field holds n items (key: .i for IMAP, .s for SMAP). A REC element points
 * at another such struct. Decoded strings point into the frame they came
 * from, so a decoded message lives no longer than its frame and its arena. */

typedef struct lr_pstr_s {
  const char *p;
  size_t n;
} lr_pstr_t;

typedef union lr_pval_u {
  int64_t i;
  double d;
  int b;
  lr_pstr_t s;
  void *rec; /* an lr_m_<name>_t */
} lr_pval_t;

typedef struct lr_pitem_s {
  lr_pval_t key; /* IMAP: .i, SMAP: .s */
  lr_pval_t v;
} lr_pitem_t;

typedef struct lr_pf_s {
  uint32_t n;        /* ONE: 1 when present; else the number of items */
  lr_pval_t v;       /* ONE: the value */
  lr_pitem_t *items; /* LIST, IMAP, SMAP */
} lr_pf_t;

/* Any message or record: its fields follow the type id, in order. */
typedef struct lr_prec_s {
  int type;
  lr_pf_t f[];
} lr_prec_t;

#define LR_PSTRUCT_FIELD_(name, elem, cont, rec) lr_pf_t name;
#define LR_PSTRUCT_(ID, tname, kind)                                          \
  typedef struct lr_m_##tname##_s {                                           \
    int type;                                                                 \
    LR_FIELDS_##tname(LR_PSTRUCT_FIELD_)                                      \
  } lr_m_##tname##_t;
LR_PROTO_TYPES(LR_PSTRUCT_)
#undef LR_PSTRUCT_
#undef LR_PSTRUCT_FIELD_

#define LR_MSG_INIT(ID) {.type = LR_PT_##ID}
#define LR_HAS(f) ((f).n > 0)
#define LR_SET_INT(f, x) ((f).n = 1, (f).v.i = (int64_t)(x))
#define LR_SET_F64(f, x) ((f).n = 1, (f).v.d = (double)(x))
#define LR_SET_BOOL(f, x) ((f).n = 1, (f).v.b = !!(x))
#define LR_SET_STR(f, ptr, len) ((f).n = 1, (f).v.s.p = (ptr), (f).v.s.n = (len))
#define LR_SET_CSTR(f, str) LR_SET_STR(f, (str), strlen(str))
#define LR_SET_REC(f, r) ((f).n = 1, (f).v.rec = (r))
#define LR_SET_ITEMS(f, it, cnt) ((f).n = (uint32_t)(cnt), (f).items = (it))

/* Arena for decoded messages: bump allocation in chunks, reset per frame. */
typedef struct lr_arena_chunk_s lr_arena_chunk_t;
typedef struct lr_arena_s {
  lr_arena_chunk_t *head;
  size_t used;  /* bytes handed out since the last reset */
  size_t limit; /* most bytes one decode may take (0: LR_ARENA_LIMIT) */
} lr_arena_t;

/* What one message may take to decode: a frame of many tiny items cannot
 * make a reader allocate much more than this. */
#define LR_ARENA_LIMIT ((size_t)256 << 20)

void *lr_arena_alloc(lr_arena_t *a, size_t n); /* NULL past the limit */
void lr_arena_reset(lr_arena_t *a);            /* keeps the first chunk */
void lr_arena_free(lr_arena_t *a);

/* Decodes one whole message from p[0..n) into a struct allocated in a.
 * Returns its type id with *out set, or LR_EPROTO with the reason in err. */
int lr_proto_decode(const char *p, size_t n, lr_arena_t *a, void **out,
                    char *err, size_t errlen);

/* Appends the message m (any lr_m_<name>_t whose type is a MSG) to b. */
void lr_proto_encode(lr_buf_t *b, const void *m);

/* The name of message type id, for logs. */
static inline const char *lr_proto_name(int id)
{
  return id >= 0 && id < LR_PT_COUNT_ ? lr_proto_types[id].name : "?";
}

#endif
