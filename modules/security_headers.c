/* security_headers: the response headers the `helmet` npm package (8.x) sets
 * by default, so a Node app can drop helmet and get the same answers, and
 * helmet's options to change them.
 *
 *   security_headers on|off;             helmet's defaults (and no X-Powered-By)
 *   security_header NAME VALUE|off;      change or drop one, or add another
 *   security_headers_override on|off;    replace what the upstream set itself
 *   security_headers_csp DIRECTIVE [SOURCE...] | DIRECTIVE off;
 *   security_headers_csp_defaults on|off;      useDefaults
 *   security_headers_csp_report_only on|off;   reportOnly
 *   security_headers_hsts [max_age=N] [include_subdomains=on|off] [preload=on|off];
 *   security_headers_hide_powered_by on|off;   hidePoweredBy
 *
 * The values helmet checks are checked here too, at config time, with its
 * rules (policy names, Referrer-Policy tokens, X-Frame-Options actions, CSP
 * directive names and quoting), and X-Frame-Options is normalised as helmet
 * does (deny -> DENY, same-origin -> SAMEORIGIN). The CSP is built once per
 * scope at merge time: helmet's default directives (unless csp_defaults
 * off), each security_headers_csp line replacing a directive in its place,
 * removing it (off) or adding it at the end, joined as helmet joins them.
 *
 * Strict-Transport-Security goes out only on TLS listeners, unless it is set
 * explicitly with security_header or security_headers_hsts (then always). A
 * header the upstream sent itself is kept unless security_headers_override
 * is on (which also makes `security_header NAME off` remove the upstream's). */
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
    /* security_headers_csp lines of the scope that has them (value.p NULL: off) */
    sh_header_t *csp_dirs;
    int ncsp_dirs;
    int csp_defaults;    /* security_headers_csp_defaults */
    int csp_report_only; /* security_headers_csp_report_only */
    tg_str_t csp_name, csp; /* built by merge; csp.p NULL: helmet's default CSP */
    tg_str_t hsts;          /* security_headers_hsts's value, or NULL */
    int hide_powered_by;    /* security_headers_hide_powered_by */
} sh_conf_t;

#define CSP_INDEX 0  /* Content-Security-Policy in helmet_defaults */
#define HSTS_INDEX 5 /* Strict-Transport-Security */

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
        c->ncsp_dirs = TG_CONF_UNSET;
        c->csp_defaults = TG_CONF_UNSET;
        c->csp_report_only = TG_CONF_UNSET;
        c->hide_powered_by = TG_CONF_UNSET;
    }
    return c;
}

/* helmet's default CSP directives, in its order */
static const struct {
    const char *name, *value;
} csp_defaults[] = {
    {"default-src", "'self'"},
    {"base-uri", "'self'"},
    {"font-src", "'self' https: data:"},
    {"form-action", "'self'"},
    {"frame-ancestors", "'self'"},
    {"img-src", "'self' data:"},
    {"object-src", "'none'"},
    {"script-src", "'self'"},
    {"script-src-attr", "'none'"},
    {"style-src", "'self' https: 'unsafe-inline'"},
    {"upgrade-insecure-requests", ""},
};
#define NCSP_DEFAULTS (sizeof(csp_defaults) / sizeof(csp_defaults[0]))
#define CSP_MAX_DIRS 64

/* The CSP of a scope: helmet's defaults (or none), then each configured
 * directive replacing one in place, dropping it, or appended (a JS Map's
 * set/delete order). Returns an error, or NULL with c->csp set. */
