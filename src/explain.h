/* `tollgate --explain` (src/explain.c): how a loaded config routes one
 * request, and what would run for it, without starting a server. */
#ifndef TG_EXPLAIN_H
#define TG_EXPLAIN_H

#include <stdio.h>
#include "core.h"

/* Print the explanation of METHOD URL (origin-form "/path" or absolute
 * "http[s]://host[:port]/path") with the given "Name: value" headers and
 * client address (NULL: none) to `out`. Returns 0, or 1 after printing to
 * stderr why the request could not be explained (a bad URL, header,
 * method or address). */
int tg_explain(FILE *out, tg_config_t *c, const char *method, const char *url,
               const char *const *headers, int nheaders, const char *remote);

#endif
