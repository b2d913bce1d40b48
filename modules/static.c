/* static: files from disk, so a Node app's built front end and assets never
 * reach Node (express.static / serve-static, nginx's root and try_files).
 *
 *   root DIR; | alias DIR;        where files are (server, location; alias:
 *                                 the location prefix is replaced by DIR)
 *   index FILE ...;               for a path ending in "/" (index.html)
 *   try_files PATH ... (=CODE | @named | URI);
 *   types { TYPE EXT ...; }  default_type TYPE;   (else /etc/mime.types)
 *   expires TIME | max | off;  immutable on | off;
 *   dotfiles ignore | deny | allow;   disable_symlinks on | off;
 *   compress_static on | off;     FILE.br, FILE.zst, FILE.gz when accepted
 *   open_file_cache max=N [valid=TIME] | off;     (main)
 *
 * A content handler placed before the proxy: it answers in a location with
 * a root unless the route phase chose an upstream (proxy_pass, tg.route),
 * so an inherited root never shadows a proxied location. Responses go
 * through tg_request_send_header like any other, so security headers, CORS,
 * rate limits, Lua and stats apply; bodies go through the carrier's
 * send_file (sendfile on plain HTTP/1.1) in rounds of at most ST_ROUND bytes
 * per loop iteration, with the carrier's backpressure (on_drained), so a
 * 10 GB file costs one descriptor and no buffer on plain connections, one
 * pool buffer on TLS. docs/static.md has the behaviour case by case. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <llhttp.h>
#include "module.h"
#include "request.h"
#include "core.h"
#include "var.h"
#include "log.h"
#include "worker.h"
#include "mime.h"
#include "file_cache.h"
#include "file_io.h"
#include "accept_encoding.h"
#include "http_cond.h"

#define ST_ROUND (1024 * 1024) /* file bytes sent per loop iteration and request */
#define ST_MAX_RANGES 16       /* more: the whole file (RFC 9110 allows ignoring Range) */
#define ST_EXPIRES_MAX 315360000

enum { DOT_IGNORE = 0, DOT_DENY, DOT_ALLOW };
enum { EXP_OFF = 0, EXP_TIME, EXP_MAX };

typedef struct {
    tg_str_t path;  /* NUL-terminated */
    tg_tpl_t *tpl;  /* with variables: evaluated per request (path: its source) */
    tg_file_dir_t dir; /* without: per worker, fd -1 until opened */
    int alias;
} st_root_t;

typedef struct {
    st_root_t *root;  /* NULL: no root here */
    tg_str_t *index;  /* NULL: unset */
    int nindex;
    tg_tpl_t **try_files; /* NULL: unset; the last one is the fallback */
    tg_str_t *try_raw;
    int ntry;
    tg_mime_t *types;
    tg_str_t default_type;
    int expires; /* EXP_*, TG_CONF_UNSET */
    tg_msec_t expires_ms;
    int immutable, dotfiles, symlinks, compress_static;
    int64_t ofc_max; /* main: open_file_cache */
    tg_msec_t ofc_valid;
    int64_t threads, queue; /* main: file_threads */
} st_conf_t;

#define ST_PARKED 1 /* open_rel: the open went to a file thread; the handler returns TG_AGAIN */

/* The opens of a request that went to a file thread. The handler then runs
 * again from the start (tg_request_resume): every open before the parked
 * one was a cache hit or is in this list, and so is the parked one now. */
typedef struct st_opened_s {
    struct st_opened_s *next;
    dev_t dev;
    ino_t ino;
    tg_str_t rel;
    tg_file_t *f; /* NULL: failed with err */
    int err;
} st_opened_t;

typedef struct {
    tg_request_t *r;
    st_opened_t *opened;
    tg_file_io_t *io;  /* the open in a thread */
    tg_file_dir_t dir; /* its directory and name */
    tg_str_t rel;
} st_req_t;

typedef struct {
    tg_file_t *f;
    tg_http_range_t *ranges;
    int nranges, cur;
    int64_t off, left; /* of the current range */
    tg_str_t *heads;   /* multipart: each part's head */
    tg_str_t tail;     /* multipart: the closing boundary */
    unsigned head_sent : 1;
    unsigned finishing : 1;
    ev_timer yield;
    tg_request_t *r;
} st_ctx_t;

extern tg_module_t tg_static_module;

/* ---- config ------------------------------------------------------------------ */

static void *st_create_conf(tg_conf_t *cf)
{
    st_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->expires = c->immutable = c->dotfiles = c->symlinks = c->compress_static = TG_CONF_UNSET;
    c->ofc_max = TG_CONF_UNSET;
    c->ofc_valid = TG_CONF_UNSET;
    c->threads = c->queue = TG_CONF_UNSET;
    return c;
}

static const char *st_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    st_conf_t *p = parent, *c = child;
    TG_CONF_MERGE_PTR(c->root, p->root, NULL);
    if (c->index == NULL) {
        c->index = p->index;
        c->nindex = p->nindex;
    }
    if (c->index == NULL) {
        static tg_str_t def = TG_STR("index.html");
        c->index = &def;
        c->nindex = 1;
    }
    /* try_files is not inherited (nginx): a server's applies where no
     * location matched, in the implicit root location (st_init_conf) */
    TG_CONF_MERGE_PTR(c->types, p->types, NULL);
    TG_CONF_MERGE_STR(c->default_type, p->default_type, TG_STR("application/octet-stream"));
    if (c->expires == TG_CONF_UNSET) {
        c->expires = p->expires == TG_CONF_UNSET ? EXP_OFF : p->expires;
        c->expires_ms = p->expires_ms;
    }
    TG_CONF_MERGE(c->immutable, p->immutable, 0);
    TG_CONF_MERGE(c->dotfiles, p->dotfiles, DOT_IGNORE);
    TG_CONF_MERGE(c->symlinks, p->symlinks, TG_FILE_SYMLINKS_BENEATH);
    TG_CONF_MERGE(c->compress_static, p->compress_static, 0);
    TG_CONF_MERGE(c->ofc_max, p->ofc_max, 0);
    TG_CONF_MERGE(c->ofc_valid, p->ofc_valid, 60000);
    TG_CONF_MERGE(c->threads, p->threads, 4);
    TG_CONF_MERGE(c->queue, p->queue, 64);
    return NULL;
}

