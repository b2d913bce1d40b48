/* The shared TLS session cache: serialised sessions (i2d_SSL_SESSION bytes)
 * keyed by session ID, in a block of shared memory (a zone from src/shm.c)
 * that every worker uses, so a TLS 1.2 client resuming by session ID is
 * resumed by whichever worker accepts it. The table knows nothing about
 * OpenSSL: tls_conf.c's session callbacks put and get opaque bytes.
 *
 * Layout: a table of src/shm_table.c keyed by session ID, of 256-byte
 * slots: a session takes one slot, and raw slots chained to it when it is
 * longer than fits there (chains of fixed slots: memory is bounded by the
 * zone size whatever the sessions' sizes, and nothing fragments). When the
 * table is full, the oldest stored sessions are dropped (oldest-first
 * eviction, counted unless they had expired anyway). A session also goes
 * when OpenSSL says it is bad (removed) or a lookup finds it expired.
 *
 * The table's process-shared robust mutex guards it. If a worker dies
 * holding it, the next locker empties the table (it may be half written),
 * counts a reset, and goes on: a lost cache only costs full handshakes. */
#ifndef TG_TLS_CACHE_H
#define TG_TLS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define TG_TLS_CACHE_MAX_ID 32        /* SSL_MAX_SSL_SESSION_ID_LENGTH */
#define TG_TLS_CACHE_MAX_DATA 8192    /* bigger sessions are not cached (counted) */
#define TG_TLS_CACHE_MIN_SIZE 32768   /* smallest block tg_tls_cache_init accepts */
/* The shm zone that holds the cache (declared by src/tls.c when it is on;
 * the stats read its counters from it). */
#define TG_TLS_CACHE_ZONE "tollgate:tls_session_cache"

typedef struct tg_tls_cache_s tg_tls_cache_t;

/* The counters kept in the table header (since the zone was created; they
 * survive reloads with the zone). */
typedef struct {
    uint64_t hits;      /* lookups that found a live session */
    uint64_t misses;    /* lookups that found nothing, or an expired session */
    uint64_t stores;    /* sessions put */
    uint64_t evictions; /* live sessions dropped to make room (the cache is too small) */
    uint64_t expired;   /* sessions dropped after their timeout */
    uint64_t removed;   /* sessions removed on OpenSSL's request */
    uint64_t too_big;   /* sessions not stored: more than TG_TLS_CACHE_MAX_DATA bytes */
    uint64_t resets;    /* times the table was emptied after a worker died holding the lock */
    uint32_t used;      /* sessions in the table now (expired ones not yet reclaimed included) */
    uint32_t buckets;
    uint64_t data_size; /* bytes of session storage (all slots) */
} tg_tls_cache_stats_t;

/* Lay out a cache in `mem` (`size` bytes, zeroed, or holding a cache laid
 * out by this function for the same size earlier: then it is kept as it is,
 * sessions and counters included). Call it in the master before the workers
 * fork. NULL when `size` is below TG_TLS_CACHE_MIN_SIZE or the lock cannot
 * be set up. */
tg_tls_cache_t *tg_tls_cache_init(void *mem, size_t size);

/* Store `len` bytes under the session ID `id` (1..TG_TLS_CACHE_MAX_ID bytes),
 * replacing a session with the same ID. `expires` and `now` are Unix times
 * in seconds. 0 stored, 1 not stored (too big: only counted, `data` may
 * then be NULL; or a bad ID length), -1 the lock failed. */
int tg_tls_cache_put(tg_tls_cache_t *c, const unsigned char *id, size_t idlen,
                     const unsigned char *data, size_t len, int64_t expires, int64_t now);

/* Copy the session stored under `id` into `buf` (TG_TLS_CACHE_MAX_DATA
 * bytes is always enough). Returns its length, 0 when there is none or it
 * has expired at `now` (an expired one is dropped), -1 when the lock failed. */
long tg_tls_cache_get(tg_tls_cache_t *c, const unsigned char *id, size_t idlen, int64_t now,
                      unsigned char *buf, size_t size);

/* Drop the session stored under `id`, if any. */
void tg_tls_cache_remove(tg_tls_cache_t *c, const unsigned char *id, size_t idlen);

/* A consistent snapshot of the counters (taken under the lock). */
void tg_tls_cache_stats(tg_tls_cache_t *c, tg_tls_cache_stats_t *st);

#endif
