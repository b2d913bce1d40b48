/* rate_limit: request rate limits with GCRA (src/gcra.c), replacing
 * express-rate-limit and its Redis store.
 *
 *   rate_limit_zone NAME key=TEMPLATE rate=Nr/s|r/m|r/h [burst=N] size=SIZE
 *                   [backend=local|redis://HOST:PORT[/DB]] [mode=enforce|dry_run]
 *                   [status=429] [on_backend_error=allow|deny]
 *                   [skip_empty=on|off];                           (main scope)
 *   redis_timeout 50ms;                                            (main scope)
 *   rate_limit NAME... [count=all|failed|successful]; | rate_limit off;
 *                                                          (server, location)
 *   rate_limit_allow CIDR...;  rate_limit_body TEXT [TYPE];
 *   rate_limit_headers on|off | [legacy] [draft-6|draft-7|draft-8];
 *
 * Local zones keep one TAT per key in a shared-memory table
 * (src/gcra_table.c) that all workers update under one lock, so a limit is
 * exact whichever worker takes the request; the table lives in a shm zone
 * named after the rate-limit zone and survives a reload when the zone keeps
 * its size. Redis zones run the same arithmetic in a Lua script on the Redis
 * server (its clock, its atomicity), so several gateways share one limit;
 * the access hook parks the request (TG_AGAIN) until the reply or the
 * deadline and is run again by tg_request_resume, finding its decision in
 * the per-request context. If the request ends first, an arena cleanup
 * cancels the pending command, so a late reply never touches a freed request.
 *
 * Per zone and request: the key is evaluated; an empty key (a missing header)
 * counts under one shared empty key, or is not limited with skip_empty=on.
 * Zones run in the order given; the first one that refuses answers (429 or
 * status=, Retry-After, express-rate-limit's message) and the ones after it
 * are not charged.
 * dry_run zones count and log what they would refuse and let it through.
 * count=failed (successful) charges a request at access like any other and
 * gives it back in the log phase when the answer's status turns out below
 * 400 (400 or above): express-rate-limit's skipSuccessfulRequests
 * (skipFailedRequests), which also counts first and decrements at the end.
 * The refund moves the key's TAT one interval back (tg_gcra_refund), under
 * the table lock or in a Redis script, so it commutes with the requests
 * taken meanwhile.
 * Counters (passed, limited, dry_run, backend errors) sit in the zone's
 * shared header; eviction, limiting and backend trouble are logged at most
 * once a second per zone (one worker does it, with the running totals). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include "module.h"
#include "request.h"
#include "var.h"
#include "cidr.h"
#include "shm.h"
#include "stats.h"
#include "gcra.h"
#include "gcra_table.h"
#include "redis.h"
#include "worker.h"
#include "log.h"

tg_module_t tg_rate_limit_module;

#define RL_SHARED_SIZE 256 /* the zone header before the table */
#define RL_REDIS_ZONE_SIZE 4096
#define RL_MAGIC 0x31306c7267740000ULL

enum { LOG_EVICT = 0, LOG_LIMIT, LOG_DRY, LOG_BACKEND, LOG_KINDS };

/* rate_limit ... count=: which answers keep their charge */
enum { COUNT_ALL = 0, COUNT_FAILED, COUNT_SUCCESSFUL };

/* rate_limit_headers: the header sets, as express-rate-limit names them */
#define RL_H_LEGACY 0x01 /* legacyHeaders: X-RateLimit-Limit/-Remaining/-Reset */
#define RL_H_DRAFT6 0x02 /* standardHeaders: 'draft-6' */
#define RL_H_DRAFT7 0x04 /* 'draft-7' */
#define RL_H_DRAFT8 0x08 /* 'draft-8' (and `on`) */
#define RL_H_DRAFTS (RL_H_DRAFT6 | RL_H_DRAFT7 | RL_H_DRAFT8)

/* At the start of every zone's shared memory. */
typedef struct {
    uint64_t magic;
    uint64_t passed, limited, dry_run, backend_errors;
    int64_t log_at[LOG_KINDS]; /* monotonic second of the last line of each kind */
} rl_shared_t;

typedef struct {
    tg_str_t name;
    tg_tpl_t *key;
    tg_gcra_t gcra;
    int64_t size;
    int status;
    unsigned dry_run : 1;
    unsigned deny_on_error : 1;
    unsigned skip_empty : 1; /* an empty key is not limited */
    tg_redis_t *redis;     /* NULL: local */
    tg_str_t redis_prefix; /* "tollgate:rl:NAME:" */
    char interval_us[24], tolerance_us[24];
    char policy[48];      /* express-rate-limit's identifier: "10-in-1min" */
    tg_str_t policy_head; /* "\"10-in-1min\"; q=10; w=60; pk=:" */
    tg_str_t policy6;     /* drafts 6 and 7: "10;w=60" */
    tg_str_t limit_head;  /* "\"10-in-1min\"; r=" */
    int64_t window;       /* seconds, for w= */
    tg_shm_zone_t *shm;
    rl_shared_t *shared;
    int stats_slot; /* its counters in the stats zone, -1: none */
    tg_gcra_table_t *table;
    /* per worker: SHA-256 for the partition key, set up once (a one-shot
     * EVP_Digest allocates and looks the algorithm up on every call) */
    EVP_MD *sha256;
    EVP_MD_CTX *sha_ctx;
    const char *file;
    int line;
} rl_zone_t;

typedef struct {
    tg_str_t name;
    const char *file;
    int line;
    int count; /* COUNT_* */
} rl_ref_t;

