/* Dynamic upstream servers: names re-resolved at run time (see
 * upstream_dyn.h for the shape).
 *
 * Invariants:
 * - Only the worker in slot 0 queries DNS and writes the shared records; a
 *   record changes only when an answer brings a different set. A failed or
 *   empty answer never empties a set (the last good one is served, the
 *   failure is logged and counted), and an answer is re-asked after its TTL
 *   (at least 1 s) or `valid=`, after 5 s when it failed: queries are bounded
 *   by the number of names, not by traffic.
 * - A server owns `max` peer slots, reserved at load; peers[] never moves, so
 *   a request's peer pointer stays valid while its slot drains. A slot is
 *   given to another address only when nothing is in flight to it.
 * - Records live in the "__upstream_dyn" zone and are found by a key (hash of
 *   upstream and server), not by position, so a reload that keeps a server
 *   keeps its last set: the new workers start with it, not empty. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "upstream_dyn.h"
#include "shm.h"
#include "module.h"
#include "worker.h"
#include "log.h"
#include "json.h"

#define ZONE_NAME "__upstream_dyn"
#define OVR_ZONE_NAME "__upstream_api"
#define ZONE_MAGIC 0x746764796e763031ULL /* "tgdynv01" */
#define RETRY_AFTER 5.0  /* seconds after a failed resolution */
#define MIN_TTL 1        /* seconds: a TTL of 0 would query in a loop */
#define MAX_TTL 3600     /* seconds: a name is re-asked at least hourly */
#define DEFAULT_MAX 16   /* slots of a resolve server without max= */

typedef struct {
    uint64_t magic;
    uint32_t capacity; /* records */
    uint32_t pad;
    tg_dyn_record_t records[];
} zone_t;

/* ---- config ---------------------------------------------------------------- */

static tg_upstream_dyn_t *dyn_of(tg_conf_t *cf, tg_upstream_t *u)
{
    if (u->dyn == NULL && (u->dyn = tg_arena_alloc(cf->arena, sizeof(*u->dyn))) != NULL)
        memset(u->dyn, 0, sizeof(*u->dyn));
    return u->dyn;
}

/* A DNS name: letters, digits, '-', '_' and dots, at most 253 bytes. */
static int is_dns_name(tg_str_t s)
{
    if (s.len == 0 || s.len > 253)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* server NAME:PORT resolve [weight=N] [max=N] [max_fails=N] [fail_timeout=T] [backup]
 * server _service._tcp.NAME service resolve [max=N] [max_fails=N] [fail_timeout=T] */
const char *tg_upstream_dyn_server(tg_conf_t *cf, tg_upstream_t *u)
{
    tg_dyn_server_t *d = tg_arena_alloc(cf->arena, sizeof(*d));
    tg_upstream_dyn_t *dyn = dyn_of(cf, u);
    if (d == NULL || dyn == NULL)
        return "out of memory";
    memset(d, 0, sizeof(*d));
    tg_str_t spec = tg_conf_arg(cf, 1);
    d->weight = 1;
    d->max_fails = 1;
    d->fail_timeout = 10000;
    d->max = DEFAULT_MAX;
    int weight_set = 0;
    for (int i = 2; i <= cf->nargs; i++) {
        tg_str_t v, a = tg_conf_arg(cf, i);
        int64_t n;
        if (tg_str_eq_lit(a, "resolve")) {
            continue;
        } else if (tg_str_eq_lit(a, "service")) {
            d->srv = 1;
        } else if (tg_str_eq_lit(a, "backup")) {
            d->backup = 1;
        } else if (tg_conf_arg_kv(cf, i, "weight", &v)) {
            if (tg_parse_int(v, &n) != 0 || n < 1 || n > 1000)
                return tg_conf_errf(cf, "invalid weight \"%.*s\", expected 1..1000", TG_STR_FMT(v));
            d->weight = (int)n;
            weight_set = 1;
        } else if (tg_conf_arg_kv(cf, i, "max", &v)) {
            if (tg_parse_int(v, &n) != 0 || n < 1 || n > TG_DYN_MAX_ADDRS)
                return tg_conf_errf(cf, "invalid max \"%.*s\", expected 1..%d", TG_STR_FMT(v),
                                    TG_DYN_MAX_ADDRS);
            d->max = (int)n;
        } else if (tg_conf_arg_kv(cf, i, "max_fails", &v)) {
            if (tg_parse_int(v, &n) != 0 || n > 1000)
                return tg_conf_errf(cf, "invalid max_fails \"%.*s\"", TG_STR_FMT(v));
            d->max_fails = (int)n;
        } else if (tg_conf_arg_kv(cf, i, "fail_timeout", &v)) {
            if (tg_parse_msec(v, &d->fail_timeout) != 0)
                return tg_conf_errf(cf, "invalid fail_timeout \"%.*s\"", TG_STR_FMT(v));
        } else {
            return tg_conf_errf(cf, "invalid parameter \"%.*s\" in \"server ... resolve\", "
                                    "expected weight=, max=, max_fails=, fail_timeout=, backup or "
                                    "service",
                                TG_STR_FMT(a));
        }
    }
    tg_str_t host = spec;
    if (d->srv) {
        if (spec.len < 2 || spec.p[0] != '_' || !is_dns_name(spec))
            return tg_conf_errf(cf, "invalid service name \"%.*s\", expected "
                                    "_service._proto.NAME",
                                TG_STR_FMT(spec));
        if (weight_set || d->backup)
            return tg_conf_errf(cf, "\"server %.*s service\": weights and backups come from the "
                                    "SRV records (weight and priority)",
                                TG_STR_FMT(spec));
    } else {
        const char *colon = memrchr(spec.p, ':', spec.len);
        int64_t port;
        if (colon == NULL ||
            tg_parse_int((tg_str_t){colon + 1, (size_t)(spec.p + spec.len - colon - 1)}, &port) != 0 ||
            port < 1 || port > 65535)
            return tg_conf_errf(cf, "invalid server \"%.*s\" with \"resolve\", expected NAME:PORT",
                                TG_STR_FMT(spec));
        host.len = (size_t)(colon - spec.p);
        d->port = (uint16_t)port;
        unsigned char bin[16];
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "%.*s", TG_STR_FMT(host));
        if (inet_pton(AF_INET, tmp, bin) == 1 || host.p[0] == '[')
            return tg_conf_errf(cf, "\"server %.*s resolve\": an IP address has nothing to "
                                    "resolve, drop \"resolve\"",
                                TG_STR_FMT(spec));
        if (!is_dns_name(host))
            return tg_conf_errf(cf, "invalid host name \"%.*s\" in \"server\"", TG_STR_FMT(host));
    }
    tg_dyn_server_t **tail = &dyn->servers;
    for (; *tail; tail = &(*tail)->next)
        if (tg_str_eq((*tail)->spec, spec) && (*tail)->srv == d->srv)
            return tg_conf_errf(cf, "duplicate server \"%.*s\" in upstream \"%.*s\"",
                                TG_STR_FMT(spec), TG_STR_FMT(u->name));
    d->spec = tg_arena_str(cf->arena, spec);
    d->host = (char *)tg_arena_str(cf->arena, host).p;
    if (d->spec.p == NULL || d->host == NULL)
        return "out of memory";
    *tail = d;
    return NULL;
}

