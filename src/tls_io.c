/* TLS I/O with OpenSSL 3: what client and upstream connections do through
 * their SSL objects at run time. The contexts they start from are built by
 * the tls module at config load (src/tls_conf.c); this file only asks it
 * for a server's context (tg_tls_server_ctx) when a client connection
 * starts.
 *
 * Errors: one mapping (ssl_io_error) turns an SSL result into read(2) /
 * writev(2) results for both sides: EAGAIN with the direction to wait for
 * in tls_want_write, 0 for an end of stream (also one without close_notify),
 * another errno when the connection is done (tls_failed set, so no
 * close_notify is attempted). Client-side failures are logged at info
 * (scanners, plain HTTP, old clients), upstream handshake failures at error.
 *
 * Writes gather small ranges (a header block, chunk framing) into one 16 KB
 * record buffer and send large ranges directly; a retry after WANT_WRITE
 * always presents the same leading bytes (the queue head has not moved),
 * which is what SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER requires. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include "tls_io.h"
#include "tls_conf.h"
#include "conn.h"
#include "log.h"
#include "proxy.h"
#include "stats.h"
#include "upstream.h"

#define TLS_RECORD 16384
#define TLS_DIRECT_MIN 4096 /* ranges this big go to SSL_write without a copy */

const char *tg_tls_error_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

/* ---- connection I/O -------------------------------------------------------- */

/* Counts completed client handshakes for the stats (once per handshake:
 * OpenSSL reports TLS 1.3 tickets sent later without HANDSHAKE_DONE). */
static void conn_info_cb(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if (where & SSL_CB_HANDSHAKE_DONE)
        tg_stats_count(SSL_session_reused(ssl) ? TG_STATS_TLS_RESUMED : TG_STATS_TLS_FULL, 1);
}

int tg_tls_conn_start(tg_conn_t *c)
{
    SSL *ssl = SSL_new(tg_tls_server_ctx(c->listen->default_server));
    if (ssl == NULL)
        return -1;
    if (!SSL_set_fd(ssl, c->fd)) {
        SSL_free(ssl);
        return -1;
    }
    SSL_set_app_data(ssl, c);
    SSL_set_accept_state(ssl);
    SSL_set_info_callback(ssl, conn_info_cb);
    c->ssl = ssl;
    return 0;
}

void tg_tls_conn_shutdown(tg_conn_t *c)
{
    if (c->ssl == NULL || c->tls_failed || !SSL_is_init_finished(c->ssl))
        return;
    SSL_shutdown(c->ssl); /* close_notify if the socket takes it; never waits */
    ERR_clear_error();
}

void tg_tls_conn_free(tg_conn_t *c)
{
    if (c->ssl == NULL)
        return;
    if (!SSL_is_init_finished(c->ssl))
        tg_stats_count(TG_STATS_TLS_FAILED, 1);
    SSL_free(c->ssl);
    c->ssl = NULL;
    ERR_clear_error();
}

/* Map an SSL error to read(2)/writev(2) results, for both sides (client
 * connections and upstream connections). *want_write is set to which way
 * the socket must move before a retry; *failed on a fatal error, and then
 * *log_it when OpenSSL has a reason the caller should log (the caller logs
 * it with tg_tls_error_reason() and clears the error queue). */
static ssize_t ssl_io_error(SSL *ssl, int rc, int reading, int *want_write, int *failed,
                            int *log_it)
{
    int e = SSL_get_error(ssl, rc);
    *log_it = 0;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want_write = 0;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want_write = 1;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        *failed = 1;
        if (errno == 0 || ERR_peek_error() != 0) {
            ERR_clear_error();
            if (reading)
                return 0; /* EOF without close_notify */
            errno = EPIPE;
        }
        return -1;
    default:
        *failed = 1;
        *log_it = 1;
        errno = EPROTO;
        return -1;
    }
}

/* SSL_read / SSL_write of a gathered iovec, shared by both sides. */
static int ssl_do_read(SSL *ssl, void *buf, size_t len)
{
    errno = 0;
    return SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
}

static int ssl_do_writev(SSL *ssl, const struct iovec *iov, int n)
{
    static char record[TLS_RECORD]; /* per process; filled and sent in one call */
    int i = 0;
    while (i < n && iov[i].iov_len == 0)
        i++;
    if (i == n)
        return INT_MIN; /* nothing to write */
    const void *p = iov[i].iov_base;
    size_t len = iov[i].iov_len;
    if (len < TLS_DIRECT_MIN && i + 1 < n) {
        /* small ranges: one record, not one record per range */
        len = 0;
        for (; i < n && len < TLS_RECORD; i++) {
            size_t take = iov[i].iov_len;
            if (take > TLS_RECORD - len)
                take = TLS_RECORD - len;
            memcpy(record + len, iov[i].iov_base, take);
            len += take;
        }
        p = record;
    }
    errno = 0;
    return SSL_write(ssl, p, len > INT_MAX ? INT_MAX : (int)len);
}

