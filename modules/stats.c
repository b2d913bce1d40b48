/* stats: counts every request into the shared stats zone (src/stats.h) and,
 * where `stats;` is set, answers with the totals:
 *
 *   location = /stats { allow 127.0.0.1; deny all; stats; stats_auth "ops:$6$..."; }
 *   location /api/ { stats_name api; proxy_pass api; }
 *
 * JSON by default; Prometheus text with ?format=prometheus or an Accept of
 * text/plain; a self-contained HTML dashboard (stats_dashboard.h) with
 * ?format=html or an Accept of text/html. docs/stats.md: the schema, every metric.
 *
 * Counting runs in the log phase of every location (is_active is NULL), so
 * it sees the final status, and must stay cheap: relaxed atomic adds into
 * this worker's block (totals, the server block's and the location's slots,
 * the upstream server's), no lock, no allocation. Requests answered by
 * `stats` are not counted unless stats_count_self is on. Gauges are the
 * core's (src/stats.h): cheap ones copied at each request end
 * (tg_stats_request_end), the walks every second and before answering
 * (tg_stats_gauges_collect). Events outside this module (TLS, protocols,
 * compression, rate limits, Lua, retries) are counted by one-line hooks (src/stats.c).
 *
 * The answer: one table, `metrics` below, describes every metric once (its
 * JSON key and place in the document, Prometheus name, type, help, labels
 * and the field its value is read from); render_json and render_prometheus
 * walk it. This module reads only the sums src/stats.c gives it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llhttp.h>
#include "log.h"
#include "module.h"
#include "request.h"
#include "stats.h"
#include "stats_collect.h"
#include "json.h"
#include "stats_dashboard.h"
#include "basic_auth.h"
#include "upstream_dyn.h"
#include "app_stats.h"
#include "cache_store.h"
#include "tls_stats.h"

typedef struct stats_conf_s {
    int enabled;    /* location: `stats;` answers here */
    int count_self; /* stats_count_self: its own requests count as traffic */
    tg_str_t name;  /* stats_name, else the location's path (not inherited) */
    tg_basic_users_t auth; /* stats_auth */
    int srv_slot, loc_slot; /* per server block / location counters, -1: none */
    struct stats_conf_s *main; /* the main-scope config (set in init_conf) */
    /* main scope only */
    tg_stats_t *st;
    tg_config_t *config;      /* the config this main scope belongs to */
    tg_basic_cache_t auth_cache; /* per worker, for stats_auth */
} stats_conf_t;

tg_module_t tg_stats_module;

static void *stats_create_conf(tg_conf_t *cf)
{
    stats_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c) {
        c->enabled = TG_CONF_UNSET;
        c->count_self = TG_CONF_UNSET;
        c->srv_slot = c->loc_slot = -1;
    }
    return c;
}

static const char *stats_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    (void)parent;
    stats_conf_t *c = child;
    /* not inherited: `stats` answers only in the location that names it */
    if ((c->auth.nusers || c->count_self != TG_CONF_UNSET) && c->enabled != 1)
        return "\"stats_auth\" and \"stats_count_self\" need \"stats\" in the same location";
    if (c->enabled == TG_CONF_UNSET)
        c->enabled = 0;
    if (c->count_self == TG_CONF_UNSET)
        c->count_self = 0;
    return NULL;
}

static const char *set_stats(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)cf;
    (void)d;
    stats_conf_t *c = conf;
    if (c->enabled != TG_CONF_UNSET)
        return "\"stats\" directive is duplicate";
    c->enabled = 1;
    return NULL;
}

static const char *set_name(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    stats_conf_t *c = conf;
    if (c->name.p)
        return "\"stats_name\" directive is duplicate";
    c->name = tg_conf_arg(cf, 1);
    if (c->name.len == 0)
        return "empty name in \"stats_name\"";
    return NULL;
}

/* stats_auth USER:HASH */
static const char *set_auth(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    return tg_basic_auth_add(cf, &((stats_conf_t *)conf)->auth, "stats_auth");
}

/* The server block's name in the stats: its first server_name, else its
 * first listen address. */
static tg_str_t server_key(tg_server_t *s)
{
    if (s->nnames && s->names[0].len)
        return s->names[0];
    if (s->nlistens)
        return tg_str_c(s->listens[0]->text);
    return TG_STR("_");
}

static void assign_location(tg_conf_t *cf, stats_conf_t *mc, tg_location_t *loc, int srv_slot,
                            tg_str_t srv)
{
    stats_conf_t *lc = loc->mconf[tg_stats_module.index];
    lc->main = mc;
    lc->srv_slot = srv_slot;
    lc->loc_slot = tg_stats_slot(cf, TG_STATS_LOCATION, srv, lc->name.p ? lc->name : loc->path);
    if (lc->loc_slot < 0)
        tg_conf_warn(cf, "stats: location \"%.*s\" is not counted on its own, more than %d "
                         "locations",
                     TG_STR_FMT(loc->path), TG_STATS_MAX_LOCATIONS);
}

/* Give every server block and location its slot (upstream servers get theirs
 * in tg_stats_setup). */
static const char *stats_init_conf(tg_conf_t *cf, void *conf)
{
    stats_conf_t *mc = conf;
    mc->config = cf->config;
    if ((mc->st = tg_stats_setup(cf)) == NULL)
        return NULL; /* reported */
    if (tg_basic_auth_cache_init(cf, &mc->auth_cache) != 0)
        return "out of memory";
    for (int i = 0; i < cf->config->nservers; i++) {
        tg_server_t *s = cf->config->servers[i];
        tg_str_t key = server_key(s);
        int slot = tg_stats_slot(cf, TG_STATS_SERVER, key, TG_NULL_STR);
        if (slot < 0)
            tg_conf_warn(cf, "stats: server \"%.*s\" is not counted on its own, more than %d "
                             "servers",
                         TG_STR_FMT(key), TG_STATS_MAX_SERVERS);
        for (int k = 0; k < s->nlocations; k++)
            assign_location(cf, mc, s->locations[k], slot, key);
        if (s->root)
            assign_location(cf, mc, s->root, slot, key);
    }
    return NULL;
}

static int stats_init_worker(tg_worker_t *w)
{
    return tg_stats_worker_start(w); /* the gauges' timer; nothing without the zone */
}

static void count_peer(stats_conf_t *mc, tg_stats_worker_t *b, tg_request_t *r)
{
    int slot = tg_stats_peer_slot_addr(mc->st, r->upstream, r->upstream_addr);
    if (slot < 0)
        return;
    tg_stats_peer_t *p = &b->peers[slot];
    tg_stats_add(&p->requests, 1);
    int grpc = tg_request_grpc_status(r, NULL);
    if (grpc >= 0 && grpc < TG_STATS_GRPC_CODES)
        tg_stats_add(&p->grpc[grpc], 1);
    if (r->upstream_status == 0 || (r->resp_local && r->status >= 502))
        tg_stats_add(&p->failures, 1);
    double t = r->upstream_time > 0 ? r->upstream_time : 0;
    tg_stats_add(&p->latency_us, (uint64_t)(t * 1e6));
    double ms = t * 1000.0;
    int i = 0;
    while (i < TG_STATS_NBUCKETS - 1 && ms > tg_stats_bucket_ms[i])
        i++;
    tg_stats_add(&p->buckets[i], 1);
}

