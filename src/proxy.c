/* The reverse proxy.
 *
 * One attempt: pick a peer (tg_balance_pick), take an idle keep-alive
 * connection to it or open one, send the request header, then stream the
 * request body from the client as it arrives, and parse the response with
 * llhttp while streaming its body back. Data moves in rounds: one read from
 * one side, parsed, queued as iovecs that point into the read buffer, and
 * written; the next read on that side waits until the round is written. So
 * each direction holds at most one buffer, whatever the body size.
 *
 * Failures before any response byte reached the client are retried: on a
 * fresh connection when a pooled one turns out closed (Node closes idle
 * sockets after keepAliveTimeout; that race must not become a 502), and on
 * the next peer when a connect fails, as long as the request can be sent
 * again and tries are left. It can while the client's body is entirely in
 * memory, and, whatever its size, while no body byte has been handed back
 * to the client reader (tg_http_body_consumed): the body round pulled so
 * far stays in the input buffer until a write took all of it, so a failed
 * connect, or a write that failed before the round went, has lost nothing
 * and the next attempt sends the same header and round again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include "proxy.h"
#include "http.h"
#include "var.h"
#include "log.h"
#include "sendq.h"
#include "worker.h"
#include "conn.h"
#include "tunnel.h"
#include "stats.h"

typedef enum {
    PX_CONNECTING = 0,
    PX_HANDSHAKE, /* TLS upstreams: SSL_connect, under the connect timeout */
    PX_SENDING,   /* writing request header/body */
    PX_RECEIVING, /* the whole request went, reading the response */
} px_state_t;

struct tg_proxy_s {
    tg_request_t *r;
    tg_proxy_conf_t *conf;
    tg_upconn_t *uc;
    tg_peer_t *peer;
    llhttp_t parser;
    tg_buf_t *buf;   /* response bytes read from the upstream */
    tg_iovq_t out;   /* request bytes for the upstream */
    tg_spans_t body; /* response body spans of the current round */
    tg_str_t head;   /* serialized request header, kept for retries */
    tg_spans_t *replay; /* the whole request body when it was in memory at start */
    uint64_t tried;
    uint64_t sent; /* bytes written to the upstream in this attempt */
    int attempts, max_attempts, stale_retries;
    uint8_t state;
    uint8_t last_cb;
    unsigned replayable : 1;      /* the whole body is in memory (or there is none) */
    unsigned body_consumed : 1;   /* a body round was written and given back to the
                                   * client reader: it cannot be sent again */
    unsigned req_done : 1;        /* request fully queued */
    unsigned body_inflight : 1;   /* client body spans queued, not yet written */
    unsigned resp_started : 1;    /* a response byte arrived in this attempt */
    unsigned resp_headers : 1;    /* response header complete */
    unsigned resp_done : 1;
    unsigned client_blocked : 1;  /* waiting for the client to drain */
    unsigned upstream_close : 1;  /* upstream asked to close, or framing needs it */
    tg_msec_t keepalive_ms;
    int error_status;
    unsigned websocket : 1;  /* a WebSocket upgrade was asked for */
    tg_tunnel_t *tunnel;     /* after a 101: the two-way byte pipe */
};

static void px_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void px_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void px_connect(tg_proxy_t *px);
static void px_send(tg_proxy_t *px);
static void px_receive(tg_proxy_t *px);
static void px_fail(tg_proxy_t *px, int status, int peer_failed);
static void px_give_up(tg_proxy_t *px, int status);
static void px_upgrade(tg_proxy_t *px);
static void px_tunnel_event(tg_proxy_t *px);

static tg_proxy_conf_t *px_conf(tg_request_t *r)
{
    return tg_module_conf(r, &tg_proxy_module);
}

/* Set the events the upstream watcher waits for (the timer is untouched). */
static void px_want_io(tg_proxy_t *px, int events)
{
    tg_upconn_t *uc = px->uc;
    struct ev_loop *loop = tg_worker->loop;
    if (uc->io.events != events || !ev_is_active(&uc->io)) {
        ev_io_stop(loop, &uc->io);
        if (events) {
            ev_io_set(&uc->io, uc->fd, events);
            ev_io_start(loop, &uc->io);
        }
    }
}

static void px_want(tg_proxy_t *px, int events, tg_msec_t timeout)
{
    tg_upconn_t *uc = px->uc;
    struct ev_loop *loop = tg_worker->loop;
    px_want_io(px, events);
    if (timeout > 0) {
        uc->timer.repeat = (double)timeout / 1000.0;
        ev_timer_again(loop, &uc->timer);
    } else {
        ev_timer_stop(loop, &uc->timer);
    }
}

/* ---- request header ------------------------------------------------------- */

#define PX_MAX_RESP_HEADERS 200 /* more in an upstream response: 502 */

/* Hop-by-hop: the RFC 9110 list, Proxy-*, and whatever a Connection header
 * lists (`hs` is only scanned for those when `has_connection`). Called for
 * every header both ways, so a length switch rejects most names at once. */
static int is_hop_by_hop(tg_str_t name, const tg_headers_t *hs, int has_connection)
{
    const char *fixed = NULL, *fixed2 = NULL;
    switch (name.len) {
    case 2: fixed = "te"; break;
    case 5: fixed = "proxy"; break;
    case 6: fixed = "expect"; break;
    case 7: fixed = "trailer", fixed2 = "upgrade"; break;
    case 10: fixed = "connection", fixed2 = "keep-alive"; break;
    case 14: fixed = "content-length"; break;
    case 17: fixed = "transfer-encoding"; break;
    }
    if ((fixed && tg_str_caseeq(name, (tg_str_t){fixed, name.len})) ||
        (fixed2 && tg_str_caseeq(name, (tg_str_t){fixed2, name.len})))
        return 1;
    if (name.len > 6 && tg_str_has_caseprefix(name, "proxy-"))
        return 1; /* Proxy-Connection, Proxy-Authorization, ... */
    if (!has_connection || name.len >= 64)
        return 0;
    char token[64];
    memcpy(token, name.p, name.len);
    token[name.len] = '\0';
    for (uint32_t i = 0; i < hs->n; i++)
        if (tg_str_caseeq_lit(hs->h[i].name, "connection") &&
            tg_str_has_token(hs->h[i].value, token))
            return 1;
    return 0;
}

/* Build the header sent upstream: request line, the client's headers in
 * order (hop-by-hop ones dropped, proxy_remove_header/proxy_set_header
 * applied), the X-Forwarded-* set, and our own framing. */
