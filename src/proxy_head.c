/* The heads the proxy passes on: the request head sent upstream (request
 * line with proxy_pass's URI rule, the client's headers in order with the
 * hop-by-hop ones dropped, proxy_remove_header and proxy_set_header applied,
 * X-Forwarded-*, our own framing) and the upstream's response head cleaned
 * of hop-by-hop headers before the client sees it. Pure functions of the
 * request and the location's proxy settings: no sockets here. */
#include <string.h>
#include <strings.h>
#include <llhttp.h>
#include "proxy_head.h"
#include "var.h"

/* Hop-by-hop: the RFC 9110 list, Proxy-*, and whatever a Connection header
 * lists (`hs` is only scanned for those when `has_connection`). Called for
 * every header both ways, so a length switch rejects most names at once. */
static int is_hop_by_hop(tg_str_t name, const tg_headers_t *hs, int has_connection)
{
    const char *fixed = NULL, *fixed2 = NULL;
    switch (name.len) {
    case 2: fixed = "te"; break;
    case 5: fixed = "proxy"; break;
    case 6: fixed = "expect"; break;
    case 7: fixed = "trailer", fixed2 = "upgrade"; break;
    case 10: fixed = "connection", fixed2 = "keep-alive"; break;
    case 14: fixed = "content-length"; break;
    case 17: fixed = "transfer-encoding"; break;
    }
    if ((fixed && tg_str_caseeq(name, (tg_str_t){fixed, name.len})) ||
        (fixed2 && tg_str_caseeq(name, (tg_str_t){fixed2, name.len})))
        return 1;
    if (name.len > 6 && tg_str_has_caseprefix(name, "proxy-"))
        return 1; /* Proxy-Connection, Proxy-Authorization, ... */
    if (!has_connection || name.len >= 64)
        return 0;
    char token[64];
    memcpy(token, name.p, name.len);
    token[name.len] = '\0';
    for (uint32_t i = 0; i < hs->n; i++)
        if (tg_str_caseeq_lit(hs->h[i].name, "connection") &&
            tg_str_has_token(hs->h[i].value, token))
            return 1;
    return 0;
}

/* Does proxy_set_header or proxy_remove_header name this header? */
static int px_overridden(const tg_proxy_conf_t *pc, tg_str_t name)
{
    for (int k = 0; k < pc->nremove_headers; k++)
        if (tg_str_caseeq(name, pc->remove_headers[k]))
            return 1;
    for (int k = 0; k < pc->nset_headers; k++)
        if (tg_str_caseeq(name, pc->set_headers[k].name))
            return 1;
    return 0;
}