static void count_class(tg_stats_class_t *c, int klass, int grpc)
{
    tg_stats_add(&c->requests, 1);
    if (klass >= 0)
        tg_stats_add(&c->status[klass], 1);
    if (grpc >= 0)
        tg_stats_add(&c->grpc[grpc], 1);
}

static void stats_log(tg_request_t *r, void *conf)
{
    stats_conf_t *lc = conf;
    if (lc->enabled == 1 && !lc->count_self)
        return; /* the stats endpoint is not traffic unless asked */
    stats_conf_t *mc = lc->main;
    tg_stats_worker_t *b = mc ? tg_stats_request_end() : NULL; /* also the cheap gauges */
    if (b == NULL)
        return;
    int klass = r->status >= 100 && r->status < 600 ? r->status / 100 - 1 : -1;
    tg_stats_add(&b->requests, 1);
    if (klass >= 0) {
        tg_stats_add(&b->status[klass], 1);
        tg_stats_add(&b->codes[r->status - 100], 1);
    }
    tg_stats_add(&b->bytes_in, r->bytes_in);
    tg_stats_add(&b->bytes_out, r->bytes_out);
    int grpc = tg_request_grpc_status(r, NULL);
    if (grpc >= TG_STATS_GRPC_CODES)
        grpc = -1;
    if (lc->srv_slot >= 0)
        count_class(&b->servers[lc->srv_slot], klass, grpc);
    if (lc->loc_slot >= 0)
        count_class(&b->locations[lc->loc_slot], klass, grpc);
    if (r->upstream && r->upstream_addr.len)
        count_peer(mc, b, r);
}

/* ---- the answer ---- */

typedef struct {
    tg_arena_t *a;
    char *p;
    size_t len, cap;
    int oom;
} sb_t;

static void sb_printf(sb_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb_t *sb, const char *fmt, ...)
{
    if (sb->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->oom = 1;
            return;
        }
        if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        size_t cap = (sb->cap + (size_t)n + 1) * 2;
        char *np = tg_arena_alloc_nz(sb->a, cap);
        if (np == NULL) {
            sb->oom = 1;
            return;
        }
        memcpy(np, sb->p, sb->len);
        sb->p = np;
        sb->cap = cap;
    }
}

/* Write `s` escaped by `esc` (src/json.c), a piece at a time. */
static void put_with(sb_t *sb, tg_str_t s, size_t (*esc)(char *, size_t, tg_str_t, size_t *))
{
    char piece[256];
    while (s.len) {
        size_t used, n = esc(piece, sizeof(piece), s, &used);
        sb_printf(sb, "%.*s", (int)n, piece);
        s.p += used;
        s.len -= used;
    }
}

/* Names come from the config (tokens, addresses, paths) and may hold
 * anything: a JSON string body (src/json.c), or a Prometheus label value
 * (only \\, \" and \n escaped, as the exposition format says). */
static void put_escaped(sb_t *sb, tg_str_t s)
{
    put_with(sb, s, tg_json_escape);
}

static void put_prom_label(sb_t *sb, tg_str_t s)
{
    put_with(sb, s, tg_json_escape_prom);
}

/* ---- what is rendered: the core's sums, arranged for the table ---- */

/* Requests by class: JSON shows total and 1xx..5xx, Prometheus 1xx..5xx and
 * other (total minus the classed ones, a status outside 100-599). */
typedef struct {
    uint64_t total;
    uint64_t by_class[6]; /* 1xx..5xx, other */
    uint64_t grpc[TG_STATS_GRPC_CODES]; /* gRPC calls by grpc-status */
} class_view_t;

typedef struct {
    uint64_t sum_us;                      /* sum of the observations, microseconds */
    uint64_t buckets[TG_STATS_NBUCKETS]; /* per bucket (not cumulative), tg_stats_bucket_ms */
} hist_view_t;

typedef struct {
    uint64_t requests, failures, retries;
    int64_t active, up, down_workers;
    const char *health; /* "up", "partial", "down" */
    hist_view_t latency;
    uint64_t grpc[TG_STATS_GRPC_CODES]; /* gRPC calls by grpc-status */
} peer_view_t;

typedef struct {
    tg_stats_totals_t t;
    class_view_t requests;
    const char *version;
} top_view_t;

/* The entities metrics repeat over (each a JSON object key and a
 * Prometheus label). */
typedef enum { ENT_ZONE = 0, ENT_SERVER, ENT_LOCATION, ENT_UPSTREAM, ENT_PEER, ENT_CACHE, ENT_COUNT } ent_kind_t;

typedef struct {
    tg_str_t name;
    int parent;       /* index of its server (locations) or upstream (peers), else -1 */
    const void *view; /* tg_stats_zone_t, class_view_t, peer_view_t; NULL for upstreams */
} ent_t;

static const char *const ent_label[ENT_COUNT] = {"zone", "server", "location", "upstream",
                                                 "server", "zone"};

typedef struct {
    top_view_t top;
    ent_t *ents[ENT_COUNT];
    int nents[ENT_COUNT];
} snapshot_t;

static void class_view(class_view_t *v, const tg_stats_class_t *sum)
{
    uint64_t total = sum->requests;
    const uint64_t *status = sum->status;
    memcpy(v->grpc, sum->grpc, sizeof(v->grpc));
    v->total = total;
    uint64_t classed = 0;
    for (int k = 0; k < 5; k++)
        classed += v->by_class[k] = status[k];
    v->by_class[5] = total - classed;
}

static int add_unique(int *arr, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (arr[i] == v)
            return n;
    arr[n] = v;
    return n + 1;
}

/* Everything the renderers read: the totals, and the zones, server blocks,
 * locations (deduplicated: the slots' own names, so locations sharing a
 * stats_name show once) and upstream servers this config counts. */
