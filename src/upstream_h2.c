/* HTTP/2 to upstreams: the client connections of a `protocol http2`
 * upstream, per worker, and the streams on them (nghttp2's client session:
 * framing, HPACK and flow control are nghttp2's).
 *
 * Pool: u->h2conns lists this worker's connections to u's servers. A
 * stream goes on a connection to its peer that has room (fewer streams than
 * http2_streams_per_connection and than the server's
 * MAX_CONCURRENT_STREAMS, no GOAWAY received), else on a new one; streams
 * opened while it connects wait in its list and are submitted once it is up
 * (after the TLS handshake with ALPN h2 when the upstream has `tls on`). A
 * connection without streams stays open, watched for reads (PING, GOAWAY,
 * its close), up to keepalive connections per upstream, for 60 s.
 *
 * Flow control both ways: the response body is copied out of nghttp2 into
 * at most TG_H2UP_BUFS pool buffers per stream (the stream window we
 * announce is that much), WINDOW_UPDATE goes only for what the owner
 * consumed (automatic window updates are off), so a client that does not
 * read stalls its own stream and nothing else. The request body goes as the
 * owner hands it over (st->src), read by the stream's data provider when
 * the server's windows allow.
 *
 * Failures: a stream the server resets closes alone (st->error); GOAWAY
 * closes the streams it did not process as refused (nghttp2 reports them
 * REFUSED_STREAM) and the connection takes no new ones, closing when its
 * last stream ends; a connection that fails closes each of its streams,
 * those not sent yet as refused, so the owner can retry them elsewhere.
 *
 * Re-entry: nghttp2's callbacks only record (st->pending); owners run from
 * dispatch after nghttp2 returned. An owner's call (resume, consume, close)
 * from inside a dispatch only notes that frames wait; the outermost run
 * sends them. A connection is freed only by the outermost run. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "upstream_h2.h"
#include "log.h"
#include "worker.h"

#define IDLE_SECONDS 60.0 /* a connection without streams closes after this */
#define READ_ROUNDS 8     /* input buffers per socket event */

/* connecting, TLS handshake, waiting for the server's SETTINGS (its limits:
 * no stream goes before), ready */
typedef enum { C_CONNECTING = 0, C_HANDSHAKE, C_SETTLING, C_READY } conn_state_t;

struct tg_h2up_s {
    tg_upconn_t *uc; /* the socket (and TLS session); its io and timer are ours */
    tg_upstream_t *u;
    tg_peer_t *peer;
    nghttp2_session *ng; /* NULL until connected */
    tg_buf_t *in, *out;
    const uint8_t *pend; /* mem_send output not copied into `out` yet */
    size_t npend;
    tg_h2up_stream_t *streams; /* submitted */
    tg_h2up_stream_t *waiting; /* opened while connecting (singly linked by next) */
    tg_h2up_stream_t *phead, *ptail; /* dispatch list */
    int nstreams;                    /* submitted + waiting */
    uint8_t state;
    int depth;
    tg_msec_t connect_ms;
    unsigned goaway : 1; /* received, or we stop using it: no new streams */
    unsigned dead : 1;   /* failed: freed by the outermost run */
    struct tg_h2up_s *next;
};

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

static void conn_run(tg_h2up_t *h);
static void conn_fail(tg_h2up_t *h, const char *why);

static void mark(tg_h2up_t *h, tg_h2up_stream_t *st)
{
    if (st->pending)
        return;
    st->pending = 1;
    st->pnext = NULL;
    if (h->ptail)
        h->ptail->pnext = st;
    else
        h->phead = st;
    h->ptail = st;
}

static void unmark(tg_h2up_t *h, tg_h2up_stream_t *st)
{
    if (!st->pending)
        return;
    st->pending = 0;
    tg_h2up_stream_t *prev = NULL;
    for (tg_h2up_stream_t *x = h->phead; x; prev = x, x = x->pnext) {
        if (x != st)
            continue;
        if (prev)
            prev->pnext = x->pnext;
        else
            h->phead = x->pnext;
        if (h->ptail == x)
            h->ptail = prev;
        return;
    }
}

static void unlink_stream(tg_h2up_t *h, tg_h2up_stream_t *st)
{
    if (st->id == 0) {
        for (tg_h2up_stream_t **pp = &h->waiting; *pp; pp = &(*pp)->next)
            if (*pp == st) {
                *pp = st->next;
                break;
            }
    } else {
        if (st->prev)
            st->prev->next = st->next;
        else
            h->streams = st->next;
        if (st->next)
            st->next->prev = st->prev;
    }
    st->prev = st->next = NULL;
    h->nstreams--;
}

