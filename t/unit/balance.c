/* Unit tests for src/balance.c: every balancing method, the tried mask,
 * backups, and passive health, checked against exact sequences where the
 * algorithm is deterministic and against tolerances where it is statistical.
 *
 * Built alone with src/balance.c, so it carries its own TAP helpers and weak
 * test stand-ins for the arena (when linked with src/arena.c the real arena
 * wins):
 *   gcc -std=gnu11 -Wall -Wextra -O1 -g -fsanitize=address,undefined -Isrc \
 *       t/unit/balance.c src/balance.c -o /tmp/unit-balance && /tmp/unit-balance */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

#ifndef TG_TAP_H
#define TG_TAP_H
/* Minimal TAP: one line per assertion, the plan printed by done_testing(). */
static int tap_n, tap_failed;

static int tap_vok(int pass, const char *fmt, va_list ap)
{
    tap_n++;
    if (!pass) tap_failed++;
    printf("%sok %d - ", pass ? "" : "not ", tap_n);
    vprintf(fmt, ap);
    printf("\n");
    return pass;
}

__attribute__((format(printf, 2, 3))) static int ok(int pass, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tap_vok(pass, fmt, ap);
    va_end(ap);
    return pass;
}

__attribute__((format(printf, 3, 4))) static int is_int(long long got, long long want,
                                                        const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    tap_vok(got == want, fmt, ap);
    va_end(ap);
    if (got != want) printf("#   got: %lld\n#  want: %lld\n", got, want);
    return got == want;
}

static int done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}
#endif

/* Test stand-ins for src/arena.c, weak so the real arena replaces them when it
 * is linked in. Each allocation is its own calloc'd block on a->head, which is
 * all tg_balance_init needs. */
struct tg_arena_block_s {
    struct tg_arena_block_s *next;
    max_align_t data[];
};

__attribute__((weak)) void tg_arena_init(tg_arena_t *a, size_t limit)
{
    memset(a, 0, sizeof(*a));
    a->limit = limit;
}

__attribute__((weak)) void *tg_arena_alloc(tg_arena_t *a, size_t size)
{
    struct tg_arena_block_s *b = calloc(1, sizeof(*b) + size);

    if (b == NULL) return NULL;
    b->next = a->head;
    a->head = b;
    a->total += size;
    return b->data;
}

__attribute__((weak)) void tg_arena_destroy(tg_arena_t *a)
{
    while (a->head) {
        struct tg_arena_block_s *b = a->head;

        a->head = b->next;
        free(b);
    }
    a->total = 0;
}

#define MAXP 8

/* An upstream with up to MAXP peers named "10.0.0.N:80"; the names live in
 * the fixture so tg_str_t views stay valid. */
typedef struct {
    tg_upstream_t u;
    tg_peer_t peers[TG_UPSTREAM_MAX_PEERS + 1];
    char names[TG_UPSTREAM_MAX_PEERS + 1][32];
    tg_arena_t arena;
} fixture_t;

static void fx_setup(fixture_t *f, tg_balance_t balance, int n, const int *weights)
{
    memset(f, 0, sizeof(*f));
    f->u.name = TG_STR("api");
    f->u.peers = f->peers;
    f->u.npeers = n;
    f->u.balance = balance;
    for (int i = 0; i < n; i++) {
        snprintf(f->names[i], sizeof(f->names[i]), "10.0.0.%d:80", i + 1);
        f->peers[i].name = tg_str_c(f->names[i]);
        f->peers[i].weight = weights ? weights[i] : 1;
    }
    tg_arena_init(&f->arena, 0);
}

static int fx_init(fixture_t *f)
{
    return tg_balance_init(&f->u, &f->arena);
}

static void fx_free(fixture_t *f)
{
    tg_arena_destroy(&f->arena);
}

/* One complete attempt: pick with a fresh tried mask, end it as a success.
 * Returns the peer index, or -1 for NULL. */
static int pick_once(fixture_t *f, tg_str_t key, tg_msec_t now)
{
    uint64_t tried = 0;
    tg_peer_t *p = tg_balance_pick(&f->u, key, &tried, now);

    if (p == NULL) return -1;
    tg_balance_done(&f->u, p, 0, now);
    return (int)(p - f->peers);
}

