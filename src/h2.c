/* The HTTP/2 codec: one client connection's frames <-> requests and
 * responses, as a carrier of the request layer (tg_carrier_t), on nghttp2's
 * server session (framing, HPACK, flow control, stream states and most of
 * RFC 9113's checks are nghttp2's; no frame is parsed here).
 *
 * Each stream carries one request: a tg_h2_stream_t (h2_stream.c) embeds
 * the tg_request_t and its own arena (blocks from the worker's cache,
 * released when the request ends), so one connection carries many requests
 * at once. This file is the connection; h2_stream.c the stream and the
 * carrier functions; h2_mem.c nghttp2's allocator (its frame buffer's and
 * empty stream map's pages go back to the kernel once the connection has been
 * idle for REST_MS).
 *
 * Bytes: tg_conn_read fills the connection's input buffer, which goes to
 * nghttp2_session_mem_recv; nghttp2_session_mem_send's frames are copied
 * into the connection's output buffers (one, or up to OUT_BUFS over TLS)
 * and written once per round of the loop (see flush_later): over TLS up to
 * four records per write, and a round's frames that make one record wait
 * for the send batch (conn_send). nghttp2's
 * callbacks only record what happened (a request head is complete, body
 * bytes arrived, a stream closed, queued bytes were taken); the request
 * layer and the content handlers are called afterwards, from one place
 * (dispatch), never from inside nghttp2. So a stream opened and reset
 * within one read never starts a request (rapid reset).
 *
 * Backpressure per stream: the response body a handler queues (send_body)
 * is read by the stream's data provider when nghttp2 may send it (the
 * client's windows allow, the output buffer has room); with nothing queued
 * the provider defers, and send_body resumes it. The handler's on_drained
 * comes when its queued bytes were taken, per stream, so a client that
 * stops reading one stream stalls that stream only. A request body is
 * buffered per stream up to the stream window (http2_stream_window) and
 * handed to body_pull; WINDOW_UPDATE returns only what the handler consumed
 * (automatic window updates are off).
 *
 * WebSocket over HTTP/2 (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is
 * sent, and an extended CONNECT with :protocol "websocket" becomes the
 * HTTP/1.1 upgrade request it stands for (src/h2_head.c). When the handler
 * answers 101 (the proxy, after the upstream's), the stream is answered
 * :status 200 and becomes the tunnel: tunnel_begin returns 1, and the
 * handler moves the client's bytes with body_pull/body_consumed (DATA in,
 * WINDOW_UPDATE for what the upstream took) and the upstream's with
 * send_body/flush (DATA out, as the client's windows allow), per stream like
 * any body. The stream's timer is then the tunnel's idle timer.
 *
 * Limits and abuse: http2_max_streams (SETTINGS_MAX_CONCURRENT_STREAMS,
 * REFUSED_STREAM past it), http2_max_header_size (431; a block decoding
 * past BOMB_FACTOR times it closes the connection), keepalive_requests
 * streams per connection (then GOAWAY; also at stream id 2^31-1), stream
 * ids that go backwards or repeat (GOAWAY PROTOCOL_ERROR), idle_timeout
 * (GOAWAY, close),
 * send_timeout per stream (a zero window frees the stream and its upstream),
 * nghttp2's limits on CONTINUATION frames, SETTINGS entries, queued ACKs and
 * RST_STREAM rate, and a budget for frames that carry no request (PING,
 * SETTINGS, PRIORITY, WINDOW_UPDATE, RST_STREAM, empty DATA): past it,
 * GOAWAY ENHANCE_YOUR_CALM and close. See docs/http2.md. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <nghttp2/nghttp2.h>
#include "h2.h"
#include "h2_stream.h"
#include "h2_conf.h"
#include "h2_head.h"
#include "request.h"
#include "conn.h"
#include "log.h"
#include "sendq.h"
#include "stats.h"
#include "worker.h"

#define READ_ROUNDS 8        /* input buffers per socket event, then others' turn */
#define FLOOD_BURST 1000.0   /* frames without a request, at once */
#define FLOOD_RATE 100.0     /* ... and per second after that */
#define RST_RATE 33.0        /* RST_STREAM per second after a burst of 2 x http2_max_streams */
#define BOMB_FACTOR 4        /* a header block decoding past 4 x the limit: abuse, close */
#define OUT_BUFS 4           /* over TLS: records per write (tls_batch.h's batch) */
#define REST_MS 250          /* idle this long: the session's spare pages go back (h2_mem.c) */

static const tg_proto_t h2_proto;
static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
/* The output of a loop round: between the loop's poll (round_open_w, an
 * ev_check) and the next one (round_flush_w, an ev_prepare), a connection's
 * frames are written once, when the round ends, not at every pump: the
 * responses of several streams that complete in one round leave in one TLS
 * write instead of one each. */
