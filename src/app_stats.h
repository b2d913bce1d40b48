/* @public The instances of the app blocks as text for machine readers
 * (src/app_stats.c), one renderer for both the `app_status` location
 * (modules/app_status.c) and the "apps" section of the stats endpoint
 * (modules/stats.c). It reads each app's shared memory zone, as the
 * master's supervisor left it (src/app.h). */
#ifndef TG_APP_STATS_H
#define TG_APP_STATS_H

#include "app.h"
#include "arena.h"

/* Appends the instances of `apps` (a config's list) to `out`, a string in
 * arena `a`. JSON: one object, {"NAME": {"rollouts": N, "rollbacks": N,
 * "instances": [{"slot", "pid", "state", "restarts", "rss", "cpu", "uptime",
 * "inflight"}, ...]}, ...}; a slot shows once it ever ran. `prom`: the
 * tollgate_app_* series, each with its HELP and TYPE lines. Returns the new
 * string, NULL when out of memory. */
char *tg_app_stats_render(tg_arena_t *a, const char *out, const tg_app_t *apps, int prom);

#endif
