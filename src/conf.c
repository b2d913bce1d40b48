/* The config parser: lexer, statement dispatch, include, stock setters.
 *
 * A file is read whole into memory, walked once, and freed; every word a
 * statement keeps is copied (unescaped, NUL-terminated) into cf->arena, and
 * so are file names, so directives may hold on to both. Nesting follows the
 * C stack: a block directive's set() calls tg_conf_parse_block(), and an
 * include parses the named files in the current scope, each with its own
 * source record on cf->src (the chain is also how include loops are found).
 *
 * Errors never stop the parse. Each is printed once as `file:line: message`
 * and counted in cf->nerrors; the parser then resynchronises at the next
 * statement (skipping the body of a block it could not enter), so one run
 * lists every mistake. "Unexpected end of file" is said at most once per
 * file however many blocks are left open. */
#include "conf.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tg_conf_prefix;
void (*tg_conf_on_file)(const char *file, const char *text, size_t len);
int tg_conf_check_secrets;

struct tg_conf_src_s {
    const char *file;    /* arena string */
    char *buf;           /* whole file (malloc), freed when its parse ends */
    const char *p, *end; /* unread part of buf */
    int line;            /* line of *p */
    int eof_reported;    /* "unexpected end of file" already said */
    dev_t dev;           /* identity, to refuse include loops */
    ino_t ino;
    struct tg_conf_src_s *prev; /* the including file */
};

enum { T_WORD = 0, T_SEMI, T_OPEN, T_CLOSE, T_EOF };
enum { ST_OK = 0, ST_CLOSED, ST_EOF }; /* how a statement ended, for the block loop */

typedef struct {
    int type;
    int line;
    char quote;    /* '"' or '\'' when quoted, else 0 */
    const char *p; /* raw text; inside the quotes when quoted */
    size_t len;
} token_t;

static void parse_stmts(tg_conf_t *cf, int in_block);

/* ---- reporting ---------------------------------------------------------- */

static void vreport(tg_conf_t *cf, const char *kind, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s:%d: %s", cf->file ? cf->file : "(config)", cf->line, kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void tg_conf_error(tg_conf_t *cf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vreport(cf, "", fmt, ap);
    va_end(ap);
    cf->nerrors++;
}

void tg_conf_warn(tg_conf_t *cf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vreport(cf, "warning: ", fmt, ap);
    va_end(ap);
    cf->nwarnings++;
}

const char *tg_conf_errf(tg_conf_t *cf, const char *fmt, ...)
{
    va_list ap;
    const char *s;

    va_start(ap, fmt);
    s = tg_arena_vprintf(cf->arena, fmt, ap);
    va_end(ap);
    return s ? s : "out of memory";
}

void tg_conf_check_secret(tg_conf_t *cf, const char *what, const char *path)
{
    struct stat st;

    if (tg_conf_check_secrets && stat(path, &st) == 0 && (st.st_mode & S_IROTH))
        tg_conf_warn(cf, "%s \"%s\" is readable by every user (mode %04o): chmod 600 it", what,
                     path, (unsigned)(st.st_mode & 07777));
}

/* An error at a line of the current file other than the statement's own. */
static void __attribute__((format(printf, 3, 4)))
error_at(tg_conf_t *cf, int line, const char *fmt, ...)
{
    va_list ap;

    cf->file = cf->src->file;
    cf->line = line;
    va_start(ap, fmt);
    vreport(cf, "", fmt, ap);
    va_end(ap);
    cf->nerrors++;
}

static void eof_error(tg_conf_t *cf, int line, const char *msg)
{
    if (!cf->src->eof_reported) {
        cf->src->eof_reported = 1;
        error_at(cf, line, "%s", msg);
    }
}

/* ---- lexer -------------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_special(char c)
{
    return c == ';' || c == '{' || c == '}';
}

/* A quoted word: only the closing quote ends it, a backslash protects the
 * next character (unescaping happens later, in make_arg). */
static const char *lex_quoted(tg_conf_t *cf, token_t *t, const char *p)
{
    struct tg_conf_src_s *s = cf->src;
    char q = *p++;

    t->p = p;
    while (p < s->end && *p != q) {
        if (*p == '\\' && p + 1 < s->end) p++;
        if (*p == '\n') s->line++;
        p++;
    }
    if (p == s->end) {
        t->type = T_EOF;
        eof_error(cf, t->line, "unterminated quoted string");
        return p;
    }
    t->type = T_WORD;
    t->quote = q;
    t->len = (size_t)(p - t->p);
    p++;
    if (p < s->end && !is_space(*p) && !is_special(*p))
        error_at(cf, s->line, "unexpected \"%c\" after quoted string", *p);
    return p;
}