static struct ev_loop *round_loop;
static ev_check round_open_w;
static ev_prepare round_flush_w;
static int round_open;
static int round_ending; /* in round_flush_cb: the send batch is about to go */
static tg_h2_conn_t *flush_list;

static void pump(tg_h2_conn_t *hc);


/* ---- helpers --------------------------------------------------------------- */

/* The idle connection's timer: first the rest, at the end of which the
 * session's spare pages go back (h2_on_timeout), then what is left of
 * idle_timeout. Not at once: a busy connection is idle between its bursts. */
static void idle_timer(tg_h2_conn_t *hc)
{
    tg_msec_t t = hc->cc->idle_timeout;
    hc->resting = t <= 0 || t > REST_MS;
    tg_conn_timer(hc->c, hc->resting ? REST_MS : t);
}

static void conn_fail(tg_h2_conn_t *hc)
{
    if (hc->dead)
        return;
    hc->dead = 1;
    /* closed from the loop: a handler may be on the stack */
    ev_feed_event(tg_worker->loop, &hc->c->timer, EV_TIMER);
}

static void goaway(tg_h2_conn_t *hc, uint32_t code)
{
    if (hc->goaway && code == NGHTTP2_NO_ERROR)
        return;
    hc->goaway = 1;
    nghttp2_submit_goaway(hc->ng, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(hc->ng), code, NULL, 0);
}

/* A token bucket: take one; it refills at `rate` per second up to `burst`.
 * -1: empty. */
static int rate_drain(double *tokens, double *at, double burst, double rate)
{
    double now = ev_now(tg_worker->loop);
    *tokens += (now - *at) * rate;
    *at = now;
    if (*tokens > burst)
        *tokens = burst;
    *tokens -= 1.0;
    return *tokens < 0 ? -1 : 0;
}

/* A frame that carries no request costs one token; the budget refills with
 * time and with the DATA the connection is sent. -1: flood. */
static int flood_charge(tg_h2_conn_t *hc)
{
    return rate_drain(&hc->flood_tokens, &hc->flood_at, FLOOD_BURST, FLOOD_RATE);
}

