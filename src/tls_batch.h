/* The write batch of client TLS connections: several TLS records in one
 * write(2).
 *
 * OpenSSL hands every record (at most 16 KB of plaintext) to its write BIO
 * on its own, so a 100 KB response cost seven write calls and seven TCP
 * segments. A client connection's write BIO is therefore a filter of ours in
 * front of the socket BIO. Between tg_tls_batch_begin and tg_tls_batch_end
 * (one SSL at a time: the worker has one thread) it appends each record to
 * the worker's batch buffer (four records) and reports it written; _end
 * writes the buffer with one call. What the socket does not take then stays
 * with the connection in pool buffers, at most one batch, until the socket
 * takes it: any later write through the BIO (a record, close_notify) and
 * tg_tls_batch_flush send the held bytes first, so the stream stays in
 * order. Outside a batch the filter passes writes straight on.
 *
 * The filter is the read BIO as well. A read of the socket that went in the
 * worker's send batch (sendq.h: one io_uring_enter for many sockets) is
 * handed to the SSL_read that follows with tg_tls_batch_stage: the filter
 * gives those bytes first, then reads the socket as usual. Server contexts
 * read ahead (tls_conf.c), so SSL_read mostly takes every staged byte into
 * its own buffer in one read call; but no more than that buffer has room
 * for, and with most of a 16 KB record in, that is less than a staged read.
 * The filter keeps what it left (tg_tls_batch_unstage) and gives it to the
 * next read first; meanwhile tg_tls_batch_rest says bytes wait (no socket
 * event announces them). */
#ifndef TG_TLS_BATCH_H
#define TG_TLS_BATCH_H

#include <stddef.h>

struct ssl_st;
struct ev_io;

/* Make the filter the read and write BIO of `ssl`, a server session on
 * socket `fd`. 0, or -1 when out of memory. */
int tg_tls_batch_attach(struct ssl_st *ssl, int fd);
/* Open a batch on `ssl`: 1 batching; 0 the write BIO is not the filter
 * (write as usual); -1 with errno: held bytes could not all go (EAGAIN:
 * wait until the socket is writable) or the socket failed. */
int tg_tls_batch_begin(struct ssl_st *ssl);
/* Has the open batch room for one more whole record? */
int tg_tls_batch_fits_record(void);
/* Close the batch and write it: 1 everything went; 0 some bytes are held
 * (wait until the socket is writable, then tg_tls_batch_flush); -1 with
 * errno: the socket failed or no pool buffer for the held bytes. `defer`:
 * a batch of one record may be held instead, for the worker's send batch
 * (sendq.h), when that is open; 1 then, and tg_tls_batch_flush with a
 * watcher gives it to the send batch. */
int tg_tls_batch_end(struct ssl_st *ssl, int defer);
/* Write what `ssl` holds: directly, or (w not NULL) in the worker's send
 * batch. 1 nothing left (also for any other BIO), 0 would block, 2 in the
 * send batch (w's callback runs with EV_WRITE after it; then flush again),
 * -1 with errno. */
int tg_tls_batch_flush(struct ssl_st *ssl, struct ev_io *w);

/* Is the filter the read BIO of `ssl` (so tg_tls_batch_stage works)? */
int tg_tls_batch_can_stage(struct ssl_st *ssl);
/* Bytes read off the socket of `ssl` elsewhere, for its next read: the
 * filter gives them before anything the socket holds. They must stay until
 * tg_tls_batch_unstage, which keeps what the read did not take for the
 * next read: 0, or -1 with errno (out of memory, or bytes staged while
 * kept ones wait; the connection is done). */
void tg_tls_batch_stage(struct ssl_st *ssl, const void *p, size_t len);
int tg_tls_batch_unstage(void);
/* Does the filter of `ssl` keep read bytes that no read has taken yet? */
int tg_tls_batch_rest(struct ssl_st *ssl);

#endif
