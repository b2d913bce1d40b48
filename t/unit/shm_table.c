/* Unit tests for src/shm_table.c: layout refuses a block too small for one
 * slot; add, find, remove; the recency list (insertion order, touch, oldest
 * first eviction by the owner); freed slots are reused before fresh ones; a
 * full table refuses; a collision-heavy table (every key in one bucket, and
 * keys sharing their 32-bit hash) keeps keys apart; the pass callback takes
 * entries back on the way; owner-compared keys; chains of raw slots; a
 * table laid out again on the same memory is kept; a holder that died
 * leaves the table emptied and a reset counted. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "shm_table.h"
#include "tap.h"

#define MAGIC 0x7473657474677400ULL

typedef struct {
    tg_shm_table_t t;
    uint64_t mine; /* an owner field */
} owner_t;

typedef struct {
    uint64_t key;
    uint64_t value;
} ent_t;

static void *shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static owner_t *table(size_t size)
{
    void *mem = shared(size);
    return tg_shm_table_init(mem, size, sizeof(owner_t), sizeof(ent_t), 8, MAGIC) == 0 ? mem : NULL;
}

static uint32_t find(owner_t *o, uint64_t k, uint64_t hash)
{
    return tg_shm_table_find(&o->t, hash, &k, NULL, NULL);
}

static uint32_t add(owner_t *o, uint64_t k, uint64_t hash, uint64_t v)
{
    uint32_t ref = tg_shm_table_add(&o->t, hash, &k);
    if (ref) ((ent_t *)tg_shm_table_data(&o->t, ref))->value = v;
    return ref;
}

static uint64_t value(owner_t *o, uint32_t ref)
{
    return ((ent_t *)tg_shm_table_data(&o->t, ref))->value;
}

static uint64_t key_of(owner_t *o, uint32_t ref)
{
    return ((ent_t *)tg_shm_table_data(&o->t, ref))->key;
}

static void test_layout(void)
{
    tg_shm_layout_t l;
    ok(tg_shm_table_layout(64, 64, 32, &l) == -1, "layout: a block holding only the header");
    ok(tg_shm_table_layout(64 + 4 + 31, 64, 32, &l) == -1, "layout: one byte short of a slot");
    ok(tg_shm_table_layout(4096, 64, 32, &l) == 0, "layout: 4 KB");
    ok((l.nbuckets & (l.nbuckets - 1)) == 0 && l.nbuckets <= l.capacity,
       "power-of-two buckets (%u), no more than slots (%u)", l.nbuckets, l.capacity);
    ok(l.slots_off + (size_t)l.capacity * 32 <= 4096 && l.slots_off % 64 == 0,
       "slots fit, aligned (off %zu)", l.slots_off);
    void *small = shared(4096);
    is_int(tg_shm_table_init(small, 100, sizeof(owner_t), sizeof(ent_t), 8, MAGIC), -1,
           "init refuses a block too small for one slot");
    is_int(tg_shm_table_init(small, 4096, sizeof(owner_t), 8, 16, MAGIC), -1,
           "init refuses a key longer than the data");
    munmap(small, 4096);
}

static void test_basic(void)
{
    owner_t *o = table(16384);
    tg_shm_table_t *t = &o->t;
    ok(o != NULL && t->slot_size == TG_SHM_SLOT_HEADER + sizeof(ent_t), "laid out, slot %u",
       o ? t->slot_size : 0);
    is_int(tg_shm_table_lock(t), 0, "lock");
    is_int(find(o, 1, 1), 0, "empty: not found");
    uint32_t a = add(o, 1, 1, 100), b = add(o, 2, 2, 200);
    ok(a && b && a != b, "two entries");
    ok(find(o, 1, 1) == a && find(o, 2, 2) == b, "found");
    ok(value(o, a) == 100 && value(o, b) == 200, "values kept");
    is_int(find(o, 3, 3), 0, "another key: not found");
    is_int(t->used, 2, "2 used");
    tg_shm_table_remove(t, a);
    ok(find(o, 1, 1) == 0 && find(o, 2, 2) == b, "removed one, the other stays");
    is_int(t->used, 1, "1 used");
    uint32_t c = add(o, 3, 3, 300);
    is_int(c, a, "a freed slot is reused before a fresh one");
    is_int(value(o, c), 300, "reused slot holds the new value");
    uint32_t d = add(o, 4, 4, 0);
    is_int(value(o, d), 0, "a new entry's value is zeroed");
    tg_shm_table_unlock(t);

    /* laid out again on the same memory (a reload): kept, owner fields too */
    o->mine = 42;
    is_int(tg_shm_table_init(o, 16384, sizeof(owner_t), sizeof(ent_t), 8, MAGIC), 1,
           "re-init on the same memory: kept");
    ok(o->mine == 42 && find(o, 2, 2) == b, "entries and owner fields survive");
    is_int(tg_shm_table_init(o, 16384, sizeof(owner_t), sizeof(ent_t) + 8, 8, MAGIC), 0,
           "another shape: laid out anew");
    ok(o->mine == 0 && t->used == 0 && find(o, 2, 2) == 0, "and empty");
    munmap(o, 16384);
}

