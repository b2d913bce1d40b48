/* The shared TLS session cache (see tls_cache.h).
 *
 * Block layout: header | buckets (uint32, power of two) | record ring.
 * Records are 8-byte aligned and referenced by (offset / 8) + 1, so zero,
 * the state of fresh anonymous memory, means "none". `head` and `tail` are
 * byte positions that only grow (the offset in the ring is the position
 * modulo its size): the bytes in [tail, head) hold records, oldest first.
 * A record that would cross the end of the ring is preceded by a pad record
 * filling the rest, so every record is contiguous.
 *
 * A record is LIVE while it is on its bucket's chain (findable). Removing
 * one only takes it off its chain; the tail reclaims its bytes later. */
#include <string.h>
#include "tls_cache.h"
#include "shm.h"
#include "str.h"

#define CACHE_MAGIC 0x3130736c74677400ULL /* "\0tgtls01" */
#define REC_LIVE 0x01
#define REC_PAD 0x02

typedef struct {
    uint32_t len;      /* the whole record, a multiple of 8 (a pad: just these two fields) */
    uint32_t flags;    /* REC_* */
    uint32_t next;     /* the next record on the bucket chain */
    uint32_t data_len; /* bytes of session data after the header */
    int64_t expires;   /* Unix time, seconds */
    uint32_t idlen;
    uint32_t pad;
    unsigned char id[TG_TLS_CACHE_MAX_ID];
} rec_t;

#define MAX_REC (sizeof(rec_t) + TG_TLS_CACHE_MAX_DATA)

struct tg_tls_cache_s {
    uint64_t magic;
    uint64_t size; /* the block size it was laid out for */
    tg_shm_mutex_t lock;
    uint32_t mask; /* buckets - 1 */
    uint32_t used; /* live records */
    uint64_t buckets_off, data_off, data_size;
    uint64_t head, tail;
    uint64_t hits, misses, stores, evictions, expired, removed, too_big, resets;
};

#define BUCKETS(c) ((uint32_t *)((char *)(c) + (c)->buckets_off))
#define DATA(c) ((char *)(c) + (c)->data_off)

static rec_t *rec_at(tg_tls_cache_t *c, uint64_t pos)
{
    return (rec_t *)(DATA(c) + pos % c->data_size);
}

static uint32_t rec_ref(tg_tls_cache_t *c, const rec_t *r)
{
    return (uint32_t)(((const char *)r - DATA(c)) / 8 + 1);
}

static rec_t *ref_rec(tg_tls_cache_t *c, uint32_t ref)
{
    return (rec_t *)(DATA(c) + (size_t)(ref - 1) * 8);
}

static uint32_t *bucket_of(tg_tls_cache_t *c, const unsigned char *id, size_t idlen)
{
    return &BUCKETS(c)[tg_hash64(id, idlen) & c->mask];
}

static void clear(tg_tls_cache_t *c)
{
    memset(BUCKETS(c), 0, ((size_t)c->mask + 1) * sizeof(uint32_t));
    c->head = c->tail = 0;
    c->used = 0;
}

tg_tls_cache_t *tg_tls_cache_init(void *mem, size_t size)
{
    tg_tls_cache_t *c = mem;
    if (c->magic == CACHE_MAGIC && c->size == size)
        return c; /* kept from the previous config generation */
    if (size < TG_TLS_CACHE_MIN_SIZE)
        return NULL;
    size_t hdr = tg_shm_align(sizeof(*c), 64);
    /* one bucket per ~256 bytes of ring: about one typical session each */
    size_t nb = 1;
    while (nb * 2 * 256 <= size && nb * 2 <= ((size_t)1 << 24))
        nb *= 2;
    size_t doff = hdr + tg_shm_align(nb * sizeof(uint32_t), 64);
    size_t dsize = (size - doff) / 8 * 8;
    if (dsize > (size_t)UINT32_MAX * 8 - 8)
        dsize = (size_t)UINT32_MAX * 8 - 8;
    if (size <= doff || dsize < 2 * MAX_REC)
        return NULL;
    memset(c, 0, hdr);
    if (tg_shm_mutex_init(&c->lock) != 0)
        return NULL;
    c->size = size;
    c->mask = (uint32_t)(nb - 1);
    c->buckets_off = hdr;
    c->data_off = doff;
    c->data_size = dsize;
    clear(c);
    c->magic = CACHE_MAGIC;
    return c;
}

