/* Upstream groups: the `upstream` block and its directives, references from
 * proxy_pass (resolved once the whole file is read, so a block may come
 * after its users), and each worker's pool of idle keep-alive connections.
 *
 * An idle connection is watched for readability: the only thing an idle
 * upstream may send is its close, and a connection that closed is dropped at
 * once rather than discovered by the next request. Each idle connection also
 * has a deadline just before the upstream's own keep-alive timeout. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include "upstream.h"
#include "addr.h"
#include "core.h"
#include "var.h"
#include "log.h"
#include "sendq.h"
#include "worker.h"

/* ---- config ---------------------------------------------------------------- */

static tg_upstream_t *upstream_find(tg_config_t *c, tg_str_t name)
{
    for (tg_upstream_t *u = c->upstreams; u; u = u->next)
        if (tg_str_eq(u->name, name))
            return u;
    return NULL;
}

tg_upstream_t *tg_config_find_upstream(tg_config_t *c, tg_str_t name)
{
    tg_upstream_t *u = upstream_find(c, name);
    return (u && u->npeers) ? u : NULL;
}

static tg_upstream_t *upstream_add(tg_conf_t *cf, tg_str_t name)
{
    tg_upstream_t *u = tg_arena_alloc(cf->arena, sizeof(*u));
    if (u == NULL)
        return NULL;
    u->name = tg_arena_str(cf->arena, name);
    u->keepalive = TG_CONF_UNSET;
    u->h2_streams = TG_CONF_UNSET;
    u->tls_verify = 1;
    u->file = cf->file;
    u->line = cf->line;
    u->next = cf->config->upstreams;
    cf->config->upstreams = u;
    return u;
}

tg_upstream_t *tg_upstream_reference(tg_conf_t *cf, tg_str_t name)
{
    if (name.len == 0)
        return NULL;
    tg_upstream_t *u = upstream_find(cf->config, name);
    if (u == NULL && (u = upstream_add(cf, name)) != NULL) {
        u->implicit = 1; /* until an upstream block of that name shows up */
        u->file = cf->file;
        u->line = cf->line;
    }
    return u;
}

void tg_upstream_note_scheme(tg_conf_t *cf, tg_upstream_t *u, int https)
{
    const char **file = https ? &u->https_ref_file : &u->http_ref_file;
    if (*file == NULL) {
        *file = cf->file;
        *(https ? &u->https_ref_line : &u->http_ref_line) = cf->line;
    }
}

/* The scheme proxy_pass named against the upstream's `tls`: an implicit
 * HOST:PORT upstream takes TLS from "https://", a block must say "tls on"
 * for it (and not for "http://"). Returns the number of errors printed. */
static int check_scheme(tg_upstream_t *u)
{
    if (u->implicit && u->https_ref_file && u->http_ref_file) {
        fprintf(stderr, "%s:%d: \"%.*s\" is named with both https:// and http:// (first at "
                        "%s:%d): define an upstream block for each\n",
                u->https_ref_file, u->https_ref_line, TG_STR_FMT(u->name), u->http_ref_file,
                u->http_ref_line);
        return 1;
    }
    if (u->implicit && u->https_ref_file)
        u->tls = 1;
    if (u->https_ref_file && !u->tls) {
        fprintf(stderr, "%s:%d: \"proxy_pass https://%.*s\": upstream \"%.*s\" (%s:%d) has no "
                        "\"tls on\"\n",
                u->https_ref_file, u->https_ref_line, TG_STR_FMT(u->name), TG_STR_FMT(u->name),
                u->file, u->line);
        return 1;
    }
    if (u->http_ref_file && u->tls) {
        fprintf(stderr, "%s:%d: \"proxy_pass http://%.*s\": upstream \"%.*s\" (%s:%d) has "
                        "\"tls on\", write https:// or the bare name\n",
                u->http_ref_file, u->http_ref_line, TG_STR_FMT(u->name), TG_STR_FMT(u->name),
                u->file, u->line);
        return 1;
    }
    return 0;
}

