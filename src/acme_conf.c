/* The acme module: automatic certificates for server blocks with `acme on`
 * (docs/acme.md). This file is the config and the workers' side; the
 * helper process that talks to the CA is src/acme.c (see acme.h for how
 * they share the "acme" zone).
 *
 * Config load (init_conf, in the master, before the tls module builds the
 * contexts): each `acme on` server's names are checked (no wildcard: only
 * http-01 is implemented), then it gets a certificate in memory
 * (tg_tls_server_set_cert): the one stored in `acme_storage` when it is
 * valid and names every server_name, else a self-signed placeholder valid
 * for one day, so TLS handshakes complete (untrusted) until the CA's
 * certificate arrives. The storage directory is made by the master when it
 * starts the helper (src/acme.c), never by `-t`.
 *
 * Workers: the server rewrite hook answers GET /.well-known/acme-challenge/
 * TOKEN from the zone's tokens, on every server block, so the port-80
 * listener answers whichever server block it picks; a one-second timer
 * installs a certificate whose slot sequence changed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "acme.h"
#include "tls_conf.h"
#include "request.h"
#include "worker.h"
#include "log.h"

#define ACME_DEFAULT_DIRECTORY "https://acme-v02.api.letsencrypt.org/directory"
#define ACME_DEFAULT_STORAGE "/var/lib/tollgate/acme"
#define ACME_PLACEHOLDER_SECS 86400

typedef struct acme_conf_s {
    int on;              /* server scope: `acme on` */
    const char *file;    /* where `acme on` was written */
    int line;
    int64_t key_type;    /* acme_key_type: tg_acme_key_type_t */
    int64_t tls_alpn;    /* acme_challenge: 1 tls-alpn-01, 0 http-01 */
    const char *directory, *ca_root, *email, *storage; /* main scope */
    int any;             /* main: some server has `acme on` (set while parsing) */
    int answers;         /* servers, locations: the main scope's `any`: answer challenges */
    struct acme_conf_s *main; /* servers: the main scope's config (set by init_conf) */
    tg_acme_main_t run;  /* main scope: what init_conf built */
} acme_conf_t;

extern tg_module_t tg_acme_module;

tg_acme_main_t *tg_acme_main(tg_config_t *c)
{
    acme_conf_t *m = c->mconf[tg_acme_module.index];
    return m && m->run.ncerts ? &m->run : NULL;
}

/* ---- directives ---- */

static void *acme_create_conf(tg_conf_t *cf)
{
    acme_conf_t *a = tg_arena_alloc(cf->arena, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->on = TG_CONF_UNSET;
    a->key_type = TG_CONF_UNSET;
    a->tls_alpn = TG_CONF_UNSET;
    return a;
}

static const char *acme_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    acme_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->on, p->on, 0);
    TG_CONF_MERGE(c->key_type, p->key_type, TG_ACME_KEY_EC256);
    TG_CONF_MERGE(c->tls_alpn, p->tls_alpn, 0);
    c->answers = p->any || p->answers;
    return NULL;
}

static const char *set_acme(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    acme_conf_t *a = conf;
    const char *err = tg_conf_set_flag(cf, d, conf);
    acme_conf_t *m = cf->config->mconf ? cf->config->mconf[tg_acme_module.index] : NULL;
    a->file = cf->file;
    a->line = cf->line;
    if (err == NULL && a->on == 1 && m)
        m->any = 1; /* every server then answers http-01 (see acme_is_active) */
    return err;
}

static const char *set_key_type(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    acme_conf_t *a = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "ecdsa-p256"))
        a->key_type = TG_ACME_KEY_EC256;
    else if (tg_str_eq_lit(v, "rsa-2048"))
        a->key_type = TG_ACME_KEY_RSA2048;
    else
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"acme_key_type\", expected "
                                "ecdsa-p256 or rsa-2048",
                            TG_STR_FMT(v));
    return NULL;
}

static const char *set_challenge(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    acme_conf_t *a = conf;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (tg_str_eq_lit(v, "http-01"))
        a->tls_alpn = 0;
    else if (tg_str_eq_lit(v, "tls-alpn-01"))
        a->tls_alpn = 1;
    else
        return tg_conf_errf(cf, "invalid value \"%.*s\" in \"acme_challenge\", expected "
                                "http-01 or tls-alpn-01",
                            TG_STR_FMT(v));
    return NULL;
}

static const char *set_directory(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_str_t v = tg_conf_arg(cf, 1);
    if (v.len < 9 || memcmp(v.p, "https://", 8) != 0)
        return tg_conf_errf(cf, "\"acme_directory\" \"%.*s\" must be an https:// URL",
                            TG_STR_FMT(v));
    ((acme_conf_t *)conf)->directory = v.p;
    return NULL;
}

