/* Cache-Control parsing: the directives a shared cache acts on, and bytes
 * that are not Cache-Control at all (never read past the value). */
#include <stdlib.h>
#include "tap.h"
#include "cache_control.h"

static tg_cache_control_t parse(const char *s)
{
    tg_cache_control_t cc;
    tg_cache_control_init(&cc);
    tg_cache_control_parse(&cc, tg_str_c(s));
    return cc;
}

int main(void)
{
    tg_cache_control_t cc = parse("max-age=60, s-maxage=30");
    is_int(cc.max_age, 60, "max-age");
    is_int(cc.s_maxage, 30, "s-maxage");
    is_int(cc.flags, 0, "no flags");
    cc = parse("no-store");
    ok(cc.flags & TG_CC_F_NO_STORE, "no-store");
    cc = parse("Private, MUST-REVALIDATE,proxy-revalidate , public");
    ok(cc.flags & TG_CC_F_PRIVATE, "private, case-insensitive");
    ok(cc.flags & TG_CC_F_MUST_REVALIDATE, "must-revalidate");
    ok(cc.flags & TG_CC_F_PROXY_REVALIDATE, "proxy-revalidate after a comma without space");
    ok(cc.flags & TG_CC_F_PUBLIC, "public after a space before the comma");
    cc = parse("no-cache=\"Set-Cookie, X\", max-age=5");
    ok(cc.flags & TG_CC_F_NO_CACHE, "qualified no-cache taken as no-cache");
    is_int(cc.max_age, 5, "a comma inside quotes does not split");
    cc = parse("max-age=\"7\"");
    is_int(cc.max_age, 7, "quoted max-age");
    cc = parse("max-age=abc");
    is_int(cc.max_age, -1, "max-age not a number: absent");
    cc = parse("max-age=");
    is_int(cc.max_age, -1, "max-age empty: absent");
    cc = parse("max-age=99999999999999999999999");
    is_int(cc.max_age, TG_CC_MAX_SECONDS, "max-age saturates");
    cc = parse("max-age=10, max-age=3");
    is_int(cc.max_age, 3, "duplicate max-age: the smallest");
    cc = parse("stale-while-revalidate=30, stale-if-error=600");
    is_int(cc.stale_while_revalidate, 30, "stale-while-revalidate");
    is_int(cc.stale_if_error, 600, "stale-if-error");
    cc = parse("max-stale, min-fresh=4, only-if-cached");
    is_int(cc.max_stale, INT32_MAX, "max-stale without value");
    is_int(cc.min_fresh, 4, "min-fresh");
    ok(cc.flags & TG_CC_F_ONLY_IF_CACHED, "only-if-cached");
    cc = parse("max-age-x=5, x-max-age=4, nostore");
    ok(cc.max_age == -1 && cc.flags == 0, "names are matched whole");
    cc = parse("max-age = 12");
    is_int(cc.max_age, 12, "spaces around =");
    cc = parse("max-age=12 junk, no-store");
    ok(cc.max_age == 12 && (cc.flags & TG_CC_F_NO_STORE), "junk after a value skipped");
    cc = parse("\"unterminated, max-age=1");
    ok(1, "unterminated quote at the start parsed");
    cc = parse("max-age=\"1");
    is_int(cc.max_age, 1, "unterminated quoted value");
    cc = parse("max-age=\"\\");
    ok(1, "backslash at the end of a quoted value");

    /* random bytes: the parser reads only [p, p + len) (ASan checks the
     * copies, each exactly its length on the heap) */
    srand(23);
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(rand() % 64);
        char *b = malloc(n ? n : 1);
        static const char alpha[] = "max-age=s\"\\, \t=0123456789no-storeprivate";
        for (size_t j = 0; j < n; j++)
            b[j] = (rand() & 1) ? (char)rand() : alpha[rand() % (sizeof(alpha) - 1)];
        tg_cache_control_t f;
        tg_cache_control_init(&f);
        tg_cache_control_parse(&f, (tg_str_t){b, n});
        free(b);
        if (f.max_age < -1 || f.max_age > TG_CC_MAX_SECONDS) {
            ok(0, "fuzz: max-age in range");
            break;
        }
    }
    ok(1, "20000 random values parsed");
    return done_testing();
}
