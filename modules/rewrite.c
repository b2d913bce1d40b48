/* The rewrite module: `rewrite`, `return` and `break` (server, location),
 * nginx's rewrite directives without `if` and `set`.
 *
 * Each scope keeps its own directives in config order (a location does not
 * inherit the server's: the server's run before the location is chosen, in
 * the server rewrite phase; the location's in its rewrite phase). They run as
 * nginx runs them:
 *   rewrite REGEX REPLACEMENT [last|break|redirect|permanent];
 *     matched against $uri (decoded, normalized); $1..$9 and named groups
 *     in REPLACEMENT; a REPLACEMENT that starts with http://, https:// or
 *     $scheme, or the flags redirect (302) and permanent (301), answer with
 *     a redirect at once; otherwise the URI changes: the query follows
 *     unless REPLACEMENT ends with '?', and one in REPLACEMENT goes first.
 *     `last` stops the directives and routes the request again (the new
 *     location's rewrite directives run); no flag goes on with the next
 *     directive, then does the same; `break` stops and stays in this
 *     location (proxy_pass then sends the new URI as it is).
 *   return CODE [TEXT|URL]; return URL;  stops the directives; see below.
 *   break;  stops the directives.
 * The one difference from nginx: a `return` reached here answers in the
 * content phase, so the access checks (rate limits, allow/deny, Lua access)
 * apply to it as to any answer of the location. A server-level `return`
 * answers every request of the server (its location's directives do not
 * run). Routing again is the request layer's (tg_request_run_phases), which
 * bounds it (10 times, then 500). */
#include <stddef.h>
#include <string.h>
#include "module.h"
#include "request.h"
#include "var.h"
#include "log.h"

typedef enum { RW_REWRITE = 0, RW_RETURN, RW_BREAK } rw_kind_t;
typedef enum { RW_F_NONE = 0, RW_F_LAST, RW_F_BREAK, RW_F_REDIRECT, RW_F_PERMANENT } rw_flag_t;

typedef struct {
    rw_kind_t kind;
    rw_flag_t flag;
    pcre2_code *re;         /* rewrite: JIT compiled */
    tg_str_t re_src;        /* rewrite: the regex as written (for -T and --explain) */
    pcre2_match_data *md;   /* its match data (a worker runs one match at a time) */
    tg_tpl_t *text;         /* rewrite: REPLACEMENT; return: TEXT or URL (NULL: none) */
    int status;             /* return: the status; rewrite: 301/302 when it redirects */
    unsigned drop_args : 1; /* REPLACEMENT ends with '?': the client's query is dropped */
} rw_op_t;

typedef struct rw_conf_s {
    rw_op_t *ops; /* this scope's own, config order */
    int nops;
    struct rw_conf_s *srv; /* a location's: the server's (for its pending return) */
} rw_conf_t;

typedef struct {
    const rw_op_t *ret; /* a `return` reached: the content phase answers it */
} rw_ctx_t;

extern tg_module_t tg_rewrite_module;

static int is_redirect(int st)
{
    return st == 301 || st == 302 || st == 303 || st == 307 || st == 308;
}

static int is_url(tg_str_t s)
{
    return (s.len >= 7 && memcmp(s.p, "http://", 7) == 0) ||
           (s.len >= 8 && memcmp(s.p, "https://", 8) == 0) ||
           (s.len >= 7 && memcmp(s.p, "$scheme", 7) == 0);
}

static void *rw_create_conf(tg_conf_t *cf)
{
    return tg_arena_alloc(cf->arena, sizeof(rw_conf_t));
}

static const char *rw_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    rw_conf_t *p = parent, *c = child;
    /* not inherited: only a location's merge sees a parent with directives
     * (its server; the main scope has none) */
    c->srv = p->nops ? p : NULL;
    return NULL;
}

static rw_op_t *op_add(tg_conf_t *cf, rw_conf_t *c, rw_kind_t kind)
{
    rw_op_t *ops = tg_arena_grow(cf->arena, c->ops, (size_t)c->nops, 1, sizeof(*ops));
    if (ops == NULL)
        return NULL;
    c->ops = ops;
    rw_op_t *op = &ops[c->nops++];
    op->kind = kind;
    return op;
}

