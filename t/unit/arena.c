/* Unit tests for src/arena.c: alignment, zeroing, the byte limit, dedicated
 * blocks for big requests, cleanup order on reset and destroy, that reset
 * keeps a block (the next request reuses its memory), and that released
 * standard blocks come back from the worker cache instead of malloc. */
#include "arena.h"
#include "tap.h"

#include <stdint.h>

static char order[16];
static size_t norder;

static void note(void *data)
{
    if (norder < sizeof order - 1) order[norder++] = *(const char *)data;
}

/* A cleanup that registers another one while cleanups are running. */
static tg_arena_t *chained_arena;
static void note_and_chain(void *data)
{
    note(data);
    tg_arena_on_reset(chained_arena, note, "z");
}

static int aligned(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

static void test_alloc(void)
{
    tg_arena_t a;
    int all_aligned = 1, all_zero = 1, disjoint = 1;
    char *prev = NULL;
    size_t requested = 0;

    tg_arena_init(&a, 0);
    ok(a.head == NULL, "init allocates nothing");
    for (size_t i = 0; i < 2000; i++) {
        size_t n = (i * 7) % 61;
        unsigned char *p = tg_arena_alloc(&a, n);
        requested += n;
        if (p == NULL || !aligned(p)) all_aligned = 0;
        for (size_t j = 0; p && j < n; j++)
            if (p[j] != 0) all_zero = 0;
        if (p && n) memset(p, 0xAB, n); /* ASan flags any overlap with the next alloc */
        if (p == (unsigned char *)prev) disjoint = 0;
        prev = (char *)p;
    }
    ok(all_aligned, "2000 odd-sized allocations are 16-byte aligned");
    ok(all_zero, "tg_arena_alloc returns zeroed memory");
    ok(disjoint, "consecutive allocations (even size 0) are distinct");
    is_int(a.total, requested, "total counts requested bytes");

    {
        void *big = tg_arena_alloc(&a, 100000);
        ok(big && aligned(big), "100000 bytes in a dedicated block");
        if (big) memset(big, 1, 100000);
    }
    {
        char *s = tg_arena_strdup(&a, TG_STR("hello"));
        tg_str_t c = tg_arena_str(&a, (tg_str_t){"world!", 5});
        char *f = tg_arena_printf(&a, "%s-%d-%.*s", "x", 42, TG_STR_FMT(c));
        is_str(s, "hello", "strdup");
        ok(c.len == 5 && c.p[5] == '\0' && memcmp(c.p, "world", 5) == 0, "arena_str copies + NUL");
        is_str(f, "x-42-world", "printf");
        is_str(tg_arena_strdup(&a, TG_NULL_STR), "", "strdup of the null string");
    }
    tg_arena_destroy(&a);
    ok(a.head == NULL && a.total == 0, "destroy empties the arena");
    ok(tg_arena_alloc(&a, 8) != NULL, "a destroyed arena can be used again");
    tg_arena_destroy(&a);
}

static void test_limit(void)
{
    tg_arena_t a;

    tg_arena_init(&a, 100);
    ok(tg_arena_alloc(&a, 60) != NULL, "60 of 100");
    ok(tg_arena_alloc(&a, 41) == NULL, "41 more is over the limit");
    ok(tg_arena_alloc(&a, 40) != NULL, "40 more fits exactly");
    ok(tg_arena_alloc_nz(&a, 1) == NULL, "limit reached");
    ok(tg_arena_alloc(&a, SIZE_MAX) == NULL, "huge request fails, no overflow");
    ok(tg_arena_on_reset(&a, note, "c") == 0, "cleanups register past the limit");
    ok(tg_arena_printf(&a, "%s", "x") == NULL, "printf respects the limit");
    tg_arena_reset(&a);
    ok(tg_arena_alloc(&a, 100) != NULL, "reset restores the budget");
    tg_arena_destroy(&a);

    tg_arena_init(&a, 0);
    ok(tg_arena_alloc(&a, SIZE_MAX) == NULL, "SIZE_MAX fails without a limit too");
    ok(tg_arena_alloc(&a, SIZE_MAX - 8) == NULL, "near SIZE_MAX fails");
    tg_arena_destroy(&a);
}

static void test_cleanups(void)
{
    tg_arena_t a;

    tg_arena_init(&a, 0);
    norder = 0;
    tg_arena_on_reset(&a, note, "a");
    tg_arena_on_reset(&a, note, "b");
    tg_arena_on_reset(&a, note, "c");
    tg_arena_reset(&a);
    order[norder] = '\0';
    is_str(order, "cba", "reset runs cleanups last registered first");

    norder = 0;
    tg_arena_reset(&a);
    is_int(norder, 0, "cleanups run once");

    chained_arena = &a;
    tg_arena_on_reset(&a, note, "x");
    tg_arena_on_reset(&a, note_and_chain, "y");
    tg_arena_destroy(&a);
    order[norder] = '\0';
    is_str(order, "yzx", "destroy runs cleanups, including one added by a cleanup");
}

static void test_reuse(void)
{
    tg_arena_t a;
    char *first, *again, *small, *after_big;

    tg_arena_blocks_init(0);
    tg_arena_init(&a, 0);
    first = tg_arena_alloc(&a, 100);
    for (int i = 0; i < 50; i++)
        tg_arena_alloc(&a, 1000); /* several more blocks */
    memset(first, 0x5A, 100);
    tg_arena_reset(&a);
    ok(a.head != NULL && a.total == 0, "reset keeps a block");
    again = tg_arena_alloc(&a, 100);
    ok(again != NULL && again[0] == 0 && again[99] == 0, "memory after reset is zeroed");
    small = tg_arena_alloc(&a, 10);
    tg_arena_reset(&a);
    ok(tg_arena_alloc(&a, 100) == again, "reset/alloc cycles reuse the same memory");

    /* A big request must not waste the current block's free space. */
    small = tg_arena_alloc(&a, 16);
    tg_arena_alloc(&a, 3 * TG_ARENA_BLOCK);
    after_big = tg_arena_alloc(&a, 16);
    ok(after_big == small + 16, "small allocations continue in the same block after a big one");
    tg_arena_reset(&a);
    ok(tg_arena_alloc(&a, 16) == again, "reset drops the dedicated block, keeps the standard one");
    tg_arena_destroy(&a);

    /* First allocation big: the arena still gets a standard block later. */
    tg_arena_init(&a, 0);
    ok(tg_arena_alloc(&a, 2 * TG_ARENA_BLOCK) != NULL, "big first allocation");
    ok(tg_arena_alloc(&a, 8) != NULL, "then a small one");
    tg_arena_reset(&a);
    ok(a.head != NULL && tg_arena_alloc(&a, 8) != NULL, "reset kept the standard block");
    tg_arena_reset(&a);
    tg_arena_destroy(&a);
    tg_arena_init(&a, 0);
    tg_arena_alloc(&a, 2 * TG_ARENA_BLOCK);
    tg_arena_reset(&a);
    ok(a.head == NULL, "an arena with only a dedicated block keeps nothing on reset");
    tg_arena_destroy(&a);
}

static void test_cache(void)
{
    tg_arena_t a, b;
    char *blocks[8];
    int found = 0;

    tg_arena_blocks_init(4);
    tg_arena_init(&a, 0);
    for (int i = 0; i < 8; i++)
        blocks[i] = tg_arena_alloc(&a, TG_ARENA_BLOCK / 2 + 1); /* one per block */
    tg_arena_destroy(&a);

    /* The cache hands back released blocks: the first allocation of a new
     * arena lands at the start of one of the old blocks. */
    tg_arena_init(&b, 0);
    char *p = tg_arena_alloc(&b, 10);
    for (int i = 0; i < 8; i++)
        found |= p == blocks[i];
    ok(found, "a new arena reuses a cached block");
    tg_arena_destroy(&b);

    tg_arena_blocks_init(0); /* frees the cache: ASan's leak check stays quiet */
    tg_arena_init(&b, 0);
    ok(tg_arena_alloc(&b, 10) != NULL, "allocation works with the cache disabled");
    tg_arena_destroy(&b);
}

int main(void)
{
    test_alloc();
    test_limit();
    test_cleanups();
    test_reuse();
    test_cache();
    return done_testing();
}