tg_upstream_t *tg_upstream_define(tg_conf_t *cf, tg_str_t name, const char **err)
{
    tg_upstream_t *u = upstream_find(cf->config, name);
    if (u && !u->implicit) {
        *err = tg_conf_errf(cf, "duplicate upstream \"%.*s\", first defined at %s:%d",
                            TG_STR_FMT(name), u->file, u->line);
        return NULL;
    }
    if ((u == NULL && (u = upstream_add(cf, name)) == NULL) ||
        (u->peers = tg_arena_alloc(cf->arena, TG_UPSTREAM_MAX_PEERS * sizeof(tg_peer_t))) ==
            NULL) {
        *err = "out of memory";
        return NULL;
    }
    u->implicit = 0;
    u->file = cf->file;
    u->line = cf->line;
    return u;
}

static const char *set_upstream_block(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_str_t name = tg_conf_arg(cf, 1);
    const char *err = NULL;
    tg_upstream_t *u = tg_upstream_define(cf, name, &err);
    if (u == NULL)
        return err;
    unsigned scope = cf->scope;
    void *ctx = cf->ctx;
    void **mconf = cf->mconf;
    cf->scope = TG_SCOPE_UPSTREAM;
    cf->ctx = u;
    cf->mconf = NULL;
    tg_conf_parse_block(cf);
    cf->scope = scope;
    cf->ctx = ctx;
    cf->mconf = mconf;
    if (u->npeers == 0 && u->dyn == NULL) /* resolve servers: checked by tg_upstream_dyn_reserve */
        return tg_conf_errf(cf, "no servers in upstream \"%.*s\"", TG_STR_FMT(name));
    return NULL;
}

/* server ADDR [weight=N] [max_fails=N] [fail_timeout=T] [backup]; with
 * `resolve` it is a dynamic server (upstream_dyn.c) */
static const char *set_upstream_server(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    for (int i = 2; i <= cf->nargs; i++)
        if (tg_str_eq_lit(tg_conf_arg(cf, i), "resolve"))
            return tg_upstream_dyn_server(cf, u);
    if (cf->nargs >= 2 && tg_str_eq_lit(tg_conf_arg(cf, 2), "service"))
        return "\"service\" needs \"resolve\": server _service._tcp.NAME service resolve;";
    if (u->npeers == TG_UPSTREAM_MAX_PEERS)
        return tg_conf_errf(cf, "too many servers in upstream \"%.*s\" (at most %d)",
                            TG_STR_FMT(u->name), TG_UPSTREAM_MAX_PEERS);
    tg_peer_t *p = &u->peers[u->npeers];
    memset(p, 0, sizeof(*p));
    tg_str_t addr = tg_conf_arg(cf, 1);
    if (tg_parse_addr(addr, &p->addr, &p->addrlen, 0) != 0)
        return tg_conf_errf(cf, "invalid server address \"%.*s\", expected HOST:PORT",
                            TG_STR_FMT(addr));
    p->name = tg_arena_str(cf->arena, addr);
    p->weight = 1;
    p->max_fails = 1;
    p->fail_timeout = 10000;
    for (int i = 2; i <= cf->nargs; i++) {
        tg_str_t v, a = tg_conf_arg(cf, i);
        int64_t n;
        if (tg_conf_arg_kv(cf, i, "weight", &v)) {
            if (tg_parse_int(v, &n) != 0 || n < 1 || n > 1000)
                return tg_conf_errf(cf, "invalid weight \"%.*s\", expected 1..1000", TG_STR_FMT(v));
            p->weight = (int)n;
        } else if (tg_conf_arg_kv(cf, i, "max_fails", &v)) {
            if (tg_parse_int(v, &n) != 0 || n > 1000)
                return tg_conf_errf(cf, "invalid max_fails \"%.*s\"", TG_STR_FMT(v));
            p->max_fails = (int)n;
        } else if (tg_conf_arg_kv(cf, i, "fail_timeout", &v)) {
            if (tg_parse_msec(v, &p->fail_timeout) != 0)
                return tg_conf_errf(cf, "invalid fail_timeout \"%.*s\"", TG_STR_FMT(v));
        } else if (tg_str_eq_lit(a, "backup")) {
            p->backup = 1;
        } else {
            return tg_conf_errf(cf, "invalid parameter \"%.*s\" in \"server\", expected weight=, "
                                    "max_fails=, fail_timeout= or backup",
                                TG_STR_FMT(a));
        }
    }
    p->index = u->npeers++;
    return NULL;
}