/* Does proxy_set_header or proxy_remove_header name this header? */
static int px_overridden(const tg_proxy_conf_t *pc, tg_str_t name)
{
    for (int k = 0; k < pc->nremove_headers; k++)
        if (tg_str_caseeq(name, pc->remove_headers[k]))
            return 1;
    for (int k = 0; k < pc->nset_headers; k++)
        if (tg_str_caseeq(name, pc->set_headers[k].name))
            return 1;
    return 0;
}

static int px_build_head(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    tg_proxy_conf_t *pc = px->conf;
    /* the upstream's header list only lives until it is serialized below:
     * on the stack, in the arena only past 32 headers */
    tg_header_t first[32];
    tg_headers_t out = {first, 0, 32};
    int xff = -1; /* its index: the array may move when it grows */
    int has_connection = tg_headers_find(&r->headers, TG_STR("Connection")) != NULL;
    for (uint32_t i = 0; i < r->headers.n; i++) {
        tg_header_t *h = &r->headers.h[i];
        if (is_hop_by_hop(h->name, &r->headers, has_connection))
            continue;
        if (px_overridden(pc, h->name))
            continue;
        if (tg_str_caseeq_lit(h->name, "x-forwarded-for")) {
            if (xff >= 0) { /* several: fold them into the first, in order */
                char *v = tg_arena_printf(r->arena, "%.*s, %.*s", TG_STR_FMT(out.h[xff].value),
                                          TG_STR_FMT(h->value));
                if (v == NULL)
                    return -1;
                out.h[xff].value = tg_str_c(v);
                continue;
            }
            if (tg_headers_add(r->arena, &out, h->name, h->value) != 0)
                return -1;
            xff = (int)out.n - 1;
            continue;
        }
        if (tg_str_caseeq_lit(h->name, "x-forwarded-proto") ||
            tg_str_caseeq_lit(h->name, "x-forwarded-host") ||
            tg_str_caseeq_lit(h->name, "x-real-ip"))
            continue; /* ours replace the client's */
        if (tg_headers_add(r->arena, &out, h->name, h->value) != 0)
            return -1;
    }
    tg_str_t peer = r->peer_addr;
    if (px_overridden(pc, TG_STR("X-Forwarded-For"))) {
        /* proxy_set_header/proxy_remove_header decide */
    } else if (xff >= 0) {
        char *v = tg_arena_printf(r->arena, "%.*s, %.*s", TG_STR_FMT(out.h[xff].value),
                                  TG_STR_FMT(peer));
        if (v == NULL)
            return -1;
        out.h[xff].value = tg_str_c(v);
    } else if (tg_headers_add(r->arena, &out, TG_STR("X-Forwarded-For"), peer) != 0) {
        return -1;
    }
    tg_header_t *host = tg_headers_find(&r->headers, TG_STR("Host"));
    const tg_header_t gen[] = {
        {TG_STR("X-Forwarded-Proto"), r->scheme},
        {TG_STR("X-Forwarded-Host"), host ? host->value : r->host},
        {TG_STR("X-Real-IP"), r->remote_addr},
    };
    for (size_t k = 0; k < sizeof(gen) / sizeof(gen[0]); k++)
        if (!px_overridden(pc, gen[k].name) &&
            tg_headers_add(r->arena, &out, gen[k].name, gen[k].value) != 0)
            return -1;
    /* an HTTP/1.0 client may send no Host: name the upstream, as nginx does */
    if (host == NULL && !px_overridden(pc, TG_STR("Host")) &&
        tg_headers_add(r->arena, &out, TG_STR("Host"), r->host.len ? r->host : r->upstream->name) != 0)
        return -1;
    for (int k = 0; k < pc->nset_headers; k++) {
        tg_str_t v;
        if (tg_tpl_eval(r, pc->set_headers[k].value, &v) != 0)
            return -1;
        if (v.len && tg_headers_add(r->arena, &out, pc->set_headers[k].name, v) != 0)
            return -1;
    }

    if (px->websocket) {
        /* the hop-by-hop pair that asks the upstream to switch protocols */
        tg_header_t *up = tg_headers_find(&r->headers, TG_STR("Upgrade"));
        if (tg_headers_add(r->arena, &out, TG_STR("Connection"), TG_STR("upgrade")) != 0 ||
            tg_headers_add(r->arena, &out, TG_STR("Upgrade"), up->value) != 0)
            return -1;
    }

    char lenbuf[48] = "Content-Length: ";
    tg_str_t framing = TG_NULL_STR;
    if (r->chunked) {
        framing = TG_STR("Transfer-Encoding: chunked\r\n");
    } else if (r->content_length >= 0) {
        size_t k = 16 + tg_fmt_dec(lenbuf + 16, (uint64_t)r->content_length);
        lenbuf[k++] = '\r';
        lenbuf[k++] = '\n';
        framing = (tg_str_t){lenbuf, k};
    }
    tg_str_t target;
    if (tg_proxy_uri_target(r, &pc->pass_uri, &target) != 0)
        return -1;
    size_t size = r->method_name.len + target.len + 16 + framing.len + 2;
    for (uint32_t i = 0; i < out.n; i++)
        size += out.h[i].name.len + out.h[i].value.len + 4;
    char *p = tg_arena_alloc_nz(r->arena, size), *w = p;
    if (p == NULL)
        return -1;
#define PUT(s, n) ((n) ? (memcpy(w, (s), (n)), w += (n)) : w)
    PUT(r->method_name.p, r->method_name.len);
    PUT(" ", 1);
    PUT(target.p, target.len);
    PUT(" HTTP/1.1\r\n", 11);
    for (uint32_t i = 0; i < out.n; i++) {
        PUT(out.h[i].name.p, out.h[i].name.len);
        PUT(": ", 2);
        PUT(out.h[i].value.p, out.h[i].value.len);
        PUT("\r\n", 2);
    }
    PUT(framing.p, framing.len);
    PUT("\r\n", 2);
#undef PUT
    px->head = (tg_str_t){p, (size_t)(w - p)};
    return 0;
}

/* ---- response parser ------------------------------------------------------- */

static int on_resp_begin(llhttp_t *p)
{
    tg_proxy_t *px = p->data;
    px->r->resp_headers.n = 0;
    px->last_cb = 0;
    return 0;
}

static int on_resp_header_field(llhttp_t *p, const char *at, size_t len)
{
    tg_proxy_t *px = p->data;
    tg_request_t *r = px->r;
    if (px->last_cb != 1) {
        if (r->resp_headers.n >= PX_MAX_RESP_HEADERS) {
            px->error_status = 502;
            return HPE_USER;
        }
        if (tg_headers_add(r->arena, &r->resp_headers, TG_NULL_STR, TG_NULL_STR) != 0)
            return -1;
        px->last_cb = 1;
    }
    tg_header_span_extend(&r->resp_headers.h[r->resp_headers.n - 1].name, at, len);
    return 0;
}

