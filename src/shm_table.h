/* @public One hash table in shared memory, the base of every shared table: the
 * rate-limit keys (gcra_table.c), limit_conn counts (limit_conn.c), Lua
 * shared dicts (shdict.c) and the TLS session cache (tls_cache.c).
 *
 * A table lives in a block of a zone (src/shm.c): a header, a power-of-two
 * array of bucket heads, then fixed-size slots. A slot is either an entry
 * (indexed: on its bucket's chain and on the recency list), a raw slot an
 * owner took to continue an entry's data (tg_shm_table_chain_*), or free.
 * An entry's data starts with `key_size` key bytes, compared by
 * tg_shm_table_find, then the owner's value; a table with `key_size` 0 has
 * its owner compare keys (ops->eq).
 *
 * References are slot index + 1 so that zero, the state of fresh anonymous
 * memory, means "none": a new table writes only its header and buckets, and
 * a slot costs RAM only once it is handed out (`hw`, the high-water mark).
 *
 * Every operation but the lock itself runs under the table's lock, which
 * the caller takes: one process-shared robust mutex. When a worker died
 * holding it, tg_shm_table_lock empties the table (it may be half written),
 * counts a reset and returns 1, so the owner can fix what it keeps beside
 * the table.
 *
 * Eviction is the owner's: the table never drops an entry by itself. The
 * recency list gives the candidates (tg_shm_table_oldest, _newer); an owner
 * that never calls tg_shm_table_touch gets insertion order (oldest stored
 * first), one that does gets least recently used first.
 *
 * An owner keeps its own fields in a struct whose first member is the
 * tg_shm_table_t, passing its size as `header` to tg_shm_table_init. */
#ifndef TG_SHM_TABLE_H
#define TG_SHM_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include "shm.h"

typedef struct {
    /* the owner's tag: a block is taken as it is when magic, size and shape match */
    uint64_t magic;
    uint64_t size; /* the block size it was laid out for */
    tg_shm_mutex_t lock;
    uint64_t seed[2]; /* a secret key for the owner's keyed hash (tg_siphash128) */
    uint64_t buckets_off, slots_off;
    uint32_t mask;       /* buckets - 1 */
    uint32_t capacity;   /* slots */
    uint32_t slot_size;  /* bytes of a slot: a 16-byte link header, then the entry data */
    uint32_t key_size;   /* key bytes at the start of an entry's data; 0: compared by the owner */
    uint32_t hw;         /* slots [0, hw) have been handed out at least once */
    uint32_t free_head;  /* free slots, linked through their header */
    uint32_t nfree;      /* slots on the free list */
    uint32_t head, tail; /* recency list: head is the newest */
    uint32_t used;       /* entries */
    uint64_t resets;     /* times the table was emptied after a worker died holding the lock */
} tg_shm_table_t;

/* The link header at the start of an entry's slot. */
typedef struct {
    uint32_t hash;       /* low 32 bits of the key's hash: bucket, and filter before a compare */
    uint32_t chain;      /* the next entry of the bucket, or the next free slot */
    uint32_t prev, next; /* recency list: prev is newer */
} tg_shm_slot_t;

#define TG_SHM_SLOT_HEADER 16 /* bytes of a slot before its entry data: sizeof(tg_shm_slot_t) */

/* Where the parts of a table go in a block of `size` bytes: its header
 * (`header` bytes, rounded up to 64), a power-of-two array of uint32_t bucket
 * heads (about one per slot, at most 2^31), then as many slots of `slot`
 * bytes as fit (at most UINT32_MAX - 1). */
typedef struct {
    size_t buckets_off, slots_off;
    uint32_t nbuckets, capacity;
} tg_shm_layout_t;
/* 0, or -1 when not even one slot fits. */
int tg_shm_table_layout(size_t size, size_t header, size_t slot, tg_shm_layout_t *l);

/* A secret seed for the hash of a shared table laid out in `mem`: from
 * getrandom, or (no entropy source) from the clock and the address: still a
 * good hash, only not secret. */
void tg_shm_hash_seed(uint64_t seed[2], const void *mem);

/* Lay out a table in `mem` (`size` bytes, zeroed, or holding a table this
 * function laid out earlier). `header`: the owner's struct (at least
 * sizeof(tg_shm_table_t)); `data`: bytes of entry data per slot (rounded up
 * to 8); `key_size` <= data. Returns 1 when the block already holds a table
 * with the same magic, size and shape (kept from the previous config
 * generation: owner fields included), 0 when it was laid out anew (the
 * owner's fields after the tg_shm_table_t are zero, the seed is fresh), -1
 * when the block is too small for one slot or the lock cannot be set up.
 * Call it in the master, before the workers fork. */
int tg_shm_table_init(void *mem, size_t size, size_t header, size_t data, size_t key_size,
                      uint64_t magic);

/* 0 locked; 1 locked, and the table was emptied because its last holder
 * died; -1 failed (logged). Inline: it runs for every rate-limited request. */
void tg_shm_table_recovered(tg_shm_table_t *t);
static inline int tg_shm_table_lock(tg_shm_table_t *t)
{
    int rc = tg_shm_mutex_lock(&t->lock);
    if (rc == 1) tg_shm_table_recovered(t);
    return rc;
}
static inline void tg_shm_table_unlock(tg_shm_table_t *t)
{
    tg_shm_mutex_unlock(&t->lock);
}
/* Drop every entry and raw slot (the counters in the owner's part stay). */
void tg_shm_table_clear(tg_shm_table_t *t);

