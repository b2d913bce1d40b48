/* Shared dictionaries (see shdict.h), built on src/shm_table.c: an entry is
 * a 128-byte slot (the table's link header, then expiry, lengths, type and
 * the first bytes of key and value); the rest of key and value goes in a
 * chain of raw slots. Keys are compared in full (the table's key_size is 0:
 * key_eq). Every public function takes the lock for its whole operation and
 * never calls anything that could longjmp (no Lua) while holding it. */
#include <string.h>
#include "shdict.h"
#include "shm_table.h"

#define SHD_MAGIC 0x3230647367740000ULL /* "\0\0tgsd02" */
#define SHD_CHUNK 128                    /* bytes of a slot */

/* The data of a head slot; the key then the value follow (SHD_INLINE bytes
 * here, the rest in the chain). */
typedef struct {
    double expires; /* 0: never */
    uint32_t klen, vlen;
    uint32_t chain; /* raw slots holding the rest of key and value */
    uint8_t type;
} shd_entry_t;

#define SHD_DATA (SHD_CHUNK - TG_SHM_SLOT_HEADER)
#define SHD_INLINE (SHD_DATA - sizeof(shd_entry_t))

struct tg_shdict_s {
    tg_shm_table_t t; /* first: the shared table */
};

static shd_entry_t *entry(tg_shdict_t *d, uint32_t id)
{
    return tg_shm_table_data(&d->t, id);
}

static tg_shm_span_t span(tg_shdict_t *d, uint32_t id)
{
    shd_entry_t *e = entry(d, id);
    return (tg_shm_span_t){(char *)(e + 1), SHD_INLINE, e->chain};
}

tg_shdict_t *tg_shdict_init(void *data, size_t size)
{
    if (size < sizeof(tg_shdict_t) + 64 + 4 * SHD_CHUNK ||
        tg_shm_table_init(data, size, sizeof(tg_shdict_t), SHD_DATA, 0, SHD_MAGIC) < 0)
        return NULL;
    return data;
}

/* A lock recovered from a dead worker finds the dictionary emptied. */
static int lock(tg_shdict_t *d)
{
    return tg_shm_table_lock(&d->t) < 0 ? -1 : 0;
}

static void entry_remove(tg_shdict_t *d, uint32_t id)
{
    tg_shm_table_chain_free(&d->t, entry(d, id)->chain);
    tg_shm_table_remove(&d->t, id);
}

static int key_eq(tg_shm_table_t *t, uint32_t id, const void *key, void *ctx)
{
    (void)ctx;
    tg_shdict_t *d = (tg_shdict_t *)t;
    const tg_str_t *k = key;
    tg_shm_span_t s = span(d, id);
    return entry(d, id)->klen == k->len &&
           tg_shm_span_io(t, &s, 0, (void *)k->p, k->len, TG_SHM_SPAN_CMP) == 0;
}

static const tg_shm_table_ops_t ops = {key_eq, NULL};

static uint32_t lookup(tg_shdict_t *d, tg_str_t key, uint64_t h, double now)
{
    uint32_t id = tg_shm_table_find(&d->t, h, &key, &ops, NULL);
    if (id) {
        shd_entry_t *e = entry(d, id);
        if (e->expires != 0 && e->expires <= now) {
            entry_remove(d, id);
            return 0;
        }
    }
    return id;
}

/* Room for n slots: drop expired entries at the LRU tail, then evict. */
static int make_room(tg_shdict_t *d, uint32_t n, double now)
{
    for (int i = 0; i < 4; i++) {
        uint32_t old = tg_shm_table_oldest(&d->t);
        if (old == 0) break;
        shd_entry_t *e = entry(d, old);
        if (e->expires == 0 || e->expires > now) break;
        entry_remove(d, old);
    }
    while (tg_shm_table_free_slots(&d->t) < n) {
        uint32_t old = tg_shm_table_oldest(&d->t);
        if (old == 0) return -1;
        entry_remove(d, old);
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
    uint32_t n = 1 + tg_shm_table_chain_slots(&d->t, key.len + val.len, SHD_INLINE);
    if (n > d->t.capacity || make_room(d, n, now) != 0)
        return 0;
    uint32_t chain = tg_shm_table_chain_take(&d->t, n - 1);
    uint32_t id = tg_shm_table_add(&d->t, h, NULL);
    shd_entry_t *e = entry(d, id);
    e->chain = chain;
    e->klen = (uint32_t)key.len;
    e->vlen = (uint32_t)val.len;
    e->type = (uint8_t)v->type;
    e->expires = ttl > 0 ? now + ttl : 0;
    tg_shm_span_t s = span(d, id);
    tg_shm_span_io(&d->t, &s, 0, (void *)key.p, key.len, TG_SHM_SPAN_WRITE);
    tg_shm_span_io(&d->t, &s, key.len, (void *)val.p, val.len, TG_SHM_SPAN_WRITE);
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
        tg_shm_table_touch(&d->t, id);
        rc = 1;
        if (e->type == TG_SHDICT_STR) {
            char *p = tg_arena_alloc_nz(a, e->vlen + 1);
            if (p == NULL) {
                rc = -1;
            } else {
                tg_shm_span_t sp = span(d, id);
                tg_shm_span_io(&d->t, &sp, e->klen, p, e->vlen, TG_SHM_SPAN_READ);
                p[e->vlen] = '\0';
                out->str = (tg_str_t){p, e->vlen};
            }
        } else {
            tg_shm_span_t sp = span(d, id);
            tg_shm_span_io(&d->t, &sp, e->klen, &out->num, sizeof(out->num), TG_SHM_SPAN_READ);
        }
    }
    tg_shm_table_unlock(&d->t);
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
    tg_shm_table_unlock(&d->t);
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
            tg_shm_span_t sp = span(d, id);
            tg_shm_span_io(&d->t, &sp, e->klen, &v, sizeof(v), TG_SHM_SPAN_READ);
            v += by;
            tg_shm_span_io(&d->t, &sp, e->klen, &v, sizeof(v), TG_SHM_SPAN_WRITE);
            tg_shm_table_touch(&d->t, id);
            *out = v;
        }
    } else if (!has_init) {
        rc = 1;
    } else {
        tg_shdict_value_t v = {TG_SHDICT_NUM, init + by, TG_NULL_STR};
        rc = entry_add(d, key, h, &v, ttl, now) ? 0 : -1;
        *out = v.num;
    }
    tg_shm_table_unlock(&d->t);
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
    tg_shm_table_unlock(&d->t);
    return id != 0;
}

void tg_shdict_stats(tg_shdict_t *d, size_t *entries, size_t *free_bytes)
{
    if (lock(d) != 0)
        return;
    *entries = d->t.used;
    *free_bytes = (size_t)tg_shm_table_free_slots(&d->t) * SHD_CHUNK;
    tg_shm_table_unlock(&d->t);
}
