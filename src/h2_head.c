/* HTTP/2 heads <-> the request: what the pseudo-header fields and the
 * HTTP/2 field rules become for the request layer and the HTTP/1.1
 * upstreams (the proxy builds its request line and Host from r->method_name,
 * r->uri and the host field), and the response head as HTTP/2 fields.
 *
 * nghttp2 has already refused (stream error PROTOCOL_ERROR, the request
 * never seen here): missing, repeated, unknown or misplaced pseudo-header
 * fields, uppercase names, connection-specific fields (connection,
 * keep-alive, proxy-connection, transfer-encoding, upgrade), te other than
 * "trailers", an invalid or repeated content-length, field values with
 * CR, LF or NUL, and later a body whose length disagrees with
 * content-length. What is left is what HTTP/1.1 also checks. */
#include <string.h>
#include <llhttp.h>
#include "h2_head.h"
#include "uri.h"
#include "websocket.h"
#include "worker.h"

int tg_h2_head_cookie(tg_arena_t *a, tg_str_t *cookie, tg_str_t crumb)
{
    if (cookie->len == 0) {
        *cookie = crumb;
        return 0;
    }
    char *j = tg_arena_printf(a, "%.*s; %.*s", TG_STR_FMT(*cookie), TG_STR_FMT(crumb));
    if (j == NULL)
        return -1;
    *cookie = tg_str_c(j);
    return 0;
}

int tg_h2_head_trailer(tg_request_t *r, tg_str_t name, tg_str_t value)
{
    tg_str_t n = tg_arena_str(r->arena, name), v = tg_arena_str(r->arena, value);
    if (n.p == NULL || v.p == NULL)
        return -1;
    return tg_headers_add(r->arena, &r->trailers, n, v);
}

