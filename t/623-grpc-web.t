# gRPC-Web through the gateway (`grpc_web on`): what the upstream receives
# (an HTTP/2 echo server: the gRPC head, the base64 body decoded); a
# browser-style client built by hand (t/upstream/grpc-web-client.js) calls
# the @grpc/grpc-js server
# (t/upstream/grpc-server.js) over HTTP/1.1 and h2c, in binary
# (application/grpc-web+proto) and text (application/grpc-web-text, base64)
# mode: unary and server streaming, messages arriving one by one before the
# stream ends, the upstream's trailers as the body's last frame (0x80), its
# error status there, base64 sent in several padded pieces, a gateway error
# (no upstream: 14 in the head, trailers-only), the upstream's trailers-only
# answer, grpc-timeout, the CORS
# preflight with the recommended cors config, malformed base64 (13), a 4 MB
# message in text mode with the worker's memory bounded, $grpc_status and
# the stats for gRPC-Web calls, and the config check for an HTTP/1.1
# upstream.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json encode_json);
use MIME::Base64 qw(encode_base64 decode_base64);
use Digest::SHA qw(sha256_hex);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('grpc-server', env => { NAME => 'plain' });
my $echo = node_upstream('h2-echo');
my $dead = free_port();
my $root = Tollgate::Test::repo_root();

