/* Request-target handling: split origin-form and absolute-form targets, and
 * normalize the path used for routing (percent-decoding, dot segments,
 * duplicate slashes), so `location /admin` cannot be bypassed with
 * `/%61dmin`, `//admin` or `/x/../admin`. Pure functions, unit-tested. */
#ifndef TG_URI_H
#define TG_URI_H

#include "str.h"

typedef struct {
    tg_str_t authority; /* absolute-form only: "host[:port]" */
    tg_str_t path;      /* raw, starts with '/' (or "*") */
    tg_str_t query;     /* without '?' */
} tg_uri_t;

/* Split a request-target. Returns 0, or -1 if it is not origin-form
 * ("/..."), absolute-form ("http://host/...") or "*". */
int tg_uri_split(tg_str_t target, tg_uri_t *out);
/* Decode and normalize `path` into `dst` (at least path.len bytes). Returns the
 * length, or -1 for a bad escape, an encoded NUL or a ".." above the root. */
long tg_uri_normalize(tg_str_t path, char *dst);

/* Percent-encode the bytes of `s` that may not stand as they are in a path:
 * controls, space, DEL, non-ASCII and "#<>\\^`{|}; with `decoded` also '%'
 * and '?' (s is a decoded path whose '%' and '?' are data). Writes to dst
 * (room for 3 * s.len) unless NULL; returns the encoded length. */
size_t tg_uri_escape(char *dst, tg_str_t s, int decoded);

#endif
