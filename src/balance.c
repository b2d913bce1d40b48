/* Load balancing: choosing a peer of an upstream for one attempt, and passive
 * health (max_fails within fail_timeout).
 *
 * Every pick first narrows the peers to the candidates: available and not yet
 * tried by this request, primaries only unless none is left, then backups.
 * The method then chooses among those candidates only, so a retry can never
 * land on a peer the request already used. Candidate sets are 64-bit masks
 * (TG_UPSTREAM_MAX_PEERS is 64), which keeps a pick O(npeers) with no
 * allocation; hash balancing adds an O(log ring) search of a ring built once
 * by tg_balance_init from the config arena.
 *
 * All state written here (current_weight, conns, fails, down_until, rr_seed)
 * is per worker, so nothing is locked. */
#include <stdatomic.h>
#include <stdlib.h>

#include "upstream.h"

/* Points on the consistent-hash ring per unit of weight, as in ketama: enough
 * that each peer owns many small arcs, so shares come out close to even and a
 * new peer takes a little from every existing one. */
#define TG_RING_POINTS_PER_WEIGHT 160
/* A ring larger than this (16 MiB of points) gets fewer points per unit of
 * weight instead, so a config with huge weights cannot exhaust memory. */
#define TG_RING_MAX_POINTS (1 << 20)
/* Keeps sums of weights and current_weight far from int overflow with 64 peers. */
#define TG_BALANCE_MAX_WEIGHT 1000000

typedef struct {
    uint64_t hash;
    int peer; /* index into u->peers */
} tg_ring_point_t;

struct tg_hash_ring_s {
    size_t npoints;
    tg_ring_point_t points[]; /* sorted by hash, then peer */
};

/* FNV-1a (tg_hash64, whose values t/unit/str.c pins: ring positions decide
 * where keys live) followed by the murmur3 finalizer. FNV alone barely
 * changes the high bits between keys like "user1" and "user2", which would
 * bunch them on the ring; the finalizer spreads every input bit across the
 * whole word. */
static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t key_hash(tg_str_t key)
{
    return mix64(tg_hash64(key.p, key.p ? key.len : 0));
}

/* A ring point depends only on the peer's name and the point number, never on
 * the peer's position or its neighbours, so adding or removing a server moves
 * only the keys on that server's own arcs. mix64 is a bijection, so distinct
 * point numbers of one peer never collide. */
static uint64_t point_hash(uint64_t name_hash, uint64_t point)
{
    return mix64(name_hash + (point + 1) * 0x9e3779b97f4a7c15ULL);
}

static int ring_point_cmp(const void *a, const void *b)
{
    const tg_ring_point_t *x = a, *y = b;

    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return (x->peer > y->peer) - (x->peer < y->peer);
}

/* One step of xorshift32 on the upstream's own state, so random balancing is
 * reproducible per upstream and needs no global RNG. The odd multiplier mixes
 * the output, whose high bits are what the caller uses. */
static uint32_t next_random(tg_upstream_t *u)
{
    uint32_t x = u->rr_seed;

    if (x == 0) x = 0x9e3779b9u; /* xorshift never leaves 0 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    u->rr_seed = x;
    return x * 0x2c1b3c6du;
}

int tg_balance_is_available(const tg_peer_t *p, tg_msec_t now)
{
    return !p->absent && !p->drained && !p->health_down && now >= p->down_until &&
           (p->gate == NULL || atomic_load_explicit(&p->gate->open, memory_order_acquire));
}

void tg_balance_take(tg_peer_t *p)
{
    p->conns++;
    if (p->gate)
        atomic_fetch_add(&p->gate->inflight, 1);
}

tg_peer_gauge_t tg_balance_peer_gauge(const tg_peer_t *p, tg_msec_t now)
{
    /* health only: a drained or absent server is not down */
    return (tg_peer_gauge_t){p->conns, p->health_down         ? TG_PEER_DOWN_ACTIVE
                                       : now < p->down_until ? TG_PEER_DOWN_PASSIVE
                                                             : TG_PEER_UP};
}

static int npeers_of(const tg_upstream_t *u)
{
    return u->npeers < TG_UPSTREAM_MAX_PEERS ? u->npeers : TG_UPSTREAM_MAX_PEERS;
}

/* Split the untried, available peers into primary and backup masks. */
static void candidates(const tg_upstream_t *u, uint64_t tried, tg_msec_t now, uint64_t *primary,
                       uint64_t *backup)
{
    int n = npeers_of(u);

    *primary = 0;
    *backup = 0;
    for (int i = 0; i < n; i++) {
        const tg_peer_t *p = &u->peers[i];
        uint64_t bit = 1ULL << i;

        if ((tried & bit) || !tg_balance_is_available(p, now)) continue;
        if (p->backup)
            *backup |= bit;
        else
            *primary |= bit;
    }
}

