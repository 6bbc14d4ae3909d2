/* libFuzzer target: the control protocol's C readers (proto/codec.c,
 * proto/msg.c). On every input lr_proto_validate and lr_proto_decode agree
 * (same type id, or both refuse); a decoded message encodes to bytes no
 * longer than the input that validate and decode to the same type, and
 * decoding and encoding those again gives the same bytes. A decode with a
 * small arena may refuse only for want of room. */
#include <string.h>
#include "common/errdef.h"
#include "fuzz.h"
#include "proto/proto.h"

static lr_arena_t ar1, ar2, small;
static lr_buf_t a, b;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *p = (const char *)data;
  char err[256];
  void *m = NULL, *m2 = NULL;
  int v = lr_proto_validate(p, size, err, sizeof(err));
  int d = lr_proto_decode(p, size, &ar1, &m, err, sizeof(err));
  FZ_CHECK(v == d, "validate %d, decode %d (%s)", v, d, err);
  FZ_CHECK(v >= 0 || v == LR_EPROTO, "validate returned %d", v);
  small.limit = 1024;
  int s = lr_proto_decode(p, size, &small, &m2, err, sizeof(err));
  FZ_CHECK(s == d || (d >= 0 && s == LR_EPROTO && strstr(err, "too many items")),
           "decode %d, with a small arena %d (%s)", d, s, err);
  if (d >= 0) {
    FZ_CHECK(((lr_prec_t *)m)->type == d, "struct type %d, id %d", ((lr_prec_t *)m)->type, d);
    lr_buf_reset(&a);
    lr_proto_encode(&a, m);
    FZ_CHECK(a.len <= size, "%zu bytes encode to %zu", size, a.len);
    FZ_CHECK(lr_proto_validate(a.data, a.len, err, sizeof(err)) == d,
             "re-encoded message does not validate: %s", err);
    FZ_CHECK(lr_proto_decode(a.data, a.len, &ar2, &m2, err, sizeof(err)) == d,
             "re-encoded message does not decode: %s", err);
    lr_buf_reset(&b);
    lr_proto_encode(&b, m2);
    FZ_CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len),
             "decode-encode is not stable (%zu then %zu bytes)", a.len, b.len);
  }
  lr_arena_reset(&ar1);
  lr_arena_reset(&ar2);
  lr_arena_reset(&small);
  return 0;
}
