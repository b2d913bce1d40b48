/* The proxy's directives (proxy_pass with nginx's URI rule, proxy_timeouts,
 * proxy_set_header, proxy_remove_header, proxy_next_upstream_tries,
 * websocket_idle_timeout, proxy_intercept_errors, grpc_web) and their per-scope config (tg_proxy_conf_t),
 * read by the proxy (proxy.c) and the head builder (proxy_head.c). */
#include <stddef.h>
#include <string.h>
#include "proxy_conf.h"
#include "core.h"
#include "upstream.h"
#include "var.h"
#include "uri.h"

void *tg_proxy_create_conf(tg_conf_t *cf)
{
    tg_proxy_conf_t *pc = tg_arena_alloc(cf->arena, sizeof(*pc));
    if (pc == NULL)
        return NULL;
    pc->connect_timeout = pc->read_timeout = pc->send_timeout = TG_CONF_UNSET;
    pc->next_upstream_tries = TG_CONF_UNSET;
    pc->websocket_idle_timeout = TG_CONF_UNSET;
    pc->intercept_errors = TG_CONF_UNSET;
    pc->grpc_web = TG_CONF_UNSET;
    return pc;
}

const char *tg_proxy_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    tg_proxy_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->connect_timeout, p->connect_timeout, 5000);
    TG_CONF_MERGE(c->websocket_idle_timeout, p->websocket_idle_timeout, 3600000);
    TG_CONF_MERGE(c->intercept_errors, p->intercept_errors, 0);
    TG_CONF_MERGE(c->grpc_web, p->grpc_web, 0);
    TG_CONF_MERGE(c->read_timeout, p->read_timeout, 60000);
    TG_CONF_MERGE(c->send_timeout, p->send_timeout, 60000);
    TG_CONF_MERGE(c->next_upstream_tries, p->next_upstream_tries, 0);
    if (!c->set_headers_given) {
        c->set_headers = p->set_headers;
        c->nset_headers = p->nset_headers;
        c->remove_headers = p->remove_headers;
        c->nremove_headers = p->nremove_headers;
    }
    if (c->upstream == NULL) { /* the URI part goes with its proxy_pass */
        c->upstream = p->upstream;
        c->pass_uri = p->pass_uri;
    }
    if (c->grpc_web && c->upstream && !c->upstream->http2)
        return tg_arena_printf(cf->arena, "\"grpc_web on\" needs an HTTP/2 upstream: upstream "
                                          "\"%.*s\" is HTTP/1.1 (use \"proxy_pass grpc://%.*s\" "
                                          "or \"protocol http2\" in its block)",
                               TG_STR_FMT(c->upstream->name), TG_STR_FMT(c->upstream->name));
    return NULL;
}

/* The URI part of proxy_pass (see proxy_uri.h), checked: a literal one
 * needs a location prefix to replace, so it cannot be used in a regex
 * location (as in nginx); one with variables can. */
static const char *set_pass_uri(tg_conf_t *cf, tg_proxy_conf_t *pc, tg_str_t arg, tg_str_t uri)
{
    const char *err = NULL;
    tg_tpl_t *t = tg_tpl_compile(cf, uri, &err);
    if (t == NULL)
        return err;
    tg_location_t *loc = cf->scope == TG_SCOPE_LOCATION ? cf->ctx : NULL;
    if (!tg_tpl_has_vars(t)) {
        if (tg_uri_escape(NULL, uri, 0) != uri.len)
            return tg_conf_errf(cf, "invalid character in the URI part \"%.*s\" of \"proxy_pass\"",
                                TG_STR_FMT(uri));
        if (loc && (loc->kind == TG_LOC_REGEX || loc->kind == TG_LOC_NAMED))
            return tg_conf_errf(cf, "\"proxy_pass %.*s\" cannot have a URI part in a location given "
                                    "by a regular expression or a named location (no prefix to "
                                    "replace): pass the URI with variables, e.g. "
                                    "\"http://%.*s$request_uri\"",
                                TG_STR_FMT(arg), (int)(uri.p - arg.p), arg.p);
    }
    pc->pass_uri.uri = t;
    pc->pass_uri.prefix = loc ? loc->path : TG_STR("/");
    return NULL;
}

/* proxy_pass [http://|https://|grpc://|grpcs://]NAME|HOST:PORT[/URI]; grpc(s)://
 * is http(s):// over HTTP/2 (the upstream gets `protocol http2`) */
static const char *set_proxy_pass(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_proxy_conf_t *pc = conf;
    if (pc->upstream)
        return "\"proxy_pass\" directive is duplicate";
    tg_str_t arg = tg_conf_arg(cf, 1), scheme, name, uri;
    if (tg_proxy_uri_split(arg, &scheme, &name, &uri) != 0)
        return tg_conf_errf(cf, "invalid scheme in \"proxy_pass %.*s\", expected http://, https://, grpc:// or grpcs://",
                            TG_STR_FMT(arg));
    if (name.len == 0)
        return tg_conf_errf(cf, "\"proxy_pass %.*s\" names no upstream (variables are allowed in "
                                "the URI part only)",
                            TG_STR_FMT(arg));
    const char *err = uri.len ? set_pass_uri(cf, pc, arg, uri) : NULL;
    if (err)
        return err;
    pc->upstream = tg_upstream_reference(cf, name);
    if (pc->upstream == NULL)
        return tg_conf_errf(cf, "invalid upstream \"%.*s\" in \"proxy_pass\"", TG_STR_FMT(arg));
    if (scheme.len)
        tg_upstream_note_scheme(cf, pc->upstream, tg_str_caseeq_lit(scheme, "https") ||
                                                      tg_str_caseeq_lit(scheme, "grpcs"));
    if (scheme.len >= 4 && tg_str_has_caseprefix(scheme, "grpc"))
        pc->upstream->http2 = 1;
    return NULL;
}