static const char *set_balance(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    tg_str_t m = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(m, "hash")) {
        if (cf->nargs != 2)
            return "\"balance hash\" needs a key, e.g. \"balance hash $remote_addr;\"";
        const char *err = NULL;
        if ((u->hash_key = tg_tpl_compile(cf, tg_conf_arg(cf, 2), &err)) == NULL)
            return err;
        u->balance = TG_BALANCE_HASH;
        return NULL;
    }
    if (cf->nargs != 1)
        return tg_conf_errf(cf, "invalid number of arguments in \"balance %.*s\"", TG_STR_FMT(m));
    if (tg_str_eq_lit(m, "round_robin"))
        u->balance = TG_BALANCE_ROUND_ROBIN;
    else if (tg_str_eq_lit(m, "least_conn"))
        u->balance = TG_BALANCE_LEAST_CONN;
    else if (tg_str_eq_lit(m, "random"))
        u->balance = TG_BALANCE_RANDOM;
    else
        return tg_conf_errf(cf, "unknown balancing method \"%.*s\", expected round_robin, "
                                "least_conn, hash or random",
                            TG_STR_FMT(m));
    return NULL;
}

static const char *set_keepalive(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    int64_t n;
    if (tg_parse_int(tg_conf_arg(cf, 1), &n) != 0 || n > 100000)
        return tg_conf_errf(cf, "invalid number \"%.*s\" in \"keepalive\"",
                            TG_STR_FMT(tg_conf_arg(cf, 1)));
    u->keepalive = (int)n;
    return NULL;
}

/* protocol http1|http2: how requests reach the upstream's servers */
static const char *set_protocol(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "http2") || tg_str_eq_lit(v, "http1")) {
        u->http2 = v.p[4] == '2';
        return NULL;
    }
    return tg_conf_errf(cf, "invalid protocol \"%.*s\", expected \"http1\" or \"http2\"",
                        TG_STR_FMT(v));
}

/* http2_streams_per_connection N: streams one HTTP/2 connection carries at
 * once before the next request opens another connection */
static const char *set_h2_streams(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    int64_t n;
    if (tg_parse_int(tg_conf_arg(cf, 1), &n) != 0 || n < 1 || n > 10000)
        return tg_conf_errf(cf, "invalid number \"%.*s\" in \"http2_streams_per_connection\", "
                                "expected 1 to 10000",
                            TG_STR_FMT(tg_conf_arg(cf, 1)));
    u->h2_streams = (int)n;
    return NULL;
}

/* health_check [grpc [service=NAME]] [path=/healthz] [interval=5s] [timeout=1s] [fails=3]
 * [passes=2] */
const char *tg_upstream_parse_health(tg_conf_t *cf, tg_health_conf_t *h)
{
    h->enabled = 1;
    h->path = TG_STR("/");
    h->interval = 5000;
    h->timeout = 1000;
    h->fails = 3;
    h->passes = 2;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v;
        int64_t n;
        if (i == 1 && tg_str_eq_lit(tg_conf_arg(cf, 1), "grpc")) {
            h->grpc = 1;
        } else if (h->grpc && tg_conf_arg_kv(cf, i, "service", &v)) {
            if (v.len > 200)
                return tg_conf_errf(cf, "service name too long in \"health_check\"");
            h->service = tg_arena_str(cf->arena, v);
        } else if (tg_conf_arg_kv(cf, i, "path", &v)) {
            if (v.len == 0 || v.p[0] != '/')
                return tg_conf_errf(cf, "invalid path \"%.*s\" in \"health_check\"", TG_STR_FMT(v));
            for (size_t k = 0; k < v.len; k++)
                if ((unsigned char)v.p[k] <= ' ' || v.p[k] == 0x7f)
                    return tg_conf_errf(cf, "invalid path \"%.*s\" in \"health_check\"",
                                        TG_STR_FMT(v));
            h->path = tg_arena_str(cf->arena, v);
        } else if (tg_conf_arg_kv(cf, i, "interval", &v)) {
            if (tg_parse_msec(v, &h->interval) != 0 || h->interval < 100)
                return tg_conf_errf(cf, "invalid interval \"%.*s\" in \"health_check\"",
                                    TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "timeout", &v)) {
            if (tg_parse_msec(v, &h->timeout) != 0 || h->timeout <= 0)
                return tg_conf_errf(cf, "invalid timeout \"%.*s\" in \"health_check\"",
                                    TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "fails", &v)) {
            if (tg_parse_int(v, &n) != 0 || n < 1 || n > 100)
                return tg_conf_errf(cf, "invalid fails \"%.*s\" in \"health_check\"", TG_STR_FMT(v));
            h->fails = (int)n;
        } else if (tg_conf_arg_kv(cf, i, "passes", &v)) {
            if (tg_parse_int(v, &n) != 0 || n < 1 || n > 100)
                return tg_conf_errf(cf, "invalid passes \"%.*s\" in \"health_check\"",
                                    TG_STR_FMT(v));
            h->passes = (int)n;
        } else {
            return tg_conf_errf(cf, "invalid parameter \"%.*s\" in \"health_check\", expected "
                                    "grpc, service=, path=, interval=, timeout=, fails= or passes=",
                                TG_STR_FMT(tg_conf_arg(cf, i)));
        }
    }
    return NULL;
}