int tg_upstream_dyn_reserve(tg_upstream_t *u)
{
    if (u->dyn == NULL)
        return 0;
    if (u->dyn->servers == NULL) {
        fprintf(stderr, "%s:%d: \"resolver\" in upstream \"%.*s\", which has no server with "
                        "\"resolve\"\n",
                u->dyn->resolver.file, u->dyn->resolver.line, TG_STR_FMT(u->name));
        return 1;
    }
    for (tg_dyn_server_t *d = u->dyn->servers; d; d = d->next) {
        if (u->npeers + d->max > TG_UPSTREAM_MAX_PEERS) {
            fprintf(stderr, "%s:%d: upstream \"%.*s\": \"server %.*s\" reserves %d servers "
                            "(max=), more than the %d left of %d\n",
                    u->file, u->line, TG_STR_FMT(u->name), TG_STR_FMT(d->spec), d->max,
                    TG_UPSTREAM_MAX_PEERS - u->npeers, TG_UPSTREAM_MAX_PEERS);
            return 1;
        }
        d->u = u;
        d->first = u->npeers;
        for (int i = 0; i < d->max; i++) {
            tg_peer_t *p = &u->peers[u->npeers];
            memset(p, 0, sizeof(*p));
            p->dynamic = 1;
            p->absent = 1;
            p->name = d->spec; /* until it holds an address; TLS takes the host from it */
            p->weight = p->base_weight = d->weight;
            p->max_fails = d->max_fails;
            p->fail_timeout = d->fail_timeout;
            p->backup = d->backup;
            p->index = u->npeers++;
        }
    }
    return 0;
}

char *tg_upstream_dyn_describe(tg_arena_t *a, const tg_upstream_t *u, char *s)
{
    for (const tg_dyn_server_t *d = u->dyn ? u->dyn->servers : NULL; s && d; d = d->next) {
        char weight[24] = "";
        if (!d->srv)
            snprintf(weight, sizeof(weight), " weight=%d", d->weight);
        s = tg_arena_printf(a, "%s; server %.*s%s resolve max=%d%s max_fails=%d fail_timeout=%lldms%s",
                            s, TG_STR_FMT(d->spec), d->srv ? " service" : "", d->max, weight,
                            d->max_fails, (long long)d->fail_timeout, d->backup ? " backup" : "");
    }
    if (s && u->dyn && u->dyn->rc && u->dyn->rc->file)
        s = tg_arena_printf(a, "%s; resolver %s valid=%lldms ipv6=%s timeout=%lldms", s,
                            u->dyn->rc->servers ? u->dyn->rc->servers : "(resolv.conf)",
                            (long long)u->dyn->rc->valid, u->dyn->rc->ipv6 ? "on" : "off",
                            (long long)u->dyn->rc->timeout);
    return s;
}