static void flood_close(tg_h2_conn_t *hc, const char *what)
{
    if (!hc->flood) {
        hc->flood = 1;
        tg_stats_count(TG_STATS_H2_FLOOD, 1);
        tg_log(TG_LOG_INFO, "client %s: HTTP/2 %s, connection closed", tg_conn_peer(hc->c), what);
    }
    nghttp2_session_terminate_session(hc->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    hc->goaway = 1;
}

static tg_h2_stream_t *stream_of(tg_h2_conn_t *hc, int32_t id)
{
    return nghttp2_session_get_stream_user_data(hc->ng, id);
}

static void stream_start(tg_h2_stream_t *s)
{
    tg_h2_conn_t *hc = s->hc;
    tg_request_t *r = &s->r;
    tg_h2_head_t head = {s->method, s->path, s->authority, s->cookie, s->head_only, s->protocol};
    int st = s->too_large ? 431 : tg_h2_head_request(r, &head, hc->cc->client_max_uri);
    s->websocket = st == 0 && r->upgrade;
    s->active = 1;
    hc->nactive++;
    tg_worker->h2_streams++;
    hc->c->state = TG_CONN_BUSY;
    tg_stats_count(TG_STATS_H2_REQUESTS, 1);
    if (st == 431)
        tg_log(TG_LOG_INFO, "client %s: HTTP/2 request header list too large",
               tg_conn_peer(hc->c));
    tg_request_process(r, hc->c->listen, st);
}

/* ---- nghttp2 callbacks: they record, dispatch acts ---------------------------- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    tg_h2_conn_t *hc = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (hc->goaway || hc->nstreams >= (uint32_t)hc->conf->max_streams * 2) {
        /* finished requests still leaving, or going away: refuse */
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    tg_h2_stream_t *s = tg_h2_stream_create(hc, f->hd.stream_id);
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, s);
    /* this one is the last: keepalive_requests, or no stream id is left */
    if (++hc->nstarted >= (uint32_t)hc->cc->keepalive_requests || f->hd.stream_id == INT32_MAX)
        goaway(hc, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags;
    tg_h2_conn_t *hc = ud;
    /* HPACK bomb: a small block that decodes huge. Past the limit the
     * stream is answered 431; far past it decoding stops and so does the
     * connection, whatever the block is for (a refused stream, trailers). */
    hc->block_bytes += nlen + vlen + 32;
    if (hc->block_bytes > (size_t)hc->conf->max_header_size * BOMB_FACTOR) {
        flood_close(hc, "header block bomb");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    tg_h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    int trailer = f->headers.cat != NGHTTP2_HCAT_REQUEST;
    if (s == NULL || trailer != (s->active || s->ev_ready))
        return 0; /* refused, or trailers of a request already over */
    s->hdr_bytes += nlen + vlen + 32;
    if (trailer) {
        if (s->hdr_bytes > (size_t)hc->conf->max_header_size)
            return 0; /* kept while head and trailers fit http2_max_header_size */
        return tg_h2_head_trailer(&s->r, (tg_str_t){(const char *)name, nlen},
                                  (tg_str_t){(const char *)value, vlen}) == 0
                   ? 0
                   : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (s->too_large || s->hdr_bytes > (size_t)hc->conf->max_header_size) {
        s->too_large = 1; /* answered 431 when the block ends; nothing more kept */
        return 0;
    }
    tg_str_t v = tg_arena_str(&s->arena, (tg_str_t){(const char *)value, vlen});
    if (v.p == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (nlen && name[0] == ':') {
        /* nghttp2 checked the set: each once, before the fields, the
         * required ones there, none unknown */
        tg_str_t n = {(const char *)name, nlen};
        if (tg_str_eq_lit(n, ":method"))
            s->method = v;
        else if (tg_str_eq_lit(n, ":path"))
            s->path = v;
        else if (tg_str_eq_lit(n, ":authority"))
            s->authority = v;
        else if (tg_str_eq_lit(n, ":protocol"))
            s->protocol = v; /* nghttp2 allows it: we sent ENABLE_CONNECT_PROTOCOL */
        return 0;
    }
    if (nlen == 6 && memcmp(name, "cookie", 6) == 0)
        return tg_h2_head_cookie(&s->arena, &s->cookie, v) == 0
                   ? 0
                   : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if ((int64_t)s->r.headers.n >= hc->cc->client_max_headers) {
        s->too_large = 1;
        return 0;
    }
    tg_str_t n = tg_arena_str(&s->arena, (tg_str_t){(const char *)name, nlen});
    if (n.p == NULL || tg_headers_add(&s->arena, &s->r.headers, n, v) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    tg_h2_conn_t *hc = ud;
    tg_h2_stream_t *s = f->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, f->hd.stream_id)
                                     : NULL;
    if (s)
        s->r.bytes_in += 9 + f->hd.length;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (s == NULL) {
            /* refused: it costs like a control frame */
            if (flood_charge(hc) != 0) {
                flood_close(hc, "refused stream flood");
                return NGHTTP2_ERR_CALLBACK_FAILURE;
            }
            break;
        }
        if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            s->body_done = 1;
            if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
                s->head_only = 1;
        }
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST && (f->hd.flags & NGHTTP2_FLAG_END_HEADERS))
            tg_h2_stream_event(s, 0);
        else if (s->body_done && s->body_wait)
            tg_h2_stream_event(s, 1); /* trailers end the body */
        break;
    case NGHTTP2_DATA:
        if (s && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            s->body_done = 1;
            if (s->body_wait)
                tg_h2_stream_event(s, 1);
        }
        break;
    case NGHTTP2_RST_STREAM:
        tg_stats_count(TG_STATS_H2_RESETS, 1);
        if (rate_drain(&hc->rst_tokens, &hc->rst_at, (double)hc->conf->max_streams * 2,
                       RST_RATE) != 0) {
            flood_close(hc, "stream reset flood (rapid reset)");
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* Stream ids only grow (RFC 9113 5.1.1). nghttp2 keeps no closed streams
 * (no_closed_streams), so it ignores a HEADERS frame for a closed stream
 * whose id it passed: a client could replay ids for ever. A HEADERS frame
 * not above the last id that names no open stream is a connection error,
 * unless we reset that stream lately (its trailers may have left the client
 * before our RST_STREAM arrived, RFC 9113 5.1 "closed"). */
static int stream_id_reused(tg_h2_conn_t *hc, int32_t id)
{
    if (id > hc->last_id) {
        hc->last_id = id;
        return 0;
    }
    if (nghttp2_session_find_stream(hc->ng, id))
        return 0; /* trailers */
    for (int i = 0; i < RESET_IDS; i++)
        if (hc->reset_ids[i] == id)
            return 0;
    return 1;
}

/* A connection error of type PROTOCOL_ERROR (the caller logged why). */
static int protocol_error(tg_h2_conn_t *hc)
{
    nghttp2_session_terminate_session(hc->ng, NGHTTP2_PROTOCOL_ERROR);
    hc->goaway = 1;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* Every frame's header: frames that carry no request pay the flood budget
 * (PRIORITY frames are not passed to on_frame_recv at all). */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *ud)
{
    tg_h2_conn_t *hc = ud;
    int idle = 0;
    switch (hd->type) {
    case NGHTTP2_HEADERS:
        hc->block_bytes = 0; /* a new header block (CONTINUATION frames go on with it) */
        if (hd->stream_id && stream_id_reused(hc, hd->stream_id)) {
            tg_log(TG_LOG_INFO, "client %s: HTTP/2 HEADERS on stream %d, the last was %d: "
                                "connection closed",
                   tg_conn_peer(hc->c), hd->stream_id, hc->last_id);
            return protocol_error(hc);
        }
        break;
    case NGHTTP2_DATA:
        idle = hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM);
        break;
    case NGHTTP2_PRIORITY:
        /* With SETTINGS_NO_RFC7540_PRIORITIES nghttp2 skips PRIORITY frames
         * whole; their framing rule still holds (RFC 9113 6.3). */
        if (hd->stream_id == 0) {
            tg_log(TG_LOG_INFO, "client %s: HTTP/2 PRIORITY frame on stream 0: connection closed",
                   tg_conn_peer(hc->c));
            return protocol_error(hc);
        }
        idle = 1;
        break;
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_RST_STREAM:
        idle = 1;
        break;
    default:
        break;
    }
    if (idle && flood_charge(hc) != 0) {
        flood_close(hc, "control frame flood");
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    tg_h2_conn_t *hc = ud;
    tg_h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL || (!s->active && !s->ev_ready)) {
        nghttp2_session_consume(ng, id, len); /* nobody reads it */
        return 0;
    }
    s->body_received += (int64_t)len;
    while (len) {
        tg_buf_t *b = s->nin ? s->in[s->nin - 1] : NULL;
        if (b == NULL || b->last == b->end) {
            if (s->nin == BODY_BUFS || (b = tg_buf_get()) == NULL)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* past the window */
            s->in[s->nin++] = b;
        }
        size_t k = tg_buf_room(b) < len ? tg_buf_room(b) : len;
        memcpy(b->last, data, k);
        b->last += k;
        data += k;
        len -= k;
    }
    if (s->body_wait)
        tg_h2_stream_event(s, 1);
    (void)hc;
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    tg_h2_stream_t *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL)
        return 0;
    s->ng_closed = 1;
    if (s->active && (code != NGHTTP2_NO_ERROR || !s->resp_done))
        tg_h2_stream_event(s, 3);
    else
        s->hc->events = 1; /* the stream may be freed */
    if (!s->active)
        tg_h2_stream_over(s);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    tg_h2_conn_t *hc = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        tg_stats_count(TG_STATS_H2_GOAWAY, 1);
        if (f->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM && !hc->flood) {
            /* nghttp2's own limits (the RST_STREAM rate) */
            hc->flood = 1;
            tg_stats_count(TG_STATS_H2_FLOOD, 1);
            tg_log(TG_LOG_INFO, "client %s: HTTP/2 stream reset flood, connection closed",
                   tg_conn_peer(hc->c));
        }
        hc->goaway = 1;
        return 0;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        hc->reset_ids[hc->nreset++ % RESET_IDS] = f->hd.stream_id;
        return 0;
    }
    if (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS)
        return 0;
    tg_h2_stream_t *s = stream_of(hc, f->hd.stream_id);
    if (s == NULL)
        return 0;
    if (s->active)
        s->r.bytes_out += 9 + f->hd.length;
    if (f->hd.type == NGHTTP2_DATA)
        hc->flood_tokens += 1.0; /* a client reading answers earns its WINDOW_UPDATEs */
    if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->body_done)
        /* answered before the body ended: the rest is not wanted (RFC 9113 8.1) */
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int err, void *ud)
{
    (void)ng;
    tg_h2_conn_t *hc = ud;
    tg_log(TG_LOG_INFO, "client %s: invalid HTTP/2 frame (type %d, stream %d): %s",
           tg_conn_peer(hc->c), f->hd.type, f->hd.stream_id, nghttp2_strerror(err));
    return 0;
}