static const char *set_health_check(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    return tg_upstream_parse_health(cf, &((tg_upstream_t *)conf)->health);
}

/* sticky cookie NAME: a client keeps its server (Socket.io long polling) */
static const char *set_sticky(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    tg_str_t kind = tg_conf_arg(cf, 1), name = tg_conf_arg(cf, 2);
    if (!tg_str_eq_lit(kind, "cookie"))
        return tg_conf_errf(cf, "invalid sticky method \"%.*s\", expected \"sticky cookie NAME\"",
                            TG_STR_FMT(kind));
    if (!tg_conf_is_token(name) || memchr(name.p, '=', name.len))
        return tg_conf_errf(cf, "invalid cookie name \"%.*s\"", TG_STR_FMT(name));
    u->sticky_cookie = tg_arena_str(cf->arena, name);
    return NULL;
}

static const char *set_upstream_tls(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "off")) {
        u->tls = 0;
        return NULL;
    }
    if (tg_str_eq_lit(v, "on")) {
        u->tls = 1;
        return NULL;
    }
    return tg_conf_errf(cf, "invalid value \"%.*s\" in \"tls\", it must be \"on\" or \"off\"",
                        TG_STR_FMT(v));
}

/* tls_trusted_ca FILE: the CAs an upstream's certificate must chain to */
static const char *set_upstream_trusted_ca(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return tg_conf_errf(cf, "cannot open trusted CA \"%s\": %s", path, strerror(errno));
    fclose(f);
    u->tls_ca = path;
    return NULL;
}

static const char *set_upstream_tls_verify(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_upstream_t *u = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "on"))
        u->tls_verify = 1;
    else if (tg_str_eq_lit(v, "off"))
        u->tls_verify = 0;
    else
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"tls_verify\", it must be \"on\" or "
                                "\"off\"",
                            TG_STR_FMT(v));
    return NULL;
}

/* After parsing: every proxy_pass reference must name an upstream block or
 * be a HOST:PORT, which becomes a one-server upstream. */
