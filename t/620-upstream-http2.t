# HTTP/2 to upstreams (`protocol http2`): requests from HTTP/1.1 and HTTP/2
# clients go as streams of multiplexed connections to a Node `http2` server
# (t/upstream/h2-echo.js, which describes what it received): heads and
# bodies byte-exact, 1 MB both ways, 200 concurrent requests on a few
# connections (http2_streams_per_connection, the server's
# MAX_CONCURRENT_STREAMS), a stream reset by the upstream (502, its siblings
# unharmed), GOAWAY (the unprocessed request retried on a fresh
# connection), a client that goes away (the upstream sees the cancel), the
# upstream killed and restarted, h2 over TLS (ALPN), config errors.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempfile);
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $pki = make_pki();
my $dir = $pki->{dir};
my $lh = Tollgate::TLS::_issue($dir, 'localhost', 'rsa', 'localhost', "$dir/ca");
my $up = node_upstream('h2-echo');
my $few = node_upstream('h2-echo', env => { MAX_STREAMS => 10 });
my $tls = node_upstream('h2-echo', env => { CERT => $lh->{cert}, KEY => $lh->{key} });
my $plain = node_upstream('echo'); # HTTP/1.1 only: what an h2 client gets from it

my @errors_ok = (qr/reset the HTTP\/2 stream/, qr/connect\(\) to .* failed/,
                 qr/HTTP\/2 connection/, qr/no live upstream/, qr/timed out reading from upstream/);
my $tg = tg_start(<<"C", errors_ok => \@errors_ok);
http2_max_streams 256;
upstream h2 { server $up->{addr}; protocol http2; http2_streams_per_connection 50; }
upstream few { server $few->{addr}; protocol http2; }
upstream sec { server localhost:$tls->{port}; protocol http2; tls on; tls_trusted_ca $pki->{ca}; }
upstream h1only { server $plain->{addr}; protocol http2; }
server {
    listen %%PORT%%;
    listen %%PORT2%% http2;
    location / { proxy_pass h2; }
    location /few/ { proxy_pass few; }
    location /sec/ { proxy_pass sec; }
    location /h1only/ { proxy_pass h1only; proxy_timeouts connect=1s read=2s; }
    location /short/ { proxy_pass h2; proxy_timeouts read=500ms; }
}
C
my ($p1, $p2) = ($tg->port(1), $tg->port(2));

# what the upstream saw (it speaks h2c only)
sub sessions($upstream) {
    my $out = `curl -s --max-time 5 --http2-prior-knowledge http://$upstream->{addr}/sessions`;
    return eval { decode_json($out) } // { sessions => -1, cancels => [] };
}

sub curl(@args) {
    my $out = `curl -s -S --max-time 20 @args 2>&1`;
    return $out;
}

# ---- heads and bodies, from HTTP/1.1 and HTTP/2 clients
my $r = $tg->http(GET => '/a/b?x=1&y=%20', headers => { 'X-Custom' => 'Value', Cookie => 'a=1' });
is($r->{status}, 200, 'h1 client: 200 from the h2 upstream');
my $j = decode_json($r->{body});
is($j->{method}, 'GET', 'method');
is($j->{path}, '/a/b?x=1&y=%20', ':path as received');
is($j->{scheme}, 'http', ':scheme http');
is($j->{authority}, "127.0.0.1:$p1", ':authority from Host');
is($j->{headers}{'x-custom'}, 'Value', 'a header, its name lowercased');
is($j->{headers}{'x-forwarded-for'}, '127.0.0.1', 'X-Forwarded-For added');
ok(!exists $j->{headers}{host} && !exists $j->{headers}{connection}, 'no host or connection field');
is($r->{headers}{'content-type'}, 'application/json', 'response header passed back');

$r = $tg->http(POST => '/post', body => 'hello world', headers => { 'Content-Type' => 'text/plain' });
$j = decode_json($r->{body});
is($j->{length}, 11, 'POST body length');
is($j->{sha256}, sha256_hex('hello world'), 'POST body byte-exact');
is($j->{headers}{'content-length'}, '11', 'content-length passed on');

