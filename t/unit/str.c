/* Unit tests for src/str.c: case-insensitive compares, token lists, trim,
 * the size/duration/integer parsers (accepted forms, their values, and every
 * class of reject: empty, sign, junk, bad unit, overflow), FNV-1a 64 and
 * SipHash-2-4-128 against the reference vectors, number and HTTP date
 * formatting against printf and strftime. */
#include "str.h"
#include "tap.h"

#include <stdint.h>
#include <time.h>

static void test_size_ok(const char *in, int64_t want)
{
    int64_t v = -7;
    int rc = tg_parse_size(tg_str_c(in), &v);

    ok(rc == 0 && v == want, "size \"%s\" = %lld (got rc %d, %lld)", in, (long long)want, rc,
       (long long)v);
}

static void test_size_bad(const char *in)
{
    int64_t v = -7;

    ok(tg_parse_size(tg_str_c(in), &v) == -1 && v == -7, "size \"%s\" rejected, out untouched", in);
}

static void test_msec_ok(const char *in, tg_msec_t want)
{
    tg_msec_t v = -7;
    int rc = tg_parse_msec(tg_str_c(in), &v);

    ok(rc == 0 && v == want, "msec \"%s\" = %lld (got rc %d, %lld)", in, (long long)want, rc,
       (long long)v);
}

static void test_msec_bad(const char *in)
{
    tg_msec_t v = -7;

    ok(tg_parse_msec(tg_str_c(in), &v) == -1 && v == -7, "msec \"%s\" rejected", in);
}

static void test_int(const char *in, int rc_want, int64_t want)
{
    int64_t v = -7;
    int rc = tg_parse_int(tg_str_c(in), &v);

    ok(rc == rc_want && v == want, "int \"%s\" -> rc %d value %lld", in, rc_want, (long long)want);
}

static void test_siphash(void)
{
    /* reference vectors (vectors_sip128): key 00..0f, message 00..len-1 */
    static const struct {
        size_t len;
        uint64_t lo, hi; /* the 16 output bytes read as two little-endian words */
    } v[] = {
        {0, 0xe6a825ba047f81a3ULL, 0x930255c71472f66dULL},
        {1, 0x44af996bd8c187daULL, 0x45fc229b11597634ULL},
        {7, 0x53c1dbd8beebf1a1ULL, 0x3982f01fa64ab8c0ULL},
        {8, 0x61f55862baa9623bULL, 0xb49714f364e2830fULL},
        {15, 0x11a8b03399e99354ULL, 0xd9c3cf970fec087eULL},
        {16, 0xbb54b067caa4e26eULL, 0x77052385bf1533fdULL},
    };
    uint64_t k[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    unsigned char msg[16];
    for (int i = 0; i < 16; i++)
        msg[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint64_t out[2];
        tg_siphash128(k, msg, v[i].len, out);
        ok(out[0] == v[i].lo && out[1] == v[i].hi, "siphash128 vector, %zu bytes", v[i].len);
    }
}

static void test_base64(void)
{
    unsigned char out[64];
    static const struct {
        const char *in;
        int alphabets, strict;
        long len;
        const char *want;
    } cases[] = {
        {"", TG_B64_STD, 1, 0, ""},
        {"Zg", TG_B64_STD, 1, 1, "f"},
        {"Zm8", TG_B64_STD, 1, 2, "fo"},
        {"Zm9v", TG_B64_STD, 1, 3, "foo"},
        {"Zm9vYmFy", TG_B64_STD, 1, 6, "foobar"},
        {"-_8", TG_B64_URL, 1, 2, "\xfb\xff"},
        {"+/8", TG_B64_STD, 1, 2, "\xfb\xff"},
        {"+/8", TG_B64_URL, 1, -1, NULL},       /* standard digits in base64url */
        {"-_8", TG_B64_STD, 1, -1, NULL},       /* and the other way */
        {"-/8", TG_B64_STD | TG_B64_URL, 1, 2, "\xfb\xff"},
        {"Zh", TG_B64_STD, 1, -1, NULL},        /* stray bits in the last character */
        {"Zh", TG_B64_STD, 0, 1, "f"},          /* ... accepted when not strict */
        {"Zm9vY", TG_B64_STD, 0, -1, NULL},     /* a length no encoding has */
        {"Zm9v=", TG_B64_STD, 0, -1, NULL},     /* padding is the caller's to strip */
        {"Zm 9v", TG_B64_STD, 0, -1, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long n = tg_base64_decode(cases[i].in, strlen(cases[i].in), out, cases[i].alphabets,
                                  cases[i].strict);
        ok(n == cases[i].len && (n < 0 || memcmp(out, cases[i].want, (size_t)n) == 0),
           "tg_base64_decode(\"%s\", %d, %d) = %ld", cases[i].in, cases[i].alphabets,
           cases[i].strict, n);
    }
}

static void test_http_date(void)
{
    char d[32];
    size_t n = tg_fmt_http_date(d, 1700000000);
    is_str(d, "Tue, 14 Nov 2023 22:13:20 GMT", "formatted");
    is_int((long long)n, 29, "its length");
    /* the hand-made calendar against the C library's, over leap days, century
     * years, before 1970 and far ahead (one day in 291 from the year 1000 on;
     * strftime has no leading zeros before it) */
    static const time_t edge[] = {0, -1, 951782400, 951868799, 4107542400, 253402300799,
                                  -30610224000, 68256000, 1709164800, 1709251199};
    int bad = 0;
    char want[64];
    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]) + 3800; i++) {
        time_t t = i < sizeof(edge) / sizeof(edge[0])
                       ? edge[i]
                       : -30610224000 + (time_t)(i - 10) * 291 * 86400 + (time_t)i * 7919 % 86400;
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t wn = strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        n = tg_fmt_http_date(d, t);
        if (n != wn || memcmp(d, want, n) != 0) {
            if (bad++ < 3)
                diag("%lld: got %.*s, want %s", (long long)t, (int)n, d, want);
        }
    }
    is_int(bad, 0, "formatted as strftime formats, years 1000 to 9999");
}

