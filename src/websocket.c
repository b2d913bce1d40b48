/* The WebSocket handshake's key and its answer (RFC 6455 4.1, 4.2.2), with
 * OpenSSL's SHA-1, base64 and random bytes. */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include "websocket.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int tg_websocket_key(tg_arena_t *a, tg_str_t *key)
{
    unsigned char raw[16];
    char *out = tg_arena_alloc_nz(a, 25); /* base64 of 16 bytes, and the NUL it writes */
    if (out == NULL || RAND_bytes(raw, (int)sizeof(raw)) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, raw, (int)sizeof(raw));
    *key = (tg_str_t){out, 24};
    return 0;
}

int tg_websocket_accept_is(tg_str_t key, tg_str_t accept)
{
    /* a key is 24 characters (16 bytes, base64); anything longer is not one */
    char in[64 + sizeof(WS_GUID)];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char want[32];
    if (key.len > 64)
        return 0;
    memcpy(in, key.p, key.len);
    memcpy(in + key.len, WS_GUID, sizeof(WS_GUID) - 1);
    if (EVP_Digest(in, key.len + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(), NULL) != 1 ||
        mdlen != 20)
        return 0;
    int n = EVP_EncodeBlock((unsigned char *)want, md, 20); /* 28 characters */
    return tg_str_eq(tg_str_trim(accept), (tg_str_t){want, (size_t)n});
}
