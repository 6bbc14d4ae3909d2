/* Tests for cluster token authentication (net/auth.c): a handshake between
 * two holders of the token succeeds on both sides; a wrong token, a
 * tampered, truncated or reflected message, or an answer replayed to a new
 * challenge fails; tokens are long enough and their file is owner-only. */
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/def.h"
#include "common/errdef.h"
#include "net/net.h"
#include "test/test.h"

#define TOK_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define TOK_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

typedef struct {
  lr_auth_t srv, cli;
  uint8_t chal[LR_AUTH_CHALLENGE_LEN], ans[LR_AUTH_ANSWER_LEN];
  uint8_t proof[LR_AUTH_PROOF_LEN];
} pair_t;

/* Runs steps 1 and 2 with the server holding ts and the client tc. Returns
 * what the server's verify returned. */
static int answer(pair_t *p, const char *ts, const char *tc)
{
  ASSERT_EQ(lr_auth_init(&p->srv, ts), 0);
  ASSERT_EQ(lr_auth_init(&p->cli, tc), 0);
  ASSERT_EQ(lr_auth_server_challenge(&p->srv, p->chal), 0);
  ASSERT_EQ(lr_auth_client_answer(&p->cli, p->chal, sizeof(p->chal), p->ans),
            0);
  return lr_auth_server_verify(&p->srv, p->ans, sizeof(p->ans), p->proof);
}

static void close_pair(pair_t *p)
{
  lr_auth_close(&p->srv);
  lr_auth_close(&p->cli);
}

static void tmp_path(char *out, size_t n, const char *name)
{
  snprintf(out, n, "/tmp/lray-test-auth-%d-%s", (int)getpid(), name);
  unlink(out);
}

/* -- Handshake ------------------------------------------------------------- */

TEST(auth_round_trip)
{
  pair_t p;
  ASSERT_EQ(answer(&p, TOK_A, TOK_A), 0);
  ASSERT_EQ(lr_auth_client_check(&p.cli, p.proof, sizeof(p.proof)), 0);
  ASSERT(memcmp(p.chal, "lray-auth-v1", 12) == 0);
  close_pair(&p);
}

TEST(auth_token_case_does_not_matter)
{
  pair_t p;
  char upper[] = TOK_A;
  for (char *c = upper; *c; c++)
    if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 'a' + 'A');
  ASSERT_EQ(answer(&p, TOK_A, upper), 0);
  ASSERT_EQ(lr_auth_client_check(&p.cli, p.proof, sizeof(p.proof)), 0);
  close_pair(&p);
}

TEST(auth_wrong_token_fails_at_server)
{
  pair_t p;
  ASSERT_EQ(answer(&p, TOK_A, TOK_B), LR_EAUTH);
  /* One try per challenge: the right answer after a wrong one fails too. */
  pair_t q;
  ASSERT_EQ(answer(&q, TOK_A, TOK_A), 0);
  ASSERT_EQ(lr_auth_server_verify(&p.srv, q.ans, sizeof(q.ans), p.proof),
            LR_EAUTH);
  close_pair(&p);
  close_pair(&q);
}

/* A server without the token (an impostor) cannot make a proof the client
 * accepts, even when it is handed a valid answer from the real client. */
TEST(auth_wrong_token_fails_at_client)
{
  pair_t p;
  lr_auth_t fake;
  uint8_t chal[LR_AUTH_CHALLENGE_LEN], proof[LR_AUTH_PROOF_LEN];
  ASSERT_EQ(lr_auth_init(&p.cli, TOK_A), 0);
  ASSERT_EQ(lr_auth_init(&fake, TOK_B), 0);
  ASSERT_EQ(lr_auth_server_challenge(&fake, chal), 0);
  ASSERT_EQ(lr_auth_client_answer(&p.cli, chal, sizeof(chal), p.ans), 0);
  ASSERT_EQ(lr_auth_server_verify(&fake, p.ans, sizeof(p.ans), proof),
            LR_EAUTH);
  /* What the impostor could send instead: its own key's MAC, random bytes. */
  lr_auth_t fake2;
  ASSERT_EQ(lr_auth_init(&fake2, TOK_B), 0);
  memcpy(fake2.sn, chal + 12, 32);
  memcpy(fake2.cn, p.ans, 32);
  crypto_auth_hmacsha256_state st; /* H(K_B, L || cn || sn), by hand */
  crypto_auth_hmacsha256_init(&st, fake2.key, fake2.keylen);
  crypto_auth_hmacsha256_update(&st, (const uint8_t *)"lray-auth-v1", 12);
  crypto_auth_hmacsha256_update(&st, fake2.cn, 32);
  crypto_auth_hmacsha256_update(&st, fake2.sn, 32);
  crypto_auth_hmacsha256_final(&st, proof);
  ASSERT_EQ(lr_auth_client_check(&p.cli, proof, sizeof(proof)), LR_EAUTH);
  /* The client fails for good: a second proof is not looked at. */
  randombytes_buf(proof, sizeof(proof));
  ASSERT_EQ(lr_auth_client_check(&p.cli, proof, sizeof(proof)), LR_EAUTH);
  lr_auth_close(&fake);
  lr_auth_close(&fake2);
  lr_auth_close(&p.cli);
}