/* ---- output ------------------------------------------------------------------- */

/* nghttp2's frames into `o` until it is full (1: more may come) or nghttp2
 * has nothing more (0); -1: nghttp2 failed. A frame that does not fit waits
 * in hc->pend for the next buffer. */
static int out_fill(tg_h2_conn_t *hc, tg_buf_t *o)
{
    while (o->last < o->end) {
        if (hc->npend == 0) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(hc->ng, &d);
            if (n < 0) {
                tg_log(TG_LOG_ERROR, "HTTP/2: %s", nghttp2_strerror((int)n));
                return -1;
            }
            if (n == 0)
                return 0;
            tg_h2_mem_sent(&hc->mem, d, (size_t)n);
            hc->pend = d;
            hc->npend = (size_t)n;
        }
        tg_buf_fill(o, &hc->pend, &hc->npend);
    }
    return 1;
}

/* `w` bytes of the output buffers were written: the buffers emptied go back
 * to the pool, but the last, which stays for the next frames. */
static void out_consume(tg_h2_conn_t *hc, size_t w)
{
    while (hc->out) {
        tg_buf_t *o = hc->out;
        size_t k = tg_buf_len(o) < w ? tg_buf_len(o) : w;
        o->pos += k;
        w -= k;
        if (o->pos < o->last)
            return; /* the socket took only part of it */
        if (o->next == NULL) {
            o->pos = o->last = o->start;
            return;
        }
        hc->out = o->next;
        tg_buf_put(o);
    }
}

