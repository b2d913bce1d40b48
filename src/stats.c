/* Stats zone: declaring it, naming its slots, the master's counters, the
 * workers' one-line hooks, the gauges each worker publishes (collected from
 * worker.c and balance.c, which own them) and the sums readers render (see
 * stats.h). The module that counts requests and renders the totals is
 * modules/stats.c. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "stats.h"
#include "shm.h"
#include "worker.h"

#define TG_STATS_MAGIC 0x74677374617474ULL /* changes with the layout */
#define PART_MAX 47 /* bytes of each name part kept */

const unsigned tg_stats_bucket_ms[TG_STATS_NBUCKETS - 1] = {5,   10,  25,   50,   100,
                                                            250, 500, 1000, 2500, 5000};

tg_stats_shm_t *tg_stats_get(tg_config_t *c)
{
    tg_shm_zone_t *z = c ? tg_shm_zone_find(c, TG_STR("__stats")) : NULL;
    return z ? z->data : NULL;
}

tg_stats_t *tg_stats_zone(tg_conf_t *cf)
{
    tg_config_t *c = cf->config;
    if (c->stats)
        return c->stats;
    tg_shm_zone_t *z;
    const char *err = tg_shm_zone_add(cf, TG_STR("__stats"), sizeof(tg_stats_shm_t), "stats", &z);
    if (err) {
        tg_conf_error(cf, "stats: %s", err);
        return NULL;
    }
    tg_stats_t *st = tg_arena_alloc(cf->arena, sizeof(*st));
    if (st == NULL) {
        tg_conf_error(cf, "out of memory");
        return NULL;
    }
    st->shm = z->data;
    if (!z->reused) { /* a new zone is zeroed; touching it all would cost its RAM */
        st->shm->master.magic = TG_STATS_MAGIC;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        st->shm->master.start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    c->stats = st;
    return st;
}

static tg_stats_name_t *names_of(tg_stats_shm_t *s, tg_stats_kind_t kind, int *n)
{
    switch (kind) {
    case TG_STATS_PEER: *n = TG_STATS_MAX_PEERS; return s->master.peer_names;
    case TG_STATS_SERVER: *n = TG_STATS_MAX_SERVERS; return s->master.server_names;
    case TG_STATS_LOCATION: *n = TG_STATS_MAX_LOCATIONS; return s->master.location_names;
    default: *n = TG_STATS_MAX_ZONES; return s->master.zone_names;
    }
}

/* Zero slot i of `kind` in every worker block: it gets a new name. */
static void slot_reset(tg_stats_shm_t *s, tg_stats_kind_t kind, int i)
{
    for (int w = 0; w < TG_MAX_WORKERS; w++) {
        tg_stats_worker_t *b = &s->workers[w];
        switch (kind) {
        case TG_STATS_PEER: memset(&b->peers[i], 0, sizeof(b->peers[i])); break;
        case TG_STATS_SERVER: memset(&b->servers[i], 0, sizeof(b->servers[i])); break;
        case TG_STATS_LOCATION: memset(&b->locations[i], 0, sizeof(b->locations[i])); break;
        default: memset(&b->zones[i], 0, sizeof(b->zones[i])); break;
        }
    }
}

int tg_stats_slot(tg_conf_t *cf, tg_stats_kind_t kind, tg_str_t a, tg_str_t b)
{
    tg_stats_t *st = tg_stats_zone(cf);
    if (st == NULL)
        return -1;
    char key[TG_STATS_NAME_MAX] = {0};
    size_t al = a.len < PART_MAX ? a.len : PART_MAX, bl = b.len < PART_MAX ? b.len : PART_MAX;
    if (al) /* no NULL pointer to memcpy, even for 0 bytes */
        memcpy(key, a.p, al);
    if (bl)
        memcpy(key + al + 1, b.p, bl);
    if (al == 0)
        key[0] = '_'; /* an empty first part would read as a never used slot */
    uint64_t gen = (uint64_t)cf->config->generation;
    int n, pick = -1;
    tg_stats_name_t *names = names_of(st->shm, kind, &n);
    for (int i = 0; i < n; i++)
        if (memcmp(names[i].name, key, sizeof(key)) == 0) {
            names[i].generation = gen;
            return i;
        }
    /* an empty slot, else the one claimed longest ago by no name of this load */
    for (int i = 0; i < n; i++) {
        if (names[i].name[0] == '\0') {
            pick = i;
            break;
        }
        if (names[i].generation != gen && (pick < 0 || names[i].generation < names[pick].generation))
            pick = i;
    }
    if (pick < 0)
        return -1;
    if (names[pick].name[0] != '\0')
        slot_reset(st->shm, kind, pick);
    memcpy(names[pick].name, key, sizeof(key));
    names[pick].generation = gen;
    return pick;
}

void tg_stats_slot_name(tg_stats_shm_t *s, tg_stats_kind_t kind, int i, tg_str_t *a, tg_str_t *b)
{
    int n;
    const char *p = names_of(s, kind, &n)[i].name;
    size_t al = strnlen(p, PART_MAX);
    *a = (tg_str_t){p, al};
    if (b)
        *b = (tg_str_t){p + al + 1, strnlen(p + al + 1, PART_MAX)};
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

tg_stats_worker_t *tg_stats_mine(void)
{
    if (tg_worker == NULL || tg_worker->config->stats == NULL)
        return NULL;
    return &tg_worker->config->stats->shm->workers[tg_worker->slot];
}

void tg_stats_count(tg_stats_event_t ev, uint64_t n)
{
    tg_stats_worker_t *b = tg_stats_mine();
    if (b)
        tg_stats_add(&b->events[ev], n);
}

void tg_stats_zone_hit(int slot, int dry_run)
{
    tg_stats_worker_t *b = tg_stats_mine();
    if (b == NULL)
        return;
    tg_stats_add(&b->events[dry_run ? TG_STATS_RL_DRY_RUN : TG_STATS_RL_LIMITED], 1);
    if (slot >= 0)
        tg_stats_add(dry_run ? &b->zones[slot].dry_run : &b->zones[slot].limited, 1);
}

int tg_stats_peer_slot(tg_stats_t *st, const tg_upstream_t *u, int peer_index)
{
    for (int i = 0; st && i < st->nups; i++)
        if (st->ups[i].u == u)
            return peer_index >= 0 && peer_index < st->ups[i].npeers ? st->ups[i].slots[peer_index] : -1;
    return -1;
}

void tg_stats_peer_retry(const tg_upstream_t *u, int peer_index)
{
    tg_stats_worker_t *b = tg_stats_mine();
    int slot = b ? tg_stats_peer_slot(tg_worker->config->stats, u, peer_index) : -1;
    if (slot >= 0)
        tg_stats_add(&b->peers[slot].retries, 1);
}

int tg_stats_peer_slot_addr(tg_stats_t *st, const tg_upstream_t *u, tg_str_t addr)
{
    for (int i = 0; st && i < st->nups; i++) {
        tg_stats_upstream_t *su = &st->ups[i];
        if (su->u != u)
            continue;
        int k = 0; /* upstream_addr usually points at the server's own name */
        while (k < su->npeers && su->peer_names[k].p != addr.p && !tg_str_eq(su->peer_names[k], addr))
            k++;
        return k < su->npeers ? su->slots[k] : -1;
    }
    return -1;
}

tg_stats_worker_t *tg_stats_request_end(void)
{
    tg_worker_t *w = tg_worker;
    tg_stats_t *st = w->config->stats;
    if (st == NULL)
        return NULL;
    tg_stats_worker_t *b = &st->shm->workers[w->slot];
    if (w->shutting_down)
        return b; /* a replaced worker must not overwrite its successor's gauges */
    tg_stats_set(&b->conns_open, w->nconns);
    tg_stats_set(&b->tunnels_open, w->tunnels_open);
    if (w->upgrades != st->upgrades_seen) {
        tg_stats_add(&b->upgrades, w->upgrades - st->upgrades_seen);
        st->upgrades_seen = w->upgrades;
    }
    return b;
}

/* ---- sums, for the readers ---- */

void tg_stats_sum_totals(tg_config_t *c, tg_stats_totals_t *t)
{
    memset(t, 0, sizeof(*t));
    tg_stats_shm_t *s = c->stats ? c->stats->shm : NULL;
    if (s == NULL)
        return;
    uint64_t nw = s->master.workers;
    t->generation = s->master.generation;
    t->reloads = tg_stats_read(&s->master.reloads);
    t->worker_restarts = tg_stats_read(&s->master.worker_restarts);
    t->workers = nw;
    for (int w = 0; w < TG_MAX_WORKERS; w++) {
        tg_stats_worker_t *b = &s->workers[w];
        t->requests += tg_stats_read(&b->requests);
        for (int k = 0; k < 5; k++)
            t->status[k] += tg_stats_read(&b->status[k]);
        t->bytes_in += tg_stats_read(&b->bytes_in);
        t->bytes_out += tg_stats_read(&b->bytes_out);
        t->upgrades += tg_stats_read(&b->upgrades);
        for (int k = 0; k < TG_STATS_EVENT_COUNT; k++)
            t->events[k] += tg_stats_read(&b->events[k]);
        for (int k = 0; k < 500; k++)
            t->codes[k] += tg_stats_read(&b->codes[k]);
        if ((uint64_t)w < nw) {
            t->conns_open += tg_stats_read_gauge(&b->conns_open);
            t->tunnels_open += tg_stats_read_gauge(&b->tunnels_open);
            t->h2_streams += tg_stats_read_gauge(&b->h2_streams);
            for (int k = 0; k < TG_STATS_CONN_STATES; k++)
                t->conns_state[k] += tg_stats_read_gauge(&b->conns_state[k]);
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->uptime = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - s->master.start_time;
    if (t->uptime < 0)
        t->uptime = 0;
    /* the cache is the zone's memory (tg_tls_cache_init lays it out in place) */
    tg_shm_zone_t *z = tg_shm_zone_find(c, TG_STR(TG_TLS_CACHE_ZONE));
    if (z) {
        tg_tls_cache_stats(z->data, &t->tls_cache);
        t->has_tls_cache = 1;
    }
}

void tg_stats_sum_peer(tg_stats_shm_t *s, int slot, tg_stats_peer_sum_t *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t nw = s->master.workers;
    out->nworkers = (int)nw;
    for (int w = 0; w < TG_MAX_WORKERS; w++) {
        tg_stats_peer_t *p = &s->workers[w].peers[slot];
        out->p.requests += tg_stats_read(&p->requests);
        out->p.failures += tg_stats_read(&p->failures);
        out->p.latency_us += tg_stats_read(&p->latency_us);
        out->p.retries += tg_stats_read(&p->retries);
        for (int k = 0; k < TG_STATS_GRPC_CODES; k++)
            out->p.grpc[k] += tg_stats_read(&p->grpc[k]);
        for (int k = 0; k < TG_STATS_NBUCKETS; k++)
            out->p.buckets[k] += tg_stats_read(&p->buckets[k]);
        if ((uint64_t)w < nw) {
            out->p.active += tg_stats_read_gauge(&p->active);
            out->down += tg_stats_read_gauge(&p->health) != TG_STATS_UP;
        }
    }
}

void tg_stats_sum_class(tg_stats_shm_t *s, tg_stats_kind_t kind, int slot, tg_stats_class_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int w = 0; slot >= 0 && w < TG_MAX_WORKERS; w++) {
        tg_stats_class_t *c = kind == TG_STATS_LOCATION ? &s->workers[w].locations[slot]
                                                        : &s->workers[w].servers[slot];
        out->requests += tg_stats_read(&c->requests);
        for (int k = 0; k < 5; k++)
            out->status[k] += tg_stats_read(&c->status[k]);
        for (int k = 0; k < TG_STATS_GRPC_CODES; k++)
            out->grpc[k] += tg_stats_read(&c->grpc[k]);
    }
}

void tg_stats_sum_zone(tg_stats_shm_t *s, int slot, tg_stats_zone_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int w = 0; w < TG_MAX_WORKERS; w++) {
        out->limited += tg_stats_read(&s->workers[w].zones[slot].limited);
        out->dry_run += tg_stats_read(&s->workers[w].zones[slot].dry_run);
    }
}
