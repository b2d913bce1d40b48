/* @public Cache-Control (RFC 9111 5.2) and the RFC 5861 extensions, parsed
 * for a shared cache: the directives it acts on as flags and numbers. The
 * parser takes any bytes (several header lines are fed one after another
 * into the same struct): unknown directives and malformed values are
 * skipped, numbers saturate, nothing is allocated. */
#ifndef TG_CACHE_CONTROL_H
#define TG_CACHE_CONTROL_H

#include <stdint.h>
#include "str.h"

#define TG_CC_F_NO_STORE 0x0001
#define TG_CC_F_NO_CACHE 0x0002 /* unqualified no-cache: store, revalidate every use */
#define TG_CC_F_PRIVATE 0x0004  /* unqualified private: a shared cache must not store */
#define TG_CC_F_PUBLIC 0x0008
#define TG_CC_F_MUST_REVALIDATE 0x0010
#define TG_CC_F_PROXY_REVALIDATE 0x0020
#define TG_CC_F_NO_TRANSFORM 0x0040
#define TG_CC_F_ONLY_IF_CACHED 0x0080 /* request directive */

/* Seconds; -1 when the directive is absent (or its value was not a number). */
typedef struct {
    unsigned flags;
    int64_t max_age, s_maxage;
    int64_t stale_while_revalidate, stale_if_error;
    int64_t min_fresh, max_stale; /* request directives; max_stale without value: INT32_MAX */
} tg_cache_control_t;

#define TG_CC_MAX_SECONDS 2147483648LL /* RFC 9111 1.2.2: delta-seconds saturate here */

void tg_cache_control_init(tg_cache_control_t *cc);
/* Add the directives of one Cache-Control field value to `cc`. */
void tg_cache_control_parse(tg_cache_control_t *cc, tg_str_t value);

#endif
