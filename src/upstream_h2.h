/* HTTP/2 to upstreams (src/upstream_h2.c): each worker's client connections
 * to the servers of a `protocol http2` upstream, and the streams requests
 * open on them. The proxy (src/proxy_h2.c) owns a stream; this file owns the
 * connections, nghttp2's client sessions and the bytes of both directions.
 *
 * A stream's owner learns what happened through one callback, on_event,
 * called from the connection's dispatch, never from inside nghttp2: it then
 * reads the stream's state (head, body buffered in `in`, ended, closed).
 * Only on_field runs inside nghttp2, and only records a field. */
#ifndef TG_UPSTREAM_H2_H
#define TG_UPSTREAM_H2_H

#include <nghttp2/nghttp2.h>
#include "upstream.h"
#include "buf.h"

#define TG_H2UP_BUFS 4 /* response body buffers per stream: its window (plus one partly used) */

typedef struct tg_h2up_s tg_h2up_t;
typedef struct tg_h2up_stream_s tg_h2up_stream_t;

struct tg_h2up_stream_s {
    /* set by the owner */
    void (*on_event)(tg_h2up_stream_t *st);
    /* A response field (trailer: after the body). Inside nghttp2: record it
     * and return 0; -1 resets the stream. */
    int (*on_field)(tg_h2up_stream_t *st, tg_str_t name, tg_str_t value, int trailer);
    tg_spans_t *src;          /* request body bytes to send; the owner keeps them until sent */
    unsigned src_last : 1;    /* src ends the body */
    unsigned sent : 1;        /* every byte of src was copied into DATA frames (cleared by
                               * the owner when it gives the next src) */

    /* set by tg_h2up_open: the request head (the owner keeps it until the
     * stream is submitted: until closed, to be safe) */
    const nghttp2_nv *nv;
    size_t nnv;
    unsigned has_body : 1;

    /* set by the connection */
    tg_h2up_t *conn;  /* NULL: not attached (closed, or before tg_h2up_open) */
    int32_t id;       /* 0 until submitted */
    int status;       /* :status of the final response */
    tg_buf_t *in[TG_H2UP_BUFS + 1]; /* response body received and not consumed */
    int nin;
    size_t src_off;          /* bytes of src copied already */
    uint32_t error;          /* closed: RST_STREAM code (0: cleanly), or a connection failure's */
    unsigned head : 1;       /* the final response head arrived */
    unsigned ended : 1;      /* END_STREAM arrived: the response is complete */
    unsigned trailers : 1;   /* the response had trailers */
    unsigned closed : 1;     /* the stream is over on the connection */
    unsigned refused : 1;    /* closed, and the upstream did not process it (REFUSED_STREAM,
                              * beyond a GOAWAY's last stream, or never sent): may be retried */
    unsigned conn_failed : 1; /* closed because the connection could not be made */
    unsigned deferred : 1;   /* the data provider waits for src */
    unsigned pending : 1;    /* in the connection's dispatch list */
    tg_h2up_stream_t *prev, *next; /* the connection's streams */
    tg_h2up_stream_t *pnext;       /* dispatch list */
};

/* Open a stream for request head `nv` (n fields, kept by the owner until
 * the stream closes) to peer p of u,
 * with a body (the owner sets src later) or not: on a connection of this
 * worker to p with room (http2_streams_per_connection, the peer's
 * MAX_CONCURRENT_STREAMS), else on a new one (connected within
 * connect_ms). 0; -1 when no connection could be started (errno). The
 * owner's on_event follows. */
int tg_h2up_open(tg_h2up_stream_t *st, tg_upstream_t *u, tg_peer_t *p, const nghttp2_nv *nv,
                 size_t n, int has_body, tg_msec_t connect_ms);
/* st->src got bytes (or src_last): send them. */
void tg_h2up_resume(tg_h2up_stream_t *st);
/* The first n response body bytes of st->in went on: free them and open the
 * upstream's windows by as much. */
void tg_h2up_consume(tg_h2up_stream_t *st, size_t n);
/* The owner lets go of the stream: RST_STREAM CANCEL when it is still open
 * (the upstream learns the client went), buffers freed. Safe on a closed
 * or never opened stream. */
void tg_h2up_close(tg_h2up_stream_t *st);
/* Response body bytes buffered in st->in. */
size_t tg_h2up_buffered(const tg_h2up_stream_t *st);

#endif
