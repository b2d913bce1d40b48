/* Core variables and the template compiler/evaluator. Lookups by name happen
 * only at config time; a compiled part holds the getter, so evaluation is a
 * loop of calls and copies into the request arena. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <ev.h>
#include <openssl/evp.h>
#include "var.h"
#include "request.h"
#include "conn.h"
#include "worker.h"
#include "core.h"

static int var_remote_addr(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = r->remote_addr;
    return 0;
}

static int var_host(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = r->host;
    return 0;
}

static int var_uri(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = r->path;
    return 0;
}

static int var_request_uri(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = r->uri;
    return 0;
}

static int var_args(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = r->args;
    return 0;
}

/* "?" when the request has a query string: "$uri$is_args$args". */
static int var_is_args(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = r->args.len ? TG_STR("?") : (tg_str_t){"", 0};
    return 0;
}

static int var_method(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = r->method_name;
    return 0;
}

static int var_scheme(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = r->scheme;
    return 0;
}

/* TLS: unset on plain connections. */
int tg_var_tls_protocol(tg_request_t *r, tg_str_t *out)
{
    return tg_tls_var_protocol(r->conn ? r->conn->ssl : NULL, out);
}

static int var_tls_protocol(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return tg_tls_var_protocol(r->conn ? r->conn->ssl : NULL, out);
}

static int var_tls_cipher(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return tg_tls_var_cipher(r->conn ? r->conn->ssl : NULL, out);
}

static int var_tls_client_verify(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return tg_tls_var_client_verify(r->conn ? r->conn->ssl : NULL, r->arena, out);
}

static int var_tls_client_s_dn(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return tg_tls_var_client_s_dn(r->conn ? r->conn->ssl : NULL, r->arena, out);
}

static int var_tls_client_fingerprint(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return tg_tls_var_client_fingerprint(r->conn ? r->conn->ssl : NULL, r->arena, out);
}

/* Is header `name` the one $http_NAME asks for? ('_' stands for '-',
 * case-insensitive) */
static int header_is(tg_str_t name, tg_str_t want)
{
    if (name.len != want.len)
        return 0;
    for (size_t k = 0; k < want.len; k++) {
        char a = name.p[k], b = want.p[k];
        a = (a >= 'A' && a <= 'Z') ? a + 32 : a;
        b = (b >= 'A' && b <= 'Z') ? b + 32 : (b == '_' ? '-' : b);
        if (a != b)
            return 0;
    }
    return 1;
}

/* $http_x_api_key: the header X-Api-Key; several headers of that name are
 * joined with ", " as RFC 9110 allows. */
static int var_http(tg_request_t *r, tg_str_t name, tg_str_t *out)
{
    tg_str_t first = TG_NULL_STR;
    size_t total = 0;
    int count = 0;
    for (uint32_t i = 0; i < r->headers.n; i++) {
        tg_header_t *h = &r->headers.h[i];
        if (!header_is(h->name, name))
            continue;
        if (count++ == 0)
            first = h->value;
        total += h->value.len + 2;
    }
    if (count == 0)
        return -1;
    if (count == 1) {
        *out = first;
        return 0;
    }
    char *p = tg_arena_alloc_nz(r->arena, total), *w = p;
    if (p == NULL)
        return -1;
    for (uint32_t i = 0; i < r->headers.n; i++) {
        tg_header_t *h = &r->headers.h[i];
        if (!header_is(h->name, name))
            continue;
        if (w != p) {
            *w++ = ',';
            *w++ = ' ';
        }
        if (h->value.len)
            memcpy(w, h->value.p, h->value.len);
        w += h->value.len;
    }
    *out = (tg_str_t){p, (size_t)(w - p)};
    return 0;
}

int tg_var_cookie(tg_request_t *r, tg_str_t name, tg_str_t *out)
{
    for (uint32_t i = 0; i < r->headers.n; i++) {
        tg_header_t *h = &r->headers.h[i];
        if (!tg_str_caseeq_lit(h->name, "cookie"))
            continue;
        const char *p = h->value.p, *end = p + h->value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *k = p;
            while (p < end && *p != '=' && *p != ';')
                p++;
            tg_str_t key = {k, (size_t)(p - k)};
            const char *v = p < end && *p == '=' ? ++p : p;
            while (p < end && *p != ';')
                p++;
            if (tg_str_eq(key, name)) {
                *out = (tg_str_t){v, (size_t)(p - v)};
                return 0;
            }
        }
    }
    return -1;
}

