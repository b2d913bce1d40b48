/* The core module: main settings, server and location blocks, listeners,
 * `return`, the client-side limits, and loading a config generation
 * (parse -> merge main -> server -> location -> build hook arrays -> check).
 * Routing lookups (server by Host, location by path) live here too, since
 * they only read what this file built. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "core.h"
#include "log.h"
#include "addr.h"
#include "log_syslog.h"

/* ---- small helpers ---------------------------------------------------------- */

/* Grow an arena array of pointers by one (configs are small). */
static int ptr_push(tg_arena_t *a, void ***arr, int *n, void *item)
{
    void **v = tg_arena_grow(a, *arr, (size_t)*n, 1, sizeof(void *));
    if (v == NULL)
        return -1;
    v[(*n)++] = item;
    *arr = v;
    return 0;
}

static void **mconf_create(tg_conf_t *cf)
{
    void **m = tg_arena_alloc(cf->arena, (size_t)tg_nmodules * sizeof(void *));
    if (m == NULL)
        return NULL;
    for (int i = 0; i < tg_nmodules; i++)
        if (tg_modules[i]->create_conf && (m[i] = tg_modules[i]->create_conf(cf)) == NULL)
            return NULL;
    return m;
}

int tg_conf_is_token(tg_str_t s)
{
    static const char *const extra = "!#$%&'*+-.^_`|~";
    if (s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch && strchr(extra, ch))))
            return 0;
    }
    return 1;
}

const char *tg_conf_check_header(tg_conf_t *cf, tg_str_t name, tg_str_t value)
{
    if (!tg_conf_is_token(name))
        return tg_conf_errf(cf, "invalid header name \"%.*s\"", TG_STR_FMT(name));
    for (size_t i = 0; i < value.len; i++) {
        unsigned char ch = (unsigned char)value.p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return tg_conf_errf(cf, "invalid character in the value of header \"%.*s\"",
                                TG_STR_FMT(name));
    }
    return NULL;
}

/* ---- core per-scope config ------------------------------------------------------ */

static void *core_create_conf(tg_conf_t *cf)
{
    tg_core_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->client_max_body_size = TG_CONF_UNSET;
    c->client_max_uri = TG_CONF_UNSET;
    c->client_max_headers = TG_CONF_UNSET;
    c->header_timeout = c->idle_timeout = c->send_timeout = c->body_timeout = TG_CONF_UNSET;
    c->keepalive_requests = TG_CONF_UNSET;
    c->server_tokens = TG_CONF_UNSET;
    c->body_min_rate = c->body_rate_grace = TG_CONF_UNSET;
    return c;
}

static const char *core_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    tg_core_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->client_max_body_size, p->client_max_body_size, 1024 * 1024);
    TG_CONF_MERGE(c->client_max_uri, p->client_max_uri, 8192);
    TG_CONF_MERGE(c->client_max_headers, p->client_max_headers, 100);
    TG_CONF_MERGE(c->header_timeout, p->header_timeout, 10000);
    TG_CONF_MERGE(c->idle_timeout, p->idle_timeout, 75000);
    TG_CONF_MERGE(c->send_timeout, p->send_timeout, 60000);
    TG_CONF_MERGE(c->body_timeout, p->body_timeout, 60000);
    TG_CONF_MERGE(c->body_min_rate, p->body_min_rate, 0);
    TG_CONF_MERGE(c->body_rate_grace, p->body_rate_grace, 5000);
    TG_CONF_MERGE(c->keepalive_requests, p->keepalive_requests, 1000);
    TG_CONF_MERGE(c->server_tokens, p->server_tokens, 1);
    return NULL;
}

/* timeouts header=10s idle=75s send=60s body=60s */
static const char *set_timeouts(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_core_conf_t *c = conf;
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"header", offsetof(tg_core_conf_t, header_timeout)},
        {"idle", offsetof(tg_core_conf_t, idle_timeout)},
        {"send", offsetof(tg_core_conf_t, send_timeout)},
        {"body", offsetof(tg_core_conf_t, body_timeout)},
    };
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v;
        size_t k;
        for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            if (tg_conf_arg_kv(cf, i, keys[k].key, &v))
                break;
        if (k == sizeof(keys) / sizeof(keys[0]))
            return tg_conf_errf(cf, "invalid parameter \"%s\" in \"timeouts\", expected "
                                    "header=, idle=, send= or body=",
                                cf->args[i].text.p);
        tg_msec_t *field = (tg_msec_t *)((char *)c + keys[k].off);
        if (tg_parse_msec(v, field) != 0 || *field <= 0)
            return tg_conf_errf(cf, "invalid time \"%.*s\" in \"timeouts\"", TG_STR_FMT(v));
    }
    return NULL;
}