/* resolver ADDR[:PORT]... [valid=TIME] [ipv6=on|off] [timeout=TIME]: main
 * scope (every upstream) or an upstream block (its resolve servers). */
static const char *set_resolver(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    if (cf->scope == TG_SCOPE_UPSTREAM) {
        tg_upstream_dyn_t *dyn = dyn_of(cf, conf);
        return dyn ? tg_resolver_conf_parse(cf, &dyn->resolver) : "out of memory";
    }
    return tg_resolver_conf_parse(cf, conf);
}

static void *dyn_create_conf(tg_conf_t *cf)
{
    tg_resolver_conf_t *rc = tg_arena_alloc(cf->arena, sizeof(*rc));
    if (rc)
        memset(rc, 0, sizeof(*rc));
    return rc;
}

/* The runtime API's zone: one row per upstream. A reload starts from the
 * config again: the rows are cleared and `dropped` tells the admin module,
 * whose init_conf comes next, to restore them from admin_persist or say in
 * the log that they are gone. */
static const char *overrides_init(tg_conf_t *cf)
{
    int nups = 0;
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next) {
        u->index = nups++;
        u->nconf = u->npeers;
    }
    if (nups == 0)
        return NULL;
    size_t size = sizeof(tg_upstream_overrides_t) +
                  (size_t)nups * sizeof(tg_peer_override_t[TG_UPSTREAM_MAX_PEERS]);
    tg_shm_zone_t *z;
    const char *err = tg_shm_zone_add(cf, TG_STR(OVR_ZONE_NAME), size, "upstream_api", &z);
    if (err)
        return err;
    tg_upstream_overrides_t *ov = z->data;
    if (!z->reused || ov->nups != (uint32_t)nups) {
        memset(ov, 0, size);
        if (tg_shm_mutex_init(&ov->lock) != 0)
            return "cannot set up the upstream API's lock";
    } else if (ov->changed_at) {
        if (tg_shm_mutex_lock(&ov->lock) >= 0) {
            memset(ov->rows, 0, (size_t)nups * sizeof(ov->rows[0]));
            ov->changed_at = 0;
            ov->dropped = 1;
            __atomic_fetch_add(&ov->seq, 1, __ATOMIC_RELEASE);
            tg_shm_mutex_unlock(&ov->lock);
        }
    }
    ov->nups = (uint32_t)nups;
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next)
        u->ovr = ov;
    return NULL;
}

static uint64_t server_key(const tg_upstream_t *u, const tg_dyn_server_t *d)
{
    char buf[600];
    int n = snprintf(buf, sizeof(buf), "%.*s%c%s%c%.*s", TG_STR_FMT(u->name), 0,
                     d->srv ? "srv" : "addr", 0, TG_STR_FMT(d->spec));
    uint64_t k = tg_hash64(buf, n > 0 ? (size_t)n : 0);
    return k ? k : 1;
}

/* The zone and each server's record in it. A record whose key this config
 * has is kept as it is; others are free to take once nobody of this config
 * claims them (the previous config's workers, still finishing, check the
 * key and ignore a record that changed owner). */
static const char *dyn_init_conf(tg_conf_t *cf, void *main_conf)
{
    tg_resolver_conf_t *main_rc = main_conf;
    if (main_rc->file == NULL)
        tg_resolver_conf_default(main_rc);
    const char *err = overrides_init(cf);
    if (err)
        return err;
    int n = 0;
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next) {
        if (u->dyn == NULL)
            continue;
        u->dyn->rc = u->dyn->resolver.file ? &u->dyn->resolver : main_rc;
        for (tg_dyn_server_t *d = u->dyn->servers; d; d = d->next) {
            d->key = server_key(u, d);
            n++;
        }
    }
    if (n == 0)
        return NULL;
    /* room for this config's records and the previous one's, in steps of
     * 64 so a reload that adds a server keeps the zone (and its sets) */
    uint32_t cap = (uint32_t)((2 * n + 63) / 64 * 64);
    tg_shm_zone_t *z;
    err = tg_shm_zone_add(cf, TG_STR(ZONE_NAME),
                                      sizeof(zone_t) + cap * sizeof(tg_dyn_record_t),
                                      "upstream_dyn", &z);
    if (err)
        return err;
    zone_t *zn = z->data;
    if (zn->magic != ZONE_MAGIC || zn->capacity != cap) {
        memset(zn, 0, sizeof(*zn) + cap * sizeof(tg_dyn_record_t));
        zn->magic = ZONE_MAGIC;
        zn->capacity = cap;
    }
    uint8_t *claimed = tg_arena_alloc(cf->arena, cap);
    if (claimed == NULL)
        return "out of memory";
    memset(claimed, 0, cap);
    for (int pass = 0; pass < 2; pass++) {
        for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next) {
            for (tg_dyn_server_t *d = u->dyn ? u->dyn->servers : NULL; d; d = d->next) {
                if (d->rec)
                    continue;
                for (uint32_t i = 0; i < cap && d->rec == NULL; i++) {
                    tg_dyn_record_t *r = &zn->records[i];
                    if (claimed[i] || (pass == 0 && r->key != d->key))
                        continue;
                    if (pass == 1 && r->key != 0 && !claimed[i]) {
                        /* another config's: free only when no key of ours is
                         * left unplaced in an empty record first */
                        int empty_left = 0;
                        for (uint32_t k = i + 1; k < cap; k++)
                            empty_left |= zn->records[k].key == 0 && !claimed[k];
                        if (empty_left)
                            continue;
                    }
                    if (pass == 1) {
                        uint32_t seq = r->seq;
                        memset(r, 0, sizeof(*r));
                        r->seq = (seq | 1) + 1; /* even, and unlike what a worker saw */
                        r->key = d->key;
                    }
                    claimed[i] = 1;
                    d->rec = r;
                }
            }
        }
    }
    return NULL;
}

