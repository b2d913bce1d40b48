/* Unit tests for src/conf.c, driven through real files in a mkdtemp()
 * directory. Two test modules stand in for the real ones: "test" has stock
 * setters, block directives for server/location/upstream scopes, and
 * directives that log what set() received (scope config and arguments), fail
 * on purpose or report their own errors; "other" (index 1) checks that each
 * module gets its own config slot. stderr is captured per parse and the
 * temporary directory is shown as "D", so messages are compared exactly,
 * file:line included. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include "conf.h"
#include "module.h"
#include "tap.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name; /* which scope this config belongs to, for the log */
    int flag;
    int64_t num, size;
    tg_msec_t msec;
    tg_str_t str;
    const char *path;
} tconf_t;

static tg_arena_t arena;
static tg_conf_t cf;
static tconf_t *main_conf;
static char *rlog; /* one line per logged set() call */
static long counted;
static char dir[] = "/tmp/tg-unit-conf-XXXXXX";

static void append(const char *line)
{
    rlog = tg_arena_printf(&arena, "%s%s\n", rlog, line);
}

static tconf_t *new_conf(tg_conf_t *c, const char *name)
{
    tconf_t *t = tg_arena_alloc(c->arena, sizeof *t);

    t->name = name;
    t->flag = TG_CONF_UNSET;
    t->num = t->size = t->msec = TG_CONF_UNSET;
    return t;
}

static void **new_mconf(tg_conf_t *c, const char *name)
{
    void **m = tg_arena_alloc(c->arena, 2 * sizeof *m);

    m[0] = new_conf(c, name);
    m[1] = new_conf(c, tg_arena_printf(c->arena, "other@%s", name));
    return m;
}

/* Logs "<scope config name>[|directive]|arg|arg..." (Q marks a quoted arg). */
static const char *set_log(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    char *line = tg_arena_printf(c->arena, "%s", conf ? ((tconf_t *)conf)->name : "NULL");

    if (strcmp(d->name, "record") != 0) line = tg_arena_printf(c->arena, "%s|%s", line, d->name);
    for (int i = 1; i <= c->nargs; i++)
        line = tg_arena_printf(c->arena, "%s|%s%s", line, c->args[i].quoted ? "Q" : "",
                               c->args[i].text.p);
    append(line);
    return NULL;
}

/* Enters a block with fresh per-module configs, like the core's server and
 * location directives will. */
static const char *enter(tg_conf_t *c, unsigned scope, const char *name, int use_mconf)
{
    unsigned saved_scope = c->scope;
    void *saved_ctx = c->ctx, **saved_mconf = c->mconf;

    c->mconf = use_mconf ? new_mconf(c, name) : NULL;
    c->ctx = use_mconf ? c->mconf[0] : new_conf(c, name);
    c->scope = scope;
    tg_conf_parse_block(c);
    c->scope = saved_scope;
    c->ctx = saved_ctx;
    c->mconf = saved_mconf;
    return NULL;
}

static const char *set_server(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    return enter(c, TG_SCOPE_SERVER, "server", 1);
}

static const char *set_location(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    const char *name = tg_arena_printf(c->arena, "loc %s", c->args[1].text.p);

    set_log(c, d, conf);
    return enter(c, TG_SCOPE_LOCATION, name, 1);
}

static const char *set_upstream(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    return enter(c, TG_SCOPE_UPSTREAM, tg_arena_printf(c->arena, "upstream %s", c->args[1].text.p),
                 0);
}

static const char *set_fail(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    return tg_conf_errf(c, "failing on purpose: %s", c->nargs ? c->args[1].text.p : "-");
}

static const char *set_failblock(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    (void)c;
    (void)d;
    (void)conf;
    return "failblock refused";
}

static const char *set_checkblock(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    enter(c, TG_SCOPE_SERVER, "checked", 1);
    return "checkblock failed after its body";
}

static const char *set_twoerrors(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_conf_error(c, "first of two");
    tg_conf_error(c, "second of two");
    return NULL;
}

static const char *set_warn(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    tg_conf_warn(c, "careful with %s", c->args[1].text.p);
    return NULL;
}

static const char *set_count(tg_conf_t *c, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    counted += c->nargs;
    return NULL;
}