static void test_lru_full(void)
{
    owner_t *o = table(4096);
    tg_shm_table_t *t = &o->t;
    uint32_t cap = t->capacity;
    ok(cap > 10, "4 KB: %u slots", cap);
    is_int(tg_shm_table_free_slots(t), cap, "all free");
    for (uint32_t i = 0; i < cap; i++)
        add(o, i, i * 0x9e3779b97f4a7c15ULL, i);
    is_int(t->used, cap, "full");
    is_int(tg_shm_table_free_slots(t), 0, "no free slot");
    is_int(add(o, 999999, 5, 0), 0, "a full table refuses a new entry");
    is_int(t->used, cap, "and still holds every key");

    /* insertion order; touch moves an entry to the new end */
    is_int(key_of(o, tg_shm_table_oldest(t)), 0, "oldest is the first added");
    tg_shm_table_touch(t, find(o, 0, 0));
    tg_shm_table_touch(t, find(o, 1, 0x9e3779b97f4a7c15ULL));
    uint32_t order_ok = 1, k = 2;
    for (uint32_t r = tg_shm_table_oldest(t); r; r = tg_shm_table_newer(t, r), k++)
        order_ok &= key_of(o, r) == (k < cap ? k : k - cap);
    ok(order_ok && k == cap + 2, "walk oldest to newest: 2..cap-1, then the touched 0, 1");

    /* the owner evicts the oldest three to make room for three new keys */
    for (uint64_t i = 0; i < 3; i++) {
        tg_shm_table_remove(t, tg_shm_table_oldest(t));
        ok(add(o, 1000 + i, 1000 + i, 0) != 0, "room made for key %llu",
           (unsigned long long)(1000 + i));
    }
    ok(find(o, 2, 2 * 0x9e3779b97f4a7c15ULL) == 0 && find(o, 4, 4 * 0x9e3779b97f4a7c15ULL) == 0,
       "the least recently used went");
    ok(find(o, 0, 0) && find(o, 1, 0x9e3779b97f4a7c15ULL) && find(o, 5, 5 * 0x9e3779b97f4a7c15ULL),
       "the touched ones and the next oldest stayed");
    tg_shm_table_clear(t);
    ok(t->used == 0 && tg_shm_table_free_slots(t) == cap && tg_shm_table_oldest(t) == 0,
       "clear empties");
    munmap(o, 4096);
}

/* ctx: remove odd values passed on the way */
static int pass_odd(tg_shm_table_t *t, uint32_t ref, void *ctx)
{
    if ((((ent_t *)tg_shm_table_data(t, ref))->value & 1) == 0) return 0;
    tg_shm_table_remove(t, ref);
    ++*(int *)ctx;
    return 1;
}

static void test_collisions(void)
{
    owner_t *o = table(64 * 1024);
    tg_shm_table_t *t = &o->t;
    /* every key the same bucket: the hash differs only above the mask */
    uint64_t step = (uint64_t)t->mask + 1;
    for (uint64_t i = 0; i < 200; i++)
        add(o, i, i * step, i);
    int all = 1;
    for (uint64_t i = 0; i < 200; i++)
        all &= find(o, i, i * step) != 0 && value(o, find(o, i, i * step)) == i;
    ok(all, "200 keys in one bucket: each found with its value");
    /* the same 32-bit hash: only the key bytes tell them apart */
    for (uint64_t i = 0; i < 50; i++)
        add(o, 5000 + i, 77, 5000 + i);
    all = 1;
    for (uint64_t i = 0; i < 50; i++)
        all &= value(o, find(o, 5000 + i, 77)) == 5000 + i;
    ok(all, "50 keys with one hash: kept apart by their key bytes");
    /* remove from the middle of a long chain */
    for (uint64_t i = 0; i < 200; i += 2)
        tg_shm_table_remove(t, find(o, i, i * step));
    all = 1;
    for (uint64_t i = 0; i < 200; i++)
        all &= (find(o, i, i * step) != 0) == (i & 1);
    ok(all, "every other one removed from the chain, the rest found");

    /* pass: entries met on the way may be removed by the owner */
    static const tg_shm_table_ops_t ops = {NULL, pass_odd};
    int removed = 0;
    uint64_t k = 1; /* the first key left in the bucket: the chain's far end */
    uint32_t r = tg_shm_table_find(t, step, &k, &ops, &removed);
    ok(r != 0 && key_of(o, r) == 1, "found at the end of the chain");
    ok(removed == 99 && t->used == 51, "the 99 odd entries passed were removed (%d), %u left",
       removed, t->used);
    munmap(o, 64 * 1024);
}

