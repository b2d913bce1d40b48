/* @public The request layer: a request as modules and content handlers see
 * it (the parsed request line and headers, where it was routed, the response
 * being built), the phase loop that runs the location's hooks and its
 * content handler, and the one interface through which a request talks to
 * whatever carries it (tg_carrier_t: an HTTP/1.1 connection today, an HTTP/2
 * stream or no client at all next; docs/architecture.md).
 *
 * Header lists keep order, case and duplicates exactly as received; names
 * compare case-insensitively.
 *
 * Memory: every string in a request points into the request's header buffer
 * or its arena and lives until the request ends. The response header list is
 * valid until the response body starts streaming. */
#ifndef TG_REQUEST_H
#define TG_REQUEST_H

#include <stdint.h>
#include <sys/socket.h>
#include "str.h"
#include "arena.h"
#include "buf.h"
#include "module.h"
#include "core.h"

typedef struct {
    tg_str_t name, value;
} tg_header_t;

typedef struct {
    tg_header_t *h; /* arena array */
    uint32_t n, cap;
} tg_headers_t;

/* First header with this name (case-insensitive), or NULL. */
tg_header_t *tg_headers_find(tg_headers_t *hs, tg_str_t name);
/* Append; the strings are not copied. Returns 0 or -1 (out of memory). */
int tg_headers_add(tg_arena_t *a, tg_headers_t *hs, tg_str_t name, tg_str_t value);
/* Remove every header with this name; returns how many. */
int tg_headers_remove(tg_headers_t *hs, tg_str_t name);
/* Replace the first with this name (removing the others) or append. */
int tg_headers_set(tg_arena_t *a, tg_headers_t *hs, tg_str_t name, tg_str_t value);
/* Copy every name and value into `a`, so that the buffer they were parsed
 * from can be reused. 0, or -1 out of memory. */
int tg_headers_own(tg_arena_t *a, tg_headers_t *hs);

/* For parsers: grow a header span over the next piece a parser hands over;
 * finish a value (empty if none, trailing whitespace trimmed). Returns -1
 * when the value has control bytes other than HTAB (RFC 9110 5.5). */
void tg_header_span_extend(tg_str_t *s, const char *at, size_t len);
int tg_header_value_finish(tg_header_t *h);

typedef struct tg_conn_s tg_conn_t;

/* What carries a request: its protocol codec. The request layer calls these;
 * content handlers and modules use the tg_request_* functions below, never
 * the carrier directly.
 *   send_header: serialize r->status and r->resp_headers (the response header
 *     hooks have run) with the carrier's own framing; 0 or -1.
 *   send_body: queue body bytes (already through the body filters), `last`
 *     ends the body; 0 or -1 (client gone).
 *   flush: write what is queued. 1 all written; 0 blocked (the handler's
 *     on_drained comes later); 2 queued in the worker's send batch (on_drained
 *     or on_blocked comes when it went); -1 client gone. `batched` allows 2.
 *   finalize: the request is over (the log hooks ran): the carrier reuses or
 *     closes what carried it; `abort` when the answer is incomplete.
 *   body_pull / body_consumed: the request body with flow control, see
 *     tg_request_body_pull.
 *   tunnel_begin: after a 101, the carrier becomes a two-way byte pipe;
 *     *early gets bytes the client sent after its request (a buffer from the
 *     pool, or NULL). 0: the client connection is the pipe (HTTP/1.1: its
 *     socket, tunnel.h); 1: the request's own body functions are (HTTP/2
 *     RFC 8441: the client's bytes come through body_pull/body_consumed,
 *     the upstream's go through send_body/flush; r->tunnel is set); -1.
 *     tunnel_active restarts its idle timer. */
#define TG_REQUEST_FILE_BUFS 4 /* at most, per read round of a copied file body */

