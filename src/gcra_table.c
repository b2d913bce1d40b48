/* The shared GCRA table (see gcra_table.h).
 *
 * Layout in the block: header | buckets (uint32, power of two) | entries.
 * Entry references are index + 1 so that zero, the state of fresh anonymous
 * memory, means "none": a new table needs no initialising writes beyond the
 * header, and RAM is only used as entries are handed out (`hw`, the high
 * water mark, counts entries ever used; freed ones go to a free list).
 *
 * Each bucket holds a singly linked chain (`chain`); all used entries are
 * also on a doubly linked recency list (head: most recently used) that
 * gives the eviction victim and the oldest candidates for reclaiming. */
#include <string.h>
#include <time.h>
#include "gcra_table.h"
#include "shm.h"

#define TABLE_MAGIC 0x3130617263677400ULL /* "\0tgcra01" */
#define RECLAIM_PER_TAKE 2                /* expired entries taken back from the old end per call */

typedef struct {
    uint64_t h1, h2;     /* the key's hash */
    int64_t tat;         /* theoretical arrival time, CLOCK_MONOTONIC ns */
    uint32_t chain;      /* next entry in the bucket */
    uint32_t prev, next; /* recency list: prev is more recent */
    uint32_t used;
} entry_t;

struct tg_gcra_table_s {
    uint64_t magic;
    uint64_t size; /* the block size it was laid out for */
    uint64_t seed[2];
    uint32_t mask; /* buckets - 1 */
    uint32_t capacity;
    uint32_t hw;         /* entries [0, hw) have been handed out at least once */
    uint32_t free_head;  /* free entries, linked through `chain` */
    uint32_t head, tail; /* recency list */
    uint32_t used;
    uint32_t pad;
    uint64_t evictions, reclaimed, resets;
    tg_shm_mutex_t lock;
    uint64_t buckets_off, entries_off; /* from the header */
};

#define BUCKETS(t) ((uint32_t *)((char *)(t) + (t)->buckets_off))
#define ENTRIES(t) ((entry_t *)((char *)(t) + (t)->entries_off))