static int snapshot(tg_arena_t *a, stats_conf_t *mc, snapshot_t *sn)
{
    tg_config_t *c = mc->config;
    tg_stats_shm_t *s = mc->st->shm;
    memset(sn, 0, sizeof(*sn));
    tg_stats_sum_totals(c, &sn->top.t);
    tg_stats_class_t all = {.requests = sn->top.t.requests};
    memcpy(all.status, sn->top.t.status, sizeof(all.status));
    class_view(&sn->top.requests, &all);
    sn->top.version = TG_VERSION;

    int nloc = 0, npeers = 0;
    for (int i = 0; i < c->nservers; i++)
        nloc += c->servers[i]->nlocations + 1;
    for (int i = 0; i < mc->st->nups; i++)
        npeers += mc->st->ups[i].npeers;
    int *srv = tg_arena_alloc(a, (size_t)(c->nservers + 1) * sizeof(int));
    int *loc = tg_arena_alloc(a, (size_t)(nloc + 1) * sizeof(int));
    int *loc_srv = tg_arena_alloc(a, (size_t)(nloc + 1) * sizeof(int));
    ent_t *zones = sn->ents[ENT_ZONE] = tg_arena_alloc(a, TG_STATS_MAX_ZONES * sizeof(ent_t));
    tg_stats_zone_t *zv = tg_arena_alloc(a, TG_STATS_MAX_ZONES * sizeof(*zv));
    ent_t *ups = sn->ents[ENT_UPSTREAM] = tg_arena_alloc(a, (size_t)(mc->st->nups + 1) * sizeof(ent_t));
    ent_t *peers = sn->ents[ENT_PEER] = tg_arena_alloc(a, (size_t)(npeers + 1) * sizeof(ent_t));
    peer_view_t *pv = tg_arena_alloc(a, (size_t)(npeers + 1) * sizeof(*pv));
    if (!srv || !loc || !loc_srv || !zones || !zv || !ups || !peers || !pv)
        return -1;

    for (int i = 0; i < TG_STATS_MAX_ZONES; i++) {
        if (s->master.zone_names[i].name[0] == '\0')
            continue; /* never used */
        ent_t *e = &zones[sn->nents[ENT_ZONE]];
        tg_stats_slot_name(s, TG_STATS_ZONE, i, &e->name, NULL);
        tg_stats_sum_zone(s, i, &zv[sn->nents[ENT_ZONE]]);
        e->parent = -1;
        e->view = &zv[sn->nents[ENT_ZONE]++];
    }

    int nsrv = 0;
    nloc = 0;
    for (int i = 0; i < c->nservers; i++) {
        tg_server_t *sv = c->servers[i];
        for (int k = 0; k <= sv->nlocations; k++) {
            tg_location_t *l = k < sv->nlocations ? sv->locations[k] : sv->root;
            stats_conf_t *lc = l ? l->mconf[tg_stats_module.index] : NULL;
            if (lc == NULL)
                continue;
            if (lc->srv_slot >= 0)
                nsrv = add_unique(srv, nsrv, lc->srv_slot);
            if (lc->loc_slot >= 0) {
                int before = nloc;
                nloc = add_unique(loc, nloc, lc->loc_slot);
                if (nloc > before)
                    loc_srv[before] = lc->srv_slot;
            }
        }
    }
    ent_t *se = sn->ents[ENT_SERVER] = tg_arena_alloc(a, (size_t)(nsrv + 1) * sizeof(ent_t));
    ent_t *le = sn->ents[ENT_LOCATION] = tg_arena_alloc(a, (size_t)(nloc + 1) * sizeof(ent_t));
    class_view_t *cv = tg_arena_alloc(a, (size_t)(nsrv + nloc + 1) * sizeof(*cv));
    if (!se || !le || !cv)
        return -1;
    for (int i = 0; i < nsrv; i++, cv++) {
        tg_stats_class_t sum;
        tg_stats_slot_name(s, TG_STATS_SERVER, srv[i], &se[i].name, NULL);
        tg_stats_sum_class(s, TG_STATS_SERVER, srv[i], &sum);
        class_view(cv, &sum);
        se[i].parent = -1;
        se[i].view = cv;
    }
    sn->nents[ENT_SERVER] = nsrv;
    for (int i = 0; i < nloc; i++) {
        tg_stats_class_t sum;
        tg_str_t srv_name;
        le[i].parent = -1;
        for (int k = 0; k < nsrv; k++)
            if (srv[k] == loc_srv[i])
                le[i].parent = k;
        if (le[i].parent < 0)
            continue; /* its server block is not counted on its own */
        tg_stats_slot_name(s, TG_STATS_LOCATION, loc[i], &srv_name, &le[i].name);
        tg_stats_sum_class(s, TG_STATS_LOCATION, loc[i], &sum);
        class_view(cv, &sum);
        le[i].view = cv++;
    }
    sn->nents[ENT_LOCATION] = nloc;

    for (int i = 0; i < mc->st->nups; i++) {
        tg_stats_upstream_t *su = &mc->st->ups[i];
        ups[i] = (ent_t){su->name, -1, NULL};
        for (int k = 0; k < su->npeers; k++) {
            if (su->slots[k] < 0)
                continue;
            tg_stats_peer_sum_t ps;
            tg_stats_sum_peer(s, su->slots[k], &ps);
            peer_view_t *v = &pv[sn->nents[ENT_PEER]];
            *v = (peer_view_t){ps.p.requests, ps.p.failures, ps.p.retries, ps.p.active,
                               ps.down == 0, ps.down,
                               ps.down == 0 ? "up" : ps.down >= ps.nworkers ? "down" : "partial",
                               {ps.p.latency_us, {0}}, {0}};
            memcpy(v->latency.buckets, ps.p.buckets, sizeof(v->latency.buckets));
            memcpy(v->grpc, ps.p.grpc, sizeof(v->grpc));
            peers[sn->nents[ENT_PEER]++] = (ent_t){su->peer_names[k], i, v};
        }
    }
    sn->nents[ENT_UPSTREAM] = mc->st->nups;
    int ncache = 0; /* response cache zones (src/cache_store.h) */
    for (tg_shm_zone_t *z = c->shm_zones; z; z = z->next)
        ncache += tg_cache_store_of(z) != NULL;
    ent_t *ce = sn->ents[ENT_CACHE] = tg_arena_alloc(a, (size_t)(ncache + 1) * sizeof(ent_t));
    tg_cache_stats_t *cs = tg_arena_alloc(a, (size_t)(ncache + 1) * sizeof(*cs));
    for (tg_shm_zone_t *z = c->shm_zones; z && ce && cs; z = z->next)
        if (tg_cache_store_of(z)) {
            tg_cache_stats(tg_cache_store_of(z), cs);
            ce[sn->nents[ENT_CACHE]++] = (ent_t){z->name, -1, cs++};
        }
    return ce && cs ? 0 : -1;
}

/* ---- the metrics table ---- */

typedef enum {
    N_OBJ = 0, /* a JSON object; its rows follow, up to N_END */
    N_EACH,    /* a JSON object with one object per entity; its rows repeat for each */
    N_END,
    N_METRIC
} node_t;

typedef enum {
    V_U64 = 0, /* uint64_t */
    V_U32,     /* uint32_t */
    V_I64,     /* int64_t */
    V_SECONDS, /* double, printed as a whole number */
    V_RATIO,   /* double, printed with 4 decimals */
    V_STR,     /* const char *: a JSON string (JSON only) */
    V_INFO,    /* const char *: JSON string; Prometheus: a label of a sample that is 1 */
    V_HIST     /* hist_view_t: JSON KEY_sum (ms) and KEY_buckets; Prometheus histogram (s) */
} vkind_t;

