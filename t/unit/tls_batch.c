/* Unit tests for the read side of src/tls_batch.c (through tls_io.c's
 * tg_tls_read_staged): a server session behind the batch filter on one end
 * of a socketpair, a plain OpenSSL client on the other. The client sends
 * records of up to 16 KB; the server takes the socket's bytes the way a read
 * in the worker's send batch does (at most TG_SENDQ_READ_MAX at a time, off
 * the socket, then handed to SSL_read). Reading ahead, SSL_read asks its BIO
 * for no more than its buffer has room for: once most of a 16 KB record is
 * in, that is less than one staged read, and the bytes it did not take must
 * come first in the next read, and count as pending meanwhile (no socket
 * event announces them). Every byte must arrive, in order. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "sendq.h"
#include "tls_batch.h"
#include "tls_io.h"
#include "tap.h"

#define TOTAL (1024 * 1024)
#define IBUF 16384 /* a connection's input buffer */
#define ROUNDS 100000 /* bound on every loop */

static unsigned char sent[TOTAL], got[TOTAL];

static SSL_CTX *server_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"a.test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, x);
    SSL_CTX_use_PrivateKey(ctx, key);
    SSL_CTX_set_read_ahead(ctx, 1); /* as tls_conf.c sets it */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

/* The reads of one socket event, as a reader of a client connection does
 * them: the first through the batch when the session allows it, then
 * SSL_read directly until the socket is empty. The bytes read go to
 * got[*read..]; -1 when a read failed. */
static int server_event(SSL *s, uint8_t *flags, int fd, size_t *read, int *staged_reads,
                        int *left)
{
    int log_it;
    for (int first = 1, i = 0; i < ROUNDS; first = 0, i++) {
        ssize_t n;
        size_t room = TOTAL - *read < IBUF ? TOTAL - *read : IBUF;
        if (first && tg_tls_can_stage(s, *flags)) {
            char raw[TG_SENDQ_READ_MAX];
            ssize_t r = recv(fd, raw, sizeof(raw), MSG_DONTWAIT);
            if (r <= 0)
                return r < 0 && errno == EAGAIN ? 0 : -1;
            ++*staged_reads;
            n = tg_tls_read_staged(s, flags, raw, (size_t)r, got + *read, room, &log_it);
            *left += tg_tls_batch_rest(s);
            if (tg_tls_batch_rest(s) && !tg_tls_pending(s, *flags))
                return -1; /* waiting bytes not announced */
        } else {
            n = tg_tls_read(s, flags, got + *read, room, &log_it);
        }
        if (n > 0)
            *read += (size_t)n;
        else if (n < 0 && errno == EAGAIN)
            return 0;
        else
            return -1;
    }
    return 0;
}

int main(void)
{
    int sv[2];
    ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    SSL_CTX *sctx = server_ctx(), *cctx = SSL_CTX_new(TLS_client_method());
    SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
    ok(tg_tls_batch_attach(srv, sv[0]) == 0, "the filter is the server's BIO");
    ok(tg_tls_batch_can_stage(srv), "reads of the server session can be staged");
    SSL_set_accept_state(srv);
    SSL_set_fd(cli, sv[1]);
    SSL_set_connect_state(cli);
    int done = 0;
    for (int i = 0; i < 1000 && done != 3; i++) {
        if (!(done & 1) && SSL_do_handshake(cli) == 1)
            done |= 1;
        if (!(done & 2) && SSL_do_handshake(srv) == 1)
            done |= 2;
    }
    ok(done == 3, "handshake");
    ERR_clear_error();
    /* the client's records go to memory; the test hands them to the socket
     * in pieces of varied sizes, one piece per socket event */
    BIO *wire = BIO_new(BIO_s_mem());
    SSL_set0_wbio(cli, wire);

    for (size_t i = 0; i < TOTAL; i++)
        sent[i] = (unsigned char)(i * 131 + (i >> 9));
    for (size_t off = 0; off < TOTAL;) {
        size_t n = off % 3 ? 16384 : 1000 + off % 777; /* mostly whole 16 KB records */
        if (n > TOTAL - off)
            n = TOTAL - off;
        if (SSL_write(cli, sent + off, (int)n) != (int)n)
            break;
        off += n;
    }
    size_t read = 0;
    int staged_reads = 0, failed = 0, events = 0, left = 0;
    uint8_t flags = 0;
    char piece[2048];
    for (int i = 0; read < TOTAL && i < ROUNDS && !failed; i++) {
        int len = BIO_read(wire, piece, 1 + (int)((unsigned)i * 7919u % 1400u));
        if (len > 0 && send(sv[1], piece, (size_t)len, 0) != len)
            break;
        events++;
        if (server_event(srv, &flags, sv[0], &read, &staged_reads, &left) != 0) {
            diag("read failed: errno %d (%s) after %zu bytes", errno, strerror(errno), read);
            failed = 1;
        }
    }
    is_int(failed, 0, "no read failed");
    is_int(read, TOTAL, "the server read every byte");
    ok(memcmp(sent, got, TOTAL) == 0, "in order, unchanged");
    ok(staged_reads > events / 2, "most events' first read went through the batch (%d of %d)",
       staged_reads, events);
    ok(left > 0, "SSL_read left staged bytes %d times", left);
    ok(!tg_tls_pending(srv, flags), "nothing is left pending");

    SSL_free(srv);
    SSL_free(cli);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    close(sv[0]);
    close(sv[1]);
    return done_testing();
}
