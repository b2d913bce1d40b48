# tg.http.request{url=} to hosts that are not upstreams: names resolved
# through the `resolver` (dnsmasq on a loopback port), a keep-alive pool per
# scheme+host+port (the Node side sees one connection for several calls),
# https verified against lua_http_ca with the host as SNI (a name the
# certificate does not have fails, as does a CA it does not chain to), an
# unreachable port, an unknown name, a timeout, calls from a timer, and a
# log-phase call (fire and forget) that reaches its server.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::DNS;

plan skip_all => 'dnsmasq not installed (contrib/install-deps.sh test)'
    unless -x '/usr/sbin/dnsmasq' || `command -v dnsmasq`;

my $pki = make_pki();
my $dir = $pki->{dir};
my $crt = Tollgate::TLS::_issue($dir, 'api', 'rsa', 'api.test', "$dir/ca");
my $up = node_upstream('echo');
my $sec = node_upstream('https-echo', env => { CERT => $crt->{cert}, KEY => $crt->{key} });
my $dead = free_port();
my $idp = node_upstream('introspect');
my $dns = dns_server(hosts => "127.0.0.1 api.test\n127.0.0.1 other.test\n127.0.0.1 idp.test\n", ttl => 60);
my ($P, $S) = ($up->{port}, $sec->{port});

my @errors_ok = (qr/TLS certificate verification failed/, qr/upstream https:\/\/other\.test/);
my $tg = tg_start(<<"C", errors_ok => \@errors_ok,
workers 1;
resolver 127.0.0.1:$dns->{port} ipv6=off timeout=500ms;
lua_http_ca $pki->{ca};
lua_shared_dict d 1m;
lua_shared_dict introspection 1m;
lua_package_path "%%DIR%%/?.lua;;";
server {
    listen %%PORT%%;
    location /call { lua_access %%DIR%%/call.lua; }
    location /mark { lua_access %%DIR%%/mark.lua; }
    location /logged { lua_log %%DIR%%/log.lua; return 200 "logged"; }
    location /api/ { lua_access %%ROOT%%/lua/examples/token_introspection.lua; proxy_pass 127.0.0.1:$P; }
}
C
    files => {
    'introspection_config.lua' => "return { url = 'http://idp.test:$idp->{port}/introspect', dict = 'introspection', ttl = 30 }\n",
    'mark.lua' => "tg.shared.d:set('mark:' .. tg.req.arg('id'), tg.req.method(), 0) tg.exit(204)\n",
    'log.lua' => <<'L',
local ok, err = tg.http.request{url = "http://127.0.0.1:" .. tg.req.arg("port") .. "/mark?id=" .. tg.req.arg("id"),
                                method = "PUT", timeout = 2}
tg.shared.d:set("log-ret", tostring(ok), 0)
L
    'call.lua' => <<"L",
local H = tg.http
local w = tg.req.arg("w")
local out = {}
local function take(res, err)
  out.err = err
  if res then
    out.status = res.status
    out.echo = tg.json.decode(res.body)
  end
end
if w == "ip" then
  take(H.request{url = "http://127.0.0.1:$P/a?b=1", headers = {["X-T"] = "1"}})
elseif w == "name" then
  take(H.request{url = "http://api.test:$P/n"})
elseif w == "https" then
  take(H.request{url = "https://api.test:$S/s"})
elseif w == "badname" then
  take(H.request{url = "https://other.test:$S/s"})
elseif w == "https-ip" then
  take(H.request{url = "https://127.0.0.1:$S/s"})
elseif w == "dead" then
  take(H.request{url = "http://127.0.0.1:$dead/"})
elseif w == "nx" then
  local t0 = tg.now()
  take(H.request{url = "http://nx.test:$P/", timeout = 5})
  out.took = tg.now() - t0
elseif w == "timeout" then
  local t0 = tg.now()
  take(H.request{url = "http://api.test:$P/delay/3000", timeout = 0.3})
  out.took = tg.now() - t0
elseif w == "badurl" then
  take(H.request{url = "http://user\@api.test:$P/"})
elseif w == "timer" then
  tg.timer.at(0, function()
    local res, err = H.request{url = "https://api.test:$S/t"}
    tg.shared.d:set("timer", res and (res.status .. ":" .. tg.json.decode(res.body).servername) or err, 0)
  end)
elseif w == "read" then
  out.v = tg.shared.d:get(tg.req.arg("k"))
end
tg.exit(200, tg.json.encode(out), {["Content-Type"] = "application/json"})
L
    });

