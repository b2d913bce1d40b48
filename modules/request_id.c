/* $request_id and request_id_header NAME [trust=on|off].
 *
 * $request_id is 128 random bits as 32 lowercase hex characters, made the
 * first time a request asks for it and the same for the rest of the request
 * (kept in the module's request context). The bits come from OpenSSL's
 * RAND_bytes in batches of ID_BATCH ids per worker, so an id costs a copy and
 * a hex encoding, and one RAND_bytes call per ID_BATCH requests; OpenSSL
 * reseeds a forked child by itself, and the batch starts empty in every
 * worker (the master never fills it).
 *
 * request_id_header: the request sent upstream and the response to the
 * client carry $request_id under NAME. With trust=on (the default) an
 * incoming NAME header with a valid value becomes $request_id, so an id set
 * by an edge proxy or a client follows the request through; valid means 1 to
 * ID_MAX_LEN visible ASCII characters (0x21..0x7e: no spaces, no controls,
 * nothing a log line could be forged with); an invalid value is replaced by
 * a generated id. trust=off always generates. */
#include <stddef.h>
#include <string.h>
#include <openssl/rand.h>
#include "module.h"
#include "request.h"
#include "log.h"

#define ID_BYTES 16
#define ID_BATCH 64      /* ids per RAND_bytes call */
#define ID_MAX_LEN 200   /* longest incoming id taken as it is */

typedef struct {
    tg_str_t header; /* NULL: no request_id_header here */
    int trust;       /* TG_CONF_UNSET, 0 or 1 */
} rid_conf_t;

tg_module_t tg_request_id_module;

/* The worker's batch of random bytes: [pos, sizeof) not used yet. Per
 * process, so per worker; filled only when a request needs an id. */
static unsigned char batch[ID_BYTES * ID_BATCH];
static size_t batch_pos = sizeof(batch);

static void *rid_create_conf(tg_conf_t *cf)
{
    rid_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c)
        c->trust = TG_CONF_UNSET;
    return c;
}

static const char *rid_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    rid_conf_t *p = parent, *c = child;
    if (c->header.p == NULL && c->trust == TG_CONF_UNSET) {
        c->header = p->header;
        c->trust = p->trust;
    }
    TG_CONF_MERGE(c->trust, p->trust, 1);
    return NULL;
}

static int rid_is_active(void *conf)
{
    return ((rid_conf_t *)conf)->header.len > 0;
}

/* request_id_header NAME [trust=on|off] */
static const char *set_request_id_header(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    rid_conf_t *c = conf;
    tg_str_t name = tg_conf_arg(cf, 1), v;
    if (c->header.p)
        return "\"request_id_header\" directive is duplicate";
    for (size_t i = 0; i < name.len; i++) {
        unsigned char ch = (unsigned char)name.p[i];
        /* an RFC 9110 token */
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("!#$%&'*+-.^_`|~", ch)))
            return tg_conf_errf(cf, "\"request_id_header\": invalid header name \"%.*s\"",
                                TG_STR_FMT(name));
    }
    if (name.len == 0)
        return "\"request_id_header\": empty header name";
    c->trust = 1;
    if (cf->nargs == 2) {
        if (!tg_conf_arg_kv(cf, 2, "trust", &v))
            return tg_conf_errf(cf, "\"request_id_header\": unexpected \"%.*s\", expected "
                                    "trust=on or trust=off", TG_STR_FMT(tg_conf_arg(cf, 2)));
        if (tg_str_eq_lit(v, "off"))
            c->trust = 0;
        else if (!tg_str_eq_lit(v, "on"))
            return tg_conf_errf(cf, "\"request_id_header\": invalid trust \"%.*s\", expected on "
                                    "or off", TG_STR_FMT(v));
    }
    c->header = tg_arena_str(cf->arena, name);
    return c->header.p ? NULL : "out of memory";
}

