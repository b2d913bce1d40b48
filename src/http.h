/* The downstream HTTP/1.1 engine (http.c): parses requests on a client
 * connection, validates them, routes them, runs the phase hooks, and writes
 * responses (local ones, or those the proxy streams). The proxy (proxy.c)
 * uses the functions below to pull the request body and push the response. */
#ifndef TG_HTTP_H
#define TG_HTTP_H

#include "request.h"
#include "conn.h"

/* Core settings per scope (tg_core_module's config). */
typedef struct {
    int64_t client_max_body_size; /* 0 = unlimited */
    int64_t client_max_uri;
    int64_t client_max_headers; /* header count */
    tg_msec_t header_timeout, idle_timeout, send_timeout, body_timeout;
    int64_t body_min_rate;     /* client_body_min_rate: bytes/s, 0 = off */
    tg_msec_t body_rate_grace; /* its grace= */
    int64_t keepalive_requests;
    int server_tokens;
} tg_core_conf_t;

/* Request body pulled from the client for the proxy.
 * Returns 1 when r's body spans (tg_http_body(r)) have data or the body is
 * complete, 0 when more must be read (the read watcher is armed and
 * tg_proxy_on_client_body will be called), -1 on error (status set). */
int tg_http_body_pull(tg_request_t *r, tg_spans_t **spans, int *done);
/* The proxy consumed the spans: the input buffer may be reused. */
void tg_http_body_consumed(tg_request_t *r);
/* For a phase hook that needs the whole request body before the proxy runs
 * (Lua's tg.req.body): read it (Content-Length or chunked, decoded) into the
 * request arena, up to `max` bytes (and never past client_max_body_size).
 * Returns 1 when decided: *body is the whole body, which the proxy then sends
 * upstream as it is, with a Content-Length whatever the client's framing; or
 * body->p == NULL when it is larger than `max`: reading stopped there, the
 * bytes read so far go upstream first and the rest streams as usual. Later
 * calls return the same answer. 0: waiting for the client; the hook runs
 * again (tg_request_resume) when bytes arrive, and calls this again. -1: the
 * request ended (client gone, bad framing, timeout: answered or closed), the
 * hook must return TG_AGAIN and not touch r. */
int tg_http_body_read(tg_request_t *r, int64_t max, tg_str_t *body);

/* Start the response: status and r->resp_headers are set. Runs the response
 * header hooks and serializes the header into the output queue, or, when a
 * hook set r->header_hold, leaves that to the body filters' first output (see
 * request.h). The body length is r->resp_content_length (-1: unknown).
 * Returns 0 or -1. */
int tg_http_send_header(tg_request_t *r);
/* Queue body bytes (framed as needed). `last` marks the end of the body. May
 * flush when the queue is full. Returns 0, or -1 (client gone). */
int tg_http_send_body(tg_request_t *r, tg_spans_t *spans, int last);
/* Write what is queued. 1: all written; 0: blocked (the proxy is called back
 * with tg_proxy_on_client_drained when done); -1: client gone. */
int tg_http_flush(tg_request_t *r);
/* The same, but the bytes may go with the worker's send batch (src/sendq.h):
 * 2 then means they wait there, and the connection's EV_WRITE callback
 * (tg_proxy_on_client_drained) continues when they went. */
int tg_http_flush_batched(tg_request_t *r);
/* The response is complete (or failed: `abort` closes the connection). */
void tg_http_finalize(tg_request_t *r, int abort);
/* Answer with an error page unless the header went out already (then the
 * connection is closed). */
void tg_http_error(tg_request_t *r, int status);
/* The connection becomes a tunnel (after a 101): events go to the proxy,
 * the idle timer is `idle_ms`; tg_http_tunnel_active restarts it. */
void tg_http_tunnel_begin(tg_request_t *r, tg_msec_t idle_ms);
void tg_http_tunnel_active(tg_request_t *r);
/* Continue the phases after the routing decision (used by tg_request_resume). */
void tg_http_run_phases(tg_request_t *r);

/* Shared by the request and response parsers: grow a header span over the
 * next piece llhttp hands over; finish a value (empty if none, trailing
 * whitespace trimmed). Returns -1 when the value has control bytes other
 * than HTAB (RFC 9110 5.5). */
void tg_header_span_extend(tg_str_t *s, const char *at, size_t len);
int tg_header_value_finish(tg_header_t *h);

extern tg_module_t tg_core_module;

#endif
