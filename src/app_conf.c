/* The `app NAME { ... }` block: a Node service the master runs (src/app.c),
 * which is also the upstream NAME (`proxy_pass NAME;`). The block is an
 * upstream block too, so `balance`, `keepalive`, `sticky` ... work inside;
 * `health_check` and `listen` mean the app's own (readiness and the
 * instances' addresses), and `server` is refused: the instances are the
 * servers.
 *
 * Everything a process is started with goes into the app's hash, so a
 * reload that changes any of it (env_file contents too) restarts the app,
 * rolling, and a reload that changes nothing leaves its processes alone
 * (`instances` is not in it: a new count starts or stops instances only). */
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>
#include "app.h"
#include "addr.h"
#include "core.h"
#include "module.h"
#include "shm.h"

static tg_app_t *app_of(void *conf)
{
    return ((tg_upstream_t *)conf)->app;
}

/* Every app directive's words go into the hash, in order. */
static void fold(tg_app_t *a, tg_conf_t *cf)
{
    for (int i = 0; i <= cf->nargs; i++) {
        tg_str_t s = tg_conf_arg(cf, i);
        a->hash = (a->hash ^ tg_hash64(s.p, s.len)) * 0x100000001b3ULL + (uint64_t)i;
    }
}

static const char *set_command(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    if (a->command) return "\"command\" directive is duplicate";
    fold(a, cf);
    /* several words are joined: command node server.js; */
    const char *s = tg_arena_strdup(cf->arena, tg_conf_arg(cf, 1));
    for (int i = 2; s && i <= cf->nargs; i++)
        s = tg_arena_printf(cf->arena, "%s %s", s, tg_conf_arg(cf, i).p);
    if (s == NULL) return "out of memory";
    if (*s == '\0') return "empty \"command\"";
    a->command = s;
    return NULL;
}

static const char *set_cwd(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    a->cwd = tg_conf_path(cf, tg_conf_arg(cf, 1));
    if (access(a->cwd, X_OK) != 0)
        return tg_conf_errf(cf, "\"cwd\": cannot enter \"%s\": %s", a->cwd, strerror(errno));
    return NULL;
}

static int env_name_ok(const char *p, size_t n)
{
    if (n == 0 || isdigit((unsigned char)p[0])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '_') return 0;
    return 1;
}

/* env_file's variables go before env's (a->nenv_file of them), so that
 * env's win whichever directive comes first. */
static const char *env_add(tg_conf_t *cf, tg_app_t *a, const char *kv, size_t len, int from_file)
{
    const char *eq = memchr(kv, '=', len);
    if (eq == NULL || !env_name_ok(kv, (size_t)(eq - kv)))
        return tg_conf_errf(cf, "invalid environment variable \"%.*s\", expected KEY=VALUE",
                            (int)len, kv);
    if (a->nenv == TG_APP_MAX_ENV)
        return tg_conf_errf(cf, "too many environment variables (at most %d)", TG_APP_MAX_ENV);
    const char *copy = tg_arena_strdup(cf->arena, (tg_str_t){kv, len});
    if (copy == NULL) return "out of memory";
    int at = from_file ? a->nenv_file++ : a->nenv;
    memmove(&a->env[at + 1], &a->env[at], (size_t)(a->nenv - at) * sizeof(a->env[0]));
    a->env[at] = copy;
    a->nenv++;
    return NULL;
}

/* env KEY=VALUE ... */
static const char *set_env(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    for (int i = 1; i <= cf->nargs; i++) {
        const char *err = env_add(cf, a, tg_conf_arg(cf, i).p, tg_conf_arg(cf, i).len, 0);
        if (err) return err;
    }
    return NULL;
}

/* env_file FILE: dotenv lines, KEY=VALUE, "export " allowed, # comments,
 * values optionally in matching quotes. Read now: a missing file is a
 * config error, and its contents are part of the app's hash. */
static const char *set_env_file(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return tg_conf_errf(cf, "cannot open env_file \"%s\": %s", path, strerror(errno));
    char line[8192], kv[8192];
    const char *err = NULL;
    for (int n = 1; err == NULL && fgets(line, sizeof(line), f); n++) {
        char *p = line, *end = line + strcspn(line, "\r\n");
        *end = '\0';
        a->hash = (a->hash ^ tg_hash64(line, (size_t)(end - line))) * 0x100000001b3ULL;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#') continue;
        if (strncmp(p, "export ", 7) == 0) p += 7;
        char *eq = strchr(p, '=');
        if (eq == NULL || !env_name_ok(p, (size_t)(eq - p))) {
            err = tg_conf_errf(cf, "env_file \"%s\" line %d: expected KEY=VALUE", path, n);
            break;
        }
        char *v = eq + 1;
        size_t vlen = strlen(v);
        if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') && v[vlen - 1] == v[0]) {
            v++;
            vlen -= 2;
        }
        int k = snprintf(kv, sizeof(kv), "%.*s=%.*s", (int)(eq - p), p, (int)vlen, v);
        err = env_add(cf, a, kv, (size_t)k, 1);
    }
    fclose(f);
    return err;
}