static const char *set_proxy_timeouts(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_proxy_conf_t *pc = conf;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v;
        tg_msec_t *field = NULL;
        if (tg_conf_arg_kv(cf, i, "connect", &v))
            field = &pc->connect_timeout;
        else if (tg_conf_arg_kv(cf, i, "read", &v))
            field = &pc->read_timeout;
        else if (tg_conf_arg_kv(cf, i, "send", &v))
            field = &pc->send_timeout;
        else
            return tg_conf_errf(cf, "invalid parameter \"%.*s\" in \"proxy_timeouts\", expected "
                                    "connect=, read= or send=",
                                TG_STR_FMT(tg_conf_arg(cf, i)));
        if (tg_parse_msec(v, field) != 0 || *field <= 0)
            return tg_conf_errf(cf, "invalid time \"%.*s\" in \"proxy_timeouts\"", TG_STR_FMT(v));
    }
    return NULL;
}

static const char *set_proxy_set_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_proxy_conf_t *pc = conf;
    tg_str_t name = tg_conf_arg(cf, 1), value = tg_conf_arg(cf, 2);
    const char *err = tg_conf_check_header(cf, name, value);
    if (err)
        return err;
    tg_proxy_header_t *h = tg_arena_grow(cf->arena, pc->set_headers, (size_t)pc->nset_headers, 1,
                                         sizeof(*h));
    if (h == NULL)
        return "out of memory";
    h[pc->nset_headers].name = tg_arena_str(cf->arena, name);
    if ((h[pc->nset_headers].value = tg_tpl_compile(cf, value, &err)) == NULL)
        return err;
    pc->set_headers = h;
    pc->nset_headers++;
    pc->set_headers_given = 1;
    return NULL;
}

static const char *set_proxy_remove_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_proxy_conf_t *pc = conf;
    tg_str_t name = tg_conf_arg(cf, 1);
    if (!tg_conf_is_token(name))
        return tg_conf_errf(cf, "invalid header name \"%.*s\"", TG_STR_FMT(name));
    tg_str_t *h = tg_arena_grow(cf->arena, pc->remove_headers, (size_t)pc->nremove_headers, 1,
                                sizeof(*h));
    if (h == NULL)
        return "out of memory";
    h[pc->nremove_headers++] = tg_arena_str(cf->arena, name);
    pc->remove_headers = h;
    pc->set_headers_given = 1;
    return NULL;
}

const tg_directive_t tg_proxy_directives[] = {
    {"proxy_pass", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, 1, set_proxy_pass, 0},
    {"proxy_timeouts", TG_SCOPE_HTTP, 0, 1, 3, set_proxy_timeouts, 0},
    {"proxy_next_upstream_tries", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_num,
     offsetof(tg_proxy_conf_t, next_upstream_tries)},
    {"proxy_set_header", TG_SCOPE_HTTP, 0, 2, 2, set_proxy_set_header, 0},
    {"proxy_remove_header", TG_SCOPE_HTTP, 0, 1, 1, set_proxy_remove_header, 0},
    {"websocket_idle_timeout", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_msec,
     offsetof(tg_proxy_conf_t, websocket_idle_timeout)},
    {"proxy_intercept_errors", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(tg_proxy_conf_t, intercept_errors)},
    {"grpc_web", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, 1, tg_conf_set_flag,
     offsetof(tg_proxy_conf_t, grpc_web)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};


const char *tg_proxy_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    tg_proxy_conf_t *c = conf;
    if (c->upstream == NULL)
        return tg_arena_printf(a, "no proxy_pass here: 404 unless a content handler before it "
                                  "answers or Lua's tg.route picks an upstream");
    char *s = tg_arena_printf(a, "proxy_pass %.*s", TG_STR_FMT(c->upstream->name));
    if (s && c->pass_uri.uri)
        s = tg_arena_printf(a, "%s uri=%.*s (replaces %.*s)", s, TG_STR_FMT(c->pass_uri.uri->src),
                            TG_STR_FMT(c->pass_uri.prefix));
    if (s)
        s = tg_arena_printf(a, "%s connect=%lldms read=%lldms send=%lldms websocket_idle=%lldms "
                               "next_upstream_tries=%lld intercept_errors=%s grpc_web=%s",
                            s, (long long)c->connect_timeout, (long long)c->read_timeout,
                            (long long)c->send_timeout, (long long)c->websocket_idle_timeout,
                            (long long)c->next_upstream_tries, c->intercept_errors ? "on" : "off",
                            c->grpc_web ? "on" : "off");
    for (int i = 0; s && i < c->nset_headers; i++)
        s = tg_arena_printf(a, "%s set_header %.*s=%.*s", s, TG_STR_FMT(c->set_headers[i].name),
                            TG_STR_FMT(c->set_headers[i].value->src));
    for (int i = 0; s && i < c->nremove_headers; i++)
        s = tg_arena_printf(a, "%s remove_header %.*s", s, TG_STR_FMT(c->remove_headers[i]));
    const char *u = s ? tg_upstream_describe(a, c->upstream) : NULL;
    return u ? tg_arena_printf(a, "%s; %s", s, u) : NULL;
}
