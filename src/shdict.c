/* Shared dictionaries (see shdict.h). Indices are stored as index + 1 so that
 * zeroed memory means "none". Every public function takes the lock for its
 * whole operation and never calls anything that could longjmp (no Lua) while
 * holding it. */
#include <string.h>
#include "shdict.h"
#include "shm.h"

#define SHD_MAGIC 0x54475344u /* "TGSD" */
#define SHD_CHUNK 128

typedef struct {
    uint32_t hnext;        /* next head in the bucket */
    uint32_t lprev, lnext; /* LRU: prev is more recent */
    uint32_t cont;         /* first continuation chunk */
    uint64_t hash;
    double expires; /* 0: never */
    uint32_t klen, vlen;
    uint32_t nchunks; /* continuation chunks */
    uint8_t type;
} shd_entry_t;

#define SHD_HEAD_DATA (SHD_CHUNK - sizeof(shd_entry_t))
#define SHD_CONT_DATA (SHD_CHUNK - sizeof(uint32_t))

typedef struct {
    uint32_t next;
    char data[SHD_CONT_DATA];
} shd_cont_t;

struct tg_shdict_s {
    uint32_t magic;
    uint32_t nbuckets, nchunks;
    uint32_t free;  /* free chunk list, through shd_cont_t.next */
    uint32_t nfree; /* chunks on the free list */
    uint32_t bump;  /* chunks [bump, nchunks) were never used */
    uint32_t lru_head, lru_tail;
    uint32_t count;
    size_t chunks_off; /* byte offset of chunk 0 from the dict */
    tg_shm_mutex_t lock;
    uint32_t buckets[];
};

static inline char *chunk(tg_shdict_t *d, uint32_t id) /* id is index + 1 */
{
    return (char *)d + d->chunks_off + (size_t)(id - 1) * SHD_CHUNK;
}

static inline shd_entry_t *entry(tg_shdict_t *d, uint32_t id)
{
    return (shd_entry_t *)chunk(d, id);
}

static void reset(tg_shdict_t *d, size_t size)
{
    size_t head = sizeof(*d);
    size_t avail = size > head ? size - head : 0;
    /* one chunk per 128 bytes plus half a bucket each */
    uint32_t n = (uint32_t)(avail / (SHD_CHUNK + 2 * sizeof(uint32_t)));
    uint32_t nb = n / 2 ? n / 2 : 1;
    size_t off = (head + nb * sizeof(uint32_t) + 63) & ~(size_t)63;
    while (n && off + (size_t)n * SHD_CHUNK > size)
        n--;
    memset(d, 0, off);
    d->nbuckets = nb;
    d->nchunks = n;
    d->chunks_off = off;
    tg_shm_mutex_init(&d->lock);
    d->magic = SHD_MAGIC;
}

tg_shdict_t *tg_shdict_init(void *data, size_t size)
{
    tg_shdict_t *d = data;
    if (size < sizeof(*d) + 64 + 4 * SHD_CHUNK)
        return NULL;
    if (d->magic != SHD_MAGIC)
        reset(d, size);
    return d->nchunks ? d : NULL;
}

static int lock(tg_shdict_t *d)
{
    int rc = tg_shm_mutex_lock(&d->lock);
    if (rc == 1) { /* a worker died inside: start over, the lock is ours */
        memset(d->buckets, 0, d->nbuckets * sizeof(uint32_t));
        d->free = d->nfree = d->bump = d->lru_head = d->lru_tail = d->count = 0;
    }
    return rc < 0 ? -1 : 0;
}

/* ---- chunk storage ---- */

static void chunk_free(tg_shdict_t *d, uint32_t id)
{
    ((shd_cont_t *)chunk(d, id))->next = d->free;
    d->free = id;
    d->nfree++;
}

static uint32_t chunk_alloc(tg_shdict_t *d)
{
    if (d->free) {
        uint32_t id = d->free;
        d->free = ((shd_cont_t *)chunk(d, id))->next;
        d->nfree--;
        return id;
    }
    if (d->bump < d->nchunks)
        return ++d->bump;
    return 0;
}

static uint32_t chunks_for(size_t bytes)
{
    if (bytes <= SHD_HEAD_DATA)
        return 1;
    return 1 + (uint32_t)((bytes - SHD_HEAD_DATA + SHD_CONT_DATA - 1) / SHD_CONT_DATA);
}

