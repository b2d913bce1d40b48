# Every module behaves the same over HTTP/2 as over HTTP/1.1: each check
# runs over both protocols (both_protocols, curl --http1.1 and
# --http2-prior-knowledge on one `listen ... http2` port): security headers,
# CORS preflight, compression (also streamed: SSE per event), rate limiting
# (429 on the stream, the connection lives on), allow/deny, Lua in every
# phase with tg.req.body(), real_ip, the access log, the stats counters.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::H2;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C", files => {
workers 1;
rate_limit_zone rl key=\$http_x_key rate=1r/m burst=2 size=1m;
log_format p "\$server_protocol \$request_method \$request_uri \$status";
server {
    listen %%PORT%% http2;
    server_name localhost;
    access_log %%DIR%%/access.log p;
    security_headers on;
    location / { proxy_pass $up->{addr}; }
    location /cors/ { cors origins=https://a.test methods=GET,PUT headers=X-A; proxy_pass $up->{addr}; }
    location /gz/ { compress gzip br; proxy_pass http://$up->{addr}/; }
    location /rl/ { rate_limit rl; proxy_pass $up->{addr}; }
    location /deny/ { deny 127.0.0.1; proxy_pass $up->{addr}; }
    location /allow/ { allow 127.0.0.1; deny all; return 200 "allowed\\n"; }
    location /lua/ {
        lua_body_max 64k;
        lua_rewrite %%DIR%%/rewrite.lua;
        lua_access %%DIR%%/access.lua;
        lua_header_filter %%DIR%%/filter.lua;
        lua_log %%DIR%%/log.lua;
        proxy_pass $up->{addr};
    }
    location = /stats { stats; }
}
C
    'rewrite.lua' => 'tg.req.set_header("X-Phase-Rewrite", "1")',
    'access.lua' => <<'L',
local b = tg.req.body()
tg.req.set_header("X-Lua-Len", b and tostring(#b) or "nil")
if tg.req.path() == "/lua/exit" then tg.exit(418, "teapot " .. (b or "") .. "\n") end
L
    'filter.lua' => 'tg.resp.set_header("X-Phase-Filter", "1")',
    'log.lua' => 'tg.shared = nil',
});
my $port = $tg->port;

sub req($proto, $path, %o) { curl_req($port, $path, proto => $proto, %o) }

both_protocols(sub ($p) {
    my $r = req($p, '/plain');
    is($r->{version}, $p eq 'h2' ? '2' : '1.1', "$p: the protocol");
    ok($r->{headers}{'x-content-type-options'} && $r->{headers}{'x-frame-options'},
       "$p: security headers");

    $r = req($p, '/cors/x', method => 'OPTIONS',
             headers => [Origin => 'https://a.test', 'Access-Control-Request-Method' => 'PUT']);
    is($r->{status}, 204, "$p: CORS preflight answered");
    is($r->{headers}{'access-control-allow-origin'}, 'https://a.test', "$p: ... allow-origin");
    like($r->{headers}{'access-control-allow-methods'} // '', qr/PUT/, "$p: ... allow-methods");

    $r = req($p, '/gz/size/20000', headers => ['Accept-Encoding' => 'gzip']);
    is($r->{headers}{'content-encoding'}, 'gzip', "$p: compressed");
    ok(length($r->{body}) < 20000, "$p: ... smaller");
    $r = req($p, '/gz/size/20000', headers => ['Accept-Encoding' => 'gzip'], args => ['--compressed']);
    ok($r->{body} eq body_pattern(20000), "$p: ... and decodes to the same bytes");

    my $t0 = time;
    open(my $sse, '-|', 'curl', '-sN', '--compressed', '-H', 'Accept-Encoding: gzip',
         $p eq 'h2' ? '--http2-prior-knowledge' : '--http1.1', "http://127.0.0.1:$port/gz/sse/4")
        or die;
    my @t;
    while (my $l = <$sse>) { push @t, time - $t0 if $l =~ /^data:/ }
    close $sse;
    is(scalar @t, 4, "$p: compressed SSE, 4 events");
    cmp_ok($t[-1] - $t[0], '>', 0.1, "$p: ... arriving per event");

    my @codes = map { req($p, '/rl/x', headers => ['X-Key' => "k$p"])->{status} } 1 .. 4;
    is("@codes", '200 200 200 429', "$p: rate limited: 429");

    is(req($p, '/deny/x')->{status}, 403, "$p: deny");
    is(req($p, '/allow/x')->{body}, "allowed\n", "$p: allow");

    $r = req($p, '/lua/x', method => 'POST', data => 'hello body');
    my $j = eval { decode_json($r->{body}) } // do { diag("$r->{status} $r->{body}"); {} };
    is($j->{headers}{'x-phase-rewrite'}, '1', "$p: lua_rewrite");
    is($j->{headers}{'x-lua-len'}, '10', "$p: lua_access reads tg.req.body()");
    is($j->{body}, 'hello body', "$p: ... and the upstream still gets the body");
    is($r->{headers}{'x-phase-filter'}, '1', "$p: lua_header_filter");
    $r = req($p, '/lua/exit', method => 'POST', data => 'abc');
    is("$r->{status} $r->{body}", "418 teapot abc\n", "$p: tg.exit with the body read");

    $r = req($p, '/x', headers => ['X-Forwarded-For' => '10.1.1.1']);
    $j = decode_json($r->{body});
    is($j->{headers}{'x-forwarded-for'}, '10.1.1.1, 127.0.0.1', "$p: X-Forwarded-For appended");
});

# rate limiting on one h2 connection: the limited stream gets 429, the
# connection carries on
# (nghttp: every URI on one connection)
my $out = `nghttp -ns -H 'x-key: one' http://127.0.0.1:$port/rl/a http://127.0.0.1:$port/rl/b http://127.0.0.1:$port/rl/c http://127.0.0.1:$port/rl/d http://127.0.0.1:$port/plain 2>&1`;
my %code = reverse($out =~ m{^\s*\d+\s+\S+\s+\S+\s+\S+\s+(\d+)\s+\d+\s+(/\S+)$}mg);
my @rl = sort map { $code{"/rl/$_"} // '-' } qw(a b c d);
is("@rl " . ($code{'/plain'} // '-'), '200 200 200 429 200',
   'one h2 connection: 429 on its stream, the other streams of the connection answered')
    or diag $out;

my $log = Tollgate::Test::_slurp($tg->dir . '/access.log');
like($log, qr/^HTTP\/2\.0 GET \/plain 200$/m, 'access log: HTTP/2.0');
like($log, qr/^HTTP\/1\.1 GET \/plain 200$/m, 'access log: HTTP/1.1');

my $st = decode_json(curl_req($port, '/stats?format=json', proto => 'h2')->{body});
cmp_ok($st->{http2}{connections}, '>=', 10, 'stats: HTTP/2 connections counted');
cmp_ok($st->{http2}{requests}, '>=', 10, 'stats: HTTP/2 requests counted');
cmp_ok($st->{http1}{requests}, '>=', 10, 'stats: HTTP/1.1 requests counted');
ok(exists $st->{http2}{streams_open} && exists $st->{http2}{goaway_sent} &&
   exists $st->{http2}{resets_received} && exists $st->{http2}{flood_closes},
   'stats: streams open, GOAWAYs, resets, flood closes');
my $prom = curl_req($port, '/stats?format=prometheus', proto => 'h1')->{body};
like($prom, qr/^tollgate_http2_connections_total [1-9]\d*$/m, 'Prometheus: HTTP/2 connections');
like($prom, qr/^tollgate_http1_requests_total [1-9]\d*$/m, 'Prometheus: HTTP/1.1 requests');
like($prom, qr/^tollgate_http2_goaway_sent_total \d+/m, 'Prometheus: GOAWAYs');

$tg->stop;
done_testing;
