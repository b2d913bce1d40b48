/* Automatic certificates (ACME, RFC 8555): what the config (src/acme_conf.c,
 * the acme module), the helper process that talks to the CA (src/acme.c)
 * and the master share.
 *
 * Processes: the master forks one ACME helper per config generation
 * (tg_acme_start); it runs as the workers' user, alone talks to the CA for
 * every certificate, keeps the account key and the certificates in
 * `acme_storage`, and publishes what workers need in the "acme" shared
 * memory zone: the http-01 tokens (answered by every worker on plain HTTP
 * listeners) and each certificate's PEM chain and key, under a sequence
 * number that workers poll once a second to install a new certificate into
 * their server's SSL_CTX (no reload, no connection dropped).
 *
 * The zone (tg_acme_shm_t) is made by the master at config load, zeroed
 * when new; a reload with the same certificate count keeps it. */
#ifndef TG_ACME_H
#define TG_ACME_H

#include <stdint.h>
#include <sys/types.h>
#include "core.h"
#include "shm.h"
#include "acme_jws.h"

#define TG_ACME_ZONE_TAG "acme/2"
#define TG_ACME_TOKENS 16
#define TG_ACME_PEM_MAX (24 * 1024) /* chain and key of one certificate */
#define TG_ACME_NAMES_MAX 1024      /* the names, space separated */
#define TG_ACME_CHALLENGE_PREFIX "/.well-known/acme-challenge/"

/* An http-01 token and its key authorization (RFC 8555 8.3); empty token:
 * a free entry. */
typedef struct {
    char token[128];
    char keyauth[256];
} tg_acme_token_t;

/* A tls-alpn-01 challenge certificate (RFC 8737) for one name, PEM
 * certificate then key; empty name: a free entry. */
#define TG_ACME_ALPN 4
#define TG_ACME_ALPN_PEM 4096
typedef struct {
    char name[256];
    uint32_t cert_len, key_len;
    char pem[TG_ACME_ALPN_PEM];
} tg_acme_alpn_t;

/* Result of the last attempt to get a certificate (the stats). */
typedef enum {
    TG_ACME_RES_NONE = 0, /* no attempt by this gateway yet */
    TG_ACME_RES_OK,       /* issued (or taken from storage, issued by another gateway) */
    TG_ACME_RES_FAILED,   /* last_error says why; retried with backoff */
} tg_acme_result_t;

/* One certificate's place in the zone. `seq` is a seqlock: odd while the
 * helper writes, so a reader copies, checks it is even and unchanged. */
typedef struct {
    volatile uint64_t seq;
    char names[TG_ACME_NAMES_MAX]; /* which certificate this is: "a.test b.test" */
    uint32_t chain_len, key_len;   /* PEM bytes at pem[0] and pem[chain_len] */
    int64_t not_before, not_after; /* of the certificate served (0: placeholder) */
    int64_t last_attempt, next_attempt; /* unix seconds (0: never / not planned) */
    int32_t last_result;           /* tg_acme_result_t */
    char last_error[256];
    char pem[TG_ACME_PEM_MAX];
} tg_acme_slot_t;

typedef struct {
    tg_shm_mutex_t lock; /* the tokens */
    int32_t lock_ready;
    tg_acme_token_t tokens[TG_ACME_TOKENS];
    tg_acme_alpn_t alpn[TG_ACME_ALPN];    /* under `lock` too */
    tg_acme_slot_t slots[]; /* one per certificate, in tg_acme_main_t.certs order */
} tg_acme_shm_t;

/* A server block with `acme on`. */
typedef struct {
    tg_server_t *server;
    const char **names; /* server_name, lowercase, no wildcard */
    int nnames;
    char *names_text;   /* "a.test b.test" */
    tg_acme_key_type_t key_type;
    int tls_alpn;       /* acme_challenge tls-alpn-01 (else http-01) */
    const char *crt_path, *key_path; /* in the storage directory */
} tg_acme_cert_t;

/* The acme module's main-scope config after init_conf. */
typedef struct {
    const char *directory; /* acme_directory URL */
    const char *ca_root;   /* acme_ca_root: PEM file, NULL for the system store */
    const char *email;     /* acme_email, NULL: no contact */
    const char *storage;   /* acme_storage directory */
    tg_acme_key_type_t account_key_type;
    tg_acme_cert_t *certs;
    int ncerts;
    tg_acme_shm_t *shm;    /* NULL without certificates */
} tg_acme_main_t;

/* The acme module's main config of `c`, or NULL when no server has `acme on`
 * (src/acme_conf.c). */
tg_acme_main_t *tg_acme_main(tg_config_t *c);

/* Read a certificate chain and key in PEM (files: crt/key paths; or one
 * memory block each). 0 and the three set (the caller frees them), or -1. */
int tg_acme_pem_load(const char *crt, size_t crt_len, const char *key, size_t key_len,
                     X509 **leaf, STACK_OF(X509) **chain, EVP_PKEY **pkey);
int tg_acme_pem_load_files(const char *crt_path, const char *key_path, X509 **leaf,
                           STACK_OF(X509) **chain, EVP_PKEY **pkey);
/* Copy slot `sl`'s chain and key under its seqlock, at `seq` (an even
 * sequence read before), and parse them: 0 and the three set (the caller
 * frees them), -1 when the slot changed meanwhile or they do not parse. */
int tg_acme_slot_load(const tg_acme_slot_t *sl, uint64_t seq, X509 **leaf,
                      STACK_OF(X509) **chain, EVP_PKEY **pkey);
/* Does `leaf` name every name of `cert`, is it valid now, and of its key type? */
int tg_acme_cert_fits(const tg_acme_cert_t *cert, X509 *leaf, EVP_PKEY *key);
/* Unix time of an ASN.1 time. */
int64_t tg_acme_asn1_time(const ASN1_TIME *t);

/* Master side (src/acme.c): start the helper for config `c` (stopping the
 * previous one), after a crash again (tg_acme_tick, with a delay), and stop
 * it. tg_acme_reaped: 1 when `pid` was the helper. */
void tg_acme_start(tg_config_t *c);
void tg_acme_tick(tg_config_t *c);
int tg_acme_reaped(pid_t pid, int status);
void tg_acme_stop(void);

#endif