/* Copy `len` bytes at offset `off` of the entry's data (key then value) out
 * to `dst` (or compare with it when cmp: returns nonzero when different). */
static int data_io(tg_shdict_t *d, uint32_t id, size_t off, char *dst, const char *src,
                   size_t len, int cmp)
{
    shd_entry_t *e = entry(d, id);
    char *p = (char *)(e + 1);
    size_t room = SHD_HEAD_DATA;
    uint32_t next = e->cont;
    while (len) {
        if (off >= room) {
            off -= room;
            shd_cont_t *c = (shd_cont_t *)chunk(d, next);
            next = c->next;
            p = c->data;
            room = SHD_CONT_DATA;
            continue;
        }
        size_t n = room - off < len ? room - off : len;
        if (cmp) {
            if (memcmp(p + off, src, n) != 0)
                return 1;
            src += n;
        } else if (dst) {
            memcpy(dst, p + off, n);
            dst += n;
        } else {
            memcpy(p + off, src, n);
            src += n;
        }
        len -= n;
        off += n;
    }
    return 0;
}

/* ---- index and LRU ---- */

static void lru_unlink(tg_shdict_t *d, uint32_t id)
{
    shd_entry_t *e = entry(d, id);
    if (e->lprev)
        entry(d, e->lprev)->lnext = e->lnext;
    else
        d->lru_head = e->lnext;
    if (e->lnext)
        entry(d, e->lnext)->lprev = e->lprev;
    else
        d->lru_tail = e->lprev;
    e->lprev = e->lnext = 0;
}

static void lru_push(tg_shdict_t *d, uint32_t id)
{
    shd_entry_t *e = entry(d, id);
    e->lprev = 0;
    e->lnext = d->lru_head;
    if (d->lru_head)
        entry(d, d->lru_head)->lprev = id;
    d->lru_head = id;
    if (d->lru_tail == 0)
        d->lru_tail = id;
}

