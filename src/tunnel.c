#include <errno.h>
#include <unistd.h>
#include <sys/socket.h>
#include "tunnel.h"
#include "tls_io.h"
#include "upstream.h"
#include "conn.h"

/* The two ends: the client connection (plain or TLS) and the upstream
 * socket. */
static ssize_t side_read(tg_tunnel_t *t, int client, void *buf, size_t len)
{
    return client ? tg_conn_read(t->c, buf, len) : tg_upconn_read(t->uc, buf, len);
}

static ssize_t side_write(tg_tunnel_t *t, int client, const void *buf, size_t len)
{
    return client ? tg_conn_write(t->c, buf, len) : tg_upconn_write(t->uc, buf, len);
}

static void side_shutdown(tg_tunnel_t *t, int client)
{
    if (client)
        tg_conn_tls_shutdown(t->c); /* close_notify first (no-op when plain) */
    else
        tg_tls_shutdown(t->uc->ssl, t->uc->tls_flags);
    shutdown(client ? t->c->fd : t->ufd, SHUT_WR);
}

/* One direction: read side `from_client` into *bp while there is room,
 * write it to the other side. The buffer is taken from the worker's pool
 * only for the move and goes back as soon as it is empty, so an idle tunnel
 * holds no buffer. Returns 1 if any byte moved. */
static int move(tg_tunnel_t *t, int from_client, tg_buf_t **bp, unsigned *eof, unsigned *shut,
                unsigned *failed, uint64_t *count)
{
    int progress = 0;
    tg_buf_t *b = *bp;
    if (b == NULL && !*eof && (b = tg_buf_get()) == NULL) {
        *failed = 1;
        return 0;
    }
    while (b != NULL) {
        if (b->pos == b->last)
            b->pos = b->last = b->start;
        if (!*eof && b->last < b->end) {
            ssize_t n = side_read(t, from_client, b->last, (size_t)(b->end - b->last));
            if (n > 0) {
                b->last += n;
                progress = 1;
            } else if (n == 0) {
                *eof = 1;
            } else if (errno != EAGAIN && errno != EINTR) {
                *failed = 1;
                *bp = b; /* the tunnel's end returns it */
                return progress;
            }
        }
        if (b->pos == b->last)
            break;
        ssize_t w = side_write(t, !from_client, b->pos, (size_t)(b->last - b->pos));
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR)
                *failed = 1;
            break;
        }
        b->pos += w;
        *count += (uint64_t)w;
        progress = 1;
        if (b->pos != b->last)
            break; /* the other side is full: wait for it */
        if (*eof)
            break;
    }
    if (b && b->pos == b->last) {
        tg_buf_put(b);
        b = NULL;
    }
    *bp = b;
    if (*eof && b == NULL && !*shut) {
        side_shutdown(t, !from_client); /* pass the half-close on */
        *shut = 1;
    }
    return progress;
}

static void want(struct ev_loop *loop, ev_io *w, int fd, int events)
{
    if (ev_is_active(w) && w->events == events)
        return;
    ev_io_stop(loop, w);
    if (events) {
        ev_io_set(w, fd, events);
        ev_io_start(loop, w);
    }
}

int tg_tunnel_pump(tg_tunnel_t *t, struct ev_loop *loop)
{
    unsigned up_shut = t->u_shut, down_shut = t->c_shut, c_eof = t->c_eof, u_eof = t->u_eof,
             failed = 0;
    int moved, rounds = 0;
    do { /* a bounded number of rounds: a busy tunnel must not starve the others */
        moved = move(t, 1, &t->up, &c_eof, &up_shut, &failed, &t->up_bytes);
        moved |= move(t, 0, &t->down, &u_eof, &down_shut, &failed, &t->down_bytes);
    } while (moved && !failed && ++rounds < 8);
    t->c_eof = c_eof, t->u_eof = u_eof, t->u_shut = up_shut, t->c_shut = down_shut;
    /* one side is done and what it sent is delivered: the tunnel is over
     * (as nginx does: a WebSocket peer that closed will not be answered) */
    if (failed || t->u_shut || t->c_shut) {
        t->failed = failed;
        ev_io_stop(loop, t->cio);
        ev_io_stop(loop, t->uio);
        return 0;
    }
    /* read a side only when its buffer has room; write it when bytes wait
     * (a buffer that is still there holds bytes) */
    int up_full = t->up && t->up->last == t->up->end;
    int down_full = t->down && t->down->last == t->down->end;
    int cev = ((!t->c_eof && !up_full) ? EV_READ : 0) | (t->down ? EV_WRITE : 0);
    int uev = ((!t->u_eof && !down_full) ? EV_READ : 0) | (t->up ? EV_WRITE : 0);
    if ((cev & EV_READ) && (t->c->tls_flags & TG_TLS_F_WANT_WRITE))
        cev |= EV_WRITE; /* the TLS layer must write before it can read on */
    if ((uev & EV_READ) && (t->uc->tls_flags & TG_TLS_F_WANT_WRITE))
        uev |= EV_WRITE;
    want(loop, t->cio, t->c->fd, cev);
    want(loop, t->uio, t->ufd, uev);
    /* bytes the TLS layer holds come with no socket event */
    if ((cev & EV_READ) && tg_conn_has_pending(t->c))
        ev_feed_event(loop, t->cio, EV_READ);
    if ((uev & EV_READ) && tg_upconn_has_pending(t->uc))
        ev_feed_event(loop, t->uio, EV_READ);
    return 1;
}
