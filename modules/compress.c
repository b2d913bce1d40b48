/* compress: gzip, brotli and zstd compression of responses, streamed, so a
 * Node app can drop the `compression` middleware and its event loop stops
 * paying for it.
 *
 *   compress gzip|br|zstd ... | off;     codings offered, in preference order
 *   compress_level gzip=N br=N zstd=N;   per coding (defaults 6, 4, 3)
 *   compress_min_length SIZE;            smaller bodies are sent as they are
 *   compress_types TYPE ...;             media types; a subtype "*" matches any
 *
 * Response headers: a response is left alone when it has no body (1xx, 204),
 * is a partial answer or a Range request (206), an upgrade, says
 * Cache-Control: no-transform, or has a type not listed. Otherwise it gets
 * Vary: Accept-Encoding (even when it is not compressed after all: caches
 * must know the answer depends on it), and then answers the app encoded
 * already, HEAD and 304 answers stop there. The coding comes from Accept-Encoding
 * (src/accept_encoding.c). With a Content-Length the size decides at once;
 * without one the header is held (r->header_hold) and the first min_length
 * body bytes are kept in pool buffers: the decision comes when they are
 * there, or at the end of a shorter body. Event streams are decided at once
 * and flushed after every upstream round, so each event reaches the client
 * when it is sent. Compressing removes Content-Length (the core frames the
 * body chunked), adds Content-Encoding, weakens a strong ETag and drops
 * Accept-Ranges.
 *
 * Memory: per compressed response, one encoder (its window and tables are
 * fixed by the level: gzip window 32 KB/memLevel 8 at most, brotli lgwin 18,
 * zstd window log 20 and tables of at most 2^20 entries; smaller for a small
 * known length; docs/compression.md has the sizes per level) and the output
 * buffers of one round, from the worker's buffer pool. A round's output is
 * bounded: gzip and zstd emit at most a block per round, and brotli, which
 * could otherwise merge up to 512 KB of input into one metablock, is flushed
 * once 64 KB went in without output. Everything is released by an arena
 * cleanup, so an aborted request leaks nothing. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <brotli/encode.h>
#include <zstd.h>
#include <llhttp.h>
#include "module.h"
#include "request.h"
#include "accept_encoding.h"
#include "log.h"
#include "stats.h"
#include "compress.h"

enum { CZ_GZIP = 0, CZ_BR, CZ_ZSTD, CZ_NCODINGS };

static const char *const cz_names[CZ_NCODINGS] = {"gzip", "br", "zstd"};
static const int cz_default_level[CZ_NCODINGS] = {6, 4, 3};
static const int cz_min_level[CZ_NCODINGS] = {1, 0, 1};
static const int cz_max_level[CZ_NCODINGS] = {9, 11, 19};

#define CZ_DEFAULT_MIN_LENGTH 1024
#define CZ_MAX_MIN_LENGTH (64 * 1024) /* what a held body may use: 4 pool buffers */
#define CZ_MAX_HOLD 4
#define CZ_MAX_OUT 16                   /* output buffers per round (the filter contract) */
#define CZ_BR_FLUSH_AFTER (64 * 1024)   /* brotli input without output before a flush */
#define CZ_GZIP_WBITS 15
#define CZ_GZIP_MEMLEVEL 8
#define CZ_BR_LGWIN 18
#define CZ_ZSTD_WLOG 20
#define CZ_ZSTD_TABLE_LOG 20

/* What the `compression` package compresses by default (its `compressible`
 * check: text types, the +json, +text and +xml suffixes, and the types the
 * mime-db marks compressible), less application/octet-stream and the
 * VirtualBox disk images: downloads that are mostly compressed already. */
static const tg_str_t cz_default_types[] = {
    TG_STR("text/*"),
    TG_STR("*+json"),
    TG_STR("*+text"),
    TG_STR("*+xml"),
    TG_STR("application/json"),
    TG_STR("application/javascript"),
    TG_STR("application/ecmascript"),
    TG_STR("application/x-javascript"),
    TG_STR("application/xml"),
    TG_STR("application/xml-dtd"),
    TG_STR("application/wasm"),
    TG_STR("application/x-www-form-urlencoded"),
    TG_STR("application/dart"),
    TG_STR("application/vnd.dart"),
    TG_STR("application/postscript"),
    TG_STR("application/raml+yaml"),
    TG_STR("application/rtf"),
    TG_STR("application/toml"),
    TG_STR("application/tar"),
    TG_STR("application/x-tar"),
    TG_STR("application/x-sh"),
    TG_STR("application/x-httpd-php"),
    TG_STR("application/x-ns-proxy-autoconfig"),
    TG_STR("application/vnd.ms-fontobject"),
    TG_STR("application/vnd.ms-opentype"),
    TG_STR("font/otf"),
    TG_STR("font/ttf"),
    TG_STR("image/bmp"),
    TG_STR("image/x-ms-bmp"),
    TG_STR("image/x-icon"),
    TG_STR("image/vnd.microsoft.icon"),
    TG_STR("image/vnd.ms-dds"),
    TG_STR("image/vnd.adobe.photoshop"),
    TG_STR("message/rfc822"),
    TG_STR("model/gltf-binary"),
    TG_STR("x-shader/x-fragment"),
    TG_STR("x-shader/x-vertex"),
};