static tg_str_t keyf(char *buf, size_t size, int i)
{
    int n = snprintf(buf, size, "user-%d", i);

    return (tg_str_t){buf, (size_t)n};
}

static void test_init(void)
{
    fixture_t f;
    int w[3] = {1, 1, 1};

    fx_setup(&f, TG_BALANCE_ROUND_ROBIN, TG_UPSTREAM_MAX_PEERS + 1, NULL);
    for (int i = 0; i < TG_UPSTREAM_MAX_PEERS + 1; i++)
        f.peers[i].weight = 1;
    is_int(fx_init(&f), -1, "init: more than TG_UPSTREAM_MAX_PEERS peers is refused");
    f.u.npeers = TG_UPSTREAM_MAX_PEERS;
    is_int(fx_init(&f), 0, "init: exactly TG_UPSTREAM_MAX_PEERS peers is accepted");
    fx_free(&f);

    fx_setup(&f, TG_BALANCE_ROUND_ROBIN, 3, w);
    f.peers[1].weight = 0;
    is_int(fx_init(&f), -1, "init: weight 0 is refused");
    fx_free(&f);

    fx_setup(&f, TG_BALANCE_RANDOM, 3, w);
    f.peers[0].conns = 7;
    f.peers[0].fails = 2;
    f.peers[0].down_until = 99999;
    f.peers[1].health_down = 1;
    f.peers[2].current_weight = 5;
    f.peers[2].index = 42;
    is_int(fx_init(&f), 0, "init: succeeds");
    ok(f.peers[0].conns == 0 && f.peers[0].fails == 0 && f.peers[0].down_until == 0 &&
           !f.peers[1].health_down && f.peers[2].current_weight == 0,
       "init: runtime fields are reset");
    is_int(f.peers[2].index, 2, "init: index is the position in peers[]");
    ok(f.u.rr_seed != 0, "init: random seed derived from the name");
    ok(f.u.ring == NULL, "init: no ring unless balance is hash");
    fx_free(&f);
}

static void test_round_robin(void)
{
    fixture_t f;
    int w[3] = {5, 1, 1};
    const char *want = "aabacaaaabacaa";
    char got[15] = {0};
    int counts[3] = {0};

    fx_setup(&f, TG_BALANCE_ROUND_ROBIN, 3, w);
    fx_init(&f);
    for (int i = 0; i < 14; i++) {
        int k = pick_once(&f, TG_NULL_STR, 0);

        got[i] = k < 0 ? '-' : (char)('a' + k);
    }
    ok(strcmp(got, want) == 0, "rr: 5,1,1 gives the smooth sequence %s (got %s)", want, got);

    for (int i = 0; i < 7000; i++)
        counts[pick_once(&f, TG_NULL_STR, 0)]++;
    ok(counts[0] == 5000 && counts[1] == 1000 && counts[2] == 1000,
       "rr: 7000 picks split 5000/1000/1000 (got %d/%d/%d)", counts[0], counts[1], counts[2]);
    ok(f.peers[0].conns == 0 && f.peers[1].conns == 0 && f.peers[2].conns == 0,
       "rr: done() returns conns to 0");
    fx_free(&f);
}

static void test_tried(void)
{
    fixture_t f;
    uint64_t tried = 0;
    tg_peer_t *p[4];

    fx_setup(&f, TG_BALANCE_ROUND_ROBIN, 3, NULL);
    fx_init(&f);
    for (int i = 0; i < 4; i++)
        p[i] = tg_balance_pick(&f.u, TG_NULL_STR, &tried, 0);
    ok(p[0] && p[1] && p[2] && p[0] != p[1] && p[1] != p[2] && p[0] != p[2],
       "tried: three attempts reach three distinct peers");
    ok(p[3] == NULL, "tried: NULL once every peer was tried");
    is_int((long long)tried, 7, "tried: the mask has a bit per chosen peer");
    ok(f.peers[0].conns == 1 && f.peers[1].conns == 1 && f.peers[2].conns == 1,
       "tried: pick counts an in-flight request per peer");
    for (int i = 0; i < 3; i++)
        tg_balance_done(&f.u, p[i], 0, 0);

    for (int i = 0; i < 20; i++) {
        tried = 1ULL << 1;
        p[0] = tg_balance_pick(&f.u, TG_NULL_STR, &tried, 0);
        if (p[0] == &f.peers[1]) break;
        tg_balance_done(&f.u, p[0], 0, 0);
    }
    ok(p[0] != &f.peers[1], "tried: a pre-set bit keeps that peer out of 20 picks");
    ok(tg_balance_pick(&f.u, TG_NULL_STR, NULL, 0) != NULL, "tried: a NULL mask is allowed");
    fx_free(&f);
}

