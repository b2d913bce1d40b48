/* The downstream HTTP/1.1 engine.
 *
 * A connection reads into one input buffer and feeds llhttp (strict mode).
 * The header block must fit in that buffer: header spans point into it, and
 * the request takes the buffer over (r->hbuf) once its headers are complete,
 * so no header byte is copied. The parser pauses at the end of each message;
 * pipelined bytes wait in the buffer until the response is written, which
 * keeps responses in order and bounds what one client can make us hold.
 *
 * After the header: validate (Host, framing, target), pick the server and
 * location, then run the phases (rewrite, access, route, content). A hook may
 * answer (DONE), park the request (AGAIN) or let it go on; at the end the
 * request is answered locally (`return`) or handed to the proxy.
 *
 * Responses are written through r->out with writev; when the client stops
 * reading, the proxy stops reading its upstream (tg_http_flush returns 0 and
 * calls tg_proxy_on_client_drained later), so memory stays bounded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include "http.h"
#include "proxy.h"
#include "uri.h"
#include "proxyproto.h"
#include "var.h"
#include "log.h"
#include "sendq.h"
#include "worker.h"

#define LINGER_TIME 2.0
#define CONN_CACHE_MAX 4096

/* Request parse scratch kept beside the request (core only). */
typedef struct {
    tg_request_t r;
    tg_spans_t *body;      /* body spans of the current parse round (made at the first) */
    int64_t body_received; /* decoded body bytes seen so far */
    double body_waited;     /* seconds spent waiting for body bytes (client_body_min_rate) */
    double body_wait_since; /* > 0: waiting since then */
    tg_iovq_t out;         /* response bytes waiting for the client */
    int error_status;      /* set by a parser callback that fails */
    uint8_t last_cb;       /* 1 after a header field, 2 after a value */
    unsigned headers_done : 1;
    unsigned body_done : 1;
    unsigned resp_chunked : 1;
    unsigned resp_done : 1;  /* the whole response is queued */
    unsigned body_wait : 1;  /* the proxy waits for request body bytes */
    unsigned continue_sent : 1;
    unsigned rerouted : 1;
    unsigned header_pending : 1; /* r->header_hold: not written yet (filter_body) */
    unsigned held_wait : 1;      /* a phase hook waits for body bytes (tg_http_body_read) */
    unsigned held_done : 1;      /* tg_http_body_read decided: `held` or too large */
    unsigned held_too_large : 1;
    tg_buf_t *filter_bufs; /* body filter input descriptors (filter_body) */
    tg_str_t held;         /* body bytes read into memory for a hook (request arena) */
    size_t held_cap;
} http_req_t;

#define HR(r) ((http_req_t *)(r))

static tg_conn_t *conn_cache;
static int conn_cached;

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_read(tg_conn_t *c);
static void request_process(tg_request_t *r);
static void request_local(tg_request_t *r);
static double body_rate_left(tg_request_t *r, tg_core_conf_t *cc);

static tg_core_conf_t *core_conf(void **mconf)
{
    return mconf[tg_core_module.index];
}

static tg_core_conf_t *conn_core_conf(tg_conn_t *c)
{
    if (c->req && c->req->loc_conf)
        return core_conf(c->req->loc_conf);
    return core_conf(c->listen->default_server->mconf);
}

/* Change the watched events only when they differ: each change costs an
 * epoll_ctl, and most requests need none. */
static void conn_want(tg_conn_t *c, int events)
{
    if (c->io.events == events && ev_is_active(&c->io))
        return;
    ev_io_stop(tg_worker->loop, &c->io);
    if (events) {
        ev_io_set(&c->io, c->fd, events);
        ev_io_start(tg_worker->loop, &c->io);
    }
}

static void conn_timer(tg_conn_t *c, tg_msec_t ms)
{
    if (ms <= 0) {
        ev_timer_stop(tg_worker->loop, &c->timer);
        return;
    }
    c->timer.repeat = (double)ms / 1000.0;
    ev_timer_again(tg_worker->loop, &c->timer);
}

/* ---- parser callbacks ---------------------------------------------------- */

static tg_request_t *request_create(tg_conn_t *c)
{
    http_req_t *hr = tg_arena_alloc(&c->arena, sizeof(*hr));
    if (hr == NULL)
        return NULL;
    tg_request_t *r = &hr->r;
    r->ctx = tg_arena_alloc(&c->arena, (size_t)tg_nmodules * sizeof(void *));
    if (r->ctx == NULL)
        return NULL;
    r->arena = &c->arena;
    r->conn = c;
    r->content_length = -1;
    r->resp_content_length = -1;
    r->start = ev_now(tg_worker->loop);
    r->id = ++tg_worker->next_request_id;
    r->peer_addr = tg_arena_str(r->arena, tg_str_c(tg_conn_peer(c)));
    r->remote_addr = r->peer_addr;
    r->scheme = c->listen->tls ? TG_STR("https") : TG_STR("http");
    r->loc_conf = NULL;
    return r;
}

static int on_message_begin(llhttp_t *p)
{
    tg_conn_t *c = p->data;
    c->req = request_create(c);
    if (c->req == NULL)
        return -1;
    c->state = TG_CONN_HEADERS;
    conn_timer(c, conn_core_conf(c)->header_timeout);
    return 0;
}