static void next_token(tg_conf_t *cf, token_t *t)
{
    struct tg_conf_src_s *s = cf->src;
    const char *p = s->p;

    for (;;) {
        while (p < s->end && is_space(*p)) {
            if (*p == '\n') s->line++;
            p++;
        }
        if (p == s->end || *p != '#') break;
        while (p < s->end && *p != '\n')
            p++;
    }
    t->line = s->line;
    t->quote = 0;
    t->p = p;
    t->len = 0;
    if (p == s->end) {
        t->type = T_EOF;
    } else if (*p == ';' || *p == '{' || *p == '}') {
        t->type = *p == ';' ? T_SEMI : *p == '{' ? T_OPEN : T_CLOSE;
        p++;
    } else if (*p == '"' || *p == '\'') {
        p = lex_quoted(cf, t, p);
    } else {
        /* Unquoted: backslash, quotes and '#' inside a word are plain text,
         * so regexes like ^/users/(\d+)$ need no quoting. */
        t->type = T_WORD;
        while (p < s->end && !is_space(*p) && !is_special(*p))
            p++;
        t->len = (size_t)(p - t->p);
    }
    s->p = p;
}

/* Copies a word into the arena. In "...": \" \\ \n \t \r are escapes; in
 * '...': \' and \\. Any other backslash stays as written, so "^\d+$" reaches
 * the regex compiler intact. */
static int make_arg(tg_conf_t *cf, const token_t *t, tg_conf_arg_t *arg)
{
    char *d = tg_arena_alloc_nz(cf->arena, t->len + 1);
    size_t n = 0;

    if (d == NULL) return -1;
    for (size_t i = 0; i < t->len; i++) {
        char c = t->p[i];
        if (t->quote && c == '\\' && i + 1 < t->len) {
            char e = t->p[i + 1];
            if (e == t->quote || e == '\\') {
                c = e;
                i++;
            } else if (t->quote == '"' && (e == 'n' || e == 't' || e == 'r')) {
                c = e == 'n' ? '\n' : e == 't' ? '\t' : '\r';
                i++;
            }
        }
        d[n++] = c;
    }
    d[n] = '\0';
    arg->text = (tg_str_t){d, n};
    arg->quoted = t->quote != 0;
    return 0;
}

/* Consumes a block body whose '{' was just read, up to the matching '}',
 * interpreting nothing. `line` is where the block was opened. */
static void skip_block(tg_conf_t *cf, int line)
{
    token_t t;
    int depth = 1;

    while (depth > 0) {
        next_token(cf, &t);
        if (t.type == T_OPEN) {
            depth++;
        } else if (t.type == T_CLOSE) {
            depth--;
        } else if (t.type == T_EOF) {
            eof_error(cf, line, "unexpected end of file, expecting \"}\"");
            return;
        }
    }
}

/* ---- files and include ---------------------------------------------------- */

