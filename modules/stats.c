/* stats: counts every request into the shared stats zone (src/stats.h) and,
 * where `stats;` is set, answers with the totals:
 *
 *   location = /stats { allow 127.0.0.1; deny all; stats; stats_auth "ops:$6$..."; }
 *   location /api/ { stats_name api; proxy_pass api; }
 *
 * JSON by default; Prometheus text with ?format=prometheus or an Accept of
 * text/plain; a self-contained HTML dashboard (stats_dashboard.h) with
 * ?format=html or an Accept of text/html. docs/stats.md has the schema and
 * every metric.
 *
 * Counting runs in the log phase of every location (is_active is NULL), so
 * it sees the final status, and must stay cheap: relaxed atomic adds into
 * this worker's block (totals, the server block's and the location's slots,
 * the upstream server's), no lock, no allocation. Requests answered by
 * `stats` are not counted unless stats_count_self is on. Cheap gauges (open
 * connections and tunnels) are copied at each request end; connections by
 * state and the upstream servers' in-flight attempts and health every second
 * and before answering. Events outside this module (TLS, compression, rate
 * limits, Lua, retries) are counted by one-line hooks (src/stats.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <crypt.h>
#include <ev.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include "conn.h"
#include "json.h"
#include "log.h"
#include "module.h"
#include "request.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"
#include "stats_dashboard.h"

typedef struct {
    tg_str_t user;
    const char *hash; /* crypt(3) string: $6$..., $y$..., $2b$... */
} stats_user_t;

#define AUTH_CACHE 4 /* credentials that verified lately, per worker */

typedef struct {
    int enabled;    /* location: `stats;` answers here */
    int count_self; /* stats_count_self: its own requests count as traffic */
    tg_str_t name;  /* stats_name, else the location's path (not inherited) */
    stats_user_t *users; /* stats_auth */
    int nusers;
    int srv_slot, loc_slot; /* per server block / location counters, -1: none */
    /* main scope only */
    tg_stats_t *st;
    ev_timer *timer;        /* per worker, malloc'd at worker start */
    uint64_t upgrades_seen; /* tg_worker->upgrades already added to the zone */
    struct crypt_data *crypt; /* per worker, for stats_auth */
    unsigned char auth_ok[AUTH_CACHE][SHA256_DIGEST_LENGTH];
    int auth_next;
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
    if ((c->nusers || c->count_self != TG_CONF_UNSET) && c->enabled != 1)
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

/* stats_auth USER:HASH, HASH in a crypt(3) format libxcrypt supports (as
 * `mkpasswd -m sha-512` or `openssl passwd -6` print them). */
static const char *set_auth(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    stats_conf_t *c = conf;
    tg_str_t a = tg_conf_arg(cf, 1);
    const char *colon = memchr(a.p, ':', a.len);
    if (colon == NULL || colon == a.p)
        return tg_conf_errf(cf, "invalid \"stats_auth\" \"%.*s\", expected USER:HASH",
                            TG_STR_FMT(a));
    const char *hash = colon + 1;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (cd == NULL)
        return "out of memory";
    const char *out = crypt_r("probe", hash, cd);
    int ok = hash[0] == '$' && out && out[0] != '*' && strlen(out) == strlen(hash);
    free(cd);
    if (!ok)
        return tg_conf_errf(cf, "invalid password hash in \"stats_auth\" for \"%.*s\", expected "
                                "a crypt(3) hash such as $6$... (mkpasswd -m sha-512, "
                                "openssl passwd -6) or $y$... (mkpasswd)",
                            (int)(colon - a.p), a.p);
    stats_user_t *nu = tg_arena_alloc(cf->arena, (size_t)(c->nusers + 1) * sizeof(*nu));
    if (nu == NULL)
        return "out of memory";
    if (c->nusers)
        memcpy(nu, c->users, (size_t)c->nusers * sizeof(*nu));
    nu[c->nusers++] = (stats_user_t){{a.p, (size_t)(colon - a.p)}, hash};
    c->users = nu;
    return NULL;
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

static void assign_location(tg_conf_t *cf, tg_location_t *loc, int srv_slot, tg_str_t srv)
{
    stats_conf_t *lc = loc->mconf[tg_stats_module.index];
    lc->srv_slot = srv_slot;
    lc->loc_slot = tg_stats_slot(cf, TG_STATS_LOCATION, srv, lc->name.p ? lc->name : loc->path);
    if (lc->loc_slot < 0)
        tg_conf_warn(cf, "stats: location \"%.*s\" is not counted on its own, more than %d "
                         "locations",
                     TG_STR_FMT(loc->path), TG_STATS_MAX_LOCATIONS);
}

/* Give every upstream server, server block and location its slot. */
static const char *stats_init_conf(tg_conf_t *cf, void *conf)
{
    stats_conf_t *mc = conf;
    tg_stats_t *st = mc->st = tg_stats_zone(cf);
    if (st == NULL)
        return NULL; /* reported */
    int nups = 0;
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next)
        nups++;
    st->ups = tg_arena_alloc(cf->arena, (size_t)(nups ? nups : 1) * sizeof(*st->ups));
    if (st->ups == NULL)
        return "out of memory";
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next) {
        tg_stats_upstream_t *su = &st->ups[st->nups++];
        su->u = u;
        if ((su->slots = tg_arena_alloc(cf->arena, (size_t)u->npeers * sizeof(int) + 1)) == NULL)
            return "out of memory";
        for (int i = 0; i < u->npeers; i++) {
            su->slots[i] = tg_stats_slot(cf, TG_STATS_PEER, u->name, u->peers[i].name);
            if (su->slots[i] < 0)
                tg_conf_warn(cf, "stats: upstream \"%.*s\" server \"%.*s\" is not counted on its "
                                 "own, more than %d upstream servers",
                             TG_STR_FMT(u->name), TG_STR_FMT(u->peers[i].name),
                             TG_STATS_MAX_PEERS);
        }
    }
    for (int i = 0; i < cf->config->nservers; i++) {
        tg_server_t *s = cf->config->servers[i];
        tg_str_t key = server_key(s);
        int slot = tg_stats_slot(cf, TG_STATS_SERVER, key, TG_NULL_STR);
        if (slot < 0)
            tg_conf_warn(cf, "stats: server \"%.*s\" is not counted on its own, more than %d "
                             "servers",
                         TG_STR_FMT(key), TG_STATS_MAX_SERVERS);
        for (int k = 0; k < s->nlocations; k++)
            assign_location(cf, s->locations[k], slot, key);
        if (s->root)
            assign_location(cf, s->root, slot, key);
    }
    return NULL;
}

