-- lua_route: send a request to the upstream "canary" when it asks for it
-- (X-Canary: always / never), else 10% of users, chosen by a consistent
-- hash of the "uid" cookie (or the client address), so a user stays on one
-- side. Edit the constants to fit.
local CANARY, PERCENT = "canary", 10

local want = tg.req.header("X-Canary")
if want == "always" then
  tg.route(CANARY)
elseif want ~= "never" then
  local who = tg.var.cookie_uid or tg.req.client_ip()
  local h = tg.crypto.sha256(who)
  local bucket = (h:byte(1) * 256 + h:byte(2)) % 100
  if bucket < PERCENT then tg.route(CANARY) end
end
