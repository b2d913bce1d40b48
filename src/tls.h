/* TLS termination (OpenSSL 3): the tls module (certificates, protocols,
 * client certificates, session tickets, redirect_https), one SSL_CTX per
 * server block built in the master at config load, and the non-blocking I/O
 * a client connection does through its SSL object.
 *
 * Invariants: an SSL_CTX belongs to the config generation that built it and
 * is freed with its arena. Session-ticket keys are derived from a secret the
 * master creates once and keeps across reloads, and from the time slot, so
 * every worker of every generation computes the same keys without shared
 * memory; sessions resumed by ID come from a cache in shared memory
 * (tls_cache.h) that every worker uses (see docs/tls.md). */
#ifndef TG_TLS_H
#define TG_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>
#include "str.h"
#include "module.h"
#include "tls_cache.h"

typedef struct tg_conn_s tg_conn_t;
typedef struct tg_listen_s tg_listen_t;
typedef struct ssl_st tg_ssl_t;

/* Start TLS on an accepted connection (c->ssl set). 0, or -1 (out of
 * memory: the caller closes). The handshake runs inside the first reads. */
int tg_tls_conn_start(tg_conn_t *c);
/* Send close_notify (best effort, never waits; not after a failure). */
void tg_tls_conn_shutdown(tg_conn_t *c);
/* Free c->ssl (NULL afterwards). */
void tg_tls_conn_free(tg_conn_t *c);
/* Like read(2)/writev(2) on the connection's TLS layer: >0 bytes, 0 end of
 * stream (read only), -1 with errno EAGAIN (wait for the socket; the
 * direction is in tg_tls_want) or another errno (the connection is done). */
ssize_t tg_tls_read(tg_conn_t *c, void *buf, size_t len);
ssize_t tg_tls_writev(tg_conn_t *c, const struct iovec *iov, int n);
/* Plaintext already decrypted and not read yet (no socket event will come
 * for it). */
int tg_tls_pending(tg_conn_t *c);
/* Is the handshake finished? */
int tg_tls_is_established(tg_conn_t *c);

/* Upstream side (tls on in an upstream block). uc->ssl is set by start,
 * freed by free (tg_upconn_destroy). The handshake returns 1 when done, 0
 * to wait for the socket (uc->tls_want_write says which way), -1 when it
 * failed (logged at error: a verification failure with its reason). The
 * I/O functions behave like tg_tls_read/tg_tls_writev. */
typedef struct tg_upconn_s tg_upconn_t;
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

/* Per-request variables ($tls_protocol ...): 0 and *out set, or -1 (unset). */
int tg_tls_var_protocol(tg_conn_t *c, tg_str_t *out);
int tg_tls_var_cipher(tg_conn_t *c, tg_str_t *out);
int tg_tls_var_client_verify(tg_conn_t *c, tg_arena_t *a, tg_str_t *out);
int tg_tls_var_client_s_dn(tg_conn_t *c, tg_arena_t *a, tg_str_t *out);
int tg_tls_var_client_fingerprint(tg_conn_t *c, tg_arena_t *a, tg_str_t *out);

extern tg_module_t tg_tls_module;

#endif
