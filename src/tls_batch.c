/* The write batch of client TLS connections (see tls_batch.h). The filter
 * BIO's data pointer is its list of held bytes (pool buffers linked by
 * `next`, oldest first; NULL when it holds nothing), so an idle connection
 * keeps no memory for it. Held bytes always go before newer ones: a batch
 * opens only on an empty list, a write outside a batch first empties it,
 * and a batch whose write meets held bytes adds to them. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include "buf.h"
#include "tls_batch.h"

#define BATCH_RECORD (16384 + 512) /* a record's plaintext and its TLS overhead */
#define BATCH_SIZE (4 * BATCH_RECORD)

static BIO_METHOD *method;
static int method_type; /* its BIO type: a filter's index */
static struct {
    BIO *bio; /* the filter whose batch is open; NULL: none */
    size_t len;
    char buf[BATCH_SIZE];
} batch;

static int bio_fd(BIO *b)
{
    return (int)BIO_get_fd(BIO_next(b), NULL);
}

/* Write the held bytes: 1 none left, 0 the socket is full, -1 with errno. */
static int held_write(BIO *b)
{
    tg_buf_t *h = BIO_get_data(b);
    int fd = h ? bio_fd(b) : -1;
    while (h) {
        ssize_t n = send(fd, h->pos, (size_t)(h->last - h->pos), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        h->pos += n;
        if (h->pos == h->last) {
            tg_buf_t *next = h->next;
            tg_buf_put(h);
            h = next;
            BIO_set_data(b, h);
        }
    }
    return 1;
}

/* Add bytes behind the held ones, in pool buffers. 0, or -1 (ENOMEM). */
static int held_add(BIO *b, const char *p, size_t len)
{
    tg_buf_t *h = BIO_get_data(b), *tail = h;
    while (tail && tail->next)
        tail = tail->next;
    while (len) {
        if (tail == NULL || tail->last == tail->end) {
            tg_buf_t *nb = tg_buf_get();
            if (nb == NULL) {
                errno = ENOMEM;
                return -1;
            }
            nb->next = NULL;
            if (tail)
                tail->next = nb;
            else
                BIO_set_data(b, nb);
            tail = nb;
        }
        size_t take = (size_t)(tail->end - tail->last);
        if (take > len)
            take = len;
        memcpy(tail->last, p, take);
        tail->last += take;
        p += take;
        len -= take;
    }
    return 0;
}

/* The batch's bytes to the socket, what it does not take to the held list.
 * 1, 0 (bytes held) or -1 with errno. */
static int batch_write(BIO *b)
{
    size_t off = 0;
    if (BIO_get_data(b) == NULL) {
        while (off < batch.len) {
            ssize_t n = send(bio_fd(b), batch.buf + off, batch.len - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            if (n < 0)
                break;
            off += (size_t)n;
            if (off < batch.len)
                break; /* the socket is full: another try would fail */
        }
    }
    size_t left = batch.len - off;
    batch.len = 0;
    if (left == 0)
        return 1;
    return held_add(b, batch.buf + off, left) == 0 ? 0 : -1;
}

static int filter_write(BIO *b, const char *in, int inl)
{
    BIO_clear_retry_flags(b);
    if (inl <= 0)
        return 0;
    if (batch.bio == b) {
        if ((size_t)inl > BATCH_SIZE - batch.len && batch_write(b) < 0)
            return -1;
        if ((size_t)inl > BATCH_SIZE) /* not a record: never seen */
            return held_add(b, in, (size_t)inl) == 0 ? inl : -1;
        memcpy(batch.buf + batch.len, in, (size_t)inl);
        batch.len += (size_t)inl;
        return inl;
    }
    int rc = held_write(b);
    if (rc <= 0) {
        if (rc == 0)
            BIO_set_retry_write(b);
        return -1;
    }
    int n = BIO_write(BIO_next(b), in, inl);
    BIO_copy_next_retry(b);
    return n;
}

static long filter_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    BIO *next = BIO_next(b);
    if (cmd == BIO_CTRL_FLUSH) {
        BIO_clear_retry_flags(b);
        int rc = held_write(b);
        if (rc <= 0) {
            if (rc == 0)
                BIO_set_retry_write(b);
            return rc;
        }
    } else if (cmd == BIO_CTRL_WPENDING) {
        long n = 0;
        for (tg_buf_t *h = BIO_get_data(b); h; h = h->next)
            n += (long)(h->last - h->pos);
        return n + (next ? BIO_ctrl(next, cmd, num, ptr) : 0);
    } else if (cmd == BIO_CTRL_DUP) {
        return 0;
    } else if (cmd == BIO_CTRL_GET_KTLS_SEND || cmd == BIO_CTRL_GET_KTLS_RECV) {
        /* no kernel TLS under the filter (the socket BIO under it never has
         * it switched on); libssl asks up to eight times a record, and
         * passing each question down doubled its cost */
        return 0;
    }
    return next ? BIO_ctrl(next, cmd, num, ptr) : 0;
}

static int filter_create(BIO *b)
{
    BIO_set_data(b, NULL);
    BIO_set_init(b, 1);
    return 1;
}

static int filter_destroy(BIO *b)
{
    tg_buf_t *h = BIO_get_data(b);
    while (h) {
        tg_buf_t *next = h->next;
        tg_buf_put(h);
        h = next;
    }
    BIO_set_data(b, NULL);
    if (batch.bio == b) {
        batch.bio = NULL;
        batch.len = 0;
    }
    return 1;
}

int tg_tls_batch_attach(struct ssl_st *ssl, int fd)
{
    if (method == NULL) {
        int type = BIO_get_new_index();
        BIO_METHOD *m = type > 0 ? BIO_meth_new(type | BIO_TYPE_FILTER, "tollgate batch") : NULL;
        if (m == NULL || !BIO_meth_set_write(m, filter_write) ||
            !BIO_meth_set_ctrl(m, filter_ctrl) || !BIO_meth_set_create(m, filter_create) ||
            !BIO_meth_set_destroy(m, filter_destroy)) {
            BIO_meth_free(m);
            return -1;
        }
        method = m;
        method_type = type | BIO_TYPE_FILTER;
    }
    BIO *sock = BIO_new_socket(fd, BIO_NOCLOSE), *filter = BIO_new(method);
    if (sock == NULL || filter == NULL || !BIO_up_ref(sock)) {
        BIO_free(sock);
        BIO_free(filter);
        return -1;
    }
    /* one reference of the socket BIO is the read BIO's, one the filter's */
    BIO_push(filter, sock);
    SSL_set_bio(ssl, sock, filter);
    return 0;
}

int tg_tls_batch_begin(struct ssl_st *ssl)
{
    BIO *b = SSL_get_wbio(ssl);
    if (b == NULL || method == NULL || BIO_method_type(b) != method_type)
        return 0;
    int rc = held_write(b);
    if (rc <= 0) {
        if (rc == 0)
            errno = EAGAIN;
        return -1;
    }
    batch.bio = b;
    batch.len = 0;
    return 1;
}

int tg_tls_batch_fits_record(void)
{
    return BATCH_SIZE - batch.len >= BATCH_RECORD;
}

int tg_tls_batch_end(struct ssl_st *ssl)
{
    BIO *b = batch.bio;
    (void)ssl;
    batch.bio = NULL;
    return b ? batch_write(b) : 1;
}

int tg_tls_batch_flush(struct ssl_st *ssl)
{
    BIO *b = SSL_get_wbio(ssl);
    if (b == NULL || method == NULL || BIO_method_type(b) != method_type)
        return 1;
    return held_write(b);
}