/* The stream is over on the connection; its owner hears of it. */
static void stream_closed(tg_h2up_t *h, tg_h2up_stream_t *st, uint32_t code, int refused)
{
    if (st->closed)
        return;
    unlink_stream(h, st);
    st->closed = 1;
    st->error = code;
    st->refused = refused;
    mark(h, st);
}

size_t tg_h2up_buffered(const tg_h2up_stream_t *st)
{
    size_t n = 0;
    for (int i = 0; i < st->nin; i++)
        n += tg_buf_len(st->in[i]);
    return n;
}

/* ---- nghttp2 callbacks: record only ------------------------------------------ */

static tg_h2up_stream_t *stream_of(nghttp2_session *ng, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(ng, id) : NULL;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    tg_h2up_stream_t *st = stream_of(ng, f->hd.stream_id);
    if (st == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    tg_str_t n = {(const char *)name, nlen}, v = {(const char *)value, vlen};
    if (nlen && name[0] == ':') {
        if (tg_str_eq_lit(n, ":status") && !st->head) {
            int64_t s;
            st->status = tg_parse_int(v, &s) == 0 && s >= 100 && s <= 999 ? (int)s : 0;
        }
        return 0; /* nghttp2 checked them: only :status comes in a response */
    }
    if (!st->head && st->status < 200)
        return 0; /* an interim response's fields */
    if (st->on_field(st, n, v, st->head) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    tg_h2up_t *h = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h->goaway = 1; /* nghttp2 closes the streams past its last id as refused */
        tg_log(TG_LOG_INFO, "upstream %.*s sent GOAWAY (last stream %d, code %u)",
               TG_STR_FMT(h->peer->name), f->goaway.last_stream_id, f->goaway.error_code);
        return 0;
    }
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) &&
        h->state == C_SETTLING) {
        h->state = C_READY; /* conn_run submits the waiting streams */
        ev_timer_stop(tg_worker->loop, &h->uc->timer);
        return 0;
    }
    tg_h2up_stream_t *st = stream_of(ng, f->hd.stream_id);
    if (st == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_HEADERS)) {
        if (st->head)
            st->trailers = 1;
        else if (st->status >= 200)
            st->head = 1;
        else
            st->status = 0; /* 1xx: the final response follows */
        mark(h, st);
    }
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && st->head) {
        st->ended = 1;
        mark(h, st);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    tg_h2up_t *h = ud;
    tg_h2up_stream_t *st = stream_of(ng, id);
    if (st == NULL) {
        nghttp2_session_consume(ng, id, len); /* nobody reads it */
        return 0;
    }
    while (len) {
        tg_buf_t *b = st->nin ? st->in[st->nin - 1] : NULL;
        if (b == NULL || tg_buf_room(b) == 0) {
            if (st->nin == TG_H2UP_BUFS + 1 || (b = tg_buf_get()) == NULL) {
                /* past the window we announced, or no memory */
                nghttp2_session_consume(ng, id, len);
                nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_FLOW_CONTROL_ERROR);
                return 0;
            }
            st->in[st->nin++] = b;
        }
        size_t k = tg_buf_room(b) < len ? tg_buf_room(b) : len;
        memcpy(b->last, data, k);
        b->last += k;
        data += k;
        len -= k;
    }
    mark(h, st);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    tg_h2up_t *h = ud;
    tg_h2up_stream_t *st = stream_of(ng, id);
    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    stream_closed(h, st, code, code == NGHTTP2_REFUSED_STREAM);
    return 0;
}

