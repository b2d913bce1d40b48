/* TLS configuration (src/tls_conf.c): the tls module (certificates,
 * protocols, ciphers, client certificates, OCSP stapling, session tickets,
 * the shared session cache), one SSL_CTX per server block with a `tls`
 * listener and one per upstream block with `tls on`, built in the master at
 * config load: a tls listener gets its default server's context
 * (tg_listen_t.tls_ctx; the client-hello callback, which finds the listener
 * in the SSL's app data, may switch to another server's), an upstream block
 * its own (tls_ctx). The I/O connections do through these contexts is in
 * src/tls_io.h; the connection layer includes only that header.
 *
 * Invariants: an SSL_CTX belongs to the config generation that built it and
 * is freed with its arena. Session-ticket keys are derived from a secret the
 * master creates once and keeps across reloads, and from the time slot, so
 * every worker of every generation computes the same keys without shared
 * memory; sessions resumed by ID come from a cache in shared memory
 * (tls_cache.h) that every worker uses (see docs/tls.md). */
#ifndef TG_TLS_CONF_H
#define TG_TLS_CONF_H

#include "module.h"
#include "core.h"
#include "tls_cache.h"
#include <openssl/ssl.h>

/* The shared session cache's counters (src/tls_cache.h) for the stats
 * endpoint: 0 and *st filled, or -1 when the config has no cache. */
int tg_tls_session_cache_stats(tg_config_t *c, tg_tls_cache_stats_t *st);

/* Serve `leaf` (with `chain`, may be NULL, and `key`) for the server block
 * whose module configs are `mconf`, instead of tls_certificate files (the
 * ACME client's certificates, src/acme_conf.c). At config load (cf set,
 * before the tls module's init_conf builds the context) it is remembered
 * until the config goes; in a worker (cf NULL) it replaces the certificate
 * of the same key type in the built context: handshakes from then on use
 * it, connections already made keep theirs. References are taken; the
 * caller keeps its own. 0, or -1. */
int tg_tls_server_set_cert(tg_conf_t *cf, void **mconf, X509 *leaf, STACK_OF(X509) *chain,
                           EVP_PKEY *key);

/* The leaf certificates the server block's context serves now in this
 * process (one per key type), up to `max` into out (not referenced): how
 * many; 0 for a server without TLS. */
int tg_tls_server_leaves(void **mconf, X509 **out, int max);

/* tls-alpn-01 (RFC 8737): a handshake whose client hello offers the ALPN
 * protocol acme-tls/1 goes to this hook (set in a worker by the acme
 * module) with its SNI name, instead of the server's context: it switches
 * the SSL to a context that selects acme-tls/1 and sets the challenge
 * certificate, returning 1; 0 fails the handshake. NULL: no hook. */
typedef int (*tg_tls_challenge_fn)(SSL *ssl, tg_str_t host);
void tg_tls_set_challenge_hook(tg_tls_challenge_fn fn);

/* OCSP stapling of fetched responses: the status request of a handshake
 * whose certificate `leaf` has no tls_stapling_file goes to this hook (set
 * in a worker by the ocsp module), which staples with
 * SSL_set_tlsext_status_ocsp_resp and returns SSL_TLSEXT_ERR_OK, or
 * SSL_TLSEXT_ERR_NOACK. NULL: no hook. */
typedef int (*tg_tls_status_fn)(SSL *ssl, X509 *leaf);
void tg_tls_set_status_hook(tg_tls_status_fn fn);

/* The server block's context (NULL without a tls listener), for the ocsp
 * module's init_conf, which comes after the tls module's; and whether the
 * leaf loaded into it is stapled from a tls_stapling_file. */
SSL_CTX *tg_tls_server_get_ctx(void **mconf);
int tg_tls_leaf_has_staple_file(void **mconf, X509 *leaf);

extern tg_module_t tg_tls_module;

/* Config time: a TLS client context verifying servers against the CA file
 * `ca` (NULL: the system store), HTTP/1.1 by ALPN, freed with the config.
 * NULL after an error reported with `what` ("lua_http_ca"). */
void *tg_tls_client_ctx(tg_conf_t *cf, const char *ca, const char *what);

#endif
