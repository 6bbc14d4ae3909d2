/* The value codec: Lua values to lray's wire format and back. Task arguments,
 * results and stored objects all travel in this format. Needs a lua_State and
 * common/buf; no I/O. Licensed under the MIT license; see LICENSE.
 *
 * Format (version LR_SER_VERSION). An encoding is one version byte, then one
 * value. A value is a tag byte, then:
 *   NIL, FALSE, TRUE         nothing
 *   INT                      zigzag varint (doubles that are exact int64s)
 *   DBL                      8 bytes, IEEE 754 bits, little-endian
 *   STR                      varint length, bytes
 *   TABLE                    varint narr, varint nhash, narr values
 *                            (t[1..narr], nil for holes), nhash key/value
 *                            pairs
 *   TABLE_MT                 as TABLE, then the metatable (a value)
 *   REF                      varint n: the n-th memoized value (1-based)
 *   FUNC                     build tag (varint length, bytes), u32 LE length,
 *                            LuaJIT bytecode with debug info, varint nups,
 *                            nups upvalues (a value or UPREF), globals: byte 0
 *                            (none) or 1 followed by entries (varint
 *                            len(name)+1, name, value), ended by varint 0
 *   NAMED                    varint length, name (the receiver resolves it)
 *   CUSTOM                   varint length, kind, payload (a value)
 *   UPREF                    only as an upvalue: varint f, varint n; shares the
 *                            n-th upvalue of memoized Lua function f
 * Varints are unsigned LEB128 of up to 64 bits. Tables, functions, NAMED and
 * CUSTOM values are memoized in the order their tag is written, so shared and
 * cyclic structures arrive shared. Containers (tables, functions, CUSTOM)
 * nest at most LR_SER_MAX_DEPTH deep. */
#ifndef LR_SER_H
#define LR_SER_H

#include <stddef.h>
#include <lua.h>
#include "common/buf.h"

#define LR_SER_VERSION 1
#define LR_SER_MAX_DEPTH 200

enum {
  LR_SER_NIL = 0x00,
  LR_SER_FALSE = 0x01,
  LR_SER_TRUE = 0x02,
  LR_SER_INT = 0x03,
  LR_SER_DBL = 0x04,
  LR_SER_STR = 0x05,
  LR_SER_TABLE = 0x06,
  LR_SER_TABLE_MT = 0x07,
  LR_SER_REF = 0x08,
  LR_SER_FUNC = 0x09,
  LR_SER_NAMED = 0x0a,
  LR_SER_CUSTOM = 0x0b,
  LR_SER_UPREF = 0x0c,
};

/* Encodes the value at stack index idx and appends it to out. Returns 0, or
 * LR_ECODEC with a message in err (errlen bytes; err may be NULL); on failure
 * out is left as it was. root names the value in error paths ("argument 1")
 * and may be NULL. The stack is balanced. Hooks set with ser_config run in
 * protected mode; only a memory error, or a hook that adds keys to a table
 * being encoded, can raise. Reentrant: hooks may encode. Loop thread only. */
int lr_ser_encode(lua_State *L, int idx, const char *root, lr_buf_t *out,
                  char *err, size_t errlen);

/* Decodes one encoding from p[0..n) and pushes the value. Returns the number
 * of bytes consumed (> 0), or LR_ECODEC with err filled and nothing pushed.
 * Malformed input gives an error, never an out-of-range read; a FUNC must
 * carry this build's tag and LuaJIT bytecode (which LuaJIT's loader checks).
 * Hook errors (resolve, custom_decode) are passed on as err. */
long lr_ser_decode(lua_State *L, const char *p, size_t n, char *err,
                   size_t errlen);

/* As lr_ser_decode, but data only: a FUNC is refused (LR_ECODEC) before any
 * of its bytes reach LuaJIT's loader, so no bytecode is ever loaded. For
 * bytes from a peer that has not proved it holds the cluster token: loading
 * bytecode from it would let it run any code (LuaJIT does not verify
 * bytecode). NAMED and CUSTOM values still go through their hooks. */
long lr_ser_decode_data(lua_State *L, const char *p, size_t n, char *err,
                        size_t errlen);

#endif
