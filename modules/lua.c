/* lua: scripts in the request's phases (docs/lua.md).
 *
 *   lua_package_path "lua/?.lua;;";      main: where require looks
 *   lua_shared_dict NAME SIZE;           main: tg.shared.NAME, in shared memory
 *   lua_memory_limit SIZE;               main: per worker state (default 128m)
 *   lua_instruction_limit N;             per hook run (default 10000000; 0 off)
 *   lua_body_max SIZE;                   tg.req.body reads up to SIZE (default 1m)
 *   lua_init_worker FILE;                main: runs once in each worker at start
 *   lua_max_timers N;                    main: pending tg.timer timers per worker (1024)
 *   lua_http_body_max SIZE;              main: tg.http.request answer bodies (default 1m)
 *   lua_jit on|off;                      main: the JIT compiler (default on)
 *   lua_rewrite FILE;  lua_access FILE;  lua_route FILE;
 *   lua_header_filter FILE;  lua_log FILE;      server or location
 *   lua_body_filter FILE;                server or location: the response body, per round
 *
 * The master reads and syntax-checks every script while it loads the config
 * (an error is a config error naming the directive's line and the script's
 * own line); workers compile the checked source when they start, so a reload
 * picks up changed scripts and a broken one never replaces running workers.
 * The per-worker runtime is src/lua_vm.c; the API is src/lua_api.c. */
#include <string.h>
#include "module.h"
#include "request.h"
#include "core.h"
#include "upstream.h"
#include "shm.h"
#include "shdict.h"
#include "lua_vm.h"
#include "redis.h"
#include "worker.h"

#define LUA_DEFAULT_INSTRUCTIONS 10000000
#define LUA_DEFAULT_MEMORY (128 * 1024 * 1024)
#define LUA_DEFAULT_BODY_MAX (1024 * 1024)
#define LUA_DEFAULT_MAX_TIMERS 1024
#define LUA_DEFAULT_HTTP_BODY_MAX (1024 * 1024)

typedef struct {
    tg_lua_main_t main; /* main scope only */
    tg_lua_script_t *scripts[TG_LUA_NPHASES];
    int64_t instruction_limit;
    int64_t body_max; /* lua_body_max */
} lua_conf_t;

tg_module_t tg_lua_module;

static void *lua_create_conf(tg_conf_t *cf)
{
    lua_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c) {
        c->instruction_limit = TG_CONF_UNSET;
        c->body_max = TG_CONF_UNSET;
        c->main.memory_limit = TG_CONF_UNSET;
        c->main.max_timers = TG_CONF_UNSET;
        c->main.http_body_max = TG_CONF_UNSET;
        c->main.jit = TG_CONF_UNSET;
    }
    return c;
}

static const char *lua_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    lua_conf_t *p = parent, *c = child;
    for (int i = 0; i < TG_LUA_NPHASES; i++)
        TG_CONF_MERGE_PTR(c->scripts[i], p->scripts[i], NULL);
    TG_CONF_MERGE(c->instruction_limit, p->instruction_limit, LUA_DEFAULT_INSTRUCTIONS);
    TG_CONF_MERGE(c->body_max, p->body_max, LUA_DEFAULT_BODY_MAX);
    return NULL;
}

static tg_lua_main_t *main_conf(tg_conf_t *cf)
{
    return &((lua_conf_t *)cf->config->mconf[tg_lua_module.index])->main;
}

static void reference_upstream(void *data, tg_str_t name)
{
    tg_conf_t *cf = data;
    /* "host:port" named literally: an implicit upstream, made at config
     * time like proxy_pass HOST:PORT makes one */
    if (memchr(name.p, ':', name.len) && tg_config_find_upstream(cf->config, name) == NULL)
        tg_upstream_reference(cf, tg_arena_str(cf->arena, name));
}

/* A name for tg.redis.connect: NULL, or an error message. */
static const char *add_redis(tg_conf_t *cf, tg_str_t name, tg_str_t url)
{
    tg_lua_main_t *m = main_conf(cf);
    for (tg_lua_redis_t *k = m->redis; k; k = k->next)
        if (tg_str_eq(k->name, name))
            return tg_str_eq(k->name, url)
                       ? NULL
                       : tg_conf_errf(cf, "duplicate lua_redis name \"%.*s\"", TG_STR_FMT(name));
    tg_lua_redis_t *lr = tg_arena_alloc(cf->arena, sizeof(*lr));
    if (lr == NULL) return "out of memory";
    const char *err = tg_redis_create(cf, url, &lr->redis);
    if (err) return err;
    lr->name = tg_arena_str(cf->arena, name);
    lr->next = m->redis;
    m->redis = lr;
    return NULL;
}

/* tg.redis.connect("redis://...") written literally: the backend is made
 * now, so its pool connects at worker start (a worker resolves no names).
 * An error is reported on the directive's line (counted in cf->nerrors). */