int tg_var_arg(tg_request_t *r, tg_str_t name, tg_str_t *out)
{
    const char *p = r->args.p, *end = p + r->args.len;
    while (p && p < end) {
        const char *k = p;
        while (p < end && *p != '=' && *p != '&')
            p++;
        tg_str_t key = {k, (size_t)(p - k)};
        const char *v = p < end && *p == '=' ? ++p : p;
        while (p < end && *p != '&')
            p++;
        if (tg_str_eq(key, name)) {
            *out = (tg_str_t){v, (size_t)(p - v)};
            return 0;
        }
        if (p < end)
            p++;
    }
    return -1;
}


static int var_cookie(tg_request_t *r, tg_str_t name, tg_str_t *out)
{
    return tg_var_cookie(r, name, out);
}

static int var_arg(tg_request_t *r, tg_str_t name, tg_str_t *out)
{
    return tg_var_arg(r, name, out);
}

static int var_printf(tg_request_t *r, tg_str_t *out, const char *fmt, double v)
{
    char *p = tg_arena_alloc_nz(r->arena, 32);
    if (p == NULL)
        return -1;
    int n = snprintf(p, 32, fmt, v);
    *out = (tg_str_t){p, (size_t)n};
    return 0;
}

static int var_status(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    if (r->status == 0)
        return -1;
    return var_printf(r, out, "%.0f", (double)r->status);
}

static int var_upstream_addr(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    if (r->upstream_addr.len == 0)
        return -1;
    *out = r->upstream_addr;
    return 0;
}

static int var_request_time(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    double t = ev_now(tg_worker->loop) - r->start;
    return var_printf(r, out, "%.3f", t < 0 ? 0 : t);
}

static int var_upstream_response_time(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    if (r->upstream_start == 0)
        return -1;
    return var_printf(r, out, "%.3f", r->upstream_time);
}

int tg_var_upstream_status(tg_request_t *r, tg_str_t *out)
{
    if (r->upstream_status == 0) {
        *out = r->upstream_tries;
        return out->len ? 0 : -1;
    }
    if (r->upstream_tries.len == 0)
        return var_printf(r, out, "%.0f", (double)r->upstream_status);
    char *p = tg_arena_printf(r->arena, "%.*s, %d", TG_STR_FMT(r->upstream_tries), r->upstream_status);
    if (p == NULL)
        return -1;
    *out = tg_str_c(p);
    return 0;
}

static int var_upstream_status(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return tg_var_upstream_status(r, out);
}

/* $grpc_status: the gRPC status the client got (the trailers' grpc-status,
 * else a trailers-only head's: the upstream's, or the gateway's own);
 * unset when the response carried none (not a gRPC call, or cut short). */
static int var_grpc_status(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    *out = TG_NULL_STR;
    tg_request_grpc_status(r, out);
    return out->p ? 0 : -1;
}

static int var_bytes_sent(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return var_printf(r, out, "%.0f", (double)r->bytes_out);
}

static int var_request_length(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return var_printf(r, out, "%.0f", (double)r->bytes_in);
}

/* $request_time's clock and the log's: the loop's time (ev_now), so every
 * variable of one log line tells the same instant. */
static int var_msec(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return var_printf(r, out, "%.3f", ev_now(tg_worker->loop));
}

static int var_time_local(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)r;
    (void)arg;
    const tg_worker_times_t *t = tg_worker_times();
    *out = (tg_str_t){t->local, t->local_len};
    return 0;
}

static int var_time_iso8601(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)r;
    (void)arg;
    const tg_worker_times_t *t = tg_worker_times();
    *out = (tg_str_t){t->iso8601, t->iso8601_len};
    return 0;
}

/* $connection: the client connection's serial number, counted per worker
 * (conn.c); unset for a request without a client connection. */
static int var_connection(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    if (r->conn == NULL)
        return -1;
    return var_printf(r, out, "%.0f", (double)r->conn->number);
}

