/* Stats zone: the master's side (see stats.h). The module that declares the
 * zone and counts requests is modules/stats.c. */
#include <string.h>
#include "stats.h"
#include "shm.h"

const unsigned tg_stats_bucket_ms[TG_STATS_NBUCKETS - 1] = {5,   10,  25,   50,   100,
                                                            250, 500, 1000, 2500, 5000};

tg_stats_shm_t *tg_stats_get(tg_config_t *c)
{
    tg_shm_zone_t *z = c ? tg_shm_zone_find(c, TG_STR("__stats")) : NULL;
    return z ? z->data : NULL;
}

void tg_stats_master_loaded(tg_config_t *c, int nworkers, int reloaded)
{
    tg_stats_shm_t *s = tg_stats_get(c);
    if (s == NULL)
        return;
    s->master.generation = (uint64_t)c->generation;
    s->master.workers = (uint64_t)nworkers;
    if (reloaded)
        tg_stats_add(&s->master.reloads, 1);
}

void tg_stats_master_respawned(tg_config_t *c)
{
    tg_stats_shm_t *s = tg_stats_get(c);
    if (s)
        tg_stats_add(&s->master.worker_restarts, 1);
}
