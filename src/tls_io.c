/* TLS I/O with OpenSSL 3: the run-time half of TLS, on SSL objects only.
 * Client connections (src/conn.c) and upstream connections (src/upstream.c)
 * keep an SSL object and a byte of state bits (TG_TLS_F_*) and call these;
 * this file knows neither kind of connection (nor the config: the contexts
 * come from the tls module, src/tls_conf.c, through the listener and the
 * upstream block).
 *
 * Errors: one mapping (tg_tls_io_result) turns an SSL result into read(2) /
 * writev(2) results for both sides: EAGAIN with the direction to wait for
 * in TG_TLS_F_WANT_WRITE, 0 for an end of stream (also one without
 * close_notify), another errno when the connection is done
 * (TG_TLS_F_FAILED set, so no close_notify is attempted). The caller logs
 * what should be logged (it knows the peer's name).
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
#include "buf.h"
#include "tls_batch.h"
#include "stats.h"

#define TLS_RECORD TG_TLS_RECORD
#define TLS_DIRECT_MIN TG_TLS_GATHER_MAX /* ranges this big go to SSL_write without a copy */

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

tg_ssl_t *tg_tls_server_new(void *ctx, int fd, void *app)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    /* writes through the batch filter (tls_batch.h); without it, as usual */
    if (tg_tls_batch_attach(ssl, fd) != 0 && !SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_app_data(ssl, app);
    SSL_set_accept_state(ssl);
    SSL_set_info_callback(ssl, conn_info_cb);
    return ssl;
}

void tg_tls_shutdown(tg_ssl_t *ssl, uint8_t flags)
{
    if (ssl == NULL || (flags & TG_TLS_F_FAILED) || !SSL_is_init_finished(ssl))
        return;
    SSL_shutdown(ssl); /* close_notify if the socket takes it; never waits */
    ERR_clear_error();
}

void tg_tls_server_free(tg_ssl_t *ssl)
{
    if (ssl == NULL)
        return;
    if (!SSL_is_init_finished(ssl))
        tg_stats_count(TG_STATS_TLS_FAILED, 1);
    SSL_free(ssl);
    ERR_clear_error();
}

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

static ssize_t io_result(tg_ssl_t *ssl, int rc, int reading, uint8_t *flags, int *log_it)
{
    int want_write = *flags & TG_TLS_F_WANT_WRITE, failed = 0;
    ssize_t r = ssl_io_error(ssl, rc, reading, &want_write, &failed, log_it);
    int dry = reading && r < 0 && errno == EAGAIN && !want_write;
    *flags = (uint8_t)((*flags & ~(TG_TLS_F_WANT_WRITE | TG_TLS_F_READ_DRY)) |
                       (want_write ? TG_TLS_F_WANT_WRITE : 0) | (failed ? TG_TLS_F_FAILED : 0) |
                       (dry ? TG_TLS_F_READ_DRY : 0));
    return r;
}

static int io_read(tg_ssl_t *ssl, void *buf, size_t len)
{
    errno = 0;
    return SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
}

static int io_writev(tg_ssl_t *ssl, const struct iovec *iov, int n)
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

/* ---- upstream connection I/O ---------------------------------------------- */

ssize_t tg_tls_read(tg_ssl_t *ssl, uint8_t *flags, void *buf, size_t len, int *log_it)
{
    int n = io_read(ssl, buf, len);
    *log_it = 0;
    if (n > 0) {
        *flags &= (uint8_t)~TG_TLS_F_READ_DRY;
        return n;
    }
    return io_result(ssl, n, 1, flags, log_it);
}

int tg_tls_can_stage(tg_ssl_t *ssl, uint8_t flags)
{
    return !(flags & TG_TLS_F_WANT_WRITE) && !tg_tls_pending(ssl, flags) &&
           tg_tls_batch_can_stage(ssl);
}

ssize_t tg_tls_read_staged(tg_ssl_t *ssl, uint8_t *flags, const void *raw, size_t rawlen,
                           void *buf, size_t len, int *log_it)
{
    tg_tls_batch_stage(ssl, raw, rawlen);
    ssize_t n = tg_tls_read(ssl, flags, buf, len, log_it);
    int err = errno;
    if (tg_tls_batch_unstage() != 0) {
        *flags |= TG_TLS_F_FAILED;
        return -1;
    }
    errno = err;
    return n;
}

ssize_t tg_tls_writev(tg_ssl_t *ssl, uint8_t *flags, const struct iovec *iov, int n, int *log_it)
{
    int w = io_writev(ssl, iov, n);
    *log_it = 0;
    if (w == INT_MIN)
        return 0;
    return w > 0 ? w : io_result(ssl, w, 0, flags, log_it);
}

/* Several records in one write (tls_batch.h): io_writev as long as the ranges
 * last and the batch has room for another record, then one write of them
 * all. OpenSSL writes one record per SSL_write here (partial writes are on),
 * and in a batch the filter takes every record, so SSL_write does not ask
 * to be retried. */
