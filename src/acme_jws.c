/* ACME's cryptography: keys, base64url, JWK and thumbprint, JWS, CSR, the
 * self-signed placeholder (see acme_jws.h). ES256 signatures are the two
 * 32-byte integers r and s side by side (RFC 7518 3.4), not OpenSSL's DER
 * ECDSA-Sig-Value, so the DER signature is converted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "acme_jws.h"

EVP_PKEY *tg_acme_key_new(tg_acme_key_type_t type)
{
    EVP_PKEY *k = type == TG_ACME_KEY_RSA2048 ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    if (k == NULL)
        ERR_clear_error();
    return k;
}

char *tg_acme_b64url(const unsigned char *data, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out == NULL)
        return NULL;
    int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return out;
}

/* A big-number parameter of the key, big-endian, left-padded to `pad`
 * bytes (0: its own length), in base64url. */
static char *param_b64(EVP_PKEY *key, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    char *out = NULL;
    if (!EVP_PKEY_get_bn_param(key, name, &bn)) {
        ERR_clear_error();
        return NULL;
    }
    int len = pad ? pad : BN_num_bytes(bn);
    unsigned char *buf = malloc((size_t)len + 1);
    if (buf && BN_bn2binpad(bn, buf, len) == len)
        out = tg_acme_b64url(buf, (size_t)len);
    free(buf);
    BN_free(bn);
    return out;
}

static int is_rsa(EVP_PKEY *key)
{
    return EVP_PKEY_is_a(key, "RSA");
}

char *tg_acme_jwk(EVP_PKEY *key)
{
    char *a, *b, *out = NULL;
    if (is_rsa(key)) {
        a = param_b64(key, OSSL_PKEY_PARAM_RSA_E, 0);
        b = param_b64(key, OSSL_PKEY_PARAM_RSA_N, 0);
        if (a && b && asprintf(&out, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", a, b) < 0)
            out = NULL;
    } else {
        a = param_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        b = param_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        if (a && b &&
            asprintf(&out, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", a, b) < 0)
            out = NULL;
    }
    free(a);
    free(b);
    return out;
}

char *tg_acme_thumbprint(EVP_PKEY *key)
{
    char *jwk = tg_acme_jwk(key);
    unsigned char md[32];
    unsigned int n = 0;
    if (jwk == NULL)
        return NULL;
    int ok = EVP_Digest(jwk, strlen(jwk), md, &n, EVP_sha256(), NULL);
    free(jwk);
    return ok ? tg_acme_b64url(md, n) : NULL;
}

/* Sign `in` with SHA-256: RS256's PKCS#1 v1.5 signature, or ES256's r||s. */
static char *sign_b64(EVP_PKEY *key, const char *in)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *sig = NULL, rs[64];
    size_t len = 0;
    char *out = NULL;
    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &len, (const unsigned char *)in, strlen(in)) != 1 ||
        (sig = malloc(len)) == NULL ||
        EVP_DigestSign(md, sig, &len, (const unsigned char *)in, strlen(in)) != 1)
        goto done;
    if (is_rsa(key)) {
        out = tg_acme_b64url(sig, len);
        goto done;
    }
    const unsigned char *p = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    if (es == NULL)
        goto done;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    if (BN_bn2binpad(r, rs, 32) == 32 && BN_bn2binpad(s, rs + 32, 32) == 32)
        out = tg_acme_b64url(rs, sizeof(rs));
    ECDSA_SIG_free(es);
done:
    ERR_clear_error();
    free(sig);
    EVP_MD_CTX_free(md);
    return out;
}

char *tg_acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                  const char *payload)
{
    char *prot = NULL, *prot64 = NULL, *pay64 = NULL, *input = NULL, *sig = NULL, *out = NULL;
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", is_rsa(key) ? "RS256" : "ES256", "nonce",
                          nonce, "url", url);
    if (h == NULL)
        return NULL;
    if (kid) {
        json_object_set_new(h, "kid", json_string(kid));
    } else {
        char *jwk = tg_acme_jwk(key);
        json_t *j = jwk ? json_loads(jwk, 0, NULL) : NULL;
        free(jwk);
        if (j == NULL)
            goto done;
        json_object_set_new(h, "jwk", j);
    }
    if ((prot = json_dumps(h, JSON_COMPACT)) == NULL ||
        (prot64 = tg_acme_b64url((const unsigned char *)prot, strlen(prot))) == NULL ||
        (pay64 = tg_acme_b64url((const unsigned char *)payload, strlen(payload))) == NULL ||
        asprintf(&input, "%s.%s", prot64, pay64) < 0 || (sig = sign_b64(key, input)) == NULL)
        goto done;
    json_t *body = json_pack("{s:s, s:s, s:s}", "protected", prot64, "payload", pay64,
                             "signature", sig);
    if (body) {
        out = json_dumps(body, JSON_COMPACT);
        json_decref(body);
    }