#define ANY (TG_SCOPE_HTTP | TG_SCOPE_UPSTREAM)
static const tg_directive_t test_directives[] = {
    {"flag", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag, offsetof(tconf_t, flag)},
    {"num", TG_SCOPE_MAIN, 0, 1, 1, tg_conf_set_num, offsetof(tconf_t, num)},
    {"size", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_size, offsetof(tconf_t, size)},
    {"msec", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_msec, offsetof(tconf_t, msec)},
    {"str", TG_SCOPE_MAIN, 0, 1, 1, tg_conf_set_str, offsetof(tconf_t, str)},
    {"path", TG_SCOPE_MAIN, 0, 1, 1, tg_conf_set_path, offsetof(tconf_t, path)},
    {"record", ANY, 0, 0, -1, set_log, 0},
    {"count", ANY, 0, 0, -1, set_count, 0},
    {"fail", TG_SCOPE_HTTP, 0, 0, 1, set_fail, 0},
    {"twoerrors", TG_SCOPE_HTTP, 0, 0, 0, set_twoerrors, 0},
    {"warnme", TG_SCOPE_HTTP, 0, 1, 1, set_warn, 0},
    {"server", TG_SCOPE_MAIN, TG_CONF_F_BLOCK, 0, 0, set_server, 0},
    {"location", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, TG_CONF_F_BLOCK, 1, 2, set_location, 0},
    {"upstream", TG_SCOPE_MAIN, TG_CONF_F_BLOCK, 1, 1, set_upstream, 0},
    /* Same name as the block above, other scope: the parser picks by scope. */
    {"server", TG_SCOPE_UPSTREAM, 0, 1, -1, set_log, 0},
    {"failblock", TG_SCOPE_MAIN, TG_CONF_F_BLOCK, 0, -1, set_failblock, 0},
    {"checkblock", TG_SCOPE_MAIN, TG_CONF_F_BLOCK, 0, 0, set_checkblock, 0},
    {0},
};

static const tg_directive_t other_directives[] = {
    {"other_only", TG_SCOPE_LOCATION, 0, 0, 0, set_log, 0},
    {0},
};

static tg_module_t test_module = {.name = "test", .directives = test_directives, .index = 0};
static tg_module_t other_module = {.name = "other", .directives = other_directives, .index = 1};
static tg_module_t bare_module = {.name = "bare", .directives = NULL, .index = 2};
tg_module_t *const tg_modules[] = {&test_module, &other_module, &bare_module, NULL};

/* The parser's directive lookup (the core's is in core.c) over this list. */
static const tg_directive_t *find_directive(tg_conf_t *c, const char *name, int *mindex, int *known)
{
    *known = 0;
    for (int i = 0; tg_modules[i]; i++)
        for (const tg_directive_t *d = tg_modules[i]->directives; d && d->name; d++) {
            if (strcmp(d->name, name) != 0)
                continue;
            *known = 1;
            if (d->scopes & c->scope) {
                *mindex = tg_modules[i]->index;
                return d;
            }
        }
    return NULL;
}

/* ---- files ---------------------------------------------------------------- */

static const char *in_dir(const char *rel)
{
    return tg_arena_printf(&arena, "%s/%s", dir, rel);
}

static void put(const char *rel, const char *text)
{
    FILE *f = fopen(in_dir(rel), "w");

    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(rel);
        exit(2);
    }
}

static void mkd(const char *rel)
{
    if (mkdir(in_dir(rel), 0700) < 0) {
        perror(rel);
        exit(2);
    }
}

/* Replaces every occurrence of the temp directory with "D". */
static char *shorten(const char *s)
{
    size_t n = strlen(dir);
    char *out = tg_arena_strdup(&arena, TG_STR("")), *hit;

    while ((hit = strstr(s, dir)) != NULL) {
        out = tg_arena_printf(&arena, "%s%.*sD", out, (int)(hit - s), s);
        s = hit + n;
    }
    return tg_arena_printf(&arena, "%s%s", out, s);
}

static char *read_fd(int fd)
{
    char *out = tg_arena_strdup(&arena, TG_STR("")), chunk[4096];
    ssize_t r;

    lseek(fd, 0, SEEK_SET);
    while ((r = read(fd, chunk, sizeof chunk)) > 0)
        out = tg_arena_printf(&arena, "%s%.*s", out, (int)r, chunk);
    return out;
}

