/* @public The config language: an nginx-style lexer and block parser, the directive
 * table format every module uses, and the stock setters.
 *
 * Parsing walks the file once. Each statement is a list of words ended by
 * ';' or by a '{' that opens a block. The parser looks the first word up in
 * the directive tables of all modules (src/modules.c order), checks the scope
 * and argument count, and calls the directive's set(). A block directive's
 * set() makes the new scope current and calls tg_conf_parse_block(). Errors
 * never stop the parse: each is printed as `file:line: message` and counted,
 * so one run reports every error in the file. */
#ifndef TG_CONF_H
#define TG_CONF_H

#include <stdint.h>
#include "str.h"
#include "arena.h"

/* Scopes a directive may appear in (bit set). */
#define TG_SCOPE_MAIN 0x01
#define TG_SCOPE_SERVER 0x02
#define TG_SCOPE_LOCATION 0x04
#define TG_SCOPE_UPSTREAM 0x08
#define TG_SCOPE_APP 0x10 /* inside `app NAME { }`, with TG_SCOPE_UPSTREAM (src/app_conf.c) */
#define TG_SCOPE_HTTP (TG_SCOPE_MAIN | TG_SCOPE_SERVER | TG_SCOPE_LOCATION)

/* Directive flags. */
#define TG_CONF_F_BLOCK 0x01 /* takes a { ... } body */

#define TG_CONF_UNSET (-1)
#define TG_CONF_MAX_ARGS 64
#define TG_CONF_MAX_INCLUDE_DEPTH 16

typedef struct tg_conf_s tg_conf_t;
typedef struct tg_config_s tg_config_t;

typedef struct tg_directive_s {
    const char *name;
    unsigned scopes;        /* TG_SCOPE_* bits */
    unsigned flags;         /* TG_CONF_F_* */
    int min_args, max_args; /* counted without the name; max -1 = unlimited */
    /* Returns NULL on success, else an error message (static, or from
     * tg_conf_errf). `conf` is the owning module's config for the current
     * scope (NULL for modules without create_conf); in an upstream block (and
     * an app block, which is one too) it is cf->ctx. A set() that reported
     * its own errors with tg_conf_error returns NULL (the count already
     * fails the parse). When a block directive's set() fails without
     * calling tg_conf_parse_block, the parser skips the block body. cf->args are overwritten by statements
     * inside a block, so read them before tg_conf_parse_block. */
    const char *(*set)(tg_conf_t *cf, const struct tg_directive_s *d, void *conf);
    size_t offset; /* field written by the stock setters */
} tg_directive_t;

typedef struct {
    tg_str_t text; /* unescaped, NUL-terminated copy in cf->arena: may be kept */
    int quoted; /* 1 when it came from "..." or '...' (so `;` or `{` inside is text) */
} tg_conf_arg_t;

struct tg_conf_s {
    tg_arena_t *arena;   /* config-lifetime memory */
    tg_config_t *config; /* what is being built */
    const char *file;    /* file of the current statement (arena string) */
    int line;            /* line of the current statement's first word */
    tg_conf_arg_t args[TG_CONF_MAX_ARGS + 1]; /* args[0] is the directive name */
    int nargs;                                /* not counting the name */
    unsigned scope;                           /* TG_SCOPE_* of the current block */
    void *ctx;     /* scope owner: tg_server_t*, tg_location_t*, tg_upstream_t* or NULL */
    void **mconf;  /* per-module configs of the current scope, by module index */
    int nerrors;   /* errors reported so far */
    int nwarnings; /* warnings reported so far */
    /* The directive `name` allowed in cf->scope, and the index of the module
     * whose config it sets (*mindex), or NULL; *known says whether any module
     * has a directive of that name. Set by whoever owns the module list (the
     * core, src/core.c), so the parser does not depend on it. */
    const tg_directive_t *(*find_directive)(tg_conf_t *cf, const char *name, int *mindex,
                                            int *known);
    /* Lexer state (private to conf.c). */
    struct tg_conf_src_s *src;
    int depth;
};

