/* The ocsp module: stapling of OCSP responses the gateway fetches itself
 * (docs/tls.md). This file is the config (tls_stapling, tls_stapling_verify,
 * tls_stapling_trusted, tls_stapling_responder; the entries and the "ocsp"
 * zone, made after the tls module built the contexts) and the workers' side
 * (the status hook that staples from the zone). The helper process that
 * fetches is src/ocsp.c; see ocsp.h for how they share the zone. */
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "ocsp.h"
#include "acme.h"
#include "tls_conf.h"
#include "shm.h"
#include "log.h"
#include "tls_io.h"
#include "worker.h"

typedef struct {
    int stapling;        /* tls_stapling (tg_conf_set_flag writes an int) */
    int verify;          /* tls_stapling_verify */
    STACK_OF(X509) *trusted; /* tls_stapling_trusted, read at load (the helper is not root) */
    const char *responder;
    const char *file;    /* where tls_stapling_trusted / responder was written */
    int line;
    tg_ocsp_main_t run;  /* main scope */
} ocsp_conf_t;

extern tg_module_t tg_ocsp_module;

const char *const tg_ocsp_status_names[] = {"none", "good", "revoked", "unknown", "error"};

tg_ocsp_main_t *tg_ocsp_main(tg_config_t *c)
{
    ocsp_conf_t *m = c->mconf[tg_ocsp_module.index];
    return m && m->run.nentries ? &m->run : NULL;
}

static void *ocsp_create_conf(tg_conf_t *cf)
{
    ocsp_conf_t *o = tg_arena_alloc(cf->arena, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->stapling = TG_CONF_UNSET;
    o->verify = TG_CONF_UNSET;
    return o;
}

static const char *ocsp_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    ocsp_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->stapling, p->stapling, 1);
    TG_CONF_MERGE(c->verify, p->verify, 1);
    if (c->trusted == NULL && c->responder == NULL) {
        c->file = p->file;
        c->line = p->line;
    }
    TG_CONF_MERGE_PTR(c->trusted, p->trusted, NULL);
    TG_CONF_MERGE_PTR(c->responder, p->responder, NULL);
    return NULL;
}

static void certs_free(void *data)
{
    sk_X509_pop_free(data, X509_free);
}

/* tls_stapling_trusted FILE: PEM certificates, read now. */
static const char *set_trusted(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ocsp_conf_t *o = conf;
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1));
    if (o->trusted)
        return "\"tls_stapling_trusted\" is duplicate";
    X509_STORE *st = X509_STORE_new();
    STACK_OF(X509) *certs = NULL;
    if (st && X509_STORE_load_file(st, path) == 1)
        certs = X509_STORE_get1_all_certs(st);
    X509_STORE_free(st);
    if (certs == NULL || sk_X509_num(certs) == 0) {
        sk_X509_pop_free(certs, X509_free);
        const char *why = tg_tls_error_reason();
        return tg_conf_errf(cf, "cannot load \"tls_stapling_trusted\" \"%s\": %s", path, why);
    }
    if (tg_arena_on_reset(cf->arena, certs_free, certs) != 0) {
        sk_X509_pop_free(certs, X509_free);
        return "out of memory";
    }
    o->trusted = certs;
    o->file = cf->file;
    o->line = cf->line;
    return NULL;
}

/* tls_stapling_responder URL: http:// only (as OCSP responders are). */
static const char *set_responder(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ocsp_conf_t *o = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (v.len <= 7 || strncmp(v.p, "http://", 7) != 0)
        return tg_conf_errf(cf, "invalid URL \"%.*s\" in \"tls_stapling_responder\": "
                                "an http:// URL is expected",
                            TG_STR_FMT(v));
    o->responder = v.p;
    o->file = cf->file;
    o->line = cf->line;
    return NULL;
}

/* The first OCSP URL of the certificate's Authority Information Access, in
 * the arena, or NULL. */
static const char *aia_url(tg_arena_t *a, X509 *x)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(x);
    const char *u = sk_OPENSSL_STRING_num(urls) > 0
                        ? tg_arena_printf(a, "%s", sk_OPENSSL_STRING_value(urls, 0))
                        : NULL;
    X509_email_free(urls);
    return u;
}

static void entry_free(tg_ocsp_entry_t *e)
{
    X509_free(e->leaf);
    X509_free(e->issuer);
    sk_X509_pop_free(e->chain, X509_free);
}

static void entries_free(void *data)
{
    tg_ocsp_main_t *run = data;
    for (int i = 0; i < run->nentries; i++)
        entry_free(&run->entries[i]);
    run->nentries = 0;
}

