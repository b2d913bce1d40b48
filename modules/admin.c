/* The runtime API: `admin;` in a location answers JSON about the upstreams
 * and changes their servers without a reload (docs/admin-api.md). Paths are
 * relative to the location: `location /admin/ { admin; }` serves
 * /admin/upstreams.
 *
 *   GET    upstreams                    every upstream with its servers
 *   GET    upstreams/NAME               one upstream
 *   PATCH  upstreams/NAME/servers/ID    {"weight": N, "drain": bool, "down": bool}
 *   DELETE upstreams/NAME/servers/ID    drain it and stop listing it
 *   POST   upstreams/NAME/servers       {"address": "IP:PORT", "weight": N}: a new server
 *
 * Changes go to shared memory through tg_upstream_override_set (one lock,
 * so concurrent changes are serialised), which every worker applies before
 * its next pick; they last until the next reload, or with admin_persist FILE
 * are written there after each change and restored at every config load. Protection is the
 * location's: allow/deny (the access module runs before this one) and
 * admin_auth (Basic, checked in this module's access hook, before a body is
 * read). A
 * request body (PATCH) is read whole in the access phase, up to 64 KiB, and
 * parsed with jansson. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <openssl/evp.h>
#include <jansson.h>
#include <llhttp.h>
#include "module.h"
#include "request.h"
#include "upstream_dyn.h"
#include "json.h"
#include "basic_auth.h"
#include "worker.h"
#include "log.h"
#include "core.h"

#define BODY_MAX 65536

extern tg_module_t tg_admin_module;

typedef struct {
    int enabled;
    tg_basic_users_t auth;   /* admin_auth */
    tg_basic_cache_t cache;  /* per worker (fork) */
    const char *persist;     /* admin_persist (main; merged down to every location) */
} admin_conf_t;

static void *admin_create_conf(tg_conf_t *cf)
{
    admin_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c)
        c->enabled = TG_CONF_UNSET;
    return c;
}

static const char *admin_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    (void)parent;
    admin_conf_t *c = child;
    if (c->persist == NULL)
        c->persist = ((admin_conf_t *)parent)->persist;
    if (c->auth.nusers && c->enabled != 1)
        return "\"admin_auth\" needs \"admin\" in the same location";
    if (c->enabled == TG_CONF_UNSET) /* not inherited: only the location that names it */
        c->enabled = 0;
    return NULL;
}

/* admin_auth USER:HASH */
static const char *set_auth(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    admin_conf_t *c = conf;
    if (c->cache.crypt == NULL && tg_basic_auth_cache_init(cf, &c->cache) != 0)
        return "out of memory";
    return tg_basic_auth_add(cf, &c->auth, "admin_auth");
}

static const char *set_admin(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)cf;
    (void)d;
    admin_conf_t *c = conf;
    if (c->enabled != TG_CONF_UNSET)
        return "\"admin\" directive is duplicate";
    c->enabled = 1;
    return NULL;
}

static int admin_is_active(void *loc_conf)
{
    return ((admin_conf_t *)loc_conf)->enabled == 1;
}

/* admin_persist FILE */
static const char *set_persist(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    admin_conf_t *c = conf;
    if (c->persist)
        return "\"admin_persist\" directive is duplicate";
    c->persist = tg_conf_path(cf, tg_conf_arg(cf, 1));
    return c->persist ? NULL : "out of memory";
}

/* "IP:PORT" or "[IPv6]:PORT" (no names: nothing blocks in a worker) to a
 * socket address and its canonical text. 0 or -1. */
static int parse_ip_port(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *text,
                         size_t size)
{
    char host[INET6_ADDRSTRLEN];
    const char *colon = strrchr(s, ':');
    size_t hl = colon ? (size_t)(colon - s) : 0;
    int v6 = s[0] == '[';
    if (colon == NULL || hl < 1 || hl - 2 * (size_t)v6 >= sizeof(host))
        return -1;
    if (v6 && (hl < 3 || s[hl - 1] != ']'))
        return -1;
    memcpy(host, s + v6, hl - 2 * v6);
    host[hl - 2 * v6] = '\0';
    int64_t port;
    if (tg_parse_int(tg_str_c(colon + 1), &port) != 0 || port < 1 || port > 65535)
        return -1;
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -1;
        *len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -1;
        *len = sizeof(*a);
    }
    snprintf(text, size, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", (int)port);
    return 0;
}

