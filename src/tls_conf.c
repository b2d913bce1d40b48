/* TLS configuration (OpenSSL 3): the tls module and everything built from
 * it at config load. The I/O connections do at run time through their SSL
 * objects (client and upstream) is in src/tls_io.c; this file is only
 * entered at run time by OpenSSL's callbacks on the contexts it built (SNI,
 * ALPN, OCSP stapling, tickets, the session cache).
 *
 * Config: the tls module's directives fill one tls_conf_t per scope. After
 * the whole file is parsed (init_conf, in the master), every server block
 * that listens with `tls` gets its own SSL_CTX holding all of its
 * certificate/key pairs (an RSA and an ECDSA pair side by side: OpenSSL
 * picks what the client supports). The contexts live as long as the config
 * generation (freed by an arena cleanup), and workers inherit them by fork.
 * Upstream blocks with `tls on` get a client SSL_CTX the same way.
 *
 * Handshake: SSL_new (tls_io.c) starts from the listener's default server's
 * context (tg_tls_server_ctx); the client-hello callback reads SNI, picks the
 * server block with the same rules as the Host lookup (tg_core_find_server)
 * and switches SSL_CTX before the version and cipher are chosen, so
 * per-server protocols and ciphers apply.
 *
 * Session resumption across workers: stateless tickets whose keys derive
 * from a secret the master makes once (kept in this file's static across
 * reloads) and the time slot floor(now / tls_ticket_rotate). Every worker
 * computes the same keys, the previous slot's key is still accepted. The
 * per-process key cache below is a pure function of (secret, slot). Session
 * IDs go through the shared cache of src/tls_cache.c (OpenSSL's internal
 * per-process cache is off). A session resumes only with the session id
 * context (server block, certificates, client-CA policy) and the SNI name
 * it was made with. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <openssl/ocsp.h>
#include <openssl/core_names.h>
#include "tls_conf.h"
#include "h2_conf.h"
#include "tls_io.h"
#include "core.h"
#include "log.h"
#include "upstream.h"
#include "shm.h"
#include "tls_cache.h"

#define TLS_PROTO_12 0x01
#define TLS_PROTO_13 0x02

#define TLS_DEFAULT_CIPHERS                                                                        \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"       \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define TLS_DEFAULT_GROUPS "X25519:P-256:P-384"
#define TLS_DEFAULT_CACHE (1024 * 1024)
#define TLS_MAX_CACHE ((int64_t)1 << 30)
#define TLS_CACHE_ZONE TG_TLS_CACHE_ZONE /* the shm zone's name (tls_cache.h) */

/* The ALPN protocols we speak, in preference order (wire format): h2 first
 * on servers with `http2 on` (the default), else HTTP/1.1 only. */
static const unsigned char alpn_protos_h2[] = "\x02h2\x08http/1.1";
static const unsigned char alpn_protos[] = "\x08http/1.1";

typedef struct {
    const char *cert, *key; /* absolute paths */
    const char *file;       /* where tls_certificate was written */
    int line;
    const char *staple;     /* tls_stapling_file (DER OCSP response) or NULL */
    int staple_line;
    unsigned char *ocsp;    /* its bytes, read at load (config arena) */
    size_t ocsp_len;
    X509 *leaf;             /* the certificate as loaded into the SSL_CTX */
} cert_pair_t;

typedef struct {
    cert_pair_t *pairs;
    int npairs;
    int64_t protocols; /* TLS_PROTO_* bits */
    const char *ciphers, *groups;
    const char *client_ca;
    int64_t verify_client; /* 0 off, 1 on, 2 optional */
    tg_msec_t ticket_rotate; /* main scope only */
    int64_t session_cache;     /* main: tls_session_cache size in bytes, 0 off */
    tg_msec_t session_timeout; /* main */
    int session_tickets;       /* main: tg_conf_set_flag writes an int */
    tg_tls_cache_t *cache;     /* the shared session cache, NULL when off */
    const char *ca_file;     /* where tls_client_ca was written */
    int ca_line;
    /* a certificate given in memory (tg_tls_server_set_cert: ACME) instead
     * of tls_certificate files; references held until the config goes */
    X509 *mem_leaf;
    STACK_OF(X509) *mem_chain;
    EVP_PKEY *mem_key;
    SSL_CTX *ctx; /* built at init_conf for servers with a tls listener */
} tls_conf_t;

static tls_conf_t *tls_conf(void **mconf)
{
    return mconf[tg_tls_module.index];
}

/* ---- directives ------------------------------------------------------------ */

