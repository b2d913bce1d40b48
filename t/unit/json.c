/* Unit tests for src/json.c: the JSON string escaper (quotes, backslash,
 * short escapes, control bytes, DEL, C1 controls, U+2028/9, valid UTF-8
 * passed through, every kind of ill-formed UTF-8 replaced once per maximal
 * subpart), cuts that fall between characters, resuming after a cut, the
 * Prometheus label-value escaper, and a property check over random bytes:
 * the output is well-formed UTF-8 with no raw control byte or bare quote. */
#include "json.h"
#include "tap.h"

#include <stdint.h>
#include <string.h>

#define S(lit) ((tg_str_t){(lit), sizeof(lit) - 1}) /* keeps embedded NULs */

static char out[4096];

static const char *esc(tg_str_t in, size_t cap, size_t *used)
{
    size_t n = tg_json_escape(out, cap, in, used);
    out[n] = '\0';
    return out;
}

static void json_is(tg_str_t in, const char *want, const char *name)
{
    size_t used = 99;
    is_str(esc(in, sizeof(out) - 1, &used), want, name);
    ok(used == in.len, "%s: all %zu input bytes used (got %zu)", name, in.len, used);
    is_int((long long)tg_json_escape_len(in), (long long)strlen(want), "escape_len agrees");
}

static void prom_is(tg_str_t in, const char *want, const char *name)
{
    size_t used = 99, n = tg_json_escape_prom(out, sizeof(out) - 1, in, &used);
    out[n] = '\0';
    is_str(out, want, name);
    ok(used == in.len, "%s: all input used", name);
}

/* An independent check of UTF-8 well-formedness (table 3-7 again, written
 * as a state machine rather than a decoder). */
static int utf8_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t len = c < 0x80 ? 1 : c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
        if (len == 0 || i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            unsigned char b = p[i + k];
            unsigned char lo = 0x80, hi = 0xBF;
            if (k == 1 && c == 0xE0) lo = 0xA0;
            if (k == 1 && c == 0xED) hi = 0x9F;
            if (k == 1 && c == 0xF0) lo = 0x90;
            if (k == 1 && c == 0xF4) hi = 0x8F;
            if (b < lo || b > hi) return 0;
        }
        i += len;
    }
    return 1;
}