typedef struct {
    /* main scope only */
    rl_zone_t **zones;
    int nzones;
    tg_redis_t **backends;
    int nbackends;
    tg_msec_t redis_timeout;
    /* every scope */
    rl_ref_t *refs; /* rate_limit names of this scope, resolved by merge */
    int nrefs;
    int set; /* this scope has rate_limit lines (a list, or off) */
    rl_zone_t **use;
    uint8_t *count; /* per zone of `use`: COUNT_* */
    int nuse;
    int refunds;    /* some zone of `use` has count=failed|successful */
    tg_cidr_t *allow;
    int nallow;
    int headers;
    tg_str_t body, body_type;
} rl_conf_t;

enum { RES_TODO = 0, RES_DONE, RES_SKIPPED, RES_ERROR };

typedef struct {
    tg_gcra_result_t g;
    tg_str_t key;    /* the evaluated key (for the partition key header) */
    const char *err; /* RES_ERROR: why */
    uint8_t state;
} rl_res_t;

/* Per request, in r->arena. */
typedef struct {
    tg_request_t *r;
    rl_conf_t *conf;
    int next;            /* zone of conf->use to look at */
    tg_redis_cmd_t *cmd; /* Redis command in flight for zone `next` */
    unsigned cleanup : 1;
    rl_res_t res[];
} rl_ctx_t;

/* The GCRA on the Redis side. Its `sha` is filled in when a config with a
 * Redis zone loads (always the same value, the SHA-1 of the text). */
static tg_redis_script_t gcra_script = {
    /* KEYS[1]: the key; ARGV[1]: interval, ARGV[2]: tolerance (microseconds).
     * Returns {allowed, ahead}: ahead is how far the TAT ran ahead of now
     * before this request, from which the gateway derives the headers. */
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "if tat < now then tat = now end\n"
    "local ahead = tat - now\n"
    "if ahead > tonumber(ARGV[2]) then return {0, ahead} end\n"
    "local new = tat + tonumber(ARGV[1])\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX',\n"
    "           math.floor((new - now) / 1000) + 1)\n"
    "return {1, ahead}\n",
    {0},
};

/* Gives one request back (count=failed|successful): the TAT moves one
 * interval back, the key goes when its allowance is full again. ARGV[1]:
 * the interval in microseconds. */
static tg_redis_script_t refund_script = {
    "local tat = tonumber(redis.call('GET', KEYS[1]))\n"
    "if not tat then return 0 end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local new = tat - tonumber(ARGV[1])\n"
    "if new <= now then redis.call('DEL', KEYS[1]) return 1 end\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX',\n"
    "           math.floor((new - now) / 1000) + 1)\n"
    "return 1\n",
    {0},
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- config -------------------------------------------------------------------------- */

static void *rl_create_conf(tg_conf_t *cf)
{
    rl_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c) {
        c->redis_timeout = TG_CONF_UNSET;
        c->headers = TG_CONF_UNSET;
        c->nallow = TG_CONF_UNSET;
    }
    return c;
}

static rl_conf_t *main_conf(tg_conf_t *cf)
{
    return cf->config->mconf[tg_rate_limit_module.index];
}

static rl_zone_t *zone_find(rl_conf_t *m, tg_str_t name)
{
    for (int i = 0; i < m->nzones; i++)
        if (tg_str_eq(m->zones[i]->name, name)) return m->zones[i];
    return NULL;
}

static const char *rl_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    rl_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->redis_timeout, p->redis_timeout, 50);
    TG_CONF_MERGE(c->headers, p->headers, 0);
    if (c->nallow == TG_CONF_UNSET) {
        c->allow = p->allow;
        c->nallow = p->nallow == TG_CONF_UNSET ? 0 : p->nallow;
    }
    TG_CONF_MERGE_STR(c->body, p->body, TG_NULL_STR);
    TG_CONF_MERGE_STR(c->body_type, p->body_type, TG_NULL_STR);
    if (!c->set) {
        c->use = p->use;
        c->count = p->count;
        c->nuse = p->nuse;
        c->refunds = p->refunds;
        return NULL;
    }
    /* resolved here, after the whole file: zones may be declared anywhere */
    rl_conf_t *m = main_conf(cf);
    c->use = tg_arena_alloc(cf->arena, (size_t)(c->nrefs + 1) * sizeof(rl_zone_t *));
    c->count = tg_arena_alloc(cf->arena, (size_t)(c->nrefs + 1));
    if (c->use == NULL || c->count == NULL) return "out of memory";
    const char *file = cf->file;
    int line = cf->line;
    for (int i = 0; i < c->nrefs; i++) {
        rl_zone_t *z = zone_find(m, c->refs[i].name);
        if (z == NULL) {
            cf->file = c->refs[i].file;
            cf->line = c->refs[i].line;
            tg_conf_error(cf, "unknown rate_limit_zone \"%.*s\" in \"rate_limit\"",
                          TG_STR_FMT(c->refs[i].name));
            continue;
        }
        c->refunds |= c->refs[i].count != COUNT_ALL;
        c->count[c->nuse] = (uint8_t)c->refs[i].count;
        c->use[c->nuse++] = z;
    }
    cf->file = file;
    cf->line = line;
    return NULL;
}

static const char *parse_rate(tg_conf_t *cf, tg_str_t v, int64_t *count, int64_t *period,
                              int64_t *window)
{
    const char *r = memchr(v.p, 'r', v.len);
    if (r && tg_parse_int((tg_str_t){v.p, (size_t)(r - v.p)}, count) == 0 && *count > 0 &&
        v.p + v.len - r == 3 && r[1] == '/') {
        switch (r[2]) {
        case 's':
            *window = 1;
            break;
        case 'm':
            *window = 60;
            break;
        case 'h':
            *window = 3600;
            break;
        default:
            *window = 0;
        }
        if (*window) {
            *period = *window * 1000000000LL;
            return NULL;
        }
    }
    return tg_conf_errf(cf,
                        "invalid rate \"%.*s\" in \"rate_limit_zone\", expected Nr/s, Nr/m or "
                        "Nr/h",
                        TG_STR_FMT(v));
}