static void re_free(void *re)
{
    pcre2_code_free(re);
}

static void md_free(void *md)
{
    pcre2_match_data_free(md);
}

/* rewrite REGEX REPLACEMENT [last|break|redirect|permanent] */
static const char *set_rewrite(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_str_t src = tg_conf_arg(cf, 1), repl = tg_conf_arg(cf, 2);
    rw_flag_t flag = RW_F_NONE;
    if (cf->nargs == 3) {
        tg_str_t f = tg_conf_arg(cf, 3);
        if (tg_str_eq_lit(f, "last"))
            flag = RW_F_LAST;
        else if (tg_str_eq_lit(f, "break"))
            flag = RW_F_BREAK;
        else if (tg_str_eq_lit(f, "redirect"))
            flag = RW_F_REDIRECT;
        else if (tg_str_eq_lit(f, "permanent"))
            flag = RW_F_PERMANENT;
        else
            return tg_conf_errf(cf, "invalid flag \"%.*s\" in \"rewrite\", expected last, break, "
                                    "redirect or permanent",
                                TG_STR_FMT(f));
    }
    if (repl.len == 0)
        return "empty replacement in \"rewrite\"";
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src.p, src.len, 0, &errcode, &erroff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        return tg_conf_errf(cf, "invalid regex \"%.*s\" at offset %zu: %s", TG_STR_FMT(src),
                            (size_t)erroff, (char *)msg);
    }
    tg_arena_on_reset(cf->arena, re_free, re);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (md == NULL)
        return "out of memory";
    tg_arena_on_reset(cf->arena, md_free, md);
    int url = is_url(repl);
    int drop = repl.p[repl.len - 1] == '?';
    if (drop)
        repl.len--;
    if (flag != RW_F_REDIRECT && flag != RW_F_PERMANENT && !url &&
        (repl.len == 0 || (repl.p[0] != '/' && repl.p[0] != '$')))
        return tg_conf_errf(cf, "\"rewrite\" replacement \"%s\" must start with \"/\", "
                                "http://, https:// or $scheme",
                            cf->args[2].text.p);
    const char *err;
    tg_tpl_t *t = tg_tpl_compile_captures(cf, repl, re, &err);
    if (t == NULL)
        return err;
    rw_op_t *op = op_add(cf, conf, RW_REWRITE);
    if (op == NULL)
        return "out of memory";
    op->flag = flag;
    op->re = re;
    op->re_src = src;
    op->md = md;
    op->text = t;
    op->drop_args = drop;
    op->status = flag == RW_F_PERMANENT ? 301 : (flag == RW_F_REDIRECT || url) ? 302 : 0;
    return NULL;
}

/* return CODE [TEXT|URL] | return URL */
static const char *set_return(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_str_t code = tg_conf_arg(cf, 1), text = TG_NULL_STR;
    int64_t st;
    if (cf->nargs == 1 && is_url(code)) {
        st = 302;
        text = code;
    } else {
        if (tg_parse_int(code, &st) != 0 || st < 200 || st > 599)
            return tg_conf_errf(cf, "invalid return code \"%.*s\"", TG_STR_FMT(code));
        if (is_redirect((int)st) && cf->nargs < 2)
            return tg_conf_errf(cf, "\"return %d\" needs a URL", (int)st);
        if (cf->nargs == 2)
            text = tg_conf_arg(cf, 2);
    }
    const char *err;
    tg_tpl_t *t = NULL;
    if (text.p) {
        if (is_redirect((int)st) && (err = tg_conf_check_header(cf, TG_STR("Location"), text)))
            return err;
        if ((t = tg_tpl_compile(cf, text, &err)) == NULL)
            return err;
    }
    rw_op_t *op = op_add(cf, conf, RW_RETURN);
    if (op == NULL)
        return "out of memory";
    op->status = (int)st;
    op->text = t;
    return NULL;
}

