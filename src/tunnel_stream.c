/* A tunnel through the request's own body functions (see tunnel_stream.h):
 * the WebSocket of an HTTP/2 client (RFC 8441) to an HTTP/1.1 upstream.
 *
 * The carrier may call the handler back from inside the request functions
 * used here (body_consumed and flush run its output, which can drain this
 * stream's queue: on_drained); such a nested pump only marks `again`, and
 * the outer one goes round once more. */
#include <errno.h>
#include <sys/socket.h>
#include "tunnel_stream.h"
#include "tls_io.h"
#include "upstream.h"
#include "log.h"
#include "worker.h"

#define ROUNDS 8 /* rounds per side and event: a busy tunnel must not starve the others */

static int would_block(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

/* Client -> upstream: pull what the carrier has buffered, write it, hand it
 * back once all went. 1 when bytes moved, 0 when none could, -1 failed. */
static int move_up(tg_tunnel_stream_t *t)
{
    int progress = 0;
    for (int round = 0; round < ROUNDS && !t->c_eof; round++) {
        if (t->up == NULL) {
            tg_spans_t *sp;
            int done = 0;
            int rc = tg_request_body_pull(t->r, &sp, &done);
            if (rc < 0)
                return -1; /* the client is gone (its stream was reset) */
            if (rc == 0 || (sp->len == 0 && !done))
                return progress; /* on_body comes */
            if (sp->len == 0) {
                /* the client ended its side: so ends the upstream's write side */
                tg_tls_shutdown(t->uc->ssl, t->uc->tls_flags);
                shutdown(t->uc->fd, SHUT_WR);
                t->c_eof = 1;
                return 1;
            }
            t->up = sp;
            t->up_off = 0;
        }
        struct iovec v[TG_SPANS_MAX];
        int n = 0;
        size_t skip = t->up_off;
        for (int i = 0; i < t->up->n; i++) {
            size_t len = t->up->v[i].iov_len;
            if (skip >= len) {
                skip -= len;
                continue;
            }
            v[n++] = (struct iovec){(char *)t->up->v[i].iov_base + skip, len - skip};
            skip = 0;
        }
        ssize_t w = tg_upconn_writev(t->uc, v, n);
        if (w < 0) {
            if (would_block())
                return progress; /* EV_WRITE */
            tg_log_errno(TG_LOG_INFO, "tunnel: writing to upstream %.*s failed",
                         TG_STR_FMT(t->r->upstream_addr));
            return -1;
        }
        t->up_off += (size_t)w;
        t->up_bytes += (uint64_t)w;
        progress = 1;
        if (t->up_off < t->up->len)
            return progress; /* the upstream is full: EV_WRITE */
        t->up = NULL;
        tg_request_body_consumed(t->r); /* the client's window reopens */
    }
    return progress;
}

/* Queue one round (or the end) on the carrier and flush. 1 taken, 0 the
 * carrier holds it (on_drained comes), -1 the client is gone. */
static int send_round(tg_tunnel_stream_t *t, int last)
{
    tg_spans_t spans = {0};
    if (t->down && tg_buf_len(t->down))
        tg_spans_add(&spans, t->down->pos, tg_buf_len(t->down));
    if (tg_request_send_body(t->r, &spans, last) != 0)
        return -1;
    t->down_bytes += spans.len;
    t->down_wait = 1; /* cleared by on_drained, or below */
    int rc = tg_request_flush(t->r);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return 0;
    t->down_wait = 0;
    return 1;
}

/* Upstream -> client: read a round while the carrier took the last one.
 * 1 when bytes moved, 0 when none could, -1 failed. */
static int move_down(tg_tunnel_stream_t *t)
{
    int progress = 0;
    for (int round = 0; round < ROUNDS && !t->down_wait && !t->u_eof; round++) {
        if (t->down == NULL && (t->down = tg_buf_get()) == NULL)
            return -1;
        tg_buf_t *b = t->down;
        b->pos = b->last = b->start; /* the carrier took the last round */
        ssize_t n = tg_upconn_read(t->uc, b->last, (size_t)(b->end - b->last));
        if (n < 0) {
            if (would_block()) {
                tg_buf_put(b); /* an idle tunnel holds no buffer */
                t->down = NULL;
                return progress;
            }
            tg_log_errno(TG_LOG_INFO, "tunnel: reading from upstream %.*s failed",
                         TG_STR_FMT(t->r->upstream_addr));
            return -1;
        }
        if (n == 0)
            t->u_eof = 1;
        b->last += n;
        progress = 1;
        if (send_round(t, t->u_eof) < 0)
            return -1;
    }
    return progress;
}

static void want(tg_tunnel_stream_t *t, int events)
{
    ev_io *w = &t->uc->io;
    if (ev_is_active(w) && w->events == events)
        return;
    ev_io_stop(tg_worker->loop, w);
    if (events) {
        ev_io_set(w, t->uc->fd, events);
        ev_io_start(tg_worker->loop, w);
    }
}

int tg_tunnel_stream_pump(tg_tunnel_stream_t *t, int drained)
{
    if (drained)
        t->down_wait = 0;
    if (t->busy) {
        t->again = 1;
        return 1;
    }
    t->busy = 1;
    int failed = 0, moved, rounds = 0;
    do {
        t->again = 0;
        int up = move_up(t), down = move_down(t);
        failed = up < 0 || down < 0;
        moved = up > 0 || down > 0;
    } while (!failed && (t->again || (moved && ++rounds < ROUNDS)));
    t->busy = 0;
    if (failed) {
        want(t, 0);
        return -1;
    }
    if (t->u_eof && !t->down_wait) {
        want(t, 0);
        return 0; /* the upstream's last byte and the end went to the client */
    }
    int ev = (!t->u_eof && !t->down_wait ? EV_READ : 0) | (t->up ? EV_WRITE : 0);
    if ((ev & EV_READ) && (t->uc->tls_flags & TG_TLS_F_WANT_WRITE))
        ev |= EV_WRITE; /* the TLS layer must write before it can read on */
    want(t, ev);
    /* bytes the TLS layer holds come with no socket event */
    if ((ev & EV_READ) && tg_upconn_has_pending(t->uc))
        ev_feed_event(tg_worker->loop, &t->uc->io, EV_READ);
    return 1;
}

int tg_tunnel_stream_start(tg_tunnel_stream_t *t, tg_buf_t *early)
{
    t->down = early;
    if (early && tg_buf_len(early) && send_round(t, 0) < 0)
        return -1;
    return tg_tunnel_stream_pump(t, 0);
}

void tg_tunnel_stream_release(tg_tunnel_stream_t *t)
{
    if (t->down)
        tg_buf_put(t->down);
    t->down = NULL;
    t->up = NULL;
}
