/* The proxy over HTTP/2 to the upstream (`protocol http2`): a request,
 * whatever carried it in (HTTP/1.1 or an HTTP/2 stream), goes as one stream
 * of a multiplexed connection from this worker's pool (src/upstream_h2.c).
 *
 * The head is the one the HTTP/1.1 proxy sends (src/proxy_head.c: the same
 * header rules, proxy_set_header, X-Forwarded-*), as HTTP/2 fields: the
 * pseudo-header fields from the method, the upstream's scheme, Host and
 * proxy_pass's URI rule, names lowercased, the body's length when known,
 * `te: trailers` when the client asked for trailers.
 *
 * Bodies stream both ways with backpressure: the client's body rounds go
 * into the stream's DATA as the upstream's windows allow, and a round is
 * handed back to the client reader only once it went (so the client is not
 * read faster than the upstream takes it); the response body is passed on
 * one round at a time, and the upstream's window opens only for what the
 * client took.
 *
 * Attempts: a stream the upstream did not process (REFUSED_STREAM, past a
 * GOAWAY's last stream, on a connection that failed before it went out) is
 * opened again on a fresh connection, and a connection that cannot be made
 * counts against the peer and moves to the next one, as long as the request
 * can be sent again (its body in memory, or no body round handed back yet)
 * and nothing went to the client. A stream reset after it was processed, or
 * a connection lost under it, answers 502 (the client's stream is reset
 * once the response started). */
#include <stdlib.h>
#include <string.h>
#include <llhttp.h>
#include "proxy_conf.h"
#include "proxy_head.h"
#include "proxy_h2.h"
#include "upstream_h2.h"
#include "upstream_dyn.h"
#include "grpc.h"
#include "grpc_web.h"
#include "log.h"
#include "stats.h"
#include "var.h"
#include "worker.h"

#define MAX_STALE_RETRIES 8 /* refused streams retried on a fresh connection */

typedef struct {
    tg_h2up_stream_t st; /* first: the stream's callbacks get &px->st */
    tg_request_t *r;
    tg_proxy_conf_t *conf;
    tg_peer_t *peer;
    uint64_t tried;
    int attempts, max_attempts, refusals;
    nghttp2_nv *nv;
    size_t nnv;
    tg_spans_t *replay; /* the whole request body, in memory at the start */
    tg_spans_t out;     /* response body handed to the client, not drained yet */
    size_t inflight;    /* its bytes */
    ev_timer timer;     /* read_timeout: the upstream silent for so long */
    ev_timer deadline;  /* a gRPC call's grpc-timeout */
    tg_grpc_web_t web;  /* a gRPC-Web call translated (web.kind != 0) */
    unsigned replayable : 1;    /* the body is whole in memory (or there is none) */
    unsigned body_consumed : 1; /* a body round was handed back: no more attempts */
    unsigned body_wait : 1;     /* the client's next body round is awaited */
    unsigned req_done : 1;      /* the whole request went */
    unsigned client_blocked : 1;
    unsigned last_sent : 1;     /* the end of the response was handed to the client */
    unsigned too_many : 1;      /* more response fields than TG_PROXY_MAX_RESP_HEADERS */
    unsigned grpc : 1;          /* a gRPC call: the gateway's errors are gRPC statuses */
} px2_t;

static const tg_handler_events_t px2_events;
static void px2_attempt(px2_t *px);
static void px2_event(tg_h2up_stream_t *st);

/* ---- the head ------------------------------------------------------------------ */

