/* @public HTTP representation metadata and preconditions (RFC 9110 13 and
 * 14), for handlers that answer from a representation they know (the static
 * file handler; a cache would too): HTTP dates, entity-tag lists, byte-range
 * sets and the evaluation order of the conditional headers. Pure functions
 * of their arguments (t/unit/http_cond.c). */
#ifndef TG_HTTP_COND_H
#define TG_HTTP_COND_H

#include <stdint.h>
#include <time.h>
#include "str.h"
#include "request.h"

typedef struct {
    int64_t start, end; /* inclusive */
} tg_http_range_t;

/* IMF-fixdate, RFC 850 and asctime dates (RFC 9110 5.6.7); -1: none. */
time_t tg_http_date_parse(tg_str_t v);
/* Does a list of entity tags (If-Match, If-None-Match) hold `etag`? Weak
 * comparison ignores W/ (If-None-Match), strong refuses weak tags. */
int tg_http_etag_listed(tg_str_t list, tg_str_t etag, int weak);
/* "bytes=a-b,c-,-n" against a representation of `len` bytes, into out (room
 * for `max`). Returns the number of satisfiable ranges (sorted, overlapping
 * and adjacent ones merged), 0 when none is satisfiable (416), -1 when the
 * header is not a valid byte-range set or has more than `max` ranges (to be
 * ignored: the whole representation, RFC 9110 14.2). */
int tg_http_ranges_parse(tg_str_t v, int64_t len, tg_http_range_t *out, int max);
/* The request's preconditions against the representation's strong `etag`
 * and `mtime` (RFC 9110 13.2.2): 412 (If-Match, else If-Unmodified-Since,
 * fails), 304 (If-None-Match matches, else If-Modified-Since is not older
 * than the file), else 0. */
int tg_http_preconditions(tg_headers_t *h, tg_str_t etag, time_t mtime);

#endif