ssize_t tg_tls_writev_batch(tg_ssl_t *ssl, uint8_t *flags, const struct iovec *iov, int n,
                            int defer, int *log_it)
{
    *log_it = 0;
    int rc = tg_tls_batch_begin(ssl);
    if (rc == 0)
        return tg_tls_writev(ssl, flags, iov, n, log_it);
    if (rc < 0)
        goto fail;
    struct iovec v[TG_TLS_BATCH_IOV];
    if (n > TG_TLS_BATCH_IOV)
        n = TG_TLS_BATCH_IOV;
    memcpy(v, iov, (size_t)n * sizeof(*v));
    ssize_t total = 0;
    int i = 0, w = INT_MIN;
    while (i < n && tg_tls_batch_fits_record()) {
        w = io_writev(ssl, v + i, n - i);
        if (w <= 0)
            break;
        total += w;
        tg_iov_advance(v, n, &i, (size_t)w);
    }
    rc = tg_tls_batch_end(ssl, defer && i == n);
    if (rc < 0)
        goto fail;
    if (rc == 0)
        *flags |= TG_TLS_F_WANT_WRITE;
    if (total > 0)
        return total;
    if (w == INT_MIN)
        return 0;
    return io_result(ssl, w, 0, flags, log_it);
fail:
    if (errno == EAGAIN) {
        *flags |= TG_TLS_F_WANT_WRITE;
    } else {
        *flags |= TG_TLS_F_FAILED;
        if (errno == 0)
            errno = EPIPE;
    }
    return -1;
}

int tg_tls_flush(tg_ssl_t *ssl, uint8_t *flags, struct ev_io *w)
{
    int rc = tg_tls_batch_flush(ssl, w);
    if (rc == 0)
        *flags |= TG_TLS_F_WANT_WRITE;
    else if (rc < 0)
        *flags |= TG_TLS_F_FAILED;
    return rc;
}

tg_ssl_t *tg_tls_client_new(void *ctx, int fd, const char *host, int host_is_ip, int verify,
                            void *session, void *app)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    int ok = SSL_set_fd(ssl, fd);
    if (ok && verify)
        ok = host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                        : SSL_set1_host(ssl, host);
    if (ok && !host_is_ip)
        ok = SSL_set_tlsext_host_name(ssl, host);
    if (ok && session) {
        /* a copy again, so this connection cannot spoil the stored one; a
         * stale session just means a full handshake */
        SSL_SESSION *copy = SSL_SESSION_dup(session);
        if (copy) {
            SSL_set_session(ssl, copy);
            SSL_SESSION_free(copy);
        }
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_app_data(ssl, app);
    SSL_set_connect_state(ssl);
    return ssl;
}

int tg_tls_handshake(tg_ssl_t *ssl, uint8_t *flags, char *why, size_t size)
{
    errno = 0;
    int rc = SSL_connect(ssl);
    if (rc == 1)
        return 1;
    int want_write = 0, failed = 0, log_it;
    ssl_io_error(ssl, rc, 0, &want_write, &failed, &log_it);
    if (!failed) {
        if (errno == EAGAIN) {
            *flags = (uint8_t)((*flags & ~TG_TLS_F_WANT_WRITE) |
                               (want_write ? TG_TLS_F_WANT_WRITE : 0));
            return 0;
        }
        failed = 1; /* close_notify during the handshake */
    }
    *flags |= TG_TLS_F_FAILED;
    long v = SSL_get_verify_result(ssl);
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

int tg_tls_pending(tg_ssl_t *ssl, uint8_t flags)
{
    return ssl && (SSL_pending(ssl) > 0 || (!(flags & TG_TLS_F_READ_DRY) && SSL_has_pending(ssl)) ||
                   tg_tls_batch_rest(ssl));
}

int tg_tls_is_established(tg_ssl_t *ssl)
{
    return ssl && SSL_is_init_finished(ssl);
}

int tg_tls_accept(tg_ssl_t *ssl, uint8_t *flags, int *log_it)
{
    errno = 0;
    *log_it = 0;
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) {
        *flags &= (uint8_t)~TG_TLS_F_READ_DRY; /* the first request may be read ahead */
        return 1;
    }
    return io_result(ssl, rc, 1, flags, log_it) < 0 && errno == EAGAIN ? 0 : -1;
}

tg_str_t tg_tls_alpn(tg_ssl_t *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    if (ssl)
        SSL_get0_alpn_selected(ssl, &p, &n);
    return p ? (tg_str_t){(const char *)p, n} : (tg_str_t){"", 0};
}

int tg_tls_idle_ok(tg_ssl_t *ssl, uint8_t flags)
{
    char b;
    if (ssl == NULL || (flags & TG_TLS_F_FAILED))
        return 0;
    int n = io_read(ssl, &b, 1);
    if (n > 0)
        return 0; /* bytes nobody asked for */
    int e = SSL_get_error(ssl, n);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ && SSL_pending(ssl) == 0;
}

void tg_tls_client_free(tg_ssl_t *ssl)
{
    if (ssl == NULL)
        return;
    SSL_set_app_data(ssl, NULL);
    SSL_free(ssl);
    ERR_clear_error();
}

/* ---- variables ------------------------------------------------------------- */

int tg_tls_var_protocol(tg_ssl_t *ssl, tg_str_t *out)
{
    if (ssl == NULL)
        return -1;
    *out = tg_str_c(SSL_get_version(ssl));
    return 0;
}

int tg_tls_var_cipher(tg_ssl_t *ssl, tg_str_t *out)
{
    const char *name = ssl ? SSL_get_cipher_name(ssl) : NULL;
    if (name == NULL)
        return -1;
    *out = tg_str_c(name);
    return 0;
}

int tg_tls_var_client_verify(tg_ssl_t *ssl, tg_arena_t *a, tg_str_t *out)
{
    if (ssl == NULL)
        return -1;
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (x == NULL) {
        *out = TG_STR("NONE");
        return 0;
    }
    long v = SSL_get_verify_result(ssl);
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

int tg_tls_var_client_s_dn(tg_ssl_t *ssl, tg_arena_t *a, tg_str_t *out)
{
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
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

int tg_tls_var_client_fingerprint(tg_ssl_t *ssl, tg_arena_t *a, tg_str_t *out)
{
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
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

void tg_tls_clear_errors(void)
{
    ERR_clear_error();
}
