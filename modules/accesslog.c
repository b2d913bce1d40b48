/* access_log PATH|syslog:... [combined|timed|json|NAME] [buffer=SIZE] [flush=TIME] | off, and
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
 * combined: exactly the Apache/nginx "combined" line, '$remote_addr -
 * $remote_user [$time_local] "$request" $status $body_bytes_sent
 * "$http_referer" "$http_user_agent"'; timed: that line plus
 * rt=$request_time and urt=$upstream_response_time; json: one object per
 * line; NAME: a
 * log_format template whose variable values are escaped so that a client
 * cannot forge lines. Each worker opens the files itself. With syslog:server=...
 * (src/log_syslog.c) each line is a datagram, severity info by default. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ev.h>
#include "json.h"
#include "request.h"
#include "worker.h"
#include "var.h"
#include "log.h"
#include "user.h"
#include "log_syslog.h"

enum { ALOG_OFF = 0, ALOG_COMBINED, ALOG_TIMED, ALOG_JSON, ALOG_CUSTOM };

#define ALOG_LINE_MAX 8192 /* with '\n'; longer values are cut to fit (fair_share) */
#define ALOG_FIXED_MAX 512 /* combined and json without their string values */
#define ALOG_MAX_VARS 64   /* variables in one log_format */
#define ALOG_BUFFER_DEFAULT (64 * 1024) /* flush= without buffer= */
#define ALOG_BUFFER_MAX (16 * 1024 * 1024)

typedef struct alog_format_s {
    tg_str_t name;
    tg_tpl_t *tpl;
    int json; /* escape=json: JSON string escapes, unset variables empty */
    size_t fixed; /* bytes of literal text in a line */
    struct alog_format_s *next;
} alog_format_t;

typedef struct alog_file_s {
    const char *path;
    int fd;           /* the worker's descriptor, -1 when not open */
    tg_log_syslog_t *syslog; /* access_log syslog:...: lines go there, one datagram each */
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
    if (tg_str_eq_lit(name, "combined") || tg_str_eq_lit(name, "timed") ||
        tg_str_eq_lit(name, "json") || tg_str_eq_lit(name, "off"))
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
    /* values are cut to fit a line, literal text never is: it must leave
     * room for them */
    int nvars = 0;
    for (int i = 0; i < f->tpl->nparts; i++) {
        if (f->tpl->parts[i].var)
            nvars++;
        else
            f->fixed += f->tpl->parts[i].text.len;
    }
    if (nvars > ALOG_MAX_VARS)
        return tg_conf_errf(cf, "\"log_format\": more than %d variables", ALOG_MAX_VARS);
    if (f->fixed > ALOG_LINE_MAX / 2)
        return tg_conf_errf(cf, "\"log_format\": more than %d bytes of literal text",
                            ALOG_LINE_MAX / 2);
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
        } else if (tg_str_eq_lit(a, "timed")) {
            c->format = ALOG_TIMED;
        } else if (!tg_str_eq_lit(a, "combined")) {
            for (alog_format_t *f = m->formats; f && !c->custom; f = f->next)
                if (tg_str_eq(f->name, a))
                    c->custom = f;
            if (c->custom == NULL)
                return tg_conf_errf(cf, "invalid log format \"%.*s\", expected combined, timed, "
                                        "json or a log_format defined above", TG_STR_FMT(a));
            c->format = ALOG_CUSTOM;
        }
    }
    if (flush && size == 0)
        size = ALOG_BUFFER_DEFAULT;
    tg_log_syslog_t *sl = NULL;
    const char *full;
    if (path.len > 7 && memcmp(path.p, "syslog:", 7) == 0) {
        char bad[128];
        full = tg_arena_strdup(cf->arena, path);
        if (full == NULL || (sl = tg_arena_alloc(cf->arena, sizeof(*sl))) == NULL)
            return "out of memory";
        const char *err = tg_log_syslog_parse(full + 7, sl, bad, sizeof(bad));
        if (err)
            return tg_conf_errf(cf, "\"access_log\": %s: \"%s\"", err, bad);
        if (sl->severity < 0)
            sl->severity = 6; /* info, as nginx */
    } else {
        full = tg_conf_path(cf, path);
    }
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
    if (sl == NULL) {
        int fd = open(full, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return tg_conf_errf(cf, "cannot open the access log \"%s\": %s", full,
                                strerror(errno));
        close(fd);
    }
    alog_file_t *f = tg_arena_alloc(cf->arena, sizeof(*f));
    if (f == NULL)
        return "out of memory";
    f->path = full;
    f->fd = -1;
    f->syslog = sl;
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
    if (f->syslog) {
        /* one datagram per line, without its '\n' */
        for (const char *end = p + n, *nl; p < end; p = nl + 1) {
            if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
                nl = end;
            tg_log_syslog_send(f->syslog, 6, p, (size_t)(nl - p));
        }
        return;
    }
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

/* A line is built in a stack buffer of ALOG_LINE_MAX. What a client sends
 * (URI, headers) is escaped, and escaping can make it six times longer, so
 * a line may not fit: then the values are cut, never the line's structure.
 * Each value gets at most `share` escaped bytes (fair_share), cut between
 * characters and escapes (src/json.c), so a cut json line still decodes and
 * a cut text line keeps its fields. Literal text is written with PUT_LIT, its
 * length from sizeof: a hand-counted length is how a NUL once got into every
 * json line of a request without an upstream. */

typedef struct {
    char *p, *end;
    size_t share; /* most escaped bytes a value may take */
    int json;     /* values as JSON string contents, else the text escapes */
} out_t;

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put(out_t *o, const char *s, size_t n)
{
    if (n > (size_t)(o->end - o->p))
        n = (size_t)(o->end - o->p);
    if (n)
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

/* The text escape (combined, escape=default): '"', '\' and bytes outside
 * printable ASCII as \xHH, so a client cannot forge a line or a field; the
 * json.h contract (whole escapes only, *used = input bytes written). */
static size_t text_escape(char *dst, size_t cap, tg_str_t s, size_t *used)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0, o = 0;
    for (; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
            if (o == cap)
                break;
            dst[o++] = (char)ch;
            continue;
        }
        if (cap - o < 4)
            break;
        dst[o++] = '\\';
        dst[o++] = 'x';
        dst[o++] = hex[ch >> 4];
        dst[o++] = hex[ch & 15];
    }
    *used = i;
    return o;
}

