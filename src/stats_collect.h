/* @public The stats' collection (src/stats_collect.c): set up a config's
 * stats slots, start a worker's gauge timer, publish its gauges. The stats
 * module calls these; the counters themselves are in stats.h. */
#ifndef TG_STATS_COLLECT_H
#define TG_STATS_COLLECT_H

#include "stats.h"

/* At config load (the stats module's init_conf): the stats zone, with a
 * slot for each upstream server (warned about when they run out). NULL after
 * an error was reported. */
tg_stats_t *tg_stats_setup(tg_conf_t *cf);
/* Worker start (the stats module's init_worker): the one-second timer that
 * runs tg_stats_gauges_collect. 0, or -1 when out of memory. */
int tg_stats_worker_start(tg_worker_t *w);
/* Worker: the gauges that cost a walk (connections by state; each upstream
 * server's in-flight attempts and health) into this worker's block. A worker
 * that is shutting down publishes nothing: it would overwrite its
 * successor's gauges. */
void tg_stats_gauges_collect(void);

#endif
