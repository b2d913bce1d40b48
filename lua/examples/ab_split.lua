-- Cookie-sticky A/B split. Use it twice in a location:
--   lua_route ab_split.lua;  lua_header_filter ab_split.lua;
-- Route: the "ab" cookie picks upstream "variant_a" or "variant_b"; without
-- one a side is drawn 50/50 and the header filter sets the cookie.
if tg.phase() == "route" then
  local side = tg.var.cookie_ab
  if side ~= "a" and side ~= "b" then
    side = math.random(2) == 1 and "a" or "b"
    tg.ctx.ab_new = side
  end
  tg.route("variant_" .. side)
  tg.req.set_header("X-AB", side)
elseif tg.phase() == "header_filter" and tg.ctx.ab_new then
  tg.resp.add_header("Set-Cookie", "ab=" .. tg.ctx.ab_new .. "; Path=/; Max-Age=2592000; HttpOnly")
end
