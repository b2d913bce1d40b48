/* HTTP/2 settings (src/h2_conf.c): the http2 module's directives, read by
 * the HTTP/2 codec (src/h2.c) from a connection's default server and by the
 * tls module's ALPN callback from the server the client hello picked. */
#ifndef TG_H2_CONF_H
#define TG_H2_CONF_H

#include <stdint.h>
#include "module.h"

typedef struct {
    int enable;              /* http2 on|off: TLS listeners offer h2 in ALPN */
    int64_t max_streams;     /* http2_max_streams: SETTINGS_MAX_CONCURRENT_STREAMS */
    int64_t max_header_size; /* http2_max_header_size: decoded header list, bytes */
    int64_t stream_window;   /* http2_stream_window: request body bytes buffered per stream */
} tg_h2_conf_t;

extern tg_module_t tg_h2_module;

/* The settings in a scope's module configs (a server's mconf). */
static inline tg_h2_conf_t *tg_h2_conf(void **mconf)
{
    return mconf[tg_h2_module.index];
}

#endif
