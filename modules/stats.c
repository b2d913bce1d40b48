/* stats: counts every request into the shared stats zone (src/stats.h) and,
 * where `stats;` is set, answers with the totals:
 *
 *   location = /stats { allow 127.0.0.1; deny all; stats; }
 *
 * JSON by default; Prometheus text with ?format=prometheus or an Accept of
 * text/plain; a self-contained HTML dashboard with ?format=html or an Accept
 * of text/html. docs/stats.md has the schema and every metric.
 *
 * Counting runs in the log phase of every location (is_active is NULL), so
 * it sees the final status, and must stay cheap: relaxed atomic adds into
 * this worker's block, no lock, no allocation. Requests answered by `stats`
 * are not counted. Gauges (open connections, open tunnels) are copied from
 * the worker at each request end and on a 1 s timer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ev.h>
#include <llhttp.h>
#include "log.h"
#include "module.h"
#include "request.h"
#include "shm.h"
#include "stats.h"
#include "upstream.h"
#include "worker.h"

typedef struct {
    tg_upstream_t *u;
    int base; /* slot of its first server; servers past TG_STATS_MAX_PEERS: -1 */
} stats_up_t;

typedef struct {
    int enabled; /* location: `stats;` answers here */
    /* main scope only */
    tg_stats_shm_t *shm;
    stats_up_t *ups;
    int nups;
    ev_timer *timer;        /* per worker, malloc'd at worker start */
    uint64_t upgrades_seen; /* tg_worker->upgrades already added to the zone */
} stats_conf_t;

tg_module_t tg_stats_module;

static void *stats_create_conf(tg_conf_t *cf)
{
    stats_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c)
        c->enabled = TG_CONF_UNSET;
    return c;
}

static const char *stats_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    (void)parent;
    stats_conf_t *c = child;
    /* not inherited: `stats` answers only in the location that names it */
    if (c->enabled == TG_CONF_UNSET)
        c->enabled = 0;
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

/* Declare the zone and give every upstream server its slot. A slot whose
 * server changed since the last load starts from zero. */
static const char *stats_init_conf(tg_conf_t *cf, void *conf)
{
    stats_conf_t *mc = conf;
    tg_shm_zone_t *z;
    const char *err = tg_shm_zone_add(cf, TG_STR("__stats"), sizeof(tg_stats_shm_t), "stats", &z);
    if (err)
        return err;
    tg_stats_shm_t *s = mc->shm = z->data;
    if (!z->reused) { /* a new zone is zeroed; touching it all would cost its RAM */
        s->master.magic = 0x74677374617473ULL;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s->master.start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    }
    int nups = 0, slot = 0;
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next)
        nups++;
    mc->ups = tg_arena_alloc(cf->arena, (size_t)(nups ? nups : 1) * sizeof(stats_up_t));
    if (mc->ups == NULL)
        return "out of memory";
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next) {
        stats_up_t *su = &mc->ups[mc->nups++];
        su->u = u;
        su->base = slot + u->npeers <= TG_STATS_MAX_PEERS ? slot : -1;
        if (su->base < 0) {
            tg_conf_warn(cf, "stats: upstream \"%.*s\" is not counted per server, more than %d "
                             "upstream servers",
                         TG_STR_FMT(u->name), TG_STATS_MAX_PEERS);
            continue;
        }
        for (int i = 0; i < u->npeers; i++, slot++) {
            char name[TG_STATS_NAME_MAX] = {0};
            size_t ul = u->name.len < 47 ? u->name.len : 47;
            size_t pl = u->peers[i].name.len < 47 ? u->peers[i].name.len : 47;
            memcpy(name, u->name.p, ul);
            memcpy(name + ul + 1, u->peers[i].name.p, pl);
            if (memcmp(name, s->master.peer_names[slot], sizeof(name)) != 0) {
                memcpy(s->master.peer_names[slot], name, sizeof(name));
                for (int w = 0; z->reused && w < TG_MAX_WORKERS; w++)
                    memset(&s->workers[w].peers[slot], 0, sizeof(tg_stats_peer_t));
            }
        }
    }
    s->master.npeers = (uint64_t)slot;
    return NULL;
}

