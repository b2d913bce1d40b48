-- lua_access: accept a webhook only when X-Hub-Signature-256 is
-- "sha256=" .. hex(HMAC-SHA256(secret, raw body)), GitHub's scheme. The
-- secret comes from a Lua module "webhook_config" ({secret = "..."}) on
-- lua_package_path. 401 with a reason when the signature is missing or
-- wrong; 413 when the body is larger than lua_body_max. The body read here
-- is forwarded upstream unchanged.
local secret = (require "webhook_config").secret

local sig = tg.req.header("X-Hub-Signature-256")
if not sig then tg.exit(401, "missing signature\n") end
local body, err = tg.req.body()
if not body then tg.exit(413, err .. "\n") end
local want = "sha256=" .. tg.crypto.hex(tg.crypto.hmac_sha256(secret, body))
if not tg.crypto.equal(sig, want) then tg.exit(401, "bad signature\n") end
tg.req.clear_header("X-Hub-Signature-256")