typedef struct {
    int enabled;                /* TG_CONF_UNSET, 0 (compress off), 1 */
    int ncodings;
    int codings[CZ_NCODINGS];   /* CZ_*, preference order */
    int level[CZ_NCODINGS];     /* by CZ_*; TG_CONF_UNSET until merged */
    int64_t min_length;         /* TG_CONF_UNSET until merged */
    const tg_str_t *types;      /* lowercase patterns; NULL until merged */
    int ntypes;
    tg_str_t offered[CZ_NCODINGS]; /* names of codings[], for the negotiation */
} cz_conf_t;

/* A deflate stream and the geometry it was made with (malloc'd: zlib's state
 * points back at it, and it may outlive the request in the idle cache). */
typedef struct {
    z_stream z;
    int wbits, memlevel;
} cz_gz_t;

/* Idle encoders of this worker (a worker is one process, one thread). A
 * full-size deflate state is four 64 KB blocks and a zstd context 2 to 11 MB
 * of tables; allocating them per response costs malloc, page faults each time
 * glibc hands the memory back, and for zstd zeroing fresh tables. Reset and
 * reused, a compressed response costs its compression only. Bounded; brotli
 * has no reset, its encoders are made per response. */
#define CZ_GZ_IDLE_MAX 16 /* 4 MB */
#define CZ_ZS_IDLE_MAX 4  /* 10 MB at the default level */
static cz_gz_t *gz_idle[CZ_GZ_IDLE_MAX];
static int gz_nidle;
static ZSTD_CCtx *zs_idle[CZ_ZS_IDLE_MAX];
static int zs_nidle;

typedef enum { CZ_PASS = 0, CZ_HOLD, CZ_ON, CZ_FINISHED } cz_state_t;
typedef enum { CZ_OP_PROCESS = 0, CZ_OP_FLUSH, CZ_OP_FINISH } cz_op_t;

/* Per-request state, from r->arena. */
typedef struct {
    cz_conf_t *conf;
    cz_state_t state;
    int coding;          /* CZ_* */
    int level;
    unsigned flush : 1;  /* event stream: flush every round */
    int64_t length;      /* Content-Length when known, else -1 (sizes the encoder) */
    /* body held while deciding (pool buffers, data at [start, last)) */
    tg_buf_t *hold[CZ_MAX_HOLD];
    int nhold;
    size_t held;
    /* output: pool buffers reused every round; `used` of them hold this round's bytes */
    tg_buf_t *out[CZ_MAX_OUT];
    int nout, used;
    tg_chain_t links[CZ_MAX_OUT];
    tg_buf_t end;        /* empty buffer carrying TG_BUF_F_LAST when a round has no bytes */
    /* encoder */
    cz_gz_t *gz;
    BrotliEncoderState *br;
    ZSTD_CCtx *zs;
    size_t br_unflushed; /* brotli input since its last output */
} cz_ctx_t;

tg_module_t tg_compress_module;

/* ---- configuration ----------------------------------------------------------- */

static void *cz_create_conf(tg_conf_t *cf)
{
    cz_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->enabled = TG_CONF_UNSET;
    for (int i = 0; i < CZ_NCODINGS; i++)
        c->level[i] = TG_CONF_UNSET;
    c->min_length = TG_CONF_UNSET;
    return c;
}

static const char *cz_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    cz_conf_t *p = parent, *c = child;
    if (c->enabled == TG_CONF_UNSET) {
        c->enabled = p->enabled;
        c->ncodings = p->ncodings;
        memcpy(c->codings, p->codings, sizeof(c->codings));
    }
    if (c->enabled == TG_CONF_UNSET)
        c->enabled = 0;
    for (int i = 0; i < CZ_NCODINGS; i++)
        TG_CONF_MERGE(c->level[i], p->level[i], cz_default_level[i]);
    TG_CONF_MERGE(c->min_length, p->min_length, CZ_DEFAULT_MIN_LENGTH);
    if (c->types == NULL) {
        c->types = p->types;
        c->ntypes = p->ntypes;
    }
    if (c->types == NULL) {
        c->types = cz_default_types;
        c->ntypes = (int)(sizeof(cz_default_types) / sizeof(cz_default_types[0]));
    }
    for (int i = 0; i < c->ncodings; i++)
        c->offered[i] = tg_str_c(cz_names[c->codings[i]]);
    return NULL;
}