typedef struct {
    const char *protocol; /* "HTTP/1.1", for $server_protocol */
    int (*send_header)(tg_request_t *r);
    int (*send_body)(tg_request_t *r, const struct iovec *v, int n, size_t len, int last);
    int (*flush)(tg_request_t *r, int batched);
    void (*finalize)(tg_request_t *r, int abort);
    int (*body_pull)(tg_request_t *r, tg_spans_t **spans, int *done);
    void (*body_consumed)(tg_request_t *r);
    int (*tunnel_begin)(tg_request_t *r, tg_msec_t idle_ms, tg_buf_t **early);
    void (*tunnel_active)(tg_request_t *r);
    /* send_file: body bytes from a file, already past the body filters (the
     * request layer calls it only when no body filter transforms the
     * response): up to `len` bytes of `fd` from `off`, after whatever is
     * queued (the header, a multipart boundary). The carrier takes what the
     * client connection accepts now and sets *sent to the file bytes it took
     * (written, or queued in memory it owns: the caller never gives them
     * again). Returns 1 when all `len` went; 0 when the connection is full
     * (*sent may be less than len: on_drained comes when it can take more,
     * and the caller calls again for the rest); -1 when the client is gone or
     * the file could not be read (it ended early: changed while being sent;
     * the caller aborts the request). The fd stays the caller's: the carrier
     * does not keep it past the call. Each call may block the loop for as
     * long as one socket buffer takes to fill, so callers bound `len` per
     * loop iteration. HTTP/1.1 on plain sockets: sendfile(2) (small bodies:
     * read from the page cache into a pool buffer sent with the header in
     * one writev). NULL (HTTP/1.1 on TLS, HTTP/2): the request layer reads
     * the file into a pool buffer (in a file thread when the page cache
     * does not have the bytes, src/file_io.h) and uses send_body. */
    int (*send_file)(tg_request_t *r, int fd, int64_t off, size_t len, size_t *sent);
    /* body_lead (may be NULL): the bytes queued ahead of the body (the head)
     * that the carrier sends in one TLS record with the first body bytes.
     * The request layer's first file read is that much shorter, so head and
     * read end on a record boundary and no short record is left over. */
    size_t (*body_lead)(tg_request_t *r);
    /* file_bufs: pool buffers the request layer reads a copied file body
     * into per round, 2 (when 0) to TG_REQUEST_FILE_BUFS: more for a
     * carrier that writes several TLS records in one call. */
    int file_bufs;
} tg_carrier_t;

/* The events a content handler that took a request over (returned TG_AGAIN
 * from on_content: the proxy) gets from the carrier, as nginx's read and
 * write event handlers. Any may be NULL. */
typedef struct {
    void (*on_body)(tg_request_t *r);    /* more request body can be pulled */
    void (*on_drained)(tg_request_t *r); /* everything queued was written */
    void (*on_blocked)(tg_request_t *r); /* a batched write went only in part */
    void (*on_tunnel)(tg_request_t *r);  /* the upgraded connection has an event */
    void (*on_abort)(tg_request_t *r);   /* the request ends: release your side */
} tg_handler_events_t;

struct tg_request_s {
    tg_arena_t *arena; /* the carrier's arena, reset at request end */
    tg_conn_t *conn;   /* the client connection (TLS state, addresses), NULL when none */
    const tg_carrier_t *carrier;
    tg_server_t *server;
    tg_location_t *loc;
    void **loc_conf; /* loc->mconf: merged module configs */
    void **ctx;      /* per-module request context, tg_nmodules slots */

