/* TLS I/O (src/tls_io.c): what client connections (src/conn.h) and upstream
 * connections (src/proxy.h) call at run time through their SSL objects:
 * start, read, write, shutdown, free, and the TLS variables ($tls_protocol
 * ...). The configuration that builds the SSL_CTXs these connections start
 * from (the tls module, SNI, tickets, the session cache) is in
 * src/tls_conf.h.
 *
 * This header is the connection layer's only view of TLS: it includes no
 * config header (module.h, conf.h, core.h) and names the connection types by
 * their struct tags only, so conn.h and proxy.h can include it without a
 * cycle. Every function below expects c->ssl / uc->ssl to be what the
 * connection was given by the start functions (or NULL where noted). */
#ifndef TG_TLS_IO_H
#define TG_TLS_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "str.h"
#include "arena.h"

typedef struct tg_conn_s tg_conn_t;
typedef struct tg_upconn_s tg_upconn_t;
typedef struct ssl_st tg_ssl_t; /* OpenSSL's SSL */

/* Start TLS on an accepted connection of a `tls` listener (sets c->ssl,
 * from the context of the listener's default server). 0, or -1 (out of
 * memory: the caller closes). The handshake runs inside the first reads. */
int tg_tls_conn_start(tg_conn_t *c);
/* Send close_notify (best effort, never waits; not after a failure). No-op
 * when c->ssl is NULL. */
void tg_tls_conn_shutdown(tg_conn_t *c);
/* Free c->ssl (NULL afterwards; no-op when already NULL). A connection that
 * never finished its handshake counts as a failed one in the stats. */
void tg_tls_conn_free(tg_conn_t *c);
/* Like read(2)/writev(2) on the connection's TLS layer: >0 bytes, 0 end of
 * stream (read only), -1 with errno EAGAIN (wait for the socket; the
 * direction is in c->tls_want_write) or another errno (the connection is
 * done; c->tls_failed says no close_notify should be sent). */
ssize_t tg_tls_read(tg_conn_t *c, void *buf, size_t len);
ssize_t tg_tls_writev(tg_conn_t *c, const struct iovec *iov, int n);
/* Plaintext already decrypted and not read yet (no socket event will come
 * for it). 0 when c->ssl is NULL. */
int tg_tls_pending(tg_conn_t *c);
/* Is the handshake finished? 0 when c->ssl is NULL. */
int tg_tls_is_established(tg_conn_t *c);

/* Upstream side (tls on in an upstream block). uc->ssl is set by start,
 * freed by free (tg_upconn_destroy). The handshake returns 1 when done, 0
 * to wait for the socket (uc->tls_want_write says which way), -1 when it
 * failed (logged at error: a verification failure with its reason). The
 * I/O functions behave like tg_tls_read/tg_tls_writev. */
int tg_tls_upconn_start(tg_upconn_t *uc);
int tg_tls_upconn_handshake(tg_upconn_t *uc);
/* The same for health checks: nothing logged, a failure's reason written
 * to `why` ("TLS certificate verification failed: ..."), for the caller's
 * one log line when the server changes state. */
int tg_tls_upconn_check(tg_upconn_t *uc, char *why, size_t size);
ssize_t tg_tls_up_read(tg_upconn_t *uc, void *buf, size_t len);
ssize_t tg_tls_up_writev(tg_upconn_t *uc, const struct iovec *iov, int n);
int tg_tls_up_pending(tg_upconn_t *uc);
/* An idle pooled connection became readable: 1 when that was only TLS
 * housekeeping (a session ticket) and it stays usable, 0 to close it. */
int tg_tls_up_idle_ok(tg_upconn_t *uc);
void tg_tls_up_shutdown(tg_upconn_t *uc);
void tg_tls_upconn_free(tg_upconn_t *uc);

/* Per-connection TLS variables ($tls_protocol ...): 0 and *out set, or -1
 * (unset: a plain connection, no client certificate). *out points to
 * OpenSSL's static strings or into `a`. */
int tg_tls_var_protocol(tg_conn_t *c, tg_str_t *out);
int tg_tls_var_cipher(tg_conn_t *c, tg_str_t *out);
int tg_tls_var_client_verify(tg_conn_t *c, tg_arena_t *a, tg_str_t *out);
int tg_tls_var_client_s_dn(tg_conn_t *c, tg_arena_t *a, tg_str_t *out);
int tg_tls_var_client_fingerprint(tg_conn_t *c, tg_arena_t *a, tg_str_t *out);

/* The reason of OpenSSL's latest queued error, for a log line or a config
 * error ("unknown error" when the queue is empty). A static string; the
 * caller clears the queue. */
const char *tg_tls_error_reason(void);

#endif
