# tg.http.request: calls from request scripts to configured upstreams,
# against Node upstreams (echo.js reports what it received and the client
# port, so pooled connections show; https-echo.js for TLS): methods,
# headers, bodies, chunked answers, keep-alive reuse, timeouts, an
# unreachable server, the body cap, TLS verified and refused, errors, a
# client that leaves mid-call, and 1,000 concurrent calls on 2 workers
# while a plain request stays fast.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use IO::Socket::INET;
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $pki = make_pki();
my $dir = $pki->{dir};
my $lh = Tollgate::TLS::_issue($dir, 'localhost', 'rsa', 'localhost', "$dir/ca");
my $up = node_upstream('echo');
my $sec = node_upstream('https-echo', env => { CERT => $lh->{cert}, KEY => $lh->{key} });
my $dead = free_port();
my $auth = node_upstream('introspect');

my @errors_ok = (qr/TLS certificate verification failed/, qr/connect\(\) to/,
                 qr/token introspection: connect failed/);
my $tg = tg_start(<<"C", errors_ok => \@errors_ok,
workers 2;
lua_http_body_max 64k;
lua_shared_dict introspection 1m;
lua_package_path "%%DIR%%/?.lua;;";
upstream auth { server 127.0.0.1:$auth->{port}; }
upstream api { server 127.0.0.1:$up->{port}; keepalive 16; }
upstream dead { server 127.0.0.1:$dead; }
upstream good { server localhost:$sec->{port}; tls on; tls_trusted_ca $pki->{ca}; }
upstream wrongca { server localhost:$sec->{port}; tls on; tls_trusted_ca $dir/rogue-ca.pem; }
server {
    listen %%PORT%%;
    location /call { lua_access %%DIR%%/call.lua; }
    location /plain { lua_access %%DIR%%/plain.lua; }
    location /api/ { lua_access %%ROOT%%/lua/examples/token_introspection.lua; proxy_pass 127.0.0.1:$up->{port}; }
}
C
    files => {
    'introspection_config.lua' => "return { upstream = 'auth', path = '/introspect', dict = 'introspection', ttl = 30 }\n",
    'plain.lua' => "tg.exit(200, 'plain')\n",
    'call.lua' => <<'L',
local H = tg.http
local w = tg.req.arg("w")
local function answer(res, err, extra)
  local out = extra or {}
  out.err = err or tg.json.null
  if res then
    out.status = res.status
    out.headers = res.headers
    out.len = #res.body
    local j = tg.json.decode(res.body)
    out.echo = (type(j) == "table") and j or tg.json.null
    if not j then out.body = res.body:sub(1, 100) end
  end
  tg.exit(200, tg.json.encode(out), {["Content-Type"] = "application/json"})
end
if w == "get" then
  answer(H.request{upstream = "api", path = "/x?y=1",
                   headers = {["X-A"] = "1", ["X-Multi"] = {"a", "b"}}})
elseif w == "post" then
  answer(H.request{url = "http://api/p", body = "hello",
                   headers = {["Content-Type"] = "text/plain"}})
elseif w == "put" then
  answer(H.request{url = "http://api/p", method = "PUT"})
elseif w == "twice" then
  local a = H.request{upstream = "api", path = "/1"}
  local b = H.request{upstream = "api", path = "/2"}
  answer(b, nil, {first_port = tg.json.decode(a.body).remotePort})
elseif w == "head" then
  answer(H.request{upstream = "api", method = "HEAD", path = "/size/500", timeout = 2})
elseif w == "status" then
  answer(H.request{upstream = "api", path = "/status/404"})
elseif w == "chunked" then
  answer(H.request{upstream = "api", path = "/chunked/1000/3"})
elseif w == "big" then
  answer(H.request{upstream = "api", path = "/size/100000"})
elseif w == "headers" then
  answer(H.request{upstream = "api", path = "/headers?x-one=1&x-two=a&x-two=b"})
elseif w == "timeout" then
  local t0 = tg.now()
  local res, err = H.request{upstream = "api", path = "/delay/3000", timeout = 0.3}
  answer(res, err, {took = tg.now() - t0})
elseif w == "long" then
  answer(H.request{upstream = "api", path = "/delay/5000", timeout = 10})
elseif w == "slow" then
  answer(H.request{upstream = "api", path = "/delay/300"})
elseif w == "dead" then
  answer(H.request{upstream = "dead", path = "/"})
elseif w == "nope" then
  answer(H.request{upstream = "nope:1", path = "/x"})
elseif w == "tls" then
  answer(H.request{url = "https://good/t"})
elseif w == "wrongca" then
  answer(H.request{upstream = "wrongca", path = "/t"})
elseif w == "scheme" then
  answer(H.request{url = "https://api/x"})
elseif w == "badheader" then
  local ok, e = pcall(H.request, {upstream = "api", headers = {["Host"] = "x"}})
  answer(nil, e)
elseif w == "sleepthen" then
  tg.sleep(0.01)
  local res, err = H.request{upstream = "api", path = "/after-sleep"}
  tg.ctx.port = res and tg.json.decode(res.body).remotePort
  tg.req.set_header("X-Port", tostring(tg.ctx.port))
  answer(res, err)
end
tg.exit(400, "unknown\n")
L
});

