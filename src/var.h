/* @public Variables and templates. A template is a config string such as
 * "$remote_addr$http_x_api_key" or "Bearer $cookie_token", compiled once at
 * config time into literal and variable parts; evaluating it for a request
 * writes into the request arena. Variables come from the core table in var.c
 * and from each module's `variables` table (module.h). */
#ifndef TG_VAR_H
#define TG_VAR_H

#include <pcre2.h>
#include "str.h"
#include "conf.h"
#include "module.h"

typedef struct {
    const tg_var_def_t *var; /* NULL: literal part */
    tg_str_t text;           /* literal, or the variable's argument (http_NAME -> "NAME") */
} tg_tpl_part_t;

struct tg_tpl_s {
    tg_tpl_part_t *parts;
    int nparts;
    tg_str_t src; /* as written */
};

/* Compile `src`; on error returns NULL and sets *err (arena message naming the
 * unknown variable). Templates without variables are allowed. */
typedef struct tg_tpl_s tg_tpl_t;

tg_tpl_t *tg_tpl_compile(tg_conf_t *cf, tg_str_t src, const char **err);
/* The same for a template used after a match of `re` (rewrite, map): $1..$9
 * are its captures (as in any template: the request's last match), and
 * `$name` (or `${name}`) of a named group `(?<name>...)` is that capture. */
tg_tpl_t *tg_tpl_compile_captures(tg_conf_t *cf, tg_str_t src, const pcre2_code *re,
                                  const char **err);
/* Evaluate into r->arena (a template with no variables costs no copy).
 * Returns 0 or -1 (out of memory). Unset variables are empty. */
int tg_tpl_eval(tg_request_t *r, const tg_tpl_t *t, tg_str_t *out);
static inline int tg_tpl_has_vars(const tg_tpl_t *t)
{
    return !(t->nparts == 0 || (t->nparts == 1 && t->parts[0].var == NULL));
}

/* Define a variable in the config being loaded (map): `name` without '$'.
 * Templates compiled after this see it. Its getter gets as `arg` the very
 * `name` given here (same pointer, which the definer keeps in the config
 * arena), so it can find its own data from it. 0; -1 when a variable of that
 * name exists; -2 out of memory. */
int tg_var_define(tg_conf_t *cf, tg_str_t name,
                  int (*get)(tg_request_t *r, tg_str_t arg, tg_str_t *out));

/* A variable by name at run time ("remote_addr", "http_x_api_key"; no '$'),
 * for Lua's tg.var. 0 and *out set, -1 when unset, -2 when no such variable.
 * A linear search of the variable tables: meant for scripts, not hot loops. */
int tg_var_get(tg_request_t *r, tg_str_t name, tg_str_t *out);

/* $upstream_status: the status of every upstream attempt, comma-separated
 * ("502, 200" after a retry); the error status (502, 504) stands for an
 * attempt that got no response. -1 when no upstream was tried. */
int tg_var_upstream_status(tg_request_t *r, tg_str_t *out);
/* $remote_user: the user name of the request's Basic credentials (decoded
 * into the arena); -1 when there are none. */
int tg_var_remote_user(tg_request_t *r, tg_str_t *out);
/* $tls_protocol ("TLSv1.3"): -1 when the client connection is plain. */
int tg_var_tls_protocol(tg_request_t *r, tg_str_t *out);

/* Value of a header/cookie/query argument, used by variables and Lua. */
int tg_var_cookie(tg_request_t *r, tg_str_t name, tg_str_t *out);
int tg_var_arg(tg_request_t *r, tg_str_t name, tg_str_t *out);

#endif
