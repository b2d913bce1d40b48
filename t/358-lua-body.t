# tg.req.body: the request body read into memory up to lua_body_max, then
# forwarded upstream byte for byte (echo.js reports length and SHA-256 of
# what it received, and the framing headers).
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C", files => {
server {
    listen %%PORT%%;
    timeouts body=1s;
    location / {
        lua_body_max 1k;
        lua_access %%DIR%%/body.lua;
        proxy_pass $up->{addr};
    }
    location /rewrite/ {
        lua_body_max 1k;
        lua_rewrite %%DIR%%/sleepy.lua;
        proxy_pass $up->{addr};
    }
    location /route/ {
        lua_route %%DIR%%/body.lua;
        proxy_pass $up->{addr};
    }
    location /small-max/ {
        client_max_body_size 100;
        lua_access %%DIR%%/body.lua;
        proxy_pass $up->{addr};
    }
    location /filter/ {
        lua_header_filter %%DIR%%/filter.lua;
        proxy_pass $up->{addr};
    }
    location /plain/ { proxy_pass $up->{addr}; }
}
C
    'body.lua' => <<'L',
local b, err = tg.req.body()
local again, err2 = tg.req.body()
tg.req.set_header("X-Lua-Len", b and tostring(#b) or "nil")
tg.req.set_header("X-Lua-Err", tostring(err))
tg.req.set_header("X-Lua-Same", tostring(b == again and err == err2))
tg.req.set_header("X-Lua-Sha", b and tg.crypto.hex(tg.crypto.sha256(b)) or "-")
if tg.req.path() == "/exit413" and not b then tg.exit(413, err .. "\n") end
if tg.req.path() == "/echo" then tg.exit(200, b) end
L
    'sleepy.lua' => <<'L',
tg.sleep(0.01)
local b = tg.req.body()
tg.ctx.len = b and #b
tg.req.set_header("X-Lua-Len", tostring(tg.ctx.len))
tg.req.set_header("X-Lua-Sha", b and tg.crypto.hex(tg.crypto.sha256(b)) or "-")
L
    'filter.lua' => <<'L',
local ok, err = pcall(tg.req.body)
tg.resp.set_header("X-Body-Err", tostring(err))
L
});

sub sent($r) { return $r->{status} == 200 ? decode_json($r->{body}) : { status => $r->{status} } }

# Content-Length bodies: under, at and over the cap (1k)
for my $len (1, 100, 1024) {
    my $body = body_pattern($len);
    my $j = sent($tg->http(POST => '/cl', body => $body));
    is($j->{headers}{'x-lua-len'}, $len, "$len bytes: the script reads them");
    is($j->{headers}{'x-lua-sha'}, sha256_hex($body), "$len bytes: what the script saw");
    is($j->{headers}{'x-lua-same'}, 'true', "$len bytes: a second call gives the same");
    is($j->{bodySha256}, sha256_hex($body), "$len bytes: the upstream got the same bytes");
    is($j->{headers}{'content-length'}, $len, "$len bytes: with a Content-Length");
}
my $big = body_pattern(1025, 3);
my $j = sent($tg->http(POST => '/cl', body => $big));
is($j->{headers}{'x-lua-len'}, 'nil', 'cap + 1: nil');
is($j->{headers}{'x-lua-err'}, 'body too large', 'cap + 1: "body too large"');
is($j->{headers}{'x-lua-same'}, 'true', 'cap + 1: the second call says the same');
is($j->{bodySha256}, sha256_hex($big), 'cap + 1: the body still streams upstream whole');
is($j->{headers}{'content-length'}, 1025, 'cap + 1: with its Content-Length');
$up->clear_log;
my $r = $tg->http(POST => '/exit413', body => $big);
is($r->{status}, 413, 'the script refuses a body over the cap');
is($r->{body}, "body too large\n", 'with its reason');
is(scalar(grep { $_->{url} eq '/exit413' } @{$up->log}), 0, 'nothing went upstream');

# chunked: decoded for the script, sent upstream with a Content-Length
my @pieces = map { body_pattern($_ * 37, $_) } 1 .. 5;
$j = sent($tg->http(POST => '/chunked', chunked => 1, body => \@pieces));
my $whole = join '', @pieces;
is($j->{headers}{'x-lua-len'}, length $whole, 'chunked: the script reads the decoded body');
is($j->{bodySha256}, sha256_hex($whole), 'chunked: the upstream got the same bytes');
is($j->{headers}{'content-length'}, length $whole, 'chunked: forwarded with a Content-Length');
ok(!exists $j->{headers}{'transfer-encoding'}, 'chunked: and without Transfer-Encoding');
@pieces = map { body_pattern(500, $_) } 1 .. 6;
$whole = join '', @pieces;
$j = sent($tg->http(POST => '/chunked-big', chunked => 1, body => \@pieces));
is($j->{headers}{'x-lua-err'}, 'body too large', 'chunked over the cap: "body too large"');
is($j->{bodySha256}, sha256_hex($whole), 'chunked over the cap: the upstream got every byte');
is($j->{bodyLength}, 3000, 'chunked over the cap: its length');
is($j->{headers}{'transfer-encoding'}, 'chunked', 'chunked over the cap: still chunked');