/* Reads all of fd; `hint` is the expected size (st_size, 0 for pipes). */
static int read_all(int fd, off_t hint, char **out, size_t *len)
{
    size_t cap = hint > 0 ? (size_t)hint + 1 : 4096, n = 0;
    char *buf = malloc(cap), *bigger;

    if (buf == NULL) return ENOMEM;
    for (;;) {
        ssize_t r;
        if (n == cap) {
            if (cap > SIZE_MAX / 2 || (bigger = realloc(buf, cap * 2)) == NULL) {
                free(buf);
                return ENOMEM;
            }
            buf = bigger;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int err = errno;
            free(buf);
            return err;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Parses `file` (an arena string) as a sequence of statements in the current
 * scope. Returns 0, or an errno value when the file could not be read
 * (ELOOP: it is already being parsed); the caller reports that. */
static int parse_file(tg_conf_t *cf, const char *file)
{
    struct tg_conf_src_s src = {.file = file, .line = 1, .prev = cf->src};
    struct stat st;
    size_t len = 0;
    int fd, err = 0;

    if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) return errno;
    if (fstat(fd, &st) < 0) {
        err = errno;
        goto done;
    }
    for (const struct tg_conf_src_s *s = cf->src; s; s = s->prev) {
        if (s->dev == st.st_dev && s->ino == st.st_ino) {
            err = ELOOP;
            goto done;
        }
    }
    if (tg_conf_check_secrets && (st.st_mode & S_IROTH)) {
        /* at the include that reads it; the main file at its first line */
        if (cf->src)
            tg_conf_warn(cf, "\"%s\" is readable by every user (mode %04o): a config can hold "
                         "secrets, chmod o-r it", file, (unsigned)(st.st_mode & 07777));
        else {
            cf->file = file;
            cf->line = 1;
            tg_conf_warn(cf, "this file is readable by every user (mode %04o): a config can "
                         "hold secrets, chmod o-r it", (unsigned)(st.st_mode & 07777));
        }
    }
    if ((err = read_all(fd, S_ISREG(st.st_mode) ? st.st_size : 0, &src.buf, &len)) != 0) goto done;
    if (tg_conf_on_file) tg_conf_on_file(file, src.buf, len);
    src.p = src.buf;
    src.end = src.buf + len;
    src.dev = st.st_dev;
    src.ino = st.st_ino;
    cf->src = &src;
    cf->depth++;
    parse_stmts(cf, 0);
    cf->depth--;
    cf->src = src.prev;
done:
    free(src.buf);
    close(fd);
    return err;
}

/* A relative pattern is taken against the directory of the including file;
 * that directory is escaped so its own '*', '?' or '[' are not wildcards. */
static const char *include_pattern(tg_conf_t *cf, tg_str_t arg)
{
    const char *file = cf->src->file, *slash = strrchr(file, '/');
    size_t dirlen;
    char *pat, *d;

    if (arg.p[0] == '/' || slash == NULL) return arg.p;
    dirlen = (size_t)(slash - file) + 1;
    if ((pat = tg_arena_alloc_nz(cf->arena, 2 * dirlen + arg.len + 1)) == NULL) return NULL;
    d = pat;
    for (size_t i = 0; i < dirlen; i++) {
        if (strchr("*?[\\", file[i])) *d++ = '\\';
        *d++ = file[i];
    }
    memcpy(d, arg.p, arg.len + 1);
    return pat;
}

static void include(tg_conf_t *cf)
{
    const char *file = cf->file, *arg, *pattern;
    int line = cf->line, rc;
    glob_t g;

    if (cf->nargs != 1) {
        tg_conf_error(cf, "invalid number of arguments in \"include\" directive");
        return;
    }
    arg = cf->args[1].text.p; /* kept: parsing the included files reuses cf->args */
    if (cf->depth > TG_CONF_MAX_INCLUDE_DEPTH) {
        tg_conf_error(cf, "include \"%s\": nested too deeply (more than %d levels)", arg,
                      TG_CONF_MAX_INCLUDE_DEPTH);
        return;
    }
    if ((pattern = include_pattern(cf, cf->args[1].text)) == NULL) {
        tg_conf_error(cf, "out of memory");
        return;
    }
    rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH && strpbrk(arg, "*?[") == NULL)
        tg_conf_error(cf, "include \"%s\": no such file", arg);
    else if (rc != 0 && rc != GLOB_NOMATCH)
        tg_conf_error(cf, "include \"%s\": %s", arg,
                      rc == GLOB_NOSPACE ? "out of memory" : "could not read directory");
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) {
        const char *path = tg_arena_strdup(cf->arena, tg_str_c(g.gl_pathv[i]));
        int err = path ? parse_file(cf, path) : ENOMEM;
        cf->file = file;
        cf->line = line;
        if (err == ELOOP)
            tg_conf_error(cf, "include \"%s\": \"%s\" is already being parsed (include loop)", arg,
                          g.gl_pathv[i]);
        else if (err)
            tg_conf_error(cf, "could not open \"%s\": %s", g.gl_pathv[i], strerror(err));
    }
    globfree(&g);
}

/* ---- statements ---------------------------------------------------------- */

