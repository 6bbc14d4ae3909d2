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

#endif
