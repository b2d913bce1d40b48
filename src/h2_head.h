/* HTTP/2 heads <-> the request (src/h2_head.c): a request head received as
 * HTTP/2 fields becomes the request line and Host an HTTP/1.1 request has
 * (RFC 9113 8.3), and a response becomes HTTP/2 fields (8.2). Pure
 * functions of the request, apart from the arena; the codec (src/h2.c)
 * calls them with what nghttp2 decoded and checked. */
#ifndef TG_H2_HEAD_H
#define TG_H2_HEAD_H

#include <nghttp2/nghttp2.h>
#include "request.h"

/* The pseudo-header fields of a request (in the request's arena) and the
 * joined cookie crumbs; end_stream: HEADERS ended the stream (no body);
 * protocol: :protocol, sent with an extended CONNECT (RFC 8441), else
 * {NULL, 0}. */
typedef struct {
    tg_str_t method, path, authority, cookie;
    int end_stream;
    tg_str_t protocol;
} tg_h2_head_t;

/* Add a cookie crumb: crumbs are joined with "; " (RFC 9113 8.2.3). 0, -1
 * out of memory. */
int tg_h2_head_cookie(tg_arena_t *a, tg_str_t *cookie, tg_str_t crumb);
/* Keep a field of the request's trailers (a HEADERS frame after the
 * body, which nghttp2 checked like a head: no pseudo-header fields, no
 * connection-specific ones) in r->trailers, copied to the arena. 0, -1 out
 * of memory. */
int tg_h2_head_trailer(tg_request_t *r, tg_str_t name, tg_str_t value);
/* Fill r from the head and the regular fields already in r->headers:
 * method, r->uri and the normalised r->path (src/uri.c, as HTTP/1.1 does),
 * r->args, r->host (from :authority, else host; both must agree), a host
 * field added from :authority, the joined cookie field, the body's framing
 * (content-length, else chunked to the upstream), Expect. An extended
 * CONNECT with :protocol "websocket" (RFC 8441) becomes the HTTP/1.1
 * upgrade it stands for: a GET of :path with r->upgrade set, the fields
 * upgrade: websocket and a fresh sec-websocket-key (src/websocket.c), and
 * no body (its DATA is the tunnel's, after the answer). Returns 0, or the
 * status to answer (400, 405 for CONNECT without :protocol, 414, 417, 501
 * for an unknown method or :protocol). */
int tg_h2_head_request(tg_request_t *r, const tg_h2_head_t *h, int64_t max_uri);
/* The response head as nghttp2 pairs in r->arena: :status, date unless
 * set, content-length when known, then r->resp_headers with lowercased
 * names, without the connection-specific ones (RFC 9113 8.2.2). *n: their
 * count. NULL: out of memory. */
nghttp2_nv *tg_h2_head_response(tg_request_t *r, size_t *n);

/* The response's trailer fields (r->resp_trailers) as nghttp2 pairs in
 * r->arena, names lowercased, connection-specific ones left out. NULL: out
 * of memory. */
nghttp2_nv *tg_h2_head_trailers(tg_request_t *r, size_t *n);

#endif
