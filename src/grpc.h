/* @public gRPC over HTTP/2 (src/grpc.c): which requests are gRPC calls, the
 * gRPC status the gateway answers for an HTTP status it would have answered,
 * and grpc-timeout. Pure functions: the request layer and the proxy use
 * them (docs/grpc.md). */
#ifndef TG_GRPC_H
#define TG_GRPC_H

#include <stdint.h>
#include "str.h"

/* gRPC status codes the gateway makes (grpc/doc/statuscodes.md) */
#define TG_GRPC_OK 0
#define TG_GRPC_UNKNOWN 2
#define TG_GRPC_DEADLINE_EXCEEDED 4
#define TG_GRPC_PERMISSION_DENIED 7
#define TG_GRPC_RESOURCE_EXHAUSTED 8
#define TG_GRPC_UNIMPLEMENTED 12
#define TG_GRPC_INTERNAL 13
#define TG_GRPC_UNAVAILABLE 14
#define TG_GRPC_UNAUTHENTICATED 16

/* gRPC-Web (grpc/doc/PROTOCOL-WEB.md) content-types: */
#define TG_GRPC_WEB 1      /* application/grpc-web[+FORMAT]: gRPC's framing */
#define TG_GRPC_WEB_TEXT 2 /* application/grpc-web-text[+FORMAT]: the same, base64 */

/* Is this content-type a gRPC call's ("application/grpc", "application/grpc+proto",
 * "application/grpc;..."; not gRPC-Web)? */
int tg_grpc_is_content_type(tg_str_t ctype);
/* Which gRPC-Web content-type this is (TG_GRPC_WEB, TG_GRPC_WEB_TEXT, with
 * or without "+FORMAT" and parameters), or 0. */
int tg_grpc_web_kind(tg_str_t ctype);
/* The "+FORMAT" of a gRPC-Web content-type ("+proto"; empty when none). */
tg_str_t tg_grpc_web_format(tg_str_t ctype);
/* The gRPC status for an answer the gateway would give as this HTTP status
 * (the gRPC project's HTTP-to-gRPC mapping, with the gateway's own: 429 and
 * 413 RESOURCE_EXHAUSTED, 504 DEADLINE_EXCEEDED, 500 INTERNAL). */
int tg_grpc_status_for_http(int status);
/* grpc-timeout ("100m", "5S": at most 8 digits and a unit H M S m u n) in
 * milliseconds (at least 1 when not 0); -1 when malformed. */
int64_t tg_grpc_timeout_ms(tg_str_t v);

#endif
