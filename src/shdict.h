/* @public Shared dictionaries: a key/value store in one shared memory zone (src/shm.c)
 * that every worker reads and writes under one process-shared lock, so
 * `incr` is exact across workers. Backs `lua_shared_dict NAME SIZE` and the
 * Lua `tg.shared.NAME` API.
 *
 * Memory is bounded by the zone: entries are chains of fixed 128-byte chunks
 * (a head chunk holding the key and the start of the value, then
 * continuation chunks), taken from a free list or from never-used space.
 * When a new value does not fit, entries are evicted least recently used
 * first. Expired entries are removed when they are looked up and, a few per
 * write, from the LRU tail. A zone that is all zero is initialised on first
 * use; a zone kept across a reload keeps its entries. If a worker dies
 * holding the lock, the next user wipes the dictionary (it may be
 * half-written) and goes on. */
#ifndef TG_SHDICT_H
#define TG_SHDICT_H

#include <stddef.h>
#include "str.h"
#include "arena.h"

typedef struct tg_shdict_s tg_shdict_t;

typedef enum {
    TG_SHDICT_NONE = 0,
    TG_SHDICT_STR,
    TG_SHDICT_NUM,
    TG_SHDICT_BOOL,
} tg_shdict_type_t;

typedef struct {
    tg_shdict_type_t type;
    double num;   /* NUM; BOOL as 0/1 */
    tg_str_t str; /* STR: in the arena given to get, or the caller's for set */
} tg_shdict_value_t;

/* Make (or adopt, when it holds a dictionary already) the dictionary living
 * in zone memory `data` of `size` bytes. Call in the master before forking.
 * NULL when the zone is too small. */
tg_shdict_t *tg_shdict_init(void *data, size_t size);
/* The value of `key` copied into `a`: 1 found, 0 missing or expired, -1 out
 * of memory in the arena. `now` is wall-clock seconds (ev_time()). */
int tg_shdict_get(tg_shdict_t *d, tg_str_t key, double now, tg_arena_t *a,
                  tg_shdict_value_t *out);
/* Store; ttl <= 0 means no expiry. 0, or -1 when the entry is larger than
 * the whole dictionary. Evicts least recently used entries to make room. */
int tg_shdict_set(tg_shdict_t *d, tg_str_t key, const tg_shdict_value_t *v, double ttl,
                  double now);
/* Add `by` to a number. A missing key starts at `init` when has_init (with
 * `ttl` for the new entry), else returns 1. 0 with *out set; -2 when the value
 * is not a number; -1 no memory. */
int tg_shdict_incr(tg_shdict_t *d, tg_str_t key, double by, int has_init, double init,
                   double ttl, double now, double *out);
/* Remove; 1 when it was there. */
int tg_shdict_delete(tg_shdict_t *d, tg_str_t key, double now);
/* Entries (expired ones included until reclaimed) and free chunks. */
void tg_shdict_stats(tg_shdict_t *d, size_t *entries, size_t *free_bytes);

#endif