static size_t text_escape_len(tg_str_t s)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        n += ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? 1 : 4;
    }
    return n;
}

static void put_val(out_t *o, tg_str_t s)
{
    size_t room = (size_t)(o->end - o->p), used;
    if (room > o->share)
        room = o->share;
    o->p += o->json ? tg_json_escape(o->p, room, s, &used) : text_escape(o->p, room, s, &used);
}

/* The share of `room` each of the n values may take once escaped: SIZE_MAX
 * when all fit whole (nearly always, and then without measuring them), else
 * the largest c with sum(min(escaped length, c)) <= room, so short values
 * stay whole and the long ones are cut to the same length. */
static size_t fair_share(const tg_str_t *v, int n, size_t room, int json)
{
    size_t need[ALOG_MAX_VARS], raw = 0, most = 0;
    for (int i = 0; i < n; i++)
        raw += v[i].len;
    if (raw * TG_JSON_ESCAPE_MAX <= room)
        return SIZE_MAX;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        need[i] = json ? tg_json_escape_len(v[i]) : text_escape_len(v[i]);
        total += need[i];
        most = need[i] > most ? need[i] : most;
    }
    if (total <= room)
        return SIZE_MAX;
    size_t lo = 0, hi = most; /* sum(min(need, lo)) <= room < sum(min(need, hi)) */
    while (hi - lo > 1) {
        size_t c = lo + (hi - lo) / 2, sum = 0;
        for (int i = 0; i < n; i++)
            sum += need[i] < c ? need[i] : c;
        if (sum <= room)
            lo = c;
        else
            hi = c;
    }
    return lo;
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
    tg_str_t v[ALOG_MAX_VARS];
    int n = 0;
    for (int i = 0; i < t->nparts; i++) {
        const tg_tpl_part_t *pt = &t->parts[i];
        if (pt->var == NULL)
            continue;
        if (pt->var->get(r, pt->text, &v[n]) != 0)
            v[n] = f->json ? TG_NULL_STR : TG_STR("-");
        n++;
    }
    o->json = f->json;
    o->share = fair_share(v, n, (size_t)(o->end - o->p) - f->fixed, f->json);
    n = 0;
    for (int i = 0; i < t->nparts; i++) {
        const tg_tpl_part_t *pt = &t->parts[i];
        if (pt->var == NULL)
            put(o, pt->text.p, pt->text.len);
        else
            put_val(o, v[n++]);
    }
}