void tg_header_span_extend(tg_str_t *s, const char *at, size_t len)
{
    if (s->p == NULL)
        s->p = at;
    s->len = (size_t)(at + len - s->p);
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

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    tg_request_t *r = c->req;
    http_req_t *hr = HR(r);
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

int tg_header_value_finish(tg_header_t *h)
{
    if (h->value.p == NULL)
        h->value = (tg_str_t){"", 0};
    for (size_t i = 0; i < h->value.len; i++) {
        unsigned char ch = (unsigned char)h->value.p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return -1;
    }
    while (h->value.len && (h->value.p[h->value.len - 1] == ' ' ||
                            h->value.p[h->value.len - 1] == '\t'))
        h->value.len--;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    tg_conn_t *c = p->data;
    tg_request_t *r = c->req;
    http_req_t *hr = HR(r);
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
    http_req_t *hr = HR(r);
    if (hr->body == NULL)
        hr->body = tg_arena_alloc(r->arena, sizeof(*hr->body));
    return hr->body;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    tg_conn_t *c = p->data;
    http_req_t *hr = HR(c->req);
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
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Parse what is buffered. Returns 0, or -1 on a protocol error (the request,
 * if any, carries the status to answer). */
static int conn_parse(tg_conn_t *c)
{
    tg_buf_t *b = c->ibuf;
    if (c->paused || b->pos == b->last)
        return 0;
    const char *from = b->pos;
    llhttp_errno_t err = llhttp_execute(c->parser, b->pos, (size_t)(b->last - b->pos));
    /* $request_length: what the parser took for the request (line, header
     * block, body with its framing); it pauses at the end of each message,
     * so one call never spans two requests */
    const char *to = err == HPE_OK ? b->last : llhttp_get_error_pos(c->parser);
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
           llhttp_get_error_reason(c->parser));
    return -1;
}

/* ---- connections ---------------------------------------------------------- */

/* Parsers are kept only while a connection has bytes to parse: a free list
 * recycles them. */
static llhttp_t *parser_free;
static int parser_cached;

static llhttp_t *parser_get(tg_conn_t *c)
{
    llhttp_t *p = parser_free;
    if (p) {
        parser_free = p->data;
        parser_cached--;
    } else if ((p = malloc(sizeof(*p))) == NULL) {
        return NULL;
    }
    llhttp_init(p, HTTP_REQUEST, &parser_settings);
    p->data = c;
    return p;
}

/* An idle connection keeps neither its input buffer nor its parser. */
static void conn_release_buffers(tg_conn_t *c)
{
    tg_buf_put(c->ibuf);
    c->ibuf = NULL;
    c->paused = 0;
    if (c->parser == NULL)
        return;
    if (parser_cached < CONN_CACHE_MAX) {
        c->parser->data = parser_free;
        parser_free = c->parser;
        parser_cached++;
    } else {
        free(c->parser);
    }
    c->parser = NULL;
}

const char *tg_conn_peer(const tg_conn_t *c)
{
    static char text[INET6_ADDRSTRLEN];
    const struct sockaddr *sa = (const struct sockaddr *)&c->sa;
    if (sa->sa_family == AF_INET) {
        /* by hand: inet_ntop goes through sprintf, ~1,700 instructions per request */
        const unsigned char *o = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        size_t n = 0;
        for (int i = 0; i < 4; i++) {
            n += tg_fmt_dec(text + n, o[i]);
            text[n++] = i < 3 ? '.' : '\0';
        }
    } else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &c->sa.sin6_addr, text, sizeof(text));
    else
        strcpy(text, "unix");
    return text;
}

void tg_conn_accept(tg_listen_t *ls, int fd, struct sockaddr *sa, socklen_t salen)
{
    tg_conn_t *c = conn_cache;
    if (c) {
        conn_cache = c->next;
        conn_cached--;
    } else if ((c = malloc(sizeof(*c))) == NULL) {
        tg_log(TG_LOG_ERROR, "out of memory accepting a connection");
        close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->listen = ls;
    tg_arena_init(&c->arena, 0);
    if (salen <= sizeof(c->sa))
        memcpy(&c->sa, sa, salen);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    ev_init(&c->timer, conn_timer_cb);
    c->next = tg_worker->conns;
    if (c->next)
        c->next->prev = c;
    tg_worker->conns = c;
    tg_worker->nconns++;
    c->state = TG_CONN_IDLE;
    /* the header timeout also bounds the TLS handshake */
    conn_timer(c, conn_core_conf(c)->header_timeout);
    if (ls->tls && tg_tls_conn_start(c) != 0) {
        tg_log(TG_LOG_ERROR, "out of memory starting TLS");
        tg_conn_close(c);
        return;
    }
    /* The listener uses TCP_DEFER_ACCEPT: the first request is usually there
     * already, so try it before paying for an epoll round trip. */
    conn_read(c);
}

void tg_conn_close(tg_conn_t *c)
{
    struct ev_loop *loop = tg_worker->loop;
    if (c->req) {
        tg_request_t *r = c->req;
        if (r->proxy)
            tg_proxy_abort(r);
        if (r->hbuf && r->hbuf != c->ibuf)
            tg_buf_put(r->hbuf);
        c->req = NULL;
    }
    tg_limit_conn_release(c);
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    tg_tls_conn_shutdown(c);
    tg_tls_conn_free(c);
    tg_sendq_cancel_fd(c->fd);
    close(c->fd);
    conn_release_buffers(c);
    free(c->pp_addr);
    c->pp_addr = NULL;
    tg_arena_destroy(&c->arena);
    if (c->prev)
        c->prev->next = c->next;
    else
        tg_worker->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    tg_worker->nconns--;
    if (tg_worker->accept_paused)
        tg_worker_accept_resume();
    if (conn_cached < CONN_CACHE_MAX) {
        c->next = conn_cache;
        conn_cache = c;
        conn_cached++;
    } else {
        free(c);
    }
}

void tg_conn_close_idle_all(double min_idle)
{
    tg_conn_t *c = tg_worker->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state != TG_CONN_IDLE || (c->ibuf && c->ibuf->pos != c->ibuf->last))
            continue;
        double idle = c->timer.repeat - ev_timer_remaining(tg_worker->loop, &c->timer);
        if (idle >= min_idle || !ev_is_active(&c->timer))
            tg_conn_close(c);
    }
}