/* ---- admin_persist: the changes in a file, by upstream and server name ---- */

static tg_peer_t *static_peer(tg_upstream_t *u, const char *name)
{
    for (int i = 0; i < u->npeers; i++)
        if (!u->peers[i].dynamic && tg_str_eq(u->peers[i].name, tg_str_c(name)))
            return &u->peers[i];
    return NULL;
}

/* A server the API added, back in the first free slot past the config's
 * servers (the workers make its peer when they apply the rows). The slot,
 * or -1 (not IP:PORT, no slot, the upstream takes none). */
static int restore_added(tg_upstream_t *u, const char *name)
{
    tg_peer_override_t *row = u->ovr->rows[u->index];
    struct sockaddr_storage ss;
    socklen_t len;
    char text[56];
    if (u->implicit || u->balance == TG_BALANCE_HASH ||
        parse_ip_port(name, &ss, &len, text, sizeof(text)) != 0)
        return -1;
    for (int i = u->nconf; i < TG_UPSTREAM_MAX_PEERS; i++) {
        if (row[i].added)
            continue;
        memset(&row[i], 0, sizeof(row[i]));
        row[i].added = 1;
        row[i].addr = ss;
        row[i].addrlen = len;
        snprintf(row[i].name, sizeof(row[i].name), "%s", text);
        return i;
    }
    return -1;
}

/* In the master at config load: restore the file's changes into the new
 * config's rows (servers named in the config only: resolved addresses come
 * and go). A missing file is no change; a bad one is logged and ignored, it
 * never stops a start or a reload. */
static void persist_load(tg_config_t *c, const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (access(path, F_OK) == 0)
            tg_log(TG_LOG_WARN, "admin_persist \"%s\": %s (line %d), not restored", path, jerr.text,
                   jerr.line);
        return;
    }
    int restored = 0, skipped = 0;
    const char *uname, *sname;
    json_t *servers, *v;
    json_object_foreach(json_object_get(root, "upstreams"), uname, servers)
    {
        tg_upstream_t *u = c->upstreams;
        while (u && !tg_str_eq(u->name, tg_str_c(uname)))
            u = u->next;
        json_object_foreach(servers, sname, v)
        {
            tg_peer_t *p = u && u->ovr ? static_peer(u, sname) : NULL;
            json_t *w = json_object_get(v, "weight");
            int slot = p ? p->index : -1;
            if (p == NULL && u && u->ovr && json_is_true(json_object_get(v, "added")))
                slot = restore_added(u, sname);
            if (slot < 0 || !json_is_object(v)) {
                skipped++;
                continue;
            }
            tg_peer_override_t *o = &u->ovr->rows[u->index][slot];
            o->weight = json_is_integer(w) && json_integer_value(w) >= 1 &&
                                json_integer_value(w) <= 1000
                            ? (int32_t)json_integer_value(w)
                            : 0;
            o->drain = json_is_true(json_object_get(v, "drain"));
            o->down = json_is_true(json_object_get(v, "down"));
            o->removed = json_is_true(json_object_get(v, "removed"));
            u->ovr->changed_at = (int64_t)(ev_time() * 1000);
            restored++;
        }
    }
    json_decref(root);
    if (c->upstreams && c->upstreams->ovr)
        __atomic_fetch_add(&c->upstreams->ovr->seq, 1, __ATOMIC_RELEASE);
    tg_log(TG_LOG_INFO, "admin_persist \"%s\": %d server change%s restored, %d skipped (not "
                        "in the config)",
           path, restored, restored == 1 ? "" : "s", skipped);
}