int main(void)
{
    /* compares */
    ok(tg_str_caseeq(TG_STR("Content-Length"), TG_STR("content-LENGTH")), "caseeq ignores case");
    ok(!tg_str_caseeq(TG_STR("abc"), TG_STR("abd")), "caseeq differs");
    ok(!tg_str_caseeq(TG_STR("abc"), TG_STR("abcd")), "caseeq length");
    ok(tg_str_caseeq(TG_NULL_STR, TG_STR("")), "caseeq empty vs NULL string");
    ok(!tg_str_caseeq(TG_STR("@"), TG_STR("`")), "caseeq folds letters only");
    ok(tg_str_caseeq_lit(TG_STR("KEEP-ALIVE"), "keep-alive"), "caseeq_lit");
    ok(!tg_str_caseeq_lit(TG_STR("keep"), "keep-alive"), "caseeq_lit prefix is not equal");
    ok(tg_str_has_caseprefix(TG_STR("Text/HTML; charset=utf-8"), "text/"), "caseprefix");
    ok(tg_str_has_caseprefix(TG_STR("abc"), ""), "empty prefix");
    ok(!tg_str_has_caseprefix(TG_STR("te"), "text/"), "caseprefix longer than string");
    ok(tg_str_eq(TG_STR("a"), TG_STR("a")) && !tg_str_eq(TG_STR("a"), TG_STR("A")), "str_eq exact");

    /* trim */
    {
        tg_str_t t = tg_str_trim(TG_STR(" \t value x \r\n"));
        ok(tg_str_eq_lit(t, "value x"), "trim both ends: '%.*s'", TG_STR_FMT(t));
        ok(tg_str_trim(TG_STR("  \t ")).len == 0, "trim all blanks");
        ok(tg_str_trim(TG_NULL_STR).len == 0, "trim empty");
    }

    /* tokens */
    ok(tg_str_has_token(TG_STR("keep-alive, Upgrade"), "upgrade"), "token second, other case");
    ok(tg_str_has_token(TG_STR("Upgrade"), "upgrade"), "token alone");
    ok(tg_str_has_token(TG_STR("  close  "), "close"), "token with OWS");
    ok(tg_str_has_token(TG_STR("a,\tgzip\t,b"), "GZIP"), "token with tabs");
    ok(tg_str_has_token(TG_STR(",,x,,"), "x"), "empty elements skipped");
    ok(!tg_str_has_token(TG_STR("keep-alive, Upgrade"), "grade"), "no partial token");
    ok(!tg_str_has_token(TG_STR("upgrades"), "upgrade"), "no token prefix");
    ok(!tg_str_has_token(TG_STR("up grade"), "grade"), "space is not a separator");
    ok(!tg_str_has_token(TG_STR(""), "x"), "empty list");
    ok(!tg_str_has_token(TG_STR("a,,b"), ""), "empty token never matches");

    /* sizes */
    test_size_ok("0", 0);
    test_size_ok("512", 512);
    test_size_ok("10k", 10240);
    test_size_ok("10K", 10240);
    test_size_ok("5m", 5 * 1024 * 1024);
    test_size_ok("5M", 5 * 1024 * 1024);
    test_size_ok("1g", 1024LL * 1024 * 1024);
    test_size_ok("3G", 3LL * 1024 * 1024 * 1024);
    test_size_ok("9223372036854775807", INT64_MAX);
    test_size_ok("8589934591g", 8589934591LL * 1024 * 1024 * 1024);
    test_size_bad("");
    test_size_bad("k");
    test_size_bad("-1");
    test_size_bad("+1");
    test_size_bad(" 1");
    test_size_bad("1 ");
    test_size_bad("10x");
    test_size_bad("10kb");
    test_size_bad("10t");
    test_size_bad("1.5m");
    test_size_bad("9223372036854775808");
    test_size_bad("8589934592g");
    test_size_bad("99999999999999999999999");
    {
        int64_t v = 0;
        ok(tg_parse_size((tg_str_t){"10k;", 3}, &v) == 0 && v == 10240,
           "size uses the length, not a NUL");
    }

    /* durations */
    test_msec_ok("0", 0);
    test_msec_ok("30", 30000);
    test_msec_ok("250ms", 250);
    test_msec_ok("10s", 10000);
    test_msec_ok("5m", 300000);
    test_msec_ok("1h", 3600000);
    test_msec_ok("2d", 172800000);
    test_msec_ok("1m30s", 90000);
    test_msec_ok("1h30m", 5400000);
    test_msec_ok("2s500ms", 2500);
    test_msec_ok("1d2h3m4s5ms", 86400000LL + 7200000 + 180000 + 4000 + 5);
    test_msec_ok("0ms", 0);
    test_msec_ok("9223372036854775807ms", INT64_MAX);
    test_msec_bad("");
    test_msec_bad("s");
    test_msec_bad("ms");
    test_msec_bad("-1s");
    test_msec_bad("+1s");
    test_msec_bad("1 s");
    test_msec_bad("10x");
    test_msec_bad("10S");
    test_msec_bad("1mm");
    test_msec_bad("1m30");
    test_msec_bad("30s1m");
    test_msec_bad("5s5s");
    test_msec_bad("1.5s");
    test_msec_bad("10sx");
    test_msec_bad("9223372036854775807s");
    test_msec_bad("9223372036854775807");
    test_msec_bad("106751991168d");
    test_msec_ok("106751991167d", 106751991167LL * 86400000);
    test_msec_bad("106751991166d112375808ms");
    test_msec_ok("106751991166d112375807ms", INT64_MAX);

    /* integers */
    test_int("0", 0, 0);
    test_int("42", 0, 42);
    test_int("007", 0, 7);
    test_int("9223372036854775807", 0, INT64_MAX);
    test_int("9223372036854775808", -1, -7);
    test_int("", -1, -7);
    test_int("-1", -1, -7);
    test_int("1k", -1, -7);
    test_int("1 ", -1, -7);

    /* FNV-1a 64 reference values */
    ok(tg_hash64("", 0) == 0xcbf29ce484222325ULL, "fnv1a64 of empty is the offset basis");
    ok(tg_hash64("a", 1) == 0xaf63dc4c8601ec8cULL, "fnv1a64(\"a\")");
    ok(tg_hash64("foobar", 6) == 0x85944171f73967e8ULL, "fnv1a64(\"foobar\")");
    ok(tg_hash64("ab", 2) != tg_hash64("ba", 2), "order matters");

    /* number formatting agrees with printf over edges and a sweep */
    const uint64_t vals[] = {0, 1, 9, 10, 15, 16, 99, 100, 255, 256, 4095, 65536, 999999999,
                             1000000000, 0xffffffffULL, 0x100000000ULL, INT64_MAX, UINT64_MAX};
    int bad = 0;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]) + 5000; i++) {
        uint64_t v = i < sizeof(vals) / sizeof(vals[0]) ? vals[i] : (uint64_t)i * 7919u * 104729u;
        char got[24], want[24];
        size_t n = tg_fmt_dec(got, v);
        got[n] = '\0';
        snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
        if (strcmp(got, want) != 0 && bad++ < 5) diag("dec %s != %s", got, want);
        n = tg_fmt_hex(got, v);
        got[n] = '\0';
        snprintf(want, sizeof(want), "%llx", (unsigned long long)v);
        if (strcmp(got, want) != 0 && bad++ < 5) diag("hex %s != %s", got, want);
    }
    ok(bad == 0, "tg_fmt_dec and tg_fmt_hex match printf (%d mismatches)", bad);

    test_siphash();
    test_base64();
    test_http_date();
    return done_testing();
}