/* The built-in formats' values, in the order they are written. */
enum {
    V_ADDR = 0,
    V_METHOD,
    V_URI,
    V_HOST,
    V_TLS,
    V_UPADDR,
    V_UPSTATUS,
    V_REFERER,
    V_UA,
    V_USER,    /* combined and timed only */
    V_REQUEST, /* combined and timed only */
    V_N
};

/* A json value: the escaped string, or null when unset (p == NULL). */
static void put_json_val(out_t *o, tg_str_t s)
{
    if (s.p == NULL) {
        PUT_LIT(o, "null");
        return;
    }
    PUT_LIT(o, "\"");
    put_val(o, s);
    PUT_LIT(o, "\"");
}

static void put_json(out_t *o, tg_request_t *r, const tg_str_t *v, const char *when, double rt)
{
    putf(o, "{\"time\":\"%s\",\"remote_addr\":", when);
    put_json_val(o, v[V_ADDR]);
    PUT_LIT(o, ",\"method\":");
    put_json_val(o, v[V_METHOD]);
    PUT_LIT(o, ",\"uri\":");
    put_json_val(o, v[V_URI]);
    PUT_LIT(o, ",\"host\":");
    put_json_val(o, v[V_HOST]);
    tg_str_t proto = tg_request_protocol(r);
    putf(o, ",\"protocol\":\"%.*s\",\"tls_protocol\":", TG_STR_FMT(proto));
    put_json_val(o, v[V_TLS]);
    putf(o, ",\"status\":%d,\"bytes_sent\":%llu,\"request_length\":%llu,\"request_time\":%.3f,"
            "\"upstream_addr\":",
         r->status, (unsigned long long)r->bytes_out, (unsigned long long)r->bytes_in, rt);
    put_json_val(o, v[V_UPADDR]);
    PUT_LIT(o, ",\"upstream_status\":");
    put_json_val(o, v[V_UPSTATUS]);
    if (r->upstream_start > 0)
        putf(o, ",\"upstream_response_time\":%.3f", r->upstream_time);
    else
        PUT_LIT(o, ",\"upstream_response_time\":null");
    PUT_LIT(o, ",\"referer\":");
    put_json_val(o, v[V_REFERER]);
    PUT_LIT(o, ",\"user_agent\":");
    put_json_val(o, v[V_UA]);
    PUT_LIT(o, "}");
}

/* combined: unset values are "-", as in nginx. */
static void put_text_val(out_t *o, tg_str_t s)
{
    if (s.len)
        put_val(o, s);
    else
        PUT_LIT(o, "-");
}

/* combined, as nginx and Apache write it; timed adds the two times. */
static void put_combined(out_t *o, tg_request_t *r, const tg_str_t *v, int timed, double rt)
{
    const tg_worker_times_t *t = tg_worker_times();
    uint64_t body = r->bytes_out > r->header_bytes_out ? r->bytes_out - r->header_bytes_out : 0;
    put_text_val(o, v[V_ADDR]);
    PUT_LIT(o, " - ");
    put_text_val(o, v[V_USER]);
    PUT_LIT(o, " [");
    put(o, t->local, t->local_len);
    PUT_LIT(o, "] \"");
    put_text_val(o, v[V_REQUEST]);
    putf(o, "\" %d %llu \"", r->status, (unsigned long long)body);
    put_text_val(o, v[V_REFERER]);
    PUT_LIT(o, "\" \"");
    put_text_val(o, v[V_UA]);
    PUT_LIT(o, "\"");
    if (!timed)
        return;
    putf(o, " rt=%.3f urt=", rt);
    if (r->upstream_start > 0)
        putf(o, "%.3f", r->upstream_time);
    else
        PUT_LIT(o, "-");
}