static int coding_by_name(tg_str_t name)
{
    for (int i = 0; i < CZ_NCODINGS; i++)
        if (tg_str_eq_lit(name, cz_names[i]))
            return i;
    return -1;
}

static const char *set_compress(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    cz_conf_t *c = conf;
    if (c->enabled != TG_CONF_UNSET)
        return "\"compress\" directive is duplicate";
    if (cf->nargs == 1 && tg_str_eq_lit(tg_conf_arg(cf, 1), "off")) {
        c->enabled = 0;
        return NULL;
    }
    for (int i = 1; i <= cf->nargs; i++) {
        int k = coding_by_name(tg_conf_arg(cf, i));
        if (k < 0)
            return tg_conf_errf(cf, "\"compress\": unknown encoding \"%s\", expected gzip, br or "
                                    "zstd (or off alone)",
                                cf->args[i].text.p);
        for (int j = 0; j < c->ncodings; j++)
            if (c->codings[j] == k)
                return tg_conf_errf(cf, "\"compress\": encoding \"%s\" is listed twice",
                                    cz_names[k]);
        c->codings[c->ncodings++] = k;
    }
    c->enabled = 1;
    return NULL;
}

static const char *set_level(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    cz_conf_t *c = conf;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t a = tg_conf_arg(cf, i);
        const char *eq = memchr(a.p, '=', a.len);
        int k = eq ? coding_by_name((tg_str_t){a.p, (size_t)(eq - a.p)}) : -1;
        if (k < 0)
            return tg_conf_errf(cf, "invalid parameter \"%s\" in \"compress_level\", expected "
                                    "gzip=N, br=N or zstd=N",
                                a.p);
        int64_t v;
        tg_str_t num = {eq + 1, (size_t)(a.p + a.len - eq - 1)};
        if (tg_parse_int(num, &v) != 0 || v < cz_min_level[k] || v > cz_max_level[k])
            return tg_conf_errf(cf, "invalid %s level \"%.*s\" in \"compress_level\", expected "
                                    "%d to %d",
                                cz_names[k], TG_STR_FMT(num), cz_min_level[k], cz_max_level[k]);
        if (c->level[k] != TG_CONF_UNSET)
            return tg_conf_errf(cf, "\"compress_level\": %s level is duplicate", cz_names[k]);
        c->level[k] = (int)v;
        if (k == CZ_BR && v >= 7 && v <= 9)
            tg_conf_warn(cf, "\"compress_level\": br=%d needs 10 to 35 MB per response being "
                             "compressed; 4 to 6 need 2 to 4 MB",
                         (int)v);
        else if (k == CZ_BR && v >= 10)
            tg_conf_warn(cf, "\"compress_level\": br=%d is meant for static files, far too "
                             "slow for responses made per request",
                         (int)v);
    }
    return NULL;
}

static const char *set_min_length(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    cz_conf_t *c = conf;
    const char *err = tg_conf_set_size(cf, d, conf);
    if (err)
        return err;
    if (c->min_length > CZ_MAX_MIN_LENGTH)
        return tg_conf_errf(cf, "\"compress_min_length\" %s is too big, at most 64k (a body "
                                "without Content-Length is held up to that size)",
                            cf->args[1].text.p);
    return NULL;
}

/* "type/subtype", "type/" followed by "*", "*+suffix" (any type whose
 * subtype ends with +suffix), or "*" */
static int is_type_pattern(tg_str_t t)
{
    if (tg_str_eq_lit(t, "*"))
        return 1;
    if (t.len > 2 && t.p[0] == '*' && t.p[1] == '+')
        return tg_conf_is_token((tg_str_t){t.p + 2, t.len - 2});
    const char *slash = memchr(t.p, '/', t.len);
    if (slash == NULL)
        return 0;
    tg_str_t type = {t.p, (size_t)(slash - t.p)};
    tg_str_t sub = {slash + 1, (size_t)(t.p + t.len - slash - 1)};
    return tg_conf_is_token(type) && (tg_str_eq_lit(sub, "*") || tg_conf_is_token(sub));
}

static const char *set_types(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    cz_conf_t *c = conf;
    if (c->types)
        return "\"compress_types\" directive is duplicate";
    tg_str_t *t = tg_arena_alloc(cf->arena, (size_t)cf->nargs * sizeof(*t));
    if (t == NULL)
        return "out of memory";
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t a = tg_conf_arg(cf, i);
        if (!is_type_pattern(a))
            return tg_conf_errf(cf, "invalid type \"%s\" in \"compress_types\", expected "
                                    "type/subtype, type/*, *+suffix or *",
                                a.p);
        char *low = (char *)a.p; /* the argument is an arena copy of its own */
        for (size_t k = 0; k < a.len; k++)
            if (low[k] >= 'A' && low[k] <= 'Z')
                low[k] = (char)(low[k] + 'a' - 'A');
        t[i - 1] = a;
    }
    c->types = t;
    c->ntypes = cf->nargs;
    return NULL;
}