/* Client side: log handshake failures at info (they are the client's
 * problem: a scanner, plain HTTP, an old client). */
static ssize_t tls_fail(tg_conn_t *c, int rc, const char *op)
{
    int want_write = c->tls_want_write, failed = 0, log_it;
    ssize_t r = ssl_io_error(c->ssl, rc, *op == 'r', &want_write, &failed, &log_it);
    c->tls_want_write = want_write ? 1 : 0;
    if (failed)
        c->tls_failed = 1;
    if (log_it) {
        if (!SSL_is_init_finished(c->ssl))
            tg_log(TG_LOG_INFO, "client %s: TLS handshake failed: %s", tg_conn_peer(c),
                   tg_tls_error_reason());
        else
            tg_log(TG_LOG_INFO, "client %s: TLS %s failed: %s", tg_conn_peer(c), op,
                   tg_tls_error_reason());
        ERR_clear_error();
    }
    return r;
}

ssize_t tg_tls_read(tg_conn_t *c, void *buf, size_t len)
{
    int n = ssl_do_read(c->ssl, buf, len);
    if (n > 0)
        return n;
    return tls_fail(c, n, "read");
}

ssize_t tg_tls_writev(tg_conn_t *c, const struct iovec *iov, int n)
{
    int w = ssl_do_writev(c->ssl, iov, n);
    if (w == INT_MIN)
        return 0;
    if (w > 0)
        return w;
    return tls_fail(c, w, "write");
}

/* ---- upstream connection I/O ---------------------------------------------- */

int tg_tls_upconn_start(tg_upconn_t *uc)
{
    tg_peer_t *p = uc->peer;
    SSL *ssl = SSL_new(uc->upstream->tls_ctx);
    if (ssl == NULL)
        return -1;
    int ok = SSL_set_fd(ssl, uc->fd);
    if (ok && uc->upstream->tls_verify)
        ok = p->tls_host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), p->tls_host)
                               : SSL_set1_host(ssl, p->tls_host);
    if (ok && !p->tls_host_is_ip)
        ok = SSL_set_tlsext_host_name(ssl, p->tls_host);
    if (ok && p->tls_session) {
        /* a copy again, so this connection cannot spoil the stored one; a
         * stale session just means a full handshake */
        SSL_SESSION *copy = SSL_SESSION_dup(p->tls_session);
        if (copy) {
            SSL_set_session(ssl, copy);
            SSL_SESSION_free(copy);
        }
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    SSL_set_app_data(ssl, uc);
    SSL_set_connect_state(ssl);
    uc->ssl = ssl;
    return 0;
}

int tg_tls_upconn_check(tg_upconn_t *uc, char *why, size_t size)
{
    errno = 0;
    int rc = SSL_connect(uc->ssl);
    if (rc == 1)
        return 1;
    int want_write = 0, failed = 0, log_it;
    ssl_io_error(uc->ssl, rc, 0, &want_write, &failed, &log_it);
    if (!failed) {
        if (errno == EAGAIN) {
            uc->tls_want_write = want_write ? 1 : 0;
            return 0;
        }
        failed = 1; /* close_notify during the handshake */
    }
    uc->tls_failed = 1;
    long v = SSL_get_verify_result(uc->ssl);
    if (v != X509_V_OK)
        snprintf(why, size, "TLS certificate verification failed: %s",
                 X509_verify_cert_error_string(v));
    else if (log_it)
        snprintf(why, size, "TLS handshake failed: %s", tg_tls_error_reason());
    else
        snprintf(why, size, "TLS handshake failed (connection closed%s%s)", errno ? ": " : "",
                 errno ? strerror(errno) : "");
    ERR_clear_error();
    return -1;
}

int tg_tls_upconn_handshake(tg_upconn_t *uc)
{
    char why[256];
    int rc = tg_tls_upconn_check(uc, why, sizeof(why));
    if (rc < 0)
        tg_log(TG_LOG_ERROR, "upstream %.*s: %s", TG_STR_FMT(uc->peer->name), why);
    return rc;
}

