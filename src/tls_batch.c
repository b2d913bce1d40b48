/* The write batch of client TLS connections (see tls_batch.h). The filter
 * BIO's data pointer is what it holds (a held_t; NULL when it holds
 * nothing), so an idle connection keeps no memory for it: bytes written
 * and not sent yet (pool buffers and the ranges of them not written), and
 * bytes of a staged read that SSL_read did not take. Held bytes always go
 * before newer ones: a batch opens only when none are held, a write outside
 * a batch first empties them, a batch whose write meets held bytes adds to
 * them, and a batch held for the send batch is one record that waits alone.
 *
 * The filter is the read BIO too: a read of the socket that went in the
 * send batch is staged here (tg_tls_batch_stage) for the SSL_read that
 * follows, which takes it before it reads the socket itself. Reading ahead,
 * SSL_read asks for no more than its buffer has room for: with most of a
 * 16 KB record in, that is less than a staged read, and what it leaves is
 * kept (held_t's rest) and given first to the next read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include "buf.h"
#include "sendq.h"
#include "tls_batch.h"

/* A connection's bytes not written yet, as ranges of pool buffers: the
 * filter's data while there are any (NULL otherwise: an idle connection
 * keeps nothing for them). */
typedef struct {
    tg_iovq_t q;    /* the ranges, oldest first (in the send batch: q.batch) */
    tg_buf_t *bufs; /* their buffers, oldest first; the last one takes more */
    uint64_t sent;  /* where the writes count (tg_iovq_write's `written`): unused */
    size_t nrest;   /* read off the socket, not taken by SSL_read yet: rest[0..nrest) */
    char rest[TG_SENDQ_READ_MAX];
} held_t;

#define BATCH_RECORD (16384 + 512) /* a record's plaintext and its TLS overhead */
#define BATCH_SIZE (4 * BATCH_RECORD)

static BIO_METHOD *method;
static int method_type; /* its BIO type: a filter's index */
static struct {
    BIO *bio; /* the filter whose batch is open; NULL: none */
    size_t len;
    char buf[BATCH_SIZE];
} batch;

/* the bytes of a batched read, for one SSL_read of `bio` */
static struct {
    BIO *bio;
    const char *p;
    size_t len;
} staged;

static int bio_fd(BIO *b)
{
    return (int)BIO_get_fd(BIO_next(b), NULL);
}

/* The filter's held_t, made when `make` and there is none; NULL if none. */
static held_t *held_of(BIO *b, int make)
{
    held_t *h = BIO_get_data(b);
    if (h == NULL && make) {
        if ((h = calloc(1, sizeof(*h))) == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        BIO_set_data(b, h);
    }
    return h;
}

/* Are written bytes waiting? */
static int held_writes(BIO *b)
{
    held_t *h = BIO_get_data(b);
    return h && h->bufs;
}

/* Forget the written bytes (all sent, or the connection is done); the
 * held_t goes when nothing read waits in it either. */
static void held_free(BIO *b)
{
    held_t *h = BIO_get_data(b);
    if (h == NULL)
        return;
    tg_sendq_cancel(&h->q);
    tg_buf_put_list(h->bufs);
    h->bufs = NULL;
    h->q = (tg_iovq_t){0};
    if (h->nrest)
        return;
    free(h);
    BIO_set_data(b, NULL);
}

/* Write the held bytes, directly or (w) in the worker's send batch: 1 none
 * left, 0 the socket is full, 2 in the send batch (w's callback runs with
 * EV_WRITE after it), -1 with errno. */
static int held_write(BIO *b, ev_io *w)
{
    if (!held_writes(b))
        return 1;
    held_t *h = BIO_get_data(b);
    int rc;
    if (w) {
        rc = tg_sendq_write(&h->q, bio_fd(b), w, &h->sent, 0);
    } else {
        tg_sendq_cancel(&h->q); /* written now: the batch must not write it again */
        rc = tg_iovq_write(&h->q, bio_fd(b), &h->sent);
    }
    if (rc == 1)
        held_free(b);
    return rc;
}

/* Add bytes behind the held ones, in pool buffers. 0, or -1 (ENOMEM). */
static int held_add(BIO *b, const char *p, size_t len)
{
    held_t *h = held_of(b, 1);
    if (h == NULL)
        return -1;
    tg_buf_t *tail = h->bufs;
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
                h->bufs = nb;
            tail = nb;
        }
        size_t take = (size_t)(tail->end - tail->last);
        if (take > len)
            take = len;
        struct iovec *last = h->q.n > h->q.i ? &h->q.iov[h->q.n - 1] : NULL;
        if (last && (char *)last->iov_base + last->iov_len == tail->last) {
            last->iov_len += take;
            h->q.pending += take;
        } else if (tg_iovq_add(&h->q, tail->last, take) != 0) {
            errno = ENOMEM; /* never: at most a batch and a few records are held */
            return -1;
        }
        memcpy(tail->last, p, take);
        tail->last += take;
        p += take;
        len -= take;
    }
    return 0;
}