/* Runs the statement in cf->args; `open` says it ended with '{'. */
static void dispatch(tg_conf_t *cf, int open)
{
    const char *name = cf->args[0].text.p, *msg, *file = cf->file, *pos;
    int mi = -1;
    const tg_directive_t *d;
    unsigned scope = cf->scope;
    void *ctx = cf->ctx, **mconf = cf->mconf, *conf;
    int known, line = cf->line;

    if ((d = cf->find_directive(cf, name, &mi, &known)) == NULL) {
        if (known)
            tg_conf_error(cf, "\"%s\" directive is not allowed here", name);
        else
            tg_conf_error(cf, "unknown directive \"%s\"", name);
        goto skip;
    }
    if ((d->flags & TG_CONF_F_BLOCK) && !open) {
        tg_conf_error(cf, "directive \"%s\" has no opening \"{\"", name);
        return;
    }
    if (!(d->flags & TG_CONF_F_BLOCK) && open) {
        tg_conf_error(cf, "unexpected \"{\"");
        goto skip;
    }
    if (cf->nargs < d->min_args || (d->max_args >= 0 && cf->nargs > d->max_args)) {
        tg_conf_error(cf, "invalid number of arguments in \"%s\" directive", name);
        goto skip;
    }
    conf = (scope & TG_SCOPE_UPSTREAM) ? ctx : mconf ? mconf[mi] : NULL;
    pos = cf->src->p;
    msg = d->set ? d->set(cf, d, conf) : NULL;
    /* A block's set() moved into its scope and through its body; come back
     * to this statement's scope and position for the report and what follows. */
    cf->scope = scope;
    cf->ctx = ctx;
    cf->mconf = mconf;
    cf->file = file;
    cf->line = line;
    if (msg) tg_conf_error(cf, "%s", msg);
    if (open && cf->src->p == pos)
        skip_block(cf, line); /* set() did not enter the body: do not run it */
    return;
skip:
    if (open) skip_block(cf, line);
}

/* Reads the rest of a statement whose first word is `first` and runs it. */
static int statement(tg_conf_t *cf, const token_t *first)
{
    struct tg_conf_src_s *s = cf->src;
    token_t t = *first;
    int n = 0, too_many = 0, oom = 0;

    for (; t.type == T_WORD; next_token(cf, &t)) {
        if (n > TG_CONF_MAX_ARGS)
            too_many = 1;
        else if (make_arg(cf, &t, &cf->args[n++]) < 0)
            oom = 1;
    }
    if (t.type == T_EOF) {
        eof_error(cf, first->line, "unexpected end of file, expecting \";\" or \"}\"");
        return ST_EOF;
    }
    if (t.type == T_CLOSE) {
        /* Most likely a forgotten ';' before the block's end: let the '}'
         * close the block so the rest of the file parses normally. */
        error_at(cf, t.line, "unexpected \"}\"");
        return ST_CLOSED;
    }
    cf->file = s->file;
    cf->line = first->line;
    cf->nargs = n - 1;
    if (oom) {
        tg_conf_error(cf, "out of memory");
    } else if (too_many) {
        tg_conf_error(cf, "too many arguments in \"%s\" directive", cf->args[0].text.p);
    } else if (strcmp(cf->args[0].text.p, "include") != 0) {
        dispatch(cf, t.type == T_OPEN);
        return ST_OK;
    } else if (t.type == T_SEMI) {
        include(cf);
        return ST_OK;
    } else {
        tg_conf_error(cf, "unexpected \"{\"");
    }
    if (t.type == T_OPEN) skip_block(cf, first->line);
    return ST_OK;
}

/* Statements up to end of file, or up to the matching '}' when in_block
 * (the block was opened by the statement at cf->line). */
static void parse_stmts(tg_conf_t *cf, int in_block)
{
    int open_line = cf->line;
    token_t t;

    for (;;) {
        next_token(cf, &t);
        switch (t.type) {
        case T_WORD:
            switch (statement(cf, &t)) {
            case ST_EOF:
                return;
            case ST_CLOSED:
                if (in_block) return;
                break;
            }
            break;
        case T_EOF:
            if (in_block) eof_error(cf, open_line, "unexpected end of file, expecting \"}\"");
            return;
        case T_CLOSE:
            if (in_block) return;
            error_at(cf, t.line, "unexpected \"}\"");
            break;
        case T_SEMI:
            error_at(cf, t.line, "unexpected \";\"");
            break;
        case T_OPEN:
            error_at(cf, t.line, "unexpected \"{\"");
            skip_block(cf, t.line);
            break;
        }
    }
}

int tg_conf_parse_block(tg_conf_t *cf)
{
    int before = cf->nerrors;

    if (cf->src == NULL) return -1;
    parse_stmts(cf, 1);
    return cf->nerrors > before ? -1 : 0;
}

int tg_conf_parse_file(tg_conf_t *cf, const char *path)
{
    const char *file = tg_arena_strdup(cf->arena, tg_str_c(path));
    int err;

    cf->scope = TG_SCOPE_MAIN;
    cf->src = NULL;
    cf->depth = 0;
    err = file ? parse_file(cf, file) : ENOMEM;
    if (err) {
        /* no line to name: the file itself is missing */
        fprintf(stderr, "tollgate: cannot open config file \"%s\": %s\n", path, strerror(err));
        cf->nerrors++;
        return -2;
    }
    return cf->nerrors > 0 ? -1 : 0;
}