/* Close after the client had time to read the answer: half-close, then read
 * and drop what it still sends, so the kernel does not reset the connection
 * and destroy the response in flight. */
static void conn_linger(tg_conn_t *c)
{
    if (c->req) {
        if (c->req->hbuf && c->req->hbuf != c->ibuf)
            tg_buf_put(c->req->hbuf);
        c->req = NULL;
    }
    tg_arena_reset(&c->arena);
    c->state = TG_CONN_LINGER;
    tg_tls_conn_shutdown(c);
    shutdown(c->fd, SHUT_WR);
    conn_want(c, EV_READ);
    c->timer.repeat = LINGER_TIME;
    ev_timer_again(tg_worker->loop, &c->timer);
}

static void conn_drain(tg_conn_t *c)
{
    char scratch[4096];
    for (;;) {
        ssize_t n = read(c->fd, scratch, sizeof(scratch));
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        tg_conn_close(c);
        return;
    }
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
    if (c->parser && c->parser->http_major == 1)
        r->http_minor = c->parser->http_minor; /* the request line was read */
    if (r->loc == NULL) {
        /* answered and logged by the listener's default server */
        r->server = c->listen->default_server;
        r->loc = r->server->root;
        r->loc_conf = r->loc->mconf;
    }
    tg_http_error(r, status);
}

/* A listener with proxy_protocol: read the PROXY header before any HTTP.
 * Returns 1 when done, 0 when waiting for bytes, -1 when the connection was
 * closed (not a valid header). */
static int conn_proxy_protocol(tg_conn_t *c)
{
    tg_buf_t *b = c->ibuf;
    for (;;) {
        char addr[INET6_ADDRSTRLEN];
        int n = tg_proxyproto_parse(b->pos, (size_t)(b->last - b->pos), addr, sizeof(addr));
        if (n > 0) {
            b->pos += n;
            c->pp_done = 1;
            if (addr[0] && (c->pp_addr = strdup(addr)) == NULL) {
                tg_conn_close(c);
                return -1;
            }
            return 1;
        }
        if (n < 0 || b->last == b->end) {
            tg_log(TG_LOG_INFO, "%s: no valid PROXY protocol header", tg_conn_peer(c));
            tg_conn_close(c);
            return -1;
        }
        /* behind TLS the bytes after the header are the handshake's: peek,
         * and take off the socket only the header's own bytes */
        ssize_t got = c->ssl ? recv(c->fd, b->last, (size_t)(b->end - b->last), MSG_PEEK)
                             : read(c->fd, b->last, (size_t)(b->end - b->last));
        if (c->ssl && got > 0) {
            size_t had = (size_t)(b->last - b->pos);
            int hn = tg_proxyproto_parse(b->pos, had + (size_t)got, addr, sizeof(addr));
            size_t take = hn > 0 ? (size_t)hn - had : (size_t)got;
            if (hn >= 0 && read(c->fd, b->last, take) != (ssize_t)take)
                hn = -1;
            b->last += take;
            if (hn < 0) {
                tg_log(TG_LOG_INFO, "%s: no valid PROXY protocol header", tg_conn_peer(c));
                tg_conn_close(c);
                return -1;
            }
            continue; /* the next round parses it */
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_want(c, EV_READ);
            return 0;
        }
        if (got <= 0) {
            tg_conn_close(c);
            return -1;
        }
        b->last += got;
    }
}

