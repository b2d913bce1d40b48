/* The shared hash table (see shm_table.h).
 *
 * A slot starts with a 16-byte link header (tg_shm_slot_t). A raw slot of a chain is a 4-byte link
 * to the next raw slot, then data. Free slots come from the free list first, then from the never
 * used tail [hw, capacity), so fresh memory is touched only as the table fills. */
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include "shm_table.h"

typedef tg_shm_slot_t slot_t;

#define RAW_LINK sizeof(uint32_t) /* bytes of a raw slot before its data */

_Static_assert(sizeof(slot_t) == TG_SHM_SLOT_HEADER, "the link header is 16 bytes");

static inline slot_t *S(tg_shm_table_t *t, uint32_t ref)
{
    return (slot_t *)tg_shm_table_slot(t, ref);
}

static inline uint32_t *buckets(tg_shm_table_t *t)
{
    return (uint32_t *)((char *)t + t->buckets_off);
}

int tg_shm_table_layout(size_t size, size_t header, size_t slot, tg_shm_layout_t *l)
{
    size_t hdr = tg_shm_align(header, 64);
    if (size < hdr + sizeof(uint32_t) + slot) return -1;
    size_t est = (size - hdr) / (slot + sizeof(uint32_t));
    size_t nb = 1;
    while (nb * 2 <= est && nb * 2 <= ((size_t)1 << 31))
        nb *= 2;
    size_t soff = hdr + tg_shm_align(nb * sizeof(uint32_t), 64);
    if (size < soff + slot) return -1;
    size_t cap = (size - soff) / slot;
    l->buckets_off = hdr;
    l->slots_off = soff;
    l->nbuckets = (uint32_t)nb;
    l->capacity = cap > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)cap;
    return 0;
}

void tg_shm_hash_seed(uint64_t seed[2], const void *mem)
{
    if (getrandom(seed, 2 * sizeof(uint64_t), 0) == (ssize_t)(2 * sizeof(uint64_t))) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL;
    seed[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)mem;
}

void tg_shm_table_clear(tg_shm_table_t *t)
{
    memset(buckets(t), 0, ((size_t)t->mask + 1) * sizeof(uint32_t));
    t->hw = t->free_head = t->nfree = t->head = t->tail = t->used = 0;
}

int tg_shm_table_init(void *mem, size_t size, size_t header, size_t data, size_t key_size,
                      uint64_t magic)
{
    tg_shm_table_t *t = mem;
    size_t slot = TG_SHM_SLOT_HEADER + tg_shm_align(data, 8);
    if (key_size > data || slot > UINT32_MAX || header < sizeof(*t)) return -1;
    if (t->magic == magic && t->size == size && t->slot_size == slot && t->key_size == key_size)
        return 1; /* kept from the previous config generation */
    tg_shm_layout_t l;
    if (tg_shm_table_layout(size, header, slot, &l) != 0) return -1;
    memset(t, 0, l.buckets_off);
    if (tg_shm_mutex_init(&t->lock) != 0) return -1;
    tg_shm_hash_seed(t->seed, mem);
    t->size = size;
    t->mask = l.nbuckets - 1;
    t->capacity = l.capacity;
    t->slot_size = (uint32_t)slot;
    t->key_size = (uint32_t)key_size;
    t->buckets_off = l.buckets_off;
    t->slots_off = l.slots_off;
    tg_shm_table_clear(t);
    t->magic = magic;
    return 0;
}

/* The lock was taken from a holder that died: what it guarded may be half
 * written, so the table starts empty. */
void tg_shm_table_recovered(tg_shm_table_t *t)
{
    tg_shm_table_clear(t);
    t->resets++;
}

/* ---- slots -------------------------------------------------------------------------------- */

static uint32_t slot_take(tg_shm_table_t *t)
{
    uint32_t ref = t->free_head;
    if (ref) {
        t->free_head = S(t, ref)->chain;
        t->nfree--;
        return ref;
    }
    return t->hw < t->capacity ? ++t->hw : 0;
}

static void slot_give(tg_shm_table_t *t, uint32_t ref)
{
    S(t, ref)->chain = t->free_head;
    t->free_head = ref;
    t->nfree++;
}

/* ---- the recency list --------------------------------------------------------------------- */

static void lru_unlink(tg_shm_table_t *t, uint32_t ref)
{
    slot_t *s = S(t, ref);
    if (s->prev)
        S(t, s->prev)->next = s->next;
    else
        t->head = s->next;
    if (s->next)
        S(t, s->next)->prev = s->prev;
    else
        t->tail = s->prev;
}

static void lru_push(tg_shm_table_t *t, uint32_t ref)
{
    slot_t *s = S(t, ref);
    s->prev = 0;
    s->next = t->head;
    if (t->head)
        S(t, t->head)->prev = ref;
    else
        t->tail = ref;
    t->head = ref;
}

void tg_shm_table_move_to_head(tg_shm_table_t *t, uint32_t ref)
{
    lru_unlink(t, ref);
    lru_push(t, ref);
}

/* ---- the index ---------------------------------------------------------------------------- */

/* The key compare of a find. A 128-bit hash as the key (gcra_table,
 * limit_conn) is two word compares, not a call to memcmp: it runs for every
 * rate-limited request. */
