/* The HTTP/1.1 codec: one client connection's bytes <-> requests and
 * responses, as a carrier of the request layer (tg_carrier_t).
 *
 * A connection reads into one input buffer and feeds llhttp (strict mode).
 * The header block must fit in that buffer: header spans point into it, and
 * the request takes the buffer over (r->hbuf) once its headers are complete,
 * so no header byte is copied. The parser pauses at the end of each message;
 * pipelined bytes wait in the buffer until the response is written, which
 * keeps responses in order and bounds what one client can make us hold.
 *
 * After the header: validate (Host, framing, target) and hand the request to
 * the request layer (tg_request_process). Responses are serialized here with
 * HTTP/1.1 framing (Content-Length or chunked) and written through the
 * connection's output queue; when the client stops reading, the content
 * handler is told (flush returns 0, on_drained later), so memory stays
 * bounded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <llhttp.h>
#include "h1.h"
#include "request.h"
#include "conn.h"
#include "uri.h"
#include "log.h"
#include "sendq.h"
#include "stats.h"
#include "worker.h"

#define PARSER_CACHE_MAX 4096

/* A request on an HTTP/1.1 connection: the request and the codec's state. */
typedef struct {
    tg_request_t r;
    tg_spans_t *body;      /* body spans of the current parse round (made at the first) */
    int64_t body_received; /* decoded body bytes seen so far */
    double body_waited;     /* seconds spent waiting for body bytes (client_body_min_rate) */
    double body_wait_since; /* > 0: waiting since then */
    tg_iovq_t out;         /* response bytes waiting for the client */
    tg_buf_t *fbuf;        /* file body bytes read for TLS or a small body (h1_send_file) */
    int error_status;      /* set by a parser callback that fails */
    uint8_t last_cb;       /* 1 after a header field, 2 after a value */
    unsigned headers_done : 1;
    unsigned body_done : 1;
    unsigned resp_chunked : 1;
    unsigned resp_done : 1;  /* the whole response is queued */
    unsigned body_wait : 1;  /* the handler waits for request body bytes */
    unsigned continue_sent : 1;
} h1_req_t;

#define HR(r) ((h1_req_t *)(r))

static const tg_carrier_t h1_carrier, h1_tls_carrier;
static void h1_read(tg_conn_t *c);
static double body_rate_left(tg_request_t *r, tg_core_conf_t *cc);
static int h1_flush(tg_request_t *r, int batch);
static int h1_validate(tg_request_t *r);

static tg_core_conf_t *conn_core_conf(tg_conn_t *c)
{
    if (c->req && c->req->loc_conf)
        return tg_core_conf(c->req->loc_conf);
    return tg_core_conf(c->listen->default_server->mconf);
}

static llhttp_t *parser_of(tg_conn_t *c)
{
    return c->codec;
}

/* ---- parser callbacks ---------------------------------------------------- */

static tg_request_t *request_create(tg_conn_t *c)
{
    h1_req_t *hr = tg_arena_alloc(&c->arena, sizeof(*hr));
    if (hr == NULL)
        return NULL;
    tg_request_t *r = &hr->r;
    r->ctx = tg_arena_alloc(&c->arena, (size_t)tg_nmodules * sizeof(void *));
    if (r->ctx == NULL)
        return NULL;
    tg_request_init(r, &c->arena, c->ssl ? &h1_tls_carrier : &h1_carrier, c);
    return r;
}

static int on_message_begin(llhttp_t *p)
{
    tg_conn_t *c = p->data;
    c->req = request_create(c);
    if (c->req == NULL)
        return -1;
    c->state = TG_CONN_HEADERS;
    tg_conn_timer(c, conn_core_conf(c)->header_timeout);
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    tg_header_span_extend(&c->req->method_name, at, len);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    tg_header_span_extend(&c->req->uri, at, len);
    if ((int64_t)c->req->uri.len > conn_core_conf(c)->client_max_uri) {
        HR(c->req)->error_status = 414;
        return HPE_USER;
    }
    return 0;
}

/* The request line is complete. $request is that line as received when it
 * has one SP around the target (llhttp lets several through; h1_validate
 * answers 400 to those): method SP target SP "HTTP/1.x", one digit each. Set
 * here rather than in h1_validate so that a request failing later (a bad
 * header) still logs its line. */
