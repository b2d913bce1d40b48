# gRPC through the gateway: a @grpc/grpc-js server (t/upstream/grpc-server.js)
# behind `proxy_pass grpc://NAME`, called by a @grpc/grpc-js client
# (t/upstream/grpc-client.js) over h2c and TLS: each method kind, payloads
# 0 B to 8 MB, 1,000 concurrent calls, a 10,000-message server stream read
# slowly (gateway memory bounded), metadata and trailers (grpc-status,
# grpc-message, custom) passed through, the client's cancel reaching the
# server, grpc-timeout (DEADLINE_EXCEEDED by the gateway), and the errors
# the gateway makes as trailers-only gRPC statuses: no upstream 14, denied 7,
# rate limited 8, Lua tg.exit(401) 16; the upstream killed mid-stream (14 in
# the trailers), a reload during 100 long streams (none broken), and
# $grpc_status in the access log.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $dir = $pki->{dir};
my $lh = Tollgate::TLS::_issue($dir, 'localhost', 'rsa', 'localhost', "$dir/ca");
my $up = node_upstream('grpc-server', env => { NAME => 'plain' });
my $sec = node_upstream('grpc-server', env => { NAME => 'sec', CERT => $lh->{cert}, KEY => $lh->{key} });
my $dead = free_port();
my $victim = node_upstream('grpc-server', env => { NAME => 'victim' });

my @errors_ok = (qr/connect\(\) to .* failed/, qr/no live upstream/,
                 qr/HTTP\/2 connection/, qr/reset the HTTP\/2 stream/);