/* $connection_requests: requests on this connection so far, this one
 * included (the carrier counts finished ones). */
static int var_connection_requests(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    if (r->conn == NULL)
        return -1;
    return var_printf(r, out, "%.0f", (double)r->conn->nrequests + 1);
}

/* $server_protocol: the carrier's protocol; HTTP/1.x with the request's own
 * version ("HTTP/1.0" for a 1.0 request on the HTTP/1.1 codec). */
static int var_server_protocol(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    if (r->carrier == NULL || r->carrier->protocol == NULL)
        return -1;
    if (strncmp(r->carrier->protocol, "HTTP/1.", 7) == 0)
        *out = r->http_minor == 0 ? TG_STR("HTTP/1.0") : TG_STR("HTTP/1.1");
    else
        *out = tg_str_c(r->carrier->protocol);
    return 0;
}

/* $request: the request line as received; unset when it was not valid. */
static int var_request(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    if (r->request_line.len == 0)
        return -1;
    *out = r->request_line;
    return 0;
}

/* $remote_user: the user name of Basic credentials (RFC 7617), decoded;
 * unset without them or when they do not decode to "user:password". The
 * password never leaves this function. */
int tg_var_remote_user(tg_request_t *r, tg_str_t *out)
{
    tg_header_t *h = tg_headers_find(&r->headers, TG_STR("Authorization"));
    if (h == NULL || h->value.len < 7 || strncasecmp(h->value.p, "Basic ", 6) != 0)
        return -1;
    tg_str_t b64 = {h->value.p + 6, h->value.len - 6};
    while (b64.len && b64.p[0] == ' ')
        b64.p++, b64.len--;
    if (b64.len == 0 || b64.len % 4 != 0 || b64.len > 4096)
        return -1;
    unsigned char *plain = tg_arena_alloc_nz(r->arena, b64.len / 4 * 3 + 1);
    if (plain == NULL)
        return -1;
    int n = EVP_DecodeBlock(plain, (const unsigned char *)b64.p, (int)b64.len);
    if (n < 0)
        return -1;
    for (size_t i = b64.len; i > 0 && b64.p[i - 1] == '=' && n > 0; i--)
        n--; /* EVP_DecodeBlock counts the padding as zero bytes */
    const unsigned char *colon = memchr(plain, ':', (size_t)n);
    if (colon == NULL)
        return -1;
    *out = (tg_str_t){(const char *)plain, (size_t)(colon - plain)};
    return 0;
}

static int var_remote_user(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return tg_var_remote_user(r, out);
}

/* $body_bytes_sent: bytes_sent without the carrier's status lines and
 * headers, as nginx counts it. */
static int var_body_bytes_sent(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    uint64_t n = r->bytes_out > r->header_bytes_out ? r->bytes_out - r->header_bytes_out : 0;
    return var_printf(r, out, "%.0f", (double)n);
}

static const tg_var_def_t core_vars[] = {
    {"remote_addr", 0, var_remote_addr},
    {"host", 0, var_host},
    {"uri", 0, var_uri},
    {"request_uri", 0, var_request_uri},
    {"args", 0, var_args},
    {"is_args", 0, var_is_args},
    {"method", 0, var_method},
    {"request_method", 0, var_method},
    {"scheme", 0, var_scheme},
    {"tls_protocol", 0, var_tls_protocol},
    {"tls_cipher", 0, var_tls_cipher},
    {"tls_client_verify", 0, var_tls_client_verify},
    {"tls_client_s_dn", 0, var_tls_client_s_dn},
    {"tls_client_fingerprint", 0, var_tls_client_fingerprint},
    {"status", 0, var_status},
    {"upstream_addr", 0, var_upstream_addr},
    {"upstream_status", 0, var_upstream_status},
    {"grpc_status", 0, var_grpc_status},
    {"request_time", 0, var_request_time},
    {"upstream_response_time", 0, var_upstream_response_time},
    {"bytes_sent", 0, var_bytes_sent},
    {"request_length", 0, var_request_length},
    {"body_bytes_sent", 0, var_body_bytes_sent},
    {"request", 0, var_request},
    {"remote_user", 0, var_remote_user},
    {"server_protocol", 0, var_server_protocol},
    {"connection", 0, var_connection},
    {"connection_requests", 0, var_connection_requests},
    {"msec", 0, var_msec},
    {"time_local", 0, var_time_local},
    {"time_iso8601", 0, var_time_iso8601},
    {"http_", TG_VAR_F_PREFIX, var_http},
    {"cookie_", TG_VAR_F_PREFIX, var_cookie},
    {"arg_", TG_VAR_F_PREFIX, var_arg},
    {NULL, 0, NULL},
};