static void reference_redis(void *data, tg_str_t url)
{
    tg_conf_t *cf = data;
    if (!tg_str_has_caseprefix(url, "redis://") && !tg_str_has_caseprefix(url, "rediss://"))
        return; /* a lua_redis name */
    const char *err = add_redis(cf, url, url);
    if (err) tg_conf_error(cf, "%s", err);
}

/* lua_http_ca FILE: checked when the config is complete (init_conf) */
static const char *set_http_ca(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lua_conf_t *c = conf;
    if (c->main.http_ca) return "\"lua_http_ca\" directive is duplicate";
    c->main.http_ca = tg_conf_path(cf, tg_conf_arg(cf, 1));
    return c->main.http_ca ? NULL : "out of memory";
}

/* lua_redis NAME URL */
static const char *set_redis(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_str_t name = tg_conf_arg(cf, 1), url = tg_conf_arg(cf, 2);
    if (name.len == 0 || memchr(name.p, ':', name.len))
        return tg_conf_errf(cf,
                            "invalid name \"%.*s\" in \"lua_redis\", expected a name without \":\"",
                            TG_STR_FMT(name));
    return add_redis(cf, name, url);
}

/* The script at the directive's FILE argument, read and checked once per
 * config however many directives name it. NULL and *out, or an error. */
static const char *load_script(tg_conf_t *cf, tg_lua_script_t **out)
{
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1));
    tg_lua_main_t *m = main_conf(cf);
    tg_lua_script_t *s = m->scripts, **tail = &m->scripts;
    for (; s; tail = &s->next, s = s->next)
        if (strcmp(s->path, path) == 0)
            break;
    if (s == NULL) {
        if ((s = tg_arena_alloc(cf->arena, sizeof(*s))) == NULL)
            return "out of memory";
        s->path = path;
        const char *err = tg_lua_vm_check(cf->arena, path, &s->src, &s->len);
        if (err)
            return err;
        s->id = m->nscripts++;
        *tail = s;
        tg_lua_vm_call_literals(s->src, s->len, "tg.route(", reference_upstream, cf);
        tg_lua_vm_call_literals(s->src, s->len, "tg.redis.connect(", reference_redis, cf);
    }
    *out = s;
    return NULL;
}

/* lua_rewrite FILE (the phase is the directive's offset) */
static const char *set_script(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    lua_conf_t *c = conf;
    int phase = (int)d->offset;
    if (c->scripts[phase])
        return tg_conf_errf(cf, "\"%s\" directive is duplicate", d->name);
    return load_script(cf, &c->scripts[phase]);
}

static const char *set_init_worker(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lua_conf_t *c = conf;
    if (c->main.init_worker)
        return "\"lua_init_worker\" directive is duplicate";
    return load_script(cf, &c->main.init_worker);
}

/* lua_package_path's default (also where ";;" stands): the prefix's lua/
 * directory, then the installed libraries' (TG_LUA_LIB_DIR, set by the
 * Makefile from DATADIR). */
#ifndef TG_LUA_LIB_DIR
#define TG_LUA_LIB_DIR "/usr/local/share/tollgate/lua"
#endif
static char *default_path(tg_conf_t *cf)
{
    return tg_arena_printf(cf->arena, "%s;%s;" TG_LUA_LIB_DIR "/?.lua;" TG_LUA_LIB_DIR "/?/init.lua",
                           tg_conf_path(cf, TG_STR("lua/?.lua")),
                           tg_conf_path(cf, TG_STR("lua/?/init.lua")));
}

static const char *set_package_path(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lua_conf_t *c = conf;
    if (c->main.package_path.p)
        return "\"lua_package_path\" directive is duplicate";
    tg_str_t v = tg_conf_arg(cf, 1);
    char *out = "";
    const char *p = v.p, *end = v.p + v.len;
    int defaults = 0;
    while (p <= end) {
        const char *e = memchr(p, ';', (size_t)(end - p));
        if (e == NULL)
            e = end;
        tg_str_t item = {p, (size_t)(e - p)};
        if (item.len == 0) {
            if (!defaults++)
                out = tg_arena_printf(cf->arena, "%s%s%s", out, *out ? ";" : "", default_path(cf));
        } else {
            out = tg_arena_printf(cf->arena, "%s%s%s", out, *out ? ";" : "",
                                  tg_conf_path(cf, item));
        }
        if (out == NULL)
            return "out of memory";
        p = e + 1;
    }
    c->main.package_path = tg_str_c(out);
    return NULL;
}