static void *tls_create_conf(tg_conf_t *cf)
{
    tls_conf_t *t = tg_arena_alloc(cf->arena, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->protocols = TG_CONF_UNSET;
    t->verify_client = TG_CONF_UNSET;
    t->ticket_rotate = TG_CONF_UNSET;
    t->session_cache = TG_CONF_UNSET;
    t->session_timeout = TG_CONF_UNSET;
    t->session_tickets = TG_CONF_UNSET;
    return t;
}

static const char *tls_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    tls_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->protocols, p->protocols, TLS_PROTO_12 | TLS_PROTO_13);
    TG_CONF_MERGE_PTR(c->ciphers, p->ciphers, TLS_DEFAULT_CIPHERS);
    TG_CONF_MERGE_PTR(c->groups, p->groups, TLS_DEFAULT_GROUPS);
    TG_CONF_MERGE(c->verify_client, p->verify_client, 0);
    TG_CONF_MERGE(c->ticket_rotate, p->ticket_rotate, 3600 * 1000);
    TG_CONF_MERGE(c->session_cache, p->session_cache, TLS_DEFAULT_CACHE);
    TG_CONF_MERGE(c->session_timeout, p->session_timeout, 3600 * 1000);
    TG_CONF_MERGE(c->session_tickets, p->session_tickets, 1);
    if (c->client_ca == NULL) {
        c->client_ca = p->client_ca;
        c->ca_file = p->ca_file;
        c->ca_line = p->ca_line;
    }
    return NULL;
}

static const char *file_check(tg_conf_t *cf, const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return tg_conf_errf(cf, "cannot open %s \"%s\": %s", what, path, strerror(errno));
    fclose(f);
    return NULL;
}

/* tls_certificate FILE: starts a pair; tls_certificate_key completes it. */
static const char *set_certificate(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tls_conf_t *t = conf;
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1)), *err;
    if (cf->scope == TG_SCOPE_UPSTREAM) { /* the client certificate for this upstream */
        tg_upstream_t *u = conf;
        if (u->tls_cert)
            return "\"tls_certificate\" is duplicate";
        if ((err = file_check(cf, "certificate", path)) != NULL)
            return err;
        u->tls_cert = path;
        u->tls_cert_file = cf->file;
        u->tls_cert_line = cf->line;
        return NULL;
    }
    if (t->npairs && t->pairs[t->npairs - 1].key == NULL)
        return tg_conf_errf(cf, "\"tls_certificate\" \"%s\" has no \"tls_certificate_key\" yet",
                            t->pairs[t->npairs - 1].cert);
    if ((err = file_check(cf, "certificate", path)) != NULL)
        return err;
    cert_pair_t *p = tg_arena_grow(cf->arena, t->pairs, (size_t)t->npairs, 1, sizeof(*p));
    if (p == NULL)
        return "out of memory";
    p[t->npairs++] = (cert_pair_t){.cert = path, .file = cf->file, .line = cf->line};
    t->pairs = p;
    return NULL;
}

/* tls_stapling_file FILE: the OCSP response to staple for the certificate
 * before it (read at every load, so a reload refreshes it). */
static const char *set_stapling_file(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tls_conf_t *t = conf;
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1)), *err;
    if (t->npairs == 0 || t->pairs[t->npairs - 1].staple != NULL)
        return "\"tls_stapling_file\" must follow a \"tls_certificate\" (one per certificate)";
    if ((err = file_check(cf, "OCSP response", path)) != NULL)
        return err;
    t->pairs[t->npairs - 1].staple = path;
    t->pairs[t->npairs - 1].staple_line = cf->line;
    return NULL;
}

static const char *set_certificate_key(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tls_conf_t *t = conf;
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1)), *err;
    if (cf->scope == TG_SCOPE_UPSTREAM) {
        tg_upstream_t *u = conf;
        if (u->tls_cert == NULL || u->tls_key != NULL)
            return "\"tls_certificate_key\" must follow a \"tls_certificate\"";
        if ((err = file_check(cf, "certificate key", path)) != NULL)
            return err;
        tg_conf_check_secret(cf, "certificate key", path);
        u->tls_key = path;
        return NULL;
    }
    if (t->npairs == 0 || t->pairs[t->npairs - 1].key != NULL)
        return "\"tls_certificate_key\" must follow a \"tls_certificate\"";
    if ((err = file_check(cf, "certificate key", path)) != NULL)
        return err;
    tg_conf_check_secret(cf, "certificate key", path);
    t->pairs[t->npairs - 1].key = path;
    return NULL;
}

/* tls_protocols TLSv1.2 TLSv1.3 */
static const char *set_protocols(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tls_conf_t *t = conf;
    t->protocols = 0;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v = tg_conf_arg(cf, i);
        if (tg_str_eq_lit(v, "TLSv1.2"))
            t->protocols |= TLS_PROTO_12;
        else if (tg_str_eq_lit(v, "TLSv1.3"))
            t->protocols |= TLS_PROTO_13;
        else
            return tg_conf_errf(cf, "unsupported protocol \"%.*s\" in \"tls_protocols\", "
                                    "expected TLSv1.2 or TLSv1.3",
                                TG_STR_FMT(v));
    }
    return NULL;
}

/* tls_ciphers LIST and tls_groups LIST, checked against OpenSSL right away. */
static const char *set_ciphers(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    tls_conf_t *t = conf;
    const char *v = tg_conf_arg(cf, 1).p;
    int groups = strcmp(d->name, "tls_groups") == 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return "out of memory";
    int ok = groups ? SSL_CTX_set1_groups_list(ctx, v) : SSL_CTX_set_cipher_list(ctx, v);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    if (!ok)
        return tg_conf_errf(cf, "invalid value \"%s\" in \"%s\": no %s OpenSSL knows", v, d->name,
                            groups ? "group" : "cipher");
    *(groups ? &t->groups : &t->ciphers) = v;
    return NULL;
}

