/* The ACME helper process (RFC 8555 client) and its life in the master.
 *
 * The master forks it after it forks a generation's workers (tg_acme_start,
 * again on every reload, after a crash with a delay). It switches to the
 * workers' user and loops: for each `acme on` certificate, when one is due,
 * it takes the storage lock, looks at the storage again (another gateway
 * sharing it may have issued meanwhile), and if the stored certificate does
 * not fit or is past 2/3 of its lifetime, orders a new one over http-01:
 * newAccount (once per run, the stored account key), newOrder, for each
 * authorization the challenge token published in the zone (every worker
 * answers it) and polled until valid, finalize with a CSR for a fresh key,
 * download. The key and chain are written to the storage (0600, renamed
 * into place) and published in the zone, where workers pick them up.
 * A failure keeps the certificate served and retries after 5 s, doubling up
 * to an hour.
 *
 * Why a process and not the master or a worker: the ACME exchange is a
 * sequence of requests with polls in between; written as sequential code
 * with bounded waits (acme_http.c) it stays short and readable, and a
 * process of its own never delays a client (workers) nor signal handling and
 * worker supervision (master). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include "acme.h"
#include "acme_http.h"
#include "helper_proc.h"
#include "log.h"
#include "user.h"

#define HTTP_TIMEOUT_MS 10000
#define POLL_TRIES 60           /* authorization and order polls, about a second apart */
#define BACKOFF_FIRST 5         /* seconds after the first failure, doubling */
#define BACKOFF_MAX 3600

/* ---- master side ---- */

static tg_helper_t helper = {.name = "acme"};

/* The storage directory, 0700 and the workers' user's, and the files in it
 * that user must write (left by a run as another user). */
static int prepare_storage(tg_acme_main_t *run, const tg_user_t *u)
{
    if (mkdir(run->storage, 0700) != 0 && errno != EEXIST) {
        tg_log_errno(TG_LOG_ERROR, "acme: cannot make the storage directory %s", run->storage);
        return -1;
    }
    if (tg_user_switches(u)) {
        if (chown(run->storage, u->uid, u->gid) != 0) {
            tg_log_errno(TG_LOG_ERROR, "acme: cannot give %s to user %s", run->storage, u->name);
            return -1;
        }
        char path[4096];
        const char *fixed[] = {"account.key", "lock"};
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof(path), "%s/%s", run->storage, fixed[i]);
            if (lchown(path, u->uid, u->gid) != 0 && errno != ENOENT)
                tg_log_errno(TG_LOG_WARN, "acme: cannot give %s to user %s", path, u->name);
        }
        for (int i = 0; i < run->ncerts; i++) {
            if (lchown(run->certs[i].crt_path, u->uid, u->gid) != 0 && errno != ENOENT)
                tg_log_errno(TG_LOG_WARN, "acme: cannot give %s to %s", run->certs[i].crt_path,
                             u->name);
            if (lchown(run->certs[i].key_path, u->uid, u->gid) != 0 && errno != ENOENT)
                tg_log_errno(TG_LOG_WARN, "acme: cannot give %s to %s", run->certs[i].key_path,
                             u->name);
        }
    }
    if (chmod(run->storage, 0700) != 0) {
        tg_log_errno(TG_LOG_ERROR, "acme: chmod 0700 %s", run->storage);
        return -1;
    }
    return 0;
}

static void helper_main(tg_config_t *c, SSL_CTX *ctx) __attribute__((noreturn));

/* The client context that checks the CA's certificate: made before the
 * helper leaves root, so acme_ca_root may be a file only root reads. */
static SSL_CTX *client_ctx(tg_acme_main_t *run)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL ||
        (run->ca_root ? SSL_CTX_load_verify_locations(ctx, run->ca_root, NULL)
                      : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        tg_log(TG_LOG_ERROR, "acme: cannot load the CA roots %s",
               run->ca_root ? run->ca_root : "(system store)");
        _exit(1);
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    return ctx;
}

