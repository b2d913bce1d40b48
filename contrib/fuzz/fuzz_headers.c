/* libFuzzer target: the small parsers that read client bytes or config
 * tokens, multiplexed by the first input byte (the rest is the input):
 *
 *   0  Accept-Encoding (src/accept_encoding.c), lines split at '\n': the
 *      picked coding is acceptable (effective weight > 0) and no offered
 *      coding has a higher effective weight; identity is picked only when no
 *      coding beats it.
 *   1  qvalues: accepted exactly when the text is 0[.ddd] or 1[.000], and the
 *      value is the text's thousandths.
 *   2  PROXY protocol v1/v2 (src/proxyproto.c): a header never claims more
 *      bytes than given, the address is "" or a valid IPv4/IPv6 address, a
 *      prefix of a header is "need more" (never invalid, never complete), and
 *      trailing bytes do not change the result.
 *   3  CIDR (src/cidr.c): accepted only as ADDRESS[/DIGITS]; the mask is
 *      contiguous, the address has no bit outside it, and the address itself
 *      matches its range.
 *   4  sizes, durations and integers (src/str.c): results are never
 *      negative; a plain number reads as itself (seconds for durations).
 *   5  cookies ($cookie_NAME, src/var.c): a found value lies inside the
 *      header, has no ';', and the name before it is the one asked for. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "accept_encoding.h"
#include "cidr.h"
#include "proxyproto.h"
#include "request.h"
#include "str.h"
#include "var.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static int effective(const tg_accept_encoding_t *ae, int i)
{
    return ae->q[i] >= 0 ? ae->q[i] : ae->any >= 0 ? ae->any : 0;
}

static void fuzz_accept_encoding(const char *p, size_t len)
{
    static const tg_str_t offered[] = {TG_STR("br"), TG_STR("gzip"), TG_STR("zstd")};
    tg_accept_encoding_t ae;
    tg_accept_encoding_init(&ae, offered, 3);
    const char *end = p + len;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        tg_accept_encoding_add(&ae, (tg_str_t){p, (size_t)(e - p)});
        p = e + 1;
    }
    int best = 0;
    for (int i = 0; i < ae.n; i++) {
        CHECK(ae.q[i] >= -1 && ae.q[i] <= 1000);
        if (effective(&ae, i) > best)
            best = effective(&ae, i);
    }
    CHECK(ae.any >= -1 && ae.any <= 1000 && ae.identity >= -1 && ae.identity <= 1000);
    int pick = tg_accept_encoding_pick(&ae);
    CHECK(pick >= -1 && pick < ae.n);
    if (pick >= 0) {
        CHECK(effective(&ae, pick) > 0);
        CHECK(effective(&ae, pick) == best);
        for (int i = 0; i < pick; i++) /* server order breaks ties */
            CHECK(effective(&ae, i) < best);
    } else if (best > 0) {
        /* identity only wins when the client ranks it strictly higher */
        int id = ae.identity >= 0 ? ae.identity : ae.any;
        CHECK(id > best);
    }
}

static void fuzz_qvalue(const char *p, size_t len)
{
    int q = -1;
    int rc = tg_accept_encoding_parse_q((tg_str_t){p, len}, &q);
    int valid = len >= 1 && (p[0] == '0' || p[0] == '1') && len <= 5 && (len == 1 || p[1] == '.');
    int want = 0;
    if (valid) {
        want = (p[0] - '0') * 1000;
        for (size_t i = 2, scale = 100; i < len; i++, scale /= 10) {
            if (p[i] < '0' || p[i] > '9' || (p[0] == '1' && p[i] != '0'))
                valid = 0;
            else
                want += (p[i] - '0') * (int)scale;
        }
    }
    CHECK((rc == 0) == valid);
    if (rc == 0)
        CHECK(q == want && q >= 0 && q <= 1000);
}

