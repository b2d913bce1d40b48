/* Unit tests for src/acme_jws.c: base64url, the JWK and its thumbprint
 * (RFC 7638's worked example), JWS bodies whose signatures verify (ES256 as
 * r||s, RS256), the CSR, the self-signed placeholder. */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/ecdsa.h>
#include <openssl/x509v3.h>
#include "acme_jws.h"
#include "str.h"
#include "tap.h"

/* base64url text -> bytes (malloc'd), *n its length */
static unsigned char *unb64(const char *s, long *n)
{
    unsigned char *out = malloc(strlen(s) * 3 / 4 + 2);
    *n = tg_base64_decode(s, strlen(s), out, TG_B64_URL, 1);
    return out;
}

/* Does the flattened JWS `body` verify with `key`, and what is in it? */
static int jws_verifies(const char *body, EVP_PKEY *key, json_t **prot, char **payload)
{
    json_t *j = json_loads(body, 0, NULL);
    const char *p64 = json_string_value(json_object_get(j, "protected"));
    const char *pl64 = json_string_value(json_object_get(j, "payload"));
    const char *s64 = json_string_value(json_object_get(j, "signature"));
    if (!p64 || !pl64 || !s64)
        return 0;
    char *input = malloc(strlen(p64) + strlen(pl64) + 2);
    sprintf(input, "%s.%s", p64, pl64);
    long n, sn, pn;
    unsigned char *sig = unb64(s64, &sn), *ph = unb64(p64, &n), *pl = unb64(pl64, &pn);
    ph[n] = '\0';
    pl[pn < 0 ? 0 : pn] = '\0';
    *prot = json_loads((char *)ph, 0, NULL);
    *payload = (char *)pl;
    unsigned char *der = NULL;
    size_t dlen = (size_t)sn;
    if (!EVP_PKEY_is_a(key, "RSA")) { /* r||s -> DER for OpenSSL */
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        int l = i2d_ECDSA_SIG(es, &der);
        dlen = (size_t)l;
        ECDSA_SIG_free(es);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = sn > 0 && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(md, der ? der : sig, dlen, (unsigned char *)input, strlen(input)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    free(sig);
    free(ph);
    free(input);
    json_decref(j);
    return ok;
}

/* got equals want (either may be NULL: then not) */
static int streq(const char *got, const char *want)
{
    return got && want && strcmp(got, want) == 0;
}

int main(void)
{
    char *s = tg_acme_b64url((const unsigned char *)"\xfb\xff", 2);
    is_str(s, "-_8", "base64url alphabet, no padding");
    free(s);
    s = tg_acme_b64url((const unsigned char *)"", 0);
    is_str(s, "", "empty");
    free(s);

    /* RFC 7638 3.1: this RSA key's thumbprint */
    static const char n64[] =
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX"
        "jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAt"
        "aSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPks"
        "INHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    long nl;
    unsigned char *nbin = unb64(n64, &nl);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn = BN_bin2bn(nbin, (int)nl, NULL), *be = BN_new();
    BN_set_word(be, 65537);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *pub = NULL;
    EVP_PKEY_fromdata_init(pc);
    EVP_PKEY_fromdata(pc, &pub, EVP_PKEY_PUBLIC_KEY, params);
    s = pub ? tg_acme_thumbprint(pub) : NULL;
    is_str(s, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", "RFC 7638's thumbprint example");
    free(s);
    EVP_PKEY_free(pub);
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(nbin);

    for (int t = 0; t < 2; t++) {
        const char *name = t ? "RS256" : "ES256";
        EVP_PKEY *k = tg_acme_key_new(t ? TG_ACME_KEY_RSA2048 : TG_ACME_KEY_EC256);
        ok(k != NULL, "%s: a key", name);
        char *jwk = tg_acme_jwk(k);
        const char *prefix = t ? "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\""
                               : "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"";
        ok(jwk && strncmp(jwk, prefix, strlen(prefix)) == 0,
           "%s: JWK members in lexicographic order: %.40s", name, jwk ? jwk : "");
        json_t *prot = NULL;
        char *payload = NULL;
        char *body = tg_acme_jws(k, NULL, "NONCE1", "https://ca/new-acct", "{\"a\":1}");
        ok(body && jws_verifies(body, k, &prot, &payload), "%s: signature verifies", name);
        ok(streq(json_string_value(json_object_get(prot, "alg")), name), "%s: alg", name);
        ok(streq(json_string_value(json_object_get(prot, "nonce")), "NONCE1"), "%s: nonce", name);
        ok(streq(json_string_value(json_object_get(prot, "url")), "https://ca/new-acct"), "%s: url", name);
        ok(json_object_get(prot, "jwk") && !json_object_get(prot, "kid"), "%s: jwk without kid", name);
        ok(streq(payload, "{\"a\":1}"), "%s: payload", name);
        json_decref(prot);
        free(payload);
        free(body);
        body = tg_acme_jws(k, "https://ca/acct/1", "N2", "https://ca/order", "");
        ok(body && jws_verifies(body, k, &prot, &payload), "%s: POST-as-GET verifies", name);
        ok(streq(json_string_value(json_object_get(prot, "kid")), "https://ca/acct/1"), "%s: kid", name);
        ok(!json_object_get(prot, "jwk"), "%s: no jwk with a kid", name);
        ok(streq(payload, ""), "%s: empty payload", name);
        json_decref(prot);
        free(payload);
        free(body);
        free(jwk);
        EVP_PKEY_free(k);
    }

    EVP_PKEY *k = tg_acme_key_new(TG_ACME_KEY_EC256);
    const char *names[] = {"a.test", "www.a.test"};
    char *csr = tg_acme_csr(k, names, 2);
    long dl;
    unsigned char *der = csr ? unb64(csr, &dl) : NULL;
    const unsigned char *p = der;
    X509_REQ *req = der ? d2i_X509_REQ(NULL, &p, dl) : NULL;
    ok(req && X509_REQ_verify(req, k) == 1, "CSR: DER in base64url, signed by the key");
    STACK_OF(X509_EXTENSION) *exts = req ? X509_REQ_get_extensions(req) : NULL;
    GENERAL_NAMES *gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
    is_int(gens ? sk_GENERAL_NAME_num(gens) : -1, 2, "CSR: both names in subjectAltName");
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    free(der);
    free(csr);

    X509 *x = tg_acme_self_signed(k, names, 2, 3600);
    ok(x && X509_verify(x, k) == 1, "placeholder: self-signed");
    ok(x && X509_check_host(x, "www.a.test", 0, 0, NULL) == 1, "placeholder: names the server");
    ok(x && X509_cmp_time(X509_get0_notAfter(x), &(time_t){time(NULL) + 3700}) < 0 &&
           X509_cmp_current_time(X509_get0_notAfter(x)) > 0,
       "placeholder: short-lived");
    X509_free(x);
    EVP_PKEY_free(k);
    return done_testing();
}
