/* The client address behind trusted proxies: real_ip_from lists the proxies
 * whose word is taken, real_ip_header says where they put it. For
 * X-Forwarded-For the list is read right to left, skipping trusted proxies,
 * so a client cannot choose its address by sending the header itself. The
 * result replaces $remote_addr for everything after this module (logs, keys,
 * the X-Forwarded-For sent upstream, Lua). With proxy_protocol the address
 * comes from the PROXY header a balancer sent (listen ... proxy_protocol). */
#include <arpa/inet.h>
#include "request.h"
#include "cidr.h"

enum { RIP_XFF = 1, RIP_X_REAL_IP, RIP_PROXY_PROTOCOL };

typedef struct {
    tg_cidr_t *from;
    int nfrom;
    int header; /* TG_CONF_UNSET, RIP_XFF or RIP_X_REAL_IP */
} realip_conf_t;

static void *realip_create_conf(tg_conf_t *cf)
{
    realip_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c)
        c->header = TG_CONF_UNSET;
    return c;
}

static const char *realip_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    realip_conf_t *p = parent, *c = child;
    if (c->nfrom == 0) {
        c->from = p->from;
        c->nfrom = p->nfrom;
    }
    TG_CONF_MERGE(c->header, p->header, RIP_XFF);
    return NULL;
}

static const char *set_from(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    realip_conf_t *c = conf;
    tg_cidr_t *v = tg_arena_grow(cf->arena, c->from, (size_t)c->nfrom, (size_t)cf->nargs, sizeof(*v));
    if (v == NULL)
        return "out of memory";
    c->from = v; /* the parser goes on after an error: keep array and count in step */
    for (int i = 1; i <= cf->nargs; i++)
        if (tg_cidr_parse(tg_conf_arg(cf, i), &v[c->nfrom++]) != 0)
            return tg_conf_errf(cf, "invalid address or CIDR \"%s\" in \"real_ip_from\"",
                                cf->args[i].text.p);
    return NULL;
}

static const char *set_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    realip_conf_t *c = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_caseeq_lit(v, "X-Forwarded-For"))
        c->header = RIP_XFF;
    else if (tg_str_caseeq_lit(v, "X-Real-IP"))
        c->header = RIP_X_REAL_IP;
    else if (tg_str_eq_lit(v, "proxy_protocol"))
        c->header = RIP_PROXY_PROTOCOL;
    else
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"real_ip_header\", expected "
                                "X-Forwarded-For, X-Real-IP or proxy_protocol",
                            TG_STR_FMT(v));
    return NULL;
}

static int is_addr(tg_str_t s)
{
    char buf[64];
    unsigned char a[16];
    if (s.len == 0 || s.len >= sizeof(buf))
        return 0;
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    return inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1;
}

static tg_rc_t realip_rewrite(tg_request_t *r, void *conf)
{
    realip_conf_t *c = conf;
    if (!tg_cidr_match_sa(c->from, c->nfrom, tg_request_peer_sa(r)))
        return TG_OK;
    tg_str_t found = TG_NULL_STR;
    if (c->header == RIP_PROXY_PROTOCOL) {
        if (tg_request_proxy_protocol_addr(r))
            found = tg_str_c(tg_request_proxy_protocol_addr(r));
    } else if (c->header == RIP_X_REAL_IP) {
        tg_header_t *h = tg_headers_find(&r->headers, TG_STR("X-Real-IP"));
        if (h && is_addr(tg_str_trim(h->value)))
            found = tg_str_trim(h->value);
    } else {
        /* every X-Forwarded-For line, right to left, entries right to left */
        for (uint32_t i = r->headers.n; i-- > 0;) {
            tg_header_t *h = &r->headers.h[i];
            if (!tg_str_caseeq_lit(h->name, "X-Forwarded-For"))
                continue;
            const char *end = h->value.len ? h->value.p + h->value.len : h->value.p;
            while (end > h->value.p) {
                const char *start = end;
                while (start > h->value.p && start[-1] != ',')
                    start--;
                tg_str_t item = tg_str_trim((tg_str_t){start, (size_t)(end - start)});
                end = start > h->value.p ? start - 1 : start;
                if (!is_addr(item))
                    goto done; /* garbage: stop trusting the chain here */
                found = item;
                if (!tg_cidr_match_text(c->from, c->nfrom, item))
                    goto done; /* the first untrusted hop is the client */
            }
        }
    }
done:
    if (found.p)
        r->remote_addr = tg_arena_str(r->arena, found);
    return TG_OK;
}

static int realip_is_active(void *conf)
{
    return ((realip_conf_t *)conf)->nfrom > 0;
}

static const tg_directive_t realip_directives[] = {
    {"real_ip_from", TG_SCOPE_HTTP, 0, 1, -1, set_from, 0},
    {"real_ip_header", TG_SCOPE_HTTP, 0, 1, 1, set_header, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_realip_module = {
    .name = "real_ip",
    .directives = realip_directives,
    .create_conf = realip_create_conf,
    .merge_conf = realip_merge_conf,
    .is_active = realip_is_active,
    .on_rewrite = realip_rewrite,
};