/* ---- the resolving worker -------------------------------------------------- */

static int addr_cmp(const void *a, const void *b)
{
    const tg_dyn_addr_t *x = a, *y = b;
    if (x->backup != y->backup)
        return x->backup - y->backup;
    if (x->addrlen != y->addrlen)
        return (int)x->addrlen - (int)y->addrlen;
    return memcmp(&x->addr, &y->addr, x->addrlen);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, size, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const void *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, size, "%s:%u", ip, ntohs(s4->sin_port));
    }
}

static void schedule(tg_dyn_server_t *d, double after)
{
    if (tg_worker->shutting_down)
        return;
    ev_timer_stop(tg_worker->loop, &d->timer);
    ev_timer_set(&d->timer, after, 0.);
    ev_timer_start(tg_worker->loop, &d->timer);
}

static double wall_ms(void)
{
    return ev_time() * 1000.0;
}

static void failed(tg_dyn_server_t *d, const char *err)
{
    tg_dyn_record_t *r = d->rec;
    r->failures++;
    r->failed_at = (int64_t)wall_ms();
    snprintf(r->error, sizeof(r->error), "%s", err);
    tg_log(TG_LOG_WARN, "upstream %.*s: resolving \"%.*s\" failed (%s), keeping its %u "
                        "address%s",
           TG_STR_FMT(d->u->name), TG_STR_FMT(d->spec), err, r->naddrs, r->naddrs == 1 ? "" : "es");
    double after = d->u->dyn->rc->valid ? (double)d->u->dyn->rc->valid / 1000.0 : RETRY_AFTER;
    schedule(d, after < RETRY_AFTER ? after : RETRY_AFTER);
}

/* A good answer: publish it if it differs from the record, and ask again
 * when it expires. */