/* ---- SipHash-2-4 with a 128-bit result ------------------------------------------------ */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load64_le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void tg_siphash128(const uint64_t key[2], const void *data, size_t len, uint64_t out[2])
{
    const unsigned char *p = data, *end = p + (len & ~(size_t)7);
    uint64_t v0 = key[0] ^ 0x736f6d6570736575ULL, v1 = key[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = key[0] ^ 0x6c7967656e657261ULL, v3 = key[1] ^ 0x7465646279746573ULL;
    v1 ^= 0xee; /* the 128-bit variant */
    for (; p != end; p += 8) {
        uint64_t m = load64_le(p);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xee;
    for (int i = 0; i < 4; i++)
        SIPROUND;
    out[0] = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    for (int i = 0; i < 4; i++)
        SIPROUND;
    out[1] = v0 ^ v1 ^ v2 ^ v3;
}

/* ---- layout --------------------------------------------------------------------------- */

static void clear(tg_gcra_table_t *t)
{
    memset(BUCKETS(t), 0, ((size_t)t->mask + 1) * sizeof(uint32_t));
    t->hw = t->free_head = t->head = t->tail = t->used = 0;
}

tg_gcra_table_t *tg_gcra_table_init(void *mem, size_t size)
{
    tg_gcra_table_t *t = mem;
    if (t->magic == TABLE_MAGIC && t->size == size)
        return t; /* kept from the previous config generation */
    tg_shm_layout_t l;
    if (tg_shm_table_layout(size, sizeof(*t), sizeof(entry_t), &l) != 0) return NULL;
    memset(t, 0, l.buckets_off);
    if (tg_shm_mutex_init(&t->lock) != 0) return NULL;
    tg_shm_hash_seed(t->seed, mem);
    t->size = size;
    t->mask = l.nbuckets - 1;
    t->capacity = l.capacity;
    t->buckets_off = l.buckets_off;
    t->entries_off = l.entries_off;
    clear(t);
    t->magic = TABLE_MAGIC;
    return t;
}

/* ---- lists ---------------------------------------------------------------------------- */

static void lru_unlink(tg_gcra_table_t *t, uint32_t ref)
{
    entry_t *es = ENTRIES(t), *e = &es[ref - 1];
    if (e->prev)
        es[e->prev - 1].next = e->next;
    else
        t->head = e->next;
    if (e->next)
        es[e->next - 1].prev = e->prev;
    else
        t->tail = e->prev;
    e->prev = e->next = 0;
}

static void lru_push(tg_gcra_table_t *t, uint32_t ref)
{
    entry_t *es = ENTRIES(t), *e = &es[ref - 1];
    e->prev = 0;
    e->next = t->head;
    if (t->head)
        es[t->head - 1].prev = ref;
    else
        t->tail = ref;
    t->head = ref;
}

/* Take `ref` out of its bucket and the recency list, onto the free list. */
static void release(tg_gcra_table_t *t, uint32_t ref)
{
    entry_t *es = ENTRIES(t), *e = &es[ref - 1];
    uint32_t *pp = &BUCKETS(t)[e->h1 & t->mask];
    while (*pp && *pp != ref)
        pp = &es[*pp - 1].chain;
    if (*pp == ref) *pp = e->chain;
    lru_unlink(t, ref);
    e->used = 0;
    e->chain = t->free_head;
    t->free_head = ref;
    t->used--;
}

/* An entry to hold a new key: a free one, a never used one, an expired one
 * from the old end, or the least recently used. */
static uint32_t grab(tg_gcra_table_t *t, int64_t now, unsigned *events)
{
    entry_t *es = ENTRIES(t);
    if (t->free_head == 0 && t->hw < t->capacity) {
        es[t->hw].chain = t->free_head;
        t->free_head = ++t->hw;
    }
    if (t->free_head == 0) {
        uint32_t victim = t->tail;
        if (es[victim - 1].tat <= now) {
            t->reclaimed++;
        } else {
            t->evictions++;
            *events |= TG_GCRA_TABLE_F_EVICTED;
        }
        release(t, victim);
    }
    uint32_t ref = t->free_head;
    t->free_head = es[ref - 1].chain;
    return ref;
}

int tg_gcra_table_take(tg_gcra_table_t *t, const tg_gcra_t *g, tg_str_t key, int64_t now,
                       tg_gcra_result_t *res, unsigned *events)
{
    uint64_t h[2];
    tg_siphash128(t->seed, key.p, key.len, h);
    *events = 0;
    int lk = tg_shm_mutex_lock(&t->lock);
    if (lk < 0) return -1;
    if (lk == 1) {
        clear(t);
        t->resets++;
        *events |= TG_GCRA_TABLE_F_RESET;
    }
    entry_t *es = ENTRIES(t);
    uint32_t *bucket = &BUCKETS(t)[h[0] & t->mask];
    uint32_t ref = *bucket, found = 0;
    while (ref) {
        entry_t *e = &es[ref - 1];
        uint32_t next = e->chain;
        if (e->h1 == h[0] && e->h2 == h[1]) {
            found = ref;
            break;
        }
        if (e->tat <= now) { /* expired on the way: take it back */
            release(t, ref);
            t->reclaimed++;
        }
        ref = next;
    }
    if (found) {
        lru_unlink(t, found);
    } else {
        found = grab(t, now, events);
        entry_t *e = &es[found - 1];
        e->h1 = h[0];
        e->h2 = h[1];
        e->tat = 0;
        e->used = 1;
        e->chain = *bucket;
        *bucket = found;
        t->used++;
    }
    lru_push(t, found);
    tg_gcra_take(g, &es[found - 1].tat, now, res);
    /* keep the free list stocked from expired keys at the old end */
    for (int i = 0; i < RECLAIM_PER_TAKE && t->tail && t->tail != found; i++) {
        if (es[t->tail - 1].tat > now) break;
        release(t, t->tail);
        t->reclaimed++;
    }
    tg_shm_mutex_unlock(&t->lock);
    return 0;
}

void tg_gcra_table_stats(tg_gcra_table_t *t, tg_gcra_table_stats_t *st)
{
    int lk = tg_shm_mutex_lock(&t->lock);
    if (lk < 0) {
        memset(st, 0, sizeof(*st));
        return;
    }
    if (lk == 1) {
        clear(t);
        t->resets++;
    }
    st->capacity = t->capacity;
    st->used = t->used;
    st->evictions = t->evictions;
    st->reclaimed = t->reclaimed;
    st->resets = t->resets;
    tg_shm_mutex_unlock(&t->lock);
}