static const char *set_client_ca(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tls_conf_t *t = conf;
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1)), *err;
    if ((err = file_check(cf, "client CA", path)) != NULL)
        return err;
    t->client_ca = path;
    t->ca_file = cf->file;
    t->ca_line = cf->line;
    return NULL;
}

static const char *set_verify_client(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tls_conf_t *t = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "off"))
        t->verify_client = 0;
    else if (tg_str_eq_lit(v, "on"))
        t->verify_client = 1;
    else if (tg_str_eq_lit(v, "optional"))
        t->verify_client = 2;
    else
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"tls_verify_client\", expected on, "
                                "optional or off",
                            TG_STR_FMT(v));
    return NULL;
}

static const char *set_ticket_rotate(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    tls_conf_t *t = conf;
    const char *err = tg_conf_set_msec(cf, d, conf);
    if (err == NULL && t->ticket_rotate < 60000)
        return "\"tls_ticket_rotate\" must be at least 1m";
    return err;
}

/* tls_session_cache shared:SIZE | off */
static const char *set_session_cache(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tls_conf_t *t = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "off")) {
        t->session_cache = 0;
        return NULL;
    }
    int64_t size;
    if (v.len < 7 || memcmp(v.p, "shared:", 7) != 0 ||
        tg_parse_size((tg_str_t){v.p + 7, v.len - 7}, &size) != 0)
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"tls_session_cache\", expected "
                                "shared:SIZE or off",
                            TG_STR_FMT(v));
    if (size < TG_TLS_CACHE_MIN_SIZE || size > TLS_MAX_CACHE)
        return tg_conf_errf(cf, "\"tls_session_cache\" size \"%.*s\" must be between 32k and 1g",
                            TG_STR_FMT(v));
    t->session_cache = size;
    return NULL;
}

static const char *set_session_timeout(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    tls_conf_t *t = conf;
    const char *err = tg_conf_set_msec(cf, d, conf);
    if (err == NULL && (t->session_timeout < 1000 || t->session_timeout > 7 * 86400 * 1000LL))
        return "\"tls_session_timeout\" must be between 1s and 7d";
    return err;
}

/* ---- session tickets ------------------------------------------------------- */

static unsigned char ticket_secret[32]; /* master-made, kept across reloads */
static int ticket_secret_set;

typedef struct {
    int64_t slot;
    unsigned char name[16], aes[32], mac[32];
} ticket_key_t;

static ticket_key_t key_cache[2]; /* per process; derived, never mutated state */

static void derive(const char *label, int64_t slot, unsigned char *out, size_t len)
{
    unsigned char msg[24], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t l = strlen(label);
    memcpy(msg, label, l);
    for (int i = 0; i < 8; i++)
        msg[l + (size_t)i] = (unsigned char)((uint64_t)slot >> (56 - 8 * i));
    HMAC(EVP_sha256(), ticket_secret, sizeof(ticket_secret), msg, l + 8, md, &mdlen);
    memcpy(out, md, len);
}

static const ticket_key_t *ticket_key(int64_t slot)
{
    ticket_key_t *k = &key_cache[slot & 1];
    if (k->slot != slot || slot == 0) {
        derive("tg-name", slot, k->name, sizeof(k->name));
        derive("tg-aes", slot, k->aes, sizeof(k->aes));
        derive("tg-mac", slot, k->mac, sizeof(k->mac));
        k->slot = slot;
    }
    return k;
}

static int64_t ticket_slot(SSL *ssl)
{
    tls_conf_t *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    int64_t period = t ? t->ticket_rotate / 1000 : 3600;
    return (int64_t)time(NULL) / (period > 0 ? period : 3600);
}

static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
{
    int64_t now = ticket_slot(ssl);
    const ticket_key_t *k;
    int rc = 1;
    if (enc) {
        k = ticket_key(now);
        memcpy(name, k->name, 16);
        if (RAND_bytes(iv, 16) != 1)
            return -1;
    } else {
        k = ticket_key(now);
        if (memcmp(name, k->name, 16) != 0) {
            k = ticket_key(now - 1);
            if (memcmp(name, k->name, 16) != 0)
                return 0; /* unknown or expired key: full handshake */
            rc = 2;       /* valid, but issue a ticket under the current key */
        }
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->mac, sizeof(k->mac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_MAC_CTX_set_params(hctx, params))
        return -1;
    /* fetched once: an implicit fetch per ticket is a provider lookup each time */
    static EVP_CIPHER *aes;
    if (aes == NULL && (aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)) == NULL)
        return -1;
    if (enc ? !EVP_EncryptInit_ex2(ectx, aes, k->aes, iv, NULL)
            : !EVP_DecryptInit_ex2(ectx, aes, k->aes, iv, NULL))
        return -1;
    return rc;
}

/* ---- handshake callbacks --------------------------------------------------- */

/* `arg` is non-NULL on a server with `http2 on`. It is the callback of the
 * SSL_CTX the client hello callback chose (SNI), so each server block
 * offers what it speaks. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    unsigned char *sel;
    const unsigned char *ours = arg ? alpn_protos_h2 : alpn_protos;
    unsigned int n = arg ? sizeof(alpn_protos_h2) - 1 : sizeof(alpn_protos) - 1;
    if (SSL_select_next_proto(&sel, outlen, ours, n, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The host_name entry of a server_name extension, lowercased into buf. */