static const char *set_user(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    tg_str_t group = cf->nargs == 2 ? tg_conf_arg(cf, 2) : (tg_str_t){NULL, 0};
    const char *err = tg_user_resolve(cf->arena, &a->user, tg_conf_arg(cf, 1), group);
    return err ? tg_conf_errf(cf, "\"user\": %s", err) : NULL;
}

static const char *set_instances(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    tg_str_t v = tg_conf_arg(cf, 1);
    int64_t n;
    if (tg_str_eq_lit(v, "auto")) {
        cpu_set_t set;
        n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
        if (n > TG_APP_MAX_INSTANCES) n = TG_APP_MAX_INSTANCES;
    } else if (tg_parse_int(v, &n) != 0 || n < 1 || n > TG_APP_MAX_INSTANCES) {
        return tg_conf_errf(cf, "invalid \"instances\" \"%.*s\", expected 1..%d or auto",
                            TG_STR_FMT(v), TG_APP_MAX_INSTANCES);
    }
    a->instances = (int)n;
    return NULL;
}

/* listen unix:/run/tollgate/NAME-%i.sock | HOST:PORT (slot i on PORT + i;
 * "HOST:PORT+%i" says the same) */
static const char *set_listen(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    tg_str_t v = tg_conf_arg(cf, 1);
    if (v.len > 5 && memcmp(v.p, "unix:", 5) == 0) {
        const char *tpl = tg_conf_path(cf, (tg_str_t){v.p + 5, v.len - 5});
        const char *i = strstr(tpl, "%i");
        if (i == NULL || strstr(i + 2, "%i") || strchr(tpl, '%') != i)
            return tg_conf_errf(cf,
                                "\"listen %.*s\": a unix socket path needs one \"%%i\" (the "
                                "instance) and no other \"%%\"",
                                TG_STR_FMT(v));
        if (strlen(tpl) + 2 >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return tg_conf_errf(cf, "\"listen %.*s\": the socket path is too long", TG_STR_FMT(v));
        a->unix_listen = 1;
        a->path_tpl = tpl;
        return NULL;
    }
    if (v.len > 3 && memcmp(v.p + v.len - 3, "+%i", 3) == 0) v.len -= 3;
    if (memchr(v.p, ':', v.len) == NULL || tg_parse_addr(v, &a->base, &a->base_len, 0) != 0)
        return tg_conf_errf(cf,
                            "invalid \"listen\" \"%.*s\", expected HOST:PORT or "
                            "unix:PATH-%%i.sock",
                            TG_STR_FMT(tg_conf_arg(cf, 1)));
    a->unix_listen = 0;
    return NULL;
}

static const char *set_health(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    return tg_upstream_parse_health(cf, &a->health);
}

static const char *set_msec(tg_conf_t *cf, tg_msec_t *out)
{
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_parse_msec(v, out) != 0 || *out <= 0)
        return tg_conf_errf(cf, "invalid time \"%.*s\" in \"%s\"", TG_STR_FMT(v),
                            tg_conf_arg(cf, 0).p);
    return NULL;
}

static const char *set_ready_timeout(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    fold(app_of(conf), cf);
    return set_msec(cf, &app_of(conf)->ready_timeout);
}

static const char *set_stop_timeout(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    fold(app_of(conf), cf);
    return set_msec(cf, &app_of(conf)->stop_timeout);
}

static const char *set_max_memory(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_parse_size(v, &a->max_memory) != 0 || a->max_memory < (1 << 20))
        return tg_conf_errf(cf, "invalid \"max_memory\" \"%.*s\", expected a size of 1m or more",
                            TG_STR_FMT(v));
    return NULL;
}

static const char *set_restart(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "always"))
        a->restart = TG_APP_RESTART_ALWAYS;
    else if (tg_str_eq_lit(v, "on-failure"))
        a->restart = TG_APP_RESTART_ON_FAILURE;
    else if (tg_str_eq_lit(v, "no"))
        a->restart = TG_APP_RESTART_NO;
    else
        return tg_conf_errf(cf, "invalid \"restart\" \"%.*s\", expected always, on-failure or no",
                            TG_STR_FMT(v));
    return NULL;
}