static void *helper_as_root(tg_config_t *c)
{
    return client_ctx(tg_acme_main(c));
}

static void helper_run(tg_config_t *c, void *ctx)
{
    helper_main(c, ctx);
}

void tg_acme_start(tg_config_t *c)
{
    tg_helper_stop(&helper);
    tg_acme_main_t *run = tg_acme_main(c);
    if (run == NULL || prepare_storage(run, &c->main->user) != 0)
        return;
    char what[64];
    snprintf(what, sizeof(what), "for %d certificate%s", run->ncerts, run->ncerts == 1 ? "" : "s");
    tg_helper_fork(&helper, c, helper_as_root, helper_run, what);
}

void tg_acme_tick(tg_config_t *c)
{
    if (tg_helper_due(&helper))
        tg_acme_start(c);
}

int tg_acme_reaped(pid_t pid, int status)
{
    return tg_helper_reaped(&helper, pid, status);
}

void tg_acme_stop(void)
{
    tg_helper_stop(&helper);
}

/* ---- the helper: talking to the CA ---- */

typedef struct {
    tg_acme_main_t *run;
    SSL_CTX *ctx;
    EVP_PKEY *account_key;
    char *thumbprint;
    char *kid;     /* account URL, once registered in this run */
    char *nonce;   /* the next Replay-Nonce to use */
    json_t *dir;   /* the directory object */
    char err[512]; /* why the current attempt failed */
} client_t;

typedef struct {
    double due;      /* monotonic seconds */
    int failures;
    int64_t served;  /* notAfter of the certificate published, 0: none yet */
    int waiting;     /* logged that another gateway holds the lock */
} cert_state_t;

static int64_t wall(void)
{
    return (int64_t)time(NULL);
}

static void set_err(client_t *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(client_t *cl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cl->err, sizeof(cl->err), fmt, ap);
    va_end(ap);
}

/* The problem document's detail (RFC 7807), or the status. */
static void problem(client_t *cl, const char *what, tg_acme_resp_t *r)
{
    json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
    const char *detail = j ? json_string_value(json_object_get(j, "detail")) : NULL;
    const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;
    if (r->status == 0)
        set_err(cl, "%s: %s", what, r->err);
    else
        set_err(cl, "%s: status %d%s%s%s%s", what, r->status, type ? " " : "", type ? type : "",
                detail ? ": " : "", detail ? detail : "");
    json_decref(j);
}

static void take_nonce(client_t *cl, tg_acme_resp_t *r)
{
    if (r->nonce) {
        free(cl->nonce);
        cl->nonce = r->nonce;
        r->nonce = NULL;
    }
}

static const char *dir_url(client_t *cl, const char *name)
{
    return json_string_value(json_object_get(cl->dir, name));
}

static int get_directory(client_t *cl)
{
    if (cl->dir)
        return 0;
    tg_acme_resp_t r;
    if (tg_acme_http(cl->ctx, "GET", cl->run->directory, NULL, NULL, 0, NULL, HTTP_TIMEOUT_MS,
                     &r) != 0 ||
        r.status != 200) {
        problem(cl, "directory", &r);
        tg_acme_resp_free(&r);
        return -1;
    }
    cl->dir = json_loads(r.body, 0, NULL);
    tg_acme_resp_free(&r);
    if (cl->dir == NULL || !dir_url(cl, "newNonce") || !dir_url(cl, "newAccount") ||
        !dir_url(cl, "newOrder")) {
        json_decref(cl->dir);
        cl->dir = NULL;
        set_err(cl, "directory %s: not an ACME directory", cl->run->directory);
        return -1;
    }
    return 0;
}

static int new_nonce(client_t *cl)
{
    tg_acme_resp_t r;
    if (tg_acme_http(cl->ctx, "HEAD", dir_url(cl, "newNonce"), NULL, NULL, 0, NULL,
                     HTTP_TIMEOUT_MS, &r) != 0 ||
        r.nonce == NULL) {
        problem(cl, "newNonce", &r);
        tg_acme_resp_free(&r);
        return -1;
    }
    take_nonce(cl, &r);
    tg_acme_resp_free(&r);
    return 0;
}

