/* tg.jwt: JSON Web Token verification in C with OpenSSL 3 (docs/lua.md).
 *
 *   tg.jwt.verify(token, {keys = ..., secret = ..., alg = {...}, iss = ...,
 *                         aud = ..., leeway = s, now = t})
 *       -> claims, header    or nil, err
 *
 * Algorithms: HS256/384/512 (a secret, or a JWK of kty "oct"), RS256/384/512
 * and PS256/384/512 (RSA, 2048 bits or more), ES256 and ES384 (P-256, P-384),
 * EdDSA (Ed25519, Ed448). "none" is never accepted, and a key is used only
 * for the algorithms of its type: an HS token is checked with secrets only,
 * never with the bytes of an RSA public key (the "algorithm confusion"
 * attack), and an RS token never with a secret.
 *
 * Keys (`keys =`): a PEM public key or certificate, a JWK table, a JWKS
 * table ({keys = {...}}), or a list of those. Parsing a key costs far more
 * than a verification, so parsed key sets are cached per worker by the
 * identity of the value given (a weak-keyed table for tables, up to
 * KEY_CACHE strings): a script that keeps its keys in an up-value or a
 * module parses them once. JWKS entries that cannot be used (another kty,
 * "use" other than "sig", a bad member) are skipped. */
#include <math.h>
#include <string.h>
#include <ev.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"
#include "str.h"

#define KEY_CACHE 64       /* parsed PEM strings kept per worker */
#define MAX_KEYS 64        /* keys in one set */
#define MAX_TOKEN 16384    /* bytes of a token */
#define RSA_MIN_BITS 2048

typedef enum {
    KT_OCT = 0,
    KT_RSA,
    KT_EC256,
    KT_EC384,
    KT_OKP, /* Ed25519 or Ed448 */
} key_type_t;

typedef enum {
    FAM_HMAC = 0,
    FAM_RSA,   /* PKCS#1 v1.5 */
    FAM_PSS,
    FAM_ECDSA,
    FAM_EDDSA,
} family_t;

typedef enum { MD_SHA256 = 0, MD_SHA384, MD_SHA512, MD_NONE } md_id_t;

typedef struct {
    const char *name;
    family_t fam;
    md_id_t md;
    key_type_t kt;
    int sig_len; /* ECDSA: bytes of r||s */
} alg_t;

static const alg_t algs[] = {
    {"HS256", FAM_HMAC, MD_SHA256, KT_OCT, 0},   {"HS384", FAM_HMAC, MD_SHA384, KT_OCT, 0},
    {"HS512", FAM_HMAC, MD_SHA512, KT_OCT, 0},   {"RS256", FAM_RSA, MD_SHA256, KT_RSA, 0},
    {"RS384", FAM_RSA, MD_SHA384, KT_RSA, 0},    {"RS512", FAM_RSA, MD_SHA512, KT_RSA, 0},
    {"PS256", FAM_PSS, MD_SHA256, KT_RSA, 0},    {"PS384", FAM_PSS, MD_SHA384, KT_RSA, 0},
    {"PS512", FAM_PSS, MD_SHA512, KT_RSA, 0},    {"ES256", FAM_ECDSA, MD_SHA256, KT_EC256, 64},
    {"ES384", FAM_ECDSA, MD_SHA384, KT_EC384, 96}, {"EdDSA", FAM_EDDSA, MD_NONE, KT_OKP, 0},
};
static const char *const md_names[MD_NONE] = {"SHA256", "SHA384", "SHA512"};
#define NALGS (int)(sizeof(algs) / sizeof(algs[0]))

typedef struct {
    key_type_t kt;
    EVP_PKEY *pkey;       /* all but KT_OCT */
    unsigned char *secret; /* KT_OCT */
    size_t secret_len;
    char kid[128]; /* "" when none */
    int alg;       /* the JWK's "alg" (index in algs), -1 when any of its type */
} key_t_;

typedef struct {
    int n;
    key_t_ k[MAX_KEYS];
} keyset_t;

#define KEYSET_MT "tg.jwt.keyset"

static EVP_MD_CTX *md_ctx; /* reused by every verification of the worker */
/* Fetched once: an implicit fetch (EVP_sha256(), HMAC()) looks the
 * algorithm up again on every call, which costs more than a small HMAC. */
