/* `tollgate --explain METHOD URL [-H 'Name: value']... [--remote ADDR]`:
 * without starting a server, what the loaded config would do with one
 * request: the listener, the server block (every server on the listener,
 * how its names matched the Host), the location (every location of that
 * server, and why each one won or lost by nginx's precedence), then the
 * modules each phase would run there with their effective settings.
 *
 * The decisions are the router's own: the server comes from
 * tg_core_find_server and the location from tg_core_find_location; each
 * candidate is judged with tg_core_server_name_match and
 * tg_core_location_matches, the pieces those lookups are made of, so the
 * reasons cannot drift from what a worker does. Rewrite rules are listed,
 * not run: running them needs a request, and what they would change (a
 * new URI routed again) is the worker's work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include "explain.h"
#include "conf_dump.h"
#include "uri.h"

static const char *const phase_names[TG_PHASE_COUNT] = {
    "server_rewrite", "rewrite", "access", "route", "content", "response_headers",
    "response_body",  "log",
};

static int port_of(const tg_listen_t *ls)
{
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ls->addr;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ls->addr;
    return ntohs(ls->addr.ss_family == AF_INET6 ? s6->sin6_port : s4->sin_port);
}

/* The listener the request arrives on: the one of the URL's port (and
 * scheme), else the first; *why says which. */
static tg_listen_t *pick_listener(tg_config_t *c, int port, int tls, const char **why)
{
    for (tg_listen_t *ls = c->listens; ls; ls = ls->next)
        if (port > 0 && port_of(ls) == port && ls->tls == tls) {
            *why = "the URL's port";
            return ls;
        }
    for (tg_listen_t *ls = c->listens; ls; ls = ls->next)
        if (port > 0 && port_of(ls) == port) {
            *why = "the URL's port (its tls setting differs from the URL's scheme)";
            return ls;
        }
    *why = port > 0 ? "no listener has the URL's port: the first listener"
                    : "the first listener; an absolute URL chooses by port";
    return c->listens;
}

static void explain_server(FILE *out, tg_arena_t *a, tg_listen_t *ls, tg_server_t *chosen,
                           tg_str_t host)
{
    fprintf(out, "server: %s  # %s:%d\n", tg_conf_dump_server_name(a, chosen), chosen->file,
            chosen->line);
    for (int i = 0; i < ls->nservers; i++) {
        tg_server_t *s = ls->servers[i];
        tg_str_t name = TG_NULL_STR;
        int m = host.len ? tg_core_server_name_match(s, host, &name) : 0;
        const char *how = m < 0   ? tg_arena_printf(a, "exact name %.*s", TG_STR_FMT(name))
                          : m > 0 ? tg_arena_printf(a, "wildcard %.*s", TG_STR_FMT(name))
                                  : "no name matches";
        const char *verdict;
        if (s == chosen)
            verdict = ls->nservers == 1  ? "chosen: the only server on the listener"
                      : host.len == 0    ? "chosen: no Host, the default server"
                      : m < 0            ? "chosen: an exact name wins"
                      : m > 0            ? "chosen: the longest matching wildcard"
                      : s == ls->default_server ? "chosen: nothing matched, the default server"
                                                : "chosen";
        else
            verdict = m == 0 ? "lost: no name matches"
                      : m > 0 ? "lost: another server has an exact name or a longer wildcard"
                              : "lost: an earlier server has the same exact name";
        fprintf(out, "  candidate server %s%s  # %s:%d\n    %s; %s\n",
                tg_conf_dump_server_name(a, s), s == ls->default_server ? " (default)" : "",
                s->file, s->line, how ? how : "?", verdict);
    }
}

/* Why location l won or lost against `chosen` (the router's answer), given
 * `prefix`, the longest matching prefix (the router's first step). */