/* A signed POST (payload "" for POST-as-GET). A badNonce answer is retried
 * with the fresh nonce it carries (RFC 8555 6.5). 0 and *r filled (any
 * status), or -1 with cl->err. */
static int post(client_t *cl, const char *url, const char *payload, const char *accept,
                tg_acme_resp_t *r)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        if (cl->nonce == NULL && new_nonce(cl) != 0)
            return -1;
        char *body = tg_acme_jws(cl->account_key, cl->kid, cl->nonce, url, payload);
        free(cl->nonce);
        cl->nonce = NULL;
        if (body == NULL) {
            set_err(cl, "cannot sign the request to %s", url);
            return -1;
        }
        int rc = tg_acme_http(cl->ctx, "POST", url, "application/jose+json", body, strlen(body),
                              accept, HTTP_TIMEOUT_MS, r);
        free(body);
        if (rc != 0) {
            problem(cl, url, r);
            tg_acme_resp_free(r);
            return -1;
        }
        take_nonce(cl, r);
        if (r->status == 400 && r->body && strstr(r->body, "urn:ietf:params:acme:error:badNonce")) {
            tg_acme_resp_free(r);
            continue;
        }
        return 0;
    }
    set_err(cl, "%s: the CA kept refusing our nonces", url);
    return -1;
}

/* A POST whose answer must be JSON with one of the statuses: the object,
 * or NULL with cl->err. *location gets the Location header when asked. */
static json_t *post_json(client_t *cl, const char *what, const char *url, const char *payload,
                         char **location)
{
    tg_acme_resp_t r;
    if (post(cl, url, payload, NULL, &r) != 0)
        return NULL;
    json_t *j = NULL;
    if (r.status < 200 || r.status > 299 || (j = json_loads(r.body, 0, NULL)) == NULL) {
        problem(cl, what, &r);
        tg_acme_resp_free(&r);
        return NULL;
    }
    if (location) {
        *location = r.location;
        r.location = NULL;
    }
    tg_acme_resp_free(&r);
    return j;
}

