/* @public GCRA, the generic cell rate algorithm: a rate limit kept as one timestamp
 * per key, the "theoretical arrival time" (TAT) of the next request if the
 * client sent at exactly the allowed rate. A request at `now` passes when the
 * TAT runs at most `tolerance` ahead of now; it then pushes the TAT one
 * `interval` further. Nothing else is stored and no timer is needed: a key
 * whose TAT is in the past is the same as a key never seen.
 *
 * Rates are written as COUNT per PERIOD with a BURST: the interval is
 * PERIOD / COUNT and the tolerance lets COUNT + BURST requests through at
 * once from a full bucket, which then refills one request per interval. So
 * "10 per minute, burst 0" passes 10 requests at once and one every 6 s
 * after that, the way a fixed-window limiter of 10 per minute starts.
 *
 * Pure arithmetic on nanoseconds: the caller brings the clock and keeps the
 * TAT (a shared-memory table, src/gcra_table.c, or Redis). */
#ifndef TG_GCRA_H
#define TG_GCRA_H

#include <stdint.h>

typedef struct {
    int64_t interval;  /* ns between two requests at the steady rate (PERIOD / COUNT) */
    int64_t tolerance; /* ns the TAT may run ahead of now: (COUNT + BURST - 1) * interval */
    int64_t count;     /* COUNT, as configured (the policy's quota) */
    int64_t period;    /* PERIOD in ns (the policy's window) */
} tg_gcra_t;

typedef struct {
    int allowed;         /* 1: the request passes */
    int64_t remaining;   /* requests that would still pass right now */
    int64_t retry_after; /* ns until a request would pass (0 when allowed) */
    int64_t reset;       /* ns until the bucket is full again (the TAT minus now) */
} tg_gcra_result_t;

/* Set up COUNT requests per PERIOD_NS plus BURST. `granularity` (ns, >= 1)
 * rounds the interval down to a multiple of it, so that a store keeping
 * coarser time (Redis: microseconds) computes exactly the same decisions.
 * Returns 0, or -1 when the values are out of range. */
int tg_gcra_init(tg_gcra_t *g, int64_t count, int64_t period_ns, int64_t burst,
                 int64_t granularity);

/* One request at `now` for a key whose TAT is *tat (0, or any time not after
 * now, for a new key). On success *tat moves one interval on; a refused
 * request leaves it alone, so refusals cost the client nothing. Fills *res
 * and returns res->allowed. */
int tg_gcra_take(const tg_gcra_t *g, int64_t *tat, int64_t now, tg_gcra_result_t *res);

/* The same decision from `ahead`, how far the TAT ran ahead of now before
 * the request (0 when it was in the past): what a remote store (the Redis
 * script) reports back. Returns res->allowed. */
int tg_gcra_decide(const tg_gcra_t *g, int64_t ahead, tg_gcra_result_t *res);

/* Give back one request taken earlier (rate_limit ... count=failed|successful:
 * the answer showed the request should not have counted). Moves *tat one
 * interval back; requests taken since then keep their place, so the result
 * is the TAT as if the refunded request had never come. A TAT that ends at
 * or before `now` means a full allowance. Returns 1 when it does (the caller
 * may drop the key), else 0. */
int tg_gcra_refund(const tg_gcra_t *g, int64_t *tat, int64_t now);

/* Whole seconds for headers, rounded up: 0 stays 0, 1 ns becomes 1. */
static inline int64_t tg_gcra_seconds(int64_t ns)
{
    return ns <= 0 ? 0 : (ns + 999999999) / 1000000000;
}

#endif