static const char *build_csp(tg_conf_t *cf, sh_conf_t *c)
{
    sh_header_t d[NCSP_DEFAULTS + CSP_MAX_DIRS];
    int n = 0;
    if (c->csp_defaults)
        for (size_t i = 0; i < NCSP_DEFAULTS; i++)
            d[n++] = (sh_header_t){tg_str_c(csp_defaults[i].name), tg_str_c(csp_defaults[i].value)};
    for (int i = 0; i < c->ncsp_dirs; i++) {
        const sh_header_t *x = &c->csp_dirs[i];
        int k = 0;
        while (k < n && !tg_str_eq(d[k].name, x->name))
            k++;
        if (x->value.p == NULL) {
            if (k < n) {
                memmove(&d[k], &d[k + 1], (size_t)(n - k - 1) * sizeof(d[0]));
                n--;
            }
        } else {
            d[k] = *x;
            n += k == n;
        }
    }
    int has_default = 0;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        has_default |= tg_str_eq_lit(d[i].name, "default-src");
        len += d[i].name.len + 2 + d[i].value.len;
    }
    if (n == 0)
        return "\"security_headers_csp\": the Content-Security-Policy has no directives (drop "
               "the header with \"security_header Content-Security-Policy off\")";
    if (!has_default)
        return "\"security_headers_csp\": the Content-Security-Policy needs a default-src";
    char *v = tg_arena_alloc_nz(cf->arena, len + 1), *p = v;
    if (v == NULL)
        return "out of memory";
    for (int i = 0; i < n; i++) {
        if (i)
            *p++ = ';';
        memcpy(p, d[i].name.p, d[i].name.len);
        p += d[i].name.len;
        if (d[i].value.len) {
            *p++ = ' ';
            memcpy(p, d[i].value.p, d[i].value.len);
            p += d[i].value.len;
        }
    }
    *p = '\0';
    c->csp = (tg_str_t){v, (size_t)(p - v)};
    return NULL;
}

static const char *sh_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    sh_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->enabled, p->enabled, 0);
    TG_CONF_MERGE(c->override, p->override, 0);
    TG_CONF_MERGE(c->csp_defaults, p->csp_defaults, 1);
    TG_CONF_MERGE(c->csp_report_only, p->csp_report_only, 0);
    TG_CONF_MERGE(c->hide_powered_by, p->hide_powered_by, 1);
    TG_CONF_MERGE_STR(c->hsts, p->hsts, TG_NULL_STR);
    if (!c->set_given) {
        c->set = p->set;
        c->nset = p->nset;
    }
    if (c->ncsp_dirs == TG_CONF_UNSET) {
        c->csp_dirs = p->csp_dirs;
        c->ncsp_dirs = p->ncsp_dirs == TG_CONF_UNSET ? 0 : p->ncsp_dirs;
    }
    c->csp_name = c->csp_report_only ? TG_STR("Content-Security-Policy-Report-Only")
                                     : TG_STR("Content-Security-Policy");
    c->csp = TG_NULL_STR;
    /* csp_defaults off and no directive (yet: a location may add them): no CSP */
    return c->ncsp_dirs ? build_csp(cf, c) : NULL;
}

static int in_list(tg_str_t v, const char *const *list)
{
    for (; *list; list++)
        if (tg_str_eq_lit(v, *list))
            return 1;
    return 0;
}

/* helmet's checks on the headers it knows; *value may be normalised. */
static const char *check_known(tg_conf_t *cf, tg_str_t name, tg_str_t *value)
{
    static const char *const coep[] = {"require-corp", "credentialless", "unsafe-none", NULL};
    static const char *const coop[] = {"same-origin", "same-origin-allow-popups",
                                       "noopener-allow-popups", "unsafe-none", NULL};
    static const char *const corp[] = {"same-origin", "same-site", "cross-origin", NULL};
    static const char *const xpcdp[] = {"none", "master-only", "by-content-type", "all", NULL};
    static const char *const dns[] = {"on", "off", NULL};
    static const char *const referrer[] = {"no-referrer",
                                           "no-referrer-when-downgrade",
                                           "same-origin",
                                           "origin",
                                           "strict-origin",
                                           "origin-when-cross-origin",
                                           "strict-origin-when-cross-origin",
                                           "unsafe-url",
                                           NULL};
    const char *const *allowed = tg_str_caseeq_lit(name, "Cross-Origin-Embedder-Policy")   ? coep
                                 : tg_str_caseeq_lit(name, "Cross-Origin-Opener-Policy")   ? coop
                                 : tg_str_caseeq_lit(name, "Cross-Origin-Resource-Policy") ? corp
                                 : tg_str_caseeq_lit(name, "X-Permitted-Cross-Domain-Policies")
                                     ? xpcdp
                                 : tg_str_caseeq_lit(name, "X-DNS-Prefetch-Control") ? dns
                                                                                     : NULL;
    if (allowed && !in_list(*value, allowed))
        return tg_conf_errf(cf, "\"security_header %.*s\": unsupported value \"%.*s\"",
                            TG_STR_FMT(name), TG_STR_FMT(*value));
    if (tg_str_caseeq_lit(name, "X-Frame-Options")) {
        if (tg_str_caseeq_lit(*value, "deny"))
            *value = TG_STR("DENY");
        else if (tg_str_caseeq_lit(*value, "sameorigin") ||
                 tg_str_caseeq_lit(*value, "same-origin"))
            *value = TG_STR("SAMEORIGIN");
        else
            return tg_conf_errf(cf, "\"security_header X-Frame-Options\": invalid action \"%.*s\", "
                                    "expected DENY or SAMEORIGIN",
                                TG_STR_FMT(*value));
    }
    if (tg_str_caseeq_lit(name, "Referrer-Policy")) {
        /* a comma-separated list of distinct tokens */
        const char *p = value->p, *end = value->p + value->len;
        while (p <= end) {
            const char *e = memchr(p, ',', (size_t)(end - p));
            if (e == NULL)
                e = end;
            tg_str_t t = {p, (size_t)(e - p)};
            if (!in_list(t, referrer))
                return tg_conf_errf(cf, "\"security_header Referrer-Policy\": unexpected policy "
                                        "token \"%.*s\"",
                                    TG_STR_FMT(t));
            for (const char *q = value->p; q < p;) {
                const char *f = memchr(q, ',', (size_t)(p - q));
                if (tg_str_eq((tg_str_t){q, (size_t)(f - q)}, t))
                    return tg_conf_errf(cf, "\"security_header Referrer-Policy\": duplicate "
                                            "policy token \"%.*s\"",
                                        TG_STR_FMT(t));
                q = f + 1;
            }
            p = e + 1;
        }
    }
    return NULL;
}