static const char *set_zone(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    rl_conf_t *m = conf;
    tg_str_t name = tg_conf_arg(cf, 1), v;
    if (zone_find(m, name))
        return tg_conf_errf(cf, "duplicate rate_limit_zone \"%.*s\"", TG_STR_FMT(name));
    rl_zone_t *z = tg_arena_alloc(cf->arena, sizeof(*z));
    if (z == NULL) return "out of memory";
    z->name = name;
    z->status = 429;
    z->file = cf->file;
    z->line = cf->line;
    int64_t count = 0, period = 0, burst = 0;
    tg_str_t backend = TG_NULL_STR;
    for (int i = 2; i <= cf->nargs; i++) {
        const char *err = NULL;
        int64_t n;
        if (tg_conf_arg_kv(cf, i, "key", &v)) {
            if (v.len == 0) return "empty key= in \"rate_limit_zone\"";
            if ((z->key = tg_tpl_compile(cf, v, &err)) == NULL) return err;
        } else if (tg_conf_arg_kv(cf, i, "rate", &v)) {
            err = parse_rate(cf, v, &count, &period, &z->window);
        } else if (tg_conf_arg_kv(cf, i, "burst", &v)) {
            if (tg_parse_int(v, &burst) != 0 || burst < 0 || burst > 1000000000)
                err = tg_conf_errf(cf, "invalid burst \"%.*s\" in \"rate_limit_zone\"",
                                   TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "size", &v)) {
            if (tg_parse_size(v, &z->size) != 0 || z->size <= 0)
                err =
                    tg_conf_errf(cf, "invalid size \"%.*s\" in \"rate_limit_zone\"", TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "backend", &v)) {
            backend = v;
        } else if (tg_conf_arg_kv(cf, i, "mode", &v)) {
            if (tg_str_eq_lit(v, "dry_run"))
                z->dry_run = 1;
            else if (!tg_str_eq_lit(v, "enforce"))
                err = tg_conf_errf(cf,
                                   "invalid mode \"%.*s\" in \"rate_limit_zone\", expected "
                                   "enforce or dry_run",
                                   TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "status", &v)) {
            if (tg_parse_int(v, &n) != 0 || n < 400 || n > 599)
                err = tg_conf_errf(cf,
                                   "invalid status \"%.*s\" in \"rate_limit_zone\", expected "
                                   "400..599",
                                   TG_STR_FMT(v));
            z->status = (int)n;
        } else if (tg_conf_arg_kv(cf, i, "skip_empty", &v)) {
            if (tg_str_eq_lit(v, "on"))
                z->skip_empty = 1;
            else if (!tg_str_eq_lit(v, "off"))
                err = tg_conf_errf(cf,
                                   "invalid skip_empty \"%.*s\" in \"rate_limit_zone\", expected "
                                   "on or off",
                                   TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "on_backend_error", &v)) {
            if (tg_str_eq_lit(v, "deny"))
                z->deny_on_error = 1;
            else if (!tg_str_eq_lit(v, "allow"))
                err = tg_conf_errf(cf,
                                   "invalid on_backend_error \"%.*s\" in \"rate_limit_zone\", "
                                   "expected allow or deny",
                                   TG_STR_FMT(v));
        } else {
            err = tg_conf_errf(cf,
                               "invalid parameter \"%s\" in \"rate_limit_zone\", expected "
                               "key=, rate=, burst=, size=, backend=, mode=, status=, "
                               "skip_empty= or on_backend_error=",
                               cf->args[i].text.p);
        }
        if (err) return err;
    }
    if (z->key == NULL || count == 0)
        return tg_conf_errf(cf, "\"rate_limit_zone\" %.*s needs key= and rate=", TG_STR_FMT(name));
    int local = backend.p == NULL || tg_str_eq_lit(backend, "local");
    if (!local) {
        const char *err = tg_redis_create(cf, backend, &z->redis);
        if (err) return err;
        /* one pool per address, whatever the number of zones using it */
        for (int i = 0; i < m->nbackends; i++)
            if (strcmp(tg_redis_name(m->backends[i]), tg_redis_name(z->redis)) == 0)
                z->redis = m->backends[i];
        if (m->nbackends == 0 || m->backends[m->nbackends - 1] != z->redis) {
            int known = 0;
            for (int i = 0; i < m->nbackends; i++)
                known |= m->backends[i] == z->redis;
            if (!known) {
                tg_redis_t **b =
                    tg_arena_grow(cf->arena, m->backends, (size_t)m->nbackends, 1, sizeof(*b));
                if (b == NULL) return "out of memory";
                b[m->nbackends++] = z->redis;
                m->backends = b;
            }
        }
        if ((err = tg_redis_add_script(cf, z->redis, &gcra_script)) != NULL ||
            (err = tg_redis_add_script(cf, z->redis, &refund_script)) != NULL)
            return err;
        char *pfx = tg_arena_printf(cf->arena, "tollgate:rl:%.*s:", TG_STR_FMT(name));
        if (pfx == NULL) return "out of memory";
        z->redis_prefix = tg_str_c(pfx);
    } else if (z->size == 0) {
        return tg_conf_errf(cf,
                            "\"rate_limit_zone\" %.*s needs size= (shared memory for its "
                            "keys, about %d bytes each)",
                            TG_STR_FMT(name), TG_GCRA_TABLE_KEY_BYTES);
    }
    /* Redis keeps microseconds: round the interval so both agree exactly */
    if (tg_gcra_init(&z->gcra, count, period, burst, local ? 1 : 1000) != 0)
        return tg_conf_errf(cf, "rate or burst out of range in \"rate_limit_zone\" %.*s",
                            TG_STR_FMT(name));
    snprintf(z->interval_us, sizeof(z->interval_us), "%lld", (long long)(z->gcra.interval / 1000));
    snprintf(z->tolerance_us, sizeof(z->tolerance_us), "%lld",
             (long long)(z->gcra.tolerance / 1000));
    snprintf(z->policy, sizeof(z->policy), "%lld-in-1%s", (long long)count,
             z->window == 1    ? "sec"
             : z->window == 60 ? "min"
                               : "hr");
    /* the constant parts of the headers, so a response only appends numbers */
    char *ph = tg_arena_printf(cf->arena, "\"%s\"; q=%lld; w=%lld; pk=:", z->policy,
                               (long long)count, (long long)z->window);
    char *lh = tg_arena_printf(cf->arena, "\"%s\"; r=", z->policy);
    char *p6 = tg_arena_printf(cf->arena, "%lld;w=%lld", (long long)count, (long long)z->window);
    if (ph == NULL || lh == NULL || p6 == NULL) return "out of memory";
    z->policy6 = tg_str_c(p6);
    z->policy_head = tg_str_c(ph);
    z->limit_head = tg_str_c(lh);
    const char *err = tg_shm_zone_add(cf, name, local ? (size_t)z->size : RL_REDIS_ZONE_SIZE,
                                      local ? "rate_limit" : "rate_limit_redis", &z->shm);
    if (err) return err;
    rl_zone_t **zs = tg_arena_grow(cf->arena, m->zones, (size_t)m->nzones, 1, sizeof(*zs));
    if (zs == NULL) return "out of memory";
    zs[m->nzones++] = z;
    m->zones = zs;
    return NULL;
}

