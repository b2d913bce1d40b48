/* The proxy: the content handler that forwards a routed request to an
 * upstream server and streams the response back (proxy.c), with the
 * `proxy_*` directives (tg_proxy_module). The request layer reaches it only
 * through the module interface (on_route, on_content) and the request's
 * handler events. Upstream connections and their keep-alive pool are in
 * upstream.c. */
#ifndef TG_PROXY_H
#define TG_PROXY_H

#include "module.h"

extern tg_module_t tg_proxy_module;

#endif
