-- lua_access: X-Api-Key must name a known client, else 401. Keys come from
-- the shared dict "api_keys" when the config declares one (key -> client
-- name, filled by another script or an admin endpoint), else from the Lua
-- module "api_keys" on lua_package_path ({["key"] = "client"}).
local key = tg.req.header("X-Api-Key")
if not key or key == "" then
  tg.exit(401, '{"error":"missing api key"}\n', {["Content-Type"] = "application/json"})
end
local client
local dict = tg.shared.api_keys
if dict then
  client = dict:get(key)
else
  client = (require "api_keys")[key]
end
if not client then
  tg.exit(401, '{"error":"invalid api key"}\n', {["Content-Type"] = "application/json"})
end
tg.req.clear_header("X-Api-Key")
tg.req.set_header("X-Api-Client", client)