static void test_backup(void)
{
    fixture_t f;
    uint64_t tried;
    int used_backup = 0;
    tg_peer_t *p;

    fx_setup(&f, TG_BALANCE_ROUND_ROBIN, 3, NULL);
    f.peers[2].backup = 1;
    fx_init(&f);
    for (int i = 0; i < 100; i++)
        used_backup += pick_once(&f, TG_NULL_STR, 0) == 2;
    is_int(used_backup, 0, "backup: unused while primaries are up");

    f.peers[0].health_down = 1;
    is_int(pick_once(&f, TG_NULL_STR, 0), 1, "backup: unused while one primary is left");
    f.peers[1].down_until = 5000;
    is_int(pick_once(&f, TG_NULL_STR, 1000), 2, "backup: used when every primary is down");
    is_int(pick_once(&f, TG_NULL_STR, 5000), 1, "backup: dropped when a primary comes back");

    f.peers[0].health_down = 0;
    tried = 0;
    p = tg_balance_pick(&f.u, TG_NULL_STR, &tried, 5000);
    p = tg_balance_pick(&f.u, TG_NULL_STR, &tried, 5000);
    ok(p && !p->backup, "backup: second attempt still goes to a primary");
    p = tg_balance_pick(&f.u, TG_NULL_STR, &tried, 5000);
    ok(p == &f.peers[2], "backup: used once every primary was tried");
    ok(tg_balance_pick(&f.u, TG_NULL_STR, &tried, 5000) == NULL,
       "backup: NULL once the backup was tried too");
    fx_free(&f);
}

static void test_passive(void)
{
    fixture_t f;
    tg_peer_t *p;

    fx_setup(&f, TG_BALANCE_ROUND_ROBIN, 2, NULL);
    for (int i = 0; i < 2; i++) {
        f.peers[i].max_fails = 3;
        f.peers[i].fail_timeout = 10000;
    }
    fx_init(&f);
    p = &f.peers[0];

    tg_balance_done(&f.u, p, 1, 1000);
    tg_balance_done(&f.u, p, 1, 2000);
    ok(tg_balance_is_available(p, 2000), "passive: up after 2 failures of 3");
    tg_balance_done(&f.u, p, 1, 3000);
    ok(!tg_balance_is_available(p, 3000), "passive: down after 3 failures within 10s");
    ok(!tg_balance_is_available(p, 12999), "passive: still down just before 10s");
    ok(tg_balance_is_available(p, 13000), "passive: up again after 10s");
    {
        int hit0 = 0;

        for (int i = 0; i < 10; i++)
            hit0 += pick_once(&f, TG_NULL_STR, 5000) == 0;
        is_int(hit0, 0, "passive: pick skips the down peer");
    }

    /* failures 6s apart: the third falls outside the first window */
    tg_balance_done(&f.u, p, 1, 20000);
    tg_balance_done(&f.u, p, 1, 26000);
    tg_balance_done(&f.u, p, 1, 31000);
    ok(tg_balance_is_available(p, 31000), "passive: spread-out failures start a new window");
    tg_balance_done(&f.u, p, 1, 32000);
    ok(tg_balance_is_available(p, 32000), "passive: 2 failures in the new window, still up");
    tg_balance_done(&f.u, p, 1, 33000);
    ok(!tg_balance_is_available(p, 33000), "passive: 3 failures in the new window, down");
    tg_balance_done(&f.u, p, 0, 34000);
    ok(!tg_balance_is_available(p, 34000), "passive: a late success does not end the down time");

    tg_balance_done(&f.u, p, 1, 50000);
    tg_balance_done(&f.u, p, 1, 50100);
    tg_balance_done(&f.u, p, 0, 50200);
    tg_balance_done(&f.u, p, 1, 50300);
    ok(tg_balance_is_available(p, 50300), "passive: a success resets the count");

    f.peers[1].max_fails = 0;
    for (int i = 0; i < 10; i++)
        tg_balance_done(&f.u, &f.peers[1], 1, 60000);
    ok(tg_balance_is_available(&f.peers[1], 60000), "passive: max_fails 0 never marks down");
    fx_free(&f);
}