static int nv_add(tg_arena_t *a, nghttp2_nv *nv, size_t *n, tg_str_t name, tg_str_t value,
                  int lower)
{
    uint8_t *nm = (uint8_t *)name.p;
    if (lower) {
        if ((nm = tg_arena_alloc_nz(a, name.len + 1)) == NULL)
            return -1;
        for (size_t i = 0; i < name.len; i++) {
            char c = name.p[i];
            nm[i] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
    }
    nv[*n] = (nghttp2_nv){nm, (uint8_t *)value.p, name.len, value.len,
                          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    (*n)++;
    return 0;
}

/* The request head as HTTP/2 fields in r's arena. 0, or -1. */
static int px2_head(px2_t *px)
{
    tg_request_t *r = px->r;
    tg_header_t first[32];
    tg_headers_t hs = {first, 0, 32};
    tg_str_t target;
    if (tg_proxy_head_fields(r, px->conf, 0, &hs) != 0 ||
        tg_proxy_uri_target(r, &px->conf->pass_uri, &target) != 0)
        return -1;
    nghttp2_nv *nv = tg_arena_alloc_nz(r->arena, (hs.n + 6) * sizeof(*nv));
    if (nv == NULL)
        return -1;
    size_t n = 0;
    tg_str_t authority = r->host.len ? r->host : r->upstream->name;
    for (uint32_t i = 0; i < hs.n; i++)
        if (tg_str_caseeq_lit(hs.h[i].name, "host"))
            authority = hs.h[i].value;
    char *len = NULL;
    if (r->content_length >= 0 && !r->chunked && px->web.kind != TG_GRPC_WEB_TEXT &&
        (len = tg_arena_printf(r->arena, "%lld", (long long)r->content_length)) == NULL)
        return -1;
    tg_header_t *te = tg_headers_find(&r->headers, TG_STR("TE"));
    if (nv_add(r->arena, nv, &n, TG_STR(":method"), r->method_name, 0) != 0 ||
        nv_add(r->arena, nv, &n, TG_STR(":scheme"),
               r->upstream->tls ? TG_STR("https") : TG_STR("http"), 0) != 0 ||
        nv_add(r->arena, nv, &n, TG_STR(":authority"), authority, 0) != 0 ||
        nv_add(r->arena, nv, &n, TG_STR(":path"), target, 0) != 0 ||
        (len && nv_add(r->arena, nv, &n, TG_STR("content-length"), tg_str_c(len), 0) != 0) ||
        (((te && tg_str_has_token(te->value, "trailers")) || px->web.kind) &&
         nv_add(r->arena, nv, &n, TG_STR("te"), TG_STR("trailers"), 0) != 0))
        return -1;
    for (uint32_t i = 0; i < hs.n; i++) {
        tg_str_t value = hs.h[i].value;
        if (tg_str_caseeq_lit(hs.h[i].name, "host") ||
            (px->web.kind && !tg_grpc_web_field(&px->web, hs.h[i].name, &value)))
            continue;
        if (nv_add(r->arena, nv, &n, hs.h[i].name, value, 1) != 0)
            return -1;
    }
    px->nv = nv;
    px->nnv = n;
    return 0;
}

/* A response field, inside nghttp2: copied to the arena (nghttp2's memory
 * is gone after the callback). Trailers go to r->resp_trailers: an HTTP/2
 * client gets them after the body (gRPC's grpc-status), an HTTP/1.1 one
 * not. */
static int px2_field(tg_h2up_stream_t *st, tg_str_t name, tg_str_t value, int trailer)
{
    px2_t *px = (px2_t *)st;
    tg_request_t *r = px->r;
    tg_headers_t *hs = trailer ? &r->resp_trailers : &r->resp_headers;
    if (hs->n >= TG_PROXY_MAX_RESP_HEADERS) {
        px->too_many = 1;
        return -1;
    }
    tg_str_t n = tg_arena_str(r->arena, name), v = tg_arena_str(r->arena, value);
    if (n.p == NULL || v.p == NULL)
        return -1;
    return tg_headers_add(r->arena, hs, n, v);
}

/* ---- attempts ------------------------------------------------------------------ */

static void px2_detach(px2_t *px)
{
    tg_request_t *r = px->r;
    ev_timer_stop(tg_worker->loop, &px->timer);
    ev_timer_stop(tg_worker->loop, &px->deadline);
    tg_h2up_close(&px->st);
    if (px->peer) {
        tg_balance_done(r->upstream, px->peer, 0, (tg_msec_t)(ev_now(tg_worker->loop) * 1000));
        px->peer = NULL;
    }
    r->handler = NULL;
    r->handler_ctx = NULL;
}

/* No (whole) answer from the upstream: `status` (a gRPC call gets its gRPC
 * status: src/request.c), or, once the response started, the client's
 * stream reset; a gRPC call's response ends with trailers saying why
 * instead, where the client can take them. */
static void px2_give_up(px2_t *px, int status)
{
    tg_request_t *r = px->r;
    if (r->upstream_time == 0)
        r->upstream_time = ev_now(tg_worker->loop) - r->upstream_start;
    px2_detach(px);
    if (!r->header_sent) {
        tg_request_error(r, status);
        return;
    }
    char *code = tg_arena_printf(r->arena, "%d", tg_grpc_status_for_http(status));
    tg_spans_t none = {.n = 0}, *out = &none;
    r->resp_trailers.n = 0;
    if (!px->grpc || px->client_blocked || px->last_sent || code == NULL ||
        tg_headers_add(r->arena, &r->resp_trailers, TG_STR("grpc-status"), tg_str_c(code)) ||
        tg_headers_add(r->arena, &r->resp_trailers, TG_STR("grpc-message"),
                       tg_str_c(tg_status_reason(status))) ||
        (px->web.kind && (out = tg_grpc_web_response_body(&px->web, r, &none, 1)) == NULL) ||
        tg_request_send_body(r, out, 1) != 0 || tg_request_flush(r) < 0) {
        tg_request_finalize(r, 1);
        return;
    }
    tg_request_finalize(r, 0);
}

static void px2_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    px2_t *px = w->data;
    tg_log(TG_LOG_INFO, "gRPC call %.*s: grpc-timeout reached, DEADLINE_EXCEEDED",
           TG_STR_FMT(px->r->uri));
    px2_give_up(px, 504);
}

static int px2_can_resend(const px2_t *px)
{
    return (px->replayable || !px->body_consumed) && !px->r->header_sent;
}

/* The attempt ended before a response: try again where it makes sense. */
static void px2_failed(px2_t *px, int peer_failed, int refused)
{
    tg_request_t *r = px->r;
    tg_peer_t *p = px->peer;
    px->peer = NULL;
    tg_balance_done(r->upstream, p, peer_failed, (tg_msec_t)(ev_now(tg_worker->loop) * 1000));
    char *s = tg_arena_printf(r->arena, "%.*s%s502", TG_STR_FMT(r->upstream_tries),
                              r->upstream_tries.len ? ", " : "");
    if (s)
        r->upstream_tries = tg_str_c(s);
    if (px2_can_resend(px)) {
        if (refused && !peer_failed && px->refusals++ < MAX_STALE_RETRIES) {
            /* not processed: the same peer again, on a connection with room */
            px->peer = p;
            tg_balance_take(p);
            px2_attempt(px);
            return;
        }
        if ((peer_failed || refused) && px->attempts < px->max_attempts) {
            tg_stats_peer_retry(r->upstream, p->index);
            px2_attempt(px);
            return;
        }
    }
    px2_give_up(px, 502);
}

/* The request body for the stream: the next round from the client. */
static void px2_pull(px2_t *px)
{
    tg_request_t *r = px->r;
    tg_h2up_stream_t *st = &px->st;
    if (px->req_done || !r->has_body || (st->src && !st->sent))
        return; /* nothing to pull, or the last round has not gone yet */
    if (st->src && st->sent) {
        st->src = NULL;
        if (!px->replayable) { /* a round pulled from the client: give it back */
            px->body_consumed = 1;
            tg_request_body_consumed(r);
        }
    }
    if (st->src_last) {
        px->req_done = 1;
        return;
    }
    tg_spans_t *spans;
    int done = 0;
    int rc = tg_request_body_pull(r, &spans, &done);
    if (rc == 0) {
        px->body_wait = 1;
        return;
    }
    px->body_wait = 0;
    if (rc > 0 && px->web.kind && (spans = tg_grpc_web_request_body(&px->web, r, spans, done)) == NULL)
        rc = -400; /* malformed base64: INTERNAL, as a gRPC status */
    if (rc < 0) {
        int status = -rc;
        px2_detach(px);
        if (status == 499 || r->header_sent)
            tg_request_finalize(r, 1);
        else
            tg_request_error(r, status);
        return;
    }
    st->src = spans;
    st->src_off = 0;
    st->sent = 0;
    st->src_last = done;
    tg_h2up_resume(st);
}

static void px2_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    px2_t *px = w->data;
    tg_log(TG_LOG_ERROR, "timed out reading from upstream %.*s (HTTP/2 stream)",
           TG_STR_FMT(px->r->upstream_addr));
    px2_give_up(px, 504);
}

