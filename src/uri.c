/* See uri.h. Normalization works in one pass over the decoded bytes, writing
 * into dst; ".." pops back to the previous '/' already written. */
#include "uri.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int tg_uri_split(tg_str_t t, tg_uri_t *out)
{
    const char *p = t.p, *end = t.len ? t.p + t.len : t.p;
    out->authority = out->query = TG_NULL_STR;
    if (t.len == 1 && p[0] == '*') {
        out->path = t;
        return 0;
    }
    if (t.len > 0 && p[0] != '/') {
        /* absolute-form: scheme "://" authority [path] */
        const char *s = p;
        while (s < end && *s != ':' && *s != '/')
            s++;
        tg_str_t scheme = {p, (size_t)(s - p)};
        if (!(tg_str_caseeq_lit(scheme, "http") || tg_str_caseeq_lit(scheme, "https")))
            return -1;
        if (end - s < 3 || s[0] != ':' || s[1] != '/' || s[2] != '/')
            return -1;
        const char *a = s + 3, *e = a;
        while (e < end && *e != '/' && *e != '?')
            e++;
        if (e == a)
            return -1;
        out->authority = (tg_str_t){a, (size_t)(e - a)};
        p = e;
        if (p == end || *p == '?') {
            /* "http://h" or "http://h?x": the path is "/" */
            out->path = TG_STR("/");
            if (p < end)
                out->query = (tg_str_t){p + 1, (size_t)(end - p - 1)};
            return 0;
        }
    }
    if (p == end || *p != '/')
        return -1;
    const char *q = p;
    while (q < end && *q != '?')
        q++;
    out->path = (tg_str_t){p, (size_t)(q - p)};
    if (q < end)
        out->query = (tg_str_t){q + 1, (size_t)(end - q - 1)};
    return 0;
}

long tg_uri_normalize(tg_str_t path, char *dst)
{
    size_t n = 0;
    const char *p = path.p, *end = path.len ? path.p + path.len : path.p;
    if (p == end || *p != '/')
        return -1;
    while (p < end) {
        char c = *p++;
        if (c == '%') {
            int h, l;
            if (end - p < 2 || (h = hexval(p[0])) < 0 || (l = hexval(p[1])) < 0)
                return -1;
            c = (char)(h << 4 | l);
            p += 2;
            if (c == '\0')
                return -1;
        }
        if (c == '/') {
            if (n > 0 && dst[n - 1] == '/')
                continue; /* merge "//" */
            dst[n++] = '/';
            continue;
        }
        dst[n++] = c;
        /* a segment just ended or the path ends: look at it */
        int at_end = (p == end) || (*p == '/') ||
                     (*p == '%' && end - p >= 3 && p[1] == '2' && (p[2] | 0x20) == 'f');
        if (!at_end)
            continue;
        if (n >= 2 && dst[n - 1] == '.' && dst[n - 2] == '/') {
            n -= 1; /* "/." -> "/" */
        } else if (n >= 3 && dst[n - 1] == '.' && dst[n - 2] == '.' && dst[n - 3] == '/') {
            n -= 3; /* drop "/..", then the previous segment */
            if (n == 0)
                return -1; /* above the root */
            while (n > 0 && dst[n - 1] != '/')
                n--;
        }
    }
    return (long)n;
}

/* Bytes that never stand for themselves in a request path. */
static int must_escape(unsigned char c, int decoded)
{
    if (c <= 0x20 || c >= 0x7f)
        return 1;
    switch (c) {
    case '"': case '#': case '<': case '>': case '\\': case '^': case '`':
    case '{': case '|': case '}':
        return 1;
    case '%': case '?':
        return decoded;
    default:
        return 0;
    }
}

size_t tg_uri_escape(char *dst, tg_str_t s, int decoded)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (!must_escape(c, decoded)) {
            if (dst)
                dst[n] = (char)c;
            n++;
            continue;
        }
        if (dst) {
            dst[n] = '%';
            dst[n + 1] = hex[c >> 4];
            dst[n + 2] = hex[c & 15];
        }
        n += 3;
    }
    return n;
}
