/* cors: Cross-Origin Resource Sharing answered at the gateway, with the same
 * observable behaviour as the `cors` npm package given the same options
 * (origin as "*", true, or a list of strings and regular expressions).
 *
 *   cors [origins=A,B,~REGEX|*|reflect]... [methods=GET,POST] [headers=X-A,X-B]
 *        [expose_headers=X-C] [credentials=on|off] [max_age=SECONDS]
 *        [options_status=204] [preflight_continue=on|off];
 *   cors off;
 *
 * Preflight: every OPTIONS request is answered here with options_status
 * (204) and never reaches the upstream, unless preflight_continue=on: then
 * it goes upstream and the preflight headers go on the upstream's answer.
 * Other requests get Access-Control-Allow-Origin (the request's Origin when
 * it is listed or matches a pattern, or any with reflect; "*" for
 * origins=*; nothing for a foreign origin), Allow-Credentials and
 * Expose-Headers, plus Vary: Origin when the answer depends on the origin.
 * Patterns are PCRE2 (JIT), matched against the whole Origin value with one
 * match block per worker. */
#include <string.h>
#include <llhttp.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "module.h"
#include "request.h"
#include "worker.h"

typedef struct {
    tg_str_t exact;  /* exact origin, or the pattern's text */
    pcre2_code *re;  /* NULL: exact */
} cors_origin_t;

typedef struct {
    int enabled; /* TG_CONF_UNSET, 0 (cors off), 1 */
    int any_origin;
    int reflect;     /* origins=reflect: any Origin is echoed (origin: true) */
    cors_origin_t *origins;
    int norigins;
    tg_str_t methods, headers, expose, max_age;
    int credentials;
    int options_status;     /* optionsSuccessStatus */
    int preflight_continue; /* preflightContinue */
    /* the match block patterns use: the main scope's md_store, filled per
     * worker by init_worker after the fork */
    pcre2_match_data **md;
    pcre2_match_data *md_store; /* main scope only */
} cors_conf_t;

/* The module context of a preflight request */
static const char preflight_answered, preflight_continued;

tg_module_t tg_cors_module;

static void *cors_create_conf(tg_conf_t *cf)
{
    cors_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c)
        c->enabled = TG_CONF_UNSET;
    return c;
}

static const char *cors_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    cors_conf_t *p = parent, *c = child;
    if (c->enabled == TG_CONF_UNSET)
        *c = *p;
    if (c->enabled == TG_CONF_UNSET)
        c->enabled = 0;
    return NULL;
}

/* a comma-separated list of tokens, as the header values are written */
static const char *check_list(tg_conf_t *cf, const char *what, tg_str_t v)
{
    const char *p = v.p, *end = v.len ? v.p + v.len : v.p;
    while (p <= end) {
        const char *e = memchr(p, ',', (size_t)(end - p));
        if (e == NULL)
            e = end;
        if (!tg_conf_is_token((tg_str_t){p, (size_t)(e - p)}))
            return tg_conf_errf(cf, "invalid %s list \"%.*s\" in \"cors\"", what, TG_STR_FMT(v));
        p = e + 1;
    }
    return NULL;
}

static void re_free(void *p)
{
    pcre2_code_free(p);
}

/* One origins= value: "*", "reflect", or a comma-separated list of exact
 * origins and patterns; a pattern ("~" or caseless "~*") runs to the end of
 * the value, so it may contain commas. */