/* The request body: what the owner handed over in st->src. */
static ssize_t data_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)src;
    tg_h2up_t *h = ud;
    tg_h2up_stream_t *st = stream_of(ng, id);
    if (st == NULL)
        return NGHTTP2_ERR_DEFERRED; /* being reset */
    size_t n = 0, off = st->src_off;
    for (int i = 0; st->src && i < st->src->n && n < len; i++) {
        size_t l = st->src->v[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        size_t k = l - off < len - n ? l - off : len - n;
        memcpy(buf + n, (char *)st->src->v[i].iov_base + off, k);
        n += k;
        off = 0;
    }
    st->src_off += n;
    int all = st->src == NULL || st->src_off == st->src->len;
    if (all && st->src && !st->sent) {
        st->sent = 1; /* the owner gives the next round back to the client reader */
        mark(h, st);
    }
    if (all && st->src_last) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static int callbacks_init(void)
{
    if (callbacks)
        return 0;
    if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_option_set_no_auto_window_update(options, 1);
    return 0;
}

/* ---- the connection ---------------------------------------------------------- */

static size_t stream_window(void)
{
    return TG_H2UP_BUFS * tg_buf_pool_size();
}

static void conn_want(tg_h2up_t *h, int events)
{
    ev_io *io = &h->uc->io;
    if (io->events == events && ev_is_active(io))
        return;
    ev_io_stop(tg_worker->loop, io);
    if (events) {
        ev_io_set(io, h->uc->fd, events);
        ev_io_start(tg_worker->loop, io);
    }
}

static void conn_free(tg_h2up_t *h)
{
    for (tg_h2up_t **pp = &h->u->h2conns; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    if (h->ng)
        nghttp2_session_del(h->ng);
    tg_buf_put(h->in);
    tg_buf_put(h->out);
    tg_upconn_destroy(h->uc);
    free(h);
}

/* Every stream closes: those never sent as refused. */
static void conn_fail(tg_h2up_t *h, const char *why)
{
    if (h->dead)
        return;
    if (why)
        tg_log(TG_LOG_ERROR, "upstream %.*s: HTTP/2 connection %s", TG_STR_FMT(h->peer->name),
               why);
    h->dead = 1;
    h->goaway = 1;
    int connecting = h->state != C_READY;
    while (h->waiting) {
        tg_h2up_stream_t *st = h->waiting;
        st->conn_failed = connecting;
        stream_closed(h, st, NGHTTP2_CONNECT_ERROR, 1);
    }
    while (h->streams) {
        tg_h2up_stream_t *st = h->streams;
        if (h->ng)
            nghttp2_session_set_stream_user_data(h->ng, st->id, NULL);
        stream_closed(h, st, NGHTTP2_INTERNAL_ERROR, 0);
    }
}

static int submit(tg_h2up_t *h, tg_h2up_stream_t *st)
{
    nghttp2_data_provider prd = {.source = {.ptr = st}, .read_callback = data_read};
    int32_t id = nghttp2_submit_request(h->ng, NULL, st->nv, st->nnv, st->has_body ? &prd : NULL,
                                        st);
    if (id < 0)
        return -1;
    st->id = id;
    st->next = h->streams;
    if (h->streams)
        h->streams->prev = st;
    st->prev = NULL;
    h->streams = st;
    return 0;
}

static void conn_ready(tg_h2up_t *h)
{
    if (h->uc->ssl) {
        tg_str_t alpn = tg_tls_alpn(h->uc->ssl);
        if (!tg_str_eq_lit(alpn, "h2")) {
            conn_fail(h, "refused: the server did not choose h2 by ALPN");
            return;
        }
    }
    size_t win = stream_window();
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)win},
    };
    if (nghttp2_session_client_new2(&h->ng, callbacks, h, options) != 0 ||
        nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, 2) != 0 ||
        nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)(win * (size_t)h->u->h2_streams >
                                                                (1u << 30)
                                                            ? (1u << 30)
                                                            : win * (size_t)h->u->h2_streams)) !=
            0) {
        conn_fail(h, "failed: out of memory");
        return;
    }
    h->state = C_SETTLING; /* the connect timer runs on */
}

/* The server's SETTINGS came: the streams that waited go, oldest first, as
 * many as it allows; the others are refused (their owners open them again,
 * on a connection with room). */