static const tg_var_def_t *find_in(const tg_var_def_t *defs, tg_str_t name, tg_str_t *arg)
{
    for (; defs && defs->name; defs++) {
        size_t n = strlen(defs->name);
        if (defs->flags & TG_VAR_F_PREFIX) {
            if (name.len > n && memcmp(name.p, defs->name, n) == 0) {
                *arg = (tg_str_t){name.p + n, name.len - n};
                return defs;
            }
        } else if (name.len == n && memcmp(name.p, defs->name, n) == 0) {
            *arg = TG_NULL_STR;
            return defs;
        }
    }
    return NULL;
}

/* $1..$9 ($0: the whole match): the last regex match's captures (a rewrite,
 * a map). The argument is the digit. */
static int var_capture(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    return tg_request_capture(r, arg.p[0] - '0', out);
}

static const tg_var_def_t capture_var = {"0..9", 0, var_capture};

/* A variable the config defines (tg_var_define), in the config's arena. */
struct tg_var_defined_s {
    tg_var_def_t def;
    tg_str_t name; /* the definer's string: what its getter gets as `arg` */
    struct tg_var_defined_s *next;
};

/* By name: a capture, a core variable, a module's, one the config `c`
 * defines (c may be NULL). */
static const tg_var_def_t *find_var(tg_config_t *c, tg_str_t name, tg_str_t *arg)
{
    if (name.len == 1 && name.p[0] >= '0' && name.p[0] <= '9') {
        *arg = name;
        return &capture_var;
    }
    const tg_var_def_t *v = find_in(core_vars, name, arg);
    for (int i = 0; v == NULL && tg_modules[i]; i++)
        v = find_in(tg_modules[i]->variables, name, arg);
    for (struct tg_var_defined_s *d = c ? c->vars : NULL; v == NULL && d; d = d->next) {
        if (tg_str_eq(d->name, name)) {
            *arg = d->name;
            v = &d->def;
        }
    }
    return v;
}

int tg_var_define(tg_conf_t *cf, tg_str_t name,
                  int (*get)(tg_request_t *r, tg_str_t arg, tg_str_t *out))
{
    tg_str_t arg;
    if (find_var(cf->config, name, &arg) != NULL)
        return -1;
    struct tg_var_defined_s *d = tg_arena_alloc(cf->arena, sizeof(*d));
    char *n = tg_arena_strdup(cf->arena, name);
    if (d == NULL || n == NULL)
        return -2;
    d->def = (tg_var_def_t){n, 0, get};
    d->name = name;
    d->next = cf->config->vars;
    cf->config->vars = d;
    return 0;
}