static const char *add_origins(tg_conf_t *cf, cors_conf_t *c, tg_str_t v)
{
    if (tg_str_eq_lit(v, "*") || tg_str_eq_lit(v, "reflect")) {
        if (c->norigins || c->reflect || !c->any_origin)
            return tg_conf_errf(cf, "\"origins=%.*s\" cannot be combined with other origins in "
                                    "\"cors\"",
                                TG_STR_FMT(v));
        c->reflect = v.p[0] == 'r';
        c->any_origin = v.p[0] == '*';
        return NULL;
    }
    if (c->reflect || c->any_origin == 2)
        return "\"origins=*\" and \"origins=reflect\" cannot be combined with other origins in "
               "\"cors\"";
    c->any_origin = 0;
    int n = 1;
    for (size_t k = 0; k < v.len; k++)
        n += v.p[k] == ',';
    cors_origin_t *o =
        tg_arena_grow(cf->arena, c->origins, (size_t)c->norigins, (size_t)n, sizeof(*o));
    if (o == NULL)
        return "out of memory";
    c->origins = o;
    const char *p = v.p, *end = v.p + v.len;
    while (p <= end) {
        if (p < end && *p == '~') {
            int caseless = p + 1 < end && p[1] == '*';
            tg_str_t pat = {p + 1 + caseless, (size_t)(end - p - 1 - caseless)};
            int errcode;
            PCRE2_SIZE erroff;
            pcre2_code *re = pat.len ? pcre2_compile((PCRE2_SPTR)pat.p, pat.len,
                                                     caseless ? PCRE2_CASELESS : 0, &errcode,
                                                     &erroff, NULL)
                                     : NULL;
            if (re == NULL) {
                PCRE2_UCHAR msg[160] = "empty pattern";
                if (pat.len)
                    pcre2_get_error_message(errcode, msg, sizeof(msg));
                return tg_conf_errf(cf, "invalid origin pattern \"%.*s\" in \"cors\": %s",
                                    TG_STR_FMT(pat), (char *)msg);
            }
            tg_arena_on_reset(cf->arena, re_free, re);
            pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
            o[c->norigins++] = (cors_origin_t){pat, re};
            break;
        }
        const char *e = memchr(p, ',', (size_t)(end - p));
        if (e == NULL)
            e = end;
        tg_str_t x = {p, (size_t)(e - p)};
        if (x.len == 0 || memchr(x.p, ' ', x.len) || memchr(x.p, '*', x.len))
            return tg_conf_errf(cf, "invalid origin \"%.*s\" in \"cors\", expected "
                                    "scheme://host[:port], ~REGEX, reflect or *",
                                TG_STR_FMT(x));
        o[c->norigins++] = (cors_origin_t){x, NULL};
        p = e + 1;
    }
    return NULL;
}

static const char *set_cors(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    cors_conf_t *c = conf;
    if (c->enabled != TG_CONF_UNSET)
        return "\"cors\" directive is duplicate";
    if (cf->nargs == 1 && tg_str_eq_lit(tg_conf_arg(cf, 1), "off")) {
        c->enabled = 0;
        return NULL;
    }
    c->enabled = 1;
    c->md = &((cors_conf_t *)cf->config->mconf[tg_cors_module.index])->md_store;
    c->any_origin = 1; /* the default; 2 once origins=* is given */
    c->options_status = 204;
    c->methods = TG_STR("GET,HEAD,PUT,PATCH,POST,DELETE");
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v;
        const char *err = NULL;
        if (tg_conf_arg_kv(cf, i, "origins", &v)) {
            err = add_origins(cf, c, v);
            if (!err && tg_str_eq_lit(v, "*"))
                c->any_origin = 2;
        } else if (tg_conf_arg_kv(cf, i, "options_status", &v)) {
            int64_t n;
            if (tg_parse_int(v, &n) != 0 || n < 200 || n > 299)
                return tg_conf_errf(cf, "invalid options_status \"%.*s\" in \"cors\", expected "
                                        "200..299",
                                    TG_STR_FMT(v));
            c->options_status = (int)n;
        } else if (tg_conf_arg_kv(cf, i, "preflight_continue", &v)) {
            if (!tg_str_eq_lit(v, "on") && !tg_str_eq_lit(v, "off"))
                return tg_conf_errf(cf, "invalid preflight_continue \"%.*s\" in \"cors\", "
                                        "expected on or off",
                                    TG_STR_FMT(v));
            c->preflight_continue = tg_str_eq_lit(v, "on");
        } else if (tg_conf_arg_kv(cf, i, "methods", &v)) {
            err = check_list(cf, "methods", v);
            c->methods = v;
        } else if (tg_conf_arg_kv(cf, i, "headers", &v)) {
            err = check_list(cf, "headers", v);
            c->headers = v;
        } else if (tg_conf_arg_kv(cf, i, "expose_headers", &v) ||
                   tg_conf_arg_kv(cf, i, "expose", &v)) {
            err = check_list(cf, "expose", v);
            c->expose = v;
        } else if (tg_conf_arg_kv(cf, i, "credentials", &v)) {
            if (!tg_str_eq_lit(v, "on") && !tg_str_eq_lit(v, "off"))
                return tg_conf_errf(cf, "invalid credentials \"%.*s\" in \"cors\", expected on or "
                                        "off",
                                    TG_STR_FMT(v));
            c->credentials = tg_str_eq_lit(v, "on");
        } else if (tg_conf_arg_kv(cf, i, "max_age", &v)) {
            int64_t n;
            if (tg_parse_int(v, &n) != 0)
                return tg_conf_errf(cf, "invalid max_age \"%.*s\" in \"cors\"", TG_STR_FMT(v));
            c->max_age = v;
        } else {
            return tg_conf_errf(cf, "invalid parameter \"%s\" in \"cors\", expected origins=, "
                                    "methods=, headers=, expose_headers=, credentials=, "
                                    "max_age=, options_status= or preflight_continue=",
                                cf->args[i].text.p);
        }
        if (err)
            return err;
    }
    return NULL;
}

