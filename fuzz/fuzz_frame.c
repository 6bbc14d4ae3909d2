/* libFuzzer target: the frame reader (lr_conn_split in net/conn.c), without
 * a loop. The input's first byte picks max_frame; the rest is the byte
 * stream a peer sends. It is fed three ways: whole, byte by byte, and in
 * pieces whose sizes come from a generator seeded by a hash of the input.
 * Each way must hand on_frame the frames a plain reference reader finds, in
 * order, stop at the same oversized header, stop when on_frame closes the
 * connection (it does for frames starting with CLOSE_BYTE), keep exactly
 * the unread tail in c->in and say in c->need what the next frame lacks. */
#include <string.h>
#include "common/errdef.h"
#include "fuzz.h"
#include "net/net.h"

#define CLOSE_BYTE 0xc5

typedef struct {
  lr_buf_t log; /* each frame: u32 length, bytes */
  int frames;
} sink_t;

static sink_t want, got;

static void on_frame(lr_conn_t *c, const char *p, size_t n)
{
  sink_t *s = c->data;
  uint32_t l = (uint32_t)n;
  lr_buf_append(&s->log, &l, 4);
  lr_buf_append(&s->log, p, n);
  s->frames++;
  if (n && (uint8_t)p[0] == CLOSE_BYTE) c->closing = 1;
}

/* The reference: how far a reader gets through p[0..n) and why it stops. */
enum { END_MORE, END_BIG, END_CLOSED };
static int reference(const uint8_t *p, size_t n, size_t max, size_t *used)
{
  size_t pos = 0;
  for (;;) {
    if (n - pos < 4) break;
    uint32_t len = (uint32_t)p[pos] | (uint32_t)p[pos + 1] << 8 |
                   (uint32_t)p[pos + 2] << 16 | (uint32_t)p[pos + 3] << 24;
    if (len > max) {
      *used = pos;
      return END_BIG;
    }
    if (n - pos - 4 < len) break;
    uint32_t l = len;
    lr_buf_append(&want.log, &l, 4);
    lr_buf_append(&want.log, p + pos + 4, len);
    want.frames++;
    pos += 4 + (size_t)len;
    if (len && p[pos - len] == CLOSE_BYTE) {
      *used = pos;
      return END_CLOSED;
    }
  }
  *used = pos;
  return END_MORE;
}

static uint64_t rng;
static size_t next_piece(size_t left)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  size_t k = (size_t)(rng >> 11);
  /* Mostly small pieces, now and then a large one. */
  size_t n = (k & 7) ? 1 + (k >> 3) % 16 : 1 + (k >> 3) % (left + 1);
  return n < left ? n : left;
}

/* piece: 0 = all at once, 1 = byte by byte, 2 = from next_piece. */
static void feed(const uint8_t *p, size_t n, size_t max, int piece, int end,
                 size_t used)
{
  lr_conn_t c;
  memset(&c, 0, sizeof(c));
  lr_buf_init(&c.in);
  c.max_frame = max;
  c.on_frame = on_frame;
  c.data = &got;
  lr_buf_reset(&got.log);
  got.frames = 0;
  size_t off = 0;
  int rc = 0;
  while (off < n && !c.closing && rc == 0) {
    size_t k = piece == 0 ? n : piece == 1 ? 1 : next_piece(n - off);
    if (k > n - off) k = n - off;
    /* As on_alloc and on_read: reserve, then the bytes "arrive". */
    memcpy(lr_buf_reserve(&c.in, k), p + off, k);
    c.in.len += k;
    off += k;
    size_t before = c.in.len;
    rc = lr_conn_split(&c);
    FZ_CHECK(rc == 0 || rc == LR_ETOOBIG, "split returned %d", rc);
    FZ_CHECK(c.in.len <= before, "c->in grew");
    /* What is left is the input's unread tail. */
    FZ_CHECK(!c.in.len || !memcmp(c.in.data, p + off - c.in.len, c.in.len),
             "c->in is not the tail");
    if (rc == 0 && !c.closing) {
      size_t need = 0;
      if (c.in.len >= 4) {
        uint32_t len;
        memcpy(&len, c.in.data, 4);
        FZ_CHECK(c.in.len - 4 < len, "a whole frame was left unread");
        need = len + 4 - c.in.len;
      }
      FZ_CHECK(c.need == need, "need %zu, should be %zu", c.need, need);
    }
  }
  FZ_CHECK(got.frames == want.frames && got.log.len == want.log.len &&
               (!want.log.len || !memcmp(got.log.data, want.log.data, want.log.len)),
           "way %d: %d frames, the reference %d", piece, got.frames, want.frames);
  FZ_CHECK((rc == LR_ETOOBIG) == (end == END_BIG), "way %d: rc %d, end %d", piece, rc, end);
  FZ_CHECK(c.closing == (end == END_CLOSED), "way %d: closing %d, end %d", piece,
           c.closing, end);
  FZ_CHECK(off - c.in.len == used, "way %d: read %zu bytes, the reference %zu", piece,
           off - c.in.len, used);
  lr_buf_free(&c.in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const size_t maxes[4] = {0, 16, 300, LR_MAX_FRAME};
  if (!size) return 0;
  size_t max = maxes[data[0] & 3], used;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  lr_buf_reset(&want.log);
  want.frames = 0;
  int end = reference(p, n, max, &used);
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the input */
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 0x100000001b3ull;
  rng = h | 1;
  feed(p, n, max, 0, end, used);
  feed(p, n, max, 1, end, used);
  feed(p, n, max, 2, end, used);
  return 0;
}