static int on_version_complete(llhttp_t *p)
{
    tg_request_t *r = ((tg_conn_t *)p->data)->req;
    if (r->method_name.p && r->uri.p == r->method_name.p + r->method_name.len + 1 &&
        r->uri.p[r->uri.len] == ' ' && r->uri.p[r->uri.len + 1] == 'H')
        r->request_line = (tg_str_t){r->method_name.p, r->method_name.len + r->uri.len + 10};
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    tg_request_t *r = c->req;
    h1_req_t *hr = HR(r);
    if (hr->last_cb != 1) {
        if ((int64_t)r->headers.n >= conn_core_conf(c)->client_max_headers) {
            hr->error_status = 431;
            return HPE_USER;
        }
        if (tg_headers_add(r->arena, &r->headers, TG_NULL_STR, TG_NULL_STR) != 0)
            return -1;
        hr->last_cb = 1;
    }
    tg_header_span_extend(&r->headers.h[r->headers.n - 1].name, at, len);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    tg_request_t *r = c->req;
    HR(r)->last_cb = 2;
    tg_header_span_extend(&r->headers.h[r->headers.n - 1].value, at, len);
    return 0;
}

/* Field values: no control bytes but HTAB (RFC 9110 5.5); trailing
 * whitespace is not part of the value. */
static int on_header_value_complete(llhttp_t *p)
{
    tg_conn_t *c = p->data;
    tg_request_t *r = c->req;
    HR(r)->last_cb = 2;
    if (tg_header_value_finish(&r->headers.h[r->headers.n - 1]) != 0) {
        HR(r)->error_status = 400;
        return HPE_USER;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    tg_conn_t *c = p->data;
    tg_request_t *r = c->req;
    h1_req_t *hr = HR(r);
    if (p->http_major != 1) {
        hr->error_status = 505;
        return -1;
    }
    r->method = p->method;
    r->http_minor = p->http_minor;
    if (p->flags & F_CHUNKED)
        r->chunked = 1;
    else if (p->flags & F_CONTENT_LENGTH)
        r->content_length = (int64_t)p->content_length;
    r->has_body = r->chunked || r->content_length > 0;
    r->keepalive = llhttp_should_keep_alive(p) ? 1 : 0;
    r->upgrade = p->upgrade ? 1 : 0;
    hr->headers_done = 1;
    /* The header block ends here; the request keeps the buffer holding it. */
    r->hbuf = c->ibuf;
    return 0;
}

/* The request's body spans, made when the first body byte arrives (a request
 * without a body, most of them, does not carry the list). NULL: no memory. */
static tg_spans_t *body_spans(tg_request_t *r)
{
    h1_req_t *hr = HR(r);
    if (hr->body == NULL)
        hr->body = tg_arena_alloc(r->arena, sizeof(*hr->body));
    return hr->body;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    h1_req_t *hr = HR(c->req);
    tg_spans_t *s = body_spans(c->req);
    if (s == NULL)
        return -1;
    tg_spans_add(s, at, len);
    hr->body_received += (int64_t)len;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    tg_conn_t *c = p->data;
    HR(c->req)->body_done = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_version_complete = on_version_complete,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Parse what is buffered. Returns 0, or -1 on a protocol error (the request,
 * if any, carries the status to answer). */
static int h1_parse(tg_conn_t *c)
{
    tg_buf_t *b = c->ibuf;
    if (c->paused || b->pos == b->last)
        return 0;
    const char *from = b->pos;
    llhttp_errno_t err = llhttp_execute(parser_of(c), b->pos, (size_t)(b->last - b->pos));
    /* $request_length: what the parser took for the request (line, header
     * block, body with its framing); it pauses at the end of each message,
     * so one call never spans two requests */
    const char *to = err == HPE_OK ? b->last : llhttp_get_error_pos(parser_of(c));
    if (c->req && to)
        c->req->bytes_in += (uint64_t)(to - from);
    if (err == HPE_OK) {
        b->pos = b->last;
        return 0;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        b->pos = (char *)to;
        c->paused = 1;
        return 0;
    }
    tg_log(TG_LOG_INFO, "client %s sent an invalid request: %s", tg_conn_peer(c),
           llhttp_get_error_reason(parser_of(c)));
    return -1;
}


/* ---- parsers --------------------------------------------------------------- */


/* Parsers are kept only while a connection has bytes to parse: the worker's
 * free list recycles them. */
static llhttp_t *parser_get(tg_conn_t *c)
{
    tg_worker_t *w = tg_worker;
    llhttp_t *p = w->codec_cache;
    if (p) {
        w->codec_cache = p->data;
        w->codec_cached--;
    } else if ((p = malloc(sizeof(*p))) == NULL) {
        return NULL;
    }
    llhttp_init(p, HTTP_REQUEST, &parser_settings);
    p->data = c;
    return p;
}

/* An idle connection keeps neither its input buffer nor its parser. */
static void release_buffers(tg_conn_t *c)
{
    tg_worker_t *w = tg_worker;
    llhttp_t *p = parser_of(c);
    tg_conn_release_input(c);
    c->paused = 0;
    if (p == NULL)
        return;
    if (w->codec_cached < PARSER_CACHE_MAX) {
        p->data = w->codec_cache;
        w->codec_cache = p;
        w->codec_cached++;
    } else {
        free(p);
    }
    c->codec = NULL;
}

/* An error found while reading a request header: answer it and close. */
static void conn_fail_request(tg_conn_t *c, int status)
{
    tg_request_t *r = c->req;
    if (r == NULL && (r = request_create(c)) == NULL) {
        tg_conn_close(c);
        return;
    }
    c->req = r;
    c->state = TG_CONN_BUSY;
    r->keepalive = 0;
    llhttp_t *p = parser_of(c);
    if (p && p->http_major == 1)
        r->http_minor = p->http_minor; /* the request line was read */
    if (r->loc == NULL) {
        /* answered and logged by the listener's default server */
        r->server = c->listen->default_server;
        r->loc = r->server->root;
        r->loc_conf = r->loc->mconf;
    }
    tg_request_error(r, status);
}

static void h1_read(tg_conn_t *c)
{
    int readable = c->readable;
    c->readable = 0;
    if (readable && (c->ibuf == NULL || c->ibuf->pos == c->ibuf->last) &&
        tg_conn_read_batch_start(c))
        return; /* h1_on_io runs again after the batch */
    for (;;) {
        if ((c->ibuf == NULL && (c->ibuf = tg_buf_get()) == NULL) ||
            (c->codec == NULL && (c->codec = parser_get(c)) == NULL)) {
            tg_log(TG_LOG_ERROR, "out of memory for a client buffer");
            tg_conn_close(c);
            return;
        }
        tg_buf_t *b = c->ibuf;
        if (b->pos == b->last && !c->req)
            b->pos = b->last = b->start; /* nothing pending: reuse from the start */
        if (b->pos == b->last) {
            if (b->last == b->end) {
                /* The header block does not fit in one buffer. */
                int st = (c->req && c->req->uri.p && !HR(c->req)->last_cb) ? 414 : 431;
                conn_fail_request(c, st);
                return;
            }
            size_t room = (size_t)(b->end - b->last);
            ssize_t n = c->rbatch ? tg_conn_read_batched(c, b->last, room, NULL)
                                  : tg_conn_read(c, b->last, room);
            if (n == TG_SENDQ_WAIT)
                return; /* h1_on_io runs again after the batch */
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    if (c->state == TG_CONN_IDLE && b->last == b->start) {
                        /* idle: hold no memory while waiting */
                        release_buffers(c);
                        tg_arena_destroy(&c->arena);
                    }
                    tg_conn_want(c, tg_conn_read_events(c));
                    return;
                }
                tg_conn_close(c);
                return;
            }
            if (n == 0) {
                /* closed between requests, or mid-header: nothing to answer */
                tg_conn_close(c);
                return;
            }
            b->last += n;
        }
        if (h1_parse(c) != 0) {
            int st = (c->req && HR(c->req)->error_status) ? HR(c->req)->error_status : 400;
            conn_fail_request(c, st);
            return;
        }
        if (c->req && HR(c->req)->headers_done) {
            c->state = TG_CONN_BUSY;
            ev_timer_stop(tg_worker->loop, &c->timer);
            /* the read watcher is on while the request runs (to see a client
             * that goes away); it stays on across keep-alive requests, since
             * turning it off and on costs two epoll_ctl calls per request */
            tg_conn_want(c, EV_READ);
            tg_request_t *r = c->req;
            tg_stats_count(TG_STATS_H1_REQUESTS, 1);
            tg_request_process(r, c->listen, h1_validate(r));
            return;
        }
    }
}