static const char *admin_init_conf(tg_conf_t *cf, void *main_conf)
{
    admin_conf_t *m = main_conf;
    tg_upstream_overrides_t *ov = cf->config->upstreams ? cf->config->upstreams->ovr : NULL;
    if (ov == NULL)
        return NULL;
    if (m->persist)
        persist_load(cf->config, m->persist);
    else if (ov->dropped)
        tg_log(TG_LOG_WARN, "reload: the admin API's changes to upstream servers are dropped, "
                            "the config's servers and weights apply (admin_persist keeps them)");
    ov->dropped = 0;
    return NULL;
}

/* In a worker, after a change: every change of config servers, written to
 * FILE.tmp then renamed over FILE, under the API's lock so the last file
 * written holds the last change. A small synchronous write, on the admin
 * path only. 0 or -1 (logged). */
static int persist_save(tg_config_t *c, const char *path)
{
    tg_upstream_overrides_t *ov = c->upstreams ? c->upstreams->ovr : NULL;
    json_t *root = json_object(), *ups = json_object();
    char tmp[4096];
    int rc = -1;
    if (ov == NULL || root == NULL || ups == NULL ||
        snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
        json_object_set_new(root, "upstreams", ups) != 0)
        goto out;
    ups = NULL; /* owned by root now */
    if (tg_shm_mutex_lock(&ov->lock) < 0)
        goto out;
    for (tg_upstream_t *u = c->upstreams; u; u = u->next) {
        json_t *servers = json_object();
        for (int i = 0; servers && i < u->npeers; i++) {
            tg_peer_override_t o = ov->rows[u->index][i];
            if (u->peers[i].dynamic || (!o.weight && !o.drain && !o.down && !o.removed) ||
                (o.added && o.removed))
                continue; /* an added server deleted again is simply gone */
            char name[256];
            snprintf(name, sizeof(name), "%.*s", TG_STR_FMT(u->peers[i].name));
            json_object_set_new(servers, o.added ? o.name : name,
                                json_pack("{s:o,s:b,s:b,s:b,s:b}", "weight",
                                          o.weight ? json_integer(o.weight) : json_null(), "drain",
                                          o.drain, "down", o.down, "removed", o.removed, "added",
                                          o.added));
        }
        char uname[256];
        snprintf(uname, sizeof(uname), "%.*s", TG_STR_FMT(u->name));
        if (servers && json_object_size(servers))
            json_object_set_new(json_object_get(root, "upstreams"), uname, servers);
        else
            json_decref(servers);
    }
    rc = json_dump_file(root, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 && rename(tmp, path) == 0
             ? 0
             : -1;
    if (rc != 0)
        tg_log_errno(TG_LOG_ERROR, "admin_persist: cannot write \"%s\"", path);
    tg_shm_mutex_unlock(&ov->lock);
out:
    json_decref(ups);
    json_decref(root);
    return rc;
}

/* ---- the JSON answer --------------------------------------------------------- */

typedef struct {
    tg_arena_t *a;
    char *p;
    size_t len, cap;
    int oom;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->oom)
        return;
    if (o->len + n > o->cap) {
        size_t cap = (o->cap + n) * 2;
        char *p = tg_arena_alloc_nz(o->a, cap);
        if (p == NULL) {
            o->oom = 1;
            return;
        }
        if (o->len)
            memcpy(p, o->p, o->len);
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void __attribute__((format(printf, 2, 3))) putf(out_t *o, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void put_str(out_t *o, tg_str_t s)
{
    char buf[256];
    size_t used;
    put(o, "\"", 1);
    while (s.len) {
        size_t n = tg_json_escape(buf, sizeof(buf), s, &used);
        put(o, buf, n);
        s.p += used;
        s.len -= used;
        if (used == 0)
            break;
    }
    put(o, "\"", 1);
}

static const tg_dyn_server_t *source_of(const tg_upstream_t *u, int id)
{
    for (const tg_dyn_server_t *d = u->dyn ? u->dyn->servers : NULL; d; d = d->next)
        if (id >= d->first && id < d->first + d->max)
            return d;
    return NULL;
}

static void put_server(out_t *o, const tg_upstream_t *u, int id, tg_msec_t now)
{
    const tg_peer_t *p = &u->peers[id];
    tg_peer_override_t ov = tg_upstream_override_get(u, id);
    tg_peer_gauge_t g = tg_balance_peer_gauge(p, now);
    const char *state = ov.removed ? "removed"
                        : ov.down  ? "down"
                        : ov.drain ? "draining"
                        : p->backup ? "backup"
                                    : "up";
    const char *health = g.health == TG_PEER_DOWN_ACTIVE    ? "down (health check)"
                         : g.health == TG_PEER_DOWN_PASSIVE ? "down (max_fails)"
                                                            : "up";
    putf(o, "{\"id\":%d,\"address\":", id);
    put_str(o, p->name);
    putf(o, ",\"weight\":%d,\"configured_weight\":%d,\"state\":\"%s\",\"backup\":%s,"
            "\"health\":\"%s\",\"active\":%lld,\"source\":",
         p->weight, p->base_weight, state, p->backup ? "true" : "false", health,
         (long long)g.active);
    const tg_dyn_server_t *d = source_of(u, id);
    if (d == NULL) {
        if (ov.added)
            put(o, "\"api\"}", 6);
        else
            put(o, "\"config\"}", 9);
        return;
    }
    const char *src = d->srv ? "\"dns srv\",\"resolved_from\":" : "\"dns\",\"resolved_from\":";
    put(o, src, strlen(src));
    put_str(o, d->spec);
    if (d->rec)
        putf(o, ",\"resolved_at\":%lld", (long long)d->rec->resolved_at);
    put(o, "}", 1);
}

static void put_upstream(out_t *o, const tg_upstream_t *u, tg_msec_t now)
{
    static const char *const balance[] = {"round_robin", "least_conn", "hash", "random"};
    put(o, "{\"name\":", 8);
    put_str(o, u->name);
    putf(o, ",\"balance\":\"%s\",\"servers\":[", balance[u->balance]);
    int first = 1;
    for (int i = 0; i < u->npeers; i++) {
        if (u->peers[i].absent || tg_upstream_override_get(u, i).removed)
            continue; /* a resolve server's slot without an address; a deleted server */
        if (!first)
            put(o, ",", 1);
        first = 0;
        put_server(o, u, i, now);
    }
    put(o, "],\"resolve\":[", 13);
    first = 1;
    for (const tg_dyn_server_t *d = u->dyn ? u->dyn->servers : NULL; d; d = d->next) {
        const tg_dyn_record_t *r = d->rec;
        if (!first)
            put(o, ",", 1);
        first = 0;
        put(o, "{\"server\":", 10);
        put_str(o, d->spec);
        putf(o, ",\"type\":\"%s\",\"addresses\":%u,\"resolved_at\":%lld,\"lookups\":%llu,"
                "\"failures\":%llu,\"last_error\":",
             d->srv ? "SRV" : "A/AAAA", r ? r->naddrs : 0, r ? (long long)r->resolved_at : 0LL,
             r ? (unsigned long long)r->lookups : 0ULL, r ? (unsigned long long)r->failures : 0ULL);
        if (r && r->failed_at > r->resolved_at)
            put_str(o, tg_str_c(r->error));
        else
            put(o, "null", 4);
        put(o, "}", 1);
    }
    put(o, "]}", 2);
}

/* ---- answers ------------------------------------------------------------------ */

static tg_rc_t answer(tg_request_t *r, int status, out_t *o)
{
    if (o->oom) {
        tg_log(TG_LOG_ERROR, "admin: out of memory");
        return TG_ERROR;
    }
    if (tg_request_add_resp_header(r, TG_STR("Cache-Control"), TG_STR("no-store")) != 0 ||
        tg_request_respond(r, status, "application/json", (tg_str_t){o->p, o->len}) != 0)
        return TG_ERROR;
    return TG_DONE;
}

/* {"error": MESSAGE[, "field": FIELD]} */
static tg_rc_t fail(tg_request_t *r, out_t *o, int status, const char *msg, const char *field)
{
    o->len = 0;
    put(o, "{\"error\":", 9);
    put_str(o, tg_str_c(msg));
    if (field) {
        put(o, ",\"field\":", 9);
        put_str(o, tg_str_c(field));
    }
    put(o, "}", 1);
    return answer(r, status, o);
}

static tg_rc_t not_allowed(tg_request_t *r, out_t *o, const char *allow)
{
    if (tg_request_add_resp_header(r, TG_STR("Allow"), tg_str_c(allow)) != 0)
        return TG_ERROR;
    return fail(r, o, 405, "method not allowed", NULL);
}

/* PATCH: apply the fields of `body` to override *ov; NULL, or 400's message
 * with the field it is about in `field` (empty: the body as a whole). */
static const char *parse_patch(tg_str_t body, tg_peer_override_t *ov, char *field, size_t size)
{
    json_error_t jerr;
    json_t *j = json_loadb(body.p ? body.p : "", body.len, JSON_REJECT_DUPLICATES, &jerr);
    const char *err = NULL;
    field[0] = '\0';
    if (j == NULL)
        return "the body is not JSON";
    if (!json_is_object(j)) {
        json_decref(j);
        return "the body must be a JSON object";
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        snprintf(field, size, "%s", key);
        if (strcmp(key, "weight") == 0) {
            if (json_is_null(v))
                ov->weight = 0; /* back to the configured or resolved weight */
            else if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                     json_integer_value(v) > 1000)
                err = "weight must be an integer 1..1000, or null";
            else
                ov->weight = (int32_t)json_integer_value(v);
        } else if (strcmp(key, "drain") == 0 || strcmp(key, "down") == 0) {
            if (!json_is_boolean(v))
                err = key[1] == 'r' ? "drain must be true or false" : "down must be true or false";
            else if (key[1] == 'r')
                ov->drain = json_is_true(v);
            else
                ov->down = json_is_true(v);
        } else {
            err = "unknown field: expected weight, drain or down";
        }
        if (err)
            break;
    }
    json_decref(j);
    return err;
}

/* POST upstreams/NAME/servers {"address": "IP:PORT", "weight": N} */
static tg_rc_t add_server(tg_request_t *r, out_t *o, tg_upstream_t *u, tg_str_t body,
                          const char *persist, tg_msec_t now)
{
    json_error_t jerr;
    json_t *j = json_loadb(body.p, body.len, JSON_REJECT_DUPLICATES, &jerr);
    const char *err = NULL, *field = NULL, *key;
    json_t *v, *addr = NULL;
    int weight = 1;
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        return fail(r, o, 400, j ? "the body must be a JSON object" : "the body is not JSON", NULL);
    }
    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "address") == 0) {
            addr = v;
        } else if (strcmp(key, "weight") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
                err = "weight must be an integer 1..1000", field = "weight";
            else
                weight = (int)json_integer_value(v);
        } else if (err == NULL) {
            err = "unknown field: expected address or weight", field = key;
        }
    }
    struct sockaddr_storage ss;
    socklen_t len;
    char text[56], fieldbuf[64] = "";
    if (err == NULL && (addr == NULL || !json_is_string(addr) ||
                        parse_ip_port(json_string_value(addr), &ss, &len, text, sizeof(text)) != 0))
        err = "address must be \"IP:PORT\" (a name: use server NAME:PORT resolve)",
        field = "address";
    if (field)
        snprintf(fieldbuf, sizeof(fieldbuf), "%s", field);
    json_decref(j);
    if (err)
        return fail(r, o, 400, err, fieldbuf);
    int id = tg_upstream_override_add(u, &ss, len, text, weight);
    if (id == -2)
        return fail(r, o, 409, "a server with this address exists", "address");
    if (id < 0)
        return fail(r, o, 409, u->balance == TG_BALANCE_HASH || u->implicit
                                   ? "this upstream takes no servers at run time (balance hash, "
                                     "or proxy_pass HOST:PORT)"
                                   : "no free server slot (64 per upstream)",
                    NULL);
    if (persist && persist_save(tg_worker->config, persist) != 0)
        return fail(r, o, 500, "the server is added, but admin_persist could not be written", NULL);
    tg_log(TG_LOG_INFO, "admin: upstream %.*s: server %s added as %d", TG_STR_FMT(u->name), text, id);
    put_server(o, u, id, now);
    return answer(r, 201, o);
}