my $body = join '', map { chr(($_ * 7 + 3) % 256) } 0 .. 1048575;
my ($fh, $file) = tempfile(UNLINK => 1);
binmode $fh;
print $fh $body;
close $fh;
for my $c (['h1', "http://127.0.0.1:$p1"], ['h2', "--http2-prior-knowledge http://127.0.0.1:$p2"]) {
    my ($name, $url) = @$c;
    my $out = curl("--data-binary \@$file -H 'Content-Type: application/octet-stream' $url/upload");
    $j = eval { decode_json($out) } // {};
    is($j->{length}, 1048576, "$name client: 1 MB request body arrived whole");
    is($j->{sha256}, sha256_hex($body), "$name client: 1 MB request body byte-exact");
    $out = curl("-T $file -H 'Transfer-Encoding: chunked' $url/chunked") if $name eq 'h1';
    if ($name eq 'h1') {
        $j = eval { decode_json($out) } // {};
        is($j->{sha256}, sha256_hex($body), 'h1 chunked upload: byte-exact, no content-length');
        ok(!exists $j->{headers}{'content-length'} && !exists $j->{headers}{'transfer-encoding'},
           'h1 chunked upload: no framing field upstream');
    }
    $out = curl("$url/size/1048576");
    is(length($out), 1048576, "$name client: 1 MB response, its length");
    is(sha256_hex($out), sha256_hex(body_pattern(1048576)), "$name client: 1 MB response byte-exact");
    $out = curl("$url/stream/3000000");
    is(sha256_hex($out), sha256_hex(body_pattern(3000000)),
       "$name client: 3 MB without content-length, byte-exact");
}
$r = $tg->http(HEAD => '/size/5000');
is($r->{status}, 200, 'HEAD: 200');
is($r->{headers}{'content-length'}, '5000', 'HEAD: content-length of the body not sent');
is($r->{body}, '', 'HEAD: no body');

# ---- 200 concurrent requests from one HTTP/2 client
my ($cfh, $client) = tempfile(SUFFIX => '.js', UNLINK => 1);
print $cfh <<'JS';
// node CLIENT URL PREFIX N: N concurrent GETs of PREFIX/delay/200?i=K on one h2c
// session; prints {ok, statuses, sessions_seen: [distinct upstream sessions]}
'use strict';
const http2 = require('http2');
const [url, prefix, n] = process.argv.slice(2);
const s = http2.connect(url);
let left = +n, ok = 0;
const statuses = {}, seen = new Set();
setTimeout(() => { console.log(JSON.stringify({ error: 'timeout', ok })); process.exit(0); }, 20000);
for (let i = 0; i < +n; i++) {
    const req = s.request({ ':path': `${prefix}/delay/200?i=${i}` });
    let status = 0, body = '';
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', (d) => { body += d; });
    req.on('error', () => {});
    req.on('close', () => {
        statuses[status] = (statuses[status] || 0) + 1;
        try { const j = JSON.parse(body); if (j.path.endsWith(`i=${i}`)) ok++; seen.add(j.session); } catch (e) {}
        if (--left === 0) {
            console.log(JSON.stringify({ ok, statuses, sessions_seen: [...seen] }));
            process.exit(0);
        }
    });
}
JS
close $cfh;
sub concurrent($prefix, $n) {
    my $out = `cd @{[Tollgate::Test::repo_root()]}/t && timeout 30 node $client http://127.0.0.1:$p2 '$prefix' $n 2>&1`;
    return eval { decode_json((split /\n/, $out)[-1]) } // { error => $out };
}
my $before = sessions($up)->{sessions};
my $t0 = time;
my $c = concurrent('', 200);
my $took = time - $t0;
is($c->{ok}, 200, '200 concurrent requests: each got its own answer') or diag explain $c;
my $opened = sessions($up)->{sessions} - $before;
ok($opened >= 3 && $opened <= 6, "200 concurrent with 50 streams per connection: $opened new connections (4 expected)");
ok($took < 5, sprintf('the 200 ran at once (%.1f s for 200 x 200 ms)', $took));

