#include <string.h>
#include <stdio.h>
#include <arpa/inet.h>
#include "proxyproto.h"

static const char v2sig[12] = "\r\n\r\n\0\r\nQUIT\n";

/* "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n", at most 107 bytes */
static int parse_v1(const char *p, size_t len, char *addr, size_t addrsize)
{
    const char *eol = memchr(p, '\n', len < 107 ? len : 107);
    if (eol == NULL)
        return len >= 107 ? -1 : 0;
    if (eol == p || eol[-1] != '\r')
        return -1;
    char line[108];
    size_t n = (size_t)(eol - 1 - p);
    memcpy(line, p, n);
    line[n] = '\0';
    char proto[8], src[64], dst[64];
    unsigned sport, dport;
    if (strncmp(line, "PROXY UNKNOWN", 13) == 0) {
        addr[0] = '\0';
        return (int)(eol - p + 1);
    }
    if (sscanf(line, "PROXY %7s %63s %63s %u %u", proto, src, dst, &sport, &dport) != 5 ||
        sport > 65535 || dport > 65535)
        return -1;
    unsigned char buf[16];
    int fam = strcmp(proto, "TCP4") == 0 ? AF_INET : strcmp(proto, "TCP6") == 0 ? AF_INET6 : 0;
    if (fam == 0 || inet_pton(fam, src, buf) != 1 || inet_pton(fam, dst, buf) != 1 ||
        strlen(src) >= addrsize)
        return -1;
    strcpy(addr, src);
    return (int)(eol - p + 1);
}

static int parse_v2(const unsigned char *p, size_t len, char *addr, size_t addrsize)
{
    if (len < 16)
        return 0;
    size_t body = ((size_t)p[14] << 8) | p[15];
    if (len < 16 + body)
        return 0;
    int ver = p[12] >> 4, cmd = p[12] & 15, fam = p[13] >> 4;
    if (ver != 2 || cmd > 1)
        return -1;
    addr[0] = '\0';
    if (cmd == 0) /* LOCAL: the balancer's own connection (health checks) */
        return (int)(16 + body);
    if (fam == 1 && body >= 12)
        inet_ntop(AF_INET, p + 16, addr, (socklen_t)addrsize);
    else if (fam == 2 && body >= 36)
        inet_ntop(AF_INET6, p + 16, addr, (socklen_t)addrsize);
    else if (fam == 1 || fam == 2)
        return -1;
    return (int)(16 + body);
}

int tg_proxyproto_parse(const char *p, size_t len, char *addr, size_t addrsize)
{
    size_t k = len < 12 ? len : 12;
    if (memcmp(p, v2sig, k) == 0)
        return k < 12 ? 0 : parse_v2((const unsigned char *)p, len, addr, addrsize);
    k = len < 6 ? len : 6;
    if (memcmp(p, "PROXY ", k) != 0)
        return -1;
    return k < 6 ? 0 : parse_v1(p, len, addr, addrsize);
}