/* Lock; a lock recovered from a dead worker empties the table. */
static int lock(tg_tls_cache_t *c)
{
    int lk = tg_shm_mutex_lock(&c->lock);
    if (lk == 1) {
        clear(c);
        c->resets++;
    }
    return lk < 0 ? -1 : 0;
}

/* The live record for `id` and the link that points at it, or NULL. */
static rec_t *find(tg_tls_cache_t *c, const unsigned char *id, size_t idlen, uint32_t **link)
{
    uint32_t *pp = bucket_of(c, id, idlen);
    while (*pp) {
        rec_t *r = ref_rec(c, *pp);
        if (r->idlen == idlen && memcmp(r->id, id, idlen) == 0) {
            *link = pp;
            return r;
        }
        pp = &r->next;
    }
    return NULL;
}

static void unlink_rec(tg_tls_cache_t *c, rec_t *r, uint32_t *link)
{
    *link = r->next;
    r->next = 0;
    r->flags &= ~(uint32_t)REC_LIVE;
    c->used--;
}

/* Reclaim the oldest record's bytes. */
static void drop_tail(tg_tls_cache_t *c, int64_t now)
{
    rec_t *r = rec_at(c, c->tail);
    if (r->flags & REC_LIVE) {
        uint32_t *link;
        if (find(c, r->id, r->idlen, &link) == r)
            unlink_rec(c, r, link);
        if (r->expires <= now)
            c->expired++;
        else
            c->evictions++;
    }
    c->tail += r->len;
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
        tg_shm_mutex_unlock(&c->lock);
        return 1;
    }
    uint32_t *link;
    rec_t *old = find(c, id, idlen, &link);
    if (old)
        unlink_rec(c, old, link);
    size_t need = tg_shm_align(sizeof(rec_t) + len, 8);
    size_t off = (size_t)(c->head % c->data_size);
    size_t pad = off + need > c->data_size ? c->data_size - off : 0;
    while (c->head + pad + need - c->tail > c->data_size)
        drop_tail(c, now);
    if (pad) {
        rec_t *p = rec_at(c, c->head);
        p->len = (uint32_t)pad;
        p->flags = REC_PAD;
        c->head += pad;
    }
    rec_t *r = rec_at(c, c->head);
    memset(r, 0, sizeof(*r));
    r->len = (uint32_t)need;
    r->flags = REC_LIVE;
    r->data_len = (uint32_t)len;
    r->expires = expires;
    r->idlen = (uint32_t)idlen;
    memcpy(r->id, id, idlen);
    memcpy(r + 1, data, len);
    uint32_t *b = bucket_of(c, id, idlen);
    r->next = *b;
    *b = rec_ref(c, r);
    c->head += need;
    c->used++;
    c->stores++;
    tg_shm_mutex_unlock(&c->lock);
    return 0;
}

long tg_tls_cache_get(tg_tls_cache_t *c, const unsigned char *id, size_t idlen, int64_t now,
                      unsigned char *buf, size_t size)
{
    if (idlen == 0 || idlen > TG_TLS_CACHE_MAX_ID)
        return 0;
    if (lock(c) != 0)
        return -1;
    uint32_t *link;
    rec_t *r = find(c, id, idlen, &link);
    long n = 0;
    if (r && r->expires <= now) {
        unlink_rec(c, r, link);
        c->expired++;
        r = NULL;
    }
    if (r && r->data_len <= size) {
        memcpy(buf, r + 1, r->data_len);
        n = (long)r->data_len;
        c->hits++;
    } else {
        c->misses++;
    }
    tg_shm_mutex_unlock(&c->lock);
    return n;
}

void tg_tls_cache_remove(tg_tls_cache_t *c, const unsigned char *id, size_t idlen)
{
    if (idlen == 0 || idlen > TG_TLS_CACHE_MAX_ID || lock(c) != 0)
        return;
    uint32_t *link;
    rec_t *r = find(c, id, idlen, &link);
    if (r) {
        unlink_rec(c, r, link);
        c->removed++;
    }
    tg_shm_mutex_unlock(&c->lock);
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
    st->resets = c->resets;
    st->used = c->used;
    st->buckets = c->mask + 1;
    st->data_size = c->data_size;
    tg_shm_mutex_unlock(&c->lock);
}