done:
    json_decref(h);
    free(prot);
    free(prot64);
    free(pay64);
    free(input);
    free(sig);
    return out;
}

/* "DNS:a,DNS:b" for the subjectAltName extension: malloc'd. */
static char *san_list(const char *const *names, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(names[i]) + 5;
    char *s = malloc(len), *p = s;
    if (s == NULL)
        return NULL;
    *p = '\0';
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%sDNS:%s", i ? "," : "", names[i]);
    return s;
}

char *tg_acme_csr(EVP_PKEY *key, const char *const *names, int n)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *subj = X509_NAME_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    char *san = san_list(names, n), *out = NULL;
    X509_EXTENSION *ext = san ? X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san) : NULL;
    unsigned char *der = NULL;
    int len;
    if (req && subj && exts && ext && sk_X509_EXTENSION_push(exts, ext) &&
        X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)names[0],
                                   -1, -1, 0) &&
        X509_REQ_set_subject_name(req, subj) && X509_REQ_set_pubkey(req, key) &&
        X509_REQ_add_extensions(req, exts) && X509_REQ_sign(req, key, EVP_sha256()) &&
        (len = i2d_X509_REQ(req, &der)) > 0)
        out = tg_acme_b64url(der, (size_t)len);
    else if (ext && !sk_X509_EXTENSION_num(exts))
        X509_EXTENSION_free(ext);
    ERR_clear_error();
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(subj);
    X509_REQ_free(req);
    free(san);
    return out;
}

X509 *tg_acme_self_signed(EVP_PKEY *key, const char *const *names, int n, long secs)
{
    X509 *x = X509_new();
    char *san = san_list(names, n);
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    X509V3_CTX v3;
    X509_EXTENSION *ext = NULL;
    int ok = x && san && RAND_bytes(serial, sizeof(serial)) == 1 &&
             (bn = BN_bin2bn(serial, sizeof(serial), NULL)) != NULL &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL &&
             X509_set_version(x, 2) && X509_gmtime_adj(X509_getm_notBefore(x), -60) &&
             X509_gmtime_adj(X509_getm_notAfter(x), secs) && X509_set_pubkey(x, key) &&
             X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                        (const unsigned char *)names[0], -1, -1, 0) &&
             X509_set_issuer_name(x, X509_get_subject_name(x));
    if (ok) {
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        ok = ext && X509_add_ext(x, ext, -1) && X509_sign(x, key, EVP_sha256());
    }
    ERR_clear_error();
    X509_EXTENSION_free(ext);
    BN_free(bn);
    free(san);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

X509 *tg_acme_alpn_cert(EVP_PKEY *key, const char *name, const char *keyauth, long secs)
{
    unsigned char der[2 + 32];
    unsigned int n = 0;
    X509 *x = tg_acme_self_signed(key, &name, 1, secs);
    /* extnValue: the DER of an OCTET STRING of the digest (04 20 ...) */
    der[0] = 0x04;
    der[1] = 32;
    ASN1_OBJECT *obj = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    ASN1_OCTET_STRING *val = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    int ok = x && obj && val &&
             EVP_Digest(keyauth, strlen(keyauth), der + 2, &n, EVP_sha256(), NULL) && n == 32 &&
             ASN1_OCTET_STRING_set(val, der, sizeof(der)) &&
             (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, val)) != NULL &&
             X509_add_ext(x, ext, -1) && X509_sign(x, key, EVP_sha256());
    ERR_clear_error();
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(val);
    ASN1_OBJECT_free(obj);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}