/* Is `v` one of the listed origins or matched by a pattern (md NULL: the
 * patterns are not tried)? */
static int origin_listed(const cors_conf_t *c, tg_str_t v, pcre2_match_data *md)
{
    for (int i = 0; i < c->norigins; i++) {
        const cors_origin_t *a = &c->origins[i];
        if (a->re == NULL ? tg_str_eq(a->exact, v)
                          : md && pcre2_match(a->re, (PCRE2_SPTR)v.p, v.len, 0, 0, md, NULL) >= 0)
            return 1;
    }
    return 0;
}

/* Access-Control-Allow-Origin for this request, empty when none. */
static tg_str_t allowed_origin(const cors_conf_t *c, tg_request_t *r)
{
    if (c->any_origin)
        return TG_STR("*");
    tg_header_t *o = tg_headers_find(&r->headers, TG_STR("Origin"));
    if (o == NULL)
        return TG_NULL_STR;
    if (c->reflect)
        return o->value;
    return origin_listed(c, o->value, *c->md) ? o->value : TG_NULL_STR;
}

/* The headers both answers carry: origin, Vary, credentials. */
static int origin_headers(const cors_conf_t *c, tg_request_t *r)
{
    tg_str_t origin = allowed_origin(c, r);
    if (origin.len &&
        tg_headers_set(r->arena, &r->resp_headers, TG_STR("Access-Control-Allow-Origin"), origin))
        return -1;
    if (!c->any_origin && tg_request_vary_add(r, "Origin") != 0)
        return -1;
    if (c->credentials && tg_headers_set(r->arena, &r->resp_headers,
                                         TG_STR("Access-Control-Allow-Credentials"), TG_STR("true")))
        return -1;
    return 0;
}

static int set_if(tg_request_t *r, const char *name, tg_str_t value)
{
    return value.len ? tg_headers_set(r->arena, &r->resp_headers, tg_str_c(name), value) : 0;
}

/* The preflight's headers, in the cors package's order. */
static int preflight_headers(const cors_conf_t *c, tg_request_t *r)
{
    tg_str_t allow_headers = c->headers;
    if (origin_headers(c, r) != 0 ||
        set_if(r, "Access-Control-Allow-Methods", c->methods) != 0)
        return TG_ERROR;
    if (c->headers.len == 0) { /* reflect what the browser asks for */
        tg_header_t *h = tg_headers_find(&r->headers, TG_STR("Access-Control-Request-Headers"));
        if (tg_request_vary_add(r, "Access-Control-Request-Headers") != 0)
            return TG_ERROR;
        allow_headers = h ? h->value : TG_NULL_STR;
    }
    if (set_if(r, "Access-Control-Allow-Headers", allow_headers) != 0 ||
        set_if(r, "Access-Control-Max-Age", c->max_age) != 0 ||
        set_if(r, "Access-Control-Expose-Headers", c->expose) != 0)
        return TG_ERROR;
    return 0;
}