/* ---- helpers for set() ----------------------------------------------------- */

int tg_conf_arg_kv(tg_conf_t *cf, int i, const char *key, tg_str_t *val)
{
    size_t n = strlen(key);
    tg_str_t a;

    if (i < 1 || i > cf->nargs) return 0;
    a = cf->args[i].text;
    if (a.len <= n || memcmp(a.p, key, n) != 0 || a.p[n] != '=') return 0;
    *val = (tg_str_t){a.p + n + 1, a.len - n - 1};
    return 1;
}

const char *tg_conf_path(tg_conf_t *cf, tg_str_t path)
{
    const char *prefix = tg_conf_prefix, *r;
    char *cwd = NULL;
    size_t plen;

    if (path.len > 0 && path.p[0] == '/') return tg_arena_strdup(cf->arena, path);
    if (prefix == NULL && (prefix = cwd = getcwd(NULL, 0)) == NULL) return NULL;
    plen = strlen(prefix);
    r = tg_arena_printf(cf->arena, "%s%s%.*s", prefix, plen && prefix[plen - 1] != '/' ? "/" : "",
                        TG_STR_FMT(path));
    free(cwd);
    return r;
}

/* ---- stock setters ------------------------------------------------------------ */

#define FIELD(conf, d, type) ((type *)((char *)(conf) + (d)->offset))

/* What every stock setter checks first: a config to write and one value. */
static const char *check_one(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    if (conf == NULL)
        return tg_conf_errf(cf, "\"%s\" directive has no configuration in this scope", d->name);
    if (cf->nargs != 1)
        return tg_conf_errf(cf, "invalid number of arguments in \"%s\" directive", d->name);
    return NULL;
}

static const char *duplicate(tg_conf_t *cf, const tg_directive_t *d)
{
    return tg_conf_errf(cf, "\"%s\" directive is duplicate", d->name);
}

const char *tg_conf_set_flag(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    const char *err = check_one(cf, d, conf);
    tg_str_t v = tg_conf_arg(cf, 1);
    int *f;

    if (err) return err;
    f = FIELD(conf, d, int);
    if (*f != TG_CONF_UNSET) return duplicate(cf, d);
    if (tg_str_caseeq_lit(v, "on"))
        *f = 1;
    else if (tg_str_caseeq_lit(v, "off"))
        *f = 0;
    else
        return tg_conf_errf(
            cf, "invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"", v.p,
            d->name);
    return NULL;
}

static const char *set_int64(tg_conf_t *cf, const tg_directive_t *d, void *conf,
                             int (*parse)(tg_str_t, int64_t *), const char *what)
{
    const char *err = check_one(cf, d, conf);
    int64_t *f;

    if (err) return err;
    f = FIELD(conf, d, int64_t);
    if (*f != TG_CONF_UNSET) return duplicate(cf, d);
    if (parse(tg_conf_arg(cf, 1), f) < 0)
        return tg_conf_errf(cf, "invalid %s \"%s\" in \"%s\" directive", what, tg_conf_arg(cf, 1).p,
                            d->name);
    return NULL;
}

const char *tg_conf_set_num(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    return set_int64(cf, d, conf, tg_parse_int, "number");
}

const char *tg_conf_set_size(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    return set_int64(cf, d, conf, tg_parse_size, "size");
}

const char *tg_conf_set_msec(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    return set_int64(cf, d, conf, tg_parse_msec, "duration");
}

const char *tg_conf_set_str(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    const char *err = check_one(cf, d, conf);
    tg_str_t *f;

    if (err) return err;
    f = FIELD(conf, d, tg_str_t);
    if (f->p != NULL) return duplicate(cf, d);
    *f = tg_conf_arg(cf, 1); /* already an arena copy that outlives the parse */
    return NULL;
}

const char *tg_conf_set_path(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    const char *err = check_one(cf, d, conf);
    const char **f;

    if (err) return err;
    f = FIELD(conf, d, const char *);
    if (*f != NULL) return duplicate(cf, d);
    if (tg_conf_arg(cf, 1).len == 0)
        return tg_conf_errf(cf, "invalid path \"\" in \"%s\" directive", d->name);
    if ((*f = tg_conf_path(cf, tg_conf_arg(cf, 1))) == NULL)
        return tg_conf_errf(cf, "could not resolve path \"%s\" in \"%s\" directive: %s",
                            tg_conf_arg(cf, 1).p, d->name, strerror(errno));
    return NULL;
}