static void publish(tg_dyn_server_t *d, tg_dyn_addr_t *a, int n, uint32_t ttl)
{
    tg_dyn_record_t *r = d->rec;
    qsort(a, (size_t)n, sizeof(*a), addr_cmp);
    if (n > d->max) {
        tg_log(TG_LOG_WARN, "upstream %.*s: \"%.*s\" has %d addresses, keeping the first %d "
                            "(max=%d)",
               TG_STR_FMT(d->u->name), TG_STR_FMT(d->spec), n, d->max, d->max);
        n = d->max;
    }
    int same = (int)r->naddrs == n;
    for (int i = 0; same && i < n; i++)
        same = addr_cmp(&a[i], &r->addrs[i]) == 0 && a[i].weight == r->addrs[i].weight &&
               strcmp(a[i].host, r->addrs[i].host) == 0;
    if (!same) {
        char list[512] = "";
        size_t used = 0;
        for (int i = 0; i < n && used < sizeof(list) - 64; i++) {
            char t[64];
            addr_text(&a[i].addr, t, sizeof(t));
            used += (size_t)snprintf(list + used, sizeof(list) - used, " %s%s", t,
                                     a[i].backup ? "(backup)" : "");
        }
        tg_log(TG_LOG_INFO, "upstream %.*s: \"%.*s\" now resolves to%s", TG_STR_FMT(d->u->name),
               TG_STR_FMT(d->spec), list);
        uint32_t seq = __atomic_load_n(&r->seq, __ATOMIC_RELAXED) | 1;
        __atomic_store_n(&r->seq, seq, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        memcpy(r->addrs, a, (size_t)n * sizeof(*a));
        r->naddrs = (uint32_t)n;
        __atomic_store_n(&r->seq, seq + 1, __ATOMIC_RELEASE);
        tg_upstream_dyn_apply(d->u); /* this worker at once, the others at their next look */
    }
    r->resolved_at = (int64_t)wall_ms();
    tg_msec_t valid = d->u->dyn->rc->valid;
    if (ttl < MIN_TTL)
        ttl = MIN_TTL;
    if (ttl > MAX_TTL)
        ttl = MAX_TTL;
    schedule(d, valid ? (double)valid / 1000.0 : (double)ttl);
}

static void addrs_cb(void *data, const char *err, const tg_resolver_addr_t *a, int n, uint32_t ttl)
{
    tg_dyn_server_t *d = data;
    if (tg_worker->shutting_down || d->u->dyn->res == NULL)
        return;
    if (err) {
        failed(d, err);
        return;
    }
    tg_dyn_addr_t set[TG_DYN_MAX_ADDRS];
    int k = 0;
    for (int i = 0; i < n && k < TG_DYN_MAX_ADDRS; i++, k++) {
        memset(&set[k], 0, sizeof(set[k]));
        set[k].addr = a[i].addr;
        set[k].addrlen = a[i].addrlen;
        set[k].weight = (uint16_t)d->weight;
        set[k].backup = d->backup;
    }
    publish(d, set, k, ttl);
}

/* SRV: one lookup per target; the round is published when the last answers. */
typedef struct {
    tg_dyn_server_t *d;
    uint32_t generation;
    uint16_t priority, weight;
    char host[64];
} target_t;

static void srv_round_end(tg_dyn_server_t *d)
{
    if (d->nfound == 0) {
        failed(d, "no target resolved");
        return;
    }
    int best = 65536;
    for (int i = 0; i < d->nfound; i++)
        if (d->found[i].backup < best) /* backup holds the priority until here */
            best = d->found[i].backup;
    for (int i = 0; i < d->nfound; i++)
        d->found[i].backup = d->found[i].backup != best;
    publish(d, d->found, d->nfound, d->ttl);
}

static void target_cb(void *data, const char *err, const tg_resolver_addr_t *a, int n, uint32_t ttl)
{
    target_t *t = data;
    tg_dyn_server_t *d = t->d;
    int current = t->generation == d->generation;
    if (!current || tg_worker->shutting_down || d->u->dyn->res == NULL) {
        free(t);
        return;
    }
    if (err)
        tg_log(TG_LOG_WARN, "upstream %.*s: SRV target \"%s\" of \"%.*s\" failed: %s",
               TG_STR_FMT(d->u->name), t->host, TG_STR_FMT(d->spec), err);
    for (int i = 0; !err && i < n && d->nfound < TG_DYN_MAX_ADDRS; i++) {
        tg_dyn_addr_t *x = &d->found[d->nfound++];
        memset(x, 0, sizeof(*x));
        x->addr = a[i].addr;
        x->addrlen = a[i].addrlen;
        x->weight = t->weight ? t->weight : 1; /* weight 0: the least, still used */
        x->backup = (uint8_t)(t->priority > 255 ? 255 : t->priority);
        snprintf(x->host, sizeof(x->host), "%s", t->host);
    }
    if (!err && ttl < d->ttl)
        d->ttl = ttl;
    free(t);
    if (--d->pending == 0)
        srv_round_end(d);
}

static void srv_cb(void *data, const char *err, const tg_resolver_srv_t *s, int n, uint32_t ttl)
{
    tg_dyn_server_t *d = data;
    if (tg_worker->shutting_down || d->u->dyn->res == NULL)
        return;
    if (err) {
        failed(d, err);
        return;
    }
    d->generation++;
    d->nfound = 0;
    d->pending = 0;
    d->ttl = ttl;
    for (int i = 0; i < n; i++) {
        target_t *t = malloc(sizeof(*t));
        if (t == NULL)
            break;
        *t = (target_t){d, d->generation, s[i].priority, s[i].weight, ""};
        snprintf(t->host, sizeof(t->host), "%s", s[i].target);
        d->pending++;
        if (tg_resolver_addrs(d->u->dyn->res, s[i].target, s[i].port, target_cb, t) != 0) {
            d->pending--;
            free(t);
        }
    }
    if (d->pending == 0)
        failed(d, "out of memory");
}

static void query_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_dyn_server_t *d = w->data;
    tg_resolver_t *res = d->u->dyn->res;
    if (tg_worker->shutting_down || res == NULL)
        return;
    d->rec->lookups++;
    int rc = d->srv ? tg_resolver_srv(res, d->host, srv_cb, d)
                    : tg_resolver_addrs(res, d->host, d->port, addrs_cb, d);
    if (rc != 0)
        failed(d, "out of memory");
}

/* ---- every worker: applying a set ------------------------------------------- */