/* Add an entry for the leaf `x` of server `s` (NULL for an acme
 * certificate, followed at run time). 0, or -1 after an error. */
static int add_entry(tg_conf_t *cf, tg_ocsp_main_t *run, tg_server_t *s, ocsp_conf_t *o, X509 *x,
                     STACK_OF(X509) *chain, int acme_slot)
{
    tg_ocsp_entry_t e = {.server = s, .url = o->responder,
                         .verify = o->verify, .trusted = o->trusted, .acme_slot = acme_slot};
    char *name = s->nnames ? tg_arena_printf(cf->arena, "%.*s", TG_STR_FMT(s->names[0])) : "";
    if (x) {
        if (e.url == NULL && (e.url = aia_url(cf->arena, x)) == NULL)
            return 0; /* nothing to fetch: the stats say "none" */
        if (strncmp(e.url, "http://", 7) != 0) {
            tg_conf_warn(cf, "the OCSP URL \"%s\" of the certificate of \"%s\" is not http://, "
                             "not stapled (see \"tls_stapling_responder\")",
                         e.url, name);
            return 0;
        }
        /* the issuer: in the chain served, else in tls_stapling_trusted */
        for (int i = 0; i < sk_X509_num(chain); i++)
            if (X509_check_issued(sk_X509_value(chain, i), x) == X509_V_OK)
                e.issuer = sk_X509_value(chain, i);
        for (int i = 0; e.issuer == NULL && i < sk_X509_num(o->trusted); i++)
            if (X509_check_issued(sk_X509_value(o->trusted, i), x) == X509_V_OK)
                e.issuer = sk_X509_value(o->trusted, i);
        if (e.issuer == NULL) {
            tg_conf_warn(cf, "the certificate of \"%s\" is served without its issuer, its OCSP "
                             "response is not fetched (add the issuer to the certificate file "
                             "or to \"tls_stapling_trusted\")",
                         name);
            return 0;
        }
        X509_up_ref(x);
        X509_up_ref(e.issuer);
        e.leaf = x;
        if ((e.chain = X509_chain_up_ref(chain)) == NULL)
            return -1;
    }
    tg_ocsp_entry_t *n = tg_arena_grow(cf->arena, run->entries, (size_t)run->nentries, 1,
                                       sizeof(*n));
    if (n == NULL) {
        entry_free(&e);
        return -1;
    }
    n[run->nentries] = e;
    run->entries = n;
    run->nentries++;
    return 0;
}

static int acme_slot_of(tg_config_t *c, tg_server_t *s)
{
    tg_acme_main_t *am = tg_acme_main(c);
    for (int i = 0; am && i < am->ncerts; i++)
        if (am->certs[i].server == s)
            return i;
    return -1;
}

static const char *ocsp_init_conf(tg_conf_t *cf, void *main_conf)
{
    tg_config_t *c = cf->config;
    ocsp_conf_t *m = main_conf;
    tg_ocsp_main_t *run = &m->run;
    const char *file = cf->file;
    int line = cf->line;
    if (tg_arena_on_reset(cf->arena, entries_free, run) != 0)
        return "out of memory";
    for (int i = 0; i < c->nservers; i++) {
        tg_server_t *s = c->servers[i];
        ocsp_conf_t *o = s->mconf[tg_ocsp_module.index];
        SSL_CTX *ctx = tg_tls_server_get_ctx(s->mconf);
        if (!o->stapling || ctx == NULL)
            continue;
        cf->file = o->file ? o->file : s->file;
        cf->line = o->file ? o->line : s->line;
        int slot = acme_slot_of(c, s);
        if (slot >= 0) {
            if (add_entry(cf, run, s, o, NULL, NULL, slot) != 0)
                return "out of memory";
            continue;
        }
        /* entries are appended to the arena-grown array: take the
         * certificates first, the context's cursor is shared */
        X509 *leaves[4];
        STACK_OF(X509) *chains[4];
        int n = 0;
        for (int rc = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST); rc == 1 && n < 4;
             rc = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT)) {
            X509 *x = SSL_CTX_get0_certificate(ctx);
            STACK_OF(X509) *ch = NULL;
            SSL_CTX_get0_chain_certs(ctx, &ch);
            if (x && !tg_tls_leaf_has_staple_file(s->mconf, x)) {
                leaves[n] = x;
                chains[n++] = ch;
            }
        }
        ERR_clear_error();
        for (int j = 0; j < n; j++)
            if (add_entry(cf, run, s, o, leaves[j], chains[j], -1) != 0)
                return "out of memory";
    }
    cf->file = file;
    cf->line = line;
    if (run->nentries == 0)
        return NULL;
    tg_shm_zone_t *z;
    size_t size = (size_t)run->nentries * sizeof(tg_ocsp_slot_t);
    const char *err = tg_shm_zone_add(cf, TG_STR("ocsp"), tg_shm_align(size, 4096),
                                      TG_OCSP_ZONE_TAG, &z);
    if (err)
        return err;
    run->slots = z->data;
    return NULL;
}