/* A CSP source that CSP writes in single quotes ('self', 'nonce-...'), as
 * helmet lists them. */
static int csp_keyword(tg_str_t s)
{
    static const char *const quoted[] = {"none",
                                         "self",
                                         "strict-dynamic",
                                         "report-sample",
                                         "inline-speculation-rules",
                                         "unsafe-inline",
                                         "unsafe-eval",
                                         "unsafe-hashes",
                                         "wasm-unsafe-eval",
                                         NULL};
    return in_list(s, quoted) || (s.len > 6 && memcmp(s.p, "nonce-", 6) == 0) ||
           (s.len > 7 && (memcmp(s.p, "sha256-", 7) == 0 || memcmp(s.p, "sha384-", 7) == 0 ||
                          memcmp(s.p, "sha512-", 7) == 0));
}

/* security_headers_csp DIRECTIVE [SOURCE...] | DIRECTIVE off. The name may be
 * written as helmet's keys are (scriptSrc) or as sent (script-src). */
static const char *set_csp(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    sh_conf_t *c = conf;
    tg_str_t raw = tg_conf_arg(cf, 1);
    int n = c->ncsp_dirs == TG_CONF_UNSET ? 0 : c->ncsp_dirs;
    if (n >= CSP_MAX_DIRS)
        return "too many \"security_headers_csp\" lines";
    int ok = raw.len > 0 && raw.p[0] >= 'a' && raw.p[0] <= 'z' && raw.p[raw.len - 1] != '-';
    size_t len = raw.len;
    for (size_t i = 0; ok && i < raw.len; i++) {
        char ch = raw.p[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '-';
        len += ch >= 'A' && ch <= 'Z';
    }
    if (!ok)
        return tg_conf_errf(cf, "invalid directive name \"%.*s\" in \"security_headers_csp\"",
                            TG_STR_FMT(raw));
    char *nm = tg_arena_alloc_nz(cf->arena, len + 1), *q = nm;
    if (nm == NULL)
        return "out of memory";
    for (size_t i = 0; i < raw.len; i++) { /* scriptSrc -> script-src, as helmet's dashify */
        char ch = raw.p[i];
        if (ch >= 'A' && ch <= 'Z') {
            *q++ = '-';
            ch = (char)(ch - 'A' + 'a');
        }
        *q++ = ch;
    }
    *q = '\0';
    tg_str_t name = {nm, len};
    for (int i = 0; i < n; i++)
        if (tg_str_eq(c->csp_dirs[i].name, name))
            return tg_conf_errf(cf, "duplicate directive \"%s\" in \"security_headers_csp\"", nm);
    tg_str_t value = TG_STR("");
    if (cf->nargs == 2 && tg_str_eq_lit(tg_conf_arg(cf, 2), "off")) {
        if (tg_str_eq_lit(name, "default-src"))
            return "\"security_headers_csp default-src off\": the Content-Security-Policy needs "
                   "a default-src";
        value = TG_NULL_STR;
    } else {
        size_t vlen = 0;
        for (int i = 2; i <= cf->nargs; i++) {
            tg_str_t s = tg_conf_arg(cf, i);
            if (s.len == 0 || memchr(s.p, ';', s.len) || memchr(s.p, ',', s.len) ||
                memchr(s.p, ' ', s.len))
                return tg_conf_errf(cf, "invalid value \"%.*s\" for \"%s\" in "
                                        "\"security_headers_csp\"",
                                    TG_STR_FMT(s), nm);
            /* 'self' in the config file is a quoted word: the lexer took the
             * quotes, which CSP needs back; a bare self is helmet's error */
            int keyword = csp_keyword(s);
            if (keyword && !cf->args[i].quoted)
                return tg_conf_errf(cf, "\"%.*s\" for \"%s\" in \"security_headers_csp\" should "
                                        "be quoted: '%.*s'",
                                    TG_STR_FMT(s), nm, TG_STR_FMT(s));
            vlen += s.len + 1 + (keyword ? 2 : 0);
        }
        if (vlen) {
            char *v = tg_arena_alloc_nz(cf->arena, vlen), *w = v;
            if (v == NULL)
                return "out of memory";
            for (int i = 2; i <= cf->nargs; i++) {
                tg_str_t s = tg_conf_arg(cf, i);
                int kw = csp_keyword(s);
                if (i > 2)
                    *w++ = ' ';
                if (kw)
                    *w++ = '\'';
                memcpy(w, s.p, s.len);
                w += s.len;
                if (kw)
                    *w++ = '\'';
            }
            value = (tg_str_t){v, (size_t)(w - v)};
        }
    }
    sh_header_t *v = tg_arena_grow(cf->arena, n ? c->csp_dirs : NULL, (size_t)n, 1, sizeof(*v));
    if (v == NULL)
        return "out of memory";
    v[n] = (sh_header_t){name, value};
    c->csp_dirs = v;
    c->ncsp_dirs = n + 1;
    return NULL;
}

/* security_headers_hsts [max_age=N] [include_subdomains=on|off] [preload=on|off]:
 * helmet's strictTransportSecurity options, defaults max-age one year and
 * includeSubDomains. Explicit, so it goes out on plain HTTP too. */
static const char *set_hsts(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    sh_conf_t *c = conf;
    if (c->hsts.p)
        return "\"security_headers_hsts\" directive is duplicate";
    int64_t max_age = 31536000;
    int sub = 1, preload = 0;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v;
        int *flag = NULL;
        if (tg_conf_arg_kv(cf, i, "max_age", &v)) {
            if (tg_parse_int(v, &max_age) != 0 || max_age < 0)
                return tg_conf_errf(cf, "invalid max_age \"%.*s\" in \"security_headers_hsts\"",
                                    TG_STR_FMT(v));
            continue;
        }
        if (tg_conf_arg_kv(cf, i, "include_subdomains", &v))
            flag = &sub;
        else if (tg_conf_arg_kv(cf, i, "preload", &v))
            flag = &preload;
        if (flag == NULL || (!tg_str_eq_lit(v, "on") && !tg_str_eq_lit(v, "off")))
            return tg_conf_errf(cf, "invalid parameter \"%s\" in \"security_headers_hsts\", "
                                    "expected max_age=N, include_subdomains=on|off or "
                                    "preload=on|off",
                                cf->args[i].text.p);
        *flag = tg_str_eq_lit(v, "on");
    }
    char *h = tg_arena_printf(cf->arena, "max-age=%lld%s%s", (long long)max_age,
                              sub ? "; includeSubDomains" : "", preload ? "; preload" : "");
    if (h == NULL)
        return "out of memory";
    c->hsts = tg_str_c(h);
    return NULL;
}

