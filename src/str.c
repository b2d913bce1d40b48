/* Strings and the small value parsers shared by the config and the request
 * path. Every function takes (pointer, length) strings, never relies on a
 * terminating NUL and never allocates. Case folding is plain ASCII on
 * purpose: header names and config keywords are ASCII, and the C locale's
 * tolower() would make results depend on the environment. The parsers accept
 * exactly the documented syntax and fail on anything else (signs, spaces,
 * junk, overflow) rather than guessing, so a typo in a config is an error. */
#include "str.h"

#include <stdint.h>
#include <time.h>

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int tg_str_caseeq_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    }
    return 1;
}



int tg_str_has_caseprefix(tg_str_t s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && tg_str_caseeq_n(s.p, prefix, n);
}

/* Optional white space as HTTP defines it (SP / HTAB), plus CR and LF so
 * that the same trim serves config values and header lines. */
static inline int is_ows(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

tg_str_t tg_str_trim(tg_str_t s)
{
    while (s.len > 0 && is_ows(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && is_ows(s.p[s.len - 1]))
        s.len--;
    return s;
}

/* Whole-token match: "keep-alive, Upgrade" has "upgrade" but not "grade";
 * empty list elements (",,") are skipped as RFC 9110 asks recipients to. */
int tg_str_has_token(tg_str_t list, const char *token)
{
    tg_str_t want = tg_str_c(token);
    const char *p = list.p, *end = list.len ? list.p + list.len : list.p;

    if (want.len == 0 || list.len == 0) return 0;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (tg_str_caseeq(tg_str_trim((tg_str_t){p, (size_t)(stop - p)}), want)) return 1;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

/* Reads the leading run of digits of [*pp, end) into *out. Fails on no
 * digits or a value above INT64_MAX; on success *pp points past the run. */
static int parse_digits(const char **pp, const char *end, int64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;

    if (p == end || !is_digit(*p)) return -1;
    for (; p < end && is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *pp = p;
    *out = (int64_t)v;
    return 0;
}

int tg_parse_int(tg_str_t s, int64_t *out)
{
    const char *p = s.p, *end = s.len ? s.p + s.len : s.p;
    int64_t v;

    if (s.len == 0 || parse_digits(&p, end, &v) < 0 || p != end) return -1;
    *out = v;
    return 0;
}

static int mul_checked(int64_t v, int64_t mult, int64_t *out)
{
    if (v > INT64_MAX / mult) return -1;
    *out = v * mult;
    return 0;
}

int tg_parse_size(tg_str_t s, int64_t *out)
{
    const char *p = s.p, *end = s.len ? s.p + s.len : s.p;
    int64_t v, mult = 1;

    if (s.len == 0 || parse_digits(&p, end, &v) < 0) return -1;
    if (p < end) {
        switch (lower((unsigned char)*p)) {
        case 'k':
            mult = 1024;
            break;
        case 'm':
            mult = 1024 * 1024;
            break;
        case 'g':
            mult = 1024 * 1024 * 1024;
            break;
        default:
            return -1;
        }
        if (++p != end) return -1;
    }
    return mul_checked(v, mult, out);
}

/* Durations are one or more "<digits><unit>" groups with units in strictly
 * decreasing order ("1h30m", "1m30s", "2s500ms"), so "30s1m" or "5s5s" is
 * an error rather than a silent sum. A bare number stands alone and means
 * seconds, which is what people expect from "timeout 30". */
int tg_parse_msec(tg_str_t s, tg_msec_t *out)
{
    static const struct {
        char unit[3];
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    const char *p = s.p, *end = s.len ? s.p + s.len : s.p;
    int64_t total = 0, v;
    size_t next_unit = 0; /* only units from here on may follow */

    if (s.len == 0 || parse_digits(&p, end, &v) < 0) return -1;
    if (p == end) return mul_checked(v, 1000, out);
    for (;;) {
        size_t u, n = (end - p >= 2 && p[0] == 'm' && p[1] == 's') ? 2 : 1;
        int64_t part;
        for (u = next_unit; u < sizeof units / sizeof units[0]; u++) {
            if (strlen(units[u].unit) == n && memcmp(units[u].unit, p, n) == 0) break;
        }
        if (u == sizeof units / sizeof units[0]) return -1;
        if (mul_checked(v, units[u].ms, &part) < 0 || part > INT64_MAX - total) return -1;
        total += part;
        next_unit = u + 1;
        p += n;
        if (p == end) break;
        if (parse_digits(&p, end, &v) < 0 || p == end) return -1;
    }
    *out = total;
    return 0;
}

size_t tg_fmt_dec(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

size_t tg_fmt_hex(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = 1;
    while (n < 16 && (v >> (4 * n)))
        n++;
    for (size_t i = 0; i < n; i++)
        p[i] = digits[(v >> (4 * (n - 1 - i))) & 0xf];
    return n;
}

static char *put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* By hand: gmtime_r and strftime cost ~1,500 instructions, and a static
 * file's Last-Modified is formatted per request. The calendar from the day
 * count is the proleptic Gregorian one (days from 0000-03-01 in 400-year
 * eras). */
size_t tg_fmt_http_date(char *out, time_t t)
{
    static const char wdays[] = "ThuFriSatSunMonTueWed"; /* 1970-01-01: a Thursday */
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    int64_t day = (int64_t)t / 86400, sec = (int64_t)t % 86400;
    if (sec < 0) {
        sec += 86400;
        day--;
    }
    int64_t z = day + 719468; /* days since 0000-03-01 */
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                     /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);              /* from March 1 */
    int64_t mp = (5 * doy + 2) / 153;
    unsigned mday = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    unsigned mon = (unsigned)(mp < 10 ? mp + 2 : mp - 10); /* 0 = January */
    int64_t year = yoe + era * 400 + (mon < 2);
    if (year < 0 || year > 9999) { /* not four digits: the C library says it */
        struct tm tm;
        gmtime_r(&t, &tm);
        return strftime(out, 32, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    }
    unsigned wd = (unsigned)(((day % 7) + 7) % 7);
    char *p = out;
    memcpy(p, wdays + 3 * wd, 3);
    p[3] = ',';
    p[4] = ' ';
    p = put2(p + 5, mday);
    *p++ = ' ';
    memcpy(p, months + 3 * mon, 3);
    p[3] = ' ';
    p = put2(p + 4, (unsigned)(year / 100));
    p = put2(p, (unsigned)(year % 100));
    *p++ = ' ';
    p = put2(p, (unsigned)(sec / 3600));
    *p++ = ':';
    p = put2(p, (unsigned)(sec / 60 % 60));
    *p++ = ':';
    p = put2(p, (unsigned)(sec % 60));
    memcpy(p, " GMT", 5);
    return (size_t)(p + 4 - out);
}

uint64_t tg_hash64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* SipHash-2-4 with the 128-bit result (the reference algorithm; the test
 * vectors are in t/unit/str.c). */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load64_le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void tg_siphash128(const uint64_t key[2], const void *data, size_t len, uint64_t out[2])
{
    const unsigned char *p = data, *end = p + (len & ~(size_t)7);
    uint64_t v0 = key[0] ^ 0x736f6d6570736575ULL, v1 = key[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = key[0] ^ 0x6c7967656e657261ULL, v3 = key[1] ^ 0x7465646279746573ULL;
    v1 ^= 0xee; /* the 128-bit variant */
    for (; p != end; p += 8) {
        uint64_t m = load64_le(p);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xee;
    for (int i = 0; i < 4; i++)
        SIPROUND;
    out[0] = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    for (int i = 0; i < 4; i++)
        SIPROUND;
    out[1] = v0 ^ v1 ^ v2 ^ v3;
}

int tg_base64_digit(unsigned char c, int alphabets)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if ((alphabets & TG_B64_STD && c == '+') || (alphabets & TG_B64_URL && c == '-'))
        return 62;
    if ((alphabets & TG_B64_STD && c == '/') || (alphabets & TG_B64_URL && c == '_'))
        return 63;
    return -1;
}

long tg_base64_decode(const char *s, size_t n, unsigned char *out, int alphabets, int strict)
{
    if (n % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = tg_base64_digit((unsigned char)s[i], alphabets);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (strict && bits && (acc & ((1u << bits) - 1)))
        return -1;
    return o;
}
