/* The OCSP helper process and its life in the master (see ocsp.h).
 *
 * The master forks it after a generation's workers (tg_ocsp_start, again on
 * every reload, after a crash with a delay). It switches to the workers'
 * user and loops over the entries: when one is due it POSTs an OCSP request
 * (RFC 6960, SHA-1 certificate id, no nonce, as responders cache) to the
 * responder over HTTP (src/acme_http.c: bounded waits), checks the answer
 * (the signer chains to the issuer or tls_stapling_trusted and may sign
 * OCSP for it, unless tls_stapling_verify is off; the response names the
 * certificate; it is current) and publishes it in the entry's slot.
 *
 * Schedule: a good response is fetched again at half of its validity
 * (thisUpdate + (nextUpdate - thisUpdate) / 2). A failure (no answer, an
 * HTTP error, a response that does not verify) keeps the response held and
 * retries after 5 s, doubling up to 10 min; the held response is dropped at
 * its nextUpdate (workers check it at every handshake, the helper clears the
 * slot then). Only "good" is stapled: "revoked" is logged as an error and
 * nothing is stapled (nginx does the same), "unknown" too. A response with
 * no nextUpdate counts as valid for an hour after it was fetched.
 *
 * An `acme on` certificate is followed through the acme zone: when its slot
 * publishes a new certificate the entry starts again with it.
 *
 * Why a process: as for the ACME helper, see src/helper_proc.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include "ocsp.h"
#include "acme.h"
#include "acme_http.h"
#include "helper_proc.h"
#include "log.h"
#include "user.h"

#define HTTP_TIMEOUT_MS 10000
#define BACKOFF_FIRST 5
#define BACKOFF_MAX 600
#define NO_NEXT_UPDATE 3600 /* validity of a response without nextUpdate */
#define CLOCK_SKEW 300      /* seconds of thisUpdate in the future accepted */

/* ---- master side ---- */

static tg_helper_t helper = {.name = "ocsp"};

static int64_t wall(void)
{
    return (int64_t)time(NULL);
}

static void helper_main(tg_config_t *c, void *unused) __attribute__((noreturn));

void tg_ocsp_start(tg_config_t *c)
{
    tg_helper_stop(&helper);
    tg_ocsp_main_t *run = tg_ocsp_main(c);
    if (run == NULL)
        return;
    char what[64];
    snprintf(what, sizeof(what), "for %d certificate%s", run->nentries,
             run->nentries == 1 ? "" : "s");
    tg_helper_fork(&helper, c, NULL, helper_main, what);
}

void tg_ocsp_tick(tg_config_t *c)
{
    if (tg_helper_due(&helper))
        tg_ocsp_start(c);
}

int tg_ocsp_reaped(pid_t pid, int status)
{
    return tg_helper_reaped(&helper, pid, status);
}

void tg_ocsp_stop(void)
{
    tg_helper_stop(&helper);
}

/* ---- the helper ---- */

/* An entry's state in the helper: the certificate being fetched for (the
 * entry's, or the acme slot's latest) and the schedule. */
typedef struct {
    X509 *leaf, *issuer;
    STACK_OF(X509) *chain;
    X509_STORE *store;  /* the issuer and tls_stapling_trusted */
    const char *url;
    char *url_own;      /* an acme certificate's AIA URL (malloc'd) */
    char name[256];     /* for the log: the server's first name */
    uint64_t acme_seq;  /* the acme slot sequence followed */
    double due;         /* monotonic seconds, 0: nothing to fetch */
    int failures;
} state_t;