static int method_number(tg_str_t m)
{
#define METHOD_CMP(num, name, string)                                                          \
    if (m.len == sizeof(#string) - 1 && memcmp(m.p, #string, m.len) == 0)                       \
        return num;
    HTTP_METHOD_MAP(METHOD_CMP)
#undef METHOD_CMP
    return -1;
}

int tg_h2_head_request(tg_request_t *r, const tg_h2_head_t *h, int64_t max_uri)
{
    r->http_minor = 1;
    r->keepalive = 1;
    r->method_name = h->method;
    r->method = method_number(h->method);
    if (r->method < 0) {
        r->method = HTTP_GET; /* for the log; the request is refused */
        return 501;
    }
    int websocket = 0;
    if (r->method == HTTP_CONNECT) {
        if (h->protocol.p == NULL)
            return 405; /* a TCP tunnel (RFC 9113 8.5): we are no forward proxy */
        if (!tg_str_eq_lit(h->protocol, "websocket"))
            return 501; /* a protocol we cannot bridge to HTTP/1.1 */
        /* RFC 8441: the upgrade of RFC 6455 4.1 in HTTP/2's terms */
        tg_str_t key;
        websocket = 1;
        r->method = HTTP_GET;
        r->method_name = TG_STR("GET");
        r->upgrade = 1;
        if (tg_websocket_key(r->arena, &key) != 0 ||
            tg_headers_set(r->arena, &r->headers, TG_STR("sec-websocket-key"), key) != 0 ||
            tg_headers_add(r->arena, &r->headers, TG_STR("upgrade"), TG_STR("websocket")) != 0)
            return 500;
    }
    if (h->cookie.len && tg_headers_add(r->arena, &r->headers, TG_STR("cookie"), h->cookie) != 0)
        return 500;
    tg_header_t *host = NULL;
    for (uint32_t i = 0; i < r->headers.n; i++) {
        tg_header_t *f = &r->headers.h[i];
        if (tg_str_eq_lit(f->name, "host")) {
            if (host)
                return 400;
            host = f;
        } else if (tg_str_eq_lit(f->name, "content-length")) {
            int64_t n;
            if (tg_parse_int(f->value, &n) != 0 || n < 0)
                return 400;
            r->content_length = n;
        } else if (tg_str_eq_lit(f->name, "expect")) {
            if (!tg_str_caseeq_lit(f->value, "100-continue"))
                return 417;
            r->expect_continue = 1;
        }
    }
    /* :authority is the Host (RFC 9113 8.3.1); with both, they must agree */
    tg_str_t authority = h->authority;
    if (authority.p && host && !tg_str_caseeq(authority, host->value))
        return 400;
    if (authority.p == NULL && host)
        authority = host->value;
    if (authority.p == NULL || authority.len == 0 || tg_request_set_host(r, authority) != 0)
        return 400;
    if (host == NULL && tg_headers_add(r->arena, &r->headers, TG_STR("host"), authority) != 0)
        return 500;
    if (websocket)
        r->content_length = -1; /* what follows is the tunnel, not a body */
    r->has_body = !websocket && !h->end_stream && r->content_length != 0;
    if (r->has_body && r->content_length < 0)
        r->chunked = 1; /* length unknown: chunked to the upstream */
    if ((int64_t)h->path.len > max_uri)
        return 414;
    r->uri = h->path;
    /* $request and the combined log's request line */
    /* by hand: tg_arena_printf's vsnprintf cost ~1,400 instructions per request */
    size_t ll = h->method.len + 1 + h->path.len + sizeof(" HTTP/2.0") - 1;
    char *line = tg_arena_alloc_nz(r->arena, ll + 1);
    if (line == NULL)
        return 500;
    memcpy(line, h->method.p, h->method.len);
    line[h->method.len] = ' ';
    memcpy(line + h->method.len + 1, h->path.p, h->path.len);
    memcpy(line + ll - (sizeof(" HTTP/2.0") - 1), " HTTP/2.0", sizeof(" HTTP/2.0"));
    r->request_line = (tg_str_t){line, ll};
    tg_uri_t u;
    if (tg_uri_split(r->uri, &u) != 0 || u.authority.p)
        return 400;
    r->args = u.query.p ? u.query : (tg_str_t){"", 0};
    if (u.path.len == 1 && u.path.p[0] == '*') {
        if (r->method != HTTP_OPTIONS)
            return 400;
        r->path = u.path;
        return 0;
    }
    return tg_request_set_path(r, u.path);
}

static int is_connection_specific(tg_str_t n)
{
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade", "content-length",
                                        "te", NULL};
    for (int i = 0; names[i]; i++)
        if (tg_str_caseeq_lit(n, names[i]))
            return 1;
    return 0;
}

static nghttp2_nv make_nv(tg_str_t n, tg_str_t v)
{
    return (nghttp2_nv){(uint8_t *)n.p, (uint8_t *)v.p, n.len, v.len, NGHTTP2_NV_FLAG_NONE};
}

/* Append hs as fields with lowercased names, without the connection-specific
 * ones (HTTP/2 frames the message itself). 0, -1 out of memory. */
static int add_fields(tg_arena_t *a, const tg_headers_t *hs, nghttp2_nv *nva, size_t *n)
{
    for (uint32_t i = 0; i < hs->n; i++) {
        const tg_header_t *h = &hs->h[i];
        if (is_connection_specific(h->name))
            continue;
        char *lower = tg_arena_alloc_nz(a, h->name.len + 1);
        if (lower == NULL)
            return -1;
        for (size_t k = 0; k < h->name.len; k++) {
            char ch = h->name.p[k];
            lower[k] = (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
        }
        nva[(*n)++] = make_nv((tg_str_t){lower, h->name.len}, h->value);
    }
    return 0;
}

nghttp2_nv *tg_h2_head_response(tg_request_t *r, size_t *count)
{
    int st = r->status;
    nghttp2_nv *nva = tg_arena_alloc_nz(r->arena, (r->resp_headers.n + 3) * sizeof(*nva));
    char *status = tg_arena_alloc_nz(r->arena, 4);
    if (nva == NULL || status == NULL)
        return NULL;
    status[0] = (char)('0' + st / 100 % 10);
    status[1] = (char)('0' + st / 10 % 10);
    status[2] = (char)('0' + st % 10);
    size_t n = 0;
    nva[n++] = make_nv(TG_STR(":status"), (tg_str_t){status, 3});
    if (tg_headers_find(&r->resp_headers, TG_STR("Date")) == NULL)
        nva[n++] = make_nv(TG_STR("date"), tg_worker_date());
    if (r->resp_content_length >= 0 && !(st == 204 || st == 304 || st < 200)) {
        char *len = tg_arena_alloc_nz(r->arena, 24);
        if (len == NULL)
            return NULL;
        nva[n++] = make_nv(TG_STR("content-length"),
                           (tg_str_t){len, tg_fmt_dec(len, (uint64_t)r->resp_content_length)});
    }
    if (add_fields(r->arena, &r->resp_headers, nva, &n) != 0)
        return NULL;
    *count = n;
    return nva;
}

nghttp2_nv *tg_h2_head_trailers(tg_request_t *r, size_t *count)
{
    nghttp2_nv *nva = tg_arena_alloc_nz(r->arena, (r->resp_trailers.n + 1) * sizeof(*nva));
    size_t n = 0;
    if (nva == NULL || add_fields(r->arena, &r->resp_trailers, nva, &n) != 0)
        return NULL;
    *count = n;
    return nva;
}
