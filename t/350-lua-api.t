# Lua API: tg.req, tg.resp, tg.var, tg.ctx, tg.route, tg.exit, tg.redirect,
# tg.re, tg.crypto, tg.log, tg.now; each script phase; require "tollgate".
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $up2 = node_upstream('echo', env => {NAME => 'two'});
my $tg = tg_start(<<"C", files => {
upstream two { server $up2->{addr}; }
server {
    listen %%PORT%%;
    location / {
        lua_rewrite %%DIR%%/rewrite.lua;
        lua_access %%DIR%%/access.lua;
        lua_route %%DIR%%/route.lua;
        lua_header_filter %%DIR%%/filter.lua;
        lua_log %%DIR%%/log.lua;
        proxy_pass $up->{addr};
    }
    location /api/ { proxy_pass $up->{addr}; }
    location /ex/ { lua_access %%DIR%%/ex.lua; proxy_pass $up->{addr}; }
}
C
    'rewrite.lua' => <<'L',
tg.ctx.seen = "rewrite"
if tg.req.path():find("^/old/") then tg.req.set_path("/api/" .. tg.req.path():sub(6)) end
L
    'access.lua' => <<'L',
local tg2 = require "tollgate"
assert(tg2 == tg)
tg.ctx.seen = tg.ctx.seen .. ",access"
local r = tg.req
if r.path() == "/deny" then tg.exit(403, "denied\n", {["X-Why"] = "test"}) end
if r.path() == "/go" then tg.redirect("https://example.com/x") end
if r.path() == "/info" then
  local h = r.headers()
  local out = table.concat({r.method(), r.path(), r.query(), tostring(r.arg("a")),
    tostring(r.header("x-one")), tostring(h["x-multi"]), r.client_ip(), r.host(), r.scheme(),
    '[' .. r.body() .. ']', tostring(tg.var.remote_addr), tostring(tg.var.http_x_one),
    tostring(tg.var.arg_a), tostring(tg.var.cookie_c)}, "|")
  tg.exit(200, out)
end
if r.path() == "/re" then
  local m = tg.re.match("id=42 name=bob", [[id=(?<id>\d+) name=(\w+)]])
  local f1, f2 = tg.re.find("hello world", "wor")
  local s, n = tg.re.gsub("a1b22c333", "\\d+", "<$0>")
  local s2 = tg.re.gsub("Hello", "l", function(mm) return mm[0]:upper() end)
  local nomatch = tg.re.match("abc", "^x", "i")
  local ci = tg.re.match("ABC", "^abc", "i")
  tg.exit(200, table.concat({m[0], m[1], m.id, m[2], f1, f2, s, n, s2, tostring(nomatch),
    ci[0]}, "|"))
end
if r.path() == "/crypto" then
  local c = tg.crypto
  tg.exit(200, table.concat({c.hex(c.sha256("abc")), c.hex(c.hmac_sha256("key", "msg")),
    c.base64_encode("hello?>"), c.base64_encode("hello?>", true), c.base64_decode("aGVsbG8/Pg=="),
    c.base64_decode("aGVsbG8_Pg", true), tostring(c.base64_decode("@@@")),
    tostring(c.equal("a", "a")), tostring(c.equal("a", "b"))}, "|"))
end
if r.path() == "/now" then tg.exit(200, string.format("%.0f", tg.now())) end
r.set_header("X-Lua", "1")
r.clear_header("X-Remove")
r.set_header("X-Seen", tg.ctx.seen)
tg.log("info", "access ran for ", r.path(), " ", 1, " ", true)
L
    'route.lua' => <<'L',
if tg.req.header("X-Pick") == "two" then assert(tg.route("two")) end
if tg.req.header("X-Pick") == "nope" then
  local ok, err = tg.route("nope")
  tg.req.set_header("X-Route-Err", err)
end
L
    'filter.lua' => <<'L',
tg.resp.set_header("X-Status", tostring(tg.resp.status()))
tg.resp.set_header("X-Ctx", tg.ctx.seen or "none")
if tg.resp.header("Content-Type") then tg.resp.set_header("X-CT", tg.resp.header("Content-Type")) end
tg.resp.clear_header("X-Drop")
L
    'log.lua' => <<'L',
tg.log("warn", "logged ", tg.req.path(), " ", tg.resp.status())
L
    'ex.lua' => <<'L',
local p = tg.req.path()
if p == "/ex/resp" then tg.resp.set_header("A", "b") end
if p == "/ex/badheader" then tg.req.set_header("X", "a\r\nb") end
if p == "/ex/unknownvar" then local _ = tg.var.no_such_thing end
if p == "/ex/ctx" then tg.ctx = {} end
if p == "/ex/sandbox" then
  tg.exit(200, table.concat({tostring(io), tostring(os.execute), tostring(loadfile),
    tostring(load), tostring(debug), tostring(ffi), tostring(jit), tostring(string.dump),
    type(os.time()), tostring(package.loadlib)}, "|"))
end
L
}, errors_ok => [qr/not allowed in phase "access"/, qr/invalid character in the value/,
                 qr/unknown variable "no_such_thing"/, qr/tg.ctx cannot be replaced/]);

