/* access_log PATH [combined|json] | off — one line per request, written in the
 * log phase with one write(2) on an O_APPEND descriptor, so lines from all
 * workers never interleave. Each worker opens the files itself and reopens
 * them on USR1 (log rotation).
 *
 * combined: the Apache/nginx "combined" line plus rt=$request_time and
 * urt=$upstream_response_time; json: one object per line. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ev.h>
#include "request.h"
#include "worker.h"
#include "log.h"

enum { ALOG_OFF = 0, ALOG_COMBINED, ALOG_JSON };

typedef struct alog_file_s {
    const char *path;
    int fd;
    struct alog_file_s *next;
} alog_file_t;

typedef struct {
    int format; /* TG_CONF_UNSET or ALOG_* */
    alog_file_t *file;
    alog_file_t *files; /* main scope only: every file of this config */
} alog_conf_t;

tg_module_t tg_accesslog_module;
static alog_file_t *worker_files;

static void *alog_create_conf(tg_conf_t *cf)
{
    alog_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c)
        c->format = TG_CONF_UNSET;
    return c;
}

static const char *alog_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    alog_conf_t *p = parent, *c = child;
    if (c->format == TG_CONF_UNSET) {
        c->format = p->format == TG_CONF_UNSET ? ALOG_OFF : p->format;
        c->file = p->file;
    }
    return NULL;
}

static const char *set_access_log(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    alog_conf_t *c = conf;
    tg_str_t path = tg_conf_arg(cf, 1);
    if (c->format != TG_CONF_UNSET)
        return "\"access_log\" directive is duplicate";
    if (tg_str_eq_lit(path, "off")) {
        if (cf->nargs > 1)
            return "invalid number of arguments in \"access_log\" directive";
        c->format = ALOG_OFF;
        return NULL;
    }
    c->format = ALOG_COMBINED;
    if (cf->nargs == 2) {
        tg_str_t f = tg_conf_arg(cf, 2);
        if (tg_str_eq_lit(f, "json"))
            c->format = ALOG_JSON;
        else if (!tg_str_eq_lit(f, "combined"))
            return tg_conf_errf(cf, "invalid log format \"%.*s\", expected combined or json",
                                TG_STR_FMT(f));
    }
    const char *full = tg_conf_path(cf, path);
    alog_conf_t *m = cf->config->mconf[tg_accesslog_module.index];
    for (alog_file_t *f = m->files; f; f = f->next)
        if (strcmp(f->path, full) == 0) {
            c->file = f;
            return NULL;
        }
    int fd = open(full, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return tg_conf_errf(cf, "cannot open the access log \"%s\": %s", full, strerror(errno));
    close(fd);
    alog_file_t *f = tg_arena_alloc(cf->arena, sizeof(*f));
    if (f == NULL)
        return "out of memory";
    f->path = full;
    f->fd = -1;
    f->next = m->files;
    m->files = f;
    c->file = f;
    return NULL;
}

/* ---- writing --------------------------------------------------------------- */

typedef struct {
    char *p, *end;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (n > (size_t)(o->end - o->p))
        n = (size_t)(o->end - o->p);
    memcpy(o->p, s, n);
    o->p += n;
}

static void putf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p, (size_t)(o->end - o->p), fmt, ap);
    va_end(ap);
    if (n > 0)
        o->p += (size_t)n < (size_t)(o->end - o->p) ? (size_t)n : (size_t)(o->end - o->p);
}

/* Escape for a quoted field: '"', '\' and bytes outside printable ASCII
 * become \xHH (combined) or \u00HH (json), so a client cannot forge lines. */
static void put_esc(out_t *o, tg_str_t s, int json)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s.len && o->p < o->end - 6; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            *o->p++ = (char)ch;
        } else if (json && (ch == '"' || ch == '\\')) {
            *o->p++ = '\\';
            *o->p++ = (char)ch;
        } else if (json) {
            put(o, "\\u00", 4);
            *o->p++ = hex[ch >> 4];
            *o->p++ = hex[ch & 15];
        } else {
            put(o, "\\x", 2);
            *o->p++ = hex[ch >> 4];
            *o->p++ = hex[ch & 15];
        }
    }
}

static tg_str_t header(tg_request_t *r, const char *name)
{
    tg_header_t *h = tg_headers_find(&r->headers, tg_str_c(name));
    return h ? h->value : TG_NULL_STR;
}

