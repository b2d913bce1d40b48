/* @public Gateway-wide counters for the stats endpoint, kept in one shared memory
 * zone ("__stats", tag "stats", fixed size) declared in every config (by the
 * stats module, or earlier by a module that needs a slot), so it exists
 * before the workers fork and a reload reuses it (the layout only depends on
 * the size, as src/shm.h asks).
 *
 * Layout: one master block (generation, reloads, respawns, start time, and
 * the name of every named slot), then TG_MAX_WORKERS worker blocks, one per
 * worker slot. A worker adds to its own block with relaxed atomic adds and
 * takes no lock: during a reload the old and the new worker of a slot share
 * a block for a while, and atomic adds keep both sets of counts exact.
 * Readers sum the blocks; a sum read while workers write is not a snapshot,
 * each counter is exact on its own.
 *
 * Named slots: upstream servers, server blocks, locations and rate-limit
 * zones get a fixed slot at config load (tg_stats_slot), found again by name
 * on a reload, so a name that persists keeps its counts. A new name takes an
 * empty slot, else one no name of the new config claimed (its counters are
 * zeroed first); when none is left the name is not counted on its own.
 *
 * Gauges (connections by state, upstream servers' in-flight attempts and
 * health) live in the files that own them (worker.c, balance.c); each worker
 * copies its own into its block through tg_stats_request_end (the cheap
 * ones) and tg_stats_gauges_collect (the walks: every second and before it
 * answers a stats request). Readers sum the blocks with tg_stats_sum_*:
 * the stats module renders those sums and reads no other internals. */
#ifndef TG_STATS_H
#define TG_STATS_H

#include <stdint.h>
#include "core.h"
#include "tls_cache.h"

#define TG_STATS_MAX_PEERS 256
#define TG_STATS_MAX_SERVERS 64
#define TG_STATS_MAX_LOCATIONS 256
#define TG_STATS_MAX_ZONES 32
#define TG_STATS_NBUCKETS 11 /* latency buckets: the bounds below and +Inf */
#define TG_STATS_NAME_MAX 96 /* "first\0second\0", each part truncated to 47 bytes */
#define TG_STATS_NEVENTS 32  /* room for events added later without a new layout */

/* Upper bounds (ms) of the latency buckets; the last bucket is +Inf. */
extern const unsigned tg_stats_bucket_ms[TG_STATS_NBUCKETS - 1];

/* Gateway-wide event counters (tg_stats_count). */
typedef enum {
    TG_STATS_TLS_FULL = 0,     /* client TLS handshakes completed without resumption */
    TG_STATS_TLS_RESUMED,      /* ... with a resumed session (ticket or cache) */
    TG_STATS_TLS_FAILED,       /* TLS connections closed before the handshake completed */
    TG_STATS_RL_LIMITED,       /* requests refused by a rate_limit zone */
    TG_STATS_RL_DRY_RUN,       /* requests a dry_run zone would have refused */
    TG_STATS_COMPRESSED,       /* responses compressed */
    TG_STATS_COMPRESS_IN,      /* bytes given to the encoders */
    TG_STATS_COMPRESS_OUT,     /* bytes they produced */
    TG_STATS_LUA_ERRORS,       /* Lua hook runs that failed (500), limit stops included */
    TG_STATS_LUA_LIMIT,        /* of those: stopped by lua_instruction_limit */
    TG_STATS_SENDQ_BATCHES,    /* send batches submitted (one io_uring_enter each) */
    TG_STATS_SENDQ_WRITES,     /* writes they carried */
    TG_STATS_H1_CONNS,         /* client connections that spoke HTTP/1.x */
    TG_STATS_H2_CONNS,         /* client connections that spoke HTTP/2 */
    TG_STATS_H1_REQUESTS,      /* requests read over HTTP/1.x */
    TG_STATS_H2_REQUESTS,      /* requests (streams) served over HTTP/2 */
    TG_STATS_H2_GOAWAY,        /* HTTP/2 GOAWAY frames sent */
    TG_STATS_H2_RESETS,        /* HTTP/2 RST_STREAM frames received */
    TG_STATS_H2_FLOOD,         /* HTTP/2 connections closed for abuse (ENHANCE_YOUR_CALM) */
    TG_STATS_SENDQ_READS,      /* reads the send batches carried */
    TG_STATS_EVENT_COUNT
} tg_stats_event_t;

