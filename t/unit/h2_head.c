/* Unit tests for src/h2_head.c: an HTTP/2 request head -> the request's
 * method, target, path, host and framing (RFC 9113 8.3), cookie crumbs,
 * the statuses for what HTTP/1.1 would refuse too; and the response head as
 * HTTP/2 fields (lowercase, no connection-specific fields). */
#include <stdio.h>
#include <string.h>
#include <llhttp.h>
#include "h2_head.h"
#include "tap.h"

static tg_arena_t arena;

static tg_request_t *req(void)
{
    static tg_request_t r;
    memset(&r, 0, sizeof(r));
    r.arena = &arena;
    r.content_length = -1;
    r.resp_content_length = -1;
    return &r;
}

static tg_str_t field(tg_request_t *r, const char *name)
{
    tg_header_t *h = tg_headers_find(&r->headers, tg_str_c(name));
    return h ? h->value : (tg_str_t){"", 0};
}

static int map(tg_request_t *r, const char *method, const char *path, const char *authority,
               int end_stream)
{
    tg_h2_head_t h = {tg_str_c(method), tg_str_c(path),
                      authority ? tg_str_c(authority) : TG_NULL_STR, TG_NULL_STR, end_stream,
                      TG_NULL_STR};
    return tg_h2_head_request(r, &h, 8192);
}