    /* request line and headers */
    int method;           /* llhttp_method_t */
    tg_str_t method_name; /* as received */
    tg_str_t uri;         /* request-target sent upstream (path?query) */
    tg_str_t path;        /* decoded, normalized path used for routing */
    tg_str_t args;        /* query string without '?', empty if none */
    int http_minor;       /* 0 or 1 (major is always 1) */
    tg_str_t request_line; /* $request, as received: "GET /a?b HTTP/1.1"; empty when bad */
    tg_headers_t headers;
    /* Trailer fields after the body (HTTP/2 clients), complete when the
     * carrier reports the body done; the proxy forwards them after a
     * chunked body (tg_proxy_head_trailers). */
    tg_headers_t trailers;
    tg_str_t host;          /* Host without port, lowercased */
    int64_t content_length; /* -1: no Content-Length */
    unsigned chunked : 1;   /* request body is chunked */
    unsigned has_body : 1;
    unsigned keepalive : 1; /* the client connection may be reused after */
    unsigned expect_continue : 1;
    unsigned upgrade : 1; /* Upgrade requested (passed through later) */
    /* The path changed since the location was chosen (tg_request_set_uri,
     * tg.req.set_path). At the end of the rewrite phase the request is routed
     * again on it (tg_request_run_phases) unless uri_stays; after routing it
     * is clear. Still set later, it tells proxy_pass to send the URI as it is
     * (nginx: the location prefix no longer describes the path). */
    unsigned uri_changed : 1;
    unsigned uri_stays : 1;    /* rewrite ... break: the new URI stays in this location */
    unsigned uri_relocate : 1; /* rewrite ... last: the new location's rewrite phase runs */
    unsigned path_set : 1;    /* path (and uri) set by tg.req.set_path: as given, not decoded */
    unsigned error_page : 1;  /* an error_page redirect happened: no second one */
    uint8_t uri_changes;      /* routings on a changed URI + internal redirects, see
                               * TG_REQUEST_MAX_URI_CHANGES */
    int err_status;           /* error_page: the status the redirected answer is sent
                               * with (0: its own) */
    /* The last regex match's captures ($1..$9): byte offsets into cap_subject,
     * two per group (PCRE2's ovector, copied to the arena). */
    tg_str_t cap_subject;
    size_t *caps;
    int ncaps;
    tg_str_t remote_addr;   /* client address, after real_ip */
    tg_str_t peer_addr;     /* the TCP peer's address */
    tg_str_t scheme;        /* "http" or "https" */

    /* routing result */
    tg_upstream_t *upstream; /* proxy_pass, or tg.route */
    tg_str_t upstream_addr;  /* peer used, "" when none */

    /* response */
    int status;
    tg_headers_t resp_headers;
    int64_t resp_content_length; /* -1: unknown (chunked or until close) */
    tg_chain_t *resp_body;       /* a local response's body (tg_request_respond) */
    /* Trailer fields after the response body (an HTTP/2 upstream's, gRPC's
     * grpc-status): sent by carriers that can (HTTP/2 streams), dropped by
     * the others. Set before the body's last byte is queued. */
    tg_headers_t resp_trailers;
    unsigned resp_local : 1;     /* answered by the gateway itself */
    unsigned resp_no_body : 1;   /* HEAD, 204, 304 */
    unsigned header_sent : 1;    /* the header is final (written, or held: see below) */
    /* Set by a response-header hook that can only decide on the header once
     * it has seen body bytes (compress with an unknown length): the header is
     * then written just before the first body bytes a body filter passes on,
     * or at the end of the body, and the body filters may still change
     * resp_headers and resp_content_length until then. A filter clears it
     * when it has decided. Ignored for responses without a body. */
    unsigned header_hold : 1;
    /* Set by a response-header hook whose body filter will transform this
     * response (compress, when it compresses). File bodies
     * (tg_request_send_file) then go through the body filters in pool
     * buffers; without it they go straight to the carrier (sendfile). */
    unsigned body_filter : 1;
    /* The carrier tunnels through the body functions after a 101
     * (tg_request_tunnel_begin returned 1): send_body takes the tunnel's
     * bytes straight to the carrier, past the body filters. */
    unsigned tunnel : 1;

    /* accounting */
    double start;          /* ev_now at the first byte */
    double upstream_start; /* when the upstream attempt began */
    double upstream_time;  /* seconds to the end of the upstream response */
    int upstream_status;     /* the upstream's response status, 0: none */
    tg_str_t upstream_tries; /* statuses of earlier failed attempts, "502, 504" */
    uint64_t bytes_in, bytes_out;
    uint64_t header_bytes_out; /* of bytes_out, the carrier's status lines and headers */
    uint32_t id; /* per-worker request number, for logs */

