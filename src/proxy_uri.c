/* See proxy_uri.h. The target is built once per request, when the proxy
 * serializes the request header: one arena block for the URI part, the
 * re-encoded rest of the path and the query. */
#include <string.h>
#include "proxy_uri.h"
#include "request.h"
#include "var.h"
#include "uri.h"

int tg_proxy_uri_split(tg_str_t arg, tg_str_t *scheme, tg_str_t *authority, tg_str_t *uri)
{
    const char *p = arg.p, *end = arg.p + arg.len;
    *scheme = (tg_str_t){"", 0};
    const char *sep = arg.len >= 3 ? memmem(arg.p, arg.len, "://", 3) : NULL;
    if (sep) {
        *scheme = (tg_str_t){p, (size_t)(sep - p)};
        if (!tg_str_caseeq_lit(*scheme, "http") && !tg_str_caseeq_lit(*scheme, "https") &&
            !tg_str_caseeq_lit(*scheme, "grpc") && !tg_str_caseeq_lit(*scheme, "grpcs"))
            return -1;
        p = sep + 3;
    }
    const char *a = p;
    while (p < end && *p != '/' && *p != '$')
        p++;
    *authority = (tg_str_t){a, (size_t)(p - a)};
    *uri = (tg_str_t){p, (size_t)(end - p)};
    return 0;
}

/* A URI part with variables: its value, made safe for the request line (no
 * byte from $uri's decoding may end the line or the target), with a '/' in
 * front when it lacks one. An empty value passes the client's target. */
static int target_from_vars(tg_request_t *r, const tg_proxy_uri_t *pu, tg_str_t *out)
{
    tg_str_t v;
    if (tg_tpl_eval(r, pu->uri, &v) != 0)
        return -1;
    if (v.len == 0) {
        *out = r->uri;
        return 0;
    }
    size_t slash = v.p[0] != '/';
    size_t n = tg_uri_escape(NULL, v, 0);
    if (n == v.len && !slash) {
        *out = v;
        return 0;
    }
    char *p = tg_arena_alloc_nz(r->arena, slash + n);
    if (p == NULL)
        return -1;
    p[0] = '/';
    tg_uri_escape(p + slash, v, 0);
    *out = (tg_str_t){p, slash + n};
    return 0;
}

int tg_proxy_uri_target(tg_request_t *r, const tg_proxy_uri_t *pu, tg_str_t *out)
{
    if (pu->uri == NULL) {
        *out = r->uri; /* as the client sent it (or tg.req.set_path set it) */
        return 0;
    }
    if (tg_tpl_has_vars(pu->uri))
        return target_from_vars(r, pu, out);
    if (r->uri_changed) {
        /* set_path after routing: the location prefix no longer describes
         * the path, which goes as it was set (nginx: rewrite ... break) */
        *out = r->uri;
        return 0;
    }
    tg_str_t part = pu->uri->src;
    tg_str_t rest = r->path;
    if (rest.len >= pu->prefix.len && memcmp(rest.p, pu->prefix.p, pu->prefix.len) == 0)
        rest = (tg_str_t){rest.p + pu->prefix.len, rest.len - pu->prefix.len};
    /* a path from tg.req.set_path (rerouted on it) is already encoded */
    int decoded = !r->path_set;
    size_t n = part.len + tg_uri_escape(NULL, rest, decoded) +
               (r->args.len ? 1 + r->args.len : 0);
    char *p = tg_arena_alloc_nz(r->arena, n), *w = p;
    if (p == NULL)
        return -1;
    memcpy(w, part.p, part.len);
    w += part.len;
    w += tg_uri_escape(w, rest, decoded);
    if (r->args.len) {
        *w++ = '?';
        memcpy(w, r->args.p, r->args.len);
        w += r->args.len;
    }
    *out = (tg_str_t){p, (size_t)(w - p)};
    return 0;
}