static int cz_is_active(void *conf)
{
    cz_conf_t *c = conf;
    return c->enabled == 1 && c->ncodings > 0;
}

/* --explain and -T: codings in preference order with levels, the minimum
 * length and the types. */
static const char *cz_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    cz_conf_t *c = conf;
    char *s = tg_arena_printf(a, "codings=");
    for (int i = 0; s && i < c->ncodings; i++)
        s = tg_arena_printf(a, "%s%s%s:%d", s, i ? "," : "", cz_names[c->codings[i]],
                            c->level[c->codings[i]]);
    if (s)
        s = tg_arena_printf(a, "%s min_length=%lld types=", s, (long long)c->min_length);
    for (int i = 0; s && i < c->ntypes; i++)
        s = tg_arena_printf(a, "%s%s%.*s", s, i ? "," : "", TG_STR_FMT(c->types[i]));
    return s;
}

/* ---- deciding, on the response header ----------------------------------------- */

/* The media type of a Content-Type value: before any ';', trimmed. */
static tg_str_t media_type(tg_str_t ctype)
{
    const char *semi = memchr(ctype.p, ';', ctype.len);
    if (semi)
        ctype.len = (size_t)(semi - ctype.p);
    return tg_str_trim(ctype);
}

static int type_listed(const cz_conf_t *c, tg_str_t mt)
{
    for (int i = 0; i < c->ntypes; i++) {
        tg_str_t p = c->types[i];
        if (tg_str_eq_lit(p, "*") || tg_str_eq_lit(p, "*/*"))
            return 1;
        if (p.p[0] == '*') { /* "*+json": the subtype's suffix */
            tg_str_t sfx = {p.p + 1, p.len - 1};
            const char *slash = memchr(mt.p, '/', mt.len);
            if (slash && (size_t)(mt.p + mt.len - slash - 1) > sfx.len &&
                tg_str_caseeq((tg_str_t){mt.p + mt.len - sfx.len, sfx.len}, sfx))
                return 1;
        } else if (p.len >= 2 && p.p[p.len - 1] == '*') { /* type wildcard: the prefix, slash included */
            if (mt.len > p.len - 1 && tg_str_caseeq((tg_str_t){mt.p, p.len - 1},
                                                    (tg_str_t){p.p, p.len - 1}))
                return 1;
        } else if (tg_str_caseeq(mt, p)) {
            return 1;
        }
    }
    return 0;
}

static int has_no_transform(tg_headers_t *hs)
{
    for (uint32_t i = 0; i < hs->n; i++)
        if (tg_str_caseeq_lit(hs->h[i].name, "Cache-Control") &&
            tg_str_has_token(hs->h[i].value, "no-transform"))
            return 1;
    return 0;
}

/* The coding the client takes, as an index into conf->codings, or -1. */
static int negotiate(tg_request_t *r, const cz_conf_t *c)
{
    tg_accept_encoding_t ae;
    tg_accept_encoding_init(&ae, c->offered, c->ncodings);
    for (uint32_t i = 0; i < r->headers.n; i++)
        if (tg_str_caseeq_lit(r->headers.h[i].name, "Accept-Encoding"))
            tg_accept_encoding_add(&ae, r->headers.h[i].value);
    return tg_accept_encoding_pick(&ae);
}

static void ctx_cleanup(void *data);

