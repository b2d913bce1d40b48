-- lua_body_filter: mask card numbers (16 digits) in JSON answers, keeping
-- the first and last four digits. A number split between two rounds of the
-- body is not seen by this simple version: keep the last 15 bytes of each
-- round in tg.ctx to handle that.
local ct = tg.resp.header("Content-Type") or ""
if not ct:find("json", 1, true) then return end -- leave other bodies alone
tg.arg.chunk = tg.re.gsub(tg.arg.chunk, [[\b(\d{4})\d{8}(\d{4})\b]], "$1********$2")