static EVP_MD *mds[MD_NONE];
static EVP_MAC_CTX *hmacs[MD_NONE]; /* HMAC with its digest set; keyed per call */

static EVP_MD *get_md(md_id_t id)
{
    if (mds[id] == NULL)
        mds[id] = EVP_MD_fetch(NULL, md_names[id], NULL);
    return mds[id];
}

static EVP_MAC_CTX *get_hmac(md_id_t id)
{
    if (hmacs[id] == NULL) {
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
        EVP_MAC_free(mac);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md_names[id], 0),
            OSSL_PARAM_construct_end()};
        if (ctx && !EVP_MAC_CTX_set_params(ctx, params)) {
            EVP_MAC_CTX_free(ctx);
            ctx = NULL;
        }
        hmacs[id] = ctx;
    }
    return hmacs[id];
}

/* base64url without padding, strict (RFC 7515 §2): str.c's decoder */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    return tg_base64_decode(s, n, out, TG_B64_URL, 1);
}

/* ---- key sets ---- */

static int keyset_gc(lua_State *L)
{
    keyset_t *ks = luaL_checkudata(L, 1, KEYSET_MT);
    for (int i = 0; i < ks->n; i++) {
        EVP_PKEY_free(ks->k[i].pkey);
        if (ks->k[i].secret) {
            OPENSSL_cleanse(ks->k[i].secret, ks->k[i].secret_len);
            free(ks->k[i].secret);
        }
    }
    ks->n = 0;
    return 0;
}

/* The type of a parsed public key, or -1 for one tg.jwt cannot use. */
static int pkey_type(EVP_PKEY *pk)
{
    switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS: return KT_RSA;
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448: return KT_OKP;
    case EVP_PKEY_EC: {
        char group[64];
        if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                            sizeof(group), NULL))
            return -1;
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
            return KT_EC256;
        if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
            return KT_EC384;
        return -1;
    }
    default: return -1;
    }
}

static const char *add_pkey(keyset_t *ks, EVP_PKEY *pk, const char *kid, int alg)
{
    int kt = pkey_type(pk);
    if (kt < 0) {
        EVP_PKEY_free(pk);
        return "unsupported key type";
    }
    if (kt == KT_RSA && EVP_PKEY_get_bits(pk) < RSA_MIN_BITS) {
        EVP_PKEY_free(pk);
        return "RSA key shorter than 2048 bits";
    }
    if (ks->n == MAX_KEYS) {
        EVP_PKEY_free(pk);
        return "too many keys";
    }
    key_t_ *k = &ks->k[ks->n++];
    memset(k, 0, sizeof(*k));
    k->kt = (key_type_t)kt;
    k->pkey = pk;
    k->alg = alg;
    if (kid)
        snprintf(k->kid, sizeof(k->kid), "%s", kid);
    return NULL;
}

static const char *add_secret(keyset_t *ks, const unsigned char *s, size_t n, const char *kid,
                              int alg)
{
    if (ks->n == MAX_KEYS)
        return "too many keys";
    if (n == 0)
        return "empty secret";
    key_t_ *k = &ks->k[ks->n];
    memset(k, 0, sizeof(*k));
    k->secret = malloc(n);
    if (k->secret == NULL)
        return "out of memory";
    memcpy(k->secret, s, n);
    k->secret_len = n;
    k->kt = KT_OCT;
    k->alg = alg;
    if (kid)
        snprintf(k->kid, sizeof(k->kid), "%s", kid);
    ks->n++;
    return NULL;
}

static const char *add_pem(keyset_t *ks, const char *pem, size_t n)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    if (bio == NULL)
        return "out of memory";
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (pk == NULL) {
        (void)BIO_reset(bio);
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x) {
            pk = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    BIO_free(bio);
    if (pk == NULL)
        return "not a PEM public key or certificate";
    return add_pkey(ks, pk, NULL, -1);
}

/* A base64url member of the JWK at `t` decoded into buf (cap bytes).
 * Returns its length, or -1. */
static long jwk_bytes(lua_State *L, int t, const char *name, unsigned char *buf, size_t cap)
{
    lua_getfield(L, t, name);
    size_t n;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    long len = -1;
    if (s && n / 4 * 3 + 3 <= cap)
        len = b64url_decode(s, n, buf);
    lua_pop(L, 1);
    return len;
}