/* client_body_min_rate 1k [grace=5s] | off: bytes per second (a size, "/s"
 * optional) a client must keep up while we wait for its request body */
static const char *set_body_min_rate(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_core_conf_t *c = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (c->body_min_rate != TG_CONF_UNSET)
        return "\"client_body_min_rate\" directive is duplicate";
    if (tg_str_eq_lit(v, "off")) {
        if (cf->nargs > 1)
            return "\"client_body_min_rate off\" takes no parameters";
        c->body_min_rate = 0;
        return NULL;
    }
    if (v.len > 2 && v.p[v.len - 2] == '/' && v.p[v.len - 1] == 's')
        v.len -= 2;
    if (tg_parse_size(v, &c->body_min_rate) != 0 || c->body_min_rate <= 0) {
        c->body_min_rate = TG_CONF_UNSET;
        return tg_conf_errf(cf, "invalid rate \"%s\" in \"client_body_min_rate\", expected "
                                "bytes per second like 1k or off",
                            cf->args[1].text.p);
    }
    if (cf->nargs == 2) {
        tg_str_t g;
        if (!tg_conf_arg_kv(cf, 2, "grace", &g) || tg_parse_msec(g, &c->body_rate_grace) != 0 ||
            c->body_rate_grace < 0)
            return tg_conf_errf(cf, "invalid parameter \"%s\" in \"client_body_min_rate\", "
                                    "expected grace=TIME",
                                cf->args[2].text.p);
    }
    return NULL;
}

/* ---- main scope ---------------------------------------------------------------- */

static tg_main_conf_t *main_conf(tg_conf_t *cf)
{
    return cf->config->main;
}

static const char *set_workers(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "auto")) {
        main_conf(cf)->workers = 0;
        return NULL;
    }
    int64_t n;
    if (tg_parse_int(v, &n) != 0 || n < 1 || n > TG_MAX_WORKERS)
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"workers\", expected auto or 1..%d",
                            TG_STR_FMT(v), TG_MAX_WORKERS);
    main_conf(cf)->workers = n;
    return NULL;
}

static const char *set_pid(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    main_conf(cf)->pid_file = tg_conf_path(cf, tg_conf_arg(cf, 1));
    return NULL;
}

/* user NAME [GROUP]: resolved now, so a typo is a config error */
static const char *set_user(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_user_t *u = &main_conf(cf)->user;
    if (u->name)
        return "\"user\" directive is duplicate";
    const char *err = tg_user_resolve(cf->arena, u, tg_conf_arg(cf, 1),
                                      cf->nargs == 2 ? tg_conf_arg(cf, 2) : (tg_str_t){NULL, 0});
    if (err)
        return err;
    u->explicit = 1;
    return NULL;
}

/* error_log stderr|syslog:...|PATH [level] */
static const char *set_error_log(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_str_t path = tg_conf_arg(cf, 1);
    if (path.len > 7 && memcmp(path.p, "syslog:", 7) == 0) {
        /* syslog:server=...: kept as written, checked now, opened by log.c */
        tg_log_syslog_t s;
        char bad[128];
        const char *dest = tg_arena_strdup(cf->arena, path);
        if (dest == NULL)
            return "out of memory";
        const char *err = tg_log_syslog_parse(dest + 7, &s, bad, sizeof(bad));
        if (err)
            return tg_conf_errf(cf, "\"error_log\": %s: \"%s\"", err, bad);
        main_conf(cf)->error_log = dest;
    } else {
        main_conf(cf)->error_log =
            tg_str_eq_lit(path, "stderr") ? NULL : tg_conf_path(cf, path);
    }
    if (cf->nargs == 2) {
        tg_str_t lv = tg_conf_arg(cf, 2);
        int l = tg_log_parse_level(lv.p, lv.len);
        if (l < 0)
            return tg_conf_errf(cf, "invalid log level \"%.*s\", expected debug, info, warn, "
                                    "error or crit",
                                TG_STR_FMT(lv));
        main_conf(cf)->error_level = l;
    }
    return NULL;
}

