/* HTTP Basic authentication against crypt(3) hashes (see basic_auth.h).
 * Credentials that verified are remembered per worker as a SHA-256 of the
 * users list's address and the header value, so a repeat costs a hash, not a
 * crypt(3) run; an unknown user still runs crypt(3), so the answer time does
 * not tell which user names exist. */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include "basic_auth.h"

_Static_assert(SHA256_DIGEST_LENGTH == 32, "the cache holds SHA-256 digests");

/* HASH in a crypt(3) format libxcrypt supports (as `mkpasswd -m sha-512` or
 * `openssl passwd -6` print them). */
const char *tg_basic_auth_add(tg_conf_t *cf, tg_basic_users_t *c, const char *directive)
{
    tg_str_t a = tg_conf_arg(cf, 1);
    const char *colon = memchr(a.p, ':', a.len);
    if (colon == NULL || colon == a.p)
        return tg_conf_errf(cf, "invalid \"%s\" \"%.*s\", expected USER:HASH", directive,
                            TG_STR_FMT(a));
    const char *hash = colon + 1;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (cd == NULL)
        return "out of memory";
    const char *out = crypt_r("probe", hash, cd);
    int ok = hash[0] == '$' && out && out[0] != '*' && strlen(out) == strlen(hash);
    free(cd);
    if (!ok)
        return tg_conf_errf(cf, "invalid password hash in \"%s\" for \"%.*s\", expected "
                                "a crypt(3) hash such as $6$... (mkpasswd -m sha-512, "
                                "openssl passwd -6) or $y$... (mkpasswd)",
                            directive, (int)(colon - a.p), a.p);
    tg_basic_user_t *nu = tg_arena_alloc(cf->arena, (size_t)(c->nusers + 1) * sizeof(*nu));
    if (nu == NULL)
        return "out of memory";
    if (c->nusers)
        memcpy(nu, c->users, (size_t)c->nusers * sizeof(*nu));
    nu[c->nusers++] = (tg_basic_user_t){{a.p, (size_t)(colon - a.p)}, hash};
    c->users = nu;
    return NULL;
}

int tg_basic_auth_cache_init(tg_conf_t *cf, tg_basic_cache_t *c)
{
    c->crypt = tg_arena_alloc(cf->arena, sizeof(*c->crypt));
    return c->crypt ? 0 : -1;
}

int tg_basic_auth_check(tg_basic_cache_t *c, const tg_basic_users_t *u, tg_request_t *r)
{
    tg_header_t *h = tg_headers_find(&r->headers, TG_STR("Authorization"));
    if (h == NULL || h->value.len < 7 || h->value.len > 1024 ||
        strncasecmp(h->value.p, "Basic ", 6) != 0)
        return 0;
    tg_str_t b64 = {h->value.p + 6, h->value.len - 6};
    while (b64.len && b64.p[0] == ' ')
        b64.p++, b64.len--;
    unsigned char md[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, &u, sizeof(u)) && EVP_DigestUpdate(ctx, b64.p, b64.len) &&
             EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return 0;
    for (int i = 0; i < TG_BASIC_AUTH_CACHE; i++)
        if (CRYPTO_memcmp(c->ok[i], md, sizeof(md)) == 0)
            return 1;
    if (b64.len % 4 != 0)
        return 0;
    unsigned char plain[800];
    int n = EVP_DecodeBlock(plain, (const unsigned char *)b64.p, (int)b64.len);
    if (n < 0)
        return 0;
    for (size_t i = b64.len; i > 0 && b64.p[i - 1] == '='; i--)
        n--;
    const unsigned char *colon = memchr(plain, ':', (size_t)n);
    if (colon == NULL || memchr(plain, '\0', (size_t)n))
        return 0;
    plain[n] = '\0';
    size_t ulen = (size_t)(colon - plain);
    /* the hash runs for an unknown user too: the answer time does not tell
     * which user names exist */
    const tg_basic_user_t *found = &u->users[0];
    int known = 0;
    for (int i = 0; i < u->nusers; i++)
        if (u->users[i].user.len == ulen && CRYPTO_memcmp(u->users[i].user.p, plain, ulen) == 0) {
            found = &u->users[i];
            known = 1;
        }
    const char *out = crypt_r((const char *)colon + 1, found->hash, c->crypt);
    size_t hl = strlen(found->hash);
    ok = known && out && strlen(out) == hl && CRYPTO_memcmp(out, found->hash, hl) == 0;
    OPENSSL_cleanse(plain, sizeof(plain));
    if (ok) {
        memcpy(c->ok[c->next], md, sizeof(md));
        c->next = (c->next + 1) % TG_BASIC_AUTH_CACHE;
    }
    return ok;
}

int tg_basic_auth_challenge(tg_request_t *r, const char *realm)
{
    char v[160];
    snprintf(v, sizeof(v), "Basic realm=\"%s\", charset=\"UTF-8\"", realm);
    if (tg_request_add_resp_header(r, TG_STR("WWW-Authenticate"), tg_str_c(v)) != 0 ||
        tg_request_respond(r, 401, NULL, TG_NULL_STR) != 0)
        return -1;
    return 0;
}