static void close_idle(tg_upstream_t *u, tg_peer_t *p)
{
    for (tg_upconn_t **pp = &u->idle; *pp;) {
        tg_upconn_t *uc = *pp;
        if (uc->peer != p) {
            pp = &uc->next;
            continue;
        }
        *pp = uc->next;
        u->nidle--;
        tg_upconn_destroy(uc);
    }
}

static int same(const tg_peer_t *p, const tg_dyn_addr_t *a)
{
    return p->addrlen == a->addrlen && memcmp(&p->addr, &a->addr, a->addrlen) == 0;
}

static void apply_server(tg_upstream_t *u, tg_dyn_server_t *d, const tg_dyn_addr_t *a, int n)
{
    uint8_t matched[TG_DYN_MAX_ADDRS] = {0};
    tg_peer_t *slots = &u->peers[d->first];
    for (int i = 0; i < d->max; i++) {
        tg_peer_t *p = &slots[i];
        if (p->absent)
            continue;
        int j = 0;
        while (j < n && (matched[j] || !same(p, &a[j])))
            j++;
        if (j < n) {
            matched[j] = 1;
            p->weight = p->base_weight = a[j].weight;
            p->backup = a[j].backup;
            continue;
        }
        p->absent = 1;
        close_idle(u, p);
        tg_log(TG_LOG_INFO, "upstream %.*s: server %.*s removed (%d request%s in flight finish "
                            "there)",
               TG_STR_FMT(u->name), TG_STR_FMT(p->name), p->conns, p->conns == 1 ? "" : "s");
    }
    for (int j = 0; j < n; j++) {
        if (matched[j])
            continue;
        tg_peer_t *p = NULL;
        for (int i = 0; i < d->max && p == NULL; i++)
            if (slots[i].absent && slots[i].text[0] && same(&slots[i], &a[j]))
                p = &slots[i]; /* back before it finished draining: keep its state */
        for (int i = 0; i < d->max && p == NULL; i++)
            if (slots[i].absent && slots[i].conns == 0)
                p = &slots[i];
        if (p == NULL) {
            u->dyn->retry = 1; /* every slot still drains: next tick */
            continue;
        }
        if (!same(p, &a[j]) || p->text[0] == '\0') {
            p->addr = a[j].addr;
            p->addrlen = a[j].addrlen;
            addr_text(&p->addr, p->text, sizeof(p->text));
            p->name = (tg_str_t){p->text, strlen(p->text)};
            snprintf(p->sticky_id, sizeof(p->sticky_id), "%016llx",
                     (unsigned long long)tg_hash64(p->name.p, p->name.len));
            p->current_weight = 0;
            p->fails = 0;
            p->fail_start = 0;
            p->down_until = 0;
            p->health_down = 0;
            p->hc_fails = p->hc_passes = 0;
        }
        if (d->srv && a[j].host[0]) {
            snprintf(p->host, sizeof(p->host), "%s", a[j].host);
            p->tls_host = p->host;
            p->tls_host_is_ip = 0;
        }
        p->weight = p->base_weight = a[j].weight;
        p->backup = a[j].backup;
        p->absent = 0;
        tg_log(TG_LOG_INFO, "upstream %.*s: server %.*s added (from \"%.*s\")", TG_STR_FMT(u->name),
               TG_STR_FMT(p->name), TG_STR_FMT(d->spec));
    }
}

/* The runtime API's changes: every server's row, whole (a few dozen bytes). */
/* Slot i takes the API's server o (once: a slot is never given to another). */
static void add_peer(tg_upstream_t *u, int i, const tg_peer_override_t *o)
{
    while (u->npeers <= i) { /* slots skipped on the way stay empty */
        tg_peer_t *e = &u->peers[u->npeers];
        memset(e, 0, sizeof(*e));
        e->absent = 1;
        e->weight = e->base_weight = 1;
        e->index = u->npeers++;
    }
    tg_peer_t *p = &u->peers[i];
    if (!p->absent)
        return;
    p->addr = o->addr;
    p->addrlen = o->addrlen;
    snprintf(p->text, sizeof(p->text), "%s", o->name);
    p->name = (tg_str_t){p->text, strlen(p->text)};
    const char *colon = strrchr(o->name, ':');
    size_t hl = colon ? (size_t)(colon - o->name) : strlen(o->name);
    if (o->name[0] == '[' && hl >= 2)
        snprintf(p->host, sizeof(p->host), "%.*s", (int)hl - 2, o->name + 1);
    else
        snprintf(p->host, sizeof(p->host), "%.*s", (int)hl, o->name);
    p->tls_host = p->host;
    p->tls_host_is_ip = 1;
    snprintf(p->sticky_id, sizeof(p->sticky_id), "%016llx",
             (unsigned long long)tg_hash64(p->name.p, p->name.len));
    p->base_weight = o->weight > 0 ? o->weight : 1;
    p->max_fails = 1;
    p->fail_timeout = 10000;
    p->absent = 0;
    tg_log(TG_LOG_INFO, "upstream %.*s: server %s added (runtime API)", TG_STR_FMT(u->name),
           p->text);
}

