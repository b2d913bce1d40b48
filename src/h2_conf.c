/* The http2 module: the directives of HTTP/2 to clients (docs/http2.md).
 * It has no hooks: the codec (src/h2.c) and the ALPN callback
 * (src/tls_conf.c) read these settings. Main and server scope; a connection
 * uses its listener's default server's, since the server a stream names
 * (:authority) is only known per request. */
#include "h2_conf.h"
#include "conf.h"

#define H2_MAX_WINDOW ((int64_t)1 << 24)

static void *h2_create_conf(tg_conf_t *cf)
{
    tg_h2_conf_t *h = tg_arena_alloc(cf->arena, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->enable = TG_CONF_UNSET;
    h->max_streams = TG_CONF_UNSET;
    h->max_header_size = TG_CONF_UNSET;
    h->stream_window = TG_CONF_UNSET;
    return h;
}

static const char *h2_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    tg_h2_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->enable, p->enable, 1);
    TG_CONF_MERGE(c->max_streams, p->max_streams, 128);
    TG_CONF_MERGE(c->max_header_size, p->max_header_size, 16384);
    TG_CONF_MERGE(c->stream_window, p->stream_window, 65536);
    if (c->max_streams < 1 || c->max_streams > 65536)
        return "\"http2_max_streams\" must be between 1 and 65536";
    if (c->max_header_size < 1024 || c->max_header_size > 1024 * 1024)
        return "\"http2_max_header_size\" must be between 1k and 1m";
    if (c->stream_window < 16384 || c->stream_window > H2_MAX_WINDOW)
        return "\"http2_stream_window\" must be between 16k and 16m";
    return NULL;
}

static const tg_directive_t h2_directives[] = {
    {"http2", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, tg_conf_set_flag,
     offsetof(tg_h2_conf_t, enable)},
    {"http2_max_streams", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, tg_conf_set_num,
     offsetof(tg_h2_conf_t, max_streams)},
    {"http2_max_header_size", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, tg_conf_set_size,
     offsetof(tg_h2_conf_t, max_header_size)},
    {"http2_stream_window", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, tg_conf_set_size,
     offsetof(tg_h2_conf_t, stream_window)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_h2_module = {
    .name = "http2",
    .directives = h2_directives,
    .create_conf = h2_create_conf,
    .merge_conf = h2_merge_conf,
};