static const char *set_main_msec(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)conf;
    return tg_conf_set_msec(cf, d, main_conf(cf));
}

static const char *set_main_num(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)conf;
    const char *err = tg_conf_set_num(cf, d, main_conf(cf));
    if (err == NULL && *(int64_t *)((char *)main_conf(cf) + d->offset) < 1)
        return tg_conf_errf(cf, "\"%s\" must be at least 1", d->name);
    return err;
}

static const char *set_main_flag(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)conf;
    return tg_conf_set_flag(cf, d, main_conf(cf));
}

static const char *set_main_size(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)conf;
    const char *err = tg_conf_set_size(cf, d, main_conf(cf));
    int64_t v = *(int64_t *)((char *)main_conf(cf) + d->offset);
    if (err == NULL && (v < 1024 || v > 1024 * 1024))
        return tg_conf_errf(cf, "\"%s\" must be between 1k and 1m", d->name);
    return err;
}

/* ---- server and listen --------------------------------------------------------- */

static const char *set_server(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_config_t *c = cf->config;
    tg_server_t *s = tg_arena_alloc(cf->arena, sizeof(*s));
    if (s == NULL || (s->mconf = mconf_create(cf)) == NULL)
        return "out of memory";
    s->file = cf->file;
    s->line = cf->line;
    if (ptr_push(cf->arena, (void ***)&c->servers, &c->nservers, s) != 0)
        return "out of memory";
    cf->scope = TG_SCOPE_SERVER;
    cf->ctx = s;
    cf->mconf = s->mconf;
    tg_conf_parse_block(cf);
    return NULL;
}

static int addr_equal(const struct sockaddr_storage *a, socklen_t al, const struct sockaddr_storage *b,
                      socklen_t bl)
{
    return al == bl && memcmp(a, b, al) == 0;
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char host[64];
    int port;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(out, size, "[%s]:%d", host, port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        snprintf(out, size, "%s:%d", host, port);
    }
}

/* listen [ADDR:]PORT [default_server] [tls] [proxy_protocol] [http2] [backlog=N] */
static const char *set_listen(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_server_t *s = cf->ctx;
    tg_listen_t tmp = {0};
    int is_default = 0;
    tg_str_t a = tg_conf_arg(cf, 1);
    if (tg_parse_addr(a, &tmp.addr, &tmp.addrlen, -1) != 0)
        return tg_conf_errf(cf, "invalid listen address \"%.*s\"", TG_STR_FMT(a));
    tmp.backlog = 511;
    for (int i = 2; i <= cf->nargs; i++) {
        tg_str_t v = tg_conf_arg(cf, i), num;
        int64_t n;
        if (tg_str_eq_lit(v, "default_server")) {
            is_default = 1;
        } else if (tg_str_eq_lit(v, "tls")) {
            tmp.tls = 1;
        } else if (tg_str_eq_lit(v, "proxy_protocol")) {
            tmp.proxy_protocol = 1;
        } else if (tg_str_eq_lit(v, "http2")) {
            tmp.http2 = 1; /* h2c with prior knowledge (src/conn.c sniffs the preface) */
        } else if (tg_conf_arg_kv(cf, i, "backlog", &num)) {
            if (tg_parse_int(num, &n) != 0 || n < 1 || n > 65535)
                return tg_conf_errf(cf, "invalid backlog \"%.*s\"", TG_STR_FMT(num));
            tmp.backlog = (int)n;
        } else {
            return tg_conf_errf(cf, "invalid parameter \"%.*s\" in \"listen\"", TG_STR_FMT(v));
        }
    }
    if (tmp.http2 && tmp.tls)
        return "\"http2\" is for cleartext listeners: on \"tls\" ALPN offers h2 (\"http2 on|off\")";
    tg_listen_t *ls;
    for (ls = cf->config->listens; ls; ls = ls->next)
        if (addr_equal(&ls->addr, ls->addrlen, &tmp.addr, tmp.addrlen))
            break;
    if (ls == NULL) {
        if ((ls = tg_arena_alloc(cf->arena, sizeof(*ls))) == NULL)
            return "out of memory";
        *ls = tmp;
        addr_text(&ls->addr, ls->text, sizeof(ls->text));
        for (int i = 0; i < TG_MAX_WORKERS; i++)
            ls->fds[i] = -1;
        ls->file = cf->file;
        ls->line = cf->line;
        tg_listen_t **tail = &cf->config->listens;
        while (*tail)
            tail = &(*tail)->next;
        *tail = ls;
    } else if (ls->tls != tmp.tls || ls->proxy_protocol != tmp.proxy_protocol ||
               ls->http2 != tmp.http2) {
        return tg_conf_errf(cf, "\"%s\" is listened on with different tls or proxy_protocol (or http2) "
                                "settings (first at %s:%d)",
                            ls->text, ls->file, ls->line);
    }
    for (int i = 0; i < s->nlistens; i++)
        if (s->listens[i] == ls)
            return tg_conf_errf(cf, "duplicate listen \"%s\" in this server", ls->text);
    if (is_default) {
        if (ls->default_server)
            return tg_conf_errf(cf, "a duplicate default server for \"%s\" (the first at %s:%d)",
                                ls->text, ls->default_server->file, ls->default_server->line);
        ls->default_server = s;
    }
    if (ptr_push(cf->arena, (void ***)&s->listens, &s->nlistens, ls) != 0 ||
        ptr_push(cf->arena, (void ***)&ls->servers, &ls->nservers, s) != 0)
        return "out of memory";
    return NULL;
}