static void conn_read(tg_conn_t *c)
{
    for (;;) {
        if ((c->ibuf == NULL && (c->ibuf = tg_buf_get()) == NULL) ||
            (c->parser == NULL && (c->parser = parser_get(c)) == NULL)) {
            tg_log(TG_LOG_ERROR, "out of memory for a client buffer");
            tg_conn_close(c);
            return;
        }
        tg_buf_t *b = c->ibuf;
        if (b->pos == b->last && !c->req)
            b->pos = b->last = b->start; /* nothing pending: reuse from the start */
        if (!c->pp_done && c->listen->proxy_protocol) {
            if (conn_proxy_protocol(c) <= 0)
                return;
            continue;
        }
        if (b->pos == b->last) {
            if (b->last == b->end) {
                /* The header block does not fit in one buffer. */
                int st = (c->req && c->req->uri.p && !HR(c->req)->last_cb) ? 414 : 431;
                conn_fail_request(c, st);
                return;
            }
            ssize_t n = tg_conn_read(c, b->last, (size_t)(b->end - b->last));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    if (c->state == TG_CONN_IDLE && b->last == b->start) {
                        /* idle: hold no memory while waiting */
                        conn_release_buffers(c);
                        tg_arena_destroy(&c->arena);
                    }
                    conn_want(c, tg_conn_read_events(c));
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
        if (conn_parse(c) != 0) {
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
            conn_want(c, EV_READ);
            request_process(c->req);
            return;
        }
    }
}

static void conn_write_ready(tg_conn_t *c)
{
    tg_request_t *r = c->req;
    int rc = tg_http_flush(r);
    if (rc < 0) {
        tg_http_finalize(r, 1);
        return;
    }
    if (rc == 0) {
        if (r->proxy) /* a batched write that went only in part */
            tg_proxy_on_client_blocked(r);
        return;
    }
    if (r->proxy)
        tg_proxy_on_client_drained(r);
    else if (HR(r)->resp_done)
        tg_http_finalize(r, 0);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    tg_conn_t *c = (tg_conn_t *)((char *)w - offsetof(tg_conn_t, io));
    switch (c->state) {
    case TG_CONN_IDLE:
    case TG_CONN_HEADERS:
        conn_read(c);
        return;
    case TG_CONN_LINGER:
        conn_drain(c);
        return;
    case TG_CONN_TUNNEL:
        tg_proxy_on_tunnel_event(c->req);
        return;
    case TG_CONN_BUSY:
        if (revents & EV_WRITE) {
            conn_write_ready(c);
            return;
        }
        if ((revents & EV_READ) && c->req && HR(c->req)->body_wait) {
            HR(c->req)->body_wait = 0;
            if (HR(c->req)->held_wait) {
                HR(c->req)->held_wait = 0;
                tg_request_resume(c->req); /* the hook waiting in tg_http_body_read */
            } else {
                tg_proxy_on_client_body(c->req);
            }
        } else if (revents & EV_READ) {
            /* Bytes while we are not reading the request: pipelined ones go
             * to the input buffer (parsed after this response) while it has
             * room, so a close behind them is still seen; a client that went
             * away (a long poll it gave up on) ends the request and its
             * upstream side. A full buffer stops the reading. */
            tg_buf_t *b = c->ibuf;
            char ch;
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
                tg_http_finalize(c->req, 1);
                return;
            }
            conn_want(c, 0);
        }
        return;
    }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_conn_t *c = (tg_conn_t *)((char *)w - offsetof(tg_conn_t, timer));
    switch (c->state) {
    case TG_CONN_HEADERS:
        tg_log(TG_LOG_INFO, "client %s timed out sending its request header", tg_conn_peer(c));
        conn_fail_request(c, 408);
        return;
    case TG_CONN_BUSY:
        if (c->req && HR(c->req)->body_wait && !c->req->header_sent) {
            tg_core_conf_t *cc = core_conf(c->req->loc_conf);
            tg_log(TG_LOG_INFO, "client %s %s", tg_conn_peer(c),
                   cc->body_min_rate && body_rate_left(c->req, cc) <= 0.001
                       ? "sends its request body too slowly"
                       : "timed out sending its request body");
            HR(c->req)->body_wait = 0;
            tg_http_error(c->req, 408);
            return;
        }
        tg_log(TG_LOG_INFO, "client %s timed out", tg_conn_peer(c));
        tg_http_finalize(c->req, 1);
        return;
    case TG_CONN_TUNNEL:
        tg_log(TG_LOG_INFO, "client %s: upgraded connection idle, closed", tg_conn_peer(c));
        tg_http_finalize(c->req, 1);
        return;
    default:
        if (c->ssl && !tg_tls_is_established(c))
            tg_log(TG_LOG_INFO, "client %s: TLS handshake timed out", tg_conn_peer(c));
        tg_conn_close(c);
    }
}

/* ---- request processing --------------------------------------------------- */

static int hostname_is_valid(tg_str_t h)
{
    if (h.len == 0 || h.len > 255)
        return 0;
    for (size_t i = 0; i < h.len; i++) {
        unsigned char ch = (unsigned char)h.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '[' || ch == ']'))
            return 0;
    }
    return 1;
}

/* "Example.COM:8080" -> "example.com" (in place in the arena). */
static int host_set(tg_request_t *r, tg_str_t authority)
{
    if (!hostname_is_valid(authority))
        return -1;
    size_t len = authority.len;
    if (authority.p[0] == '[') {
        const char *e = memchr(authority.p, ']', len);
        if (e == NULL)
            return -1;
        len = (size_t)(e - authority.p) + 1;
    } else {
        const char *colon = memchr(authority.p, ':', len);
        if (colon)
            len = (size_t)(colon - authority.p);
    }
    while (len > 0 && authority.p[len - 1] == '.')
        len--; /* "example.com." names the same host */
    char *h = tg_arena_alloc_nz(r->arena, len + 1);
    if (h == NULL)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char ch = authority.p[i];
        h[i] = (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
    }
    h[len] = '\0';
    r->host = (tg_str_t){h, len};
    return 0;
}

/* Checks the request as a whole and fills host, path, args. Returns 0 or the
 * status to answer. */
static int request_validate(tg_request_t *r)
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
    /* one SP around the target (llhttp lets several through); the request
     * line is complete here, so the version follows the target */
    if (r->uri.p != r->method_name.p + r->method_name.len + 1 || r->uri.p[r->uri.len] != ' ' ||
        r->uri.p[r->uri.len + 1] != 'H')
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
        if (host_set(r, u.authority) != 0)
            return 400;
        size_t off = (size_t)(u.path.p - r->uri.p);
        if (u.path.p < r->uri.p || off > r->uri.len)
            r->uri = TG_STR("/"); /* "http://h" */
        else
            r->uri = (tg_str_t){u.path.p, r->uri.len - off};
    } else if (host) {
        if (host->value.len == 0 && r->http_minor == 1)
            return 400;
        if (host->value.len && host_set(r, host->value) != 0)
            return 400;
    }
    r->args = u.query.p ? u.query : (tg_str_t){"", 0};
    if (u.path.len == 1 && u.path.p[0] == '*') {
        r->path = u.path;
        return 0;
    }
    char *norm = tg_arena_alloc_nz(r->arena, u.path.len + 1);
    if (norm == NULL)
        return 500;
    long n = tg_uri_normalize(u.path, norm);
    if (n < 0)
        return 400;
    r->path = (tg_str_t){norm, (size_t)n};
    return 0;
}

static void request_route(tg_request_t *r)
{
    r->loc = tg_core_find_location(r->server, r->path);
    if (r->loc == NULL)
        r->loc = r->server->root;
    r->loc_conf = r->loc->mconf;
}

