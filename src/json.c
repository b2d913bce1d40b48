/* Escaping for JSON strings and Prometheus label values (see json.h).
 *
 * Both walk the input one UTF-8 character at a time (utf8_next), so a cut
 * at the end of the buffer falls between characters and the output is
 * always well-formed UTF-8: an ill-formed byte sequence is never copied,
 * it becomes U+FFFD, one per maximal ill-formed subsequence as Unicode
 * recommends (an E2 82 cut short of its third byte is one U+FFFD, a lone
 * 80 is one, F5 is one). Replacing rather than escaping the byte as
 * \u00hh is deliberate: \u00e9 would read back as the valid character é,
 * indistinguishable from a client that sent é properly encoded. */
#include <stdint.h>
#include <string.h>
#include "json.h"

#define BAD_CP 0xFFFFFFFFu /* utf8_next: not well-formed */

/* The character at p[0..n), n > 0. Returns its length and sets *cp, or for
 * an ill-formed sequence the length of its maximal subpart (at least 1) and
 * BAD_CP. The ranges are Unicode's table 3-7 of well-formed UTF-8: no
 * overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0; /* overlong below */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates above */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        *cp = BAD_CP; /* 80..C1 (continuation, overlong lead) or F5..FF */
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        unsigned char b = i < n ? p[i] : 0;
        if (i >= n || b < lo || b > hi) {
            *cp = BAD_CP;
            return i; /* the valid prefix is the maximal subpart */
        }
        v = (v << 6) | (b & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = v;
    return len;
}

/* The JSON escape for cp into e (room for 6), its length; 0: none needed. */
static size_t json_escape_cp(uint32_t cp, char *e)
{
    static const char hex[] = "0123456789abcdef";
    static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
    const char *k = cp < 0x80 ? memchr(from, (int)cp, sizeof(from) - 1) : NULL;
    if (k) {
        e[0] = '\\';
        e[1] = to[k - from];
        return 2;
    }
    if (cp == BAD_CP)
        cp = 0xFFFD;
    else if (!(cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029))
        return 0;
    e[0] = '\\';
    e[1] = 'u';
    e[2] = hex[(cp >> 12) & 15];
    e[3] = hex[(cp >> 8) & 15];
    e[4] = hex[(cp >> 4) & 15];
    e[5] = hex[cp & 15];
    return 6;
}

/* The Prometheus label escape for cp into e (room for 3); 0: none needed. */
static size_t prom_escape_cp(uint32_t cp, char *e)
{
    if (cp == '\\' || cp == '"' || cp == '\n') {
        e[0] = '\\';
        e[1] = cp == '\n' ? 'n' : (char)cp;
        return 2;
    }
    if (cp == BAD_CP) {
        e[0] = (char)0xEF; /* U+FFFD in UTF-8 */
        e[1] = (char)0xBF;
        e[2] = (char)0xBD;
        return 3;
    }
    return 0;
}

/* The common walk: each character either passes unchanged or is replaced
 * by what esc() writes; stops before a character that would not fit. */
static size_t escape_with(size_t (*esc)(uint32_t, char *), char *dst, size_t cap, tg_str_t s,
                          size_t *used)
{
    const unsigned char *p = (const unsigned char *)s.p;
    size_t i = 0, o = 0;
    while (i < s.len) {
        if (p[i] >= 0x20 && p[i] < 0x7F && p[i] != '"' && p[i] != '\\') {
            if (o == cap) break;
            dst[o++] = (char)p[i++]; /* the common case: plain ASCII */
            continue;
        }
        uint32_t cp;
        char e[TG_JSON_ESCAPE_MAX];
        size_t n = utf8_next(p + i, s.len - i, &cp);
        size_t en = esc(cp, e);
        size_t out = en ? en : n;
        if (out > cap - o) break;
        if (en) {
            for (size_t k = 0; k < en; k++)
                dst[o + k] = e[k];
        } else {
            for (size_t k = 0; k < n; k++)
                dst[o + k] = (char)p[i + k];
        }
        o += out;
        i += n;
    }
    if (used) *used = i;
    return o;
}

size_t tg_json_escape(char *dst, size_t cap, tg_str_t s, size_t *used)
{
    return escape_with(json_escape_cp, dst, cap, s, used);
}

size_t tg_json_escape_prom(char *dst, size_t cap, tg_str_t s, size_t *used)
{
    return escape_with(prom_escape_cp, dst, cap, s, used);
}

size_t tg_json_escape_len(tg_str_t s)
{
    const unsigned char *p = (const unsigned char *)s.p;
    size_t i = 0, total = 0;
    while (i < s.len) {
        uint32_t cp;
        char e[TG_JSON_ESCAPE_MAX];
        size_t n = utf8_next(p + i, s.len - i, &cp);
        size_t en = json_escape_cp(cp, e);
        total += en ? en : n;
        i += n;
    }
    return total;
}

char *tg_json_escape_dup(tg_arena_t *a, tg_str_t s, int prom)
{
    size_t cap = s.len * TG_JSON_ESCAPE_MAX + 1;
    char *out = tg_arena_alloc_nz(a, cap);
    if (out == NULL)
        return NULL;
    size_t n = prom ? tg_json_escape_prom(out, cap - 1, s, NULL) : tg_json_escape(out, cap - 1, s, NULL);
    out[n] = '\0';
    return out;
}