/* Label sets of a metric's own: its samples, each a JSON key and a label value. */
typedef enum {
    SET_NONE = 0, SET_STATE, SET_CLASS, SET_CODE, SET_RESULT, SET_CACHE, SET_ACTION, SET_RCACHE,
    SET_GRPC
} set_t;

enum {
    F_JSON = 1,
    F_PROM = 2,
    F_BOTH = 3,
    F_NONZERO = 4, /* samples that are 0 are left out */
    F_IF = 8       /* N_OBJ: present when the int at off is not 0, else JSON null */
};

typedef struct {
    const char *label, *key; /* Prometheus label value, JSON key */
    size_t off;              /* added to the metric's offset */
    unsigned fmt;            /* F_JSON, F_PROM, F_BOTH */
} sample_t;

typedef struct {
    const char *label; /* the label's name */
    const sample_t *s;
    int n;
} set_def_t;

#define CLS(i, name) {name, name, (i) * sizeof(uint64_t), F_BOTH}
#define I64S(i, name) {name, name, (i) * sizeof(int64_t), F_BOTH}
#define U64S(i, name) {name, name, (i) * sizeof(uint64_t), F_BOTH}
#define CACHE(label, key, field) {label, key, offsetof(tg_tls_cache_stats_t, field), F_BOTH}
static const sample_t state_samples[] = {
    I64S(TG_STATS_CONN_READING, "reading"), I64S(TG_STATS_CONN_WRITING, "writing"),
    I64S(TG_STATS_CONN_IDLE, "idle"), I64S(TG_STATS_CONN_UPGRADED, "upgraded")};
static const sample_t class_samples[] = {CLS(0, "1xx"), CLS(1, "2xx"), CLS(2, "3xx"),
                                         CLS(3, "4xx"), CLS(4, "5xx"),
                                         {"other", "other", 5 * sizeof(uint64_t), F_PROM}};
static const sample_t result_samples[] = {U64S(0, "full"), U64S(1, "resumed"), U64S(2, "failed")};
static const sample_t cache_samples[] = {
    CACHE("hit", "hits", hits),           CACHE("miss", "misses", misses),
    CACHE("store", "stores", stores),     CACHE("eviction", "evictions", evictions),
    CACHE("expired", "expired", expired), CACHE("too_big", "too_big", too_big)};
static const sample_t action_samples[] = {
    {"limited", "limited", offsetof(tg_stats_zone_t, limited), F_BOTH},
    {"dry_run", "dry_run", offsetof(tg_stats_zone_t, dry_run), F_BOTH}};

#define RC(label, key, c) {label, key, (c) * sizeof(uint64_t), F_BOTH}
static const sample_t rcache_samples[] = {
    RC("hit", "hits", TG_CACHE_C_HIT), RC("miss", "misses", TG_CACHE_C_MISS),
    RC("stale", "stale", TG_CACHE_C_STALE), RC("revalidated", "revalidated", TG_CACHE_C_REVALIDATED),
    RC("collapsed", "collapsed", TG_CACHE_C_COLLAPSED), RC("bypass", "bypass", TG_CACHE_C_BYPASS),
    RC("stored", "stored", TG_CACHE_C_STORED), RC("evicted", "evicted", TG_CACHE_C_EVICTED),
    RC("variant_stored", "variants_stored", TG_CACHE_C_VARIANT_STORED),
    RC("variant_served", "variants_served", TG_CACHE_C_VARIANT_SERVED)};
static const set_def_t sets[] = {
    [SET_NONE] = {NULL, NULL, 0},
    [SET_STATE] = {"state", state_samples, 4},
    [SET_CLASS] = {"class", class_samples, 6},
    [SET_CODE] = {"code", NULL, 500}, /* samples made from the index: code 100 + i */
    [SET_RESULT] = {"result", result_samples, 3},
    [SET_CACHE] = {"event", cache_samples, 6},
    [SET_ACTION] = {"action", action_samples, 2},
    [SET_RCACHE] = {"event", rcache_samples, 10},
    [SET_GRPC] = {"grpc_status", NULL, TG_STATS_GRPC_CODES}, /* from the index: status i */
};

typedef struct {
    node_t node;
    const char *key;  /* JSON key; NULL for a metric whose samples (set) are the keys */
    const char *name; /* Prometheus family; NULL: JSON only */
    const char *type; /* counter, gauge, histogram */
    const char *help;
    vkind_t kind;
    size_t off;    /* in the view of the innermost N_EACH (top_view_t outside);
                      N_OBJ with F_IF: the int that says whether it is present */
    set_t set;     /* N_METRIC: its own labels; N_EACH: the entity (ent_kind_t) */
    unsigned fmt;  /* F_JSON, F_PROM, F_BOTH (| F_NONZERO) */
} metric_t;

#define OBJ(k) {N_OBJ, k, NULL, NULL, NULL, 0, 0, 0, F_BOTH}
#define OBJ_IF(k, field) {N_OBJ, k, NULL, NULL, NULL, 0, offsetof(top_view_t, field), 0, F_BOTH | F_IF}
#define EACH(k, ent) {N_EACH, k, NULL, NULL, NULL, 0, 0, (set_t)(ent), F_BOTH}
#define END {N_END, NULL, NULL, NULL, NULL, 0, 0, 0, 0}
/* a metric of the totals; of an entity's view (V: its type) */
#define TOP(key, name, type, help, kind, field, set, fmt)                                          \
    {N_METRIC, key, name, type, help, kind, offsetof(top_view_t, field), set, fmt}
#define EVENT(key, name, help, ev)                                                                 \
    TOP(key, name, "counter", help, V_U64, t.events[ev], SET_NONE, F_BOTH)
#define PEV(proto, key, help, ev) EVENT(key, "tollgate_" proto "_" key "_total", help, ev)
#define PGAUGE(key, name, help, f) TOP(key, name, "gauge", help, V_I64, t.f, SET_NONE, F_BOTH)
#define OF(V, key, name, type, help, kind, field, set, fmt)                                        \
    {N_METRIC, key, name, type, help, kind, offsetof(V, field), set, fmt}

/* Every metric once, in the order of the JSON document (docs/stats.md has
 * the schema); Prometheus families come out in the same order. */