static const char *set_root(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    st_conf_t *c = conf;
    int alias = d->name[0] == 'a';
    if (c->root)
        return c->root->alias ? "\"alias\" is set already here"
                              : "\"root\" is set already here (root and alias exclude each other)";
    if (alias) {
        tg_location_t *l = cf->ctx;
        if (cf->scope != TG_SCOPE_LOCATION || l->kind == TG_LOC_REGEX || l->kind == TG_LOC_NAMED)
            return "\"alias\" needs a prefix or exact location";
    }
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, ""))
        return tg_conf_errf(cf, "invalid path \"\" in \"%s\"", d->name);
    st_root_t *rt = tg_arena_alloc(cf->arena, sizeof(*rt));
    /* relative: against the prefix (a leading variable must make it absolute) */
    const char *path = v.p[0] == '$' ? tg_arena_strdup(cf->arena, v) : tg_conf_path(cf, v);
    if (rt == NULL || path == NULL)
        return "out of memory";
    rt->path = tg_str_c(path);
    rt->dir.fd = -1;
    rt->alias = alias;
    if (memchr(v.p, '$', v.len)) {
        const char *err;
        if ((rt->tpl = tg_tpl_compile(cf, rt->path, &err)) == NULL)
            return err;
        if (!tg_tpl_has_vars(rt->tpl))
            rt->tpl = NULL;
    }
    c->root = rt;
    return NULL;
}

static const char *set_index(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    if (c->index)
        return "\"index\" is duplicate";
    if ((c->index = tg_arena_alloc(cf->arena, (size_t)cf->nargs * sizeof(tg_str_t))) == NULL)
        return "out of memory";
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v = tg_conf_arg(cf, i);
        if (v.len == 0 || memchr(v.p, '/', v.len))
            return tg_conf_errf(cf, "invalid index file \"%.*s\"", TG_STR_FMT(v));
        c->index[c->nindex++] = v;
    }
    return NULL;
}

static const char *set_try_files(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    if (c->try_files)
        return "\"try_files\" is duplicate";
    c->try_files = tg_arena_alloc(cf->arena, (size_t)cf->nargs * sizeof(tg_tpl_t *));
    c->try_raw = tg_arena_alloc(cf->arena, (size_t)cf->nargs * sizeof(tg_str_t));
    if (c->try_files == NULL || c->try_raw == NULL)
        return "out of memory";
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v = tg_conf_arg(cf, i);
        const char *err;
        int last = i == cf->nargs;
        if (last && v.len && v.p[0] == '=') {
            int64_t st;
            if (tg_parse_int((tg_str_t){v.p + 1, v.len - 1}, &st) != 0 || st < 200 || st > 599)
                return tg_conf_errf(cf, "invalid code \"%.*s\" in \"try_files\"", TG_STR_FMT(v));
        } else if (last && v.len && v.p[0] == '@') {
            /* checked in init_conf: the server must have it */
        } else if (v.len == 0 || (v.p[0] != '/' && v.p[0] != '$')) {
            return tg_conf_errf(cf, "invalid \"try_files\" argument \"%.*s\": a path starts with "
                                    "\"/\" or a variable",
                                TG_STR_FMT(v));
        }
        c->try_raw[i - 1] = v;
        if ((c->try_files[i - 1] = tg_tpl_compile(cf, v, &err)) == NULL)
            return err;
    }
    c->ntry = cf->nargs;
    return NULL;
}

/* Inside types { }: every statement is "TYPE EXT ...". */
static const char *types_entry(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    if (cf->nargs < 1)
        return tg_conf_errf(cf, "\"%s\" in \"types\" needs at least one extension",
                            cf->args[0].text.p);
    for (int i = 1; i <= cf->nargs; i++)
        if (tg_mime_add(cf->arena, c->types, cf->args[0].text, tg_conf_arg(cf, i)) != 0)
            return "out of memory";
    return NULL;
}

static const tg_directive_t types_any = {"", TG_SCOPE_HTTP, 0, 0, -1, types_entry, 0};

static const tg_directive_t *types_find(tg_conf_t *cf, const char *name, int *mindex, int *known)
{
    (void)cf;
    (void)name;
    *known = 1;
    *mindex = tg_static_module.index;
    return &types_any;
}

static const char *set_types(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    if (c->types)
        return "\"types\" is duplicate";
    if ((c->types = tg_arena_alloc(cf->arena, sizeof(*c->types))) == NULL)
        return "out of memory";
    const tg_directive_t *(*saved)(tg_conf_t *, const char *, int *, int *) = cf->find_directive;
    cf->find_directive = types_find;
    tg_conf_parse_block(cf);
    cf->find_directive = saved;
    tg_mime_finish(c->types);
    return NULL;
}

static const char *set_expires(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (c->expires != TG_CONF_UNSET)
        return "\"expires\" is duplicate";
    if (tg_str_eq_lit(v, "off")) {
        c->expires = EXP_OFF;
    } else if (tg_str_eq_lit(v, "max")) {
        c->expires = EXP_MAX;
    } else if (tg_parse_msec(v, &c->expires_ms) == 0 && c->expires_ms >= 0 &&
               c->expires_ms / 1000 <= ST_EXPIRES_MAX) {
        c->expires = EXP_TIME;
    } else {
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"expires\", expected a time, max "
                                "or off",
                            TG_STR_FMT(v));
    }
    return NULL;
}

