/* Client connections, below any protocol: accept (with the per-worker cache
 * of connection structs), the preamble (PROXY protocol header, TLS handshake,
 * HTTP/2 preface sniff) that decides which codec the worker attaches, timers
 * and watchers, lingering close, and the close itself. Events go to the
 * codec attached to the connection (tg_conn_t.proto), except on a lingering
 * connection, which only drains what the client still sends.
 *
 * The TLS handshake completes here, before any codec runs, because its ALPN
 * answer is what picks the codec (h2 or http/1.1): a codec never sees a
 * connection whose protocol is not decided, and none has to hand a
 * connection over to another. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include "conn.h"
#include "proxyproto.h"
#include "log.h"
#include "sendq.h"
#include "worker.h"

#define LINGER_TIME 2.0
#define CONN_CACHE_MAX 4096

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
/* the owner tag of the PROXY header's address among a connection's ext */
static const char pp_owner = 0;
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

void tg_conn_want(tg_conn_t *c, int events)
{
    if (c->io.events == events && ev_is_active(&c->io))
        return;
    ev_io_stop(tg_worker->loop, &c->io);
    if (events) {
        ev_io_set(&c->io, c->fd, events);
        ev_io_start(tg_worker->loop, &c->io);
    }
}

void tg_conn_timer(tg_conn_t *c, tg_msec_t ms)
{
    if (ms <= 0) {
        ev_timer_stop(tg_worker->loop, &c->timer);
        return;
    }
    c->timer.repeat = (double)ms / 1000.0;
    ev_timer_again(tg_worker->loop, &c->timer);
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

tg_conn_t *tg_conn_accept(tg_listen_t *ls, int fd, struct sockaddr *sa, socklen_t salen)
{
    tg_worker_t *w = tg_worker;
    tg_conn_t *c = w->conn_cache;
    if (c) {
        w->conn_cache = c->next;
        w->conn_cached--;
    } else if ((c = malloc(sizeof(*c))) == NULL) {
        tg_log(TG_LOG_ERROR, "out of memory accepting a connection");
        close(fd);
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->listen = ls;
    c->number = ++w->next_conn_number;
    tg_arena_init(&c->arena, 0);
    if (salen <= sizeof(c->sa))
        memcpy(&c->sa, sa, salen);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    ev_init(&c->timer, conn_timer_cb);
    c->next = w->conns;
    if (c->next)
        c->next->prev = c;
    w->conns = c;
    w->nconns++;
    c->state = TG_CONN_IDLE;
    /* the header timeout also bounds the TLS handshake */
    tg_conn_timer(c, tg_core_conf(ls->default_server->mconf)->header_timeout);
    if (ls->tls && (c->ssl = tg_tls_server_new(ls->tls_ctx, fd, ls)) == NULL) {
        tg_log(TG_LOG_ERROR, "out of memory starting TLS");
        tg_conn_close(c);
        return NULL;
    }
    return c;
}

static void ext_release(tg_conn_t *c)
{
    while (c->ext) {
        tg_conn_ext_t *e = c->ext;
        c->ext = e->next;
        e->release(e->data);
        free(e);
    }
}

void *tg_conn_ext_get(tg_conn_t *c, const void *owner)
{
    for (tg_conn_ext_t *e = c->ext; e; e = e->next)
        if (e->owner == owner)
            return e->data;
    return NULL;
}

int tg_conn_ext_set(tg_conn_t *c, const void *owner, void *data, void (*release)(void *))
{
    tg_conn_ext_t *e = malloc(sizeof(*e));
    if (e == NULL)
        return -1;
    *e = (tg_conn_ext_t){owner, data, release, c->ext};
    c->ext = e;
    return 0;
}

void tg_conn_ext_release_all(void)
{
    for (tg_conn_t *c = tg_worker->conns; c; c = c->next)
        ext_release(c);
}

/* ---- TLS ------------------------------------------------------------------- */

/* Log a TLS failure at info (they are the client's problem: a scanner,
 * plain HTTP, an old client). */
static void tls_log(tg_conn_t *c, const char *op)
{
    if (!tg_tls_is_established(c->ssl))
        tg_log(TG_LOG_INFO, "client %s: TLS handshake failed: %s", tg_conn_peer(c),
               tg_tls_error_reason());
    else
        tg_log(TG_LOG_INFO, "client %s: TLS %s failed: %s", tg_conn_peer(c), op,
               tg_tls_error_reason());
    tg_tls_clear_errors();
}

ssize_t tg_conn_tls_read(tg_conn_t *c, void *buf, size_t len)
{
    int log_it;
    ssize_t n = tg_tls_read(c->ssl, &c->tls_flags, buf, len, &log_it);
    if (log_it)
        tls_log(c, "read");
    return n;
}

int tg_conn_read_batch_start(tg_conn_t *c)
{
    if (c->ssl && !tg_tls_can_stage(c->ssl, c->tls_flags))
        return 0;
    return tg_sendq_read_start(&c->rbatch, c->fd, &c->io);
}

ssize_t tg_conn_read_batched(tg_conn_t *c, void *buf, size_t len, int *more)
{
    char raw[TG_SENDQ_READ_MAX]; /* through TLS: the ciphertext, for SSL_read */
    ssize_t n = c->ssl ? tg_sendq_read_take(&c->rbatch, raw, sizeof(raw))
                       : tg_sendq_read_take(&c->rbatch, buf, len);
    if (more)
        *more = n == TG_SENDQ_READ_MAX;
    if (c->ssl == NULL || n <= 0)
        return n; /* plaintext, or waiting, end of stream or failed, as a read of the socket */
    int log_it;
    n = tg_tls_read_staged(c->ssl, &c->tls_flags, raw, (size_t)n, buf, len, &log_it);
    if (log_it)
        tls_log(c, "read");
    return n;
}

/* batch: 0 one record per write, 1 several, 2 several and the last may
 * wait for the send batch */
static ssize_t tls_writev(tg_conn_t *c, const struct iovec *iov, int n, int batch)
{
    int log_it;
    ssize_t w = batch ? tg_tls_writev_batch(c->ssl, &c->tls_flags, iov, n, batch == 2, &log_it)
                      : tg_tls_writev(c->ssl, &c->tls_flags, iov, n, &log_it);
    if (log_it)
        tls_log(c, "write");
    return w;
}

ssize_t tg_conn_tls_writev(tg_conn_t *c, const struct iovec *iov, int n)
{
    return tls_writev(c, iov, n, 0);
}

ssize_t tg_conn_tls_writev_batch(tg_conn_t *c, const struct iovec *iov, int n, int defer)
{
    return tls_writev(c, iov, n, defer ? 2 : 1);
}

int tg_conn_tls_flush(tg_conn_t *c, int batch)
{
    return tg_tls_flush(c->ssl, &c->tls_flags, batch ? &c->io : NULL);
}

void tg_conn_tls_shutdown(tg_conn_t *c)
{
    tg_tls_shutdown(c->ssl, c->tls_flags);
}

void tg_conn_release_input(tg_conn_t *c)
{
    tg_buf_put(c->ibuf);
    c->ibuf = NULL;
}

void tg_conn_close(tg_conn_t *c)
{
    tg_worker_t *w = tg_worker;
    if (c->proto)
        c->proto->on_close(c);
    ext_release(c);
    ev_io_stop(w->loop, &c->io);
    ev_timer_stop(w->loop, &c->timer);
    tg_conn_tls_shutdown(c);
    tg_tls_server_free(c->ssl);
    c->ssl = NULL;
    tg_sendq_cancel_fd(c->fd);
    close(c->fd);
    tg_conn_release_input(c);
    tg_arena_destroy(&c->arena);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    if (w->accept_paused)
        tg_worker_accept_resume();
    if (w->conn_cached < CONN_CACHE_MAX) {
        c->next = w->conn_cache;
        w->conn_cache = c;
        w->conn_cached++;
    } else {
        free(c);
    }
}

void tg_conn_count_states(tg_conn_states_t *out)
{
    *out = (tg_conn_states_t){0};
    for (tg_conn_t *c = tg_worker->conns; c; c = c->next) {
        switch (c->state) {
        case TG_CONN_IDLE: out->idle++; break;
        case TG_CONN_HEADERS: out->reading++; break;
        case TG_CONN_TUNNEL: out->upgraded++; break;
        default: out->writing++; break; /* busy, lingering */
        }
    }
}

void tg_conn_close_idle_all(double min_idle)
{
    tg_conn_t *c = tg_worker->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->proto && c->proto->on_shutdown) {
            c->proto->on_shutdown(c);
            continue;
        }
        if (c->state != TG_CONN_IDLE || (c->ibuf && c->ibuf->pos != c->ibuf->last))
            continue;
        double idle = c->timer.repeat - ev_timer_remaining(tg_worker->loop, &c->timer);
        if (idle >= min_idle || !ev_is_active(&c->timer))
            tg_conn_close(c);
    }
}