/* owner-compared keys: a NUL-terminated string in the data */
static int str_eq(tg_shm_table_t *t, uint32_t ref, const void *key, void *ctx)
{
    (void)ctx;
    return strcmp(tg_shm_table_data(t, ref), key) == 0;
}

static void test_chains(void)
{
    size_t size = 64 * 1024;
    void *mem = shared(size);
    ok(tg_shm_table_init(mem, size, sizeof(owner_t), 48, 0, MAGIC) == 0, "owner-keyed table");
    tg_shm_table_t *t = mem;
    static const tg_shm_table_ops_t ops = {str_eq, NULL};
    uint32_t a = tg_shm_table_add(t, 9, NULL), b = tg_shm_table_add(t, 9, NULL);
    strcpy(tg_shm_table_data(t, a), "alpha");
    strcpy(tg_shm_table_data(t, b), "beta");
    ok(tg_shm_table_find(t, 9, "alpha", &ops, NULL) == a &&
           tg_shm_table_find(t, 9, "beta", &ops, NULL) == b &&
           tg_shm_table_find(t, 9, "gamma", &ops, NULL) == 0,
       "keys compared by the owner's eq");

    char big[3000], back[3000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 31 + 7);
    uint32_t before = tg_shm_table_free_slots(t);
    uint32_t n = tg_shm_table_chain_slots(t, sizeof(big), 40);
    is_int(n, (sizeof(big) - 40 + t->slot_size - 4 - 1) / (t->slot_size - 4),
           "slots for 3000 bytes");
    is_int(tg_shm_table_chain_slots(t, 40, 40), 0, "none when it fits inline");
    tg_shm_span_t s = {(char *)tg_shm_table_data(t, a) + 8, 40, tg_shm_table_chain_take(t, n)};
    ok(s.chain != 0 && tg_shm_table_free_slots(t) == before - n, "chain of %u raw slots", n);
    tg_shm_span_io(t, &s, 0, big, sizeof(big), TG_SHM_SPAN_WRITE);
    tg_shm_span_io(t, &s, 0, back, sizeof(back), TG_SHM_SPAN_READ);
    ok(memcmp(big, back, sizeof(big)) == 0, "written and read back across slots");
    ok(tg_shm_span_io(t, &s, 0, big, sizeof(big), TG_SHM_SPAN_CMP) == 0, "compares equal");
    big[2000] ^= 1;
    ok(tg_shm_span_io(t, &s, 0, big, sizeof(big), TG_SHM_SPAN_CMP) != 0, "a byte differs");
    tg_shm_span_io(t, &s, 1990, back, 20, TG_SHM_SPAN_READ);
    ok(memcmp(back, big + 1990, 10) == 0 && back[10] != big[2000], "read at an offset");
    ok(strcmp(tg_shm_table_data(t, a), "alpha") == 0 && tg_shm_table_find(t, 9, "beta", &ops, NULL),
       "entries untouched by their neighbours' chains");
    tg_shm_table_chain_free(t, s.chain);
    is_int(tg_shm_table_free_slots(t), before, "chain freed: slots back");
    is_int(tg_shm_table_chain_take(t, tg_shm_table_free_slots(t) + 1), 0,
           "a chain longer than the free slots is refused");
    is_int(tg_shm_table_free_slots(t), before, "and takes nothing");
    munmap(mem, size);
}

static void test_dead_holder(void)
{
    owner_t *o = table(16384);
    tg_shm_table_t *t = &o->t;
    tg_shm_table_lock(t);
    add(o, 1, 1, 1);
    tg_shm_table_unlock(t);
    pid_t pid = fork();
    if (pid == 0) {
        tg_shm_table_lock(t);
        add(o, 2, 2, 2);
        _exit(0); /* dies holding the lock */
    }
    int st;
    waitpid(pid, &st, 0);
    is_int(tg_shm_table_lock(t), 1, "the next locker learns the holder died");
    ok(t->used == 0 && find(o, 1, 1) == 0 && t->resets == 1, "table emptied, reset counted");
    ok(add(o, 3, 3, 3) && find(o, 3, 3), "usable again");
    tg_shm_table_unlock(t);
    is_int(tg_shm_table_lock(t), 0, "consistent again");
    tg_shm_table_unlock(t);
    munmap(o, 16384);
}

int main(void)
{
    test_layout();
    test_basic();
    test_lru_full();
    test_collisions();
    test_chains();
    test_dead_holder();
    return done_testing();
}