static stats_conf_t *main_conf(void)
{
    return tg_worker->config->mconf[tg_stats_module.index];
}

/* Copy the worker's gauges into its block; add new upgrades. */
static void publish_gauges(stats_conf_t *mc)
{
    tg_worker_t *w = tg_worker;
    if (mc->shm == NULL || w->shutting_down)
        return; /* a replaced worker must not overwrite its successor's gauges */
    tg_stats_worker_t *b = &mc->shm->workers[w->slot];
    tg_stats_set(&b->conns_open, w->nconns);
    tg_stats_set(&b->tunnels_open, w->tunnels_open);
    if (w->upgrades != mc->upgrades_seen) {
        tg_stats_add(&b->upgrades, w->upgrades - mc->upgrades_seen);
        mc->upgrades_seen = w->upgrades;
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    publish_gauges(t->data);
}

static int stats_init_worker(tg_worker_t *w)
{
    stats_conf_t *mc = main_conf();
    mc->timer = malloc(sizeof(ev_timer));
    if (mc->timer == NULL)
        return -1;
    mc->upgrades_seen = w->upgrades;
    ev_timer_init(mc->timer, timer_cb, 1., 1.);
    mc->timer->data = mc;
    ev_timer_start(w->loop, mc->timer);
    return 0;
}

static void count_peer(stats_conf_t *mc, tg_stats_worker_t *b, tg_request_t *r)
{
    int slot = -1;
    for (int i = 0; i < mc->nups && slot < 0; i++) {
        tg_upstream_t *u = mc->ups[i].u;
        if (u != r->upstream || mc->ups[i].base < 0)
            continue;
        for (int k = 0; k < u->npeers; k++)
            if (u->peers[k].name.p == r->upstream_addr.p ||
                tg_str_eq(u->peers[k].name, r->upstream_addr)) {
                slot = mc->ups[i].base + k;
                break;
            }
    }
    if (slot < 0)
        return;
    tg_stats_peer_t *p = &b->peers[slot];
    tg_stats_add(&p->requests, 1);
    if (r->upstream_status == 0 || (r->resp_local && r->status >= 502))
        tg_stats_add(&p->failures, 1);
    double t = r->upstream_time > 0 ? r->upstream_time : 0;
    tg_stats_add(&p->latency_us, (uint64_t)(t * 1e6));
    double ms = t * 1000.0;
    int k = 0;
    while (k < TG_STATS_NBUCKETS - 1 && ms > tg_stats_bucket_ms[k])
        k++;
    tg_stats_add(&p->buckets[k], 1);
}

static void stats_log(tg_request_t *r, void *conf)
{
    if (((stats_conf_t *)conf)->enabled == 1)
        return; /* the stats endpoint is not traffic */
    stats_conf_t *mc = main_conf();
    if (mc->shm == NULL)
        return;
    tg_stats_worker_t *b = &mc->shm->workers[tg_worker->slot];
    tg_stats_add(&b->requests, 1);
    if (r->status >= 100 && r->status < 600)
        tg_stats_add(&b->status[r->status / 100 - 1], 1);
    tg_stats_add(&b->bytes_in, r->bytes_in);
    tg_stats_add(&b->bytes_out, r->bytes_out);
    if (r->upstream && r->upstream_addr.len)
        count_peer(mc, b, r);
    publish_gauges(mc);
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
    int64_t conns_open, tunnels_open;
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
        if ((uint64_t)w < nw) {
            t->conns_open += __atomic_load_n(&b->conns_open, __ATOMIC_RELAXED);
            t->tunnels_open += __atomic_load_n(&b->tunnels_open, __ATOMIC_RELAXED);
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->uptime = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - s->master.start_time;
    if (t->uptime < 0)
        t->uptime = 0;
}

static void sum_peer(tg_stats_shm_t *s, int slot, tg_stats_peer_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int w = 0; w < TG_MAX_WORKERS; w++) {
        tg_stats_peer_t *p = &s->workers[w].peers[slot];
        out->requests += tg_stats_read(&p->requests);
        out->failures += tg_stats_read(&p->failures);
        out->latency_us += tg_stats_read(&p->latency_us);
        for (int k = 0; k < TG_STATS_NBUCKETS; k++)
            out->buckets[k] += tg_stats_read(&p->buckets[k]);
    }
}

/* Names come from the config (tokens, addresses); escape what JSON and the
 * Prometheus label syntax both need escaped. */
static void put_escaped(sb_t *sb, tg_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch == '"' || ch == '\\')
            sb_printf(sb, "\\%c", ch);
        else if (ch < 0x20)
            sb_printf(sb, "\\u%04x", ch);
        else
            sb_printf(sb, "%c", ch);
    }
}

