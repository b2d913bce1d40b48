/* A tunnel whose client side is the request itself (tunnel_stream.c): after
 * a 101 on a carrier that multiplexes requests over one connection (an
 * HTTP/2 stream, RFC 8441), the client's bytes arrive as the request's body
 * (tg_request_body_pull) and the upstream's go back as its response body
 * (tg_request_send_body, past the body filters), each under the carrier's
 * flow control; the upstream side is its socket, plain or TLS.
 *
 * Backpressure per direction, one round at a time: the upstream is read
 * again only once the carrier took the last round (flush returned 1, or the
 * handler's on_drained), and the client's bytes are handed back
 * (tg_request_body_consumed: its flow-control window reopens) only once the
 * upstream took all of them. So a tunnel holds at most one pool buffer of
 * its own (none while idle) plus the carrier's window, and a slow reader on
 * either side slows its own stream only.
 *
 * Ends: the client's end of body shuts the upstream's write side (the
 * upstream may still answer); the upstream's EOF ends the response body and
 * the tunnel. */
#ifndef TG_TUNNEL_STREAM_H
#define TG_TUNNEL_STREAM_H

#include <stdint.h>
#include "buf.h"
#include "request.h"

typedef struct {
    tg_request_t *r;
    struct tg_upconn_s *uc; /* the upstream side; its watcher is set by the pump */
    tg_buf_t *down;         /* upstream -> client: the round the carrier holds, or NULL */
    tg_spans_t *up;         /* client -> upstream: the carrier's spans being written, or NULL */
    size_t up_off;          /* ... bytes of them written */
    uint64_t up_bytes, down_bytes;
    unsigned c_eof : 1;     /* the client's side ended; the upstream's write side is shut */
    unsigned u_eof : 1;     /* the upstream's side ended; the end of the body is queued */
    unsigned down_wait : 1; /* the carrier has not taken `down` yet: on_drained comes */
    unsigned busy : 1;      /* in the pump: a nested call (from the carrier) asks again */
    unsigned again : 1;
} tg_tunnel_stream_t;

/* Start: t->r and t->uc are set; `early` (a pool buffer or NULL, now the
 * tunnel's) holds what the upstream sent after its 101. Then as
 * tg_tunnel_stream_pump. */
int tg_tunnel_stream_start(tg_tunnel_stream_t *t, tg_buf_t *early);
/* Move what can move now and set the upstream watcher; call it on every
 * event of either side (`drained`: the handler's on_drained, the carrier took
 * the round it held). Returns 1 while the tunnel lives, 0 when it ended
 * cleanly (the upstream's EOF went to the client), -1 on an error or when
 * the client is gone. The caller ends the request on 0 or -1. */
int tg_tunnel_stream_pump(tg_tunnel_stream_t *t, int drained);
/* Give back the buffer the tunnel holds (the request ends). */
void tg_tunnel_stream_release(tg_tunnel_stream_t *t);

#endif
