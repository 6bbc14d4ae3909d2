/* A small JSON writer for the state API's answers (core/raylet, core/gcs):
 * objects and arrays nest, commas go where they belong, strings are escaped
 * (bytes that are not valid UTF-8 become U+FFFD, so the output always
 * parses). Reading JSON is not needed in C. */
#ifndef LR_JSON_H
#define LR_JSON_H

#include <stddef.h>
#include <stdint.h>
#include "common/buf.h"

#define LR_JSON_MAXDEPTH 32

typedef struct lr_json_s {
  lr_buf_t *b;
  int depth;
  uint8_t need_comma[LR_JSON_MAXDEPTH];
  uint8_t is_arr[LR_JSON_MAXDEPTH];
} lr_json_t;

void lr_json_init(lr_json_t *j, lr_buf_t *b);
void lr_json_obj(lr_json_t *j);  /* { */
void lr_json_arr(lr_json_t *j);  /* [ */
void lr_json_end(lr_json_t *j);  /* } or ], whichever is open */
void lr_json_key(lr_json_t *j, const char *k);
void lr_json_str(lr_json_t *j, const char *s, size_t n);
void lr_json_cstr(lr_json_t *j, const char *s); /* NULL writes null */
void lr_json_num(lr_json_t *j, double v);       /* integers without a dot */
void lr_json_int(lr_json_t *j, int64_t v);
void lr_json_bool(lr_json_t *j, int v);
void lr_json_null(lr_json_t *j);

/* key: value shorthands; the _opt ones write nothing for NULL. */
void lr_json_kstr(lr_json_t *j, const char *k, const char *s);
void lr_json_kstr_opt(lr_json_t *j, const char *k, const char *s);
void lr_json_knum(lr_json_t *j, const char *k, double v);
void lr_json_kint(lr_json_t *j, const char *k, int64_t v);
void lr_json_kbool(lr_json_t *j, const char *k, int v);

#endif
