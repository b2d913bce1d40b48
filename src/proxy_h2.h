/* The proxy over HTTP/2 to the upstream (src/proxy_h2.c). */
#ifndef TG_PROXY_H2_H
#define TG_PROXY_H2_H

#include "request.h"
#include "proxy_conf.h"

/* The content handler for a request whose upstream has `protocol http2`:
 * takes the request over (TG_AGAIN), or TG_ERROR (out of memory). */
tg_rc_t tg_proxy_h2_content(tg_request_t *r, tg_proxy_conf_t *pc);

#endif