static const char *set_break(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    return op_add(cf, conf, RW_BREAK) ? NULL : "out of memory";
}

static int rw_is_active(void *conf)
{
    rw_conf_t *c = conf;
    return c->nops > 0 || c->srv != NULL;
}

static rw_ctx_t *rw_ctx(tg_request_t *r)
{
    rw_ctx_t *x = tg_module_ctx(r, &tg_rewrite_module);
    if (x == NULL && (x = tg_arena_alloc(r->arena, sizeof(*x))) != NULL)
        tg_module_ctx(r, &tg_rewrite_module) = x;
    return x;
}

/* Answer a rewrite's redirect: Location is the replacement with the query
 * appended (unless dropped). */
static tg_rc_t rewrite_redirect(tg_request_t *r, const rw_op_t *op, tg_str_t to)
{
    if (!op->drop_args && r->args.len) {
        int has_q = memchr(to.p, '?', to.len) != NULL;
        char *u = tg_arena_printf(r->arena, "%.*s%c%.*s", TG_STR_FMT(to), has_q ? '&' : '?',
                                  TG_STR_FMT(r->args));
        if (u == NULL)
            return TG_ERROR;
        to = tg_str_c(u);
    }
    for (size_t i = 0; i < to.len; i++)
        if ((unsigned char)to.p[i] < 0x20 || to.p[i] == 0x7f)
            return TG_ERROR; /* a capture from a decoded path: not for a header */
    char *page = tg_arena_printf(r->arena, "%d %s\n", op->status, tg_status_reason(op->status));
    if (page == NULL || tg_request_add_resp_header(r, TG_STR("Location"), to) != 0 ||
        tg_request_respond(r, op->status, "text/plain", tg_str_c(page)) != 0)
        return TG_ERROR;
    return TG_DONE;
}

/* The new URI from a rewrite's replacement: its query first, then the
 * client's (unless dropped). */
static int rewrite_uri(tg_request_t *r, const rw_op_t *op, tg_str_t to)
{
    const char *q = memchr(to.p, '?', to.len);
    tg_str_t path = q ? (tg_str_t){to.p, (size_t)(q - to.p)} : to;
    tg_str_t args = q ? (tg_str_t){q + 1, to.len - path.len - 1} : (tg_str_t){"", 0};
    if (!op->drop_args && r->args.len) {
        if (args.len == 0) {
            args = r->args;
        } else {
            char *a = tg_arena_printf(r->arena, "%.*s&%.*s", TG_STR_FMT(args),
                                      TG_STR_FMT(r->args));
            if (a == NULL)
                return -1;
            args = tg_str_c(a);
        }
    }
    if (path.len == 0 || path.p[0] != '/')
        return -1;
    return tg_request_set_uri(r, path, args);
}

/* Run one scope's directives. `server`: the server rewrite phase. */
static tg_rc_t rw_run(tg_request_t *r, rw_conf_t *c, int server)
{
    rw_ctx_t *x = rw_ctx(r);
    if (x == NULL)
        return TG_ERROR;
    if (!server && x->ret)
        return TG_OK; /* the server's return answers: nginx never gets here */
    for (int i = 0; i < c->nops; i++) {
        const rw_op_t *op = &c->ops[i];
        if (op->kind == RW_BREAK)
            break;
        if (op->kind == RW_RETURN) {
            x->ret = op;
            r->uri_stays = 1; /* answered here, whatever the URI became */
            break;
        }
        int n = pcre2_match(op->re, (PCRE2_SPTR)r->path.p, r->path.len, 0, 0, op->md, NULL);
        if (n == PCRE2_ERROR_NOMATCH)
            continue;
        if (n < 0) {
            tg_log(TG_LOG_ERROR, "rewrite: pcre2_match failed (%d) on \"%.*s\"", n,
                       TG_STR_FMT(r->path));
            return TG_ERROR;
        }
        tg_str_t to;
        if (tg_request_set_captures(r, r->path, pcre2_get_ovector_pointer(op->md),
                                    (int)pcre2_get_ovector_count(op->md)) != 0 ||
            tg_tpl_eval(r, op->text, &to) != 0)
            return TG_ERROR;
        if (op->status)
            return rewrite_redirect(r, op, to);
        if (rewrite_uri(r, op, to) != 0) {
            tg_log(TG_LOG_ERROR, "rewrite: \"%.*s\" is not a path", TG_STR_FMT(to));
            return TG_ERROR;
        }
        if (op->flag == RW_F_BREAK) {
            r->uri_stays = !server;
            break;
        }
        r->uri_relocate = 1;
        if (op->flag == RW_F_LAST)
            break;
    }
    return TG_OK;
}