static inline char *tg_shm_table_slot(tg_shm_table_t *t, uint32_t ref)
{
    return (char *)t + t->slots_off + (size_t)(ref - 1) * t->slot_size;
}
/* The data of entry `ref`: key_size key bytes, then the owner's value. */
static inline void *tg_shm_table_data(tg_shm_table_t *t, uint32_t ref)
{
    return tg_shm_table_slot(t, ref) + TG_SHM_SLOT_HEADER;
}

/* What a find does beyond comparing key bytes. Both may be NULL. */
typedef struct {
    /* 1 when entry `ref` holds `key` (for key_size 0 tables). Only called for
     * entries whose hash agrees in its low 32 bits. */
    int (*eq)(tg_shm_table_t *t, uint32_t ref, const void *key, void *ctx);
    /* Called for each other entry of the bucket passed on the way; returns 1
     * when it removed that entry (an expired key taken back), else 0. */
    int (*pass)(tg_shm_table_t *t, uint32_t ref, void *ctx);
} tg_shm_table_ops_t;

/* The entry holding `key` (hash: the key's 64-bit hash), or 0. */
uint32_t tg_shm_table_find(tg_shm_table_t *t, uint64_t hash, const void *key,
                           const tg_shm_table_ops_t *ops, void *ctx);
/* A new entry for `key` (not present: the caller found nothing), the newest
 * on the recency list, its key bytes copied and the rest of its data
 * zeroed. 0 when no slot is free: the owner evicts and tries again, or
 * refuses. */
uint32_t tg_shm_table_add(tg_shm_table_t *t, uint64_t hash, const void *key);
/* Take entry `ref` out of the index and free its slot (not its chain). */
void tg_shm_table_remove(tg_shm_table_t *t, uint32_t ref);
/* Make `ref` the newest entry on the recency list. */
void tg_shm_table_move_to_head(tg_shm_table_t *t, uint32_t ref);
static inline void tg_shm_table_touch(tg_shm_table_t *t, uint32_t ref)
{
    if (t->head != ref) tg_shm_table_move_to_head(t, ref);
}
/* The oldest entry (0: empty), and the next newer one after `ref` (0: none). */
static inline uint32_t tg_shm_table_oldest(tg_shm_table_t *t)
{
    return t->tail;
}
static inline uint32_t tg_shm_table_newer(tg_shm_table_t *t, uint32_t ref)
{
    return ((tg_shm_slot_t *)tg_shm_table_slot(t, ref))->prev;
}
/* Slots free for entries or chains: the free list and the never used ones. */
static inline uint32_t tg_shm_table_free_slots(tg_shm_table_t *t)
{
    return t->nfree + (t->capacity - t->hw);
}

/* Data longer than an entry: the first `inl_len` bytes sit in the entry
 * (at `inl`), the rest in a chain of raw slots, each a 4-byte link and
 * slot_size - 4 bytes. */
typedef struct {
    char *inl;
    size_t inl_len;
    uint32_t chain; /* first raw slot, 0: none */
} tg_shm_span_t;

/* Raw slots needed for `len` bytes of which `inl_len` fit in the entry. */
uint32_t tg_shm_table_chain_slots(tg_shm_table_t *t, size_t len, size_t inl_len);
/* A chain of `n` raw slots; 0 (none needed) when n is 0. The caller has
 * checked tg_shm_table_free_slots() >= n, else the result is 0. */
uint32_t tg_shm_table_chain_take(tg_shm_table_t *t, uint32_t n);
void tg_shm_table_chain_free(tg_shm_table_t *t, uint32_t chain);

/* Link chain `more` after raw slot `last` (the end of another chain); the
 * last raw slot of a chain. For chains that grow at their tail. */
void tg_shm_table_chain_link(tg_shm_table_t *t, uint32_t last, uint32_t more);
uint32_t tg_shm_table_chain_last(tg_shm_table_t *t, uint32_t chain);
/* Is `ref` an entry of the table now (not free, not a raw slot)? For an
 * owner that keeps references across lock releases: it walks the bucket. */
int tg_shm_table_is_entry(tg_shm_table_t *t, uint32_t ref);
/* The entries of a hash's bucket, newest added first, for owners that keep
 * several entries of one key: the first, and the one after `ref` (0: end). */
uint32_t tg_shm_table_bucket_first(tg_shm_table_t *t, uint64_t hash);
uint32_t tg_shm_table_bucket_next(tg_shm_table_t *t, uint32_t ref);

typedef enum { TG_SHM_SPAN_READ = 0, TG_SHM_SPAN_WRITE, TG_SHM_SPAN_CMP } tg_shm_span_op_t;
/* Bytes [off, off + len) of a span: READ copies them to `buf`, WRITE copies
 * `buf` in, CMP returns nonzero when they differ from `buf`. */
int tg_shm_span_io(tg_shm_table_t *t, const tg_shm_span_t *s, size_t off, void *buf, size_t len,
                   tg_shm_span_op_t op);

#endif