my $tg = tg_start(<<"C", errors_ok => \@errors_ok, files => { 'deny.lua' => "tg.exit(401)\n" });
log_format grpc '\$request_uri \$status \$grpc_status';
rate_limit_zone one key=\$remote_addr rate=1r/m burst=0 size=1m;
client_max_body_size 16m;
upstream g { server $up->{addr}; }
upstream gs { server localhost:$sec->{port}; tls on; tls_trusted_ca $pki->{ca}; }
upstream gone { server 127.0.0.1:$dead; protocol http2; }
upstream victim { server $victim->{addr}; protocol http2; }
server {
    listen %%PORT%% http2;
    access_log %%DIR%%/grpc.log grpc;
    location /tgtest.Test/ { proxy_pass grpc://g; }
    location = /__stats { stats; }
}
server {
    listen %%PORT7%% http2;
    location /tgtest.Test/ { proxy_pass victim; }
}
server {
    listen %%PORT2%% tls;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    location /tgtest.Test/ { proxy_pass grpcs://gs; }
}
server {
    listen %%PORT3%% http2;
    location /tgtest.Test/ { proxy_pass grpc://gone; }
}
server {
    listen %%PORT4%% http2;
    location /tgtest.Test/ { deny all; proxy_pass grpc://g; }
}
server {
    listen %%PORT5%% http2;
    location /tgtest.Test/ { rate_limit one; proxy_pass grpc://g; }
}
server {
    listen %%PORT6%% http2;
    location /tgtest.Test/ { lua_access %%DIR%%/deny.lua; proxy_pass grpc://g; }
    location / { return 404; }
}
C
my $root = Tollgate::Test::repo_root();
sub call($port, $scenario, $arg = '', %o) {
    my $ca = $o{tls} ? $pki->{ca} : '-';
    my $out = `cd $root/t && timeout 90 node upstream/grpc-client.js 127.0.0.1:$port $ca $scenario '$arg' 2>&1`;
    return eval { decode_json((split /\n/, $out)[-1]) } // { error => $out };
}
my $p = $tg->port(1);

# ---- each method kind, h2c and TLS
for my $c ([h2c => $tg->port(1), 0], [tls => $tg->port(2), 1]) {
    my ($name, $port, $tls) = @$c;
    for my $size (0, 1000, 8 * 1024 * 1024) {
        my $r = call($port, 'unary', $size, tls => $tls);
        is($r->{code}, 0, "$name unary $size B: OK") or diag explain $r;
        ok($r->{len} == $size && $r->{sha} eq $r->{sent_sha}, "$name unary $size B: byte-exact echo");
    }
    my $r = call($port, 'unary', 10, tls => $tls);
    is($r->{metadata}{'x-server'}, $tls ? 'sec' : 'plain', "$name: response metadata passed");
    is($r->{trailers}{'x-len'}, '10', "$name: custom trailer passed");
    $r = call($port, 'fail', '', tls => $tls);
    is($r->{code}, 9, "$name: the server's grpc-status passed through");
    is($r->{details}, 'asked to fail', "$name: grpc-message passed through");
    is($r->{trailers}{'x-why'}, 'asked', "$name: trailer of an error passed through");
    $r = call($port, 'serverStream', '500:100:0', tls => $tls);
    ok($r->{code} == 0 && $r->{got} == 500 && $r->{inOrder}, "$name server streaming: 500 messages in order")
        or diag explain $r;
    $r = call($port, 'clientStream', '300:1000', tls => $tls);
    ok($r->{code} == 0 && $r->{n} == 300 && $r->{sha} eq $r->{sent_sha},
       "$name client streaming: 300 messages arrived whole") or diag explain $r;
    $r = call($port, 'bidi', 200, tls => $tls);
    ok($r->{code} == 0 && $r->{got} == 200, "$name bidi streaming: 200 ping-pongs") or diag explain $r;
}

# ---- 1,000 concurrent calls
my $r = call($p, 'concurrent', 1000);
is($r->{ok}, 1000, '1,000 concurrent unary calls, each answered with its own payload') or diag explain $r;

# ---- a 10,000-message stream read slowly: the gateway buffers a window, not the stream
my @workers = $tg->worker_pids;
sub rss($pid) { open(my $f, '<', "/proc/$pid/status") or return 0; local $/; (<$f> =~ /VmRSS:\s+(\d+)/)[0] }
my $rss0 = rss($workers[0]);
my $pid = open(my $slow, '-|', "cd $root/t && timeout 90 node upstream/grpc-client.js 127.0.0.1:$p - serverStream 10000:1024:100") or die;
my $peak = 0;
wait_until(sub { my $x = rss($workers[0]); $peak = $x if $x > $peak; 0 }, 3, 0.1);
my $out = do { local $/; <$slow> };
close $slow;
$r = eval { decode_json((split /\n/, $out)[-1]) } // {};
ok($r->{code} == 0 && $r->{got} == 10000 && $r->{inOrder}, '10,000 x 1 KB read slowly: all, in order');
ok($peak - $rss0 < 8192, sprintf('gateway RSS grew by %d KB while the slow reader lagged (10 MB streamed)', $peak - $rss0));

# ---- the client's cancel reaches the server
$r = call($p, 'cancel');
is($r->{code}, 1, 'client cancelled: CANCELLED');
ok(wait_until(sub { (call($p, 'cancels')->{text} // '') =~ /stream:paced/ }, 5),
   'the server saw the call cancelled');

# ---- deadlines
$r = call($p, 'deadline', 200);
is($r->{code}, 0, 'a call within its deadline: OK');
$r = call($p, 'rawTimeout', '300m');
is($r->{status}, 200, 'grpc-timeout reached: HTTP 200');
is($r->{grpc_status}, '4', 'grpc-timeout reached: DEADLINE_EXCEEDED from the gateway');
ok($r->{ms} >= 250 && $r->{ms} < 2500, "... at the deadline ($r->{ms} ms for 300m)");

# ---- errors the gateway makes
$r = call($tg->port(3), 'unary', 1);
is($r->{code}, 14, 'no upstream: UNAVAILABLE');
$r = call($tg->port(4), 'unary', 1);
is($r->{code}, 7, 'denied: PERMISSION_DENIED');
call($tg->port(5), 'unary', 1);
$r = call($tg->port(5), 'unary', 1);
is($r->{code}, 8, 'rate limited: RESOURCE_EXHAUSTED');
$r = call($tg->port(6), 'unary', 1);
is($r->{code}, 16, 'Lua tg.exit(401): UNAUTHENTICATED');

# ---- the upstream killed mid-stream
open(my $k, '-|', "cd $root/t && timeout 60 node upstream/grpc-client.js 127.0.0.1:@{[$tg->port(7)]} - streams 3:200") or die;
select(undef, undef, undef, 0.8);
$victim->stop;
$out = do { local $/; <$k> };
close $k;
$r = eval { decode_json((split /\n/, $out)[-1]) } // {};
is_deeply($r->{codes}, [14, 14, 14], 'upstream killed mid-stream: each call ends UNAVAILABLE')
    or diag $out;

# ---- a reload during 100 long streams: none broken
# the reload comes once the 100 streams are open (node may start slowly)
my $h2_requests = sub { (eval { decode_json($tg->http(GET => '/__stats')->{body}) } // {})->{http2}{requests} // 0 };
my $before = $h2_requests->();
open(my $long, '-|', "cd $root/t && timeout 60 node upstream/grpc-client.js 127.0.0.1:$p - streams 100:75") or die;
ok(wait_until(sub { $h2_requests->() >= $before + 100 }, 20, 0.05), '100 long streams open');
select(undef, undef, undef, 0.2);
$tg->signal('HUP');
$out = do { local $/; <$long> };
close $long;
$r = eval { decode_json((split /\n/, $out)[-1]) } // {};
is($r->{ok}, 100, '100 streams of 1.5 s across a reload: all complete, in order, OK') or diag $out;
is(call($p, 'unary', 5)->{code}, 0, 'after the reload: new calls OK');

# ---- stats by grpc-status, per location and upstream server
my $st = decode_json($tg->http(GET => '/__stats')->{body});
# several server blocks have that location: the one on PORT took the OK calls
my $lg = {};
for my $sv (values %{$st->{servers}}) {
    my $g = $sv->{locations}{'/tgtest.Test/'}{grpc} // {};
    $lg = $g if ($g->{0} // 0) > ($lg->{0} // 0);
}
ok(($lg->{0} // 0) > 1000, "stats: location's OK calls counted ($lg->{0})");
ok(($lg->{9} // 0) >= 1 && ($lg->{4} // 0) >= 1, 'stats: the location counts status 9 and 4');
my $ug = $st->{upstreams}{g}{servers}{$up->{addr}}{grpc} // {};
ok(($ug->{0} // 0) > 1000 && ($ug->{9} // 0) >= 1, 'stats: the upstream server counts by grpc-status');
my $prom = $tg->http(GET => '/__stats?format=prometheus')->{body};
like($prom, qr/^tollgate_location_grpc_total\{[^}]*location="\/tgtest\.Test\/"[^}]*grpc_status="9"\} \d+/m,
     'Prometheus: tollgate_location_grpc_total with grpc_status');
like($prom, qr/^tollgate_upstream_grpc_total\{[^}]*grpc_status="0"\} \d+/m,
     'Prometheus: tollgate_upstream_grpc_total');

# ---- $grpc_status in the access log
$tg->stop;
my $log = do { local $/; open(my $f, '<', $tg->dir . '/grpc.log') or die; <$f> };
like($log, qr{^/tgtest\.Test/Unary 200 0$}m, 'access log: $grpc_status 0 for an OK call');
like($log, qr{^/tgtest\.Test/Unary 200 9$}m, "access log: the upstream's status 9");
like($log, qr{^/tgtest\.Test/Unary 200 4$}m, "access log: the gateway's DEADLINE_EXCEEDED 4");
done_testing;