static void request_process(tg_request_t *r)
{
    tg_conn_t *c = r->conn;
    int st = request_validate(r);
    r->server = tg_core_find_server(c->listen, r->host);
    request_route(r);
    if (st != 0) {
        r->keepalive = 0;
        tg_http_error(r, st);
        return;
    }
    tg_core_conf_t *cc = core_conf(r->loc_conf);
    if (cc->client_max_body_size && r->content_length > cc->client_max_body_size) {
        r->keepalive = 0;
        tg_http_error(r, 413);
        return;
    }
    if (c->nrequests + 1 >= (uint32_t)cc->keepalive_requests || tg_worker->shutting_down)
        r->keepalive = 0;
    r->phase = TG_PHASE_REWRITE;
    r->hook = 0;
    tg_http_run_phases(r);
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
    return tg_http_flush(r) < 0 ? -1 : 0;
}

void tg_http_run_phases(tg_request_t *r)
{
    while (r->phase <= TG_PHASE_CONTENT) {
        tg_hook_t *hooks = r->loc->hooks[r->phase];
        while (hooks && hooks[r->hook].module) {
            tg_hook_t *h = &hooks[r->hook];
            tg_rc_t (*fn)(tg_request_t *, void *) = NULL;
            switch (r->phase) {
            case TG_PHASE_REWRITE: fn = h->module->on_rewrite; break;
            case TG_PHASE_ACCESS: fn = h->module->on_access; break;
            case TG_PHASE_ROUTE: fn = h->module->on_route; break;
            case TG_PHASE_CONTENT: fn = h->module->on_content; break;
            default: break;
            }
            tg_rc_t rc = fn ? fn(r, h->conf) : TG_OK;
            if (rc == TG_AGAIN)
                return; /* the module calls tg_request_resume() */
            if (rc == TG_DONE) {
                request_local(r);
                return;
            }
            if (rc == TG_ERROR) {
                tg_http_error(r, 500);
                return;
            }
            r->hook++;
        }
        r->hook = 0;
        if (r->phase == TG_PHASE_REWRITE && r->uri_changed && !HR(r)->rerouted) {
            /* a rewrite changed the path: route again, once */
            HR(r)->rerouted = 1;
            r->uri_changed = 0;
            request_route(r);
        }
        if (r->phase == TG_PHASE_ACCESS && r->loc->ret.status) {
            tg_str_t text = TG_NULL_STR;
            int st = r->loc->ret.status;
            if (r->loc->ret.text && tg_tpl_eval(r, r->loc->ret.text, &text) != 0) {
                tg_http_error(r, 500);
                return;
            }
            if (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) {
                tg_request_add_resp_header(r, TG_STR("Location"), text);
                char *page = tg_arena_printf(r->arena, "%d %s\n", st, tg_status_reason(st));
                text = page ? tg_str_c(page) : TG_NULL_STR;
            } else if (text.len == 0 && st >= 300) {
                tg_http_error(r, st);
                return;
            }
            tg_request_respond(r, st, "text/plain", text);
            request_local(r);
            return;
        }
        if (r->phase == TG_PHASE_ACCESS)
            tg_proxy_route(r); /* proxy_pass picks the upstream; lua_route may override */
        r->phase++;
    }
    if (r->upstream == NULL) {
        tg_http_error(r, 404);
        return;
    }
    if (r->expect_continue && r->has_body && send_continue(r) < 0) {
        tg_http_finalize(r, 1); /* the client is gone */
        return;
    }
    tg_proxy_start(r);
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
                          &r->remote_addr, &r->peer_addr, &r->scheme, &r->upstream_addr};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        rebase(fields[i], lo, hi, copy);
    tg_headers_t *hs[] = {&r->headers, &r->resp_headers};
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; i < hs[k]->n; i++) {
            rebase(&hs[k]->h[i].name, lo, hi, copy);
            rebase(&hs[k]->h[i].value, lo, hi, copy);
        }
    r->hbuf = NULL;
    conn_release_buffers(c);
}

void tg_http_tunnel_begin(tg_request_t *r, tg_msec_t idle_ms)
{
    tg_conn_t *c = r->conn;
    tunnel_release_buffers(r);
    c->state = TG_CONN_TUNNEL;
    c->timer.repeat = (double)idle_ms / 1000.0;
    ev_timer_again(tg_worker->loop, &c->timer);
}

void tg_http_tunnel_active(tg_request_t *r)
{
    ev_timer_again(tg_worker->loop, &r->conn->timer);
}

void tg_request_resume(tg_request_t *r)
{
    tg_http_run_phases(r);
}

/* ---- request body --------------------------------------------------------- */

/* client_body_min_rate: a client may keep us waiting for its body for the
 * grace time plus one second per `rate` bytes it sent. Only the time spent
 * waiting for the client counts (not the time the upstream was slow to take
 * the body, when we do not read). Seconds left; < 0: too slow. */
static double body_rate_left(tg_request_t *r, tg_core_conf_t *cc)
{
    http_req_t *hr = HR(r);
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
    http_req_t *hr = HR(r);
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
    conn_want(c, tg_conn_read_events(c));
    conn_timer(c, ms);
    return 0;
}

int tg_http_body_pull(tg_request_t *r, tg_spans_t **spans, int *done)
{
    tg_conn_t *c = r->conn;
    http_req_t *hr = HR(r);
    tg_core_conf_t *cc = core_conf(r->loc_conf);
    if ((*spans = body_spans(r)) == NULL)
        return -500;
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
        if (conn_parse(c) != 0) {
            r->keepalive = 0;
            return -400;
        }
    }
}

void tg_http_body_consumed(tg_request_t *r)
{
    if (HR(r)->body)
        tg_spans_reset(HR(r)->body);
    if (r->conn->state == TG_CONN_BUSY && !r->header_sent)
        ev_timer_stop(tg_worker->loop, &r->conn->timer);
}

/* Append this round's body bytes to hr->held, growing it by doubling (from
 * 16 KB, or the Content-Length) up to `max`. Returns 0 or -1. */