static const char *jwk_string(lua_State *L, int t, const char *name)
{
    lua_getfield(L, t, name);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the table still holds the string */
    return s;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pk = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0)
        (void)EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

/* One JWK (RFC 7517/7518) at index t. */
static const char *add_jwk(lua_State *L, keyset_t *ks, int t)
{
    const char *kty = jwk_string(L, t, "kty");
    const char *use = jwk_string(L, t, "use");
    const char *kid = jwk_string(L, t, "kid");
    const char *alg_name = jwk_string(L, t, "alg");
    if (kty == NULL)
        return "JWK without kty";
    if (use && strcmp(use, "sig") != 0)
        return "JWK not for signatures";
    int alg = -1;
    if (alg_name) {
        for (int i = 0; i < NALGS; i++)
            if (strcmp(alg_name, algs[i].name) == 0)
                alg = i;
        if (alg < 0)
            return "JWK with an unsupported alg";
    }
    unsigned char a[1024], b[1024];
    long an, bn_;
    if (strcmp(kty, "oct") == 0) {
        if ((an = jwk_bytes(L, t, "k", a, sizeof(a))) <= 0)
            return "bad oct JWK";
        return add_secret(ks, a, (size_t)an, kid, alg);
    }
    if (strcmp(kty, "RSA") == 0) {
        if ((an = jwk_bytes(L, t, "n", a, sizeof(a))) <= 0 ||
            (bn_ = jwk_bytes(L, t, "e", b, sizeof(b))) <= 0)
            return "bad RSA JWK";
        BIGNUM *n = BN_bin2bn(a, (int)an, NULL), *e = BN_bin2bn(b, (int)bn_, NULL);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        EVP_PKEY *pk = NULL;
        if (n && e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            pk = pkey_fromdata("RSA", bld);
        OSSL_PARAM_BLD_free(bld);
        BN_free(n);
        BN_free(e);
        return pk ? add_pkey(ks, pk, kid, alg) : "bad RSA JWK";
    }
    if (strcmp(kty, "EC") == 0) {
        const char *crv = jwk_string(L, t, "crv");
        size_t size = crv && strcmp(crv, "P-256") == 0 ? 32 : crv && strcmp(crv, "P-384") == 0 ? 48 : 0;
        if (size == 0)
            return "EC JWK with an unsupported crv";
        unsigned char pub[1 + 2 * 48];
        if (jwk_bytes(L, t, "x", a, sizeof(a)) != (long)size ||
            jwk_bytes(L, t, "y", b, sizeof(b)) != (long)size)
            return "bad EC JWK";
        pub[0] = 0x04; /* uncompressed point */
        memcpy(pub + 1, a, size);
        memcpy(pub + 1 + size, b, size);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        EVP_PKEY *pk = NULL;
        if (bld &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                            size == 32 ? "prime256v1" : "secp384r1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * size))
            pk = pkey_fromdata("EC", bld);
        OSSL_PARAM_BLD_free(bld);
        return pk ? add_pkey(ks, pk, kid, alg) : "bad EC JWK";
    }
    if (strcmp(kty, "OKP") == 0) {
        const char *crv = jwk_string(L, t, "crv");
        int type = crv && strcmp(crv, "Ed25519") == 0 ? EVP_PKEY_ED25519
                   : crv && strcmp(crv, "Ed448") == 0 ? EVP_PKEY_ED448
                                                      : 0;
        if (type == 0)
            return "OKP JWK with an unsupported crv";
        if ((an = jwk_bytes(L, t, "x", a, sizeof(a))) <= 0)
            return "bad OKP JWK";
        EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(type, NULL, a, (size_t)an);
        return pk ? add_pkey(ks, pk, kid, alg) : "bad OKP JWK";
    }
    return "unsupported kty";
}

/* Keys from the value at index v: a PEM string, a JWK, a JWKS, or a list
 * of those. A JWKS skips the keys it cannot use; the others are errors. */
static const char *add_keys(lua_State *L, keyset_t *ks, int v, int depth)
{
    if (lua_type(L, v) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, v, &n);
        return add_pem(ks, s, n);
    }
    if (lua_type(L, v) != LUA_TTABLE || depth > 2)
        return "keys: expected a PEM string, a JWK, a JWKS or a list of them";
    lua_getfield(L, v, "kty");
    int is_jwk = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (is_jwk)
        return add_jwk(L, ks, v);
    lua_getfield(L, v, "keys");
    if (lua_type(L, -1) == LUA_TTABLE) { /* a JWKS */
        int list = lua_gettop(L);
        for (int i = 1;; i++) {
            lua_rawgeti(L, list, i);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                break;
            }
            if (lua_type(L, -1) == LUA_TTABLE)
                (void)add_jwk(L, ks, lua_gettop(L));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        return NULL;
    }
    lua_pop(L, 1);
    for (int i = 1;; i++) {
        lua_rawgeti(L, v, i);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            return NULL;
        }
        const char *err = add_keys(L, ks, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (err)
            return err;
    }
}

/* The key set for the value at index v, from the cache or parsed now.
 * Pushes it and returns it, or returns NULL with an error message. */
static keyset_t *get_keyset(lua_State *L, int v, const char **err)
{
    lua_pushlightuserdata(L, (void *)&md_ctx); /* the cache's registry key */
    lua_rawget(L, LUA_REGISTRYINDEX);
    int cache = lua_gettop(L);
    lua_pushvalue(L, v);
    lua_rawget(L, cache);
    if (!lua_isnil(L, -1)) {
        lua_remove(L, cache);
        return lua_touserdata(L, -1);
    }
    lua_pop(L, 1);
    keyset_t *ks = lua_newuserdata(L, sizeof(*ks));
    ks->n = 0;
    luaL_getmetatable(L, KEYSET_MT);
    lua_setmetatable(L, -2);
    int ud = lua_gettop(L);
    *err = add_keys(L, ks, v, 0);
    if (*err == NULL && ks->n == 0)
        *err = "no usable key";
    if (*err) {
        lua_settop(L, cache - 1);
        return NULL;
    }
    if (lua_type(L, v) == LUA_TSTRING) {
        /* strings are never collected from a weak table: count them, and
         * start a new cache when there are too many */
        lua_getfield(L, cache, "n");
        int count = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (count >= KEY_CACHE) {
            lua_newtable(L);
            lua_getmetatable(L, cache);
            lua_setmetatable(L, -2);
            lua_replace(L, cache);
            lua_pushlightuserdata(L, (void *)&md_ctx);
            lua_pushvalue(L, cache);
            lua_rawset(L, LUA_REGISTRYINDEX);
            count = 0;
        }
        lua_pushinteger(L, count + 1);
        lua_setfield(L, cache, "n");
    }
    lua_pushvalue(L, v);
    lua_pushvalue(L, ud);
    lua_rawset(L, cache);
    lua_remove(L, cache);
    return ks;
}

/* ---- verification ---- */

/* Signature `sig` of msg with key k under algorithm a: 1 good, 0 not. */
static int check_sig(const alg_t *a, key_t_ *k, const unsigned char *msg, size_t mlen,
                     const unsigned char *sig, size_t slen)
{
    if (a->fam == FAM_HMAC) {
        unsigned char md[EVP_MAX_MD_SIZE];
        size_t mdlen = 0;
        EVP_MAC_CTX *mac = get_hmac(a->md);
        if (mac == NULL || !EVP_MAC_init(mac, k->secret, k->secret_len, NULL) ||
            !EVP_MAC_update(mac, msg, mlen) || !EVP_MAC_final(mac, md, &mdlen, sizeof(md)))
            return 0;
        return mdlen == slen && CRYPTO_memcmp(md, sig, slen) == 0;
    }
    unsigned char der[160];
    if (a->fam == FAM_ECDSA) {
        /* JWS carries r||s; OpenSSL wants the DER of an ECDSA-Sig-Value */
        if (slen != (size_t)a->sig_len)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)slen / 2, NULL);
        BIGNUM *s = BN_bin2bn(sig + slen / 2, (int)slen / 2, NULL);
        if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return 0;
        }
        unsigned char *p = der;
        int n = i2d_ECDSA_SIG(es, NULL) <= (int)sizeof(der) ? i2d_ECDSA_SIG(es, &p) : -1;
        ECDSA_SIG_free(es);
        if (n <= 0)
            return 0;
        sig = der;
        slen = (size_t)n;
    }
    if (md_ctx == NULL && (md_ctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    EVP_MD_CTX_reset(md_ctx);
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD *md = a->md == MD_NONE ? NULL : get_md(a->md);
    if ((a->md != MD_NONE && md == NULL) ||
        EVP_DigestVerifyInit(md_ctx, &pctx, md, NULL, k->pkey) <= 0)
        return 0;
    if (a->fam == FAM_RSA && EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_RSA)
        return 0; /* an RSA-PSS-only key */
    if (a->fam == FAM_PSS &&
        (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0))
        return 0;
    return EVP_DigestVerify(md_ctx, sig, slen, msg, mlen) == 1;
}

/* opts[name] (a string, or a list of strings) holds the claim at index
 * `claim` (a string, or for "aud" a list of strings): 1, else 0. */
static int opt_matches(lua_State *L, int opts, const char *name, int claim)
{
    lua_getfield(L, opts, name);
    int want = lua_gettop(L);
    int ok = 0;
    /* the claim: a string, or (aud) a list of strings */
    int nclaims = lua_type(L, claim) == LUA_TTABLE ? (int)lua_objlen(L, claim) : 1;
    for (int c = 1; c <= nclaims && !ok; c++) {
        if (lua_type(L, claim) == LUA_TTABLE)
            lua_rawgeti(L, claim, c);
        else
            lua_pushvalue(L, claim);
        if (lua_type(L, -1) == LUA_TSTRING) {
            if (lua_type(L, want) == LUA_TSTRING) {
                ok = lua_rawequal(L, -1, want);
            } else if (lua_type(L, want) == LUA_TTABLE) {
                for (int i = 1; !ok; i++) {
                    lua_rawgeti(L, want, i);
                    if (lua_isnil(L, -1)) {
                        lua_pop(L, 1);
                        break;
                    }
                    ok = lua_rawequal(L, -1, -2);
                    lua_pop(L, 1);
                }
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ok;
}

static int fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* claims[name]: absent (0), a number (1, in *v) or something else (-1) */
static int claim_time(lua_State *L, int claims, const char *name, double *v)
{
    lua_getfield(L, claims, name);
    int t = lua_type(L, -1);
    *v = t == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    return t == LUA_TNIL ? 0 : t == LUA_TNUMBER ? 1 : -1;
}

static int l_verify(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    const int opts = 2;
    size_t tlen;
    const char *token = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &tlen) : NULL;
    if (token == NULL || tlen == 0)
        return fail(L, "missing token");
    if (tlen > MAX_TOKEN)
        return fail(L, "malformed token");
    const char *d1 = memchr(token, '.', tlen);
    const char *d2 = d1 ? memchr(d1 + 1, '.', tlen - (size_t)(d1 + 1 - token)) : NULL;
    /* an empty signature is left to the alg check: "none" is refused there */
    if (d2 == NULL || d1 == token || d2 == d1 + 1 ||
        memchr(d2 + 1, '.', tlen - (size_t)(d2 + 1 - token)))
        return fail(L, "malformed token");
    unsigned char buf[MAX_TOKEN];
    /* header */
    long hn = b64url_decode(token, (size_t)(d1 - token), buf);
    if (hn < 0 || tg_lua_json_decode(L, (const char *)buf, (size_t)hn) != 0 ||
        lua_type(L, -1) != LUA_TTABLE)
        return fail(L, "malformed token");
    const int header = lua_gettop(L);
    lua_getfield(L, header, "alg");
    const char *alg_name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the header table holds it */
    const alg_t *a = NULL;
    for (int i = 0; alg_name && i < NALGS; i++)
        if (strcmp(alg_name, algs[i].name) == 0)
            a = &algs[i];
    if (a == NULL)
        return fail(L, "unsupported alg");
    lua_getfield(L, opts, "alg");
    if (!lua_isnil(L, -1)) {
        int allowed = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            allowed = strcmp(lua_tostring(L, -1), a->name) == 0;
        else if (lua_type(L, -1) == LUA_TTABLE)
            for (int i = 1; !allowed; i++) {
                lua_rawgeti(L, -1, i);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    break;
                }
                allowed = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), a->name) == 0;
                lua_pop(L, 1);
            }
        else
            return luaL_error(L, "tg.jwt.verify: alg must be a string or a list of strings");
        if (!allowed)
            return fail(L, "unsupported alg");
    }
    lua_pop(L, 1);
    lua_getfield(L, header, "crit");
    if (!lua_isnil(L, -1))
        return fail(L, "unsupported crit header");
    lua_pop(L, 1);
    lua_getfield(L, header, "kid");
    const char *kid = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);

    /* keys: `secret` (HMAC), then `keys` */
    key_t_ secret = {.kt = KT_OCT, .alg = -1};
    keyset_t one = {0}, *ks = &one;
    lua_getfield(L, opts, "secret");
    if (lua_type(L, -1) == LUA_TSTRING) {
        secret.secret = (unsigned char *)lua_tolstring(L, -1, &secret.secret_len);
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "tg.jwt.verify: secret must be a string");
    }
    lua_getfield(L, opts, "keys");
    if (!lua_isnil(L, -1)) {
        const char *kerr = NULL;
        if ((ks = get_keyset(L, lua_gettop(L), &kerr)) == NULL)
            return fail(L, kerr);
    } else if (secret.secret == NULL) {
        return luaL_error(L, "tg.jwt.verify: no keys and no secret");
    }

    /* signature: over "header.payload", with each key that fits */
    long sn = b64url_decode(d2 + 1, (size_t)(token + tlen - d2 - 1), buf);
    if (sn < 0)
        return fail(L, "malformed token");
    int candidates = 0, good = 0;
    for (int i = secret.secret && secret.secret_len ? -1 : 0; i < ks->n && !good; i++) {
        key_t_ *k = i < 0 ? &secret : &ks->k[i];
        if (k->kt != a->kt || (k->alg >= 0 && &algs[k->alg] != a))
            continue;
        if (i >= 0 && kid && k->kid[0] && strcmp(kid, k->kid) != 0)
            continue;
        candidates++;
        good = check_sig(a, k, (const unsigned char *)token, (size_t)(d2 - token), buf,
                         (size_t)sn);
    }
    if (candidates == 0)
        return fail(L, "no key for the token's alg");
    if (!good)
        return fail(L, "bad signature");

    /* claims */
    long pn = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf);
    if (pn < 0 || tg_lua_json_decode(L, (const char *)buf, (size_t)pn) != 0 ||
        lua_type(L, -1) != LUA_TTABLE)
        return fail(L, "malformed token");
    const int claims = lua_gettop(L);
    lua_getfield(L, opts, "now");
    double now = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : ev_time();
    lua_getfield(L, opts, "leeway");
    double leeway = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 2);
    double t;
    int has;
    if ((has = claim_time(L, claims, "exp", &t)) < 0 || (has && now >= t + leeway))
        return fail(L, "token expired");
    if ((has = claim_time(L, claims, "nbf", &t)) < 0 || (has && now + leeway < t))
        return fail(L, "token not yet valid");
    if ((has = claim_time(L, claims, "iat", &t)) < 0 || (has && t > now + leeway))
        return fail(L, "token issued in the future");
    lua_getfield(L, opts, "iss");
    int want_iss = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (want_iss) {
        lua_getfield(L, claims, "iss");
        int ok = lua_type(L, -1) == LUA_TSTRING && opt_matches(L, opts, "iss", lua_gettop(L));
        lua_pop(L, 1);
        if (!ok)
            return fail(L, "bad issuer");
    }
    lua_getfield(L, opts, "aud");
    int want_aud = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (want_aud) {
        lua_getfield(L, claims, "aud");
        int ok = opt_matches(L, opts, "aud", lua_gettop(L));
        lua_pop(L, 1);
        if (!ok)
            return fail(L, "bad audience");
    }
    lua_pushvalue(L, claims);
    lua_pushvalue(L, header);
    return 2;
}

void tg_lua_jwt_open(lua_State *L)
{
    luaL_newmetatable(L, KEYSET_MT);
    lua_pushcfunction(L, keyset_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    /* the parsed-key cache: weak keys, so a dropped JWKS table goes */
    lua_pushlightuserdata(L, (void *)&md_ctx);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_pushcfunction(L, l_verify);
    lua_setfield(L, -2, "verify");
}