/* The encoder for c->coding, sized by c->length. Returns 0 or -1. */
static int encoder_create(cz_ctx_t *c)
{
    int64_t len = c->length;
    if (c->coding == CZ_GZIP) {
        /* a small body needs no 32 KB window (as nginx does it) */
        int wbits = CZ_GZIP_WBITS, memlevel = CZ_GZIP_MEMLEVEL;
        while (len > 0 && wbits > 9 && len < (1 << (wbits - 1)) - 262) {
            wbits--;
            if (memlevel > 1)
                memlevel--;
        }
        if (wbits == CZ_GZIP_WBITS && memlevel == CZ_GZIP_MEMLEVEL && gz_nidle > 0) {
            cz_gz_t *g = gz_idle[--gz_nidle];
            if (deflateReset(&g->z) != Z_OK ||
                deflateParams(&g->z, c->level, Z_DEFAULT_STRATEGY) != Z_OK) {
                deflateEnd(&g->z);
                free(g);
                return -1;
            }
            c->gz = g;
            return 0;
        }
        cz_gz_t *g = malloc(sizeof(*g));
        if (g == NULL)
            return -1;
        memset(g, 0, sizeof(*g));
        g->wbits = wbits;
        g->memlevel = memlevel;
        if (deflateInit2(&g->z, c->level, Z_DEFLATED, wbits + 16, memlevel,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            free(g);
            return -1;
        }
        c->gz = g;
        return 0;
    }
    if (c->coding == CZ_BR) {
        if ((c->br = BrotliEncoderCreateInstance(NULL, NULL, NULL)) == NULL)
            return -1;
        int lgwin = CZ_BR_LGWIN;
        while (len > 0 && lgwin > BROTLI_MIN_WINDOW_BITS && len <= (1 << (lgwin - 1)))
            lgwin--;
        BrotliEncoderSetParameter(c->br, BROTLI_PARAM_QUALITY, (uint32_t)c->level);
        BrotliEncoderSetParameter(c->br, BROTLI_PARAM_LGWIN, (uint32_t)lgwin);
        if (len > 0)
            BrotliEncoderSetParameter(c->br, BROTLI_PARAM_SIZE_HINT,
                                      len < (1 << 30) ? (uint32_t)len : 1u << 30);
        return 0;
    }
    if (zs_nidle > 0) {
        ZSTD_CCtx *z = zs_idle[--zs_nidle];
        if (ZSTD_isError(ZSTD_CCtx_reset(z, ZSTD_reset_session_and_parameters))) {
            ZSTD_freeCCtx(z);
            return -1;
        }
        c->zs = z;
    } else if ((c->zs = ZSTD_createCCtx()) == NULL) {
        return -1;
    }
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c->zs, ZSTD_c_compressionLevel, c->level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c->zs, ZSTD_c_windowLog, CZ_ZSTD_WLOG)))
        return -1;
    /* From level 9 on, zstd's match tables grow to 85 MB at level 19; levels up to 8 stay
     * within 2^20 entries, so the same bound keeps every level under about 11 MB. */
    if (c->level >= 9 &&
        (ZSTD_isError(ZSTD_CCtx_setParameter(c->zs, ZSTD_c_hashLog, CZ_ZSTD_TABLE_LOG)) ||
         ZSTD_isError(ZSTD_CCtx_setParameter(c->zs, ZSTD_c_chainLog, CZ_ZSTD_TABLE_LOG))))
        return -1;
    if (len >= 0 && ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c->zs, (unsigned long long)len)))
        return -1;
    return 0;
}

/* Give the encoder back: to the idle cache when it has room (reset when
 * taken again), else to the system. */
static void encoder_destroy(cz_ctx_t *c)
{
    if (c->gz) {
        cz_gz_t *g = c->gz;
        if (g->wbits == CZ_GZIP_WBITS && g->memlevel == CZ_GZIP_MEMLEVEL &&
            gz_nidle < CZ_GZ_IDLE_MAX) {
            gz_idle[gz_nidle++] = g;
        } else {
            deflateEnd(&g->z);
            free(g);
        }
        c->gz = NULL;
    }
    if (c->br) {
        BrotliEncoderDestroyInstance(c->br);
        c->br = NULL;
    }
    if (c->zs) {
        if (zs_nidle < CZ_ZS_IDLE_MAX)
            zs_idle[zs_nidle++] = c->zs;
        else
            ZSTD_freeCCtx(c->zs);
        c->zs = NULL;
    }
}

static void cz_exit_worker(tg_worker_t *w)
{
    (void)w;
    while (gz_nidle > 0) {
        cz_gz_t *g = gz_idle[--gz_nidle];
        deflateEnd(&g->z);
        free(g);
    }
    while (zs_nidle > 0)
        ZSTD_freeCCtx(zs_idle[--zs_nidle]);
}

static void ctx_cleanup(void *data)
{
    cz_ctx_t *c = data;
    encoder_destroy(c);
    for (int i = 0; i < c->nhold; i++)
        tg_buf_put(c->hold[i]);
    for (int i = 0; i < c->nout; i++)
        tg_buf_put(c->out[i]);
    c->nhold = c->nout = 0;
}

/* The header changes of a response compressed with `coding`. 0 or -1. */
int tg_compress_mark(tg_request_t *r, const char *coding)
{
    tg_headers_t *hs = &r->resp_headers;
    if (tg_headers_set(r->arena, hs, TG_STR("Content-Encoding"), tg_str_c(coding)))
        return -1;
    tg_headers_remove(hs, TG_STR("Content-Length"));
    tg_headers_remove(hs, TG_STR("Accept-Ranges"));
    return tg_request_etag_weaken(r) != 0 || tg_request_vary_add(r, "Accept-Encoding") != 0
               ? -1 : 0;
}

/* Switch compression on: the encoder, and the header changes that go with
 * it. Returns 0 or -1. */
static int compress_start(tg_request_t *r, cz_ctx_t *c)
{
    if (encoder_create(c) != 0) {
        tg_log(TG_LOG_ERROR, "compress: cannot create the %s encoder (out of memory?)",
               cz_names[c->coding]);
        return -1;
    }
    if (tg_compress_mark(r, cz_names[c->coding]) != 0)
        return -1;
    r->resp_content_length = -1;
    c->state = CZ_ON;
    tg_stats_count(TG_STATS_COMPRESSED, 1);
    return 0;
}