static const char *set_dotfiles(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "ignore"))
        c->dotfiles = DOT_IGNORE;
    else if (tg_str_eq_lit(v, "deny"))
        c->dotfiles = DOT_DENY;
    else if (tg_str_eq_lit(v, "allow"))
        c->dotfiles = DOT_ALLOW;
    else
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"dotfiles\", expected ignore, deny "
                                "or allow",
                            TG_STR_FMT(v));
    return NULL;
}

static const char *set_symlinks(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "on"))
        c->symlinks = TG_FILE_SYMLINKS_OFF;
    else if (tg_str_eq_lit(v, "off"))
        c->symlinks = TG_FILE_SYMLINKS_FOLLOW;
    else
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"disable_symlinks\", expected on "
                                "or off",
                            TG_STR_FMT(v));
    return NULL;
}

static const char *set_ofc(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    if (cf->nargs == 1 && tg_str_eq_lit(tg_conf_arg(cf, 1), "off")) {
        c->ofc_max = 0;
        return NULL;
    }
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v;
        if (tg_conf_arg_kv(cf, i, "max", &v)) {
            if (tg_parse_int(v, &c->ofc_max) != 0 || c->ofc_max < 1 || c->ofc_max > 1000000)
                return tg_conf_errf(cf, "invalid max \"%.*s\" in \"open_file_cache\"",
                                    TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "valid", &v)) {
            if (tg_parse_msec(v, &c->ofc_valid) != 0 || c->ofc_valid < 0)
                return tg_conf_errf(cf, "invalid valid \"%.*s\" in \"open_file_cache\"",
                                    TG_STR_FMT(v));
        } else {
            return tg_conf_errf(cf, "invalid parameter \"%s\" in \"open_file_cache\", expected "
                                    "max=N, valid=TIME or off",
                                cf->args[i].text.p);
        }
    }
    if (c->ofc_max == TG_CONF_UNSET)
        return "\"open_file_cache\" needs max=N";
    return NULL;
}

static const char *set_threads(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    st_conf_t *c = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (c->threads != TG_CONF_UNSET)
        return "\"file_threads\" is duplicate";
    if (tg_str_eq_lit(v, "off")) {
        if (cf->nargs > 1)
            return "\"file_threads off\" takes no other parameter";
        c->threads = 0;
        return NULL;
    }
    if (tg_parse_int(v, &c->threads) != 0 || c->threads < 1 || c->threads > 64)
        return tg_conf_errf(cf, "invalid number \"%.*s\" in \"file_threads\", expected 1 to 64 "
                                "or off",
                            TG_STR_FMT(v));
    for (int i = 2; i <= cf->nargs; i++) {
        tg_str_t q;
        if (!tg_conf_arg_kv(cf, i, "queue", &q))
            return tg_conf_errf(cf, "invalid parameter \"%s\" in \"file_threads\", expected "
                                    "queue=N",
                                cf->args[i].text.p);
        if (tg_parse_int(q, &c->queue) != 0 || c->queue < 1 || c->queue > 65536)
            return tg_conf_errf(cf, "invalid queue \"%.*s\" in \"file_threads\", expected 1 to "
                                    "65536",
                                TG_STR_FMT(q));
    }
    return NULL;
}

static int st_is_active(void *conf)
{
    return ((st_conf_t *)conf)->root != NULL;
}

/* --explain and -T: where files come from and how they are served. */
static const char *st_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    static const char *const dot[] = {"ignore", "deny", "allow"};
    st_conf_t *c = conf;
    char *s = tg_arena_printf(a, "%s=%.*s index=", c->root->alias ? "alias" : "root",
                              TG_STR_FMT(c->root->path));
    for (int i = 0; s && i < c->nindex; i++)
        s = tg_arena_printf(a, "%s%s%.*s", s, i ? "," : "", TG_STR_FMT(c->index[i]));
    for (int i = 0; s && i < c->ntry; i++)
        s = tg_arena_printf(a, "%s%s%.*s", s, i ? " " : " try_files=", TG_STR_FMT(c->try_raw[i]));
    if (s)
        s = tg_arena_printf(a, "%s default_type=%.*s expires=%s", s, TG_STR_FMT(c->default_type),
                            c->expires == EXP_OFF ? "off" : c->expires == EXP_MAX ? "max" : "");
    if (s && c->expires == EXP_TIME)
        s = tg_arena_printf(a, "%s%lldms", s, (long long)c->expires_ms);
    if (s)
        s = tg_arena_printf(a, "%s dotfiles=%s compress_static=%s", s, dot[c->dotfiles],
                            c->compress_static ? "on" : "off");
    return s;
}

static const char *check_location(tg_conf_t *cf, tg_mime_t *def, tg_location_t *l)
{
    st_conf_t *c = l->mconf[tg_static_module.index];
    (void)cf;
    if (c->types == NULL)
        c->types = def;
    if (c->try_files && c->root && c->try_raw[c->ntry - 1].p[0] == '@' &&
        tg_core_find_named(l->server, c->try_raw[c->ntry - 1]) == NULL) {
        fprintf(stderr, "%s:%d: \"try_files\" names \"%.*s\", which this server has no "
                        "location for\n",
                l->file, l->line, TG_STR_FMT(c->try_raw[c->ntry - 1]));
        return TG_CONF_REPORTED;
    }
    return NULL;
}

/* The default types (/etc/mime.types, else a few built in) for every scope
 * without a types block; try_files' named locations must exist. */