    /* the content handler that took the request over */
    const tg_handler_events_t *handler;
    void *handler_ctx;

    /* pipeline state (request layer only) */
    tg_phase_t phase;
    int hook;
    tg_buf_t *hbuf; /* buffer holding the header block */
    unsigned header_pending : 1; /* r->header_hold: not written yet (filter_body) */
    unsigned held_wait : 1;      /* a phase hook waits for body bytes (tg_request_body_read) */
    unsigned held_done : 1;      /* tg_request_body_read decided: `held` or too large */
    unsigned held_too_large : 1;
    tg_buf_t *filter_bufs; /* body filter input descriptors (filter_body) */
    tg_str_t held;         /* body bytes read into memory for a hook (request arena) */
    tg_buf_t *file_buf;    /* tg_request_send_file's read buffer (copied file bodies) */
    tg_buf_t *file_more[TG_REQUEST_FILE_BUFS - 1]; /* ... and the others of one read round */
    struct tg_file_io_s *file_io; /* a read of file_buf in a file thread (src/file_io.h) */
    unsigned file_failed : 1;     /* that read failed: the next send_file returns -1 */
    size_t held_cap;
};

/* Set up a request a carrier made (zeroed memory): arena, carrier, client
 * connection (NULL: none), the accounting fields. */
void tg_request_init(tg_request_t *r, tg_arena_t *a, const tg_carrier_t *carrier, tg_conn_t *c);
/* The carrier parsed and validated the request head (status 0) or found it
 * bad (the status to answer): pick the server and location, apply the core
 * limits, and run the phases. */
void tg_request_process(tg_request_t *r, tg_listen_t *ls, int status);
/* Set r->path from a request-target's path: decoded and normalised
 * (src/uri.c), in the arena. 0, or the status to answer: 400 (a path that
 * escapes the root or is malformed), 500 (no memory). */
int tg_request_set_path(tg_request_t *r, tg_str_t path);
/* Set r->host from a Host header or authority: "Example.COM:8080" ->
 * "example.com" (port and trailing dot dropped, lowercased, in the arena).
 * -1: not a valid host name. */
int tg_request_set_host(tg_request_t *r, tg_str_t authority);
/* Run (or go on with) the phases: server rewrite, (the location is chosen),
 * rewrite, access, route, content. A path changed in the rewrite phase
 * (r->uri_changed) routes the request again at the end of the phase, unless
 * r->uri_stays; with r->uri_relocate (rewrite ... last) the new location's
 * rewrite phase runs too, as nginx's, otherwise (tg.req.set_path) the request
 * goes on to the access phase. A request is routed again at most
 * TG_REQUEST_MAX_URI_CHANGES times (internal redirects count too), then it
 * answers 500, as nginx does. */
void tg_request_run_phases(tg_request_t *r);
#define TG_REQUEST_MAX_URI_CHANGES 10

/* Set the path (decoded, as $uri) and query (without '?'): r->path, r->args
 * and r->uri (the path percent-encoded where it must be, then "?args"), all
 * copied to the arena; marks r->uri_changed. 0, or -1 out of memory. */
int tg_request_set_uri(tg_request_t *r, tg_str_t path, tg_str_t args);

/* Serve the request again, from the start: for `uri` ("/path?args", the
 * path decoded, as $uri) from the server's rewrite phase, then routing; or,
 * with `named` (a named location, "@name"), from that location's rewrite
 * phase with the URI unchanged. Whatever the request had begun is dropped:
 * the response, the upstream chosen, the module contexts; a content handler
 * must have let go of it (r->handler NULL). The method and request body are
 * the caller's business. Counts as a URI change (at most
 * TG_REQUEST_MAX_URI_CHANGES, then 500). The request may be over when this
 * returns: the caller returns at once. */