my $r = $tg->http(GET => '/x?y=1', headers => ['X-Remove' => 'r', 'X-Keep' => 'k']);
is($r->{status}, 200, 'proxied through every phase');
my $j = decode_json($r->{body});
is($j->{headers}{'x-lua'}, '1', 'tg.req.set_header reaches the upstream');
ok(!exists $j->{headers}{'x-remove'}, 'tg.req.clear_header');
is($j->{headers}{'x-keep'}, 'k', 'other headers kept');
is($j->{headers}{'x-seen'}, 'rewrite,access', 'tg.ctx shared between phases');
is($r->{headers}{'x-status'}, '200', 'tg.resp.status in header_filter');
is($r->{headers}{'x-ctx'}, 'rewrite,access', 'tg.ctx in header_filter');
like($r->{headers}{'x-ct'}, qr{application/json}, 'tg.resp.header');
ok($tg->wait_log(qr/\[warn\].*lua: logged \/x 200/, 5), 'lua_log ran with tg.log');
ok($tg->wait_log(qr/\[info\].*lua: access ran for \/x 1 true/, 5), 'tg.log joins values');

$r = $tg->http(GET => '/x', headers => ['X-Drop' => 'x']);
$r = $tg->http(GET => '/headers?X-Drop=1&X-Other=2');
ok(!exists $r->{headers}{'x-drop'}, 'tg.resp.clear_header');
is($r->{headers}{'x-other'}, '2', 'others kept');

$r = $tg->http(GET => '/old/thing?q=1');
$j = decode_json($r->{body});
is($j->{url}, '/api/thing?q=1', 'tg.req.set_path in rewrite, query kept');
ok(!exists $j->{headers}{'x-lua'}, 're-routed to /api/ (no lua there)');

$r = $tg->http(GET => '/deny');
is($r->{status}, 403, 'tg.exit status');
is($r->{body}, "denied\n", 'tg.exit body');
is($r->{headers}{'x-why'}, 'test', 'tg.exit headers');
is($r->{headers}{'x-status'}, '403', 'header filter runs on local answers');

$r = $tg->http(GET => '/go');
is($r->{status}, 302, 'tg.redirect');
is($r->{headers}{location}, 'https://example.com/x', 'Location');

$r = $tg->http(GET => '/info?a=1&b=2', headers => ['X-One' => '1', 'X-Multi' => 'a',
    'X-Multi' => 'b', 'Cookie' => 'c=cv; d=2']);
is($r->{body}, 'GET|/info|a=1&b=2|1|1|a, b|127.0.0.1|127.0.0.1|http|[]|127.0.0.1|1|1|cv',
   'tg.req readers and tg.var');

$r = $tg->http(GET => '/re');
is($r->{body}, 'id=42 name=bob|42|42|bob|7|9|a<1>b<22>c<333>|3|HeLLo|nil|ABC', 'tg.re');

$r = $tg->http(GET => '/crypto');
is($r->{body}, join('|', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    '2d93cbc1be167bcb1637a4a23cbff01a7878f0c50ee833954ea5221bb1b8c628', 'aGVsbG8/Pg==',
    'aGVsbG8_Pg', 'hello?>', 'hello?>', 'nil', 'true', 'false'), 'tg.crypto');

$r = $tg->http(GET => '/now');
ok(abs($r->{body} - time) < 5, 'tg.now');

$r = $tg->http(GET => '/x', headers => ['X-Pick' => 'two']);
is(decode_json($r->{body})->{name}, 'two', 'tg.route picks an upstream block');
$r = $tg->http(GET => '/x', headers => ['X-Pick' => 'nope']);
$j = decode_json($r->{body});
is($j->{name}, 'echo', 'unknown upstream: proxy_pass stays');
is($j->{headers}{'x-route-err'}, 'no upstream "nope"', 'tg.route returns nil, err');

$r = $tg->http(GET => '/ex/resp');
is($r->{status}, 500, 'tg.resp.set_header in access is an error');
$r = $tg->http(GET => '/ex/badheader');
is($r->{status}, 500, 'CR/LF in a header value is refused');
$r = $tg->http(GET => '/ex/unknownvar');
is($r->{status}, 500, 'unknown tg.var raises');
$r = $tg->http(GET => '/ex/ctx');
is($r->{status}, 500, 'tg.ctx cannot be replaced');
ok($tg->wait_log(qr/tg.resp.set_header: not allowed in phase "access"/, 5), 'phase message');
$r = $tg->http(GET => '/ex/sandbox');
is($r->{body}, 'nil|nil|nil|nil|nil|nil|nil|nil|number|nil', 'sandbox: no io, os.execute, loaders, debug, ffi, jit');

done_testing;
