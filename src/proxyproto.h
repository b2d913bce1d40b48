/* The PROXY protocol (HAProxy's, versions 1 and 2) that load balancers put
 * in front of a connection to say who the client is. */
#ifndef TG_PROXYPROTO_H
#define TG_PROXYPROTO_H

#include <stddef.h>

/* Parse a PROXY header at the start of `p`. Returns the bytes it takes (the
 * source address written to `addr` as text, or "" for LOCAL/UNKNOWN), 0 when
 * more bytes are needed, -1 when it is not a valid header. */
int tg_proxyproto_parse(const char *p, size_t len, char *addr, size_t addrsize);

#endif
