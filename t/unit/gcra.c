/* Unit tests for src/gcra.c with a fake clock: a full bucket lets COUNT +
 * BURST through at once, then one request per interval (steady rate);
 * refusals do not move the TAT; an idle key refills (partly, then fully);
 * Retry-After, remaining and reset values; the granularity used for Redis;
 * argument checks. */
#include "gcra.h"
#include "tap.h"

#define SEC 1000000000LL
#define MS 1000000LL

/* requests at `now` until one is refused; returns how many passed */
static int drain(const tg_gcra_t *g, int64_t *tat, int64_t now)
{
    tg_gcra_result_t r;
    int n = 0;
    while (n < 100000 && tg_gcra_take(g, tat, now, &r))
        n++;
    return n;
}

static void test_burst(void)
{
    tg_gcra_t g;
    int64_t tat = 0, now = 1000 * SEC;
    tg_gcra_result_t r;

    ok(tg_gcra_init(&g, 10, 60 * SEC, 0, 1) == 0, "10 per minute");
    is_int(g.interval, 6 * SEC, "interval 6 s");
    is_int(g.tolerance, 54 * SEC, "tolerance: 9 intervals");
    /* remaining counts down like express-rate-limit's fixed window */
    int countdown_ok = 1;
    for (int i = 0; i < 10; i++) {
        tg_gcra_take(&g, &tat, now, &r);
        countdown_ok &= r.allowed && r.remaining == 9 - i && r.retry_after == 0 &&
                        r.reset == (int64_t)(i + 1) * 6 * SEC;
    }
    ok(countdown_ok, "10 at once pass, remaining 9..0, reset 6..60 s");
    ok(!tg_gcra_take(&g, &tat, now, &r), "11th refused");
    is_int(r.remaining, 0, "remaining 0 when refused");
    is_int(r.retry_after, 6 * SEC, "retry after one interval");
    is_int(r.reset, 60 * SEC, "reset: bucket full in 60 s");
    is_int(tat, now + 60 * SEC, "refusal leaves the TAT alone");
    ok(!tg_gcra_take(&g, &tat, now + 3 * SEC, &r), "still refused 3 s later");
    is_int(r.retry_after, 3 * SEC, "retry after 3 s");
    is_int(tg_gcra_seconds(r.retry_after), 3, "Retry-After: 3");

    tg_gcra_t b;
    tat = 0;
    tg_gcra_init(&b, 10, 60 * SEC, 5, 1);
    is_int(drain(&b, &tat, now), 15, "burst 5: 15 at once");
    tat = 0;
    tg_gcra_init(&b, 1, SEC, 0, 1);
    is_int(drain(&b, &tat, now), 1, "1 per second, burst 0: 1 at once");
    tat = 0;
    tg_gcra_init(&b, 100, SEC, 20, 1);
    is_int(drain(&b, &tat, now), 120, "100r/s burst 20: 120 at once");
}

static void test_steady(void)
{
    tg_gcra_t g;
    int64_t tat = 0, now = 5 * SEC;
    tg_gcra_result_t r;

    tg_gcra_init(&g, 10, SEC, 0, 1); /* 100 ms interval */
    drain(&g, &tat, now);
    /* after the burst: exactly one request per 100 ms, whatever the offered load */
    int passed = 0, refused = 0;
    for (int64_t t = now + 10 * MS; t <= now + 10 * SEC; t += 10 * MS) {
        if (tg_gcra_take(&g, &tat, t, &r))
            passed++;
        else
            refused++;
    }
    is_int(passed, 100, "10 s at 100 req/s offered: 100 pass (10/s)");
    is_int(refused, 900, "the rest refused");

    /* a client at exactly the rate is never refused */
    tat = 0;
    int all = 1;
    for (int i = 0; i < 1000; i++)
        all &= tg_gcra_take(&g, &tat, 100 * SEC + i * 100 * MS, &r);
    ok(all, "1000 requests at exactly the rate all pass");
    ok(r.remaining == 9, "and keep a full allowance minus one");
}

static void test_refill(void)
{
    tg_gcra_t g;
    int64_t tat = 0, now = 50 * SEC;
    tg_gcra_result_t r;

    tg_gcra_init(&g, 10, 60 * SEC, 0, 1);
    is_int(drain(&g, &tat, now), 10, "empty the bucket");
    is_int(drain(&g, &tat, now + 6 * SEC - 1), 0, "1 ns before an interval: nothing");
    is_int(drain(&g, &tat, now + 6 * SEC), 1, "after one interval: one");
    is_int(drain(&g, &tat, now + 30 * SEC), 4, "after 30 s: four more (5 in all)");
    is_int(drain(&g, &tat, now + 1000 * SEC), 10, "long idle: full again, not more");
    tat = now - 5 * SEC; /* a TAT in the past is the same as none */
    tg_gcra_take(&g, &tat, now, &r);
    ok(r.allowed && r.remaining == 9, "stale TAT: fresh key");
}