int main(void)
{
    tg_modules_init();
    tg_arena_init(&arena, 0);

    tg_request_t *r = req();
    is_int(map(r, "GET", "/a/../b%41?x=1", "Api.Test:8443", 1), 0, "a GET");
    is_int(r->method, HTTP_GET, "method");
    ok(tg_str_eq_lit(r->uri, "/a/../b%41?x=1"), "the target goes upstream as sent");
    ok(tg_str_eq_lit(r->path, "/bA"), "the path is normalised for routing");
    ok(tg_str_eq_lit(r->args, "x=1"), "args");
    ok(tg_str_eq_lit(r->host, "api.test"), "host lowercased without the port");
    ok(tg_str_eq_lit(field(r, "host"), "Api.Test:8443"), "a host field from :authority");
    ok(!r->has_body && !r->chunked, "END_STREAM on HEADERS: no body");

    r = req();
    tg_headers_add(&arena, &r->headers, TG_STR("content-length"), TG_STR("5"));
    is_int(map(r, "POST", "/u", "a", 0), 0, "a POST with content-length");
    ok(r->has_body && !r->chunked && r->content_length == 5, "framed by Content-Length");
    r = req();
    is_int(map(r, "POST", "/u", "a", 0), 0, "a POST without content-length");
    ok(r->has_body && r->chunked, "chunked to the upstream");

    r = req();
    tg_str_t cookie = TG_NULL_STR;
    ok(tg_h2_head_cookie(&arena, &cookie, TG_STR("a=1")) == 0 &&
           tg_h2_head_cookie(&arena, &cookie, TG_STR("b=2")) == 0 &&
           tg_h2_head_cookie(&arena, &cookie, TG_STR("c=3")) == 0,
       "cookie crumbs added");
    tg_h2_head_t h = {TG_STR("GET"), TG_STR("/"), TG_STR("a"), cookie, 1, TG_NULL_STR};
    is_int(tg_h2_head_request(r, &h, 8192), 0, "with cookies");
    ok(tg_str_eq_lit(field(r, "cookie"), "a=1; b=2; c=3"), "joined with \"; \"");

    r = req();
    tg_headers_add(&arena, &r->headers, TG_STR("host"), TG_STR("b.test"));
    is_int(map(r, "GET", "/", "a.test", 1), 400, ":authority and host disagree: 400");
    r = req();
    tg_headers_add(&arena, &r->headers, TG_STR("host"), TG_STR("B.test"));
    is_int(map(r, "GET", "/", NULL, 1), 0, "host without :authority");
    ok(tg_str_eq_lit(r->host, "b.test"), "... is the host");
    is_int(map(req(), "GET", "/", NULL, 1), 400, "neither: 400");
    is_int(map(req(), "BREW", "/", "a", 1), 501, "unknown method: 501");
    is_int(map(req(), "CONNECT", "/", "a", 1), 405, "CONNECT: 405");

    /* RFC 8441 extended CONNECT */
    r = req();
    tg_headers_add(&arena, &r->headers, TG_STR("sec-websocket-version"), TG_STR("13"));
    tg_headers_add(&arena, &r->headers, TG_STR("sec-websocket-key"), TG_STR("from-the-client"));
    tg_headers_add(&arena, &r->headers, TG_STR("content-length"), TG_STR("7"));
    h = (tg_h2_head_t){TG_STR("CONNECT"), TG_STR("/chat?room=1"), TG_STR("a.test"), TG_NULL_STR,
                       0, TG_STR("websocket")};
    is_int(tg_h2_head_request(r, &h, 8192), 0, "extended CONNECT, :protocol websocket");
    ok(r->method == HTTP_GET && tg_str_eq_lit(r->method_name, "GET"), "... becomes a GET");
    ok(r->upgrade, "... an upgrade");
    ok(tg_str_eq_lit(field(r, "upgrade"), "websocket"), "... upgrade: websocket");
    tg_str_t key = field(r, "sec-websocket-key");
    ok(key.len == 24 && key.p[22] == '=' && key.p[23] == '=', "... a fresh 16-byte key");
    ok(tg_str_eq_lit(r->uri, "/chat?room=1") && tg_str_eq_lit(r->path, "/chat"), "... of :path");
    ok(!r->has_body && !r->chunked && r->content_length == -1, "... without a body");
    ok(tg_str_eq_lit(r->request_line, "CONNECT /chat?room=1 HTTP/2.0"), "$request as received");
    h.protocol = TG_STR("connect-udp");
    is_int(tg_h2_head_request(req(), &h, 8192), 501, "another :protocol: 501");
    is_int(map(req(), "GET", "*", "a", 1), 400, "* with GET: 400");
    is_int(map(req(), "OPTIONS", "*", "a", 1), 0, "* with OPTIONS");
    is_int(map(req(), "GET", "/../../etc", "a", 1), 400, "a path above the root: 400");
    is_int(map(req(), "GET", "http://a/x", "a", 1), 400, "absolute-form :path: 400");
    r = req();
    tg_headers_add(&arena, &r->headers, TG_STR("expect"), TG_STR("100-continue"));
    is_int(map(r, "POST", "/", "a", 0), 0, "Expect: 100-continue");
    ok(r->expect_continue, "... noted");
    r = req();
    tg_headers_add(&arena, &r->headers, TG_STR("expect"), TG_STR("gzip"));
    is_int(map(r, "POST", "/", "a", 0), 417, "another Expect: 417");
    char longpath[9000];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    is_int(map(req(), "GET", longpath, "a", 1), 414, "a :path over client_max_uri_length: 414");

    /* response */
    r = req();
    r->status = 201;
    r->resp_content_length = 12;
    tg_headers_add(&arena, &r->resp_headers, TG_STR("Content-Type"), TG_STR("text/plain"));
    tg_headers_add(&arena, &r->resp_headers, TG_STR("Date"), TG_STR("x"));
    tg_headers_add(&arena, &r->resp_headers, TG_STR("Connection"), TG_STR("close"));
    tg_headers_add(&arena, &r->resp_headers, TG_STR("Transfer-Encoding"), TG_STR("chunked"));
    tg_headers_add(&arena, &r->resp_headers, TG_STR("Keep-Alive"), TG_STR("timeout=5"));
    tg_headers_add(&arena, &r->resp_headers, TG_STR("Upgrade"), TG_STR("h2c"));
    size_t n = 0;
    nghttp2_nv *nv = tg_h2_head_response(r, &n);
    char all[512] = "";
    for (size_t i = 0; nv && i < n; i++) {
        size_t l = strlen(all);
        snprintf(all + l, sizeof(all) - l, "%.*s=%.*s;", (int)nv[i].namelen, nv[i].name,
                 (int)nv[i].valuelen, nv[i].value);
    }
    is_str(all, ":status=201;content-length=12;content-type=text/plain;date=x;",
           "response: :status, content-length, lowercased, no connection-specific fields");
    r->status = 204;
    r->resp_headers.n = 2; /* Content-Type, Date */
    nv = tg_h2_head_response(r, &n);
    ok(nv && n == 3, "204: no content-length");
    return done_testing();
}
