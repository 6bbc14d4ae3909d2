/* Cluster token authentication (see auth.h for the token's form and the
 * handshake's byte layout). All the cryptography is libsodium's: random
 * bytes, HMAC-SHA256 and constant-time comparison. */
#include "net/auth.h"
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/def.h"
#include "common/errdef.h"

enum { ST_NEW, ST_CHALLENGED, ST_ANSWERED, ST_DONE, ST_FAILED };

static void set_err(char *err, const char *fmt, const char *path, int code)
{
  if (err) snprintf(err, LR_ERRLEN, fmt, path, lr_strerror(code));
}

int lr_auth_global_init(void)
{
  /* sodium_init is thread-safe and returns 1 once already done. */
  return sodium_init() < 0 ? LR_EAUTH : 0;
}

/* -- Tokens ---------------------------------------------------------------- */

/* Decodes tok into key; 0 or LR_EBADTOKEN. */
static int decode(const char *tok, uint8_t *key, size_t *keylen)
{
  size_t n = strlen(tok), got = 0;
  const char *end = NULL;
  if (n < LR_AUTH_TOKEN_MIN_HEX || n > LR_AUTH_TOKEN_MAX_HEX || n % 2)
    return LR_EBADTOKEN;
  if (sodium_hex2bin(key, n / 2, tok, n, NULL, &got, &end) != 0 ||
      got != n / 2 || *end != '\0')
    return LR_EBADTOKEN;
  *keylen = got;
  return 0;
}

int lr_auth_token_check(const char *tok)
{
  uint8_t key[LR_AUTH_TOKEN_MAX_HEX / 2];
  size_t len;
  int rc = decode(tok, key, &len);
  sodium_memzero(key, sizeof(key));
  return rc;
}

int lr_auth_token_new(char *out)
{
  uint8_t raw[LR_AUTH_TOKEN_NEW_HEX / 2];
  if (lr_auth_global_init() < 0) return LR_EAUTH;
  randombytes_buf(raw, sizeof(raw));
  sodium_bin2hex(out, LR_AUTH_TOKEN_NEW_HEX + 1, raw, sizeof(raw));
  sodium_memzero(raw, sizeof(raw));
  return 0;
}

int lr_auth_token_write(const char *path, const char *tok, char *err)
{
  char tmp[4096];
  size_t n = strlen(tok);
  int fd = -1, rc = lr_auth_token_check(tok);
  if (rc < 0) {
    if (err) snprintf(err, LR_ERRLEN, "%s", lr_strerror(rc));
    return rc;
  }
  if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new-%d", path, (int)getpid()) >=
      sizeof(tmp)) {
    set_err(err, "token file path too long: %s (%s)", path, LR_EBADARG);
    return LR_EBADARG;
  }
  /* O_EXCL | O_NOFOLLOW: never write through a file or link someone else
   * planted at the temporary name. fchmod: the umask cannot loosen 0600, but
   * make the mode exact rather than rely on that. */
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = -errno;
    set_err(err, "cannot create a new token file beside %s: %s", path, rc);
    return rc;
  }
  errno = 0;
  if (fchmod(fd, 0600) < 0 || write(fd, tok, n) != (ssize_t)n ||
      write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
    rc = errno ? -errno : -EIO; /* a short write sets no errno */
    set_err(err, "cannot write a new token file beside %s: %s", path, rc);
    goto out;
  }
  if (close(fd) < 0 || rename(tmp, path) < 0) {
    fd = -1;
    rc = -errno;
    set_err(err, "cannot put token file in place at %s: %s", path, rc);
    goto out;
  }
  return 0;
out:
  if (fd >= 0) close(fd);
  unlink(tmp);
  return rc;
}

int lr_auth_token_read(const char *path, char *out, size_t outlen, char *err)
{
  struct stat st;
  char buf[LR_AUTH_TOKEN_MAX_HEX + 2];
  ssize_t n;
  int rc = 0, fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  lr_assert(outlen >= LR_AUTH_TOKEN_MAX_HEX + 1);
  if (fd < 0) {
    rc = -errno;
    set_err(err, "cannot open token file %s: %s", path, rc);
    return rc;
  }
  /* fstat on the open file, not stat on the path: what is checked is what
   * is read. */
  if (fstat(fd, &st) < 0) {
    rc = -errno;
    set_err(err, "cannot stat token file %s: %s", path, rc);
    goto out;
  }
  if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
      (st.st_mode & (S_IRWXG | S_IRWXO))) {
    rc = LR_ETOKENFILE;
    if (err)
      snprintf(err, LR_ERRLEN,
               "token file %s has mode %03o and owner uid %d: it must be a "
               "regular file of uid %d that only its owner can read "
               "(chmod 600 it, or make a new token)",
               path, (unsigned)(st.st_mode & 0777), (int)st.st_uid,
               (int)geteuid());
    goto out;
  }
  n = read(fd, buf, sizeof(buf) - 1);
  if (n < 0) {
    rc = -errno;
    set_err(err, "cannot read token file %s: %s", path, rc);
    goto out;
  }
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
  if ((rc = lr_auth_token_check(buf)) < 0) {
    set_err(err, "token file %s: %s", path, rc);
    goto out;
  }
  memcpy(out, buf, (size_t)n + 1);
