/* Unit tests for src/accept_encoding.c: qvalues, q=0, "*", identity, case,
 * whitespace, x-gzip, malformed elements, several field lines, and the
 * choice by weight then by the server's order. */
#include "accept_encoding.h"
#include "tap.h"

/* What a server offering `offer` (space-separated) picks for the field
 * lines `lines` ("|" separates lines; NULL: no field). Returns the coding's
 * name or "identity". */
static const char *pick(const char *offer, const char *lines)
{
    static char names[64];
    tg_str_t offered[TG_ACCEPT_ENCODING_MAX];
    int n = 0;
    snprintf(names, sizeof(names), "%s", offer);
    for (char *p = names; *p && n < TG_ACCEPT_ENCODING_MAX;) {
        char *e = strchr(p, ' ');
        if (e)
            *e = '\0';
        offered[n++] = tg_str_c(p);
        p = e ? e + 1 : p + strlen(p);
    }
    tg_accept_encoding_t ae;
    tg_accept_encoding_init(&ae, offered, n);
    while (lines) {
        const char *bar = strchr(lines, '|');
        tg_accept_encoding_add(&ae, (tg_str_t){lines, bar ? (size_t)(bar - lines) : strlen(lines)});
        lines = bar ? bar + 1 : NULL;
    }
    int i = tg_accept_encoding_pick(&ae);
    return i < 0 ? "identity" : offered[i].p;
}

#define PICK(offer, field, want)                                                                   \
    is_str(pick(offer, field), want, "[" offer "] " #field " -> " want)

static void test_q(const char *in, int rc_want, int want)
{
    int v = -7;
    int rc = tg_accept_encoding_parse_q(tg_str_c(in), &v);
    ok(rc == rc_want && (rc != 0 || v == want), "q \"%s\" -> rc %d value %d (got %d, %d)", in,
       rc_want, want, rc, v);
}

int main(void)
{
    /* qvalue syntax */
    test_q("1", 0, 1000);
    test_q("1.", 0, 1000);
    test_q("1.000", 0, 1000);
    test_q("0", 0, 0);
    test_q("0.5", 0, 500);
    test_q("0.05", 0, 50);
    test_q("0.001", 0, 1);
    test_q("0.999", 0, 999);
    test_q("1.001", -1, 0);
    test_q("2", -1, 0);
    test_q(".5", -1, 0);
    test_q("0.1234", -1, 0);
    test_q("0,5", -1, 0);
    test_q("", -1, 0);
    test_q("-0", -1, 0);
    test_q("0.5x", -1, 0);

    /* no field, empty field: identity */
    PICK("gzip br zstd", NULL, "identity");
    PICK("gzip br zstd", "", "identity");
    PICK("gzip br zstd", "  ,  ,", "identity");

    /* plain lists: the server's order decides among equals */
    PICK("gzip br zstd", "gzip", "gzip");
    PICK("gzip br zstd", "br", "br");
    PICK("gzip br zstd", "gzip, deflate, br, zstd", "gzip");
    PICK("br gzip zstd", "gzip, deflate, br, zstd", "br");
    PICK("zstd br gzip", "gzip, deflate, br, zstd", "zstd");
    PICK("gzip br zstd", "deflate", "identity");
    PICK("br", "gzip", "identity");

    /* weights first, then the server's order */
    PICK("gzip br zstd", "gzip;q=0.5, br;q=0.8", "br");
    PICK("br gzip", "gzip;q=1.0, br;q=0.9", "gzip");
    PICK("br gzip", "gzip;q=0.9, br;q=0.9", "br");
    PICK("gzip br zstd", "zstd;q=0.1, gzip;q=0.05", "zstd");
    PICK("gzip br zstd", "gzip;q=0.5", "gzip");

    /* q=0 excludes */
    PICK("gzip br zstd", "gzip;q=0", "identity");
    PICK("gzip br zstd", "gzip;q=0, br", "br");
    PICK("gzip br zstd", "gzip;q=0.000", "identity");
    PICK("gzip br", "br;q=0, gzip;q=0.001", "gzip");

    /* "*" */
    PICK("gzip br zstd", "*", "gzip");
    PICK("br gzip zstd", "*", "br");
    PICK("gzip br zstd", "*;q=0", "identity");
    PICK("gzip br zstd", "gzip;q=0, *", "br");
    PICK("gzip br zstd", "*;q=0.5, zstd", "zstd");
    PICK("gzip br zstd", "br;q=0.1, *;q=0.5", "gzip");
    PICK("gzip br zstd", "*;q=0, br", "br");

    /* identity */
    PICK("gzip br zstd", "identity", "identity");
    PICK("gzip br zstd", "identity;q=0", "identity"); /* nothing acceptable: still identity */
    PICK("gzip br zstd", "gzip, identity;q=0", "gzip");
    PICK("gzip br zstd", "gzip;q=0.5, identity", "identity");
    PICK("gzip br zstd", "gzip;q=0.5, identity;q=0.5", "gzip");
    PICK("gzip br zstd", "gzip, identity;q=0.5", "gzip");
    PICK("gzip br zstd", "br;q=0.3, *;q=0.4", "gzip"); /* "*" gives identity 0.4 too: tie */
    PICK("gzip", "gzip;q=0.2, *;q=0.4", "identity");

    /* case, whitespace, aliases */
    PICK("gzip br zstd", "GZIP", "gzip");
    PICK("gzip br zstd", "Br;Q=1", "br");
    PICK("gzip br zstd", "  gzip ;  q=0.5 ,\tbr ; q=0.6  ", "br");
    PICK("gzip br zstd", "gzip;q = 0.7, br;q=0.6", "gzip");
    PICK("gzip br zstd", "x-gzip", "gzip");
    PICK("gzip br zstd", "X-GZIP;q=0.4, br;q=0.3", "gzip");
    PICK("gzip br zstd", "gzip,br", "gzip");
    PICK("gzip br zstd", ",,gzip,,", "gzip");

    /* malformed elements are skipped, the rest counts */
    PICK("gzip br zstd", "gzip;q=2, br", "br");
    PICK("gzip br zstd", "gzip;q=abc", "identity");
    PICK("gzip br zstd", "gzip;q=, br;q=0.1", "br");
    PICK("gzip br zstd", "gzip;q", "identity");
    PICK("gzip br zstd", "gz ip, zstd", "zstd");
    PICK("gzip br zstd", "gzip;level=9, br;q=0.5", "gzip");
    PICK("gzip br zstd", "gzip;foo=\"a,b;q=0\", br;q=0.5", "gzip");
    PICK("gzip br zstd", "gzip;foo=\"a,b\" x, br;q=0.5", "br");
    PICK("gzip br zstd", "gzip;foo=\"unterminated, br", "identity");
    PICK("gzip br zstd", "@@@, br", "br");
    PICK("gzip br zstd", "br;q=0.5;q=0", "identity"); /* the last weight given counts */

    /* the same coding twice keeps its highest weight */
    PICK("gzip br", "gzip;q=0.1, br;q=0.5, gzip;q=0.9", "gzip");

    /* several field lines */
    PICK("gzip br zstd", "gzip;q=0.5|br", "br");
    PICK("gzip br zstd", "identity|gzip;q=0.4", "identity");
    PICK("gzip br zstd", "|zstd", "zstd");

    /* prefixes are not names */
    PICK("gzip br zstd", "gzipx, brr", "identity");
    PICK("br", "b", "identity");

    /* more offered codings than the limit are cut, not overrun */
    PICK("a b c d e f g h gzip", "gzip", "identity");
    return done_testing();
}