sub call($w) {
    my $r = $tg->http(GET => "/call?w=$w", timeout => 15);
    return $r->{status} == 200 ? decode_json($r->{body}) : { err => "status $r->{status}: $r->{body}" };
}

my $j = call('get');
is($j->{status}, 200, 'GET: status');
is($j->{echo}{method}, 'GET', 'GET: method');
is($j->{echo}{url}, '/x?y=1', 'GET: path and query');
is($j->{echo}{headers}{host}, 'api', 'GET: Host is the upstream name');
is($j->{echo}{headers}{'x-a'}, '1', 'GET: a header');
is($j->{echo}{headers}{'x-multi'}, 'a, b', 'GET: a header with several values');
ok(!exists $j->{echo}{headers}{'content-length'}, 'GET: no Content-Length');
like($j->{headers}{'content-type'}, qr{application/json}, 'response headers by lowercase name');

$j = call('post');
is($j->{echo}{method}, 'POST', 'body: POST by default');
is($j->{echo}{body}, 'hello', 'body: sent');
is($j->{echo}{headers}{'content-length'}, '5', 'body: Content-Length');
$j = call('put');
is($j->{echo}{headers}{'content-length'}, '0', 'PUT without a body: Content-Length: 0');

$j = call('twice');
is($j->{echo}{remotePort}, $j->{first_port}, 'keep-alive: the second call reuses the connection');
# each of the 2 workers has its pool, and a request may land on either: a port
# seen twice among 12 calls is a reuse, whichever worker made it
my %ports;
$ports{ call('get')->{echo}{remotePort} // "none$_" }++ for 1 .. 12;
ok((grep { $_ > 1 } values %ports), 'keep-alive: later requests reuse pooled connections')
    or diag explain \%ports;

is(call('status')->{status}, 404, 'status of the answer');
$j = call('head');
is($j->{status}, 200, 'HEAD: the answer');
is($j->{len}, 0, 'HEAD: no body read despite Content-Length');
is($j->{headers}{'content-length'}, '500', 'HEAD: its Content-Length');
$j = call('chunked');
is($j->{len}, 1000, 'chunked answer: the whole body');
$j = call('headers');
is($j->{headers}{'x-one'}, '1', 'answer header');
is($j->{headers}{'x-two'}, 'a, b', 'repeated answer headers joined');

is(call('big')->{err}, 'body too large', 'lua_http_body_max caps the answer');
is(call('get')->{status}, 200, 'and the next call works');

$j = call('timeout');
is($j->{err}, 'timeout', 'timeout: nil, "timeout"');
ok($j->{took} >= 0.25 && $j->{took} < 2, "timeout: after the timeout ($j->{took} s)");

is(call('dead')->{err}, 'connect failed', 'unreachable server: nil, "connect failed"');
is(call('nope')->{err}, 'no upstream "nope:1"', 'a host that is no upstream');
is(call('scheme')->{err}, 'https:// to an upstream without tls', 'scheme checked against tls');
like(call('badheader')->{err}, qr/header "Host" is set by the client/, 'caller mistakes raise');

$j = call('tls');
is($j->{status}, 200, 'https: verified against tls_trusted_ca');
is($j->{echo}{servername}, 'localhost', 'https: SNI');
is(call('wrongca')->{err}, 'TLS handshake failed', 'https: a certificate that does not verify');
ok($tg->wait_log(qr/TLS certificate verification failed/, 5), 'and the reason is logged');

my $r = $tg->http(GET => '/call?w=sleepthen');
is(decode_json($r->{body})->{status}, 200, 'tg.sleep then a call');

# a client that leaves while its script waits: the call's connection closes
{
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Timeout => 5) or die;
    print $c "GET /call?w=long HTTP/1.1\r\nHost: x\r\n\r\n";
    my $port;
    ok(wait_until(sub {
        ($port) = map { $_->{remotePort} } grep { ($_->{url} // '') eq '/delay/5000' }
                  @{decode_json($up->http(GET => '/__log')->{body})};
        $port }, 5), 'the call reached the upstream');
    my $open = sub { `ss -Htn state established '( sport = :$port )'` =~ /\S/ };
    ok($open->(), 'its connection is open');
    close $c;
    ok(wait_until(sub { !$open->() }, 3), 'the client left: the call\'s connection is closed');
    is($tg->http(GET => '/plain')->{body}, 'plain', 'the worker serves on');
}

# lua/examples/token_introspection.lua
$r = $tg->http(GET => '/api/a', headers => [Authorization => 'Bearer good']);
is($r->{status}, 200, 'introspection: an active token passes');
$j = decode_json($r->{body});
is($j->{headers}{'x-user'}, 'alice', 'introspection: X-User upstream');
is($j->{headers}{'x-scope'}, 'read', 'introspection: X-Scope upstream');
ok(!exists $j->{headers}{authorization}, 'introspection: the token is not forwarded');
is($tg->http(GET => '/api/b', headers => [Authorization => 'Bearer good'])->{status}, 200,
   'introspection: again');
is($auth->http(GET => '/count')->{body}, '1', 'introspection: the second answer came from the cache');
$r = $tg->http(GET => '/api/c', headers => [Authorization => 'Bearer bad']);
is($r->{status}, 401, 'introspection: an inactive token gets 401');
is($tg->http(GET => '/api/c')->{status}, 401, 'introspection: no token gets 401');
$auth->stop;
$r = $tg->http(GET => '/api/d', headers => [Authorization => 'Bearer other']);
is($r->{status}, 503, 'introspection: the endpoint down gives 503');

# 1,000 concurrent calls (each waits 300 ms upstream) on 2 workers
my @socks;
for (1 .. 1000) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Timeout => 5) or last;
    print $s "GET /call?w=slow HTTP/1.1\r\nHost: x\r\n\r\n";
    push @socks, $s;
}
is(scalar @socks, 1000, '1,000 requests sent');
my $t0 = time;
$r = $tg->http(GET => '/plain');
my $lat = time - $t0;
is($r->{body}, 'plain', 'a plain request meanwhile');
ok($lat < 0.5, sprintf('answered in %.0f ms', $lat * 1000));
my $ok = 0;
my $deadline = time + 30;
for my $s (@socks) {
    my $buf = '';
    $s->blocking(1);
    while (time < $deadline && $buf !~ /"status":200/ && $buf !~ /"err":"(?!null)/) {
        my $n = sysread($s, $buf, 4096, length $buf);
        last unless $n;
        last if $buf =~ /\r\n\r\n/ && $buf =~ /\}\s*$/;
    }
    $ok++ if $buf =~ /"status":200/;
    close $s;
}
is($ok, 1000, 'all 1,000 calls answered 200');
done_testing;