static ssize_t up_fail(tg_upconn_t *uc, int rc, const char *op)
{
    int want_write = uc->tls_want_write, failed = 0, log_it;
    ssize_t r = ssl_io_error(uc->ssl, rc, *op == 'r', &want_write, &failed, &log_it);
    uc->tls_want_write = want_write ? 1 : 0;
    if (failed)
        uc->tls_failed = 1;
    if (log_it) {
        tg_log(TG_LOG_INFO, "upstream %.*s: TLS %s failed: %s", TG_STR_FMT(uc->peer->name), op,
               tg_tls_error_reason());
        ERR_clear_error();
    }
    return r;
}

ssize_t tg_tls_up_read(tg_upconn_t *uc, void *buf, size_t len)
{
    int n = ssl_do_read(uc->ssl, buf, len);
    return n > 0 ? n : up_fail(uc, n, "read");
}

ssize_t tg_tls_up_writev(tg_upconn_t *uc, const struct iovec *iov, int n)
{
    int w = ssl_do_writev(uc->ssl, iov, n);
    if (w == INT_MIN)
        return 0;
    return w > 0 ? w : up_fail(uc, w, "write");
}

int tg_tls_up_pending(tg_upconn_t *uc)
{
    return uc->ssl && SSL_pending(uc->ssl) > 0;
}

int tg_tls_up_idle_ok(tg_upconn_t *uc)
{
    char b;
    if (uc->ssl == NULL || uc->tls_failed)
        return 0;
    int n = ssl_do_read(uc->ssl, &b, 1);
    if (n > 0)
        return 0; /* bytes nobody asked for */
    int e = SSL_get_error(uc->ssl, n);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ && SSL_pending(uc->ssl) == 0;
}

void tg_tls_up_shutdown(tg_upconn_t *uc)
{
    if (uc->ssl == NULL || uc->tls_failed || !SSL_is_init_finished(uc->ssl))
        return;
    SSL_shutdown(uc->ssl);
    ERR_clear_error();
}

void tg_tls_upconn_free(tg_upconn_t *uc)
{
    if (uc->ssl == NULL)
        return;
    SSL_set_app_data(uc->ssl, NULL);
    SSL_free(uc->ssl);
    uc->ssl = NULL;
    ERR_clear_error();
}

int tg_tls_pending(tg_conn_t *c)
{
    return c->ssl && SSL_pending(c->ssl) > 0;
}

int tg_tls_is_established(tg_conn_t *c)
{
    return c->ssl && SSL_is_init_finished(c->ssl);
}

/* ---- variables ------------------------------------------------------------- */

int tg_tls_var_protocol(tg_conn_t *c, tg_str_t *out)
{
    if (c->ssl == NULL)
        return -1;
    *out = tg_str_c(SSL_get_version(c->ssl));
    return 0;
}

int tg_tls_var_cipher(tg_conn_t *c, tg_str_t *out)
{
    const char *name = c->ssl ? SSL_get_cipher_name(c->ssl) : NULL;
    if (name == NULL)
        return -1;
    *out = tg_str_c(name);
    return 0;
}

int tg_tls_var_client_verify(tg_conn_t *c, tg_arena_t *a, tg_str_t *out)
{
    if (c->ssl == NULL)
        return -1;
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    if (x == NULL) {
        *out = TG_STR("NONE");
        return 0;
    }
    long v = SSL_get_verify_result(c->ssl);
    if (v == X509_V_OK) {
        *out = TG_STR("SUCCESS");
        return 0;
    }
    char *s = tg_arena_printf(a, "FAILED:%s", X509_verify_cert_error_string(v));
    if (s == NULL)
        return -1;
    *out = tg_str_c(s);
    return 0;
}

int tg_tls_var_client_s_dn(tg_conn_t *c, tg_arena_t *a, tg_str_t *out)
{
    X509 *x = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
    if (x == NULL)
        return -1;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return -1;
    int rc = -1;
    if (X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        char *copy = tg_arena_alloc_nz(a, (size_t)len + 1);
        if (copy) {
            memcpy(copy, data, (size_t)len);
            copy[len] = '\0';
            *out = (tg_str_t){copy, (size_t)len};
            rc = 0;
        }
    }
    BIO_free(bio);
    return rc;
}

int tg_tls_var_client_fingerprint(tg_conn_t *c, tg_arena_t *a, tg_str_t *out)
{
    X509 *x = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (x == NULL || X509_digest(x, EVP_sha256(), md, &n) != 1)
        return -1;
    char *hex = tg_arena_alloc_nz(a, n * 2 + 1);
    if (hex == NULL)
        return -1;
    for (unsigned int i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    *out = (tg_str_t){hex, n * 2};
    return 0;
}