static void px2_attempt(px2_t *px)
{
    tg_request_t *r = px->r;
    tg_upstream_t *u = r->upstream;
    tg_msec_t now = (tg_msec_t)(ev_now(tg_worker->loop) * 1000);
    if (px->peer == NULL) {
        if (px->attempts >= px->max_attempts) {
            px2_give_up(px, 502);
            return;
        }
        tg_str_t key = TG_NULL_STR;
        if (u->balance == TG_BALANCE_HASH && u->hash_key && tg_tpl_eval(r, u->hash_key, &key) != 0) {
            px2_give_up(px, 500);
            return;
        }
        tg_upstream_dyn_sync(u);
        if ((px->peer = tg_balance_pick(u, key, &px->tried, now)) == NULL) {
            tg_log(TG_LOG_ERROR, "no live upstream server in \"%.*s\" for %.*s",
                   TG_STR_FMT(u->name), TG_STR_FMT(r->uri));
            px2_give_up(px, 502);
            return;
        }
        px->attempts++;
    }
    r->upstream_addr = px->peer->name;
    r->resp_headers.n = 0;
    r->resp_trailers.n = 0;
    r->resp_content_length = -1;
    px->st.on_event = px2_event;
    px->st.on_field = px2_field;
    /* a body whole in memory goes at once (src NULL: an empty one) */
    px->st.src = px->replayable ? px->replay : NULL;
    px->st.src_last = px->replayable;
    px->req_done = px->replayable;
    if (tg_h2up_open(&px->st, u, px->peer, px->nv, px->nnv, r->has_body,
                     px->conf->connect_timeout) != 0) {
        tg_log_errno(TG_LOG_ERROR, "connect() to %.*s failed", TG_STR_FMT(px->peer->name));
        px2_failed(px, 1, 0);
        return;
    }
    px->timer.repeat = (double)px->conf->read_timeout / 1000.0;
    ev_timer_again(tg_worker->loop, &px->timer);
    if (!px->replayable)
        px2_pull(px);
}