static const char *set_shared_dict(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lua_conf_t *c = conf;
    tg_str_t name = tg_conf_arg(cf, 1);
    int64_t size;
    if (tg_parse_size(tg_conf_arg(cf, 2), &size) != 0 || size < 32 * 1024)
        return tg_conf_errf(cf, "invalid size \"%s\" in \"lua_shared_dict\", expected 32k or more",
                            cf->args[2].text.p);
    for (size_t i = 0; i < name.len; i++) {
        char ch = name.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return tg_conf_errf(cf, "invalid name \"%s\" in \"lua_shared_dict\", expected "
                                    "letters, digits and _",
                                name.p);
    }
    tg_shm_zone_t *z;
    const char *err = tg_shm_zone_add(cf, name, (size_t)size, "lua_dict", &z);
    if (err)
        return err;
    tg_lua_dict_t *ld = tg_arena_alloc(cf->arena, sizeof(*ld));
    if (ld == NULL)
        return "out of memory";
    ld->name = z->name;
    if ((ld->dict = tg_shdict_init(z->data, z->size)) == NULL)
        return "shared dict zone too small";
    ld->next = c->main.dicts;
    c->main.dicts = ld;
    return NULL;
}

static const char *set_memory_limit(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lua_conf_t *c = conf;
    if (c->main.memory_limit != TG_CONF_UNSET)
        return "\"lua_memory_limit\" directive is duplicate";
    if (tg_parse_size(tg_conf_arg(cf, 1), &c->main.memory_limit) != 0 ||
        (c->main.memory_limit != 0 && c->main.memory_limit < 1024 * 1024))
        return tg_conf_errf(cf, "invalid size \"%s\" in \"lua_memory_limit\", expected 1m or more "
                                "(0: no limit)",
                            cf->args[1].text.p);
    return NULL;
}

static const char *set_max_timers(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lua_conf_t *c = conf;
    if (c->main.max_timers != TG_CONF_UNSET)
        return "\"lua_max_timers\" directive is duplicate";
    if (tg_parse_int(tg_conf_arg(cf, 1), &c->main.max_timers) != 0 || c->main.max_timers < 0 ||
        c->main.max_timers > 1000000)
        return tg_conf_errf(cf, "invalid number \"%s\" in \"lua_max_timers\", expected 0 to "
                                "1000000",
                            cf->args[1].text.p);
    return NULL;
}

static const char *lua_init_conf(tg_conf_t *cf, void *conf)
{
    lua_conf_t *c = conf;
    if (c->main.memory_limit == TG_CONF_UNSET)
        c->main.memory_limit = LUA_DEFAULT_MEMORY;
    if (c->main.max_timers == TG_CONF_UNSET)
        c->main.max_timers = LUA_DEFAULT_MAX_TIMERS;
    if (c->main.http_body_max == TG_CONF_UNSET)
        c->main.http_body_max = LUA_DEFAULT_HTTP_BODY_MAX;
    if (c->main.jit == TG_CONF_UNSET)
        c->main.jit = 1;
    c->main.instruction_limit = c->instruction_limit == TG_CONF_UNSET ? LUA_DEFAULT_INSTRUCTIONS
                                                                       : c->instruction_limit;
    tg_lua_http_init_conf(cf, &c->main);
    if (c->main.package_path.p == NULL) {
        char *p = default_path(cf);
        if (p == NULL)
            return "out of memory";
        c->main.package_path = tg_str_c(p);
    }
    return NULL;
}

static int lua_is_active(void *conf)
{
    lua_conf_t *c = conf;
    for (int i = 0; i < TG_LUA_NPHASES; i++)
        if (c->scripts[i])
            return 1;
    return 0;
}

/* --explain and -T: the script of each Lua phase and the limits. */
static const char *lua_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    static const char *const names[TG_LUA_NPHASES] = {
        "lua_rewrite", "lua_access", "lua_route", "lua_header_filter", "lua_log",
        "lua_body_filter"};
    lua_conf_t *c = conf;
    char *s = tg_arena_printf(a, "instruction_limit=%lld body_max=%lld",
                              (long long)c->instruction_limit, (long long)c->body_max);
    for (int i = 0; s && i < TG_LUA_NPHASES; i++)
        if (c->scripts[i])
            s = tg_arena_printf(a, "%s %s=%s", s, names[i], c->scripts[i]->path);
    return s;
}

static int lua_init_worker(tg_worker_t *w)
{
    lua_conf_t *c = w->config->mconf[tg_lua_module.index];
    if (c->main.nscripts == 0)
        return 0;
    for (tg_lua_redis_t *k = c->main.redis; k; k = k->next)
        if (tg_redis_start(k->redis) != 0) return -1;
    return tg_lua_vm_init(&c->main);
}

static void lua_exit_worker(tg_worker_t *w)
{
    (void)w;
    tg_lua_vm_exit();
}

static tg_rc_t run(tg_request_t *r, void *conf, tg_lua_phase_t phase)
{
    lua_conf_t *c = conf;
    if (c->scripts[phase] == NULL)
        return TG_OK;
    return tg_lua_vm_run(r, &tg_module_ctx(r, &tg_lua_module), c->scripts[phase], phase,
                         c->instruction_limit, c->body_max);
}