static const char *set_server_name(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_server_t *s = cf->ctx;
    tg_str_t *names = tg_arena_grow(cf->arena, s->names, (size_t)s->nnames, (size_t)cf->nargs,
                                    sizeof(tg_str_t));
    if (names == NULL)
        return "out of memory";
    s->names = names; /* the parser goes on after an error: keep array and count in step */
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v = tg_conf_arg(cf, i);
        char *low = tg_arena_strdup(cf->arena, v);
        if (low == NULL)
            return "out of memory";
        for (size_t k = 0; k < v.len; k++) {
            char ch = low[k];
            if (ch >= 'A' && ch <= 'Z')
                low[k] = ch + 32;
            else if (ch == '*' && !(k == 0 && v.len > 2 && v.p[1] == '.'))
                return tg_conf_errf(cf, "invalid server name \"%.*s\": a wildcard must be "
                                        "\"*.suffix\"",
                                    TG_STR_FMT(v));
        }
        names[s->nnames++] = (tg_str_t){low, v.len};
    }
    return NULL;
}

/* ---- location and return ----------------------------------------------------- */

static void re_free(void *re)
{
    pcre2_code_free(re);
}

static const char *set_location(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_server_t *s = cf->ctx;
    tg_location_t *l = tg_arena_alloc(cf->arena, sizeof(*l));
    if (l == NULL || (l->mconf = mconf_create(cf)) == NULL)
        return "out of memory";
    l->server = s;
    l->file = cf->file;
    l->line = cf->line;
    tg_str_t path = tg_conf_arg(cf, cf->nargs);
    int caseless = 0;
    if (cf->nargs == 1 && path.len && path.p[0] == '@')
        l->kind = TG_LOC_NAMED;
    if (cf->nargs == 2) {
        tg_str_t mod = tg_conf_arg(cf, 1);
        if (tg_str_eq_lit(mod, "="))
            l->kind = TG_LOC_EXACT;
        else if (tg_str_eq_lit(mod, "^~"))
            l->kind = TG_LOC_PREFIX_NOREGEX;
        else if (tg_str_eq_lit(mod, "~"))
            l->kind = TG_LOC_REGEX;
        else if (tg_str_eq_lit(mod, "~*"))
            l->kind = TG_LOC_REGEX, caseless = 1;
        else
            return tg_conf_errf(cf, "invalid location modifier \"%.*s\", expected =, ^~, ~ or ~*",
                                TG_STR_FMT(mod));
    }
    l->path = tg_arena_str(cf->arena, path);
    if (l->kind == TG_LOC_REGEX) {
        int errcode;
        PCRE2_SIZE erroff;
        l->re = pcre2_compile((PCRE2_SPTR)path.p, path.len, caseless ? PCRE2_CASELESS : 0,
                              &errcode, &erroff, NULL);
        if (l->re == NULL) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(errcode, msg, sizeof(msg));
            return tg_conf_errf(cf, "invalid regex \"%.*s\" at offset %zu: %s", TG_STR_FMT(path),
                                (size_t)erroff, (char *)msg);
        }
        tg_arena_on_reset(cf->arena, re_free, l->re);
        pcre2_jit_compile(l->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    } else if (l->kind == TG_LOC_NAMED && path.len < 2) {
        return tg_conf_errf(cf, "empty named location \"%.*s\"", TG_STR_FMT(path));
    } else if (l->kind != TG_LOC_NAMED && (path.len == 0 || path.p[0] != '/')) {
        return tg_conf_errf(cf, "location path \"%.*s\" must start with \"/\" (or \"@\" for a "
                                "named location)",
                            TG_STR_FMT(path));
    } else {
        for (int i = 0; i < s->nlocations; i++) {
            tg_location_t *o = s->locations[i];
            if (o->kind != TG_LOC_REGEX && (o->kind == TG_LOC_EXACT) == (l->kind == TG_LOC_EXACT) &&
                (o->kind == TG_LOC_NAMED) == (l->kind == TG_LOC_NAMED) &&
                tg_str_eq(o->path, l->path))
                return tg_conf_errf(cf, "duplicate location \"%.*s\" (first at %s:%d)",
                                    TG_STR_FMT(path), o->file, o->line);
        }
    }
    if (ptr_push(cf->arena, (void ***)&s->locations, &s->nlocations, l) != 0)
        return "out of memory";
    cf->scope = TG_SCOPE_LOCATION;
    cf->ctx = l;
    cf->mconf = l->mconf;
    tg_conf_parse_block(cf);
    return NULL;
}