static const metric_t metrics[] = {
    TOP("version", "tollgate_info", "gauge", "Version of the running gateway (always 1).", V_INFO,
        version, SET_NONE, F_BOTH),
    TOP("uptime_s", "tollgate_uptime_seconds", "gauge", "Seconds since the master started.",
        V_SECONDS, t.uptime, SET_NONE, F_BOTH),
    TOP("generation", "tollgate_config_generation", "gauge", "Configuration generation running.",
        V_U64, t.generation, SET_NONE, F_BOTH),
    TOP("reloads", "tollgate_reloads_total", "counter", "Successful configuration reloads.", V_U64,
        t.reloads, SET_NONE, F_BOTH),
    TOP("worker_restarts", "tollgate_worker_restarts_total", "counter",
        "Workers respawned after an unexpected exit.", V_U64, t.worker_restarts, SET_NONE, F_BOTH),
    TOP("workers", "tollgate_workers", "gauge", "Worker processes of the current generation.",
        V_U64, t.workers, SET_NONE, F_BOTH),
    OBJ("connections"),
        TOP("open", "tollgate_connections_open", "gauge", "Open client connections.", V_I64,
            t.conns_open, SET_NONE, F_BOTH),
        TOP(NULL, "tollgate_connections", "gauge", "Open client connections by state.", V_I64,
            t.conns_state, SET_STATE, F_BOTH),
    END,
    OBJ("requests"),
        TOP("total", NULL, "counter", NULL, V_U64, requests.total, SET_NONE, F_JSON),
        TOP(NULL, "tollgate_requests_total", "counter", "Requests by response status class.",
            V_U64, requests.by_class, SET_CLASS, F_BOTH),
    END,
    OBJ("codes"),
        TOP(NULL, "tollgate_responses_total", "counter",
            "Requests by response status code (codes seen so far).", V_U64, t.codes, SET_CODE,
            F_BOTH | F_NONZERO),
    END,
    OBJ("bytes"),
        TOP("in", "tollgate_received_bytes_total", "counter", "Bytes received from clients.",
            V_U64, t.bytes_in, SET_NONE, F_BOTH),
        TOP("out", "tollgate_sent_bytes_total", "counter", "Bytes sent to clients.", V_U64,
            t.bytes_out, SET_NONE, F_BOTH),
    END,
    OBJ("websocket"),
        TOP("upgrades", "tollgate_websocket_upgrades_total", "counter",
            "Connections upgraded (WebSocket and other Upgrade tunnels).", V_U64, t.upgrades,
            SET_NONE, F_BOTH),
        TOP("open", "tollgate_websocket_open", "gauge", "Upgraded connections open now.", V_I64,
            t.tunnels_open, SET_NONE, F_BOTH),
    END,
    OBJ("http1"),
        PEV("http1", "connections", "Client connections on HTTP/1.x.", TG_STATS_H1_CONNS),
        PEV("http1", "requests", "Requests read over HTTP/1.x.", TG_STATS_H1_REQUESTS),
    END,
    OBJ("http2"),
        PEV("http2", "connections", "Client connections on HTTP/2.", TG_STATS_H2_CONNS),
        PEV("http2", "requests", "Requests (streams) over HTTP/2.", TG_STATS_H2_REQUESTS),
        PGAUGE("streams_open", "tollgate_http2_streams_open", "Requests in flight.", h2_streams),
        PEV("http2", "goaway_sent", "GOAWAY frames sent.", TG_STATS_H2_GOAWAY),
        PEV("http2", "resets_received", "RST_STREAM frames received.", TG_STATS_H2_RESETS),
        PEV("http2", "flood_closes", "Connections closed for abuse.", TG_STATS_H2_FLOOD),
    END,
    OBJ("tls"),
        OBJ("handshakes"),
            TOP(NULL, "tollgate_tls_handshakes_total", "counter",
                "Client TLS handshakes by result (full, resumed, failed).", V_U64,
                t.events[TG_STATS_TLS_FULL], SET_RESULT, F_BOTH),
        END,
        OBJ_IF("session_cache", t.has_tls_cache),
            TOP("sessions", "tollgate_tls_session_cache_sessions", "gauge",
                "Sessions in the shared TLS session cache.", V_U32, t.tls_cache.used, SET_NONE,
                F_BOTH),
            TOP(NULL, "tollgate_tls_session_cache_total", "counter",
                "Shared TLS session cache events (hit, miss, store, eviction, expired, too_big).",
                V_U64, t.tls_cache, SET_CACHE, F_BOTH),
        END,
    END,
    OBJ("compression"),
        EVENT("responses", "tollgate_compressed_responses_total", "Responses compressed.",
              TG_STATS_COMPRESSED),
        EVENT("in", "tollgate_compress_in_bytes_total",
              "Response body bytes given to the compressors.", TG_STATS_COMPRESS_IN),
        EVENT("out", "tollgate_compress_out_bytes_total",
              "Compressed bytes the compressors produced.", TG_STATS_COMPRESS_OUT),
    END,
    OBJ("lua"),
        EVENT("errors", "tollgate_lua_errors_total",
              "Lua hook runs that failed (instruction limit stops included).", TG_STATS_LUA_ERRORS),
        EVENT("instruction_limit", "tollgate_lua_instruction_limit_total",
              "Lua hook runs stopped by lua_instruction_limit.", TG_STATS_LUA_LIMIT),
    END,
    OBJ("io_uring"),
        EVENT("batches", "tollgate_io_uring_batches_total",
              "Send batches submitted to the kernel (one io_uring_enter each).",
              TG_STATS_SENDQ_BATCHES),
        EVENT("writes", "tollgate_io_uring_writes_total",
              "Socket writes sent in those batches instead of one writev each.",
              TG_STATS_SENDQ_WRITES),
        EVENT("reads", "tollgate_io_uring_reads_total",
              "Socket reads done in those batches instead of one read each.",
              TG_STATS_SENDQ_READS),
    END,
    OBJ("rate_limit"),
        TOP("limited", NULL, "counter", NULL, V_U64, t.events[TG_STATS_RL_LIMITED], SET_NONE,
            F_JSON),
        TOP("dry_run", NULL, "counter", NULL, V_U64, t.events[TG_STATS_RL_DRY_RUN], SET_NONE,
            F_JSON),
        EACH("zones", ENT_ZONE),
            OF(tg_stats_zone_t, NULL, "tollgate_rate_limit_hits_total", "counter",
               "Requests a rate_limit zone refused (action=limited) or would have refused "
               "(action=dry_run).",
               V_U64, limited, SET_ACTION, F_BOTH),
        END,
    END,
    EACH("servers", ENT_SERVER),
        OBJ("requests"),
            OF(class_view_t, "total", NULL, "counter", NULL, V_U64, total, SET_NONE, F_JSON),
            OF(class_view_t, NULL, "tollgate_server_requests_total", "counter",
               "Requests by server block and response status class.", V_U64, by_class, SET_CLASS,
               F_BOTH),
        END,
        EACH("locations", ENT_LOCATION),
            OBJ("requests"),
                OF(class_view_t, "total", NULL, "counter", NULL, V_U64, total, SET_NONE, F_JSON),
                OF(class_view_t, NULL, "tollgate_location_requests_total", "counter",
                   "Requests by location (stats_name or path) and response status class.", V_U64,
                   by_class, SET_CLASS, F_BOTH),
            END,
            OBJ("grpc"),
                OF(class_view_t, NULL, "tollgate_location_grpc_total", "counter",
                   "gRPC calls by location and the grpc-status they ended with (statuses seen).",
                   V_U64, grpc, SET_GRPC, F_BOTH | F_NONZERO),
            END,
        END,
    END,
    EACH("caches", ENT_CACHE),
        OF(tg_cache_stats_t, NULL, "tollgate_cache_events_total", "counter",
           "Response cache lookups by outcome, responses stored and evicted.", V_U64, c,
           SET_RCACHE, F_BOTH),
        OF(tg_cache_stats_t, "hit_ratio", "tollgate_cache_hit_ratio", "gauge",
           "Answers from the cache over lookups.", V_RATIO, hit_ratio, SET_NONE, F_BOTH),
        OF(tg_cache_stats_t, "entries", "tollgate_cache_entries", "gauge", "Entries stored.",
           V_U64, entries, SET_NONE, F_BOTH),
        OF(tg_cache_stats_t, "bytes", "tollgate_cache_bytes", "gauge",
           "Bytes of the zone in use.", V_U64, bytes, SET_NONE, F_BOTH),
        OF(tg_cache_stats_t, "disk_entries", "tollgate_cache_disk_entries", "gauge",
           "Entries whose body is in a file (path=).", V_U64, disk_entries, SET_NONE, F_BOTH),
        OF(tg_cache_stats_t, "disk_bytes", "tollgate_cache_disk_bytes", "gauge",
           "Bytes of the zone's files (at most max_disk).", V_U64, disk_bytes, SET_NONE, F_BOTH),
    END,
    EACH("upstreams", ENT_UPSTREAM),
        EACH("servers", ENT_PEER),
            OF(peer_view_t, "requests", "tollgate_upstream_requests_total", "counter",
               "Requests whose last attempt went to this upstream server.", V_U64, requests,
               SET_NONE, F_BOTH),
            OF(peer_view_t, "failures", "tollgate_upstream_failures_total", "counter",
               "Of those, attempts without an upstream response or answered 502+ by the gateway.",
               V_U64, failures, SET_NONE, F_BOTH),
            OF(peer_view_t, "retries", "tollgate_upstream_retries_total", "counter",
               "Failed attempts on this upstream server that were retried.", V_U64, retries,
               SET_NONE, F_BOTH),
            OF(peer_view_t, "active", "tollgate_upstream_active", "gauge",
               "Attempts in flight to this upstream server.", V_I64, active, SET_NONE, F_BOTH),
            OF(peer_view_t, "health", NULL, NULL, NULL, V_STR, health, SET_NONE, F_JSON),
            OF(peer_view_t, NULL, "tollgate_upstream_up", "gauge",
               "1 when no worker considers this upstream server down (health checks, max_fails).",
               V_I64, up, SET_NONE, F_PROM),
            OF(peer_view_t, "down_workers", "tollgate_upstream_down_workers", "gauge",
               "Workers that consider this upstream server down.", V_I64, down_workers, SET_NONE,
               F_BOTH),
            OF(peer_view_t, "latency_ms", "tollgate_upstream_latency_seconds", "histogram",
               "Upstream response time.", V_HIST, latency, SET_NONE, F_BOTH),
            OBJ("grpc"),
                OF(peer_view_t, NULL, "tollgate_upstream_grpc_total", "counter",
                   "gRPC calls whose last attempt went to this upstream server, by the "
                   "grpc-status they ended with (statuses seen).",
                   V_U64, grpc, SET_GRPC, F_BOTH | F_NONZERO),
            END,
        END,
    END,
};
#define NMETRICS (int)(sizeof(metrics) / sizeof(metrics[0]))
_Static_assert(TG_STATS_TLS_RESUMED == TG_STATS_TLS_FULL + 1 &&
                   TG_STATS_TLS_FAILED == TG_STATS_TLS_FULL + 2,
               "result_samples index the TLS events from TG_STATS_TLS_FULL");