static tg_str_t sni_from_hello(SSL *ssl, char *buf, size_t size)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
        return TG_NULL_STR;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list + 2 > len || p[2] != TLSEXT_NAMETYPE_host_name)
        return TG_NULL_STR;
    size_t n = ((size_t)p[3] << 8) | p[4];
    if (n + 5 > len || n == 0 || n >= size)
        return TG_NULL_STR;
    for (size_t i = 0; i < n; i++) {
        char ch = (char)p[5 + i];
        buf[i] = (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
    }
    while (n > 0 && buf[n - 1] == '.')
        n--;
    return (tg_str_t){buf, n};
}

static tg_tls_challenge_fn challenge_hook; /* per process: set by the acme module */

void tg_tls_set_challenge_hook(tg_tls_challenge_fn fn)
{
    challenge_hook = fn;
}

/* Does the client hello offer ALPN acme-tls/1 (an ACME CA validating)? */
static int offers_acme_tls(SSL *ssl)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
                                   &len) ||
        len < 2)
        return 0;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list + 2 > len)
        return 0;
    for (size_t i = 2; i < list + 2;) {
        size_t n = p[i];
        if (i + 1 + n > list + 2)
            return 0;
        if (n == 10 && memcmp(p + i + 1, "acme-tls/1", 10) == 0)
            return 1;
        i += 1 + n;
    }
    return 0;
}

/* Pick the server block by SNI and switch to its SSL_CTX. SSL_set_SSL_CTX
 * moves the certificates and session id context; the settings SSL_new
 * copied from the first context are copied again here. */
static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
    (void)al;
    (void)arg;
    tg_listen_t *ls = SSL_get_app_data(ssl);
    char buf[256];
    tg_str_t host = sni_from_hello(ssl, buf, sizeof(buf));
    if (challenge_hook && offers_acme_tls(ssl))
        return challenge_hook(ssl, host) ? SSL_CLIENT_HELLO_SUCCESS : SSL_CLIENT_HELLO_ERROR;
    tg_server_t *s = tg_core_find_server(ls, host);
    tls_conf_t *t = tls_conf(s->mconf);
    if (t->ctx == NULL || t->ctx == SSL_get_SSL_CTX(ssl))
        return SSL_CLIENT_HELLO_SUCCESS;
    SSL_CTX *ctx = t->ctx;
    SSL_set_SSL_CTX(ssl, ctx);
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_min_proto_version(ssl, SSL_CTX_get_min_proto_version(ctx));
    SSL_set_max_proto_version(ssl, SSL_CTX_get_max_proto_version(ctx));
    SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
    SSL_set_options(ssl, SSL_CTX_get_options(ctx));
    if (!SSL_set_cipher_list(ssl, t->ciphers) || !SSL_set1_groups_list(ssl, t->groups))
        return SSL_CLIENT_HELLO_ERROR;
    if (t->verify_client) {
        STACK_OF(X509_NAME) *names = SSL_dup_CA_list(SSL_CTX_get_client_CA_list(ctx));
        if (names == NULL)
            return SSL_CLIENT_HELLO_ERROR;
        SSL_set_client_CA_list(ssl, names);
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* ---- session cache and SNI binding ------------------------------------------ */

/* Was `sess` made for the server name this client hello asks for? A
 * session binds to its SNI (RFC 6066 section 3): the same server block may
 * answer several names, and resuming under another name would skip that
 * name's checks. Only valid while the client hello is processed, which is
 * when OpenSSL looks sessions up (by ID or ticket). */
static int sni_matches(SSL *ssl, SSL_SESSION *sess)
{
    char buf[256];
    tg_str_t now = sni_from_hello(ssl, buf, sizeof(buf));
    const char *h = SSL_SESSION_get0_hostname(sess);
    size_t n = h ? strlen(h) : 0;
    while (n > 0 && h[n - 1] == '.')
        n--;
    if (n != now.len)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if ((ch >= 'A' && ch <= 'Z' ? ch + 32 : ch) != now.p[i])
            return 0;
    }
    return 1;
}

/* The SNI callback only acknowledges the name (the server block was picked
 * in the client hello callback): OpenSSL records an acknowledged name in
 * the new session, which is what sni_matches compares against. */
