/* See json.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "common/json.h"

void lr_json_init(lr_json_t *j, lr_buf_t *b)
{
  j->b = b;
  j->depth = 0;
  j->need_comma[0] = 0;
}

/* Before a value: the comma that separates it from the one before. */
static void sep(lr_json_t *j)
{
  if (j->need_comma[j->depth]) lr_buf_putc(j->b, ',');
  j->need_comma[j->depth] = 1;
}

static void open_(lr_json_t *j, int c)
{
  sep(j);
  lr_buf_putc(j->b, c);
  lr_assert(j->depth + 1 < LR_JSON_MAXDEPTH);
  j->need_comma[++j->depth] = 0;
  j->is_arr[j->depth] = c == '[';
}

void lr_json_obj(lr_json_t *j) { open_(j, '{'); }
void lr_json_arr(lr_json_t *j) { open_(j, '['); }

void lr_json_end(lr_json_t *j)
{
  lr_assert(j->depth > 0);
  lr_buf_putc(j->b, j->is_arr[j->depth] ? ']' : '}');
  j->depth--;
}

void lr_json_key(lr_json_t *j, const char *k)
{
  lr_json_str(j, k, strlen(k));
  lr_buf_putc(j->b, ':');
  j->need_comma[j->depth] = 0; /* the value follows without a comma */
}

/* The length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
  unsigned c = p[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

void lr_json_str(lr_json_t *j, const char *s, size_t n)
{
  lr_buf_t *b = j->b;
  sep(j);
  lr_buf_putc(b, '"');
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    if (c == '"' || c == '\\') {
      lr_buf_putc(b, '\\');
      lr_buf_putc(b, (int)c);
      i++;
    } else if (c < 0x20) {
      char esc[8];
      const char *e = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
      if (!e) {
        snprintf(esc, sizeof(esc), "\\u%04x", c);
        e = esc;
      }
      lr_buf_append(b, e, strlen(e));
      i++;
    } else {
      size_t len = utf8_len(p + i, n - i);
      if (len) {
        lr_buf_append(b, p + i, len);
        i += len;
      } else {
        lr_buf_append(b, "\xef\xbf\xbd", 3);
        i++;
      }
    }
  }
  lr_buf_putc(b, '"');
}

void lr_json_cstr(lr_json_t *j, const char *s)
{
  if (s) lr_json_str(j, s, strlen(s));
  else lr_json_null(j);
}

void lr_json_num(lr_json_t *j, double v)
{
  char tmp[40];
  sep(j);
  if (!isfinite(v)) snprintf(tmp, sizeof(tmp), "null");
  else if (v == floor(v) && fabs(v) < 9007199254740992.0) snprintf(tmp, sizeof(tmp), "%.0f", v);
  else snprintf(tmp, sizeof(tmp), "%.17g", v);
  lr_buf_append(j->b, tmp, strlen(tmp));
}

void lr_json_int(lr_json_t *j, int64_t v)
{
  char tmp[32];
  sep(j);
  snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
  lr_buf_append(j->b, tmp, strlen(tmp));
}

void lr_json_bool(lr_json_t *j, int v)
{
  sep(j);
  lr_buf_append(j->b, v ? "true" : "false", v ? 4 : 5);
}

void lr_json_null(lr_json_t *j)
{
  sep(j);
  lr_buf_append(j->b, "null", 4);
}

void lr_json_kstr(lr_json_t *j, const char *k, const char *s)
{
  lr_json_key(j, k);
  lr_json_cstr(j, s);
}

void lr_json_kstr_opt(lr_json_t *j, const char *k, const char *s)
{
  if (s) lr_json_kstr(j, k, s);
}

void lr_json_knum(lr_json_t *j, const char *k, double v)
{
  lr_json_key(j, k);
  lr_json_num(j, v);
}

void lr_json_kint(lr_json_t *j, const char *k, int64_t v)
{
  lr_json_key(j, k);
  lr_json_int(j, v);
}

void lr_json_kbool(lr_json_t *j, const char *k, int v)
{
  lr_json_key(j, k);
  lr_json_bool(j, v);
}