/* Index of the N_END closing the N_OBJ/N_EACH at i. */
static int block_end(int i)
{
    int depth = 0;
    for (int k = i; k < NMETRICS; k++) {
        if (metrics[k].node == N_OBJ || metrics[k].node == N_EACH)
            depth++;
        else if (metrics[k].node == N_END && --depth == 0)
            return k;
    }
    return NMETRICS;
}

static const void *at(const void *view, size_t off)
{
    return (const char *)view + off;
}

static uint64_t u64_at(const void *view, size_t off)
{
    uint64_t v;
    memcpy(&v, at(view, off), sizeof(v));
    return v;
}

/* One sample's value as text (V_U64, V_I64, V_SECONDS). */
static void put_number(sb_t *sb, vkind_t kind, const void *view, size_t off)
{
    if (kind == V_SECONDS || kind == V_RATIO) {
        double d;
        memcpy(&d, at(view, off), sizeof(d));
        sb_printf(sb, kind == V_RATIO ? "%.4f" : "%.0f", d);
    } else if (kind == V_U32) {
        uint32_t v;
        memcpy(&v, at(view, off), sizeof(v));
        sb_printf(sb, "%u", v);
    } else if (kind == V_I64) {
        int64_t v;
        memcpy(&v, at(view, off), sizeof(v));
        sb_printf(sb, "%lld", (long long)v);
    } else {
        sb_printf(sb, "%llu", (unsigned long long)u64_at(view, off));
    }
}

static int present(const metric_t *m, const void *view)
{
    return !(m->fmt & F_IF) || *(const int *)at(view, m->off) != 0;
}

static const char *str_at(const void *view, size_t off)
{
    const char *p;
    memcpy(&p, at(view, off), sizeof(p));
    return p;
}

/* Sample i of a set: its label value / JSON key (codes: made in buf). */
static const sample_t *sample_of(set_t set, int i, sample_t *tmp, char *buf, size_t bufsz)
{
    if (set != SET_CODE && set != SET_GRPC)
        return &sets[set].s[i];
    snprintf(buf, bufsz, "%d", set == SET_CODE ? i + 100 : i);
    *tmp = (sample_t){buf, buf, (size_t)i * sizeof(uint64_t), F_BOTH};
    return tmp;
}

/* ---- JSON ---- */

typedef struct {
    sb_t *sb;
    const snapshot_t *sn;
    int comma; /* a value was written in the current object */
} json_t;

static void json_key(json_t *j, const char *key, tg_str_t name)
{
    sb_printf(j->sb, "%s\"", j->comma ? "," : "");
    if (key)
        sb_printf(j->sb, "%s", key);
    else
        put_escaped(j->sb, name);
    sb_printf(j->sb, "\":");
    j->comma = 1;
}

static void json_open(json_t *j)
{
    sb_printf(j->sb, "{");
    j->comma = 0;
}

static void json_close(json_t *j)
{
    sb_printf(j->sb, "}");
    j->comma = 1;
}

