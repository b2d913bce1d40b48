/* Socket addresses from config text ("host:port", "[v6]:port", a bare port),
 * resolved at config load (getaddrinfo may block: never called by a
 * worker). Used by `listen` and upstream `server` lines. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"

int tg_parse_addr(tg_str_t s, struct sockaddr_storage *ss, socklen_t *len, int default_port)
{
    char host[256], port[16];
    const char *p = s.p, *end = s.p + s.len, *colon = NULL;
    if (s.len == 0 || s.len >= sizeof(host))
        return -1;
    if (*p == '[') {
        const char *rb = memchr(p, ']', s.len);
        if (rb == NULL)
            return -1;
        memcpy(host, p + 1, (size_t)(rb - p - 1));
        host[rb - p - 1] = '\0';
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (colon == NULL && rb + 1 != end)
            return -1;
    } else {
        colon = memchr(p, ':', s.len);
        size_t hl = colon ? (size_t)(colon - p) : s.len;
        /* a bare number is a port on all interfaces (listen 8080) */
        int digits = 1;
        for (size_t i = 0; i < s.len; i++)
            digits &= s.p[i] >= '0' && s.p[i] <= '9';
        if (digits) {
            snprintf(host, sizeof(host), "0.0.0.0");
            colon = p - 1;
        } else {
            memcpy(host, p, hl);
            host[hl] = '\0';
        }
    }
    if (colon) {
        size_t pl = (size_t)(end - colon - 1);
        if (pl == 0 || pl >= sizeof(port))
            return -1;
        memcpy(port, colon + 1, pl);
        port[pl] = '\0';
        for (size_t i = 0; i < pl; i++)
            if (port[i] < '0' || port[i] > '9')
                return -1;
        long pn = strtol(port, NULL, 10);
        if (pn < 1 || pn > 65535)
            return -1;
    } else if (default_port > 0) {
        snprintf(port, sizeof(port), "%d", default_port);
    } else {
        return -1;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}
