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
 * order. Outside a batch the filter passes writes straight on. */
#ifndef TG_TLS_BATCH_H
#define TG_TLS_BATCH_H

#include <stddef.h>

struct ssl_st;

/* Make the filter the write BIO of `ssl`, a server session on socket `fd`
 * (the socket BIO stays the read BIO). 0, or -1 when out of memory. */
int tg_tls_batch_attach(struct ssl_st *ssl, int fd);
/* Open a batch on `ssl`: 1 batching; 0 the write BIO is not the filter
 * (write as usual); -1 with errno: held bytes could not all go (EAGAIN:
 * wait until the socket is writable) or the socket failed. */
int tg_tls_batch_begin(struct ssl_st *ssl);
/* Has the open batch room for one more whole record? */
int tg_tls_batch_fits_record(void);
/* Close the batch and write it: 1 everything went; 0 some bytes are held
 * (wait until the socket is writable, then tg_tls_batch_flush); -1 with
 * errno: the socket failed or no pool buffer for the held bytes. */
int tg_tls_batch_end(struct ssl_st *ssl);
/* Write what `ssl` holds: 1 nothing left (also for any other BIO), 0 would
 * block, -1 with errno. */
int tg_tls_batch_flush(struct ssl_st *ssl);

#endif
