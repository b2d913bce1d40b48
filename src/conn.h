/* A client connection: its socket, watchers, timer, input buffer and TLS
 * session, and nothing of HTTP. The protocol codec that speaks over it
 * (src/h1.c or src/h2.c) is attached by the worker once the connection's
 * preamble is done (tg_conn_start: the PROXY protocol header, the TLS
 * handshake, whose ALPN answer picks the codec, and on an `http2` cleartext
 * listener the sniff for the HTTP/2 client preface) and gets the
 * connection's events through tg_conn_t.proto; the connection layer owns
 * accept, the per-worker cache of connection structs, the preamble,
 * lingering close, and idle bookkeeping.
 *
 * An idle keep-alive connection holds no buffer and no arena block, only
 * this struct, so tens of thousands of idle clients cost little. */
#ifndef TG_CONN_H
#define TG_CONN_H

#include <errno.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <ev.h>
#include "arena.h"
#include "buf.h"
#include "core.h"
#include "tls_io.h"

/* What a connection is doing, as the stats endpoint counts it. The codec
 * sets it; the connection layer acts on IDLE (closed first on a graceful
 * stop) and LINGER (its own). */
typedef enum {
    TG_CONN_IDLE = 0,     /* keep-alive, waiting for a request (no buffer) */
    TG_CONN_HEADERS,      /* reading a request's header block */
    TG_CONN_BUSY,         /* a request is being processed/proxied */
    TG_CONN_LINGER,       /* response sent, draining input before close */
    TG_CONN_TUNNEL,       /* upgraded: bytes pass through (tunnel.c) */
} tg_conn_state_t;

typedef struct tg_request_s tg_request_t;
typedef struct tg_conn_s tg_conn_t;

/* The protocol codec driving a connection. */
typedef struct {
    const char *name;                             /* "HTTP/1.1" */
    void (*on_io)(tg_conn_t *c, int revents);     /* socket readable/writable */
    void (*on_timeout)(tg_conn_t *c);             /* the connection's timer fired */
    void (*on_close)(tg_conn_t *c);               /* release the codec's state */
    /* Graceful stop (tg_conn_close_idle_all), called again on every round
     * of it: a codec that multiplexes says goodbye its own way (HTTP/2:
     * GOAWAY, close when its streams are done). NULL: closed when idle. */
    void (*on_shutdown)(tg_conn_t *c);
} tg_proto_t;

/* The codec the preamble chose, for the worker's attach function. */
typedef enum {
    TG_CONN_PROTO_H1 = 0,
    TG_CONN_PROTO_H2,
} tg_conn_proto_id_t;

/* State a module keeps for the life of a connection (limit_conn's places),
 * released when it closes. */
typedef struct tg_conn_ext_s {
    const void *owner; /* the module it belongs to */
    void *data;
    void (*release)(void *data);
    struct tg_conn_ext_s *next;
} tg_conn_ext_t;

struct tg_conn_s {
    ev_io io; /* one watcher; its events follow what the connection waits for */
    ev_timer timer;
    tg_listen_t *listen;
    const tg_proto_t *proto;
    tg_arena_t arena;
    void *codec;        /* the codec's parser state (h1: llhttp_t); none while idle */
    tg_buf_t *ibuf;     /* bytes read; [pos,last) not consumed yet */
    tg_request_t *req;  /* current request, NULL when idle */
    struct tg_conn_s *prev, *next; /* the worker's list of open connections */
    uint64_t number;    /* $connection: serial number in this worker, from 1 */
    uint32_t nrequests; /* requests finished on this connection */
    uint8_t state;
    uint8_t tls_flags; /* TG_TLS_F_* (tls_io.h) */
    unsigned paused : 1; /* the codec stopped parsing at the end of a message */
    unsigned closing : 1;
    unsigned pp_done : 1;        /* PROXY protocol header read */
    unsigned readable : 1;       /* the loop reported it readable: the codec's next
                                  * read may go to the send batch (src/sendq.h) */
    int rbatch;                  /* a read of it in the send batch; 0: none */
    tg_ssl_t *ssl;               /* TLS listeners: the session (tls_io.c), else NULL */
    tg_conn_ext_t *ext; /* rarely used per-connection state (modules', the PROXY
                         * header's address): NULL mostly, so an idle
                         * connection does not pay for it */
    struct sockaddr_in6 sa;      /* peer address (AF_INET fits too) */
    int fd; /* last: in the tail after sa, not a hole before io (256 bytes, not 264) */
};

/* This worker's client connections by what they are doing (the stats
 * gauges, tg_stats_gauges_collect). */
typedef struct {
    int64_t reading;  /* TLS handshake or reading a request head */
    int64_t writing;  /* a request in progress, or draining input before close */
    int64_t idle;     /* keep-alive, waiting for the next request */
    int64_t upgraded; /* tunnels (WebSocket) */
} tg_conn_states_t;
/* Count this worker's open client connections by state (a walk). */
void tg_conn_count_states(tg_conn_states_t *out);

/* The peer's address as text, in a buffer valid until the next call. */
const char *tg_conn_peer(const tg_conn_t *c);

/* Take an accepted socket (already non-blocking): the connection, with TLS
 * started on a tls listener and its header timeout armed, or NULL (closed,
 * logged). The caller starts it with tg_conn_start. */
