/* @public Dynamic upstream servers: `server NAME:PORT resolve;` (A/AAAA) and
 * `server _service._tcp.NAME service resolve;` (SRV), re-resolved at run time
 * (src/upstream_dyn.c).
 *
 * One worker (slot 0) resolves, on its loop through src/resolver.c, and
 * writes each server's current address set into a shared-memory record
 * under a sequence lock. Every worker compares the record's sequence with
 * the one it applied before each pick (one load per `resolve` server) and
 * once a second, and maps a new set onto the server's reserved peer slots:
 * an address that stays keeps its slot (health, pool, counters), a new one
 * takes a free slot, a removed one drains. */
#ifndef TG_UPSTREAM_DYN_H
#define TG_UPSTREAM_DYN_H

#include <stdint.h>
#include <sys/socket.h>
#include <ev.h>
#include "upstream.h"
#include "resolver.h"
#include "shm.h"

#define TG_DYN_MAX_ADDRS 64 /* addresses a record holds (an upstream has 64 slots in all) */

/* One address of a set, as the resolving worker wrote it. */
typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint16_t weight;
    uint8_t backup; /* SRV: a higher priority number than the lowest in the answer */
    char host[64];  /* SRV: the target it came from */
} tg_dyn_addr_t;

/* A server's shared record. seq is odd while the writer is in it. */
typedef struct {
    uint64_t key; /* hash of upstream name and server spec: 0 = free */
    uint32_t seq;
    uint32_t naddrs;
    int64_t resolved_at; /* wall clock ms of the last good answer, 0: never */
    int64_t failed_at;   /* wall clock ms of the last failure, 0: never */
    uint64_t lookups;    /* resolutions started (each A/AAAA or SRV query set) */
    uint64_t failures;   /* failed or empty answers: the last good set was kept */
    char error[64];      /* the last failure */
    tg_dyn_addr_t addrs[TG_DYN_MAX_ADDRS];
} tg_dyn_record_t;

/* A `resolve` server of an upstream block (config arena; the runtime
 * fields are per worker). */
typedef struct tg_dyn_server_s {
    tg_str_t spec;  /* as written: "app.internal:3000" or "_http._tcp.app.internal" */
    char *host;     /* the name queried, NUL-terminated */
    uint16_t port;  /* A/AAAA: the port; SRV: 0 (from the records) */
    unsigned srv : 1;
    unsigned backup : 1;
    int weight, max_fails, max; /* max: slots reserved, addresses kept */
    tg_msec_t fail_timeout;
    int first;       /* its first slot in the upstream's peers[] */
    uint64_t key;
    tg_dyn_record_t *rec; /* its record in the zone */
    uint32_t seen;        /* per worker: rec->seq last applied */
    /* resolving worker only */
    tg_upstream_t *u;
    ev_timer timer;
    int pending;          /* SRV: target lookups outstanding */
    uint32_t generation;  /* SRV: answers of an older round are dropped */
    uint32_t ttl;         /* SRV: the smallest TTL of this round */
    int nfound;
    tg_dyn_addr_t *found; /* SRV: the round's addresses (TG_DYN_MAX_ADDRS) */
    struct tg_dyn_server_s *next;
} tg_dyn_server_t;

struct tg_upstream_dyn_s {
    tg_dyn_server_t *servers;
    tg_resolver_conf_t resolver; /* `resolver` in the upstream block (file NULL: none) */
    const tg_resolver_conf_t *rc; /* the one in effect: the block's or the main one */
    tg_resolver_t *res;           /* resolving worker: its channel */
    unsigned retry : 1;           /* a set could not be applied whole: try again next tick */
};

/* The runtime API's changes to one server (by its index in peers[]), in
 * shared memory so every worker applies them. Zero: no change. */
typedef struct {
    int32_t weight;  /* 1..1000 replaces the configured or resolved weight; 0: none */
    uint8_t drain;   /* no new requests; in-flight ones and tunnels finish */
    uint8_t down;    /* the same, shown as down (taken out of service) */
    uint8_t removed; /* DELETE: drained, and no longer listed */
    uint8_t added;   /* POST: a server of the API in a slot past nconf, at addr */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[56];   /* "10.0.0.7:3000" */
} tg_peer_override_t;

/* One row of TG_UPSTREAM_MAX_PEERS overrides per upstream of the config.
 * Writers take the lock (changes are serialised) and bump seq after the
 * row is written; readers compare seq before each pick. */
typedef struct tg_upstream_overrides_s {
    tg_shm_mutex_t lock;
    uint32_t seq;
    uint32_t nups;
    int64_t changed_at; /* wall clock ms of the last change, 0: none */
    int dropped;        /* config load: this reload cleared changes (the admin module reports) */
    tg_peer_override_t rows[][TG_UPSTREAM_MAX_PEERS];
} tg_upstream_overrides_t;

/* Change server `id` of u: `o` replaces its override whole. Every worker
 * applies it before its next pick; this one at once. 0, or -1 (no such
 * server, or the lock failed: logged). */
int tg_upstream_override_set(tg_upstream_t *u, int id, const tg_peer_override_t *o);
/* A server added at run time (POST): it takes the first free slot past the
 * config's servers, in every worker. Returns its id, -1 when every slot is
 * taken (or the upstream takes none: implicit, balance hash), -2 when a
 * server of that address exists. */
int tg_upstream_override_add(tg_upstream_t *u, const struct sockaddr_storage *ss, socklen_t len,
                             const char *name, int weight);
/* Slots u may hold: 64 for an upstream block, its one server for an
 * implicit HOST:PORT upstream. */
static inline int tg_upstream_capacity(const tg_upstream_t *u)
{
    return u->implicit ? u->nconf : TG_UPSTREAM_MAX_PEERS;
}
/* The current override of server `id` of u (all zero when none). */
tg_peer_override_t tg_upstream_override_get(const tg_upstream_t *u, int id);

/* Apply the sets and overrides that changed since this worker last looked. */
void tg_upstream_dyn_apply(tg_upstream_t *u);
static inline void tg_upstream_dyn_sync(tg_upstream_t *u)
{
    if (u->ovr && __atomic_load_n(&u->ovr->seq, __ATOMIC_RELAXED) != u->ovr_seen) {
        tg_upstream_dyn_apply(u);
        return;
    }
    if (u->dyn == NULL)
        return;
    if (u->dyn->retry) {
        tg_upstream_dyn_apply(u);
        return;
    }
    for (tg_dyn_server_t *d = u->dyn->servers; d; d = d->next)
        if (d->rec && __atomic_load_n(&d->rec->seq, __ATOMIC_RELAXED) != d->seen) {
            tg_upstream_dyn_apply(u);
            return;
        }
}

typedef struct tg_module_s tg_module_t;
extern tg_module_t tg_upstream_dyn_module;

/* Stats: the `"resolve"` member of the stats JSON (with its leading
 * ",\n  "), or "" when no upstream resolves names: each upstream with
 * `server ... resolve`, its current addresses and each name's last
 * resolution (per-server counters cover only static servers, whose names are
 * fixed). In the arena; NULL when out of memory. */
char *tg_upstream_dyn_stats_render(tg_arena_t *a, tg_config_t *c);

#endif
