/* Cache-Control parsing (see cache_control.h). The grammar is a comma list
 * of `token [= (token | quoted-string)]`; this walks it once, byte by byte,
 * bounded by the value's length. A qualified `no-cache="Set-Cookie"` or
 * `private="X"` counts as the unqualified directive: RFC 9111 5.2.2.4 and
 * 5.2.2.7 allow it, and it is the safe side (never store what the origin
 * meant to keep out of a shared cache). Several max-age values: the
 * smallest wins. */
#include <string.h>
#include "cache_control.h"

void tg_cache_control_init(tg_cache_control_t *cc)
{
    cc->flags = 0;
    cc->max_age = cc->s_maxage = cc->stale_while_revalidate = cc->stale_if_error = -1;
    cc->min_fresh = cc->max_stale = -1;
}

/* delta-seconds: digits only; saturates at TG_CC_MAX_SECONDS. -1: not a number. */
static int64_t delta_seconds(const char *p, size_t n)
{
    if (n == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v < TG_CC_MAX_SECONDS)
            v = v * 10 + (p[i] - '0');
    }
    return v > TG_CC_MAX_SECONDS ? TG_CC_MAX_SECONDS : v;
}

static int is_name(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && tg_str_caseeq_n(p, lit, l);
}

void tg_cache_control_parse(tg_cache_control_t *cc, tg_str_t value)
{
    const char *p = value.p, *end = value.p + value.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *name = p;
        while (p < end && *p != '=' && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t nlen = (size_t)(p - name);
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *val = NULL;
        size_t vlen = 0;
        int has_val = 0;
        if (p < end && *p == '=') {
            has_val = 1;
            p++;
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            if (p < end && *p == '"') {
                val = ++p;
                while (p < end && *p != '"') {
                    if (*p == '\\' && p + 1 < end)
                        p++;
                    p++;
                }
                vlen = (size_t)(p - val);
                if (p < end)
                    p++; /* the closing quote */
            } else {
                val = p;
                while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                    p++;
                vlen = (size_t)(p - val);
            }
        }
        /* skip to the next comma: anything after a value is malformed */
        while (p < end && *p != ',')
            p++;
        if (nlen == 0)
            continue;
        if (is_name(name, nlen, "max-age")) {
            int64_t v = delta_seconds(val, vlen);
            if (v >= 0 && (cc->max_age < 0 || v < cc->max_age))
                cc->max_age = v;
        } else if (is_name(name, nlen, "s-maxage")) {
            int64_t v = delta_seconds(val, vlen);
            if (v >= 0 && (cc->s_maxage < 0 || v < cc->s_maxage))
                cc->s_maxage = v;
        } else if (is_name(name, nlen, "stale-while-revalidate")) {
            cc->stale_while_revalidate = delta_seconds(val, vlen);
        } else if (is_name(name, nlen, "stale-if-error")) {
            cc->stale_if_error = delta_seconds(val, vlen);
        } else if (is_name(name, nlen, "min-fresh")) {
            cc->min_fresh = delta_seconds(val, vlen);
        } else if (is_name(name, nlen, "max-stale")) {
            cc->max_stale = has_val ? delta_seconds(val, vlen) : INT32_MAX;
        } else if (is_name(name, nlen, "no-store")) {
            cc->flags |= TG_CC_F_NO_STORE;
        } else if (is_name(name, nlen, "no-cache")) {
            cc->flags |= TG_CC_F_NO_CACHE;
        } else if (is_name(name, nlen, "private")) {
            cc->flags |= TG_CC_F_PRIVATE;
        } else if (is_name(name, nlen, "public")) {
            cc->flags |= TG_CC_F_PUBLIC;
        } else if (is_name(name, nlen, "must-revalidate")) {
            cc->flags |= TG_CC_F_MUST_REVALIDATE;
        } else if (is_name(name, nlen, "proxy-revalidate")) {
            cc->flags |= TG_CC_F_PROXY_REVALIDATE;
        } else if (is_name(name, nlen, "no-transform")) {
            cc->flags |= TG_CC_F_NO_TRANSFORM;
        } else if (is_name(name, nlen, "only-if-cached")) {
            cc->flags |= TG_CC_F_ONLY_IF_CACHED;
        }
    }
}