tg_conn_t *tg_conn_accept(tg_listen_t *ls, int fd, struct sockaddr *sa, socklen_t salen);
/* Run the connection's preamble, then `attach` it to the codec it chose:
 * PROXY protocol header (listen ... proxy_protocol), TLS handshake (HTTP/2
 * when ALPN selected "h2"), on a cleartext `listen ... http2` the first 24
 * bytes compared with the HTTP/2 client preface. Bytes read past the
 * preamble wait in c->ibuf for the codec. The header timeout bounds it all.
 * A plain listener without these attaches HTTP/1.1 at once. */
void tg_conn_start(tg_conn_t *c, void (*attach)(tg_conn_t *c, tg_conn_proto_id_t proto));
/* Graceful shutdown: close the keep-alive connections idle for at least
 * `min_idle` seconds (the others are closed after their next answer, which
 * says Connection: close: closing a connection a client is about to reuse
 * would fail its request). */
void tg_conn_close_idle_all(double min_idle);
void tg_conn_close(tg_conn_t *c);
/* Close after the client had time to read the answer: half-close, read and
 * drop what it still sends for a while. The codec has released its request. */
void tg_conn_linger(tg_conn_t *c);
/* Wait for these events (0: none); a change costs an epoll_ctl, so it is
 * made only when they differ. */
void tg_conn_want(tg_conn_t *c, int events);
/* (Re)arm the connection's timer; ms <= 0 stops it. */
void tg_conn_timer(tg_conn_t *c, tg_msec_t ms);
/* Read the PROXY protocol header of a proxy_protocol listener into c->ibuf.
 * 1: done (or not needed), 0: waiting for bytes, -1: the connection was
 * closed (not a valid header). */
int tg_conn_proxy_protocol(tg_conn_t *c);
/* The client address the PROXY protocol header named (NULL: none). */
const char *tg_conn_proxy_addr(tg_conn_t *c);
/* The input buffer goes back to the pool (nothing unread in it). */
void tg_conn_release_input(tg_conn_t *c);
/* Module state kept for the connection's life (see tg_conn_ext_t). */
void *tg_conn_ext_get(tg_conn_t *c, const void *owner);
int tg_conn_ext_set(tg_conn_t *c, const void *owner, void *data, void (*release)(void *));
/* Release every connection's module state (a worker exiting fast). */
void tg_conn_ext_release_all(void);

/* A read of the connection in the send batch (sendq.h), after the loop
 * reported it readable: 1 queued (the codec returns; its on_io runs again
 * with EV_READ after the batch, and reads with tg_conn_read_batched while
 * c->rbatch is set), 0 read directly (the batch is closed or full, or TLS
 * holds bytes for the read). tg_conn_read_batched: as tg_conn_read, or
 * TG_SENDQ_WAIT while the batch has not run; through TLS the batch's bytes
 * go to SSL_read first. `more` (may be NULL): set to 1 when the socket may
 * hold more (the read took all it could), else 0. */
int tg_conn_read_batch_start(tg_conn_t *c);
ssize_t tg_conn_read_batched(tg_conn_t *c, void *buf, size_t len, int *more);
/* Through TLS (c->ssl set): like read(2)/writev(2); failures are logged
 * (at info: a client's TLS trouble is the client's). */
ssize_t tg_conn_tls_read(tg_conn_t *c, void *buf, size_t len);
ssize_t tg_conn_tls_writev(tg_conn_t *c, const struct iovec *iov, int n);
/* The same, several records per write (tg_tls_writev_batch): bytes may stay
 * held after a write that counted them (`defer`: a last record may be held
 * for the send batch); tg_conn_tls_flush sends them, with tg_sendq_write's
 * result (1 all gone, 0 wait for EV_WRITE, 2 in the send batch, only when
 * `batch`, -1 failed). */
ssize_t tg_conn_tls_writev_batch(tg_conn_t *c, const struct iovec *iov, int n, int defer);
int tg_conn_tls_flush(tg_conn_t *c, int batch);
/* Send close_notify (TLS connections; best effort, never waits). */
void tg_conn_tls_shutdown(tg_conn_t *c);

/* Connection I/O, plain or through TLS, with read(2)/send(2) semantics:
 * >0 bytes, 0 end of stream, -1 with errno (EAGAIN: wait for the socket). */
static inline ssize_t tg_conn_read(tg_conn_t *c, void *buf, size_t len)
{
    return c->ssl ? tg_conn_tls_read(c, buf, len) : read(c->fd, buf, len);
}
static inline ssize_t tg_conn_writev(tg_conn_t *c, const struct iovec *iov, int n)
{
    return c->ssl ? tg_conn_tls_writev(c, iov, n) : writev(c->fd, iov, n);
}
static inline ssize_t tg_conn_write(tg_conn_t *c, const void *buf, size_t len)
{
    if (c->ssl) {
        struct iovec v = {(void *)buf, len};
        return tg_conn_tls_writev(c, &v, 1);
    }
    return send(c->fd, buf, len, MSG_NOSIGNAL);
}
/* Bytes already read off the socket and waiting in the TLS layer: no socket
 * event will announce them. */
static inline int tg_conn_has_pending(tg_conn_t *c)
{
    return c->ssl && tg_tls_pending(c->ssl, c->tls_flags);
}
/* The events to wait for after tg_conn_read returned EAGAIN. */
static inline int tg_conn_read_events(tg_conn_t *c)
{
    return (c->tls_flags & TG_TLS_F_WANT_WRITE) ? EV_WRITE : EV_READ;
}

#endif
