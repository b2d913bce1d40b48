/* cors: Cross-Origin Resource Sharing answered at the gateway, with the same
 * observable behaviour as the `cors` npm package given the same options
 * (origin as a list, or "*").
 *
 *   cors [origins=A,B|*] [methods=GET,POST] [headers=X-A,X-B] [expose=X-C]
 *        [credentials=on|off] [max_age=SECONDS];
 *   cors off;
 *
 * Preflight: every OPTIONS request is answered here with 204 and never
 * reaches the upstream. Other requests get Access-Control-Allow-Origin (the
 * request's Origin when it is listed, "*" for origins=*; nothing for a
 * foreign origin), Allow-Credentials and Expose-Headers, plus Vary: Origin
 * when the answer depends on the origin. */
#include <string.h>
#include <llhttp.h>
#include "module.h"
#include "request.h"

typedef struct {
    int enabled; /* TG_CONF_UNSET, 0 (cors off), 1 */
    int any_origin;
    tg_str_t *origins;
    int norigins;
    tg_str_t methods, headers, expose, max_age;
    int credentials;
} cors_conf_t;

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
    c->any_origin = 1;
    c->methods = TG_STR("GET,HEAD,PUT,PATCH,POST,DELETE");
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v;
        const char *err = NULL;
        if (tg_conf_arg_kv(cf, i, "origins", &v)) {
            if (tg_str_eq_lit(v, "*"))
                continue;
            c->any_origin = 0;
            int n = 1;
            for (size_t k = 0; k < v.len; k++)
                n += v.p[k] == ',';
            c->origins = tg_arena_alloc(cf->arena, (size_t)n * sizeof(tg_str_t));
            if (c->origins == NULL)
                return "out of memory";
            const char *p = v.p, *end = v.len ? v.p + v.len : v.p;
            while (p <= end) {
                const char *e = memchr(p, ',', (size_t)(end - p));
                if (e == NULL)
                    e = end;
                tg_str_t o = {p, (size_t)(e - p)};
                if (o.len == 0 || memchr(o.p, ' ', o.len) || memchr(o.p, '*', o.len))
                    return tg_conf_errf(cf, "invalid origin \"%.*s\" in \"cors\", expected "
                                            "scheme://host[:port] or origins=*",
                                        TG_STR_FMT(o));
                c->origins[c->norigins++] = o;
                p = e + 1;
            }
        } else if (tg_conf_arg_kv(cf, i, "methods", &v)) {
            err = check_list(cf, "methods", v);
            c->methods = v;
        } else if (tg_conf_arg_kv(cf, i, "headers", &v)) {
            err = check_list(cf, "headers", v);
            c->headers = v;
        } else if (tg_conf_arg_kv(cf, i, "expose", &v)) {
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
                                    "methods=, headers=, expose=, credentials= or max_age=",
                                cf->args[i].text.p);
        }
        if (err)
            return err;
    }
    return NULL;
}

/* Access-Control-Allow-Origin for this request, empty when none. */
static tg_str_t allowed_origin(const cors_conf_t *c, tg_request_t *r)
{
    if (c->any_origin)
        return TG_STR("*");
    tg_header_t *o = tg_headers_find(&r->headers, TG_STR("Origin"));
    if (o == NULL)
        return TG_NULL_STR;
    for (int i = 0; i < c->norigins; i++)
        if (tg_str_eq(c->origins[i], o->value))
            return o->value;
    return TG_NULL_STR;
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

/* Preflight: answered here. */
static tg_rc_t cors_access(tg_request_t *r, void *conf)
{
    cors_conf_t *c = conf;
    if (r->method != HTTP_OPTIONS)
        return TG_OK;
    tg_module_ctx(r, &tg_cors_module) = c; /* the header hook leaves this one alone */
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
    if (tg_request_respond(r, 204, NULL, TG_NULL_STR) != 0)
        return TG_ERROR;
    return TG_DONE;
}

/* Actual requests: the allow headers on whatever the upstream answered. */
static tg_rc_t cors_response_headers(tg_request_t *r, void *conf)
{
    cors_conf_t *c = conf;
    if (tg_module_ctx(r, &tg_cors_module))
        return TG_OK; /* our own preflight answer */
    if (origin_headers(c, r) != 0 || set_if(r, "Access-Control-Expose-Headers", c->expose) != 0)
        return TG_ERROR;
    return TG_OK;
}

static int cors_is_active(void *conf)
{
    return ((cors_conf_t *)conf)->enabled == 1;
}

static const tg_directive_t cors_directives[] = {
    {"cors", TG_SCOPE_HTTP, 0, 0, 6, set_cors, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_cors_module = {
    .name = "cors",
    .directives = cors_directives,
    .create_conf = cors_create_conf,
    .merge_conf = cors_merge_conf,
    .is_active = cors_is_active,
    .on_access = cors_access,
    .on_response_headers = cors_response_headers,
};
