/* @public Accept-Encoding negotiation (RFC 9110 section 12.5.3), pure and allocation
 * free so it can be unit-tested on its own (t/unit/accept_encoding.c).
 *
 * The server offers an ordered list of content codings (its preference order,
 * e.g. "br", "gzip", "zstd"); the client's Accept-Encoding field lines are
 * added one by one; tg_accept_encoding_pick() then names the coding to use:
 *
 * - weights: `q=` from 0 to 1 with at most three decimals; a missing weight
 *   is 1; `q=0` means "not acceptable". An element with a malformed weight is
 *   ignored as a whole; other parameters are ignored.
 * - a coding named in the field gets its own weight; one not named gets the
 *   weight of `*`, or is not acceptable when there is no `*`.
 * - coding names are case-insensitive; `x-gzip` is `gzip`. A name given twice
 *   keeps its highest weight.
 * - identity: its own weight when named, else that of `*`, else the lowest
 *   positive weight, so any acceptable coding beats it unless the client
 *   ranks identity higher (`gzip;q=0.5, identity`).
 * - the highest weight wins; between equal weights the server's order
 *   decides, and a coding wins over identity.
 * - no field at all, or an empty one: identity (browsers always send one;
 *   tools that send none expect plain bytes). */
#ifndef TG_ACCEPT_ENCODING_H
#define TG_ACCEPT_ENCODING_H

#include <stdint.h>
#include "str.h"

#define TG_ACCEPT_ENCODING_MAX 8 /* codings a server may offer */

typedef struct {
    int n;                               /* offered codings */
    tg_str_t offered[TG_ACCEPT_ENCODING_MAX]; /* lowercase names, server order */
    int16_t q[TG_ACCEPT_ENCODING_MAX];   /* weight 0..1000 given to each; -1: not named */
    int16_t identity;                    /* weight of identity; -1: not named */
    int16_t any;                         /* weight of "*"; -1: not named */
} tg_accept_encoding_t;

/* Start a negotiation for `n` offered codings (lowercase names; the array is
 * copied, the strings are not). n is capped at TG_ACCEPT_ENCODING_MAX. */
void tg_accept_encoding_init(tg_accept_encoding_t *ae, const tg_str_t *offered, int n);
/* Add one Accept-Encoding field value (a request may carry several lines). */
void tg_accept_encoding_add(tg_accept_encoding_t *ae, tg_str_t value);
/* The index of the offered coding to use, or -1 for identity (also when
 * nothing at all is acceptable: sending identity beats a 406). */
int tg_accept_encoding_pick(const tg_accept_encoding_t *ae);

/* Parse a qvalue ("0", "0.5", "1.000") into 0..1000. Returns 0 or -1. */
int tg_accept_encoding_parse_q(tg_str_t s, int *out);

#endif
