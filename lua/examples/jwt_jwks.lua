-- lua_access: an OpenID Connect access token (RS256, PS256, ES256 or EdDSA)
-- checked against the identity provider's JWKS, kept in the Lua module
-- "jwks_config" on lua_package_path:
--   return { jwks = [[{"keys":[...]}]], iss = "https://idp.example/", aud = "api" }
-- The JWKS is decoded once per worker (the module table is kept by require)
-- and tg.jwt parses its keys once, cached by that table. 401 with a reason
-- otherwise; the subject and the scope go upstream as X-User and X-Scope.
local cfg = require "jwks_config"
if not cfg.keys then cfg.keys = assert(tg.json.decode(cfg.jwks)) end

local auth = tg.req.header("Authorization")
local token = auth and auth:match("^[Bb]earer%s+(%S+)$")
local claims, reason = tg.jwt.verify(token, {
  keys = cfg.keys, alg = {"RS256", "PS256", "ES256", "EdDSA"},
  iss = cfg.iss, aud = cfg.aud, leeway = 30,
})
if not claims then
  tg.exit(401, tg.json.encode({error = reason}) .. "\n", {
    ["Content-Type"] = "application/json",
    ["WWW-Authenticate"] = 'Bearer error="invalid_token"',
  })
end
tg.req.clear_header("Authorization")
tg.req.set_header("X-User", tostring(claims.sub))
if type(claims.scope) == "string" then tg.req.set_header("X-Scope", claims.scope) end