static void publish_begin(tg_ocsp_slot_t *sl)
{
    sl->seq++;
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void publish_end(tg_ocsp_slot_t *sl)
{
    __atomic_thread_fence(__ATOMIC_RELEASE);
    sl->seq++;
}

static void state_clear(state_t *st)
{
    X509_free(st->leaf);
    X509_free(st->issuer);
    sk_X509_pop_free(st->chain, X509_free);
    X509_STORE_free(st->store);
    free(st->url_own);
    st->leaf = st->issuer = NULL;
    st->chain = NULL;
    st->store = NULL;
    st->url = st->url_own = NULL;
    st->due = 0;
    st->failures = 0;
}

/* Take certificate `leaf` (with `chain`) for the entry: find the issuer and
 * the URL, make the store, and reset the slot unless it already holds a
 * response for this certificate (a reload). 0, or -1 (logged). */
static int state_set(const tg_ocsp_entry_t *e, state_t *st, tg_ocsp_slot_t *sl, X509 *leaf,
                     STACK_OF(X509) *chain)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n;
    X509 *issuer = NULL;
    for (int i = 0; i < sk_X509_num(chain); i++)
        if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK)
            issuer = sk_X509_value(chain, i);
    if (issuer == NULL && e->leaf == leaf)
        issuer = e->issuer; /* found at load, maybe in tls_stapling_trusted */
    const char *url = e->url;
    STACK_OF(OPENSSL_STRING) *urls = NULL;
    if (url == NULL) {
        urls = X509_get1_ocsp(leaf);
        url = sk_OPENSSL_STRING_num(urls) > 0 ? sk_OPENSSL_STRING_value(urls, 0) : NULL;
    }
    if (issuer == NULL || url == NULL || strncmp(url, "http://", 7) != 0 ||
        !X509_digest(leaf, EVP_sha1(), md, &n)) {
        if (url && issuer)
            tg_log(TG_LOG_WARN, "ocsp: %s: the OCSP URL %s is not http://, not stapled", st->name,
                   url);
        X509_email_free(urls);
        return -1;
    }
    X509_STORE *store = X509_STORE_new();
    int ok = store && X509_STORE_add_cert(store, issuer) == 1;
    for (int i = 0; ok && i < sk_X509_num(e->trusted); i++)
        ok = X509_STORE_add_cert(store, sk_X509_value(e->trusted, i)) == 1 ||
             ERR_GET_REASON(ERR_peek_last_error()) == X509_R_CERT_ALREADY_IN_HASH_TABLE;
    if (!ok) {
        tg_log(TG_LOG_ERROR, "ocsp: %s: cannot make the trusted store", st->name);
        X509_STORE_free(store);
        X509_email_free(urls);
        ERR_clear_error();
        return -1;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN); /* the issuer is enough */
    state_clear(st);
    X509_up_ref(leaf);
    X509_up_ref(issuer);
    st->leaf = leaf;
    st->issuer = issuer;
    st->chain = X509_chain_up_ref(chain);
    st->store = store;
    if (e->url == NULL)
        url = st->url_own = strdup(url);
    st->url = url;
    X509_email_free(urls);
    if (st->chain == NULL || st->url == NULL) {
        state_clear(st);
        return -1;
    }
    st->due = tg_helper_now();
    if (memcmp((const void *)sl->leaf_sha1, md, 20) == 0 && sl->status == TG_OCSP_GOOD &&
        sl->next_update > wall() && sl->next_fetch > wall()) {
        st->due = tg_helper_now() + (double)(sl->next_fetch - wall()); /* a reload kept it */
        return 0;
    }
    publish_begin(sl);
    memset((char *)sl + offsetof(tg_ocsp_slot_t, leaf_sha1), 0,
           offsetof(tg_ocsp_slot_t, der) - offsetof(tg_ocsp_slot_t, leaf_sha1));
    memcpy((void *)sl->leaf_sha1, md, 20);
    publish_end(sl);
    return 0;
}

/* An acme entry: the slot's certificate when it changed (and is not the
 * placeholder). */
static void follow_acme(const tg_ocsp_entry_t *e, state_t *st, tg_ocsp_slot_t *sl,
                        tg_acme_main_t *am)
{
    tg_acme_slot_t *as = &am->shm->slots[e->acme_slot];
    uint64_t seq = as->seq;
    if (seq == st->acme_seq || (seq & 1) || as->chain_len == 0)
        return;
    X509 *leaf;
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    if (tg_acme_slot_load(as, seq, &leaf, &chain, &key) != 0)
        return;
    st->acme_seq = seq;
    if (state_set(e, st, sl, leaf, chain) != 0)
        tg_log(TG_LOG_INFO, "ocsp: %s: the ACME certificate has no OCSP URL or issuer, "
                            "not stapled", st->name);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
}

/* Ask the responder. The checked response (DER in *der, malloc'd) with its
 * status and times; -1 with `err` filled. */