static void entry_remove(tg_shdict_t *d, uint32_t id)
{
    shd_entry_t *e = entry(d, id);
    uint32_t *pp = &d->buckets[e->hash % d->nbuckets];
    while (*pp && *pp != id)
        pp = &entry(d, *pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(d, id);
    uint32_t c = e->cont;
    while (c) {
        uint32_t next = ((shd_cont_t *)chunk(d, c))->next;
        chunk_free(d, c);
        c = next;
    }
    chunk_free(d, id);
    d->count--;
}

static uint32_t lookup(tg_shdict_t *d, tg_str_t key, uint64_t h, double now)
{
    for (uint32_t id = d->buckets[h % d->nbuckets]; id; id = entry(d, id)->hnext) {
        shd_entry_t *e = entry(d, id);
        if (e->hash != h || e->klen != key.len || data_io(d, id, 0, NULL, key.p, key.len, 1))
            continue;
        if (e->expires != 0 && e->expires <= now) {
            entry_remove(d, id);
            return 0;
        }
        return id;
    }
    return 0;
}

/* Room for n chunks: drop expired entries at the LRU tail, then evict. */
static int make_room(tg_shdict_t *d, uint32_t n, double now)
{
    for (int i = 0; i < 4 && d->lru_tail; i++) {
        shd_entry_t *t = entry(d, d->lru_tail);
        if (t->expires == 0 || t->expires > now)
            break;
        entry_remove(d, d->lru_tail);
    }
    while (d->nfree + (d->nchunks - d->bump) < n) {
        if (d->lru_tail == 0)
            return -1;
        entry_remove(d, d->lru_tail);
    }
    return 0;
}

/* A new entry (the key must not be present). */
static uint32_t entry_add(tg_shdict_t *d, tg_str_t key, uint64_t h, const tg_shdict_value_t *v,
                          double ttl, double now)
{
    char num[8];
    tg_str_t val = v->type == TG_SHDICT_STR ? v->str : (tg_str_t){num, sizeof(num)};
    if (v->type != TG_SHDICT_STR)
        memcpy(num, &v->num, sizeof(num));
    uint32_t n = chunks_for(key.len + val.len);
    if (n > d->nchunks || make_room(d, n, now) != 0)
        return 0;
    uint32_t id = chunk_alloc(d);
    shd_entry_t *e = entry(d, id);
    memset(e, 0, sizeof(*e));
    uint32_t *link = &e->cont;
    for (uint32_t i = 1; i < n; i++) {
        uint32_t c = chunk_alloc(d);
        ((shd_cont_t *)chunk(d, c))->next = 0;
        *link = c;
        link = &((shd_cont_t *)chunk(d, c))->next;
    }
    e->nchunks = n - 1;
    e->hash = h;
    e->klen = (uint32_t)key.len;
    e->vlen = (uint32_t)val.len;
    e->type = (uint8_t)v->type;
    e->expires = ttl > 0 ? now + ttl : 0;
    data_io(d, id, 0, NULL, key.p, key.len, 0);
    data_io(d, id, key.len, NULL, val.p, val.len, 0);
    e->hnext = d->buckets[h % d->nbuckets];
    d->buckets[h % d->nbuckets] = id;
    lru_push(d, id);
    d->count++;
    return id;
}

int tg_shdict_get(tg_shdict_t *d, tg_str_t key, double now, tg_arena_t *a,
                  tg_shdict_value_t *out)
{
    uint64_t h = tg_hash64(key.p, key.len);
    if (lock(d) != 0)
        return -1;
    int rc = 0;
    uint32_t id = lookup(d, key, h, now);
    if (id) {
        shd_entry_t *e = entry(d, id);
        out->type = (tg_shdict_type_t)e->type;
        lru_unlink(d, id);
        lru_push(d, id);
        rc = 1;
        if (e->type == TG_SHDICT_STR) {
            char *p = tg_arena_alloc_nz(a, e->vlen + 1);
            if (p == NULL) {
                rc = -1;
            } else {
                data_io(d, id, e->klen, p, NULL, e->vlen, 0);
                p[e->vlen] = '\0';
                out->str = (tg_str_t){p, e->vlen};
            }
        } else {
            data_io(d, id, e->klen, (char *)&out->num, NULL, sizeof(out->num), 0);
        }
    }
    tg_shm_mutex_unlock(&d->lock);
    return rc;
}

int tg_shdict_set(tg_shdict_t *d, tg_str_t key, const tg_shdict_value_t *v, double ttl,
                  double now)
{
    uint64_t h = tg_hash64(key.p, key.len);
    if (lock(d) != 0)
        return -1;
    uint32_t id = lookup(d, key, h, now);
    if (id)
        entry_remove(d, id);
    int rc = entry_add(d, key, h, v, ttl, now) ? 0 : -1;
    tg_shm_mutex_unlock(&d->lock);
    return rc;
}

int tg_shdict_incr(tg_shdict_t *d, tg_str_t key, double by, int has_init, double init,
                   double ttl, double now, double *out)
{
    uint64_t h = tg_hash64(key.p, key.len);
    if (lock(d) != 0)
        return -1;
    int rc = 0;
    uint32_t id = lookup(d, key, h, now);
    if (id) {
        shd_entry_t *e = entry(d, id);
        if (e->type != TG_SHDICT_NUM) {
            rc = -2;
        } else {
            double v;
            data_io(d, id, e->klen, (char *)&v, NULL, sizeof(v), 0);
            v += by;
            data_io(d, id, e->klen, NULL, (const char *)&v, sizeof(v), 0);
            lru_unlink(d, id);
            lru_push(d, id);
            *out = v;
        }
    } else if (!has_init) {
        rc = 1;
    } else {
        tg_shdict_value_t v = {TG_SHDICT_NUM, init + by, TG_NULL_STR};
        rc = entry_add(d, key, h, &v, ttl, now) ? 0 : -1;
        *out = v.num;
    }
    tg_shm_mutex_unlock(&d->lock);
    return rc;
}

int tg_shdict_delete(tg_shdict_t *d, tg_str_t key, double now)
{
    uint64_t h = tg_hash64(key.p, key.len);
    if (lock(d) != 0)
        return -1;
    uint32_t id = lookup(d, key, h, now);
    if (id)
        entry_remove(d, id);
    tg_shm_mutex_unlock(&d->lock);
    return id != 0;
}

void tg_shdict_stats(tg_shdict_t *d, size_t *entries, size_t *free_bytes)
{
    if (lock(d) != 0)
        return;
    *entries = d->count;
    *free_bytes = (size_t)(d->nfree + d->nchunks - d->bump) * SHD_CHUNK;
    tg_shm_mutex_unlock(&d->lock);
}