/* Parse the main file into cf->config. Returns 0, or -1 when any error was
 * reported (all of them are printed to stderr as `file:line: msg`), or -2
 * when the file could not be read (printed as `tollgate: cannot open config
 * file "PATH": reason`; there is nothing else to check). */
int tg_conf_parse_file(tg_conf_t *cf, const char *path);
/* Inside a block directive's set(): parse statements until the matching '}'.
 * The caller has set cf->scope/ctx/mconf for the block and restores them
 * after. Returns 0 or -1 (errors are already reported). */
int tg_conf_parse_block(tg_conf_t *cf);

/* Report an error/warning at the current statement: "file:line: msg". */
void tg_conf_error(tg_conf_t *cf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_conf_warn(tg_conf_t *cf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Format a message into the config arena, for set() to return. */
const char *tg_conf_errf(tg_conf_t *cf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Argument i (1-based) as a string; args[0] is the directive name. */
static inline tg_str_t tg_conf_arg(tg_conf_t *cf, int i)
{
    return cf->args[i].text;
}
/* Split "key=value"; returns 1 and fills *val when arg i starts with key=. */
int tg_conf_arg_kv(tg_conf_t *cf, int i, const char *key, tg_str_t *val);
/* Resolve a path from the config: absolute stays, relative is taken against
 * the prefix (the working directory at start, or -p). Arena string. */
const char *tg_conf_path(tg_conf_t *cf, tg_str_t path);
extern const char *tg_conf_prefix; /* set by main() before parsing */
/* When set (tollgate -T, src/conf_dump.c), called with each file the parser
 * reads, its path and whole text, in the order they are read (an included
 * file where its include is). The text is the parser's: copy what is kept. */
extern void (*tg_conf_on_file)(const char *file, const char *text, size_t len);
/* Set by main() for -t and -T: the parser warns about config files, and
 * tg_conf_check_secret() about key files, that every user can read. */
extern int tg_conf_check_secrets;
/* Warn (at the current statement) when `path`, a file holding a secret
 * (`what`: "certificate key", ...), is readable by every user. */
void tg_conf_check_secret(tg_conf_t *cf, const char *what, const char *path);

/* Stock setters: write the parsed value at `conf + d->offset`. */
const char *tg_conf_set_flag(tg_conf_t *cf, const tg_directive_t *d, void *conf); /* int: on|off */
const char *tg_conf_set_num(tg_conf_t *cf, const tg_directive_t *d, void *conf);  /* int64_t */
const char *tg_conf_set_size(tg_conf_t *cf, const tg_directive_t *d, void *conf); /* int64_t */
const char *tg_conf_set_msec(tg_conf_t *cf, const tg_directive_t *d, void *conf); /* tg_msec_t */
const char *tg_conf_set_str(tg_conf_t *cf, const tg_directive_t *d, void *conf);  /* tg_str_t */
const char *tg_conf_set_path(tg_conf_t *cf, const tg_directive_t *d, void *conf); /* const char* */

/* Merge helpers for merge_conf: take the parent's value, else the default. */
#define TG_CONF_MERGE(child, parent, def)                                                          \
    do {                                                                                           \
        if ((child) == TG_CONF_UNSET)                                                              \
            (child) = ((parent) == TG_CONF_UNSET) ? (def) : (parent);                              \
    } while (0)
#define TG_CONF_MERGE_PTR(child, parent, def)                                                      \
    do {                                                                                           \
        if ((child) == NULL)                                                                       \
            (child) = ((parent) == NULL) ? (def) : (parent);                                       \
    } while (0)
#define TG_CONF_MERGE_STR(child, parent, def)                                                      \
    do {                                                                                           \
        if ((child).p == NULL)                                                                     \
            (child) = ((parent).p == NULL) ? (def) : (parent);                                     \
    } while (0)

#endif