static const char *set_rate_limit(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    rl_conf_t *c = conf;
    if (cf->nargs == 1 && tg_str_eq_lit(tg_conf_arg(cf, 1), "off")) {
        if (c->set) return "\"rate_limit off\" cannot be combined with other \"rate_limit\" lines";
        c->set = 2;
        return NULL;
    }
    if (c->set == 2) return "\"rate_limit off\" cannot be combined with other \"rate_limit\" lines";
    int mode = COUNT_ALL, names = 0;
    tg_str_t v;
    for (int i = 1; i <= cf->nargs; i++) {
        if (!tg_conf_arg_kv(cf, i, "count", &v)) {
            names++;
            continue;
        }
        if (tg_str_eq_lit(v, "failed"))
            mode = COUNT_FAILED;
        else if (tg_str_eq_lit(v, "successful"))
            mode = COUNT_SUCCESSFUL;
        else if (!tg_str_eq_lit(v, "all"))
            return tg_conf_errf(cf,
                                "invalid count \"%.*s\" in \"rate_limit\", expected all, failed "
                                "or successful",
                                TG_STR_FMT(v));
    }
    if (names == 0) return "\"rate_limit\" needs a zone name";
    rl_ref_t *refs =
        tg_arena_grow(cf->arena, c->refs, (size_t)c->nrefs, (size_t)cf->nargs, sizeof(*refs));
    if (refs == NULL) return "out of memory";
    c->refs = refs; /* the parser goes on after an error: keep array and count in step */
    for (int i = 1; i <= cf->nargs; i++) {
        if (tg_conf_arg_kv(cf, i, "count", &v)) continue;
        tg_str_t name = tg_conf_arg(cf, i);
        for (int k = 0; k < c->nrefs; k++)
            if (tg_str_eq(refs[k].name, name))
                return tg_conf_errf(cf, "rate_limit zone \"%.*s\" is listed twice",
                                    TG_STR_FMT(name));
        refs[c->nrefs++] = (rl_ref_t){name, cf->file, cf->line, mode};
    }
    c->set = 1;
    return NULL;
}

static const char *set_allow(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    rl_conf_t *c = conf;
    int n = c->nallow == TG_CONF_UNSET ? 0 : c->nallow;
    tg_cidr_t *v = tg_arena_grow(cf->arena, c->allow, (size_t)n, (size_t)cf->nargs, sizeof(*v));
    if (v == NULL) return "out of memory";
    for (int i = 1; i <= cf->nargs; i++)
        if (tg_cidr_parse(tg_conf_arg(cf, i), &v[n++]) != 0)
            return tg_conf_errf(cf, "invalid address or CIDR \"%s\" in \"rate_limit_allow\"",
                                cf->args[i].text.p);
    c->allow = v;
    c->nallow = n;
    return NULL;
}

/* rate_limit_headers on|off | [legacy] [draft-6|draft-7|draft-8] */
static const char *set_headers(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    rl_conf_t *c = conf;
    if (c->headers != TG_CONF_UNSET) return "\"rate_limit_headers\" directive is duplicate";
    int h = 0;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v = tg_conf_arg(cf, i);
        int bit = tg_str_eq_lit(v, "legacy")    ? RL_H_LEGACY
                  : tg_str_eq_lit(v, "draft-6") ? RL_H_DRAFT6
                  : tg_str_eq_lit(v, "draft-7") ? RL_H_DRAFT7
                  : tg_str_eq_lit(v, "draft-8") ? RL_H_DRAFT8
                  : tg_str_eq_lit(v, "on")      ? RL_H_DRAFT8
                  : tg_str_eq_lit(v, "off")     ? -1
                                                : 0;
        if (bit == 0)
            return tg_conf_errf(cf,
                                "invalid value \"%.*s\" in \"rate_limit_headers\", expected on, "
                                "off, legacy, draft-6, draft-7 or draft-8",
                                TG_STR_FMT(v));
        if (bit < 0 || tg_str_eq_lit(v, "on")) {
            if (cf->nargs > 1)
                return tg_conf_errf(cf, "\"rate_limit_headers %.*s\" takes no other value",
                                    TG_STR_FMT(v));
            bit = bit < 0 ? 0 : bit;
        }
        if ((bit & RL_H_DRAFTS) && (h & RL_H_DRAFTS))
            return "\"rate_limit_headers\" takes one of draft-6, draft-7 and draft-8 (they use "
                   "the same header names with different syntax)";
        h |= bit;
    }
    c->headers = h;
    return NULL;
}