static int on_resp_header_value(llhttp_t *p, const char *at, size_t len)
{
    tg_proxy_t *px = p->data;
    tg_request_t *r = px->r;
    px->last_cb = 2;
    tg_header_span_extend(&r->resp_headers.h[r->resp_headers.n - 1].value, at, len);
    return 0;
}

static int on_resp_header_value_complete(llhttp_t *p)
{
    tg_proxy_t *px = p->data;
    px->last_cb = 2;
    if (tg_header_value_finish(&px->r->resp_headers.h[px->r->resp_headers.n - 1]) != 0) {
        px->error_status = 502;
        return HPE_USER;
    }
    return 0;
}

static int on_resp_headers_complete(llhttp_t *p)
{
    tg_proxy_t *px = p->data;
    tg_request_t *r = px->r;
    int st = p->status_code;
    if (st == 101) {
        if (!px->websocket) {
            px->error_status = 502; /* a switch nobody asked for */
            return -1;
        }
        px->resp_headers = 1;
        r->status = r->upstream_status = 101;
        return 0; /* llhttp stops with HPE_PAUSED_UPGRADE */
    }
    if (st < 200) {
        /* 1xx: informational, not forwarded (we answer 100-continue
         * ourselves); the real response follows */
        r->resp_headers.n = 0;
        return 0;
    }
    tg_header_t *te = tg_headers_find(&r->resp_headers, TG_STR("Transfer-Encoding"));
    if (te && !tg_str_caseeq_lit(tg_str_trim(te->value), "chunked")) {
        /* a coding we would have to undo to reframe the body: refuse, as
         * nginx does, rather than pass transfer-coded bytes on unlabelled */
        px->error_status = 502;
        return -1;
    }
    px->resp_headers = 1;
    r->status = st;
    r->upstream_status = st;
    if ((p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED))
        r->resp_content_length = (int64_t)p->content_length;
    else if (r->method == HTTP_HEAD || st == 204 || st == 304)
        r->resp_content_length = -1;
    if (!llhttp_should_keep_alive(p) || px->websocket)
        px->upstream_close = 1;
    if (px->websocket)
        r->keepalive = 0; /* upgrade refused: the client's next bytes may not be HTTP */
    /* llhttp cannot know the response to HEAD has no body */
    return r->method == HTTP_HEAD ? 1 : 0;
}

static int on_resp_body(llhttp_t *p, const char *at, size_t len)
{
    tg_proxy_t *px = p->data;
    tg_spans_add(&px->body, at, len);
    return 0;
}