static const char *st_init_conf(tg_conf_t *cf, void *main_conf)
{
    (void)main_conf;
    tg_mime_t *def = tg_arena_alloc(cf->arena, sizeof(*def));
    if (def == NULL)
        return "out of memory";
    if (tg_mime_load_file(cf->arena, def, "/etc/mime.types") != 0) {
        static const char *const builtin[][2] = {
            {"text/html", "html"}, {"text/css", "css"}, {"text/javascript", "js"},
            {"application/json", "json"}, {"image/png", "png"}, {"image/jpeg", "jpg"},
            {"image/svg+xml", "svg"}, {"text/plain", "txt"}, {"application/wasm", "wasm"},
        };
        for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
            if (tg_mime_add(cf->arena, def, tg_str_c(builtin[i][0]), tg_str_c(builtin[i][1])))
                return "out of memory";
    }
    tg_mime_finish(def);
    for (int i = 0; i < cf->config->nservers; i++) {
        tg_server_t *s = cf->config->servers[i];
        st_conf_t *sc = s->mconf[tg_static_module.index];
        st_conf_t *rc = s->root->mconf[tg_static_module.index];
        rc->try_files = sc->try_files;
        rc->try_raw = sc->try_raw;
        rc->ntry = sc->ntry;
        const char *err = check_location(cf, def, s->root);
        for (int k = 0; err == NULL && k < s->nlocations; k++)
            err = check_location(cf, def, s->locations[k]);
        if (err)
            return err;
    }
    return NULL;
}

static int st_init_worker(tg_worker_t *w)
{
    st_conf_t *c = w->config->mconf[tg_static_module.index];
    if (tg_file_io_init(w->loop, (int)c->threads, (int)c->queue) != 0)
        return -1;
    return tg_file_cache_init(c->ofc_max, c->ofc_valid);
}

static void st_exit_worker(tg_worker_t *w)
{
    (void)w;
    tg_file_io_destroy();
    tg_file_cache_destroy();
}

/* ---- small helpers --------------------------------------------------------------- */

/* Percent-encode a decoded path for a Location header. */
static tg_str_t encode_path(tg_arena_t *a, tg_str_t p)
{
    static const char hex[] = "0123456789ABCDEF";
    char *o = tg_arena_alloc_nz(a, p.len * 3 + 1);
    if (o == NULL)
        return TG_NULL_STR;
    size_t n = 0;
    for (size_t i = 0; i < p.len; i++) {
        unsigned char ch = (unsigned char)p.p[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~/!$&'()*+,;=:@", ch)) {
            o[n++] = (char)ch;
        } else {
            o[n++] = '%';
            o[n++] = hex[ch >> 4];
            o[n++] = hex[ch & 15];
        }
    }
    return (tg_str_t){o, n};
}

static int add_header(tg_request_t *r, const char *name, tg_str_t value)
{
    return tg_headers_add(r->arena, &r->resp_headers, tg_str_c(name), value);
}