static void test_json(void)
{
    json_is(S(""), "", "empty");
    json_is((tg_str_t){NULL, 0}, "", "NULL pointer, length 0");
    json_is(S("GET /a?b=c&d=e/f"), "GET /a?b=c&d=e/f", "plain ASCII and '/' unchanged");
    json_is(S("a\"b\\c"), "a\\\"b\\\\c", "quote and backslash");
    json_is(S("\"\\\"\\"), "\\\"\\\\\\\"\\\\", "only quotes and backslashes");
    json_is(S("\b\f\n\r\t"), "\\b\\f\\n\\r\\t", "short escapes");
    json_is(S("\x00"), "\\u0000", "NUL byte");
    json_is(S("a\x00z"), "a\\u0000z", "NUL in the middle");
    json_is(S("\x01\x1b\x1f"), "\\u0001\\u001b\\u001f", "other C0 controls");
    json_is(S("\x7f"), "\\u007f", "DEL");
    json_is(S("\xc2\x80\xc2\x9b\xc2\x9f"), "\\u0080\\u009b\\u009f", "C1 controls (CSI too)");
    json_is(S("\xc2\xa0"), "\xc2\xa0", "U+00A0 passes");
    json_is(S("\xe2\x80\xa8\xe2\x80\xa9"), "\\u2028\\u2029", "U+2028 and U+2029");
    json_is(S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "2, 3 and 4 byte characters pass");
    json_is(S("\xef\xbf\xbd"), "\xef\xbf\xbd", "a real U+FFFD passes as is");
    json_is(S("\xf4\x8f\xbf\xbf"), "\xf4\x8f\xbf\xbf", "U+10FFFF passes");

    /* ill-formed: one U+FFFD per maximal subpart */
    json_is(S("\x80"), "\\ufffd", "lone continuation byte");
    json_is(S("\xbf\x80"), "\\ufffd\\ufffd", "two continuation bytes: two");
    json_is(S("\xc0\xaf"), "\\ufffd\\ufffd", "overlong C0 AF: two");
    json_is(S("\xc1\xbf"), "\\ufffd\\ufffd", "overlong C1 BF: two");
    json_is(S("\xe0\x80\x80"), "\\ufffd\\ufffd\\ufffd", "overlong E0 80 80: three");
    json_is(S("\xe0\x9f\xbf"), "\\ufffd\\ufffd\\ufffd", "overlong E0 9F BF: three");
    json_is(S("\xf0\x8f\xbf\xbf"), "\\ufffd\\ufffd\\ufffd\\ufffd", "overlong 4-byte: four");
    json_is(S("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd", "surrogate D800: three");
    json_is(S("\xf4\x90\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd", "above U+10FFFF: four");
    json_is(S("\xf5\x80"), "\\ufffd\\ufffd", "F5 lead: two");
    json_is(S("\xfe\xff"), "\\ufffd\\ufffd", "FE FF: two");
    json_is(S("\xe2\x82"), "\\ufffd", "3-byte character cut at the end: one");
    json_is(S("\xf0\x9f\x98"), "\\ufffd", "4-byte character cut at the end: one");
    json_is(S("\xe2\x82\x41"), "\\ufffdA", "3-byte character cut by ASCII: one, then the ASCII");
    json_is(S("\xe2\x82\xe2\x82\xac"), "\\ufffd\xe2\x82\xac", "cut character, then a whole one");
    json_is(S("\xc3\""), "\\ufffd\\\"", "lead byte then a quote: the quote is still escaped");
    json_is(S("ua\x80\"x\\y\x01"), "ua\\ufffd\\\"x\\\\y\\u0001", "a mix");
}

static void test_cut(void)
{
    size_t used;
    is_str(esc(S("abcdef"), 3, &used), "abc", "cut ASCII at the cap");
    is_int((long long)used, 3, "... 3 bytes used");
    is_str(esc(S("ab\"c"), 3, &used), "ab", "an escape that does not fit whole is left out");
    is_int((long long)used, 2, "... 2 bytes used");
    is_str(esc(S("\x01"), 5, &used), "", "\\u0001 needs 6 bytes");
    is_int((long long)used, 0, "... nothing used");
    is_str(esc(S("a\xc3\xa9"), 2, &used), "a", "a 2-byte character does not fit in 1");
    is_int((long long)used, 1, "... 1 byte used");
    is_str(esc(S("a\xf0\x9f\x98\x80"), 4, &used), "a", "a 4-byte character does not fit in 3");
    is_str(esc(S("a\x80"), 6, &used), "a", "\\ufffd does not fit in 5");
    is_str(esc(S("abc"), 0, &used), "", "cap 0 writes nothing");
    is_int((long long)used, 0, "... and uses nothing");

    /* resuming where a cut left off gives the same text as one call */
    tg_str_t in = S("x\"\xe2\x82\xac\x01\x80\\y\xf0\x9f\x98\x80\xe2\x80\xa8z");
    char whole[256], parts[256];
    size_t wn = tg_json_escape(whole, sizeof(whole), in, NULL), pn = 0;
    for (size_t cap = 6; cap <= 8; cap++) {
        tg_str_t rest = in;
        pn = 0;
        while (rest.len) {
            size_t n = tg_json_escape(parts + pn, cap, rest, &used);
            if (used == 0) break;
            pn += n;
            rest.p += used;
            rest.len -= used;
        }
        ok(rest.len == 0 && pn == wn && memcmp(parts, whole, wn) == 0,
           "chunks of %zu bytes join to the whole escape", cap);
    }
}

static void test_prom(void)
{
    prom_is(S("api"), "api", "plain");
    prom_is(S("a\\b\"c\nd"), "a\\\\b\\\"c\\nd", "backslash, quote and line feed");
    prom_is(S("t\tr\r\x01/"), "t\tr\r\x01/", "nothing else escaped (tab, CR, controls, slash)");
    prom_is(S("caf\xc3\xa9"), "caf\xc3\xa9", "UTF-8 passes");
    prom_is(S("x\x80y\xe2\x82"), "x\xef\xbf\xbdy\xef\xbf\xbd", "ill-formed bytes: U+FFFD as UTF-8");
    size_t used, n = tg_json_escape_prom(out, 2, S("a\"b"), &used);
    ok(n == 1 && used == 1, "prom: \\\" does not fit in 1 byte: cut before it");
}

static void test_random(void)
{
    uint64_t x = 88172645463325252ull;
    int bad_utf8 = 0, bad_ctl = 0, bad_quote = 0, bad_len = 0;
    unsigned char in[64];
    char o[64 * TG_JSON_ESCAPE_MAX];
    for (int round = 0; round < 20000; round++) {
        size_t len = round % 64;
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* bias toward the interesting bytes */
            static const unsigned char hot[] = {'"', '\\', 0x80, 0xc3, 0xe2, 0xf0, 0x00, 'a'};
            in[i] = (x & 3) ? (unsigned char)(x >> 8) : hot[(x >> 8) & 7];
        }
        tg_str_t s = {(const char *)in, len};
        size_t used, n = tg_json_escape(o, sizeof(o), s, &used);
        bad_len += used != len || n != tg_json_escape_len(s) || n > len * TG_JSON_ESCAPE_MAX;
        bad_utf8 += !utf8_ok((const unsigned char *)o, n);
        for (size_t i = 0; i < n; i++) {
            bad_ctl += (unsigned char)o[i] < 0x20 || o[i] == 0x7f;
            if (o[i] == '"') {
                size_t k = 0; /* backslashes before it: must be odd */
                while (k < i && o[i - 1 - k] == '\\')
                    k++;
                bad_quote += k % 2 == 0;
            }
        }
        n = tg_json_escape_prom(o, sizeof(o), s, &used);
        bad_utf8 += !utf8_ok((const unsigned char *)o, n);
        for (size_t i = 0; i < n; i++)
            bad_ctl += o[i] == '\n';
    }
    is_int(bad_len, 0, "random: every byte used, escape_len exact, at most 6 bytes a byte");
    is_int(bad_utf8, 0, "random: output always well-formed UTF-8");
    is_int(bad_ctl, 0, "random: no raw control byte (JSON) or line feed (prom)");
    is_int(bad_quote, 0, "random: every quote escaped");
}

int main(void)
{
    test_json();
    test_cut();
    test_prom();
    test_random();
    return done_testing();
}