my $cors = 'cors origins=https://app.test methods=POST headers=content-type,x-grpc-web,x-user-agent,grpc-timeout expose_headers=grpc-status,grpc-message max_age=600';
my $tg = tg_start(<<"C", errors_ok => [qr/connect\(\) to .* failed/, qr/no live upstream/]);
log_format grpc '\$request_uri \$status \$grpc_status';
client_max_body_size 16m;
upstream g { server $up->{addr}; }
upstream gone { server 127.0.0.1:$dead; protocol http2; }
upstream echo { server $echo->{addr}; protocol http2; }
server {
    listen %%PORT%%;
    access_log %%DIR%%/grpc.log grpc;
    location /tgtest.Test/ { grpc_web on; $cors; proxy_pass grpc://g; }
    location = /__stats { stats; }
    location /echo/ { grpc_web on; proxy_pass echo; }
}
server {
    listen %%PORT2%% http2;
    grpc_web on;
    location /tgtest.Test/ { proxy_pass grpc://g; }
}
server {
    listen %%PORT3%%;
    listen %%PORT4%% http2;
    grpc_web on;
    location /tgtest.Test/ { proxy_pass grpc://gone; }
    location /deny/ { deny all; proxy_pass grpc://g; }
}
C

sub call(%o) {
    $o{port} //= $tg->port($o{h2} ? 2 : 1);
    my $arg = encode_json(\%o);
    $arg =~ s/'/'\\''/g;
    my $out = `cd $root/t && timeout 60 node upstream/grpc-web-client.js '$arg' 2>&1`;
    return eval { decode_json((split /\n/, $out)[-1]) } // { error => $out };
}

# ---- what the upstream receives (an HTTP/2 echo server): the gRPC head and the decoded body
{
    my $frame = "\0\0\0\0\x05hello";
    my $b64 = encode_base64(substr($frame, 0, 4), '') . encode_base64(substr($frame, 4), '');
    my $h = $tg->http(POST => '/echo/x', body => $b64, headers => {
        'Content-Type' => 'application/grpc-web-text+proto', 'X-Grpc-Web' => '1',
        'X-User-Agent' => 'grpc-web-javascript/0.1', 'grpc-timeout' => '5S', 'x-meta' => 'm1' });
    my $raw = join '', map { decode_base64($_) } unpack('(A4)*', $h->{body});
    my ($json, $trailer) = $raw =~ /\A(\{.*\})(.*)\z/s;
    my $e = eval { decode_json($json) } // {};
    is($e->{headers}{'content-type'}, 'application/grpc+proto', 'upstream: content-type application/grpc+proto');
    is($e->{headers}{te}, 'trailers', 'upstream: te: trailers');
    ok(!exists $e->{headers}{'x-grpc-web'}, 'upstream: x-grpc-web dropped');
    is($e->{headers}{'x-user-agent'}, 'grpc-web-javascript/0.1', 'upstream: x-user-agent kept');
    is($e->{headers}{'grpc-timeout'}, '5S', 'upstream: grpc-timeout kept');
    is($e->{headers}{'x-meta'}, 'm1', 'upstream: metadata kept');
    ok(!exists $e->{headers}{'content-length'}, 'upstream: no content-length (the base64 one is wrong)');
    ok($e->{length} == 10 && $e->{sha256} eq sha256_hex($frame),
       'upstream: the body decoded from 2 padded base64 pieces, byte-exact') or diag explain $e;
    is($h->{headers}{'content-type'}, 'application/grpc-web-text+proto', 'client: text content-type');
    is($trailer, "\x80\0\0\0\0", 'client: an empty trailer frame closes the body (no trailers upstream)');
}

# ---- unary and server streaming: HTTP/1.1 and h2, binary and text
for my $h2 (0, 1) {
    for my $text (0, 1) {
        my $name = ($h2 ? 'h2' : 'HTTP/1.1') . ($text ? ' text' : ' binary');
        my $type = $text ? 'application/grpc-web-text' : 'application/grpc-web+proto';
        my $r = call(h2 => $h2, text => $text, size => 1000);
        is($r->{status}, 200, "$name unary: HTTP 200") or diag explain $r;
        is($r->{headers}{'content-type'}, $type, "$name unary: content-type $type");
        ok(@{$r->{messages}} == 1 && $r->{messages}[0]{len} == 1000
           && $r->{messages}[0]{sha} eq $r->{sentSha}, "$name unary: the message echoed byte-exact");
        is($r->{headers}{'x-server'}, 'plain', "$name unary: response metadata in the head");
        is($r->{trailers}{'grpc-status'}, '0', "$name unary: grpc-status 0 in the trailer frame");
        is($r->{trailers}{'x-len'}, '1000', "$name unary: custom trailer in the trailer frame");
        like($r->{trailerBlock}, qr/\Agrpc-status: 0\r\n(?:[a-z0-9-]+: [^\r]*\r\n)+\z/,
             "$name unary: trailer frame is a lowercase header block, grpc-status first");
        ok(!$r->{leftover}, "$name unary: nothing after the trailer frame");
        if ($h2) {
            ok(!$r->{h2trailers}, "$name unary: no HTTP/2 trailers (they went in the body)");
        } else {
            is($r->{headers}{'transfer-encoding'}, 'chunked', "$name unary: chunked");
        }
        $r = call(h2 => $h2, text => $text, method => 'ServerStream', size => 100, n => 50);
        my @m = @{$r->{messages}};
        ok(($r->{count} // @m) == 50 && $m[0]{text} eq '0' && $m[2]{text} eq '2'
           && $m[0]{sha} eq $r->{sentSha}, "$name server streaming: 50 messages in order")
            or diag explain $r;
        is($r->{trailers}{'grpc-status'}, '0', "$name server streaming: grpc-status 0 at the end");
        $r = call(h2 => $h2, text => $text, msgText => 'fail');
        is($r->{trailers}{'grpc-status'} // $r->{headers}{'grpc-status'}, '9',
           "$name: the server's error status passed");
        my $msg = $r->{trailers}{'grpc-message'} // $r->{headers}{'grpc-message'} // '';
        $msg =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge; # percent-encoded (PROTOCOL-HTTP2)
        is($msg, 'asked to fail', "$name: the server's grpc-message passed");
    }
}

# ---- a server stream reaches the client message by message
for my $c ([0, 1], [1, 0]) {
    my ($h2, $text) = @$c;
    my $r = call(h2 => $h2, text => $text, method => 'ServerStream', n => 8, msgText => 'paced');
    my $name = ($h2 ? 'h2' : 'HTTP/1.1') . ($text ? ' text' : ' binary');
    ok(@{$r->{messages}} == 8 && defined $r->{firstMsgMs} && $r->{firstMsgMs} + 100 < $r->{endMs},
       "$name: 8 messages 20 ms apart, the first at $r->{firstMsgMs} ms, the end at $r->{endMs} ms")
        or diag explain $r;
}

# ---- base64 in several padded pieces (a client encoding message by message)
my $r = call(text => 1, size => 1000, chunks => 3);
ok(@{$r->{messages}} == 1 && $r->{messages}[0]{sha} eq $r->{sentSha},
   'text body in 3 padded base64 pieces: decoded whole') or diag explain $r;
is($r->{trailers}{'grpc-status'}, '0', '... grpc-status 0');
$r = call(text => 1, size => 1000, chunks => 3, ctype => 'application/grpc-web-text+proto');
is($r->{headers}{'content-type'}, 'application/grpc-web-text+proto', '+proto kept in the answer');
$r = call(text => 0, size => 10, accept => 'application/grpc-web-text');
is($r->{headers}{'content-type'}, 'application/grpc-web-text+proto',
   'binary request with Accept: application/grpc-web-text: a text answer');
ok(@{$r->{messages}} == 1 && $r->{trailers}{'grpc-status'} eq '0', '... decoded by the client');

# ---- malformed base64: INTERNAL (13), trailers-only, before anything reaches the upstream
for my $bad (['not base64' => '!!!!AAAA'], ['truncated quantum' => 'AAAAAAU'],
             ['padding inside a quantum' => 'A=AA']) {
    $r = call(text => 1, raw => $bad->[1]);
    ok($r->{status} == 200 && ($r->{headers}{'grpc-status'} // '') eq '13'
       && $r->{headers}{'content-type'} eq 'application/grpc-web-text',
       "malformed base64 ($bad->[0]): HTTP 200, grpc-status 13 in the head") or diag explain $r;
}

# ---- errors the gateway makes: gRPC statuses in the head (trailers-only)
for my $c ([0, 0], [0, 1], [1, 0], [1, 1]) {
    my ($h2, $text) = @$c;
    my $name = ($h2 ? 'h2' : 'HTTP/1.1') . ($text ? ' text' : ' binary');
    $r = call(port => $tg->port($h2 ? 4 : 3), h2 => $h2, text => $text, size => 1);
    is($r->{status}, 200, "no upstream, $name: HTTP 200");
    is($r->{headers}{'grpc-status'}, '14', "no upstream, $name: grpc-status 14 in the head");
    is($r->{headers}{'content-type'}, $text ? 'application/grpc-web-text' : 'application/grpc-web+proto',
       "no upstream, $name: a gRPC-Web content-type");
    is($r->{frames}, 0, "no upstream, $name: no body");
}
$r = call(port => $tg->port(3), path => '/deny/tgtest.Test/Unary', size => 1);
ok($r->{status} == 200 && $r->{headers}{'grpc-status'} eq '7', 'denied: PERMISSION_DENIED (7) in the head');

# ---- the upstream's trailers-only answer (unknown method: 12) keeps gRPC-Web's head
my $h = $tg->http(POST => '/tgtest.Test/Nope', body => "\0\0\0\0\0",
                  headers => { 'Content-Type' => 'application/grpc-web+proto' });
ok($h->{status} == 200 && ($h->{headers}{'grpc-status'} // '') eq '12'
   && $h->{headers}{'content-type'} eq 'application/grpc-web+proto',
   "upstream's trailers-only answer: grpc-status 12 in the head, gRPC-Web content-type") or diag explain $h;
is($h->{headers}{'content-length'}, '0', '... with Content-Length: 0 (an HTTP/1.1 client sees its end)');

# ---- deadlines
$r = call(msgText => 'slow', n => 100, headers => { 'grpc-timeout' => '5S' });
is($r->{trailers}{'grpc-status'}, '0', 'within its grpc-timeout: OK');
$r = call(msgText => 'slow', n => 3000, headers => { 'grpc-timeout' => '300m' });
is($r->{trailers}{'grpc-status'} // $r->{headers}{'grpc-status'}, '4',
   'grpc-timeout reached: DEADLINE_EXCEEDED from the gateway');
ok($r->{endMs} >= 250 && $r->{endMs} < 2500, "... at the deadline ($r->{endMs} ms for 300m)");

# ---- CORS: the preflight answered by the gateway, the call's headers exposed
my $pre = $tg->http(OPTIONS => '/tgtest.Test/Unary', headers => {
    Origin => 'https://app.test', 'Access-Control-Request-Method' => 'POST',
    'Access-Control-Request-Headers' => 'content-type,x-grpc-web,x-user-agent,grpc-timeout' });
is($pre->{status}, 204, 'CORS preflight: 204 from the gateway');
is($pre->{headers}{'access-control-allow-origin'}, 'https://app.test', 'preflight: the origin allowed');
like($pre->{headers}{'access-control-allow-methods'}, qr/POST/, 'preflight: POST allowed');
is($pre->{headers}{'access-control-allow-headers'}, 'content-type,x-grpc-web,x-user-agent,grpc-timeout',
   'preflight: the gRPC-Web request headers allowed');
$r = call(size => 3, headers => { origin => 'https://app.test' });
is($r->{headers}{'access-control-allow-origin'}, 'https://app.test', 'call: Allow-Origin');
is($r->{headers}{'access-control-expose-headers'}, 'grpc-status,grpc-message',
   'call: grpc-status and grpc-message exposed');
is($r->{trailers}{'grpc-status'}, '0', 'call: OK');

# ---- a 4 MB message in text mode: streamed both ways, the worker's memory bounded
my ($worker) = $tg->worker_pids;
sub rss($pid) { open(my $f, '<', "/proc/$pid/status") or return 0; local $/; (<$f> =~ /VmRSS:\s+(\d+)/)[0] }
call(text => 1, size => 300 * 1024); # warm the pools
my $rss0 = rss($worker);
for my $h2 (0, 1) {
    $r = call(h2 => $h2, text => 1, size => 4 * 1024 * 1024, timeout => 40000);
    ok(@{$r->{messages}} == 1 && $r->{messages}[0]{len} == 4 * 1024 * 1024
       && $r->{messages}[0]{sha} eq $r->{sentSha} && $r->{trailers}{'grpc-status'} eq '0',
       ($h2 ? 'h2' : 'HTTP/1.1') . ': 4 MB message in text mode (5.6 MB base64 each way) echoed byte-exact')
        or diag explain { %$r, messages => scalar @{$r->{messages} // []} };
}
my $grew = rss($worker) - $rss0;
ok($grew < 3072, "worker RSS grew by $grew KB over two 4 MB text-mode calls (no whole-message buffering)");

# ---- stats and $grpc_status see gRPC-Web calls
my $st = decode_json($tg->http(GET => '/__stats')->{body});
my $lg = {};
for my $sv (values %{$st->{servers}}) {
    my $g = $sv->{locations}{'/tgtest.Test/'}{grpc} // {};
    $lg = $g if ($g->{0} // 0) > ($lg->{0} // 0);
}
ok(($lg->{0} // 0) >= 10 && ($lg->{9} // 0) >= 2 && ($lg->{13} // 0) >= 3 && ($lg->{4} // 0) >= 1,
   'stats: the gRPC-Web location counts statuses 0, 9, 13 and 4') or diag explain $lg;
$tg->stop;
my $log = do { local $/; open(my $f, '<', $tg->dir . '/grpc.log') or die; <$f> };
like($log, qr{^/tgtest\.Test/Unary 200 0$}m, 'access log: $grpc_status 0 for a gRPC-Web call');
like($log, qr{^/tgtest\.Test/Unary 200 9$}m, "access log: the upstream's status 9 from the trailer frame");
like($log, qr{^/tgtest\.Test/Unary 200 13$}m, 'access log: 13 for malformed base64');

# ---- config: gRPC-Web needs an HTTP/2 upstream
my $err = tg_conf_error(<<"C");
upstream h1 { server 127.0.0.1:$dead; }
server {
    listen %%PORT%%;
    location /a/ {
        grpc_web on;
        proxy_pass h1;
    }
}
C
like($err, qr/:4: "grpc_web on" needs an HTTP\/2 upstream: upstream "h1" is HTTP\/1\.1/,
     'grpc_web on with an HTTP/1.1 upstream: an error at the location (file:line)');
ok(tg_conf_ok(<<"C"), 'grpc_web on with protocol http2, and off with HTTP/1.1: valid');
upstream h2 { server 127.0.0.1:$dead; protocol http2; }
upstream h1 { server 127.0.0.1:$dead; }
server {
    listen %%PORT%%;
    grpc_web on;
    location /a/ { proxy_pass h2; }
    location /b/ { grpc_web off; proxy_pass h1; }
}
C
like(tg_conf_error("server { listen %%PORT%%; grpc_web maybe; }"), qr/:1: .*grpc_web/,
     'grpc_web takes on or off');
done_testing;