out:
  sodium_memzero(buf, sizeof(buf));
  close(fd);
  return rc;
}

/* -- Handshake ------------------------------------------------------------- */

int lr_auth_init(lr_auth_t *a, const char *tok)
{
  memset(a, 0, sizeof(*a));
  if (lr_auth_global_init() < 0) return LR_EAUTH;
  return decode(tok, a->key, &a->keylen);
}

void lr_auth_close(lr_auth_t *a) { sodium_memzero(a, sizeof(*a)); }

/* mac = H(K, L || first || second). */
static void mac(const lr_auth_t *a, const uint8_t *first, const uint8_t *second,
                uint8_t out[LR_AUTH_MAC_LEN])
{
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, a->key, a->keylen);
  crypto_auth_hmacsha256_update(&st, (const uint8_t *)LR_AUTH_LABEL,
                                LR_AUTH_LABEL_LEN);
  crypto_auth_hmacsha256_update(&st, first, LR_AUTH_NONCE_LEN);
  crypto_auth_hmacsha256_update(&st, second, LR_AUTH_NONCE_LEN);
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof(st));
}

int lr_auth_server_challenge(lr_auth_t *a, uint8_t out[LR_AUTH_CHALLENGE_LEN])
{
  lr_assert(a->state == ST_NEW);
  randombytes_buf(a->sn, sizeof(a->sn));
  memcpy(out, LR_AUTH_LABEL, LR_AUTH_LABEL_LEN);
  memcpy(out + LR_AUTH_LABEL_LEN, a->sn, LR_AUTH_NONCE_LEN);
  a->state = ST_CHALLENGED;
  return 0;
}

int lr_auth_server_verify(lr_auth_t *a, const uint8_t *answer, size_t n,
                          uint8_t proof[LR_AUTH_PROOF_LEN])
{
  uint8_t want[LR_AUTH_MAC_LEN];
  int rc = LR_EAUTH;
  lr_assert(a->state == ST_CHALLENGED || a->state == ST_FAILED);
  if (a->state != ST_CHALLENGED) goto out; /* one try per challenge */
  rc = LR_EPROTO;
  if (n != LR_AUTH_ANSWER_LEN) goto out;
  memcpy(a->cn, answer, LR_AUTH_NONCE_LEN);
  /* cn == sn would make the client's MAC equal our proof. */
  if (sodium_memcmp(a->cn, a->sn, LR_AUTH_NONCE_LEN) == 0) goto out;
  mac(a, a->sn, a->cn, want);
  rc = LR_EAUTH;
  if (sodium_memcmp(want, answer + LR_AUTH_NONCE_LEN, LR_AUTH_MAC_LEN) != 0)
    goto out;
  mac(a, a->cn, a->sn, proof);
  rc = 0;
out:
  sodium_memzero(want, sizeof(want));
  a->state = rc == 0 ? ST_DONE : ST_FAILED;
  return rc;
}

int lr_auth_client_answer(lr_auth_t *a, const uint8_t *challenge, size_t n,
                          uint8_t out[LR_AUTH_ANSWER_LEN])
{
  lr_assert(a->state == ST_NEW);
  a->state = ST_FAILED;
  if (n != LR_AUTH_CHALLENGE_LEN ||
      memcmp(challenge, LR_AUTH_LABEL, LR_AUTH_LABEL_LEN) != 0)
    return LR_EPROTO;
  memcpy(a->sn, challenge + LR_AUTH_LABEL_LEN, LR_AUTH_NONCE_LEN);
  do {
    randombytes_buf(a->cn, sizeof(a->cn));
  } while (sodium_memcmp(a->cn, a->sn, LR_AUTH_NONCE_LEN) == 0);
  memcpy(out, a->cn, LR_AUTH_NONCE_LEN);
  mac(a, a->sn, a->cn, out + LR_AUTH_NONCE_LEN);
  a->state = ST_ANSWERED;
  return 0;
}

int lr_auth_client_check(lr_auth_t *a, const uint8_t *proof, size_t n)
{
  uint8_t want[LR_AUTH_MAC_LEN];
  int rc = LR_EAUTH;
  lr_assert(a->state == ST_ANSWERED || a->state == ST_FAILED);
  if (a->state != ST_ANSWERED) goto out;
  rc = LR_EPROTO;
  if (n != LR_AUTH_PROOF_LEN) goto out;
  mac(a, a->cn, a->sn, want);
  rc = sodium_memcmp(want, proof, LR_AUTH_MAC_LEN) == 0 ? 0 : LR_EAUTH;
out:
  sodium_memzero(want, sizeof(want));
  a->state = rc == 0 ? ST_DONE : ST_FAILED;
  return rc;
}
