/* libFuzzer target: the HTTP/2 codec (src/h2.c) and the h2 -> request
 * translation (src/h2_head.c) — nghttp2's server session with Tollgate's
 * callbacks, the flood and stream-id checks, the pseudo-header mapping,
 * Host and cookie rules, request bodies read by Lua (body_pull, WINDOW_UPDATE
 * on consumption), the response head as HTTP/2 fields and the data
 * provider — on frames built from the fuzz input. Each input becomes the
 * client preface and a sequence of frames, written to one end of a
 * socketpair whose other end a real connection reads (tg_h2_start), then
 * EOF; the event loop runs until the connection is done. Nothing goes
 * upstream: the config answers with `return` and Lua.
 *
 * Input: records of
 *   kind flags sid len_hi len_lo payload[len]
 * kind % 12: 0-9 a frame of that type with the payload as is; 10 a HEADERS
 * frame whose payload is fields, one per line, "name value", encoded as
 * HPACK literals (a name starting with '+' is indexed, so later blocks can
 * refer to it: index 62 is the newest); 11 the same block split into HEADERS
 * + CONTINUATION at the middle. sid: stream id (255 is 2^31-1). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "h2.h"
#include "fuzz_conn.h"

#define OUT_MAX (1 << 16) /* within a socketpair's buffer: written whole */

static const char conf_text[] =
    "workers 1;\n"
    "http2_max_streams 8;\n"
    "http2_max_header_size 4k;\n"
    "server {\n"
    "  listen 127.0.0.1:1 http2;\n"
    "  server_name a.test *.b.test;\n"
    "  client_max_body_size 2k;\n"
    "  keepalive_requests 20;\n"
    "  security_headers on;\n"
    "  cors origins=https://o.test credentials=on;\n"
    "  compress gzip;\n"
    "  compress_min_length 1;\n"
    "  location = /x { return 200 \"exact $arg_a $http_x_y $cookie_c $host\"; }\n"
    "  location /lua { lua_body_max 4k; lua_access /tmp/tg-fuzz-h2-%d.lua; }\n"
    "  location /p/ { return 301 https://$host$request_uri; }\n"
    "  location / { return 200 \"root $request_uri $server_protocol\"; }\n"
    "}\n";

static const char lua_text[] =
    "local b = tg.req.body()\n"
    "tg.exit(200, (b or \"nil\") .. tg.req.method() .. (tg.req.header(\"cookie\") or \"\"))\n";

static void setup(void)
{
    char conf[64], lua[64], text[sizeof(conf_text) + 16];
    snprintf(conf, sizeof(conf), "/tmp/tg-fuzz-h2-%d.conf", (int)getpid());
    snprintf(lua, sizeof(lua), "/tmp/tg-fuzz-h2-%d.lua", (int)getpid());
    int n = snprintf(text, sizeof(text), conf_text, (int)getpid());
    FILE *f = fopen(conf, "w");
    fwrite(text, 1, (size_t)n, f);
    fclose(f);
    f = fopen(lua, "w");
    fwrite(lua_text, 1, sizeof(lua_text) - 1, f);
    fclose(f);
    fuzz_worker_init(conf);
    unlink(lua); /* compiled by init_worker */
}

/* ---- the client's bytes ------------------------------------------------------- */

static uint8_t out[OUT_MAX];
static size_t nout;

static void put(const void *p, size_t n)
{
    if (n > OUT_MAX - nout)
        n = OUT_MAX - nout;
    if (n)
        memcpy(out + nout, p, n);
    nout += n;
}

static void frame(uint8_t type, uint8_t flags, uint32_t sid, const uint8_t *p, size_t len)
{
    uint8_t hd[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
                     (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8),
                     (uint8_t)sid};
    put(hd, 9);
    put(p, len);
}

/* an HPACK integer with an N-bit prefix (RFC 7541 5.1) */
static size_t hpack_int(uint8_t *b, uint8_t first, int bits, size_t v)
{
    size_t max = ((size_t)1 << bits) - 1, n = 0;
    if (v < max) {
        b[n++] = (uint8_t)(first | v);
        return n;
    }
    b[n++] = (uint8_t)(first | max);
    for (v -= max; v >= 128; v >>= 7)
        b[n++] = (uint8_t)((v & 0x7f) | 0x80);
    b[n++] = (uint8_t)v;
    return n;
}

/* "name value" lines -> literal fields (indexed when the name starts with '+') */
static size_t hpack_block(uint8_t *b, size_t cap, const uint8_t *p, size_t len)
{
    size_t n = 0;
    const uint8_t *end = p + len;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        const uint8_t *e = nl ? nl : end;
        const uint8_t *sp = memchr(p, ' ', (size_t)(e - p));
        const uint8_t *name = p, *value = sp ? sp + 1 : e;
        size_t nlen = (size_t)((sp ? sp : e) - p), vlen = (size_t)(e - value);
        uint8_t first = 0x00; /* literal without indexing, new name */
        if (nlen && name[0] == '+') {
            first = 0x40; /* with incremental indexing */
            name++;
            nlen--;
        }
        if (n + 1 + 10 + nlen + 10 + vlen > cap)
            break;
        b[n++] = first;
        n += hpack_int(b + n, 0, 7, nlen);
        memcpy(b + n, name, nlen);
        n += nlen;
        n += hpack_int(b + n, 0, 7, vlen);
        memcpy(b + n, value, vlen);
        n += vlen;
        p = e + 1;
    }
    return n;
}

static void build(const uint8_t *data, size_t size)
{
    static uint8_t block[1 << 16];
    nout = 0;
    put("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    frame(4, 0, 0, NULL, 0); /* the client's SETTINGS */
    while (size >= 5) {
        uint8_t kind = data[0] % 12, flags = data[1];
        uint32_t sid = data[2] == 255 ? 0x7fffffff : data[2];
        size_t len = (size_t)data[3] << 8 | data[4];
        data += 5;
        size -= 5;
        if (len > size)
            len = size;
        if (kind < 10) {
            frame(kind, flags, sid, data, len);
        } else {
            size_t n = hpack_block(block, sizeof(block), data, len);
            if (kind == 10) {
                frame(1, flags | 0x4, sid, block, n);
            } else {
                frame(1, flags & ~0x4, sid, block, n / 2);
                frame(9, 0x4, sid, block + n / 2, n - n / 2);
            }
        }
        data += len;
        size -= len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        setup();
        init = 1;
    }
    build(data, size);
    fuzz_run_conn(out, nout, tg_h2_start);
    return 0;
}