static void test_least_conn(void)
{
    fixture_t f;
    int w1[3] = {1, 1, 1}, w2[2] = {2, 1}, w3[3] = {5, 1, 1};
    tg_peer_t *p, *held[30];
    int counts[2] = {0};
    char got[8] = {0};

    fx_setup(&f, TG_BALANCE_LEAST_CONN, 3, w1);
    fx_init(&f);
    f.peers[0].conns = 2;
    f.peers[2].conns = 1;
    p = tg_balance_pick(&f.u, TG_NULL_STR, NULL, 0);
    ok(p == &f.peers[1], "least_conn: picks the idle peer");
    is_int(f.peers[1].conns, 1, "least_conn: counted");
    p = tg_balance_pick(&f.u, TG_NULL_STR, NULL, 0);
    ok(p == &f.peers[1] || p == &f.peers[2], "least_conn: then one of the two with 1 conn");
    fx_free(&f);

    fx_setup(&f, TG_BALANCE_LEAST_CONN, 2, w2);
    fx_init(&f);
    f.peers[0].conns = 1;
    ok(tg_balance_pick(&f.u, TG_NULL_STR, NULL, 0) == &f.peers[1], "least_conn: 0/1 beats 1/2");
    ok(tg_balance_pick(&f.u, TG_NULL_STR, NULL, 0) == &f.peers[0], "least_conn: 1/2 beats 1/1");
    f.peers[0].conns = f.peers[1].conns = 0;
    for (int i = 0; i < 30; i++) {
        held[i] = tg_balance_pick(&f.u, TG_NULL_STR, NULL, 0);
        counts[held[i] - f.peers]++;
    }
    ok(counts[0] == 20 && counts[1] == 10,
       "least_conn: 30 held requests split 20/10 by weight 2:1 (got %d/%d)", counts[0], counts[1]);
    for (int i = 0; i < 30; i++)
        tg_balance_done(&f.u, held[i], 0, 0);
    ok(f.peers[0].conns == 0 && f.peers[1].conns == 0, "least_conn: done() releases all");
    fx_free(&f);

    fx_setup(&f, TG_BALANCE_LEAST_CONN, 3, w3);
    fx_init(&f);
    for (int i = 0; i < 7; i++)
        got[i] = (char)('a' + pick_once(&f, TG_NULL_STR, 0));
    ok(strcmp(got, "aabacaa") == 0, "least_conn: ties go by smooth round robin (got %s)", got);
    fx_free(&f);
}

/* Peer index for each of `nkeys` keys under hash balancing. */
static void map_keys(fixture_t *f, int *out, int nkeys)
{
    char buf[32];

    for (int i = 0; i < nkeys; i++)
        out[i] = pick_once(f, keyf(buf, sizeof(buf), i), 0);
}

#define NKEYS 30000

