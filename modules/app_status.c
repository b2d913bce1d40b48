/* `app_status;` in a location: the instances of every app block, as the
 * master's supervisor left them in each app's shared memory zone (pid,
 * state, restarts, RSS, CPU time, uptime, requests in flight from all workers, and
 * the app's rolling restarts and rollbacks). JSON by default; Prometheus
 * text with ?format=prometheus or an Accept of text/plain. `tollgate -s
 * status` prints the same as a table. A slot shows once it ever ran. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "module.h"
#include "request.h"
#include "worker.h"
#include "core.h"
#include "app.h"
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

static int shown(const tg_app_slot_t *s)
{
    return s->pid || s->state || s->restarts || s->started;
}

/* One app's slots; `prom` selects the format. NULL when out of memory. */
static char *render(tg_arena_t *a, char *out, const tg_app_t *app, int prom, int64_t now_ms,
                    int first)
{
    const tg_app_shm_t *m = app->shm;
    const char *n = app->name.p;
    if (prom)
        out = tg_arena_printf(a,
                              "%stollgate_app_rollouts_total{app=\"%s\"} %d\n"
                              "tollgate_app_rollbacks_total{app=\"%s\"} %d\n",
                              out, n, (int)m->rollouts, n, (int)m->rollbacks);
    else
        out = tg_arena_printf(a, "%s%s\"%s\":{\"rollouts\":%d,\"rollbacks\":%d,\"instances\":[",
                              out, first ? "" : ",", n, (int)m->rollouts, (int)m->rollbacks);
    int k = 0;
    for (int i = 0; out && i < TG_APP_MAX_SLOTS; i++) {
        const tg_app_slot_t *s = &m->slots[i];
        if (!shown(s)) continue;
        int pid = s->pid, st = s->state;
        double up = pid && s->started ? (double)(now_ms - s->started) / 1000.0 : 0;
        if (prom)
            out = tg_arena_printf(
                a,
                "%stollgate_app_instance_state{app=\"%s\",slot=\"%d\",state=\"%s\"} 1\n"
                "tollgate_app_instance_ready{app=\"%s\",slot=\"%d\"} %d\n"
                "tollgate_app_instance_restarts_total{app=\"%s\",slot=\"%d\"} %d\n"
                "tollgate_app_instance_rss_bytes{app=\"%s\",slot=\"%d\"} %lld\n"
                "tollgate_app_instance_cpu_seconds_total{app=\"%s\",slot=\"%d\"} %.3f\n"
                "tollgate_app_instance_uptime_seconds{app=\"%s\",slot=\"%d\"} %.3f\n"
                "tollgate_app_instance_inflight{app=\"%s\",slot=\"%d\"} %d\n",
                out, n, i, tg_app_state_name(st), n, i, st == TG_APP_READY, n, i, (int)s->restarts,
                n, i, (long long)(pid ? s->rss : 0), n, i, (double)(pid ? s->cpu_ms : 0) / 1000.0,
                n, i, up, n, i, (int)s->gate.inflight);
        else
            out =
                tg_arena_printf(a,
                                "%s%s{\"slot\":%d,\"pid\":%d,\"state\":\"%s\",\"restarts\":%d,"
                                "\"rss\":%lld,\"cpu\":%.3f,\"uptime\":%.3f,\"inflight\":%d}",
                                out, k ? "," : "", i, pid, tg_app_state_name(st), (int)s->restarts,
                                (long long)(pid ? s->rss : 0),
                                (double)(pid ? s->cpu_ms : 0) / 1000.0, up, (int)s->gate.inflight);
        k++;
    }
    return out && !prom ? tg_arena_printf(a, "%s]}", out) : out;
}

static const char *const prom_help =
    "# HELP tollgate_app_instance_state The state of an app instance slot.\n"
    "# TYPE tollgate_app_instance_state gauge\n"
    "# HELP tollgate_app_instance_ready 1 while the instance gets traffic.\n"
    "# TYPE tollgate_app_instance_ready gauge\n"
    "# HELP tollgate_app_instance_restarts_total Unplanned restarts (crashes, max_memory).\n"
    "# TYPE tollgate_app_instance_restarts_total counter\n"
    "# HELP tollgate_app_instance_rss_bytes Resident memory, sampled every second.\n"
    "# TYPE tollgate_app_instance_rss_bytes gauge\n"
    "# HELP tollgate_app_instance_cpu_seconds_total CPU time (user + system), sampled every "
    "second.\n"
    "# TYPE tollgate_app_instance_cpu_seconds_total counter\n"
    "# HELP tollgate_app_instance_uptime_seconds Since the instance's process started.\n"
    "# TYPE tollgate_app_instance_uptime_seconds gauge\n"
    "# HELP tollgate_app_instance_inflight Requests in flight to it from all workers.\n"
    "# TYPE tollgate_app_instance_inflight gauge\n"
    "# HELP tollgate_app_rollouts_total Rolling restarts completed.\n"
    "# TYPE tollgate_app_rollouts_total counter\n"
    "# HELP tollgate_app_rollbacks_total Rolling restarts stopped by a failing new instance.\n"
    "# TYPE tollgate_app_rollbacks_total counter\n";

static tg_rc_t as_content(tg_request_t *r, void *conf)
{
    (void)conf;
    int prom = wants_prometheus(r);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char *out = tg_arena_printf(r->arena, "%s", prom ? prom_help : "{\"apps\":{");
    int first = 1;
    for (const tg_app_t *a = tg_worker->config->apps; out && a; a = a->next, first = 0)
        out = render(r->arena, out, a, prom, now, first);
    if (out && !prom) out = tg_arena_printf(r->arena, "%s}}\n", out);
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
