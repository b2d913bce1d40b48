/* The request head sent upstream and the response head passed back
 * (src/proxy_head.c). */
#ifndef TG_PROXY_HEAD_H
#define TG_PROXY_HEAD_H

#include "request.h"
#include "proxy_conf.h"

/* More response headers from an upstream: 502. */
#define TG_PROXY_MAX_RESP_HEADERS 200

/* Serialize the head of r for the upstream into r's arena (*head): the
 * request line (proxy_pass's URI rule), the client's headers in order minus
 * hop-by-hop ones and those proxy_remove_header/proxy_set_header name, the
 * proxy_set_header values, X-Forwarded-For/-Proto/-Host, Connection
 * (keep-alive, or upgrade for a `websocket` request) and the body framing.
 * 0, or -1 (out of memory, or a template that failed). */
int tg_proxy_head_build(tg_request_t *r, const tg_proxy_conf_t *pc, int websocket, tg_str_t *head);
/* The header fields of that head, without the request line and the body
 * framing, appended to *out (an empty list whose array may be the caller's:
 * it moves to r's arena when it grows). 0, or -1. */
int tg_proxy_head_fields(tg_request_t *r, const tg_proxy_conf_t *pc, int websocket,
                         tg_headers_t *out);
/* The end of a chunked request body for the upstream: the last chunk, the
 * request's trailer fields (r->trailers) less those a trailer must not
 * carry (framing, routing, authentication, content metadata: RFC 9110
 * 6.5.1, and the hop-by-hop ones), and the final CRLF, in r's arena.
 * 0, or -1 out of memory. */
int tg_proxy_head_trailers(tg_request_t *r, tg_str_t *out);
/* Drop the hop-by-hop headers of an upstream response (those a Connection
 * header names too). Returns the upstream's Keep-Alive timeout in ms (0 when
 * it announced none), to retire the connection before it does. */
tg_msec_t tg_proxy_head_clean_response(tg_headers_t *hs);

#endif