/* A variable's value for the built-in formats: TG_NULL_STR when unset. */
static tg_str_t or_null(int rc, tg_str_t v)
{
    return rc == 0 ? (v.p ? v : (tg_str_t){"", 0}) : TG_NULL_STR;
}

static void alog_log(tg_request_t *r, void *conf)
{
    alog_conf_t *c = conf;
    if (c->file == NULL || c->file->fd < 0)
        return;
    char buf[ALOG_LINE_MAX];
    out_t o = {buf, buf + sizeof(buf) - 1, SIZE_MAX, 0}; /* the last byte for '\n' */
    if (c->format == ALOG_CUSTOM) {
        put_custom(&o, r, c->custom);
        goto done;
    }
    double rt = ev_now(tg_worker->loop) - r->start; /* as $request_time */
    tg_str_t v[V_N], s;
    v[V_ADDR] = r->remote_addr;
    v[V_METHOD] = r->method_name;
    v[V_URI] = r->uri;
    v[V_HOST] = r->host;
    v[V_TLS] = or_null(tg_var_tls_protocol(r, &s), s);
    v[V_UPADDR] = r->upstream_addr.len ? r->upstream_addr : TG_NULL_STR;
    v[V_UPSTATUS] = or_null(tg_var_upstream_status(r, &s), s);
    v[V_REFERER] = header(r, "Referer");
    v[V_UA] = header(r, "User-Agent");
    o.json = c->format == ALOG_JSON;
    if (o.json) {
        v[V_USER] = v[V_REQUEST] = TG_NULL_STR;
        o.share = fair_share(v, V_N, sizeof(buf) - 1 - ALOG_FIXED_MAX, 1);
        /* the json time keeps its documented form, "+0000" without a colon */
        char when[64];
        time_t t = (time_t)ev_now(tg_worker->loop);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S%z", &tm);
        put_json(&o, r, v, when, rt < 0 ? 0 : rt);
    } else {
        v[V_USER] = or_null(tg_var_remote_user(r, &s), s);
        v[V_REQUEST] = r->request_line;
        o.share = fair_share(v, V_N, sizeof(buf) - 1 - ALOG_FIXED_MAX, 0);
        put_combined(&o, r, v, c->format == ALOG_TIMED, rt < 0 ? 0 : rt);
    }
done:
    *o.p++ = '\n';
    file_put_line(c->file, buf, (size_t)(o.p - buf));
}

/* missing_only: leave the files open already (opened before the worker
 * switched user) as they are */
static void open_all(int missing_only)
{
    for (alog_file_t *f = worker_files; f; f = f->next) {
        if (missing_only && f->fd >= 0)
            continue;
        if (f->syslog) {
            /* a new socket, to the address resolved at load time */
            if (tg_log_syslog_open(f->syslog) != 0)
                tg_log_errno(TG_LOG_ERROR, "cannot open the access log %s", f->path);
            f->fd = f->syslog->fd;
            continue;
        }
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

/* USR1 in a worker: write out what is buffered, then reopen every access log
 * file of the worker's config (log rotation: the old file may have been
 * renamed). A file that cannot be opened keeps its old descriptor. */
static void alog_reopen_logs(tg_worker_t *w)
{
    (void)w;
    flush_all(); /* into the file being rotated: those lines are older */
    open_all(0);
}

static void alog_own_logs(tg_config_t *c)
{
    alog_conf_t *m = c->mconf[tg_accesslog_module.index];
    for (alog_file_t *f = m->files; f; f = f->next)
        if (f->syslog == NULL)
            tg_user_own_file(&c->main->user, f->path);
}

static void alog_open_logs_early(tg_config_t *c)
{
    alog_conf_t *m = c->mconf[tg_accesslog_module.index];
    worker_files = m->files;
    open_all(0);
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
    open_all(1);
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
    .reopen_logs = alog_reopen_logs,
    .own_logs = alog_own_logs,
    .open_logs_early = alog_open_logs_early,
    .on_log = alog_log,
};