static tg_rc_t lua_rewrite(tg_request_t *r, void *conf)
{
    return run(r, conf, TG_LUA_REWRITE);
}

static tg_rc_t lua_access(tg_request_t *r, void *conf)
{
    return run(r, conf, TG_LUA_ACCESS);
}

static tg_rc_t lua_route(tg_request_t *r, void *conf)
{
    return run(r, conf, TG_LUA_ROUTE);
}

static tg_rc_t lua_header_filter(tg_request_t *r, void *conf)
{
    lua_conf_t *c = conf;
    if (run(r, conf, TG_LUA_HEADER_FILTER) == TG_ERROR)
        return TG_ERROR;
    int st = r->status;
    if (c->scripts[TG_LUA_BODY_FILTER] == NULL || st < 200 || st == 204 || st == 304)
        return TG_OK;
    /* the script may change the body's length: the carrier frames it
     * (chunked to HTTP/1.1 clients); a HEAD answer says what a GET would.
     * Its bytes differ from the upstream's, so ranges and a strong ETag no
     * longer describe them. */
    tg_headers_remove(&r->resp_headers, TG_STR("Content-Length"));
    tg_headers_remove(&r->resp_headers, TG_STR("Accept-Ranges"));
    if (tg_request_etag_weaken(r) != 0)
        return TG_ERROR;
    r->resp_content_length = -1;
    r->body_filter = 1; /* file bodies come through the filter, not by sendfile */
    return TG_OK;
}

/* lua_body_filter: HEAD, 204 and 304 answers have no body and never get
 * here (tg_request_send_body), nor do tunnels */
static tg_rc_t lua_body_filter(tg_request_t *r, void *conf, tg_chain_t **io)
{
    lua_conf_t *c = conf;
    if (c->scripts[TG_LUA_BODY_FILTER] == NULL)
        return TG_OK;
    return tg_lua_vm_body_filter(r, &tg_module_ctx(r, &tg_lua_module),
                                 c->scripts[TG_LUA_BODY_FILTER], c->instruction_limit, io);
}

static void lua_log(tg_request_t *r, void *conf)
{
    run(r, conf, TG_LUA_LOG);
}

#define SCRIPT(name, phase)                                                                        \
    {name, TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, 1, set_script, phase}

static const tg_directive_t lua_directives[] = {
    {"lua_package_path", TG_SCOPE_MAIN, 0, 1, 1, set_package_path, 0},
    {"lua_shared_dict", TG_SCOPE_MAIN, 0, 2, 2, set_shared_dict, 0},
    {"lua_memory_limit", TG_SCOPE_MAIN, 0, 1, 1, set_memory_limit, 0},
    {"lua_init_worker", TG_SCOPE_MAIN, 0, 1, 1, set_init_worker, 0},
    {"lua_max_timers", TG_SCOPE_MAIN, 0, 1, 1, set_max_timers, 0},
    {"lua_redis", TG_SCOPE_MAIN, 0, 2, 2, set_redis, 0},
    {"lua_http_ca", TG_SCOPE_MAIN, 0, 1, 1, set_http_ca, 0},
    {"lua_jit", TG_SCOPE_MAIN, 0, 1, 1, tg_conf_set_flag, offsetof(lua_conf_t, main.jit)},
    {"lua_http_body_max", TG_SCOPE_MAIN, 0, 1, 1, tg_conf_set_size,
     offsetof(lua_conf_t, main.http_body_max)},
    {"lua_instruction_limit", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_num,
     offsetof(lua_conf_t, instruction_limit)},
    {"lua_body_max", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_size, offsetof(lua_conf_t, body_max)},
    SCRIPT("lua_rewrite", TG_LUA_REWRITE),
    SCRIPT("lua_access", TG_LUA_ACCESS),
    SCRIPT("lua_route", TG_LUA_ROUTE),
    SCRIPT("lua_header_filter", TG_LUA_HEADER_FILTER),
    SCRIPT("lua_log", TG_LUA_LOG),
    SCRIPT("lua_body_filter", TG_LUA_BODY_FILTER),
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_lua_module = {
    .name = "lua",
    .directives = lua_directives,
    .create_conf = lua_create_conf,
    .merge_conf = lua_merge_conf,
    .init_conf = lua_init_conf,
    .is_active = lua_is_active,
    .explain = lua_explain,
    .init_worker = lua_init_worker,
    .exit_worker = lua_exit_worker,
    .on_rewrite = lua_rewrite,
    .on_access = lua_access,
    .on_route = lua_route,
    .on_response_headers = lua_header_filter,
    .on_response_body = lua_body_filter,
    .on_log = lua_log,
};
