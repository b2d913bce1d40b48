/* Readiness and health probes of app instances, run by the master without
 * an event loop (src/app_probe.c): a non-blocking connect, then (with a
 * path) `GET path` and the status line, advanced by tg_app_probe_step from
 * the master's poll loop. */
#ifndef TG_APP_PROBE_H
#define TG_APP_PROBE_H

#include <stddef.h>
#include <sys/socket.h>
#include "str.h"

typedef struct {
    int fd;          /* -1: no probe under way */
    int phase;       /* 0 connecting, 1 sending, 2 reading the status line */
    double deadline; /* monotonic seconds: a probe not done by then failed */
    int get;         /* 1: GET the path and want a 2xx; 0: accepting a connection is enough */
    char req[512];
    size_t req_len, sent;
    char resp[16];
    size_t got;
} tg_app_probe_t;

/* Start a probe of `ss` (`path` NULL: connect only), done by `deadline`.
 * 0, or -1 when no socket could be made (the probe counts as failed). */
int tg_app_probe_start(tg_app_probe_t *p, const struct sockaddr_storage *ss, socklen_t len,
                       const tg_str_t *path, double deadline);
/* Advance it: 1 passed, -1 failed (both end it), 0 not yet. */
int tg_app_probe_step(tg_app_probe_t *p, double now);
/* What to poll for: POLLOUT or POLLIN, 0 when no probe is under way. */
short tg_app_probe_events(const tg_app_probe_t *p);
void tg_app_probe_stop(tg_app_probe_t *p);

#endif