static void render_json(sb_t *sb, stats_conf_t *mc, totals_t *t)
{
    sb_printf(sb,
              "{\"version\":\"%s\",\"uptime_s\":%.0f,\"generation\":%llu,\"reloads\":%llu,"
              "\"worker_restarts\":%llu,\"workers\":%llu,\"connections\":{\"open\":%lld},"
              "\"requests\":{\"total\":%llu",
              TG_VERSION, t->uptime, (unsigned long long)t->m->generation,
              (unsigned long long)t->m->reloads, (unsigned long long)t->m->worker_restarts,
              (unsigned long long)t->m->workers, (long long)t->conns_open,
              (unsigned long long)t->requests);
    for (int k = 0; k < 5; k++)
        sb_printf(sb, ",\"%dxx\":%llu", k + 1, (unsigned long long)t->status[k]);
    sb_printf(sb,
              "},\"bytes\":{\"in\":%llu,\"out\":%llu},\"websocket\":{\"upgrades\":%llu,"
              "\"open\":%lld},\"upstreams\":{",
              (unsigned long long)t->bytes_in, (unsigned long long)t->bytes_out,
              (unsigned long long)t->upgrades, (long long)t->tunnels_open);
    for (int i = 0; i < mc->nups; i++) {
        tg_upstream_t *u = mc->ups[i].u;
        sb_printf(sb, "%s\"", i ? "," : "");
        put_escaped(sb, u->name);
        sb_printf(sb, "\":{\"servers\":{");
        for (int k = 0; mc->ups[i].base >= 0 && k < u->npeers; k++) {
            tg_stats_peer_t p;
            sum_peer(mc->shm, mc->ups[i].base + k, &p);
            sb_printf(sb, "%s\"", k ? "," : "");
            put_escaped(sb, u->peers[k].name);
            sb_printf(sb, "\":{\"requests\":%llu,\"failures\":%llu,\"latency_ms_sum\":%.3f,"
                          "\"latency_ms_buckets\":{",
                      (unsigned long long)p.requests, (unsigned long long)p.failures,
                      (double)p.latency_us / 1000.0);
            for (int b = 0; b < TG_STATS_NBUCKETS; b++) {
                if (b < TG_STATS_NBUCKETS - 1)
                    sb_printf(sb, "\"%u\":", tg_stats_bucket_ms[b]);
                else
                    sb_printf(sb, ",\"+Inf\":");
                sb_printf(sb, "%llu%s", (unsigned long long)p.buckets[b],
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

static void prom_peer_labels(sb_t *sb, tg_upstream_t *u, tg_peer_t *p)
{
    sb_printf(sb, "upstream=\"");
    put_escaped(sb, u->name);
    sb_printf(sb, "\",server=\"");
    put_escaped(sb, p->name);
    sb_printf(sb, "\"");
}

static void render_prometheus(sb_t *sb, stats_conf_t *mc, totals_t *t)
{
    prom_head(sb, "tollgate_info", "gauge", "Version of the running gateway (always 1).");
    sb_printf(sb, "tollgate_info{version=\"%s\"} 1\n", TG_VERSION);
    prom_head(sb, "tollgate_uptime_seconds", "gauge", "Seconds since the master started.");
    sb_printf(sb, "tollgate_uptime_seconds %.0f\n", t->uptime);
    prom_head(sb, "tollgate_config_generation", "gauge", "Configuration generation running.");
    sb_printf(sb, "tollgate_config_generation %llu\n", (unsigned long long)t->m->generation);
    prom_head(sb, "tollgate_reloads_total", "counter", "Successful configuration reloads.");
    sb_printf(sb, "tollgate_reloads_total %llu\n", (unsigned long long)t->m->reloads);
    prom_head(sb, "tollgate_worker_restarts_total", "counter",
              "Workers respawned after an unexpected exit.");
    sb_printf(sb, "tollgate_worker_restarts_total %llu\n",
              (unsigned long long)t->m->worker_restarts);
    prom_head(sb, "tollgate_workers", "gauge", "Worker processes of the current generation.");
    sb_printf(sb, "tollgate_workers %llu\n", (unsigned long long)t->m->workers);
    prom_head(sb, "tollgate_connections_open", "gauge", "Open client connections.");
    sb_printf(sb, "tollgate_connections_open %lld\n", (long long)t->conns_open);
    prom_head(sb, "tollgate_requests_total", "counter", "Requests by response status class.");
    for (int k = 0; k < 5; k++)
        sb_printf(sb, "tollgate_requests_total{class=\"%dxx\"} %llu\n", k + 1,
                  (unsigned long long)t->status[k]);
    uint64_t classed = 0;
    for (int k = 0; k < 5; k++)
        classed += t->status[k];
    sb_printf(sb, "tollgate_requests_total{class=\"other\"} %llu\n",
              (unsigned long long)(t->requests - classed));
    prom_head(sb, "tollgate_received_bytes_total", "counter", "Bytes received from clients.");
    sb_printf(sb, "tollgate_received_bytes_total %llu\n", (unsigned long long)t->bytes_in);
    prom_head(sb, "tollgate_sent_bytes_total", "counter", "Bytes sent to clients.");
    sb_printf(sb, "tollgate_sent_bytes_total %llu\n", (unsigned long long)t->bytes_out);
    prom_head(sb, "tollgate_websocket_upgrades_total", "counter",
              "Connections upgraded (WebSocket and other Upgrade tunnels).");
    sb_printf(sb, "tollgate_websocket_upgrades_total %llu\n", (unsigned long long)t->upgrades);
    prom_head(sb, "tollgate_websocket_open", "gauge", "Upgraded connections open now.");
    sb_printf(sb, "tollgate_websocket_open %lld\n", (long long)t->tunnels_open);

    static const char *const names[3] = {"tollgate_upstream_requests_total",
                                         "tollgate_upstream_failures_total",
                                         "tollgate_upstream_latency_seconds"};
    static const char *const helps[3] = {
        "Requests whose last attempt went to this upstream server.",
        "Of those, attempts without an upstream response or answered 502+ by the gateway.",
        "Upstream response time."};
    for (int m = 0; m < 3; m++) {
        prom_head(sb, names[m], m == 2 ? "histogram" : "counter", helps[m]);
        for (int i = 0; i < mc->nups; i++) {
            tg_upstream_t *u = mc->ups[i].u;
            for (int k = 0; mc->ups[i].base >= 0 && k < u->npeers; k++) {
                tg_stats_peer_t p;
                sum_peer(mc->shm, mc->ups[i].base + k, &p);
                if (m < 2) {
                    sb_printf(sb, "%s{", names[m]);
                    prom_peer_labels(sb, u, &u->peers[k]);
                    sb_printf(sb, "} %llu\n",
                              (unsigned long long)(m == 0 ? p.requests : p.failures));
                    continue;
                }
                uint64_t cum = 0;
                for (int b = 0; b < TG_STATS_NBUCKETS; b++) {
                    cum += p.buckets[b];
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
                sb_printf(sb, "} %.6f\n%s_count{", (double)p.latency_us / 1e6, names[m]);
                prom_peer_labels(sb, u, &u->peers[k]);
                sb_printf(sb, "} %llu\n", (unsigned long long)cum);
            }
        }
    }
}

static const char dashboard_html[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Tollgate stats</title>\n"
    "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;"
    "text-align:right}th{background:#f2f2f2}.k{text-align:left}#err{color:#b00}</style>\n"
    "</head><body><h1>Tollgate</h1><p id=\"meta\"></p><p id=\"err\"></p>\n"
    "<h2>Requests per second</h2><table><tr><th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th>"
    "<th>5xx</th><th>total</th></tr><tr id=\"rps\"></tr></table>\n"
    "<h2>Connections</h2><table><tr><th>open</th><th>websocket open</th><th>upgrades</th>"
    "</tr><tr id=\"conns\"></tr></table>\n"
    "<h2>Upstreams</h2><table id=\"ups\"></table>\n<script>\n"
    "var prev=null,url=location.pathname+'?format=json';\n"
    "function td(v,c){var e=document.createElement(c||'td');e.textContent=v;return e}\n"
    "function row(id,vals){var r=document.getElementById(id);r.textContent='';"
    "vals.forEach(function(v){r.appendChild(td(v))})}\n"
    "function show(s){var t=Date.now()/1000,ks=['1xx','2xx','3xx','4xx','5xx','total'];\n"
    " document.getElementById('meta').textContent='version '+s.version+', up '+s.uptime_s+"
    "'s, generation '+s.generation+', reloads '+s.reloads+', workers '+s.workers+"
    "', worker restarts '+s.worker_restarts;\n"
    " if(prev){var dt=t-prev.t;row('rps',ks.map(function(k){return "
    "((s.requests[k]-prev.s.requests[k])/dt).toFixed(1)}))}\n"
    " row('conns',[s.connections.open,s.websocket.open,s.websocket.upgrades]);\n"
    " var u=document.getElementById('ups');u.textContent='';var h=document.createElement('tr');\n"
    " ['upstream','server','requests','failures','avg ms'].forEach(function(x){"
    "h.appendChild(td(x,'th'))});u.appendChild(h);\n"
    " Object.keys(s.upstreams).forEach(function(n){var sv=s.upstreams[n].servers;\n"
    "  Object.keys(sv).forEach(function(a){var p=sv[a],r=document.createElement('tr');\n"
    "   var c1=td(n);c1.className='k';var c2=td(a);c2.className='k';r.appendChild(c1);"
    "r.appendChild(c2);\n"
    "   r.appendChild(td(p.requests));r.appendChild(td(p.failures));"
    "r.appendChild(td(p.requests?(p.latency_ms_sum/p.requests).toFixed(1):'-'));"
    "u.appendChild(r)})});\n"
    " prev={t:t,s:s}}\n"
    "function poll(){fetch(url,{cache:'no-store'}).then(function(r){return r.json()})"
    ".then(function(s){document.getElementById('err').textContent='';show(s)})"
    ".catch(function(e){document.getElementById('err').textContent=String(e)})}\n"
    "poll();setInterval(poll,1000);\n</script></body></html>\n";

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
    if (((stats_conf_t *)conf)->enabled != 1)
        return TG_OK;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        if (tg_request_add_resp_header(r, TG_STR("Allow"), TG_STR("GET, HEAD")) != 0 ||
            tg_request_respond(r, 405, NULL, TG_NULL_STR) != 0)
            return TG_ERROR;
        return TG_DONE;
    }
    stats_conf_t *mc = main_conf();
    if (mc->shm == NULL)
        return TG_ERROR;
    stats_format_t fmt = pick_format(r);
    if (fmt == FMT_HTML) {
        if (tg_request_respond(r, 200, "text/html; charset=utf-8",
                               (tg_str_t){dashboard_html, sizeof(dashboard_html) - 1}) != 0)
            return TG_ERROR;
        return TG_DONE;
    }
    publish_gauges(mc);
    totals_t t;
    sum_totals(mc->shm, &t);
    sb_t sb = {r->arena, NULL, 0, 0, 0};
    sb.cap = 4096;
    if ((sb.p = tg_arena_alloc_nz(r->arena, sb.cap)) == NULL)
        return TG_ERROR;
    if (fmt == FMT_PROMETHEUS)
        render_prometheus(&sb, mc, &t);
    else
        render_json(&sb, mc, &t);
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
