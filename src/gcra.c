/* GCRA arithmetic (see gcra.h). Every value is in nanoseconds; the tolerance
 * check is the whole algorithm, the rest derives the numbers clients see in
 * Retry-After and the RateLimit headers from the same two quantities. */
#include "gcra.h"

/* 2^62 ns is 146 years: nothing configured comes near it */
#define GCRA_MAX ((int64_t)1 << 62)

int tg_gcra_init(tg_gcra_t *g, int64_t count, int64_t period_ns, int64_t burst, int64_t granularity)
{
    if (count <= 0 || period_ns <= 0 || burst < 0 || granularity <= 0 || count > period_ns ||
        burst > GCRA_MAX / period_ns)
        return -1;
    int64_t interval = period_ns / count;
    interval -= interval % granularity;
    if (interval <= 0) return -1;
    g->interval = interval;
    g->tolerance = (count + burst - 1) * interval;
    g->count = count;
    g->period = period_ns;
    return 0;
}

int tg_gcra_decide(const tg_gcra_t *g, int64_t ahead, tg_gcra_result_t *res)
{
    if (ahead < 0) ahead = 0;
    if (ahead > g->tolerance) {
        res->allowed = 0;
        res->remaining = 0;
        res->retry_after = ahead - g->tolerance;
        res->reset = ahead;
        return 0;
    }
    /* after this request the TAT is ahead + interval; each further request
     * fits while the TAT stays within the tolerance */
    res->allowed = 1;
    res->remaining = (g->tolerance - ahead) / g->interval;
    res->retry_after = 0;
    res->reset = ahead + g->interval;
    return 1;
}

int tg_gcra_take(const tg_gcra_t *g, int64_t *tat, int64_t now, tg_gcra_result_t *res)
{
    int64_t from = *tat > now ? *tat : now;
    if (tg_gcra_decide(g, from - now, res)) *tat = from + g->interval;
    return res->allowed;
}

int tg_gcra_refund(const tg_gcra_t *g, int64_t *tat, int64_t now)
{
    *tat -= g->interval;
    return *tat <= now;
}
