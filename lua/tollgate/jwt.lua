-- HS256 JSON Web Tokens: verify(token, secret [, now, leeway]) returns the
-- claims table, or nil and a reason ("malformed token", "unsupported alg",
-- "bad signature", "token expired", "token not yet valid").
local json = require "tollgate.json"
local c = tg.crypto
local find, sub = string.find, string.sub
local M = {}

function M.verify(token, secret, now, leeway)
  if type(token) ~= "string" then return nil, "missing token" end
  -- three non-empty parts (base64_decode below refuses non-base64 bytes)
  local d1 = find(token, ".", 1, true)
  local d2 = d1 and find(token, ".", d1 + 1, true)
  if not d2 or d1 == 1 or d2 == d1 + 1 or d2 == #token or find(token, ".", d2 + 1, true) then
    return nil, "malformed token"
  end
  local h64, p64, s64 = sub(token, 1, d1 - 1), sub(token, d1 + 1, d2 - 1), sub(token, d2 + 1)
  local header = json.decode(c.base64_decode(h64, true) or "")
  local claims = json.decode(c.base64_decode(p64, true) or "")
  local sig = c.base64_decode(s64, true)
  if type(header) ~= "table" or type(claims) ~= "table" or not sig then
    return nil, "malformed token"
  end
  if header.alg ~= "HS256" then return nil, "unsupported alg" end
  if not c.equal(c.hmac_sha256(secret, h64 .. "." .. p64), sig) then
    return nil, "bad signature"
  end
  now = now or tg.now()
  leeway = leeway or 0
  if claims.exp ~= nil and (type(claims.exp) ~= "number" or now >= claims.exp + leeway) then
    return nil, "token expired"
  end
  if claims.nbf ~= nil and (type(claims.nbf) ~= "number" or now + leeway < claims.nbf) then
    return nil, "token not yet valid"
  end
  return claims
end

return M