/* Client connections by state (gauges, tg_stats_worker_t.conns_state). */
typedef enum {
    TG_STATS_CONN_READING = 0, /* TLS handshake or reading a request head */
    TG_STATS_CONN_WRITING,     /* a request in progress, or draining before close */
    TG_STATS_CONN_IDLE,        /* keep-alive, waiting for the next request */
    TG_STATS_CONN_UPGRADED,    /* tunnels (WebSocket) */
    TG_STATS_CONN_STATES
} tg_stats_conn_state_t;

typedef enum {
    TG_STATS_PEER = 0, /* "upstream\0server" */
    TG_STATS_SERVER,   /* "server" */
    TG_STATS_LOCATION, /* "server\0location" */
    TG_STATS_ZONE,     /* rate-limit zone "name" */
    TG_STATS_KINDS
} tg_stats_kind_t;

/* Peer health as a worker sees it (tg_stats_peer_t.health; balance.c's
 * tg_peer_health_t values, checked in stats_collect.c). */
enum { TG_STATS_UP = 0, TG_STATS_DOWN_PASSIVE = 1, TG_STATS_DOWN_ACTIVE = 2 };

#define TG_STATS_GRPC_CODES 17 /* gRPC statuses 0 (OK) .. 16 (UNAUTHENTICATED) */

typedef struct {
    uint64_t requests;  /* responses whose last attempt went to this server */
    uint64_t failures;  /* of those: no upstream status, or a 502+ made by the proxy */
    uint64_t latency_us; /* sum of upstream_time, microseconds */
    uint64_t buckets[TG_STATS_NBUCKETS]; /* per bucket, not cumulative */
    uint64_t retries;   /* failed attempts on this server followed by another attempt */
    uint64_t grpc[TG_STATS_GRPC_CODES]; /* of those, gRPC calls by the grpc-status they ended with */
    int64_t active;     /* gauge: attempts in flight from this worker */
    int64_t health;     /* gauge: TG_STATS_UP or why this worker skips it */
    uint64_t reserved;
} tg_stats_peer_t;

/* Requests of one server block or location. */
typedef struct {
    uint64_t requests;
    uint64_t status[5]; /* by class: [0] 1xx ... [4] 5xx */
    uint64_t grpc[TG_STATS_GRPC_CODES]; /* gRPC calls by the grpc-status they ended with */
} tg_stats_class_t;

typedef struct {
    uint64_t limited, dry_run;
} tg_stats_zone_t;

typedef struct {
    uint64_t requests;          /* every counted request */
    uint64_t status[5];         /* by class: [0] 1xx ... [4] 5xx */
    uint64_t bytes_in, bytes_out;
    int64_t conns_open;         /* gauge: the worker's open client connections */
    uint64_t upgrades;          /* gauge copied from tg_worker_t (a counter there) */
    int64_t tunnels_open;       /* gauge */
    int64_t conns_state[TG_STATS_CONN_STATES]; /* gauges */
    int64_t h2_streams;         /* gauge: open HTTP/2 streams (requests in flight on them) */
    uint64_t events[TG_STATS_NEVENTS]; /* by tg_stats_event_t */
    uint64_t codes[500];               /* by status code: [0] is 100 ... [499] is 599 */
    tg_stats_class_t servers[TG_STATS_MAX_SERVERS];
    tg_stats_class_t locations[TG_STATS_MAX_LOCATIONS];
    tg_stats_zone_t zones[TG_STATS_MAX_ZONES];
    tg_stats_peer_t peers[TG_STATS_MAX_PEERS];
} tg_stats_worker_t;

/* The name of a slot and the generation of the last config that claimed it. */
typedef struct {
    char name[TG_STATS_NAME_MAX]; /* all zero: never used */
    uint64_t generation;
} tg_stats_name_t;

typedef struct {
    uint64_t magic;      /* TG_STATS_MAGIC once initialised */
    double start_time;   /* master start, Unix time */
    uint64_t generation; /* config generation running */
    uint64_t reloads;    /* successful reloads */
    uint64_t worker_restarts; /* workers respawned after an unexpected exit */
    uint64_t workers;    /* workers of the current generation */
    tg_stats_name_t peer_names[TG_STATS_MAX_PEERS];
    tg_stats_name_t server_names[TG_STATS_MAX_SERVERS];
    tg_stats_name_t location_names[TG_STATS_MAX_LOCATIONS];
    tg_stats_name_t zone_names[TG_STATS_MAX_ZONES];
} tg_stats_master_t;

typedef struct {
    tg_stats_master_t master;
    tg_stats_worker_t workers[TG_MAX_WORKERS];
} tg_stats_shm_t;

