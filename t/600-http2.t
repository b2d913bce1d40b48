# HTTP/2 to clients: h2 through ALPN on TLS listeners (and not with
# `http2 off`), h2c with prior knowledge on a `listen ... http2` port that
# still answers HTTP/1.1, `Upgrade: h2c` never honoured nor forwarded, the
# h2 -> HTTP/1.1 mapping (pseudo-headers, Host, cookie crumbs, framing),
# malformed requests refused as stream errors and never forwarded, response
# fields (no connection-specific ones), bodies both ways with bounded memory,
# many streams on one connection, SSE per event, GOAWAY on keepalive_requests,
# idle timeout and graceful stop with a stream in flight.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::H2;

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $up = node_upstream('echo');
# a small ASan quarantine, so the memory check means the same under ASan
my $asan = join(':', grep { length } $ENV{ASAN_OPTIONS} // '', 'quarantine_size_mb=4');
my $tg = tg_start(<<"C", env => { ASAN_OPTIONS => $asan });
workers 1;
log_format proto "\$server_protocol \$request_method \$request_uri \$status [\$request]";
server {
    listen %%PORT%% http2;
    listen %%PORT2%% tls;
    listen %%PORT3%%;
    server_name a.test localhost;
    client_max_body_size 200m;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    access_log %%DIR%%/access.log proto;
    location / { proxy_pass $up->{addr}; }
    location = /local { return 200 "local \$host \$server_protocol\\n"; }
}
server {
    listen %%PORT4%% tls;
    server_name off.test;
    http2 off;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    return 200 "off\\n";
}
C
my ($h2c, $tls, $plain, $off) = map { $tg->port($_) } 1 .. 4;

# --- negotiation
my $r = curl_req($tls, '/local', proto => 'h2', tls => 1, host => 'a.test');
is($r->{version}, '2', 'TLS + ALPN: HTTP/2');
is($r->{body}, "local a.test HTTP/2.0\n", 'a local answer over h2, $server_protocol HTTP/2.0');
$r = curl_req($tls, '/local', proto => 'h1', tls => 1, host => 'a.test');
is($r->{version}, '1.1', 'the same TLS port still speaks HTTP/1.1');
is($r->{body}, "local a.test HTTP/1.1\n", '... $server_protocol HTTP/1.1');
like(s_client($off, servername => 'off.test', args => ['-alpn', 'h2,http/1.1']),
     qr/ALPN protocol: http\/1\.1/, 'http2 off: ALPN chooses http/1.1');
$r = curl_req($off, '/', proto => 'h2', tls => 1, host => 'off.test');
is("$r->{version} $r->{body}", "1.1 off\n", 'http2 off: curl --http2 gets HTTP/1.1');

$r = curl_req($h2c, '/local', proto => 'h2');
is("$r->{version} $r->{status}", '2 200', 'h2c with prior knowledge on "listen ... http2"');
$r = curl_req($h2c, '/local', proto => 'h1');
is("$r->{version} $r->{body}", "1.1 local localhost HTTP/1.1\n",
   'the http2 port answers HTTP/1.1 when the preface is absent');
$r = curl_req($plain, '/local', proto => 'h2');
isnt($r->{version} // '', '2', 'a port without http2: no h2c');

# --- Upgrade: h2c is dropped
$up->clear_log;
$r = curl_req($plain, '/up', proto => 'h1', args => ['--http2']);
is("$r->{version} $r->{status}", '1.1 200', 'Upgrade: h2c over HTTP/1.1 is not honoured');
my ($e) = $up->log->@*;
ok($e && !exists $e->{headers}{upgrade} && !exists $e->{headers}{'http2-settings'},
   '... nor forwarded (no Upgrade, no HTTP2-Settings upstream)');

# --- mapping
$up->clear_log;
$r = curl_req($tls, '/p/../x?y=1', proto => 'h2', tls => 1, host => 'a.test',
              headers => [Cookie => 'a=1', Cookie => 'b=2'], args => ['--path-as-is']);
($e) = $up->log->@*;
is($e->{url}, '/p/../x?y=1', 'the request-target goes upstream as sent');
is($e->{httpVersion}, '1.1', 'upstreams stay HTTP/1.1');
is($e->{headers}{host}, "a.test:$tls", 'Host from :authority');
is($e->{headers}{cookie}, 'a=1; b=2', 'cookie crumbs joined with "; "');
is($e->{headers}{'x-forwarded-proto'}, 'https', 'X-Forwarded-Proto https');
my $body = 'z' x 100_000;
$r = curl_req($h2c, '/post', proto => 'h2', data => $body, method => 'POST');
my $j = decode_json($r->{body});
is("$j->{bodyLength} $j->{headers}{'content-length'}", '100000 100000',
   'a body with content-length goes upstream with Content-Length');

# a body without content-length: chunked upstream
$up->clear_log;
my $h = Tollgate::H2->connect($h2c);
$h->headers(1, Tollgate::H2::request_fields('/nolen', method => 'POST'));
$h->data(1, 'abc');
$h->data(1, 'defg', end_stream => 1);
my @f = $h->read_frames(until => sub ($f) { $f->{type} == 0 && ($f->{flags} & 1) }, timeout => 5);
my ($hd) = grep { $_->{type} == 1 } @f;
is($hd && $hd->{status}, 200, 'a body without content-length is answered');
($e) = $up->log->@*;
is("$e->{body} " . ($e->{headers}{'transfer-encoding'} // ''), 'abcdefg chunked',
   '... and went upstream chunked');
$h->close;

# responses are encoded without HPACK's dynamic table (as nginx does): the
# first block sets the table to 0 bytes, and no field is added to it, in the
# first response or in a second one with the same fields
$h = Tollgate::H2->connect($h2c);
my @reps;
for my $id (1, 3) {
    $h->headers($id, Tollgate::H2::request_fields("/hpack$id"), end_stream => 1);
    @f = $h->read_frames(until => sub ($f) { $f->{type} == 0 && ($f->{flags} & 1) }, timeout => 5);
    ($hd) = grep { $_->{type} == 1 } @f;
    push @reps, [$hd ? Tollgate::H2::hpack_reps($hd->{payload}) : ()];
}
is_deeply($reps[0][0], [size_update => 0], 'first response block: dynamic table size update to 0');
cmp_ok(scalar(@{$reps[0]}), '>=', 4, '... then its fields') or diag explain \@reps;
is(scalar(grep { $_->[1] eq 'incremental' } map { @$_ } @reps), 0,
   'no response field is added to the dynamic table');
is(scalar(grep { $_->[0] eq 'size_update' } @{$reps[1]}), 0, 'the second block needs no update');
$h->close;

# HEADERS and DATA with END_STREAM in one packet: the body is still a body
$up->clear_log;
$h = Tollgate::H2->connect($h2c);
$h->write(Tollgate::H2::frame_bytes(1, 0x4, 1, Tollgate::H2::hpack(@{Tollgate::H2::request_fields(
              '/onepacket', method => 'POST', extra => ['content-length' => 5])}))
          . Tollgate::H2::frame_bytes(0, 0x1, 1, 'hello'));
@f = $h->read_frames(until => sub ($f) { $f->{type} == 0 && ($f->{flags} & 1) }, timeout => 5);
($e) = $up->log->@*;
is($e && "$e->{body} $e->{headers}{'content-length'}", 'hello 5',
   'HEADERS + DATA END_STREAM in one read: the body goes upstream');
$h->close;

# --- malformed requests: stream errors, never forwarded
my @bad = (
    ['uppercase name', ['X-Upper' => '1']],
    ['connection', [connection => 'close']],
    ['keep-alive', ['keep-alive' => '5']],
    ['proxy-connection', ['proxy-connection' => 'x']],
    ['transfer-encoding', ['transfer-encoding' => 'chunked']],
    ['upgrade', [upgrade => 'websocket']],
    ['te other than trailers', [te => 'gzip']],
);
$up->clear_log;
for my $b (@bad) {
    my ($what, $extra) = @$b;
    my $c = Tollgate::H2->connect($h2c);
    $c->headers(1, Tollgate::H2::request_fields('/bad', extra => $extra), end_stream => 1);
    my @g = $c->read_frames(until => sub ($f) { $f->{type} == 3 || $f->{type} == 1 });
    my ($rst) = grep { $_->{type} == 3 } @g;
    is($rst && $rst->{code}, 1, "$what: RST_STREAM PROTOCOL_ERROR");
    $c->close;
}
{
    my $c = Tollgate::H2->connect($h2c);
    $c->headers(1, [':method' => 'GET', ':scheme' => 'http', ':authority' => 'a'], end_stream => 1);
    my @g = $c->read_frames(until => sub ($f) { $f->{type} == 3 || $f->{type} == 1 });
    ok((grep { $_->{type} == 3 && $_->{code} == 1 } @g), 'no :path: RST_STREAM PROTOCOL_ERROR');
    $c = Tollgate::H2->connect($h2c);
    $c->headers(1, Tollgate::H2::request_fields('/bad', method => 'POST',
                                                 extra => ['content-length' => 3]));
    $c->data(1, 'abcdef', end_stream => 1);
    @g = $c->read_frames(until => sub ($f) { $f->{type} == 3 });
    ok((grep { $_->{type} == 3 && $_->{code} == 1 } @g),
       'content-length disagreeing with DATA: RST_STREAM PROTOCOL_ERROR');
    $c = Tollgate::H2->connect($h2c);
    $c->headers(1, Tollgate::H2::request_fields('/bad', extra => [host => 'other']),
                end_stream => 1);
    @g = $c->read_frames(until => sub ($f) { $f->{type} == 1 });
    is((grep { $_->{type} == 1 } @g)[0]{status}, 400, ':authority and host disagreeing: 400');
}
is(scalar(grep { $_->{url} eq '/bad' && $_->{complete} } $up->log->@*), 0,
   'no malformed request reached the upstream');

# --- PRIORITY frames: RFC 7540 priorities are off (SETTINGS_NO_RFC7540_PRIORITIES),
# so their content is ignored, a stream depending on itself included (RFC 9113
# 5.3.2); the framing rule stays: stream 0 is a connection error (6.3)
{
    my $c = Tollgate::H2->connect($h2c);
    $c->priority(3, 3);      # depends on itself: ignored
    $c->priority(5, 1, 200); # an idle stream: ignored
    $c->headers(1, Tollgate::H2::request_fields('/prio'), end_stream => 1);
    my @g = $c->read_frames(until => sub ($f) { $f->{type} == 1 || $f->{type} == 7 });
    is(join(' ', map { $_->{name} } grep { $_->{type} == 1 || $_->{type} == 7 } @g), 'HEADERS',
       'PRIORITY frames on streams: ignored, the request is answered');
    $c->priority(0);
    ok($c->closed(5), 'PRIORITY on stream 0: connection closed');
    my ($g) = grep { $_->{type} == 7 } @{$c->{seen}};
    is($g && "$g->{code} $g->{last_stream}", '1 1', '... GOAWAY PROTOCOL_ERROR, last stream 1');
}

# --- response fields
$r = curl_req($h2c, '/headers?x-a=1&keep-alive=timeout%3D5', proto => 'h2');
is($r->{headers}{'x-a'}, '1', 'response fields pass');
ok(!exists $r->{headers}{'keep-alive'} && !exists $r->{headers}{connection} &&
   !exists $r->{headers}{'transfer-encoding'}, 'no connection-specific response fields');

# --- bodies: large both ways, memory bounded
my $rss0 = rss($tg);
$r = curl_req($tls, '/size/50000000', proto => 'h2', tls => 1, host => 'a.test',
              args => ['-o', '/dev/null', '-w', '%{size_download}'], timeout => 60);
like($r->{body}, qr/50000000$/, '50 MB download over h2');
my $big = 'q' x 20_000_000;
$r = curl_req($h2c, '/upload', proto => 'h2', data => $big, method => 'POST', timeout => 60);
$j = eval { decode_json($r->{body}) } // {};
is($j->{bodyLength}, 20_000_000, '20 MB upload over h2');
my $grow = rss($tg) - $rss0;
cmp_ok($grow, '<', 8000, "worker RSS grew by $grow KB (bounded)");

# --- one connection, idle between large and small responses: the next
# responses are whole (the frame buffer's pages go back to the kernel once
# a connection rests, src/h2_mem.c: t/607-http2-rest.t)
{
    my $d = $tg->dir;
    my @sizes = (300_000, 5_000, 300_000, 70_000);
    my @args = map { ('-o', "$d/seq$_.out", "https://a.test:$tls/size/$sizes[$_]") } 0 .. $#sizes;
    my $w = `curl -s -k --http2 --max-time 20 --resolve a.test:$tls:127.0.0.1 -w '%{num_connects},' @args`;
    is($w, '1,0,0,0,', 'h2: four responses in a row on one connection');
    for my $i (0 .. $#sizes) {
        open(my $fh, '<', "$d/seq$i.out") or die;
        local $/;
        my $got = <$fh> // '';
        ok($got eq body_pattern($sizes[$i]), "h2: response $i ($sizes[$i] bytes) after an idle round is whole");
    }
}

# --- a stream whose window stays shut does not stall the others
$h = Tollgate::H2->connect($h2c, settings => [4, 0]); # every stream window 0
$h->headers(1, Tollgate::H2::request_fields('/size/1000000'), end_stream => 1);
$h->headers(3, Tollgate::H2::request_fields('/size/30000'), end_stream => 1);
$h->window_update(3, 1 << 20);
my $got3 = 0;
@f = $h->read_frames(until => sub ($f) { $f->{type} == 0 && $f->{stream} == 3 && ($f->{flags} & 1) },
                     timeout => 5);
$got3 += length $_->{payload} for grep { $_->{type} == 0 && $_->{stream} == 3 } @f;
is($got3, 30000, 'stream 3 complete while stream 1 has no window');
is(scalar(grep { $_->{type} == 0 && $_->{stream} == 1 } @f), 0, '... and stream 1 got nothing');
$h->window_update(1, 2_000_000);
$h->window_update(0, 2_000_000);
my $got1 = 0;
@f = $h->read_frames(until => sub ($f) { $f->{type} == 0 && $f->{stream} == 1 && ($f->{flags} & 1) },
                     timeout => 10);
$got1 += length $_->{payload} for grep { $_->{type} == 0 && $_->{stream} == 1 } @f;
is($got1, 1_000_000, 'stream 1 completes once its window opens');
$h->close;

# --- many streams on one connection
my $h2load = `h2load -n 600 -c 1 -m 100 http://127.0.0.1:$h2c/local 2>&1`;
like($h2load, qr/600 succeeded/, '600 requests, 100 concurrent streams on one connection');
like($h2load, qr/status codes: 600 2xx/, '... all 200');

# --- SSE arrives per event
my $t0 = time;
open(my $sse, '-|', 'curl', '-sN', '--http2-prior-knowledge', "http://127.0.0.1:$h2c/sse/4")
    or die;
my @times;
while (my $line = <$sse>) { push @times, time - $t0 if $line =~ /^data:/ }
close $sse;
is(scalar @times, 4, 'SSE over h2: 4 events');
cmp_ok($times[-1] - $times[0], '>', 0.1, 'events arrive as they are sent, not at the end');

# --- graceful stop: GOAWAY, the stream in flight finishes
$h = Tollgate::H2->connect($h2c);
$h->headers(1, Tollgate::H2::request_fields('/delay/700'), end_stream => 1);
sleep 0.2;
$tg->signal('TERM');
@f = $h->read_frames(until => sub ($f) { $f->{type} == 0 && ($f->{flags} & 1) }, timeout => 5);
ok((grep { $_->{type} == 7 } @f), 'graceful stop: GOAWAY');
is((grep { $_->{type} == 1 } @f)[0]{status}, 200, '... the stream in flight was answered');
ok($h->closed(5), '... then the connection closed');
$tg->stop;

like(Tollgate::Test::_slurp($tg->dir . '/access.log'), qr/^HTTP\/2\.0 GET \/local 200 \[GET \/local HTTP\/2\.0\]$/m,
     'access log: $server_protocol HTTP/2.0');

# --- idle timeout: GOAWAY then close
my $tg2 = tg_start(<<"C");
server {
    listen %%PORT%% http2;
    timeouts idle=300ms;
    keepalive_requests 5;
    location = /local { return 200 "ok\\n"; }
}
C
my $ka_port = $tg2->port;
# --- keepalive_requests: GOAWAY after the 5th stream
$h = Tollgate::H2->connect($ka_port);
$h->headers(2 * $_ - 1, Tollgate::H2::request_fields('/local'), end_stream => 1) for 1 .. 6;
@f = ();
push @f, $h->read_frames(timeout => 3) until $h->{eof} || @f > 40 || grep { $_->{type} == 7 } @f;
my ($ga) = grep { $_->{type} == 7 } @f;
is($ga && "$ga->{last_stream} $ga->{code}", '9 0', 'keepalive_requests 5: GOAWAY, last stream 9');
$h->closed(3);
my @answered = grep { $_->{type} == 1 } @f, @{$h->{seen} // []};
is(scalar @answered, 5, '... the 5 streams before it answered');

$h = Tollgate::H2->connect($tg2->port);
my $t1 = time;
ok($h->closed(5), 'idle h2 connection closed');
ok((grep { $_->{type} == 7 && $_->{code} == 0 } @{$h->{seen}}), '... after a GOAWAY NO_ERROR');
cmp_ok(time - $t1, '<', 2, '... after the idle timeout');
$tg2->stop;

sub rss($g) {
    my $total = 0;
    for my $pid ($g->worker_pids) {
        open(my $fh, '<', "/proc/$pid/status") or next;
        while (<$fh>) { $total += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $total;
}

done_testing;
