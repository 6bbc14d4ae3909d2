/* libFuzzer target: the token handshake's parsing (net/auth.c). The first
 * byte picks what the input is:
 *   0  a token: lr_auth_token_check and lr_auth_init accept exactly the
 *      strings of 32..128 hex digits, an even number of them;
 *   1  a client's ANSWER to a real CHALLENGE: never accepted (the input
 *      cannot know the token), and after it even the true ANSWER is not;
 *   2  changes to a real handshake (XOR masks on ANSWER and PROOF, a byte
 *      cut off either): it succeeds exactly when nothing was changed;
 *   3  a server's CHALLENGE then PROOF to a real client: the ANSWER is made
 *      only for 44 bytes starting with the label, and no PROOF is accepted.
 * libsodium's random bytes come from a generator reset for every input, so
 * every run of an input is the same; each case seeds it differently, so no
 * nonce of one case is a nonce of another (the protocol's premise is fresh
 * nonces). Secrets are compared with sodium_memcmp, which libFuzzer does not
 * watch: with memcmp it learns the MAC it is asked to forge. */
#include <sodium.h>
#include <string.h>
#include "common/errdef.h"
#include "fuzz.h"
#include "net/auth.h"

static const char token[] = "5f1c0e6a9b3d47e2a8c4f06b1d9e3a7c"
                            "2b8f4d6e0a1c3e5f7a9b2d4c6e8f0a1b";
static uint64_t rng;

static void rand_buf(void *const p, const size_t n)
{
  for (size_t i = 0; i < n; i++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    ((uint8_t *)p)[i] = (uint8_t)(rng >> 56);
  }
}
static uint32_t rand_u32(void)
{
  uint32_t u;
  rand_buf(&u, sizeof(u));
  return u;
}
static const char *rand_name(void) { return "fuzz"; }
static randombytes_implementation fixed_random = {rand_name, rand_u32, NULL, NULL,
                                                  rand_buf, NULL};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  randombytes_set_implementation(&fixed_random);
  FZ_CHECK(lr_auth_global_init() == 0, "sodium_init failed");
  return 0;
}

static int is_token(const char *s, size_t n)
{
  if (n < LR_AUTH_TOKEN_MIN_HEX || n > LR_AUTH_TOKEN_MAX_HEX || n % 2) return 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i]) return 0;
  return 1;
}

static void check_token(const uint8_t *p, size_t n)
{
  char s[LR_AUTH_TOKEN_MAX_HEX + 8];
  lr_auth_t a;
  if (n >= sizeof(s)) n = sizeof(s) - 1;
  memcpy(s, p, n);
  s[n] = '\0';
  int want = is_token(s, strlen(s)) ? 0 : LR_EBADTOKEN;
  FZ_CHECK(lr_auth_token_check(s) == want, "token check, want %d", want);
  FZ_CHECK(lr_auth_init(&a, s) == want, "auth init, want %d", want);
  if (want == 0) FZ_CHECK(a.keylen == strlen(s) / 2, "key of %zu bytes", a.keylen);
  lr_auth_close(&a);
}

/* A server and a client that both hold the token, the CHALLENGE sent. */
static void pair(lr_auth_t *srv, lr_auth_t *cli, uint8_t ch[LR_AUTH_CHALLENGE_LEN])
{
  FZ_CHECK(lr_auth_init(srv, token) == 0 && lr_auth_init(cli, token) == 0, "init");
  FZ_CHECK(lr_auth_server_challenge(srv, ch) == 0, "challenge");
}

