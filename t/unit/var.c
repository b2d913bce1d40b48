/* Unit tests for src/var.c: template compilation (literals, $name, ${name},
 * prefixes, errors) and evaluation against a request (headers joined, '_'
 * for '-', cookies, query arguments, unset variables as ""). */
#include <stdio.h>
#include <string.h>
#include "var.h"
#include "request.h"
#include "tap.h"

static tg_arena_t arena;
static tg_conf_t cf;
static tg_request_t req;

static void add_header(const char *n, const char *v)
{
    tg_headers_add(&arena, &req.headers, tg_str_c(n), tg_str_c(v));
}

static void eval(const char *src, const char *want)
{
    const char *err = NULL;
    tg_tpl_t *t = tg_tpl_compile(&cf, tg_str_c(src), &err);
    tg_str_t out = TG_NULL_STR;
    int rc = t ? tg_tpl_eval(&req, t, &out) : -1;
    char got[512];
    snprintf(got, sizeof(got), "%.*s", (int)out.len, out.p ? out.p : "");
    ok(rc == 0 && strcmp(got, want) == 0, "\"%s\" -> \"%s\" (got \"%s\"%s%s)", src, want, got,
       err ? ", " : "", err ? err : "");
}

static void bad(const char *src, const char *msg_part)
{
    const char *err = NULL;
    tg_tpl_t *t = tg_tpl_compile(&cf, tg_str_c(src), &err);
    ok(t == NULL && err && strstr(err, msg_part), "\"%s\" rejected: %s", src, err ? err : "(none)");
}

int main(void)
{
    tg_modules_init();
    tg_arena_init(&arena, 0);
    cf.arena = &arena;
    req.arena = &arena;
    req.method_name = TG_STR("POST");
    req.uri = TG_STR("/p/a%20b?x=1&name=Bob&empty=&flag");
    req.path = TG_STR("/p/a b");
    req.args = TG_STR("x=1&name=Bob&empty=&flag");
    req.host = TG_STR("api.test");
    req.remote_addr = TG_STR("192.0.2.7");
    req.scheme = TG_STR("http");
    req.status = 201;
    add_header("Host", "api.test:8080");
    add_header("X-Api-Key", "k1");
    add_header("Accept", "text/html");
    add_header("accept", "application/json");
    add_header("Cookie", "a=1; session=xyz; b=2");

    eval("plain text", "plain text");
    eval("", "");
    eval("$remote_addr", "192.0.2.7");
    eval("ip=$remote_addr;", "ip=192.0.2.7;");
    eval("${host}x", "api.testx");
    eval("$method $uri $request_uri", "POST /p/a b /p/a%20b?x=1&name=Bob&empty=&flag");
    eval("$args", "x=1&name=Bob&empty=&flag");
    eval("$http_x_api_key", "k1");
    eval("$http_X_API_KEY", "k1");
    eval("$http_accept", "text/html, application/json");
    eval("[$http_missing]", "[]");
    eval("$cookie_session", "xyz");
    eval("$cookie_b", "2");
    eval("[$cookie_nope]", "[]");
    eval("$arg_name", "Bob");
    eval("[$arg_empty]", "[]");
    eval("[$arg_fla]", "[]");
    eval("$remote_addr$http_x_api_key", "192.0.2.7k1");
    eval("$status $scheme", "201 http");

    bad("$nosuchvar", "unknown variable \"$nosuchvar\"");
    bad("a ${host", "unclosed");
    bad("cost $", "empty variable name");
    bad("${}", "empty variable name");
    tg_arena_destroy(&arena);
    return done_testing();
}