static int servername_cb(SSL *ssl, int *al, void *arg)
{
    (void)ssl;
    (void)al;
    (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

/* A new session (full handshake): store it serialised under its ID. TLS 1.3
 * sessions are only stored when tickets are off: OpenSSL then sends their
 * ID as the ticket and looks it up here; with tickets on they are stateless
 * and storing them would only push TLS 1.2 sessions out. Returns 0: OpenSSL
 * keeps its reference. */
static int sess_new_cb(SSL *ssl, SSL_SESSION *sess)
{
    tls_conf_t *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (t == NULL || t->cache == NULL ||
        (SSL_version(ssl) == TLS1_3_VERSION && !(SSL_get_options(ssl) & SSL_OP_NO_TICKET)))
        return 0;
    unsigned int idlen;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    unsigned char buf[TG_TLS_CACHE_MAX_DATA], *p = buf;
    int len = i2d_SSL_SESSION(sess, NULL);
    if (len <= 0) {
        ERR_clear_error();
        return 0;
    }
    if (len <= (int)sizeof(buf) && i2d_SSL_SESSION(sess, &p) != len) {
        ERR_clear_error();
        return 0;
    }
    int64_t expires = (int64_t)SSL_SESSION_get_time(sess) + SSL_SESSION_get_timeout(sess);
    tg_tls_cache_put(t->cache, id, idlen, len <= (int)sizeof(buf) ? buf : NULL, (size_t)len,
                     expires, (int64_t)time(NULL));
    return 0;
}

/* A client offers a session ID: the stored session, deserialised (ours:
 * *copy = 0), or NULL for a full handshake. OpenSSL then checks the
 * session id context, protocol and cipher itself. */
static SSL_SESSION *sess_get_cb(SSL *ssl, const unsigned char *id, int idlen, int *copy)
{
    *copy = 0;
    tls_conf_t *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    unsigned char buf[TG_TLS_CACHE_MAX_DATA];
    if (t == NULL || t->cache == NULL || idlen <= 0)
        return NULL;
    long n = tg_tls_cache_get(t->cache, id, (size_t)idlen, (int64_t)time(NULL), buf, sizeof(buf));
    if (n <= 0)
        return NULL;
    const unsigned char *p = buf;
    SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, n);
    if (sess == NULL) {
        ERR_clear_error();
        return NULL;
    }
    if (!sni_matches(ssl, sess)) {
        SSL_SESSION_free(sess);
        return NULL;
    }
    return sess;
}

/* OpenSSL drops a session (a fatal alert on its connection, a single-use
 * TLS 1.3 ticket used): drop it for every worker. */
static void sess_remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    tls_conf_t *t = SSL_CTX_get_app_data(ctx);
    unsigned int idlen;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    if (t && t->cache)
        tg_tls_cache_remove(t->cache, id, idlen);
}

/* A ticket decrypted fine: resume only under the name it was issued for
 * (else a full handshake and a new ticket). Other outcomes as OpenSSL's
 * default: a full handshake with a new ticket. */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
                                       size_t name_len, SSL_TICKET_STATUS status, void *arg)
{
    (void)name;
    (void)name_len;
    (void)arg;
    if ((status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW) ||
        !sni_matches(ssl, sess))
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

/* ---- building contexts ----------------------------------------------------- */

static void ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

/* Read a DER OCSP response into the config arena and check it parses. */
static int load_staple(tg_conf_t *cf, cert_pair_t *p)
{
    cf->line = p->staple_line;
    FILE *f = fopen(p->staple, "rb");
    long len = -1;
    if (f && fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    if (f == NULL || len <= 0 || len > 1024 * 1024 || fseek(f, 0, SEEK_SET) != 0 ||
        (p->ocsp = tg_arena_alloc_nz(cf->arena, (size_t)len)) == NULL ||
        fread(p->ocsp, 1, (size_t)len, f) != (size_t)len) {
        tg_conf_error(cf, "cannot read OCSP response \"%s\"", p->staple);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    const unsigned char *q = p->ocsp;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &q, len);
    if (resp == NULL) {
        ERR_clear_error();
        tg_conf_error(cf, "\"%s\" is not a DER OCSP response", p->staple);
        return -1;
    }
    if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL)
        tg_conf_warn(cf, "OCSP response \"%s\" is not successful, not stapled", p->staple);
    else
        p->ocsp_len = (size_t)len;
    OCSP_RESPONSE_free(resp);
    return 0;
}

static tg_tls_status_fn status_hook; /* per process: set by the ocsp module */

void tg_tls_set_status_hook(tg_tls_status_fn fn)
{
    status_hook = fn;
}

/* Staple the response of the certificate the handshake chose: its
 * tls_stapling_file, else what the status hook (fetched responses) has. */
static int status_cb(SSL *ssl, void *arg)
{
    (void)arg;
    tls_conf_t *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    X509 *x = SSL_get_certificate(ssl);
    for (int i = 0; t && i < t->npairs; i++) {
        cert_pair_t *p = &t->pairs[i];
        if (p->leaf != x || p->ocsp_len == 0)
            continue;
        unsigned char *copy = OPENSSL_memdup(p->ocsp, p->ocsp_len); /* OpenSSL frees it */
        if (copy == NULL || !SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)p->ocsp_len)) {
            OPENSSL_free(copy);
            return SSL_TLSEXT_ERR_NOACK;
        }
        return SSL_TLSEXT_ERR_OK;
    }
    return status_hook && x ? status_hook(ssl, x) : SSL_TLSEXT_ERR_NOACK;
}