static void json_metric(json_t *j, const metric_t *m, const void *view)
{
    if (m->set != SET_NONE) {
        for (int i = 0; i < sets[m->set].n; i++) {
            sample_t tmp;
            char buf[12];
            const sample_t *s = sample_of(m->set, i, &tmp, buf, sizeof(buf));
            if (!(s->fmt & F_JSON) || ((m->fmt & F_NONZERO) && u64_at(view, m->off + s->off) == 0))
                continue;
            json_key(j, s->key, TG_NULL_STR);
            put_number(j->sb, m->kind, view, m->off + s->off);
        }
        return;
    }
    if (m->kind == V_HIST) {
        const hist_view_t *h = at(view, m->off);
        sb_printf(j->sb, "%s\"%s_sum\":%.3f,\"%s_buckets\":{", j->comma ? "," : "", m->key,
                  (double)h->sum_us / 1000.0, m->key);
        for (int b = 0; b < TG_STATS_NBUCKETS; b++) {
            if (b < TG_STATS_NBUCKETS - 1)
                sb_printf(j->sb, "%s\"%u\":", b ? "," : "", tg_stats_bucket_ms[b]);
            else
                sb_printf(j->sb, ",\"+Inf\":");
            sb_printf(j->sb, "%llu", (unsigned long long)h->buckets[b]);
        }
        sb_printf(j->sb, "}");
        j->comma = 1;
        return;
    }
    json_key(j, m->key, TG_NULL_STR);
    if (m->kind == V_STR || m->kind == V_INFO) {
        sb_printf(j->sb, "\"");
        put_escaped(j->sb, tg_str_c(str_at(view, m->off)));
        sb_printf(j->sb, "\"");
    } else {
        put_number(j->sb, m->kind, view, m->off);
    }
}

/* Rows from..to (exclusive) with `view` for the metrics and `parent` the
 * index of the entity they are inside, for nested N_EACH. */
static void json_rows(json_t *j, int from, int to, const void *view, int parent)
{
    for (int i = from; i < to; i++) {
        const metric_t *m = &metrics[i];
        if (m->node == N_METRIC) {
            if (m->fmt & F_JSON)
                json_metric(j, m, view);
            continue;
        }
        int end = block_end(i);
        json_key(j, m->key, TG_NULL_STR);
        if (m->node == N_OBJ && !present(m, view)) {
            sb_printf(j->sb, "null");
        } else if (m->node == N_OBJ) {
            json_open(j);
            json_rows(j, i + 1, end, view, parent);
            json_close(j);
        } else {
            ent_kind_t k = (ent_kind_t)m->set;
            json_open(j);
            for (int e = 0; e < j->sn->nents[k]; e++) {
                const ent_t *en = &j->sn->ents[k][e];
                if (en->parent != parent)
                    continue;
                json_key(j, NULL, en->name);
                json_open(j);
                json_rows(j, i + 1, end, en->view, e);
                json_close(j);
            }
            json_close(j);
        }
        i = end;
    }
}

/* A part rendered by the core into the answer's arena (NULL: out of memory):
 * "resolve" (src/upstream_dyn.c), "apps" or the tollgate_app_* series
 * (src/app_stats.c), "certificates" or tollgate_tls_certificate_expiry_seconds
 * and the tollgate_acme_* series (src/tls_stats.c). */
static void put_part(sb_t *sb, const char *s)
{
    if (s == NULL)
        sb->oom = 1;
    else
        sb_printf(sb, "%s", s);
}

static void render_json(sb_t *sb, const snapshot_t *sn, tg_config_t *c)
{
    json_t j = {sb, sn, 0};
    json_open(&j);
    json_rows(&j, 0, NMETRICS, &sn->top, -1);
    put_part(sb, tg_upstream_dyn_stats_render(sb->a, c));
    if (c->apps)
        put_part(sb, tg_app_stats_render(sb->a, ",\n  \"apps\": ", c->apps, 0));
    put_part(sb, tg_tls_stats_render(sb->a, "", ",\n  \"certificates\": [", c, 0));
    sb_printf(sb, "}\n");
}

/* ---- Prometheus ---- */

#define PROM_DEPTH 4 /* N_EACH nesting the table uses at most */

typedef struct {
    sb_t *sb;
    const snapshot_t *sn;
    ent_kind_t kind[PROM_DEPTH]; /* the N_EACH rows around the current metric */
    int depth;
    const ent_t *ent[PROM_DEPTH]; /* while sampling: the entity at each level */
} prom_t;

/* name{labels of the entities, extra} */
static void prom_series(prom_t *p, const char *name, const char *suffix, const char *extra)
{
    sb_printf(p->sb, "%s%s", name, suffix);
    if (p->depth == 0 && extra == NULL)
        return;
    sb_printf(p->sb, "{");
    for (int d = 0; d < p->depth; d++) {
        sb_printf(p->sb, "%s%s=\"", d ? "," : "", ent_label[p->kind[d]]);
        put_prom_label(p->sb, p->ent[d]->name);
        sb_printf(p->sb, "\"");
    }
    if (extra)
        sb_printf(p->sb, "%s%s", p->depth ? "," : "", extra);
    sb_printf(p->sb, "}");
}

static void prom_samples(prom_t *p, const metric_t *m, const void *view)
{
    sb_t *sb = p->sb;
    if (m->set != SET_NONE) {
        for (int i = 0; i < sets[m->set].n; i++) {
            sample_t tmp;
            char buf[12];
            const sample_t *s = sample_of(m->set, i, &tmp, buf, sizeof(buf));
            if (!(s->fmt & F_PROM) || ((m->fmt & F_NONZERO) && u64_at(view, m->off + s->off) == 0))
                continue;
            char extra[64]; /* the table's own label values need no escaping */
            snprintf(extra, sizeof(extra), "%s=\"%s\"", sets[m->set].label, s->label);
            prom_series(p, m->name, "", extra);
            sb_printf(sb, " ");
            put_number(sb, m->kind, view, m->off + s->off);
            sb_printf(sb, "\n");
        }
    } else if (m->kind == V_INFO) {
        sb_printf(sb, "%s{%s=\"", m->name, m->key); /* outside any N_EACH */
        put_prom_label(sb, tg_str_c(str_at(view, m->off)));
        sb_printf(sb, "\"} 1\n");
    } else if (m->kind == V_HIST) {
        const hist_view_t *h = at(view, m->off);
        uint64_t cum = 0;
        char le[32];
        for (int b = 0; b < TG_STATS_NBUCKETS; b++) {
            cum += h->buckets[b];
            if (b < TG_STATS_NBUCKETS - 1)
                snprintf(le, sizeof(le), "le=\"%g\"", tg_stats_bucket_ms[b] / 1000.0);
            else
                snprintf(le, sizeof(le), "le=\"+Inf\"");
            prom_series(p, m->name, "_bucket", le);
            sb_printf(sb, " %llu\n", (unsigned long long)cum);
        }
        prom_series(p, m->name, "_sum", NULL);
        sb_printf(sb, " %.6f\n", (double)h->sum_us / 1e6);
        prom_series(p, m->name, "_count", NULL);
        sb_printf(sb, " %llu\n", (unsigned long long)cum);
    } else {
        prom_series(p, m->name, "", NULL);
        sb_printf(sb, " ");
        put_number(sb, m->kind, view, m->off);
        sb_printf(sb, "\n");
    }
}