static const char *set_ca_root(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    const char *path = tg_conf_path(cf, tg_conf_arg(cf, 1));
    if (access(path, R_OK) != 0)
        return tg_conf_errf(cf, "cannot open \"acme_ca_root\" \"%s\": %s", path, strerror(errno));
    ((acme_conf_t *)conf)->ca_root = path;
    return NULL;
}

static const char *set_email(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    tg_str_t v = tg_conf_arg(cf, 1);
    const char *at = memchr(v.p, '@', v.len);
    if (at == NULL || at == v.p || at == v.p + v.len - 1 || memchr(v.p, ' ', v.len))
        return tg_conf_errf(cf, "\"acme_email\" \"%.*s\" is not an email address", TG_STR_FMT(v));
    ((acme_conf_t *)conf)->email = v.p;
    return NULL;
}

static const char *set_storage(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ((acme_conf_t *)conf)->storage = tg_conf_path(cf, tg_conf_arg(cf, 1));
    return NULL;
}

/* ---- certificates in PEM ---- */

int tg_acme_pem_load(const char *crt, size_t crt_len, const char *key, size_t key_len,
                     X509 **leaf, STACK_OF(X509) **chain, EVP_PKEY **pkey)
{
    BIO *cb = BIO_new_mem_buf(crt, (int)crt_len), *kb = BIO_new_mem_buf(key, (int)key_len);
    *leaf = NULL;
    *chain = sk_X509_new_null();
    *pkey = NULL;
    X509 *x;
    if (cb && kb && *chain && (*leaf = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL) {
        while ((x = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL)
            if (!sk_X509_push(*chain, x)) {
                X509_free(x);
                break;
            }
        *pkey = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    }
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();
    if (*pkey && X509_check_private_key(*leaf, *pkey) == 1)
        return 0;
    ERR_clear_error();
    X509_free(*leaf);
    sk_X509_pop_free(*chain, X509_free);
    EVP_PKEY_free(*pkey);
    *leaf = NULL;
    *chain = NULL;
    *pkey = NULL;
    return -1;
}

/* A whole small file, malloc'd and NUL-terminated; NULL when missing. */
static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(TG_ACME_PEM_MAX + 1);
    size_t n = 0;
    ssize_t r;
    while (buf && n < TG_ACME_PEM_MAX && (r = read(fd, buf + n, TG_ACME_PEM_MAX - n)) > 0)
        n += (size_t)r;
    close(fd);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

int tg_acme_pem_load_files(const char *crt_path, const char *key_path, X509 **leaf,
                           STACK_OF(X509) **chain, EVP_PKEY **pkey)
{
    size_t cl = 0, kl = 0;
    char *c = slurp(crt_path, &cl), *k = c ? slurp(key_path, &kl) : NULL;
    int rc = k ? tg_acme_pem_load(c, cl, k, kl, leaf, chain, pkey) : -1;
    if (k)
        OPENSSL_cleanse(k, kl);
    free(c);
    free(k);
    return rc;
}

int64_t tg_acme_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

int tg_acme_cert_fits(const tg_acme_cert_t *cert, X509 *leaf, EVP_PKEY *key)
{
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0 ||
        EVP_PKEY_is_a(key, "RSA") != (cert->key_type == TG_ACME_KEY_RSA2048))
        return 0;
    for (int i = 0; i < cert->nnames; i++)
        if (X509_check_host(leaf, cert->names[i], 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1)
            return 0;
    return 1;
}

/* ---- config load ---- */

/* The server's names as an ACME certificate's, or -1 after an error. */
static int cert_names(tg_conf_t *cf, tg_server_t *s, acme_conf_t *a, tg_acme_cert_t *cert)
{
    cf->file = a->file;
    cf->line = a->line;
    if (s->nnames == 0 || (s->nnames == 1 && s->names[0].len == 0)) {
        tg_conf_error(cf, "\"acme on\" needs a \"server_name\" to ask a certificate for");
        return -1;
    }
    cert->names = tg_arena_alloc(cf->arena, (size_t)s->nnames * sizeof(char *));
    size_t total = 0;
    for (int i = 0; cert->names && i < s->nnames; i++) {
        tg_str_t n = s->names[i];
        if (n.len == 0)
            continue;
        if (memchr(n.p, '*', n.len) || n.p[0] == '.' || n.p[0] == '~') {
            tg_conf_error(cf, "\"acme on\": server_name \"%.*s\" is a wildcard or pattern; "
                              "ACME gives wildcard names only with a DNS challenge, which is "
                              "not supported",
                          TG_STR_FMT(n));
            return -1;
        }
        char *c = tg_arena_alloc_nz(cf->arena, n.len + 1);
        if (c == NULL)
            break;
        for (size_t j = 0; j < n.len; j++)
            c[j] = (n.p[j] >= 'A' && n.p[j] <= 'Z') ? (char)(n.p[j] + 32) : n.p[j];
        c[n.len] = '\0';
        cert->names[cert->nnames++] = c;
        total += n.len + 1;
    }
    if (cert->names == NULL || total >= TG_ACME_NAMES_MAX ||
        (cert->names_text = tg_arena_alloc(cf->arena, total + 1)) == NULL) {
        tg_conf_error(cf, "\"acme on\": too many server names for one certificate");
        return -1;
    }
    for (int i = 0; i < cert->nnames; i++) {
        if (i)
            strcat(cert->names_text, " ");
        strcat(cert->names_text, cert->names[i]);
    }
    return 0;
}

/* The stored certificate when it fits, else a placeholder, for the server. */
static int initial_cert(tg_conf_t *cf, tg_acme_cert_t *cert)
{
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;
    if (tg_acme_pem_load_files(cert->crt_path, cert->key_path, &leaf, &chain, &key) == 0 &&
        !tg_acme_cert_fits(cert, leaf, key)) {
        X509_free(leaf);
        sk_X509_pop_free(chain, X509_free);
        EVP_PKEY_free(key);
        leaf = NULL;
        chain = NULL;
        key = NULL;
    }
    if (leaf == NULL) {
        key = tg_acme_key_new(cert->key_type);
        leaf = key ? tg_acme_self_signed(key, cert->names, cert->nnames, ACME_PLACEHOLDER_SECS)
                   : NULL;
    }
    if (leaf && key && tg_tls_server_set_cert(cf, cert->server->mconf, leaf, chain, key) == 0)
        rc = 0;
    else
        tg_conf_error(cf, "\"acme on\": cannot set up a certificate for \"%s\"", cert->names[0]);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return rc;
}

static int has_tls_listen(tg_server_t *s)
{
    for (int i = 0; i < s->nlistens; i++)
        if (s->listens[i]->tls)
            return 1;
    return 0;
}

static const char *acme_init_conf(tg_conf_t *cf, void *main_conf)
{
    acme_conf_t *m = main_conf;
    tg_config_t *c = cf->config;
    tg_acme_main_t *run = &m->run;
    const char *file = cf->file;
    int line = cf->line;
    int n = 0, errors = cf->nerrors;
    for (int i = 0; i < c->nservers; i++) {
        acme_conf_t *a = c->servers[i]->mconf[tg_acme_module.index];
        a->main = m; /* every server answers challenges: its port-80 listener may be another's */
        n += a->on == 1;
    }
    if (n == 0)
        return NULL;
    run->directory = m->directory ? m->directory : ACME_DEFAULT_DIRECTORY;
    run->ca_root = m->ca_root;
    run->email = m->email;
    run->storage = m->storage ? m->storage : ACME_DEFAULT_STORAGE;
    run->account_key_type = m->key_type == TG_CONF_UNSET ? TG_ACME_KEY_EC256
                                                         : (tg_acme_key_type_t)m->key_type;
    run->certs = tg_arena_alloc(cf->arena, (size_t)n * sizeof(tg_acme_cert_t));
    if (run->certs == NULL)
        return "out of memory";
    for (int i = 0; i < c->nservers; i++) {
        tg_server_t *s = c->servers[i];
        acme_conf_t *a = s->mconf[tg_acme_module.index];
        if (a->on != 1)
            continue;
        tg_acme_cert_t *cert = &run->certs[run->ncerts];
        cert->server = s;
        cert->key_type = (tg_acme_key_type_t)a->key_type;
        cert->tls_alpn = a->tls_alpn == 1;
        if (cert_names(cf, s, a, cert) != 0)
            continue;
        if (!has_tls_listen(s)) {
            tg_conf_error(cf, "\"acme on\" in a server without \"listen ... tls\"");
            continue;
        }
        cert->crt_path = tg_arena_printf(cf->arena, "%s/%s.crt", run->storage, cert->names[0]);
        cert->key_path = tg_arena_printf(cf->arena, "%s/%s.key", run->storage, cert->names[0]);
        if (cert->crt_path == NULL || cert->key_path == NULL || initial_cert(cf, cert) != 0)
            continue;
        run->ncerts++;
    }
    cf->file = file;
    cf->line = line;
    if (cf->nerrors > errors)
        return TG_CONF_REPORTED;
    tg_shm_zone_t *z;
    size_t size = sizeof(tg_acme_shm_t) + (size_t)run->ncerts * sizeof(tg_acme_slot_t);
    const char *err = tg_shm_zone_add(cf, TG_STR("acme"), tg_shm_align(size, 4096),
                                      TG_ACME_ZONE_TAG, &z);
    if (err)
        return err;
    run->shm = z->data;
    if (!run->shm->lock_ready) {
        if (tg_shm_mutex_init(&run->shm->lock) != 0)
            return "cannot make the acme zone's lock";
        run->shm->lock_ready = 1;
    }
    return NULL;
}

/* ---- workers: http-01 answers ---- */

/* Only when some server has `acme on`, but then on every server: the CA's
 * request may reach the port-80 listener of another server block. */
static int acme_is_active(void *conf)
{
    return ((acme_conf_t *)conf)->answers;
}

static tg_rc_t acme_server_rewrite(tg_request_t *r, void *conf)
{
    acme_conf_t *a = conf;
    static const size_t plen = sizeof(TG_ACME_CHALLENGE_PREFIX) - 1;
    tg_acme_shm_t *shm = a->main ? a->main->run.shm : NULL;
    if (shm == NULL || r->path.len <= plen ||
        memcmp(r->path.p, TG_ACME_CHALLENGE_PREFIX, plen) != 0)
        return TG_OK;
    tg_str_t token = {r->path.p + plen, r->path.len - plen};
    char answer[sizeof(shm->tokens[0].keyauth)];
    answer[0] = '\0';
    if (tg_shm_mutex_lock(&shm->lock) < 0)
        return TG_OK;
    for (int i = 0; i < TG_ACME_TOKENS; i++) {
        tg_acme_token_t *t = &shm->tokens[i];
        if (t->token[0] && strlen(t->token) == token.len &&
            memcmp(t->token, token.p, token.len) == 0) {
            memcpy(answer, t->keyauth, sizeof(answer));
            answer[sizeof(answer) - 1] = '\0';
            break;
        }
    }
    tg_shm_mutex_unlock(&shm->lock);
    if (answer[0] == '\0')
        return TG_OK; /* not ours: the locations may serve it */
    tg_log(TG_LOG_INFO, "acme: answered the http-01 challenge for token %.*s",
           TG_STR_FMT(token));
    if (tg_request_respond(r, 200, "application/octet-stream", tg_str_c(answer)) != 0)
        return TG_ERROR;
    return TG_DONE;
}

/* ---- workers: tls-alpn-01 answers ---- */

static SSL_CTX *alpn_ctx;       /* per worker: selects acme-tls/1, no certificate of its own */
static tg_acme_shm_t *alpn_shm; /* per worker: where the challenge certificates are */

static int select_acme_tls(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x0a" "acme-tls/1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The CA's validation handshake (RFC 8737): answer with the challenge
 * certificate the helper published for this name, or fail it. */
static int alpn_challenge(SSL *ssl, tg_str_t host)
{
    char *copy = malloc(TG_ACME_ALPN_PEM);
    uint32_t cl = 0, kl = 0;
    int found = 0;
    if (copy == NULL || tg_shm_mutex_lock(&alpn_shm->lock) < 0) {
        free(copy);
        return 0;
    }
    for (int i = 0; i < TG_ACME_ALPN && !found; i++) {
        tg_acme_alpn_t *e = &alpn_shm->alpn[i];
        if (e->name[0] && strlen(e->name) == host.len && memcmp(e->name, host.p, host.len) == 0 &&
            e->cert_len + e->key_len <= TG_ACME_ALPN_PEM) {
            cl = e->cert_len;
            kl = e->key_len;
            memcpy(copy, e->pem, cl + kl);
            found = 1;
        }
    }
    tg_shm_mutex_unlock(&alpn_shm->lock);
    X509 *x = NULL;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    int ok = found && tg_acme_pem_load(copy, cl, copy + cl, kl, &x, &chain, &key) == 0 &&
             SSL_set_SSL_CTX(ssl, alpn_ctx) != NULL &&
             SSL_use_cert_and_key(ssl, x, key, NULL, 1) == 1;
    ERR_clear_error();
    X509_free(x);
    if (chain)
        sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    free(copy);
    tg_log(ok ? TG_LOG_INFO : TG_LOG_WARN, "acme: %s the tls-alpn-01 challenge for %.*s",
           ok ? "answered" : "no answer to", TG_STR_FMT(host));
    return ok;
}

int tg_acme_slot_load(const tg_acme_slot_t *sl, uint64_t seq, X509 **leaf,
                      STACK_OF(X509) **chain, EVP_PKEY **pkey)
{
    char *copy = malloc(TG_ACME_PEM_MAX);
    if (copy == NULL)
        return -1;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    uint32_t cl = sl->chain_len, kl = sl->key_len;
    if (cl + kl <= TG_ACME_PEM_MAX)
        memcpy(copy, sl->pem, cl + kl);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    int rc = sl->seq == seq && cl + kl <= TG_ACME_PEM_MAX &&
                     tg_acme_pem_load(copy, cl, copy + cl, kl, leaf, chain, pkey) == 0
                 ? 0
                 : -1;
    OPENSSL_cleanse(copy, TG_ACME_PEM_MAX);
    free(copy);
    return rc;
}

/* ---- workers: new certificates ---- */

static ev_timer poll_timer;           /* per worker: the check for new certificates */
static uint64_t *seen_seq;            /* per worker: the slot sequence last installed */

/* Install slot i's certificate when its sequence moved on. */
static void install(tg_acme_main_t *run, int i)
{
    tg_acme_slot_t *sl = &run->shm->slots[i];
    tg_acme_cert_t *cert = &run->certs[i];
    uint64_t seq = sl->seq;
    if (seq == seen_seq[i] || (seq & 1) || sl->chain_len == 0 ||
        strcmp(sl->names, cert->names_text) != 0)
        return;
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    if (tg_acme_slot_load(sl, seq, &leaf, &chain, &key) != 0)
        return;
    if (tg_tls_server_set_cert(NULL, cert->server->mconf, leaf, chain, key) == 0) {
        seen_seq[i] = seq;
        tg_log(TG_LOG_INFO, "acme: certificate for %s installed", cert->names_text);
    }
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
}

static void install_all(tg_acme_main_t *run)
{
    for (int i = 0; i < run->ncerts; i++)
        install(run, i);
}

static void on_poll(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    install_all(t->data);
}

static int acme_init_worker(tg_worker_t *w)
{
    tg_acme_main_t *run = tg_acme_main(w->config);
    if (run == NULL)
        return 0;
    if ((seen_seq = calloc((size_t)run->ncerts, sizeof(*seen_seq))) == NULL)
        return -1;
    install_all(run);
    int alpn = 0;
    for (int i = 0; i < run->ncerts; i++)
        alpn |= run->certs[i].tls_alpn;
    if (alpn) {
        if ((alpn_ctx = SSL_CTX_new(TLS_server_method())) == NULL)
            return -1;
        SSL_CTX_set_min_proto_version(alpn_ctx, TLS1_2_VERSION);
        SSL_CTX_set_alpn_select_cb(alpn_ctx, select_acme_tls, NULL);
        alpn_shm = run->shm;
        tg_tls_set_challenge_hook(alpn_challenge);
    }
    ev_timer_init(&poll_timer, on_poll, 1.0, 1.0);
    poll_timer.data = run;
    ev_timer_start(w->loop, &poll_timer);
    return 0;
}

static void acme_exit_worker(tg_worker_t *w)
{
    if (seen_seq == NULL)
        return;
    ev_timer_stop(w->loop, &poll_timer);
    if (alpn_ctx) {
        tg_tls_set_challenge_hook(NULL);
        SSL_CTX_free(alpn_ctx);
        alpn_ctx = NULL;
    }
    free(seen_seq);
    seen_seq = NULL;
}

static const tg_directive_t acme_directives[] = {
    {"acme", TG_SCOPE_SERVER, 0, 1, 1, set_acme, offsetof(acme_conf_t, on)},
    {"acme_directory", TG_SCOPE_MAIN, 0, 1, 1, set_directory, 0},
    {"acme_ca_root", TG_SCOPE_MAIN, 0, 1, 1, set_ca_root, 0},
    {"acme_email", TG_SCOPE_MAIN, 0, 1, 1, set_email, 0},
    {"acme_storage", TG_SCOPE_MAIN, 0, 1, 1, set_storage, 0},
    {"acme_key_type", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_key_type, 0},
    {"acme_challenge", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_challenge, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_acme_module = {
    .name = "acme",
    .directives = acme_directives,
    .create_conf = acme_create_conf,
    .merge_conf = acme_merge_conf,
    .init_conf = acme_init_conf,
    .is_active = acme_is_active,
    .init_worker = acme_init_worker,
    .exit_worker = acme_exit_worker,
    .on_server_rewrite = acme_server_rewrite,
};
