/* `error_page CODE... [=[CODE]] URI|@name|URL;` (main, server, location).
 * This file parses and checks the directive and finds a page by status; the
 * request layer (tg_request_error, src/request.c) redirects to it, and the
 * proxy asks for one when proxy_intercept_errors is on. The URI is literal
 * (no variables), so the lookup needs nothing of the request. Named
 * locations are checked once the whole config is read (they may come after
 * the error_page that names them). */
#include <stdio.h>
#include <string.h>
#include "error_page.h"
#include "core.h"

typedef struct {
    tg_error_page_t *pages; /* NULL: none set here (inherit) */
    int n;
} ep_conf_t;

static void *ep_create_conf(tg_conf_t *cf)
{
    return tg_arena_alloc(cf->arena, sizeof(ep_conf_t));
}

static const char *ep_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    ep_conf_t *p = parent, *c = child;
    if (c->pages == NULL) {
        c->pages = p->pages;
        c->n = p->n;
    }
    return NULL;
}

static int is_redirect(int st)
{
    return st == 301 || st == 302 || st == 303 || st == 307 || st == 308;
}

static const char *set_error_page(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ep_conf_t *c = conf;
    tg_str_t uri = tg_conf_arg(cf, cf->nargs);
    int last = cf->nargs - 1, overwrite = -1;
    tg_str_t ow = tg_conf_arg(cf, last);
    if (ow.len && ow.p[0] == '=') {
        int64_t v = 0;
        if (ow.len > 1 && (tg_parse_int((tg_str_t){ow.p + 1, ow.len - 1}, &v) != 0 || v < 200 ||
                           v > 599))
            return tg_conf_errf(cf, "invalid response code \"%.*s\" in \"error_page\"",
                                TG_STR_FMT(ow));
        overwrite = (int)v;
        last--;
    }
    if (last < 1)
        return "\"error_page\" needs at least one status code";
    if (uri.len == 0)
        return "empty URI in \"error_page\"";
    int url = uri.p[0] != '/' && uri.p[0] != '@';
    if (url && !(uri.len > 7 && (memcmp(uri.p, "http://", 7) == 0 ||
                                 (uri.len > 8 && memcmp(uri.p, "https://", 8) == 0))))
        return tg_conf_errf(cf, "invalid URI \"%.*s\" in \"error_page\", expected /path, @name "
                                "or an http:// or https:// URL",
                            TG_STR_FMT(uri));
    if (uri.p[0] == '@' && uri.len < 2)
        return "empty named location in \"error_page\"";
    for (size_t i = 0; i < uri.len; i++)
        if ((unsigned char)uri.p[i] <= ' ' || uri.p[i] == 0x7f)
            return tg_conf_errf(cf, "invalid character in \"error_page\" URI \"%.*s\"",
                                TG_STR_FMT(uri));
    if (url && overwrite > 0 && !is_redirect(overwrite))
        return tg_conf_errf(cf, "\"error_page\" to a URL takes =301, =302, =303, =307 or =308, "
                                "not \"%.*s\"",
                            TG_STR_FMT(ow));
    tg_error_page_t *pages = tg_arena_grow(cf->arena, c->pages, (size_t)c->n, (size_t)last,
                                           sizeof(*pages));
    if (pages == NULL)
        return "out of memory";
    c->pages = pages;
    for (int i = 1; i <= last; i++) {
        tg_str_t code = tg_conf_arg(cf, i);
        int64_t st;
        if (tg_parse_int(code, &st) != 0 || st < 300 || st > 599 || st == 499)
            return tg_conf_errf(cf, "invalid status \"%.*s\" in \"error_page\", expected 300..599",
                                TG_STR_FMT(code));
        pages[c->n++] = (tg_error_page_t){(int)st, overwrite, uri, cf->file, cf->line};
    }
    return NULL;
}

const tg_error_page_t *tg_error_page_find(void **mconf, int status)
{
    ep_conf_t *c = mconf[tg_error_page_module.index];
    for (int i = 0; i < c->n; i++)
        if (c->pages[i].status == status)
            return &c->pages[i];
    return NULL;
}

/* Every "@name" an error_page names must be a named location of each server
 * where it applies. */
static int check_named(tg_server_t *s, ep_conf_t *c)
{
    int bad = 0;
    for (int i = 0; i < c->n; i++) {
        tg_error_page_t *p = &c->pages[i];
        if (p->uri.p[0] == '@' && tg_core_find_named(s, p->uri) == NULL &&
            (i == 0 || p->line != c->pages[i - 1].line || p->file != c->pages[i - 1].file)) {
            fprintf(stderr, "%s:%d: unknown named location \"%.*s\" in \"error_page\" (server at "
                            "%s:%d)\n",
                    p->file, p->line, TG_STR_FMT(p->uri), s->file, s->line);
            bad = 1;
        }
    }
    return bad;
}

static const char *ep_init_conf(tg_conf_t *cf, void *main_conf)
{
    (void)main_conf;
    int bad = 0;
    tg_config_t *cfg = cf->config;
    int idx = tg_error_page_module.index;
    for (int i = 0; i < cfg->nservers && !bad; i++) {
        tg_server_t *s = cfg->servers[i];
        bad |= check_named(s, s->root->mconf[idx]);
        for (int k = 0; k < s->nlocations && !bad; k++)
            bad |= check_named(s, s->locations[k]->mconf[idx]);
    }
    return bad ? TG_CONF_REPORTED : NULL;
}

static const tg_directive_t ep_directives[] = {
    {"error_page", TG_SCOPE_HTTP, 0, 2, -1, set_error_page, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_error_page_module = {
    .name = "error_page",
    .directives = ep_directives,
    .create_conf = ep_create_conf,
    .merge_conf = ep_merge_conf,
    .init_conf = ep_init_conf,
};