static void apply_overrides(tg_upstream_t *u)
{
    u->ovr_seen = __atomic_load_n(&u->ovr->seq, __ATOMIC_ACQUIRE);
    const tg_peer_override_t *row = u->ovr->rows[u->index];
    for (int i = u->nconf; i < tg_upstream_capacity(u); i++)
        if (row[i].added)
            add_peer(u, i, &row[i]);
    for (int i = 0; i < u->npeers; i++) {
        tg_peer_t *p = &u->peers[i];
        tg_peer_override_t o = row[i];
        unsigned was = p->drained;
        p->drained = o.drain || o.down || o.removed;
        p->weight = o.weight > 0 ? o.weight : p->base_weight;
        if (p->drained && !was)
            close_idle(u, p);
    }
}

static void apply_sets(tg_upstream_t *u)
{
    tg_dyn_addr_t a[TG_DYN_MAX_ADDRS];
    u->dyn->retry = 0;
    for (tg_dyn_server_t *d = u->dyn->servers; d; d = d->next) {
        tg_dyn_record_t *r = d->rec;
        if (r == NULL)
            continue;
        uint32_t s1 = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
        if (s1 == d->seen)
            continue;
        if ((s1 & 1) || r->key != d->key) {
            u->dyn->retry = (s1 & 1) != 0; /* being written: next time */
            continue;
        }
        uint32_t n = r->naddrs;
        if (n > TG_DYN_MAX_ADDRS)
            n = TG_DYN_MAX_ADDRS;
        memcpy(a, r->addrs, n * sizeof(a[0]));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&r->seq, __ATOMIC_RELAXED) != s1) {
            u->dyn->retry = 1;
            continue;
        }
        d->seen = s1;
        apply_server(u, d, a, n > (uint32_t)d->max ? d->max : (int)n);
    }
}

void tg_upstream_dyn_apply(tg_upstream_t *u)
{
    if (u->dyn)
        apply_sets(u);
    if (u->ovr)
        apply_overrides(u); /* after the sets: an API weight wins over a resolved one */
}

int tg_upstream_override_set(tg_upstream_t *u, int id, const tg_peer_override_t *o)
{
    tg_upstream_overrides_t *ov = u->ovr;
    if (ov == NULL || id < 0 || id >= u->npeers)
        return -1;
    if (tg_shm_mutex_lock(&ov->lock) < 0)
        return -1;
    tg_peer_override_t *row = &ov->rows[u->index][id];
    if (row->added) { /* the address stays the API server's */
        row->weight = o->weight;
        row->drain = o->drain;
        row->down = o->down;
        row->removed = o->removed;
    } else {
        *row = *o;
    }
    ov->changed_at = (int64_t)wall_ms();
    __atomic_fetch_add(&ov->seq, 1, __ATOMIC_RELEASE);
    tg_shm_mutex_unlock(&ov->lock);
    tg_upstream_dyn_apply(u);
    return 0;
}

int tg_upstream_override_add(tg_upstream_t *u, const struct sockaddr_storage *ss, socklen_t len,
                             const char *name, int weight)
{
    tg_upstream_overrides_t *ov = u->ovr;
    if (ov == NULL || u->implicit || u->balance == TG_BALANCE_HASH)
        return -1;
    if (tg_shm_mutex_lock(&ov->lock) < 0)
        return -1;
    tg_peer_override_t *row = ov->rows[u->index];
    int id = -1, dup = 0;
    for (int i = 0; i < u->nconf; i++)
        dup |= !u->peers[i].dynamic && tg_str_eq(u->peers[i].name, tg_str_c(name));
    for (int i = u->nconf; i < TG_UPSTREAM_MAX_PEERS; i++) {
        if (row[i].added)
            dup |= !row[i].removed && strcmp(row[i].name, name) == 0;
        else if (id < 0)
            id = i;
    }
    if (!dup && id >= 0) {
        memset(&row[id], 0, sizeof(row[id]));
        row[id].added = 1;
        row[id].weight = weight;
        row[id].addr = *ss;
        row[id].addrlen = len;
        snprintf(row[id].name, sizeof(row[id].name), "%s", name);
        ov->changed_at = (int64_t)wall_ms();
        __atomic_fetch_add(&ov->seq, 1, __ATOMIC_RELEASE);
    }
    tg_shm_mutex_unlock(&ov->lock);
    if (dup)
        return -2;
    if (id >= 0)
        tg_upstream_dyn_apply(u);
    return id;
}

tg_peer_override_t tg_upstream_override_get(const tg_upstream_t *u, int id)
{
    tg_peer_override_t none = {0};
    if (u->ovr == NULL || id < 0 || id >= u->npeers)
        return none;
    return u->ovr->rows[u->index][id];
}

