/* Socket addresses from config text (src/addr.c). */
#ifndef TG_ADDR_H
#define TG_ADDR_H

#include <sys/socket.h>
#include "str.h"

/* "host:port", "[v6]:port" or a bare port (all interfaces) to a socket
 * address, resolved now; without a port, `default_port` when > 0. Returns 0
 * or -1. */
int tg_parse_addr(tg_str_t s, struct sockaddr_storage *ss, socklen_t *len, int default_port);

#endif