/* The part of the path after the location's prefix, without a leading '/'. */
static tg_str_t relative(tg_request_t *r)
{
    tg_str_t p = r->path, pre = r->loc ? r->loc->path : TG_NULL_STR;
    if (pre.len && p.len >= pre.len && memcmp(p.p, pre.p, pre.len) == 0) {
        p.p += pre.len;
        p.len -= pre.len;
    }
    while (p.len && p.p[0] == '/')
        p.p++, p.len--;
    return p;
}

/* Split off the next '/'-separated segment of *rest. */
static tg_str_t segment(tg_str_t *rest)
{
    const char *slash = memchr(rest->p, '/', rest->len);
    tg_str_t s = {rest->p, slash ? (size_t)(slash - rest->p) : rest->len};
    rest->p += s.len + (slash ? 1 : 0);
    rest->len -= s.len + (slash ? 1 : 0);
    return s;
}

static tg_rc_t admin_access(tg_request_t *r, void *conf)
{
    admin_conf_t *c = conf;
    if (c->auth.nusers && !tg_basic_auth_check(&c->cache, &c->auth, r))
        return tg_basic_auth_challenge(r, "tollgate admin") == 0 ? TG_DONE : TG_ERROR;
    if (r->method != HTTP_PATCH && r->method != HTTP_POST)
        return TG_OK;
    tg_str_t body;
    int rc = tg_request_body_read(r, BODY_MAX, &body);
    return rc == 1 ? TG_OK : TG_AGAIN; /* 0: resumed with more; -1: the request is gone */
}

