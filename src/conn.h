/* A client connection: its socket, watchers, the request parser and the
 * input buffer. An idle keep-alive connection holds no buffer and no arena
 * block, only this struct, so tens of thousands of idle clients cost little.
 * The HTTP logic that drives it is in http.c. */
#ifndef TG_CONN_H
#define TG_CONN_H

#include <errno.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <ev.h>
#include <llhttp.h>
#include "arena.h"
#include "buf.h"
#include "core.h"
#include "tls_io.h"
#include "limit_conn.h"

typedef enum {
    TG_CONN_IDLE = 0,     /* keep-alive, waiting for a request (no buffer) */
    TG_CONN_HEADERS,      /* reading a request's header block */
    TG_CONN_BUSY,         /* a request is being processed/proxied */
    TG_CONN_LINGER,       /* response sent, draining input before close */
    TG_CONN_TUNNEL,       /* upgraded: bytes pass through (proxy.c, tunnel.c) */
} tg_conn_state_t;

struct tg_conn_s {
    int fd;
    ev_io io; /* one watcher; its events follow what the connection waits for */
    ev_timer timer;
    tg_listen_t *listen;
    tg_arena_t arena;
    llhttp_t *parser;   /* with ibuf: an idle connection holds neither */
    tg_buf_t *ibuf;     /* bytes read; [pos,last) not parsed yet */
    tg_request_t *req;  /* current request, NULL when idle */
    struct tg_conn_s *prev, *next; /* the worker's list of open connections */
    uint32_t nrequests;
    uint8_t state;
    unsigned paused : 1; /* parser paused at the end of a message */
    unsigned closing : 1;
    unsigned pp_done : 1;        /* PROXY protocol header read */
    unsigned tls_want_write : 1; /* the TLS layer waits for the socket to take bytes */
    unsigned tls_failed : 1;     /* fatal TLS error: no close_notify */
    tg_ssl_t *ssl;               /* TLS listeners: the session (tls.c), else NULL */
    char *pp_addr;               /* client address from the PROXY header (malloc) */
    tg_limit_conn_holds_t *limit_conn; /* places taken in limit_conn zones; NULL until one
                                        * counts this connection (a connection pays
                                        * 8 bytes, not the holds, when unused) */
    struct sockaddr_in6 sa;      /* peer address (AF_INET fits too) */
};

/* The peer's address as text, in a buffer valid until the next call. */
const char *tg_conn_peer(const tg_conn_t *c);

/* Take an accepted socket (already non-blocking). */
void tg_conn_accept(tg_listen_t *ls, int fd, struct sockaddr *sa, socklen_t salen);
/* Graceful shutdown: close the keep-alive connections idle for at least
 * `min_idle` seconds (the others are closed after their next answer, which
 * says Connection: close: closing a connection a client is about to reuse
 * would fail its request). */
void tg_conn_close_idle_all(double min_idle);
void tg_conn_close(tg_conn_t *c);

/* Connection I/O, plain or through TLS, with read(2)/send(2) semantics:
 * >0 bytes, 0 end of stream, -1 with errno (EAGAIN: wait for the socket). */
static inline ssize_t tg_conn_read(tg_conn_t *c, void *buf, size_t len)
{
    return c->ssl ? tg_tls_read(c, buf, len) : read(c->fd, buf, len);
}
static inline ssize_t tg_conn_writev(tg_conn_t *c, const struct iovec *iov, int n)
{
    return c->ssl ? tg_tls_writev(c, iov, n) : writev(c->fd, iov, n);
}
static inline ssize_t tg_conn_write(tg_conn_t *c, const void *buf, size_t len)
{
    if (c->ssl) {
        struct iovec v = {(void *)buf, len};
        return tg_tls_writev(c, &v, 1);
    }
    return send(c->fd, buf, len, MSG_NOSIGNAL);
}
/* Bytes already read off the socket and waiting in the TLS layer: no socket
 * event will announce them. */
static inline int tg_conn_has_pending(tg_conn_t *c)
{
    return c->ssl && tg_tls_pending(c);
}
/* The events to wait for after tg_conn_read returned EAGAIN. */
static inline int tg_conn_read_events(tg_conn_t *c)
{
    return (c->ssl && c->tls_want_write) ? EV_WRITE : EV_READ;
}

#endif