static int add_headerf(tg_request_t *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_headerf(tg_request_t *r, const char *name, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -1;
    tg_str_t v = tg_arena_str(r->arena, (tg_str_t){buf, (size_t)n});
    return v.p ? add_header(r, name, v) : -1;
}

/* ---- finding the file ------------------------------------------------------------ */

static tg_file_t *open_in(tg_request_t *r, const tg_file_dir_t *dir, tg_str_t rel,
                          tg_file_symlinks_t links, int *status);

/* The directory the request's files are under: a root without variables
 * is opened once per worker; one with variables is evaluated per request,
 * must name an absolute path without "." or ".." segments (a variable such
 * as $host must not lead elsewhere), and is opened through the cache like
 * a file (so in a file thread when it would block). 0, or a status: 404,
 * 500, ST_PARKED. */
static int root_dir(tg_request_t *r, st_conf_t *c, tg_file_dir_t *out)
{
    st_root_t *rt = c->root;
    if (rt->tpl == NULL) {
        if (rt->dir.fd < 0) {
            struct stat st;
            int fd = open(rt->path.p, O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0 || fstat(fd, &st) != 0) {
                tg_log_errno(TG_LOG_ERROR, "cannot open the static root \"%s\"", rt->path.p);
                if (fd >= 0)
                    close(fd);
                return 404;
            }
            rt->dir = (tg_file_dir_t){fd, st.st_dev, st.st_ino};
        }
        *out = rt->dir;
        return 0;
    }
    tg_str_t p;
    if (tg_tpl_eval(r, rt->tpl, &p) != 0)
        return 500;
    int bad = p.len == 0 || p.p[0] != '/' || memchr(p.p, '\0', p.len) != NULL;
    for (size_t i = 0; !bad && i < p.len; i++)
        if (p.p[i] == '.' && p.p[i - 1] == '/' &&
            (i + 1 == p.len || p.p[i + 1] == '/' ||
             (p.p[i + 1] == '.' && (i + 2 == p.len || p.p[i + 2] == '/'))))
            bad = 1;
    if (bad) {
        tg_log(TG_LOG_INFO, "request %u: the %s \"%.*s\" is not an absolute path without dot "
                            "segments",
               r->id, rt->alias ? "alias" : "root", TG_STR_FMT(p));
        return 404;
    }
    static const tg_file_dir_t cwd = {AT_FDCWD, 0, 0}; /* absolute names: no directory */
    int st;
    tg_file_t *f = open_in(r, &cwd, p, TG_FILE_SYMLINKS_FOLLOW, &st);
    if (f == NULL)
        return st == ST_PARKED || st == 500 ? st : 404;
    if (!S_ISDIR(f->st.st_mode))
        return 404;
    *out = (tg_file_dir_t){f->fd, f->st.st_dev, f->st.st_ino};
    return 0;
}

/* What a URI path refers to under the root: the relative name (no leading
 * '/'). 0; 404 (alias: outside the location; dot file ignored), 403 (a
 * backslash; dot file denied). */
static int map_path(tg_request_t *r, st_conf_t *c, tg_str_t uri, tg_str_t *rel)
{
    tg_str_t p = uri;
    if (c->root->alias) {
        tg_str_t pre = r->loc->path;
        if (p.len < pre.len || memcmp(p.p, pre.p, pre.len) != 0)
            return 404;
        p.p += pre.len;
        p.len -= pre.len;
    }
    if (memchr(uri.p, '\\', uri.len) || memchr(uri.p, '\0', uri.len))
        return 403; /* never a name on a POSIX disk we mean to serve: refused as serve-static */
    for (size_t i = 0; i < p.len; i++) {
        if (p.p[i] == '.' && (i == 0 || p.p[i - 1] == '/')) {
            /* a segment starting with '.' (".." cannot remain: uri.c resolved it) */
            if (i + 1 < p.len && p.p[i + 1] == '.' && (i + 2 == p.len || p.p[i + 2] == '/'))
                return 403;
            if (c->dotfiles == DOT_DENY)
                return 403;
            if (c->dotfiles == DOT_IGNORE)
                return 404;
        }
    }
    while (p.len && p.p[0] == '/') {
        p.p++;
        p.len--;
    }
    *rel = p;
    return 0;
}

static void st_req_release(void *p)
{
    st_req_t *q = p;
    if (q->io)
        tg_file_io_cancel(q->io); /* the pool closes what it opens */
    q->io = NULL;
}

/* An open done in a file thread: remembered, and the handler runs again. */
static void open_done(void *data, tg_file_io_t *io)
{
    st_req_t *q = data;
    tg_request_t *r = q->r;
    q->io = NULL;
    st_opened_t *o = tg_arena_alloc(r->arena, sizeof(*o));
    tg_file_t *f = tg_file_adopt(r->arena, &q->dir, q->rel, io);
    int err = errno;
    if (f && (o == NULL || tg_arena_on_reset(r->arena, tg_file_release, f) != 0)) {
        tg_file_release(f);
        f = NULL;
        err = ENOMEM;
    }
    if (o == NULL) {
        tg_request_error(r, 500);
        return;
    }
    *o = (st_opened_t){q->opened, q->dir.dev, q->dir.ino, q->rel, f, err};
    q->opened = o;
    tg_request_resume(r);
}

/* Open `rel` under `dir`, without blocking: a file thread does what would
 * block (then *status is ST_PARKED). errno to status: missing -> 404,
 * refused -> 403. */
static tg_file_t *open_in(tg_request_t *r, const tg_file_dir_t *dir, tg_str_t rel,
                          tg_file_symlinks_t links, int *status)
{
    st_req_t *q = r->ctx[tg_static_module.index];
    tg_file_t *f = NULL;
    int done = 0;
    for (st_opened_t *o = q ? q->opened : NULL; o; o = o->next)
        if (o->dev == dir->dev && o->ino == dir->ino && tg_str_eq(o->rel, rel)) {
            if ((f = o->f) == NULL)
                errno = o->err;
            done = 1;
            break;
        }
    if (!done) {
        f = tg_file_open(r->arena, dir, rel, links, TG_FILE_NOWAIT);
        if (f && tg_arena_on_reset(r->arena, tg_file_release, f) != 0) {
            tg_file_release(f);
            *status = 500;
            return NULL;
        }
    }
    if (f == NULL && !done && errno == EAGAIN && tg_file_io_enabled()) {
        if (q == NULL) {
            if ((q = tg_arena_alloc(r->arena, sizeof(*q))) == NULL ||
                tg_arena_on_reset(r->arena, st_req_release, q) != 0) {
                *status = 500;
                return NULL;
            }
            q->r = r;
            r->ctx[tg_static_module.index] = q;
        }
        q->dir = *dir;
        if ((q->rel = tg_arena_str(r->arena, rel)).p == NULL) {
            *status = 500;
            return NULL;
        }
        if ((q->io = tg_file_open_start(dir, rel, links, open_done, q)) != NULL) {
            tg_log(TG_LOG_DEBUG, "request %u: \"%.*s\" opened in a thread", r->id,
                   TG_STR_FMT(rel));
            *status = ST_PARKED;
            return NULL;
        }
        /* every slot busy (or a very long name): on the loop */
        f = tg_file_open(r->arena, dir, rel, links, 0);
        if (f && tg_arena_on_reset(r->arena, tg_file_release, f) != 0) {
            tg_file_release(f);
            *status = 500;
            return NULL;
        }
    }
    if (f)
        return f;
    switch (errno) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        *status = 404;
        break;
    case ELOOP:
    case EXDEV:
    case EACCES:
    case EPERM:
        tg_log(TG_LOG_INFO, "request %u: \"%.*s\" refused: %s", r->id, TG_STR_FMT(rel),
               strerror(errno));
        *status = errno == EPERM || errno == EACCES ? 403 : 404;
        break;
    default:
        tg_log_errno(TG_LOG_ERROR, "request %u: cannot open \"%.*s\"", r->id, TG_STR_FMT(rel));
        *status = 500;
    }
    return NULL;
}

/* A name under the request's root (see open_in). */
static tg_file_t *open_rel(tg_request_t *r, st_conf_t *c, tg_str_t rel, int *status)
{
    tg_file_dir_t dir;
    if ((*status = root_dir(r, c, &dir)) != 0)
        return NULL;
    return open_in(r, &dir, rel, (tg_file_symlinks_t)c->symlinks, status);
}

static tg_str_t join(tg_arena_t *a, tg_str_t x, tg_str_t y)
{
    char *p = tg_arena_alloc_nz(a, x.len + y.len + 1);
    if (p == NULL)
        return TG_NULL_STR;
    memcpy(p, x.p, x.len);
    memcpy(p + x.len, y.p, y.len);
    p[x.len + y.len] = '\0';
    return (tg_str_t){p, x.len + y.len};
}

/* ---- the response ------------------------------------------------------------------ */

static void st_send(tg_request_t *r);

static void st_on_drained(tg_request_t *r)
{
    st_send(r);
}

static void st_on_abort(tg_request_t *r)
{
    st_ctx_t *x = r->handler_ctx;
    if (x)
        ev_timer_stop(tg_worker->loop, &x->yield);
}

static const tg_handler_events_t st_events = {
    .on_drained = st_on_drained,
    .on_abort = st_on_abort,
};

static void st_yield_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    st_ctx_t *x = w->data;
    st_send(x->r);
}

