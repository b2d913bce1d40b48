/* @public error_page: the pages a location answers its errors with
 * (src/error_page.c holds the directive; the request layer, src/request.c,
 * does the redirect). nginx's rules: a scope without error_page directives
 * inherits its parent's, one with any has only its own. */
#ifndef TG_ERROR_PAGE_H
#define TG_ERROR_PAGE_H

#include "str.h"
#include "module.h"

typedef struct {
    int status;    /* the status it is for */
    int overwrite; /* -1: answer with `status`; 0 (`=`): the redirected answer's own; else =CODE */
    tg_str_t uri;  /* "/path[?args]", "@name", or a URL: answered with a redirect */
    const char *file; /* where it was set, for errors found later */
    int line;
} tg_error_page_t;

/* The error page for `status` in a location's module configs (r->loc_conf),
 * or NULL. */
const tg_error_page_t *tg_error_page_find(void **mconf, int status);

extern tg_module_t tg_error_page_module;

#endif