/* nginx's smooth weighted round robin over the peers in `mask` (not empty):
 * each candidate gains its weight, the largest wins and pays back the total.
 * Peers outside the mask keep their current_weight, so a peer that was down
 * rejoins without a burst. */
static tg_peer_t *pick_rr(tg_upstream_t *u, uint64_t mask)
{
    tg_peer_t *best = NULL;
    int total = 0, n = npeers_of(u);

    for (int i = 0; i < n; i++) {
        tg_peer_t *p = &u->peers[i];

        if (!(mask & (1ULL << i))) continue;
        p->current_weight += p->weight;
        total += p->weight;
        if (best == NULL || p->current_weight > best->current_weight) best = p;
    }
    best->current_weight -= total;
    return best;
}

/* Fewest in-flight requests per unit of weight, compared as conns_a * w_b <
 * conns_b * w_a so no division rounds away a difference. Equal peers share the
 * load by smooth round robin rather than always favouring the first. */
static tg_peer_t *pick_least_conn(tg_upstream_t *u, uint64_t mask)
{
    tg_peer_t *best = NULL;
    uint64_t ties = 0;
    int n = npeers_of(u);

    for (int i = 0; i < n; i++) {
        tg_peer_t *p = &u->peers[i];
        int64_t lhs, rhs;

        if (!(mask & (1ULL << i))) continue;
        if (best == NULL) {
            best = p;
            ties = 1ULL << i;
            continue;
        }
        lhs = (int64_t)p->conns * best->weight;
        rhs = (int64_t)best->conns * p->weight;
        if (lhs < rhs) {
            best = p;
            ties = 1ULL << i;
        } else if (lhs == rhs) {
            ties |= 1ULL << i;
        }
    }
    if (ties & (ties - 1)) return pick_rr(u, ties);
    return best;
}

/* Weighted random: a point in [0, total weight) maps to the peer whose slice
 * holds it. The high bits of the random word pick the point (multiply-shift),
 * avoiding the modulo bias toward low values. */
static tg_peer_t *pick_random(tg_upstream_t *u, uint64_t mask)
{
    tg_peer_t *last = NULL;
    int64_t total = 0, point;
    int n = npeers_of(u);

    for (int i = 0; i < n; i++)
        if (mask & (1ULL << i)) total += u->peers[i].weight;
    point = (int64_t)(((uint64_t)next_random(u) * (uint64_t)total) >> 32);
    for (int i = 0; i < n; i++) {
        if (!(mask & (1ULL << i))) continue;
        last = &u->peers[i];
        point -= last->weight;
        if (point < 0) break;
    }
    return last;
}

/* First ring point at or after hash(key), wrapping, whose peer is in `mask`
 * (the caller checked that the mask holds at least one ringed peer, so the
 * walk ends). Walking on rather than rehashing sends a down or already tried
 * peer's keys to its ring successors, while every other key stays put. */
static tg_peer_t *pick_hash(tg_upstream_t *u, tg_str_t key, uint64_t mask)
{
    const tg_hash_ring_t *ring = u->ring;
    uint64_t h = key_hash(key);
    size_t lo = 0, hi = ring->npoints;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ring->points[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = 0; i < ring->npoints; i++) {
        int peer = ring->points[(lo + i) % ring->npoints].peer;

        if (mask & (1ULL << peer)) return &u->peers[peer];
    }
    return NULL;
}

tg_peer_t *tg_balance_pick(tg_upstream_t *u, tg_str_t key, uint64_t *tried, tg_msec_t now)
{
    uint64_t none = 0, primary, backup, mask;
    tg_peer_t *p;

    if (tried == NULL) tried = &none;
    candidates(u, *tried, now, &primary, &backup);
    mask = primary ? primary : backup;
    if (mask == 0) return NULL;

    switch (u->balance) {
    case TG_BALANCE_LEAST_CONN:
        p = pick_least_conn(u, mask);
        break;
    case TG_BALANCE_RANDOM:
        p = pick_random(u, mask);
        break;
    case TG_BALANCE_HASH:
        /* The ring holds primaries only: backups carry no key affinity and
         * share the load by round robin once every primary is out. */
        p = NULL;
        if (primary && u->ring && u->ring->npoints) p = pick_hash(u, key, primary);
        if (p == NULL) p = pick_rr(u, mask);
        break;
    case TG_BALANCE_ROUND_ROBIN:
    default:
        p = pick_rr(u, mask);
        break;
    }

    *tried |= 1ULL << (p - u->peers);
    tg_balance_take(p);
    return p;
}