static tg_rc_t admin_content(tg_request_t *r, void *conf)
{
    admin_conf_t *c = conf;
    if (c->enabled != 1)
        return TG_OK;
    out_t o = {r->arena, NULL, 0, 0, 0};
    tg_msec_t now = (tg_msec_t)(ev_now(tg_worker->loop) * 1000);
    tg_str_t rest = relative(r), top = segment(&rest);
    if (!tg_str_eq_lit(top, "upstreams"))
        return fail(r, &o, 404, "unknown path: the API serves upstreams", NULL);
    tg_str_t name = segment(&rest);
    if (name.len == 0) {
        if (r->method != HTTP_GET && r->method != HTTP_HEAD)
            return not_allowed(r, &o, "GET, HEAD");
        put(&o, "{\"upstreams\":[", 14);
        int first = 1;
        for (tg_upstream_t *u = tg_worker->config->upstreams; u; u = u->next) {
            tg_upstream_dyn_sync(u);
            if (!first)
                put(&o, ",", 1);
            first = 0;
            put_upstream(&o, u, now);
        }
        put(&o, "]}", 2);
        return answer(r, 200, &o);
    }
    tg_upstream_t *u = tg_worker->config->upstreams;
    while (u && !tg_str_eq(u->name, name))
        u = u->next;
    if (u == NULL)
        return fail(r, &o, 404, "no such upstream", NULL);
    tg_upstream_dyn_sync(u);
    if (rest.len == 0) {
        if (r->method != HTTP_GET && r->method != HTTP_HEAD)
            return not_allowed(r, &o, "GET, HEAD");
        put_upstream(&o, u, now);
        return answer(r, 200, &o);
    }
    tg_str_t what = segment(&rest), id_s = segment(&rest);
    int64_t id;
    if (!tg_str_eq_lit(what, "servers") || rest.len)
        return fail(r, &o, 404, "unknown path", NULL);
    if (id_s.len == 0) {
        if (r->method == HTTP_GET || r->method == HTTP_HEAD) {
            put_upstream(&o, u, now);
            return answer(r, 200, &o);
        }
        if (r->method != HTTP_POST)
            return not_allowed(r, &o, "GET, HEAD, POST");
        tg_str_t body = TG_NULL_STR;
        if (tg_request_body_read(r, BODY_MAX, &body) != 1 || body.p == NULL)
            return fail(r, &o, 413, "the body is larger than 64 KiB", NULL);
        return add_server(r, &o, u, body, c->persist, now);
    }
    tg_peer_override_t ov;
    if (tg_parse_int(id_s, &id) != 0 || id >= u->npeers || u->peers[id].absent ||
        (ov = tg_upstream_override_get(u, (int)id)).removed)
        return fail(r, &o, 404, "no such server", NULL);
    if (r->method == HTTP_GET || r->method == HTTP_HEAD) {
        put_server(&o, u, (int)id, now);
        return answer(r, 200, &o);
    }
    if (r->method == HTTP_DELETE) {
        ov.removed = 1;
    } else if (r->method == HTTP_PATCH) {
        tg_str_t body = TG_NULL_STR;
        char field[64];
        if (tg_request_body_read(r, BODY_MAX, &body) != 1 || body.p == NULL)
            return fail(r, &o, 413, "the body is larger than 64 KiB", NULL);
        const char *err = parse_patch(body, &ov, field, sizeof(field));
        if (err)
            return fail(r, &o, 400, err, field[0] ? field : NULL);
    } else {
        return not_allowed(r, &o, "GET, HEAD, PATCH, DELETE");
    }
    if (tg_upstream_override_set(u, (int)id, &ov) != 0)
        return fail(r, &o, 500, "the change could not be stored", NULL);
    if (c->persist && !u->peers[id].dynamic && persist_save(tg_worker->config, c->persist) != 0)
        return fail(r, &o, 500, "the change applies, but admin_persist could not be written", NULL);
    tg_log(TG_LOG_INFO, "admin: upstream %.*s server %.*s: weight=%d drain=%d down=%d removed=%d",
           TG_STR_FMT(u->name), TG_STR_FMT(u->peers[id].name), ov.weight, ov.drain, ov.down,
           ov.removed);
    put_server(&o, u, (int)id, now);
    return answer(r, 200, &o);
}