static void write_ready(tg_conn_t *c)
{
    tg_request_t *r = c->req;
    int rc = h1_flush(r, 0);
    if (rc < 0) {
        tg_request_finalize(r, 1);
        return;
    }
    if (rc == 0) {
        tg_request_on_blocked(r); /* a batched write that went only in part */
        return;
    }
    if (r->handler)
        tg_request_on_drained(r);
    else if (HR(r)->resp_done)
        tg_request_finalize(r, 0);
}

static void h1_on_io(tg_conn_t *c, int revents)
{
    switch (c->state) {
    case TG_CONN_IDLE:
    case TG_CONN_HEADERS:
        c->readable = (revents & EV_READ) != 0;
        h1_read(c);
        return;
    case TG_CONN_TUNNEL:
        tg_request_on_tunnel(c->req);
        return;
    case TG_CONN_BUSY:
        if (revents & EV_WRITE) {
            write_ready(c);
            return;
        }
        if ((revents & EV_READ) && c->req && HR(c->req)->body_wait) {
            HR(c->req)->body_wait = 0;
            tg_request_on_body(c->req);
        } else if (revents & EV_READ) {
            /* Bytes while we are not reading the request: pipelined ones go
             * to the input buffer (parsed after this response) while it has
             * room, so a close behind them is still seen; a client that went
             * away (a long poll it gave up on) ends the request and its
             * upstream side. A full buffer stops the reading. */
            tg_buf_t *b = c->ibuf;
            char ch;
            if (c->rbatch) /* a read of the batch holds the next bytes: after this response */
                return;
            ssize_t n = (b && b->last < b->end)
                            ? tg_conn_read(c, b->last, (size_t)(b->end - b->last))
                            : recv(c->fd, &ch, 1, MSG_PEEK);
            if (n > 0 && b && b->last < b->end) {
                b->last += n;
                return;
            }
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                tg_log(TG_LOG_INFO, "client %s closed the connection before the response",
                       tg_conn_peer(c));
                tg_request_finalize(c->req, 1);
                return;
            }
            tg_conn_want(c, 0);
        }
        return;
    }
}

