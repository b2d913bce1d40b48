/* The proxy: the content handler that forwards a routed request to an
 * upstream server and streams the response back (proxy.c), with the
 * `proxy_*` directives (tg_proxy_module). The request layer reaches it only
 * through the module interface (on_route, on_content) and the request's
 * handler events. Upstream connections and their keep-alive pool are in
 * upstream.c. */
#ifndef TG_PROXY_H
#define TG_PROXY_H

#include "request.h"
#include "upstream.h"

typedef struct {
    tg_str_t name;
    tg_tpl_t *value; /* empty value: remove the header */
} tg_proxy_header_t;

typedef struct {
    tg_upstream_t *upstream; /* proxy_pass; NULL when not set here */
    tg_msec_t connect_timeout, read_timeout, send_timeout;
    int64_t next_upstream_tries; /* 0 = as many as there are servers */
    tg_proxy_header_t *set_headers;
    int nset_headers;
    tg_str_t *remove_headers;
    int nremove_headers;
    int set_headers_given; /* 1 when this scope had its own list */
    tg_msec_t websocket_idle_timeout;
} tg_proxy_conf_t;

extern tg_module_t tg_proxy_module;

#endif
