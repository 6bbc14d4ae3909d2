/* Cluster token authentication: the token, its file, and a challenge-response
 * handshake that proves both ends hold the token without sending it. Pure
 * functions over bytes (no I/O), so the connection code decides how the
 * messages travel. Any thread; an lr_auth_t belongs to one connection. Needs
 * common/ and libsodium (HMAC-SHA256, random bytes, constant-time compare).
 *
 * The token is text: 32 to 128 hex digits (128 to 512 bits), any case. The
 * HMAC key is its decoded bytes, so "5F1C..." and "5f1c..." are one token.
 * lr_auth_token_new makes 64 digits (256 bits) from the OS's random source.
 *
 * The handshake, all sizes in bytes, "||" = concatenation, K = the key,
 * L = the 12 ASCII bytes "lray-auth-v1", H = HMAC-SHA256 (32 bytes):
 *
 *   1. server -> client  CHALLENGE (44) = L || sn           sn: 32 random
 *   2. client -> server  ANSWER    (64) = cn || H(K, L || sn || cn)
 *                                                          cn: 32 random
 *   3. server -> client  PROOF     (32) = H(K, L || cn || sn)
 *
 * The server sends PROOF only after ANSWER verified, so an unauthenticated
 * peer never gets a MAC computed for it. The nonces' order tells the two
 * MACs apart; a client nonce equal to sn is refused, so no message can be
 * reflected as the other. Fresh nonces on both sides make every handshake's
 * MACs new: a recorded ANSWER or PROOF is worth nothing on a later one. This
 * authenticates the ends, not the bytes after it (no encryption, no channel
 * binding): a machine in the path can still relay or alter the stream. */
#ifndef LR_AUTH_H
#define LR_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define LR_AUTH_LABEL "lray-auth-v1"
#define LR_AUTH_LABEL_LEN 12
#define LR_AUTH_NONCE_LEN 32
#define LR_AUTH_MAC_LEN 32
#define LR_AUTH_CHALLENGE_LEN (LR_AUTH_LABEL_LEN + LR_AUTH_NONCE_LEN)
#define LR_AUTH_ANSWER_LEN (LR_AUTH_NONCE_LEN + LR_AUTH_MAC_LEN)
#define LR_AUTH_PROOF_LEN LR_AUTH_MAC_LEN

#define LR_AUTH_TOKEN_MIN_HEX 32  /* 128 bits */
#define LR_AUTH_TOKEN_MAX_HEX 128 /* 512 bits */
#define LR_AUTH_TOKEN_NEW_HEX 64  /* what lr_auth_token_new makes */

/* One end of one handshake. Lives in the caller's memory (init/close). */
typedef struct lr_auth_s {
  uint8_t key[LR_AUTH_TOKEN_MAX_HEX / 2];
  size_t keylen;
  uint8_t sn[LR_AUTH_NONCE_LEN], cn[LR_AUTH_NONCE_LEN];
  int state; /* private: which message comes next */
} lr_auth_t;

/* Initialises libsodium once; safe to call from any thread, any number of
 * times. 0, or LR_EAUTH if libsodium cannot start (no random source). The
 * other functions call it themselves. */
int lr_auth_global_init(void);

/* Writes a new token, LR_AUTH_TOKEN_NEW_HEX lowercase hex digits and a NUL,
 * into out (at least LR_AUTH_TOKEN_NEW_HEX + 1 bytes). 0 or LR_EAUTH. */
int lr_auth_token_new(char *out);

/* 0 if tok is a usable token (see the top of this file), else LR_EBADTOKEN. */
int lr_auth_token_check(const char *tok);

/* Writes tok and a newline to path, readable and writable by the owner only
 * (mode 0600 whatever the umask). The bytes go to a new file beside path
 * that is then renamed over it, so a reader never sees half a token and an
 * existing file's looser mode is not kept. 0, a libuv (-errno) code, or
 * LR_EBADTOKEN; err (LR_ERRLEN, may be NULL) says what failed. */
int lr_auth_token_write(const char *path, const char *tok, char *err);

/* Reads the token at path into out (outlen >= LR_AUTH_TOKEN_MAX_HEX + 1),
 * without the trailing newline. Refuses (LR_ETOKENFILE) a file that is not
 * a regular file owned by this user, or that group or others may read or
 * write: a token others could read is not secret any more. Also 0, a libuv
 * code, or LR_EBADTOKEN. err (LR_ERRLEN, may be NULL) says which and how to
 * fix it. */
int lr_auth_token_read(const char *path, char *out, size_t outlen, char *err);

/* Sets up a for one handshake with tok. 0 or LR_EBADTOKEN. */
int lr_auth_init(lr_auth_t *a, const char *tok);
/* Wipes the key and nonces. */
void lr_auth_close(lr_auth_t *a);

/* Server, step 1: a new nonce, written as CHALLENGE into out. 0. */
int lr_auth_server_challenge(lr_auth_t *a, uint8_t out[LR_AUTH_CHALLENGE_LEN]);
/* Server, step 2: checks the client's ANSWER (n bytes) in constant time and,
 * if it holds, writes PROOF into proof. 0, LR_EPROTO (wrong length, or a
 * client nonce equal to ours), or LR_EAUTH (the client does not hold the
 * token). One try per challenge: after a failure every later call fails. */
int lr_auth_server_verify(lr_auth_t *a, const uint8_t *answer, size_t n,
                          uint8_t proof[LR_AUTH_PROOF_LEN]);

/* Client, step 1: reads the server's CHALLENGE (n bytes) and writes ANSWER
 * into out. 0 or LR_EPROTO (wrong length or label: not an lray v1 peer). */
int lr_auth_client_answer(lr_auth_t *a, const uint8_t *challenge, size_t n,
                          uint8_t out[LR_AUTH_ANSWER_LEN]);
/* Client, step 2: checks the server's PROOF (n bytes) in constant time.
 * 0, LR_EPROTO (wrong length) or LR_EAUTH (the server does not hold the
 * token: do not trust it with anything). */
int lr_auth_client_check(lr_auth_t *a, const uint8_t *proof, size_t n);

#endif