static int load_pair(tg_conf_t *cf, SSL_CTX *ctx, cert_pair_t *p)
{
    cf->file = p->file;
    cf->line = p->line;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, p->cert) != 1) {
        tg_conf_error(cf, "cannot load certificate \"%s\": %s", p->cert, tg_tls_error_reason());
        return -1;
    }
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (x && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        tg_conf_warn(cf, "certificate \"%s\" has expired", p->cert);
    if (p->key == NULL) {
        tg_conf_error(cf, "certificate \"%s\" has no \"tls_certificate_key\"", p->cert);
        return -1;
    }
    ERR_clear_error();
    if (SSL_CTX_use_PrivateKey_file(ctx, p->key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
            ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH)
            tg_conf_error(cf, "key \"%s\" does not match certificate \"%s\"", p->key, p->cert);
        else
            tg_conf_error(cf, "cannot read key \"%s\": %s", p->key, tg_tls_error_reason());
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tg_conf_error(cf, "key \"%s\" does not match certificate \"%s\"", p->key, p->cert);
        return -1;
    }
    p->leaf = x;
    return p->staple ? load_staple(cf, p) : 0;
}

/* The session id context: SHA-256 of the server block's place in the
 * config, its certificates and its client-certificate policy, so a session
 * (by ID or ticket) resumes only with the server block, certificates and
 * client-CA setting that made it, also across a reload that changed them. */
static int set_sid_ctx(SSL_CTX *ctx, tg_server_t *s, tls_conf_t *t)
{
    unsigned char md[32], leaf[EVP_MAX_MD_SIZE];
    unsigned int n;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    char text[64];
    int ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(h, s->file, strlen(s->file) + 1);
    snprintf(text, sizeof(text), ":%d:%d:", s->line, (int)t->verify_client);
    ok = ok && EVP_DigestUpdate(h, text, strlen(text));
    if (ok && t->verify_client && t->client_ca)
        ok = EVP_DigestUpdate(h, t->client_ca, strlen(t->client_ca) + 1);
    for (int i = 0; ok && i < t->npairs; i++)
        ok = t->pairs[i].leaf && X509_digest(t->pairs[i].leaf, EVP_sha256(), leaf, &n) &&
             EVP_DigestUpdate(h, leaf, n);
    ok = ok && EVP_DigestFinal_ex(h, md, NULL) &&
         SSL_CTX_set_session_id_context(ctx, md, sizeof(md));
    EVP_MD_CTX_free(h);
    return ok ? 0 : -1;
}