static const char *location_reason(tg_arena_t *a, const tg_location_t *l,
                                   const tg_location_t *chosen, const tg_location_t *prefix,
                                   const tg_location_t *exact, tg_str_t path)
{
    if (l->kind == TG_LOC_NAMED)
        return "skipped: a named location is reached only by an internal redirect "
               "(error_page, try_files)";
    int m = tg_core_location_matches(l, path);
    if (l->kind == TG_LOC_EXACT)
        return m ? "chosen: an exact match wins at once" : "lost: the path is not equal";
    if (l->kind != TG_LOC_REGEX) {
        if (!m)
            return "lost: not a prefix of the path";
        if (l == chosen)
            return l->kind == TG_LOC_PREFIX_NOREGEX
                       ? "chosen: the longest matching prefix, and ^~ skips the regexes"
                       : "chosen: the longest matching prefix, and no regex matched";
        if (exact)
            return "lost: an exact location matched";
        if (l != prefix)
            return tg_arena_printf(a, "lost: matches, but %.*s is a longer prefix",
                                   TG_STR_FMT(prefix->path));
        return "lost: the longest prefix, but a regex matched (regexes win over plain prefixes)";
    }
    if (exact)
        return "not tried: an exact location matched";
    if (prefix && prefix->kind == TG_LOC_PREFIX_NOREGEX)
        return tg_arena_printf(a, "not tried: the longest prefix ^~ %.*s stops the search",
                               TG_STR_FMT(prefix->path));
    if (!m)
        return "lost: the regex does not match";
    if (l == chosen)
        return "chosen: the first matching regex in config order";
    return "lost: matches, but an earlier regex matched first";
}

static void explain_location(FILE *out, tg_arena_t *a, tg_server_t *s, tg_location_t *chosen,
                             tg_str_t path)
{
    tg_location_t *prefix = NULL, *exact = NULL;
    for (int i = 0; i < s->nlocations; i++) {
        tg_location_t *l = s->locations[i];
        if (l->kind == TG_LOC_EXACT && tg_core_location_matches(l, path) == 1)
            exact = exact ? exact : l;
        else if ((l->kind == TG_LOC_PREFIX || l->kind == TG_LOC_PREFIX_NOREGEX) &&
                 tg_core_location_matches(l, path) == 1 &&
                 (prefix == NULL || l->path.len > prefix->path.len))
            prefix = l;
    }
    fprintf(out, "location: %s", tg_conf_dump_location_name(a, chosen));
    if (chosen != s->root)
        fprintf(out, "  # %s:%d", chosen->file, chosen->line);
    fprintf(out, "\n");
    if (s->nlocations == 0)
        fprintf(out, "  the server has no location blocks: its own settings apply\n");
    for (int i = 0; i < s->nlocations; i++) {
        tg_location_t *l = s->locations[i];
        fprintf(out, "  candidate %s  # %s:%d\n    %s\n", tg_conf_dump_location_name(a, l),
                l->file, l->line, location_reason(a, l, chosen, prefix, exact, path));
    }
    if (chosen == s->root && s->nlocations)
        fprintf(out, "  no location matched: the server level settings apply\n");
}

static void explain_phases(FILE *out, tg_arena_t *a, tg_location_t *l,
                           const tg_explain_req_t *req)
{
    fprintf(out, "core: %s\n", tg_conf_dump_core(a, l->mconf));
    fprintf(out, "phases (modules in the order they run; rewrite rules are listed, not run):\n");
    for (int ph = 0; ph < TG_PHASE_COUNT; ph++) {
        fprintf(out, "  %s:%s\n", phase_names[ph], l->hooks[ph] ? "" : " (nothing)");
        for (const tg_hook_t *h = l->hooks[ph]; h && h->module; h++) {
            const char *line = h->module->explain ? h->module->explain(a, h->conf, req) : NULL;
            fprintf(out, "    %s%s%s\n", h->module->name, line && *line ? ": " : "",
                    line ? line : "");
        }
    }
}

/* "Name: value" -> name and value (spaces trimmed). 0, or -1 when malformed. */
static int split_header(const char *h, tg_str_t *name, tg_str_t *value)
{
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h)
        return -1;
    *name = (tg_str_t){h, (size_t)(colon - h)};
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    *value = (tg_str_t){v, n};
    return tg_conf_is_token(*name) ? 0 : -1;
}