static const char *set_body(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    rl_conf_t *c = conf;
    if (c->body.p) return "\"rate_limit_body\" directive is duplicate";
    c->body = tg_conf_arg(cf, 1);
    if (cf->nargs == 2) {
        c->body_type = tg_conf_arg(cf, 2);
        if (tg_conf_check_header(cf, TG_STR("Content-Type"), c->body_type))
            return tg_conf_errf(cf, "invalid content type \"%.*s\" in \"rate_limit_body\"",
                                TG_STR_FMT(c->body_type));
    }
    return NULL;
}

/* In the master, once per config load: lay out (or find again, after a
 * reload) each zone's shared header and table. */
static const char *rl_init_conf(tg_conf_t *cf, void *conf)
{
    rl_conf_t *m = conf;
    for (int i = 0; i < m->nzones; i++) {
        rl_zone_t *z = m->zones[i];
        z->stats_slot = tg_stats_slot(cf, TG_STATS_ZONE, z->name, TG_NULL_STR);
        z->shared = z->shm->data;
        if (z->shared->magic != RL_MAGIC) {
            memset(z->shared, 0, sizeof(*z->shared));
            z->shared->magic = RL_MAGIC;
        }
        if (z->redis) continue;
        z->table = tg_gcra_table_init((char *)z->shm->data + RL_SHARED_SIZE,
                                      z->shm->size - RL_SHARED_SIZE);
        if (z->table == NULL) {
            cf->file = z->file;
            cf->line = z->line;
            tg_conf_error(cf, "cannot set up the table of rate_limit_zone \"%.*s\"",
                          TG_STR_FMT(z->name));
            continue;
        }
        if (z->shm->reused)
            tg_log(TG_LOG_INFO, "rate_limit zone \"%.*s\": state kept from the running config",
                   TG_STR_FMT(z->name));
    }
    return NULL;
}

static int rl_init_worker(tg_worker_t *w)
{
    rl_conf_t *m = w->config->mconf[tg_rate_limit_module.index];
    for (int i = 0; i < m->nbackends; i++)
        if (tg_redis_start(m->backends[i]) != 0) return -1;
    EVP_MD *sha256 = m->nzones ? EVP_MD_fetch(NULL, "SHA256", NULL) : NULL;
    for (int i = 0; i < m->nzones; i++) {
        m->zones[i]->sha256 = sha256;
        if (sha256 == NULL || (m->zones[i]->sha_ctx = EVP_MD_CTX_new()) == NULL) return -1;
    }
    return 0;
}

static int rl_is_active(void *conf)
{
    return ((rl_conf_t *)conf)->nuse > 0;
}

/* --explain and -T: each zone this scope counts against, with its key,
 * policy, burst and backend, then the scope's headers and exemptions. */
static const char *rl_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    static const char *const counts[] = {"all", "failed", "successful"};
    rl_conf_t *c = conf;
    char *s = tg_arena_printf(a, "%s", "");
    for (int i = 0; s && i < c->nuse; i++) {
        const rl_zone_t *z = c->use[i];
        int64_t burst = z->gcra.tolerance / z->gcra.interval + 1 - z->gcra.count;
        s = tg_arena_printf(a, "%s%szone %.*s key=%.*s rate=%s burst=%lld count=%s status=%d "
                               "backend=%s%s",
                            s, i ? "; " : "", TG_STR_FMT(z->name), TG_STR_FMT(z->key->src),
                            z->policy, (long long)burst, counts[c->count[i]], z->status,
                            z->redis ? tg_redis_name(z->redis) : "local",
                            z->dry_run ? " dry_run" : "");
    }
    if (s)
        s = tg_arena_printf(a, "%s; headers=%s%s%s%s%s; exempt addresses: %d", s,
                            c->headers ? "" : "off", c->headers & RL_H_LEGACY ? " legacy" : "",
                            c->headers & RL_H_DRAFT6 ? " draft-6" : "",
                            c->headers & RL_H_DRAFT7 ? " draft-7" : "",
                            c->headers & RL_H_DRAFT8 ? " draft-8" : "", c->nallow);
    return s;
}

/* ---- deciding ------------------------------------------------------------------------ */

