/* Unit tests for src/grpc_web.c's codecs: base64 decoded in pieces (a
 * quantum split between pieces, padding ending any piece, rejects), base64
 * of spans with padding, and the trailer frame. */
#include <string.h>
#include "grpc_web.h"
#include "tap.h"

/* Decode `in` cut into pieces at the given offsets; the bytes or NULL. */
static const char *decode_pieces(const char *in, const size_t *cuts, int ncuts, long *len)
{
    static unsigned char out[256];
    tg_b64_stream_t d = {0};
    size_t at = 0, n = strlen(in);
    long total = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        long k = tg_b64_stream_decode(&d, in + at, end - at, out + total);
        if (k < 0)
            return NULL;
        total += k;
        at = end;
    }
    *len = d.n ? -1 : total;
    return (const char *)out;
}

int main(void)
{
    long len;
    const char *s = decode_pieces("aGVsbG8=", NULL, 0, &len);
    ok(s && len == 5 && memcmp(s, "hello", 5) == 0, "one piece, padded");
    size_t cut3[] = {3, 6};
    s = decode_pieces("aGVsbG8gd29y", cut3, 2, &len);
    ok(s && len == 9 && memcmp(s, "hello wor", 9) == 0, "quanta split between pieces");
    size_t cut8[] = {8};
    s = decode_pieces("aGVsbG8=IHdvcmxk", cut8, 1, &len);
    ok(s && len == 11 && memcmp(s, "hello world", 11) == 0, "padding ends a piece, the next goes on");
    s = decode_pieces("aA==aQ==", NULL, 0, &len);
    ok(s && len == 2 && memcmp(s, "hi", 2) == 0, "padding inside one piece at a quantum's end");
    s = decode_pieces("aGVsbG", NULL, 0, &len);
    ok(s && len == -1, "ends inside a quantum: seen by d.n");
    ok(decode_pieces("aGV*bG8=", NULL, 0, &len) == NULL, "a character outside base64");
    ok(decode_pieces("a===", NULL, 0, &len) == NULL, "padding after one character");
    ok(decode_pieces("aG=v", NULL, 0, &len) == NULL, "data after padding in a quantum");
    ok(decode_pieces("aGVs\nbG8=", NULL, 0, &len) == NULL, "a line break");

    char out[64];
    tg_spans_t sp = {.n = 0};
    tg_spans_add(&sp, "he", 2);
    tg_spans_add(&sp, "llo w", 5); /* not adjacent in memory: two spans */
    size_t n = tg_b64_encode_spans(&sp, out);
    ok(n == 12 && memcmp(out, "aGVsbG8gdw==", 12) == 0, "spans encoded across their boundary, padded");
    tg_spans_reset(&sp);
    tg_spans_add(&sp, "hi!", 3);
    n = tg_b64_encode_spans(&sp, out);
    ok(n == 4 && memcmp(out, "aGkh", 4) == 0, "no padding on a whole quantum");

    tg_header_t f[2] = {{TG_STR("Grpc-Status"), TG_STR("0")}, {TG_STR("x-len"), TG_STR("10")}};
    tg_headers_t hs = {f, 2, 2};
    size_t fl = tg_grpc_web_trailer_frame(&hs, NULL);
    is_int(fl, 5 + 16 + 11, "trailer frame length measured");
    ok(tg_grpc_web_trailer_frame(&hs, out) == fl &&
           memcmp(out, "\x80\0\0\0\x1b" "grpc-status: 0\r\nx-len: 10\r\n", fl) == 0,
       "trailer frame: 0x80, length, lowercase header block");
    done_testing();
}
