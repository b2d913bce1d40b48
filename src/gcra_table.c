/* The shared GCRA table (see gcra_table.h), built on src/shm_table.c.
 *
 * An entry's data is the key's 128-bit hash (the table key) and its TAT.
 * The first hash word picks the bucket. The recency list (touched on every
 * request) gives the eviction victim and the oldest candidates for
 * reclaiming. */
#include <string.h>
#include "gcra_table.h"
#include "shm_table.h"

#define TABLE_MAGIC 0x3230617263677400ULL /* "\0tgcra02" */
#define RECLAIM_PER_TAKE 2                /* expired entries taken back from the old end per call */

typedef struct {
    uint64_t h[2]; /* the key's hash: the table key */
    int64_t tat;   /* theoretical arrival time, CLOCK_MONOTONIC ns */
} entry_t;

struct tg_gcra_table_s {
    tg_shm_table_t t; /* first: the shared table */
    uint64_t evictions, reclaimed;
};

static entry_t *E(tg_gcra_table_t *g, uint32_t ref)
{
    return tg_shm_table_data(&g->t, ref);
}

tg_gcra_table_t *tg_gcra_table_init(void *mem, size_t size)
{
    if (tg_shm_table_init(mem, size, sizeof(tg_gcra_table_t), sizeof(entry_t), 16, TABLE_MAGIC) < 0)
        return NULL;
    return mem;
}

typedef struct {
    tg_gcra_table_t *g;
    int64_t now;
} pass_ctx_t;

/* An expired key met in the bucket on the way: take its entry back. */
static int pass_expired(tg_shm_table_t *t, uint32_t ref, void *ctx)
{
    pass_ctx_t *pc = ctx;
    if (E(pc->g, ref)->tat > pc->now) return 0;
    tg_shm_table_remove(t, ref);
    pc->g->reclaimed++;
    return 1;
}

static const tg_shm_table_ops_t ops = {NULL, pass_expired};

int tg_gcra_table_take(tg_gcra_table_t *g, const tg_gcra_t *gc, tg_str_t key, int64_t now,
                       tg_gcra_result_t *res, unsigned *events)
{
    tg_shm_table_t *t = &g->t;
    uint64_t h[2];
    tg_siphash128(t->seed, key.p, key.len, h);
    *events = 0;
    int lk = tg_shm_table_lock(t);
    if (lk < 0) return -1;
    if (lk == 1) *events |= TG_GCRA_TABLE_F_RESET;
    pass_ctx_t pc = {g, now};
    uint32_t ref = tg_shm_table_find(t, h[0], h, &ops, &pc);
    if (ref) {
        tg_shm_table_touch(t, ref);
    } else if ((ref = tg_shm_table_add(t, h[0], h)) == 0) {
        /* full: the least recently used key makes room */
        uint32_t victim = tg_shm_table_oldest(t);
        if (E(g, victim)->tat <= now) {
            g->reclaimed++;
        } else {
            g->evictions++;
            *events |= TG_GCRA_TABLE_F_EVICTED;
        }
        tg_shm_table_remove(t, victim);
        ref = tg_shm_table_add(t, h[0], h);
    }
    tg_gcra_take(gc, &E(g, ref)->tat, now, res);
    /* keep free slots stocked from expired keys at the old end */
    for (int i = 0; i < RECLAIM_PER_TAKE; i++) {
        uint32_t old = tg_shm_table_oldest(t);
        if (old == 0 || old == ref || E(g, old)->tat > now) break;
        tg_shm_table_remove(t, old);
        g->reclaimed++;
    }
    tg_shm_table_unlock(t);
    return 0;
}

int tg_gcra_table_refund(tg_gcra_table_t *g, const tg_gcra_t *gc, tg_str_t key, int64_t now)
{
    tg_shm_table_t *t = &g->t;
    uint64_t h[2];
    tg_siphash128(t->seed, key.p, key.len, h);
    if (tg_shm_table_lock(t) < 0) return -1;
    uint32_t ref = tg_shm_table_find(t, h[0], h, NULL, NULL);
    if (ref && tg_gcra_refund(gc, &E(g, ref)->tat, now)) {
        tg_shm_table_remove(t, ref); /* full again: no state */
        g->reclaimed++;
    }
    tg_shm_table_unlock(t);
    return 0;
}

void tg_gcra_table_stats(tg_gcra_table_t *g, tg_gcra_table_stats_t *st)
{
    if (tg_shm_table_lock(&g->t) < 0) {
        memset(st, 0, sizeof(*st));
        return;
    }
    st->capacity = g->t.capacity;
    st->used = g->t.used;
    st->evictions = g->evictions;
    st->reclaimed = g->reclaimed;
    st->resets = g->t.resets;
    tg_shm_table_unlock(&g->t);
}