/* Parses dir/rel with fresh main-scope configs; returns stderr, shortened. */
static char *parse(const char *rel, int *rc)
{
    char tmpl[] = "/tmp/tg-unit-conf-err-XXXXXX";
    int fd = mkstemp(tmpl), saved = dup(2);
    char *err;

    if (fd < 0 || saved < 0) {
        perror("mkstemp/dup");
        exit(2);
    }
    unlink(tmpl);
    memset(&cf, 0, sizeof cf);
    cf.arena = &arena;
    cf.find_directive = find_directive;
    cf.mconf = new_mconf(&cf, "main");
    main_conf = cf.mconf[0];
    rlog = "";
    fflush(stderr);
    dup2(fd, 2);
    *rc = tg_conf_parse_file(&cf, rel[0] == '/' ? rel : in_dir(rel));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    err = shorten(read_fd(fd));
    close(fd);
    return err;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_setters(void)
{
    int rc;
    char *err;

    tg_conf_prefix = "/prefix";
    put("values.conf", "# leading comment\n"
                       "num 42;   # trailing comment\n"
                       "size 10m;\r\n"
                       "msec 1m30s;\n"
                       "flag ON;\n"
                       "str \"hello world\";\n"
                       "path logs/x.log;");
    err = parse("values.conf", &rc);
    is_str(err, "", "setters: no errors");
    is_int(rc, 0, "setters: rc 0");
    is_int(cf.nerrors, 0, "setters: nerrors 0");
    is_int(main_conf->num, 42, "num");
    is_int(main_conf->size, 10 * 1024 * 1024, "size 10m");
    is_int(main_conf->msec, 90000, "msec 1m30s");
    is_int(main_conf->flag, 1, "flag ON is case-insensitive");
    ok(tg_str_eq_lit(main_conf->str, "hello world"), "str keeps the quoted value");
    is_str(main_conf->path, "/prefix/logs/x.log", "relative path joined to the prefix");
    is_str(cf.file, in_dir("values.conf"), "cf->file is the parsed file");

    put("abs.conf", "path /abs/p; flag off;");
    parse("abs.conf", &rc);
    is_str(main_conf->path, "/abs/p", "absolute path stays");
    is_int(main_conf->flag, 0, "flag off");

    tg_conf_prefix = "/pre/";
    put("rel.conf", "path a/b;");
    parse("rel.conf", &rc);
    is_str(main_conf->path, "/pre/a/b", "prefix with a trailing slash");

    tg_conf_prefix = NULL;
    {
        char *cwd = getcwd(NULL, 0);
        parse("rel.conf", &rc);
        is_str(main_conf->path, tg_arena_printf(&arena, "%s/a/b", cwd),
               "no prefix: relative to the working directory");
        free(cwd);
    }

    put("empty.conf", "");
    err = parse("empty.conf", &rc);
    ok(rc == 0 && err[0] == '\0', "an empty file is a valid config");
    put("blank.conf", "\n\n   # only a comment, no newline at the end");
    err = parse("blank.conf", &rc);
    ok(rc == 0 && err[0] == '\0', "comments and blank lines only");
}

static void test_lexer(void)
{
    int rc;
    char *err;

    put("quotes.conf",
        "record \"a b\" 'c;d' \"{}#x\" \"q\\\"x\" 'it\\'s' \"back\\\\slash\" \"t\\tn\\nr\\r\"\n"
        "       \"re^\\d+$\" '\\n\\\\' plain\\word ^/users/(\\d+)$ a#b \"\" it's\"quote;\n"
        "record \"multi\nline\"; record x # comment ; { } \"\n"
        "  y;#glued comment\n"
        "record{}\n");
    err = parse("quotes.conf", &rc);
    is_str(err, "D/quotes.conf:6: unexpected \"{\"\n", "lexer: only the block error");
    is_str(rlog,
           "main|Qa b|Qc;d|Q{}#x|Qq\"x|Qit's|Qback\\slash|Qt\tn\nr\r|Qre^\\d+$|Q\\n\\"
           "|plain\\word|^/users/(\\d+)$|a#b|Q|it's\"quote\n"
           "main|Qmulti\nline\n"
           "main|x|y\n",
           "quoting, escapes, literal backslashes and comments");

    put("lines.conf", "record\n"
                      "  a\n"
                      "  b;\n"
                      "\n"
                      "bogus\n"
                      "   x; record \"two\n"
                      "lines\"; bogus2; # after\n"
                      "\t\tbogus3\n"
                      ";\n");
    err = parse("lines.conf", &rc);
    is_str(err,
           "D/lines.conf:5: unknown directive \"bogus\"\n"
           "D/lines.conf:7: unknown directive \"bogus2\"\n"
           "D/lines.conf:8: unknown directive \"bogus3\"\n",
           "a statement's line is its first word's, newlines in strings counted");
    is_int(rc, -1, "errors make the parse fail");
    is_int(cf.nerrors, 3, "three errors counted");
}

static void test_scopes(void)
{
    int rc;
    char *err;

    put("scopes.conf", "record m;\n"
                       "server {\n"
                       "    record s;\n"
                       "    flag off;\n"
                       "    location /a {\n"
                       "        record l1;\n"
                       "        other_only;\n"
                       "        location /a/b exact {\n"
                       "            record l2;\n"
                       "        }\n"
                       "    }\n"
                       "    record s2;\n"
                       "}\n"
                       "upstream api {\n"
                       "    server 127.0.0.1:3000 weight=3;\n"
                       "    record u;\n"
                       "}\n"
                       "record m2;\n");
    err = parse("scopes.conf", &rc);
    is_str(err, "", "scopes: no errors");
    is_int(rc, 0, "scopes: rc 0");
    is_str(rlog,
           "main|m\n"
           "server|s\n"
           "server|location|/a\n"
           "loc /a|l1\n"
           "other@loc /a|other_only\n"
           "loc /a|location|/a/b|exact\n"
           "loc /a/b|l2\n"
           "server|s2\n"
           "upstream api|server|127.0.0.1:3000|weight=3\n"
           "upstream api|u\n"
           "main|m2\n",
           "set() gets the scope's module config, upstream ctx, and its arguments");
    is_int(main_conf->flag, TG_CONF_UNSET, "server's flag did not touch main's");
    is_int(cf.scope, TG_SCOPE_MAIN, "scope is main again after the blocks");
}

static void test_errors(void)
{
    int rc;
    char *err;

    put("errors.conf", "bogus on;\n"                         /* 1 */
                       "other_only;\n"                       /* 2 */
                       "num 1 2;\n"                          /* 3 */
                       "server;\n"                           /* 4 */
                       "flag on {\n"                         /* 5 */
                       "    record inside_skipped;\n"        /* 6 */
                       "}\n"                                 /* 7 */
                       "}\n"                                 /* 8 */
                       "size 10x;\n"                         /* 9 */
                       "flag maybe;\n"                       /* 10 */
                       "flag on;\n"                          /* 11 */
                       "flag off;\n"                         /* 12 */
                       "fail now;\n"                         /* 13 */
                       "failblock x {\n"                     /* 14 */
                       "    bogus_inside; { nested } }\n"    /* 15 */
                       "checkblock {\n"                      /* 16 */
                       "    bogus2;\n"                       /* 17 */
                       "}\n"                                 /* 18 */
                       "record after;\n"                     /* 19 */
                       "twoerrors;\n"                        /* 20 */
                       "server {\n"                          /* 21 */
                       "    server x;\n"                     /* 22 */
                       "    location / { record x }\n"       /* 23 */
                       "    record in_server;\n"             /* 24 */
                       "    location / a b { record no; }\n" /* 25 */
                       "}\n"                                 /* 26 */
                       ";\n"                                 /* 27 */
                       "record \"a\"b;\n"                    /* 28 */
                       "location / {}\n"                     /* 29 */
                       "include;\n"                          /* 30 */
                       "record x {\n"                        /* 31 */
                       "}\n"                                 /* 32 */
                       "num\n"                               /* 33 */
                       "  5 6;\n"                            /* 34 */
                       "msec 5s5s;\n"                        /* 35 */
                       "str one; str two;\n"                 /* 36 */
                       "path \"\";\n"                        /* 37 */
                       "num -1; { bogus3; }\n"               /* 38 */
                       "include a.conf { }\n"                /* 39 */
                       "record last;\n");                    /* 40 */
    err = parse("errors.conf", &rc);
    is_str(err,
           "D/errors.conf:1: unknown directive \"bogus\"\n"
           "D/errors.conf:2: \"other_only\" directive is not allowed here\n"
           "D/errors.conf:3: invalid number of arguments in \"num\" directive\n"
           "D/errors.conf:4: directive \"server\" has no opening \"{\"\n"
           "D/errors.conf:5: unexpected \"{\"\n"
           "D/errors.conf:8: unexpected \"}\"\n"
           "D/errors.conf:9: invalid size \"10x\" in \"size\" directive\n"
           "D/errors.conf:10: invalid value \"maybe\" in \"flag\" directive, it must be \"on\" or "
           "\"off\"\n"
           "D/errors.conf:12: \"flag\" directive is duplicate\n"
           "D/errors.conf:13: failing on purpose: now\n"
           "D/errors.conf:14: failblock refused\n"
           "D/errors.conf:17: unknown directive \"bogus2\"\n"
           "D/errors.conf:16: checkblock failed after its body\n"
           "D/errors.conf:20: first of two\n"
           "D/errors.conf:20: second of two\n"
           "D/errors.conf:22: \"server\" directive is not allowed here\n"
           "D/errors.conf:23: unexpected \"}\"\n"
           "D/errors.conf:25: invalid number of arguments in \"location\" directive\n"
           "D/errors.conf:27: unexpected \";\"\n"
           "D/errors.conf:28: unexpected \"b\" after quoted string\n"
           "D/errors.conf:29: \"location\" directive is not allowed here\n"
           "D/errors.conf:30: invalid number of arguments in \"include\" directive\n"
           "D/errors.conf:31: unexpected \"{\"\n"
           "D/errors.conf:33: invalid number of arguments in \"num\" directive\n"
           "D/errors.conf:35: invalid duration \"5s5s\" in \"msec\" directive\n"
           "D/errors.conf:36: \"str\" directive is duplicate\n"
           "D/errors.conf:37: invalid path \"\" in \"path\" directive\n"
           "D/errors.conf:38: invalid number \"-1\" in \"num\" directive\n"
           "D/errors.conf:38: unexpected \"{\"\n"
           "D/errors.conf:39: unexpected \"{\"\n",
           "every error reported once, in order, with file:line");
    is_int(cf.nerrors, 30, "30 errors counted");
    is_int(rc, -1, "rc -1");
    is_str(rlog,
           "main|after\n"
           "server|location|/\n"
           "server|in_server\n"
           "main|Qa|b\n"
           "main|last\n",
           "parsing went on after each error; skipped blocks never ran");
    is_int(main_conf->flag, 1, "the first valid flag stuck");
    ok(tg_str_eq_lit(main_conf->str, "one"), "the first str stuck");
}

static void test_eof(void)
{
    int rc;
    char *err;

    put("eof1.conf", "record a;\nnum 5\n");
    err = parse("eof1.conf", &rc);
    is_str(err, "D/eof1.conf:2: unexpected end of file, expecting \";\" or \"}\"\n",
           "missing ';' at end of file");
    is_int(rc, -1, "missing ';' fails");

    put("eof2.conf", "record a;\nserver {\n  location / {\n    record b;\n");
    err = parse("eof2.conf", &rc);
    is_str(err, "D/eof2.conf:3: unexpected end of file, expecting \"}\"\n",
           "unclosed blocks: one error, at the innermost opening");
    is_str(rlog, "main|a\nserver|location|/\nloc /|b\n", "statements before EOF still ran");

    put("eof3.conf", "record a;\nrecord \"abc;\n\n}\n");
    err = parse("eof3.conf", &rc);
    is_str(err, "D/eof3.conf:2: unterminated quoted string\n", "unterminated quote");
    is_int(cf.nerrors, 1, "reported once");

    put("eof4.conf", "failblock {\n  record x;\n");
    err = parse("eof4.conf", &rc);
    is_str(err,
           "D/eof4.conf:1: failblock refused\n"
           "D/eof4.conf:1: unexpected end of file, expecting \"}\"\n",
           "failed block left open");

    put("eof5.conf", "server {\n  record x");
    err = parse("eof5.conf", &rc);
    is_str(err, "D/eof5.conf:2: unexpected end of file, expecting \";\" or \"}\"\n",
           "statement cut by EOF inside a block: one error");

    put("eof6.conf", "{ record x;");
    err = parse("eof6.conf", &rc);
    is_str(err,
           "D/eof6.conf:1: unexpected \"{\"\n"
           "D/eof6.conf:1: unexpected end of file, expecting \"}\"\n",
           "anonymous block left open");

    put("eof7.conf", "record 'it\\'s");
    err = parse("eof7.conf", &rc);
    is_str(err, "D/eof7.conf:1: unterminated quoted string\n", "escaped quote does not close");

    err = parse("nope.conf", &rc);
    is_str(err, "tollgate: cannot open config file \"D/nope.conf\": No such file or directory\n",
           "missing main file: no line number");
    is_int(rc, -2, "missing main file fails, nothing else checked");
}

static void test_include(void)
{
    int rc;
    char *err;

    mkd("inc");
    mkd("inc/sub");
    mkd("inc/empty");
    put("inc/sub/b.conf", "record b;\n");
    put("inc/sub/a.conf", "record a;\n\nbogus_in_a;\n");
    put("inc/sub/skip.txt", "bogus_never;\n");
    put("inc/srv.conf", "record in_srv;\nlocation /x { record in_loc; }\n");
    put("inc/main.conf", tg_arena_printf(&arena,
                                         "record before;\n"
                                         "include sub/*.conf;\n"
                                         "include empty/*.conf;\n"
                                         "include missing.conf;\n"
                                         "server {\n"
                                         "    include srv.conf;\n"
                                         "    record in_server;\n"
                                         "}\n"
                                         "include %s/inc/sub/b.conf;\n"
                                         "include nodir/x.conf;\n"
                                         "record after;\n",
                                         dir));
    err = parse("inc/main.conf", &rc);
    is_str(err,
           "D/inc/sub/a.conf:3: unknown directive \"bogus_in_a\"\n"
           "D/inc/main.conf:4: include \"missing.conf\": no such file\n"
           "D/inc/main.conf:10: include \"nodir/x.conf\": no such file\n",
           "include: errors name the included file; missing plain file is an error");
    is_str(rlog,
           "main|before\n"
           "main|a\n"
           "main|b\n"
           "server|in_srv\n"
           "server|location|/x\n"
           "loc /x|in_loc\n"
           "server|in_server\n"
           "main|b\n"
           "main|after\n",
           "include: sorted glob, relative to the including file, in the current scope");
    is_int(cf.nerrors, 3, "include: 3 errors");

    /* An included file cannot close the includer's block. */
    put("inc/closer.conf", "record c;\n}\n");
    put("inc/outer.conf", "server {\n  include closer.conf;\n  record still_server;\n}\n");
    err = parse("inc/outer.conf", &rc);
    is_str(err, "D/inc/closer.conf:2: unexpected \"}\"\n", "stray '}' in an included file");
    is_str(rlog, "server|c\nserver|still_server\n", "the includer's block continues");

    put("inc/unterminated.conf", "record x\n");
    put("inc/inc_unterm.conf", "include unterminated.conf;\nrecord next;\n");
    err = parse("inc/inc_unterm.conf", &rc);
    is_str(err, "D/inc/unterminated.conf:1: unexpected end of file, expecting \";\" or \"}\"\n",
           "EOF in an included file ends only that file");
    is_str(rlog, "main|next\n", "the includer goes on");

    mkd("loop");
    put("loop/a.conf", "record in_a;\ninclude b.conf;\n");
    put("loop/b.conf", "record in_b;\ninclude *.conf;\n");
    err = parse("loop/a.conf", &rc);
    is_str(err,
           "D/loop/b.conf:2: include \"*.conf\": \"D/loop/a.conf\" is already being parsed "
           "(include loop)\n"
           "D/loop/b.conf:2: include \"*.conf\": \"D/loop/b.conf\" is already being parsed "
           "(include loop)\n",
           "include loops are refused");
    is_str(rlog, "main|in_a\nmain|in_b\n", "each file of the loop parsed once");

    mkd("deep");
    for (int i = 0; i < 20; i++)
        put(tg_arena_printf(&arena, "deep/d%d.conf", i),
            tg_arena_printf(&arena, "count x;\ninclude d%d.conf;\n", i + 1));
    counted = 0;
    err = parse("deep/d0.conf", &rc);
    is_str(err,
           "D/deep/d16.conf:2: include \"d17.conf\": nested too deeply (more than 16 levels)\n",
           "include depth is limited");
    is_int(counted, 17, "16 levels of include below the main file were parsed");

    /* Glob characters in the includer's directory are not wildcards. */
    mkd("we[i]rd");
    put("we[i]rd/main.conf", "include part.conf;\n");
    put("we[i]rd/part.conf", "record weird;\n");
    err = parse("we[i]rd/main.conf", &rc);
    ok(rc == 0 && err[0] == '\0' && strcmp(rlog, "main|weird\n") == 0,
       "glob characters in the includer's directory are literal");

    put("inc/dir.conf", "include sub;\n");
    err = parse("inc/dir.conf", &rc);
    is_str(err, "D/inc/dir.conf:1: could not open \"D/inc/sub\": Is a directory\n",
           "including a directory");
}

static void test_limits(void)
{
    int rc;
    char *err, *text;

    text = tg_arena_strdup(&arena, TG_STR("record"));
    for (int i = 1; i <= TG_CONF_MAX_ARGS; i++)
        text = tg_arena_printf(&arena, "%s a%d", text, i);
    put("max.conf", tg_arena_printf(&arena, "%s;\n%s extra;\nrecord ok;\n", text, text));
    err = parse("max.conf", &rc);
    is_str(err, "D/max.conf:2: too many arguments in \"record\" directive\n",
           "more than TG_CONF_MAX_ARGS arguments");
    ok(strstr(rlog, "|a64\nmain|ok\n") != NULL, "exactly TG_CONF_MAX_ARGS arguments are fine");

    /* A large file: nothing in the parser depends on its size. */
    {
        FILE *f = fopen(in_dir("big.conf"), "w");
        for (int i = 0; i < 200000; i++)
            fprintf(f, "count \"%d\" 'word' x;  # line %d\n", i, i);
        fclose(f);
    }
    counted = 0;
    err = parse("big.conf", &rc);
    ok(rc == 0 && err[0] == '\0', "200000-line file parses");
    is_int(counted, 600000, "every statement of the big file ran");

    put("warn.conf", "\nwarnme this;\n");
    err = parse("warn.conf", &rc);
    is_str(err, "D/warn.conf:2: warning: careful with this\n", "warning format");
    ok(rc == 0 && cf.nwarnings == 1 && cf.nerrors == 0, "warnings do not fail the parse");
}

static void test_helpers(void)
{
    tg_conf_t c = {.arena = &arena};
    tg_str_t v = TG_STR("unset");

    c.args[0].text = TG_STR("health_check");
    c.args[1].text = TG_STR("path=/healthz");
    c.args[2].text = TG_STR("interval=");
    c.args[3].text = TG_STR("pathology");
    c.nargs = 3;
    ok(tg_conf_arg_kv(&c, 1, "path", &v) && tg_str_eq_lit(v, "/healthz"), "arg_kv key=value");
    ok(tg_conf_arg_kv(&c, 2, "interval", &v) && v.len == 0, "arg_kv empty value");
    ok(!tg_conf_arg_kv(&c, 3, "path", &v), "arg_kv needs '=' after the key");
    ok(!tg_conf_arg_kv(&c, 1, "pat", &v), "arg_kv matches the whole key");
    ok(!tg_conf_arg_kv(&c, 4, "path", &v), "arg_kv past nargs");
    ok(!tg_conf_arg_kv(&c, 0, "health_check", &v), "arg_kv never looks at the name");
    is_str(tg_conf_errf(&c, "x=%d %s", 5, "y"), "x=5 y", "errf formats into the arena");

    tg_conf_prefix = "";
    is_str(tg_conf_path(&c, TG_STR("rel/p")), "rel/p", "empty prefix leaves paths relative");
    tg_conf_prefix = "/srv/tg";
    is_str(tg_conf_path(&c, TG_STR("conf/a")), "/srv/tg/conf/a", "tg_conf_path relative");
    is_str(tg_conf_path(&c, (tg_str_t){"/etc/x;junk", 6}), "/etc/x", "tg_conf_path uses len");
    tg_conf_prefix = NULL;

    /* Stock setters check their own preconditions too. */
    {
        static const tg_directive_t d = {"size", TG_SCOPE_MAIN, 0, 1, 1, tg_conf_set_size, 0};
        int64_t field = TG_CONF_UNSET;
        c.args[1].text = TG_STR("4k");
        c.nargs = 1;
        is_str(tg_conf_set_size(&c, &d, NULL),
               "\"size\" directive has no configuration in this scope", "setter without a config");
        is_str(tg_conf_set_size(&c, &d, &field), NULL, "setter on a bare int64_t");
        is_int(field, 4096, "set_size wrote the field at offset 0");
        c.nargs = 2;
        field = TG_CONF_UNSET;
        is_str(tg_conf_set_size(&c, &d, &field),
               "invalid number of arguments in \"size\" directive", "setter with two arguments");
    }
}

int main(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    tg_arena_init(&arena, 0);
    test_setters();
    test_lexer();
    test_scopes();
    test_errors();
    test_eof();
    test_include();
    test_limits();
    test_helpers();
    tg_arena_destroy(&arena);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