static int on_resp_message_complete(llhttp_t *p)
{
    tg_proxy_t *px = p->data;
    if (!px->resp_headers)
        return 0; /* end of a 1xx */
    if (px->r->status == 101)
        return HPE_PAUSED; /* what follows is the new protocol */
    px->resp_done = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t resp_settings = {
    .on_message_begin = on_resp_begin,
    .on_header_field = on_resp_header_field,
    .on_header_value = on_resp_header_value,
    .on_header_value_complete = on_resp_header_value_complete,
    .on_headers_complete = on_resp_headers_complete,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_message_complete,
};

/* Remove hop-by-hop response headers and learn the upstream's keep-alive
 * timeout ("Keep-Alive: timeout=5" from Node) before they go. */
static void px_clean_resp_headers(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    tg_headers_t *hs = &r->resp_headers;
    for (uint32_t i = 0; i < hs->n; i++) {
        if (!tg_str_caseeq_lit(hs->h[i].name, "keep-alive"))
            continue;
        tg_str_t v = hs->h[i].value;
        for (size_t k = 0; k + 8 <= v.len; k++) {
            if (strncasecmp(v.p + k, "timeout=", 8) == 0) {
                int64_t secs;
                size_t e = k + 8;
                while (e < v.len && v.p[e] >= '0' && v.p[e] <= '9')
                    e++;
                if (tg_parse_int((tg_str_t){v.p + k + 8, e - k - 8}, &secs) == 0)
                    px->keepalive_ms = secs * 1000;
                break;
            }
        }
    }
    /* decide for every header before moving any: the Connection header that
     * names others is dropped too (at most PX_MAX_RESP_HEADERS of them) */
    int has_connection = tg_headers_find(hs, TG_STR("Connection")) != NULL;
    unsigned char drop[PX_MAX_RESP_HEADERS];
    if (hs->n > PX_MAX_RESP_HEADERS) /* the parser refuses more */
        hs->n = PX_MAX_RESP_HEADERS;
    for (uint32_t i = 0; i < hs->n; i++)
        drop[i] = (unsigned char)is_hop_by_hop(hs->h[i].name, hs, has_connection);
    uint32_t w = 0;
    for (uint32_t i = 0; i < hs->n; i++)
        if (!drop[i])
            hs->h[w++] = hs->h[i];
    hs->n = w;
}

/* ---- attempts -------------------------------------------------------------- */

void tg_proxy_route(tg_request_t *r)
{
    tg_proxy_conf_t *pc = px_conf(r);
    if (r->upstream == NULL)
        r->upstream = pc->upstream;
}

static void px_release_conn(tg_proxy_t *px, int reuse)
{
    tg_upconn_t *uc = px->uc;
    if (uc == NULL)
        return;
    px->uc = NULL;
    uc->r = NULL;
    ev_timer_stop(tg_worker->loop, &uc->timer);
    if (reuse) {
        uc->requests++;
        /* retire it a second before the upstream would close it */
        tg_msec_t ms = px->keepalive_ms ? px->keepalive_ms - 1000 : 60000;
        if (ms > 0) {
            tg_upstream_pool_put(uc, ms);
            return;
        }
    }
    tg_upconn_destroy(uc);
}

static void px_attempt_end(tg_proxy_t *px, int failed)
{
    if (px->peer) {
        tg_balance_done(px->r->upstream, px->peer, failed, (tg_msec_t)(ev_now(tg_worker->loop) * 1000));
        px->peer = NULL;
    }
}

void tg_proxy_start(tg_request_t *r)
{
    tg_proxy_t *px = tg_arena_alloc(r->arena, sizeof(*px));
    if (px == NULL) {
        tg_http_error(r, 500);
        return;
    }
    px->r = r;
    px->conf = px_conf(r);
    r->proxy = px;
    tg_upstream_t *u = r->upstream;
    px->max_attempts = px->conf->next_upstream_tries > 0 ? (int)px->conf->next_upstream_tries
                                                          : u->npeers;
    if (r->upgrade) {
        /* WebSocket is the upgrade we pass on; any other (h2c...) is
         * dropped: the request is served as a plain one, then the
         * connection closes since its bytes after it are not HTTP/1.1 */
        tg_header_t *up = tg_headers_find(&r->headers, TG_STR("Upgrade"));
        px->websocket = r->method == HTTP_GET && r->http_minor == 1 && up &&
                        tg_str_has_token(up->value, "websocket");
        if (!px->websocket)
            r->keepalive = 0;
    }
    if (px_build_head(px) != 0) {
        tg_http_error(r, 500);
        return;
    }
    /* A request whose body is already complete in memory can be sent again
     * at any time (px->replay); one still streaming from the client only
     * until its first round went out (px_can_resend). */
    tg_spans_t *spans;
    int done = 0;
    if (!r->has_body) {
        px->replayable = 1;
    } else if (tg_http_body_pull(r, &spans, &done) == 1 && done) {
        if (spans->n) {
            if ((px->replay = tg_arena_alloc_nz(r->arena, sizeof(*spans))) == NULL) {
                tg_http_error(r, 500);
                return;
            }
            *px->replay = *spans;
        }
        px->replayable = 1;
    }
    llhttp_init(&px->parser, HTTP_RESPONSE, &resp_settings);
    px->parser.data = px;
    r->upstream_start = ev_now(tg_worker->loop);
    px_connect(px);
}

/* The server the client's sticky cookie names, if it is still usable. */
static tg_peer_t *px_sticky_peer(tg_proxy_t *px, tg_msec_t now)
{
    tg_upstream_t *u = px->r->upstream;
    tg_str_t v;
    if (tg_var_cookie(px->r, u->sticky_cookie, &v) != 0 || v.len != 16)
        return NULL;
    for (int i = 0; i < u->npeers; i++) {
        tg_peer_t *p = &u->peers[i];
        if (memcmp(p->sticky_id, v.p, 16) != 0 || !tg_balance_is_available(p, now))
            continue;
        px->tried |= 1ULL << i; /* as tg_balance_pick does */
        p->conns++;
        return p;
    }
    return NULL;
}

/* Name the server in the sticky cookie unless the client sent that already. */
static int px_sticky_cookie(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    tg_upstream_t *u = r->upstream;
    tg_str_t v;
    if (u->sticky_cookie.len == 0 || px->peer == NULL ||
        (tg_var_cookie(r, u->sticky_cookie, &v) == 0 && tg_str_eq(v, tg_str_c(px->peer->sticky_id))))
        return 0;
    char *c = tg_arena_printf(r->arena, "%.*s=%s; Path=/; HttpOnly; SameSite=Lax",
                              TG_STR_FMT(u->sticky_cookie), px->peer->sticky_id);
    return c ? tg_headers_add(r->arena, &r->resp_headers, TG_STR("Set-Cookie"), tg_str_c(c)) : -1;
}

/* Is this idle connection still open? One recv(MSG_PEEK): 0 is the
 * upstream's FIN, waiting unread because the idle watcher has not run yet.
 * Bytes from an idle plain-HTTP upstream make it unusable too; over TLS they
 * may be a session ticket, which the TLS layer reads. */
static int px_pooled_is_open(tg_upconn_t *uc)
{
    char ch;
    ssize_t n = recv(uc->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    return n > 0 && uc->ssl != NULL;
}

/* An idle connection to px->peer, or NULL. For a request whose body streams
 * from the client, one the upstream has closed already is dropped here: on
 * it the first body round could go out (and be consumed) before the close
 * shows, and the request could then not be sent again. Other requests skip
 * the check: a failure on a pooled connection retries them anyway. */
static tg_upconn_t *px_pool_get(tg_proxy_t *px)
{
    tg_upconn_t *uc;
    while ((uc = tg_upstream_pool_get(px->r->upstream, px->peer)) != NULL) {
        if (px->replayable || px_pooled_is_open(uc))
            return uc;
        tg_log(TG_LOG_DEBUG, "pooled connection to %.*s was closed by the upstream",
               TG_STR_FMT(px->peer->name));
        tg_upconn_destroy(uc);
    }
    return NULL;
}

static void px_connect(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    tg_upstream_t *u = r->upstream;
    if (px->peer == NULL) {
        if (px->attempts >= px->max_attempts) {
            px_give_up(px, 502);
            return;
        }
        tg_str_t key = TG_NULL_STR;
        if (u->balance == TG_BALANCE_HASH && u->hash_key && tg_tpl_eval(r, u->hash_key, &key) != 0) {
            tg_http_error(r, 500);
            return;
        }
        tg_msec_t now = (tg_msec_t)(ev_now(tg_worker->loop) * 1000);
        if (px->attempts == 0 && u->sticky_cookie.len)
            px->peer = px_sticky_peer(px, now);
        if (px->peer == NULL)
            px->peer = tg_balance_pick(u, key, &px->tried, now);
        if (px->peer == NULL) {
            tg_log(TG_LOG_ERROR, "no live upstream server in \"%.*s\" for %.*s", TG_STR_FMT(u->name),
                   TG_STR_FMT(r->uri));
            px_give_up(px, 502);
            return;
        }
        px->attempts++;
    }
    r->upstream_addr = px->peer->name;
    /* reset per-attempt state */
    tg_iovq_reset(&px->out);
    px->sent = 0;
    px->resp_started = px->resp_headers = px->resp_done = 0;
    px->upstream_close = 0;
    px->keepalive_ms = 0;
    px->req_done = 0;
    px->body_inflight = 0; /* a round queued for the failed attempt is still unconsumed */
    llhttp_reset(&px->parser);
    r->resp_headers.n = 0;
    r->resp_content_length = -1;

    int pooled = 1;
    tg_upconn_t *uc = px_pool_get(px);
    if (uc == NULL) {
        pooled = 0;
        if ((uc = tg_upconn_create(u, px->peer)) == NULL) {
            tg_log_errno(TG_LOG_ERROR, "connect() to %.*s failed", TG_STR_FMT(px->peer->name));
            px_fail(px, 502, 1);
            return;
        }
    }
    px->uc = uc;
    uc->r = r;
    /* a pooled connection keeps its read watcher running (no epoll_ctl per
     * request): only the callbacks change hands */
    if (ev_is_active(&uc->io))
        ev_set_cb(&uc->io, px_io_cb);
    else
        ev_init(&uc->io, px_io_cb);
    ev_init(&uc->timer, px_timer_cb);
    if (pooled) {
        px->state = PX_SENDING;
        px_send(px);
        return;
    }
    px->state = PX_CONNECTING;
    px_want(px, EV_WRITE, px->conf->connect_timeout);
}

/* Can the request be sent again from its start? Yes when its body is in
 * memory, or when no body byte was given back to the client reader yet (the
 * round pulled so far is still in the input buffer, see the file comment). */
static int px_can_resend(const tg_proxy_t *px)
{
    return px->replayable || !px->body_consumed;
}

/* An attempt failed. Retry when nothing reached the client yet and the
 * request can be replayed; otherwise answer `status` (or drop the client if
 * the response had started). */
static void px_fail(tg_proxy_t *px, int status, int peer_failed)
{
    tg_request_t *r = px->r;
    int stale = px->uc && px->uc->requests > 0 && !px->resp_started &&
                px->state != PX_CONNECTING && px->state != PX_HANDSHAKE;
    px_release_conn(px, 0);
    if (stale && !peer_failed) {
        /* a pooled connection the upstream had closed: not the peer's fault */
        if (px_can_resend(px) && !r->header_sent && px->stale_retries++ < 64) {
            tg_log(TG_LOG_DEBUG, "pooled connection to %.*s was closed, retrying",
                   TG_STR_FMT(r->upstream_addr));
            px_connect(px);
            return;
        }
    }
    if (!px->resp_headers) {
        /* for $upstream_status: this attempt got no response of its own */
        char *s = tg_arena_printf(r->arena, "%.*s%s%d", TG_STR_FMT(r->upstream_tries),
                                  r->upstream_tries.len ? ", " : "", status);
        if (s)
            r->upstream_tries = tg_str_c(s);
    }
    tg_peer_t *failed_peer = px->peer;
    px_attempt_end(px, peer_failed);
    int idempotent = r->method != HTTP_POST && r->method != HTTP_PATCH && r->method != HTTP_LOCK;
    int may_retry = px_can_resend(px) && !r->header_sent && !px->resp_started &&
                    (px->sent == 0 || idempotent) && status != 504;
    if (may_retry && px->attempts < px->max_attempts) {
        tg_stats_peer_retry(r->upstream, failed_peer);
        px_connect(px);
        return;
    }
    px_give_up(px, status);
}

/* No more attempts: answer `status`, or drop the client when the response
 * had started already. */
static void px_give_up(tg_proxy_t *px, int status)
{
    tg_request_t *r = px->r;
    r->proxy = NULL;
    tg_buf_put(px->buf);
    px->buf = NULL;
    if (r->header_sent) {
        tg_http_finalize(r, 1);
        return;
    }
    tg_http_error(r, status);
}

/* Queue the next piece of the request: header, then body rounds. Returns 1
 * when something was queued or the request is complete, 0 when waiting for
 * the client, -1 on error (answered). */
static int px_fill(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    if (px->sent == 0 && px->out.pending == 0 && px->out.n == 0 && !px->req_done) {
        tg_iovq_add(&px->out, px->head.p, px->head.len);
        if (!r->has_body) {
            px->req_done = 1;
            return 1;
        }
        if (px->replay) {
            tg_spans_t *b = px->replay;
            if (r->chunked)
                tg_iovq_add_chunk_size(&px->out, b->len);
            for (int i = 0; i < b->n; i++)
                tg_iovq_add(&px->out, b->v[i].iov_base, b->v[i].iov_len);
            if (r->chunked)
                tg_iovq_add(&px->out, "\r\n0\r\n\r\n", 7);
            px->req_done = 1;
            return 1;
        }
        if (px->replayable) {
            /* complete but empty chunked body */
            if (r->chunked)
                tg_iovq_add(&px->out, "0\r\n\r\n", 5);
            px->req_done = 1;
        }
        return 1;
    }
    tg_spans_t *spans;
    int done = 0;
    int rc = tg_http_body_pull(r, &spans, &done);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        int st = -rc;
        px_release_conn(px, 0);
        px_attempt_end(px, 0);
        r->proxy = NULL;
        if (st == 499 || r->header_sent)
            tg_http_finalize(r, 1);
        else
            tg_http_error(r, st);
        return -1;
    }
    if (px->out.n + spans->n + 3 > TG_IOVQ_MAX) { /* a round always fits an empty queue */
        tg_log(TG_LOG_ERROR, "request body round of %d ranges does not fit the write queue",
               spans->n);
        px_fail(px, 500, 0);
        return -1;
    }
    if (spans->len) {
        if (r->chunked)
            tg_iovq_add_chunk_size(&px->out, spans->len);
        for (int i = 0; i < spans->n; i++)
            tg_iovq_add(&px->out, spans->v[i].iov_base, spans->v[i].iov_len);
        if (r->chunked)
            tg_iovq_add(&px->out, "\r\n", 2);
        px->body_inflight = 1;
    }
    if (done) {
        if (r->chunked)
            tg_iovq_add(&px->out, "0\r\n\r\n", 5);
        px->req_done = 1;
    }
    return 1;
}

static ssize_t px_upconn_writev(void *ctx, const struct iovec *iov, int n)
{
    return tg_upconn_writev(ctx, iov, n);
}

static void px_send(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    for (;;) {
        if (px->out.pending == 0) {
            if (px->body_inflight) {
                px->body_inflight = 0;
                px->body_consumed = 1;
                tg_http_body_consumed(r);
            }
            if (px->req_done) {
                px->state = PX_RECEIVING;
                px_want(px, EV_READ, px->conf->read_timeout);
                return;
            }
            int rc = px_fill(px);
            if (rc < 0)
                return;
            if (rc == 0) {
                /* waiting for the client; an early response may still come */
                px_want(px, EV_READ, px->conf->read_timeout);
                return;
            }
            continue;
        }
        int rc = px->uc->ssl ? tg_iovq_send(&px->out, px_upconn_writev, px->uc, &px->sent)
                             : tg_sendq_write(&px->out, px->uc->fd, &px->uc->io, &px->sent);
        if (rc == 1)
            continue;
        if (rc == 2)
            return; /* in the send batch: px_io_cb gets EV_WRITE after it */
        if (rc == 0) {
            px_want(px, EV_READ | EV_WRITE, px->conf->send_timeout);
            return;
        }
        tg_log_errno(TG_LOG_INFO, "sending to upstream %.*s failed", TG_STR_FMT(r->upstream_addr));
        px_fail(px, 502, px->uc->requests == 0);
        return;
    }
}

void tg_proxy_on_client_body(tg_request_t *r)
{
    tg_proxy_t *px = r->proxy;
    if (px && px->uc && px->state == PX_SENDING)
        px_send(px);
}

/* Response done and written: the connection goes back to the pool when the
 * exchange ended cleanly. */
static void px_finish(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    int reuse = px->req_done && px->out.pending == 0 && !px->upstream_close &&
                px->buf->pos == px->buf->last;
    r->upstream_time = ev_now(tg_worker->loop) - r->upstream_start;
    px_release_conn(px, reuse);
    px_attempt_end(px, 0);
    tg_buf_put(px->buf);
    px->buf = NULL;
    r->proxy = NULL;
    tg_http_finalize(r, 0);
}

/* Everything forwarded so far is written: get ready to read more. Returns 1
 * when the caller may read the upstream again, 0 when the exchange ended. */
static int px_drained(tg_proxy_t *px)
{
    px->client_blocked = 0;
    tg_spans_reset(&px->body);
    if (px->resp_done) {
        px_finish(px);
        return 0;
    }
    if (px->uc == NULL)
        return 0;
    /* everything read so far is written: reuse the buffer from the start */
    if (px->buf->pos == px->buf->last)
        px->buf->pos = px->buf->last = px->buf->start;
    if (px->state == PX_SENDING && px->out.pending)
        px_want(px, EV_READ | EV_WRITE, px->conf->send_timeout);
    else
        px_want(px, EV_READ, px->conf->read_timeout);
    return 1;
}

/* One round is parsed: pass header and body spans on to the client.
 * Returns 1 when all of it is written and the upstream may be read again,
 * 0 when the client is blocked or the exchange ended. */
static int px_forward(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    if (px->resp_headers && !r->header_sent) {
        px_clean_resp_headers(px);
        if (px_sticky_cookie(px) != 0) {
            px_fail(px, 500, 0);
            return 0;
        }
        if (!px->req_done)
            r->keepalive = 0; /* answered before the body was read */
        if (tg_http_send_header(r) != 0) {
            px_fail(px, 502, 0);
            return 0;
        }
    }
    if (r->header_sent && (px->body.len || px->resp_done)) {
        if (tg_http_send_body(r, &px->body, px->resp_done) != 0) {
            tg_http_finalize(r, 1);
            return 0;
        }
    }
    if (px->resp_done && r->upstream_time == 0)
        r->upstream_time = ev_now(tg_worker->loop) - r->upstream_start;
    int rc = tg_http_flush_batched(r);
    if (rc < 0) {
        tg_http_finalize(r, 1);
        return 0;
    }
    if (rc == 2) { /* in the send batch; the upstream stays watched as it is */
        px->client_blocked = 1;
        return 0;
    }
    if (rc == 0) {
        px->client_blocked = 1;
        px_want(px, 0, 0);
        return 0;
    }
    return px_drained(px);
}

void tg_proxy_on_client_blocked(tg_request_t *r)
{
    tg_proxy_t *px = r->proxy;
    if (px->uc && !px->tunnel) {
        px->client_blocked = 1;
        px_want(px, 0, 0);
    }
}

void tg_proxy_on_client_drained(tg_request_t *r)
{
    tg_proxy_t *px = r->proxy;
    if (px_drained(px))
        px_receive(px);
}

static void px_receive(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    if (px->client_blocked) { /* its bytes still point into px->buf */
        px_want(px, 0, 0);
        return;
    }
    if (px->buf == NULL && (px->buf = tg_buf_get()) == NULL) {
        px_fail(px, 500, 0);
        return;
    }
    tg_buf_t *b = px->buf;
    for (;;) {
        if (b->last == b->end) {
            if (!px->resp_headers) {
                tg_log(TG_LOG_ERROR, "upstream %.*s sent a too big header",
                       TG_STR_FMT(r->upstream_addr));
                px_fail(px, 502, 1);
                return;
            }
            b->pos = b->last = b->start; /* all parsed and forwarded */
        }
        ssize_t n = tg_upconn_read(px->uc, b->last, (size_t)(b->end - b->last));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (px->uc->ssl && px->uc->tls_want_write)
                    px_want_io(px, EV_READ | EV_WRITE); /* TLS must write to read on */
                return;
            }
            tg_log_errno(TG_LOG_INFO, "reading from upstream %.*s failed",
                         TG_STR_FMT(r->upstream_addr));
            px_fail(px, 502, px->uc->requests == 0 || px->resp_started);
            return;
        }
        if (n == 0) {
            if (px->resp_headers && llhttp_message_needs_eof(&px->parser)) {
                /* body delimited by the close */
                px->upstream_close = 1;
                px->resp_done = 1;
                px_forward(px);
                return;
            }
            if (px->resp_started || px->uc->requests == 0)
                tg_log(TG_LOG_ERROR, "upstream %.*s closed the connection %s",
                       TG_STR_FMT(r->upstream_addr),
                       px->resp_headers ? "in the middle of the body" : "before answering");
            px_fail(px, 502, px->resp_started || px->uc->requests == 0);
            return;
        }
        px->resp_started = 1;
        char *start = b->last;
        b->last += n;
        llhttp_errno_t err = llhttp_execute(&px->parser, start, (size_t)n);
        if ((err == HPE_PAUSED_UPGRADE || err == HPE_PAUSED) && r->status == 101) {
            b->pos = (char *)llhttp_get_error_pos(&px->parser);
            px_upgrade(px);
            return;
        }
        if (err == HPE_PAUSED) {
            b->pos = (char *)llhttp_get_error_pos(&px->parser);
            if (b->pos != b->last)
                px->upstream_close = 1; /* bytes after the response: not reusable */
            b->pos = b->last;
        } else if (err != HPE_OK) {
            tg_log(TG_LOG_ERROR, "upstream %.*s sent an invalid response: %s",
                   TG_STR_FMT(r->upstream_addr), llhttp_get_error_reason(&px->parser));
            px->upstream_close = 1;
            px_fail(px, 502, 1);
            return;
        } else {
            b->pos = b->last;
        }
        if (px->resp_headers && !px_forward(px))
            return;
    }
}

