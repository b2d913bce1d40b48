/* tg.crypto: digests and encodings for scripts, from OpenSSL.
 *
 *   tg.crypto.sha256(s)            -> 32 raw bytes
 *   tg.crypto.hmac_sha256(key, s)  -> 32 raw bytes
 *   tg.crypto.base64_encode(s [, url])  url=true: base64url without padding
 *   tg.crypto.base64_decode(s [, url])  -> bytes, or nil, err on bad input;
 *       accepts both alphabets when url=true, padding optional
 *   tg.crypto.hex(s)               -> lowercase hex
 *   tg.crypto.equal(a, b)          -> constant-time comparison */
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"
#include "str.h"

static int c_sha256(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL))
        return luaL_error(L, "tg.crypto.sha256: failed");
    lua_pushlstring(L, (const char *)md, mdlen);
    return 1;
}

static int c_hmac_sha256(lua_State *L)
{
    size_t kn, n;
    const char *k = luaL_checklstring(L, 1, &kn);
    const char *s = luaL_checklstring(L, 2, &n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (HMAC(EVP_sha256(), k, (int)kn, (const unsigned char *)s, n, md, &mdlen) == NULL)
        return luaL_error(L, "tg.crypto.hmac_sha256: failed");
    lua_pushlstring(L, (const char *)md, mdlen);
    return 1;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int c_b64_encode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    int url = lua_toboolean(L, 2);
    const char *a = url ? b64url : b64;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        luaL_addchar(&b, a[v >> 18]);
        luaL_addchar(&b, a[(v >> 12) & 63]);
        luaL_addchar(&b, a[(v >> 6) & 63]);
        luaL_addchar(&b, a[v & 63]);
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        luaL_addchar(&b, a[v >> 18]);
        luaL_addchar(&b, a[(v >> 12) & 63]);
        if (i + 1 < n)
            luaL_addchar(&b, a[(v >> 6) & 63]);
        else if (!url)
            luaL_addchar(&b, '=');
        if (!url)
            luaL_addchar(&b, '=');
    }
    luaL_pushresult(&b);
    return 1;
}

static int c_b64_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    int url = lua_toboolean(L, 2);
    while (n && s[n - 1] == '=')
        n--;
    /* the URL alphabet accepts the standard one too, as before */
    unsigned char *out = lua_newuserdata(L, n / 4 * 3 + 3);
    long len = tg_base64_decode(s, n, out, url ? TG_B64_STD | TG_B64_URL : TG_B64_STD, 0);
    if (len < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "invalid base64");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, (size_t)len);
    return 1;
}

static int c_hex(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    static const char hx[] = "0123456789abcdef";
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        luaL_addchar(&b, hx[s[i] >> 4]);
        luaL_addchar(&b, hx[s[i] & 15]);
    }
    luaL_pushresult(&b);
    return 1;
}

static int c_equal(lua_State *L)
{
    size_t an, bn;
    const char *a = luaL_checklstring(L, 1, &an);
    const char *b = luaL_checklstring(L, 2, &bn);
    lua_pushboolean(L, an == bn && CRYPTO_memcmp(a, b, an) == 0);
    return 1;
}

void tg_lua_crypto_open(lua_State *L)
{
    static const luaL_Reg f[] = {
        {"sha256", c_sha256},
        {"hmac_sha256", c_hmac_sha256},
        {"base64_encode", c_b64_encode},
        {"base64_decode", c_b64_decode},
        {"hex", c_hex},
        {"equal", c_equal},
        {NULL, NULL},
    };
    for (const luaL_Reg *r = f; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
}
