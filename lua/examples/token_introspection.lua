-- lua_access: OAuth 2.0 token introspection (RFC 7662). The bearer token is
-- posted to the introspection endpoint (an upstream's path, or any URL); an active token's
-- subject and scope go upstream as X-User and X-Scope, anything else gets
-- 401 (503 when the endpoint cannot be reached). Answers are cached in a
-- shared dict for `ttl` seconds, keyed by the token's SHA-256, so most
-- requests make no call. Settings from the Lua module "introspection_config":
--   return { upstream = "auth", path = "/introspect", dict = "introspection", ttl = 30 }
-- or, for an identity provider that is no upstream (lua_http_ca for its CA):
--   return { url = "https://idp.example.com/oauth2/introspect", dict = "introspection", ttl = 30 }
local cfg = require "introspection_config"
local dict = tg.shared[cfg.dict]

local token = (tg.req.header("Authorization") or ""):match("^[Bb]earer%s+(%S+)$")
if not token then tg.exit(401, "missing token\n") end
local key = tg.crypto.hex(tg.crypto.sha256(token))

local cached = dict:get(key)
local info
if cached then
  info = tg.json.decode(cached)
else
  local res, err = tg.http.request{
    upstream = cfg.upstream, url = cfg.url, method = "POST", path = cfg.path, timeout = 2,
    headers = {["Content-Type"] = "application/x-www-form-urlencoded"},
    body = "token=" .. token,
  }
  if not res then
    tg.log("error", "token introspection: ", err)
    tg.exit(503, "authorization service unavailable\n")
  end
  if res.status ~= 200 then tg.exit(503, "authorization service answered " .. res.status .. "\n") end
  info = tg.json.decode(res.body)
  if type(info) == "table" then dict:set(key, res.body, cfg.ttl) end
end

if type(info) ~= "table" or info.active ~= true then tg.exit(401, "inactive token\n") end
tg.req.clear_header("Authorization")
tg.req.set_header("X-User", tostring(info.sub))
if type(info.scope) == "string" then tg.req.set_header("X-Scope", info.scope) end