/* What happens to the response as it is now: CD_NONE left alone, CD_VARY
 * only Vary: Accept-Encoding, CD_ON compressed with c->codings[*k] (or
 * decided on its first min_length bytes when its length is unknown). */
enum { CD_NONE = 0, CD_VARY, CD_ON };

static int decide(tg_request_t *r, const cz_conf_t *c, int *k)
{
    int st = r->status;
    if (st < 200 || st == 204 || st == 206 || r->upgrade ||
        tg_headers_find(&r->headers, TG_STR("Range")))
        return CD_NONE;
    tg_header_t *ct = tg_headers_find(&r->resp_headers, TG_STR("Content-Type"));
    if (ct == NULL || !type_listed(c, media_type(ct->value)))
        return CD_NONE;
    if (has_no_transform(&r->resp_headers) || has_no_transform(&r->headers))
        return CD_NONE;
    tg_header_t *ce = tg_headers_find(&r->resp_headers, TG_STR("Content-Encoding"));
    if ((ce && !tg_str_caseeq_lit(tg_str_trim(ce->value), "identity")) ||
        r->method == HTTP_HEAD || st == 304)
        return CD_VARY;
    int64_t len = r->resp_content_length;
    if ((*k = negotiate(r, c)) < 0 || len == 0 || (len > 0 && len < c->min_length))
        return CD_VARY;
    return CD_ON;
}

const char *tg_compress_choice(tg_request_t *r)
{
    cz_conf_t *c = tg_module_conf(r, &tg_compress_module);
    int k;
    if (!cz_is_active(c) || decide(r, c, &k) != CD_ON)
        return NULL;
    return cz_names[c->codings[k]];
}

int tg_compress_state(tg_request_t *r, const char **coding)
{
    cz_ctx_t *x = tg_module_ctx(r, &tg_compress_module);
    if (x == NULL || x->state == CZ_PASS)
        return -1;
    if (x->state == CZ_HOLD)
        return 0;
    *coding = cz_names[x->coding];
    return 1;
}

static tg_rc_t cz_response_headers(tg_request_t *r, void *conf)
{
    cz_conf_t *c = conf;
    if (tg_module_ctx(r, &tg_compress_module)) { /* a second answer (error page): start over */
        tg_module_ctx(r, &tg_compress_module) = NULL;
        r->header_hold = 0;
    }
    int k = -1, d = decide(r, c, &k);
    if (d == CD_NONE)
        return TG_OK;
    /* Vary as the compression package adds it: also on an answer the app
     * encoded itself (it chose by Accept-Encoding too) */
    if (tg_request_vary_add(r, "Accept-Encoding") != 0)
        return TG_ERROR;
    if (d == CD_VARY)
        return TG_OK;
    int64_t len = r->resp_content_length;
    tg_str_t mt = media_type(tg_headers_find(&r->resp_headers, TG_STR("Content-Type"))->value);

    cz_ctx_t *x = tg_arena_alloc(r->arena, sizeof(*x));
    if (x == NULL || tg_arena_on_reset(r->arena, ctx_cleanup, x) != 0)
        return TG_ERROR;
    x->conf = c;
    x->coding = c->codings[k];
    x->level = c->level[x->coding];
    x->length = len;
    x->flush = tg_str_caseeq_lit(mt, "text/event-stream");
    x->end.flags = TG_BUF_F_LAST;
    tg_module_ctx(r, &tg_compress_module) = x;
    r->body_filter = 1; /* file bodies must come through the filter, not by sendfile */
    tg_headers_remove(&r->resp_headers, TG_STR("Content-Encoding")); /* identity */
    if (len < 0 && !x->flush && c->min_length > 0) {
        x->state = CZ_HOLD; /* decide on the first min_length bytes */
        r->header_hold = 1;
        return TG_OK;
    }
    return compress_start(r, x) == 0 ? TG_OK : TG_ERROR;
}

/* ---- encoders -------------------------------------------------------------------- */

/* The buffer to write output into: the current one while it has room, else
 * the next (taken from the pool the first time). NULL when the round has
 * used all CZ_MAX_OUT buffers or the pool is empty. */
static tg_buf_t *out_buf(cz_ctx_t *c)
{
    if (c->used > 0 && tg_buf_room(c->out[c->used - 1]) > 0)
        return c->out[c->used - 1];
    if (c->used == CZ_MAX_OUT)
        return NULL;
    if (c->used == c->nout) {
        tg_buf_t *b = tg_buf_get();
        if (b == NULL)
            return NULL;
        c->out[c->nout++] = b;
    }
    tg_buf_t *b = c->out[c->used++];
    b->pos = b->last = b->start;
    b->flags = TG_BUF_F_OWNED;
    return b;
}