/* Preflight: answered here, or marked to get its headers on the upstream's
 * answer (preflight_continue=on). */
static tg_rc_t cors_access(tg_request_t *r, void *conf)
{
    cors_conf_t *c = conf;
    if (r->method != HTTP_OPTIONS)
        return TG_OK;
    if (c->preflight_continue) {
        tg_module_ctx(r, &tg_cors_module) = (void *)&preflight_continued;
        return TG_OK;
    }
    tg_module_ctx(r, &tg_cors_module) = (void *)&preflight_answered;
    if (preflight_headers(c, r) != 0)
        return TG_ERROR;
    /* an empty answer: Content-Length: 0 except on a 204, where RFC 9110
     * forbids it (the cors package sends it there too, for Safari) */
    if (tg_request_respond(r, c->options_status, NULL, TG_NULL_STR) != 0)
        return TG_ERROR;
    return TG_DONE;
}

/* Actual requests: the allow headers on whatever the upstream answered. */
static tg_rc_t cors_response_headers(tg_request_t *r, void *conf)
{
    cors_conf_t *c = conf;
    void *x = tg_module_ctx(r, &tg_cors_module);
    if (x == &preflight_answered)
        return TG_OK; /* our own preflight answer */
    if (x == &preflight_continued)
        return preflight_headers(c, r) != 0 ? TG_ERROR : TG_OK;
    if (origin_headers(c, r) != 0 || set_if(r, "Access-Control-Expose-Headers", c->expose) != 0)
        return TG_ERROR;
    return TG_OK;
}

static int cors_init_worker(tg_worker_t *w)
{
    cors_conf_t *m = w->config->mconf[tg_cors_module.index];
    if (m->md_store == NULL && (m->md_store = pcre2_match_data_create(1, NULL)) == NULL)
        return -1;
    return 0;
}

static int cors_is_active(void *conf)
{
    return ((cors_conf_t *)conf)->enabled == 1;
}

/* --explain and -T: the origins allowed and the preflight answer. */
static const char *cors_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    cors_conf_t *c = conf;
    char *s = tg_arena_printf(a, "origins=%s", c->any_origin ? "*" : c->reflect ? "reflect" : "");
    for (int i = 0; s && !c->any_origin && !c->reflect && i < c->norigins; i++)
        s = tg_arena_printf(a, "%s%s%s%.*s", s, i ? "," : "", c->origins[i].re ? "~" : "",
                            TG_STR_FMT(c->origins[i].exact));
    if (s)
        s = tg_arena_printf(a, "%s methods=%.*s headers=%.*s expose=%.*s max_age=%.*s "
                               "credentials=%s options_status=%d preflight_continue=%s",
                            s, TG_STR_FMT(c->methods), TG_STR_FMT(c->headers),
                            TG_STR_FMT(c->expose), TG_STR_FMT(c->max_age),
                            c->credentials ? "on" : "off", c->options_status,
                            c->preflight_continue ? "on" : "off");
    for (int i = 0; s && req && i < req->nheaders; i++) {
        if (!tg_str_caseeq_lit(req->names[i], "Origin"))
            continue;
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        int ok = c->any_origin || c->reflect || origin_listed(c, req->values[i], md);
        pcre2_match_data_free(md);
        s = tg_arena_printf(a, "%s -> Origin %.*s %s", s, TG_STR_FMT(req->values[i]),
                            ok ? "allowed" : "not allowed (no Access-Control-Allow-Origin)");
    }
    return s;
}

static const tg_directive_t cors_directives[] = {
    {"cors", TG_SCOPE_HTTP, 0, 0, -1, set_cors, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_cors_module = {
    .name = "cors",
    .directives = cors_directives,
    .create_conf = cors_create_conf,
    .merge_conf = cors_merge_conf,
    .is_active = cors_is_active,
    .explain = cors_explain,
    .init_worker = cors_init_worker,
    .on_access = cors_access,
    .on_response_headers = cors_response_headers,
};
