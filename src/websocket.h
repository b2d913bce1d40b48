/* The WebSocket opening handshake's key and answer (RFC 6455 4.2.2): when
 * the gateway asks an upstream for a WebSocket itself (an HTTP/2 client's
 * extended CONNECT, RFC 8441, carries no key), it makes the
 * Sec-WebSocket-Key and checks the Sec-WebSocket-Accept the upstream's 101
 * returns. */
#ifndef TG_WEBSOCKET_H
#define TG_WEBSOCKET_H

#include "arena.h"
#include "str.h"

/* A fresh Sec-WebSocket-Key: 16 random bytes, base64 (24 characters), in
 * `a`. 0, or -1 (no memory, or no randomness). */
int tg_websocket_key(tg_arena_t *a, tg_str_t *key);
/* Is `accept` the answer to `key`: base64(SHA-1(key + the RFC's GUID))?
 * Surrounding whitespace of `accept` is ignored. 1 or 0. */
int tg_websocket_accept_is(tg_str_t key, tg_str_t accept);

#endif