/* The batch's bytes to the socket, what it does not take to the held list;
 * `defer`: all of them to the held list, for the send batch. 1, 0 (bytes
 * held) or -1 with errno. */
static int batch_write(BIO *b, int defer)
{
    size_t off = 0;
    if (!held_writes(b) && !defer) {
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
        if ((size_t)inl > BATCH_SIZE - batch.len && batch_write(b, 0) < 0)
            return -1;
        if ((size_t)inl > BATCH_SIZE) /* not a record: never seen */
            return held_add(b, in, (size_t)inl) == 0 ? inl : -1;
        memcpy(batch.buf + batch.len, in, (size_t)inl);
        batch.len += (size_t)inl;
        return inl;
    }
    /* a record outside the owner's writes (OpenSSL answering a KeyUpdate
     * in SSL_read, close_notify) while its held bytes wait in the send
     * batch: they go first, directly, and the owner still gets the
     * callback it waits for */
    held_t *h = BIO_get_data(b);
    if (h)
        tg_sendq_cancel_wake(&h->q); /* nothing when no write of it waits */
    int rc = held_write(b, NULL);
    if (rc <= 0) {
        if (rc == 0)
            BIO_set_retry_write(b);
        return -1;
    }
    int n = BIO_write(BIO_next(b), in, inl);
    BIO_copy_next_retry(b);
    return n;
}

static int filter_read(BIO *b, char *out, int outl)
{
    BIO_clear_retry_flags(b);
    if (outl <= 0)
        return 0;
    held_t *h = BIO_get_data(b);
    if (h && h->nrest) { /* these came first */
        size_t n = h->nrest < (size_t)outl ? h->nrest : (size_t)outl;
        memcpy(out, h->rest, n);
        memmove(h->rest, h->rest + n, h->nrest - n);
        h->nrest -= n;
        if (h->nrest == 0 && h->bufs == NULL)
            held_free(b);
        return (int)n;
    }
    if (staged.bio == b && staged.len) {
        size_t n = staged.len < (size_t)outl ? staged.len : (size_t)outl;
        memcpy(out, staged.p, n);
        staged.p += n;
        staged.len -= n;
        return (int)n;
    }
    int n = BIO_read(BIO_next(b), out, outl);
    BIO_copy_next_retry(b);
    return n;
}

static long filter_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    BIO *next = BIO_next(b);
    if (cmd == BIO_CTRL_FLUSH) {
        BIO_clear_retry_flags(b);
        int rc = held_write(b, NULL);
        if (rc <= 0) {
            if (rc == 0)
                BIO_set_retry_write(b);
            return rc;
        }
    } else if (cmd == BIO_CTRL_PENDING) {
        held_t *h = BIO_get_data(b);
        long n = h ? (long)h->nrest : 0;
        return n + (next ? BIO_ctrl(next, cmd, num, ptr) : 0);
    } else if (cmd == BIO_CTRL_WPENDING) {
        held_t *h = BIO_get_data(b);
        long n = h ? (long)h->q.pending : 0;
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
    held_t *h = BIO_get_data(b);
    if (h)
        h->nrest = 0;
    held_free(b);
    if (batch.bio == b) {
        batch.bio = NULL;
        batch.len = 0;
    }
    if (staged.bio == b)
        staged.bio = NULL;
    return 1;
}