/* Nothing waits in the output buffers. */
static int out_empty(const tg_h2_conn_t *hc)
{
    return hc->npend == 0 && (hc->out == NULL || (hc->out->pos == hc->out->last && hc->out->next == NULL));
}

/* The socket does not take more: wait for it, within send_timeout. */
static void conn_blocked(tg_h2_conn_t *hc)
{
    hc->blocked = 1;
    hc->resting = 0;
    tg_conn_want(hc->c, EV_READ | EV_WRITE);
    tg_conn_timer(hc->c, hc->cc->send_timeout);
}

/* Frames into the output buffers, the buffers to the socket, until nghttp2
 * has nothing more or the socket is full. One buffer without TLS; over TLS
 * up to OUT_BUFS, one record each, which the batched TLS write sends with
 * one call; no more are filled while records the socket did not take are
 * held (tls_batch.h). At the end of a round (the send batch open), a
 * last write that makes one record waits for the batch as ciphertext: the
 * connection counts as blocked until the batch has run and calls h2_on_io
 * with EV_WRITE. 0, or -1: the connection failed. */
static int conn_send(tg_h2_conn_t *hc)
{
    tg_conn_t *c = hc->c;
    if (hc->blocked)
        return 0; /* the write event comes */
    for (int more = 1;;) {
        if (c->ssl && more) {
            /* records the socket did not take go before more frames are made
             * (not after a write that nghttp2 had no more for: it may wait
             * for the send batch, and the loop ends there) */
            int rc = tg_conn_tls_flush(c, 0);
            if (rc == 0) {
                conn_blocked(hc);
                return 0;
            }
            if (rc < 0)
                return -1;
        }
        struct iovec iov[OUT_BUFS];
        int n = 0;
        more = 1;
        for (tg_buf_t **bp = &hc->out; more && n < (c->ssl ? OUT_BUFS : 1); bp = &(*bp)->next) {
            if (*bp == NULL) {
                if ((*bp = tg_buf_get()) == NULL)
                    return -1;
                (*bp)->next = NULL;
            }
            more = out_fill(hc, *bp);
            if (more < 0)
                return -1;
            if ((*bp)->pos < (*bp)->last)
                iov[n++] = (struct iovec){(*bp)->pos, tg_buf_len(*bp)};
        }
        if (n == 0)
            break;
        ssize_t w;
        if (c->ssl) /* the last of the round's frames (nghttp2 had no more) may wait */
            w = tg_conn_tls_writev_batch(c, iov, n, round_ending && !more);
        else
            w = tg_conn_write(c, iov[0].iov_base, iov[0].iov_len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_blocked(hc);
                return 0;
            }
            return -1;
        }
        out_consume(hc, (size_t)w);
    }
    if (c->ssl == NULL)
        return 0;
    /* records the socket did not take, or one held for the send batch */
    switch (tg_conn_tls_flush(c, round_ending)) {
    case 1:
        return 0;
    case 2:
        hc->blocked = 1; /* nothing to arm: the batch calls back */
        return 0;
    case 0:
        conn_blocked(hc);
        return 0;
    default:
        return -1;
    }
}

/* ---- dispatch: the request layer and handlers, outside nghttp2 ------------------ */

/* The streams with events, in the order they came; events queued meanwhile
 * are handled in the same call. A queued stream is not freed before its
 * turn: settle frees, after pump has emptied the queue (or h2_on_close,
 * with the whole connection). */
