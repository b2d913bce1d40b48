-- lua_access: require a valid HS256 JWT in "Authorization: Bearer <token>".
-- 401 with a JSON reason otherwise; the subject goes upstream as X-User.
-- The secret comes from a Lua module "jwt_config" on lua_package_path
-- ({secret = "..."}), so it stays out of the script.
local secret = (require "jwt_config").secret

local auth = tg.req.header("Authorization")
local token = auth and auth:match("^[Bb]earer%s+(%S+)$")
local claims, reason = tg.jwt.verify(token, {secret = secret, alg = "HS256", leeway = 30})
if not claims then
  tg.exit(401, '{"error":"' .. reason .. '"}\n', {
    ["Content-Type"] = "application/json",
    ["WWW-Authenticate"] = 'Bearer error="invalid_token"',
  })
end
tg.req.clear_header("Authorization")
if claims.sub then tg.req.set_header("X-User", tostring(claims.sub)) end