int tg_proxy_head_fields(tg_request_t *r, const tg_proxy_conf_t *pc, int websocket,
                         tg_headers_t *outp)
{
    tg_headers_t out = *outp;
    int xff = -1; /* its index: the array may move when it grows */
    int has_connection = tg_headers_find(&r->headers, TG_STR("Connection")) != NULL;
    for (uint32_t i = 0; i < r->headers.n; i++) {
        tg_header_t *h = &r->headers.h[i];
        if (is_hop_by_hop(h->name, &r->headers, has_connection))
            continue;
        if (px_overridden(pc, h->name))
            continue;
        if (tg_str_caseeq_lit(h->name, "x-forwarded-for")) {
            if (xff >= 0) { /* several: fold them into the first, in order */
                char *v = tg_arena_printf(r->arena, "%.*s, %.*s", TG_STR_FMT(out.h[xff].value),
                                          TG_STR_FMT(h->value));
                if (v == NULL)
                    return -1;
                out.h[xff].value = tg_str_c(v);
                continue;
            }
            if (tg_headers_add(r->arena, &out, h->name, h->value) != 0)
                return -1;
            xff = (int)out.n - 1;
            continue;
        }
        if (tg_str_caseeq_lit(h->name, "x-forwarded-proto") ||
            tg_str_caseeq_lit(h->name, "x-forwarded-host") ||
            tg_str_caseeq_lit(h->name, "x-real-ip"))
            continue; /* ours replace the client's */
        if (tg_headers_add(r->arena, &out, h->name, h->value) != 0)
            return -1;
    }
    tg_str_t peer = r->peer_addr;
    if (px_overridden(pc, TG_STR("X-Forwarded-For"))) {
        /* proxy_set_header/proxy_remove_header decide */
    } else if (xff >= 0) {
        char *v = tg_arena_printf(r->arena, "%.*s, %.*s", TG_STR_FMT(out.h[xff].value),
                                  TG_STR_FMT(peer));
        if (v == NULL)
            return -1;
        out.h[xff].value = tg_str_c(v);
    } else if (tg_headers_add(r->arena, &out, TG_STR("X-Forwarded-For"), peer) != 0) {
        return -1;
    }
    tg_header_t *host = tg_headers_find(&r->headers, TG_STR("Host"));
    const tg_header_t gen[] = {
        {TG_STR("X-Forwarded-Proto"), r->scheme},
        {TG_STR("X-Forwarded-Host"), host ? host->value : r->host},
        {TG_STR("X-Real-IP"), r->remote_addr},
    };
    for (size_t k = 0; k < sizeof(gen) / sizeof(gen[0]); k++)
        if (!px_overridden(pc, gen[k].name) &&
            tg_headers_add(r->arena, &out, gen[k].name, gen[k].value) != 0)
            return -1;
    /* an HTTP/1.0 client may send no Host: name the upstream, as nginx does */
    if (host == NULL && !px_overridden(pc, TG_STR("Host")) &&
        tg_headers_add(r->arena, &out, TG_STR("Host"), r->host.len ? r->host : r->upstream->name) != 0)
        return -1;
    for (int k = 0; k < pc->nset_headers; k++) {
        tg_str_t v;
        if (tg_tpl_eval(r, pc->set_headers[k].value, &v) != 0)
            return -1;
        if (v.len && tg_headers_add(r->arena, &out, pc->set_headers[k].name, v) != 0)
            return -1;
    }

    if (websocket) {
        /* the hop-by-hop pair that asks the upstream to switch protocols */
        tg_header_t *up = tg_headers_find(&r->headers, TG_STR("Upgrade"));
        if (tg_headers_add(r->arena, &out, TG_STR("Connection"), TG_STR("upgrade")) != 0 ||
            tg_headers_add(r->arena, &out, TG_STR("Upgrade"), up->value) != 0)
            return -1;
    }
    *outp = out;
    return 0;
}

int tg_proxy_head_build(tg_request_t *r, const tg_proxy_conf_t *pc, int websocket, tg_str_t *head)
{
    /* the upstream's header list only lives until it is serialized below:
     * on the stack, in the arena only past 32 headers */
    tg_header_t first[32];
    tg_headers_t out = {first, 0, 32};
    if (tg_proxy_head_fields(r, pc, websocket, &out) != 0)
        return -1;
    char lenbuf[48] = "Content-Length: ";
    tg_str_t framing = TG_NULL_STR;
    if (r->chunked) {
        framing = TG_STR("Transfer-Encoding: chunked\r\n");
    } else if (r->content_length >= 0) {
        size_t k = 16 + tg_fmt_dec(lenbuf + 16, (uint64_t)r->content_length);
        lenbuf[k++] = '\r';
        lenbuf[k++] = '\n';
        framing = (tg_str_t){lenbuf, k};
    }
    tg_str_t target;
    if (tg_proxy_uri_target(r, &pc->pass_uri, &target) != 0)
        return -1;
    size_t size = r->method_name.len + target.len + 16 + framing.len + 2;
    for (uint32_t i = 0; i < out.n; i++)
        size += out.h[i].name.len + out.h[i].value.len + 4;
    char *p = tg_arena_alloc_nz(r->arena, size), *w = p;
    if (p == NULL)
        return -1;
#define PUT(s, n) ((n) ? (memcpy(w, (s), (n)), w += (n)) : w)
    PUT(r->method_name.p, r->method_name.len);
    PUT(" ", 1);
    PUT(target.p, target.len);
    PUT(" HTTP/1.1\r\n", 11);
    for (uint32_t i = 0; i < out.n; i++) {
        PUT(out.h[i].name.p, out.h[i].name.len);
        PUT(": ", 2);
        PUT(out.h[i].value.p, out.h[i].value.len);
        PUT("\r\n", 2);
    }
    PUT(framing.p, framing.len);
    PUT("\r\n", 2);
#undef PUT
    *head = (tg_str_t){p, (size_t)(w - p)};
    return 0;
}