/* ---- the response ---------------------------------------------------------------- */

static void px2_finish(px2_t *px)
{
    tg_request_t *r = px->r;
    px2_detach(px);
    tg_request_finalize(r, 0);
}

/* The head arrived: pass it on. 0, or -1 (answered). */
static int px2_send_head(px2_t *px)
{
    tg_request_t *r = px->r;
    r->status = r->upstream_status = px->st.status;
    tg_header_t *cl = tg_headers_find(&r->resp_headers, TG_STR("content-length"));
    int64_t len;
    if (cl && tg_parse_int(cl->value, &len) == 0 && len >= 0)
        r->resp_content_length = len;
    tg_proxy_head_clean_response(&r->resp_headers);
    if (px->st.ended && !px->st.trailers && tg_h2up_buffered(&px->st) == 0) {
        r->resp_no_body = 1; /* HEADERS with END_STREAM (gRPC's trailers-only) */
        if (r->resp_content_length < 0 && r->method != HTTP_HEAD)
            r->resp_content_length = 0; /* how an HTTP/1.1 client learns the end */
    }
    if (px->web.kind && tg_grpc_web_response_head(&px->web, r) != 0) {
        px2_give_up(px, 502);
        return -1;
    }
    if (!px->req_done)
        r->keepalive = 0; /* answered before the body was read */
    if (tg_request_send_header(r) != 0) {
        px2_give_up(px, 502);
        return -1;
    }
    return 0;
}

/* Hand the buffered response body (and its end) to the client. Returns 1
 * when the request is over, 0 otherwise. */
static int px2_forward(px2_t *px)
{
    tg_request_t *r = px->r;
    tg_h2up_stream_t *st = &px->st;
    while (!px->client_blocked && !px->last_sent) {
        size_t n = tg_h2up_buffered(st);
        int last = st->ended;
        if (n == 0 && !last)
            return 0;
        tg_spans_reset(&px->out);
        for (int i = 0; i < st->nin; i++)
            if (tg_buf_len(st->in[i]))
                tg_spans_add(&px->out, st->in[i]->pos, tg_buf_len(st->in[i]));
        tg_spans_t *out = &px->out;
        if ((px->web.kind && (out = tg_grpc_web_response_body(&px->web, r, out, last)) == NULL) ||
            tg_request_send_body(r, out, last) != 0) {
            px2_detach(px);
            tg_request_finalize(r, 1);
            return 1;
        }
        px->last_sent = last;
        if (last && r->upstream_time == 0)
            r->upstream_time = ev_now(tg_worker->loop) - r->upstream_start;
        int rc = tg_request_flush_batched(r);
        if (rc < 0) {
            px2_detach(px);
            tg_request_finalize(r, 1);
            return 1;
        }
        if (rc != 1) { /* on_drained (or on_blocked) comes; the wait is the client's */
            px->client_blocked = 1;
            ev_timer_stop(tg_worker->loop, &px->timer);
            px->inflight = n;
            return 0;
        }
        tg_h2up_consume(st, n);
    }
    if (px->last_sent && !px->client_blocked) {
        px2_finish(px);
        return 1;
    }
    return 0;
}