/* TLS upstreams: one step of the handshake after the TCP connect; the
 * connect timer keeps running until it is done. */
static void px_handshake(tg_proxy_t *px)
{
    tg_upconn_t *uc = px->uc;
    int rc = tg_tls_upconn_handshake(uc);
    if (rc == 0) {
        px_want_io(px, uc->tls_want_write ? EV_WRITE : EV_READ);
        return;
    }
    if (rc < 0) { /* logged: fails like a connect failure */
        px_fail(px, 502, 1);
        return;
    }
    px->state = PX_SENDING;
    px_send(px);
}

static void px_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    tg_upconn_t *uc = (tg_upconn_t *)((char *)w - offsetof(tg_upconn_t, io));
    tg_proxy_t *px = uc->r->proxy;
    if (px->tunnel) {
        px_tunnel_event(px);
        return;
    }
    if (px->state == PX_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(uc->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            errno = err;
            tg_log_errno(TG_LOG_ERROR, "connect() to %.*s failed", TG_STR_FMT(px->peer->name));
            px_fail(px, 502, 1);
            return;
        }
        if (uc->upstream->tls) {
            if (tg_tls_upconn_start(uc) != 0) {
                tg_log(TG_LOG_ERROR, "upstream %.*s: cannot start TLS", TG_STR_FMT(px->peer->name));
                px_fail(px, 502, 1);
                return;
            }
            px->state = PX_HANDSHAKE;
            px_handshake(px);
            return;
        }
        px->state = PX_SENDING;
        px_send(px);
        return;
    }
    if (px->state == PX_HANDSHAKE) {
        px_handshake(px);
        return;
    }
    if ((revents & EV_READ) ||
        ((revents & EV_WRITE) && px->state == PX_RECEIVING && uc->ssl && uc->tls_want_write)) {
        px_receive(px);
        return;
    }
    if ((revents & EV_WRITE) && px->state == PX_SENDING)
        px_send(px);
}

