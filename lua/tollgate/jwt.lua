-- HS256 JSON Web Tokens: verify(token, secret [, now, leeway]) returns the
-- claims table (and the header), or nil and a reason ("missing token",
-- "malformed token", "unsupported alg", "bad signature", "token expired",
-- "token not yet valid", ...). A thin wrapper over tg.jwt.verify (C), which
-- also takes RSA, ECDSA and EdDSA keys, JWKS, iss and aud: see docs/lua.md.
local verify = tg.jwt.verify
local M = {}

function M.verify(token, secret, now, leeway)
  return verify(token, { secret = secret, alg = "HS256", now = now, leeway = leeway })
end

return M
