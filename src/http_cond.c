/* HTTP dates, entity tags, byte ranges and preconditions (see
 * http_cond.h). */
#include <string.h>
#include <time.h>
#include "http_cond.h"

time_t tg_http_date_parse(tg_str_t v)
{
    char buf[64];
    if (v.len == 0 || v.len >= sizeof(buf))
        return -1;
    memcpy(buf, v.p, v.len);
    buf[v.len] = '\0';
    static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                       "%a %b %e %H:%M:%S %Y"};
    for (size_t i = 0; i < 3; i++) {
        struct tm tm = {0};
        const char *end = strptime(buf, fmts[i], &tm);
        if (end && *end == '\0')
            return timegm(&tm);
    }
    return -1;
}

int tg_http_etag_listed(tg_str_t list, tg_str_t etag, int weak)
{
    tg_str_t t = tg_str_trim(list);
    if (t.len == 1 && t.p[0] == '*')
        return 1;
    const char *p = list.p, *end = list.p + list.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        int is_weak = 0;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
            is_weak = 1;
            p += 2;
        }
        const char *q = p;
        if (q < end && *q == '"') {
            q = memchr(q + 1, '"', (size_t)(end - q - 1));
            q = q ? q + 1 : end;
        } else {
            while (q < end && *q != ',')
                q++;
        }
        tg_str_t tag = {p, (size_t)(q - p)};
        if ((weak || !is_weak) && tg_str_eq(tag, etag))
            return 1;
        p = q > s ? q : s + 1;
    }
    return 0;
}

int tg_http_ranges_parse(tg_str_t v, int64_t len, tg_http_range_t *out, int max)
{
    if (v.len < 6 || !tg_str_has_caseprefix(v, "bytes="))
        return -1;
    const char *p = v.p + 6, *end = v.p + v.len;
    int n = 0, seen = 0;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        int64_t a = -1, b = -1;
        if (p < end && *p >= '0' && *p <= '9') {
            a = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                if (a > (INT64_MAX - 9) / 10)
                    return -1;
                a = a * 10 + (*p++ - '0');
            }
        }
        if (p >= end || *p++ != '-')
            return -1;
        if (p < end && *p >= '0' && *p <= '9') {
            b = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                if (b > (INT64_MAX - 9) / 10)
                    return -1;
                b = b * 10 + (*p++ - '0');
            }
        }
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p < end && *p++ != ',')
            return -1;
        if (a < 0 && b < 0)
            return -1;
        if (a >= 0 && b >= 0 && b < a)
            return -1;
        if (++seen > max)
            return -1;
        tg_http_range_t r;
        if (a < 0) { /* suffix: the last b bytes */
            if (b == 0 || len == 0)
                continue;
            r = (tg_http_range_t){b >= len ? 0 : len - b, len - 1};
        } else {
            if (a >= len)
                continue;
            r = (tg_http_range_t){a, (b < 0 || b >= len) ? len - 1 : b};
        }
        out[n++] = r;
    }
    if (seen == 0)
        return -1;
    /* sort by start (insertion: at most max), merge overlaps */
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && out[k].start < out[k - 1].start; k--) {
            tg_http_range_t t = out[k];
            out[k] = out[k - 1];
            out[k - 1] = t;
        }
    int w = 0;
    for (int i = 0; i < n; i++) {
        if (w > 0 && out[i].start <= out[w - 1].end + 1) {
            if (out[i].end > out[w - 1].end)
                out[w - 1].end = out[i].end;
        } else {
            out[w++] = out[i];
        }
    }
    return w;
}

int tg_http_preconditions(tg_headers_t *hs, tg_str_t etag, time_t mtime)
{
    tg_header_t *h;
    if ((h = tg_headers_find(hs, TG_STR("If-Match"))) != NULL) {
        if (!tg_http_etag_listed(h->value, etag, 0))
            return 412;
    } else if ((h = tg_headers_find(hs, TG_STR("If-Unmodified-Since"))) != NULL) {
        time_t t = tg_http_date_parse(h->value);
        if (t >= 0 && mtime > t)
            return 412;
    }
    if ((h = tg_headers_find(hs, TG_STR("If-None-Match"))) != NULL)
        return tg_http_etag_listed(h->value, etag, 1) ? 304 : 0;
    if ((h = tg_headers_find(hs, TG_STR("If-Modified-Since"))) != NULL) {
        time_t t = tg_http_date_parse(h->value);
        if (t >= 0 && mtime <= t)
            return 304;
    }
    return 0;
}