static void conn_submit_waiting(tg_h2up_t *h)
{
    tg_h2up_stream_t *rev = NULL;
    while (h->waiting) {
        tg_h2up_stream_t *st = h->waiting;
        h->waiting = st->next;
        st->next = rev;
        rev = st;
    }
    uint32_t max =
        nghttp2_session_get_remote_settings(h->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    uint32_t n = 0;
    for (tg_h2up_stream_t *x = h->streams; x; x = x->next)
        n++;
    while (rev) {
        tg_h2up_stream_t *st = rev;
        rev = st->next;
        st->next = NULL;
        if (n >= max || submit(h, st) != 0) {
            st->id = 0;
            st->next = h->waiting;
            h->waiting = st;
            stream_closed(h, st, NGHTTP2_REFUSED_STREAM, 1);
            continue;
        }
        n++;
    }
}

static void conn_idle_check(tg_h2up_t *h);
static int conn_send(tg_h2up_t *h);

/* After an owner's call: send what it made nghttp2 queue, and leave the
 * rest (events for owners, freeing the connection) to a run from the loop,
 * so that no owner is called back from inside its own call. */
static void conn_kick(tg_h2up_t *h)
{
    if (h->depth)
        return; /* the outer run goes on */
    conn_idle_check(h);
    conn_send(h);
    if (h->phead || h->dead ||
        (h->ng && !nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)))
        ev_feed_event(tg_worker->loop, &h->uc->io, EV_CUSTOM);
}

/* Copy nghttp2's frames into `out` and write them. 0, or -1 (failed). */
static int conn_send(tg_h2up_t *h)
{
    if (h->ng == NULL || h->dead)
        return 0;
    for (;;) {
        tg_buf_t *b = h->out;
        if (b == NULL && (b = h->out = tg_buf_get()) == NULL) {
            conn_fail(h, "failed: out of memory");
            return -1;
        }
        while (tg_buf_room(b)) {
            if (h->npend == 0) {
                ssize_t n = nghttp2_session_mem_send(h->ng, &h->pend);
                if (n < 0) {
                    conn_fail(h, nghttp2_strerror((int)n));
                    return -1;
                }
                if (n == 0)
                    break;
                h->npend = (size_t)n;
            }
            tg_buf_fill(b, &h->pend, &h->npend);
        }
        if (tg_buf_len(b) == 0) {
            tg_buf_put(b);
            h->out = NULL;
            conn_want(h, EV_READ);
            return 0;
        }
        ssize_t w = tg_upconn_write(h->uc, b->pos, tg_buf_len(b));
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                conn_want(h, EV_READ | EV_WRITE);
                return 0;
            }
            conn_fail(h, "failed: write error");
            return -1;
        }
        b->pos += w;
        if (b->pos == b->last)
            b->pos = b->last = b->start;
        else {
            conn_want(h, EV_READ | EV_WRITE);
            return 0;
        }
    }
}

static void conn_recv(tg_h2up_t *h)
{
    for (int round = 0; round < READ_ROUNDS && !h->dead; round++) {
        if (h->in == NULL && (h->in = tg_buf_get()) == NULL) {
            conn_fail(h, "failed: out of memory");
            return;
        }
        tg_buf_t *b = h->in;
        ssize_t n = tg_upconn_read(h->uc, b->start, (size_t)(b->end - b->start));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                tg_buf_put(h->in); /* an idle connection holds no input buffer */
                h->in = NULL;
                return;
            }
            conn_fail(h, "failed: read error");
            return;
        }
        if (n == 0) {
            conn_fail(h, h->nstreams ? "closed by the server with streams open" : NULL);
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)b->start, (size_t)n);
        if (rv < 0) {
            conn_fail(h, nghttp2_strerror((int)rv));
            return;
        }
    }
    if (!h->dead)
        ev_feed_event(tg_worker->loop, &h->uc->io, EV_READ); /* more later: others' turn */
}

static void conn_idle_check(tg_h2up_t *h)
{
    if (h->dead || h->state != C_READY || h->nstreams)
        return;
    int idle = 0;
    for (tg_h2up_t *x = h->u->h2conns; x; x = x->next)
        if (x != h && x->state == C_READY && x->nstreams == 0 && !x->dead)
            idle++;
    if (h->goaway || tg_worker->shutting_down || idle >= h->u->keepalive || h->peer->absent) {
        if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng))
            return; /* GOAWAY said already */
        nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
        h->goaway = 1;
        return; /* closes once the GOAWAY went (conn_run) */
    }
    h->uc->timer.repeat = IDLE_SECONDS;
    ev_timer_again(tg_worker->loop, &h->uc->timer);
}

/* A closed stream's owner hears of it: the bytes it has not consumed go
 * back to the connection window now (the stream gets no more), and it is
 * detached, free to be opened again elsewhere. */
static void dispatch_one(tg_h2up_t *h, tg_h2up_stream_t *st)
{
    st->pending = 0;
    if (st->closed && st->conn) {
        if (h->ng && st->id)
            nghttp2_session_consume(h->ng, st->id, tg_h2up_buffered(st));
        st->conn = NULL;
    }
    st->on_event(st);
}