static void h1_on_timeout(tg_conn_t *c)
{
    switch (c->state) {
    case TG_CONN_HEADERS:
        tg_log(TG_LOG_INFO, "client %s timed out sending its request header", tg_conn_peer(c));
        conn_fail_request(c, 408);
        return;
    case TG_CONN_BUSY:
        if (c->req && HR(c->req)->body_wait && !c->req->header_sent) {
            tg_core_conf_t *cc = tg_core_conf(c->req->loc_conf);
            tg_log(TG_LOG_INFO, "client %s %s", tg_conn_peer(c),
                   cc->body_min_rate && body_rate_left(c->req, cc) <= 0.001
                       ? "sends its request body too slowly"
                       : "timed out sending its request body");
            HR(c->req)->body_wait = 0;
            tg_request_error(c->req, 408);
            return;
        }
        tg_log(TG_LOG_INFO, "client %s timed out", tg_conn_peer(c));
        tg_request_finalize(c->req, 1);
        return;
    case TG_CONN_TUNNEL:
        tg_log(TG_LOG_INFO, "client %s: upgraded connection idle, closed", tg_conn_peer(c));
        tg_request_finalize(c->req, 1);
        return;
    default:
        tg_conn_close(c);
    }
}


/* ---- request processing --------------------------------------------------- */

/* Checks the request as a whole and fills host, path, args. Returns 0 or the
 * status to answer. */
static int h1_validate(tg_request_t *r)
{
    tg_header_t *host = NULL;
    int nhost = 0;
    for (uint32_t i = 0; i < r->headers.n; i++) {
        tg_header_t *h = &r->headers.h[i];
        if (tg_str_caseeq_lit(h->name, "host")) {
            host = h;
            nhost++;
        } else if (tg_str_caseeq_lit(h->name, "expect")) {
            if (!tg_str_caseeq_lit(h->value, "100-continue"))
                return 417;
            r->expect_continue = r->http_minor == 1;
        } else if (r->http_minor == 0 && tg_str_caseeq_lit(h->name, "transfer-encoding")) {
            return 400; /* RFC 9112 6.1: faulty framing in HTTP/1.0 */
        }
    }
    /* one SP around the target (llhttp lets several through): see
     * on_version_complete */
    if (r->request_line.len == 0)
        return 400;
    if (nhost > 1 || (nhost == 0 && r->http_minor == 1))
        return 400;
    if (r->method == HTTP_CONNECT)
        return 405;
    tg_uri_t u;
    if (tg_uri_split(r->uri, &u) != 0)
        return 400;
    if (u.path.len == 1 && u.path.p[0] == '*' && r->method != HTTP_OPTIONS)
        return 400;
    if (u.authority.p) {
        /* absolute-form: the target names the host; a different Host header
         * is ambiguous, and ambiguity is how requests get smuggled */
        if (host && !tg_str_caseeq(host->value, u.authority))
            return 400;
        if (tg_request_set_host(r, u.authority) != 0)
            return 400;
        size_t off = (size_t)(u.path.p - r->uri.p);
        if (u.path.p < r->uri.p || off > r->uri.len)
            r->uri = TG_STR("/"); /* "http://h" */
        else
            r->uri = (tg_str_t){u.path.p, r->uri.len - off};
    } else if (host) {
        if (host->value.len == 0 && r->http_minor == 1)
            return 400;
        if (host->value.len && tg_request_set_host(r, host->value) != 0)
            return 400;
    }
    r->args = u.query.p ? u.query : (tg_str_t){"", 0};
    if (u.path.len == 1 && u.path.p[0] == '*') {
        r->path = u.path;
        return 0;
    }
    return tg_request_set_path(r, u.path);
}


/* "100 Continue" once, before the first body byte is wanted. Returns 0, or
 * -1 when the client is gone. */
static int send_continue(tg_request_t *r)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (HR(r)->continue_sent)
        return 0;
    tg_iovq_add(&HR(r)->out, cont, sizeof(cont) - 1);
    HR(r)->continue_sent = 1;
    r->header_bytes_out += sizeof(cont) - 1;
    return h1_flush(r, 0) < 0 ? -1 : 0;
}