static void px_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_upconn_t *uc = (tg_upconn_t *)((char *)w - offsetof(tg_upconn_t, timer));
    tg_proxy_t *px = uc->r->proxy;
    const char *what = px->state == PX_CONNECTING ? "connecting to"
                       : px->state == PX_HANDSHAKE ? "in the TLS handshake with"
                       : px->state == PX_SENDING  ? "sending to"
                                                  : "reading from";
    tg_log(TG_LOG_ERROR, "timed out %s upstream %.*s", what, TG_STR_FMT(px->peer->name));
    px_fail(px, px->state == PX_CONNECTING || px->state == PX_HANDSHAKE ? 502 : 504, 1);
}

void tg_proxy_abort(tg_request_t *r)
{
    tg_proxy_t *px = r->proxy;
    if (px == NULL)
        return;
    r->proxy = NULL;
    if (px->tunnel) {
        tg_worker->tunnels_open--;
        tg_buf_put(px->tunnel->up);
        tg_buf_put(px->tunnel->down);
        px->tunnel = NULL;
    }
    px_release_conn(px, 0);
    px_attempt_end(px, 0);
    tg_buf_put(px->buf);
    px->buf = NULL;
}

/* ---- upgraded connections ------------------------------------------------------ */

/* The upstream answered 101: send that on, then both sockets become a
 * tunnel. Bytes either side sent after the switch are already in buffers. */