/* An incoming id we keep: 1..ID_MAX_LEN visible ASCII characters. */
static int id_is_valid(tg_str_t v)
{
    if (v.len == 0 || v.len > ID_MAX_LEN)
        return 0;
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.p[i] < 0x21 || (unsigned char)v.p[i] > 0x7e)
            return 0;
    return 1;
}

/* 32 hex characters of fresh random bits into the request arena. -1: out of
 * memory or no randomness (then the request has no id rather than a weak
 * one). */
static int id_generate(tg_request_t *r, tg_str_t *out)
{
    static const char hex[] = "0123456789abcdef";
    if (batch_pos + ID_BYTES > sizeof(batch)) {
        if (RAND_bytes(batch, (int)sizeof(batch)) != 1) {
            tg_log(TG_LOG_ERROR, "RAND_bytes failed: no $request_id");
            return -1;
        }
        batch_pos = 0;
    }
    char *p = tg_arena_alloc_nz(r->arena, 2 * ID_BYTES);
    if (p == NULL)
        return -1;
    for (int i = 0; i < ID_BYTES; i++) {
        unsigned char b = batch[batch_pos + (size_t)i];
        p[2 * i] = hex[b >> 4];
        p[2 * i + 1] = hex[b & 15];
    }
    /* used bytes are not left lying around for a later reader of memory */
    memset(batch + batch_pos, 0, ID_BYTES);
    batch_pos += ID_BYTES;
    *out = (tg_str_t){p, 2 * ID_BYTES};
    return 0;
}

/* The request's id: decided once (incoming or generated) and kept in the
 * module's context slot. */
static int request_id(tg_request_t *r, tg_str_t *out)
{
    tg_str_t *id = tg_module_ctx(r, &tg_request_id_module);
    if (id) {
        *out = *id;
        return 0;
    }
    if ((id = tg_arena_alloc(r->arena, sizeof(*id))) == NULL)
        return -1;
    rid_conf_t *c = r->loc_conf ? tg_module_conf(r, &tg_request_id_module) : NULL;
    tg_header_t *h = NULL;
    if (c && c->header.len && c->trust)
        h = tg_headers_find(&r->headers, c->header);
    if (h && id_is_valid(h->value))
        *id = h->value;
    else if (id_generate(r, id) != 0)
        return -1;
    tg_module_ctx(r, &tg_request_id_module) = id;
    *out = *id;
    return 0;
}

static int var_request_id(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    return request_id(r, out);
}

/* Rewrite: the request sent upstream carries the id (an incoming header of
 * that name with another value, or several, is replaced). */
static tg_rc_t rid_rewrite(tg_request_t *r, void *conf)
{
    rid_conf_t *c = conf;
    tg_str_t id;
    if (request_id(r, &id) != 0)
        return TG_ERROR;
    if (tg_headers_set(r->arena, &r->headers, c->header, id) != 0)
        return TG_ERROR;
    return TG_OK;
}

/* Every response, the gateway's own answers included, tells the client its
 * id (replacing one an upstream sent). */
static tg_rc_t rid_response_headers(tg_request_t *r, void *conf)
{
    rid_conf_t *c = conf;
    tg_str_t id;
    if (request_id(r, &id) != 0)
        return TG_OK; /* no memory: the answer goes without it */
    return tg_headers_set(r->arena, &r->resp_headers, c->header, id) == 0 ? TG_OK : TG_ERROR;
}

static const tg_directive_t rid_directives[] = {
    {"request_id_header", TG_SCOPE_HTTP, 0, 1, 2, set_request_id_header, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

static const tg_var_def_t rid_variables[] = {
    {"request_id", 0, var_request_id},
    {NULL, 0, NULL},
};

tg_module_t tg_request_id_module = {
    .name = "request_id",
    .directives = rid_directives,
    .variables = rid_variables,
    .create_conf = rid_create_conf,
    .merge_conf = rid_merge_conf,
    .is_active = rid_is_active,
    .on_rewrite = rid_rewrite,
    .on_response_headers = rid_response_headers,
};