static SSL_CTX *build_ctx(tg_conf_t *cf, tg_server_t *s, tls_conf_t *t)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || tg_arena_on_reset(cf->arena, ctx_free, ctx) != 0) {
        SSL_CTX_free(ctx);
        tg_conf_error(cf, "out of memory");
        return NULL;
    }
    SSL_CTX_set_app_data(ctx, t);
    SSL_CTX_set_min_proto_version(ctx, (t->protocols & TLS_PROTO_12) ? TLS1_2_VERSION
                                                                      : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, (t->protocols & TLS_PROTO_13) ? TLS1_3_VERSION
                                                                      : TLS1_2_VERSION);
    /* a client that closes without close_notify has simply closed (browsers
     * do): end of stream, not an error */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_SINGLE_DH_USE | SSL_OP_SINGLE_ECDH_USE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* one read(2) takes whatever the socket has (up to the 16 KB buffer)
     * instead of a record's header, then its body, then an EAGAIN; readers
     * that return to the loop early check tg_tls_pending (SSL_has_pending) */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_dh_auto(ctx, 1);
    SSL_CTX_set_cipher_list(ctx, t->ciphers);
    SSL_CTX_set1_groups_list(ctx, t->groups);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, tg_h2_conf(s->mconf)->enable ? (void *)1 : NULL);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_status_cb(ctx, status_cb);
    /* resumption across workers: tickets whose keys every worker derives,
     * and session IDs in the shared cache; OpenSSL's per-process cache never */
    if (t->cache) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, sess_new_cb);
        SSL_CTX_sess_set_get_cb(ctx, sess_get_cb);
        SSL_CTX_sess_set_remove_cb(ctx, sess_remove_cb);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (t->session_tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
        SSL_CTX_set_session_ticket_cb(ctx, NULL, ticket_dec_cb, NULL);
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    SSL_CTX_set_timeout(ctx, (long)(t->session_timeout / 1000));
    if (t->mem_leaf &&
        SSL_CTX_use_cert_and_key(ctx, t->mem_leaf, t->mem_key, t->mem_chain, 1) != 1) {
        tg_conf_error(cf, "cannot use the certificate: %s", tg_tls_error_reason());
        return NULL;
    }
    for (int i = 0; i < t->npairs; i++)
        if (load_pair(cf, ctx, &t->pairs[i]) != 0)
            return NULL;
    if (set_sid_ctx(ctx, s, t) != 0) {
        tg_conf_error(cf, "cannot set the session id context: %s", tg_tls_error_reason());
        return NULL;
    }
    if (t->verify_client) {
        cf->file = t->ca_file ? t->ca_file : s->file;
        cf->line = t->ca_file ? t->ca_line : s->line;
        if (t->client_ca == NULL) {
            tg_conf_error(cf, "\"tls_verify_client\" needs \"tls_client_ca\"");
            return NULL;
        }
        ERR_clear_error();
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            tg_conf_error(cf, "cannot load client CA \"%s\": %s", t->client_ca, tg_tls_error_reason());
            return NULL;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (t->verify_client == 1
                                                       ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
    }
    return ctx;
}

static void mem_cert_free(void *data)
{
    tls_conf_t *t = data;
    X509_free(t->mem_leaf);
    sk_X509_pop_free(t->mem_chain, X509_free);
    EVP_PKEY_free(t->mem_key);
    t->mem_leaf = NULL;
    t->mem_chain = NULL;
    t->mem_key = NULL;
}

int tg_tls_server_set_cert(tg_conf_t *cf, void **mconf, X509 *leaf, STACK_OF(X509) *chain,
                           EVP_PKEY *key)
{
    tls_conf_t *t = tls_conf(mconf);
    if (t->ctx) {
        int ok = SSL_CTX_use_cert_and_key(t->ctx, leaf, key, chain, 1) == 1;
        ERR_clear_error();
        return ok ? 0 : -1;
    }
    if (cf == NULL)
        return -1;
    if (t->mem_leaf == NULL && tg_arena_on_reset(cf->arena, mem_cert_free, t) != 0)
        return -1;
    STACK_OF(X509) *c = chain ? X509_chain_up_ref(chain) : sk_X509_new_null();
    if (c == NULL)
        return -1;
    X509_up_ref(leaf);
    EVP_PKEY_up_ref(key);
    mem_cert_free(t);
    t->mem_leaf = leaf;
    t->mem_chain = c;
    t->mem_key = key;
    return 0;
}

int tg_tls_server_leaves(void **mconf, X509 **out, int max)
{
    tls_conf_t *t = tls_conf(mconf);
    int n = 0;
    if (t == NULL || t->ctx == NULL)
        return 0;
    for (int rc = SSL_CTX_set_current_cert(t->ctx, SSL_CERT_SET_FIRST); rc == 1 && n < max;
         rc = SSL_CTX_set_current_cert(t->ctx, SSL_CERT_SET_NEXT)) {
        X509 *x = SSL_CTX_get0_certificate(t->ctx);
        if (x)
            out[n++] = x;
    }
    ERR_clear_error();
    return n;
}

SSL_CTX *tg_tls_server_get_ctx(void **mconf)
{
    tls_conf_t *t = tls_conf(mconf);
    return t ? t->ctx : NULL;
}

int tg_tls_leaf_has_staple_file(void **mconf, X509 *leaf)
{
    tls_conf_t *t = tls_conf(mconf);
    for (int i = 0; t && i < t->npairs; i++)
        if (t->pairs[i].leaf == leaf && t->pairs[i].staple)
            return 1;
    return 0;
}

/* ---- upstream contexts ----------------------------------------------------- */

/* A new session ticket from an upstream: keep a copy on the peer (per
 * worker) for the next connection. A copy, because OpenSSL marks the
 * session objects of a connection not resumable when that connection gets
 * newer tickets or is freed; the copy is ours alone. */
static int up_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tg_peer_t *p = SSL_get_app_data(ssl);
    SSL_SESSION *copy = p ? SSL_SESSION_dup(sess) : NULL;
    if (copy == NULL)
        return 0;
    if (p->tls_session)
        SSL_SESSION_free(p->tls_session);
    p->tls_session = copy;
    return 0; /* OpenSSL keeps (and frees) its own reference */
}

/* A client context (HTTP/1.1 by ALPN, sessions kept per peer), freed with
 * the config arena. NULL after reporting "out of memory". */
static SSL_CTX *client_ctx_new(tg_conf_t *cf)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || tg_arena_on_reset(cf->arena, ctx_free, ctx) != 0) {
        SSL_CTX_free(ctx);
        tg_conf_error(cf, "out of memory");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, up_new_session_cb);
    SSL_CTX_set_alpn_protos(ctx, alpn_protos, sizeof(alpn_protos) - 1);
    return ctx;
}