/* ---- reading a slot (workers, stats) ---- */

/* Copy slot `sl`'s state (without the DER bytes) when it is for the
 * certificate of SHA-1 `md`: 1, or 0 (not that certificate, or the helper
 * kept writing). With `der`: also a copy of a good response still valid
 * now (OPENSSL_malloc'd, *der NULL when none). */
static int slot_read(const tg_ocsp_slot_t *sl, const unsigned char *md, tg_ocsp_slot_t *out,
                     unsigned char **der)
{
    for (int tries = 0; tries < 4; tries++) {
        uint64_t seq = sl->seq;
        if (seq & 1)
            continue;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        memcpy(out, (const void *)sl, offsetof(tg_ocsp_slot_t, der));
        unsigned char *copy = NULL;
        if (der && out->der_len > 0 && out->der_len <= TG_OCSP_DER_MAX &&
            out->status == TG_OCSP_GOOD && out->next_update > (int64_t)time(NULL) &&
            memcmp(out->leaf_sha1, md, 20) == 0) {
            if ((copy = OPENSSL_malloc(out->der_len)) == NULL)
                return 0;
            memcpy(copy, sl->der, out->der_len);
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (sl->seq != seq) {
            OPENSSL_free(copy);
            continue;
        }
        if (der)
            *der = copy;
        return memcmp(out->leaf_sha1, md, 20) == 0;
    }
    return 0;
}

int tg_ocsp_lookup(tg_config_t *c, X509 *leaf, tg_ocsp_slot_t *out)
{
    tg_ocsp_main_t *run = tg_ocsp_main(c);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n;
    if (run == NULL || !X509_digest(leaf, EVP_sha1(), md, &n))
        return -1;
    for (int i = 0; i < run->nentries; i++)
        if (slot_read(&run->slots[i], md, out, NULL))
            return 0;
    return -1;
}

/* ---- workers: stapling ---- */

static tg_ocsp_main_t *staple_run; /* per worker */

static int staple(SSL *ssl, X509 *leaf)
{
    unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
    unsigned int n;
    tg_ocsp_slot_t head;
    if (staple_run == NULL || !X509_digest(leaf, EVP_sha1(), md, &n))
        return SSL_TLSEXT_ERR_NOACK;
    for (int i = 0; i < staple_run->nentries; i++) {
        if (!slot_read(&staple_run->slots[i], md, &head, &der))
            continue;
        if (der == NULL)
            return SSL_TLSEXT_ERR_NOACK;
        if (!SSL_set_tlsext_status_ocsp_resp(ssl, der, (long)head.der_len)) {
            OPENSSL_free(der);
            return SSL_TLSEXT_ERR_NOACK;
        }
        return SSL_TLSEXT_ERR_OK; /* OpenSSL frees der */
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int ocsp_init_worker(tg_worker_t *w)
{
    staple_run = tg_ocsp_main(w->config);
    if (staple_run)
        tg_tls_set_status_hook(staple);
    return 0;
}

static void ocsp_exit_worker(tg_worker_t *w)
{
    (void)w;
    if (staple_run)
        tg_tls_set_status_hook(NULL);
    staple_run = NULL;
}

static const tg_directive_t ocsp_directives[] = {
    {"tls_stapling", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, tg_conf_set_flag,
     offsetof(ocsp_conf_t, stapling)},
    {"tls_stapling_verify", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, tg_conf_set_flag,
     offsetof(ocsp_conf_t, verify)},
    {"tls_stapling_trusted", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_trusted, 0},
    {"tls_stapling_responder", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_responder, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_ocsp_module = {
    .name = "ocsp",
    .directives = ocsp_directives,
    .create_conf = ocsp_create_conf,
    .merge_conf = ocsp_merge_conf,
    .init_conf = ocsp_init_conf,
    .init_worker = ocsp_init_worker,
    .exit_worker = ocsp_exit_worker,
};
