/* Requests with no client (see request_bg.h). The request, its module
 * context slots and its copies of the parent's strings live in an arena of
 * their own, from the worker's block cache; the carrier's finalize releases
 * it. The carrier: the header and body are dropped (the response hooks and
 * body filters have seen them), every flush has written all, the request
 * body is empty. */
#include <llhttp.h>
#include "request_bg.h"
#include "core.h"
#include "worker.h"

typedef struct {
    tg_arena_t arena; /* first: the block it sits in is its own */
    tg_request_t r;
} bg_t;

static int bg_inflight; /* this worker's background requests */

static int bg_send_header(tg_request_t *r)
{
    r->header_sent = 1;
    return 0;
}

static int bg_send_body(tg_request_t *r, const struct iovec *v, int n, size_t len, int last)
{
    (void)r, (void)v, (void)n, (void)len, (void)last;
    return 0;
}

static int bg_flush(tg_request_t *r, int batched)
{
    (void)r, (void)batched;
    return 1;
}

static void bg_finalize(tg_request_t *r, int abort)
{
    (void)abort;
    bg_t *b = (bg_t *)((char *)r - offsetof(bg_t, r));
    /* the arena struct lives in one of its own blocks: destroy a copy */
    tg_arena_t a = b->arena;
    bg_inflight--;
    tg_arena_destroy(&a);
}

static int bg_body_pull(tg_request_t *r, tg_spans_t **spans, int *done)
{
    (void)r;
    *spans = NULL;
    *done = 1;
    return 1;
}

static void bg_body_consumed(tg_request_t *r)
{
    (void)r;
}

static int bg_tunnel_begin(tg_request_t *r, tg_msec_t idle_ms, tg_buf_t **early)
{
    (void)r, (void)idle_ms;
    *early = NULL;
    return -1;
}

static void bg_tunnel_active(tg_request_t *r)
{
    (void)r;
}

static const tg_carrier_t bg_carrier = {
    .protocol = "HTTP/1.1",
    .send_header = bg_send_header,
    .send_body = bg_send_body,
    .flush = bg_flush,
    .finalize = bg_finalize,
    .body_pull = bg_body_pull,
    .body_consumed = bg_body_consumed,
    .tunnel_begin = bg_tunnel_begin,
    .tunnel_active = bg_tunnel_active,
    .send_file = NULL,
};

tg_request_t *tg_request_bg_create(tg_request_t *p)
{
    if (bg_inflight >= TG_REQUEST_BG_MAX)
        return NULL;
    tg_arena_t a;
    tg_arena_init(&a, 0);
    bg_t *b = tg_arena_alloc(&a, sizeof(*b));
    if (b == NULL) {
        tg_arena_destroy(&a);
        return NULL;
    }
    b->arena = a;
    tg_request_t *r = &b->r;
    tg_request_init(r, &b->arena, &bg_carrier, NULL);
    r->ctx = tg_arena_alloc(r->arena, (size_t)tg_nmodules * sizeof(void *));
    r->headers.h = tg_arena_alloc(r->arena, (p->headers.n + 4) * sizeof(tg_header_t));
    if (r->ctx == NULL || r->headers.h == NULL)
        goto fail;
    r->headers.cap = p->headers.n + 4;
    for (uint32_t i = 0; i < p->headers.n; i++) {
        r->headers.h[i].name = tg_arena_str(r->arena, p->headers.h[i].name);
        r->headers.h[i].value = tg_arena_str(r->arena, p->headers.h[i].value);
        if (r->headers.h[i].name.p == NULL || r->headers.h[i].value.p == NULL)
            goto fail;
    }
    r->headers.n = p->headers.n;
    r->method = HTTP_GET;
    r->method_name = TG_STR("GET");
    r->uri = tg_arena_str(r->arena, p->uri);
    r->path = tg_arena_str(r->arena, p->path);
    r->args = tg_arena_str(r->arena, p->args);
    r->host = tg_arena_str(r->arena, p->host);
    r->remote_addr = tg_arena_str(r->arena, p->remote_addr);
    if (r->uri.p == NULL || r->path.p == NULL || r->args.p == NULL || r->host.p == NULL ||
        r->remote_addr.p == NULL)
        goto fail;
    char *line = tg_arena_printf(r->arena, "GET %.*s HTTP/1.1", TG_STR_FMT(r->uri));
    if (line == NULL)
        goto fail;
    r->request_line = tg_str_c(line); /* what the access log shows */
    r->scheme = p->scheme;
    r->http_minor = 1;
    r->server = p->server;
    r->loc = p->loc;
    r->loc_conf = p->loc_conf;
    r->uri_changed = p->uri_changed;
    bg_inflight++;
    return r;
fail:
    a = b->arena;
    tg_arena_destroy(&a);
    return NULL;
}

void tg_request_bg_drop(tg_request_t *r)
{
    bg_finalize(r, 1);
}

void tg_request_bg_run(tg_request_t *r)
{
    r->phase = TG_PHASE_ROUTE;
    r->hook = 0;
    tg_request_run_phases(r);
}