static void fuzz_proxyproto(const char *p, size_t len)
{
    char addr[64];
    memset(addr, 'x', sizeof(addr));
    int n = tg_proxyproto_parse(p, len, addr, sizeof(addr));
    CHECK(n >= -1 && (size_t)(n > 0 ? n : 0) <= len);
    if (n <= 0)
        return;
    CHECK(memchr(addr, 0, sizeof(addr)) != NULL);
    unsigned char bin[16];
    CHECK(addr[0] == 0 || inet_pton(AF_INET, addr, bin) == 1 || inet_pton(AF_INET6, addr, bin) == 1);
    char again[64];
    for (size_t k = 0; k < (size_t)n; k += 1 + (size_t)n / 16) /* prefixes: need more */
        CHECK(tg_proxyproto_parse(p, k, again, sizeof(again)) == 0);
    CHECK(tg_proxyproto_parse(p, (size_t)n, again, sizeof(again)) == n);
    CHECK(strcmp(addr, again) == 0);
}

static void fuzz_cidr(const char *p, size_t len)
{
    tg_cidr_t c;
    if (tg_cidr_parse((tg_str_t){p, len}, &c) != 0)
        return;
    CHECK(c.family == AF_INET || c.family == AF_INET6);
    const char *slash = memchr(p, '/', len);
    size_t alen = slash ? (size_t)(slash - p) : len;
    if (slash) {
        CHECK(slash + 1 < p + len);
        for (const char *d = slash + 1; d < p + len; d++)
            CHECK(*d >= '0' && *d <= '9');
    }
    int zero = 0;
    for (int i = 0; i < 16; i++) {
        uint8_t m = c.mask[i];
        CHECK(((uint8_t)~m & (uint8_t)(~m + 1)) == 0); /* ones, then zeros */
        if (zero)
            CHECK(m == 0);
        if (m != 0xff)
            zero = 1;
        CHECK((c.addr[i] & ~m) == 0);
    }
    CHECK(tg_cidr_match_text(&c, 1, (tg_str_t){p, alen}) == 1);
}

static int all_digits(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return len > 0;
}

static void fuzz_numbers(const char *p, size_t len)
{
    tg_str_t s = {p, len};
    int64_t v;
    tg_msec_t ms;
    int plain = all_digits(p, len) && len <= 15;
    int64_t want = 0;
    if (plain) {
        char buf[16];
        memcpy(buf, p, len);
        buf[len] = 0;
        want = strtoll(buf, NULL, 10);
    }
    int rc = tg_parse_int(s, &v);
    CHECK(rc != 0 || v >= 0);
    if (plain)
        CHECK(rc == 0 && v == want);
    rc = tg_parse_size(s, &v);
    CHECK(rc != 0 || v >= 0);
    if (plain)
        CHECK(rc == 0 && v == want);
    rc = tg_parse_msec(s, &ms);
    CHECK(rc != 0 || ms >= 0);
    if (plain)
        CHECK(rc == 0 && ms == want * 1000);
}

static void fuzz_cookie(const char *p, size_t len)
{
    /* input: NAME '\n' COOKIE-HEADER */
    const char *nl = memchr(p, '\n', len);
    if (nl == NULL)
        return;
    tg_str_t name = {p, (size_t)(nl - p)};
    tg_header_t h = {TG_STR("Cookie"), {nl + 1, len - name.len - 1}};
    tg_request_t r;
    memset(&r, 0, sizeof(r));
    r.headers.h = &h;
    r.headers.n = r.headers.cap = 1;
    tg_str_t v;
    if (tg_var_cookie(&r, name, &v) != 0)
        return;
    const char *hend = h.value.p + h.value.len;
    CHECK(v.p >= h.value.p && v.p + v.len <= hend);
    CHECK(v.len == 0 || memchr(v.p, ';', v.len) == NULL);
    /* the name asked for ends right before the value ("name=" or a bare name) */
    const char *k = v.p;
    if (k > h.value.p && k[-1] == '=')
        k--;
    CHECK((size_t)(k - h.value.p) >= name.len);
    CHECK(memcmp(k - name.len, name.p, name.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t len = size - 1;
    /* a copy of exactly len bytes, so ASan sees any read past the end */
    char *copy = malloc(len ? len : 1);
    memcpy(copy, p, len);
    switch (data[0] % 6) {
    case 0: fuzz_accept_encoding(copy, len); break;
    case 1: fuzz_qvalue(copy, len); break;
    case 2: fuzz_proxyproto(copy, len); break;
    case 3: fuzz_cidr(copy, len); break;
    case 4: fuzz_numbers(copy, len); break;
    default: fuzz_cookie(copy, len); break;
    }
    free(copy);
    return 0;
}
