/* gRPC over HTTP/2: the few rules the gateway needs to treat a call as a
 * call (grpc/doc/PROTOCOL-HTTP2.md): its content-type, the status it answers
 * when the gateway itself ends a call (always as a trailers-only response
 * with HTTP 200: gRPC clients read grpc-status, not the HTTP status), and the
 * grpc-timeout header. */
#include "grpc.h"

int tg_grpc_is_content_type(tg_str_t ct)
{
    if (!tg_str_has_caseprefix(ct, "application/grpc"))
        return 0;
    return ct.len == 16 || ct.p[16] == '+' || ct.p[16] == ';';
}

int tg_grpc_web_kind(tg_str_t ct)
{
    size_t n = 20;
    int kind = TG_GRPC_WEB;
    if (!tg_str_has_caseprefix(ct, "application/grpc-web"))
        return 0;
    if (tg_str_has_caseprefix(ct, "application/grpc-web-text")) {
        n = 25;
        kind = TG_GRPC_WEB_TEXT;
    }
    return ct.len == n || ct.p[n] == '+' || ct.p[n] == ';' ? kind : 0;
}

tg_str_t tg_grpc_web_format(tg_str_t ct)
{
    size_t n = tg_grpc_web_kind(ct) == TG_GRPC_WEB_TEXT ? 25 : 20, e = n;
    if (ct.len <= n || ct.p[n] != '+')
        return (tg_str_t){"", 0};
    while (e < ct.len && ct.p[e] != ';' && ct.p[e] != ' ' && ct.p[e] != '\t')
        e++;
    return (tg_str_t){ct.p + n, e - n};
}

int tg_grpc_status_for_http(int status)
{
    switch (status) {
    case 400: return TG_GRPC_INTERNAL;
    case 401: return TG_GRPC_UNAUTHENTICATED;
    case 403: return TG_GRPC_PERMISSION_DENIED;
    case 404: return TG_GRPC_UNIMPLEMENTED;
    case 413:
    case 429: return TG_GRPC_RESOURCE_EXHAUSTED;
    case 500: return TG_GRPC_INTERNAL;
    case 502:
    case 503: return TG_GRPC_UNAVAILABLE;
    case 504: return TG_GRPC_DEADLINE_EXCEEDED;
    default: return TG_GRPC_UNKNOWN;
    }
}

int64_t tg_grpc_timeout_ms(tg_str_t v)
{
    if (v.len < 2 || v.len > 9)
        return -1;
    int64_t n = 0;
    for (size_t i = 0; i + 1 < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -1;
        n = n * 10 + (v.p[i] - '0');
    }
    int64_t ms;
    switch (v.p[v.len - 1]) {
    case 'H': ms = n * 3600000; break;
    case 'M': ms = n * 60000; break;
    case 'S': ms = n * 1000; break;
    case 'm': ms = n; break;
    case 'u': ms = n / 1000; break;
    case 'n': ms = n / 1000000; break;
    default: return -1;
    }
    return ms == 0 && n ? 1 : ms;
}