static void dispatch(tg_h2_conn_t *hc)
{
    hc->events = 0;
    tg_h2_stream_t *s;
    while ((s = hc->evq) != NULL) {
        hc->evq = s->ev_next;
        if (hc->evq == NULL)
            hc->evq_tail = NULL;
        s->queued = 0;
        tg_request_t *r = &s->r;
        if (s->ng_closed && !s->active) {
            s->ev_ready = s->ev_body = s->ev_drained = s->ev_reset = 0; /* never started */
            continue;
        }
        if (s->ev_reset) {
            s->ev_reset = s->ev_body = s->ev_drained = 0;
            if (s->active) {
                tg_log(TG_LOG_INFO, "client %s reset HTTP/2 stream %d", tg_conn_peer(hc->c),
                       s->id);
                tg_request_finalize(r, 1);
            }
            continue;
        }
        if (s->ev_ready) {
            s->ev_ready = 0;
            if (!hc->dead)
                stream_start(s);
            continue;
        }
        if (s->ev_body && s->active) {
            s->ev_body = 0;
            if (s->body_wait) {
                s->body_wait = 0;
                if (!s->tunnel)
                    ev_timer_stop(tg_worker->loop, &s->timer);
                tg_request_on_body(r);
            }
        }
        if (s->ev_drained && s->active) {
            s->ev_drained = 0;
            if (s->want_drained) {
                s->want_drained = 0;
                if (r->handler)
                    tg_request_on_drained(r);
                else if (s->resp_done)
                    tg_request_finalize(r, 0);
            }
        }
    }
}

/* After a round: free the streams that are over, release idle buffers, set
 * the connection's state and timer, close when it is done. */
static void settle(tg_h2_conn_t *hc)
{
    tg_conn_t *c = hc->c;
    while (hc->over) {
        tg_h2_stream_t *s = hc->over;
        hc->over = s->over_next;
        tg_h2_stream_free(s);
    }
    if (hc->dead)
        return;
    int sent = !hc->blocked && out_empty(hc);
    if (sent && !nghttp2_session_want_read(hc->ng) && !nghttp2_session_want_write(hc->ng)) {
        conn_fail(hc); /* GOAWAY sent (or the session ended): close */
        return;
    }
    if (sent && hc->goaway && hc->nstreams == 0 && tg_worker->shutting_down &&
        !nghttp2_session_want_write(hc->ng)) {
        conn_fail(hc);
        return;
    }
    if (hc->nactive == 0 && c->state != TG_CONN_IDLE) {
        c->state = TG_CONN_IDLE;
        if (!hc->blocked)
            idle_timer(hc);
    } else if (hc->nactive && c->state == TG_CONN_BUSY && !hc->blocked &&
               ev_is_active(&c->timer)) {
        ev_timer_stop(tg_worker->loop, &c->timer); /* the streams have their timers */
    }
    if (hc->nactive == 0 && c->ibuf && c->ibuf->pos == c->ibuf->last)
        tg_conn_release_input(c);
    if (hc->out && out_empty(hc)) {
        tg_buf_put(hc->out);
        hc->out = NULL;
    }
}

/* In an open round: put the connection on the flush list and say so (1);
 * its frames are written when the round ends. */
static int flush_later(tg_h2_conn_t *hc)
{
    if (!round_open)
        return 0;
    if (hc->flush_pprev == NULL) {
        hc->flush_next = flush_list;
        if (flush_list)
            flush_list->flush_pprev = &hc->flush_next;
        flush_list = hc;
        hc->flush_pprev = &flush_list;
    }
    return 1;
}

static void flush_unlink(tg_h2_conn_t *hc)
{
    if (hc->flush_pprev == NULL)
        return;
    *hc->flush_pprev = hc->flush_next;
    if (hc->flush_next)
        hc->flush_next->flush_pprev = hc->flush_pprev;
    hc->flush_next = NULL;
    hc->flush_pprev = NULL;
}

static void round_open_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    round_open = 1;
}

/* The round ends: every waiting connection writes. The round is closed
 * first, so what the writes cause (drained streams answering more) is
 * written at once: nothing waits while the loop polls. */
static void round_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    round_open = 0;
    round_ending = 1;
    while (flush_list) {
        tg_h2_conn_t *hc = flush_list;
        flush_unlink(hc);
        pump(hc);
    }
    round_ending = 0;
}

static void pump(tg_h2_conn_t *hc)
{
    if (hc->depth) {
        hc->again = 1;
        return;
    }
    hc->depth = 1;
    do {
        hc->again = 0;
        if (!hc->dead && !flush_later(hc) && conn_send(hc) != 0)
            conn_fail(hc);
        if (hc->events)
            dispatch(hc);
    } while (hc->again || hc->events);
    hc->depth = 0;
    settle(hc);
}

/* ---- input ---------------------------------------------------------------------- */

