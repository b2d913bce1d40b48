/* TLS I/O (src/tls_io.c): the run-time half of TLS on OpenSSL's SSL objects,
 * for client connections (src/conn.c) and upstream connections
 * (src/upstream.c), which keep the SSL object and a byte of TG_TLS_F_* bits
 * each and wrap these functions in their own read/write (logging failures
 * with the peer's name). The configuration that builds the SSL_CTXs
 * (the tls module, SNI, tickets, the session cache) is src/tls_conf.h.
 *
 * This header includes no config header and names no connection type: the
 * connection layer includes it without a cycle. */
#ifndef TG_TLS_IO_H
#define TG_TLS_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "str.h"
#include "arena.h"

struct ev_io;

typedef struct ssl_st tg_ssl_t; /* OpenSSL's SSL */

/* Writes (tg_tls_writev) gather a range shorter than TG_TLS_GATHER_MAX and
 * what follows it into one record of TG_TLS_RECORD bytes; longer ranges go
 * to SSL_write as they are. */
#define TG_TLS_RECORD 16384
#define TG_TLS_GATHER_MAX 4096

/* A connection's TLS state bits. */
#define TG_TLS_F_WANT_WRITE 0x01 /* the TLS layer waits for the socket to take bytes */
#define TG_TLS_F_FAILED 0x02     /* fatal TLS error: no close_notify */
#define TG_TLS_F_READ_DRY 0x04   /* the last read found the socket empty: what the TLS
                                    layer holds is part of a record, the socket signals
                                    the rest */

/* A server-side session on an accepted socket, from `ctx` (the listener's
 * default server's SSL_CTX; SNI may switch it), with `app` as its app data
 * (the listener: the SNI callback finds the server by it). NULL: no memory.
 * The handshake runs inside the first reads; completed handshakes are
 * counted in the stats. */
tg_ssl_t *tg_tls_server_new(void *ctx, int fd, void *app);
/* Free it; one that never finished its handshake counts as failed. */
void tg_tls_server_free(tg_ssl_t *ssl);
/* A client-side session to an upstream: `host` verified (as an IP when
 * `host_is_ip`) when `verify`, and sent as SNI (not for an IP); `session`
 * (SSL_SESSION, may be NULL) is tried for resumption; `app` its app data
 * (the tls module's new-session callback reads it). NULL on failure. */
tg_ssl_t *tg_tls_client_new(void *ctx, int fd, const char *host, int host_is_ip, int verify,
                            void *session, void *app);
void tg_tls_client_free(tg_ssl_t *ssl);
/* Client side: advance the handshake. 1 done, 0 wait for the socket (the
 * direction in TG_TLS_F_WANT_WRITE), -1 failed, with the reason in `why`
 * ("TLS certificate verification failed: ..."). */
int tg_tls_handshake(tg_ssl_t *ssl, uint8_t *flags, char *why, size_t size);
/* Send close_notify (best effort, never waits; not after a failure). */
void tg_tls_shutdown(tg_ssl_t *ssl, uint8_t flags);

/* Read and write through TLS, with read(2)/writev(2) results: > 0 bytes; 0
 * end of stream (reading; also one without close_notify) or nothing to
 * write; -1 with errno EAGAIN (wait for the socket: TG_TLS_F_WANT_WRITE says
 * which way) or another errno: the connection is done (TG_TLS_F_FAILED set,
 * no close_notify then). *log_it: OpenSSL has a reason worth a log line
 * (tg_tls_error_reason()); the caller logs it with the peer's name and
 * clears the queue with tg_tls_clear_errors(). */
ssize_t tg_tls_read(tg_ssl_t *ssl, uint8_t *flags, void *buf, size_t len, int *log_it);
ssize_t tg_tls_writev(tg_ssl_t *ssl, uint8_t *flags, const struct iovec *iov, int n, int *log_it);
/* tg_tls_read of `rawlen` bytes that a batched read took off the socket
 * (sendq.h) and then of the socket; what it left of them comes first in
 * the next read, and counts as pending (tg_tls_pending) until then.
 * tg_tls_can_stage: may the next read of `ssl` go to the batch (nothing
 * held for it, no write wanted first)? */
