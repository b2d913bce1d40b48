/* An HTTP/2 stream (h2_stream.c): its life (made when a request's HEADERS
 * begin, freed when both the request and nghttp2 are done with it) and the
 * request carrier it is (tg_carrier_t): the response head and body through
 * a data provider, the request body with flow control, tunnels (RFC 8441),
 * its timer. The connection (h2.c) feeds it nghttp2's events and runs its
 * handler's; see h2.c for the whole picture and docs/http2.md. */
#include <stdlib.h>
#include <string.h>
#include "h2_stream.h"
#include "h2_head.h"
#include "log.h"
#include "worker.h"

#define STREAM_CACHE_MAX 1024

static const tg_carrier_t h2_carrier;
static tg_h2_stream_t *stream_cache;
static int stream_cached;

static void stream_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

#define HS(r) ((tg_h2_stream_t *)(r))

/* ---- streams --------------------------------------------------------------- */

tg_h2_stream_t *tg_h2_stream_create(tg_h2_conn_t *hc, int32_t id)
{
    tg_h2_stream_t *s = stream_cache;
    if (s) {
        stream_cache = s->next;
        stream_cached--;
    } else if ((s = malloc(sizeof(*s))) == NULL) {
        return NULL;
    }
    memset(s, 0, sizeof(*s));
    tg_arena_init(&s->arena, 0);
    s->r.ctx = tg_arena_alloc(&s->arena, (size_t)tg_nmodules * sizeof(void *));
    if (s->r.ctx == NULL) {
        tg_arena_destroy(&s->arena);
        free(s);
        return NULL;
    }
    tg_request_init(&s->r, &s->arena, &h2_carrier, hc->c);
    s->hc = hc;
    s->id = id;
    ev_init(&s->timer, stream_timer_cb);
    s->next = hc->streams;
    if (s->next)
        s->next->prev = s;
    hc->streams = s;
    hc->nstreams++;
    return s;
}

/* Give the body bytes not consumed back to the connection window, and the
 * buffers to the pool. */
void tg_h2_stream_release_body(tg_h2_stream_t *s)
{
    size_t left = 0;
    for (int i = 0; i < s->nin; i++) {
        left += tg_buf_len(s->in[i]);
        tg_buf_put(s->in[i]);
    }
    s->nin = 0;
    s->given = 0;
    tg_spans_reset(&s->body);
    if (left)
        nghttp2_session_consume(s->hc->ng, s->id, left);
}

void tg_h2_stream_free(tg_h2_stream_t *s)
{
    tg_h2_conn_t *hc = s->hc;
    ev_timer_stop(tg_worker->loop, &s->timer);
    free(s->trailers);
    tg_h2_stream_release_body(s);
    tg_arena_destroy(&s->arena);
    if (!s->ng_closed)
        nghttp2_session_set_stream_user_data(hc->ng, s->id, NULL);
    if (s->prev)
        s->prev->next = s->next;
    else
        hc->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    hc->nstreams--;
    if (stream_cached < STREAM_CACHE_MAX) {
        s->next = stream_cache;
        stream_cache = s;
        stream_cached++;
    } else {
        free(s);
    }
}

void tg_h2_stream_event(tg_h2_stream_t *s, int which)
{
    tg_h2_conn_t *hc = s->hc;
    switch (which) {
    case 0: s->ev_ready = 1; break;
    case 1: s->ev_body = 1; break;
    case 2: s->ev_drained = 1; break;
    default: s->ev_reset = 1; break;
    }
    if (!s->queued) {
        s->queued = 1;
        s->ev_next = NULL;
        if (hc->evq_tail)
            hc->evq_tail->ev_next = s;
        else
            hc->evq = s;
        hc->evq_tail = s;
    }
    hc->events = 1;
}

void tg_h2_stream_over(tg_h2_stream_t *s)
{
    if (s->over)
        return;
    s->over = 1;
    s->over_next = s->hc->over;
    s->hc->over = s;
}