static void conn_read(tg_h2_conn_t *hc)
{
    tg_conn_t *c = hc->c;
    for (int round = 0; round < READ_ROUNDS && !hc->dead; round++) {
        if (c->ibuf == NULL && (c->ibuf = tg_buf_get()) == NULL) {
            conn_fail(hc);
            return;
        }
        tg_buf_t *b = c->ibuf;
        int drained = 0; /* the socket had no more (nothing decrypted waits either) */
        if (b->pos == b->last) {
            b->pos = b->last = b->start;
            size_t room = (size_t)(b->end - b->last);
            int more;
            ssize_t n;
            if (c->rbatch) {
                n = tg_conn_read_batched(c, b->last, room, &more);
            } else {
                n = tg_conn_read(c, b->last, room);
                more = n == (ssize_t)room;
            }
            if (n == TG_SENDQ_WAIT)
                return; /* h2_on_io runs again after the batch */
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            /* a short read took what the socket had: the next read would
             * only say EAGAIN, and more bytes wake the loop again (level-
             * triggered epoll) */
            drained = n > 0 && !more && !tg_conn_has_pending(c);
            if (n <= 0) {
                if (hc->nactive && n == 0)
                    tg_log(TG_LOG_INFO, "client %s closed its HTTP/2 connection with %u "
                                        "requests in flight",
                           tg_conn_peer(c), hc->nactive);
                else if (hc->nactive) {
                    const char *why = strerror(errno);
                    tg_log(TG_LOG_INFO, "client %s: reading its HTTP/2 connection failed "
                                        "(%s) with %u requests in flight",
                           tg_conn_peer(c), why, hc->nactive);
                }
                conn_fail(hc);
                return;
            }
            b->last += n;
        }
        ssize_t rv = nghttp2_session_mem_recv(hc->ng, (const uint8_t *)b->pos, tg_buf_len(b));
        if (rv < 0) {
            if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS || rv == NGHTTP2_ERR_FLOODED ||
                rv == NGHTTP2_ERR_TOO_MANY_SETTINGS)
                flood_close(hc, nghttp2_strerror((int)rv));
            else if (!hc->flood)
                tg_log(TG_LOG_INFO, "client %s: HTTP/2: %s", tg_conn_peer(c),
                       nghttp2_strerror((int)rv));
            b->pos = b->last;
            conn_send(hc); /* the GOAWAY nghttp2 queued, if the socket takes it */
            conn_fail(hc);
            return;
        }
        b->pos += rv;
        pump(hc); /* requests whose head arrived start before the next read */
        if (drained)
            return;
    }
    /* more may wait, in the socket or decrypted in TLS: come back after others */
    if (!hc->dead)
        ev_feed_event(tg_worker->loop, &c->io, EV_READ);
}

/* ---- the connection --------------------------------------------------------- */

static void h2_on_io(tg_conn_t *c, int revents)
{
    tg_h2_conn_t *hc = c->codec;
    if (hc->dead)
        return;
    if (revents & EV_WRITE) {
        hc->blocked = 0;
        tg_conn_want(c, EV_READ);
        if (c->state == TG_CONN_BUSY)
            ev_timer_stop(tg_worker->loop, &c->timer);
        else
            idle_timer(hc);
    }
    /* reading goes on while the socket does not take our bytes: uploads
     * proceed; what nghttp2 queues meanwhile is bounded by its limits. The
     * first read of a readable socket goes in the send batch when it can:
     * conn_read comes back with its bytes after the batch. */
    if (revents & EV_READ) {
        if (c->rbatch || (c->ibuf && c->ibuf->pos < c->ibuf->last) ||
            !tg_conn_read_batch_start(c))
            conn_read(hc);
    }
    pump(hc);
}

static void h2_on_timeout(tg_conn_t *c)
{
    tg_h2_conn_t *hc = c->codec;
    if (hc->dead) {
        tg_conn_close(c);
        return;
    }
    if (hc->blocked) {
        tg_log(TG_LOG_INFO, "client %s: HTTP/2 connection not read for send_timeout",
               tg_conn_peer(c));
        tg_conn_close(c);
        return;
    }
    if (hc->nactive == 0 && hc->resting) {
        hc->resting = 0;
        if (hc->npend == 0 && !nghttp2_session_want_write(hc->ng))
            tg_h2_mem_idle(&hc->mem); /* no frame half sent: its buffer is dead */
        tg_msec_t t = hc->cc->idle_timeout;
        tg_conn_timer(c, t > 0 ? t - REST_MS : 0);
        return;
    }
    if (hc->nactive == 0) {
        /* idle_timeout: say goodbye, then close */
        goaway(hc, NGHTTP2_NO_ERROR);
        conn_send(hc);
        tg_conn_close(c);
    }
}

static void h2_on_shutdown(tg_conn_t *c)
{
    tg_h2_conn_t *hc = c->codec;
    if (hc->dead) {
        tg_conn_close(c);
        return;
    }
    if (!hc->notice && !hc->goaway) {
        /* first round: a notice; the next one (50 ms later, after the
         * client's in-flight HEADERS) the GOAWAY with the last stream */
        hc->notice = 1;
        nghttp2_submit_shutdown_notice(hc->ng);
    } else {
        goaway(hc, NGHTTP2_NO_ERROR);
    }
    pump(hc);
    if (!hc->dead && hc->goaway && hc->nstreams == 0) {
        conn_send(hc);
        tg_conn_close(c);
    }
}

