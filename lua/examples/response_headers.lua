-- lua_header_filter: tidy responses. Drops headers that leak the stack,
-- marks API answers uncacheable unless the upstream decided, and tags
-- errors so they are easy to find in a browser's network tab.
tg.resp.clear_header("X-Powered-By")
tg.resp.clear_header("X-AspNet-Version")
if tg.req.path():find("^/api/") and not tg.resp.header("Cache-Control") then
  tg.resp.set_header("Cache-Control", "no-store")
end
if tg.resp.status() >= 500 then
  tg.resp.set_header("X-Error", "upstream")
end
tg.resp.set_header("X-Content-Type-Options", "nosniff")