int tg_var_get(tg_request_t *r, tg_str_t name, tg_str_t *out)
{
    tg_str_t arg;
    const tg_var_def_t *v = find_var(tg_worker->config, name, &arg);
    if (v == NULL)
        return -2;
    return v->get(r, arg, out) == 0 ? 0 : -1;
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* The number of the named group `name` of `re`, or -1. */
static int named_group(const pcre2_code *re, tg_str_t name)
{
    uint32_t count = 0, size = 0;
    PCRE2_SPTR table;
    if (re == NULL || pcre2_pattern_info(re, PCRE2_INFO_NAMECOUNT, &count) != 0 || count == 0 ||
        pcre2_pattern_info(re, PCRE2_INFO_NAMEENTRYSIZE, &size) != 0 ||
        pcre2_pattern_info(re, PCRE2_INFO_NAMETABLE, &table) != 0)
        return -1;
    for (uint32_t i = 0; i < count; i++) {
        PCRE2_SPTR e = table + i * size;
        const char *n = (const char *)e + 2;
        if (strlen(n) == name.len && memcmp(n, name.p, name.len) == 0)
            return (e[0] << 8) | e[1];
    }
    return -1;
}

static tg_tpl_t *compile(tg_conf_t *cf, tg_str_t src, const pcre2_code *re, const char **err);

tg_tpl_t *tg_tpl_compile(tg_conf_t *cf, tg_str_t src, const char **err)
{
    return compile(cf, src, NULL, err);
}

tg_tpl_t *tg_tpl_compile_captures(tg_conf_t *cf, tg_str_t src, const pcre2_code *re,
                                  const char **err)
{
    return compile(cf, src, re, err);
}

static tg_tpl_t *compile(tg_conf_t *cf, tg_str_t src, const pcre2_code *re, const char **err)
{
    tg_tpl_t *t = tg_arena_alloc(cf->arena, sizeof(*t));
    /* at most one part per '$' plus one literal between each */
    size_t max = 1;
    for (size_t i = 0; i < src.len; i++)
        max += src.p[i] == '$' ? 2 : 0;
    t->parts = tg_arena_alloc(cf->arena, max * sizeof(*t->parts));
    t->src = tg_arena_str(cf->arena, src);
    const char *p = t->src.p, *end = p + src.len, *lit = p;
    while (p < end) {
        if (*p != '$') {
            p++;
            continue;
        }
        if (p > lit)
            t->parts[t->nparts++] = (tg_tpl_part_t){NULL, {lit, (size_t)(p - lit)}};
        const char *s = ++p, *e;
        if (p < end && *p == '{') {
            s = ++p;
            while (p < end && *p != '}')
                p++;
            if (p == end) {
                *err = tg_conf_errf(cf, "unclosed \"${\" in \"%.*s\"", TG_STR_FMT(src));
                return NULL;
            }
            e = p++;
        } else {
            while (p < end && is_name_char(*p))
                p++;
            e = p;
        }
        tg_str_t name = {s, (size_t)(e - s)}, arg;
        if (name.len == 0) {
            *err = tg_conf_errf(cf, "empty variable name in \"%.*s\"", TG_STR_FMT(src));
            return NULL;
        }
        int group = named_group(re, name);
        if (group > 9) {
            *err = tg_conf_errf(cf, "\"$%.*s\" is capture %d: only $1..$9 can be used",
                                TG_STR_FMT(name), group);
            return NULL;
        }
        const tg_var_def_t *v = NULL;
        if (group >= 0) {
            v = &capture_var;
            arg = (tg_str_t){"0123456789" + group, 1};
        } else {
            v = find_var(cf->config, name, &arg);
        }
        if (v == NULL) {
            *err = tg_conf_errf(cf, "unknown variable \"$%.*s\"", TG_STR_FMT(name));
            return NULL;
        }
        t->parts[t->nparts++] = (tg_tpl_part_t){v, arg};
        lit = p;
    }
    if (p > lit)
        t->parts[t->nparts++] = (tg_tpl_part_t){NULL, {lit, (size_t)(p - lit)}};
    return t;
}

int tg_tpl_eval(tg_request_t *r, const tg_tpl_t *t, tg_str_t *out)
{
    if (t->nparts == 0) {
        *out = (tg_str_t){"", 0};
        return 0;
    }
    tg_str_t vals[16], *v = vals;
    if (t->nparts > 16 && (v = tg_arena_alloc_nz(r->arena, t->nparts * sizeof(*v))) == NULL)
        return -1;
    size_t total = 0;
    for (int i = 0; i < t->nparts; i++) {
        const tg_tpl_part_t *pt = &t->parts[i];
        if (pt->var == NULL)
            v[i] = pt->text;
        else if (pt->var->get(r, pt->text, &v[i]) != 0)
            v[i] = (tg_str_t){"", 0};
        total += v[i].len;
    }
    if (t->nparts == 1) {
        *out = v[0];
        return 0;
    }
    char *p = tg_arena_alloc_nz(r->arena, total + 1);
    if (p == NULL)
        return -1;
    size_t n = 0;
    for (int i = 0; i < t->nparts; i++) {
        if (v[i].len)
            memcpy(p + n, v[i].p, v[i].len);
        n += v[i].len;
    }
    p[n] = '\0';
    *out = (tg_str_t){p, n};
    return 0;
}
