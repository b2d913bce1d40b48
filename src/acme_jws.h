/* ACME's cryptography (src/acme_jws.c): the keys the ACME client makes (the
 * account key and each certificate's key), base64url, the account key as a
 * JWK and its thumbprint (RFC 7638), JWS-signed request bodies (RFC 7515 in
 * RFC 8555's flattened JSON form, ES256 or RS256) and the certificate
 * signing request. All with OpenSSL 3; JSON built with jansson.
 *
 * Only the ACME helper process (src/acme.c) and the config load (the
 * placeholder certificate) use it; strings it returns are malloc'd and
 * freed by the caller. */
#ifndef TG_ACME_JWS_H
#define TG_ACME_JWS_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

typedef enum { TG_ACME_KEY_EC256 = 0, TG_ACME_KEY_RSA2048 } tg_acme_key_type_t;

/* A new private key of the type, or NULL. */
EVP_PKEY *tg_acme_key_new(tg_acme_key_type_t type);

/* base64url without padding (RFC 7515 2) of data[0..n): malloc'd, or NULL. */
char *tg_acme_b64url(const unsigned char *data, size_t n);

/* The public half of `key` as a JWK with only the required members, in the
 * lexicographic order and without whitespace RFC 7638 hashes: malloc'd, or
 * NULL. */
char *tg_acme_jwk(EVP_PKEY *key);

/* base64url(SHA-256(jwk)): the thumbprint a key authorization ends with
 * (RFC 8555 8.1). malloc'd, or NULL. */
char *tg_acme_thumbprint(EVP_PKEY *key);

/* A JWS request body (RFC 8555 6.2): protected header {alg, nonce, url} and
 * either `kid` (the account URL) or, when kid is NULL, the JWK; `payload`
 * is JSON text, or "" for a POST-as-GET. malloc'd JSON text, or NULL. */
char *tg_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                  const char *payload);

/* A CSR for `names` (the first is the subject's CN, all in the
 * subjectAltName) signed with `key`, DER in base64url: malloc'd, or NULL. */
char *tg_acme_csr(EVP_PKEY *key, const char *const *names, int n);

/* A self-signed certificate for `names`, valid from now for `secs`
 * seconds, signed with `key`; or NULL. The placeholder served until the CA's
 * certificate arrives. */
X509 *tg_acme_self_signed(EVP_PKEY *key, const char *const *names, int n, long secs);

/* The tls-alpn-01 challenge certificate (RFC 8737 3): self-signed for
 * `name` alone, with the critical acmeIdentifier extension holding
 * SHA-256(keyauth), valid for `secs` seconds; or NULL. */
X509 *tg_acme_alpn_cert(EVP_PKEY *key, const char *name, const char *keyauth, long secs);

#endif