static int held_append(tg_request_t *r, tg_spans_t *spans, size_t max)
{
    http_req_t *hr = HR(r);
    size_t need = hr->held.len + spans->len;
    if (need > hr->held_cap) {
        size_t cap = hr->held_cap ? hr->held_cap * 2 : 16384;
        if (r->content_length > 0 && (size_t)r->content_length > cap)
            cap = (size_t)r->content_length;
        while (cap < need)
            cap *= 2;
        if (cap > max)
            cap = max;
        char *p = tg_arena_alloc_nz(r->arena, cap);
        if (p == NULL)
            return -1;
        if (hr->held.len)
            memcpy(p, hr->held.p, hr->held.len);
        hr->held.p = p;
        hr->held_cap = cap;
    }
    char *w = (char *)hr->held.p + hr->held.len;
    for (int i = 0; i < spans->n; i++) {
        memcpy(w, spans->v[i].iov_base, spans->v[i].iov_len);
        w += spans->v[i].iov_len;
    }
    hr->held.len = need;
    return 0;
}

int tg_http_body_read(tg_request_t *r, int64_t max, tg_str_t *body)
{
    http_req_t *hr = HR(r);
    tg_core_conf_t *cc = core_conf(r->loc_conf);
    if (cc->client_max_body_size && max > cc->client_max_body_size)
        max = cc->client_max_body_size;
    if (!hr->held_done && !r->has_body) {
        hr->held = (tg_str_t){"", 0};
        hr->held_done = 1;
    }
    if (!hr->held_done && r->content_length > max) {
        hr->held_too_large = hr->held_done = 1; /* not a byte read: it streams as usual */
    }
    if (!hr->held_done && r->expect_continue && send_continue(r) < 0) {
        tg_http_finalize(r, 1);
        return -1;
    }
    while (!hr->held_done) {
        tg_spans_t *spans;
        int done = 0;
        int rc = tg_http_body_pull(r, &spans, &done);
        if (rc == 0) {
            hr->held_wait = 1;
            return 0;
        }
        if (rc < 0) {
            if (rc == -499)
                tg_http_finalize(r, 1);
            else
                tg_http_error(r, -rc);
            return -1;
        }
        if (hr->held.len + spans->len > (size_t)max) {
            /* too large: what was read goes upstream first, then this round
             * (still in the input buffer) and the rest stream as usual */
            if (hr->held.len)
                tg_spans_prepend(spans, hr->held.p, hr->held.len);
            hr->held_too_large = hr->held_done = 1;
            break;
        }
        if (spans->len && held_append(r, spans, (size_t)max) != 0) {
            tg_http_error(r, 500);
            return -1;
        }
        tg_http_body_consumed(r);
        if (done) {
            /* complete: the proxy replays exactly these bytes, framed with a
             * Content-Length whatever the client used */
            if (hr->held.p == NULL)
                hr->held = (tg_str_t){"", 0};
            r->chunked = 0;
            r->content_length = (int64_t)hr->held.len;
            r->has_body = hr->held.len > 0;
            tg_spans_t *s = body_spans(r); /* made by tg_http_body_pull */
            if (s == NULL) {
                tg_http_error(r, 500);
                return -1;
            }
            tg_spans_add(s, hr->held.p, hr->held.len);
            hr->held_done = 1;
        }
    }
    *body = hr->held_too_large ? TG_NULL_STR : hr->held;
    return 1;
}

/* ---- responses ------------------------------------------------------------ */

static size_t put(char *p, const char *s, size_t n)
{
    if (n)
        memcpy(p, s, n);
    return n;
}

static int header_write(tg_request_t *r);

int tg_http_send_header(tg_request_t *r)
{
    http_req_t *hr = HR(r);
    /* before the hooks, so remove_header can drop it too */
    tg_core_conf_t *cc = r->loc_conf ? core_conf(r->loc_conf) : NULL;
    if (cc && !cc->server_tokens)
        tg_headers_remove(&r->resp_headers, TG_STR("Server"));
    else if (tg_headers_find(&r->resp_headers, TG_STR("Server")) == NULL)
        tg_headers_add(r->arena, &r->resp_headers, TG_STR("Server"), TG_STR("tollgate"));
    if (r->loc) {
        for (tg_hook_t *h = r->loc->hooks[TG_PHASE_RESPONSE_HEADERS]; h && h->module; h++) {
            if (h->module->on_response_headers(r, h->conf) == TG_ERROR) {
                r->status = 500;
                return -1;
            }
        }
    }
    int st = r->status;
    if (r->method == HTTP_HEAD || st == 204 || st == 304 || st < 200)
        r->resp_no_body = 1;
    if (r->header_hold && !r->resp_no_body && r->loc && r->loc->hooks[TG_PHASE_RESPONSE_BODY]) {
        /* a body filter decides first (filter_body); the header strings may
         * point into the upstream's read buffer, which body reads reuse */
        if (tg_headers_own(r->arena, &r->resp_headers) != 0)
            return -1;
        hr->header_pending = 1;
        r->header_sent = 1;
        return 0;
    }
    r->header_hold = 0;
    return header_write(r);
}

/* Serialize the response header into the output queue. */
static int header_write(tg_request_t *r)
{
    http_req_t *hr = HR(r);
    int st = r->status;
    hr->header_pending = 0;

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
    /* "HTTP/1.1 NNN reason" (st is 100..999: the parser and tg_http_error see to it) */
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
    r->header_sent = 1;
    return 0;
}

