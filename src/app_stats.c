/* The instances of the app blocks as JSON or Prometheus text (app_stats.h). */
#include <time.h>
#include "app_stats.h"

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

char *tg_app_stats_render(tg_arena_t *a, const char *out, const tg_app_t *apps, int prom)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char *s = tg_arena_printf(a, "%s%s", out, prom ? prom_help : "{");
    int first = 1;
    for (const tg_app_t *app = apps; s && app; app = app->next, first = 0)
        s = render(a, s, app, prom, now, first);
    return s && !prom ? tg_arena_printf(a, "%s}", s) : s;
}
