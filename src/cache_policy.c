/* RFC 9111 for the response cache (modules/cache.c): whether a response may
 * be stored by a shared cache and for how long, the Vary list and variant
 * keys, the stored form of a response head ("Name: value" lines) and what
 * a 304 makes of it. Pure functions of a request and its response; memory
 * from the request arena. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "cache_policy.h"
#include "cache_control.h"
#include "http_cond.h"

#define CA_HEURISTIC_MAX 86400.0 /* s: cap of the heuristic freshness (10% of the age) */
#define CA_VARY_MAX 8            /* header names of a Vary we store under */

/* The variant key: the plain key, then for each name of the Vary list
 * (comma-separated, as stored) the request's values of that header, so two
 * requests share a variant only when they sent the same values. */
int tg_cache_variant_key(tg_request_t *r, tg_str_t key, tg_str_t names, tg_str_t *out)
{
    size_t len = key.len + 1;
    const char *p = names.p, *end = names.p + names.len;
    while (p < end) {
        const char *q = memchr(p, ',', (size_t)(end - p));
        tg_str_t n = {p, (size_t)((q ? q : end) - p)};
        for (uint32_t i = 0; i < r->headers.n; i++)
            if (tg_str_caseeq(r->headers.h[i].name, n))
                len += r->headers.h[i].value.len + 1;
        len += 1;
        p = q ? q + 1 : end;
    }
    char *b = tg_arena_alloc(r->arena, len), *w = b;
    if (b == NULL)
        return -1;
    memcpy(w, key.p, key.len);
    w += key.len;
    *w++ = '\x01';
    for (p = names.p; p < end;) {
        const char *q = memchr(p, ',', (size_t)(end - p));
        tg_str_t n = {p, (size_t)((q ? q : end) - p)};
        for (uint32_t i = 0; i < r->headers.n; i++) {
            if (!tg_str_caseeq(r->headers.h[i].name, n))
                continue;
            memcpy(w, r->headers.h[i].value.p, r->headers.h[i].value.len);
            w += r->headers.h[i].value.len;
            *w++ = '\x02';
        }
        *w++ = '\x01';
        p = q ? q + 1 : end;
    }
    *out = (tg_str_t){b, (size_t)(w - b)};
    return 0;
}

/* The response's Vary as the list we store ("accept-encoding,x-a"):
 * 0 none, 1 set, -1 not storable (Vary: *, too many names). */
int tg_cache_response_vary(tg_request_t *r, tg_str_t *out)
{
    char buf[512];
    size_t len = 0;
    int n = 0;
    for (uint32_t i = 0; i < r->resp_headers.n; i++) {
        tg_header_t *h = &r->resp_headers.h[i];
        if (!tg_str_caseeq_lit(h->name, "Vary"))
            continue;
        const char *p = h->value.p, *end = p + h->value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            size_t l = (size_t)(p - s);
            if (l == 0)
                continue;
            if (l == 1 && *s == '*')
                return -1;
            if (++n > CA_VARY_MAX || len + l + 1 > sizeof(buf))
                return -1;
            if (len)
                buf[len++] = ',';
            for (size_t j = 0; j < l; j++)
                buf[len++] = (char)(s[j] >= 'A' && s[j] <= 'Z' ? s[j] + 32 : s[j]);
        }
    }
    if (len == 0)
        return 0;
    *out = tg_arena_str(r->arena, (tg_str_t){buf, len});
    return out->p ? 1 : -1;
}

/* The stored head: "Name: value\r\n" lines into r->resp_headers. */
int tg_cache_head_parse(tg_request_t *r, char *p, size_t len)
{
    char *end = p + len;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *colon = memchr(p, ':', (size_t)(end - p));
        if (eol == NULL || colon == NULL || colon > eol)
            return -1;
        tg_str_t name = {p, (size_t)(colon - p)};
        tg_str_t value = {colon + 2, (size_t)(eol - colon - 2)};
        if (tg_headers_add(r->arena, &r->resp_headers, name, value) != 0)
            return -1;
        p = eol + 1;
    }
    return 0;
}

/* Statuses RFC 9110 15.1 makes heuristically cacheable. */
static int heuristic_status(int st)
{
    switch (st) {
    case 200: case 203: case 204: case 206: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return 1;
    }
    return 0;
}

static double header_date(tg_request_t *r, const char *name)
{
    tg_header_t *h = tg_headers_find(&r->resp_headers, tg_str_c(name));
    if (h == NULL)
        return -1;
    time_t t = tg_http_date_parse(h->value);
    return t == (time_t)-1 ? -1 : (double)t;
}

/* Headers not stored: the framing and hop-by-hop ones (the carrier frames
 * each answer itself), Age (computed per hit), and Set-Cookie unless
 * cache_store_set_cookie says otherwise (then it goes to this client only). */