int tg_tls_batch_attach(struct ssl_st *ssl, int fd)
{
    if (method == NULL) {
        int type = BIO_get_new_index();
        BIO_METHOD *m = type > 0 ? BIO_meth_new(type | BIO_TYPE_FILTER, "tollgate batch") : NULL;
        if (m == NULL || !BIO_meth_set_write(m, filter_write) || !BIO_meth_set_read(m, filter_read) ||
            !BIO_meth_set_ctrl(m, filter_ctrl) || !BIO_meth_set_create(m, filter_create) ||
            !BIO_meth_set_destroy(m, filter_destroy)) {
            BIO_meth_free(m);
            return -1;
        }
        method = m;
        method_type = type | BIO_TYPE_FILTER;
    }
    BIO *sock = BIO_new_socket(fd, BIO_NOCLOSE), *filter = BIO_new(method);
    if (sock == NULL || filter == NULL) {
        BIO_free(sock);
        BIO_free(filter);
        return -1;
    }
    /* the filter owns the socket BIO; SSL_set_bio takes the filter's one
     * reference for both directions */
    BIO_push(filter, sock);
    SSL_set_bio(ssl, filter, filter);
    return 0;
}

static BIO *filter_of(BIO *b)
{
    return b && method && BIO_method_type(b) == method_type ? b : NULL;
}

int tg_tls_batch_can_stage(struct ssl_st *ssl)
{
    return filter_of(SSL_get_rbio(ssl)) != NULL;
}

void tg_tls_batch_stage(struct ssl_st *ssl, const void *p, size_t len)
{
    staged.bio = filter_of(SSL_get_rbio(ssl));
    staged.p = p;
    staged.len = len;
}

int tg_tls_batch_unstage(void)
{
    BIO *b = staged.bio;
    size_t left = b ? staged.len : 0;
    staged.bio = NULL;
    staged.len = 0;
    if (left == 0)
        return 0;
    held_t *h = held_of(b, 1);
    if (h == NULL)
        return -1;
    if (left > sizeof(h->rest) - h->nrest) { /* never: nothing is staged while some wait */
        errno = EIO;
        return -1;
    }
    memcpy(h->rest + h->nrest, staged.p, left);
    h->nrest += left;
    return 0;
}

int tg_tls_batch_rest(struct ssl_st *ssl)
{
    BIO *b = filter_of(SSL_get_rbio(ssl));
    held_t *h = b ? BIO_get_data(b) : NULL;
    return h && h->nrest;
}

int tg_tls_batch_begin(struct ssl_st *ssl)
{
    BIO *b = filter_of(SSL_get_wbio(ssl));
    if (b == NULL)
        return 0;
    int rc = held_write(b, NULL);
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

int tg_tls_batch_end(struct ssl_st *ssl, int defer)
{
    BIO *b = batch.bio;
    (void)ssl;
    batch.bio = NULL;
    if (b == NULL)
        return 1;
    /* one record, the send batch open: it waits there (the copy costs less
     * than the send(2) it saves); more goes now */
    defer = defer && batch.len <= BATCH_RECORD && !held_writes(b) && tg_sendq_open();
    int rc = batch_write(b, defer);
    return defer && rc == 0 ? 1 : rc;
}

int tg_tls_batch_flush(struct ssl_st *ssl, ev_io *w)
{
    BIO *b = filter_of(SSL_get_wbio(ssl));
    if (b == NULL)
        return 1;
    return held_write(b, w);
}
