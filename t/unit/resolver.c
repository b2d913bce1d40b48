/* Unit tests for src/resolver.c's pure part: the smallest answer TTL of a
 * DNS message (used for SRV answers, whose parser in c-ares drops TTLs):
 * compressed and plain names, several answers, no answers, truncation at
 * every length. */
#include <string.h>
#include "resolver.h"
#include "tap.h"

/* _http._tcp.x.test SRV with two answers (TTL 300 and 7), the second
 * answer's owner name a compression pointer to the question */
static const unsigned char msg[] = {
    0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0,
    5, '_', 'h', 't', 't', 'p', 4, '_', 't', 'c', 'p', 1, 'x', 4, 't', 'e', 's', 't', 0,
    0, 33, 0, 1,
    /* answer 1: plain name */
    5, '_', 'h', 't', 't', 'p', 4, '_', 't', 'c', 'p', 1, 'x', 4, 't', 'e', 's', 't', 0,
    0, 33, 0, 1, 0, 0, 0x01, 0x2c, 0, 9, 0, 10, 0, 5, 0x0b, 0xb8, 1, 'a', 0,
    /* answer 2: pointer to offset 12 */
    0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 7, 0, 9, 0, 20, 0, 1, 0x0b, 0xb9, 1, 'b', 0,
};

int main(void)
{
    uint32_t ttl = 0;
    ok(tg_resolver_answer_ttl(msg, sizeof(msg), &ttl) == 0, "a good message parses");
    is_int(ttl, 7, "the smallest TTL of the answers");

    unsigned char one[sizeof(msg)];
    memcpy(one, msg, sizeof(msg));
    one[7] = 1; /* one answer: the first only */
    ok(tg_resolver_answer_ttl(one, sizeof(msg), &ttl) == 0 && ttl == 300, "one answer: 300");

    one[7] = 0;
    ok(tg_resolver_answer_ttl(one, sizeof(msg), &ttl) == -1, "no answers: -1");

    int bad = 0;
    for (size_t len = 0; len < sizeof(msg); len++)
        bad += tg_resolver_answer_ttl(msg, (int)len, &ttl) != -1;
    is_int(bad, 0, "every truncation is refused");

    unsigned char loop[sizeof(msg)];
    memcpy(loop, msg, sizeof(msg));
    loop[12] = 0x80; /* a label length with a reserved top bit */
    ok(tg_resolver_answer_ttl(loop, sizeof(msg), &ttl) == -1, "reserved label bits: -1");
    ok(tg_resolver_answer_ttl(NULL, 0, &ttl) == -1, "no message: -1");
    return done_testing();
}