static void rebase(tg_str_t *s, const char *lo, const char *hi, char *copy)
{
    if (s->p >= lo && s->p < hi)
        s->p = copy + (s->p - lo);
}

/* A tunnel lives long and idle: it keeps neither the input buffer nor the
 * parser. The header bytes still referenced (for the log phase at its end)
 * move into the request's arena first; every string of the request that
 * points into them is moved along. */
static void tunnel_release_buffers(tg_request_t *r)
{
    tg_conn_t *c = r->conn;
    tg_buf_t *b = c->ibuf;
    if (b == NULL || r->hbuf != b || b->pos != b->last)
        return; /* bytes not forwarded yet: keep it (the tunnel drains it) */
    const char *lo = b->start, *hi = b->last;
    char *copy = tg_arena_alloc_nz(r->arena, (size_t)(hi - lo) + 1);
    if (copy == NULL)
        return;
    memcpy(copy, lo, (size_t)(hi - lo));
    tg_str_t *fields[] = {&r->method_name, &r->uri, &r->path, &r->args, &r->host,
                          &r->remote_addr, &r->peer_addr, &r->scheme, &r->upstream_addr,
                          &r->request_line};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        rebase(fields[i], lo, hi, copy);
    tg_headers_t *hs[] = {&r->headers, &r->resp_headers};
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; i < hs[k]->n; i++) {
            rebase(&hs[k]->h[i].name, lo, hi, copy);
            rebase(&hs[k]->h[i].value, lo, hi, copy);
        }
    r->hbuf = NULL;
    release_buffers(c);
}

static int h1_tunnel_begin(tg_request_t *r, tg_msec_t idle_ms, tg_buf_t **early)
{
    tg_conn_t *c = r->conn;
    /* what the client sent after its upgrade request (the input buffer is as
     * large as a pool buffer, so it all fits) */
    tg_buf_t *in = c->ibuf;
    size_t n = (size_t)(in->last - in->pos);
    *early = NULL;
    if (n) {
        if ((*early = tg_buf_get()) == NULL)
            return -1;
        memcpy((*early)->last, in->pos, n);
        (*early)->last += n;
        in->pos += n;
    }
    tunnel_release_buffers(r);
    c->state = TG_CONN_TUNNEL;
    c->timer.repeat = (double)idle_ms / 1000.0;
    ev_timer_again(tg_worker->loop, &c->timer);
    return 0;
}

static void h1_tunnel_active(tg_request_t *r)
{
    ev_timer_again(tg_worker->loop, &r->conn->timer);
}


/* ---- request body --------------------------------------------------------- */

/* client_body_min_rate: a client may keep us waiting for its body for the
 * grace time plus one second per `rate` bytes it sent. Only the time spent
 * waiting for the client counts (not the time the upstream was slow to take
 * the body, when we do not read). Seconds left; < 0: too slow. */
static double body_rate_left(tg_request_t *r, tg_core_conf_t *cc)
{
    h1_req_t *hr = HR(r);
    double waited = hr->body_waited;
    if (hr->body_wait_since > 0)
        waited += ev_now(tg_worker->loop) - hr->body_wait_since;
    return (double)cc->body_rate_grace / 1000.0 +
           (double)hr->body_received / (double)cc->body_min_rate - waited;
}

/* Wait for the client's body: its read watcher, and a timer for the body
 * timeout or, sooner, the minimum rate. -1: the client is already too slow. */
static int body_wait(tg_request_t *r, tg_core_conf_t *cc)
{
    tg_conn_t *c = r->conn;
    h1_req_t *hr = HR(r);
    tg_msec_t ms = cc->body_timeout;
    if (cc->body_min_rate) {
        double left = body_rate_left(r, cc);
        if (left <= 0)
            return -1;
        if (left * 1000.0 < (double)ms)
            ms = (tg_msec_t)(left * 1000.0) + 1;
    }
    hr->body_wait = 1;
    hr->body_wait_since = ev_now(tg_worker->loop);
    tg_conn_want(c, tg_conn_read_events(c));
    tg_conn_timer(c, ms);
    return 0;
}

