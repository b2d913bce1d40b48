/* redirect_https: a request that arrived over plain HTTP is answered 301 to
 * the same URI over https, at the server's first TLS listener's port (left
 * out when 443; 443 when the server has none). Requests that came over TLS
 * are served normally, so one server block can hold both listeners.
 *
 * Its rewrite hook runs before any other (its place in src/modules.c): a
 * request that is only redirected costs no rate-limit token, no Lua run.
 * Whether the request came over TLS is r->scheme, set by the codec from the
 * listener; this module knows nothing of connections. */
#include <stddef.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include "module.h"
#include "request.h"

typedef struct {
    int on; /* tg_conf_set_flag writes an int */
} redirect_https_conf_t;

static void *redirect_create_conf(tg_conf_t *cf)
{
    redirect_https_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->on = TG_CONF_UNSET;
    return c;
}

static const char *redirect_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    redirect_https_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->on, p->on, 0);
    return NULL;
}

static int redirect_is_active(void *conf)
{
    return ((redirect_https_conf_t *)conf)->on == 1;
}

/* The port of the server's first TLS listener, 443 when it has none. */
static int https_port(const tg_server_t *s)
{
    for (int i = 0; i < s->nlistens; i++) {
        const tg_listen_t *ls = s->listens[i];
        if (ls->tls) {
            const struct sockaddr_in *sa = (const struct sockaddr_in *)&ls->addr;
            return ntohs(sa->sin_port); /* sin6_port is at the same offset */
        }
    }
    return 443;
}

static tg_rc_t redirect_rewrite(tg_request_t *r, void *conf)
{
    (void)conf;
    if (tg_str_eq_lit(r->scheme, "https"))
        return TG_OK;
    tg_str_t host = r->host;
    if (host.len == 0) {
        for (int i = 0; i < r->server->nnames && host.len == 0; i++)
            if (r->server->names[i].len && r->server->names[i].p[0] != '*')
                host = r->server->names[i];
        if (host.len == 0)
            return TG_OK; /* no name to send the client to */
    }
    int port = https_port(r->server);
    char portbuf[16] = "";
    if (port != 443)
        snprintf(portbuf, sizeof(portbuf), ":%d", port);
    char *loc = tg_arena_printf(r->arena, "https://%.*s%s%.*s", TG_STR_FMT(host), portbuf,
                                TG_STR_FMT(r->uri));
    if (loc == NULL || tg_request_respond(r, 301, "text/plain", TG_STR("301 Moved Permanently\n")))
        return TG_ERROR;
    if (tg_request_add_resp_header(r, TG_STR("Location"), tg_str_c(loc)) != 0)
        return TG_ERROR;
    return TG_DONE;
}

static const tg_directive_t redirect_directives[] = {
    {"redirect_https", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, tg_conf_set_flag,
     offsetof(redirect_https_conf_t, on)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_redirect_https_module = {
    .name = "redirect_https",
    .directives = redirect_directives,
    .create_conf = redirect_create_conf,
    .merge_conf = redirect_merge_conf,
    .is_active = redirect_is_active,
    .on_rewrite = redirect_rewrite,
};