static inline int key_eq(tg_shm_table_t *t, const void *data, const void *key, uint32_t ref,
                         const tg_shm_table_ops_t *ops, void *ctx)
{
    if (t->key_size == 16) {
        uint64_t a[2], b[2];
        memcpy(a, data, 16);
        memcpy(b, key, 16);
        return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
    }
    return t->key_size ? memcmp(data, key, t->key_size) == 0 : ops->eq(t, ref, key, ctx);
}

uint32_t tg_shm_table_find(tg_shm_table_t *t, uint64_t hash, const void *key,
                           const tg_shm_table_ops_t *ops, void *ctx)
{
    uint32_t h32 = (uint32_t)hash;
    uint32_t *pp = &buckets(t)[h32 & t->mask];
    while (*pp) {
        uint32_t ref = *pp;
        slot_t *s = S(t, ref);
        if (s->hash == h32 && key_eq(t, s + 1, key, ref, ops, ctx)) return ref;
        /* a removed entry was unlinked: *pp already holds its successor */
        if (ops == NULL || ops->pass == NULL || ops->pass(t, ref, ctx) == 0) pp = &s->chain;
    }
    return 0;
}

uint32_t tg_shm_table_add(tg_shm_table_t *t, uint64_t hash, const void *key)
{
    uint32_t ref = slot_take(t);
    if (ref == 0) return 0;
    slot_t *s = S(t, ref);
    uint32_t *b = &buckets(t)[(uint32_t)hash & t->mask];
    s->hash = (uint32_t)hash;
    s->chain = *b;
    *b = ref;
    lru_push(t, ref);
    char *d = (char *)(s + 1);
    if (t->key_size) memcpy(d, key, t->key_size);
    memset(d + t->key_size, 0, t->slot_size - TG_SHM_SLOT_HEADER - t->key_size);
    t->used++;
    return ref;
}

void tg_shm_table_remove(tg_shm_table_t *t, uint32_t ref)
{
    slot_t *s = S(t, ref);
    uint32_t *pp = &buckets(t)[s->hash & t->mask];
    while (*pp && *pp != ref)
        pp = &S(t, *pp)->chain;
    if (*pp == ref) *pp = s->chain;
    lru_unlink(t, ref);
    slot_give(t, ref);
    t->used--;
}

/* ---- chains of raw slots ------------------------------------------------------------------ */

static inline uint32_t *raw_link(tg_shm_table_t *t, uint32_t ref)
{
    return (uint32_t *)tg_shm_table_slot(t, ref);
}

uint32_t tg_shm_table_chain_slots(tg_shm_table_t *t, size_t len, size_t inl_len)
{
    size_t room = t->slot_size - RAW_LINK;
    return len <= inl_len ? 0 : (uint32_t)((len - inl_len + room - 1) / room);
}

uint32_t tg_shm_table_chain_take(tg_shm_table_t *t, uint32_t n)
{
    if (tg_shm_table_free_slots(t) < n) return 0;
    uint32_t first = 0, *link = &first;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ref = slot_take(t);
        *link = ref;
        link = raw_link(t, ref);
    }
    *link = 0;
    return first;
}

void tg_shm_table_chain_free(tg_shm_table_t *t, uint32_t chain)
{
    while (chain) {
        uint32_t next = *raw_link(t, chain);
        slot_give(t, chain);
        chain = next;
    }
}

void tg_shm_table_chain_link(tg_shm_table_t *t, uint32_t last, uint32_t more)
{
    *raw_link(t, last) = more;
}

uint32_t tg_shm_table_chain_last(tg_shm_table_t *t, uint32_t chain)
{
    while (chain && *raw_link(t, chain))
        chain = *raw_link(t, chain);
    return chain;
}

int tg_shm_table_is_entry(tg_shm_table_t *t, uint32_t ref)
{
    if (ref == 0 || ref > t->hw) return 0;
    for (uint32_t r = buckets(t)[S(t, ref)->hash & t->mask]; r; r = S(t, r)->chain)
        if (r == ref) return 1;
    return 0;
}

uint32_t tg_shm_table_bucket_first(tg_shm_table_t *t, uint64_t hash)
{
    return buckets(t)[(uint32_t)hash & t->mask];
}

uint32_t tg_shm_table_bucket_next(tg_shm_table_t *t, uint32_t ref)
{
    return S(t, ref)->chain;
}

int tg_shm_span_io(tg_shm_table_t *t, const tg_shm_span_t *s, size_t off, void *buf, size_t len,
                   tg_shm_span_op_t op)
{
    char *p = s->inl, *b = buf;
    size_t room = s->inl_len;
    uint32_t next = s->chain;
    while (len) {
        if (off >= room) {
            off -= room;
            p = tg_shm_table_slot(t, next) + RAW_LINK;
            next = *raw_link(t, next);
            room = t->slot_size - RAW_LINK;
            continue;
        }
        size_t n = room - off < len ? room - off : len;
        if (op == TG_SHM_SPAN_CMP) {
            if (memcmp(p + off, b, n) != 0) return 1;
        } else if (op == TG_SHM_SPAN_READ) {
            memcpy(b, p + off, n);
        } else {
            memcpy(p + off, b, n);
        }
        b += n;
        len -= n;
        off += n;
    }
    return 0;
}