static void h2_on_close(tg_conn_t *c)
{
    tg_h2_conn_t *hc = c->codec;
    if (hc == NULL)
        return;
    hc->depth++;
    flush_unlink(hc);
    while (hc->streams) {
        tg_h2_stream_t *s = hc->streams;
        if (s->active) {
            /* as h1: the close is not an answer, no log phase */
            tg_request_t *r = &s->r;
            const tg_handler_events_t *ev = r->handler;
            r->handler = NULL;
            if (ev && ev->on_abort)
                ev->on_abort(r);
            s->active = 0;
            hc->nactive--;
            tg_worker->h2_streams--;
        }
        s->ng_closed = 1;
        tg_h2_stream_free(s);
    }
    nghttp2_session_del(hc->ng);
    tg_buf_put_list(hc->out);
    free(hc);
    c->codec = NULL;
}

static const tg_proto_t h2_proto = {
    .name = "HTTP/2",
    .on_io = h2_on_io,
    .on_timeout = h2_on_timeout,
    .on_close = h2_on_close,
    .on_shutdown = h2_on_shutdown,
};

static int setup_callbacks(void)
{
    if (callbacks)
        return 0;
    if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, on_begin_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, on_invalid_frame);
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_no_closed_streams(options, 1);
    nghttp2_option_set_max_continuations(options, 8);
    nghttp2_option_set_max_settings(options, 32);
    nghttp2_option_set_max_outbound_ack(options, 1000);
    nghttp2_option_set_max_deflate_dynamic_table_size(options, 0);
    return 0;
}

void tg_h2_start(tg_conn_t *c)
{
    tg_server_t *srv = c->listen->default_server;
    tg_h2_conn_t *hc = calloc(1, sizeof(*hc));
    if (hc == NULL || setup_callbacks() != 0) {
        free(hc);
        tg_log(TG_LOG_ERROR, "out of memory starting HTTP/2");
        tg_conn_close(c);
        return;
    }
    if (round_loop != tg_worker->loop) {
        round_loop = tg_worker->loop;
        ev_check_init(&round_open_w, round_open_cb);
        ev_check_start(round_loop, &round_open_w);
        ev_unref(round_loop); /* neither keeps the loop running */
        ev_prepare_init(&round_flush_w, round_flush_cb);
        ev_prepare_start(round_loop, &round_flush_w);
        ev_unref(round_loop);
    }
    hc->c = c;
    hc->pump = pump;
    hc->conf = tg_h2_conf(srv->mconf);
    hc->cc = tg_core_conf(srv->mconf);
    hc->flood_tokens = FLOOD_BURST;
    hc->flood_at = hc->rst_at = ev_now(tg_worker->loop);
    hc->rst_tokens = (double)hc->conf->max_streams * 2;
    /* the stream window is what a stream may have buffered: BODY_BUFS - 1
     * buffers (one may be partly consumed) */
    size_t cap = (BODY_BUFS - 1) * tg_buf_pool_size();
    hc->window = (size_t)hc->conf->stream_window < cap ? (size_t)hc->conf->stream_window : cap;
    /* rapid reset is ours (ENHANCE_YOUR_CALM, counted); nghttp2's own
     * limiter (INTERNAL_ERROR) stays behind it as a backstop */
    nghttp2_option_set_stream_reset_rate_limit(options, (uint64_t)hc->conf->max_streams * 4 + 100,
                                               66);
    tg_h2_mem_init(&hc->mem);
    if (nghttp2_session_server_new3(&hc->ng, callbacks, hc, options, &hc->mem.mem) != 0) {
        free(hc);
        tg_log(TG_LOG_ERROR, "out of memory starting HTTP/2");
        tg_conn_close(c);
        return;
    }
    c->codec = hc;
    c->proto = &h2_proto;
    c->state = TG_CONN_IDLE;
    tg_stats_count(TG_STATS_H2_CONNS, 1);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)hc->conf->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)hc->window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)hc->conf->max_header_size},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}, /* RFC 8441: WebSocket streams */
    };
    uint64_t conn_window = (uint64_t)hc->window * (uint64_t)hc->conf->max_streams;
    if (conn_window > 0x7fffffff)
        conn_window = 0x7fffffff;
    if (nghttp2_submit_settings(hc->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(hc->ng, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)conn_window) != 0) {
        tg_conn_close(c);
        return;
    }
    idle_timer(hc);
    tg_conn_want(c, EV_READ);
    conn_read(hc); /* the preface is in c->ibuf; more is often there too */
    pump(hc);
}