int tg_tls_can_stage(tg_ssl_t *ssl, uint8_t flags);
ssize_t tg_tls_read_staged(tg_ssl_t *ssl, uint8_t *flags, const void *raw, size_t rawlen,
                           void *buf, size_t len, int *log_it);
/* tg_tls_writev for a response's bytes: several records go to the socket in
 * one write (tls_batch.h), from at most the first TG_TLS_BATCH_IOV ranges.
 * What the socket does not take stays with the session (the result counts
 * it as written): call tg_tls_flush before taking the bytes as sent.
 * `defer`: the last ranges, if they make one record, may stay with the
 * session for the worker's send batch (tg_tls_flush with a watcher). */
#define TG_TLS_BATCH_IOV 32
ssize_t tg_tls_writev_batch(tg_ssl_t *ssl, uint8_t *flags, const struct iovec *iov, int n,
                            int defer, int *log_it);
/* Write what the session holds from tg_tls_writev_batch: 1 nothing is left,
 * 0 wait until the socket is writable (TG_TLS_F_WANT_WRITE set), 2 in the
 * worker's send batch (only with `w`, the connection's watcher: its callback
 * runs with EV_WRITE after the batch, and flushes again), -1 the connection
 * failed (TG_TLS_F_FAILED set, errno). */
int tg_tls_flush(tg_ssl_t *ssl, uint8_t *flags, struct ev_io *w);
/* Bytes the TLS layer took off the socket and no read has returned yet:
 * plaintext, or whole records read ahead (server contexts read ahead up to
 * 16 KB per read call). No socket event comes for them: a reader that goes
 * back to the loop without having read to EAGAIN must check this. 0 after a
 * read that found the socket empty (TG_TLS_F_READ_DRY), whatever part of a
 * record is held; but 1 while bytes of a batched read wait that SSL_read
 * did not take (tg_tls_read_staged). */
int tg_tls_pending(tg_ssl_t *ssl, uint8_t flags);
/* Is the handshake finished? 0 for NULL. */
int tg_tls_is_established(tg_ssl_t *ssl);
/* Server side: advance the handshake. 1 done; 0 wait for the socket
 * (TG_TLS_F_WANT_WRITE says which way); -1 failed or the client left
 * (*log_it as for tg_tls_read). */
int tg_tls_accept(tg_ssl_t *ssl, uint8_t *flags, int *log_it);
/* The protocol ALPN selected ("h2", "http/1.1"), empty when none (or NULL). */
tg_str_t tg_tls_alpn(tg_ssl_t *ssl);
/* An idle pooled upstream connection became readable: 1 when that was only
 * TLS housekeeping (a session ticket) and it stays usable, 0 to close it. */
int tg_tls_idle_ok(tg_ssl_t *ssl, uint8_t flags);

/* TLS variables ($tls_protocol ...) of a client connection's session: 0 and
 * *out set, or -1 (unset: plain, NULL, no client certificate). *out points
 * to OpenSSL's static strings or into `a`. */
int tg_tls_var_protocol(tg_ssl_t *ssl, tg_str_t *out);
int tg_tls_var_cipher(tg_ssl_t *ssl, tg_str_t *out);
int tg_tls_var_client_verify(tg_ssl_t *ssl, tg_arena_t *a, tg_str_t *out);
int tg_tls_var_client_s_dn(tg_ssl_t *ssl, tg_arena_t *a, tg_str_t *out);
int tg_tls_var_client_fingerprint(tg_ssl_t *ssl, tg_arena_t *a, tg_str_t *out);

/* The reason of OpenSSL's latest queued error, for a log line or a config
 * error ("unknown error" when the queue is empty). A static string. */
const char *tg_tls_error_reason(void);
/* Clear OpenSSL's error queue (after logging its reason). */
void tg_tls_clear_errors(void);

#endif