static void px2_event(tg_h2up_stream_t *st)
{
    px2_t *px = (px2_t *)st;
    tg_request_t *r = px->r;
    if (!st->closed && (st->sent || px->body_wait))
        px2_pull(px);
    if (r->handler_ctx != px)
        return; /* answered */
    if (st->closed && !st->head) {
        if (px->too_many)
            tg_log(TG_LOG_ERROR, "upstream %.*s sent more than %d response fields",
                   TG_STR_FMT(r->upstream_addr), TG_PROXY_MAX_RESP_HEADERS);
        else if (!st->refused)
            tg_log(TG_LOG_ERROR, "upstream %.*s reset the HTTP/2 stream before answering (code %u)",
                   TG_STR_FMT(r->upstream_addr), st->error);
        px2_failed(px, st->conn_failed, st->refused);
        return;
    }
    if (!st->head)
        return;
    ev_timer_again(tg_worker->loop, &px->timer); /* the upstream is alive */
    if (!r->header_sent && px2_send_head(px) != 0)
        return;
    if (px2_forward(px))
        return;
    if (st->closed && !st->ended) {
        tg_log(TG_LOG_ERROR, "upstream %.*s reset the HTTP/2 stream in the body (code %u)",
               TG_STR_FMT(r->upstream_addr), st->error);
        px2_give_up(px, 502);
    }
}

/* ---- the client's events ----------------------------------------------------------- */

static void px2_on_body(tg_request_t *r)
{
    px2_t *px = r->handler_ctx;
    if (px && px->body_wait)
        px2_pull(px);
}

static void px2_on_drained(tg_request_t *r)
{
    px2_t *px = r->handler_ctx;
    if (px == NULL || !px->client_blocked)
        return;
    px->client_blocked = 0;
    tg_h2up_consume(&px->st, px->inflight);
    px->inflight = 0;
    if (!px->last_sent)
        ev_timer_again(tg_worker->loop, &px->timer);
    if (px2_forward(px))
        return;
    if (px->st.closed && !px->st.ended)
        px2_give_up(px, 502);
}

static void px2_on_abort(tg_request_t *r)
{
    px2_t *px = r->handler_ctx;
    if (px)
        px2_detach(px); /* the upstream's stream is cancelled */
}

static const tg_handler_events_t px2_events = {
    .on_body = px2_on_body,
    .on_drained = px2_on_drained,
    .on_abort = px2_on_abort,
};

tg_rc_t tg_proxy_h2_content(tg_request_t *r, tg_proxy_conf_t *pc)
{
    px2_t *px = tg_arena_alloc(r->arena, sizeof(*px));
    if (px == NULL)
        return TG_ERROR;
    px->r = r;
    px->conf = pc;
    px->max_attempts = pc->next_upstream_tries > 0 ? (int)pc->next_upstream_tries
                                                   : r->upstream->npeers;
    ev_init(&px->timer, px2_timer_cb);
    px->timer.data = px;
    ev_init(&px->deadline, px2_deadline_cb);
    px->deadline.data = px;
    px->grpc = tg_request_is_grpc(r);
    tg_header_t *gt = px->grpc ? tg_headers_find(&r->headers, TG_STR("grpc-timeout")) : NULL;
    if (gt) {
        int64_t ms = tg_grpc_timeout_ms(gt->value);
        if (ms < 0) {
            tg_request_error(r, 400); /* INTERNAL, as a gRPC status */
            return TG_AGAIN;
        }
        ev_timer_set(&px->deadline, (double)ms / 1000.0, 0);
        ev_timer_start(tg_worker->loop, &px->deadline);
    }
    if (tg_grpc_web_start(&px->web, r, pc->grpc_web) < 0 || px2_head(px) != 0) {
        ev_timer_stop(tg_worker->loop, &px->deadline);
        return TG_ERROR;
    }
    tg_spans_t *spans;
    int done = 0;
    if (!r->has_body) {
        px->replayable = 1;
    } else if (tg_request_body_pull(r, &spans, &done) == 1 && done) {
        if (px->web.kind && (spans = tg_grpc_web_request_body(&px->web, r, spans, 1)) == NULL) {
            ev_timer_stop(tg_worker->loop, &px->deadline);
            tg_request_error(r, 400); /* malformed base64: INTERNAL, as a gRPC status */
            return TG_AGAIN;
        }
        if (spans->n && (px->replay = tg_arena_alloc_nz(r->arena, sizeof(*spans))) == NULL)
            return TG_ERROR;
        if (spans->n)
            *px->replay = *spans;
        px->replayable = 1;
    }
    r->handler = &px2_events;
    r->handler_ctx = px;
    r->upstream_start = ev_now(tg_worker->loop);
    px2_attempt(px);
    return TG_AGAIN;
}