static int stored_header(tg_str_t n)
{
    static const char *const skip[] = {"Connection", "Keep-Alive", "Transfer-Encoding",
                                       "Content-Length", "TE", "Trailer", "Upgrade",
                                       "Proxy-Connection", "Age", "Set-Cookie", NULL};
    for (int i = 0; skip[i]; i++)
        if (tg_str_caseeq_lit(n, skip[i]))
            return 0;
    return 1;
}

/* Decide whether the upstream's response may be stored and for how long
 * (RFC 9111 3 and 4.2). Returns 1 and *m, or 0. */
int tg_cache_storable(tg_request_t *r, double now, double valid, int store_cookie,
                      tg_cache_meta_t *m)
{
    int st = r->status;
    if (st < 200 || st == 206 || st == 304 || r->status == 101)
        return 0;
    tg_cache_control_t cc;
    tg_cache_control_init(&cc);
    for (uint32_t i = 0; i < r->resp_headers.n; i++)
        if (tg_str_caseeq_lit(r->resp_headers.h[i].name, "Cache-Control"))
            tg_cache_control_parse(&cc, r->resp_headers.h[i].value);
    tg_cache_control_t rq;
    tg_cache_control_init(&rq);
    for (uint32_t i = 0; i < r->headers.n; i++)
        if (tg_str_caseeq_lit(r->headers.h[i].name, "Cache-Control"))
            tg_cache_control_parse(&rq, r->headers.h[i].value);
    if ((cc.flags & (TG_CC_F_NO_STORE | TG_CC_F_PRIVATE)) || (rq.flags & TG_CC_F_NO_STORE))
        return 0;
    if (!store_cookie && tg_headers_find(&r->resp_headers, TG_STR("Set-Cookie")))
        return 0;
    memset(m, 0, sizeof(*m));
    /* RFC 9111 3.5: a request with credentials is stored only when the
     * response says a shared cache may */
    if (cc.flags & TG_CC_F_PUBLIC || cc.s_maxage >= 0 || cc.flags & TG_CC_F_MUST_REVALIDATE)
        m->flags |= TG_CACHE_F_AUTH_OK;
    if (tg_headers_find(&r->headers, TG_STR("Authorization")) && !(m->flags & TG_CACHE_F_AUTH_OK))
        return 0;
    double date = header_date(r, "Date");
    double lifetime = -1;
    if (cc.s_maxage >= 0)
        lifetime = (double)cc.s_maxage;
    else if (cc.max_age >= 0)
        lifetime = (double)cc.max_age;
    else if (tg_headers_find(&r->resp_headers, TG_STR("Expires"))) {
        double exp = header_date(r, "Expires");
        /* an invalid Expires (such as "0") means already expired */
        lifetime = exp < 0 ? 0 : exp - (date >= 0 ? date : now);
    } else if ((lifetime = valid) < 0) {
        double lm = header_date(r, "Last-Modified");
        /* heuristic freshness only for statuses that allow it, or public */
        if (lm >= 0 && (heuristic_status(st) || (cc.flags & TG_CC_F_PUBLIC))) {
            double base = date >= 0 ? date : now;
            lifetime = base > lm ? (base - lm) / 10 : 0;
            if (lifetime > CA_HEURISTIC_MAX)
                lifetime = CA_HEURISTIC_MAX;
        }
    }
    if (lifetime < 0 && !(cc.flags & TG_CC_F_NO_CACHE))
        return 0;
    if (lifetime < 0)
        lifetime = 0;
    /* RFC 9111 4.2.3: the corrected initial age */
    double age = 0;
    tg_header_t *ah = tg_headers_find(&r->resp_headers, TG_STR("Age"));
    int64_t av;
    if (ah && tg_parse_int(tg_str_trim(ah->value), &av) == 0 && av > 0)
        age = (double)av;
    /* Date has whole seconds: the time since it counts in whole seconds too
     * (a response made at x.9 s and dated x is not 0.9 s old on arrival) */
    if (date >= 0 && floor(now) - date > age)
        age = floor(now) - date;
    if (age > lifetime + 1e9)
        age = lifetime;
    m->status = st;
    m->stored = now;
    m->age = age;
    m->fresh_until = now + lifetime - age;
    if (cc.flags & TG_CC_F_NO_CACHE)
        m->flags |= TG_CACHE_F_NO_CACHE;
    if (cc.flags & (TG_CC_F_MUST_REVALIDATE | TG_CC_F_PROXY_REVALIDATE) || cc.s_maxage >= 0)
        m->flags |= TG_CACHE_F_MUST_REVALIDATE;
    m->swr_until = m->fresh_until;
    if (cc.stale_while_revalidate > 0)
        m->swr_until += (double)cc.stale_while_revalidate;
    m->sie_until = m->fresh_until;
    if (cc.stale_if_error > 0)
        m->sie_until += (double)cc.stale_if_error;
    /* nothing to keep: expired at once and never revalidated */
    return m->fresh_until > now || (m->flags & TG_CACHE_F_NO_CACHE) ? 1 : 0;
}

