/* A worker's state: what one worker process owns (its event loop, slot,
 * config, open connections, counters and free lists), reached through the
 * global tg_worker, which is NULL in the master. One process is one worker,
 * so "global" here means "this worker's". The worker process itself (its
 * loop, signals, accept, graceful stop) is in worker_main.c. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "worker.h"

tg_worker_t *tg_worker;

tg_str_t tg_worker_date(void)
{
    tg_worker_t *w = tg_worker;
    double now = ev_now(w->loop);
    if ((time_t)now != (time_t)w->date_at || w->date_len == 0) {
        w->date_len = tg_fmt_http_date(w->date, (time_t)now);
        w->date_at = now;
    }
    return (tg_str_t){w->date, w->date_len};
}

const tg_worker_times_t *tg_worker_times(void)
{
    tg_worker_t *w = tg_worker;
    tg_worker_times_t *t = &w->times;
    time_t now = (time_t)ev_now(w->loop);
    if (t->local_len && (long)now == t->sec)
        return t;
    struct tm tm;
    localtime_r(&now, &tm);
    /* the offset by hand: %z has no colon, ISO 8601 in nginx's form has one */
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    off = off < 0 ? -off : off;
    size_t n = strftime(t->local, sizeof(t->local), "%d/%b/%Y:%H:%M:%S", &tm);
    t->local_len = n + (size_t)snprintf(t->local + n, sizeof(t->local) - n, " %c%02ld%02ld", sign,
                                        off / 60, off % 60);
    n = strftime(t->iso8601, sizeof(t->iso8601), "%Y-%m-%dT%H:%M:%S", &tm);
    t->iso8601_len = n + (size_t)snprintf(t->iso8601 + n, sizeof(t->iso8601) - n, "%c%02ld:%02ld",
                                          sign, off / 60, off % 60);
    t->sec = (long)now;
    return t;
}

void tg_worker_accept_pause(void)
{
    tg_worker_t *w = tg_worker;
    if (w->accept_paused)
        return;
    w->accept_paused = 1;
    for (int i = 0; i < w->nlistens; i++)
        ev_io_stop(w->loop, &w->accepts[i]);
}

void tg_worker_accept_resume(void)
{
    tg_worker_t *w = tg_worker;
    if (!w->accept_paused || w->shutting_down ||
        w->nconns >= w->config->main->worker_connections)
        return;
    w->accept_paused = 0;
    for (int i = 0; i < w->nlistens; i++)
        ev_io_start(w->loop, &w->accepts[i]);
}