/* Per config (in its arena): the zone and the upstream servers' slots. */
typedef struct {
    tg_upstream_t *u;
    tg_str_t name;        /* u->name */
    tg_str_t *peer_names; /* by peer index, as written in the config */
    int npeers;
    int *slots; /* by peer index; -1: not counted */
} tg_stats_upstream_t;

struct tg_stats_s {
    tg_stats_shm_t *shm;
    tg_stats_upstream_t *ups; /* upstreams in config order (tg_stats_setup) */
    int nups;
    /* per worker (each process has its copy of the config) */
    struct ev_timer *timer; /* tg_stats_gauges_collect every second */
    uint64_t upgrades_seen; /* tg_worker->upgrades already added to the block */
};

/* Config time: the config's stats (declaring the zone on the first call).
 * NULL after reporting an error through cf. */
tg_stats_t *tg_stats_zone(tg_conf_t *cf);
/* Config time: the slot of name "a" (kinds with two parts: "a" then "b") for
 * counters of `kind`, or -1 when every slot is taken. */
int tg_stats_slot(tg_conf_t *cf, tg_stats_kind_t kind, tg_str_t a, tg_str_t b);
/* Config time: the name stored for slot i of `kind` (parts as above). */
void tg_stats_slot_name(tg_stats_shm_t *s, tg_stats_kind_t kind, int i, tg_str_t *a,
                        tg_str_t *b);

/* Master: after a successful (re)load of `c` running `nworkers` workers. */
void tg_stats_master_loaded(tg_config_t *c, int nworkers, int reloaded);
/* Master: a worker of the current generation was respawned. */
void tg_stats_master_respawned(tg_config_t *c);
/* The counters of config `c` (NULL when the zone is missing). */
tg_stats_shm_t *tg_stats_get(tg_config_t *c);

/* Worker: this worker's block, NULL outside a worker or without the zone. */
tg_stats_worker_t *tg_stats_mine(void);
/* Worker hooks, one call per event (no-ops outside a worker). */
void tg_stats_count(tg_stats_event_t ev, uint64_t n);
void tg_stats_zone_hit(int slot, int dry_run);
/* Slot of an upstream server in this config, -1 when not counted. */
int tg_stats_peer_slot(tg_stats_t *st, const tg_upstream_t *u, int peer_index);
/* The same for the server of u named addr (a request's upstream_addr). */
int tg_stats_peer_slot_addr(tg_stats_t *st, const tg_upstream_t *u, tg_str_t addr);

/* Worker, at every counted request's end: copy the cheap gauges (open
 * connections and tunnels, new upgrades) into this worker's block and
 * return it; NULL without the zone. */
tg_stats_worker_t *tg_stats_request_end(void);

/* Sums over the worker blocks (counters: every block; gauges: the current
 * generation's workers), plus the master's counters and the TLS session
 * cache's. What the stats module renders. */
typedef struct {
    double uptime; /* seconds since the master started */
    uint64_t generation, reloads, worker_restarts, workers;
    int64_t conns_open, tunnels_open, h2_streams, conns_state[TG_STATS_CONN_STATES];
    uint64_t requests, status[5], bytes_in, bytes_out, upgrades;
    uint64_t events[TG_STATS_EVENT_COUNT];
    uint64_t codes[500]; /* by status code - 100 */
    int has_tls_cache;   /* tls_session_cache on and a TLS listener */
    tg_tls_cache_stats_t tls_cache;
} tg_stats_totals_t;

/* One upstream server over all workers; `down` counts the current
 * generation's workers that skip it. */
typedef struct {
    tg_stats_peer_t p; /* health unused */
    int down, nworkers;
} tg_stats_peer_sum_t;

void tg_stats_sum_totals(tg_config_t *c, tg_stats_totals_t *t);
void tg_stats_sum_peer(tg_stats_shm_t *s, int slot, tg_stats_peer_sum_t *out);
/* kind: TG_STATS_SERVER or TG_STATS_LOCATION */
void tg_stats_sum_class(tg_stats_shm_t *s, tg_stats_kind_t kind, int slot, tg_stats_class_t *out);
void tg_stats_sum_zone(tg_stats_shm_t *s, int slot, tg_stats_zone_t *out);
/* A failed attempt on server `peer_index` of u is about to be retried. */
void tg_stats_peer_retry(const tg_upstream_t *u, int peer_index);

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
static inline int64_t tg_stats_read_gauge(const int64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

#endif