static void hostile_answer(const uint8_t *p, size_t n)
{
  lr_auth_t srv, cli;
  uint8_t ch[LR_AUTH_CHALLENGE_LEN], ans[LR_AUTH_ANSWER_LEN], proof[LR_AUTH_PROOF_LEN];
  pair(&srv, &cli, ch);
  FZ_CHECK(lr_auth_client_answer(&cli, ch, sizeof(ch), ans) == 0, "answer");
  int rc = lr_auth_server_verify(&srv, p, n, proof);
  if (n == sizeof(ans) && !sodium_memcmp(p, ans, n)) /* the input guessed it */
    FZ_CHECK(rc == 0, "the true answer was refused");
  else
    FZ_CHECK(rc == (n == LR_AUTH_ANSWER_LEN ? LR_EAUTH : LR_EPROTO) ||
                 (rc == LR_EPROTO && !memcmp(p, ch + LR_AUTH_LABEL_LEN, LR_AUTH_NONCE_LEN)),
             "a forged answer gave %d", rc);
  if (rc < 0) /* one try per challenge */
    FZ_CHECK(lr_auth_server_verify(&srv, ans, sizeof(ans), proof) == LR_EAUTH,
             "a second try was taken");
  lr_auth_close(&srv);
  lr_auth_close(&cli);
}

static void tampered(const uint8_t *p, size_t n)
{
  lr_auth_t srv, cli;
  uint8_t ch[LR_AUTH_CHALLENGE_LEN], ans[LR_AUTH_ANSWER_LEN], proof[LR_AUTH_PROOF_LEN];
  uint8_t mask[1 + LR_AUTH_ANSWER_LEN + LR_AUTH_PROOF_LEN] = {0};
  memcpy(mask, p, n < sizeof(mask) ? n : sizeof(mask));
  int cut_answer = mask[0] & 1, cut_proof = mask[0] & 2, changed = 0;
  pair(&srv, &cli, ch);
  FZ_CHECK(lr_auth_client_answer(&cli, ch, sizeof(ch), ans) == 0, "answer");
  for (size_t i = 0; i < sizeof(ans); i++) {
    ans[i] ^= mask[1 + i];
    changed |= mask[1 + i];
  }
  int rc = lr_auth_server_verify(&srv, ans, sizeof(ans) - (size_t)cut_answer, proof);
  FZ_CHECK((rc == 0) == (!changed && !cut_answer), "verify %d, changed %d, cut %d", rc,
           changed, cut_answer);
  if (rc == 0) {
    changed = 0;
    for (size_t i = 0; i < sizeof(proof); i++) {
      proof[i] ^= mask[1 + LR_AUTH_ANSWER_LEN + i];
      changed |= mask[1 + LR_AUTH_ANSWER_LEN + i];
    }
    rc = lr_auth_client_check(&cli, proof, sizeof(proof) - (cut_proof ? 1 : 0));
    FZ_CHECK((rc == 0) == (!changed && !cut_proof), "check %d, changed %d, cut %d", rc,
             changed, cut_proof);
  }
  lr_auth_close(&srv);
  lr_auth_close(&cli);
}

static void hostile_server(const uint8_t *p, size_t n)
{
  lr_auth_t cli;
  uint8_t ans[LR_AUTH_ANSWER_LEN];
  size_t chn = n < LR_AUTH_CHALLENGE_LEN ? n : LR_AUTH_CHALLENGE_LEN;
  FZ_CHECK(lr_auth_init(&cli, token) == 0, "init");
  int rc = lr_auth_client_answer(&cli, p, chn, ans);
  int want = chn == LR_AUTH_CHALLENGE_LEN && !memcmp(p, LR_AUTH_LABEL, LR_AUTH_LABEL_LEN);
  FZ_CHECK(rc == (want ? 0 : LR_EPROTO), "answer %d to a challenge of %zu bytes", rc, chn);
  if (want) {
    FZ_CHECK(memcmp(ans, p + LR_AUTH_LABEL_LEN, LR_AUTH_NONCE_LEN), "cn == sn");
    rc = lr_auth_client_check(&cli, p + chn, n - chn);
    FZ_CHECK(rc == (n - chn == LR_AUTH_PROOF_LEN ? LR_EAUTH : LR_EPROTO),
             "a forged proof gave %d", rc);
  }
  lr_auth_close(&cli);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!size) return 0;
  rng = 0x9e3779b97f4a7c15ull * (1 + (data[0] & 3));
  switch (data[0] & 3) {
  case 0: check_token(data + 1, size - 1); break;
  case 1: hostile_answer(data + 1, size - 1); break;
  case 2: tampered(data + 1, size - 1); break;
  case 3: hostile_server(data + 1, size - 1); break;
  }
  return 0;
}
