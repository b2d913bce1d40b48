/* Unit tests for src/gcra_table.c: sizing (bytes per key); keys kept
 * apart; a table laid out again on the same memory keeps its state
 * (reload); expired keys are reclaimed instead of evicted; when full the
 * least recently used live key goes and is counted; and exactness across
 * processes: four forked processes hammering one key of 10 per minute let
 * exactly 10 requests through. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "gcra_table.h"
#include "tap.h"

#define SEC 1000000000LL

static void *shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static tg_str_t key(char *buf, size_t size, int i)
{
    int n = snprintf(buf, size, "10.0.%d.%d", i / 256, i % 256);
    return (tg_str_t){buf, (size_t)n};
}

static void test_sizing(void)
{
    size_t size = 1 << 20;
    void *mem = shared(size);
    tg_gcra_table_t *t = tg_gcra_table_init(mem, size);
    tg_gcra_table_stats_t st;
    ok(t != NULL, "1 MB table");
    tg_gcra_table_stats(t, &st);
    ok(st.capacity >= size / TG_GCRA_TABLE_KEY_BYTES - 64, "1 MB holds >= size / %d keys (%u)",
       TG_GCRA_TABLE_KEY_BYTES, st.capacity);
    ok(st.capacity <= size / 40, "and no more than 40 bytes each");
    is_int(st.used, 0, "empty");
    ok(tg_gcra_table_init(shared(64), 64) == NULL, "64 bytes: too small");
    munmap(mem, size);
}

static void test_keys(void)
{
    size_t size = 64 * 1024;
    void *mem = shared(size);
    tg_gcra_table_t *t = tg_gcra_table_init(mem, size);
    tg_gcra_t g;
    tg_gcra_result_t r;
    unsigned ev;
    char b[32];
    int64_t now = 100 * SEC;

    tg_gcra_init(&g, 3, 60 * SEC, 0, 1);
    int pass_a = 0, pass_b = 0;
    for (int i = 0; i < 5; i++) {
        tg_gcra_table_take(t, &g, TG_STR("alice"), now, &r, &ev);
        pass_a += r.allowed;
        tg_gcra_table_take(t, &g, TG_STR("bob"), now, &r, &ev);
        pass_b += r.allowed;
    }
    ok(pass_a == 3 && pass_b == 3, "two keys, 3 each");
    tg_gcra_table_take(t, &g, TG_STR("alicf"), now, &r, &ev);
    ok(r.allowed && r.remaining == 2, "a near key is another key");
    tg_gcra_table_take(t, &g, TG_STR(""), now, &r, &ev);
    ok(r.allowed, "the empty key works");

    tg_gcra_table_refund(t, &g, TG_STR("alicf"), now);
    tg_gcra_table_take(t, &g, TG_STR("alicf"), now, &r, &ev);
    ok(r.allowed && r.remaining == 2, "refunded: the key's allowance is full again");
    ok(tg_gcra_table_refund(t, &g, TG_STR("never-seen"), now) == 0, "refund of an unknown key: nothing");
    tg_gcra_table_refund(t, &g, TG_STR("alice"), now);
    tg_gcra_table_take(t, &g, TG_STR("alice"), now, &r, &ev);
    ok(r.allowed && r.remaining == 0, "a limited key refunded once passes once");

    /* laid out again on the same memory (a reload): the state is kept */
    tg_gcra_table_t *again = tg_gcra_table_init(mem, size);
    ok(again == t, "same table");
    tg_gcra_table_take(again, &g, TG_STR("alice"), now, &r, &ev);
    ok(!r.allowed, "alice still limited after re-init");

    int all_new = 1;
    for (int i = 0; i < 500; i++) {
        tg_gcra_table_take(t, &g, key(b, sizeof b, i), now, &r, &ev);
        all_new &= r.allowed && r.remaining == 2;
    }
    ok(all_new, "500 fresh keys: no false sharing");
    tg_gcra_table_stats_t st;
    tg_gcra_table_stats(t, &st);
    is_int(st.used, 504, "504 keys held");
    is_int(st.evictions, 0, "no eviction");
    munmap(mem, size);
}