# empty bodies and none
$j = sent($tg->http(POST => '/empty', body => ''));
is($j->{headers}{'x-lua-len'}, 0, 'Content-Length: 0: an empty string');
is($j->{headers}{'content-length'}, 0, 'Content-Length: 0 forwarded');
$j = sent($tg->http(POST => '/empty-chunked', chunked => 1, body => []));
is($j->{headers}{'x-lua-len'}, 0, 'empty chunked body: an empty string');
is($j->{headers}{'content-length'}, 0, 'empty chunked body: forwarded as Content-Length: 0');
is($j->{bodyLength}, 0, 'empty chunked body: nothing upstream');
$j = sent($tg->http(GET => '/get'));
is($j->{headers}{'x-lua-len'}, 0, 'GET: an empty string');
ok(!exists $j->{headers}{'content-length'} && !exists $j->{headers}{'transfer-encoding'},
   'GET: no body framing added');

# keep-alive: the body is not read twice and the next request is parsed right
my $c = $tg->keepalive;
for my $i (1 .. 3) {
    my $body = body_pattern(200 * $i, $i);
    $j = sent($c->request(POST => "/ka$i", chunked => $i == 2, body => $body));
    is($j->{bodySha256}, sha256_hex($body), "keep-alive request $i: the same bytes upstream");
}
$r = $c->request(POST => '/echo', body => 'pong');
is($r->{body}, 'pong', 'tg.exit with the body read');
$c->close;

# a body that arrives slowly: the worker serves others meanwhile
$c = $tg->keepalive;
$c->write("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde");
my $t0 = time;
$r = $tg->http(GET => '/plain/other');
is($r->{status}, 200, 'another request is served while a script waits for a body');
ok(time - $t0 < 0.5, 'without waiting for it');
$c->write('fghij');
$j = sent($c->read_response);
is($j->{headers}{'x-lua-len'}, 10, 'the waiting script gets the whole body');
is($j->{body}, 'abcdefghij', 'and the upstream the same');
$c->close;

# Expect: 100-continue is answered before the script waits for the body
$c = $tg->keepalive;
$c->write("POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
my $deadline = time + 5;
1 while $c->{conn}{buf} !~ /100 Continue/ && $c->{conn}->fill($deadline);
like($c->{conn}{buf}, qr/^HTTP\/1.1 100 Continue\r\n\r\n/, '100 Continue before the body');
$c->write('ping');
$r = $c->read_response;
is(sent($r)->{body}, 'ping', 'then the body goes through');
is(scalar @{$r->{interim}}, 1, 'only one 100 Continue');
$c->close;

# the client goes away, or stalls, while the script waits
$up->clear_log;
$tg->raw("POST /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", timeout => 0.3);
$r = $tg->http(POST => '/after', body => 'x');
is($r->{status}, 200, 'a client gone mid-body: the worker goes on');
is(scalar(grep { $_->{url} eq '/gone' } @{$up->log}), 0, 'a client gone mid-body: nothing upstream');
my ($raw) = $tg->raw("POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc", timeout => 5);
like($raw, qr/^HTTP\/1.1 408 /, 'a stalled body: 408 after the body timeout');

# tg.sleep, then the body, in rewrite; the route phase reads it too
$j = sent($tg->http(POST => '/rewrite/x', body => 'hello'));
is($j->{headers}{'x-lua-len'}, 5, 'rewrite: body after tg.sleep');
is($j->{body}, 'hello', 'rewrite: forwarded');
$j = sent($tg->http(POST => '/route/x', chunked => 1, body => ['ab', 'cd']));
is($j->{headers}{'x-lua-len'}, 4, 'route: the body');
is($j->{body}, 'abcd', 'route: forwarded');

# client_max_body_size bounds the read: 413 for a chunked body past it
$r = $tg->http(POST => '/small-max/x', chunked => 1, body => [body_pattern(80), body_pattern(80)]);
is($r->{status}, 413, 'client_max_body_size is checked while reading');
$j = sent($tg->http(POST => '/small-max/x', body => body_pattern(100)));
is($j->{headers}{'x-lua-len'}, 100, 'a body at client_max_body_size is read');

# not in header filters
$r = $tg->http(POST => '/filter/x', body => 'abc');
like($r->{headers}{'x-body-err'}, qr/tg.req.body: not allowed in phase "header_filter"/,
     'tg.req.body is refused in header_filter');

like(tg_conf_error("server { listen %%PORT%%; lua_body_max lots; }"),
     qr/^\S+:\d+: .*"lots"/m, 'lua_body_max: a bad size is a config error');

done_testing;
