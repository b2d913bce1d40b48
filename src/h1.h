/* The HTTP/1.1 codec (src/h1.c): a client connection's bytes <-> requests
 * and responses. The worker attaches it to each accepted connection; the
 * request layer reaches it only through tg_carrier_t. */
#ifndef TG_H1_H
#define TG_H1_H

#include "conn.h"

/* Attach the codec to a connection just accepted and read its first
 * request (often there already: TCP_DEFER_ACCEPT). */
void tg_h1_start(tg_conn_t *c);

#endif
