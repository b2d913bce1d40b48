/* What the compress module (modules/compress.c) decides, for the response
 * cache's compressed variants (modules/cache_variant.c). */
#ifndef TG_COMPRESS_H
#define TG_COMPRESS_H

#include "request.h"

/* The coding the compress module would give r's response as it stands now
 * (status, headers, resp_content_length; the request's Accept-Encoding,
 * Range, method), by the location's compress settings: "gzip", "br",
 * "zstd", or NULL when it would not compress it. */
const char *tg_compress_choice(tg_request_t *r);
/* Is the compress module compressing r's response: 1 (*coding set), 0 not
 * decided yet (a body of unknown length, held), -1 no. */
int tg_compress_state(tg_request_t *r, const char **coding);
/* The response header changes of a body compressed with `coding`:
 * Content-Encoding, Vary: Accept-Encoding, a weak ETag, no Content-Length
 * nor Accept-Ranges. 0 or -1. */
int tg_compress_mark(tg_request_t *r, const char *coding);

#endif
