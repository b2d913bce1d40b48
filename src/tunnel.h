/* A two-way byte tunnel between a client and an upstream connection, for
 * upgraded connections (WebSocket) after a 101 answer. Bytes are forwarded
 * as soon as they are read; each direction has at most one buffer (none
 * while idle: an idle WebSocket costs no buffer memory), and a side is not
 * read while its buffer waits for the other side to take it (backpressure).
 * When one side closes, what it sent is delivered, the other side gets a
 * FIN, and the tunnel ends. The client side reads and writes through the
 * connection's I/O functions, so a wss:// client is served through TLS. */
#ifndef TG_TUNNEL_H
#define TG_TUNNEL_H

#include <stdint.h>
#include <ev.h>
#include "buf.h"
#include "conn.h"

typedef struct {
    tg_conn_t *c;          /* client side: its I/O goes through tg_conn_read/write (TLS) */
    int ufd;               /* upstream socket */
    struct tg_upconn_s *uc; /* its connection: I/O through tg_upconn_read/write (TLS) */
    ev_io *cio, *uio;      /* their watchers: the tunnel sets what they wait for */
    tg_buf_t *up, *down;   /* client -> upstream, upstream -> client; NULL when
                            * empty (taken from the worker's pool only while
                            * bytes wait to be written) */
    uint64_t up_bytes, down_bytes;
    unsigned c_eof : 1, u_eof : 1;   /* that side sent its last byte */
    unsigned c_shut : 1, u_shut : 1; /* we shut down writing to that side */
    unsigned failed : 1;
} tg_tunnel_t;

/* Move whatever can move now and set the watchers. Returns 1 while the
 * tunnel lives, 0 when it is over (a side closed, or an error). */
int tg_tunnel_pump(tg_tunnel_t *t, struct ev_loop *loop);

#endif