static int gz_run(cz_ctx_t *c, const char *p, size_t len, cz_op_t op)
{
    z_stream *z = &c->gz->z;
    int flush = op == CZ_OP_FINISH ? Z_FINISH : op == CZ_OP_FLUSH ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    z->next_in = (Bytef *)p;
    z->avail_in = (uInt)len;
    for (;;) {
        tg_buf_t *b = out_buf(c);
        if (b == NULL)
            return -1;
        z->next_out = (Bytef *)b->last;
        z->avail_out = (uInt)tg_buf_room(b);
        int rc = deflate(z, flush);
        b->last = (char *)z->next_out;
        if (rc == Z_STREAM_END)
            return 0;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return -1;
        /* room left over: everything that can come out did */
        if (flush != Z_FINISH && z->avail_in == 0 && z->avail_out > 0)
            return 0;
    }
}

static int br_run(cz_ctx_t *c, const char *p, size_t len, cz_op_t op)
{
    BrotliEncoderOperation bop = op == CZ_OP_FINISH  ? BROTLI_OPERATION_FINISH
                                 : op == CZ_OP_FLUSH ? BROTLI_OPERATION_FLUSH
                                                     : BROTLI_OPERATION_PROCESS;
    c->br_unflushed += len;
    if (bop == BROTLI_OPERATION_PROCESS && c->br_unflushed >= CZ_BR_FLUSH_AFTER)
        bop = BROTLI_OPERATION_FLUSH; /* bound the next metablock, hence this round's output */
    const uint8_t *next_in = (const uint8_t *)p;
    size_t avail_in = len;
    for (;;) {
        tg_buf_t *b = out_buf(c);
        if (b == NULL)
            return -1;
        uint8_t *next_out = (uint8_t *)b->last;
        size_t avail_out = tg_buf_room(b);
        if (!BrotliEncoderCompressStream(c->br, bop, &avail_in, &next_in, &avail_out, &next_out,
                                         NULL))
            return -1;
        if ((char *)next_out != b->last)
            c->br_unflushed = 0;
        b->last = (char *)next_out;
        if (avail_in == 0 && !BrotliEncoderHasMoreOutput(c->br) &&
            (bop != BROTLI_OPERATION_FINISH || BrotliEncoderIsFinished(c->br)))
            return 0;
    }
}

static int zs_run(cz_ctx_t *c, const char *p, size_t len, cz_op_t op)
{
    ZSTD_EndDirective mode = op == CZ_OP_FINISH  ? ZSTD_e_end
                             : op == CZ_OP_FLUSH ? ZSTD_e_flush
                                                 : ZSTD_e_continue;
    ZSTD_inBuffer in = {p, len, 0};
    for (;;) {
        tg_buf_t *b = out_buf(c);
        if (b == NULL)
            return -1;
        ZSTD_outBuffer out = {b->last, tg_buf_room(b), 0};
        size_t left = ZSTD_compressStream2(c->zs, &out, &in, mode);
        b->last += out.pos;
        if (ZSTD_isError(left)) {
            tg_log(TG_LOG_ERROR, "compress: zstd: %s", ZSTD_getErrorName(left));
            return -1;
        }
        if (mode == ZSTD_e_continue ? in.pos == in.size && out.pos < out.size : left == 0)
            return 0;
    }
}

/* Feed bytes to the encoder (op PROCESS), or flush or finish it. */
static int encode(cz_ctx_t *c, const char *p, size_t len, cz_op_t op)
{
    int rc;
    if (op == CZ_OP_PROCESS && len == 0)
        return 0;
    switch (c->coding) {
    case CZ_GZIP: rc = gz_run(c, p, len, op); break;
    case CZ_BR: rc = br_run(c, p, len, op); break;
    default: rc = zs_run(c, p, len, op); break;
    }
    if (rc != 0 && c->used == CZ_MAX_OUT)
        tg_log(TG_LOG_ERROR, "compress: %s output of one round exceeds %d buffers",
               cz_names[c->coding], CZ_MAX_OUT);
    return rc;
}

/* ---- the body filter -------------------------------------------------------------- */

/* Keep a copy of the round's bytes while deciding. Returns 0 or -1. */
static int hold_copy(cz_ctx_t *c, tg_chain_t *in)
{
    for (; in; in = in->next) {
        const char *p = in->buf->pos;
        size_t len = tg_buf_len(in->buf);
        while (len) {
            tg_buf_t *b = c->nhold ? c->hold[c->nhold - 1] : NULL;
            if (b == NULL || tg_buf_room(b) == 0) {
                if (c->nhold == CZ_MAX_HOLD || (b = tg_buf_get()) == NULL)
                    return -1;
                c->hold[c->nhold++] = b;
            }
            size_t n = len < tg_buf_room(b) ? len : tg_buf_room(b);
            memcpy(b->last, p, n);
            b->last += n;
            p += n;
            len -= n;
            c->held += n;
        }
    }
    return 0;
}

