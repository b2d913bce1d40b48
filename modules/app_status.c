/* `app_status;` in a location: the instances of every app block, as the
 * master's supervisor left them in each app's shared memory zone (pid,
 * state, restarts, RSS, CPU time, uptime, requests in flight from all workers, and
 * the app's rolling restarts and rollbacks). JSON by default; Prometheus
 * text with ?format=prometheus or an Accept of text/plain. `tollgate -s
 * status` prints the same as a table; the stats endpoint has the same in its
 * "apps" section. The rendering is src/app_stats.c. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "module.h"
#include "request.h"
#include "worker.h"
#include "core.h"
#include "app_stats.h"
#include "log.h"

typedef struct {
    int on;
} app_status_conf_t;

static void *as_create_conf(tg_conf_t *cf)
{
    return tg_arena_alloc(cf->arena, sizeof(app_status_conf_t));
}

static const char *set_app_status(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)cf;
    (void)d;
    ((app_status_conf_t *)conf)->on = 1;
    return NULL;
}

static int as_is_active(void *conf)
{
    return ((app_status_conf_t *)conf)->on;
}

static int wants_prometheus(tg_request_t *r)
{
    if (r->args.len && memmem(r->args.p, r->args.len, "format=prometheus", 17)) return 1;
    tg_header_t *h = tg_headers_find(&r->headers, TG_STR("Accept"));
    return h && h->value.len >= 10 && memmem(h->value.p, h->value.len, "text/plain", 10);
}

static tg_rc_t as_content(tg_request_t *r, void *conf)
{
    (void)conf;
    int prom = wants_prometheus(r);
    char *out = tg_app_stats_render(r->arena, prom ? "" : "{\"apps\":",
                                    tg_worker->config->apps, prom);
    if (out && !prom) out = tg_arena_printf(r->arena, "%s}\n", out);
    if (out == NULL) return TG_ERROR;
    if (tg_request_add_resp_header(r, TG_STR("Cache-Control"), TG_STR("no-store")) != 0 ||
        tg_request_respond(r, 200,
                           prom ? "text/plain; version=0.0.4; charset=utf-8" : "application/json",
                           tg_str_c(out)) != 0)
        return TG_ERROR;
    return TG_DONE;
}

static const tg_directive_t as_directives[] = {
    {"app_status", TG_SCOPE_LOCATION, 0, 0, 0, set_app_status, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_app_status_module = {
    .name = "app_status",
    .directives = as_directives,
    .create_conf = as_create_conf,
    .is_active = as_is_active,
    .on_content = as_content,
};