sub call($w) {
    my $r = $tg->http(GET => "/call?w=$w", timeout => 15);
    is($r->{status}, 200, "$w: 200") or diag($r->{body});
    return eval { decode_json($r->{body}) } // {};
}

my $j = call('ip');
is($j->{status}, 200, 'http://IP:PORT: answered');
is($j->{echo}{url}, '/a?b=1', 'path and query sent');
is($j->{echo}{headers}{host}, "127.0.0.1:$P", 'Host is the URL authority');
is($j->{echo}{headers}{'x-t'}, '1', 'headers sent');
my $port1 = $j->{echo}{remotePort};
is(call('ip')->{echo}{remotePort}, $port1, 'the next call reuses the pooled connection');

$j = call('name');
is($j->{status}, 200, 'a name resolved through the resolver');
like($dns->_log, qr/query\[A\] api\.test/, 'the resolver was asked');
my $q = () = $dns->_log =~ /query\[A\] api\.test/g;
call('name');
my $q2 = () = $dns->_log =~ /query\[A\] api\.test/g;
is($q2, $q, 'the address is kept for its TTL: no second query');

$j = call('https');
is($j->{status}, 200, 'https verified against lua_http_ca');
is($j->{echo}{servername}, 'api.test', 'SNI is the host');
my $conns = $j->{echo}{connections};
$j = call('https');
is($j->{echo}{connections}, $conns, 'the TLS connection is pooled (no new connection at the Node side)');

$j = call('badname');
is($j->{err}, 'TLS handshake failed', 'a name the certificate lacks: nil, err');
like($tg->error_log, qr/TLS certificate verification failed/, 'the reason is logged');
$j = call('https-ip');
is($j->{err}, 'TLS handshake failed', 'an IP the certificate lacks: nil, err');

$j = call('dead');
is($j->{err}, 'connect failed', 'an unreachable port: nil, "connect failed"');
$j = call('nx');
like($j->{err} // '', qr/^cannot resolve "nx\.test"/, 'an unknown name: nil, "cannot resolve ..."');
ok(($j->{took} // 9) < 2, 'answered before the call timeout');
$j = call('timeout');
is($j->{err}, 'timeout', 'timeout: nil, "timeout"');
ok($j->{took} >= 0.25 && $j->{took} < 2, sprintf('after the timeout (%.2f s)', $j->{took}));
is(call('badurl')->{err}, 'invalid host in url', 'user info in a URL is refused');

call('timer');
ok(wait_until(sub { ($tg->http(GET => '/call?w=read&k=timer')->{body} // '') =~ /"v":"200:api\.test"/ }, 5),
   'a timer callback waits on an https call');

my $id = int(rand(1e9));
my $t0 = time;
my $r = $tg->http(GET => "/logged?id=$id&port=" . $tg->port);
is($r->{body}, 'logged', 'log-phase request answered');
ok(wait_until(sub { ($tg->http(GET => "/call?w=read&k=mark:$id")->{body} // '') =~ /"v":"PUT"/ }, 5),
   'the log-phase call reached its server');
like($tg->http(GET => '/call?w=read&k=log-ret')->{body}, qr/"v":"true"/,
     'in the log phase the call returns true at once');

# lua/examples/token_introspection.lua with the endpoint as a URL
$r = $tg->http(GET => '/api/a', headers => [Authorization => 'Bearer good']);
is($r->{status}, 200, 'introspection by url: an active token passes');
is(eval { decode_json($r->{body})->{headers}{'x-user'} }, 'alice', 'introspection by url: X-User upstream');
is($tg->http(GET => '/api/c', headers => [Authorization => 'Bearer bad'])->{status}, 401,
   'introspection by url: an inactive token gets 401');
is($idp->http(GET => '/count')->{body}, '2', 'introspection by url: both tokens asked at the endpoint');

like(tg_conf_error("lua_http_ca /nonexistent/ca.pem; server { listen %%PORT%%; location / { lua_access %%DIR%%/x.lua; } }",
                   files => { 'x.lua' => "\n" }),
     qr/:\d+: lua_http_ca: cannot load trusted CA "\/nonexistent\/ca.pem"/, 'a missing lua_http_ca file is a config error');
done_testing;
