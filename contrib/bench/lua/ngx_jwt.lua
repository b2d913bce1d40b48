-- contrib/bench/lua/ngx_jwt.lua: JWT verification (HS256, RS256) for nginx
-- with lua-nginx-module, the nginx side of contrib/bench/lua-compare.
-- Debian packages no lua-resty-jwt nor lua-resty-openssl, so this does what
-- they do: base64url with resty.core's ngx.base64, JSON with cjson, and the
-- signature with OpenSSL's libcrypto through the FFI (nginx links it). The
-- same checks as tg.jwt.verify for these two algorithms: the header's alg
-- must be the expected one, signature, exp and nbf.
--   local jwt = require "ngx_jwt"
--   local key = jwt.rsa_public_key(pem)            -- once, at load
--   local claims, err = jwt.verify(token, "RS256", key)   -- or "HS256", secret
local ffi = require "ffi"
local cjson = require "cjson.safe"
local b64 = require "ngx.base64"
local C = ffi.C

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct bio_st BIO;
typedef struct engine_st ENGINE;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *out, unsigned int *out_len);
BIO *BIO_new_mem_buf(const void *buf, int len);
int BIO_free(BIO *b);
EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);
EVP_MD_CTX *EVP_MD_CTX_new(void);
int EVP_MD_CTX_reset(EVP_MD_CTX *ctx);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type, ENGINE *e,
                         EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sig, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);
int CRYPTO_memcmp(const void *a, const void *b, size_t len);
]]

local sha256 = C.EVP_sha256()
local mac = ffi.new("unsigned char[32]")
local mac_len = ffi.new("unsigned int[1]")
local md_ctx = C.EVP_MD_CTX_new()

local _M = {}

-- A PEM public key parsed once (the EVP_PKEY lives as long as the worker).
function _M.rsa_public_key(pem)
    local bio = C.BIO_new_mem_buf(pem, #pem)
    local key = C.PEM_read_bio_PUBKEY(bio, nil, nil, nil)
    C.BIO_free(bio)
    if key == nil then return nil, "not a PEM public key" end
    return key
end

function _M.verify(token, alg, key)
    if type(token) ~= "string" then return nil, "missing token" end
    local h64, p64, s64 = token:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
    if not h64 then return nil, "malformed token" end
    local header = cjson.decode(b64.decode_base64url(h64) or "")
    if type(header) ~= "table" then return nil, "malformed token" end
    if header.alg ~= alg then return nil, "unsupported alg" end
    local sig = b64.decode_base64url(s64)
    if not sig then return nil, "malformed token" end
    local signed = token:sub(1, #h64 + 1 + #p64)
    if alg == "HS256" then
        C.HMAC(sha256, key, #key, signed, #signed, mac, mac_len)
        if #sig ~= 32 or C.CRYPTO_memcmp(mac, sig, 32) ~= 0 then return nil, "bad signature" end
    elseif alg == "RS256" then
        local ok = C.EVP_DigestVerifyInit(md_ctx, nil, sha256, nil, key) == 1
                   and C.EVP_DigestVerify(md_ctx, sig, #sig, signed, #signed) == 1
        C.EVP_MD_CTX_reset(md_ctx)
        if not ok then return nil, "bad signature" end
    else
        return nil, "unsupported alg"
    end
    local claims = cjson.decode(b64.decode_base64url(p64) or "")
    if type(claims) ~= "table" then return nil, "malformed token" end
    local now = ngx.time()
    if claims.exp ~= nil and (type(claims.exp) ~= "number" or now >= claims.exp) then
        return nil, "token expired"
    end
    if claims.nbf ~= nil and (type(claims.nbf) ~= "number" or now < claims.nbf) then
        return nil, "token not yet valid"
    end
    return claims, header
end

return _M