static tg_rc_t rw_server_rewrite(tg_request_t *r, void *conf)
{
    return rw_run(r, conf, 1);
}

static tg_rc_t rw_rewrite(tg_request_t *r, void *conf)
{
    return rw_run(r, conf, 0);
}

/* Content phase: answer the `return` the directives reached. */
static tg_rc_t rw_content(tg_request_t *r, void *conf)
{
    (void)conf;
    rw_ctx_t *x = tg_module_ctx(r, &tg_rewrite_module);
    if (x == NULL || x->ret == NULL)
        return TG_OK;
    const rw_op_t *op = x->ret;
    tg_str_t text = TG_NULL_STR;
    int st = op->status;
    if (op->text && tg_tpl_eval(r, op->text, &text) != 0)
        return TG_ERROR;
    if (is_redirect(st)) {
        if (tg_request_add_resp_header(r, TG_STR("Location"), text) != 0)
            return TG_ERROR;
        char *page = tg_arena_printf(r->arena, "%d %s\n", st, tg_status_reason(st));
        text = page ? tg_str_c(page) : TG_NULL_STR;
    } else if (text.len == 0 && st >= 300) {
        tg_request_error(r, st); /* the standard page, or the error_page */
        return TG_AGAIN;         /* answered */
    }
    if (tg_request_respond(r, st, "text/plain", text) != 0)
        return TG_ERROR;
    return TG_DONE;
}

/* --explain and -T: this scope's rules in order (listed, not run: which
 * one applies depends on the request). */
static const char *rw_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    static const char *const flags[] = {"", " last", " break", " redirect", " permanent"};
    rw_conf_t *c = conf;
    char *s = tg_arena_printf(a, "%s", c->nops || c->srv ? "" : "(none here)");
    for (int i = 0; s && i < c->nops; i++) {
        const rw_op_t *op = &c->ops[i];
        const char *sep = i ? "; " : "";
        if (op->kind == RW_REWRITE)
            s = tg_arena_printf(a, "%s%srewrite %.*s %.*s%s%s", s, sep, TG_STR_FMT(op->re_src),
                                TG_STR_FMT(op->text->src), op->drop_args ? "?" : "",
                                flags[op->flag]);
        else if (op->kind == RW_RETURN && op->text)
            s = tg_arena_printf(a, "%s%sreturn %d %.*s", s, sep, op->status,
                                TG_STR_FMT(op->text->src));
        else if (op->kind == RW_RETURN)
            s = tg_arena_printf(a, "%s%sreturn %d", s, sep, op->status);
        else
            s = tg_arena_printf(a, "%s%sbreak", s, sep);
    }
    if (s && c->srv)
        s = tg_arena_printf(a, "%s%sthe server's return, when its rewrite phase reached one", s,
                            c->nops ? "; " : "");
    return s;
}

static const tg_directive_t rw_directives[] = {
    {"rewrite", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 2, 3, set_rewrite, 0},
    {"return", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, 2, set_return, 0},
    {"break", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 0, 0, set_break, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_rewrite_module = {
    .name = "rewrite",
    .directives = rw_directives,
    .create_conf = rw_create_conf,
    .merge_conf = rw_merge_conf,
    .is_active = rw_is_active,
    .explain = rw_explain,
    .on_server_rewrite = rw_server_rewrite,
    .on_rewrite = rw_rewrite,
    .on_content = rw_content,
};