int tg_cache_head_serialize(tg_request_t *r, tg_str_t *out)
{
    size_t len = 0;
    for (uint32_t i = 0; i < r->resp_headers.n; i++)
        len += r->resp_headers.h[i].name.len + r->resp_headers.h[i].value.len + 3;
    char *b = tg_arena_alloc(r->arena, len + 1), *w = b;
    if (b == NULL)
        return -1;
    for (uint32_t i = 0; i < r->resp_headers.n; i++) {
        tg_header_t *h = &r->resp_headers.h[i];
        if (!stored_header(h->name))
            continue;
        memcpy(w, h->name.p, h->name.len);
        w += h->name.len;
        *w++ = ':';
        *w++ = ' ';
        memcpy(w, h->value.p, h->value.len);
        w += h->value.len;
        *w++ = '\n';
    }
    *out = (tg_str_t){b, (size_t)(w - b)};
    return 0;
}


/* May a 304's field of this name replace the stored ones (RFC 9111 3.2)?
 * Not those a stored head never has, nor Content-Encoding: it describes
 * the stored body, which the 304 does not change. */
static int updatable_header(tg_str_t n)
{
    return stored_header(n) && !tg_str_caseeq_lit(n, "Content-Encoding");
}

/* The stored head `old` with the 304's fields (r->resp_headers) in: each
 * name the 304 has replaces the stored lines of that name, in the place of
 * the first of them; names the stored head lacks are appended. */
static int head_merge(tg_request_t *r, tg_str_t old, tg_str_t *out)
{
    tg_headers_t *nh = &r->resp_headers;
    size_t len = old.len;
    for (uint32_t i = 0; i < nh->n; i++)
        len += nh->h[i].name.len + nh->h[i].value.len + 3;
    char *b = tg_arena_alloc(r->arena, len + 1), *w = b;
    char *placed = tg_arena_alloc(r->arena, nh->n + 1); /* zeroed */
    if (b == NULL || placed == NULL)
        return -1;
    for (const char *p = old.p, *end = old.p + old.len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (eol == NULL || colon == NULL || colon > eol)
            return -1;
        tg_str_t name = {p, (size_t)(colon - p)};
        int replaced = 0;
        for (uint32_t i = 0; updatable_header(name) && i < nh->n; i++) {
            if (!tg_str_caseeq(nh->h[i].name, name))
                continue;
            replaced = 1;
            if (placed[i])
                continue; /* put in place of an earlier line of the name */
            placed[i] = 1;
            w += sprintf(w, "%.*s: %.*s\n", TG_STR_FMT(nh->h[i].name), TG_STR_FMT(nh->h[i].value));
        }
        if (!replaced) {
            memcpy(w, p, (size_t)(eol + 1 - p));
            w += eol + 1 - p;
        }
        p = eol + 1;
    }
    for (uint32_t i = 0; i < nh->n; i++)
        if (!placed[i] && updatable_header(nh->h[i].name))
            w += sprintf(w, "%.*s: %.*s\n", TG_STR_FMT(nh->h[i].name), TG_STR_FMT(nh->h[i].value));
    *out = (tg_str_t){b, (size_t)(w - b)};
    return 0;
}

int tg_cache_revalidate(tg_request_t *r, tg_str_t old, const tg_cache_meta_t *om, double now,
                        tg_str_t *head, tg_cache_meta_t *m)
{
    if (head_merge(r, old, head) != 0)
        return -1;
    /* the freshness of the merged head, as if it came now with the 304's
     * status line replaced by the stored one (and the 304's Age) */
    char *copy = tg_arena_alloc(r->arena, head->len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, head->p, head->len);
    tg_headers_t saved = r->resp_headers;
    tg_header_t *age = tg_headers_find(&saved, TG_STR("Age"));
    int status = r->status;
    r->resp_headers = (tg_headers_t){0};
    r->status = om->status;
    int ok = tg_cache_head_parse(r, copy, head->len) == 0 &&
             (age == NULL ||
              tg_headers_add(r->arena, &r->resp_headers, age->name, age->value) == 0);
    ok = ok && tg_cache_storable(r, now, -1, 1, m);
    r->resp_headers = saved;
    r->status = status;
    if (!ok) {
        /* nothing there says how long: the lifetime it had, from now */
        double shift = now - om->stored;
        *m = *om;
        m->stored = now;
        m->fresh_until += shift;
        m->swr_until += shift;
        m->sie_until += shift;
    }
    m->status = om->status;
    m->flags |= om->flags & (TG_CACHE_F_AUTH_OK | TG_CACHE_F_VARIANTS);
    m->flags &= ~(TG_CACHE_F_UPDATING | TG_CACHE_F_ERRORS);
    return 0;
}