TEST(auth_tampered_answer_fails)
{
  /* Every single bit flip, nonce and MAC alike, is caught. */
  for (size_t bit = 0; bit < LR_AUTH_ANSWER_LEN * 8; bit++) {
    pair_t p;
    ASSERT_EQ(lr_auth_init(&p.srv, TOK_A), 0);
    ASSERT_EQ(lr_auth_init(&p.cli, TOK_A), 0);
    ASSERT_EQ(lr_auth_server_challenge(&p.srv, p.chal), 0);
    ASSERT_EQ(lr_auth_client_answer(&p.cli, p.chal, sizeof(p.chal), p.ans), 0);
    p.ans[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    ASSERT_EQ(lr_auth_server_verify(&p.srv, p.ans, sizeof(p.ans), p.proof),
              LR_EAUTH);
    close_pair(&p);
  }
}

TEST(auth_truncated_or_long_messages_fail)
{
  uint8_t big[LR_AUTH_ANSWER_LEN + 1];
  for (size_t n = 0; n <= sizeof(big); n++) {
    if (n == LR_AUTH_ANSWER_LEN) continue;
    pair_t p;
    ASSERT_EQ(lr_auth_init(&p.srv, TOK_A), 0);
    ASSERT_EQ(lr_auth_init(&p.cli, TOK_A), 0);
    ASSERT_EQ(lr_auth_server_challenge(&p.srv, p.chal), 0);
    ASSERT_EQ(lr_auth_client_answer(&p.cli, p.chal, sizeof(p.chal), p.ans), 0);
    memcpy(big, p.ans, sizeof(p.ans));
    big[LR_AUTH_ANSWER_LEN] = 0;
    ASSERT_EQ(lr_auth_server_verify(&p.srv, big, n, p.proof), LR_EPROTO);
    close_pair(&p);
  }
  /* A short proof fails the client, even when its bytes are right. */
  for (size_t n = 0; n < LR_AUTH_PROOF_LEN; n++) {
    pair_t p;
    ASSERT_EQ(answer(&p, TOK_A, TOK_A), 0);
    ASSERT_EQ(lr_auth_client_check(&p.cli, p.proof, n), LR_EPROTO);
    close_pair(&p);
  }
}

TEST(auth_replayed_answer_fails)
{
  pair_t p, q;
  ASSERT_EQ(answer(&p, TOK_A, TOK_A), 0);
  /* An eavesdropper replays the recorded answer on a new connection. */
  ASSERT_EQ(lr_auth_init(&q.srv, TOK_A), 0);
  ASSERT_EQ(lr_auth_server_challenge(&q.srv, q.chal), 0);
  ASSERT(memcmp(q.chal, p.chal, sizeof(q.chal)) != 0);
  ASSERT_EQ(lr_auth_server_verify(&q.srv, p.ans, sizeof(p.ans), q.proof),
            LR_EAUTH);
  /* And the recorded proof does not convince a client on a new one. */
  pair_t r;
  ASSERT_EQ(answer(&r, TOK_A, TOK_A), 0);
  ASSERT_EQ(lr_auth_client_check(&r.cli, p.proof, sizeof(p.proof)), LR_EAUTH);
  close_pair(&p);
  lr_auth_close(&q.srv);
  close_pair(&r);
}

/* An attacker without the token echoes the server's nonce as its own and
 * hopes for a MAC it can use: refused before any MAC is computed. */
TEST(auth_reflected_nonce_fails)
{
  lr_auth_t srv;
  uint8_t chal[LR_AUTH_CHALLENGE_LEN], ans[LR_AUTH_ANSWER_LEN], proof[32];
  ASSERT_EQ(lr_auth_init(&srv, TOK_A), 0);
  ASSERT_EQ(lr_auth_server_challenge(&srv, chal), 0);
  memcpy(ans, chal + 12, 32);
  memset(ans + 32, 0, 32);
  ASSERT_EQ(lr_auth_server_verify(&srv, ans, sizeof(ans), proof), LR_EPROTO);
  lr_auth_close(&srv);
}

TEST(auth_client_refuses_foreign_challenge)
{
  lr_auth_t cli;
  uint8_t chal[LR_AUTH_CHALLENGE_LEN], ans[LR_AUTH_ANSWER_LEN];
  memcpy(chal, "lray-auth-v2", 12);
  randombytes_buf(chal + 12, 32);
  ASSERT_EQ(lr_auth_init(&cli, TOK_A), 0);
  ASSERT_EQ(lr_auth_client_answer(&cli, chal, sizeof(chal), ans), LR_EPROTO);
  lr_auth_close(&cli);
  ASSERT_EQ(lr_auth_init(&cli, TOK_A), 0);
  memcpy(chal, "lray-auth-v1", 12);
  ASSERT_EQ(lr_auth_client_answer(&cli, chal, sizeof(chal) - 1, ans),
            LR_EPROTO);
  lr_auth_close(&cli);
}

/* -- Tokens ---------------------------------------------------------------- */

TEST(auth_token_new_is_long_random_hex)
{
  char a[LR_AUTH_TOKEN_NEW_HEX + 1], b[LR_AUTH_TOKEN_NEW_HEX + 1];
  ASSERT_EQ(lr_auth_token_new(a), 0);
  ASSERT_EQ(lr_auth_token_new(b), 0);
  ASSERT_EQ(strlen(a), 64); /* 256 bits, at least the 128 asked for */
  ASSERT(strspn(a, "0123456789abcdef") == 64);
  ASSERT(strcmp(a, b) != 0);
  ASSERT_EQ(lr_auth_token_check(a), 0);
}

TEST(auth_token_check_refuses_weak_or_malformed)
{
  ASSERT_EQ(lr_auth_token_check(""), LR_EBADTOKEN);
  ASSERT_EQ(lr_auth_token_check("0011223344556677889900aabbccdd"),
            LR_EBADTOKEN); /* 30 digits: 120 bits */
  ASSERT_EQ(lr_auth_token_check("00112233445566778899aabbccddeeff"), 0);
  ASSERT_EQ(lr_auth_token_check("00112233445566778899aabbccddeeff0"),
            LR_EBADTOKEN); /* odd */
  ASSERT_EQ(lr_auth_token_check("00112233445566778899aabbccddeefg"),
            LR_EBADTOKEN);
  ASSERT_EQ(lr_auth_token_check("00112233445566778899aabbccddeeff "),
            LR_EBADTOKEN);
  lr_auth_t a;
  ASSERT_EQ(lr_auth_init(&a, "secret"), LR_EBADTOKEN);
}

TEST(auth_token_file_is_owner_only)
{
  char path[256], got[LR_AUTH_TOKEN_MAX_HEX + 1], err[LR_ERRLEN];
  struct stat st;
  tmp_path(path, sizeof(path), "token");
  mode_t old = umask(0); /* a permissive umask must not loosen the mode */
  ASSERT_EQ(lr_auth_token_write(path, TOK_A, err), 0);
  umask(old);
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(lr_auth_token_read(path, got, sizeof(got), err), 0);
  ASSERT_STREQ(got, TOK_A);
  /* Rewriting a file that had become world-readable makes it 0600 again. */
  ASSERT_EQ(chmod(path, 0644), 0);
  ASSERT_EQ(lr_auth_token_write(path, TOK_B, err), 0);
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(lr_auth_token_read(path, got, sizeof(got), err), 0);
  ASSERT_STREQ(got, TOK_B);
  unlink(path);
}

TEST(auth_token_read_refuses_readable_by_others)
{
  char path[256], got[LR_AUTH_TOKEN_MAX_HEX + 1], err[LR_ERRLEN];
  tmp_path(path, sizeof(path), "loose");
  ASSERT_EQ(lr_auth_token_write(path, TOK_A, err), 0);
  ASSERT_EQ(chmod(path, 0640), 0);
  ASSERT_EQ(lr_auth_token_read(path, got, sizeof(got), err), LR_ETOKENFILE);
  ASSERT(strstr(err, "chmod 600") != NULL);
  ASSERT(strstr(err, path) != NULL);
  ASSERT_EQ(chmod(path, 0602), 0);
  ASSERT_EQ(lr_auth_token_read(path, got, sizeof(got), err), LR_ETOKENFILE);
  /* A symlink is not followed, even to a good file. */
  char link[256];
  tmp_path(link, sizeof(link), "link");
  ASSERT_EQ(chmod(path, 0600), 0);
  ASSERT_EQ(symlink(path, link), 0);
  ASSERT(lr_auth_token_read(link, got, sizeof(got), err) < 0);
  unlink(link);
  unlink(path);
}

TEST(auth_token_read_refuses_garbage_and_missing)
{
  char path[256], got[LR_AUTH_TOKEN_MAX_HEX + 1], err[LR_ERRLEN];
  tmp_path(path, sizeof(path), "garbage");
  ASSERT_EQ(lr_auth_token_read(path, got, sizeof(got), err), UV_ENOENT);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, "not a token\n", 12), 12);
  close(fd);
  ASSERT_EQ(lr_auth_token_read(path, got, sizeof(got), err), LR_EBADTOKEN);
  ASSERT_EQ(lr_auth_token_write(path, "short", err), LR_EBADTOKEN);
  unlink(path);
}