static char *key_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1) {
        long n = BIO_get_mem_data(b, &data);
        if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

/* Write `data` to `path` through a temporary file renamed into place (mode
 * 0600), so a reader sees the old or the new file, never half of one. */
static int write_file(const char *path, const char *data, size_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    int ok = off == len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int load_account(client_t *cl)
{
    if (cl->account_key)
        return 0;
    char path[4096];
    snprintf(path, sizeof(path), "%s/account.key", cl->run->storage);
    FILE *f = fopen(path, "r");
    if (f) {
        cl->account_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        ERR_clear_error();
        if (cl->account_key == NULL) {
            set_err(cl, "%s is not a private key", path);
            return -1;
        }
    } else {
        cl->account_key = tg_acme_key_new(cl->run->account_key_type);
        char *pem = cl->account_key ? key_pem(cl->account_key) : NULL;
        int rc = pem ? write_file(path, pem, strlen(pem)) : -1;
        if (pem)
            OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
        if (rc != 0) {
            set_err(cl, "cannot write the account key %s: %s", path, strerror(errno));
            EVP_PKEY_free(cl->account_key);
            cl->account_key = NULL;
            return -1;
        }
        tg_log(TG_LOG_INFO, "acme: new account key %s", path);
    }
    cl->thumbprint = tg_acme_thumbprint(cl->account_key);
    return cl->thumbprint ? 0 : -1;
}

static int register_account(client_t *cl)
{
    if (cl->kid)
        return 0;
    json_t *req = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    if (cl->run->email) {
        char mail[512];
        snprintf(mail, sizeof(mail), "mailto:%s", cl->run->email);
        json_object_set_new(req, "contact", json_pack("[s]", mail));
    }
    char *payload = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char *loc = NULL;
    json_t *acct = payload ? post_json(cl, "newAccount", dir_url(cl, "newAccount"), payload, &loc)
                           : NULL;
    free(payload);
    json_decref(acct);
    if (acct == NULL)
        return -1;
    if (loc == NULL) {
        set_err(cl, "newAccount: no account URL in the answer");
        return -1;
    }
    cl->kid = loc;
    tg_log(TG_LOG_INFO, "acme: account %s", loc);
    return 0;
}

/* Publish or withdraw an http-01 token for the workers. */
static void token_set(tg_acme_shm_t *shm, const char *token, const char *keyauth)
{
    if (tg_shm_mutex_lock(&shm->lock) < 0)
        return;
    int free_i = -1;
    for (int i = 0; i < TG_ACME_TOKENS; i++) {
        tg_acme_token_t *t = &shm->tokens[i];
        if (strcmp(t->token, token) == 0) {
            free_i = i;
            break;
        }
        if (t->token[0] == '\0' && free_i < 0)
            free_i = i;
    }
    if (free_i >= 0) {
        tg_acme_token_t *t = &shm->tokens[free_i];
        memset(t, 0, sizeof(*t));
        if (keyauth) {
            snprintf(t->token, sizeof(t->token), "%s", token);
            snprintf(t->keyauth, sizeof(t->keyauth), "%s", keyauth);
        }
    }
    tg_shm_mutex_unlock(&shm->lock);
}

/* Publish (pem non-NULL) or withdraw the tls-alpn-01 certificate for
 * `name`. 0, or -1 when no entry is free or it is too big. */
static int alpn_set(tg_acme_shm_t *shm, const char *name, const char *cert, const char *key)
{
    size_t cl = cert ? strlen(cert) : 0, kl = key ? strlen(key) : 0;
    if (cl + kl > TG_ACME_ALPN_PEM || strlen(name) >= sizeof(shm->alpn[0].name) ||
        tg_shm_mutex_lock(&shm->lock) < 0)
        return -1;
    int free_i = -1;
    for (int i = 0; i < TG_ACME_ALPN; i++) {
        tg_acme_alpn_t *e = &shm->alpn[i];
        if (strcmp(e->name, name) == 0) {
            free_i = i;
            break;
        }
        if (e->name[0] == '\0' && free_i < 0)
            free_i = i;
    }
    if (free_i >= 0) {
        tg_acme_alpn_t *e = &shm->alpn[free_i];
        OPENSSL_cleanse(e, sizeof(*e));
        if (cert) {
            memcpy(e->pem, cert, cl);
            memcpy(e->pem + cl, key, kl);
            e->cert_len = (uint32_t)cl;
            e->key_len = (uint32_t)kl;
            snprintf(e->name, sizeof(e->name), "%s", name);
        }
    }
    tg_shm_mutex_unlock(&shm->lock);
    return free_i >= 0 ? 0 : -1;
}

static char *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    if (b && PEM_write_bio_X509(b, x) == 1) {
        long n = BIO_get_mem_data(b, &data);
        if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

/* Make and publish the tls-alpn-01 certificate for `name`. */
static int alpn_publish(client_t *cl, const char *name, const char *keyauth)
{
    EVP_PKEY *k = tg_acme_key_new(TG_ACME_KEY_EC256);
    X509 *x = k ? tg_acme_alpn_cert(k, name, keyauth, 3600) : NULL;
    char *c = x ? cert_pem(x) : NULL, *kp = c ? key_pem(k) : NULL;
    int rc = kp ? alpn_set(cl->run->shm, name, c, kp) : -1;
    if (rc != 0)
        set_err(cl, "cannot make the tls-alpn-01 certificate for %s", name);
    if (kp)
        OPENSSL_cleanse(kp, strlen(kp));
    free(kp);
    free(c);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

/* Wait `secs` (the CA's Retry-After, at least 1 s, at most 10 s). */
static void pause_for(long secs)
{
    struct timespec ts = {secs < 1 ? 1 : secs > 10 ? 10 : secs, 0};
    nanosleep(&ts, NULL);
}

/* Why an authorization or order failed: its or a challenge's problem
 * detail, or NULL. */
static const char *failure_detail(json_t *j)
{
    const char *d = json_string_value(json_object_get(json_object_get(j, "error"), "detail"));
    json_t *ch;
    size_t i;
    json_array_foreach(json_object_get(j, "challenges"), i, ch) {
        if (d == NULL)
            d = json_string_value(json_object_get(json_object_get(ch, "error"), "detail"));
    }
    return d;
}

/* POST-as-GET `url` until its status is not `pending`/`processing`. */
static json_t *poll_status(client_t *cl, const char *what, const char *url, const char *want)
{
    for (int i = 0; i < POLL_TRIES; i++) {
        json_t *j = post_json(cl, what, url, "", NULL);
        if (j == NULL)
            return NULL;
        const char *st = json_string_value(json_object_get(j, "status"));
        if (st && strcmp(st, want) == 0)
            return j;
        if (st == NULL || (strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0 &&
                           strcmp(st, "ready") != 0)) {
            set_err(cl, "%s is %s%s%s", what, st ? st : "without status",
                    failure_detail(j) ? ": " : "", failure_detail(j) ? failure_detail(j) : "");
            json_decref(j);
            return NULL;
        }
        json_decref(j);
        pause_for(1);
    }
    set_err(cl, "%s: still not %s after %d polls", what, want, POLL_TRIES);
    return NULL;
}

/* Complete one authorization over the certificate's challenge type. */
static int authorize(client_t *cl, const tg_acme_cert_t *cert, const char *url)
{
    json_t *az = post_json(cl, "authorization", url, "", NULL);
    if (az == NULL)
        return -1;
    const char *st = json_string_value(json_object_get(az, "status"));
    const char *name = json_string_value(json_object_get(json_object_get(az, "identifier"), "value"));
    if (st && strcmp(st, "valid") == 0) {
        json_decref(az);
        return 0;
    }
    json_t *chs = json_object_get(az, "challenges"), *ch;
    const char *token = NULL, *chal_url = NULL, *want = cert->tls_alpn ? "tls-alpn-01" : "http-01";
    size_t i;
    json_array_foreach(chs, i, ch) {
        const char *type = json_string_value(json_object_get(ch, "type"));
        if (type && strcmp(type, want) == 0) {
            token = json_string_value(json_object_get(ch, "token"));
            chal_url = json_string_value(json_object_get(ch, "url"));
        }
    }
    if (token == NULL || chal_url == NULL || name == NULL || strlen(token) >= 128) {
        set_err(cl, "authorization for %s offers no %s challenge", name ? name : "?", want);
        json_decref(az);
        return -1;
    }
    char keyauth[256];
    snprintf(keyauth, sizeof(keyauth), "%s.%s", token, cl->thumbprint);
    if (cert->tls_alpn ? alpn_publish(cl, name, keyauth) != 0
                       : (token_set(cl->run->shm, token, keyauth), 0)) {
        json_decref(az);
        return -1;
    }
    tg_log(TG_LOG_INFO, "acme: %s challenge for %s, token %s", want, name, token);
    json_t *r = post_json(cl, "challenge", chal_url, "{}", NULL);
    json_decref(r);
    json_t *done = r ? poll_status(cl, "authorization", url, "valid") : NULL;
    if (cert->tls_alpn)
        alpn_set(cl->run->shm, name, NULL, NULL);
    else
        token_set(cl->run->shm, token, NULL);
    json_decref(az);
    json_decref(done);
    return done ? 0 : -1;
}

/* Order, authorize, finalize and download a certificate for `cert`: the
 * chain PEM and key PEM (malloc'd), or -1 with cl->err. */
static int issue(client_t *cl, tg_acme_cert_t *cert, char **chain_pem, char **key_out)
{
    *chain_pem = *key_out = NULL;
    if (get_directory(cl) != 0 || load_account(cl) != 0 || register_account(cl) != 0)
        return -1;
    json_t *ids = json_array();
    for (int i = 0; i < cert->nnames; i++)
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value", cert->names[i]));
    json_t *req = json_pack("{s:o}", "identifiers", ids);
    char *payload = json_dumps(req, JSON_COMPACT), *order_url = NULL;
    json_decref(req);
    json_t *order = payload ? post_json(cl, "newOrder", dir_url(cl, "newOrder"), payload,
                                        &order_url)
                            : NULL;
    free(payload);
    EVP_PKEY *key = NULL;
    char *csr = NULL, *fin_payload = NULL;
    json_t *fin = NULL, *az;
    size_t i;
    int rc = -1;
    if (order == NULL)
        goto done;
    if (order_url == NULL) {
        set_err(cl, "newOrder: no order URL in the answer");
        goto done;
    }
    json_array_foreach(json_object_get(order, "authorizations"), i, az) {
        const char *u = json_string_value(az);
        if (u == NULL || authorize(cl, cert, u) != 0)
            goto done;
    }
    const char *finalize = json_string_value(json_object_get(order, "finalize"));
    if (finalize == NULL) {
        set_err(cl, "order without a finalize URL");
        goto done;
    }
    if ((key = tg_acme_key_new(cert->key_type)) == NULL ||
        (csr = tg_acme_csr(key, cert->names, cert->nnames)) == NULL ||
        asprintf(&fin_payload, "{\"csr\":\"%s\"}", csr) < 0) {
        fin_payload = NULL;
        set_err(cl, "cannot make the key and CSR");
        goto done;
    }
    json_decref(post_json(cl, "finalize", finalize, fin_payload, NULL));
    if ((fin = poll_status(cl, "order", order_url, "valid")) == NULL)
        goto done;
    const char *cert_url = json_string_value(json_object_get(fin, "certificate"));
    tg_acme_resp_t r;
    if (cert_url == NULL) {
        set_err(cl, "valid order without a certificate URL");
        goto done;
    }
    if (post(cl, cert_url, "", "application/pem-certificate-chain", &r) != 0)
        goto done;
    if (r.status != 200 || strstr(r.body, "-----BEGIN CERTIFICATE-----") == NULL) {
        problem(cl, "certificate download", &r);
        tg_acme_resp_free(&r);
        goto done;
    }
    *chain_pem = r.body;
    r.body = NULL;
    tg_acme_resp_free(&r);
    if ((*key_out = key_pem(key)) == NULL) {
        set_err(cl, "cannot write the key");
        goto done;
    }
    rc = 0;
done:
    if (rc != 0) {
        free(*chain_pem);
        *chain_pem = NULL;
    }
    json_decref(order);
    json_decref(fin);
    free(order_url);
    free(csr);
    free(fin_payload);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- the helper: the schedule ---- */

/* Copy chain and key into the certificate's slot for the workers. */
static void publish(tg_acme_slot_t *sl, const tg_acme_cert_t *cert, const char *chain,
                    size_t cl, const char *key, size_t kl, X509 *leaf)
{
    if (cl + kl > TG_ACME_PEM_MAX) {
        tg_log(TG_LOG_ERROR, "acme: the certificate of %s is over %d bytes, not served",
               cert->names_text, TG_ACME_PEM_MAX);
        return;
    }
    sl->seq++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    snprintf(sl->names, sizeof(sl->names), "%s", cert->names_text);
    memcpy(sl->pem, chain, cl);
    memcpy(sl->pem + cl, key, kl);
    sl->chain_len = (uint32_t)cl;
    sl->key_len = (uint32_t)kl;
    sl->not_before = tg_acme_asn1_time(X509_get0_notBefore(leaf));
    sl->not_after = tg_acme_asn1_time(X509_get0_notAfter(leaf));
    __atomic_thread_fence(__ATOMIC_RELEASE);
    sl->seq++;
}

static double mono_at(int64_t unix_time)
{
    return tg_helper_now() + (double)(unix_time - wall());
}

/* When the certificate (notBefore nb, notAfter na) is due for renewal: at
 * two thirds of its lifetime. */
static int64_t renew_at(int64_t nb, int64_t na)
{
    return nb + (na - nb) * 2 / 3;
}

/* The monotonic time to renew a certificate issued just now: at
 * renew_at, but never sooner than a tenth of its lifetime (at most a
 * minute) from now, so a CA whose clock is ahead, or a certificate born
 * almost expired, cannot make the helper order in a loop. */
static double renew_due(int64_t nb, int64_t na)
{
    int64_t floor_secs = (na - nb) / 10 < 60 ? (na - nb) / 10 : 60;
    int64_t at = renew_at(nb, na), min_at = wall() + floor_secs;
    return mono_at(at > min_at ? at : min_at);
}

/* The stored certificate when it fits and is not due: publish it (when not
 * served yet) and plan its renewal. 1 when it was, 0 otherwise. */
static int use_stored(tg_acme_main_t *run, int i, cert_state_t *cs)
{
    tg_acme_cert_t *cert = &run->certs[i];
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    if (tg_acme_pem_load_files(cert->crt_path, cert->key_path, &leaf, &chain, &key) != 0)
        return 0;
    int64_t nb = tg_acme_asn1_time(X509_get0_notBefore(leaf));
    int64_t na = tg_acme_asn1_time(X509_get0_notAfter(leaf));
    int ok = tg_acme_cert_fits(cert, leaf, key) && wall() < renew_at(nb, na);
    if (ok && cs->served != na) {
        size_t cl = 0, kl = 0;
        char *c = NULL, *k = NULL;
        FILE *f = fopen(cert->crt_path, "r"), *g = fopen(cert->key_path, "r");
        if (f && g) {
            c = calloc(1, TG_ACME_PEM_MAX);
            k = calloc(1, TG_ACME_PEM_MAX);
            if (c && k) {
                cl = fread(c, 1, TG_ACME_PEM_MAX, f);
                kl = fread(k, 1, TG_ACME_PEM_MAX, g);
                publish(&run->shm->slots[i], cert, c, cl, k, kl, leaf);
                cs->served = na;
                tg_log(TG_LOG_INFO, "acme: %s: using the stored certificate (valid until %lld)",
                       cert->names_text, (long long)na);
            }
            if (k)
                OPENSSL_cleanse(k, TG_ACME_PEM_MAX);
        }
        if (f)
            fclose(f);
        if (g)
            fclose(g);
        free(c);
        free(k);
    }
    if (ok) {
        cs->due = mono_at(renew_at(nb, na));
        run->shm->slots[i].next_attempt = renew_at(nb, na);
    }
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return ok;
}

static int store_and_publish(client_t *cl, int i, cert_state_t *cs, char *chain, char *key)
{
    tg_acme_cert_t *cert = &cl->run->certs[i];
    X509 *leaf;
    STACK_OF(X509) *stack;
    EVP_PKEY *pkey;
    size_t chl = strlen(chain), kl = strlen(key);
    if (tg_acme_pem_load(chain, chl, key, kl, &leaf, &stack, &pkey) != 0) {
        set_err(cl, "the CA's certificate does not match our key");
        return -1;
    }
    int rc = -1;
    if (write_file(cert->key_path, key, kl) != 0 || write_file(cert->crt_path, chain, chl) != 0)
        set_err(cl, "cannot store the certificate in %s: %s", cl->run->storage, strerror(errno));
    else
        rc = 0;
    publish(&cl->run->shm->slots[i], cert, chain, chl, key, kl, leaf);
    int64_t nb = tg_acme_asn1_time(X509_get0_notBefore(leaf));
    int64_t na = tg_acme_asn1_time(X509_get0_notAfter(leaf));
    cs->served = na;
    cs->due = renew_due(nb, na);
    cl->run->shm->slots[i].next_attempt = wall() + (int64_t)(cs->due - tg_helper_now());
    X509_free(leaf);
    sk_X509_pop_free(stack, X509_free);
    EVP_PKEY_free(pkey);
    return rc;
}

/* Lock the storage against other gateways: the descriptor, or -1 when
 * another holds it. */
static int storage_lock(tg_acme_main_t *run)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/lock", run->storage);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        tg_log_errno(TG_LOG_ERROR, "acme: cannot open the lock file %s", path);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void process(client_t *cl, int i, cert_state_t *cs)
{
    tg_acme_main_t *run = cl->run;
    tg_acme_cert_t *cert = &run->certs[i];
    tg_acme_slot_t *sl = &run->shm->slots[i];
    if (use_stored(run, i, cs))
        return;
    int lock = storage_lock(run);
    if (lock < 0) {
        if (!cs->waiting)
            tg_log(TG_LOG_INFO, "acme: %s: another gateway holds %s/lock, waiting",
                   cert->names_text, run->storage);
        cs->waiting = 1;
        cs->due = tg_helper_now() + 1.0;
        return;
    }
    cs->waiting = 0;
    if (use_stored(run, i, cs)) { /* another gateway got it while we waited */
        close(lock);
        return;
    }
    tg_log(TG_LOG_INFO, "acme: %s: %s a certificate from %s", cert->names_text,
           cs->served ? "renewing" : "requesting", run->directory);
    sl->last_attempt = wall();
    char *chain = NULL, *key = NULL;
    cl->err[0] = '\0';
    int rc = issue(cl, cert, &chain, &key);
    if (rc == 0)
        rc = store_and_publish(cl, i, cs, chain, key);
    free(chain);
    if (key)
        OPENSSL_cleanse(key, strlen(key));
    free(key);
    close(lock);
    if (rc == 0) {
        cs->failures = 0;
        sl->last_result = TG_ACME_RES_OK;
        sl->last_error[0] = '\0';
        tg_log(TG_LOG_INFO, "acme: %s: certificate issued, valid until %lld", cert->names_text,
               (long long)cs->served);
        return;
    }
    /* what the CA said may be stale now (an account it forgot, a nonce) */
    free(cl->kid);
    cl->kid = NULL;
    free(cl->nonce);
    cl->nonce = NULL;
    json_decref(cl->dir);
    cl->dir = NULL;
    int delay = BACKOFF_FIRST << (cs->failures < 10 ? cs->failures : 10);
    if (delay > BACKOFF_MAX)
        delay = BACKOFF_MAX;
    cs->failures++;
    cs->due = tg_helper_now() + delay;
    sl->last_result = TG_ACME_RES_FAILED;
    sl->next_attempt = wall() + delay;
    snprintf(sl->last_error, sizeof(sl->last_error), "%.*s", (int)sizeof(sl->last_error) - 1,
             cl->err);
    tg_log(TG_LOG_ERROR, "acme: %s: %s; %s, next attempt in %ds", cert->names_text, cl->err,
           cs->served ? "the current certificate is kept" : "the placeholder is served", delay);
}

static void helper_main(tg_config_t *c, SSL_CTX *ctx)
{
    tg_acme_main_t *run = tg_acme_main(c);
    client_t cl = {.run = run, .ctx = ctx};
    umask(077);
    /* challenges a previous helper (stopped by a reload) left published */
    if (tg_shm_mutex_lock(&run->shm->lock) >= 0) {
        memset(run->shm->tokens, 0, sizeof(run->shm->tokens));
        OPENSSL_cleanse(run->shm->alpn, sizeof(run->shm->alpn));
        tg_shm_mutex_unlock(&run->shm->lock);
    }
    cert_state_t *st = calloc((size_t)run->ncerts, sizeof(*st));
    if (st == NULL)
        _exit(1);
    for (int i = 0; i < run->ncerts; i++)
        st[i].due = tg_helper_now();
    for (;;) {
        double next = tg_helper_now() + 60;
        for (int i = 0; i < run->ncerts; i++) {
            if (st[i].due <= tg_helper_now())
                process(&cl, i, &st[i]);
            if (st[i].due < next)
                next = st[i].due;
        }
        double wait = next - tg_helper_now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
}