/* Queue body bytes with the response's framing. */
static int queue_body(tg_request_t *r, const struct iovec *v, int n, size_t len, int last)
{
    http_req_t *hr = HR(r);
    tg_iovq_t *q = &hr->out;
    if (len) {
        if (q->n + n + 3 > TG_IOVQ_MAX && tg_http_flush(r) != 1)
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

/* Run the location's body filters over this round: the spans become a chain
 * (descriptors kept per request, no allocation per round), each filter
 * replaces the chain with its output, and the result is queued. */
static int filter_body(tg_request_t *r, tg_spans_t *spans, int last)
{
    http_req_t *hr = HR(r);
    if (hr->filter_bufs == NULL &&
        (hr->filter_bufs = tg_arena_alloc(r->arena, (TG_SPANS_MAX + 1) *
                                                        (sizeof(tg_buf_t) + sizeof(tg_chain_t)))) == NULL)
        return -1;
    tg_buf_t *bufs = hr->filter_bufs;
    tg_chain_t *links = (tg_chain_t *)(bufs + TG_SPANS_MAX + 1), *in = NULL;
    int nb = 0;
    for (int i = 0; spans && i < spans->n; i++) {
        char *p = spans->v[i].iov_base;
        bufs[nb++] = (tg_buf_t){p, p + spans->v[i].iov_len, p, p + spans->v[i].iov_len, 0, NULL};
    }
    if (nb == 0 && !last)
        return 0;
    if (nb == 0)
        bufs[nb++] = (tg_buf_t){0}; /* an empty buffer that carries LAST */
    if (last)
        bufs[nb - 1].flags |= TG_BUF_F_LAST;
    for (int i = nb - 1; i >= 0; i--) {
        links[i] = (tg_chain_t){&bufs[i], in};
        in = &links[i];
    }
    for (tg_hook_t *h = r->loc->hooks[TG_PHASE_RESPONSE_BODY]; h && h->module; h++)
        if (h->module->on_response_body(r, h->conf, &in) == TG_ERROR)
            return -1;
    if (hr->header_pending && (last || !r->header_hold || tg_chain_len(in) > 0)) {
        r->header_hold = 0;
        if (header_write(r) != 0)
            return -1;
    }
    struct iovec v[TG_IOVQ_MAX - 4];
    int nv = 0;
    size_t len = 0;
    for (tg_chain_t *cl = in; cl; cl = cl->next) {
        size_t bl = tg_buf_len(cl->buf);
        if (bl == 0)
            continue;
        if (nv == (int)(sizeof(v) / sizeof(v[0]))) {
            tg_log(TG_LOG_ERROR, "a body filter returned more than %d buffers", nv);
            return -1;
        }
        v[nv++] = (struct iovec){cl->buf->pos, bl};
        len += bl;
    }
    return queue_body(r, v, nv, len, last);
}

int tg_http_send_body(tg_request_t *r, tg_spans_t *spans, int last)
{
    http_req_t *hr = HR(r);
    if (r->resp_no_body) {
        hr->resp_done = last;
        return 0;
    }
    if (r->loc && r->loc->hooks[TG_PHASE_RESPONSE_BODY])
        return filter_body(r, spans, last);
    return queue_body(r, spans ? spans->v : NULL, spans ? spans->n : 0, spans ? spans->len : 0,
                      last);
}

static ssize_t conn_writev(void *c, const struct iovec *iov, int n)
{
    return tg_conn_writev(c, iov, n);
}

static int http_flush(tg_request_t *r, int batch)
{
    tg_conn_t *c = r->conn;
    if (!batch)
        tg_sendq_cancel(&HR(r)->out); /* written now: the batch must not write it again */
    int rc = c->ssl  ? tg_iovq_send(&HR(r)->out, conn_writev, c, &r->bytes_out)
             : batch ? tg_sendq_write(&HR(r)->out, c->fd, &c->io, &r->bytes_out)
                     : tg_iovq_write(&HR(r)->out, c->fd, &r->bytes_out);
    if (rc == 2)
        return 2; /* in the send batch: nothing to arm */
    if (rc == 1) {
        if (c->io.events & EV_WRITE) {
            conn_want(c, EV_READ);
            ev_timer_stop(tg_worker->loop, &c->timer);
        }
        return 1;
    }
    if (rc == 0) {
        conn_want(c, EV_WRITE);
        conn_timer(c, core_conf(r->loc_conf ? r->loc_conf : c->listen->default_server->mconf)
                          ->send_timeout);
        return 0;
    }
    return -1;
}

int tg_http_flush(tg_request_t *r)
{
    return http_flush(r, 0);
}

int tg_http_flush_batched(tg_request_t *r)
{
    return http_flush(r, 1);
}

void tg_http_finalize(tg_request_t *r, int abort)
{
    tg_conn_t *c = r->conn;
    http_req_t *hr = HR(r);
    if (r->status == 0)
        r->status = abort ? 499 : 200;
    if (r->loc) {
        for (tg_hook_t *h = r->loc->hooks[TG_PHASE_LOG]; h && h->module; h++)
            h->module->on_log(r, h->conf);
    }
    if (r->proxy)
        tg_proxy_abort(r);
    tg_sendq_cancel(&hr->out);
    c->nrequests++;
    int unread = !hr->body_done;
    /* a shutting-down worker still keeps a connection whose answer promised
     * keep-alive: the client may be sending its next request right now; that
     * one is answered with Connection: close (or the idle check closes it) */
    if (abort || !r->keepalive || unread) {
        if (!abort && (unread || c->ibuf->pos != c->ibuf->last)) {
            conn_linger(c);
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
    llhttp_resume(c->parser);
    c->paused = 0;
    c->state = TG_CONN_IDLE;
    conn_timer(c, core_conf(c->listen->default_server->mconf)->idle_timeout);
    if (left || tg_conn_has_pending(c)) {
        /* pipelined: serve it from the loop, not from this stack (TLS:
         * decrypted bytes wait in the TLS layer, no socket event comes) */
        conn_want(c, EV_READ);
        ev_feed_event(tg_worker->loop, &c->io, EV_READ);
        return;
    }
    conn_release_buffers(c);
    tg_arena_destroy(&c->arena);
    conn_want(c, EV_READ);
}

/* Send a response the gateway made itself (r->status, r->resp_body). */
static void request_local(tg_request_t *r)
{
    if (r->status == 0)
        r->status = 500;
    r->resp_local = 1;
    if (r->resp_content_length < 0)
        r->resp_content_length = (int64_t)tg_chain_len(r->resp_body);
    if (tg_http_send_header(r) != 0) {
        tg_http_finalize(r, 1);
        return;
    }
    tg_spans_t spans = {0};
    for (tg_chain_t *cl = r->resp_body; cl; cl = cl->next)
        tg_spans_add(&spans, cl->buf->pos, tg_buf_len(cl->buf));
    tg_http_send_body(r, &spans, 1);
    int rc = tg_http_flush(r);
    if (rc != 0)
        tg_http_finalize(r, rc < 0);
}

void tg_http_error(tg_request_t *r, int status)
{
    if (r->header_sent) {
        tg_http_finalize(r, 1);
        return;
    }
    if (status == 400 || status == 408 || status == 413 || status == 414 || status == 431 ||
        status == 505 || status == 417 || status == 500)
        r->keepalive = 0;
    r->resp_headers.n = 0;
    char *body = tg_arena_printf(r->arena, "%d %s\n", status, tg_status_reason(status));
    tg_request_respond(r, status, "text/plain", body ? tg_str_c(body) : TG_NULL_STR);
    request_local(r);
}

int tg_request_respond(tg_request_t *r, int status, const char *ctype, tg_str_t body)
{
    r->status = status;
    if (ctype && body.len &&
        tg_headers_set(r->arena, &r->resp_headers, TG_STR("Content-Type"), tg_str_c(ctype)) != 0)
        return -1;
    r->resp_body = NULL;
    r->resp_content_length = (int64_t)body.len;
    if (body.len) {
        tg_str_t copy = tg_arena_str(r->arena, body);
        tg_buf_t *b = copy.p ? tg_buf_ref(r->arena, copy.p, copy.len) : NULL;
        tg_chain_t **tail = &r->resp_body;
        if (b == NULL || tg_chain_append(r->arena, &tail, b) != 0)
            return -1;
    }
    return 0;
}

int tg_request_vary_add(tg_request_t *r, const char *token)
{
    tg_header_t *v = tg_headers_find(&r->resp_headers, TG_STR("Vary"));
    if (v == NULL)
        return tg_headers_add(r->arena, &r->resp_headers, TG_STR("Vary"), tg_str_c(token));
    for (uint32_t i = 0; i < r->resp_headers.n; i++) {
        tg_header_t *h = &r->resp_headers.h[i];
        if (tg_str_caseeq_lit(h->name, "Vary") &&
            (tg_str_has_token(h->value, token) || tg_str_has_token(h->value, "*")))
            return 0;
    }
    char *s = tg_arena_printf(r->arena, "%.*s, %s", TG_STR_FMT(v->value), token);
    if (s == NULL)
        return -1;
    v->value = tg_str_c(s);
    return 0;
}

int tg_request_add_resp_header(tg_request_t *r, tg_str_t name, tg_str_t value)
{
    tg_str_t n = tg_arena_str(r->arena, name), v = tg_arena_str(r->arena, value);
    if (n.p == NULL || v.p == NULL)
        return -1;
    return tg_headers_add(r->arena, &r->resp_headers, n, v);
}

/* ---- header lists --------------------------------------------------------- */

tg_header_t *tg_headers_find(tg_headers_t *hs, tg_str_t name)
{
    for (uint32_t i = 0; i < hs->n; i++)
        if (tg_str_caseeq(hs->h[i].name, name))
            return &hs->h[i];
    return NULL;
}

int tg_headers_add(tg_arena_t *a, tg_headers_t *hs, tg_str_t name, tg_str_t value)
{
    if (hs->n == hs->cap) {
        uint32_t cap = hs->cap ? hs->cap * 2 : 16;
        tg_header_t *h = tg_arena_alloc_nz(a, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        if (hs->n)
            memcpy(h, hs->h, hs->n * sizeof(*h));
        hs->h = h;
        hs->cap = cap;
    }
    hs->h[hs->n++] = (tg_header_t){name, value};
    return 0;
}

int tg_headers_remove(tg_headers_t *hs, tg_str_t name)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < hs->n; i++)
        if (!tg_str_caseeq(hs->h[i].name, name))
            hs->h[w++] = hs->h[i];
    int removed = (int)(hs->n - w);
    hs->n = w;
    return removed;
}

int tg_headers_own(tg_arena_t *a, tg_headers_t *hs)
{
    for (uint32_t i = 0; i < hs->n; i++) {
        tg_header_t *h = &hs->h[i];
        h->name = tg_arena_str(a, h->name);
        h->value = tg_arena_str(a, h->value);
        if (h->name.p == NULL || h->value.p == NULL)
            return -1;
    }
    return 0;
}

int tg_headers_set(tg_arena_t *a, tg_headers_t *hs, tg_str_t name, tg_str_t value)
{
    tg_header_t *h = tg_headers_find(hs, name);
    if (h == NULL)
        return tg_headers_add(a, hs, name, value);
    h->value = value;
    /* drop later duplicates, keep the first's position */
    uint32_t keep = (uint32_t)(h - hs->h), w = keep + 1;
    for (uint32_t i = keep + 1; i < hs->n; i++)
        if (!tg_str_caseeq(hs->h[i].name, name))
            hs->h[w++] = hs->h[i];
    hs->n = w;
    return 0;
}

const char *tg_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 200 ? "Informational" : status < 300 ? "OK" :
                    status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
    }
}