/* restart_backoff MIN..MAX (or one value for both) */
static const char *set_backoff(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    tg_str_t v = tg_conf_arg(cf, 1), lo = v, hi = v;
    const char *dots = NULL;
    for (size_t i = 0; i + 1 < v.len; i++)
        if (v.p[i] == '.' && v.p[i + 1] == '.') {
            dots = v.p + i;
            break;
        }
    if (dots) {
        lo.len = (size_t)(dots - v.p);
        hi = (tg_str_t){dots + 2, v.len - lo.len - 2};
    }
    if (tg_parse_msec(lo, &a->backoff_min) != 0 || tg_parse_msec(hi, &a->backoff_max) != 0 ||
        a->backoff_min <= 0 || a->backoff_max < a->backoff_min)
        return tg_conf_errf(cf,
                            "invalid \"restart_backoff\" \"%.*s\", expected MIN..MAX such "
                            "as 1s..60s",
                            TG_STR_FMT(v));
    return NULL;
}

static const char *set_log(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_app_t *a = app_of(conf);
    fold(a, cf);
    a->log = tg_conf_path(cf, tg_conf_arg(cf, 1));
    return NULL;
}

static const char *set_server(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)cf;
    (void)d;
    (void)conf;
    return "\"server\" is not allowed in an app block: its instances are the servers (see "
           "\"instances\" and \"listen\")";
}

void tg_app_slot_addr(const tg_app_t *a, int i, struct sockaddr_storage *ss, socklen_t *len,
                      char *path, size_t size)
{
    memset(ss, 0, sizeof(*ss));
    if (a->unix_listen) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        const char *at = strstr(a->path_tpl, "%i");
        snprintf(path, size, "%.*s%d%s", (int)(at - a->path_tpl), a->path_tpl, i, at + 2);
        sun->sun_family = AF_UNIX;
        snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", path);
        *len = (socklen_t)sizeof(*sun);
        return;
    }
    memcpy(ss, &a->base, a->base_len);
    *len = a->base_len;
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (ss->ss_family == AF_INET)
        sin->sin_port = htons((uint16_t)(ntohs(sin->sin_port) + i));
    else
        sin6->sin6_port = htons((uint16_t)(ntohs(sin6->sin6_port) + i));
    if (path)
        snprintf(path, size, "%d",
                 ntohs(ss->ss_family == AF_INET ? sin->sin_port : sin6->sin6_port));
}

/* The end of the block: required directives, defaults, the shared zone and
 * one peer per slot, gated by it. */
static const char *app_finish(tg_conf_t *cf, tg_app_t *a)
{
    tg_upstream_t *u = a->upstream;
    if (a->command == NULL)
        return tg_conf_errf(cf, "app \"%.*s\" has no \"command\"", TG_STR_FMT(a->name));
    if (a->path_tpl == NULL && a->base_len == 0)
        return tg_conf_errf(cf, "app \"%.*s\" has no \"listen\"", TG_STR_FMT(a->name));
    if (a->instances == 0) a->instances = 1;
    if (!a->unix_listen) {
        int port =
            ntohs(a->base.ss_family == AF_INET ? ((struct sockaddr_in *)&a->base)->sin_port
                                               : ((struct sockaddr_in6 *)&a->base)->sin6_port);
        if (port == 0 || port + a->instances > 65535)
            return tg_conf_errf(cf,
                                "app \"%.*s\": ports %d..%d (instances and the spare) are "
                                "out of range",
                                TG_STR_FMT(a->name), port, port + a->instances);
    }
    if (a->ready_timeout == 0) a->ready_timeout = 30000;
    if (a->stop_timeout == 0) a->stop_timeout = 10000;
    if (a->backoff_min == 0) {
        a->backoff_min = 1000;
        a->backoff_max = 60000;
    }
    char zname[300];
    snprintf(zname, sizeof(zname), "app:%.*s", TG_STR_FMT(a->name));
    tg_shm_zone_t *z;
    const char *err = tg_shm_zone_add(cf, tg_str_c(zname), sizeof(tg_app_shm_t), "app", &z);
    if (err) return err;
    a->shm = z->data;
    u->npeers = a->instances + 1;
    for (int i = 0; i < u->npeers; i++) {
        tg_peer_t *p = &u->peers[i];
        char path[128], host[64] = "";
        memset(p, 0, sizeof(*p));
        tg_app_slot_addr(a, i, &p->addr, &p->addrlen, path, sizeof(path));
        /* named by its address, as any upstream server (logs, -T, stats) */
        if (!a->unix_listen)
            getnameinfo((struct sockaddr *)&p->addr, p->addrlen, host, sizeof(host), NULL, 0,
                        NI_NUMERICHOST);
        const char *name = a->unix_listen ? tg_arena_printf(cf->arena, "unix:%s", path)
                           : p->addr.ss_family == AF_INET6
                               ? tg_arena_printf(cf->arena, "[%s]:%s", host, path)
                               : tg_arena_printf(cf->arena, "%s:%s", host, path);
        if (name == NULL) return "out of memory";
        p->name = tg_str_c(name);
        p->weight = 1;
        p->max_fails = 0; /* the supervisor decides who gets traffic */
        p->fail_timeout = 10000;
        p->index = i;
        p->gate = &a->shm->slots[i].gate;
    }
    return NULL;
}