/* Half-close, then read and drop what the client still sends, so the kernel
 * does not reset the connection and destroy the response in flight. */
void tg_conn_linger(tg_conn_t *c)
{
    tg_arena_reset(&c->arena);
    c->state = TG_CONN_LINGER;
    tg_conn_tls_shutdown(c);
    shutdown(c->fd, SHUT_WR);
    tg_conn_want(c, EV_READ);
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

const char *tg_conn_proxy_addr(tg_conn_t *c)
{
    return tg_conn_ext_get(c, &pp_owner);
}

int tg_conn_proxy_protocol(tg_conn_t *c)
{
    tg_buf_t *b = c->ibuf;
    if (c->pp_done || !c->listen->proxy_protocol)
        return 1;
    for (;;) {
        char addr[INET6_ADDRSTRLEN];
        int n = tg_proxyproto_parse(b->pos, (size_t)(b->last - b->pos), addr, sizeof(addr));
        if (n > 0) {
            b->pos += n;
            c->pp_done = 1;
            char *copy = addr[0] ? strdup(addr) : NULL;
            if (addr[0] && (copy == NULL || tg_conn_ext_set(c, &pp_owner, copy, free) != 0)) {
                free(copy);
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
            tg_conn_want(c, EV_READ);
            return 0;
        }
        if (got <= 0) {
            tg_conn_close(c);
            return -1;
        }
        b->last += got;
    }
}

/* ---- preamble ------------------------------------------------------------ */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

static void (*conn_attach)(tg_conn_t *c, tg_conn_proto_id_t proto);

/* The PROXY header, the handshake, the sniff: each step returns to the loop
 * when it needs bytes, and the next event resumes here. */
static void preamble_run(tg_conn_t *c)
{
    for (;;) {
        if (!c->pp_done && c->listen->proxy_protocol) {
            if (c->ibuf == NULL && (c->ibuf = tg_buf_get()) == NULL) {
                tg_log(TG_LOG_ERROR, "out of memory for a client buffer");
                tg_conn_close(c);
                return;
            }
            if (tg_conn_proxy_protocol(c) <= 0)
                return; /* waiting, or closed */
            continue;
        }
        if (c->ssl && !tg_tls_is_established(c->ssl)) {
            int log_it;
            int rc = tg_tls_accept(c->ssl, &c->tls_flags, &log_it);
            if (rc == 1)
                continue;
            if (rc == 0) {
                tg_conn_want(c, tg_conn_read_events(c));
                return;
            }
            if (log_it)
                tls_log(c, "handshake");
            tg_conn_close(c);
            return;
        }
        if (c->ssl) {
            conn_attach(c, tg_str_eq_lit(tg_tls_alpn(c->ssl), "h2") ? TG_CONN_PROTO_H2
                                                                      : TG_CONN_PROTO_H1);
            return;
        }
        if (!c->listen->http2) {
            conn_attach(c, TG_CONN_PROTO_H1);
            return;
        }
        /* h2c with prior knowledge: the client preface, or HTTP/1.1 */
        if (c->ibuf == NULL && (c->ibuf = tg_buf_get()) == NULL) {
            tg_log(TG_LOG_ERROR, "out of memory for a client buffer");
            tg_conn_close(c);
            return;
        }
        tg_buf_t *b = c->ibuf;
        size_t have = (size_t)(b->last - b->pos);
        if (have >= H2_PREFACE_LEN || memcmp(b->pos, h2_preface, have) != 0) {
            conn_attach(c, have >= H2_PREFACE_LEN && memcmp(b->pos, h2_preface, H2_PREFACE_LEN) == 0
                               ? TG_CONN_PROTO_H2
                               : TG_CONN_PROTO_H1);
            return;
        }
        if (have == 0)
            b->pos = b->last = b->start;
        ssize_t n = read(c->fd, b->last, (size_t)(b->end - b->last));
        if (n > 0) {
            b->last += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (have == 0)
                tg_conn_release_input(c); /* hold no buffer while waiting */
            tg_conn_want(c, EV_READ);
            return;
        }
        tg_conn_close(c);
        return;
    }
}

static void preamble_on_io(tg_conn_t *c, int revents)
{
    (void)revents;
    preamble_run(c);
}

static void preamble_on_timeout(tg_conn_t *c)
{
    tg_conn_close(c);
}

static void preamble_on_close(tg_conn_t *c)
{
    (void)c;
}

static const tg_proto_t preamble_proto = {
    .name = "preamble",
    .on_io = preamble_on_io,
    .on_timeout = preamble_on_timeout,
    .on_close = preamble_on_close,
};

void tg_conn_start(tg_conn_t *c, void (*attach)(tg_conn_t *c, tg_conn_proto_id_t proto))
{
    conn_attach = attach;
    if (c->ssl == NULL && !c->listen->proxy_protocol && !c->listen->http2) {
        attach(c, TG_CONN_PROTO_H1); /* nothing to settle first */
        return;
    }
    c->proto = &preamble_proto;
    preamble_run(c);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    tg_conn_t *c = (tg_conn_t *)((char *)w - offsetof(tg_conn_t, io));
    if (c->state == TG_CONN_LINGER)
        conn_drain(c);
    else
        c->proto->on_io(c, revents);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_conn_t *c = (tg_conn_t *)((char *)w - offsetof(tg_conn_t, timer));
    if (c->state == TG_CONN_LINGER ||
        (c->state == TG_CONN_IDLE && c->ssl && !tg_tls_is_established(c->ssl))) {
        if (c->state == TG_CONN_IDLE)
            tg_log(TG_LOG_INFO, "client %s: TLS handshake timed out", tg_conn_peer(c));
        tg_conn_close(c);
        return;
    }
    c->proto->on_timeout(c); /* idle: the codec closes its way (HTTP/2: GOAWAY first) */
}
