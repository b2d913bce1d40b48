/* Unit tests for src/http_cond.c: byte-range sets (forms, merging, limits,
 * unsatisfiable and invalid sets), entity-tag lists (weak and strong
 * comparison), the three HTTP date forms (parsed), and the precondition order. */
#include <string.h>
#include "http_cond.h"
#include "tap.h"

/* "a-b,c-d" of the parsed ranges, or the return code when <= 0 */
static void ranges_is(const char *hdr, int64_t len, const char *want)
{
    tg_http_range_t r[4];
    char got[128];
    int n = tg_http_ranges_parse(tg_str_c(hdr), len, r, 4);
    if (n <= 0) {
        snprintf(got, sizeof(got), "%d", n);
    } else {
        size_t o = 0;
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%lld-%lld", i ? "," : "",
                                  (long long)r[i].start, (long long)r[i].end);
    }
    is_str(got, want, hdr);
}

static void test_ranges(void)
{
    ranges_is("bytes=0-9", 100, "0-9");
    ranges_is("bytes=90-", 100, "90-99");
    ranges_is("bytes=-5", 100, "95-99");
    ranges_is("bytes=-500", 100, "0-99");
    ranges_is("bytes=50-500", 100, "50-99");
    ranges_is("BYTES=0-0", 100, "0-0");
    ranges_is("bytes=0-4, 10-14", 100, "0-4,10-14");
    ranges_is("bytes=10-14,0-4", 100, "0-4,10-14");
    ranges_is("bytes=0-4,3-9", 100, "0-9");
    ranges_is("bytes=0-4,5-9", 100, "0-9");
    ranges_is("bytes=100-", 100, "0");
    ranges_is("bytes=-0", 100, "0");
    ranges_is("bytes=100-,200-300", 100, "0");
    ranges_is("bytes=0-4,100-", 100, "0-4");
    ranges_is("bytes=0-", 0, "0");
    ranges_is("bytes=abc", 100, "-1");
    ranges_is("bytes=5-1", 100, "-1");
    ranges_is("bytes=-", 100, "-1");
    ranges_is("bytes=", 100, "-1");
    ranges_is("items=0-1", 100, "-1");
    ranges_is("bytes=0-1;x", 100, "-1");
    ranges_is("bytes=0-1,2-3,4-5,6-7,8-9", 100, "-1");
    ranges_is("bytes=99999999999999999999-", 100, "-1");
}

static void test_etags(void)
{
    tg_str_t e = TG_STR("\"5f-2a\"");
    ok(tg_http_etag_listed(tg_str_c("\"5f-2a\""), e, 0), "strong: the tag itself");
    ok(tg_http_etag_listed(tg_str_c("\"x\", \"5f-2a\""), e, 0), "strong: in a list");
    ok(!tg_http_etag_listed(tg_str_c("W/\"5f-2a\""), e, 0), "strong: a weak tag never matches");
    ok(tg_http_etag_listed(tg_str_c("W/\"5f-2a\""), e, 1), "weak: W/ ignored");
    ok(tg_http_etag_listed(tg_str_c(" * "), e, 0), "*");
    ok(!tg_http_etag_listed(tg_str_c("\"5f-2\""), e, 1), "another tag");
    ok(!tg_http_etag_listed(tg_str_c(""), e, 1), "empty");
    ok(!tg_http_etag_listed(tg_str_c("\"5f-2a"), e, 1), "unterminated");
}

static void test_dates(void)
{
    is_int(tg_http_date_parse(tg_str_c("Tue, 14 Nov 2023 22:13:20 GMT")), 1700000000,
           "IMF-fixdate");
    is_int(tg_http_date_parse(tg_str_c("Tuesday, 14-Nov-23 22:13:20 GMT")), 1700000000, "RFC 850");
    is_int(tg_http_date_parse(tg_str_c("Tue Nov 14 22:13:20 2023")), 1700000000, "asctime");
    is_int(tg_http_date_parse(tg_str_c("yesterday")), -1, "garbage");
    is_int(tg_http_date_parse(tg_str_c("Tue, 14 Nov 2023 22:13:20 GMT x")), -1, "trailing junk");
}

static int pre(const char *n1, const char *v1, const char *n2, const char *v2)
{
    tg_header_t h[2] = {{tg_str_c(n1), tg_str_c(v1)},
                        {tg_str_c(n2 ? n2 : "X"), tg_str_c(v2 ? v2 : "")}};
    tg_headers_t hs = {h, n2 ? 2 : 1, 2};
    return tg_http_preconditions(&hs, TG_STR("\"5f-2a\""), 1700000000);
}

static void test_preconditions(void)
{
    const char *same = "Tue, 14 Nov 2023 22:13:20 GMT", *before = "Mon, 13 Nov 2023 22:13:20 GMT",
               *after = "Wed, 15 Nov 2023 22:13:20 GMT";
    is_int(pre("If-None-Match", "\"5f-2a\"", NULL, NULL), 304, "INM match: 304");
    is_int(pre("If-None-Match", "\"x\"", NULL, NULL), 0, "INM other: 0");
    is_int(pre("If-Modified-Since", same, NULL, NULL), 304, "IMS same: 304");
    is_int(pre("If-Modified-Since", after, NULL, NULL), 304, "IMS later: 304");
    is_int(pre("If-Modified-Since", before, NULL, NULL), 0, "IMS earlier: 0");
    is_int(pre("If-None-Match", "\"x\"", "If-Modified-Since", after), 0, "INM wins over IMS");
    is_int(pre("If-Match", "\"x\"", NULL, NULL), 412, "If-Match other: 412");
    is_int(pre("If-Match", "W/\"5f-2a\"", NULL, NULL), 412, "If-Match weak: 412 (strong compare)");
    is_int(pre("If-Match", "\"5f-2a\"", "If-None-Match", "\"5f-2a\""), 304,
           "If-Match ok, then INM");
    is_int(pre("If-Unmodified-Since", before, NULL, NULL), 412, "IUS earlier");
    is_int(pre("If-Unmodified-Since", same, NULL, NULL), 0, "IUS same: 0");
    is_int(pre("If-Match", "\"5f-2a\"", "If-Unmodified-Since", before), 0,
           "If-Match wins over IUS");
}

int main(void)
{
    test_ranges();
    test_etags();
    test_dates();
    test_preconditions();
    return done_testing();
}
