/* Inside the HTTP/2 codec (h2.c, the connection; h2_stream.c, the streams):
 * a connection and its streams. Not for other files: the request layer
 * reaches a stream only through its tg_carrier_t, the worker a connection
 * only through tg_h2_start (h2.h). */
#ifndef TG_H2_STREAM_H
#define TG_H2_STREAM_H

#include <nghttp2/nghttp2.h>
#include "conn.h"
#include "h2_conf.h"
#include "h2_mem.h"
#include "request.h"

#define BODY_BUFS 16 /* buffers of request body per stream, at most */
#define RESET_IDS 32 /* streams we reset last: the client's frames may still come */

typedef struct tg_h2_conn_s tg_h2_conn_t;
typedef struct tg_h2_stream_s tg_h2_stream_t;

struct tg_h2_stream_s {
    tg_request_t r; /* first: the carrier's functions get &s->r */
    tg_arena_t arena;
    tg_h2_conn_t *hc;
    tg_h2_stream_t *prev, *next;
    tg_h2_stream_t *over_next; /* in hc->over */
    tg_h2_stream_t *ev_next;   /* in hc->evq */
    int32_t id;
    ev_timer timer; /* body wait, or the response stalled by the client's window */
    /* request head, as received */
    size_t hdr_bytes; /* decoded header list size (RFC 9113 6.5.2: +32 per field) */
    tg_str_t method, path, authority, cookie, protocol;
    /* request body: DATA not yet consumed by the handler */
    tg_buf_t *in[BODY_BUFS];
    int nin;
    tg_spans_t body; /* handed out by body_pull */
    size_t given;    /* their bytes */
    int64_t body_received;
    /* response body queued by the handler, taken by the data provider */
    tg_iovq_t out;
    /* the response trailers, copied out of the request's arena when it ends
     * before the data provider reached the end (malloc, one block) */
    nghttp2_nv *trailers;
    size_t ntrailers;
    /* events for dispatch */
    unsigned ev_ready : 1;   /* the request head is complete */
    unsigned ev_body : 1;    /* body bytes (or the end) arrived */
    unsigned ev_drained : 1; /* the queued response bytes were taken */
    unsigned ev_reset : 1;   /* the stream closed under the request */
    /* state */
    unsigned active : 1;      /* the request runs (started, not finalized) */
    unsigned ng_closed : 1;   /* nghttp2 closed the stream */
    unsigned body_done : 1;   /* END_STREAM received */
    unsigned head_only : 1;   /* END_STREAM on the HEADERS: no body at all */
    unsigned body_wait : 1;   /* the handler waits for body bytes */
    unsigned resp_done : 1;   /* the handler queued its last byte */
    unsigned deferred : 1;    /* the data provider is deferred */
    unsigned want_drained : 1;
    unsigned too_large : 1;   /* the header list passed the limits */
    unsigned continue_sent : 1;
    unsigned websocket : 1;   /* an RFC 8441 extended CONNECT, mapped to a WebSocket upgrade */
    unsigned tunnel : 1;      /* ... answered 200: the stream is a tunnel (idle timer) */
    unsigned over : 1;        /* nghttp2 closed it and its request ended: in hc->over */
    unsigned queued : 1;      /* has events: in hc->evq */
};

struct tg_h2_conn_s {
    tg_conn_t *c;
    tg_h2_mem_t mem; /* nghttp2's allocator: spare pages returned when resting */
    nghttp2_session *ng;
    tg_h2_conf_t *conf;
    tg_core_conf_t *cc; /* the listener's default server's */
    tg_buf_t *out;      /* frames for the socket: [pos,last) of a list (`next`, h2.c OUT_BUFS) */
    const uint8_t *pend; /* mem_send output not copied to `out` yet */
    size_t npend;
    tg_h2_stream_t *streams;
    tg_h2_stream_t *over;        /* streams to free when the round settles */
    tg_h2_stream_t *evq, *evq_tail; /* streams with events for dispatch, in order */
    tg_h2_conn_t *flush_next, **flush_pprev; /* in h2.c's flush list while output waits */
    uint32_t nstreams; /* stream structs alive */
    uint32_t nactive;  /* requests running */
    uint32_t nstarted; /* streams opened on this connection */
    int32_t last_id;   /* the highest stream id of a client HEADERS frame */
    int32_t reset_ids[RESET_IDS]; /* a ring: the streams we reset last */
    uint32_t nreset;
    size_t block_bytes; /* decoded size of the header block being received */
    size_t window;     /* stream window: request body bytes buffered per stream */
    int depth;         /* in pump: nested calls only ask for another round */
    double flood_tokens, flood_at;
    double rst_tokens, rst_at; /* RST_STREAM budget (rapid reset) */
    unsigned again : 1;
    unsigned events : 1;
    unsigned dead : 1;      /* close at the next turn of the loop */
    unsigned blocked : 1;   /* the socket does not take more */
    unsigned notice : 1;    /* graceful stop: shutdown notice sent */
    unsigned goaway : 1;    /* GOAWAY submitted: no new streams, close when done */
    unsigned flood : 1;     /* closed for abuse (counted once) */
    unsigned resting : 1;   /* idle, its timer is the rest's (h2.c idle_timer) */
    /* send what nghttp2 has and run the events (h2.c): the streams call it
     * after they queued or consumed bytes */
    void (*pump)(tg_h2_conn_t *hc);
};

/* A stream for client stream `id`, linked into hc's list, its request set
 * up to be carried by it (its own arena). NULL: out of memory. */
tg_h2_stream_t *tg_h2_stream_create(tg_h2_conn_t *hc, int32_t id);
/* Unlink and free (or cache) a stream whose request is over. */
void tg_h2_stream_free(tg_h2_stream_t *s);
/* Give the body bytes not consumed back to the connection window, and the
 * buffers to the pool. */
void tg_h2_stream_release_body(tg_h2_stream_t *s);
/* Record an event for the connection's dispatch: 0 head complete, 1 body
 * bytes, 2 queued bytes taken, 3 reset. The stream joins the connection's
 * event queue, so dispatch visits the streams that have events only. */
void tg_h2_stream_event(tg_h2_stream_t *s, int which);
/* nghttp2 closed the stream and its request ended (or never started): it
 * joins the list settle frees at the end of the round (a handler may still
 * be on the stack now). Once per stream. */
void tg_h2_stream_over(tg_h2_stream_t *s);

#endif