static tg_h2up_stream_t *pop(tg_h2up_t *h)
{
    tg_h2up_stream_t *st = h->phead;
    if (st && (h->phead = st->pnext) == NULL)
        h->ptail = NULL;
    return st;
}

/* Dispatch the streams' events and send, until nothing is left; then close
 * a connection that is idle past its use, and free one that is dead or has
 * said and heard all it would (GOAWAY). */
static void conn_run(tg_h2up_t *h)
{
    if (h->depth)
        return; /* the outer run goes on */
    h->depth++;
    tg_h2up_stream_t *st;
    for (int guard = 0; guard < 64; guard++) {
        if (h->waiting && h->state == C_READY && !h->dead)
            conn_submit_waiting(h);
        while ((st = pop(h)) != NULL)
            dispatch_one(h, st);
        if (conn_send(h) != 0 || h->phead == NULL)
            break;
    }
    conn_idle_check(h);
    conn_send(h);
    if (!h->dead && h->ng && !nghttp2_session_want_read(h->ng) &&
        !nghttp2_session_want_write(h->ng) && (h->out == NULL || tg_buf_len(h->out) == 0))
        conn_fail(h, h->nstreams ? "ended (GOAWAY) with streams open" : NULL); /* all said */
    while ((st = pop(h)) != NULL) /* failed: tell them */
        dispatch_one(h, st);
    h->depth--;
    if (h->dead)
        conn_free(h);
}

static void conn_handshake(tg_h2up_t *h)
{
    int rc = tg_upconn_tls_handshake(h->uc, NULL, 0);
    if (rc == 0) {
        conn_want(h, (h->uc->tls_flags & TG_TLS_F_WANT_WRITE) ? EV_WRITE : EV_READ);
        return;
    }
    if (rc < 0) {
        conn_fail(h, NULL); /* logged */
        return;
    }
    conn_ready(h);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    tg_h2up_t *h = w->data;
    if (revents == EV_CUSTOM) { /* conn_kick: events to dispatch */
        conn_run(h);
        return;
    }
    if (h->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(h->uc->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            errno = err;
            tg_log_errno(TG_LOG_ERROR, "connect() to %.*s failed", TG_STR_FMT(h->peer->name));
            conn_fail(h, NULL);
        } else if (h->u->tls) {
            if (tg_upconn_tls_start(h->uc) != 0)
                conn_fail(h, "failed: cannot start TLS");
            else {
                h->state = C_HANDSHAKE;
                conn_handshake(h);
            }
        } else {
            conn_ready(h);
        }
    } else if (h->state == C_HANDSHAKE) {
        conn_handshake(h);
    } else { /* settling or ready */
        if (revents & EV_WRITE)
            conn_send(h);
        if ((revents & EV_READ) || tg_upconn_has_pending(h->uc) ||
            ((revents & EV_WRITE) && (h->uc->tls_flags & TG_TLS_F_WANT_WRITE)))
            conn_recv(h);
    }
    conn_run(h);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_h2up_t *h = w->data;
    ev_timer_stop(tg_worker->loop, w);
    if (h->state != C_READY) {
        tg_log(TG_LOG_ERROR, "timed out connecting to upstream %.*s", TG_STR_FMT(h->peer->name));
        conn_fail(h, NULL);
    } else if (h->nstreams == 0) {
        h->goaway = 1; /* idle for IDLE_SECONDS */
        nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
        conn_send(h);
        h->dead = 1;
    }
    conn_run(h);
}

static tg_h2up_t *conn_create(tg_upstream_t *u, tg_peer_t *p, tg_msec_t connect_ms)
{
    if (callbacks_init() != 0)
        return NULL;
    tg_h2up_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    if ((h->uc = tg_upconn_create(u, p)) == NULL) {
        int e = errno;
        free(h);
        errno = e;
        return NULL;
    }
    h->u = u;
    h->peer = p;
    h->connect_ms = connect_ms;
    ev_io_init(&h->uc->io, conn_io_cb, h->uc->fd, EV_WRITE);
    h->uc->io.data = h;
    ev_io_start(tg_worker->loop, &h->uc->io);
    ev_init(&h->uc->timer, conn_timer_cb);
    h->uc->timer.data = h;
    h->uc->timer.repeat = (double)connect_ms / 1000.0;
    ev_timer_again(tg_worker->loop, &h->uc->timer);
    h->next = u->h2conns;
    u->h2conns = h;
    return h;
}