static const tg_directive_t core_directives[] = {
    {"workers", TG_SCOPE_MAIN, 0, 1, 1, set_workers, 0},
    {"pid", TG_SCOPE_MAIN, 0, 1, 1, set_pid, 0},
    {"error_log", TG_SCOPE_MAIN, 0, 1, 2, set_error_log, 0},
    {"user", TG_SCOPE_MAIN, 0, 1, 2, set_user, 0},
    {"shutdown_timeout", TG_SCOPE_MAIN, 0, 1, 1, set_main_msec,
     offsetof(tg_main_conf_t, shutdown_timeout)},
    {"worker_stall_timeout", TG_SCOPE_MAIN, 0, 1, 1, set_main_msec,
     offsetof(tg_main_conf_t, stall_timeout)},
    {"worker_connections", TG_SCOPE_MAIN, 0, 1, 1, set_main_num,
     offsetof(tg_main_conf_t, worker_connections)},
    {"client_header_buffer_size", TG_SCOPE_MAIN, 0, 1, 1, set_main_size,
     offsetof(tg_main_conf_t, header_buffer_size)},
    {"io_uring", TG_SCOPE_MAIN, 0, 1, 1, set_main_flag, offsetof(tg_main_conf_t, io_uring)},
    {"server", TG_SCOPE_MAIN, TG_CONF_F_BLOCK, 0, 0, set_server, 0},
    {"listen", TG_SCOPE_SERVER, 0, 1, 5, set_listen, 0},
    {"server_name", TG_SCOPE_SERVER, 0, 1, -1, set_server_name, 0},
    {"location", TG_SCOPE_SERVER, TG_CONF_F_BLOCK, 1, 2, set_location, 0},
    {"client_max_body_size", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_size,
     offsetof(tg_core_conf_t, client_max_body_size)},
    {"client_max_uri_length", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_size,
     offsetof(tg_core_conf_t, client_max_uri)},
    {"client_max_headers", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_num,
     offsetof(tg_core_conf_t, client_max_headers)},
    {"timeouts", TG_SCOPE_HTTP, 0, 1, 4, set_timeouts, 0},
    {"client_body_min_rate", TG_SCOPE_HTTP, 0, 1, 2, set_body_min_rate, 0},
    {"keepalive_requests", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_num,
     offsetof(tg_core_conf_t, keepalive_requests)},
    {"server_tokens", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(tg_core_conf_t, server_tokens)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_core_module = {
    .name = "core",
    .directives = core_directives,
    .create_conf = core_create_conf,
    .merge_conf = core_merge_conf,
};

/* ---- loading a config ----------------------------------------------------------- */

/* A config error found after parsing, at a place the stage knows: printed
 * and counted like the parser's, so loading goes on and one run shows all. */
static void report(tg_conf_t *cf, const char *file, int line, const char *msg)
{
    fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    cf->nerrors++;
}

/* Merge every module's config of a scope; an error is reported and the
 * other modules still merge. */
static void merge_scope(tg_conf_t *cf, void **parent, void **child, const char *file, int line)
{
    for (int i = 0; i < tg_nmodules; i++) {
        tg_module_t *m = tg_modules[i];
        if (m->merge_conf == NULL || child[i] == NULL)
            continue;
        const char *err = m->merge_conf(cf, parent[i], child[i]);
        if (err)
            report(cf, file, line, err);
    }
}

static int has_phase(const tg_module_t *m, int phase)
{
    switch (phase) {
    case TG_PHASE_SERVER_REWRITE: return m->on_server_rewrite != NULL;
    case TG_PHASE_REWRITE: return m->on_rewrite != NULL;
    case TG_PHASE_ACCESS: return m->on_access != NULL;
    case TG_PHASE_ROUTE: return m->on_route != NULL;
    case TG_PHASE_CONTENT: return m->on_content != NULL;
    case TG_PHASE_RESPONSE_HEADERS: return m->on_response_headers != NULL;
    case TG_PHASE_RESPONSE_BODY: return m->on_response_body != NULL;
    case TG_PHASE_LOG: return m->on_log != NULL;
    default: return 0;
    }
}

/* The location's hook arrays. The server rewrite phase runs before any
 * location is chosen, so its hooks get the server-scope configs, and every
 * location of the server shares them. */
static int build_hooks(tg_conf_t *cf, tg_location_t *l)
{
    for (int ph = 0; ph < TG_PHASE_COUNT; ph++) {
        if (ph == TG_PHASE_SERVER_REWRITE && l != l->server->root) {
            l->hooks[ph] = l->server->root->hooks[ph];
            continue;
        }
        void **mconf = ph == TG_PHASE_SERVER_REWRITE ? l->server->mconf : l->mconf;
        int n = 0;
        tg_hook_t *hooks = tg_arena_alloc(cf->arena, (size_t)(tg_nmodules + 1) * sizeof(tg_hook_t));
        if (hooks == NULL)
            return -1;
        for (int i = 0; i < tg_nmodules; i++) {
            tg_module_t *m = tg_modules[i];
            if (!has_phase(m, ph) || (m->is_active && !m->is_active(mconf[i])))
                continue;
            hooks[n].module = m;
            hooks[n++].conf = mconf[i];
        }
        l->hooks[ph] = n ? hooks : NULL;
    }
    return 0;
}

/* Merge a server's scopes and build its hooks. Errors are reported (and
 * counted) and the work goes on; -1 only when out of memory. */
static int finish_server(tg_conf_t *cf, tg_server_t *s)
{
    tg_config_t *c = cf->config;
    if (s->nlistens == 0)
        report(cf, s->file, s->line, "server has no \"listen\" directive");
    merge_scope(cf, c->mconf, s->mconf, s->file, s->line);
    /* The implicit root location carries the server-level settings. */
    tg_location_t *root = tg_arena_alloc(cf->arena, sizeof(*root));
    if (root == NULL || (root->mconf = mconf_create(cf)) == NULL)
        return -1;
    root->kind = TG_LOC_PREFIX;
    root->path = TG_STR("/");
    root->server = s;
    root->file = s->file;
    root->line = s->line;
    s->root = root;
    merge_scope(cf, s->mconf, root->mconf, s->file, s->line);
    if (build_hooks(cf, root))
        return -1;
    for (int i = 0; i < s->nlocations; i++) {
        tg_location_t *l = s->locations[i];
        merge_scope(cf, s->mconf, l->mconf, l->file, l->line);
        if (build_hooks(cf, l))
            return -1;
    }
    return 0;
}

/* Every listener gets its default server; every name two servers of one
 * listener share is reported. */
static void check_names(tg_conf_t *cf, tg_config_t *c)
{
    for (tg_listen_t *ls = c->listens; ls; ls = ls->next) {
        if (ls->default_server == NULL)
            ls->default_server = ls->servers[0];
        for (int i = 0; i < ls->nservers; i++)
            for (int j = 0; j < i; j++)
                for (int a = 0; a < ls->servers[i]->nnames; a++)
                    for (int b = 0; b < ls->servers[j]->nnames; b++)
                        if (tg_str_eq(ls->servers[i]->names[a], ls->servers[j]->names[b])) {
                            fprintf(stderr, "%s:%d: conflicting server name \"%.*s\" on %s\n",
                                    ls->servers[i]->file, ls->servers[i]->line,
                                    TG_STR_FMT(ls->servers[i]->names[a]), ls->text);
                            cf->nerrors++;
                        }
    }
}

/* The parser's directive lookup over the module list (tg_conf_t.find_directive). */
static const tg_directive_t *find_directive(tg_conf_t *cf, const char *name, int *mindex,
                                            int *known)
{
    *known = 0;
    for (int i = 0; i < tg_nmodules; i++) {
        for (const tg_directive_t *d = tg_modules[i]->directives; d && d->name; d++) {
            if (strcmp(d->name, name) != 0)
                continue;
            *known = 1;
            if (d->scopes & cf->scope) {
                *mindex = i;
                return d;
            }
        }
    }
    return NULL;
}

tg_config_t *tg_config_load(const char *path, int generation)
{
    tg_config_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    tg_arena_init(&c->arena, 0);
    c->generation = generation;
    tg_conf_t *cf = calloc(1, sizeof(*cf));
    if (cf == NULL)
        goto fail;
    cf->arena = &c->arena;
    cf->config = c;
    cf->find_directive = find_directive;
    cf->scope = TG_SCOPE_MAIN;
    c->file = tg_arena_strdup(&c->arena, tg_str_c(path));
    c->main = tg_arena_alloc(&c->arena, sizeof(*c->main));
    if (c->file == NULL || c->main == NULL || (c->mconf = mconf_create(cf)) == NULL)
        goto fail;
    c->main->workers = TG_CONF_UNSET;
    c->main->error_level = TG_LOG_INFO;
    c->main->shutdown_timeout = TG_CONF_UNSET;
    c->main->stall_timeout = TG_CONF_UNSET;
    c->main->worker_connections = TG_CONF_UNSET;
    c->main->header_buffer_size = TG_CONF_UNSET;
    c->main->io_uring = TG_CONF_UNSET;
    cf->mconf = c->mconf;
    /* Every stage runs even after errors (each reports what it finds and
     * counts it in cf->nerrors), so `tollgate -t` shows a config's mistakes
     * in one run: parse errors, merge errors, unknown upstreams, missing
     * certificates. A stage works with what parsed; nothing of a config with
     * errors is used. Only an unreadable main file or no memory stops early. */
    if (tg_conf_parse_file(cf, path) == -2)
        goto fail;
    /* main-scope configs merge against an all-default parent */
    void **defaults = mconf_create(cf);
    if (defaults == NULL)
        goto fail;
    merge_scope(cf, defaults, c->mconf, c->file, 0);
    if (c->main->workers == TG_CONF_UNSET)
        c->main->workers = 1;
    if (c->main->shutdown_timeout == TG_CONF_UNSET)
        c->main->shutdown_timeout = 30000;
    if (c->main->stall_timeout == TG_CONF_UNSET)
        c->main->stall_timeout = 5000;
    if (c->main->worker_connections == TG_CONF_UNSET)
        c->main->worker_connections = 10000;
    if (c->main->header_buffer_size == TG_CONF_UNSET)
        c->main->header_buffer_size = 16384;
    if (c->main->io_uring == TG_CONF_UNSET)
        c->main->io_uring = 1;
    if (c->main->user.name == NULL && geteuid() == 0) {
        /* a master started as root never runs its workers as root */
        const char *err = tg_user_default(&c->arena, &c->main->user);
        if (err) {
            fprintf(stderr, "%s: no \"user\" directive, and the default: %s\n", path, err);
            goto fail;
        }
    }
    if (c->nservers == 0) {
        fprintf(stderr, "%s:1: no \"server\" block\n", path);
        cf->nerrors++;
    }
    for (int i = 0; i < c->nservers; i++)
        if (finish_server(cf, c->servers[i]) != 0)
            goto fail;
    check_names(cf, c);
    for (int i = 0; i < tg_nmodules; i++) {
        tg_module_t *m = tg_modules[i];
        const char *err;
        if (m->init_conf && (err = m->init_conf(cf, c->mconf[i])) != NULL) {
            if (*err) /* TG_CONF_REPORTED: printed already */
                report(cf, path, 1, err);
            else
                cf->nerrors++;
        }
    }
    if (cf->nerrors)
        goto fail;
    free(cf);
    return c;
fail:
    free(cf);
    tg_config_destroy(c);
    return NULL;
}

void tg_config_destroy(tg_config_t *c)
{
    if (c == NULL)
        return;
    tg_arena_destroy(&c->arena);
    free(c);
}

/* ---- routing -------------------------------------------------------------------- */

int tg_core_server_name_match(const tg_server_t *s, tg_str_t host, tg_str_t *name)
{
    int best = 0;
    for (int k = 0; k < s->nnames; k++) {
        tg_str_t n = s->names[k];
        if (n.len > 1 && n.p[0] == '*') {
            /* "*.example.com" matches "a.example.com" and "a.b.example.com" */
            size_t suf = n.len - 1;
            if (host.len > suf && memcmp(host.p + host.len - suf, n.p + 1, suf) == 0 &&
                (int)suf > best) {
                best = (int)suf;
                *name = n;
            }
        } else if (tg_str_eq(n, host)) {
            *name = n;
            return -1;
        }
    }
    return best;
}

tg_server_t *tg_core_find_server(tg_listen_t *ls, tg_str_t host)
{
    if (ls->nservers == 1 || host.len == 0)
        return ls->default_server;
    tg_server_t *best = NULL;
    int best_len = 0;
    for (int i = 0; i < ls->nservers; i++) {
        tg_str_t name;
        int m = tg_core_server_name_match(ls->servers[i], host, &name);
        if (m < 0)
            return ls->servers[i];
        if (m > best_len) {
            best = ls->servers[i];
            best_len = m;
        }
    }
    return best ? best : ls->default_server;
}

static int prefix_of(const tg_location_t *l, tg_str_t path)
{
    return l->path.len <= path.len && memcmp(l->path.p, path.p, l->path.len) == 0;
}

int tg_core_location_matches(const tg_location_t *l, tg_str_t path)
{
    static pcre2_match_data *md; /* per process; only whether it matched is used */
    switch (l->kind) {
    case TG_LOC_EXACT: return tg_str_eq(l->path, path);
    case TG_LOC_PREFIX:
    case TG_LOC_PREFIX_NOREGEX: return prefix_of(l, path);
    case TG_LOC_REGEX:
        if (md == NULL && (md = pcre2_match_data_create(1, NULL)) == NULL)
            return -1;
        return pcre2_match(l->re, (PCRE2_SPTR)path.p, path.len, 0, 0, md, NULL) >= 0;
    default: return 0; /* named: reached only by an internal redirect */
    }
}

tg_location_t *tg_core_find_location(tg_server_t *s, tg_str_t path)
{
    tg_location_t *prefix = NULL;
    for (int i = 0; i < s->nlocations; i++) {
        tg_location_t *l = s->locations[i];
        if (l->kind == TG_LOC_EXACT) {
            if (tg_str_eq(l->path, path))
                return l;
        } else if (l->kind == TG_LOC_PREFIX || l->kind == TG_LOC_PREFIX_NOREGEX) {
            if (prefix_of(l, path) && (prefix == NULL || l->path.len > prefix->path.len))
                prefix = l;
        }
    }
    if (prefix && prefix->kind == TG_LOC_PREFIX_NOREGEX)
        return prefix;
    for (int i = 0; i < s->nlocations; i++) {
        tg_location_t *l = s->locations[i];
        if (l->kind != TG_LOC_REGEX)
            continue;
        int m = tg_core_location_matches(l, path);
        if (m < 0)
            return prefix;
        if (m)
            return l;
    }
    return prefix;
}

tg_location_t *tg_core_find_named(tg_server_t *s, tg_str_t name)
{
    for (int i = 0; i < s->nlocations; i++)
        if (s->locations[i]->kind == TG_LOC_NAMED && tg_str_eq(s->locations[i]->path, name))
            return s->locations[i];
    return NULL;
}
