/* The HTTP/2 codec (src/h2.c): a client connection's frames <-> requests
 * and responses, one request per stream, on nghttp2's server session. The
 * worker attaches it when the connection's preamble chose HTTP/2 (ALPN "h2",
 * or the client preface on a `listen ... http2` port); the request layer
 * reaches it only through tg_carrier_t. */
#ifndef TG_H2_H
#define TG_H2_H

#include "conn.h"

/* Attach the codec to a connection whose preamble chose HTTP/2; bytes
 * already read (the client preface) wait in c->ibuf. */
void tg_h2_start(tg_conn_t *c);

#endif