static const char *set_app_block(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_str_t name = tg_conf_arg(cf, 1);
    /* it names files, log prefixes, JSON keys and metric labels as it is */
    int ok = name.len > 0 && name.len < 64;
    for (size_t i = 0; i < name.len; i++)
        ok &= isalnum((unsigned char)name.p[i]) || name.p[i] == '_' || name.p[i] == '-' ||
              name.p[i] == '.';
    if (!ok)
        return tg_conf_errf(cf,
                            "invalid app name \"%.*s\", expected letters, digits, _ - or . "
                            "(at most 63)",
                            TG_STR_FMT(name));
    const char *err = NULL;
    tg_upstream_t *u = tg_upstream_define(cf, name, &err);
    tg_app_t *a = tg_arena_alloc(cf->arena, sizeof(*a));
    if (u == NULL || a == NULL) return u ? "out of memory" : err;
    memset(a, 0, sizeof(*a));
    a->name = u->name;
    a->upstream = u;
    a->file = cf->file;
    a->line = cf->line;
    u->app = a;
    unsigned scope = cf->scope;
    void *ctx = cf->ctx;
    void **mconf = cf->mconf;
    cf->scope = TG_SCOPE_UPSTREAM | TG_SCOPE_APP;
    cf->ctx = u;
    cf->mconf = NULL;
    tg_conf_parse_block(cf);
    cf->scope = scope;
    cf->ctx = ctx;
    cf->mconf = mconf;
    tg_app_t **tail = &cf->config->apps;
    while (*tail)
        tail = &(*tail)->next;
    *tail = a;
    return app_finish(cf, a);
}

static const tg_directive_t app_directives[] = {
    {"app", TG_SCOPE_MAIN, TG_CONF_F_BLOCK, 1, 1, set_app_block, 0},
    {"command", TG_SCOPE_APP, 0, 1, -1, set_command, 0},
    {"cwd", TG_SCOPE_APP, 0, 1, 1, set_cwd, 0},
    {"env", TG_SCOPE_APP, 0, 1, -1, set_env, 0},
    {"env_file", TG_SCOPE_APP, 0, 1, 1, set_env_file, 0},
    {"user", TG_SCOPE_APP, 0, 1, 2, set_user, 0},
    {"instances", TG_SCOPE_APP, 0, 1, 1, set_instances, 0},
    {"listen", TG_SCOPE_APP, 0, 1, 1, set_listen, 0},
    {"health_check", TG_SCOPE_APP, 0, 0, 5, set_health, 0},
    {"ready_timeout", TG_SCOPE_APP, 0, 1, 1, set_ready_timeout, 0},
    {"stop_timeout", TG_SCOPE_APP, 0, 1, 1, set_stop_timeout, 0},
    {"max_memory", TG_SCOPE_APP, 0, 1, 1, set_max_memory, 0},
    {"restart", TG_SCOPE_APP, 0, 1, 1, set_restart, 0},
    {"restart_backoff", TG_SCOPE_APP, 0, 1, 1, set_backoff, 0},
    {"log", TG_SCOPE_APP, 0, 1, 1, set_log, 0},
    {"server", TG_SCOPE_APP, 0, 0, -1, set_server, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

/* Once the whole file is read: an app without `user` runs as the workers
 * do (never as root by default), and a unix socket is given to the
 * workers' group (src/app.c), so they may connect whoever the app runs as. */
static const char *app_init_conf(tg_conf_t *cf, void *main_conf)
{
    (void)main_conf;
    tg_main_conf_t *m = cf->config->main;
    for (tg_app_t *a = cf->config->apps; a; a = a->next) {
        if (a->user.name == NULL) a->user = m->user;
        a->workers_user = &m->user;
    }
    return NULL;
}

/* The master runs the apps (src/app.c), workers see them as an upstream.
 * Before the upstream module in src/modules.c, so that its `health_check`
 * and `server` win inside an app block. */
tg_module_t tg_app_module = {
    .name = "app",
    .directives = app_directives,
    .init_conf = app_init_conf,
};