static int h1_body_pull(tg_request_t *r, tg_spans_t **spans, int *done)
{
    tg_conn_t *c = r->conn;
    h1_req_t *hr = HR(r);
    tg_core_conf_t *cc = tg_core_conf(r->loc_conf);
    if ((*spans = body_spans(r)) == NULL)
        return -500;
    if (r->expect_continue && r->has_body && send_continue(r) < 0)
        return -499; /* the client is gone */
    if (hr->body_wait_since > 0) {
        hr->body_waited += ev_now(tg_worker->loop) - hr->body_wait_since;
        hr->body_wait_since = 0;
    }
    for (;;) {
        if (cc->client_max_body_size && hr->body_received > cc->client_max_body_size) {
            r->keepalive = 0;
            return -413;
        }
        if ((*spans)->len || hr->body_done) {
            *done = hr->body_done;
            return 1;
        }
        tg_buf_t *b = c->ibuf;
        if (b->pos == b->last) {
            if (b == r->hbuf) {
                /* the header buffer stays with the request; read the body
                 * into a buffer of its own */
                if ((c->ibuf = tg_buf_get()) == NULL)
                    return -500;
                b = c->ibuf;
            }
            b->pos = b->last = b->start;
            ssize_t n = tg_conn_read(c, b->last, (size_t)(b->end - b->last));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    if (body_wait(r, cc) == 0)
                        return 0;
                    tg_log(TG_LOG_INFO, "client %s sends its request body too slowly",
                           tg_conn_peer(c));
                    r->keepalive = 0;
                    return -408;
                }
                return -499;
            }
            if (n == 0)
                return -499; /* client closed mid-body */
            b->last += n;
        }
        if (h1_parse(c) != 0) {
            r->keepalive = 0;
            return -400;
        }
    }
}

static void h1_body_consumed(tg_request_t *r)
{
    if (HR(r)->body)
        tg_spans_reset(HR(r)->body);
    if (r->conn->state == TG_CONN_BUSY && !r->header_sent)
        ev_timer_stop(tg_worker->loop, &r->conn->timer);
}

/* ---- responses ------------------------------------------------------------ */

static size_t put(char *p, const char *s, size_t n)
{
    if (n)
        memcpy(p, s, n);
    return n;
}

/* Serialize the response header into the output queue. */
static int h1_send_header(tg_request_t *r)
{
    h1_req_t *hr = HR(r);
    int st = r->status;

    /* framing: our own, whatever the upstream used */
    char lenbuf[48] = "Content-Length: ";
    tg_str_t framing = TG_NULL_STR;
    if (r->resp_content_length >= 0 && !(st == 204 || st == 304 || st < 200)) {
        size_t n = 16 + tg_fmt_dec(lenbuf + 16, (uint64_t)r->resp_content_length);
        lenbuf[n++] = '\r';
        lenbuf[n++] = '\n';
        framing = (tg_str_t){lenbuf, n};
    } else if (!r->resp_no_body) {
        if (r->http_minor == 1) {
            framing = TG_STR("Transfer-Encoding: chunked\r\n");
            hr->resp_chunked = 1;
        } else {
            r->keepalive = 0; /* HTTP/1.0: the end of the body is the close */
        }
    }
    tg_str_t conn_hdr = TG_NULL_STR;
    if (st == 101)
        conn_hdr = TG_STR("Connection: upgrade\r\n");
    else if (!r->keepalive)
        conn_hdr = TG_STR("Connection: close\r\n");
    else if (r->http_minor == 0)
        conn_hdr = TG_STR("Connection: keep-alive\r\n");
    tg_str_t date = TG_NULL_STR;
    if (tg_headers_find(&r->resp_headers, TG_STR("Date")) == NULL)
        date = tg_worker_date();

    const char *reason = tg_status_reason(st);
    size_t reason_len = strlen(reason);
    size_t size = 16 + reason_len + framing.len + conn_hdr.len + date.len + 10;
    for (uint32_t i = 0; i < r->resp_headers.n; i++)
        size += r->resp_headers.h[i].name.len + r->resp_headers.h[i].value.len + 4;
    char *p = tg_arena_alloc_nz(r->arena, size);
    if (p == NULL)
        return -1;
    /* "HTTP/1.1 NNN reason" (st is 100..999: the parser and tg_request_error see to it) */
    size_t n = put(p, "HTTP/1.1 ", 9);
    p[n++] = (char)('0' + st / 100 % 10);
    p[n++] = (char)('0' + st / 10 % 10);
    p[n++] = (char)('0' + st % 10);
    p[n++] = ' ';
    n += put(p + n, reason, reason_len);
    n += put(p + n, "\r\n", 2);
    if (date.len) {
        n += put(p + n, "Date: ", 6);
        n += put(p + n, date.p, date.len);
        n += put(p + n, "\r\n", 2);
    }
    for (uint32_t i = 0; i < r->resp_headers.n; i++) {
        tg_header_t *h = &r->resp_headers.h[i];
        n += put(p + n, h->name.p, h->name.len);
        n += put(p + n, ": ", 2);
        n += put(p + n, h->value.p, h->value.len);
        n += put(p + n, "\r\n", 2);
    }
    n += put(p + n, framing.p, framing.len);
    n += put(p + n, conn_hdr.p, conn_hdr.len);
    n += put(p + n, "\r\n", 2);
    if (tg_iovq_add(&hr->out, p, n) != 0)
        return -1;
    r->header_bytes_out += n;
    r->header_sent = 1;
    return 0;
}

