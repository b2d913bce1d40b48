/* access_log PATH [combined|json|NAME] [buffer=SIZE] [flush=TIME] | off, and
 * log_format NAME [escape=default|json] STRING...: one line per request,
 * formatted in the log phase.
 *
 * Lines never split or interleave between workers: every write(2) goes to an
 * O_APPEND descriptor and carries whole lines only. Unbuffered, that is one
 * write per line. With buffer=, each worker gathers a file's lines in its own
 * buffer of SIZE and writes them in one call when the next line would not
 * fit, when the oldest line is older than flush= (a timer armed only while
 * the buffer holds something), on USR1 (before reopening) and when the
 * worker exits (graceful or fast stop, and so on reload); a line longer than
 * the buffer goes out directly, after what was buffered.
 *
 * combined: the Apache/nginx "combined" line plus rt=$request_time and
 * urt=$upstream_response_time; json: one object per line; NAME: a
 * log_format template whose variable values are escaped so that a client
 * cannot forge lines. Each worker opens the files itself. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ev.h>
#include "accesslog.h"
#include "request.h"
#include "worker.h"
#include "var.h"
#include "log.h"

enum { ALOG_OFF = 0, ALOG_COMBINED, ALOG_JSON, ALOG_CUSTOM };

#define ALOG_LINE_MAX 8192              /* longer lines are cut */
#define ALOG_BUFFER_DEFAULT (64 * 1024) /* flush= without buffer= */
#define ALOG_BUFFER_MAX (16 * 1024 * 1024)

typedef struct alog_format_s {
    tg_str_t name;
    tg_tpl_t *tpl;
    int json; /* escape=json: JSON string escapes, unset variables empty */
    struct alog_format_s *next;
} alog_format_t;

typedef struct alog_file_s {
    const char *path;
    int fd;           /* the worker's descriptor, -1 when not open */
    size_t size;      /* buffer=, 0: one write per line */
    tg_msec_t flush;  /* flush=, 0: no timer (written when full or at exit) */
    char *buf;        /* the worker's buffer (size bytes, malloc at worker start) */
    size_t len;       /* bytes buffered: whole lines only */
    ev_timer timer;   /* runs while len > 0 and flush > 0 */
    struct alog_file_s *next;
} alog_file_t;

typedef struct {
    int format; /* TG_CONF_UNSET or ALOG_* */
    alog_format_t *custom; /* ALOG_CUSTOM */
    alog_file_t *file;
    alog_file_t *files;     /* main scope only: every file of this config */
    alog_format_t *formats; /* main scope only: log_format definitions */
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
        c->custom = p->custom;
        c->file = p->file;
    }
    return NULL;
}

static alog_conf_t *main_conf(tg_conf_t *cf)
{
    return cf->config->mconf[tg_accesslog_module.index];
}

static const char *set_log_format(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    alog_conf_t *m = main_conf(cf);
    tg_str_t name = tg_conf_arg(cf, 1), v;
    if (tg_str_eq_lit(name, "combined") || tg_str_eq_lit(name, "json") ||
        tg_str_eq_lit(name, "off"))
        return tg_conf_errf(cf, "\"log_format\": \"%.*s\" is a built-in format", TG_STR_FMT(name));
    for (alog_format_t *f = m->formats; f; f = f->next)
        if (tg_str_eq(f->name, name))
            return tg_conf_errf(cf, "\"log_format\": duplicate format \"%.*s\"", TG_STR_FMT(name));
    alog_format_t *f = tg_arena_alloc(cf->arena, sizeof(*f));
    if (f == NULL)
        return "out of memory";
    int first = 2;
    if (tg_conf_arg_kv(cf, 2, "escape", &v)) {
        if (tg_str_eq_lit(v, "json"))
            f->json = 1;
        else if (!tg_str_eq_lit(v, "default"))
            return tg_conf_errf(cf, "\"log_format\": invalid escape \"%.*s\", expected default or json",
                                TG_STR_FMT(v));
        first = 3;
    }
    if (first > cf->nargs)
        return "\"log_format\": no format string";
    /* several strings are one format, as in nginx, so long ones can be split */
    size_t total = 0;
    for (int i = first; i <= cf->nargs; i++)
        total += tg_conf_arg(cf, i).len;
    char *src = tg_arena_alloc_nz(cf->arena, total + 1), *w = src;
    if (src == NULL)
        return "out of memory";
    for (int i = first; i <= cf->nargs; i++) {
        tg_str_t a = tg_conf_arg(cf, i);
        if (a.len)
            memcpy(w, a.p, a.len);
        w += a.len;
    }
    const char *err = NULL;
    f->tpl = tg_tpl_compile(cf, (tg_str_t){src, total}, &err);
    if (f->tpl == NULL)
        return err;
    f->name = tg_arena_str(cf->arena, name);
    f->next = m->formats;
    m->formats = f;
    return NULL;
}