static int fetch(const tg_ocsp_entry_t *e, state_t *st, unsigned char **der, size_t *der_len,
                 int *status, int64_t *this_upd, int64_t *next_upd, char *err, size_t errlen)
{
    OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), st->leaf, st->issuer);
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    unsigned char *reqder = NULL;
    int reqlen = -1, rc = -1;
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    tg_acme_resp_t hr = {0};
    if (id == NULL || req == NULL || OCSP_request_add0_id(req, OCSP_CERTID_dup(id)) == NULL ||
        (reqlen = i2d_OCSP_REQUEST(req, &reqder)) <= 0) {
        snprintf(err, errlen, "cannot make the request");
        goto done;
    }
    if (tg_acme_http(NULL, "POST", st->url, "application/ocsp-request", (const char *)reqder,
                     (size_t)reqlen, "application/ocsp-response", HTTP_TIMEOUT_MS, &hr) != 0) {
        snprintf(err, errlen, "%.80s: %.110s", st->url, hr.err);
        goto done;
    }
    if (hr.status != 200) {
        snprintf(err, errlen, "%s: HTTP status %d", st->url, hr.status);
        goto done;
    }
    const unsigned char *p = (const unsigned char *)hr.body;
    if (hr.body_len > TG_OCSP_DER_MAX ||
        (resp = d2i_OCSP_RESPONSE(NULL, &p, (long)hr.body_len)) == NULL) {
        snprintf(err, errlen, "%s: not an OCSP response (or over %d bytes)", st->url,
                 TG_OCSP_DER_MAX);
        goto done;
    }
    int rs = OCSP_response_status(resp);
    if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(err, errlen, "%s: response status %s", st->url, OCSP_response_status_str(rs));
        goto done;
    }
    if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
        snprintf(err, errlen, "%s: not a basic OCSP response", st->url);
        goto done;
    }
    if (e->verify && OCSP_basic_verify(bs, st->chain, st->store, 0) != 1) {
        snprintf(err, errlen, "%s: the response does not verify: %s", st->url,
                 ERR_reason_error_string(ERR_peek_last_error())
                     ? ERR_reason_error_string(ERR_peek_last_error())
                     : "signer not trusted");
        goto done;
    }
    int reason;
    ASN1_GENERALIZEDTIME *rev, *tu, *nu;
    if (OCSP_resp_find_status(bs, id, status, &reason, &rev, &tu, &nu) != 1) {
        snprintf(err, errlen, "%s: the response does not name the certificate", st->url);
        goto done;
    }
    if (OCSP_check_validity(tu, nu, CLOCK_SKEW, -1) != 1) {
        snprintf(err, errlen, "%s: the response is not current", st->url);
        goto done;
    }
    *this_upd = tg_acme_asn1_time(tu);
    *next_upd = nu ? tg_acme_asn1_time(nu) : wall() + NO_NEXT_UPDATE;
    if ((*der = malloc(hr.body_len)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    memcpy(*der, hr.body, hr.body_len);
    *der_len = hr.body_len;
    rc = 0;
done:
    ERR_clear_error();
    tg_acme_resp_free(&hr);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    OPENSSL_free(reqder);
    OCSP_REQUEST_free(req);
    OCSP_CERTID_free(id);
    return rc;
}

static void process(const tg_ocsp_entry_t *e, state_t *st, tg_ocsp_slot_t *sl)
{
    unsigned char *der = NULL;
    size_t len = 0;
    int status = -1;
    int64_t tu = 0, nu = 0, now = wall();
    char err[sizeof(sl->last_error)];
    if (fetch(e, st, &der, &len, &status, &tu, &nu, err, sizeof(err)) == 0) {
        st->failures = 0;
        int64_t refresh = tu + (nu - tu) / 2;
        if (refresh < now + BACKOFF_FIRST)
            refresh = now + (nu - now) / 2 > now + BACKOFF_FIRST ? now + (nu - now) / 2
                                                                   : now + BACKOFF_FIRST;
        int st_code = status == V_OCSP_CERTSTATUS_GOOD      ? TG_OCSP_GOOD
                      : status == V_OCSP_CERTSTATUS_REVOKED ? TG_OCSP_REVOKED
                                                            : TG_OCSP_UNKNOWN;
        publish_begin(sl);
        sl->status = st_code;
        sl->last_ok = 1;
        sl->this_update = tu;
        sl->next_update = nu;
        sl->last_fetch = now;
        sl->next_fetch = refresh;
        sl->last_error[0] = '\0';
        sl->der_len = st_code == TG_OCSP_GOOD ? (uint32_t)len : 0;
        if (st_code == TG_OCSP_GOOD)
            memcpy((void *)sl->der, der, len);
        publish_end(sl);
        free(der);
        st->due = tg_helper_now() + (double)(refresh - now);
        if (st_code == TG_OCSP_REVOKED)
            tg_log(TG_LOG_ERROR, "ocsp: %s: the responder says the certificate is REVOKED, "
                                 "nothing is stapled; replace the certificate", st->name);
        else if (st_code == TG_OCSP_UNKNOWN)
            tg_log(TG_LOG_WARN, "ocsp: %s: the responder does not know the certificate, "
                                "nothing is stapled", st->name);
        else
            tg_log(TG_LOG_INFO, "ocsp: %s: good response stapled, next update %lld, "
                                "refreshed at %lld", st->name, (long long)nu, (long long)refresh);
        return;
    }
    int delay = BACKOFF_FIRST << (st->failures < 8 ? st->failures : 8);
    if (delay > BACKOFF_MAX)
        delay = BACKOFF_MAX;
    st->failures++;
    st->due = tg_helper_now() + delay;
    int kept = sl->status == TG_OCSP_GOOD && sl->next_update > now;
    publish_begin(sl);
    if (!kept) {
        sl->status = TG_OCSP_ERROR;
        sl->der_len = 0;
    }
    sl->last_ok = 0;
    sl->last_fetch = now;
    sl->next_fetch = now + delay;
    snprintf(sl->last_error, sizeof(sl->last_error), "%s", err);
    publish_end(sl);
    tg_log(TG_LOG_ERROR, "ocsp: %s: %s; %s, next attempt in %ds", st->name, err,
           kept ? "the last good response is kept until its nextUpdate" : "nothing stapled",
           delay);
}

/* A good response past its nextUpdate: no longer stapled (workers check the
 * time themselves), the stats say so. */
static void expire(state_t *st, tg_ocsp_slot_t *sl)
{
    if (sl->status != TG_OCSP_GOOD || sl->next_update > wall())
        return;
    publish_begin(sl);
    sl->status = TG_OCSP_ERROR;
    sl->der_len = 0;
    snprintf(sl->last_error, sizeof(sl->last_error), "the response expired at %lld",
             (long long)sl->next_update);
    publish_end(sl);
    tg_log(TG_LOG_ERROR, "ocsp: %s: the response expired (nextUpdate %lld), no longer stapled",
           st->name, (long long)sl->next_update);
}

static void helper_main(tg_config_t *c, void *unused)
{
    tg_ocsp_main_t *run = tg_ocsp_main(c);
    tg_acme_main_t *am = tg_acme_main(c);
    state_t *st = calloc((size_t)run->nentries, sizeof(*st));
    if (st == NULL)
        _exit(1);
    int follow = 0;
    for (int i = 0; i < run->nentries; i++) {
        const tg_ocsp_entry_t *e = &run->entries[i];
        tg_server_t *s = e->server;
        snprintf(st[i].name, sizeof(st[i].name), "%.*s",
                 s->nnames ? (int)s->names[0].len : 0, s->nnames ? s->names[0].p : "");
        if (e->leaf)
            state_set(e, &st[i], &run->slots[i], e->leaf, e->chain);
        follow |= e->acme_slot >= 0;
    }
    for (;;) {
        double next = tg_helper_now() + (follow ? 1.0 : 60.0);
        for (int i = 0; i < run->nentries; i++) {
            const tg_ocsp_entry_t *e = &run->entries[i];
            tg_ocsp_slot_t *sl = &run->slots[i];
            if (e->acme_slot >= 0 && am)
                follow_acme(e, &st[i], sl, am);
            if (st[i].due > 0 && st[i].due <= tg_helper_now())
                process(e, &st[i], sl);
            expire(&st[i], sl);
            if (st[i].due > 0 && st[i].due < next)
                next = st[i].due;
            if (sl->status == TG_OCSP_GOOD) {
                double exp = tg_helper_now() + (double)(sl->next_update - wall() + 1);
                if (exp < next)
                    next = exp;
            }
        }
        double wait = next - tg_helper_now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
}