void tg_balance_done(tg_upstream_t *u, tg_peer_t *p, int failed, tg_msec_t now)
{
    (void)u;
    if (p->conns > 0) p->conns--;
    if (p->gate) atomic_fetch_sub(&p->gate->inflight, 1);

    /* Results that arrive while the peer is down come from attempts started
     * before it went down: they say nothing new, and counting them would
     * either start a bogus window or clear the one that just expired. */
    if (p->max_fails <= 0 || now < p->down_until) return;

    if (!failed) {
        p->fails = 0;
        return;
    }
    /* The window opens at the first failure, not at a fixed grid, so
     * max_fails failures closer together than fail_timeout always trip it. */
    if (p->fails == 0 || now - p->fail_start > p->fail_timeout) {
        p->fails = 0;
        p->fail_start = now;
    }
    if (++p->fails >= p->max_fails) {
        p->down_until = now + p->fail_timeout;
        p->fails = 0;
    }
}

/* Build the ring from the primaries; u->ring stays NULL when there are none
 * (pick then falls back to round robin over the backups). */
static int build_ring(tg_upstream_t *u, tg_arena_t *a)
{
    tg_hash_ring_t *ring;
    int64_t total_weight = 0, per_weight = TG_RING_POINTS_PER_WEIGHT;
    size_t npoints = 0, k = 0;

    for (int i = 0; i < u->npeers; i++)
        if (!u->peers[i].backup) total_weight += u->peers[i].weight;
    if (total_weight == 0) return 0;
    if (total_weight * per_weight > TG_RING_MAX_POINTS) {
        per_weight = TG_RING_MAX_POINTS / total_weight;
        if (per_weight < 1) per_weight = 1;
    }
    npoints = (size_t)(total_weight * per_weight);

    ring = tg_arena_alloc(a, sizeof(*ring) + npoints * sizeof(ring->points[0]));
    if (ring == NULL) return -1;
    for (int i = 0; i < u->npeers; i++) {
        const tg_peer_t *p = &u->peers[i];
        uint64_t name_hash;
        int64_t count = p->weight * per_weight;

        if (p->backup) continue;
        name_hash = tg_hash64(p->name.p, p->name.p ? p->name.len : 0);
        if (p->dynamic) /* a resolve server's slots share its name: one arc set each */
            name_hash = mix64(name_hash + (uint64_t)i + 1);
        for (int64_t j = 0; j < count; j++) {
            ring->points[k].hash = point_hash(name_hash, (uint64_t)j);
            ring->points[k].peer = i;
            k++;
        }
    }
    ring->npoints = k;
    /* Config time only; the tie-break on peer index makes the order (and so
     * the key mapping) identical in every worker and after every reload. */
    qsort(ring->points, ring->npoints, sizeof(ring->points[0]), ring_point_cmp);
    u->ring = ring;
    return 0;
}

/* Validates the peer list (at most TG_UPSTREAM_MAX_PEERS, weights in
 * 1..TG_BALANCE_MAX_WEIGHT), clears all runtime state, builds the hash ring
 * when balance is hash, and seeds random balancing from the upstream name
 * unless rr_seed was already set. Returns 0, or -1 on invalid peers or when
 * the arena is out of memory. */
int tg_balance_init(tg_upstream_t *u, tg_arena_t *a)
{
    if (u->npeers < 0 || u->npeers > TG_UPSTREAM_MAX_PEERS || (u->npeers > 0 && !u->peers))
        return -1;

    for (int i = 0; i < u->npeers; i++) {
        tg_peer_t *p = &u->peers[i];

        if (p->weight < 1 || p->weight > TG_BALANCE_MAX_WEIGHT) return -1;
        p->index = i;
        p->current_weight = 0;
        p->conns = 0;
        p->fails = 0;
        p->fail_start = 0;
        p->down_until = 0;
        p->health_down = 0;
        p->hc_fails = 0;
        p->hc_passes = 0;
    }

    u->ring = NULL;
    if (u->balance == TG_BALANCE_HASH && build_ring(u, a) < 0) return -1;

    if (u->rr_seed == 0) {
        u->rr_seed = (uint32_t)key_hash(u->name);
        if (u->rr_seed == 0) u->rr_seed = 1;
    }
    return 0;
}
