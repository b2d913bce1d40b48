-- lua_rewrite: /v1/users/7 -> /users/7 with X-Api-Version: 1 sent upstream.
-- The request is routed again on the new path.
local m = tg.re.match(tg.req.path(), [[^/v(\d+)(/.*)?$]])
if m then
  tg.req.set_header("X-Api-Version", m[1])
  tg.req.set_path(m[2] or "/")
end