/* security_header NAME VALUE|off */
static const char *set_security_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    sh_conf_t *c = conf;
    tg_str_t name = tg_conf_arg(cf, 1), value = tg_conf_arg(cf, 2);
    const char *err = tg_conf_check_header(cf, name, value);
    if (err == NULL && !tg_str_eq_lit(value, "off"))
        err = check_known(cf, name, &value);
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
            if (c->hide_powered_by && tg_str_caseeq_lit(n, "X-Powered-By"))
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
            if (!x && i == CSP_INDEX && (c->csp.p || c->csp_report_only || !c->csp_defaults))
                continue; /* a configured CSP (or none): below */
            if (!x && i == HSTS_INDEX && c->hsts.p)
                continue; /* security_headers_hsts: below */
            if (!x && !tls && i == HSTS_INDEX)
                continue; /* HSTS means nothing on plain HTTP unless asked for */
            tg_str_t v = x ? x->value : h->value;
            if ((present & (1u << i)) ? (c->override && tg_headers_set(r->arena, hs, h->name, v))
                                      : tg_headers_add(r->arena, hs, h->name, v))
                return TG_ERROR;
        }
    }
    /* the configured CSP and HSTS, unless security_header names them */
    if ((c->csp.p || (c->enabled && c->csp_report_only && c->csp_defaults)) &&
        !explicit_value(c, TG_STR("Content-Security-Policy")) &&
        put(r, c, c->csp_name, c->csp.p ? c->csp : helmet_defaults[CSP_INDEX].value) != 0)
        return TG_ERROR;
    if (c->hsts.p && !explicit_value(c, helmet_defaults[HSTS_INDEX].name) &&
        put(r, c, helmet_defaults[HSTS_INDEX].name, c->hsts) != 0)
        return TG_ERROR;
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
    return c->enabled == 1 || c->nset > 0 || c->csp.p || c->hsts.p;
}