/* The data provider: copy what the handler queued. */
static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    tg_h2_stream_t *s = src->ptr;
    tg_iovq_t *q = &s->out;
    size_t n = 0;
    for (int i = q->i; i < q->n && n < length; i++) {
        size_t k = q->iov[i].iov_len < length - n ? q->iov[i].iov_len : length - n;
        memcpy(buf + n, q->iov[i].iov_base, k);
        n += k;
    }
    if (n) {
        uint64_t ignored = 0;
        tg_iovq_consume(q, n, &ignored);
        if (q->pending == 0) {
            if (!s->tunnel) /* a tunnel's timer is its idle timer */
                ev_timer_stop(tg_worker->loop, &s->timer);
            if (s->want_drained)
                tg_h2_stream_event(s, 2);
        } else if (ev_is_active(&s->timer)) {
            ev_timer_again(tg_worker->loop, &s->timer); /* progress */
        }
    }
    if (q->pending == 0 && s->resp_done) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        /* trailers end the stream instead (gRPC's grpc-status): from the
         * request while it lives, else the copy h2_finalize kept */
        size_t tn = s->ntrailers;
        nghttp2_nv *tv = s->trailers;
        if (tv == NULL && s->active && s->r.resp_trailers.n)
            tv = tg_h2_head_trailers(&s->r, &tn);
        if (tv && nghttp2_submit_trailer(ng, id, tv, tn) == 0) /* nghttp2 copies them */
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        return (ssize_t)n;
    }
    if (n == 0) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- carrier -------------------------------------------------------------------- */

static int h2_send_header(tg_request_t *r)
{
    tg_h2_stream_t *s = HS(r);
    if (s->ng_closed)
        return -1;
    if (s->websocket && r->status == 101) {
        /* RFC 8441 5: the WebSocket is open; the tunnel's bytes follow as
         * DATA. The accept answered our key, not the client's. */
        r->status = 200;
        r->resp_no_body = 0;
        r->resp_content_length = -1;
        tg_headers_remove(&r->resp_headers, TG_STR("Sec-WebSocket-Accept"));
    } else if (s->websocket && r->status >= 200 && r->status < 300) {
        /* a 2xx would tell the client its WebSocket is open: only a
         * tunnel may send one (a `return 200` location, a static file) */
        tg_log(TG_LOG_INFO, "client %s: HTTP/2 WebSocket stream %d answered %d without a "
                            "tunnel, sent as 501", tg_conn_peer(s->hc->c), s->id, r->status);
        r->status = 501;
    }
    size_t n;
    nghttp2_nv *nva = tg_h2_head_response(r, &n);
    nghttp2_data_provider prd = {.source = {.ptr = s}, .read_callback = data_read};
    if (nva == NULL ||
        nghttp2_submit_response(s->hc->ng, s->id, nva, n, r->resp_no_body ? NULL : &prd) != 0)
        return -1;
    if (r->resp_no_body)
        s->resp_done = 1;
    r->header_sent = 1;
    return 0;
}

static int h2_send_body(tg_request_t *r, const struct iovec *v, int n, size_t len, int last)
{
    tg_h2_stream_t *s = HS(r);
    if (s->ng_closed || s->hc->dead)
        return -1;
    if (len && !r->resp_no_body) {
        if (s->out.n + n > TG_IOVQ_MAX)
            return -1; /* callers queue one round, then wait for on_drained */
        for (int i = 0; i < n; i++)
            if (v[i].iov_len)
                tg_iovq_add(&s->out, v[i].iov_base, v[i].iov_len);
    }
    if (last)
        s->resp_done = 1;
    if (s->deferred && (s->out.pending || s->resp_done)) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->hc->ng, s->id);
    }
    return 0;
}

static int h2_flush(tg_request_t *r, int batched)
{
    (void)batched;
    tg_h2_stream_t *s = HS(r);
    tg_h2_conn_t *hc = s->hc;
    if (s->ng_closed || hc->dead)
        return -1;
    hc->pump(hc);
    if (hc->dead || (s->ng_closed && !s->resp_done))
        return -1;
    if (s->out.pending == 0)
        return 1;
    s->want_drained = 1;
    if (!ev_is_active(&s->timer)) {
        /* waiting for the client's window (or the socket): send_timeout */
        s->timer.repeat = (double)hc->cc->send_timeout / 1000.0;
        ev_timer_again(tg_worker->loop, &s->timer);
    }
    return 0;
}