/* Queue body bytes with the response's framing. */
static int h1_send_body(tg_request_t *r, const struct iovec *v, int n, size_t len, int last)
{
    h1_req_t *hr = HR(r);
    tg_iovq_t *q = &hr->out;
    if (len) {
        if (q->n + n + 3 > TG_IOVQ_MAX && h1_flush(r, 0) != 1)
            return -1; /* callers queue at most one round before flushing */
        if (hr->resp_chunked) {
            tg_iovq_add_chunk_size(q, len);
        }
        for (int i = 0; i < n; i++)
            tg_iovq_add(q, v[i].iov_base, v[i].iov_len);
        if (hr->resp_chunked)
            tg_iovq_add(q, "\r\n", 2);
    }
    if (last) {
        if (hr->resp_chunked)
            tg_iovq_add(q, "0\r\n\r\n", 5);
        hr->resp_done = 1;
    }
    return 0;
}

static ssize_t conn_writev(void *c, const struct iovec *iov, int n)
{
    return tg_conn_tls_writev_batch(c, iov, n, 0);
}

/* the same, and a last record may wait for the send batch */
static ssize_t conn_writev_defer(void *c, const struct iovec *iov, int n)
{
    return tg_conn_tls_writev_batch(c, iov, n, 1);
}

static int h1_flush(tg_request_t *r, int batch)
{
    tg_conn_t *c = r->conn;
    if (!batch)
        tg_sendq_cancel(&HR(r)->out); /* written now: the batch must not write it again */
    int rc = c->ssl  ? tg_iovq_send(&HR(r)->out, batch ? conn_writev_defer : conn_writev, c,
                                    &r->bytes_out)
             : batch ? tg_sendq_write(&HR(r)->out, c->fd, &c->io, &r->bytes_out, 0)
                     : tg_iovq_write(&HR(r)->out, c->fd, &r->bytes_out);
    if (rc == 1 && c->ssl)
        rc = tg_conn_tls_flush(c, batch); /* records written only in part, or held */
    if (rc == 2)
        return 2; /* in the send batch: nothing to arm */
    if (rc == 1) {
        if (c->io.events & EV_WRITE) {
            tg_conn_want(c, EV_READ);
            ev_timer_stop(tg_worker->loop, &c->timer);
        }
        return 1;
    }
    if (rc == 0) {
        tg_conn_want(c, EV_WRITE);
        tg_conn_timer(c, tg_core_conf(r->loc_conf ? r->loc_conf : c->listen->default_server->mconf)
                          ->send_timeout);
        return 0;
    }
    return -1;
}

/* A file body (tg_carrier_t.send_file), plain connections only (a TLS
 * connection's carrier has none: the request layer copies the bytes, reading
 * what is not in the page cache in a file thread). sendfile(2), no copy
 * through user space; but a body that fits one pool buffer while the header
 * is still queued is read and sent with the header in one writev (a small
 * file would otherwise cost two packets and two calls), when the page cache
 * has it: a read that would block goes by sendfile, as nginx without aio. */
static int h1_send_file(tg_request_t *r, int fd, int64_t off, size_t len, size_t *sent)
{
    tg_conn_t *c = r->conn;
    h1_req_t *hr = HR(r);
    *sent = 0;
    if (!tg_iovq_is_empty(&hr->out) && len <= tg_buf_pool_size()) {
        if (hr->fbuf == NULL && (hr->fbuf = tg_buf_get()) == NULL)
            return -1;
        struct iovec iov = {hr->fbuf->start, len};
        ssize_t n;
        do
            n = preadv2(fd, &iov, 1, (off_t)off, RWF_NOWAIT);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            *sent = (size_t)n;
            if (tg_iovq_add(&hr->out, hr->fbuf->start, (size_t)n) != 0)
                return -1;
            /* all of it read: the response may go with the send batch (the
             * drain that follows it wakes the handler, as after a wait) */
            int rc = h1_flush(r, *sent == len);
            if (rc == 2)
                return 0;
            if (rc <= 0 || *sent == len)
                return rc;
        }
    }
    int rc = h1_flush(r, 0);
    if (rc <= 0)
        return rc;
    while (*sent < len) {
        off_t o = (off_t)(off + (int64_t)*sent);
        ssize_t n = sendfile(c->fd, fd, &o, len - *sent);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            tg_conn_want(c, EV_WRITE);
            tg_conn_timer(c, tg_core_conf(r->loc_conf)->send_timeout);
            return 0;
        }
        if (n <= 0) {
            tg_log(TG_LOG_ERROR, "request %u: sending a file body failed at offset %lld: %s",
                   r->id, (long long)(off + (int64_t)*sent),
                   n == 0 ? "the file is shorter than announced" : strerror(errno));
            return -1;
        }
        *sent += (size_t)n;
        r->bytes_out += (uint64_t)n;
    }
    return 1;
}