static const char *set_access_log(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    alog_conf_t *c = conf;
    tg_str_t path = tg_conf_arg(cf, 1), v;
    if (c->format != TG_CONF_UNSET)
        return "\"access_log\" directive is duplicate";
    if (tg_str_eq_lit(path, "off")) {
        if (cf->nargs > 1)
            return "invalid number of arguments in \"access_log\" directive";
        c->format = ALOG_OFF;
        return NULL;
    }
    alog_conf_t *m = main_conf(cf);
    c->format = ALOG_COMBINED;
    int64_t size = 0;
    tg_msec_t flush = 0;
    for (int i = 2; i <= cf->nargs; i++) {
        tg_str_t a = tg_conf_arg(cf, i);
        if (tg_conf_arg_kv(cf, i, "buffer", &v)) {
            if (tg_parse_size(v, &size) != 0 || size <= 0 || size > ALOG_BUFFER_MAX)
                return tg_conf_errf(cf, "\"access_log\": invalid buffer size \"%.*s\", expected "
                                        "1 to 16m", TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "flush", &v)) {
            if (tg_parse_msec(v, &flush) != 0 || flush <= 0)
                return tg_conf_errf(cf, "\"access_log\": invalid flush time \"%.*s\"",
                                    TG_STR_FMT(v));
        } else if (i != 2) {
            return tg_conf_errf(cf, "\"access_log\": unexpected \"%.*s\", expected buffer= or flush=",
                                TG_STR_FMT(a));
        } else if (tg_str_eq_lit(a, "json")) {
            c->format = ALOG_JSON;
        } else if (!tg_str_eq_lit(a, "combined")) {
            for (alog_format_t *f = m->formats; f && !c->custom; f = f->next)
                if (tg_str_eq(f->name, a))
                    c->custom = f;
            if (c->custom == NULL)
                return tg_conf_errf(cf, "invalid log format \"%.*s\", expected combined, json or "
                                        "a log_format defined above", TG_STR_FMT(a));
            c->format = ALOG_CUSTOM;
        }
    }
    if (flush && size == 0)
        size = ALOG_BUFFER_DEFAULT;
    const char *full = tg_conf_path(cf, path);
    if (full == NULL)
        return "out of memory";
    for (alog_file_t *f = m->files; f; f = f->next)
        if (strcmp(f->path, full) == 0) {
            /* one buffer per file and worker: every access_log naming the
             * file must agree on it */
            if (f->size != (size_t)size || f->flush != flush)
                return tg_conf_errf(cf, "\"access_log\": \"%s\" is already used with other "
                                        "buffer= or flush= values", full);
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
    f->size = (size_t)size;
    f->flush = flush;
    f->next = m->files;
    m->files = f;
    c->file = f;
    return NULL;
}

/* ---- files and buffers ----------------------------------------------------- */

/* Write all of p (whole lines). A regular file takes it in one call; only an
 * error (disk full) or a signal cuts a write short, then the rest follows. */
static void file_write(alog_file_t *f, const char *p, size_t n)
{
    while (n > 0 && f->fd >= 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            tg_log_errno(TG_LOG_ERROR, "write() to %s", f->path);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void file_flush(alog_file_t *f)
{
    if (f->len)
        file_write(f, f->buf, f->len);
    f->len = 0;
    ev_timer_stop(tg_worker->loop, &f->timer);
}

static void flush_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    file_flush(t->data);
}

/* One whole line (with its '\n'): buffered, or written now. */
static void file_put_line(alog_file_t *f, const char *line, size_t n)
{
    if (f->buf == NULL || n > f->size) {
        file_flush(f); /* keeps the lines in order */
        file_write(f, line, n);
        return;
    }
    if (f->len + n > f->size)
        file_flush(f);
    if (f->len == 0 && f->flush) {
        ev_timer_set(&f->timer, (double)f->flush / 1000.0, 0.);
        ev_timer_start(tg_worker->loop, &f->timer);
    }
    memcpy(f->buf + f->len, line, n);
    f->len += n;
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

/* A log_format line: literals as written, variable values escaped; unset
 * variables are "-" (default escaping) or empty (json), as in nginx. */
static void put_custom(out_t *o, tg_request_t *r, const alog_format_t *f)
{
    const tg_tpl_t *t = f->tpl;
    for (int i = 0; i < t->nparts; i++) {
        const tg_tpl_part_t *pt = &t->parts[i];
        tg_str_t v;
        if (pt->var == NULL)
            put(o, pt->text.p, pt->text.len);
        else if (pt->var->get(r, pt->text, &v) == 0)
            put_esc(o, v, f->json);
        else if (!f->json)
            put(o, "-", 1);
    }
}

static void alog_log(tg_request_t *r, void *conf)
{
    alog_conf_t *c = conf;
    if (c->file == NULL || c->file->fd < 0)
        return;
    char buf[ALOG_LINE_MAX];
    out_t o = {buf, buf + sizeof(buf) - 1};
    if (c->format == ALOG_CUSTOM) {
        put_custom(&o, r, c->custom);
        goto done;
    }
    double now = ev_time();
    double rt = now - r->start;
    time_t t = (time_t)now;
    struct tm tm;
    char when[64];
    localtime_r(&t, &tm);
    char urt[32] = "-";
    if (r->upstream_start > 0)
        snprintf(urt, sizeof(urt), "%.3f", r->upstream_time);
    tg_str_t ref = header(r, "Referer"), ua = header(r, "User-Agent"), v;
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
        putf(&o, "\",\"protocol\":\"HTTP/1.%d\",\"tls_protocol\":", r->http_minor);
        if (tg_var_tls_protocol(r, &v) == 0) {
            put(&o, "\"", 1);
            put_esc(&o, v, 1);
            put(&o, "\"", 1);
        } else {
            put(&o, "null", 4);
        }
        putf(&o, ",\"status\":%d,\"bytes_sent\":%llu,"
                 "\"request_length\":%llu,\"request_time\":%.3f,\"upstream_addr\":\"",
             r->status, (unsigned long long)r->bytes_out,
             (unsigned long long)r->bytes_in, rt < 0 ? 0 : rt);
        put_esc(&o, r->upstream_addr, 1);
        if (tg_var_upstream_status(r, &v) == 0)
            putf(&o, "\",\"upstream_status\":\"%.*s\",\"upstream_response_time\":%s,\"referer\":\"",
                 TG_STR_FMT(v), urt);
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
done:
    *o.p++ = '\n';
    file_put_line(c->file, buf, (size_t)(o.p - buf));
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

static void flush_all(void)
{
    for (alog_file_t *f = worker_files; f; f = f->next)
        file_flush(f);
}

void tg_accesslog_reopen(void)
{
    flush_all(); /* into the file being rotated: those lines are older */
    open_all();
}

static int alog_init_worker(tg_worker_t *w)
{
    alog_conf_t *m = w->config->mconf[tg_accesslog_module.index];
    worker_files = m->files;
    for (alog_file_t *f = worker_files; f; f = f->next) {
        ev_init(&f->timer, flush_timer_cb);
        f->timer.data = f;
        if (f->size && (f->buf = malloc(f->size)) == NULL) {
            tg_log(TG_LOG_CRIT, "no memory for the access log buffer of %s", f->path);
            return -1;
        }
    }
    open_all();
    return 0;
}

static void alog_exit_worker(tg_worker_t *w)
{
    (void)w;
    flush_all();
}

static int alog_is_active(void *conf)
{
    return ((alog_conf_t *)conf)->format != ALOG_OFF;
}

static const tg_directive_t alog_directives[] = {
    {"access_log", TG_SCOPE_HTTP, 0, 1, 4, set_access_log, 0},
    {"log_format", TG_SCOPE_MAIN, 0, 2, TG_CONF_MAX_ARGS, set_log_format, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_accesslog_module = {
    .name = "access_log",
    .directives = alog_directives,
    .create_conf = alog_create_conf,
    .merge_conf = alog_merge_conf,
    .is_active = alog_is_active,
    .init_worker = alog_init_worker,
    .exit_worker = alog_exit_worker,
    .on_log = alog_log,
};