static void px_upgrade(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    tg_conn_t *c = r->conn;
    tg_header_t *up = tg_headers_find(&r->resp_headers, TG_STR("Upgrade"));
    tg_str_t proto = up ? up->value : TG_STR("websocket");
    px_clean_resp_headers(px);
    if (tg_headers_add(r->arena, &r->resp_headers, TG_STR("Upgrade"), proto) != 0 ||
        px_sticky_cookie(px) != 0 ||
        tg_http_send_header(r) != 0 || tg_http_flush(r) != 1) {
        /* a 101 header that cannot be written at once: give up on it */
        tg_http_finalize(r, 1);
        return;
    }
    tg_tunnel_t *t = tg_arena_alloc(r->arena, sizeof(*t));
    /* what the client sent after its upgrade request (the input buffer is as
     * large as a pool buffer, so it all fits) */
    tg_buf_t *in = c->ibuf;
    size_t early = (size_t)(in->last - in->pos);
    tg_buf_t *to_up = early ? tg_buf_get() : NULL;
    if (t == NULL || (early && to_up == NULL)) {
        tg_buf_put(to_up);
        tg_http_finalize(r, 1);
        return;
    }
    if (early) {
        memcpy(to_up->last, in->pos, early);
        to_up->last += early;
        in->pos += early;
    }
    /* what the upstream sent after its 101 stays in px->buf; the response
     * headers (read in a log phase, e.g. by Lua) must not point into it */
    if (tg_headers_own(r->arena, &r->resp_headers) != 0) {
        tg_buf_put(to_up);
        tg_http_finalize(r, 1);
        return;
    }
    if (px->buf->pos == px->buf->last) {
        tg_buf_put(px->buf);
        px->buf = NULL;
    }
    *t = (tg_tunnel_t){.c = c, .ufd = px->uc->fd, .uc = px->uc, .cio = &c->io, .uio = &px->uc->io,
                       .up = to_up, .down = px->buf};
    px->buf = NULL;
    px->tunnel = t;
    r->upstream_time = ev_now(tg_worker->loop) - r->upstream_start;
    ev_timer_stop(tg_worker->loop, &px->uc->timer);
    tg_worker->upgrades++;
    tg_worker->tunnels_open++;
    tg_http_tunnel_begin(r, px->conf->websocket_idle_timeout);
    px_tunnel_event(px);
}

static void px_tunnel_event(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    tg_tunnel_t *t = px->tunnel;
    uint64_t up0 = t->up_bytes, down0 = t->down_bytes;
    int alive = tg_tunnel_pump(t, tg_worker->loop);
    tg_worker->tunnel_bytes_up += t->up_bytes - up0;
    tg_worker->tunnel_bytes_down += t->down_bytes - down0;
    r->bytes_out += t->down_bytes - down0;
    r->bytes_in += t->up_bytes - up0;
    if (alive) {
        tg_http_tunnel_active(r);
        return;
    }
    tg_http_finalize(r, 1); /* logs it, closes both sides */
}

void tg_proxy_on_tunnel_event(tg_request_t *r)
{
    px_tunnel_event(r->proxy);
}

/* ---- directives ------------------------------------------------------------ */

static void *proxy_create_conf(tg_conf_t *cf)
{
    tg_proxy_conf_t *pc = tg_arena_alloc(cf->arena, sizeof(*pc));
    if (pc == NULL)
        return NULL;
    pc->connect_timeout = pc->read_timeout = pc->send_timeout = TG_CONF_UNSET;
    pc->next_upstream_tries = TG_CONF_UNSET;
    pc->websocket_idle_timeout = TG_CONF_UNSET;
    return pc;
}

