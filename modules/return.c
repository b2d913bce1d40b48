/* `return CODE [TEXT | URL];` (server, location): a content handler that
 * answers without going upstream. It runs in the content phase, so rewrite,
 * access (rate limits, allow/deny) and route hooks have run first. For 301,
 * 302, 303, 307 and 308 the second argument is the Location; otherwise it is
 * the body (text/plain). Both may contain variables. Without text, a 4xx or
 * 5xx answers with the standard error page. A server-level `return` applies
 * to every location of the server that has none of its own. */
#include <stddef.h>
#include "module.h"
#include "request.h"
#include "var.h"

typedef struct {
    int status;     /* 0: no return here; TG_CONF_UNSET while merging */
    tg_tpl_t *text; /* body, or Location for a redirect */
} ret_conf_t;

static int is_redirect(int st)
{
    return st == 301 || st == 302 || st == 303 || st == 307 || st == 308;
}

static void *ret_create_conf(tg_conf_t *cf)
{
    ret_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c)
        c->status = TG_CONF_UNSET;
    return c;
}

static const char *ret_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    ret_conf_t *p = parent, *c = child;
    if (c->status == TG_CONF_UNSET) {
        c->status = p->status == TG_CONF_UNSET ? 0 : p->status;
        c->text = p->text;
    }
    return NULL;
}

static const char *set_return(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ret_conf_t *ret = conf;
    tg_str_t code = tg_conf_arg(cf, 1);
    int64_t st;
    if (ret->status != TG_CONF_UNSET)
        return "duplicate \"return\" directive";
    if (tg_parse_int(code, &st) != 0 || st < 200 || st > 599)
        return tg_conf_errf(cf, "invalid return code \"%.*s\"", TG_STR_FMT(code));
    if (is_redirect((int)st) && cf->nargs < 2)
        return tg_conf_errf(cf, "\"return %d\" needs a URL", (int)st);
    ret->text = NULL;
    if (cf->nargs == 2) {
        const char *err;
        tg_str_t text = tg_conf_arg(cf, 2);
        if (is_redirect((int)st) && (err = tg_conf_check_header(cf, TG_STR("Location"), text)))
            return err;
        if ((ret->text = tg_tpl_compile(cf, text, &err)) == NULL)
            return err;
    }
    ret->status = (int)st;
    return NULL;
}

static int ret_is_active(void *conf)
{
    return ((ret_conf_t *)conf)->status > 0;
}

static tg_rc_t ret_content(tg_request_t *r, void *conf)
{
    ret_conf_t *ret = conf;
    tg_str_t text = TG_NULL_STR;
    int st = ret->status;
    if (ret->text && tg_tpl_eval(r, ret->text, &text) != 0)
        return TG_ERROR;
    if (is_redirect(st)) {
        if (tg_request_add_resp_header(r, TG_STR("Location"), text) != 0)
            return TG_ERROR;
        char *page = tg_arena_printf(r->arena, "%d %s\n", st, tg_status_reason(st));
        text = page ? tg_str_c(page) : TG_NULL_STR;
    } else if (text.len == 0 && st >= 300) {
        tg_request_error(r, st);
        return TG_AGAIN; /* answered */
    }
    if (tg_request_respond(r, st, "text/plain", text) != 0)
        return TG_ERROR;
    return TG_DONE;
}

static const tg_directive_t ret_directives[] = {
    {"return", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, 2, set_return, 0},
    {NULL},
};

tg_module_t tg_return_module = {
    .name = "return",
    .directives = ret_directives,
    .create_conf = ret_create_conf,
    .merge_conf = ret_merge_conf,
    .is_active = ret_is_active,
    .on_content = ret_content,
};