/* One worker logs a kind of event per zone and second. */
static int log_due(rl_zone_t *z, int kind)
{
    int64_t sec = mono_ns() / 1000000000,
            old = __atomic_load_n(&z->shared->log_at[kind], __ATOMIC_RELAXED);
    return old != sec && __atomic_compare_exchange_n(&z->shared->log_at[kind], &old, sec, 0,
                                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static uint64_t count(uint64_t *counter)
{
    return __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

static void take_local(rl_zone_t *z, tg_str_t key, rl_res_t *res, int64_t now)
{
    unsigned ev = 0;
    if (tg_gcra_table_take(z->table, &z->gcra, key, now, &res->g, &ev) != 0) {
        res->state = RES_ERROR;
        res->err = "shared memory lock failed";
        return;
    }
    res->state = RES_DONE;
    if ((ev & TG_GCRA_TABLE_F_RESET))
        tg_log(TG_LOG_WARN,
               "rate_limit zone \"%.*s\": a worker died holding the table lock, "
               "the table was cleared",
               TG_STR_FMT(z->name));
    if ((ev & TG_GCRA_TABLE_F_EVICTED) && tg_log_level <= TG_LOG_INFO && log_due(z, LOG_EVICT)) {
        tg_gcra_table_stats_t st;
        tg_gcra_table_stats(z->table, &st);
        tg_log(TG_LOG_INFO,
               "rate_limit zone \"%.*s\": table full (%u keys), evicted the least "
               "recently used key; evictions=%llu",
               TG_STR_FMT(z->name), st.capacity, (unsigned long long)st.evictions);
    }
}

static void redis_done(void *data, redisReply *reply, const char *err)
{
    rl_ctx_t *x = data;
    rl_zone_t *z = x->conf->use[x->next];
    rl_res_t *res = &x->res[x->next];
    x->cmd = NULL;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[1]->type == REDIS_REPLY_INTEGER) {
        long long us = reply->element[1]->integer;
        if (us > INT64_MAX / 1000) /* nonsense from the store: clamp, do not overflow */
            us = INT64_MAX / 1000;
        tg_gcra_decide(&z->gcra, (int64_t)us * 1000, &res->g);
        res->g.allowed = reply->element[0]->integer == 1; /* the server decided */
        res->state = RES_DONE;
    } else {
        res->state = RES_ERROR;
        res->err = err                                         ? err
                   : reply && reply->type == REDIS_REPLY_ERROR ? "error reply"
                                                               : "unexpected reply";
        if (reply && reply->type == REDIS_REPLY_ERROR && log_due(z, LOG_BACKEND))
            tg_log(TG_LOG_ERROR, "rate_limit zone \"%.*s\": redis %s answered: %s",
                   TG_STR_FMT(z->name), tg_redis_name(z->redis), reply->str);
    }
    tg_request_resume(x->r);
}

/* A refund's answer: only trouble is worth a line. */
static void refund_done(void *data, redisReply *reply, const char *err)
{
    rl_zone_t *z = data;
    if ((err || (reply && reply->type == REDIS_REPLY_ERROR)) && log_due(z, LOG_BACKEND))
        tg_log(TG_LOG_ERROR, "rate_limit zone \"%.*s\": refund on redis %s failed: %s",
               TG_STR_FMT(z->name), tg_redis_name(z->redis),
               err ? err : reply->str);
}

/* The request ends (answered, failed, or its connection closed): a Redis
 * reply still on its way must not find it. */
static void ctx_cleanup(void *data)
{
    rl_ctx_t *x = data;
    if (x->cmd) {
        tg_redis_cancel(x->cmd);
        x->cmd = NULL;
    }
}

static tg_rc_t take_redis(rl_ctx_t *x, rl_zone_t *z, tg_str_t key, rl_res_t *res)
{
    tg_request_t *r = x->r;
    char *k = tg_arena_alloc_nz(r->arena, z->redis_prefix.len + key.len);
    if (k == NULL) return TG_ERROR;
    memcpy(k, z->redis_prefix.p, z->redis_prefix.len);
    memcpy(k + z->redis_prefix.len, key.p, key.len);
    const char *argv[3] = {k, z->interval_us, z->tolerance_us};
    size_t argvlen[3] = {z->redis_prefix.len + key.len, strlen(z->interval_us),
                         strlen(z->tolerance_us)};
    if (!x->cleanup) {
        if (tg_arena_on_reset(r->arena, ctx_cleanup, x) != 0) return TG_ERROR;
        x->cleanup = 1;
    }
    const char *err = NULL;
    x->cmd = tg_redis_eval(z->redis, &gcra_script, 1, 3, argv, argvlen, x->conf->redis_timeout,
                           redis_done, x, &err);
    if (x->cmd == NULL) {
        res->state = RES_ERROR;
        res->err = err;
        return TG_OK;
    }
    return TG_AGAIN;
}

static tg_rc_t respond_json(tg_request_t *r, int status, const char *json)
{
    return tg_request_respond(r, status, "application/json", tg_str_c(json)) ? TG_ERROR : TG_DONE;
}

static tg_rc_t limit(tg_request_t *r, rl_conf_t *c, rl_zone_t *z, rl_res_t *res)
{
    int64_t retry = tg_gcra_seconds(res->g.retry_after);
    if (retry < 1) retry = 1;
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", (long long)retry);
    if (tg_request_add_resp_header(r, TG_STR("Retry-After"), (tg_str_t){num, (size_t)n}) != 0)
        return TG_ERROR;
    if (c->body.p) {
        const char *type = c->body_type.p ? c->body_type.p
                           : (c->body.len && (c->body.p[0] == '{' || c->body.p[0] == '['))
                               ? "application/json"
                               : "text/plain";
        return tg_request_respond(r, z->status, type, c->body) ? TG_ERROR : TG_DONE;
    }
    /* express-rate-limit's default answer: its message through res.send() */
    return tg_request_respond(r, z->status, "text/html; charset=utf-8",
                              TG_STR("Too many requests, please try again later."))
               ? TG_ERROR
               : TG_DONE;
}

/* Act on zone z's result: count, log, and answer when it refuses. */
static tg_rc_t decide(tg_request_t *r, rl_conf_t *c, rl_zone_t *z, rl_res_t *res)
{
    rl_shared_t *s = z->shared;
    if (res->state == RES_ERROR) {
        uint64_t n = count(&s->backend_errors);
        if (log_due(z, LOG_BACKEND))
            tg_log(TG_LOG_ERROR,
                   "rate_limit zone \"%.*s\": backend %s: %s, client %.*s %s by "
                   "on_backend_error=%s; backend_errors=%llu",
                   TG_STR_FMT(z->name), z->redis ? tg_redis_name(z->redis) : "local", res->err,
                   TG_STR_FMT(r->remote_addr), z->deny_on_error ? "refused" : "let through",
                   z->deny_on_error ? "deny" : "allow", (unsigned long long)n);
        if (z->deny_on_error) return respond_json(r, 503, "{\"error\":\"rate_limit_unavailable\"}");
        return TG_OK;
    }
    if (res->g.allowed) {
        count(&s->passed);
        return TG_OK;
    }
    tg_stats_zone_hit(z->stats_slot, z->dry_run);
    if (z->dry_run) {
        uint64_t n = count(&s->dry_run);
        if (log_due(z, LOG_DRY))
            tg_log(TG_LOG_WARN,
                   "rate_limit zone \"%.*s\": dry run, would limit client %.*s "
                   "(retry after %llds); dry_run=%llu",
                   TG_STR_FMT(z->name), TG_STR_FMT(r->remote_addr),
                   (long long)tg_gcra_seconds(res->g.retry_after), (unsigned long long)n);
        return TG_OK;
    }
    uint64_t n = count(&s->limited);
    if (log_due(z, LOG_LIMIT))
        tg_log(TG_LOG_INFO,
               "rate_limit zone \"%.*s\": limiting client %.*s (retry after %llds); "
               "limited=%llu",
               TG_STR_FMT(z->name), TG_STR_FMT(r->remote_addr),
               (long long)tg_gcra_seconds(res->g.retry_after), (unsigned long long)n);
    return limit(r, c, z, res);
}

static tg_rc_t rl_access(tg_request_t *r, void *conf)
{
    rl_conf_t *c = conf;
    rl_ctx_t *x = tg_module_ctx(r, &tg_rate_limit_module);
    if (x == NULL) {
        if (c->nallow && tg_cidr_match_text(c->allow, c->nallow, r->remote_addr))
            return TG_OK; /* exempt: no limit, no headers */
        x = tg_arena_alloc(r->arena, sizeof(*x) + (size_t)c->nuse * sizeof(rl_res_t));
        if (x == NULL) return TG_ERROR;
        x->r = r;
        x->conf = c;
        tg_module_ctx(r, &tg_rate_limit_module) = x;
    }
    if (x->cmd) return TG_AGAIN; /* still waiting (not expected: only the reply resumes) */
    int64_t now = 0;
    for (; x->next < c->nuse; x->next++) {
        rl_zone_t *z = c->use[x->next];
        rl_res_t *res = &x->res[x->next];
        if (res->state == RES_TODO) {
            tg_str_t key;
            if (tg_tpl_eval(r, z->key, &key) != 0) return TG_ERROR;
            res->key = key;
            if (key.len == 0 && z->skip_empty) {
                res->state = RES_SKIPPED; /* nothing to count by */
                continue;
            }
            if (z->redis) {
                tg_rc_t rc = take_redis(x, z, key, res);
                if (rc != TG_OK) return rc;
            } else {
                if (now == 0) now = mono_ns();
                take_local(z, key, res, now);
            }
        }
        if (res->state == RES_SKIPPED) continue;
        tg_rc_t rc = decide(r, c, z, res);
        if (rc != TG_OK) return rc;
    }
    return TG_OK;
}

/* ---- headers ------------------------------------------------------------------------- */

/* express-rate-limit's partition key: base64 of the first 12 hex digits of
 * the key's SHA-256 */
static const char hexdigits[] = "0123456789abcdef";

/* express-rate-limit's partition key: base64 of the first 12 hex digits of
 * the key's SHA-256. Writes 16 characters. */
static int partition_key(rl_zone_t *z, tg_str_t key, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE], hex[12];
    unsigned int n = 0;
    if (!EVP_DigestInit_ex2(z->sha_ctx, z->sha256, NULL) ||
        !EVP_DigestUpdate(z->sha_ctx, key.p, key.len) || !EVP_DigestFinal_ex(z->sha_ctx, md, &n))
        return -1;
    for (int i = 0; i < 6; i++) {
        hex[2 * i] = (unsigned char)hexdigits[md[i] >> 4];
        hex[2 * i + 1] = (unsigned char)hexdigits[md[i] & 15];
    }
    char b64[17];
    if (EVP_EncodeBlock((unsigned char *)b64, hex, 12) != 16) return -1;
    memcpy(out, b64, 16);
    return 0;
}

/* Decimal digits of v >= 0 at p; returns how many. */
static size_t put_int(char *p, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

static int set_header(tg_request_t *r, const char *name, const char *value)
{
    return value == NULL ||
           tg_headers_set(r->arena, &r->resp_headers, tg_str_c(name), tg_str_c(value)) != 0;
}

/* The one-value header sets of express-rate-limit (legacy, drafts 6 and 7),
 * from the last zone that counted the request: an app with several limiters
 * sends the values of the last one, each setHeader() replacing the one
 * before. Reset values: seconds until the key's allowance is full again
 * (GCRA), where a fixed window gives the seconds until the window ends. */
static tg_rc_t single_headers(tg_request_t *r, rl_conf_t *c, rl_ctx_t *x)
{
    int last = -1;
    for (int i = 0; i < c->nuse && i <= x->next; i++)
        if (x->res[i].state == RES_DONE) last = i;
    if (last < 0) return TG_OK;
    rl_zone_t *z = c->use[last];
    const tg_gcra_result_t *g = &x->res[last].g;
    long long limit = (long long)z->gcra.count, left = g->remaining < 0 ? 0 : g->remaining,
              reset = (long long)tg_gcra_seconds(g->reset);
    tg_arena_t *a = r->arena;
    if (c->headers & RL_H_LEGACY) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        /* the moment of the reset as Unix seconds, rounded up like Math.ceil */
        int64_t at = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + g->reset;
        if (set_header(r, "X-RateLimit-Limit", tg_arena_printf(a, "%lld", limit)) ||
            set_header(r, "X-RateLimit-Remaining", tg_arena_printf(a, "%lld", left)) ||
            set_header(r, "X-RateLimit-Reset",
                       tg_arena_printf(a, "%lld", (long long)tg_gcra_seconds(at))))
            return TG_ERROR;
    }
    if ((c->headers & (RL_H_DRAFT6 | RL_H_DRAFT7)) &&
        tg_headers_set(a, &r->resp_headers, TG_STR("RateLimit-Policy"), z->policy6) != 0)
        return TG_ERROR;
    if ((c->headers & RL_H_DRAFT6) &&
        (set_header(r, "RateLimit-Limit", tg_arena_printf(a, "%lld", limit)) ||
         set_header(r, "RateLimit-Remaining", tg_arena_printf(a, "%lld", left)) ||
         set_header(r, "RateLimit-Reset", tg_arena_printf(a, "%lld", reset))))
        return TG_ERROR;
    if ((c->headers & RL_H_DRAFT7) &&
        set_header(r, "RateLimit",
                   tg_arena_printf(a, "limit=%lld, remaining=%lld, reset=%lld", limit, left, reset)))
        return TG_ERROR;
    return TG_OK;
}

/* The headers rate_limit_headers asks for, on every answer including our
 * 429. Draft 8 (express-rate-limit's standardHeaders: 'draft-8'): one
 * RateLimit-Policy and one RateLimit per zone that counted the request,
 * built from the zone's constant head plus numbers, no printf on this path. */
static tg_rc_t rl_response_headers(tg_request_t *r, void *conf)
{
    rl_conf_t *c = conf;
    rl_ctx_t *x = tg_module_ctx(r, &tg_rate_limit_module);
    if (!c->headers || x == NULL || x->conf != c) return TG_OK;
    if ((c->headers & ~RL_H_DRAFT8) && single_headers(r, c, x) != TG_OK) return TG_ERROR;
    for (int pass = 0; pass < 2 && (c->headers & RL_H_DRAFT8); pass++) {
        for (int i = 0; i < c->nuse && i <= x->next; i++) {
            rl_zone_t *z = c->use[i];
            rl_res_t *res = &x->res[i];
            if (res->state != RES_DONE) continue;
            tg_str_t head = pass ? z->limit_head : z->policy_head;
            char *v = tg_arena_alloc_nz(r->arena, head.len + 48);
            if (v == NULL) return TG_ERROR;
            memcpy(v, head.p, head.len);
            size_t n = head.len;
            if (pass == 0) {
                if (partition_key(z, res->key, v + n) != 0) return TG_ERROR;
                n += 16;
                v[n++] = ':';
            } else {
                n += put_int(v + n, res->g.remaining < 0 ? 0 : res->g.remaining);
                memcpy(v + n, "; t=", 4);
                n += 4;
                n += put_int(v + n, tg_gcra_seconds(res->g.reset));
            }
            if (tg_headers_add(r->arena, &r->resp_headers,
                               pass ? TG_STR("RateLimit") : TG_STR("RateLimit-Policy"),
                               (tg_str_t){v, n}) != 0)
                return TG_ERROR;
        }
    }
    return TG_OK;
}

/* count=failed|successful: give back what the answer says should not have
 * counted. Only requests this zone let through moved its TAT (a refusal
 * costs nothing); a client gone before the answer (499) is a failure. */
static void rl_log(tg_request_t *r, void *conf)
{
    rl_conf_t *c = conf;
    rl_ctx_t *x = tg_module_ctx(r, &tg_rate_limit_module);
    if (!c->refunds || x == NULL || x->conf != c) return;
    int failed = r->status >= 400;
    int64_t now = 0;
    for (int i = 0; i < c->nuse && i <= x->next; i++) {
        rl_zone_t *z = c->use[i];
        rl_res_t *res = &x->res[i];
        if (c->count[i] == COUNT_ALL || res->state != RES_DONE || !res->g.allowed ||
            failed == (c->count[i] == COUNT_FAILED))
            continue;
        if (z->redis == NULL) {
            if (now == 0) now = mono_ns();
            if (tg_gcra_table_refund(z->table, &z->gcra, res->key, now) != 0)
                tg_log(TG_LOG_ERROR, "rate_limit zone \"%.*s\": refund: shared memory lock failed",
                       TG_STR_FMT(z->name));
            continue;
        }
        /* fire and forget: nobody waits for the answer */
        char *k = tg_arena_alloc_nz(r->arena, z->redis_prefix.len + res->key.len);
        if (k == NULL) continue;
        memcpy(k, z->redis_prefix.p, z->redis_prefix.len);
        memcpy(k + z->redis_prefix.len, res->key.p, res->key.len);
        const char *argv[2] = {k, z->interval_us};
        size_t argvlen[2] = {z->redis_prefix.len + res->key.len, strlen(z->interval_us)};
        const char *err = NULL;
        if (tg_redis_eval(z->redis, &refund_script, 1, 2, argv, argvlen, x->conf->redis_timeout,
                          refund_done, z, &err) == NULL &&
            log_due(z, LOG_BACKEND))
            tg_log(TG_LOG_ERROR, "rate_limit zone \"%.*s\": refund not sent to redis %s: %s",
                   TG_STR_FMT(z->name), tg_redis_name(z->redis), err ? err : "?");
    }
}

static const tg_directive_t rl_directives[] = {
    {"rate_limit_zone", TG_SCOPE_MAIN, 0, 3, 9, set_zone, 0},
    {"redis_timeout", TG_SCOPE_MAIN, 0, 1, 1, tg_conf_set_msec, offsetof(rl_conf_t, redis_timeout)},
    {"rate_limit", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, -1, set_rate_limit, 0},
    {"rate_limit_allow", TG_SCOPE_HTTP, 0, 1, -1, set_allow, 0},
    {"rate_limit_headers", TG_SCOPE_HTTP, 0, 1, 2, set_headers, 0},
    {"rate_limit_body", TG_SCOPE_HTTP, 0, 1, 2, set_body, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_rate_limit_module = {
    .name = "rate_limit",
    .directives = rl_directives,
    .create_conf = rl_create_conf,
    .merge_conf = rl_merge_conf,
    .init_conf = rl_init_conf,
    .is_active = rl_is_active,
    .explain = rl_explain,
    .init_worker = rl_init_worker,
    .on_access = rl_access,
    .on_response_headers = rl_response_headers,
    .on_log = rl_log,
};