static void alog_log(tg_request_t *r, void *conf)
{
    alog_conf_t *c = conf;
    if (c->file == NULL || c->file->fd < 0)
        return;
    char buf[8192];
    out_t o = {buf, buf + sizeof(buf) - 1};
    double now = ev_time();
    double rt = now - r->start;
    time_t t = (time_t)now;
    struct tm tm;
    char when[64];
    localtime_r(&t, &tm);
    char urt[32] = "-";
    if (r->upstream_start > 0)
        snprintf(urt, sizeof(urt), "%.3f", r->upstream_time);
    tg_str_t ref = header(r, "Referer"), ua = header(r, "User-Agent");
    if (c->format == ALOG_JSON) {
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S%z", &tm);
        putf(&o, "{\"time\":\"%s\",\"remote_addr\":\"", when);
        put_esc(&o, r->remote_addr, 1);
        put(&o, "\",\"method\":\"", 12);
        put_esc(&o, r->method_name, 1);
        put(&o, "\",\"uri\":\"", 9);
        put_esc(&o, r->uri, 1);
        put(&o, "\",\"host\":\"", 10);
        put_esc(&o, r->host, 1);
        putf(&o, "\",\"protocol\":\"HTTP/1.%d\",\"status\":%d,\"bytes_sent\":%llu,"
                 "\"request_length\":%llu,\"request_time\":%.3f,\"upstream_addr\":\"",
             r->http_minor, r->status, (unsigned long long)r->bytes_out,
             (unsigned long long)r->bytes_in, rt < 0 ? 0 : rt);
        put_esc(&o, r->upstream_addr, 1);
        if (r->upstream_status)
            putf(&o, "\",\"upstream_status\":%d,\"upstream_response_time\":%s,\"referer\":\"",
                 r->upstream_status, urt);
        else
            put(&o, "\",\"upstream_status\":null,\"upstream_response_time\":null,\"referer\":\"",
                67);
        put_esc(&o, ref, 1);
        put(&o, "\",\"user_agent\":\"", 16);
        put_esc(&o, ua, 1);
        put(&o, "\"}", 2);
    } else {
        strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S %z", &tm);
        put_esc(&o, r->remote_addr, 0);
        putf(&o, " - - [%s] \"", when);
        put_esc(&o, r->method_name, 0);
        put(&o, " ", 1);
        put_esc(&o, r->uri, 0);
        putf(&o, " HTTP/1.%d\" %d %llu \"", r->http_minor, r->status,
             (unsigned long long)r->bytes_out);
        if (ref.len)
            put_esc(&o, ref, 0);
        else
            put(&o, "-", 1);
        put(&o, "\" \"", 3);
        if (ua.len)
            put_esc(&o, ua, 0);
        else
            put(&o, "-", 1);
        putf(&o, "\" rt=%.3f urt=%s", rt < 0 ? 0 : rt, urt);
    }
    *o.p++ = '\n';
    if (write(c->file->fd, buf, (size_t)(o.p - buf)) < 0)
        tg_log_errno(TG_LOG_ERROR, "write() to %s", c->file->path);
}

static void open_all(void)
{
    for (alog_file_t *f = worker_files; f; f = f->next) {
        int fd = open(f->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            tg_log_errno(TG_LOG_ERROR, "cannot open the access log %s", f->path);
            continue;
        }
        if (f->fd >= 0)
            close(f->fd);
        f->fd = fd;
    }
}

void tg_accesslog_reopen(void)
{
    open_all();
}

static int alog_init_worker(tg_worker_t *w)
{
    alog_conf_t *m = w->config->mconf[tg_accesslog_module.index];
    worker_files = m->files;
    open_all();
    return 0;
}

static int alog_is_active(void *conf)
{
    return ((alog_conf_t *)conf)->format != ALOG_OFF;
}

static const tg_directive_t alog_directives[] = {
    {"access_log", TG_SCOPE_HTTP, 0, 1, 2, set_access_log, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_accesslog_module = {
    .name = "access_log",
    .directives = alog_directives,
    .create_conf = alog_create_conf,
    .merge_conf = alog_merge_conf,
    .is_active = alog_is_active,
    .init_worker = alog_init_worker,
    .on_log = alog_log,
};
