/* OCSP stapling with responses the gateway fetches itself: what the config
 * (src/ocsp_conf.c, the ocsp module: directives, the entries, the workers'
 * stapling) and the helper process that asks the responders (src/ocsp.c)
 * share.
 *
 * Entries: at config load the master makes one entry per certificate to
 * staple (every leaf of a server with `tls_stapling on` that has an OCSP
 * URL, from its Authority Information Access or `tls_stapling_responder`,
 * and no `tls_stapling_file`; an `acme on` server's certificate too, which
 * the helper follows through the acme zone as it is renewed).
 *
 * Processes: the master forks one OCSP helper per config generation when
 * there is an entry (tg_ocsp_start). It runs as the workers' user, fetches
 * each response over HTTP, verifies it, and publishes the DER bytes of a
 * "good" one in the entry's slot of the "ocsp" shared memory zone; workers
 * read the slot at each handshake that asks for a status (no polling) and
 * staple it while it is for the certificate they serve and before its
 * nextUpdate. Nothing here runs on a worker's request path but that copy. */
#ifndef TG_OCSP_H
#define TG_OCSP_H

#include <stdint.h>
#include <sys/types.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "core.h"

#define TG_OCSP_ZONE_TAG "ocsp/1"
#define TG_OCSP_DER_MAX (16 * 1024)

/* What the slot holds (the stats' "ocsp_status"). */
typedef enum {
    TG_OCSP_NONE = 0, /* nothing fetched yet */
    TG_OCSP_GOOD,     /* a good response, stapled until next_update */
    TG_OCSP_REVOKED,  /* the responder says revoked: nothing stapled */
    TG_OCSP_UNKNOWN,  /* the responder does not know the certificate: nothing stapled */
    TG_OCSP_ERROR,    /* no usable response (fetch or verification failed, or expired) */
} tg_ocsp_status_t;

/* One certificate's response. `seq` is a seqlock: odd while the helper
 * writes, so a reader copies, checks it is even and unchanged. */
typedef struct {
    volatile uint64_t seq;
    unsigned char leaf_sha1[20];  /* the certificate the response is for */
    int32_t status;               /* tg_ocsp_status_t */
    int32_t last_ok;              /* 1: the last fetch gave a usable answer */
    int64_t this_update, next_update; /* of the response held (0: none) */
    int64_t last_fetch, next_fetch;   /* unix seconds (0: never / not planned) */
    char last_error[200];
    uint32_t der_len;             /* > 0 only for a good response */
    unsigned char der[TG_OCSP_DER_MAX];
} tg_ocsp_slot_t;

/* An entry, made in the master at config load and inherited by fork. */
typedef struct {
    tg_server_t *server;
    X509 *leaf;          /* the certificate at load (referenced; NULL for acme) */
    X509 *issuer;        /* its issuer (referenced; NULL for acme until known) */
    STACK_OF(X509) *chain; /* the chain served with it (untrusted certificates) */
    const char *url;     /* tls_stapling_responder, else the certificate's AIA URL */
    int verify;          /* tls_stapling_verify */
    STACK_OF(X509) *trusted; /* tls_stapling_trusted, NULL: the issuer alone is trusted */
    int acme_slot;       /* >= 0: follow this acme zone slot's certificate */
} tg_ocsp_entry_t;

typedef struct {
    tg_ocsp_entry_t *entries;
    int nentries;
    tg_ocsp_slot_t *slots; /* in the zone, one per entry */
} tg_ocsp_main_t;

/* The OCSP entries of `c`, or NULL when there are none (src/ocsp_conf.c). */
tg_ocsp_main_t *tg_ocsp_main(tg_config_t *c);

/* The state of the response for `leaf` (its slot without the DER bytes)
 * into *out: 0, or -1 when no entry fetches for this certificate. For the
 * stats. */
int tg_ocsp_lookup(tg_config_t *c, X509 *leaf, tg_ocsp_slot_t *out);

/* The status names, indexed by tg_ocsp_status_t. */
extern const char *const tg_ocsp_status_names[];

/* Master side (src/ocsp.c): start the helper for config `c` (stopping the
 * previous one), again after a crash (tg_ocsp_tick, with a delay), stop it.
 * tg_ocsp_reaped: 1 when `pid` was the helper. */
void tg_ocsp_start(tg_config_t *c);
void tg_ocsp_tick(tg_config_t *c);
int tg_ocsp_reaped(pid_t pid, int status);
void tg_ocsp_stop(void);

#endif
