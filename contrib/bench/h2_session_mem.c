/* contrib/bench/h2_session_mem.c: what an idle HTTP/2 server session of
 * nghttp2 holds, by a counting allocator (nghttp2_mem). A server session with
 * Tollgate's options and SETTINGS (src/h2.c, tg_h2_start) and a client session
 * talk in memory: the preface, one GET with an h2load-like header set, its
 * response (five header fields, 100 bytes of body), the stream closed. Then
 * the server session's live blocks are listed, largest first.
 * Build and run:  cc -O2 -o build/bench/h2_session_mem contrib/bench/h2_session_mem.c -lnghttp2
 *                 build/bench/h2_session_mem [deflate=N] [hdtable=N]
 *   deflate=N  nghttp2_option_set_max_deflate_dynamic_table_size(N): our HPACK
 *              encoder's table (default 0, as Tollgate sets it in src/h2.c)
 *   hdtable=N  SETTINGS_HEADER_TABLE_SIZE N: the client's encoder table, which
 *              our decoder mirrors */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nghttp2/nghttp2.h>

#define MAXBLOCKS 4096

typedef struct {
    void *p;
    size_t n;
} block_t;

static block_t blocks[MAXBLOCKS];
static size_t live, peak;

static void note(void *p, size_t n)
{
    for (int i = 0; i < MAXBLOCKS; i++)
        if (blocks[i].p == NULL) {
            blocks[i] = (block_t){p, n};
            live += n;
            if (live > peak)
                peak = live;
            return;
        }
    fprintf(stderr, "too many blocks\n");
    exit(1);
}

static void unnote(void *p)
{
    for (int i = 0; i < MAXBLOCKS; i++)
        if (blocks[i].p == p) {
            live -= blocks[i].n;
            blocks[i].p = NULL;
            return;
        }
}

static void *m_malloc(size_t n, void *ud)
{
    (void)ud;
    void *p = malloc(n);
    if (p)
        note(p, n);
    return p;
}

static void m_free(void *p, void *ud)
{
    (void)ud;
    if (p)
        unnote(p);
    free(p);
}

static void *m_calloc(size_t k, size_t n, void *ud)
{
    (void)ud;
    void *p = calloc(k, n);
    if (p)
        note(p, k * n);
    return p;
}

static void *m_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    if (p)
        unnote(p);
    void *q = realloc(p, n);
    if (q)
        note(q, n);
    return q;
}

static nghttp2_mem mem = {NULL, m_malloc, m_free, m_calloc, m_realloc};

/* ---- the exchange ---------------------------------------------------------- */

static nghttp2_session *server, *client;
static const char body[100] = {0};
static int body_sent, response_done;

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)s, (void)id, (void)src, (void)ud;
    size_t n = sizeof(body) < len ? sizeof(body) : len;
    memcpy(buf, body, n);
    body_sent = 1;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (s == server && f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        static const nghttp2_nv resp[] = {
            NV(":status", "200"), NV("server", "tollgate"),
            NV("date", "Sat, 05 Dec 2026 11:00:00 GMT"), NV("content-type", "text/plain"),
            NV("content-length", "100")};
        nghttp2_data_provider prd = {.read_callback = body_read};
        nghttp2_submit_response(s, f->hd.stream_id, resp, 5, &prd);
    }
    if (s == client && f->hd.type == NGHTTP2_DATA && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        response_done = 1;
    return 0;
}

/* Moves what `from` has to send into `to`. */
static int pump(nghttp2_session *from, nghttp2_session *to)
{
    int moved = 0;
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(from, &d);
        if (n <= 0)
            return moved;
        if (nghttp2_session_mem_recv(to, d, (size_t)n) != n) {
            fprintf(stderr, "mem_recv failed\n");
            exit(1);
        }
        moved = 1;
    }
}

int main(int argc, char **argv)
{
    long deflate = 0, hdtable = -1;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "deflate=", 8) == 0)
            deflate = atol(argv[i] + 8);
        else if (strncmp(argv[i], "hdtable=", 8) == 0)
            hdtable = atol(argv[i] + 8);
    }
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_option_new(&opt);
    /* Tollgate's options (src/h2.c) */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    if (deflate >= 0)
        nghttp2_option_set_max_deflate_dynamic_table_size(opt, (size_t)deflate);
    size_t before = live;
    nghttp2_session_server_new3(&server, cb, NULL, opt, &mem);
    size_t created = live - before;
    nghttp2_session_client_new(&client, cb, NULL);
    nghttp2_settings_entry iv[6] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 128},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 15 * 16384},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, (uint32_t)hdtable},
    };
    nghttp2_submit_settings(server, NGHTTP2_FLAG_NONE, iv, hdtable >= 0 ? 6 : 5);
    nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, NULL, 0);
    static const nghttp2_nv req[] = {
        NV(":method", "GET"), NV(":scheme", "https"), NV(":authority", "127.0.0.1:8443"),
        NV(":path", "/small"), NV("user-agent", "h2load nghttp2/1.52.0"),
        NV("accept", "*/*")};
    for (int round = 0; round < 2; round++) {
        nghttp2_submit_request(client, NULL, req, 6, NULL, NULL);
        response_done = 0;
        while (pump(client, server) | pump(server, client))
            ;
        if (!response_done) {
            fprintf(stderr, "no response\n");
            return 1;
        }
    }
    printf("server session: %zu bytes at creation, %zu bytes live when idle after 2 GETs "
           "(peak %zu)\n", created, live, peak);
    for (;;) {
        int best = -1;
        for (int i = 0; i < MAXBLOCKS; i++)
            if (blocks[i].p && (best < 0 || blocks[i].n > blocks[best].n))
                best = i;
        if (best < 0 || blocks[best].n < 256)
            break;
        printf("  %6zu bytes\n", blocks[best].n);
        blocks[best].p = NULL;
    }
    nghttp2_session_del(client);
    return 0;
}