/* Every entity combination of the enclosing N_EACH rows, from level d. */
static void prom_each(prom_t *p, const metric_t *m, int d, int parent)
{
    if (d == p->depth) {
        prom_samples(p, m, d ? p->ent[d - 1]->view : &p->sn->top);
        return;
    }
    ent_kind_t k = p->kind[d];
    for (int e = 0; e < p->sn->nents[k]; e++) {
        const ent_t *en = &p->sn->ents[k][e];
        if (en->parent != parent)
            continue;
        p->ent[d] = en;
        prom_each(p, m, d + 1, e);
    }
}

static void render_prometheus(sb_t *sb, const snapshot_t *sn, tg_config_t *c)
{
    prom_t p = {.sb = sb, .sn = sn};
    node_t open[16]; /* the N_OBJ/N_EACH rows around row i */
    int nopen = 0;
    for (int i = 0; i < NMETRICS; i++) {
        const metric_t *m = &metrics[i];
        if (m->node == N_OBJ && !present(m, &sn->top)) {
            i = block_end(i); /* absent: no samples (F_IF objects are outside any N_EACH) */
        } else if (m->node == N_OBJ || m->node == N_EACH) {
            open[nopen++] = m->node;
            if (m->node == N_EACH)
                p.kind[p.depth++] = (ent_kind_t)m->set;
        } else if (m->node == N_END) {
            if (open[--nopen] == N_EACH)
                p.depth--;
        } else if (m->fmt & F_PROM) {
            sb_printf(sb, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
            prom_each(&p, m, 0, -1);
        }
    }
    if (c->apps)
        put_part(sb, tg_app_stats_render(sb->a, "", c->apps, 1));
    put_part(sb, tg_tls_stats_render(sb->a, "", ",\n  \"certificates\": [", c, 1));
}

typedef enum { FMT_JSON = 0, FMT_PROMETHEUS, FMT_HTML } stats_format_t;

static stats_format_t pick_format(tg_request_t *r)
{
    tg_str_t a = r->args;
    for (size_t i = 0; i < a.len;) {
        const char *e = memchr(a.p + i, '&', a.len - i);
        size_t end = e ? (size_t)(e - a.p) : a.len;
        tg_str_t kv = {a.p + i, end - i};
        if (tg_str_eq_lit(kv, "format=prometheus"))
            return FMT_PROMETHEUS;
        if (tg_str_eq_lit(kv, "format=json"))
            return FMT_JSON;
        if (tg_str_eq_lit(kv, "format=html"))
            return FMT_HTML;
        i = end + 1;
    }
    tg_header_t *h = tg_headers_find(&r->headers, TG_STR("Accept"));
    if (h == NULL)
        return FMT_JSON;
    /* first match in the order a browser and a scraper list them */
    const char *v = h->value.p, *end = h->value.p + h->value.len;
    tg_str_t html = TG_STR("text/html"), plain = TG_STR("text/plain");
    for (const char *p = v; p < end; p++) {
        size_t left = (size_t)(end - p);
        if (left >= html.len && strncasecmp(p, html.p, html.len) == 0)
            return FMT_HTML;
        if (left >= plain.len && strncasecmp(p, plain.p, plain.len) == 0)
            return FMT_PROMETHEUS;
    }
    return FMT_JSON;
}

static tg_rc_t stats_content(tg_request_t *r, void *conf)
{
    stats_conf_t *lc = conf;
    if (lc->enabled != 1)
        return TG_OK;
    stats_conf_t *mc = lc->main;
    if (mc == NULL || mc->st == NULL)
        return TG_ERROR;
    if (lc->auth.nusers && !tg_basic_auth_check(&mc->auth_cache, &lc->auth, r))
        return tg_basic_auth_challenge(r, "tollgate stats") == 0 ? TG_DONE : TG_ERROR;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        if (tg_request_add_resp_header(r, TG_STR("Allow"), TG_STR("GET, HEAD")) != 0 ||
            tg_request_respond(r, 405, NULL, TG_NULL_STR) != 0)
            return TG_ERROR;
        return TG_DONE;
    }
    stats_format_t fmt = pick_format(r);
    if (fmt == FMT_HTML) {
        if (tg_request_add_resp_header(r, TG_STR("Cache-Control"), TG_STR("no-store")) != 0 ||
            tg_request_respond(r, 200, "text/html; charset=utf-8",
                               (tg_str_t){tg_stats_dashboard_html,
                                          sizeof(tg_stats_dashboard_html) - 1}) != 0)
            return TG_ERROR;
        return TG_DONE;
    }
    tg_stats_gauges_collect(); /* this worker's own gauges, fresh */
    snapshot_t sn;
    sb_t sb = {r->arena, NULL, 0, 0, 0};
    sb.cap = 8192;
    if ((sb.p = tg_arena_alloc_nz(r->arena, sb.cap)) == NULL || snapshot(r->arena, mc, &sn) != 0)
        return TG_ERROR;
    if (fmt == FMT_PROMETHEUS)
        render_prometheus(&sb, &sn, mc->config);
    else
        render_json(&sb, &sn, mc->config);
    if (sb.oom) {
        tg_log(TG_LOG_ERROR, "stats: out of memory");
        return TG_ERROR;
    }
    if (tg_request_add_resp_header(r, TG_STR("Cache-Control"), TG_STR("no-store")) != 0 ||
        tg_request_respond(r, 200,
                           fmt == FMT_PROMETHEUS ? "text/plain; version=0.0.4; charset=utf-8"
                                                 : "application/json",
                           (tg_str_t){sb.p, sb.len}) != 0)
        return TG_ERROR;
    return TG_DONE;
}

static const tg_directive_t stats_directives[] = {
    {"stats", TG_SCOPE_LOCATION, 0, 0, 0, set_stats, 0},
    {"stats_name", TG_SCOPE_LOCATION, 0, 1, 1, set_name, 0},
    {"stats_auth", TG_SCOPE_LOCATION, 0, 1, 1, set_auth, 0},
    {"stats_count_self", TG_SCOPE_LOCATION, 0, 1, 1, tg_conf_set_flag,
     offsetof(stats_conf_t, count_self)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_stats_module = {
    .name = "stats",
    .directives = stats_directives,
    .create_conf = stats_create_conf,
    .merge_conf = stats_merge_conf,
    .init_conf = stats_init_conf,
    .is_active = NULL, /* counting runs everywhere; the content hook checks `enabled` */
    .init_worker = stats_init_worker,
    .on_content = stats_content,
    .on_log = stats_log,
};