/* Fields a trailer must not carry, besides the hop-by-hop ones: a recipient
 * would act on them as if they came with the head (RFC 9110 6.5.1). */
static int is_head_only(tg_str_t name)
{
    static const char *const names[] = {"host", "authorization", "cookie", "content-type",
                                        "content-encoding", "content-range", "cache-control",
                                        "max-forwards", "range", "if-match", "if-none-match",
                                        "if-modified-since", "if-unmodified-since", "if-range",
                                        "x-forwarded-for", "x-forwarded-proto",
                                        "x-forwarded-host", "x-real-ip", NULL};
    for (int i = 0; names[i]; i++)
        if (tg_str_caseeq_lit(name, names[i]))
            return 1;
    return 0;
}

int tg_proxy_head_trailers(tg_request_t *r, tg_str_t *out)
{
    const tg_headers_t *t = &r->trailers;
    size_t size = 5;
    for (uint32_t i = 0; i < t->n; i++)
        size += t->h[i].name.len + t->h[i].value.len + 4;
    char *p = tg_arena_alloc_nz(r->arena, size), *w = p;
    if (p == NULL)
        return -1;
    memcpy(w, "0\r\n", 3);
    w += 3;
    for (uint32_t i = 0; i < t->n; i++) {
        const tg_header_t *h = &t->h[i];
        if (is_hop_by_hop(h->name, t, 0) || is_head_only(h->name))
            continue;
        memcpy(w, h->name.p, h->name.len);
        w += h->name.len;
        memcpy(w, ": ", 2);
        memcpy(w + 2, h->value.p, h->value.len);
        w += 2 + h->value.len;
        memcpy(w, "\r\n", 2);
        w += 2;
    }
    memcpy(w, "\r\n", 2);
    *out = (tg_str_t){p, (size_t)(w + 2 - p)};
    return 0;
}

tg_msec_t tg_proxy_head_clean_response(tg_headers_t *hs)
{
    tg_msec_t keepalive_ms = 0;
    for (uint32_t i = 0; i < hs->n; i++) {
        if (!tg_str_caseeq_lit(hs->h[i].name, "keep-alive"))
            continue;
        tg_str_t v = hs->h[i].value;
        for (size_t k = 0; k + 8 <= v.len; k++) {
            if (strncasecmp(v.p + k, "timeout=", 8) == 0) {
                int64_t secs;
                size_t e = k + 8;
                while (e < v.len && v.p[e] >= '0' && v.p[e] <= '9')
                    e++;
                if (tg_parse_int((tg_str_t){v.p + k + 8, e - k - 8}, &secs) == 0)
                    keepalive_ms = secs * 1000;
                break;
            }
        }
    }
    /* decide for every header before moving any: the Connection header that
     * names others is dropped too (at most TG_PROXY_MAX_RESP_HEADERS of them) */
    int has_connection = tg_headers_find(hs, TG_STR("Connection")) != NULL;
    unsigned char drop[TG_PROXY_MAX_RESP_HEADERS];
    if (hs->n > TG_PROXY_MAX_RESP_HEADERS) /* the parser refuses more */
        hs->n = TG_PROXY_MAX_RESP_HEADERS;
    for (uint32_t i = 0; i < hs->n; i++)
        drop[i] = (unsigned char)is_hop_by_hop(hs->h[i].name, hs, has_connection);
    uint32_t w = 0;
    for (uint32_t i = 0; i < hs->n; i++)
        if (!drop[i])
            hs->h[w++] = hs->h[i];
    hs->n = w;
    return keepalive_ms;
}

