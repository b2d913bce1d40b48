/* security_headers: the response headers the `helmet` npm package (8.x) sets
 * by default, so a Node app can drop helmet and get the same answers.
 *
 *   security_headers on|off;             helmet's defaults (and no X-Powered-By)
 *   security_header NAME VALUE|off;      change or drop one, or add another
 *   security_headers_override on|off;    replace what the upstream set itself
 *
 * Strict-Transport-Security goes out only on TLS listeners, unless it is set
 * explicitly with security_header (then always). A header the upstream sent
 * itself is kept unless security_headers_override is on (which also makes
 * `security_header NAME off` remove the upstream's). */
#include <string.h>
#include "module.h"
#include "request.h"

typedef struct {
    tg_str_t name, value; /* value.p == NULL: off */
} sh_header_t;

typedef struct {
    int enabled;  /* security_headers */
    int override; /* security_headers_override */
    sh_header_t *set; /* security_header entries of the scope that defined them */
    int nset;
    int set_given;
} sh_conf_t;

static const sh_header_t helmet_defaults[] = {
    {TG_STR("Content-Security-Policy"),
     TG_STR("default-src 'self';base-uri 'self';font-src 'self' https: data:;"
            "form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';"
            "script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';"
            "upgrade-insecure-requests")},
    {TG_STR("Cross-Origin-Opener-Policy"), TG_STR("same-origin")},
    {TG_STR("Cross-Origin-Resource-Policy"), TG_STR("same-origin")},
    {TG_STR("Origin-Agent-Cluster"), TG_STR("?1")},
    {TG_STR("Referrer-Policy"), TG_STR("no-referrer")},
    {TG_STR("Strict-Transport-Security"), TG_STR("max-age=31536000; includeSubDomains")},
    {TG_STR("X-Content-Type-Options"), TG_STR("nosniff")},
    {TG_STR("X-DNS-Prefetch-Control"), TG_STR("off")},
    {TG_STR("X-Download-Options"), TG_STR("noopen")},
    {TG_STR("X-Frame-Options"), TG_STR("SAMEORIGIN")},
    {TG_STR("X-Permitted-Cross-Domain-Policies"), TG_STR("none")},
    {TG_STR("X-XSS-Protection"), TG_STR("0")},
};
#define NDEFAULTS (sizeof(helmet_defaults) / sizeof(helmet_defaults[0]))

tg_module_t tg_security_headers_module;

static void *sh_create_conf(tg_conf_t *cf)
{
    sh_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c) {
        c->enabled = TG_CONF_UNSET;
        c->override = TG_CONF_UNSET;
    }
    return c;
}

static const char *sh_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    sh_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->enabled, p->enabled, 0);
    TG_CONF_MERGE(c->override, p->override, 0);
    if (!c->set_given) {
        c->set = p->set;
        c->nset = p->nset;
    }
    return NULL;
}

/* security_header NAME VALUE|off */
static const char *set_security_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    sh_conf_t *c = conf;
    tg_str_t name = tg_conf_arg(cf, 1), value = tg_conf_arg(cf, 2);
    const char *err = tg_conf_check_header(cf, name, value);
    if (err)
        return err;
    for (int i = 0; i < c->nset; i++)
        if (tg_str_caseeq(c->set[i].name, name))
            return tg_conf_errf(cf, "duplicate \"security_header %.*s\"", TG_STR_FMT(name));
    sh_header_t *v = tg_arena_grow(cf->arena, c->set, (size_t)c->nset, 1, sizeof(*v));
    if (v == NULL)
        return "out of memory";
    v[c->nset].name = tg_arena_str(cf->arena, name);
    v[c->nset].value = tg_str_eq_lit(value, "off") ? TG_NULL_STR : tg_arena_str(cf->arena, value);
    c->set = v;
    c->nset++;
    c->set_given = 1;
    return NULL;
}

static const sh_header_t *explicit_value(const sh_conf_t *c, tg_str_t name)
{
    for (int i = 0; i < c->nset; i++)
        if (tg_str_caseeq(c->set[i].name, name))
            return &c->set[i];
    return NULL;
}

static int put(tg_request_t *r, const sh_conf_t *c, tg_str_t name, tg_str_t value)
{
    if (tg_headers_find(&r->resp_headers, name)) {
        if (!c->override)
            return 0; /* the upstream's own value wins */
        return tg_headers_set(r->arena, &r->resp_headers, name, value);
    }
    return tg_headers_add(r->arena, &r->resp_headers, name, value);
}

static tg_rc_t sh_response_headers(tg_request_t *r, void *conf)
{
    sh_conf_t *c = conf;
    int tls = tg_str_eq_lit(r->scheme, "https");
    if (c->enabled) {
        /* one pass over the response: drop X-Powered-By and note which of
         * the defaults the upstream set itself (no per-default scan) */
        uint32_t present = 0, w = 0;
        tg_headers_t *hs = &r->resp_headers;
        for (uint32_t i = 0; i < hs->n; i++) {
            tg_str_t n = hs->h[i].name;
            if (tg_str_caseeq_lit(n, "X-Powered-By"))
                continue;
            for (size_t k = 0; k < NDEFAULTS; k++)
                if (tg_str_caseeq(n, helmet_defaults[k].name))
                    present |= 1u << k;
            hs->h[w++] = hs->h[i];
        }
        hs->n = w;
        for (size_t i = 0; i < NDEFAULTS; i++) {
            const sh_header_t *h = &helmet_defaults[i];
            const sh_header_t *x = c->nset ? explicit_value(c, h->name) : NULL;
            if (x && x->value.p == NULL) { /* security_header NAME off */
                if (c->override)
                    tg_headers_remove(&r->resp_headers, h->name);
                continue;
            }
            if (!x && !tls && tg_str_caseeq_lit(h->name, "Strict-Transport-Security"))
                continue; /* HSTS means nothing on plain HTTP unless asked for */
            tg_str_t v = x ? x->value : h->value;
            if ((present & (1u << i)) ? (c->override && tg_headers_set(r->arena, hs, h->name, v))
                                      : tg_headers_add(r->arena, hs, h->name, v))
                return TG_ERROR;
        }
    }
    /* explicit headers that are not among the defaults (or all of them when
     * security_headers is off) */
    for (int i = 0; i < c->nset; i++) {
        const sh_header_t *x = &c->set[i];
        int is_default = 0;
        for (size_t k = 0; c->enabled && k < NDEFAULTS && !is_default; k++)
            is_default = tg_str_caseeq(helmet_defaults[k].name, x->name);
        if (is_default)
            continue;
        if (x->value.p == NULL) {
            if (c->override)
                tg_headers_remove(&r->resp_headers, x->name);
            continue;
        }
        if (put(r, c, x->name, x->value) != 0)
            return TG_ERROR;
    }
    return TG_OK;
}

static int sh_is_active(void *conf)
{
    sh_conf_t *c = conf;
    return c->enabled == 1 || c->nset > 0;
}

static const tg_directive_t sh_directives[] = {
    {"security_headers", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag, offsetof(sh_conf_t, enabled)},
    {"security_header", TG_SCOPE_HTTP, 0, 2, 2, set_security_header, 0},
    {"security_headers_override", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(sh_conf_t, override)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_security_headers_module = {
    .name = "security_headers",
    .directives = sh_directives,
    .create_conf = sh_create_conf,
    .merge_conf = sh_merge_conf,
    .is_active = sh_is_active,
    .on_response_headers = sh_response_headers,
};