static void test_hash(void)
{
    static int base[NKEYS], other[NKEYS];
    fixture_t f, g;
    int counts[3] = {0}, moved = 0, moved_wrong = 0, stayed_wrong = 0, ok_all = 1;
    uint64_t tried = 0;
    tg_peer_t *p[4];
    char buf[32];

    fx_setup(&f, TG_BALANCE_HASH, 3, NULL);
    is_int(fx_init(&f), 0, "hash: init builds the ring");
    ok(f.u.ring != NULL, "hash: ring present");
    map_keys(&f, base, NKEYS);
    for (int i = 0; i < NKEYS; i++) {
        if (base[i] < 0 || base[i] > 2) {
            ok_all = 0;
            break;
        }
        counts[base[i]]++;
    }
    ok(ok_all, "hash: every key maps to a peer");
    map_keys(&f, other, NKEYS);
    ok(memcmp(base, other, sizeof(base)) == 0, "hash: the same key gives the same peer");
    ok(counts[0] >= 8500 && counts[0] <= 11500 && counts[1] >= 8500 && counts[1] <= 11500 &&
           counts[2] >= 8500 && counts[2] <= 11500,
       "hash: 30000 keys within 15%% of even (got %d/%d/%d)", counts[0], counts[1], counts[2]);
    {
        int e1 = pick_once(&f, TG_STR(""), 0), e2 = pick_once(&f, TG_STR(""), 0);

        ok(e1 >= 0 && e1 == e2, "hash: an empty key maps consistently");
    }

    /* a fourth server: only keys that move to it move at all */
    fx_setup(&g, TG_BALANCE_HASH, 4, NULL);
    fx_init(&g);
    map_keys(&g, other, NKEYS);
    for (int i = 0; i < NKEYS; i++) {
        if (other[i] != base[i]) {
            moved++;
            moved_wrong += other[i] != 3;
        }
    }
    ok(moved >= NKEYS * 15 / 100 && moved <= NKEYS * 35 / 100,
       "hash: adding a 4th peer remaps 15-35%% of keys (got %.1f%%)", 100.0 * moved / NKEYS);
    is_int(moved_wrong, 0, "hash: every remapped key went to the new peer");
    fx_free(&g);

    /* removing the second server: only its keys move */
    fx_setup(&g, TG_BALANCE_HASH, 2, NULL);
    snprintf(g.names[1], sizeof(g.names[1]), "10.0.0.3:80");
    g.peers[1].name = tg_str_c(g.names[1]);
    fx_init(&g);
    map_keys(&g, other, NKEYS);
    stayed_wrong = 0;
    for (int i = 0; i < NKEYS; i++) {
        int was = base[i], now = other[i] == 1 ? 2 : other[i];

        if (was != 1 && now != was) stayed_wrong++;
    }
    is_int(stayed_wrong, 0, "hash: removing a peer moves only the keys it had");
    fx_free(&g);

    /* a down peer: its keys spread over the others, the rest stay */
    f.peers[1].health_down = 1;
    map_keys(&f, other, NKEYS);
    moved_wrong = stayed_wrong = 0;
    for (int i = 0; i < NKEYS; i++) {
        if (base[i] == 1)
            moved_wrong += other[i] == 1 || other[i] < 0;
        else
            stayed_wrong += other[i] != base[i];
    }
    is_int(moved_wrong, 0, "hash: a down peer's keys go elsewhere");
    is_int(stayed_wrong, 0, "hash: keys of the up peers stay where they were");
    f.peers[1].health_down = 0;

    /* retries walk the ring to the next distinct peers */
    for (int i = 0; i < 4; i++)
        p[i] = tg_balance_pick(&f.u, TG_STR("user-7"), &tried, 0);
    ok(p[0] == &f.peers[base[7]], "hash: first attempt is the key's peer");
    ok(p[1] && p[2] && p[1] != p[0] && p[2] != p[0] && p[2] != p[1],
       "hash: retries reach the other peers");
    ok(p[3] == NULL, "hash: NULL when every peer was tried");
    for (int i = 0; i < 3; i++)
        tg_balance_done(&f.u, p[i], 0, 0);
    fx_free(&f);

    /* backups: never on the ring, round robin once primaries are out */
    fx_setup(&f, TG_BALANCE_HASH, 4, NULL);
    f.peers[2].backup = f.peers[3].backup = 1;
    fx_init(&f);
    ok_all = 1;
    for (int i = 0; i < 1000; i++)
        ok_all &= pick_once(&f, keyf(buf, sizeof(buf), i), 0) < 2;
    ok(ok_all, "hash: backups unused while primaries are up");
    f.peers[0].health_down = f.peers[1].health_down = 1;
    counts[0] = counts[1] = 0;
    for (int i = 0; i < 100; i++) {
        int k = pick_once(&f, TG_STR("user-1"), 0);

        if (k >= 2) counts[k - 2]++;
    }
    ok(counts[0] == 50 && counts[1] == 50,
       "hash: all primaries down, backups share by round robin (got %d/%d)", counts[0], counts[1]);
    fx_free(&f);
}