static const char *upstream_init_conf(tg_conf_t *cf, void *main_conf)
{
    (void)main_conf;
    int errors = 0;
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next) {
        if (u->implicit) {
            u->peers = tg_arena_alloc(cf->arena, sizeof(tg_peer_t));
            tg_peer_t *p = u->peers;
            if (p == NULL || memchr(u->name.p, ':', u->name.len) == NULL ||
                tg_parse_addr(u->name, &p->addr, &p->addrlen, 0) != 0) {
                fprintf(stderr, "%s:%d: unknown upstream \"%.*s\" (no upstream block of that "
                                "name, and not HOST:PORT)\n",
                        u->file, u->line, TG_STR_FMT(u->name));
                errors++;
                continue;
            }
            p->name = u->name;
            p->weight = 1;
            p->max_fails = 1;
            p->fail_timeout = 10000;
            u->npeers = 1;
        }
        errors += check_scheme(u);
        int nstatic = u->npeers;
        errors += tg_upstream_dyn_reserve(u);
        if (u->npeers == 1 && nstatic == 1)
            u->peers[0].max_fails = 0; /* nowhere else to go: never mark it down */
        for (int i = 0; i < nstatic; i++)
            u->peers[i].base_weight = u->peers[i].weight;
        for (int i = 0; i < nstatic; i++) /* the same on every instance and reload */
            snprintf(u->peers[i].sticky_id, sizeof(u->peers[i].sticky_id), "%016llx",
                     (unsigned long long)tg_hash64(u->peers[i].name.p, u->peers[i].name.len));
        if (u->keepalive == TG_CONF_UNSET)
            u->keepalive = 32;
        if (u->health.grpc && !u->http2) {
            fprintf(stderr, "%s:%d: upstream \"%.*s\": \"health_check grpc\" needs \"protocol "
                            "http2\" (or proxy_pass grpc://%.*s)\n",
                    u->file, u->line, TG_STR_FMT(u->name), TG_STR_FMT(u->name));
            errors++;
        }
        if (u->h2_streams == TG_CONF_UNSET)
            u->h2_streams = 100;
        else if (!u->http2) {
            fprintf(stderr, "%s:%d: upstream \"%.*s\": \"http2_streams_per_connection\" "
                            "without \"protocol http2\"\n",
                    u->file, u->line, TG_STR_FMT(u->name));
            errors++;
        }
        if (!u->tls && (u->tls_ca || u->tls_cert || !u->tls_verify)) {
            fprintf(stderr, "%s:%d: upstream \"%.*s\": TLS settings without \"tls on\"\n",
                    u->file, u->line, TG_STR_FMT(u->name));
            errors++;
        }
        if (u->tls_cert && u->tls_key == NULL) {
            fprintf(stderr, "%s:%d: upstream \"%.*s\": \"tls_certificate\" has no "
                            "\"tls_certificate_key\"\n",
                    u->tls_cert_file, u->tls_cert_line, TG_STR_FMT(u->name));
            errors++;
        }
        if (tg_balance_init(u, cf->arena) != 0) {
            fprintf(stderr, "%s:%d: upstream \"%.*s\": invalid servers\n", u->file, u->line,
                    TG_STR_FMT(u->name));
            errors++;
        }
    }
    return errors ? TG_CONF_REPORTED : NULL;
}

const char *tg_upstream_describe(tg_arena_t *a, const tg_upstream_t *u)
{
    static const char *const balance[] = {"round_robin", "least_conn", "hash", "random"};
    char *s = tg_arena_printf(a, "upstream %.*s%s: balance=%s", TG_STR_FMT(u->name),
                              u->implicit ? " (implicit, from proxy_pass HOST:PORT)" : "",
                              balance[u->balance]);
    if (s && u->balance == TG_BALANCE_HASH && u->hash_key)
        s = tg_arena_printf(a, "%s %.*s", s, TG_STR_FMT(u->hash_key->src));
    if (s)
        s = tg_arena_printf(a, "%s keepalive=%d tls=%s", s, u->keepalive, u->tls ? "on" : "off");
    if (s && u->http2)
        s = tg_arena_printf(a, "%s protocol=http2 http2_streams_per_connection=%d", s,
                            u->h2_streams);
    if (s && u->tls)
        s = tg_arena_printf(a, "%s tls_verify=%s tls_trusted_ca=%s", s,
                            u->tls_verify ? "on" : "off", u->tls_ca ? u->tls_ca : "(system)");
    if (s && u->sticky_cookie.len)
        s = tg_arena_printf(a, "%s sticky=%.*s", s, TG_STR_FMT(u->sticky_cookie));
    if (s && u->health.enabled && u->health.grpc)
        s = tg_arena_printf(a, "%s health_check=grpc,service=%.*s,interval=%lldms,timeout=%lldms,"
                               "fails=%d,passes=%d",
                            s, TG_STR_FMT(u->health.service), (long long)u->health.interval,
                            (long long)u->health.timeout, u->health.fails, u->health.passes);
    else if (s && u->health.enabled)
        s = tg_arena_printf(a, "%s health_check=path=%.*s,interval=%lldms,timeout=%lldms,"
                               "fails=%d,passes=%d",
                            s, TG_STR_FMT(u->health.path), (long long)u->health.interval,
                            (long long)u->health.timeout, u->health.fails, u->health.passes);
    else if (s)
        s = tg_arena_printf(a, "%s health_check=off", s);
    for (int i = 0; s && i < u->npeers; i++) {
        const tg_peer_t *p = &u->peers[i];
        if (p->dynamic)
            continue;
        s = tg_arena_printf(a, "%s; server %.*s weight=%d max_fails=%d fail_timeout=%lldms%s", s,
                            TG_STR_FMT(p->name), p->weight, p->max_fails,
                            (long long)p->fail_timeout, p->backup ? " backup" : "");
    }
    return s ? tg_upstream_dyn_describe(a, u, s) : NULL;
}