/* Room for one more stream? */
static int conn_has_room(tg_h2up_t *h, tg_peer_t *p)
{
    if (h->peer != p || h->goaway || h->dead)
        return 0;
    uint32_t max = (uint32_t)h->u->h2_streams;
    if (h->state == C_READY) {
        uint32_t peer_max =
            nghttp2_session_get_remote_settings(h->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (peer_max < max)
            max = peer_max;
    }
    return (uint32_t)h->nstreams < max;
}

/* ---- streams, for their owner ------------------------------------------------ */

int tg_h2up_open(tg_h2up_stream_t *st, tg_upstream_t *u, tg_peer_t *p, const nghttp2_nv *nv,
                 size_t n, int has_body, tg_msec_t connect_ms)
{
    tg_h2up_t *h = NULL;
    for (tg_h2up_t *x = u->h2conns; x; x = x->next)
        if (conn_has_room(x, p)) {
            h = x;
            break;
        }
    if (h == NULL && (h = conn_create(u, p, connect_ms)) == NULL)
        return -1;
    st->nv = nv;
    st->nnv = n;
    st->has_body = has_body;
    st->conn = h;
    st->id = 0;
    st->status = 0;
    st->src_off = 0;
    st->error = 0;
    st->head = st->ended = st->trailers = st->closed = st->refused = 0;
    st->conn_failed = st->deferred = st->pending = st->sent = 0;
    st->prev = st->next = st->pnext = NULL;
    h->nstreams++;
    if (h->state != C_READY) {
        st->next = h->waiting;
        h->waiting = st;
        return 0;
    }
    ev_timer_stop(tg_worker->loop, &h->uc->timer); /* not idle any more */
    if (submit(h, st) != 0) {
        st->next = h->waiting;
        h->waiting = st;
        stream_closed(h, st, NGHTTP2_REFUSED_STREAM, 1);
    }
    conn_kick(h);
    return 0;
}

void tg_h2up_resume(tg_h2up_stream_t *st)
{
    tg_h2up_t *h = st->conn;
    if (h == NULL || st->closed || st->id == 0)
        return; /* a waiting stream's provider reads src when it is submitted */
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(h->ng, st->id);
    }
    conn_kick(h);
}

static void drop_in(tg_h2up_stream_t *st, size_t n)
{
    int w = 0;
    for (int i = 0; i < st->nin; i++) {
        tg_buf_t *b = st->in[i];
        size_t k = tg_buf_len(b) < n ? tg_buf_len(b) : n;
        b->pos += k;
        n -= k;
        if (b->pos == b->last && (i < st->nin - 1 || tg_buf_room(b) == 0)) {
            tg_buf_put(b);
            continue;
        }
        if (b->pos == b->last)
            b->pos = b->last = b->start;
        st->in[w++] = b;
    }
    st->nin = w;
}

void tg_h2up_consume(tg_h2up_stream_t *st, size_t n)
{
    drop_in(st, n);
    tg_h2up_t *h = st->conn;
    if (n == 0 || h == NULL || h->ng == NULL || st->id == 0)
        return;
    nghttp2_session_consume(h->ng, st->id, n); /* connection window too, even once closed */
    conn_kick(h);
}

void tg_h2up_close(tg_h2up_stream_t *st)
{
    tg_h2up_t *h = st->conn;
    size_t left = tg_h2up_buffered(st);
    for (int i = 0; i < st->nin; i++)
        tg_buf_put(st->in[i]);
    st->nin = 0;
    st->conn = NULL;
    if (h == NULL)
        return;
    unmark(h, st);
    if (h->ng && st->id)
        nghttp2_session_consume(h->ng, st->id, left);
    if (!st->closed) {
        if (st->id) {
            nghttp2_session_set_stream_user_data(h->ng, st->id, NULL);
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        }
        unlink_stream(h, st);
        st->closed = 1;
    }
    conn_kick(h);
}

void tg_h2up_close_idle(tg_upstream_t *u)
{
    tg_h2up_t *h = u->h2conns;
    while (h) {
        tg_h2up_t *next = h->next;
        h->goaway = 1;
        if (h->nstreams == 0 && h->depth == 0)
            conn_free(h);
        h = next;
    }
}