/* --explain and -T: the headers this scope sends (names; the values of the
 * configured ones), in the order sh_response_headers adds them. */
static const char *sh_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    sh_conf_t *c = conf;
    char *s = tg_arena_printf(a, "override=%s", c->override ? "on" : "off");
    if (c->enabled) {
        if (c->hide_powered_by)
            s = s ? tg_arena_printf(a, "%s, X-Powered-By removed", s) : NULL;
        for (size_t i = 0; s && i < NDEFAULTS; i++) {
            const sh_header_t *h = &helmet_defaults[i];
            const sh_header_t *x = c->nset ? explicit_value(c, h->name) : NULL;
            if ((x && x->value.p == NULL) ||
                (!x && i == CSP_INDEX && (c->csp.p || c->csp_report_only || !c->csp_defaults)) ||
                (!x && i == HSTS_INDEX && c->hsts.p))
                continue;
            s = tg_arena_printf(a, "%s, %.*s%s", s, TG_STR_FMT(h->name),
                                !x && i == HSTS_INDEX ? " (https only)" : "");
        }
    }
    if (s && (c->csp.p || (c->enabled && c->csp_report_only && c->csp_defaults)) &&
        !explicit_value(c, TG_STR("Content-Security-Policy")))
        s = tg_arena_printf(a, "%s, %.*s: %.*s", s, TG_STR_FMT(c->csp_name),
                            TG_STR_FMT(c->csp.p ? c->csp : helmet_defaults[CSP_INDEX].value));
    if (s && c->hsts.p && !explicit_value(c, helmet_defaults[HSTS_INDEX].name))
        s = tg_arena_printf(a, "%s, Strict-Transport-Security: %.*s", s, TG_STR_FMT(c->hsts));
    for (int i = 0; s && i < c->nset; i++)
        s = c->set[i].value.p
                ? tg_arena_printf(a, "%s, %.*s: %.*s", s, TG_STR_FMT(c->set[i].name),
                                  TG_STR_FMT(c->set[i].value))
                : tg_arena_printf(a, "%s, %.*s removed", s, TG_STR_FMT(c->set[i].name));
    return s;
}

static const tg_directive_t sh_directives[] = {
    {"security_headers", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag, offsetof(sh_conf_t, enabled)},
    {"security_header", TG_SCOPE_HTTP, 0, 2, 2, set_security_header, 0},
    {"security_headers_override", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(sh_conf_t, override)},
    {"security_headers_csp", TG_SCOPE_HTTP, 0, 1, -1, set_csp, 0},
    {"security_headers_csp_defaults", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(sh_conf_t, csp_defaults)},
    {"security_headers_csp_report_only", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(sh_conf_t, csp_report_only)},
    {"security_headers_hsts", TG_SCOPE_HTTP, 0, 0, 3, set_hsts, 0},
    {"security_headers_hide_powered_by", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(sh_conf_t, hide_powered_by)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_security_headers_module = {
    .name = "security_headers",
    .directives = sh_directives,
    .create_conf = sh_create_conf,
    .merge_conf = sh_merge_conf,
    .is_active = sh_is_active,
    .explain = sh_explain,
    .on_response_headers = sh_response_headers,
};
