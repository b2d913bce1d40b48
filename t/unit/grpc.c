/* Unit tests for src/grpc.c: which content-types are gRPC calls (not
 * gRPC-Web) and which are gRPC-Web, the gRPC status for each HTTP status the gateway answers, and
 * grpc-timeout in every unit with its rejects. */
#include <string.h>
#include "grpc.h"
#include "tap.h"

static void timeout_is(const char *in, int64_t want)
{
    int64_t got = tg_grpc_timeout_ms(tg_str_c(in));
    ok(got == want, "grpc-timeout \"%s\" = %lld ms (got %lld)", in, (long long)want,
       (long long)got);
}

int main(void)
{
    ok(tg_grpc_is_content_type(TG_STR("application/grpc")), "application/grpc");
    ok(tg_grpc_is_content_type(TG_STR("application/grpc+proto")), "application/grpc+proto");
    ok(tg_grpc_is_content_type(TG_STR("Application/GRPC;charset=x")), "case and parameters");
    ok(!tg_grpc_is_content_type(TG_STR("application/grpc-web")), "not gRPC-Web");
    ok(!tg_grpc_is_content_type(TG_STR("application/grpc-web-text")), "not gRPC-Web text");
    ok(!tg_grpc_is_content_type(TG_STR("application/json")), "not JSON");
    ok(!tg_grpc_is_content_type(TG_STR("application/grp")), "not a prefix of it");

    is_int(tg_grpc_web_kind(TG_STR("application/grpc-web")), TG_GRPC_WEB, "grpc-web");
    is_int(tg_grpc_web_kind(TG_STR("application/grpc-web+proto")), TG_GRPC_WEB, "grpc-web+proto");
    is_int(tg_grpc_web_kind(TG_STR("Application/gRPC-Web-Text")), TG_GRPC_WEB_TEXT, "grpc-web-text, case");
    is_int(tg_grpc_web_kind(TG_STR("application/grpc-web-text+proto; x=1")), TG_GRPC_WEB_TEXT,
           "grpc-web-text+proto with a parameter");
    is_int(tg_grpc_web_kind(TG_STR("application/grpc")), 0, "gRPC is not gRPC-Web");
    is_int(tg_grpc_web_kind(TG_STR("application/grpc-webx")), 0, "not a prefix of it");
    is_int(tg_grpc_web_kind(TG_STR("application/grpc-web-text-base64")), 0, "no -base64 variant");
    tg_str_t f = tg_grpc_web_format(TG_STR("application/grpc-web-text+json;charset=x"));
    ok(f.len == 5 && memcmp(f.p, "+json", 5) == 0, "format +json, parameters dropped");
    ok(tg_grpc_web_format(TG_STR("application/grpc-web")).len == 0, "no format");

    is_int(tg_grpc_status_for_http(502), TG_GRPC_UNAVAILABLE, "502: UNAVAILABLE");
    is_int(tg_grpc_status_for_http(503), TG_GRPC_UNAVAILABLE, "503: UNAVAILABLE");
    is_int(tg_grpc_status_for_http(504), TG_GRPC_DEADLINE_EXCEEDED, "504: DEADLINE_EXCEEDED");
    is_int(tg_grpc_status_for_http(429), TG_GRPC_RESOURCE_EXHAUSTED, "429: RESOURCE_EXHAUSTED");
    is_int(tg_grpc_status_for_http(413), TG_GRPC_RESOURCE_EXHAUSTED, "413: RESOURCE_EXHAUSTED");
    is_int(tg_grpc_status_for_http(403), TG_GRPC_PERMISSION_DENIED, "403: PERMISSION_DENIED");
    is_int(tg_grpc_status_for_http(401), TG_GRPC_UNAUTHENTICATED, "401: UNAUTHENTICATED");
    is_int(tg_grpc_status_for_http(404), TG_GRPC_UNIMPLEMENTED, "404: UNIMPLEMENTED");
    is_int(tg_grpc_status_for_http(500), TG_GRPC_INTERNAL, "500: INTERNAL");
    is_int(tg_grpc_status_for_http(418), TG_GRPC_UNKNOWN, "418: UNKNOWN");

    timeout_is("1H", 3600000);
    timeout_is("2M", 120000);
    timeout_is("5S", 5000);
    timeout_is("300m", 300);
    timeout_is("2500u", 2);
    timeout_is("1u", 1);          /* rounded up: never "no time at all" by rounding */
    timeout_is("0m", 0);
    timeout_is("99999999n", 99);
    timeout_is("m", -1);
    timeout_is("123456789S", -1); /* 9 digits */
    timeout_is("10s", -1);        /* units are case-sensitive */
    timeout_is("-1S", -1);
    timeout_is("", -1);
    done_testing();
}