static void test_reclaim_evict(void)
{
    size_t size = 4096;
    void *mem = shared(size);
    tg_gcra_table_t *t = tg_gcra_table_init(mem, size);
    tg_gcra_table_stats_t st;
    tg_gcra_t g;
    tg_gcra_result_t r;
    unsigned ev, evs = 0;
    char b[32];
    int64_t now = 1000 * SEC;

    tg_gcra_table_stats(t, &st);
    uint32_t cap = st.capacity;
    ok(cap >= 80 && cap <= 100, "4 KB: about 90 keys (%u)", cap);

    tg_gcra_init(&g, 1, SEC, 0, 1); /* a key expires 1 s after its last request */
    for (uint32_t i = 0; i < cap; i++)
        tg_gcra_table_take(t, &g, key(b, sizeof b, (int)i), now, &r, &ev);
    tg_gcra_table_stats(t, &st);
    is_int(st.used, cap, "full");
    /* 2 s later every key has expired: new keys take their entries back */
    for (uint32_t i = 0; i < cap; i++) {
        tg_gcra_table_take(t, &g, key(b, sizeof b, (int)(1000 + i)), now + 2 * SEC, &r, &ev);
        evs |= ev;
    }
    tg_gcra_table_stats(t, &st);
    ok(evs == 0 && st.evictions == 0, "expired keys reclaimed, none evicted");
    ok(st.reclaimed >= cap, "reclaimed %llu", (unsigned long long)st.reclaimed);
    ok(st.used <= cap, "bounded");

    /* now all live: 10 more keys evict the 10 least recently used */
    now += 2 * SEC;
    tg_gcra_table_take(t, &g, key(b, sizeof b, 1000), now, &r, &ev); /* touch the oldest */
    ok(!r.allowed, "key 1000 limited (live)");
    int evicted = 0;
    for (int i = 0; i < 10; i++) {
        tg_gcra_table_take(t, &g, key(b, sizeof b, 5000 + i), now, &r, &ev);
        evicted += (ev & TG_GCRA_TABLE_F_EVICTED) != 0;
    }
    tg_gcra_table_stats(t, &st);
    is_int(evicted, 10, "10 evictions reported");
    is_int(st.evictions, 10, "10 evictions counted");
    is_int(st.used, cap, "still full, never more");
    tg_gcra_table_take(t, &g, key(b, sizeof b, 1000), now, &r, &ev);
    ok(!r.allowed, "the recently used key survived");
    tg_gcra_table_take(t, &g, key(b, sizeof b, 1001), now, &r, &ev);
    ok(r.allowed, "the least recently used one was evicted (starts afresh)");
    munmap(mem, size);
}

static void test_processes(void)
{
    size_t size = 64 * 1024;
    void *mem = shared(size);
    int *passed = shared(4096);
    tg_gcra_table_t *t = tg_gcra_table_init(mem, size);
    tg_gcra_t g;
    tg_gcra_init(&g, 10, 60 * SEC, 0, 1);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = ts.tv_sec * SEC + ts.tv_nsec;

    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        if ((kids[k] = fork()) == 0) {
            tg_gcra_result_t r;
            unsigned ev;
            char b[32];
            for (int i = 0; i < 2000; i++) {
                tg_gcra_table_take(t, &g, TG_STR("shared"), now + i, &r, &ev);
                if (r.allowed) __atomic_fetch_add(passed, 1, __ATOMIC_SEQ_CST);
                tg_gcra_table_take(t, &g, key(b, sizeof b, k * 2000 + i), now, &r, &ev);
            }
            _exit(0);
        }
    }
    int clean = 1;
    for (int k = 0; k < 4; k++) {
        int st;
        clean &= waitpid(kids[k], &st, 0) == kids[k] && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    ok(clean, "4 processes ran");
    is_int(*passed, 10, "8000 requests from 4 processes on one key: exactly 10 pass");
    tg_gcra_table_stats_t st;
    tg_gcra_table_stats(t, &st);
    ok(st.used <= st.capacity, "table consistent after concurrent inserts (%u used)", st.used);
    munmap(mem, size);
}

int main(void)
{
    test_sizing();
    test_keys();
    test_reclaim_evict();
    test_processes();
    return done_testing();
}