static void test_random(void)
{
    fixture_t f;
    int w[3] = {1, 2, 3}, counts[3] = {0}, a[100], b[100], in_range = 1, same = 1;
    uint32_t seed;

    fx_setup(&f, TG_BALANCE_RANDOM, 3, w);
    fx_init(&f);
    seed = f.u.rr_seed;
    for (int i = 0; i < 60000; i++)
        counts[pick_once(&f, TG_NULL_STR, 0)]++;
    for (int i = 0; i < 3; i++) {
        int want = 10000 * w[i];

        in_range &= counts[i] >= want * 9 / 10 && counts[i] <= want * 11 / 10;
    }
    ok(in_range, "random: weights 1:2:3 within 10%% over 60000 picks (got %d/%d/%d)", counts[0],
       counts[1], counts[2]);
    ok(f.u.rr_seed != seed, "random: the per-upstream state advances");

    f.u.rr_seed = 12345;
    for (int i = 0; i < 100; i++)
        a[i] = pick_once(&f, TG_NULL_STR, 0);
    f.u.rr_seed = 12345;
    for (int i = 0; i < 100; i++)
        b[i] = pick_once(&f, TG_NULL_STR, 0);
    for (int i = 0; i < 100; i++)
        same &= a[i] == b[i];
    ok(same, "random: the same seed gives the same sequence");
    f.u.rr_seed = 777;
    same = 1;
    for (int i = 0; i < 100; i++)
        same &= pick_once(&f, TG_NULL_STR, 0) == a[i];
    ok(!same, "random: another seed gives another sequence");

    f.peers[2].down_until = 1000;
    counts[2] = 0;
    for (int i = 0; i < 1000; i++)
        counts[2] += pick_once(&f, TG_NULL_STR, 0) == 2;
    is_int(counts[2], 0, "random: never picks a down peer");
    fx_free(&f);

    fx_setup(&f, TG_BALANCE_RANDOM, 1, NULL);
    f.u.rr_seed = 99;
    fx_init(&f);
    is_int(f.u.rr_seed, 99, "random: init keeps a seed that was set");
    fx_free(&f);
}

/* Dynamic slots (src/upstream_dyn.c): an absent slot (no address) and a
 * drained server (the runtime API) are never picked, under every method, but
 * are not "down" for the stats gauge; a slot back in the set is picked again. */
static void test_absent_drained(void)
{
    static const tg_balance_t methods[] = {TG_BALANCE_ROUND_ROBIN, TG_BALANCE_LEAST_CONN,
                                           TG_BALANCE_HASH, TG_BALANCE_RANDOM};
    char buf[32];
    for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
        fixture_t f;
        int hits[4] = {0};
        fx_setup(&f, methods[m], 4, NULL);
        f.peers[1].dynamic = f.peers[2].dynamic = 1;
        f.peers[1].absent = 1;
        f.peers[2].drained = 1;
        ok(fx_init(&f) == 0, "absent/drained %zu: init", m);
        for (int i = 0; i < 400; i++) {
            int k = pick_once(&f, keyf(buf, sizeof(buf), i), 0);
            if (k >= 0)
                hits[k]++;
        }
        ok(hits[1] == 0 && hits[2] == 0 && hits[0] + hits[3] == 400,
           "absent/drained %zu: only the others are picked (%d %d %d %d)", m, hits[0], hits[1],
           hits[2], hits[3]);
        f.peers[1].absent = 0;
        int back = 0;
        for (int i = 0; i < 400; i++)
            back += pick_once(&f, keyf(buf, sizeof(buf), i), 0) == 1;
        ok(back > 0, "absent/drained %zu: a slot back in the set is picked (%d)", m, back);
        is_int(tg_balance_peer_gauge(&f.peers[2], 0).health, TG_PEER_UP,
               "absent/drained: drained is not down for the gauge");
        fx_free(&f);
    }
}

int main(void)
{
    test_absent_drained();
    test_init();
    test_round_robin();
    test_tried();
    test_backup();
    test_passive();
    test_least_conn();
    test_hash();
    test_random();
    return done_testing();
}
