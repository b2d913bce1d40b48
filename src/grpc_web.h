/* gRPC-Web to gRPC (src/grpc_web.c, grpc/doc/PROTOCOL-WEB.md): with
 * `grpc_web on`, the HTTP/2 proxy (src/proxy_h2.c) turns a gRPC-Web call
 * from an HTTP/1.1 or HTTP/2 client into a gRPC call to the upstream and
 * its answer back: content-types, the request body's base64 decoded round by
 * round in text mode, the response's messages passed as they come (base64,
 * each round padded, in text mode) and the upstream's trailers as the last
 * frame of the body (flag 0x80). Memory: one scratch buffer each way, the
 * size of the largest round. */
#ifndef TG_GRPC_WEB_H
#define TG_GRPC_WEB_H

#include "request.h"

/* A base64 stream decoded in pieces: the quantum (4 characters) under way.
 * Each piece may end with padding ("QQ==" then "Qg=="), as gRPC-Web clients
 * send it. */
typedef struct {
    uint32_t acc;
    uint8_t n;   /* characters of the quantum seen */
    uint8_t pad; /* '=' among them */
} tg_b64_stream_t;

/* Decode n characters into out (room for n * 3 / 4 + 3). The length
 * written, or -1 on a character outside base64 (RFC 4648 4) or misplaced
 * padding. The stream ended whole when d->n is 0. */
long tg_b64_stream_decode(tg_b64_stream_t *d, const char *s, size_t n, unsigned char *out);
/* Base64 of the spans' bytes, padded, into out (room for 4 * ((len + 2) / 3)).
 * Returns its length. */
size_t tg_b64_encode_spans(const tg_spans_t *in, char *out);
/* gRPC-Web's trailer frame for these fields: 0x80, the block's length
 * (4 bytes, big-endian), then "name: value\r\n" per field, names lowercased.
 * Its length; out NULL: only measured. */
size_t tg_grpc_web_trailer_frame(const tg_headers_t *hs, char *out);

typedef struct {
    int kind;            /* the request's: TG_GRPC_WEB or TG_GRPC_WEB_TEXT; 0: not translated */
    int text_resp;       /* the answer goes base64 (text request, or Accept asks for it) */
    tg_str_t resp_type;  /* the answer's content-type */
    tg_str_t up_type;    /* the request's content-type to the upstream */
    tg_b64_stream_t dec;
    char *dbuf, *ebuf;   /* decoded request round; encoded response round */
    size_t dcap, ecap;
    tg_spans_t din, eout;
} tg_grpc_web_t;

/* Should this request be translated (grpc_web on and a gRPC-Web POST)? Sets
 * w up if so: 1; 0 when not. */
int tg_grpc_web_start(tg_grpc_web_t *w, tg_request_t *r, int enabled);
/* A request field for the upstream: 1 keep it (value may be replaced: the
 * content-type), 0 drop it (x-grpc-web; content-length in text mode). */
int tg_grpc_web_field(const tg_grpc_web_t *w, tg_str_t name, tg_str_t *value);
/* A round of the request body, decoded (text mode; binary passes as is):
 * the spans to send, valid until the next call; NULL on malformed base64 or
 * a body that ends inside a quantum (logged), or out of memory. */
tg_spans_t *tg_grpc_web_request_body(tg_grpc_web_t *w, tg_request_t *r, tg_spans_t *in, int last);
/* The response head: the gRPC-Web content-type, no content-length (0 for a
 * trailers-only answer). 0 or -1. */
int tg_grpc_web_response_head(tg_grpc_web_t *w, tg_request_t *r);
/* A round of the response body for the client (base64 in text mode), with
 * the trailer frame after the last (r->resp_trailers: they go in the body,
 * not as HTTP trailers; $grpc_status still sees grpc-status). The spans to
 * send, valid until the next call, or NULL (out of memory). */
tg_spans_t *tg_grpc_web_response_body(tg_grpc_web_t *w, tg_request_t *r, tg_spans_t *in, int last);

#endif