void tg_request_internal_redirect(tg_request_t *r, tg_str_t uri, tg_location_t *named);

/* Has the location an error_page for `status` that this request may still
 * take (one error_page redirect per request, none once the header went)? */
int tg_request_has_error_page(tg_request_t *r, int status);

/* Keep a regex match's captures for $1..$9: `ovector` (PCRE2's, `n` pairs)
 * is copied to the arena; `subject` must live as long as the request.
 * 0 or -1. A capture that did not take part reads as empty. */
int tg_request_set_captures(tg_request_t *r, tg_str_t subject, const size_t *ovector, int n);
/* Capture i (0: the whole match): 0 and *out, or -1 when there is none. */
int tg_request_capture(tg_request_t *r, int i, tg_str_t *out);

/* Start the response: status and r->resp_headers are set. Runs the response
 * header hooks and has the carrier serialize the header, or, when a hook set
 * r->header_hold, leaves that to the body filters' first output (see above).
 * The body length is r->resp_content_length (-1: unknown). 0 or -1. */
int tg_request_send_header(tg_request_t *r);
/* Queue body bytes through the body filters. `last` marks the end of the
 * body. May flush when the queue is full. 0, or -1 (client gone). */
int tg_request_send_body(tg_request_t *r, tg_spans_t *spans, int last);
/* Queue up to `len` body bytes of file `fd` from `off` (the caller keeps
 * the fd open until the request ends). Straight to the carrier's send_file
 * when it has one and no body filter transforms the response (r->body_filter
 * clear), else read into a pool buffer (one per call, one per request) and
 * through the filters, then flushed: from the page cache without blocking
 * (preadv2 RWF_NOWAIT), or else by a file thread (src/file_io.h), and then
 * the bytes go when the read is done. *sent: the bytes taken. Returns 1: the
 * caller may call again now for the rest; 0: wait for the handler's
 * on_drained (after the output drained, or the thread's read went on);
 * -1: the request must be aborted (client gone, file shorter than
 * announced, read error). */
int tg_request_send_file(tg_request_t *r, int fd, int64_t off, size_t len, size_t *sent);
/* Write what is queued: see tg_carrier_t.flush (never 2). */
int tg_request_flush(tg_request_t *r);
/* The same, but the bytes may go with the worker's send batch (src/sendq.h). */
int tg_request_flush_batched(tg_request_t *r);
/* The response is complete (or failed: `abort` drops the carrier's
 * connection): log hooks, the handler's on_abort, the carrier. */
void tg_request_finalize(tg_request_t *r, int abort);
/* Answer with an error page unless the header went out already (then the
 * carrier is aborted). When the location has an error_page for the status
 * (and the request had none yet), that page answers instead: an internal
 * redirect (GET unless HEAD, no request body) or a redirect to a URL. */
void tg_request_error(tg_request_t *r, int status);
/* Request body pulled for a content handler. 1 when *spans has data or the
 * body is complete (*done), 0 when more must be read (the handler's on_body
 * comes), < 0 the status to answer (-499: client gone). */
int tg_request_body_pull(tg_request_t *r, tg_spans_t **spans, int *done);
/* The handler consumed the spans: their memory may be reused. */
void tg_request_body_consumed(tg_request_t *r);
/* For a phase hook that needs the whole request body before the content
 * handler runs (Lua's tg.req.body): read it (decoded) into the request arena,
 * up to `max` bytes (and never past client_max_body_size). Returns 1 when
 * decided: *body is the whole body, which the content handler then gets as
 * it is, with a Content-Length whatever the client's framing; or
 * body->p == NULL when it is larger than `max`: reading stopped there, the
 * bytes read so far go first and the rest streams as usual. Later calls
 * return the same answer. 0: waiting for the client; the hook runs again
 * (tg_request_resume) when bytes arrive, and calls this again. -1: the
 * request ended (client gone, bad framing, timeout: answered or closed), the
 * hook must return TG_AGAIN and not touch r. */