static const tg_directive_t upstream_directives[] = {
    {"upstream", TG_SCOPE_MAIN, TG_CONF_F_BLOCK, 1, 1, set_upstream_block, 0},
    {"server", TG_SCOPE_UPSTREAM, 0, 1, 8, set_upstream_server, 0},
    {"balance", TG_SCOPE_UPSTREAM, 0, 1, 2, set_balance, 0},
    {"keepalive", TG_SCOPE_UPSTREAM, 0, 1, 1, set_keepalive, 0},
    {"health_check", TG_SCOPE_UPSTREAM, 0, 0, 7, set_health_check, 0},
    {"tls", TG_SCOPE_UPSTREAM, 0, 1, 1, set_upstream_tls, 0},
    {"tls_trusted_ca", TG_SCOPE_UPSTREAM, 0, 1, 1, set_upstream_trusted_ca, 0},
    {"tls_verify", TG_SCOPE_UPSTREAM, 0, 1, 1, set_upstream_tls_verify, 0},
    {"sticky", TG_SCOPE_UPSTREAM, 0, 2, 2, set_sticky, 0},
    {"protocol", TG_SCOPE_UPSTREAM, 0, 1, 1, set_protocol, 0},
    {"http2_streams_per_connection", TG_SCOPE_UPSTREAM, 0, 1, 1, set_h2_streams, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

/* ---- TLS ------------------------------------------------------------------- */

int tg_upconn_tls_start(tg_upconn_t *uc)
{
    tg_peer_t *p = uc->peer;
    uc->ssl = tg_tls_client_new(uc->upstream->tls_ctx, uc->fd, p->tls_host, p->tls_host_is_ip,
                                uc->upstream->tls_verify, p->tls_session, p);
    return uc->ssl ? 0 : -1;
}

int tg_upconn_tls_handshake(tg_upconn_t *uc, char *why, size_t size)
{
    char reason[256];
    int rc = tg_tls_handshake(uc->ssl, &uc->tls_flags, why ? why : reason,
                              why ? size : sizeof(reason));
    if (rc < 0 && why == NULL)
        tg_log(TG_LOG_ERROR, "upstream %.*s: %s", TG_STR_FMT(uc->peer->name), reason);
    return rc;
}

void tg_upconn_tls_free(tg_upconn_t *uc)
{
    tg_tls_client_free(uc->ssl);
    uc->ssl = NULL;
}

static void tls_log(tg_upconn_t *uc, const char *op)
{
    tg_log(TG_LOG_INFO, "upstream %.*s: TLS %s failed: %s", TG_STR_FMT(uc->peer->name), op,
           tg_tls_error_reason());
    tg_tls_clear_errors();
}

ssize_t tg_upconn_tls_read(tg_upconn_t *uc, void *buf, size_t len)
{
    int log_it;
    ssize_t n = tg_tls_read(uc->ssl, &uc->tls_flags, buf, len, &log_it);
    if (log_it)
        tls_log(uc, "read");
    return n;
}

ssize_t tg_upconn_tls_writev(tg_upconn_t *uc, const struct iovec *iov, int n)
{
    int log_it;
    ssize_t w = tg_tls_writev(uc->ssl, &uc->tls_flags, iov, n, &log_it);
    if (log_it)
        tls_log(uc, "write");
    return w;
}

static void upstream_exit_worker(tg_worker_t *w)
{
    tg_upstream_close_idle_all(w->config);
}

tg_module_t tg_upstream_module = {
    .name = "upstream",
    .directives = upstream_directives,
    .init_conf = upstream_init_conf,
    .exit_worker = upstream_exit_worker,
};

/* ---- connections and the idle pool ------------------------------------------- */

tg_upconn_t *tg_upconn_create(tg_upstream_t *u, tg_peer_t *p)
{
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&p->addr, p->addrlen) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    tg_upconn_t *uc = calloc(1, sizeof(*uc));
    if (uc == NULL) {
        close(fd);
        return NULL;
    }
    uc->fd = fd;
    uc->peer = p;
    uc->upstream = u;
    return uc;
}

void tg_upconn_destroy(tg_upconn_t *uc)
{
    ev_io_stop(tg_worker->loop, &uc->io);
    ev_timer_stop(tg_worker->loop, &uc->timer);
    tg_upconn_tls_free(uc); /* no close_notify: a pooled close needs none */
    tg_sendq_cancel_fd(uc->fd);
    close(uc->fd);
    free(uc);
}

static void pool_unlink(tg_upconn_t *uc)
{
    tg_upstream_t *u = uc->upstream;
    for (tg_upconn_t **pp = &u->idle; *pp; pp = &(*pp)->next) {
        if (*pp == uc) {
            *pp = uc->next;
            u->nidle--;
            return;
        }
    }
}

/* Readable while idle: the upstream closed it (or sent junk). Expired: we
 * close it before the upstream does. Either way it leaves the pool. */
static void idle_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    tg_upconn_t *uc = (tg_upconn_t *)((char *)w - offsetof(tg_upconn_t, io));
    if ((revents & EV_READ) && uc->ssl && tg_tls_idle_ok(uc->ssl, uc->tls_flags))
        return; /* a TLS session ticket, not a close */
    pool_unlink(uc);
    tg_upconn_destroy(uc);
}

