#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include "cidr.h"

int tg_cidr_parse(tg_str_t s, tg_cidr_t *out)
{
    char buf[64];
    /* a NUL would end the text inet_pton sees: "10.0.0.1\0junk" is no address */
    if (s.len == 0 || s.len >= sizeof(buf) || memchr(s.p, '\0', s.len))
        return -1;
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        /* digits only: strtol would also take " 8", "+8" or "-0" */
        size_t nd = strspn(slash + 1, "0123456789");
        if (nd == 0 || nd > 3 || slash[1 + nd] != '\0')
            return -1;
        *slash = '\0';
        bits = strtol(slash + 1, NULL, 10);
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        if (bits < 0)
            bits = 32;
        if (bits > 32)
            return -1;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        if (bits < 0)
            bits = 128;
        if (bits > 128)
            return -1;
    } else {
        return -1;
    }
    for (int i = 0; i < 16; i++) {
        int b = bits > 8 * i + 8 ? 8 : bits > 8 * i ? (int)bits - 8 * i : 0;
        out->mask[i] = (uint8_t)(0xff00 >> b);
        out->addr[i] &= out->mask[i];
    }
    return 0;
}

static int match(const tg_cidr_t *list, int n, int family, const uint8_t *a)
{
    for (int i = 0; i < n; i++) {
        if (list[i].family != family)
            continue;
        int len = family == AF_INET ? 4 : 16, k;
        for (k = 0; k < len; k++)
            if ((a[k] & list[i].mask[k]) != list[i].addr[k])
                break;
        if (k == len)
            return 1;
    }
    return 0;
}

int tg_cidr_match_sa(const tg_cidr_t *list, int n, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return match(list, n, AF_INET, (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6))
            return match(list, n, AF_INET, a6->s6_addr + 12);
        return match(list, n, AF_INET6, a6->s6_addr);
    }
    return 0;
}

int tg_cidr_match_text(const tg_cidr_t *list, int n, tg_str_t text)
{
    char buf[64];
    uint8_t a[16];
    if (text.len == 0 || text.len >= sizeof(buf) || memchr(text.p, '\0', text.len))
        return 0;
    memcpy(buf, text.p, text.len);
    buf[text.len] = '\0';
    if (inet_pton(AF_INET, buf, a) == 1)
        return match(list, n, AF_INET, a);
    if (inet_pton(AF_INET6, buf, a) == 1)
        return match(list, n, AF_INET6, a);
    return 0;
}
