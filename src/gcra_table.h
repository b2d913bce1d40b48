/* @public A table of GCRA states, one TAT per key, laid out in a block of shared
 * memory (a zone from src/shm.c) and used by every worker at once, so a
 * rate limit is exact whichever worker takes a request.
 *
 * Fixed size: a table of src/shm_table.c (header, power-of-two buckets,
 * 40-byte slots: the table's 16-byte link header, the key's hash and the
 * TAT); with the buckets that is 44 bytes per key at most
 * (TG_GCRA_TABLE_KEY_BYTES). Keys are not stored: an entry holds a
 * 128-bit keyed hash (SipHash-2-4, random key per table), so entries have a
 * fixed size and two different keys share a state only with a probability
 * of about n^2 / 2^129 for n keys, which is nothing; and a client cannot
 * pick keys that collide, not knowing the hash key.
 *
 * Memory stays bounded: a key whose TAT is in the past carries no state and
 * its entry is reclaimed (on the way through its bucket, or from the old end
 * of the recency list); when every entry holds a live key, the least
 * recently used one is evicted and counted (its key starts afresh next
 * time, i.e. with a full allowance).
 *
 * The table's process-shared mutex guards it; a lookup and update takes
 * about 100 ns under it. (A compare-and-swap on the TAT alone would not do:
 * adding and evicting keys change shared lists, and an uncontended lock
 * costs about as much as the CAS would.) If a worker dies holding it, the
 * next one clears the table (it may be half updated) and counts a reset. */
#ifndef TG_GCRA_TABLE_H
#define TG_GCRA_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include "str.h"
#include "gcra.h"

#define TG_GCRA_TABLE_KEY_BYTES 44 /* upper bound of memory per key */

/* tg_gcra_table_take() events */
#define TG_GCRA_TABLE_F_EVICTED 0x01 /* a live key was evicted to make room */
#define TG_GCRA_TABLE_F_RESET 0x02   /* a dead worker's lock was recovered: table cleared */

typedef struct tg_gcra_table_s tg_gcra_table_t;

typedef struct {
    uint32_t capacity;  /* entries */
    uint32_t used;      /* entries holding a key */
    uint64_t evictions; /* live keys dropped because the table was full */
    uint64_t reclaimed; /* expired keys whose entry was taken back */
    uint64_t resets;    /* times the table was cleared after a crash */
} tg_gcra_table_stats_t;

/* Lay out a table in `mem` (`size` bytes, zeroed or holding a table laid out
 * by this function with the same size earlier: then it is taken as it is).
 * Call it once, in the master, before the workers fork. NULL when `size` is
 * too small for one entry or the lock cannot be set up. */
tg_gcra_table_t *tg_gcra_table_init(void *mem, size_t size);

/* One request for `key` at `now` (CLOCK_MONOTONIC ns, the same clock in
 * every process): find or add the key's entry, apply the GCRA and fill *res.
 * *events gets TG_GCRA_TABLE_F_* bits. Returns 0, or -1 when the lock failed
 * (res is then undefined). */
int tg_gcra_table_take(tg_gcra_table_t *t, const tg_gcra_t *g, tg_str_t key, int64_t now,
                       tg_gcra_result_t *res, unsigned *events);

/* Give back one request of `key` taken earlier (tg_gcra_refund): its TAT
 * moves one interval back, and an entry whose allowance is full again is
 * taken back. A key no longer in the table (reclaimed or evicted since) has
 * a full allowance already: nothing to do. Returns 0, or -1 when the lock
 * failed. */
int tg_gcra_table_refund(tg_gcra_table_t *t, const tg_gcra_t *g, tg_str_t key, int64_t now);

/* A consistent snapshot (taken under the lock). */
void tg_gcra_table_stats(tg_gcra_table_t *t, tg_gcra_table_stats_t *st);

#endif
