/* The shared TLS session cache (see tls_cache.h), built on src/shm_table.c.
 *
 * An entry is a 256-byte slot: the table's link header, the session ID (the
 * table key: its length and the ID, zero-padded to 32 bytes), the expiry,
 * the length of the session bytes, and their first SLOT_INLINE bytes; the
 * rest goes in a chain of raw slots (252 bytes each). A typical TLS 1.2
 * server session (130 to 200 bytes) fits one slot.
 *
 * Lookups never touch the recency list, so it stays in storing order and
 * the oldest stored sessions are evicted first, whatever was resumed. */
#include <string.h>
#include "tls_cache.h"
#include "shm_table.h"
#include "str.h"

#define CACHE_MAGIC 0x3230736c74677400ULL /* "\0tgtls02" */
#define SLOT_SIZE 256

typedef struct {
    uint32_t idlen;
    unsigned char id[TG_TLS_CACHE_MAX_ID]; /* zero-padded: with idlen, the table key */
} rec_key_t;

typedef struct {
    rec_key_t key;
    uint32_t data_len; /* bytes of session data */
    int64_t expires;   /* Unix time, seconds */
    uint32_t chain;    /* raw slots holding the data after SLOT_INLINE */
    uint32_t pad;
} rec_t;

#define SLOT_DATA (SLOT_SIZE - TG_SHM_SLOT_HEADER)
#define SLOT_INLINE (SLOT_DATA - sizeof(rec_t))

struct tg_tls_cache_s {
    tg_shm_table_t t; /* first: the shared table */
    uint64_t hits, misses, stores, evictions, expired, removed, too_big;
};

static rec_t *R(tg_tls_cache_t *c, uint32_t ref)
{
    return tg_shm_table_data(&c->t, ref);
}

static tg_shm_span_t span(tg_tls_cache_t *c, uint32_t ref)
{
    rec_t *r = R(c, ref);
    return (tg_shm_span_t){(char *)(r + 1), SLOT_INLINE, r->chain};
}

tg_tls_cache_t *tg_tls_cache_init(void *mem, size_t size)
{
    if (size < TG_TLS_CACHE_MIN_SIZE)
        return NULL;
    if (tg_shm_table_init(mem, size, sizeof(tg_tls_cache_t), SLOT_DATA, sizeof(rec_key_t),
                          CACHE_MAGIC) < 0)
        return NULL;
    tg_tls_cache_t *c = mem;
    if (c->t.capacity < 1 + tg_shm_table_chain_slots(&c->t, TG_TLS_CACHE_MAX_DATA, SLOT_INLINE))
        return NULL; /* not even one session of the biggest size fits */
    return c;
}

/* Lock; a lock recovered from a dead worker finds the table emptied (and
 * the reset counted by the table). */
static int lock(tg_tls_cache_t *c)
{
    return tg_shm_table_lock(&c->t) < 0 ? -1 : 0;
}

static uint32_t find(tg_tls_cache_t *c, const unsigned char *id, size_t idlen, rec_key_t *k)
{
    memset(k, 0, sizeof(*k));
    k->idlen = (uint32_t)idlen;
    memcpy(k->id, id, idlen);
    return tg_shm_table_find(&c->t, tg_hash64(id, idlen), k, NULL, NULL);
}

static void drop(tg_tls_cache_t *c, uint32_t ref)
{
    tg_shm_table_chain_free(&c->t, R(c, ref)->chain);
    tg_shm_table_remove(&c->t, ref);
}

int tg_tls_cache_put(tg_tls_cache_t *c, const unsigned char *id, size_t idlen,
                     const unsigned char *data, size_t len, int64_t expires, int64_t now)
{
    if (idlen == 0 || idlen > TG_TLS_CACHE_MAX_ID)
        return 1;
    if (lock(c) != 0)
        return -1;
    if (len > TG_TLS_CACHE_MAX_DATA) {
        c->too_big++;
        tg_shm_table_unlock(&c->t);
        return 1;
    }
    rec_key_t k;
    uint32_t ref = find(c, id, idlen, &k);
    if (ref)
        drop(c, ref);
    /* room: the oldest sessions go first */
    uint32_t more = tg_shm_table_chain_slots(&c->t, len, SLOT_INLINE);
    while (tg_shm_table_free_slots(&c->t) < more + 1) {
        uint32_t old = tg_shm_table_oldest(&c->t); /* never 0: init made room for one */
        if (R(c, old)->expires <= now)
            c->expired++;
        else
            c->evictions++;
        drop(c, old);
    }
    uint32_t chain = tg_shm_table_chain_take(&c->t, more);
    ref = tg_shm_table_add(&c->t, tg_hash64(id, idlen), &k);
    rec_t *r = R(c, ref);
    r->data_len = (uint32_t)len;
    r->expires = expires;
    r->chain = chain;
    tg_shm_span_t sp = span(c, ref);
    tg_shm_span_io(&c->t, &sp, 0, (void *)data, len, TG_SHM_SPAN_WRITE);
    c->stores++;
    tg_shm_table_unlock(&c->t);
    return 0;
}

long tg_tls_cache_get(tg_tls_cache_t *c, const unsigned char *id, size_t idlen, int64_t now,
                      unsigned char *buf, size_t size)
{
    if (idlen == 0 || idlen > TG_TLS_CACHE_MAX_ID)
        return 0;
    if (lock(c) != 0)
        return -1;
    rec_key_t k;
    uint32_t ref = find(c, id, idlen, &k);
    long n = 0;
    if (ref && R(c, ref)->expires <= now) {
        drop(c, ref);
        c->expired++;
        ref = 0;
    }
    if (ref && R(c, ref)->data_len <= size) {
        tg_shm_span_t sp = span(c, ref);
        n = (long)R(c, ref)->data_len;
        tg_shm_span_io(&c->t, &sp, 0, buf, (size_t)n, TG_SHM_SPAN_READ);
        c->hits++;
    } else {
        c->misses++;
    }
    tg_shm_table_unlock(&c->t);
    return n;
}

void tg_tls_cache_remove(tg_tls_cache_t *c, const unsigned char *id, size_t idlen)
{
    if (idlen == 0 || idlen > TG_TLS_CACHE_MAX_ID || lock(c) != 0)
        return;
    rec_key_t k;
    uint32_t ref = find(c, id, idlen, &k);
    if (ref) {
        drop(c, ref);
        c->removed++;
    }
    tg_shm_table_unlock(&c->t);
}

void tg_tls_cache_stats(tg_tls_cache_t *c, tg_tls_cache_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    if (lock(c) != 0)
        return;
    st->hits = c->hits;
    st->misses = c->misses;
    st->stores = c->stores;
    st->evictions = c->evictions;
    st->expired = c->expired;
    st->removed = c->removed;
    st->too_big = c->too_big;
    st->resets = c->t.resets;
    st->used = c->t.used;
    st->buckets = c->t.mask + 1;
    st->data_size = (uint64_t)c->t.capacity * c->t.slot_size;
    tg_shm_table_unlock(&c->t);
}