void *tg_tls_client_ctx(tg_conf_t *cf, const char *ca, const char *what)
{
    SSL_CTX *ctx = client_ctx_new(cf);
    if (ctx == NULL) return NULL;
    ERR_clear_error();
    if (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
           : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        tg_conf_error(cf, "%s: cannot load trusted CA \"%s\": %s", what, ca ? ca : "(system store)",
                      tg_tls_error_reason());
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

static int build_upstream_ctx(tg_conf_t *cf, tg_upstream_t *u)
{
    cf->file = u->file;
    cf->line = u->line;
    SSL_CTX *ctx = client_ctx_new(cf);
    if (ctx == NULL) return -1;
    if (u->http2) /* h2 or nothing: an upstream that cannot is refused at the handshake */
        SSL_CTX_set_alpn_protos(ctx, alpn_protos_h2, 3);
    u->tls_ctx = ctx;
    if (u->tls_verify) {
        ERR_clear_error();
        if (u->tls_ca ? SSL_CTX_load_verify_locations(ctx, u->tls_ca, NULL) != 1
                      : SSL_CTX_set_default_verify_paths(ctx) != 1) {
            tg_conf_error(cf, "upstream \"%.*s\": cannot load trusted CA \"%s\": %s",
                          TG_STR_FMT(u->name), u->tls_ca ? u->tls_ca : "(system store)",
                          tg_tls_error_reason());
            return -1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (u->tls_cert) {
        cert_pair_t p = {.cert = u->tls_cert, .key = u->tls_key, .file = u->tls_cert_file,
                         .line = u->tls_cert_line};
        if (load_pair(cf, ctx, &p) != 0)
            return -1;
    }
    /* the host each server is checked against, and named by in SNI */
    for (int i = 0; i < u->npeers; i++) {
        tg_peer_t *p = &u->peers[i];
        tg_str_t n = p->name;
        const char *colon = NULL;
        if (n.len && n.p[0] == '[') {
            const char *rb = memchr(n.p, ']', n.len);
            n = (tg_str_t){n.p + 1, rb ? (size_t)(rb - n.p - 1) : n.len - 1};
        } else if ((colon = memrchr(n.p, ':', n.len)) != NULL) {
            n.len = (size_t)(colon - n.p);
        }
        char *h = tg_arena_alloc_nz(cf->arena, n.len + 1);
        if (h == NULL) {
            tg_conf_error(cf, "out of memory");
            return -1;
        }
        memcpy(h, n.p, n.len);
        h[n.len] = '\0';
        p->tls_host = h;
        unsigned char bin[16];
        p->tls_host_is_ip = inet_pton(AF_INET, h, bin) == 1 || inet_pton(AF_INET6, h, bin) == 1;
    }
    return 0;
}

static int has_tls_listen(tg_server_t *s)
{
    for (int i = 0; i < s->nlistens; i++)
        if (s->listens[i]->tls)
            return 1;
    return 0;
}

static const char *tls_init_conf(tg_conf_t *cf, void *main_conf)
{
    tg_config_t *c = cf->config;
    if (!ticket_secret_set) {
        if (RAND_bytes(ticket_secret, sizeof(ticket_secret)) != 1)
            return "cannot make the session ticket secret";
        ticket_secret_set = 1;
    }
    const char *file = cf->file;
    int line = cf->line;
    tls_conf_t *m = main_conf;
    tg_tls_cache_t *cache = NULL;
    int any_tls = 0;
    for (int i = 0; i < c->nservers; i++)
        any_tls |= has_tls_listen(c->servers[i]);
    if (any_tls && m->session_cache > 0) {
        tg_shm_zone_t *z;
        const char *err = tg_shm_zone_add(cf, tg_str_c(TLS_CACHE_ZONE), (size_t)m->session_cache,
                                          "tls_session_cache", &z);
        if (err)
            return err;
        if ((cache = tg_tls_cache_init(z->data, z->size)) == NULL)
            return "cannot set up the TLS session cache";
    }
    for (int i = 0; i < c->nservers; i++) {
        tg_server_t *s = c->servers[i];
        tls_conf_t *t = tls_conf(s->mconf);
        t->cache = cache;
        cf->file = s->file;
        cf->line = s->line;
        if (!has_tls_listen(s)) {
            if (t->npairs)
                tg_conf_warn(cf, "\"tls_certificate\" in a server without \"listen ... tls\"");
            continue;
        }
        if (t->npairs == 0 && t->mem_leaf == NULL) {
            tg_conf_error(cf, "server listens with \"tls\" but has no \"tls_certificate\"");
            continue;
        }
        t->ctx = build_ctx(cf, s, t);
    }
    for (tg_listen_t *ls = c->listens; ls; ls = ls->next)
        if (ls->tls)
            ls->tls_ctx = tls_conf(ls->default_server->mconf)->ctx;
    for (tg_upstream_t *u = c->upstreams; u; u = u->next)
        if (u->tls)
            build_upstream_ctx(cf, u);
    cf->file = file;
    cf->line = line;
    return NULL;
}

static const tg_directive_t tls_directives[] = {
    {"tls_certificate", TG_SCOPE_SERVER | TG_SCOPE_UPSTREAM, 0, 1, 1, set_certificate, 0},
    {"tls_certificate_key", TG_SCOPE_SERVER | TG_SCOPE_UPSTREAM, 0, 1, 1, set_certificate_key, 0},
    {"tls_stapling_file", TG_SCOPE_SERVER, 0, 1, 1, set_stapling_file, 0},
    {"tls_protocols", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 2, set_protocols, 0},
    {"tls_ciphers", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_ciphers, 0},
    {"tls_groups", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_ciphers, 0},
    {"tls_client_ca", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_client_ca, 0},
    {"tls_verify_client", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_verify_client, 0},
    {"tls_ticket_rotate", TG_SCOPE_MAIN, 0, 1, 1, set_ticket_rotate,
     offsetof(tls_conf_t, ticket_rotate)},
    {"tls_session_cache", TG_SCOPE_MAIN, 0, 1, 1, set_session_cache, 0},
    {"tls_session_timeout", TG_SCOPE_MAIN, 0, 1, 1, set_session_timeout,
     offsetof(tls_conf_t, session_timeout)},
    {"tls_session_tickets", TG_SCOPE_MAIN, 0, 1, 1, tg_conf_set_flag,
     offsetof(tls_conf_t, session_tickets)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_tls_module = {
    .name = "tls",
    .directives = tls_directives,
    .create_conf = tls_create_conf,
    .merge_conf = tls_merge_conf,
    .init_conf = tls_init_conf,
};
