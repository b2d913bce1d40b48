/* Gateway-wide counters for the stats endpoint, kept in one shared memory
 * zone ("__stats", tag "stats", fixed size) that the stats module declares in
 * every config, so it exists before the workers fork and a reload reuses it
 * (the layout only depends on the size, as src/shm.h asks).
 *
 * Layout: one master block, written only by the master (generation, reloads,
 * respawns, start time) plus the name of every per-upstream-server slot,
 * then TG_MAX_WORKERS worker blocks, one per worker slot. A worker adds to
 * its own block with relaxed atomic adds and takes no lock: during a reload
 * the old and the new worker of a slot share a block for a while, and atomic
 * adds keep both sets of counts exact. Readers sum the blocks; a sum read
 * while workers write is not a snapshot, each counter is exact on its own.
 *
 * Upstream servers get a slot at config load: upstreams in config order,
 * each one's servers in order, at most TG_STATS_MAX_PEERS; servers beyond
 * that are not counted. When a reload gives a slot another server, the
 * master zeroes that slot's counters. */
#ifndef TG_STATS_H
#define TG_STATS_H

#include <stdint.h>
#include "core.h"

#define TG_STATS_MAX_PEERS 256
#define TG_STATS_NBUCKETS 11 /* latency buckets: the bounds below and +Inf */
#define TG_STATS_NAME_MAX 96 /* "upstream\0server", truncated beyond */

/* Upper bounds (ms) of the latency buckets; the last bucket is +Inf. */
extern const unsigned tg_stats_bucket_ms[TG_STATS_NBUCKETS - 1];

typedef struct {
    uint64_t requests;  /* responses whose last attempt went to this server */
    uint64_t failures;  /* of those: no upstream status, or a 502+ made by the proxy */
    uint64_t latency_us; /* sum of upstream_time, microseconds */
    uint64_t buckets[TG_STATS_NBUCKETS]; /* per bucket, not cumulative */
} tg_stats_peer_t;

typedef struct {
    uint64_t requests;          /* every counted request */
    uint64_t status[5];         /* by class: [0] 1xx ... [4] 5xx */
    uint64_t bytes_in, bytes_out;
    int64_t conns_open;         /* gauge: the worker's open client connections */
    uint64_t upgrades;          /* gauge copied from tg_worker_t (a counter there) */
    int64_t tunnels_open;       /* gauge */
    uint64_t reserved[5];       /* pads the header to 128 bytes */
    tg_stats_peer_t peers[TG_STATS_MAX_PEERS];
} tg_stats_worker_t;

typedef struct {
    uint64_t magic;      /* TG_STATS_MAGIC once initialised */
    double start_time;   /* master start, Unix time */
    uint64_t generation; /* config generation running */
    uint64_t reloads;    /* successful reloads */
    uint64_t worker_restarts; /* workers respawned after an unexpected exit */
    uint64_t workers;    /* workers of the current generation */
    uint64_t npeers;     /* slots named below */
    char peer_names[TG_STATS_MAX_PEERS][TG_STATS_NAME_MAX]; /* "upstream\0server\0" */
} tg_stats_master_t;

typedef struct {
    tg_stats_master_t master;
    tg_stats_worker_t workers[TG_MAX_WORKERS];
} tg_stats_shm_t;

/* Master: after a successful (re)load of `c` running `nworkers` workers. */
void tg_stats_master_loaded(tg_config_t *c, int nworkers, int reloaded);
/* Master: a worker of the current generation was respawned. */
void tg_stats_master_respawned(tg_config_t *c);
/* The counters of config `c` (NULL when the zone is missing). */
tg_stats_shm_t *tg_stats_get(tg_config_t *c);

static inline void tg_stats_add(uint64_t *p, uint64_t v)
{
    __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline void tg_stats_set(int64_t *p, int64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline uint64_t tg_stats_read(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

#endif