static void fbuf_release(h1_req_t *hr)
{
    if (hr->fbuf) {
        tg_buf_put(hr->fbuf);
        hr->fbuf = NULL;
    }
}

/* The request is over (its log hooks ran): keep the connection for the next
 * request, linger, or close it. */
static void h1_finalize(tg_request_t *r, int abort)
{
    tg_conn_t *c = r->conn;
    h1_req_t *hr = HR(r);
    tg_sendq_cancel(&hr->out);
    fbuf_release(hr);
    c->nrequests++;
    int unread = !hr->body_done;
    /* a shutting-down worker still keeps a connection whose answer promised
     * keep-alive: the client may be sending its next request right now; that
     * one is answered with Connection: close (or the idle check closes it) */
    if (abort || !r->keepalive || unread) {
        if (!abort && (unread || c->ibuf->pos != c->ibuf->last)) {
            if (r->hbuf && r->hbuf != c->ibuf)
                tg_buf_put(r->hbuf);
            c->req = NULL;
            tg_conn_linger(c);
            return;
        }
        tg_conn_close(c);
        return;
    }
    /* Keep-alive: anything after this message in the buffer is the next
     * request; keep it, drop the rest. */
    tg_buf_t *b = c->ibuf;
    size_t left = (size_t)(b->last - b->pos);
    if (r->hbuf && r->hbuf != b)
        tg_buf_put(r->hbuf);
    memmove(b->start, b->pos, left);
    b->pos = b->start;
    b->last = b->start + left;
    c->req = NULL;
    tg_arena_reset(&c->arena);
    llhttp_resume(parser_of(c));
    c->paused = 0;
    c->state = TG_CONN_IDLE;
    tg_conn_timer(c, tg_core_conf(c->listen->default_server->mconf)->idle_timeout);
    if (left || tg_conn_has_pending(c) || c->rbatch) {
        /* pipelined: serve it from the loop, not from this stack (TLS:
         * bytes wait in the TLS layer, no socket event comes) */
        tg_conn_want(c, EV_READ);
        ev_feed_event(tg_worker->loop, &c->io, EV_READ);
        return;
    }
    release_buffers(c);
    tg_arena_destroy(&c->arena);
    tg_conn_want(c, EV_READ);
}

/* The connection closes (error, timeout, graceful stop): the request in
 * flight, if any, ends without its log phase (the close is not an answer). */
static void h1_on_close(tg_conn_t *c)
{
    tg_request_t *r = c->req;
    if (r) {
        const tg_handler_events_t *ev = r->handler;
        r->handler = NULL;
        if (ev && ev->on_abort)
            ev->on_abort(r);
        tg_sendq_cancel(&HR(r)->out);
        fbuf_release(HR(r));
        if (r->hbuf && r->hbuf != c->ibuf)
            tg_buf_put(r->hbuf);
        c->req = NULL;
    }
    release_buffers(c);
}

static const tg_carrier_t h1_carrier = {
    .protocol = "HTTP/1.1",
    .send_header = h1_send_header,
    .send_body = h1_send_body,
    .flush = h1_flush,
    .finalize = h1_finalize,
    .body_pull = h1_body_pull,
    .body_consumed = h1_body_consumed,
    .tunnel_begin = h1_tunnel_begin,
    .tunnel_active = h1_tunnel_active,
    .send_file = h1_send_file,
};

/* TLS: a queued head shorter than TG_TLS_GATHER_MAX goes out in one record
 * with the body bytes that follow it (tg_tls_writev gathers them). */
static size_t h1_tls_body_lead(tg_request_t *r)
{
    size_t n = HR(r)->out.pending;
    return n < TG_TLS_GATHER_MAX ? n : 0;
}

/* TLS: file bodies are copied by the request layer (no send_file) */
static const tg_carrier_t h1_tls_carrier = {
    .protocol = "HTTP/1.1",
    .send_header = h1_send_header,
    .send_body = h1_send_body,
    .flush = h1_flush,
    .finalize = h1_finalize,
    .body_pull = h1_body_pull,
    .body_consumed = h1_body_consumed,
    .tunnel_begin = h1_tunnel_begin,
    .tunnel_active = h1_tunnel_active,
    .body_lead = h1_tls_body_lead,
    .file_bufs = TG_REQUEST_FILE_BUFS, /* 64 KB: one batch of records (tls_batch.h) */
};

static const tg_proto_t h1_proto = {
    .name = "HTTP/1.1",
    .on_io = h1_on_io,
    .on_timeout = h1_on_timeout,
    .on_close = h1_on_close,
};

void tg_h1_start(tg_conn_t *c)
{
    c->proto = &h1_proto;
    tg_stats_count(TG_STATS_H1_CONNS, 1);
    /* The listener uses TCP_DEFER_ACCEPT: the first request is usually there
     * already, so try it before paying for an epoll round trip. */
    h1_read(c);
}