static void test_retry_after(void)
{
    tg_gcra_t g;
    int64_t tat = 0, now = 7 * SEC;
    tg_gcra_result_t r;

    tg_gcra_init(&g, 2, SEC, 0, 1); /* 500 ms */
    drain(&g, &tat, now);
    tg_gcra_take(&g, &tat, now + 100 * MS, &r);
    is_int(r.retry_after, 400 * MS, "retry after 400 ms");
    is_int(tg_gcra_seconds(r.retry_after), 1, "Retry-After rounds up to 1");
    is_int(tg_gcra_seconds(r.reset), 1, "reset 900 ms rounds up to 1");
    is_int(tg_gcra_seconds(0), 0, "0 s stays 0");
    is_int(tg_gcra_seconds(SEC), 1, "1 s is 1");
    is_int(tg_gcra_seconds(SEC + 1), 2, "1 s + 1 ns is 2");

    tg_gcra_init(&g, 1, 3600 * SEC, 0, 1);
    tat = 0;
    drain(&g, &tat, now);
    tg_gcra_take(&g, &tat, now + 1 * SEC, &r);
    is_int(tg_gcra_seconds(r.retry_after), 3599, "1 per hour: Retry-After 3599 after 1 s");
}

static void test_decide(void)
{
    tg_gcra_t g;
    tg_gcra_result_t r;

    tg_gcra_init(&g, 10, 60 * SEC, 0, 1);
    ok(tg_gcra_decide(&g, 0, &r) && r.remaining == 9, "ahead 0: pass, 9 left");
    ok(tg_gcra_decide(&g, 54 * SEC, &r) && r.remaining == 0, "ahead = tolerance: pass, last");
    ok(!tg_gcra_decide(&g, 54 * SEC + 1, &r) && r.retry_after == 1, "1 ns over: refused");

    /* Redis keeps microseconds: the interval is a whole number of them */
    tg_gcra_init(&g, 3, SEC, 0, 1000);
    is_int(g.interval % 1000, 0, "granularity 1 us: interval rounded");
    is_int(g.interval, 333333000, "333.333 ms");
    tg_gcra_init(&g, 3, SEC, 0, 1);
    is_int(g.interval, 333333333, "granularity 1 ns: 333.333333 ms");
}

static void test_init(void)
{
    tg_gcra_t g;
    ok(tg_gcra_init(&g, 0, SEC, 0, 1) < 0, "count 0 refused");
    ok(tg_gcra_init(&g, 1, 0, 0, 1) < 0, "period 0 refused");
    ok(tg_gcra_init(&g, 1, SEC, -1, 1) < 0, "negative burst refused");
    ok(tg_gcra_init(&g, 2000000, SEC, 0, 1000) < 0, "interval below granularity refused");
    ok(tg_gcra_init(&g, 1000000, SEC, 0, 1000) == 0, "1e6 r/s with us granularity ok");
    ok(tg_gcra_init(&g, 1, SEC, (int64_t)1 << 40, 1) < 0, "absurd burst refused");
}

/* count=failed|successful: a refunded request is as if it never came */
static void test_refund(void)
{
    tg_gcra_t g;
    tg_gcra_result_t r;
    tg_gcra_init(&g, 3, 60 * SEC, 0, 1);
    int64_t tat = 0, now = 100 * SEC;
    tg_gcra_take(&g, &tat, now, &r);
    ok(tg_gcra_refund(&g, &tat, now) == 1, "one taken, one refunded: full again");
    for (int i = 0; i < 3; i++)
        tg_gcra_take(&g, &tat, now, &r);
    ok(!tg_gcra_take(&g, &tat, now, &r), "3 taken: the 4th refused");
    ok(tg_gcra_refund(&g, &tat, now) == 0, "refund one: not full");
    ok(tg_gcra_take(&g, &tat, now, &r) && r.remaining == 0, "refunded place taken again");
    ok(!tg_gcra_take(&g, &tat, now, &r), "and then refused");
    tg_gcra_refund(&g, &tat, now + 10 * SEC);
    ok(tat == now + 40 * SEC, "refund later: TAT one interval back (%lld)", (long long)tat);
}

int main(void)
{
    test_burst();
    test_steady();
    test_refill();
    test_retry_after();
    test_decide();
    test_init();
    test_refund();
    return done_testing();
}