int tg_request_body_read(tg_request_t *r, int64_t max, tg_str_t *body);
/* After a 101: the carrier becomes a tunnel (see tg_carrier_t): 0 on the
 * client connection, 1 through the request's body functions, -1. */
int tg_request_tunnel_begin(tg_request_t *r, tg_msec_t idle_ms, tg_buf_t **early);
void tg_request_tunnel_active(tg_request_t *r);
/* For the carrier: an event for the content handler (no-op when it has no
 * such handler). */
void tg_request_on_body(tg_request_t *r);
void tg_request_on_drained(tg_request_t *r);
void tg_request_on_blocked(tg_request_t *r);
void tg_request_on_tunnel(tg_request_t *r);

/* Module state kept for the life of the request's client connection across
 * its requests (limit_conn's places): get it (NULL: none yet), or set it with
 * the function that frees it when the connection closes (0, -1: no memory or
 * no client connection). */
void *tg_request_conn_ext(tg_request_t *r, const void *owner);
int tg_request_set_conn_ext(tg_request_t *r, const void *owner, void *data,
                            void (*release)(void *));
/* The client's TCP peer address and the address its PROXY protocol header
 * named (NULL: none), for trusted-proxy checks. */
const struct sockaddr *tg_request_peer_sa(const tg_request_t *r);
const char *tg_request_proxy_protocol_addr(const tg_request_t *r);

/* Answer locally: status, optional content type and body (copied to the
 * arena). The hook then returns TG_DONE. Returns 0 or -1. */
int tg_request_respond(tg_request_t *r, int status, const char *ctype, tg_str_t body);
/* Serve the request again from the start: for `uri` ("/path?args", the path
 * decoded as $uri) routed anew from the rewrite phase; or, with `named` (a
 * named location, "@name"), from that location's rewrite phase with the URI
 * unchanged. The response begun, the upstream chosen and the module
 * contexts are dropped; a content handler must have let go of the request
 * (r->handler NULL). At most TG_REQUEST_MAX_URI_CHANGES times, then 500, as
 * nginx. The request may be over when this returns: the caller returns
 * TG_AGAIN at once. (try_files' last argument; error_page uses it too.) */
void tg_request_internal_redirect(tg_request_t *r, tg_str_t uri, tg_location_t *named);
#define TG_REQUEST_MAX_URI_CHANGES 10
/* Continue a request parked by a hook that returned TG_AGAIN: the same hook
 * runs again. Safe to call from any event callback. */
void tg_request_resume(tg_request_t *r);
/* Is the request a gRPC call (POST with content-type application/grpc*,
 * or gRPC-Web's application/grpc-web*, translated or not)? Then
 * tg_request_respond answers a status >= 300 as a gRPC error: trailers-only,
 * HTTP 200, the call's content-type kind, grpc-status (src/grpc.h's
 * mapping) and grpc-message. */
int tg_request_is_grpc(const tg_request_t *r);
/* The gRPC status the response ended with: its trailers' grpc-status, else
 * its head's (trailers-only); -1 when there is none (or not a number).
 * *text (may be NULL): the field's value as sent. */
int tg_request_grpc_status(const tg_request_t *r, tg_str_t *text);
/* Add `token` to the response's Vary unless a Vary line has it (or "*"). */
int tg_request_vary_add(tg_request_t *r, const char *token);
/* A filter changes the response's bytes: a strong ETag becomes weak (the
 * body is at most semantically equal to the upstream's). 0 or -1. */
int tg_request_etag_weaken(tg_request_t *r);
/* Add a response header (copies name and value into the arena). */
int tg_request_add_resp_header(tg_request_t *r, tg_str_t name, tg_str_t value);
/* The protocol the request came in ("HTTP/1.0", "HTTP/1.1", "HTTP/2.0"):
 * $server_protocol and the access log's. */
tg_str_t tg_request_protocol(const tg_request_t *r);
/* The standard reason phrase of a status. */
const char *tg_status_reason(int status);

#endif
