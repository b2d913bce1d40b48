/* Unit tests for src/websocket.c: the handshake's key and answer (RFC 6455
 * 1.3 and 4.2.2 give the worked example). */
#include <string.h>
#include "websocket.h"
#include "tap.h"

int main(void)
{
    tg_arena_t arena;
    tg_arena_init(&arena, 0);
    tg_str_t k1, k2;
    ok(tg_websocket_key(&arena, &k1) == 0 && tg_websocket_key(&arena, &k2) == 0, "two keys");
    ok(k1.len == 24 && k1.p[22] == '=' && k1.p[23] == '=', "24 characters: 16 bytes, base64");
    ok(!tg_str_eq(k1, k2), "fresh each time");
    tg_str_t key = TG_STR("dGhlIHNhbXBsZSBub25jZQ==");
    ok(tg_websocket_accept_is(key, TG_STR("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")), "the RFC's example");
    ok(tg_websocket_accept_is(key, TG_STR(" s3pPLMBiTxaQ9kYGzzhZRbK+xOo= ")), "whitespace around");
    ok(!tg_websocket_accept_is(key, TG_STR("s3pPLMBiTxaQ9kYGzzhZRbK+xOp=")), "one character off");
    ok(!tg_websocket_accept_is(key, TG_STR("")), "empty");
    ok(!tg_websocket_accept_is(k1, TG_STR("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")), "another key's answer");
    char longkey[100];
    memset(longkey, 'A', sizeof(longkey));
    ok(!tg_websocket_accept_is((tg_str_t){longkey, sizeof(longkey)}, TG_STR("x")), "a key too long");
    tg_arena_destroy(&arena);
    return done_testing();
}
