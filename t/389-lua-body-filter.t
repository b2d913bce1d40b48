# lua_body_filter: the script sees the response body round by round
# (tg.arg.chunk, tg.arg.eof) and replaces or drops it. Checked against the
# echo upstream: a 50 MB streamed body uppercased with the worker's RSS flat,
# a dropped body, an appended trailer, server-sent events still arriving one
# by one, HTTP/2, compression after the filter, a local answer, no call for
# HEAD/204/304, and a failing filter aborting the response.
use v5.36;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);
use Compress::Raw::Zlib;
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $root = Tollgate::Test::repo_root();
# Under AddressSanitizer freed memory (each round's Lua strings) waits in a
# quarantine of 256 MB by default before reuse; a small one keeps the RSS
# check meaningful there too (as in t/331).
my $asan = join(':', grep { length } $ENV{ASAN_OPTIONS} // '', 'quarantine_size_mb=4');
my $tg = tg_start(<<"C", env => { ASAN_OPTIONS => $asan }, errors_ok => [qr/lua body_filter: /], files => {
workers 1;
lua_shared_dict calls 64k;
server {
    listen %%PORT%%;
    listen %%PORT2%% http2;
    location / { lua_body_filter %%DIR%%/upper.lua; proxy_pass $up->{addr}; proxy_timeouts read=60s; }
    location /drop/ { lua_body_filter %%DIR%%/drop.lua; proxy_pass http://$up->{addr}/; }
    location /count/ { lua_body_filter %%DIR%%/count.lua; proxy_pass http://$up->{addr}/; }
    location /gz/ {
        compress gzip;
        compress_min_length 1;
        lua_body_filter %%DIR%%/upper.lua;
        proxy_pass http://$up->{addr}/;
    }
    location = /local { lua_body_filter %%DIR%%/upper.lua; return 200 "made here\\n"; }
    location /err/ { lua_body_filter %%DIR%%/err.lua; proxy_pass http://$up->{addr}/; }
    location /bad/ { lua_body_filter %%DIR%%/bad.lua; proxy_pass http://$up->{addr}/; }
    location = /calls { lua_access %%DIR%%/calls.lua; }
    location /redact/ { lua_body_filter $root/lua/examples/redact.lua; proxy_pass http://$up->{addr}/; }
}
C
    'upper.lua' => <<'L',
if tg.phase() ~= "body_filter" then error("phase " .. tg.phase()) end
tg.arg.chunk = tg.arg.chunk:upper()
L
    'drop.lua' => <<'L',
if tg.arg.eof then tg.arg.chunk = "[dropped]" else tg.arg.chunk = nil end
L
    'count.lua' => <<'L',
tg.shared.calls:incr("n", 1, 0)
if tg.arg.eof then tg.arg.chunk = tg.arg.chunk .. "<end " .. tg.resp.status() .. ">" end
L
    'err.lua' => <<'L',
local n = tg.ctx.n or 0
tg.ctx.n = n + 1
if n == 2 then error("boom in round " .. n) end
L
    'bad.lua' => <<'L',
tg.arg.chunk = 42
L
    'calls.lua' => <<'L',
tg.exit(200, tostring(tg.shared.calls:get("n") or 0))
L
});
my ($worker) = $tg->worker_pids;
ok($worker, 'worker running') or BAIL_OUT('no worker');

sub rss_kb($pid) {
    open(my $fh, '<', "/proc/$pid/status") or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

# GET over HTTP/1.1, reading the chunked answer as it comes (up to $limit
# seconds): $on_data->(elapsed, body bytes) per read, $on_tick->() at least
# every 50 ms. Returns (head, complete: the terminating chunk arrived).
sub stream_get($path, $limit, $on_data, $on_tick = sub { }) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    print $s "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    my $t0 = time;
    my $sel = IO::Select->new($s);
    my ($buf, $head, $done) = ('', undef, 0);
    while (time < $t0 + $limit && !$done) {
        $on_tick->();
        next unless $sel->can_read(0.05);
        my $got = sysread($s, $buf, 1 << 20, length $buf);
        last unless $got;
        if (!defined $head) {
            next unless $buf =~ /\r\n\r\n/;
            $head = substr($buf, 0, $+[0], '');
        }
        my $data = '';
        while ($buf =~ /^([0-9a-fA-F]+)\r\n/ && length($buf) >= $+[0] + hex($1) + 2) {
            my ($n, $at) = (hex $1, $+[0]);
            $done = 1, last if $n == 0;
            $data .= substr($buf, $at, $n);
            substr($buf, 0, $at + $n + 2, '');
        }
        $on_data->(time - $t0, $data) if length $data;
    }
    return ($head // '', $done);
}

# ---- 50 MB streamed, uppercased, memory flat ----------------------------------------

{
    my $size = 50 * 1024 * 1024;
    my $base = rss_kb($worker);
    my ($max, $n, $bad) = ($base, 0, 0);
    my ($head, $done) = stream_get("/stream/$size", 120, sub ($t, $data) {
        $bad++ if $data ne uc body_pattern(length $data, $n);
        $n += length $data;
    }, sub { my $r = rss_kb($worker); $max = $r if $r > $max });
    like($head, qr{^HTTP/1.1 200}, '50 MB: 200');
    like($head, qr/^Transfer-Encoding: chunked\r$/mi, '50 MB: chunked');
    unlike($head, qr/^Content-Length:/mi, '50 MB: no Content-Length');
    ok($done, '50 MB: the body ended');
    is($n, $size, '50 MB: every byte');
    is($bad, 0, '50 MB: every byte uppercased');
    cmp_ok($max - $base, '<', 16 * 1024, '50 MB: worker RSS grew by less than 16 MB')
        or diag "base $base kB, max $max kB";
    note "worker RSS base $base kB, max $max kB";
}

# ---- a body with Content-Length, changed in length ---------------------------------

{
    my $r = $tg->http(GET => '/size/1000');
    is($r->{status}, 200, 'sized: 200');
    ok(!exists $r->{headers}{'content-length'}, 'sized: Content-Length removed');
    ok($r->{body} eq uc body_pattern(1000), 'sized: uppercased');
    $r = $tg->http(GET => '/drop/size/100000');
    is($r->{status}, 200, 'drop: 200');
    is($r->{body}, '[dropped]', 'drop: the body replaced at eof');
    ok(!exists $r->{headers}{'content-length'}, 'drop: no Content-Length');
    $r = $tg->http(GET => '/count/chunked/3000/3');
    ok($r->{body} eq body_pattern(3000) . "<end 200>", 'eof: appended after the last round');
    $r = $tg->http(GET => '/local');
    is($r->{body}, "MADE HERE\n", 'a local answer is filtered too');
    # keep-alive: two answers on one connection, both whole
    my $c = $tg->keepalive;
    for my $i (1, 2) {
        my $k = $c->request(GET => '/size/5000');
        ok($k->{body} eq uc body_pattern(5000), "keep-alive answer $i");
    }
    $c->close;
}

# ---- lua/examples/redact.lua --------------------------------------------------------

{
    my $r = $tg->http(GET => '/redact/headers?card=4111222233334444');
    like($r->{body}, qr/4111\*{8}4444/, 'redact: the card number masked');
    unlike($r->{body}, qr/4111222233334444/, 'redact: not there in clear');
    $r = $tg->http(GET => '/redact/headers?card=4111222233334444&Content-Type=text/plain');
    like($r->{body}, qr/4111222233334444/, 'redact: other types left alone');
}

# ---- no call without a body ---------------------------------------------------------

{
    my $before = $tg->http(GET => '/calls')->{body};
    my $r = $tg->http(HEAD => '/count/size/500');
    is($r->{status}, 200, 'HEAD: 200');
    ok(!exists $r->{headers}{'content-length'}, 'HEAD: no Content-Length, as the GET');
    is($tg->http(GET => '/count/status/204')->{status}, 204, 'a 204 answer');
    is($tg->http(GET => '/count/status/304')->{status}, 304, 'a 304 answer');
    is($tg->http(GET => '/calls')->{body}, $before, 'HEAD, 204, 304: the filter was not called');
    $tg->http(GET => '/count/size/10');
    cmp_ok($tg->http(GET => '/calls')->{body}, '>', $before, 'a GET calls it');
}

# ---- server-sent events pass one by one ---------------------------------------------

{
    my $N = 6;
    my (@at, $text);
    my ($head, $done) = stream_get("/sse/$N", 20, sub ($t, $data) {
        $text .= $data;
        my $have = () = $text =~ /^DATA: EVENT \d+\n\n/mg;
        push @at, $t while @at < $have;
    });
    like($head, qr{^Content-Type: text/event-stream}mi, 'SSE: event stream');
    ok($done, 'SSE: ended');
    is(scalar @at, $N, "SSE: all $N events, uppercased");
    my @gaps = map { $at[$_] - $at[$_ - 1] } 1 .. $#at;
    is(scalar(grep { $_ > 0.02 } @gaps), $N - 1, 'SSE: each event arrives on its own')
        or diag "arrivals: @at";
}

# ---- compression runs after the filter ---------------------------------------------

{
    my $r = $tg->http(GET => '/gz/size/20000', headers => { 'Accept-Encoding' => 'gzip' });
    is($r->{headers}{'content-encoding'}, 'gzip', 'gzip: compressed');
    my ($inf) = Compress::Raw::Zlib::Inflate->new(-WindowBits => WANT_GZIP);
    my ($in, $out) = ($r->{body}, '');
    $inf->inflate($in, $out);
    ok($out eq uc body_pattern(20000), 'gzip: the filtered bytes were compressed');
}

# ---- HTTP/2 ---------------------------------------------------------------------------

SKIP: {
    skip 'curl without HTTP/2', 3 unless `curl -V` =~ /HTTP2/;
    my $port = $tg->port(2);
    my $out = `curl -s --http2-prior-knowledge -m 20 -D - http://127.0.0.1:$port/stream/3000000`;
    my ($head, $body) = split /\r\n\r\n/, $out, 2;
    like($head, qr{^HTTP/2 200}, 'h2: 200');
    unlike($head, qr/^content-length:/mi, 'h2: no content-length');
    ok(($body // '') eq uc body_pattern(3000000), 'h2: 3 MB uppercased')
        or diag 'got ' . length($body // '') . ' bytes';
}

# ---- a failing filter aborts the response ------------------------------------------

{
    my $off = $tg->log_offset;
    my ($head, $done) = stream_get('/err/stream/2000000', 20, sub { });
    like($head, qr{^HTTP/1.1 200}, 'error: the header was sent');
    ok(!$done, 'error: the body is cut (no last chunk)');
    ok($tg->wait_log(qr{lua body_filter: \S*err\.lua:3: boom in round 2}, 5, $off),
       'error: logged with the script and line');
    $off = $tg->log_offset;
    my $r = $tg->http(GET => '/bad/size/100');
    ok($r->{error} || ($r->{body} // '') eq '', 'not a string: aborted');
    ok($tg->wait_log(qr{lua body_filter: \S*bad\.lua: tg\.arg\.chunk is a number}, 5, $off),
       'not a string: logged');
    is($tg->http(GET => '/size/10')->{body}, uc body_pattern(10), 'the worker serves on');
}

like(tg_conf_error("lua_body_filter x.lua;\n"), qr/:1: .*lua_body_filter.*not allowed/,
     'main scope refused with file:line');

$tg->stop;
done_testing;
