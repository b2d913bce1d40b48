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
 * to the client reader (tg_request_body_consumed): the body round pulled so
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
#include <llhttp.h>
#include "proxy.h"
#include "proxy_conf.h"
#include "proxy_head.h"
#include "proxy_h2.h"
#include "var.h"
#include "log.h"
#include "sendq.h"
#include "worker.h"
#include "tunnel.h"
#include "tunnel_stream.h"
#include "websocket.h"
#include "stats.h"
#include "upstream_dyn.h"

typedef enum {
    PX_CONNECTING = 0,
    PX_HANDSHAKE, /* TLS upstreams: SSL_connect, under the connect timeout */
    PX_SENDING,   /* writing request header/body */
    PX_RECEIVING, /* the whole request went, reading the response */
} px_state_t;

typedef struct tg_proxy_s tg_proxy_t;

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
    unsigned readable : 1;        /* the loop reported the upstream readable: the
                                   * next read may go to the send batch */
    tg_msec_t keepalive_ms;
    int error_status;
    unsigned websocket : 1;  /* a WebSocket upgrade was asked for */
    tg_tunnel_t *tunnel;     /* after a 101: the two-way byte pipe */
    tg_tunnel_stream_t *stunnel; /* ... or, on an HTTP/2 stream, the stream's own */
    uint64_t tunnel_up, tunnel_down; /* its byte counts already added to the stats */
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
static void px_stunnel_event(tg_proxy_t *px, int drained);
static void px_stunnel_done(tg_proxy_t *px, int alive);

static const tg_handler_events_t px_events;