static void idle_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    idle_io_cb(loop, (ev_io *)((char *)w - offsetof(tg_upconn_t, timer) + offsetof(tg_upconn_t, io)),
               revents);
}

tg_upconn_t *tg_upstream_pool_get(tg_upstream_t *u, tg_peer_t *p)
{
    for (tg_upconn_t **pp = &u->idle; *pp; pp = &(*pp)->next) {
        tg_upconn_t *uc = *pp;
        if (uc->peer != p)
            continue;
        *pp = uc->next;
        u->nidle--;
        ev_timer_stop(tg_worker->loop, &uc->timer);
        uc->next = NULL;
        return uc; /* its read watcher is still on, for the new owner */
    }
    return NULL;
}

void tg_upstream_pool_put(tg_upconn_t *uc, tg_msec_t keepalive_ms)
{
    tg_upstream_t *u = uc->upstream;
    if (u->keepalive == 0 || tg_worker->shutting_down || uc->peer->absent) {
        tg_upconn_destroy(uc);
        return;
    }
    if (u->nidle >= u->keepalive) {
        /* full: drop the oldest (the list tail) so the warm ones stay */
        tg_upconn_t **pp = &u->idle;
        while ((*pp)->next)
            pp = &(*pp)->next;
        tg_upconn_t *old = *pp;
        *pp = NULL;
        u->nidle--;
        tg_upconn_destroy(old);
    }
    if (ev_is_active(&uc->io) && uc->io.events == EV_READ) {
        ev_set_cb(&uc->io, idle_io_cb);
    } else {
        ev_io_stop(tg_worker->loop, &uc->io);
        ev_io_init(&uc->io, idle_io_cb, uc->fd, EV_READ);
        ev_io_start(tg_worker->loop, &uc->io);
    }
    ev_timer_init(&uc->timer, idle_timer_cb, (double)keepalive_ms / 1000.0, 0);
    ev_timer_start(tg_worker->loop, &uc->timer);
    uc->next = u->idle;
    u->idle = uc;
    u->nidle++;
}

void tg_upstream_close_idle_all(tg_config_t *cf)
{
    for (tg_upstream_t *u = cf->upstreams; u; u = u->next) {
        while (u->idle) {
            tg_upconn_t *uc = u->idle;
            u->idle = uc->next;
            tg_upconn_destroy(uc);
        }
        u->nidle = 0;
        tg_h2up_close_idle(u);
    }
}