$c = concurrent('/few', 50);
is($c->{ok}, 50, "server's MAX_CONCURRENT_STREAMS 10: 50 concurrent all answered") or diag explain $c;
my $fs = sessions($few)->{sessions};
ok($fs >= 5, "server's MAX_CONCURRENT_STREAMS 10 respected: $fs connections for 50 streams");

# ---- an upstream reset hurts its stream only
my $pid = open(my $slow, '-|', "curl -s --max-time 20 http://127.0.0.1:$p1/slow/20480/5") or die;
select(undef, undef, undef, 0.2);
$r = $tg->http(GET => '/reset');
is($r->{status}, 502, 'stream reset by the upstream before answering: 502');
my $mid = `curl -s --max-time 10 -o /dev/null -w '%{http_code} %{size_download}' http://127.0.0.1:$p1/reset-mid`;
like($mid, qr/^200 (\d+)/, 'reset mid-body: the head had gone (200)');
my ($got) = $mid =~ /^200 (\d+)/;
ok(defined $got && $got < 100000, 'reset mid-body: the client saw the body cut short');
my $sbody = do { local $/; <$slow> };
close $slow;
is(length($sbody), 20480, 'a sibling stream on the same connection finished whole');
$r = $tg->http(GET => '/after-reset');
is($r->{status}, 200, 'the connection serves on after the resets');

# ---- GOAWAY: the unprocessed request goes again on another connection
$r = $tg->http(GET => '/goaway/k1');
is($r->{status}, 200, 'refused by GOAWAY, retried: 200');
$r = $tg->http(POST => '/goaway/k2', body => 'x' x 5000);
$j = decode_json($r->{body});
is($j->{sha256}, sha256_hex('x' x 5000), 'a POST refused by GOAWAY is sent again whole');

# ---- the client goes away: the upstream sees its stream cancelled
curl("--max-time 1 -o /dev/null http://127.0.0.1:$p1/slow/100000/50");
ok(wait_until(sub { grep { $_ eq '/slow/100000/50' } @{sessions($up)->{cancels}} }, 5),
   'client gone: the upstream stream was reset (cancel seen by the server)');

# ---- timeouts
$r = $tg->http(GET => '/short/delay/2000');
is($r->{status}, 504, 'no answer within read timeout: 504');

# ---- TLS with ALPN h2
$r = $tg->http(GET => '/sec/x');
is($r->{status}, 200, 'h2 over TLS: 200');
$j = decode_json($r->{body});
is($j->{scheme}, 'https', 'h2 over TLS: :scheme https');
$r = $tg->http(GET => '/h1only/x');
is($r->{status}, 502, 'an HTTP/1.1-only server as an http2 upstream: 502');

# ---- the upstream killed mid-stream, then back
my $port = $up->{port};
open($slow, '-|', "curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 20 http://127.0.0.1:$p1/slow/40960/20") or die;
select(undef, undef, undef, 0.3);
$up->stop;
my $res = do { local $/; <$slow> };
close $slow;
my ($code, $size) = $res =~ /^(\d+) (\d+)/;
ok(defined $size && $size < 40960, "upstream killed mid-stream: the client's response cut short ($res)");
$r = $tg->http(GET => '/down');
is($r->{status}, 502, 'upstream down: 502');
$up = node_upstream('h2-echo', port => $port);
ok(wait_until(sub { $tg->http(GET => '/back')->{status} == 200 }, 15), 'upstream back: 200 again');

# ---- config errors
like(tg_conf_error("upstream u { server 127.0.0.1:1; protocol spdy; }\nserver { listen 1; location / { proxy_pass u; } }"),
     qr/:1: invalid protocol "spdy", expected "http1" or "http2"/, 'protocol: unknown value');
like(tg_conf_error("upstream u { server 127.0.0.1:1; http2_streams_per_connection 0; protocol http2; }"),
     qr/:1: invalid number "0" in "http2_streams_per_connection"/, 'http2_streams_per_connection: 0');
like(tg_conf_error("upstream u { server 127.0.0.1:1;\nhttp2_streams_per_connection 5; }"),
     qr/:1: upstream "u": "http2_streams_per_connection" without "protocol http2"/,
     'http2_streams_per_connection without protocol http2');

$tg->stop;
done_testing;
