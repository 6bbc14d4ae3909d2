/* lray's own error codes, numbered from -5000 down. libuv codes pass through
 * unchanged. lr_strerror() is built from this same table. */
#ifndef LR_ERRDEF_H
#define LR_ERRDEF_H

#define LR_ERRNO_MAP(XX)                                                      \
  XX(ESTOREFULL, "object store is full")                                      \
  XX(ENOOBJ, "no such object")                                                \
  XX(ESEALED, "object already sealed")                                        \
  XX(EPROTO, "protocol error: malformed frame")                               \
  XX(ETOOBIG, "frame too large")                                              \
  XX(ECODEC, "value cannot be encoded or decoded")                            \
  XX(EBADARG, "bad argument")                                                 \
  XX(EAUTH, "authentication failed: wrong or missing cluster token")          \
  XX(EBADTOKEN, "malformed cluster token: want 32 to 128 hex digits")         \
  XX(ETOKENFILE, "unsafe cluster token file: owner-only regular file needed")

enum {
  LR_ERRBASE_ = -5000,
#define XX(name, msg) LR_##name,
  LR_ERRNO_MAP(XX)
#undef XX
};

/* Message for an lray code or a libuv code. Never NULL. */
const char *lr_strerror(int code);

#endif