int tg_explain(FILE *out, tg_config_t *c, const char *method, const char *url,
               const char *const *headers, int nheaders, const char *remote)
{
    tg_arena_t a;
    int rc = 1, port = 0, tls = 0;
    tg_uri_t u;
    tg_explain_req_t req = {.method = tg_str_c(method), .remote = tg_str_c(remote ? remote : "")};
    tg_arena_init(&a, 0);
    tg_str_t *names = tg_arena_alloc(&a, (size_t)(nheaders + 1) * sizeof(tg_str_t));
    tg_str_t *values = tg_arena_alloc(&a, (size_t)(nheaders + 1) * sizeof(tg_str_t));
    char *path = tg_arena_alloc(&a, strlen(url) + 1);
    if (names == NULL || values == NULL || path == NULL)
        goto done;
    if (!tg_conf_is_token(req.method)) {
        fprintf(stderr, "tollgate: --explain: invalid method \"%s\"\n", method);
        goto done;
    }
    for (int i = 0; i < nheaders; i++) {
        if (split_header(headers[i], &names[i], &values[i]) != 0) {
            fprintf(stderr, "tollgate: --explain: invalid header \"%s\", expected 'Name: value'\n",
                    headers[i]);
            goto done;
        }
        if (tg_str_caseeq_lit(names[i], "Host"))
            req.host = values[i];
    }
    req.names = names;
    req.values = values;
    req.nheaders = nheaders;
    if (remote) {
        struct in6_addr tmp;
        if (inet_pton(AF_INET, remote, &tmp) != 1 && inet_pton(AF_INET6, remote, &tmp) != 1) {
            fprintf(stderr, "tollgate: --explain: invalid --remote \"%s\", expected an IP "
                            "address\n",
                    remote);
            goto done;
        }
    }
    if (tg_uri_split(tg_str_c(url), &u) != 0 || u.path.len == 0 || u.path.p[0] != '/') {
        fprintf(stderr, "tollgate: --explain: invalid URL \"%s\", expected /path or "
                        "http[s]://host[:port]/path\n",
                url);
        goto done;
    }
    if (u.authority.len) {
        tls = strncmp(url, "https:", 6) == 0;
        tg_str_t hostport = u.authority;
        const char *colon = NULL;
        for (size_t i = hostport.len; i > 0; i--) {
            if (hostport.p[i - 1] == ':') {
                colon = hostport.p + i - 1;
                break;
            }
            if (hostport.p[i - 1] == ']')
                break;
        }
        port = tls ? 443 : 80;
        if (colon) {
            port = atoi(colon + 1);
            hostport.len = (size_t)(colon - hostport.p);
        }
        if (req.host.len == 0) /* absolute-form: the authority is the Host */
            req.host = hostport;
    }
    long n = tg_uri_normalize(u.path, path);
    if (n < 0) {
        fprintf(stderr, "tollgate: --explain: the path of \"%s\" is refused (bad escape or "
                        "\"..\" above the root): the request gets a 400\n",
                url);
        goto done;
    }
    req.path = (tg_str_t){path, (size_t)n};
    /* Host as the router compares it: lowercase, without a port */
    char *host = tg_arena_strdup(&a, req.host);
    if (host == NULL)
        goto done;
    size_t hl = req.host.len;
    if (hl && host[0] != '[') {
        char *colon = memchr(host, ':', hl);
        if (colon)
            hl = (size_t)(colon - host);
    }
    for (size_t i = 0; i < hl; i++)
        if (host[i] >= 'A' && host[i] <= 'Z')
            host[i] += 32;
    req.host = (tg_str_t){host, hl};

    const char *why;
    tg_listen_t *ls = pick_listener(c, port, tls, &why);
    fprintf(out, "request: %s %.*s (normalized path)%s%.*s%s%s\n", method, TG_STR_FMT(req.path),
            req.host.len ? ", Host " : ", no Host", TG_STR_FMT(req.host),
            remote ? ", from " : "", remote ? remote : "");
    if (u.query.len)
        fprintf(out, "query: %.*s\n", TG_STR_FMT(u.query));
    fprintf(out, "listener: %s%s%s (%s)\n", ls->text, ls->tls ? " tls" : "",
            ls->http2 ? " http2" : "", why);
    tg_server_t *s = tg_core_find_server(ls, req.host);
    explain_server(out, &a, ls, s, req.host);
    if (s->root->hooks[TG_PHASE_SERVER_REWRITE])
        fprintf(out, "note: the server rewrite phase runs before the location is chosen; a "
                     "rule that changes the URI changes the choice below\n");
    tg_location_t *l = tg_core_find_location(s, req.path);
    explain_location(out, &a, s, l ? l : s->root, req.path);
    explain_phases(out, &a, l ? l : s->root, &req);
    rc = ferror(out) ? 1 : 0;
done:
    tg_arena_destroy(&a);
    return rc;
}
