/* Unit tests for src/tls_cache.c: sizing; put and get; an ID stored again
 * replaces the old session; remove; expiry at lookup; too-big sessions;
 * oldest-first eviction once the ring is full, with every kept session
 * intact across many wraps of the ring (records of varied sizes); a cache
 * laid out again on the same memory (a reload) keeps sessions and counters;
 * and processes sharing one cache see each other's sessions. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "tls_cache.h"
#include "tap.h"

#define NOW 1700000000LL

static void *shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void make_id(unsigned char id[32], int i)
{
    for (int k = 0; k < 32; k++)
        id[k] = (unsigned char)(k < 4 ? i >> (8 * k) : k * 7);
}

/* session i: a deterministic body of a deterministic size (100..1600 bytes) */
static size_t make_data(unsigned char *buf, int i)
{
    size_t n = 100 + (size_t)(i * 37) % 1500;
    for (size_t k = 0; k < n; k++)
        buf[k] = (unsigned char)(i ^ (int)k);
    return n;
}

static int check(tg_tls_cache_t *c, int i, int64_t now)
{
    unsigned char id[32], want[TG_TLS_CACHE_MAX_DATA], got[TG_TLS_CACHE_MAX_DATA];
    make_id(id, i);
    size_t n = make_data(want, i);
    long r = tg_tls_cache_get(c, id, sizeof(id), now, got, sizeof(got));
    return r == (long)n && memcmp(got, want, n) == 0;
}

static void put(tg_tls_cache_t *c, int i, int64_t expires)
{
    unsigned char id[32], data[TG_TLS_CACHE_MAX_DATA];
    make_id(id, i);
    size_t n = make_data(data, i);
    tg_tls_cache_put(c, id, sizeof(id), data, n, expires, NOW);
}

int main(void)
{
    ok(tg_tls_cache_init(shared(4096), 4096) == NULL, "4 KB: too small");
    size_t size = 256 * 1024;
    void *mem = shared(size);
    tg_tls_cache_t *c = tg_tls_cache_init(mem, size);
    ok(c != NULL, "256 KB cache laid out");
    tg_tls_cache_stats_t st;
    tg_tls_cache_stats(c, &st);
    ok(st.buckets >= 512 && st.data_size > size / 2, "buckets %u, ring %llu bytes", st.buckets,
       (unsigned long long)st.data_size);

    unsigned char id[32], buf[TG_TLS_CACHE_MAX_DATA];
    make_id(id, 1);
    is_int(tg_tls_cache_get(c, id, 32, NOW, buf, sizeof(buf)), 0, "empty: miss");
    put(c, 1, NOW + 60);
    ok(check(c, 1, NOW), "put, then get the same bytes");
    ok(!check(c, 2, NOW), "another ID: miss");
    is_int(tg_tls_cache_get(c, id, 31, NOW, buf, sizeof(buf)), 0, "a prefix of the ID: miss");
    tg_tls_cache_put(c, id, 32, (const unsigned char *)"new", 3, NOW + 60, NOW);
    is_int(tg_tls_cache_get(c, id, 32, NOW, buf, sizeof(buf)), 3, "stored again: replaced");
    tg_tls_cache_remove(c, id, 32);
    is_int(tg_tls_cache_get(c, id, 32, NOW, buf, sizeof(buf)), 0, "removed");

    put(c, 3, NOW + 10);
    ok(check(c, 3, NOW + 9), "live before its expiry");
    ok(!check(c, 3, NOW + 10), "expired at its expiry time");
    ok(!check(c, 3, NOW), "an expired session was dropped");

    static unsigned char huge[TG_TLS_CACHE_MAX_DATA + 1];
    make_id(id, 4);
    is_int(tg_tls_cache_put(c, id, 32, huge, sizeof(huge), NOW + 60, NOW), 1,
           "a session over the size limit is refused");
    tg_tls_cache_stats(c, &st);
    ok(st.hits == 3 && st.stores == 3 && st.removed == 1 && st.expired == 1 && st.too_big == 1,
       "counters: hits %llu stores %llu removed %llu expired %llu too_big %llu",
       (unsigned long long)st.hits, (unsigned long long)st.stores,
       (unsigned long long)st.removed, (unsigned long long)st.expired,
       (unsigned long long)st.too_big);

    /* 2000 sessions of ~850 bytes on average: several wraps of the ring */
    for (int i = 100; i < 2100; i++)
        put(c, i, NOW + 600);
    tg_tls_cache_stats(c, &st);
    int newest = 0, first_kept = -1;
    for (int i = 2099; i >= 100 && check(c, i, NOW); i--)
        newest++;
    for (int i = 100; i < 2100 && first_kept < 0; i++)
        if (check(c, i, NOW))
            first_kept = i;
    ok(newest == (int)st.used && newest > 100, "the newest %d sessions are all kept intact", newest);
    is_int(first_kept, 2100 - newest, "oldest first: exactly the oldest ones went");
    ok(st.evictions >= 2000 - st.used, "evictions counted (%llu)",
       (unsigned long long)st.evictions);

    /* a reload lays the cache out again on the same memory: kept */
    tg_tls_cache_t *again = tg_tls_cache_init(mem, size);
    ok(again == c && check(again, 2099, NOW), "re-init on the same memory keeps sessions");

    /* another process's session is seen here */
    pid_t pid = fork();
    if (pid == 0) {
        put(c, 5000, NOW + 60);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    ok(check(c, 5000, NOW), "a session stored by another process is found");
    return done_testing();
}