/* Send file bytes in rounds: at most ST_ROUND per loop iteration, then the
 * other connections get their turn (a zero timer); a full connection waits
 * for on_drained. */
static void st_send(tg_request_t *r)
{
    st_ctx_t *x = r->handler_ctx;
    size_t budget = ST_ROUND;
    if (x->finishing) {
        tg_request_finalize(r, 0);
        return;
    }
    for (;;) {
        if (x->left == 0) {
            if (x->cur + 1 < x->nranges) {
                x->cur++;
                x->off = x->ranges[x->cur].start;
                x->left = x->ranges[x->cur].end - x->off + 1;
                x->head_sent = 0;
                continue;
            }
            tg_spans_t s = {0};
            if (x->tail.len)
                tg_spans_add(&s, x->tail.p, x->tail.len);
            x->finishing = 1;
            if (tg_request_send_body(r, &s, 1) != 0) {
                tg_request_finalize(r, 1);
                return;
            }
            int rc = tg_request_flush(r);
            if (rc != 0)
                tg_request_finalize(r, rc < 0);
            return; /* else on_drained finalizes */
        }
        if (x->heads && !x->head_sent) {
            tg_spans_t s = {0};
            tg_spans_add(&s, x->heads[x->cur].p, x->heads[x->cur].len);
            if (tg_request_send_body(r, &s, 0) != 0) {
                tg_request_finalize(r, 1);
                return;
            }
            x->head_sent = 1;
        }
        if (budget == 0) {
            ev_timer_set(&x->yield, 0., 0.);
            ev_timer_start(tg_worker->loop, &x->yield);
            return;
        }
        size_t want = x->left < (int64_t)budget ? (size_t)x->left : budget, sent = 0;
        int rc = tg_request_send_file(r, x->f->fd, x->off, want, &sent);
        x->off += (int64_t)sent;
        x->left -= (int64_t)sent;
        budget -= sent;
        if (rc < 0) {
            tg_request_finalize(r, 1);
            return;
        }
        if (rc == 0)
            return;
    }
}

/* Which precompressed variant: br, zstd, gzip by the client's weights (the
 * server's order between equal ones) among those on disk. *parked: an open
 * went to a file thread. */