static const char *proxy_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    tg_proxy_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->connect_timeout, p->connect_timeout, 5000);
    TG_CONF_MERGE(c->websocket_idle_timeout, p->websocket_idle_timeout, 3600000);
    TG_CONF_MERGE(c->read_timeout, p->read_timeout, 60000);
    TG_CONF_MERGE(c->send_timeout, p->send_timeout, 60000);
    TG_CONF_MERGE(c->next_upstream_tries, p->next_upstream_tries, 0);
    if (!c->set_headers_given) {
        c->set_headers = p->set_headers;
        c->nset_headers = p->nset_headers;
        c->remove_headers = p->remove_headers;
        c->nremove_headers = p->nremove_headers;
    }
    if (c->upstream == NULL) { /* the URI part goes with its proxy_pass */
        c->upstream = p->upstream;
        c->pass_uri = p->pass_uri;
    }
    return NULL;
}

/* The URI part of proxy_pass (see proxy_uri.h), checked: a literal one
 * needs a location prefix to replace, so it cannot be used in a regex
 * location (as in nginx); one with variables can. */
static const char *set_pass_uri(tg_conf_t *cf, tg_proxy_conf_t *pc, tg_str_t arg, tg_str_t uri)
{
    const char *err = NULL;
    tg_tpl_t *t = tg_tpl_compile(cf, uri, &err);
    if (t == NULL)
        return err;
    tg_location_t *loc = cf->scope == TG_SCOPE_LOCATION ? cf->ctx : NULL;
    if (!tg_tpl_has_vars(t)) {
        if (tg_proxy_uri_escape(NULL, uri, 0) != uri.len)
            return tg_conf_errf(cf, "invalid character in the URI part \"%.*s\" of \"proxy_pass\"",
                                TG_STR_FMT(uri));
        if (loc && loc->kind == TG_LOC_REGEX)
            return tg_conf_errf(cf, "\"proxy_pass %.*s\" cannot have a URI part in a location given "
                                    "by a regular expression (no prefix to replace): pass the "
                                    "URI with variables, e.g. \"http://%.*s$request_uri\"",
                                TG_STR_FMT(arg), (int)(uri.p - arg.p), arg.p);
    }
    pc->pass_uri.uri = t;
    pc->pass_uri.prefix = loc ? loc->path : TG_STR("/");
    return NULL;
}

/* proxy_pass [http://|https://]NAME|HOST:PORT[/URI] */
static const char *set_proxy_pass(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_proxy_conf_t *pc = conf;
    if (pc->upstream)
        return "\"proxy_pass\" directive is duplicate";
    tg_str_t arg = tg_conf_arg(cf, 1), scheme, name, uri;
    if (tg_proxy_uri_split(arg, &scheme, &name, &uri) != 0)
        return tg_conf_errf(cf, "invalid scheme in \"proxy_pass %.*s\", expected http:// or https://",
                            TG_STR_FMT(arg));
    if (name.len == 0)
        return tg_conf_errf(cf, "\"proxy_pass %.*s\" names no upstream (variables are allowed in "
                                "the URI part only)",
                            TG_STR_FMT(arg));
    const char *err = uri.len ? set_pass_uri(cf, pc, arg, uri) : NULL;
    if (err)
        return err;
    pc->upstream = tg_upstream_reference(cf, name);
    if (pc->upstream == NULL)
        return tg_conf_errf(cf, "invalid upstream \"%.*s\" in \"proxy_pass\"", TG_STR_FMT(arg));
    if (scheme.len)
        tg_upstream_note_scheme(cf, pc->upstream, tg_str_caseeq_lit(scheme, "https"));
    return NULL;
}

static const char *set_proxy_timeouts(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_proxy_conf_t *pc = conf;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v;
        tg_msec_t *field = NULL;
        if (tg_conf_arg_kv(cf, i, "connect", &v))
            field = &pc->connect_timeout;
        else if (tg_conf_arg_kv(cf, i, "read", &v))
            field = &pc->read_timeout;
        else if (tg_conf_arg_kv(cf, i, "send", &v))
            field = &pc->send_timeout;
        else
            return tg_conf_errf(cf, "invalid parameter \"%.*s\" in \"proxy_timeouts\", expected "
                                    "connect=, read= or send=",
                                TG_STR_FMT(tg_conf_arg(cf, i)));
        if (tg_parse_msec(v, field) != 0 || *field <= 0)
            return tg_conf_errf(cf, "invalid time \"%.*s\" in \"proxy_timeouts\"", TG_STR_FMT(v));
    }
    return NULL;
}

static const char *set_proxy_set_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_proxy_conf_t *pc = conf;
    tg_str_t name = tg_conf_arg(cf, 1), value = tg_conf_arg(cf, 2);
    const char *err = tg_conf_check_header(cf, name, value);
    if (err)
        return err;
    tg_proxy_header_t *h = tg_arena_grow(cf->arena, pc->set_headers, (size_t)pc->nset_headers, 1,
                                         sizeof(*h));
    if (h == NULL)
        return "out of memory";
    h[pc->nset_headers].name = tg_arena_str(cf->arena, name);
    if ((h[pc->nset_headers].value = tg_tpl_compile(cf, value, &err)) == NULL)
        return err;
    pc->set_headers = h;
    pc->nset_headers++;
    pc->set_headers_given = 1;
    return NULL;
}

static const char *set_proxy_remove_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_proxy_conf_t *pc = conf;
    tg_str_t name = tg_conf_arg(cf, 1);
    if (!tg_conf_is_token(name))
        return tg_conf_errf(cf, "invalid header name \"%.*s\"", TG_STR_FMT(name));
    tg_str_t *h = tg_arena_grow(cf->arena, pc->remove_headers, (size_t)pc->nremove_headers, 1,
                                sizeof(*h));
    if (h == NULL)
        return "out of memory";
    h[pc->nremove_headers++] = tg_arena_str(cf->arena, name);
    pc->remove_headers = h;
    pc->set_headers_given = 1;
    return NULL;
}

static const tg_directive_t proxy_directives[] = {
    {"proxy_pass", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, 1, set_proxy_pass, 0},
    {"proxy_timeouts", TG_SCOPE_HTTP, 0, 1, 3, set_proxy_timeouts, 0},
    {"proxy_next_upstream_tries", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_num,
     offsetof(tg_proxy_conf_t, next_upstream_tries)},
    {"proxy_set_header", TG_SCOPE_HTTP, 0, 2, 2, set_proxy_set_header, 0},
    {"proxy_remove_header", TG_SCOPE_HTTP, 0, 1, 1, set_proxy_remove_header, 0},
    {"websocket_idle_timeout", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_msec,
     offsetof(tg_proxy_conf_t, websocket_idle_timeout)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_proxy_module = {
    .name = "proxy",
    .directives = proxy_directives,
    .create_conf = proxy_create_conf,
    .merge_conf = proxy_merge_conf,
};
