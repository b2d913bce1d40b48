/* A request as modules see it: the parsed request line and headers, where it
 * was routed, and the response being built. Header lists keep order, case and
 * duplicates exactly as received; names compare case-insensitively.
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

typedef struct tg_conn_s tg_conn_t;
typedef struct tg_proxy_s tg_proxy_t;

struct tg_request_s {
    tg_arena_t *arena; /* the connection's arena, reset at request end */
    tg_conn_t *conn;
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
    tg_headers_t headers;
    tg_str_t host;          /* Host without port, lowercased */
    int64_t content_length; /* -1: no Content-Length */
    unsigned chunked : 1;   /* request body is chunked */
    unsigned has_body : 1;
    unsigned keepalive : 1; /* the client connection may be reused after */
    unsigned expect_continue : 1;
    unsigned upgrade : 1; /* Upgrade requested (passed through later) */
    unsigned uri_changed : 1; /* path rewritten: re-route */
    unsigned path_set : 1;    /* path (and uri) set by tg.req.set_path: as given, not decoded */
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

    /* accounting */
    double start;          /* ev_now at the first byte */
    double upstream_start; /* when the upstream attempt began */
    double upstream_time;  /* seconds to the end of the upstream response */
    int upstream_status;     /* the upstream's response status, 0: none */
    tg_str_t upstream_tries; /* statuses of earlier failed attempts, "502, 504" */
    uint64_t bytes_in, bytes_out;
    uint32_t id; /* per-worker request number, for logs */

    /* pipeline state (core only) */
    tg_phase_t phase;
    int hook;
    tg_buf_t *hbuf; /* buffer holding the header block */
    tg_proxy_t *proxy;
};

/* Answer locally: status, optional content type and body (copied to the
 * arena). The hook then returns TG_DONE. Returns 0 or -1. */
int tg_request_respond(tg_request_t *r, int status, const char *ctype, tg_str_t body);
/* Continue a request parked by a hook that returned TG_AGAIN: the same hook
 * runs again. Safe to call from any event callback. */
void tg_request_resume(tg_request_t *r);
/* Add `token` to the response's Vary unless a Vary line has it (or "*"). */
int tg_request_vary_add(tg_request_t *r, const char *token);
/* Add a response header (copies name and value into the arena). */
int tg_request_add_resp_header(tg_request_t *r, tg_str_t name, tg_str_t value);
/* The standard reason phrase of a status. */
const char *tg_status_reason(int status);

#endif
