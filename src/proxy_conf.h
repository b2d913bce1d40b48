/* The proxy's per-scope settings and directives (src/proxy_conf.c). */
#ifndef TG_PROXY_CONF_H
#define TG_PROXY_CONF_H

#include "module.h"
#include "upstream.h"
#include "proxy_uri.h"

typedef struct {
    tg_str_t name;
    tg_tpl_t *value; /* empty value: remove the header */
} tg_proxy_header_t;

typedef struct {
    tg_upstream_t *upstream; /* proxy_pass; NULL when not set here */
    tg_proxy_uri_t pass_uri; /* proxy_pass's URI part and the prefix it replaces */
    tg_msec_t connect_timeout, read_timeout, send_timeout;
    int64_t next_upstream_tries; /* 0 = as many as there are servers */
    tg_proxy_header_t *set_headers;
    int nset_headers;
    tg_str_t *remove_headers;
    int nremove_headers;
    int set_headers_given; /* 1 when this scope had its own list */
    tg_msec_t websocket_idle_timeout;
    int intercept_errors; /* proxy_intercept_errors: a status >= 300 with an error_page gets it */
    int grpc_web;         /* grpc_web: gRPC-Web calls translated to gRPC (src/grpc_web.c) */
} tg_proxy_conf_t;

/* The proxy module's directive table and config create/merge. */
extern const tg_directive_t tg_proxy_directives[];
void *tg_proxy_create_conf(tg_conf_t *cf);
const char *tg_proxy_merge_conf(tg_conf_t *cf, void *parent, void *child);
/* --explain and -T: proxy_pass, timeouts, header changes and the upstream
 * (tg_module_t.explain). */
const char *tg_proxy_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req);

#endif
