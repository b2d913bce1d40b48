/* @public The certificates the TLS servers serve, for the stats endpoint
 * (src/tls_stats.c; modules/stats.c renders it): per certificate its names,
 * expiry and source (a tls_certificate file, or ACME with its last renewal
 * attempt, result and next attempt, read from the acme zone, src/acme.h).
 * What this worker serves: an ACME certificate counts once the worker
 * installed it. */
#ifndef TG_TLS_STATS_H
#define TG_TLS_STATS_H

#include "arena.h"
#include "conf.h"

/* Appends to `out` (a string in arena `a`): JSON, `"certificates": [{"server",
 * "names", "source", "not_after", "expiry_seconds", "placeholder", and for
 * ACME "last_attempt", "last_result", "last_error", "next_attempt"}]`
 * preceded by `sep`; or (`prom`) the tollgate_tls_certificate_expiry_seconds
 * and tollgate_acme_* series with their HELP and TYPE lines. Returns the new
 * string, NULL when out of memory; `out` itself when no server has TLS. */
char *tg_tls_stats_render(tg_arena_t *a, const char *out, const char *sep, tg_config_t *c,
                          int prom);

#endif