/* The response trailers in one malloc'd block that outlives the request's
 * arena, for a data provider that reaches the end after the request ended
 * (frames are written when the loop round ends). 0, or -1 out of memory. */
static int keep_trailers(tg_h2_stream_t *s)
{
    size_t n, size = 0;
    nghttp2_nv *nv = tg_h2_head_trailers(&s->r, &n);
    if (nv == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        size += nv[i].namelen + nv[i].valuelen;
    nghttp2_nv *t = malloc(n * sizeof(*t) + size);
    if (t == NULL)
        return -1;
    uint8_t *p = (uint8_t *)(t + n);
    for (size_t i = 0; i < n; i++) {
        t[i] = nv[i];
        t[i].name = memcpy(p, nv[i].name, nv[i].namelen);
        p += nv[i].namelen;
        t[i].value = memcpy(p, nv[i].value, nv[i].valuelen);
        p += nv[i].valuelen;
    }
    s->trailers = t;
    s->ntrailers = n;
    return 0;
}

static void h2_finalize(tg_request_t *r, int abort)
{
    tg_h2_stream_t *s = HS(r);
    tg_h2_conn_t *hc = s->hc;
    if (!s->active)
        return;
    s->active = 0;
    s->body_wait = s->want_drained = 0;
    hc->nactive--;
    tg_worker->h2_streams--;
    hc->c->nrequests++;
    ev_timer_stop(tg_worker->loop, &s->timer);
    if (!abort && s->resp_done && !s->ng_closed && r->resp_trailers.n && !r->resp_no_body &&
        keep_trailers(s) != 0)
        abort = 1; /* the stream cannot end as the upstream ended it */
    if ((abort || !s->resp_done) && !s->ng_closed) {
        tg_iovq_reset(&s->out); /* the handler's memory: not read again */
        s->resp_done = 1;
        nghttp2_submit_rst_stream(hc->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    }
    tg_h2_stream_release_body(s);
    /* the data provider reads only s->out and s->resp_done from now on */
    tg_arena_destroy(&s->arena);
    if (s->ng_closed)
        tg_h2_stream_over(s);
    hc->pump(hc);
}

/* The handler's spans: every buffered body byte. */
static int h2_body_pull(tg_request_t *r, tg_spans_t **spans, int *done)
{
    tg_h2_stream_t *s = HS(r);
    tg_h2_conn_t *hc = s->hc;
    tg_core_conf_t *cc = tg_core_conf(r->loc_conf);
    *spans = &s->body;
    if (s->ng_closed && !s->body_done)
        return -499;
    /* a tunnel's bytes are no body: no size limit, no timer but its idle one */
    if (!s->tunnel && cc->client_max_body_size && s->body_received > cc->client_max_body_size)
        return -413;
    if (r->content_length >= 0 && s->body_received > r->content_length)
        return -400;
    if (r->expect_continue && !s->continue_sent && !s->body_done && s->nin == 0) {
        static const nghttp2_nv cont[] = {
            {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE}};
        s->continue_sent = 1;
        nghttp2_submit_headers(hc->ng, NGHTTP2_FLAG_NONE, s->id, NULL, cont, 1, NULL);
        hc->pump(hc);
    }
    size_t buffered = 0;
    for (int i = 0; i < s->nin; i++)
        buffered += tg_buf_len(s->in[i]);
    if (s->body.len == 0) {
        /* the handler consumed what it had: hand out everything buffered
         * (spans it has not consumed stay as they are, as with HTTP/1.1:
         * tg_request_body_read leaves a body it read whole in them) */
        for (int i = 0; i < s->nin; i++)
            if (tg_buf_len(s->in[i]))
                tg_spans_add(&s->body, s->in[i]->pos, tg_buf_len(s->in[i]));
        s->given = s->body.len;
    }
    if (s->body.len || s->body_done) {
        *done = s->body_done && buffered == s->given;
        return 1;
    }
    s->body_wait = 1;
    if (!s->tunnel) {
        s->timer.repeat = (double)cc->body_timeout / 1000.0;
        ev_timer_again(tg_worker->loop, &s->timer);
    }
    return 0;
}

static void h2_body_consumed(tg_request_t *r)
{
    tg_h2_stream_t *s = HS(r);
    size_t n = s->given;
    s->given = 0;
    tg_spans_reset(&s->body);
    if (n == 0)
        return; /* bytes of the request's own (a body read whole) */
    /* drop the given bytes; emptied buffers go back, the last one stays
     * (but not in a tunnel: an idle WebSocket holds no buffer) */
    size_t left = n;
    int w = 0;
    for (int i = 0; i < s->nin; i++) {
        tg_buf_t *b = s->in[i];
        size_t k = tg_buf_len(b) < left ? tg_buf_len(b) : left;
        b->pos += k;
        left -= k;
        if (b->pos == b->last && (i < s->nin - 1 || s->tunnel)) {
            tg_buf_put(b);
            continue;
        }
        if (b->pos == b->last)
            b->pos = b->last = b->start;
        s->in[w++] = b;
    }
    s->nin = w;
    nghttp2_session_consume(s->hc->ng, s->id, n); /* WINDOW_UPDATE for what went on */
    s->hc->pump(s->hc);
}

/* After the 101 of an RFC 8441 stream (answered 200 by h2_send_header):
 * the stream's own body functions are the tunnel (1). Only a WebSocket
 * stream has an upgrade (RFC 9113 8.2.2 forbids Upgrade otherwise). */
static int h2_tunnel_begin(tg_request_t *r, tg_msec_t idle_ms, tg_buf_t **early)
{
    tg_h2_stream_t *s = HS(r);
    *early = NULL; /* DATA that came early waits in s->in, pulled like the rest */
    if (!s->websocket || s->ng_closed)
        return -1;
    s->tunnel = 1;
    s->timer.repeat = (double)idle_ms / 1000.0;
    ev_timer_again(tg_worker->loop, &s->timer);
    return 1;
}

static void h2_tunnel_active(tg_request_t *r)
{
    tg_h2_stream_t *s = HS(r);
    if (s->active)
        ev_timer_again(tg_worker->loop, &s->timer);
}

static const tg_carrier_t h2_carrier = {
    .protocol = "HTTP/2.0",
    .send_header = h2_send_header,
    .send_body = h2_send_body,
    .flush = h2_flush,
    .finalize = h2_finalize,
    .body_pull = h2_body_pull,
    .body_consumed = h2_body_consumed,
    .tunnel_begin = h2_tunnel_begin,
    .tunnel_active = h2_tunnel_active,
};

/* ---- timers ----------------------------------------------------------------- */

static void stream_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    tg_h2_stream_t *s = (tg_h2_stream_t *)((char *)t - offsetof(tg_h2_stream_t, timer));
    tg_h2_conn_t *hc = s->hc;
    ev_timer_stop(tg_worker->loop, t);
    if (!s->active)
        return;
    hc->depth++; /* handlers run: rounds wait until they return */
    if (s->tunnel) {
        tg_log(TG_LOG_INFO, "client %s: HTTP/2 WebSocket stream %d idle, reset",
               tg_conn_peer(hc->c), s->id);
        tg_request_finalize(&s->r, 1);
    } else if (s->body_wait) {
        s->body_wait = 0;
        tg_log(TG_LOG_INFO, "client %s timed out sending its request body (HTTP/2 stream %d)",
               tg_conn_peer(hc->c), s->id);
        tg_request_error(&s->r, 408);
    } else {
        tg_log(TG_LOG_INFO, "client %s: HTTP/2 stream %d not read for send_timeout, reset",
               tg_conn_peer(hc->c), s->id);
        tg_request_finalize(&s->r, 1);
    }
    hc->depth--;
    hc->pump(hc);
}
