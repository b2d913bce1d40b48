/* @public Address ranges ("10.0.0.0/8", "::1", "2001:db8::/32") for real_ip_from,
 * rate_limit_allow and the like. */
#ifndef TG_CIDR_H
#define TG_CIDR_H

#include <stdint.h>
#include <sys/socket.h>
#include "str.h"

typedef struct {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16], mask[16];
} tg_cidr_t;

/* Parse; a bare address is a /32 (or /128). Returns 0 or -1. */
int tg_cidr_parse(tg_str_t s, tg_cidr_t *out);
/* Is the address (IPv4-mapped IPv6 counts as IPv4) in one of the ranges? */
int tg_cidr_match_sa(const tg_cidr_t *list, int n, const struct sockaddr *sa);
/* Same for an address in text form; 0 when it is not an address. */
int tg_cidr_match_text(const tg_cidr_t *list, int n, tg_str_t text);

#endif