/* ---- tollgate -s drain|undrain UPSTREAM SERVER ------------------------------------ */

/* The first prefix location with `admin;` and a plain listener of its
 * server: where the command-line client sends its requests. */
static tg_location_t *admin_location(tg_config_t *c, tg_listen_t **ls)
{
    for (int i = 0; i < c->nservers; i++) {
        tg_server_t *s = c->servers[i];
        for (int k = 0; k < s->nlocations; k++) {
            tg_location_t *l = s->locations[k];
            admin_conf_t *ac = l->mconf[tg_admin_module.index];
            if (ac == NULL || ac->enabled != 1 || l->kind != TG_LOC_PREFIX)
                continue;
            for (int n = 0; n < s->nlistens; n++)
                if (!s->listens[n]->tls) {
                    *ls = s->listens[n];
                    return l;
                }
        }
    }
    return NULL;
}

/* One request on a fresh blocking connection (5 s timeouts), the answer read
 * to its close into buf. Returns the status, or -1 (printed). */
static int cli_request(tg_listen_t *ls, const char *method, const char *path, const char *body,
                       char *buf, size_t size, char **resp_body)
{
    struct sockaddr_storage ss = ls->addr;
    if (ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_addr.s_addr == INADDR_ANY)
        ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (ss.ss_family == AF_INET6 &&
             IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr))
        ((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {5, 0};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, (struct sockaddr *)&ss, ls->addrlen) != 0) {
        fprintf(stderr, "tollgate: cannot reach the admin location at %s: %s\n", ls->text,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char auth[600] = "";
    const char *cred = getenv("TOLLGATE_ADMIN_AUTH");
    if (cred && strlen(cred) < 400) {
        unsigned char b64[560];
        EVP_EncodeBlock(b64, (const unsigned char *)cred, (int)strlen(cred));
        snprintf(auth, sizeof(auth), "Authorization: Basic %s\r\n", b64);
    }
    int n = snprintf(buf, size,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, auth, body ? strlen(body) : 0, body ? body : "");
    size_t got = 0;
    ssize_t r = n > 0 && (size_t)n < size ? send(fd, buf, (size_t)n, MSG_NOSIGNAL) : -1;
    while (r >= 0 && got < size - 1 && (r = read(fd, buf + got, size - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    buf[got] = '\0';
    int status = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (r < 0 || sscanf(buf, "HTTP/1.1 %d", &status) != 1 || end == NULL) {
        fprintf(stderr, "tollgate: no answer from the admin location at %s\n", ls->text);
        return -1;
    }
    *resp_body = end + 4;
    return status;
}

static int admin_command(tg_config_t *c, const char *name, int argc, char **argv)
{
    int drain = strcmp(name, "drain") == 0;
    if (!drain && strcmp(name, "undrain") != 0)
        return -1;
    if (argc != 2) {
        fprintf(stderr, "tollgate: -s %s UPSTREAM SERVER (its address or id)\n", name);
        return 2;
    }
    tg_listen_t *ls = NULL;
    tg_location_t *l = admin_location(c, &ls);
    if (l == NULL) {
        fprintf(stderr, "tollgate: %s has no prefix location with \"admin;\" on a plain "
                        "listener\n",
                c->file);
        return 1;
    }
    size_t size = 1 << 20; /* the answer about one upstream */
    char *buf = malloc(size), path[1024], *body;
    int rc = 1;
    if (buf == NULL)
        return 1;
    const char *sep = l->path.len && l->path.p[l->path.len - 1] == '/' ? "" : "/";
    snprintf(path, sizeof(path), "%.*s%supstreams/%s", TG_STR_FMT(l->path), sep, argv[0]);
    int st = cli_request(ls, "GET", path, NULL, buf, size, &body);
    if (st < 0)
        goto out;
    json_t *j = st == 200 ? json_loads(body, 0, NULL) : NULL;
    long id = -1;
    char addr[128] = "";
    size_t i;
    json_t *srv;
    json_array_foreach(json_object_get(j, "servers"), i, srv)
    {
        const char *a = json_string_value(json_object_get(srv, "address"));
        long sid = (long)json_integer_value(json_object_get(srv, "id"));
        char ids[24];
        snprintf(ids, sizeof(ids), "%ld", sid);
        if (a && (strcmp(a, argv[1]) == 0 || strcmp(ids, argv[1]) == 0)) {
            id = sid;
            snprintf(addr, sizeof(addr), "%s", a);
        }
    }
    json_decref(j);
    if (st != 200 || id < 0) {
        fprintf(stderr, "tollgate: %s\n",
                st == 401   ? "the admin location wants credentials: set TOLLGATE_ADMIN_AUTH=user:password"
                : st != 200 ? "no such upstream"
                            : "no such server in that upstream");
        goto out;
    }
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "/servers/%ld", id);
    st = cli_request(ls, "PATCH", path, drain ? "{\"drain\": true}" : "{\"drain\": false}", buf,
                     size, &body);
    if (st != 200) {
        if (st > 0)
            fprintf(stderr, "tollgate: the admin location answered %d: %s\n", st, body);
        goto out;
    }
    printf("upstream %s server %s (id %ld): %s\n", argv[0], addr, id,
           drain ? "draining (no new requests; those in flight finish)" : "back in rotation");
    rc = 0;
out:
    free(buf);
    return rc;
}

static const tg_directive_t admin_directives[] = {
    {"admin", TG_SCOPE_LOCATION, 0, 0, 0, set_admin, 0},
    {"admin_auth", TG_SCOPE_LOCATION, 0, 1, 1, set_auth, 0},
    {"admin_persist", TG_SCOPE_MAIN, 0, 1, 1, set_persist, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_admin_module = {
    .name = "admin",
    .directives = admin_directives,
    .create_conf = admin_create_conf,
    .merge_conf = admin_merge_conf,
    .init_conf = admin_init_conf,
    .is_active = admin_is_active,
    .on_access = admin_access,
    .on_content = admin_content,
    .command = admin_command,
};