static tg_file_t *variant(tg_request_t *r, st_conf_t *c, tg_str_t rel, const char **coding,
                          int *parked)
{
    static const tg_str_t codings[] = {TG_STR("br"), TG_STR("zstd"), TG_STR("gzip")};
    static const tg_str_t exts[] = {TG_STR(".br"), TG_STR(".zst"), TG_STR(".gz")};
    tg_accept_encoding_t ae;
    tg_accept_encoding_init(&ae, codings, 3);
    int any = 0;
    for (uint32_t i = 0; i < r->headers.n; i++)
        if (tg_str_caseeq_lit(r->headers.h[i].name, "Accept-Encoding")) {
            tg_accept_encoding_add(&ae, r->headers.h[i].value);
            any = 1;
        }
    if (!any)
        return NULL;
    int order[3] = {0, 1, 2}, w[3];
    for (int i = 0; i < 3; i++)
        w[i] = ae.q[i] >= 0 ? ae.q[i] : (ae.any >= 0 ? ae.any : 0);
    for (int i = 1; i < 3; i++)
        for (int k = i; k > 0 && w[order[k]] > w[order[k - 1]]; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    int id_w = ae.identity >= 0 ? ae.identity : (ae.any >= 0 ? ae.any : 1);
    for (int i = 0; i < 3; i++) {
        int k = order[i];
        if (w[k] <= 0 || w[k] < id_w)
            continue;
        int st = 404;
        tg_str_t name = join(r->arena, rel, exts[k]);
        tg_file_t *f = name.p ? open_rel(r, c, name, &st) : NULL;
        if (f && S_ISREG(f->st.st_mode)) {
            *coding = codings[k].p;
            return f;
        }
        if (f == NULL && st == ST_PARKED) {
            *parked = 1;
            return NULL;
        }
    }
    return NULL;
}

static int cache_headers(tg_request_t *r, st_conf_t *c)
{
    if (c->immutable)
        return add_header(r, "Cache-Control", TG_STR("public, max-age=31536000, immutable"));
    if (c->expires == EXP_OFF)
        return 0;
    char d[40];
    int64_t secs = c->expires == EXP_MAX ? ST_EXPIRES_MAX : c->expires_ms / 1000;
    if (c->expires == EXP_MAX)
        strcpy(d, "Thu, 31 Dec 2037 23:55:55 GMT");
    else
        tg_fmt_http_date(d, (time_t)ev_now(tg_worker->loop) + (time_t)secs);
    if (add_headerf(r, "Expires", "%s", d) != 0)
        return -1;
    return add_headerf(r, "Cache-Control", "max-age=%lld", (long long)secs);
}

/* Serve the regular file f for URI path `path`. */
static tg_rc_t serve_file(tg_request_t *r, st_conf_t *c, tg_str_t path, tg_str_t rel,
                          tg_file_t *f)
{
    const char *coding = NULL;
    if (c->compress_static) {
        int parked = 0;
        tg_file_t *v = variant(r, c, rel, &coding, &parked);
        if (parked)
            return TG_AGAIN; /* runs again when the open is done */
        if (v)
            f = v;
        if (tg_request_vary_add(r, "Accept-Encoding") != 0)
            return TG_ERROR;
    }
    int64_t len = (int64_t)f->st.st_size;
    time_t mtime = f->st.st_mtim.tv_sec;
    char lm[40], et[48];
    tg_fmt_http_date(lm, mtime);
    size_t en = 0;
    et[en++] = '"';
    en += tg_fmt_hex(et + en, (uint64_t)mtime);
    et[en++] = '-';
    en += tg_fmt_hex(et + en, (uint64_t)len);
    et[en++] = '"';
    tg_str_t etag = tg_arena_str(r->arena, (tg_str_t){et, en});
    tg_str_t lms = tg_arena_str(r->arena, tg_str_c(lm));
    if (etag.p == NULL || lms.p == NULL)
        return TG_ERROR;

    tg_str_t type = tg_mime_find(c->types, path);
    if (type.p == NULL)
        type = c->default_type;
    if (tg_mime_is_text(type) && !memchr(type.p, ';', type.len)) {
        char *t = tg_arena_printf(r->arena, "%.*s; charset=utf-8", TG_STR_FMT(type));
        if (t == NULL)
            return TG_ERROR;
        type = tg_str_c(t);
    }
    if (add_header(r, "Last-Modified", lms) != 0 || add_header(r, "ETag", etag) != 0 ||
        cache_headers(r, c) != 0)
        return TG_ERROR;

    int cond = tg_http_preconditions(&r->headers, etag, mtime);
    if (cond == 304) {
        r->status = 304;
        r->resp_content_length = 0;
        return TG_DONE;
    }
    if (cond == 412) {
        r->resp_headers.n = 0;
        return tg_request_respond(r, 412, "text/plain", TG_STR("412 Precondition Failed\n"))
                   ? TG_ERROR
                   : TG_DONE;
    }
    if (add_header(r, "Accept-Ranges", TG_STR("bytes")) != 0 ||
        (coding && add_header(r, "Content-Encoding", tg_str_c(coding)) != 0))
        return TG_ERROR;

    st_ctx_t *x = tg_arena_alloc(r->arena, sizeof(*x));
    if (x == NULL)
        return TG_ERROR;
    x->f = f;
    x->r = r;
    ev_timer_init(&x->yield, st_yield_cb, 0., 0.);
    x->yield.data = x;
    int n = -1;
    tg_header_t *range = tg_headers_find(&r->headers, TG_STR("Range"));
    tg_header_t *ifr = tg_headers_find(&r->headers, TG_STR("If-Range"));
    if (range && r->method == HTTP_GET &&
        (ifr == NULL || tg_str_eq(tg_str_trim(ifr->value), etag) ||
         tg_str_eq(tg_str_trim(ifr->value), lms))) {
        if ((x->ranges = tg_arena_alloc(r->arena, ST_MAX_RANGES * sizeof(tg_http_range_t))) == NULL)
            return TG_ERROR;
        n = tg_http_ranges_parse(range->value, len, x->ranges, ST_MAX_RANGES);
    }
    r->status = 200;
    if (n == 0) {
        if (add_headerf(r, "Content-Range", "bytes */%lld", (long long)len) != 0 ||
            tg_request_respond(r, 416, "text/plain", TG_STR("416 Range Not Satisfiable\n")))
            return TG_ERROR;
        return TG_DONE;
    }
    if (n < 0) {
        x->nranges = 1;
        x->off = 0;
        x->left = len;
        if (add_header(r, "Content-Type", type) != 0)
            return TG_ERROR;
        r->resp_content_length = len;
    } else if (n == 1) {
        r->status = 206;
        x->nranges = 1;
        x->off = x->ranges[0].start;
        x->left = x->ranges[0].end - x->off + 1;
        if (add_header(r, "Content-Type", type) != 0 ||
            add_headerf(r, "Content-Range", "bytes %lld-%lld/%lld", (long long)x->ranges[0].start,
                        (long long)x->ranges[0].end, (long long)len) != 0)
            return TG_ERROR;
        r->resp_content_length = x->left;
    } else {
        /* multipart/byteranges: each part's head, then its bytes; the length
         * is known before the first byte goes */
        uint64_t hv = tg_hash64(&r->id, sizeof(r->id)) ^ (uint64_t)(ev_now(tg_worker->loop) * 1e6);
        char b[24];
        b[tg_fmt_hex(b, hv)] = '\0';
        if ((x->heads = tg_arena_alloc(r->arena, (size_t)n * sizeof(tg_str_t))) == NULL ||
            add_headerf(r, "Content-Type", "multipart/byteranges; boundary=%s", b) != 0)
            return TG_ERROR;
        int64_t total = 0;
        for (int i = 0; i < n; i++) {
            char *h = tg_arena_printf(r->arena,
                                      "%s--%s\r\nContent-Type: %.*s\r\nContent-Range: bytes "
                                      "%lld-%lld/%lld\r\n\r\n",
                                      i ? "\r\n" : "", b, TG_STR_FMT(type),
                                      (long long)x->ranges[i].start, (long long)x->ranges[i].end,
                                      (long long)len);
            if (h == NULL)
                return TG_ERROR;
            x->heads[i] = tg_str_c(h);
            total += (int64_t)x->heads[i].len + x->ranges[i].end - x->ranges[i].start + 1;
        }
        char *t = tg_arena_printf(r->arena, "\r\n--%s--\r\n", b);
        if (t == NULL)
            return TG_ERROR;
        x->tail = tg_str_c(t);
        total += (int64_t)x->tail.len;
        r->status = 206;
        x->nranges = n;
        x->off = x->ranges[0].start;
        x->left = x->ranges[0].end - x->off + 1;
        r->resp_content_length = total;
    }
    if (tg_request_send_header(r) != 0) {
        tg_request_finalize(r, 1);
        return TG_AGAIN;
    }
    r->handler = &st_events;
    r->handler_ctx = x;
    if (r->resp_no_body) {
        x->left = 0;
        x->cur = x->nranges;
        x->tail = TG_NULL_STR;
    }
    st_send(r);
    return TG_AGAIN;
}

/* A directory: 301 to the slash form, else the first index file there. */
static tg_rc_t serve_dir(tg_request_t *r, st_conf_t *c, tg_str_t path, tg_str_t rel)
{
    if (path.len == 0 || path.p[path.len - 1] != '/') {
        tg_str_t loc = encode_path(r->arena, path);
        char *v = loc.p ? tg_arena_printf(r->arena, "%.*s/%s%.*s", TG_STR_FMT(loc),
                                          r->args.len ? "?" : "", TG_STR_FMT(r->args))
                        : NULL;
        if (v == NULL || add_header(r, "Location", tg_str_c(v)) != 0 ||
            tg_request_respond(r, 301, "text/plain", TG_STR("301 Moved Permanently\n")) != 0)
            return TG_ERROR;
        return TG_DONE;
    }
    for (int i = 0; i < c->nindex; i++) {
        int st;
        tg_str_t name = join(r->arena, rel, c->index[i]);
        if (name.p == NULL)
            return TG_ERROR;
        tg_file_t *f = open_rel(r, c, name, &st);
        if (f && S_ISREG(f->st.st_mode))
            return serve_file(r, c, join(r->arena, path, c->index[i]), name, f);
        if (f == NULL && st == 500)
            return TG_ERROR;
        if (f == NULL && st == ST_PARKED)
            return TG_AGAIN; /* runs again when the open is done */
    }
    tg_request_error(r, 404); /* no listing, as serve-static */
    return TG_AGAIN;
}

static tg_rc_t method_not_allowed(tg_request_t *r)
{
    if (add_header(r, "Allow", TG_STR("GET, HEAD")) != 0 ||
        tg_request_respond(r, 405, "text/plain", TG_STR("405 Method Not Allowed\n")) != 0)
        return TG_ERROR;
    return TG_DONE;
}

/* try_files: the first argument naming an existing file (or, ending in
 * "/", a directory) is served; otherwise the last one: =CODE, @named or a
 * URI, through an internal redirect. */
static tg_rc_t try_files(tg_request_t *r, st_conf_t *c)
{
    for (int i = 0; i < c->ntry - 1; i++) {
        tg_str_t u, rel;
        if (tg_tpl_eval(r, c->try_files[i], &u) != 0)
            return TG_ERROR;
        int dir = u.len && u.p[u.len - 1] == '/';
        if (u.len == 0 || u.p[0] != '/' || map_path(r, c, u, &rel) != 0)
            continue;
        int st;
        tg_file_t *f = open_rel(r, c, rel, &st);
        if (f == NULL) {
            if (st == 500)
                return TG_ERROR;
            if (st == ST_PARKED)
                return TG_AGAIN;
            continue;
        }
        if (dir ? !S_ISDIR(f->st.st_mode) : !S_ISREG(f->st.st_mode))
            continue;
        if (r->method != HTTP_GET && r->method != HTTP_HEAD)
            return method_not_allowed(r);
        return dir ? serve_dir(r, c, u, rel) : serve_file(r, c, u, rel, f);
    }
    tg_str_t last = c->try_raw[c->ntry - 1];
    if (last.p[0] == '=') {
        int64_t st = 404;
        tg_parse_int((tg_str_t){last.p + 1, last.len - 1}, &st);
        tg_request_error(r, (int)st);
        return TG_AGAIN;
    }
    if (last.p[0] == '@') {
        tg_request_internal_redirect(r, TG_NULL_STR, tg_core_find_named(r->server, last));
        return TG_AGAIN;
    }
    tg_str_t u;
    if (tg_tpl_eval(r, c->try_files[c->ntry - 1], &u) != 0)
        return TG_ERROR;
    tg_request_internal_redirect(r, u, NULL);
    return TG_AGAIN;
}

static tg_rc_t st_content(tg_request_t *r, void *conf)
{
    st_conf_t *c = conf;
    if (r->upstream)
        return TG_OK; /* proxy_pass or tg.route: the proxy's */
    if (c->try_files)
        return try_files(r, c);
    if (r->method != HTTP_GET && r->method != HTTP_HEAD)
        return method_not_allowed(r);
    tg_str_t rel;
    int st = map_path(r, c, r->path, &rel);
    if (st) {
        tg_request_error(r, st);
        return TG_AGAIN;
    }
    tg_file_t *f = open_rel(r, c, rel, &st);
    if (f == NULL) {
        if (st != ST_PARKED) /* else it runs again when the open is done */
            tg_request_error(r, st);
        return TG_AGAIN;
    }
    if (S_ISDIR(f->st.st_mode))
        return serve_dir(r, c, r->path, rel);
    if (r->path.len && r->path.p[r->path.len - 1] == '/') {
        tg_request_error(r, 404); /* "/file.txt/" */
        return TG_AGAIN;
    }
    return serve_file(r, c, r->path, rel, f);
}

static const tg_directive_t st_directives[] = {
    {"root", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, 1, set_root, 0},
    {"alias", TG_SCOPE_LOCATION, 0, 1, 1, set_root, 0},
    {"index", TG_SCOPE_HTTP, 0, 1, -1, set_index, 0},
    {"try_files", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 2, -1, set_try_files, 0},
    {"types", TG_SCOPE_HTTP, TG_CONF_F_BLOCK, 0, 0, set_types, 0},
    {"default_type", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_str, offsetof(st_conf_t, default_type)},
    {"expires", TG_SCOPE_HTTP, 0, 1, 1, set_expires, 0},
    {"immutable", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag, offsetof(st_conf_t, immutable)},
    {"dotfiles", TG_SCOPE_HTTP, 0, 1, 1, set_dotfiles, 0},
    {"disable_symlinks", TG_SCOPE_HTTP, 0, 1, 1, set_symlinks, 0},
    {"compress_static", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(st_conf_t, compress_static)},
    {"open_file_cache", TG_SCOPE_MAIN, 0, 1, 2, set_ofc, 0},
    {"file_threads", TG_SCOPE_MAIN, 0, 1, 2, set_threads, 0},
    {NULL},
};

tg_module_t tg_static_module = {
    .name = "static",
    .directives = st_directives,
    .create_conf = st_create_conf,
    .merge_conf = st_merge_conf,
    .init_conf = st_init_conf,
    .is_active = st_is_active,
    .explain = st_explain,
    .init_worker = st_init_worker,
    .exit_worker = st_exit_worker,
    .on_content = st_content,
};