/* The held bytes as the round's output: the body was too short. */
static tg_chain_t *hold_chain(cz_ctx_t *c)
{
    tg_chain_t *head = &c->links[0];
    c->links[0] = (tg_chain_t){&c->end, NULL}; /* an empty body */
    for (int i = 0; i < c->nhold; i++) {
        c->links[i] = (tg_chain_t){c->hold[i], i + 1 < c->nhold ? &c->links[i + 1] : NULL};
        c->hold[i]->flags = TG_BUF_F_OWNED | (i + 1 == c->nhold ? TG_BUF_F_LAST : 0);
    }
    return head;
}

static tg_rc_t cz_response_body(tg_request_t *r, void *conf, tg_chain_t **io)
{
    (void)conf;
    cz_ctx_t *c = tg_module_ctx(r, &tg_compress_module);
    if (c == NULL || c->state == CZ_PASS)
        return TG_OK;
    int last = 0;
    size_t len = 0;
    for (tg_chain_t *cl = *io; cl; cl = cl->next) {
        len += tg_buf_len(cl->buf);
        if (cl->buf->flags & TG_BUF_F_LAST)
            last = 1;
    }
    if (c->state == CZ_FINISHED) { /* nothing may follow the end of the stream */
        *io = NULL;
        return TG_OK;
    }
    c->used = 0;
    if (c->state == CZ_HOLD) {
        if (c->held + len < (size_t)c->conf->min_length) {
            if (hold_copy(c, *io) != 0)
                return TG_ERROR;
            *io = NULL;
            if (last) { /* shorter than min_length: as it is, and now its length is known */
                c->state = CZ_PASS;
                r->header_hold = 0;
                r->resp_content_length = (int64_t)c->held;
                *io = hold_chain(c);
            }
            return TG_OK;
        }
        if (compress_start(r, c) != 0)
            return TG_ERROR;
        tg_stats_count(TG_STATS_COMPRESS_IN, c->held);
        r->header_hold = 0;
        for (int i = 0; i < c->nhold; i++) {
            if (encode(c, c->hold[i]->pos, tg_buf_len(c->hold[i]), CZ_OP_PROCESS) != 0)
                return TG_ERROR;
            tg_buf_put(c->hold[i]);
        }
        c->nhold = 0;
    }
    for (tg_chain_t *cl = *io; cl; cl = cl->next)
        if (encode(c, cl->buf->pos, tg_buf_len(cl->buf), CZ_OP_PROCESS) != 0)
            return TG_ERROR;
    if (last) {
        if (encode(c, NULL, 0, CZ_OP_FINISH) != 0)
            return TG_ERROR;
        c->state = CZ_FINISHED;
    } else if (c->flush && len) {
        if (encode(c, NULL, 0, CZ_OP_FLUSH) != 0)
            return TG_ERROR;
    }

    tg_chain_t *head = NULL, *tail = NULL;
    size_t out = 0;
    for (int i = 0; i < c->used; i++) {
        tg_buf_t *b = c->out[i];
        if (tg_buf_len(b) == 0)
            continue;
        out += tg_buf_len(b);
        if (c->flush)
            b->flags |= TG_BUF_F_FLUSH;
        c->links[i] = (tg_chain_t){b, NULL};
        if (tail)
            tail->next = &c->links[i];
        else
            head = &c->links[i];
        tail = &c->links[i];
    }
    tg_stats_count(TG_STATS_COMPRESS_IN, len);
    tg_stats_count(TG_STATS_COMPRESS_OUT, out);
    if (last) {
        if (tail == NULL) {
            c->links[0] = (tg_chain_t){&c->end, NULL};
            head = &c->links[0];
        } else {
            tail->buf->flags |= TG_BUF_F_LAST;
        }
        encoder_destroy(c); /* give its memory back now, not at the end of the request */
    }
    *io = head;
    return TG_OK;
}

static const tg_directive_t cz_directives[] = {
    {"compress", TG_SCOPE_HTTP, 0, 1, CZ_NCODINGS, set_compress, 0},
    {"compress_level", TG_SCOPE_HTTP, 0, 1, CZ_NCODINGS, set_level, 0},
    {"compress_min_length", TG_SCOPE_HTTP, 0, 1, 1, set_min_length,
     offsetof(cz_conf_t, min_length)},
    {"compress_types", TG_SCOPE_HTTP, 0, 1, -1, set_types, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_compress_module = {
    .name = "compress",
    .directives = cz_directives,
    .create_conf = cz_create_conf,
    .merge_conf = cz_merge_conf,
    .is_active = cz_is_active,
    .explain = cz_explain,
    .exit_worker = cz_exit_worker,
    .on_response_headers = cz_response_headers,
    .on_response_body = cz_response_body,
};