static stats_conf_t *main_conf(void)
{
    return tg_worker->config->mconf[tg_stats_module.index];
}

/* Copy the worker's cheap gauges into its block; add new upgrades. Runs at
 * every request end. */
static void publish_gauges(stats_conf_t *mc, tg_stats_worker_t *b)
{
    tg_worker_t *w = tg_worker;
    if (w->shutting_down)
        return; /* a replaced worker must not overwrite its successor's gauges */
    tg_stats_set(&b->conns_open, w->nconns);
    tg_stats_set(&b->tunnels_open, w->tunnels_open);
    if (w->upgrades != mc->upgrades_seen) {
        tg_stats_add(&b->upgrades, w->upgrades - mc->upgrades_seen);
        mc->upgrades_seen = w->upgrades;
    }
}

/* The gauges that cost a walk: connections by state and the upstream
 * servers' in-flight attempts and health as this worker sees them. Runs
 * every second and before this worker answers a stats request. */
static void publish_all(stats_conf_t *mc)
{
    tg_worker_t *w = tg_worker;
    tg_stats_worker_t *b = &mc->st->shm->workers[w->slot];
    publish_gauges(mc, b);
    if (w->shutting_down)
        return;
    int64_t n[TG_STATS_CONN_STATES] = {0};
    for (tg_conn_t *c = w->conns; c; c = c->next) {
        switch (c->state) {
        case TG_CONN_IDLE: n[TG_STATS_CONN_IDLE]++; break;
        case TG_CONN_HEADERS: n[TG_STATS_CONN_READING]++; break;
        case TG_CONN_TUNNEL: n[TG_STATS_CONN_UPGRADED]++; break;
        default: n[TG_STATS_CONN_WRITING]++; break;
        }
    }
    for (int k = 0; k < TG_STATS_CONN_STATES; k++)
        tg_stats_set(&b->conns_state[k], n[k]);
    tg_msec_t now = (tg_msec_t)(ev_now(w->loop) * 1000);
    for (int i = 0; i < mc->st->nups; i++) {
        tg_stats_upstream_t *su = &mc->st->ups[i];
        for (int k = 0; k < su->u->npeers; k++) {
            if (su->slots[k] < 0)
                continue;
            tg_peer_t *p = &su->u->peers[k];
            tg_stats_peer_t *sp = &b->peers[su->slots[k]];
            tg_stats_set(&sp->active, p->conns);
            tg_stats_set(&sp->health, p->health_down                      ? TG_STATS_DOWN_ACTIVE
                                      : !tg_balance_is_available(p, now) ? TG_STATS_DOWN_PASSIVE
                                                                          : TG_STATS_UP);
        }
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    publish_all(t->data);
}

static int stats_init_worker(tg_worker_t *w)
{
    stats_conf_t *mc = main_conf();
    if (mc->st == NULL)
        return 0;
    mc->timer = malloc(sizeof(ev_timer));
    mc->crypt = calloc(1, sizeof(*mc->crypt));
    if (mc->timer == NULL || mc->crypt == NULL)
        return -1;
    mc->upgrades_seen = w->upgrades;
    ev_timer_init(mc->timer, timer_cb, 0., 1.);
    mc->timer->data = mc;
    ev_timer_start(w->loop, mc->timer);
    return 0;
}

static void count_peer(stats_conf_t *mc, tg_stats_worker_t *b, tg_request_t *r)
{
    tg_upstream_t *u = r->upstream;
    int k = 0;
    while (k < u->npeers && u->peers[k].name.p != r->upstream_addr.p &&
           !tg_str_eq(u->peers[k].name, r->upstream_addr))
        k++;
    int slot = tg_stats_peer_slot(mc->st, u, k);
    if (slot < 0)
        return;
    tg_stats_peer_t *p = &b->peers[slot];
    tg_stats_add(&p->requests, 1);
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

static void count_class(tg_stats_class_t *c, int klass)
{
    tg_stats_add(&c->requests, 1);
    if (klass >= 0)
        tg_stats_add(&c->status[klass], 1);
}

static void stats_log(tg_request_t *r, void *conf)
{
    stats_conf_t *lc = conf;
    if (lc->enabled == 1 && !lc->count_self)
        return; /* the stats endpoint is not traffic unless asked */
    stats_conf_t *mc = main_conf();
    if (mc->st == NULL)
        return;
    tg_stats_worker_t *b = &mc->st->shm->workers[tg_worker->slot];
    int klass = r->status >= 100 && r->status < 600 ? r->status / 100 - 1 : -1;
    tg_stats_add(&b->requests, 1);
    if (klass >= 0) {
        tg_stats_add(&b->status[klass], 1);
        tg_stats_add(&b->codes[r->status - 100], 1);
    }
    tg_stats_add(&b->bytes_in, r->bytes_in);
    tg_stats_add(&b->bytes_out, r->bytes_out);
    if (lc->srv_slot >= 0)
        count_class(&b->servers[lc->srv_slot], klass);
    if (lc->loc_slot >= 0)
        count_class(&b->locations[lc->loc_slot], klass);
    if (r->upstream && r->upstream_addr.len)
        count_peer(mc, b, r);
    publish_gauges(mc, b);
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

/* Sums over the worker blocks; gauges over the current generation's slots. */
typedef struct {
    tg_stats_master_t *m;
    uint64_t requests, status[5], bytes_in, bytes_out, upgrades;
    int64_t conns_open, tunnels_open, conns_state[TG_STATS_CONN_STATES];
    uint64_t events[TG_STATS_EVENT_COUNT];
    uint64_t codes[500]; /* by status code - 100 */
    double uptime;
} totals_t;

static void sum_totals(tg_stats_shm_t *s, totals_t *t)
{
    memset(t, 0, sizeof(*t));
    t->m = &s->master;
    uint64_t nw = s->master.workers;
    for (int w = 0; w < TG_MAX_WORKERS; w++) {
        tg_stats_worker_t *b = &s->workers[w];
        t->requests += tg_stats_read(&b->requests);
        for (int k = 0; k < 5; k++)
            t->status[k] += tg_stats_read(&b->status[k]);
        t->bytes_in += tg_stats_read(&b->bytes_in);
        t->bytes_out += tg_stats_read(&b->bytes_out);
        t->upgrades += tg_stats_read(&b->upgrades);
        for (int k = 0; k < TG_STATS_EVENT_COUNT; k++)
            t->events[k] += tg_stats_read(&b->events[k]);
        for (int k = 0; k < 500; k++)
            t->codes[k] += tg_stats_read(&b->codes[k]);
        if ((uint64_t)w < nw) {
            t->conns_open += tg_stats_read_gauge(&b->conns_open);
            t->tunnels_open += tg_stats_read_gauge(&b->tunnels_open);
            for (int k = 0; k < TG_STATS_CONN_STATES; k++)
                t->conns_state[k] += tg_stats_read_gauge(&b->conns_state[k]);
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->uptime = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - s->master.start_time;
    if (t->uptime < 0)
        t->uptime = 0;
}

/* One upstream server over all workers; `down` counts the current
 * generation's workers that skip it. */
typedef struct {
    tg_stats_peer_t p;
    int down, nworkers;
} peer_sum_t;

static void sum_peer(tg_stats_shm_t *s, int slot, peer_sum_t *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t nw = s->master.workers;
    out->nworkers = (int)nw;
    for (int w = 0; w < TG_MAX_WORKERS; w++) {
        tg_stats_peer_t *p = &s->workers[w].peers[slot];
        out->p.requests += tg_stats_read(&p->requests);
        out->p.failures += tg_stats_read(&p->failures);
        out->p.latency_us += tg_stats_read(&p->latency_us);
        out->p.retries += tg_stats_read(&p->retries);
        for (int k = 0; k < TG_STATS_NBUCKETS; k++)
            out->p.buckets[k] += tg_stats_read(&p->buckets[k]);
        if ((uint64_t)w < nw) {
            out->p.active += tg_stats_read_gauge(&p->active);
            out->down += tg_stats_read_gauge(&p->health) != TG_STATS_UP;
        }
    }
}

static const char *peer_state(const peer_sum_t *p)
{
    return p->down == 0 ? "up" : p->down >= p->nworkers ? "down" : "partial";
}

static void sum_class(tg_stats_shm_t *s, int loc, int slot, tg_stats_class_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int w = 0; slot >= 0 && w < TG_MAX_WORKERS; w++) {
        tg_stats_class_t *c = loc ? &s->workers[w].locations[slot] : &s->workers[w].servers[slot];
        out->requests += tg_stats_read(&c->requests);
        for (int k = 0; k < 5; k++)
            out->status[k] += tg_stats_read(&c->status[k]);
    }
}

static void sum_zone(tg_stats_shm_t *s, int slot, tg_stats_zone_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int w = 0; w < TG_MAX_WORKERS; w++) {
        out->limited += tg_stats_read(&s->workers[w].zones[slot].limited);
        out->dry_run += tg_stats_read(&s->workers[w].zones[slot].dry_run);
    }
}

/* Names come from the config (tokens, addresses, paths, quoted strings that
 * may hold anything): escaped by src/json.c, a piece at a time. */
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

/* Inside a JSON string. */
static void put_escaped(sb_t *sb, tg_str_t s)
{
    put_with(sb, s, tg_json_escape);
}

static const char *const conn_state_names[TG_STATS_CONN_STATES] = {"reading", "writing", "idle",
                                                                   "upgraded"};

/* The server blocks and locations this config counts, deduplicated: the
 * slots' own names, so locations sharing a stats_name show once. */
typedef struct {
    int *srv, nsrv;
    int *loc, *loc_srv, nloc; /* location slot and its server slot */
} named_t;

static int add_unique(int *arr, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (arr[i] == v)
            return n;
    arr[n] = v;
    return n + 1;
}

static int collect_named(tg_arena_t *a, tg_config_t *c, named_t *n)
{
    int nloc = 0;
    for (int i = 0; i < c->nservers; i++)
        nloc += c->servers[i]->nlocations + 1;
    n->srv = tg_arena_alloc(a, (size_t)(c->nservers + 1) * sizeof(int));
    n->loc = tg_arena_alloc(a, (size_t)(nloc + 1) * sizeof(int));
    n->loc_srv = tg_arena_alloc(a, (size_t)(nloc + 1) * sizeof(int));
    if (n->srv == NULL || n->loc == NULL || n->loc_srv == NULL)
        return -1;
    n->nsrv = n->nloc = 0;
    for (int i = 0; i < c->nservers; i++) {
        tg_server_t *s = c->servers[i];
        for (int k = 0; k <= s->nlocations; k++) {
            tg_location_t *l = k < s->nlocations ? s->locations[k] : s->root;
            stats_conf_t *lc = l ? l->mconf[tg_stats_module.index] : NULL;
            if (lc == NULL)
                continue;
            if (lc->srv_slot >= 0)
                n->nsrv = add_unique(n->srv, n->nsrv, lc->srv_slot);
            if (lc->loc_slot >= 0) {
                int before = n->nloc;
                n->nloc = add_unique(n->loc, n->nloc, lc->loc_slot);
                if (n->nloc > before)
                    n->loc_srv[before] = lc->srv_slot;
            }
        }
    }
    return 0;
}

static void json_class(sb_t *sb, const tg_stats_class_t *c)
{
    sb_printf(sb, "{\"total\":%llu", (unsigned long long)c->requests);
    for (int k = 0; k < 5; k++)
        sb_printf(sb, ",\"%dxx\":%llu", k + 1, (unsigned long long)c->status[k]);
    sb_printf(sb, "}");
}

static void render_json(sb_t *sb, stats_conf_t *mc, totals_t *t, named_t *nm)
{
    tg_stats_shm_t *s = mc->st->shm;
    uint64_t *ev = t->events;
    sb_printf(sb,
              "{\"version\":\"%s\",\"uptime_s\":%.0f,\"generation\":%llu,\"reloads\":%llu,"
              "\"worker_restarts\":%llu,\"workers\":%llu,\"connections\":{\"open\":%lld",
              TG_VERSION, t->uptime, (unsigned long long)t->m->generation,
              (unsigned long long)t->m->reloads, (unsigned long long)t->m->worker_restarts,
              (unsigned long long)t->m->workers, (long long)t->conns_open);
    for (int k = 0; k < TG_STATS_CONN_STATES; k++)
        sb_printf(sb, ",\"%s\":%lld", conn_state_names[k], (long long)t->conns_state[k]);
    tg_stats_class_t all = {t->requests, {0}};
    memcpy(all.status, t->status, sizeof(all.status));
    sb_printf(sb, "},\"requests\":");
    json_class(sb, &all);
    sb_printf(sb, ",\"codes\":{");
    for (int k = 0, n = 0; k < 500; k++)
        if (t->codes[k])
            sb_printf(sb, "%s\"%d\":%llu", n++ ? "," : "", k + 100, (unsigned long long)t->codes[k]);
    sb_printf(sb, "}");
    sb_printf(sb,
              ",\"bytes\":{\"in\":%llu,\"out\":%llu},\"websocket\":{\"upgrades\":%llu,"
              "\"open\":%lld},",
              (unsigned long long)t->bytes_in, (unsigned long long)t->bytes_out,
              (unsigned long long)t->upgrades, (long long)t->tunnels_open);
    sb_printf(sb, "\"tls\":{\"handshakes\":{\"full\":%llu,\"resumed\":%llu,\"failed\":%llu},",
              (unsigned long long)ev[TG_STATS_TLS_FULL], (unsigned long long)ev[TG_STATS_TLS_RESUMED],
              (unsigned long long)ev[TG_STATS_TLS_FAILED]);
    tg_tls_cache_stats_t tc;
    if (tg_tls_session_cache_stats(tg_worker->config, &tc) == 0)
        sb_printf(sb,
                  "\"session_cache\":{\"sessions\":%u,\"hits\":%llu,\"misses\":%llu,"
                  "\"stores\":%llu,\"evictions\":%llu,\"expired\":%llu,\"too_big\":%llu}},",
                  tc.used, (unsigned long long)tc.hits, (unsigned long long)tc.misses,
                  (unsigned long long)tc.stores, (unsigned long long)tc.evictions,
                  (unsigned long long)tc.expired, (unsigned long long)tc.too_big);
    else
        sb_printf(sb, "\"session_cache\":null},");
    sb_printf(sb,
              "\"compression\":{\"responses\":%llu,\"in\":%llu,\"out\":%llu},"
              "\"lua\":{\"errors\":%llu,\"instruction_limit\":%llu},"
              "\"io_uring\":{\"batches\":%llu,\"writes\":%llu},"
              "\"rate_limit\":{\"limited\":%llu,\"dry_run\":%llu,\"zones\":{",
              (unsigned long long)ev[TG_STATS_COMPRESSED],
              (unsigned long long)ev[TG_STATS_COMPRESS_IN],
              (unsigned long long)ev[TG_STATS_COMPRESS_OUT],
              (unsigned long long)ev[TG_STATS_LUA_ERRORS], (unsigned long long)ev[TG_STATS_LUA_LIMIT],
              (unsigned long long)ev[TG_STATS_SENDQ_BATCHES],
              (unsigned long long)ev[TG_STATS_SENDQ_WRITES],
              (unsigned long long)ev[TG_STATS_RL_LIMITED], (unsigned long long)ev[TG_STATS_RL_DRY_RUN]);
    int first = 1;
    for (int i = 0; i < TG_STATS_MAX_ZONES; i++) {
        if (s->master.zone_names[i].name[0] == '\0')
            continue; /* never used */
        tg_str_t name;
        tg_stats_zone_t z;
        tg_stats_slot_name(s, TG_STATS_ZONE, i, &name, NULL);
        sum_zone(s, i, &z);
        sb_printf(sb, "%s\"", first ? "" : ",");
        put_escaped(sb, name);
        sb_printf(sb, "\":{\"limited\":%llu,\"dry_run\":%llu}", (unsigned long long)z.limited,
                  (unsigned long long)z.dry_run);
        first = 0;
    }
    sb_printf(sb, "}},\"servers\":{");
    for (int i = 0; i < nm->nsrv; i++) {
        tg_str_t name;
        tg_stats_class_t c;
        tg_stats_slot_name(s, TG_STATS_SERVER, nm->srv[i], &name, NULL);
        sum_class(s, 0, nm->srv[i], &c);
        sb_printf(sb, "%s\"", i ? "," : "");
        put_escaped(sb, name);
        sb_printf(sb, "\":{\"requests\":");
        json_class(sb, &c);
        sb_printf(sb, ",\"locations\":{");
        first = 1;
        for (int k = 0; k < nm->nloc; k++) {
            if (nm->loc_srv[k] != nm->srv[i])
                continue;
            tg_str_t srv, loc;
            tg_stats_slot_name(s, TG_STATS_LOCATION, nm->loc[k], &srv, &loc);
            sum_class(s, 1, nm->loc[k], &c);
            sb_printf(sb, "%s\"", first ? "" : ",");
            put_escaped(sb, loc);
            sb_printf(sb, "\":{\"requests\":");
            json_class(sb, &c);
            sb_printf(sb, "}");
            first = 0;
        }
        sb_printf(sb, "}}");
    }
    sb_printf(sb, "},\"upstreams\":{");
    for (int i = 0; i < mc->st->nups; i++) {
        tg_stats_upstream_t *su = &mc->st->ups[i];
        tg_upstream_t *u = su->u;
        sb_printf(sb, "%s\"", i ? "," : "");
        put_escaped(sb, u->name);
        sb_printf(sb, "\":{\"servers\":{");
        first = 1;
        for (int k = 0; k < u->npeers; k++) {
            if (su->slots[k] < 0)
                continue;
            peer_sum_t ps;
            tg_stats_peer_t *p = &ps.p;
            sum_peer(s, su->slots[k], &ps);
            sb_printf(sb, "%s\"", first ? "" : ",");
            first = 0;
            put_escaped(sb, u->peers[k].name);
            sb_printf(sb,
                      "\":{\"requests\":%llu,\"failures\":%llu,\"retries\":%llu,\"active\":%lld,"
                      "\"health\":\"%s\",\"down_workers\":%d,\"latency_ms_sum\":%.3f,"
                      "\"latency_ms_buckets\":{",
                      (unsigned long long)p->requests, (unsigned long long)p->failures,
                      (unsigned long long)p->retries, (long long)p->active, peer_state(&ps),
                      ps.down, (double)p->latency_us / 1000.0);
            for (int b = 0; b < TG_STATS_NBUCKETS; b++) {
                if (b < TG_STATS_NBUCKETS - 1)
                    sb_printf(sb, "\"%u\":", tg_stats_bucket_ms[b]);
                else
                    sb_printf(sb, ",\"+Inf\":");
                sb_printf(sb, "%llu%s", (unsigned long long)p->buckets[b],
                          b < TG_STATS_NBUCKETS - 2 ? "," : "");
            }
            sb_printf(sb, "}}");
        }
        sb_printf(sb, "}}");
    }
    sb_printf(sb, "}}\n");
}

static void prom_head(sb_t *sb, const char *name, const char *type, const char *help)
{
    sb_printf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample without labels. */
static void prom_one(sb_t *sb, const char *name, const char *type, const char *help, double v)
{
    prom_head(sb, name, type, help);
    sb_printf(sb, "%s %.0f\n", name, v);
}

static void prom_label(sb_t *sb, const char *sep, const char *name, tg_str_t v)
{
    sb_printf(sb, "%s%s=\"", sep, name);
    put_with(sb, v, tg_json_escape_prom); /* \\ \" \n only, as the exposition format says */
    sb_printf(sb, "\"");
}

static void prom_peer_labels(sb_t *sb, tg_upstream_t *u, tg_peer_t *p)
{
    prom_label(sb, "", "upstream", u->name);
    prom_label(sb, ",", "server", p->name);
}

static void prom_classes(sb_t *sb, const char *name, const tg_stats_class_t *c, tg_str_t srv,
                         tg_str_t loc)
{
    uint64_t classed = 0;
    for (int k = 0; k <= 5; k++) {
        sb_printf(sb, "%s{", name);
        if (srv.p) {
            prom_label(sb, "", "server", srv);
            if (loc.p)
                prom_label(sb, ",", "location", loc);
            sb_printf(sb, ",");
        }
        if (k < 5) {
            classed += c->status[k];
            sb_printf(sb, "class=\"%dxx\"} %llu\n", k + 1, (unsigned long long)c->status[k]);
        } else {
            sb_printf(sb, "class=\"other\"} %llu\n", (unsigned long long)(c->requests - classed));
        }
    }
}

static void render_prometheus(sb_t *sb, stats_conf_t *mc, totals_t *t, named_t *nm)
{
    tg_stats_shm_t *s = mc->st->shm;
    uint64_t *ev = t->events;
    prom_head(sb, "tollgate_info", "gauge", "Version of the running gateway (always 1).");
    sb_printf(sb, "tollgate_info{version=\"%s\"} 1\n", TG_VERSION);
    prom_one(sb, "tollgate_uptime_seconds", "gauge", "Seconds since the master started.",
             t->uptime);
    prom_one(sb, "tollgate_config_generation", "gauge", "Configuration generation running.",
             (double)t->m->generation);
    prom_one(sb, "tollgate_reloads_total", "counter", "Successful configuration reloads.",
             (double)t->m->reloads);
    prom_one(sb, "tollgate_worker_restarts_total", "counter",
             "Workers respawned after an unexpected exit.", (double)t->m->worker_restarts);
    prom_one(sb, "tollgate_workers", "gauge", "Worker processes of the current generation.",
             (double)t->m->workers);
    prom_one(sb, "tollgate_connections_open", "gauge", "Open client connections.",
             (double)t->conns_open);
    prom_head(sb, "tollgate_connections", "gauge", "Open client connections by state.");
    for (int k = 0; k < TG_STATS_CONN_STATES; k++)
        sb_printf(sb, "tollgate_connections{state=\"%s\"} %lld\n", conn_state_names[k],
                  (long long)t->conns_state[k]);
    tg_stats_class_t all = {t->requests, {0}};
    memcpy(all.status, t->status, sizeof(all.status));
    prom_head(sb, "tollgate_requests_total", "counter", "Requests by response status class.");
    prom_classes(sb, "tollgate_requests_total", &all, TG_NULL_STR, TG_NULL_STR);
    prom_head(sb, "tollgate_responses_total", "counter",
              "Requests by response status code (codes seen so far).");
    for (int k = 0; k < 500; k++)
        if (t->codes[k])
            sb_printf(sb, "tollgate_responses_total{code=\"%d\"} %llu\n", k + 100,
                      (unsigned long long)t->codes[k]);
    prom_head(sb, "tollgate_server_requests_total", "counter",
              "Requests by server block and response status class.");
    for (int i = 0; i < nm->nsrv; i++) {
        tg_str_t name;
        tg_stats_class_t c;
        tg_stats_slot_name(s, TG_STATS_SERVER, nm->srv[i], &name, NULL);
        sum_class(s, 0, nm->srv[i], &c);
        prom_classes(sb, "tollgate_server_requests_total", &c, name, TG_NULL_STR);
    }
    prom_head(sb, "tollgate_location_requests_total", "counter",
              "Requests by location (stats_name or path) and response status class.");
    for (int i = 0; i < nm->nloc; i++) {
        tg_str_t srv, loc;
        tg_stats_class_t c;
        tg_stats_slot_name(s, TG_STATS_LOCATION, nm->loc[i], &srv, &loc);
        sum_class(s, 1, nm->loc[i], &c);
        prom_classes(sb, "tollgate_location_requests_total", &c, srv, loc);
    }
    prom_one(sb, "tollgate_received_bytes_total", "counter", "Bytes received from clients.",
             (double)t->bytes_in);
    prom_one(sb, "tollgate_sent_bytes_total", "counter", "Bytes sent to clients.",
             (double)t->bytes_out);
    prom_one(sb, "tollgate_websocket_upgrades_total", "counter",
             "Connections upgraded (WebSocket and other Upgrade tunnels).", (double)t->upgrades);
    prom_one(sb, "tollgate_websocket_open", "gauge", "Upgraded connections open now.",
             (double)t->tunnels_open);
    prom_head(sb, "tollgate_tls_handshakes_total", "counter",
              "Client TLS handshakes by result (full, resumed, failed).");
    sb_printf(sb,
              "tollgate_tls_handshakes_total{result=\"full\"} %llu\n"
              "tollgate_tls_handshakes_total{result=\"resumed\"} %llu\n"
              "tollgate_tls_handshakes_total{result=\"failed\"} %llu\n",
              (unsigned long long)ev[TG_STATS_TLS_FULL], (unsigned long long)ev[TG_STATS_TLS_RESUMED],
              (unsigned long long)ev[TG_STATS_TLS_FAILED]);
    tg_tls_cache_stats_t tc;
    if (tg_tls_session_cache_stats(tg_worker->config, &tc) == 0) {
        prom_one(sb, "tollgate_tls_session_cache_sessions", "gauge",
                 "Sessions in the shared TLS session cache.", (double)tc.used);
        prom_head(sb, "tollgate_tls_session_cache_total", "counter",
                  "Shared TLS session cache events (hit, miss, store, eviction, expired, too_big).");
        sb_printf(sb,
                  "tollgate_tls_session_cache_total{event=\"hit\"} %llu\n"
                  "tollgate_tls_session_cache_total{event=\"miss\"} %llu\n"
                  "tollgate_tls_session_cache_total{event=\"store\"} %llu\n"
                  "tollgate_tls_session_cache_total{event=\"eviction\"} %llu\n"
                  "tollgate_tls_session_cache_total{event=\"expired\"} %llu\n"
                  "tollgate_tls_session_cache_total{event=\"too_big\"} %llu\n",
                  (unsigned long long)tc.hits, (unsigned long long)tc.misses,
                  (unsigned long long)tc.stores, (unsigned long long)tc.evictions,
                  (unsigned long long)tc.expired, (unsigned long long)tc.too_big);
    }
    prom_head(sb, "tollgate_rate_limit_hits_total", "counter",
              "Requests a rate_limit zone refused (action=limited) or would have refused "
              "(action=dry_run).");
    for (int i = 0; i < TG_STATS_MAX_ZONES; i++) {
        if (s->master.zone_names[i].name[0] == '\0')
            continue;
        tg_str_t name;
        tg_stats_zone_t z;
        tg_stats_slot_name(s, TG_STATS_ZONE, i, &name, NULL);
        sum_zone(s, i, &z);
        for (int dry = 0; dry < 2; dry++) {
            sb_printf(sb, "tollgate_rate_limit_hits_total{");
            prom_label(sb, "", "zone", name);
            sb_printf(sb, ",action=\"%s\"} %llu\n", dry ? "dry_run" : "limited",
                      (unsigned long long)(dry ? z.dry_run : z.limited));
        }
    }
    prom_one(sb, "tollgate_compressed_responses_total", "counter", "Responses compressed.",
             (double)ev[TG_STATS_COMPRESSED]);
    prom_one(sb, "tollgate_compress_in_bytes_total", "counter",
             "Response body bytes given to the compressors.", (double)ev[TG_STATS_COMPRESS_IN]);
    prom_one(sb, "tollgate_compress_out_bytes_total", "counter",
             "Compressed bytes the compressors produced.", (double)ev[TG_STATS_COMPRESS_OUT]);
    prom_one(sb, "tollgate_lua_errors_total", "counter",
             "Lua hook runs that failed (instruction limit stops included).",
             (double)ev[TG_STATS_LUA_ERRORS]);
    prom_one(sb, "tollgate_lua_instruction_limit_total", "counter",
             "Lua hook runs stopped by lua_instruction_limit.", (double)ev[TG_STATS_LUA_LIMIT]);
    prom_one(sb, "tollgate_io_uring_batches_total", "counter",
             "Send batches submitted to the kernel (one io_uring_enter each).",
             (double)ev[TG_STATS_SENDQ_BATCHES]);
    prom_one(sb, "tollgate_io_uring_writes_total", "counter",
             "Socket writes sent in those batches instead of one writev each.",
             (double)ev[TG_STATS_SENDQ_WRITES]);

    enum { M_REQ = 0, M_FAIL, M_RETRY, M_ACTIVE, M_UP, M_DOWNW, M_LAT, M_COUNT };
    static const char *const names[M_COUNT] = {
        "tollgate_upstream_requests_total", "tollgate_upstream_failures_total",
        "tollgate_upstream_retries_total",  "tollgate_upstream_active",
        "tollgate_upstream_up",             "tollgate_upstream_down_workers",
        "tollgate_upstream_latency_seconds"};
    static const char *const types[M_COUNT] = {"counter", "counter", "counter", "gauge",
                                               "gauge",   "gauge",   "histogram"};
    static const char *const helps[M_COUNT] = {
        "Requests whose last attempt went to this upstream server.",
        "Of those, attempts without an upstream response or answered 502+ by the gateway.",
        "Failed attempts on this upstream server that were retried.",
        "Attempts in flight to this upstream server.",
        "1 when no worker considers this upstream server down (health checks, max_fails).",
        "Workers that consider this upstream server down.",
        "Upstream response time."};
    for (int m = 0; m < M_COUNT; m++) {
        prom_head(sb, names[m], types[m], helps[m]);
        for (int i = 0; i < mc->st->nups; i++) {
            tg_stats_upstream_t *su = &mc->st->ups[i];
            tg_upstream_t *u = su->u;
            for (int k = 0; k < u->npeers; k++) {
                if (su->slots[k] < 0)
                    continue;
                peer_sum_t ps;
                tg_stats_peer_t *p = &ps.p;
                sum_peer(s, su->slots[k], &ps);
                if (m < M_LAT) {
                    long long v = m == M_REQ     ? (long long)p->requests
                                  : m == M_FAIL  ? (long long)p->failures
                                  : m == M_RETRY ? (long long)p->retries
                                  : m == M_ACTIVE ? (long long)p->active
                                  : m == M_UP     ? ps.down == 0
                                                  : ps.down;
                    sb_printf(sb, "%s{", names[m]);
                    prom_peer_labels(sb, u, &u->peers[k]);
                    sb_printf(sb, "} %lld\n", v);
                    continue;
                }
                uint64_t cum = 0;
                for (int b = 0; b < TG_STATS_NBUCKETS; b++) {
                    cum += p->buckets[b];
                    sb_printf(sb, "%s_bucket{", names[m]);
                    prom_peer_labels(sb, u, &u->peers[k]);
                    if (b < TG_STATS_NBUCKETS - 1)
                        sb_printf(sb, ",le=\"%g\"} %llu\n", tg_stats_bucket_ms[b] / 1000.0,
                                  (unsigned long long)cum);
                    else
                        sb_printf(sb, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
                }
                sb_printf(sb, "%s_sum{", names[m]);
                prom_peer_labels(sb, u, &u->peers[k]);
                sb_printf(sb, "} %.6f\n%s_count{", (double)p->latency_us / 1e6, names[m]);
                prom_peer_labels(sb, u, &u->peers[k]);
                sb_printf(sb, "} %llu\n", (unsigned long long)cum);
            }
        }
    }
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

/* Basic auth against the location's stats_auth users. Credentials that
 * verified are remembered (a SHA-256 of the location and the header value)
 * so a dashboard polling every second costs one crypt(3) run, not one per
 * poll. Returns 1 when allowed. */
static int auth_ok(stats_conf_t *mc, stats_conf_t *lc, tg_request_t *r)
{
    tg_header_t *h = tg_headers_find(&r->headers, TG_STR("Authorization"));
    if (h == NULL || h->value.len < 7 || h->value.len > 1024 ||
        strncasecmp(h->value.p, "Basic ", 6) != 0)
        return 0;
    tg_str_t b64 = {h->value.p + 6, h->value.len - 6};
    while (b64.len && b64.p[0] == ' ')
        b64.p++, b64.len--;
    unsigned char md[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, &lc, sizeof(lc)) && EVP_DigestUpdate(ctx, b64.p, b64.len) &&
             EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return 0;
    for (int i = 0; i < AUTH_CACHE; i++)
        if (CRYPTO_memcmp(mc->auth_ok[i], md, sizeof(md)) == 0)
            return 1;
    if (b64.len % 4 != 0)
        return 0;
    unsigned char plain[800];
    int n = EVP_DecodeBlock(plain, (const unsigned char *)b64.p, (int)b64.len);
    if (n < 0)
        return 0;
    for (size_t i = b64.len; i > 0 && b64.p[i - 1] == '='; i--)
        n--;
    const unsigned char *colon = memchr(plain, ':', (size_t)n);
    if (colon == NULL || memchr(plain, '\0', (size_t)n))
        return 0;
    plain[n] = '\0';
    size_t ulen = (size_t)(colon - plain);
    /* the hash runs for an unknown user too: the answer time does not tell
     * which user names exist */
    const stats_user_t *u = &lc->users[0];
    int known = 0;
    for (int i = 0; i < lc->nusers; i++)
        if (lc->users[i].user.len == ulen && CRYPTO_memcmp(lc->users[i].user.p, plain, ulen) == 0) {
            u = &lc->users[i];
            known = 1;
        }
    const char *out = crypt_r((const char *)colon + 1, u->hash, mc->crypt);
    size_t hl = strlen(u->hash);
    ok = known && out && strlen(out) == hl && CRYPTO_memcmp(out, u->hash, hl) == 0;
    OPENSSL_cleanse(plain, sizeof(plain));
    if (ok) {
        memcpy(mc->auth_ok[mc->auth_next], md, sizeof(md));
        mc->auth_next = (mc->auth_next + 1) % AUTH_CACHE;
    }
    return ok;
}

static tg_rc_t stats_content(tg_request_t *r, void *conf)
{
    stats_conf_t *lc = conf;
    if (lc->enabled != 1)
        return TG_OK;
    stats_conf_t *mc = main_conf();
    if (mc->st == NULL)
        return TG_ERROR;
    if (lc->nusers && !auth_ok(mc, lc, r)) {
        if (tg_request_add_resp_header(r, TG_STR("WWW-Authenticate"),
                                       TG_STR("Basic realm=\"tollgate stats\", charset=\"UTF-8\"")) != 0 ||
            tg_request_respond(r, 401, NULL, TG_NULL_STR) != 0)
            return TG_ERROR;
        return TG_DONE;
    }
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
    publish_all(mc);
    totals_t t;
    sum_totals(mc->st->shm, &t);
    named_t nm;
    sb_t sb = {r->arena, NULL, 0, 0, 0};
    sb.cap = 8192;
    if ((sb.p = tg_arena_alloc_nz(r->arena, sb.cap)) == NULL ||
        collect_named(r->arena, tg_worker->config, &nm) != 0)
        return TG_ERROR;
    if (fmt == FMT_PROMETHEUS)
        render_prometheus(&sb, mc, &t, &nm);
    else
        render_json(&sb, mc, &t, &nm);
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