/* ---- worker start and stop --------------------------------------------------- */

static ev_timer sync_timer; /* every worker: apply changes even without traffic */

static void sync_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    for (tg_upstream_t *u = tg_worker->config->upstreams; u; u = u->next)
        tg_upstream_dyn_sync(u);
}

static int dyn_init_worker(tg_worker_t *w)
{
    int any = 0;
    for (tg_upstream_t *u = w->config->upstreams; u; u = u->next) {
        any = 1; /* the API's changes: idle connections to a drained server close */
        tg_upstream_dyn_sync(u);
        if (u->dyn == NULL)
            continue;
        if (w->slot != 0)
            continue;
        if ((u->dyn->res = tg_resolver_create(w->loop, u->dyn->rc)) == NULL)
            continue; /* logged: the upstream keeps the set it has */
        for (tg_dyn_server_t *d = u->dyn->servers; d; d = d->next) {
            if (d->srv && (d->found = calloc(TG_DYN_MAX_ADDRS, sizeof(*d->found))) == NULL)
                return -1;
            ev_init(&d->timer, query_cb);
            d->timer.data = d;
            schedule(d, 0.);
        }
    }
    if (any) {
        ev_timer_init(&sync_timer, sync_cb, 1., 1.);
        ev_timer_start(w->loop, &sync_timer);
    }
    return 0;
}

static void dyn_exit_worker(tg_worker_t *w)
{
    ev_timer_stop(w->loop, &sync_timer);
    for (tg_upstream_t *u = w->config->upstreams; u; u = u->next) {
        if (u->dyn == NULL || u->dyn->res == NULL)
            continue;
        tg_resolver_t *res = u->dyn->res;
        u->dyn->res = NULL; /* the callbacks destroy runs see it and do nothing */
        for (tg_dyn_server_t *d = u->dyn->servers; d; d = d->next)
            ev_timer_stop(w->loop, &d->timer);
        tg_resolver_destroy(res);
        for (tg_dyn_server_t *d = u->dyn->servers; d; d = d->next) {
            free(d->found);
            d->found = NULL;
        }
    }
}

static const tg_directive_t dyn_directives[] = {
    {"resolver", TG_SCOPE_MAIN | TG_SCOPE_UPSTREAM, 0, 1, TG_RESOLVER_MAX_SERVERS + 3, set_resolver,
     0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_upstream_dyn_module = {
    .name = "upstream_dyn",
    .directives = dyn_directives,
    .create_conf = dyn_create_conf,
    .init_conf = dyn_init_conf,
    .init_worker = dyn_init_worker,
    .exit_worker = dyn_exit_worker,
};

char *tg_upstream_dyn_stats_render(tg_arena_t *a, tg_config_t *c)
{
    char *o = "";
    int nu = 0;
    for (tg_upstream_t *u = c->upstreams; o && u; u = u->next) {
        if (u->dyn == NULL)
            continue;
        tg_upstream_dyn_sync(u);
        char *un = tg_json_escape_dup(a, u->name, 0);
        o = un ? tg_arena_printf(a, "%s%s\"%s\": {\"names\": [", o, nu++ ? "," : ",\n  \"resolve\": {", un)
               : NULL;
        int first = 1;
        for (const tg_dyn_server_t *d = u->dyn->servers; o && d; d = d->next, first = 0) {
            const tg_dyn_record_t *r = d->rec;
            char *sp = tg_json_escape_dup(a, d->spec, 0);
            o = sp ? tg_arena_printf(a, "%s%s{\"server\": \"%s\", \"type\": \"%s\", \"addresses\": [", o,
                                     first ? "" : ", ", sp, d->srv ? "SRV" : "A/AAAA")
                   : NULL;
            for (int i = d->first, k = 0; o && i < d->first + d->max; i++) {
                if (u->peers[i].absent)
                    continue;
                char *pn = tg_json_escape_dup(a, u->peers[i].name, 0);
                o = pn ? tg_arena_printf(a, "%s%s\"%s\"", o, k++ ? ", " : "", pn) : NULL;
            }
            if (o == NULL)
                break;
            char *err = NULL;
            if (r && r->failed_at > r->resolved_at && (err = tg_json_escape_dup(a, tg_str_c(r->error), 0)) == NULL)
                return NULL;
            o = tg_arena_printf(a,
                                "%s], \"resolved_at\": %lld, \"lookups\": %llu, \"failures\": %llu, "
                                "\"last_error\": %s%s%s}",
                                o, r ? (long long)r->resolved_at : 0LL, r ? (unsigned long long)r->lookups : 0ULL,
                                r ? (unsigned long long)r->failures : 0ULL, err ? "\"" : "null", err ? err : "",
                                err ? "\"" : "");
        }
        o = o ? tg_arena_printf(a, "%s]}", o) : NULL;
    }
    return o && nu ? tg_arena_printf(a, "%s}", o) : o;
}
