/* Response header directives.
 *
 *   add_header NAME VALUE [always];   append a header (VALUE may use variables)
 *   remove_header NAME;               drop every header of that name
 *
 * As in nginx, add_header applies to 200, 201, 204, 206, 301, 302, 303, 304,
 * 307 and 308 answers unless `always` is given, and a scope with its own
 * add_header (or remove_header) lines replaces the inherited list. Removals
 * run after every other module, so they also drop the gateway's own headers
 * (security headers, Server). */
#include <string.h>
#include "module.h"
#include "request.h"
#include "var.h"

typedef struct {
    tg_str_t name;
    tg_tpl_t *value;
    int always;
} hd_add_t;

typedef struct {
    hd_add_t *add;
    int nadd;
    tg_str_t *remove;
    int nremove;
    int given; /* this scope has its own lists */
} hd_conf_t;

static void *hd_create_conf(tg_conf_t *cf)
{
    return tg_arena_alloc(cf->arena, sizeof(hd_conf_t));
}

static const char *hd_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    hd_conf_t *p = parent, *c = child;
    if (!c->given)
        *c = *p;
    return NULL;
}

static const char *set_add_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    hd_conf_t *c = conf;
    tg_str_t name = tg_conf_arg(cf, 1), value = tg_conf_arg(cf, 2);
    const char *err = tg_conf_check_header(cf, name, value);
    if (err)
        return err;
    if (cf->nargs == 3 && !tg_str_eq_lit(tg_conf_arg(cf, 3), "always"))
        return tg_conf_errf(cf, "invalid parameter \"%s\" in \"add_header\", expected always",
                            cf->args[3].text.p);
    hd_add_t *v = tg_arena_grow(cf->arena, c->add, (size_t)c->nadd, 1, sizeof(*v));
    if (v == NULL)
        return "out of memory";
    v[c->nadd].name = tg_arena_str(cf->arena, name);
    if ((v[c->nadd].value = tg_tpl_compile(cf, value, &err)) == NULL)
        return err;
    v[c->nadd].always = cf->nargs == 3;
    c->add = v;
    c->nadd++;
    c->given = 1;
    return NULL;
}

static const char *set_remove_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    hd_conf_t *c = conf;
    tg_str_t name = tg_conf_arg(cf, 1);
    if (!tg_conf_is_token(name))
        return tg_conf_errf(cf, "invalid header name \"%.*s\"", TG_STR_FMT(name));
    tg_str_t *v = tg_arena_grow(cf->arena, c->remove, (size_t)c->nremove, 1, sizeof(*v));
    if (v == NULL)
        return "out of memory";
    v[c->nremove++] = tg_arena_str(cf->arena, name);
    c->remove = v;
    c->given = 1;
    return NULL;
}

static int status_gets_headers(int st)
{
    switch (st) {
    case 200: case 201: case 204: case 206:
    case 301: case 302: case 303: case 304: case 307: case 308:
        return 1;
    default:
        return 0;
    }
}

static tg_rc_t hd_response_headers(tg_request_t *r, void *conf)
{
    hd_conf_t *c = conf;
    int ok_status = status_gets_headers(r->status);
    for (int i = 0; i < c->nadd; i++) {
        tg_str_t v;
        if (!ok_status && !c->add[i].always)
            continue;
        if (tg_tpl_eval(r, c->add[i].value, &v) != 0)
            return TG_ERROR;
        if (v.len && tg_headers_add(r->arena, &r->resp_headers, c->add[i].name, v) != 0)
            return TG_ERROR;
    }
    for (int i = 0; i < c->nremove; i++)
        tg_headers_remove(&r->resp_headers, c->remove[i]);
    return TG_OK;
}

static int hd_is_active(void *conf)
{
    hd_conf_t *c = conf;
    return c->nadd > 0 || c->nremove > 0;
}

static const tg_directive_t hd_directives[] = {
    {"add_header", TG_SCOPE_HTTP, 0, 2, 3, set_add_header, 0},
    {"remove_header", TG_SCOPE_HTTP, 0, 1, 1, set_remove_header, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_headers_module = {
    .name = "headers",
    .directives = hd_directives,
    .create_conf = hd_create_conf,
    .merge_conf = hd_merge_conf,
    .is_active = hd_is_active,
    .on_response_headers = hd_response_headers,
};
