-- lua_access: session lookup in Redis. The session id comes from a cookie;
-- the session is a JSON object stored by the application under
-- PREFIX .. id (for example SET session:abc '{"user":"ann"}' EX 3600). A
-- known session's user goes upstream as X-User and its lifetime is
-- extended (sliding expiry, sent in the same pipeline as the lookup); no
-- cookie or an unknown session gets 401, Redis unreachable 503. Settings
-- from the Lua module "session_config", `redis` a lua_redis name or URL:
--   return { redis = "sessions", cookie = "sid", prefix = "session:", ttl = 3600, timeout = 0.5 }
local cfg = require "session_config"

local sid = tg.var["cookie_" .. cfg.cookie]
if not sid or sid == "" or not sid:match("^[%w%-_]+$") then tg.exit(401, "no session\n") end

local red, err = tg.redis.connect(cfg.redis, { timeout = cfg.timeout or 0.5 })
if not red then
  tg.log("error", "session: ", err)
  tg.exit(503, "session store unavailable\n")
end
local key = cfg.prefix .. sid
local res, perr = red:pipeline(function(p)
  p:get(key)
  p:expire(key, cfg.ttl or 3600)
end)
if not res then
  tg.log("error", "session: redis: ", perr)
  tg.exit(503, "session store unavailable\n")
end
local raw = res[1]
if type(raw) ~= "string" then tg.exit(401, "unknown session\n") end
local session = tg.json.decode(raw)
if type(session) ~= "table" or type(session.user) ~= "string" then
  tg.exit(401, "invalid session\n")
end
tg.req.set_header("X-User", session.user)