/* The proxy lets go of the request (answered, or handed to the error page). */
static void px_detach(tg_request_t *r)
{
    r->handler = NULL;
    r->handler_ctx = NULL;
}

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
        if (r->resp_headers.n >= TG_PROXY_MAX_RESP_HEADERS) {
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
        tg_header_t *key = tg_headers_find(&r->headers, TG_STR("Sec-WebSocket-Key"));
        tg_header_t *acc = tg_headers_find(&r->resp_headers, TG_STR("Sec-WebSocket-Accept"));
        if (key && (acc == NULL || !tg_websocket_accept_is(key->value, acc->value))) {
            /* RFC 6455 4.1: not the answer to our key; the client would fail it */
            tg_log(TG_LOG_ERROR, "upstream %.*s answered a WebSocket upgrade with a wrong "
                                 "Sec-WebSocket-Accept", TG_STR_FMT(r->upstream_addr));
            px->error_status = 502;
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
/* ---- attempts -------------------------------------------------------------- */

/* Route phase: proxy_pass picks the upstream unless a route hook (Lua's
 * tg.route) chose one. */
static tg_rc_t px_route(tg_request_t *r, void *conf)
{
    tg_proxy_conf_t *pc = conf;
    if (r->upstream == NULL)
        r->upstream = pc->upstream;
    return TG_OK;
}

static void px_release_conn(tg_proxy_t *px, int reuse)
{
    tg_upconn_t *uc = px->uc;
    if (uc == NULL)
        return;
    px->uc = NULL;
    uc->r = NULL;
    ev_timer_stop(tg_worker->loop, &uc->timer);
    if (reuse && uc->rbatch == 0) { /* (a read in the batch: bytes it would lose) */
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

/* Content phase, the last handler: a request with an upstream is proxied
 * (the proxy takes it over: TG_AGAIN); one without is not found. */
static tg_rc_t px_content(tg_request_t *r, void *conf)
{
    (void)conf;
    if (r->upstream == NULL) {
        tg_request_error(r, 404);
        return TG_AGAIN;
    }
    if (r->upstream->http2)
        return tg_proxy_h2_content(r, px_conf(r));
    tg_proxy_t *px = tg_arena_alloc(r->arena, sizeof(*px));
    if (px == NULL)
        return TG_ERROR;
    px->r = r;
    px->conf = px_conf(r);
    r->handler = &px_events;
    r->handler_ctx = px;
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
    if (tg_proxy_head_build(r, px->conf, px->websocket, &px->head) != 0) {
        px_detach(r);
        return TG_ERROR;
    }
    /* A request whose body is already complete in memory can be sent again
     * at any time (px->replay); one still streaming from the client only
     * until its first round went out (px_can_resend). */
    tg_spans_t *spans;
    int done = 0;
    if (!r->has_body) {
        px->replayable = 1;
    } else if (tg_request_body_pull(r, &spans, &done) == 1 && done) {
        if (spans->n) {
            if ((px->replay = tg_arena_alloc_nz(r->arena, sizeof(*spans))) == NULL) {
                px_detach(r);
                return TG_ERROR;
            }
            *px->replay = *spans;
        }
        px->replayable = 1;
    }
    llhttp_init(&px->parser, HTTP_RESPONSE, &resp_settings);
    px->parser.data = px;
    r->upstream_start = ev_now(tg_worker->loop);
    px_connect(px);
    return TG_AGAIN;
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
        tg_balance_take(p);
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
            tg_request_error(r, 500);
            return;
        }
        tg_msec_t now = (tg_msec_t)(ev_now(tg_worker->loop) * 1000);
        tg_upstream_dyn_sync(u);
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
        tg_stats_peer_retry(r->upstream, failed_peer->index);
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
    px_detach(r);
    tg_buf_put(px->buf);
    px->buf = NULL;
    if (r->header_sent) {
        tg_request_finalize(r, 1);
        return;
    }
    tg_request_error(r, status);
}

/* The end of a chunked body: the last chunk, with the client's trailers
 * (HTTP/2 clients) when it sent some. 0, or -1 out of memory. */
static int px_last_chunk(tg_proxy_t *px)
{
    tg_str_t end = TG_STR("0\r\n\r\n");
    if (px->r->trailers.n && tg_proxy_head_trailers(px->r, &end) != 0)
        return -1;
    return tg_iovq_add(&px->out, end.p, end.len);
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
            if (r->chunked && (tg_iovq_add(&px->out, "\r\n", 2) != 0 || px_last_chunk(px) != 0)) {
                px_fail(px, 500, 0);
                return -1;
            }
            px->req_done = 1;
            return 1;
        }
        if (px->replayable) {
            /* complete but empty chunked body */
            if (r->chunked && px_last_chunk(px) != 0) {
                px_fail(px, 500, 0);
                return -1;
            }
            px->req_done = 1;
        }
        return 1;
    }
    tg_spans_t *spans;
    int done = 0;
    int rc = tg_request_body_pull(r, &spans, &done);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        int st = -rc;
        px_release_conn(px, 0);
        px_attempt_end(px, 0);
        px_detach(r);
        if (st == 499 || r->header_sent)
            tg_request_finalize(r, 1);
        else
            tg_request_error(r, st);
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
        if (r->chunked && px_last_chunk(px) != 0) {
            px_fail(px, 500, 0);
            return -1;
        }
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
                tg_request_body_consumed(r);
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
                             : tg_sendq_write(&px->out, px->uc->fd, &px->uc->io, &px->sent, 1);
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

static void px_on_body(tg_request_t *r)
{
    tg_proxy_t *px = r->handler_ctx;
    if (px && px->stunnel)
        px_stunnel_event(px, 0);
    else if (px && px->uc && px->state == PX_SENDING)
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
    px_detach(r);
    tg_request_finalize(r, 0);
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
/* proxy_intercept_errors: the upstream's answer gives way to the location's
 * error_page for its status. Its connection goes back to the pool when the
 * exchange is over (the whole response is in this round), else it closes. */
static void px_intercept(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    int reuse = px->resp_done && px->req_done && px->out.pending == 0 && !px->upstream_close &&
                px->buf->pos == px->buf->last;
    r->upstream_time = ev_now(tg_worker->loop) - r->upstream_start;
    if (!px->req_done)
        r->keepalive = 0; /* answered before the body was read */
    px_release_conn(px, reuse);
    px_attempt_end(px, 0);
    tg_buf_put(px->buf);
    px->buf = NULL;
    px_detach(r);
    tg_request_error(r, r->status); /* the error_page (checked by the caller) */
}

static int px_forward(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    if (px->resp_headers && !r->header_sent && r->status >= 300 && px->conf->intercept_errors &&
        tg_request_has_error_page(r, r->status)) {
        px_intercept(px);
        return 0;
    }
    if (px->resp_headers && !r->header_sent) {
        px->keepalive_ms = tg_proxy_head_clean_response(&r->resp_headers);
        if (px_sticky_cookie(px) != 0) {
            px_fail(px, 500, 0);
            return 0;
        }
        if (!px->req_done)
            r->keepalive = 0; /* answered before the body was read */
        if (tg_request_send_header(r) != 0) {
            px_fail(px, 502, 0);
            return 0;
        }
    }
    if (r->header_sent && (px->body.len || px->resp_done)) {
        if (tg_request_send_body(r, &px->body, px->resp_done) != 0) {
            tg_request_finalize(r, 1);
            return 0;
        }
    }
    if (px->resp_done && r->upstream_time == 0)
        r->upstream_time = ev_now(tg_worker->loop) - r->upstream_start;
    int rc = tg_request_flush_batched(r);
    if (rc < 0) {
        tg_request_finalize(r, 1);
        return 0;
    }
    if (rc == 2) { /* in the send batch; the upstream stays watched as it is */
        px->client_blocked = 1;
        return 0;
    }
    if (rc == 0) {
        px->client_blocked = 1;
        if (!px->resp_done)
            px_want(px, 0, 0);
        return 0;
    }
    return px_drained(px);
}

static void px_on_blocked(tg_request_t *r)
{
    tg_proxy_t *px = r->handler_ctx;
    if (px->uc && !px->tunnel && !px->stunnel) {
        px->client_blocked = 1;
        px_want(px, 0, 0);
    }
}

static void px_on_drained(tg_request_t *r)
{
    tg_proxy_t *px = r->handler_ctx;
    if (px->stunnel) {
        px_stunnel_event(px, 1);
        return;
    }
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
    int readable = px->readable;
    px->readable = 0;
    if (readable && px->uc->ssl == NULL &&
        tg_sendq_read_start(&px->uc->rbatch, px->uc->fd, &px->uc->io))
        return; /* px_io_cb runs again after the batch */
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
        tg_upconn_t *uc = px->uc;
        size_t room = (size_t)(b->end - b->last);
        ssize_t n = uc->rbatch ? tg_sendq_read_take(&uc->rbatch, b->last, room)
                               : tg_upconn_read(uc, b->last, room);
        if (n == TG_SENDQ_WAIT)
            return; /* px_io_cb runs again after the batch */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (px->uc->tls_flags & TG_TLS_F_WANT_WRITE)
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
    int rc = tg_upconn_tls_handshake(uc, NULL, 0);
    if (rc == 0) {
        px_want_io(px, (uc->tls_flags & TG_TLS_F_WANT_WRITE) ? EV_WRITE : EV_READ);
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
    tg_proxy_t *px = uc->r->handler_ctx;
    if (px->tunnel) {
        px_tunnel_event(px);
        return;
    }
    if (px->stunnel) {
        px_stunnel_event(px, 0);
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
            if (tg_upconn_tls_start(uc) != 0) {
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
        ((revents & EV_WRITE) && px->state == PX_RECEIVING && (uc->tls_flags & TG_TLS_F_WANT_WRITE))) {
        px->readable = (revents & EV_READ) != 0;
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
    tg_proxy_t *px = uc->r->handler_ctx;
    const char *what = px->state == PX_CONNECTING ? "connecting to"
                       : px->state == PX_HANDSHAKE ? "in the TLS handshake with"
                       : px->state == PX_SENDING  ? "sending to"
                                                  : "reading from";
    tg_log(TG_LOG_ERROR, "timed out %s upstream %.*s", what, TG_STR_FMT(px->peer->name));
    px_fail(px, px->state == PX_CONNECTING || px->state == PX_HANDSHAKE ? 502 : 504, 1);
}

static void px_on_abort(tg_request_t *r)
{
    tg_proxy_t *px = r->handler_ctx;
    if (px == NULL)
        return;
    px_detach(r);
    if (px->tunnel) {
        tg_worker->tunnels_open--;
        tg_buf_put(px->tunnel->up);
        tg_buf_put(px->tunnel->down);
        px->tunnel = NULL;
    }
    if (px->stunnel) {
        tg_worker->tunnels_open--;
        tg_tunnel_stream_release(px->stunnel);
        px->stunnel = NULL;
    }
    px_release_conn(px, 0);
    px_attempt_end(px, 0);
    tg_buf_put(px->buf);
    px->buf = NULL;
}

/* ---- upgraded connections ------------------------------------------------------ */

/* The upstream answered 101: send that on, then both sockets become a
 * tunnel (HTTP/1.1), or the upstream socket and the client's stream do
 * (HTTP/2, RFC 8441: the carrier answers 200). Bytes either side sent after
 * the switch are already in buffers. */
static void px_upgrade(tg_proxy_t *px)
{
    tg_request_t *r = px->r;
    tg_header_t *up = tg_headers_find(&r->resp_headers, TG_STR("Upgrade"));
    tg_str_t proto = up ? up->value : TG_STR("websocket");
    px->keepalive_ms = tg_proxy_head_clean_response(&r->resp_headers);
    if (tg_headers_add(r->arena, &r->resp_headers, TG_STR("Upgrade"), proto) != 0 ||
        px_sticky_cookie(px) != 0 ||
        tg_request_send_header(r) != 0 || tg_request_flush(r) != 1) {
        /* a 101 header that cannot be written at once: give up on it */
        tg_request_finalize(r, 1);
        return;
    }
    /* what the upstream sent after its 101 stays in px->buf; the response
     * headers (read in a log phase, e.g. by Lua) must not point into it */
    if (tg_headers_own(r->arena, &r->resp_headers) != 0) {
        tg_request_finalize(r, 1);
        return;
    }
    tg_buf_t *to_up = NULL;
    int kind = tg_request_tunnel_begin(r, px->conf->websocket_idle_timeout, &to_up);
    void *t = kind < 0 ? NULL
                       : tg_arena_alloc(r->arena, kind == 1 ? sizeof(tg_tunnel_stream_t)
                                                            : sizeof(tg_tunnel_t));
    if (t == NULL) {
        tg_buf_put(to_up);
        tg_request_finalize(r, 1);
        return;
    }
    if (px->buf->pos == px->buf->last) {
        tg_buf_put(px->buf);
        px->buf = NULL;
    }
    tg_buf_t *early = px->buf;
    px->buf = NULL;
    r->upstream_time = ev_now(tg_worker->loop) - r->upstream_start;
    ev_timer_stop(tg_worker->loop, &px->uc->timer);
    tg_worker->upgrades++;
    tg_worker->tunnels_open++;
    if (kind == 1) {
        px->stunnel = t;
        *px->stunnel = (tg_tunnel_stream_t){.r = r, .uc = px->uc};
        px_stunnel_done(px, tg_tunnel_stream_start(px->stunnel, early));
        return;
    }
    px->tunnel = t;
    *px->tunnel = (tg_tunnel_t){.c = r->conn, .ufd = px->uc->fd, .uc = px->uc,
                                .cio = &r->conn->io, .uio = &px->uc->io, .up = to_up,
                                .down = early};
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
        tg_request_tunnel_active(r);
        return;
    }
    tg_request_finalize(r, 1); /* logs it, closes both sides */
}

/* After a pump of a stream tunnel: account for the bytes it moved; end the
 * request when it is over (the carrier counts the client's bytes itself). */
static void px_stunnel_done(tg_proxy_t *px, int alive)
{
    tg_tunnel_stream_t *t = px->stunnel;
    tg_worker->tunnel_bytes_up += t->up_bytes - px->tunnel_up;
    tg_worker->tunnel_bytes_down += t->down_bytes - px->tunnel_down;
    int moved = t->up_bytes != px->tunnel_up || t->down_bytes != px->tunnel_down;
    px->tunnel_up = t->up_bytes;
    px->tunnel_down = t->down_bytes;
    if (alive > 0) {
        if (moved)
            tg_request_tunnel_active(px->r);
        return;
    }
    tg_request_finalize(px->r, alive < 0); /* logs it; the upstream closes */
}

static void px_stunnel_event(tg_proxy_t *px, int drained)
{
    px_stunnel_done(px, tg_tunnel_stream_pump(px->stunnel, drained));
}

static void px_on_tunnel(tg_request_t *r)
{
    px_tunnel_event(r->handler_ctx);
}

static const tg_handler_events_t px_events = {
    .on_body = px_on_body,
    .on_drained = px_on_drained,
    .on_blocked = px_on_blocked,
    .on_tunnel = px_on_tunnel,
    .on_abort = px_on_abort,
};

tg_module_t tg_proxy_module = {
    .name = "proxy",
    .directives = tg_proxy_directives,
    .create_conf = tg_proxy_create_conf,
    .merge_conf = tg_proxy_merge_conf,
    .on_route = px_route,
    .on_content = px_content,
    .explain = tg_proxy_explain,
};
