# compress: gzip, br and zstd at the gateway. Round trips through the gzip,
# brotli and zstd command-line decoders for every size class around
# compress_min_length, with Content-Length and chunked, up to 10 MB, and for
# incompressible bodies; Accept-Encoding negotiation; the header changes (Vary
# merged, ETag weakened, Content-Length and Accept-Ranges gone); every skip
# rule; config errors and inheritance; and a Node app that compresses itself
# with the `compression` package passes through untouched.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use File::Temp qw(tempfile);
use IO::Socket::INET;
use Digest::SHA qw(sha256_hex);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT http_request);

for my $tool (qw(gzip brotli zstd)) {
    plan skip_all => "$tool not installed" unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

my %decoder = (gzip => 'gzip -dc', br => 'brotli -dc', zstd => 'zstd -dcq');
my @codings = qw(gzip br zstd);
my $MIN = 1024;

# $data decoded by the command-line tool for $enc; undef when it fails.
sub decode($enc, $data) {
    my ($fh, $file) = tempfile(UNLINK => 1);
    binmode $fh;
    print $fh $data;
    close $fh;
    my $out = `$decoder{$enc} < '$file' 2>/dev/null`;
    return $? == 0 ? $out : undef;
}

# The body as the client means it: decoded when the answer is encoded.
sub content($r) {
    my $ce = $r->{headers}{'content-encoding'};
    return defined $ce && $decoder{$ce} ? decode($ce, $r->{body}) : $r->{body};
}

my $up = node_upstream('echo');
my $long = 'x' x 3000;
my $tg = tg_start(<<"C",
server {
    listen %%PORT%%;
    compress gzip br zstd;
    location / { proxy_pass $up->{addr}; }
    location = /local { return 200 "$long"; }
}
server {
    listen %%PORT2%%;
    compress gzip br zstd;
    compress_min_length 100;
    location / { proxy_pass $up->{addr}; }
    location /novary/ { remove_header Vary; proxy_pass $up->{addr}; }
}
server {
    listen %%PORT3%%;
    compress zstd br gzip;
    compress_level gzip=1;
    location / { proxy_pass $up->{addr}; }
    location /size/ { compress off; proxy_pass $up->{addr}; }
    location /chunked/ { compress gzip; compress_level gzip=9; proxy_pass $up->{addr}; }
    location /stream/ {
        compress gzip;
        compress_types application/octet-stream;
        proxy_pass $up->{addr};
    }
    location /status/ { compress_types image/*; proxy_pass $up->{addr}; }
}
C
    errors_ok => [qr/closed the connection in the middle of the body/]);
sub get($port, $path, @headers) {
    return http_request($port, GET => $path, headers => \@headers, timeout => 30);
}
my ($P1, $P2, $P3) = map { $tg->port($_) } 1 .. 3;

# ---- round trips ---------------------------------------------------------------

for my $enc (@codings) {
    for my $n (0, 1, $MIN - 1, $MIN, $MIN + 1, 65536, 10 << 20) {
        my $r = get($P1, "/size/$n", 'Accept-Encoding' => $enc);
        my $want = $n >= $MIN ? $enc : undef;
        is($r->{headers}{'content-encoding'}, $want,
           "$enc, $n bytes with Content-Length: " . ($want ? 'compressed' : 'as it is'));
        ok(content($r) eq body_pattern($n), "$enc, $n bytes: round trip");
        if ($want) {
            ok(!exists $r->{headers}{'content-length'} &&
               ($r->{headers}{'transfer-encoding'} // '') eq 'chunked',
               "$enc, $n bytes: Content-Length removed, chunked");
            cmp_ok(length $r->{body}, '<', $n / 4, "$enc, $n bytes: smaller") if $n > 60000;
        } else {
            is($r->{headers}{'content-length'}, $n, "$enc, $n bytes: Content-Length kept");
        }
    }
    for my $c ([0, 1], [1, 1], [$MIN - 1, 3], [$MIN, 4], [$MIN + 1, 5], [600, 2], [5000, 10],
               [65536, 8], [10 << 20, 20]) {
        my ($n, $k) = @$c;
        my $r = get($P1, "/chunked/$n/$k", 'Accept-Encoding' => $enc);
        my $want = $n >= $MIN ? $enc : undef;
        is($r->{headers}{'content-encoding'}, $want,
           "$enc, $n bytes in $k chunks: " . ($want ? 'compressed' : 'as it is'));
        ok(content($r) eq body_pattern($n), "$enc, $n bytes in $k chunks: round trip");
        is($r->{headers}{'vary'}, 'Accept-Encoding', "$enc, $n bytes in $k chunks: Vary");
        is($r->{headers}{'content-length'}, $want ? undef : $n,
           "$enc, $n bytes in $k chunks: " . ($want ? 'chunked' : 'held, sent with Content-Length'));
    }
    for my $q ('/random/1000000', '/random/3000000?chunked=1') {
        my $r = get($P1, $q, 'Accept-Encoding' => $enc);
        is($r->{headers}{'content-encoding'}, $enc, "$enc, incompressible $q: compressed");
        my $body = content($r) // '';
        is(sha256_hex($body), $r->{headers}{'x-sha256'}, "$enc, incompressible $q: round trip");
    }
}

# several requests on one connection: nothing leaks from one to the next
{
    my $c = $tg->keepalive;
    for my $i (1 .. 3) {
        for my $enc (@codings) {
            my $r = $c->request(GET => "/chunked/3000/3", headers => ['Accept-Encoding' => $enc]);
            is($r->{headers}{'content-encoding'}, $enc, "keep-alive #$i $enc");
            ok(content($r) eq body_pattern(3000), "keep-alive #$i $enc: round trip");
            $r = $c->request(GET => "/size/10", headers => ['Accept-Encoding' => $enc]);
            ok(!exists $r->{headers}{'content-encoding'} && $r->{body} eq body_pattern(10),
               "keep-alive #$i $enc: small one after it as it is");
        }
    }
    $c->close;
}

# the gateway's own answers are compressed too
{
    my $r = get($P1, '/local', 'Accept-Encoding' => 'br');
    is($r->{headers}{'content-encoding'}, 'br', 'return answer compressed');
    is(content($r), $long, 'return answer round trip');
}

# an HTTP/1.0 client: no chunked framing, the close ends the body
{
    my $r = http_request($P1, GET => '/size/5000', version => '1.0',
                         headers => ['Accept-Encoding' => 'gzip']);
    is($r->{headers}{'content-encoding'}, 'gzip', 'HTTP/1.0: compressed');
    ok(!exists $r->{headers}{'transfer-encoding'} && $r->{closed}, 'HTTP/1.0: delimited by close');
    ok(content($r) eq body_pattern(5000), 'HTTP/1.0: round trip');
}

# ---- negotiation -----------------------------------------------------------------

my @negotiation = (
    [$P1, ['gzip'], 'gzip'],
    [$P1, ['br'], 'br'],
    [$P1, ['zstd'], 'zstd'],
    [$P1, ['gzip, deflate, br, zstd'], 'gzip'],
    [$P3, ['gzip, deflate, br, zstd'], 'zstd'],
    [$P3, ['gzip, br'], 'br'],
    [$P1, ['br;q=0.9, gzip;q=0.8'], 'br'],
    [$P1, ['gzip;q=0.5, br;q=0.5, zstd;q=0.6'], 'zstd'],
    [$P3, ['zstd;q=0.5, br;q=0.5, gzip;q=0.5'], 'zstd'],
    [$P1, ['gzip;q=0'], undef],
    [$P1, ['gzip;q=0, br'], 'br'],
    [$P1, ['*'], 'gzip'],
    [$P3, ['*'], 'zstd'],
    [$P1, ['*;q=0'], undef],
    [$P1, ['gzip;q=0, *'], 'br'],
    [$P1, ['*;q=0, zstd'], 'zstd'],
    [$P1, ['identity'], undef],
    [$P1, ['identity;q=0'], undef],
    [$P1, ['br, identity;q=0'], 'br'],
    [$P1, ['gzip;q=0.5, identity'], undef],
    [$P1, ['gzip, identity;q=0.5'], 'gzip'],
    [$P1, ['GZIP'], 'gzip'],
    [$P1, ['Br;Q=1.0'], 'br'],
    [$P1, ["  zstd ;  q=0.9 ,\tgzip ; q=0.8  "], 'zstd'],
    [$P1, ['x-gzip'], 'gzip'],
    [$P1, ['deflate, compress'], undef],
    [$P1, ['gzip;q=2, br'], 'br'],
    [$P1, ['gzip;q=0.5', 'br'], 'br'],
    [$P1, [''], undef],
    [$P1, [], undef],
);
for my $t (@negotiation) {
    my ($port, $lines, $want) = @$t;
    my @h = map { ('Accept-Encoding' => $_) } @$lines;
    my $r = get($port, '/random/5000', @h);
    my $name = (@$lines ? join(' | ', map { "\"$_\"" } @$lines) : 'no Accept-Encoding')
             . ($port == $P3 ? ' (zstd br gzip)' : '');
    is($r->{headers}{'content-encoding'}, $want, "$name -> " . ($want // 'identity'));
    is(sha256_hex(content($r) // ''), $r->{headers}{'x-sha256'}, "$name: round trip");
    is($r->{headers}{'vary'}, 'Accept-Encoding', "$name: Vary");
}

# ---- header changes -------------------------------------------------------------

{
    my $r = get($P2, '/headers?Vary=Origin', 'Accept-Encoding' => 'gzip');
    is($r->{headers}{'content-encoding'}, 'gzip', 'JSON compressed');
    is(decode_json(content($r) // '{}')->{url}, '/headers?Vary=Origin', 'JSON round trip');
    is($r->{headers}{vary}, 'Origin, Accept-Encoding', 'Vary merged with the upstream\'s');
    $r = get($P2, '/headers?Vary=accept-encoding', 'Accept-Encoding' => 'gzip');
    is($r->{headers}{vary}, 'accept-encoding', 'Vary already listing it: unchanged');
    $r = get($P2, '/headers?Vary=Origin&Vary=Accept-Encoding', 'Accept-Encoding' => 'gzip');
    my @vary = map { $_->[1] } grep { lc $_->[0] eq 'vary' } @{$r->{header_list}};
    is_deeply(\@vary, ['Origin', 'Accept-Encoding'], 'Vary on a second line: no duplicate');
    $r = get($P2, '/headers?Vary=*', 'Accept-Encoding' => 'gzip');
    is($r->{headers}{vary}, '*', 'Vary: * unchanged');
    is($r->{headers}{'content-encoding'}, 'gzip', 'and compressed');

    $r = get($P2, '/headers?ETag=%22abc%22', 'Accept-Encoding' => 'br');
    is($r->{headers}{etag}, 'W/"abc"', 'strong ETag weakened');
    $r = get($P2, '/headers?ETag=W/%22abc%22', 'Accept-Encoding' => 'br');
    is($r->{headers}{etag}, 'W/"abc"', 'weak ETag unchanged');
    $r = get($P2, '/headers?ETag=%22abc%22', 'Accept-Encoding' => 'identity');
    is($r->{headers}{etag}, '"abc"', 'ETag untouched when not compressed');

    $r = get($P2, '/headers?Accept-Ranges=bytes', 'Accept-Encoding' => 'zstd');
    ok(!exists $r->{headers}{'accept-ranges'}, 'Accept-Ranges dropped when compressed');
    $r = get($P2, '/headers?Accept-Ranges=bytes');
    is($r->{headers}{'accept-ranges'}, 'bytes', 'Accept-Ranges kept otherwise');

    $r = get($P2, '/headers?Content-Encoding=identity', 'Accept-Encoding' => 'gzip');
    my @ce = map { $_->[1] } grep { lc $_->[0] eq 'content-encoding' } @{$r->{header_list}};
    is_deeply(\@ce, ['gzip'], 'Content-Encoding: identity is replaced');
    ok(eval { decode_json(content($r)) }, 'and the body round trips');
}

# remove_header runs after compress
{
    my $r = get($P2, '/novary/x', 'Accept-Encoding' => 'gzip');
    is($r->{headers}{'content-encoding'}, 'gzip', 'remove_header Vary: still compressed');
    ok(!exists $r->{headers}{vary}, 'remove_header Vary removes compress\'s Vary');
}

# aborted responses: the client goes away in the middle, the upstream dies in
# the middle; the worker goes on (and under ASan nothing leaks)
{
    for my $enc (@codings) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $P1) or die;
        print $s "GET /random/20000000?chunked=1 HTTP/1.1\r\nHost: x\r\n"
               . "Accept-Encoding: $enc\r\n\r\n";
        my $got = '';
        sysread($s, $got, 1000);
        like($got, qr/^Content-Encoding: \Q$enc\E\r$/mi, "$enc: client leaves a compressed stream");
        close $s;
        my $r = get($P2, '/close-mid-body', 'Accept-Encoding' => $enc);
        ok(!defined $r->{status} || $r->{error} || $r->{closed}, "$enc: upstream dying mid-body ends the answer");
        $r = get($P1, '/size/5000', 'Accept-Encoding' => $enc);
        ok(content($r) eq body_pattern(5000), "$enc: next request fine after aborts");
    }
}

# ---- left alone ------------------------------------------------------------------

# Checks that the answer is not encoded, and whether it has Vary.
sub left_alone($r, $name, $vary = undef) {
    ok(!exists $r->{headers}{'content-encoding'}, "$name: not compressed");
    is($r->{headers}{vary}, $vary, "$name: " . ($vary ? 'Vary' : 'no Vary'));
}
{
    my $r = get($P2, '/headers?Content-Type=image/png', 'Accept-Encoding' => 'gzip');
    left_alone($r, 'type not listed');
    $r = get($P1, '/stream/100000', 'Accept-Encoding' => 'gzip');
    left_alone($r, 'application/octet-stream not listed');
    is(length $r->{body}, 100000, 'octet-stream body intact');
    $r = get($P2, '/headers?Content-Type=', 'Accept-Encoding' => 'gzip');
    left_alone($r, 'no Content-Type');

    $r = get($P2, '/headers?Content-Encoding=gzip', 'Accept-Encoding' => 'gzip, br, zstd');
    is($r->{headers}{'content-encoding'}, 'gzip', 'already encoded: its Content-Encoding kept');
    ok(eval { decode_json($r->{body}) }, 'already encoded: body passed as it came');
    is($r->{headers}{vary}, 'Accept-Encoding', 'already encoded: Vary added (as the compression package does)');

    $r = get($P2, '/headers?Cache-Control=public,%20no-transform', 'Accept-Encoding' => 'gzip');
    left_alone($r, 'Cache-Control: no-transform');
    $r = get($P2, '/headers', 'Accept-Encoding' => 'gzip', 'Cache-Control' => 'no-transform');
    left_alone($r, 'request Cache-Control: no-transform');

    $r = http_request($P1, HEAD => '/size/5000', headers => ['Accept-Encoding' => 'gzip']);
    left_alone($r, 'HEAD', 'Accept-Encoding');
    is($r->{headers}{'content-length'}, 5000, 'HEAD: Content-Length kept');

    $r = get($P2, '/status/204', 'Accept-Encoding' => 'gzip');
    is($r->{status}, 204, 'status 204');
    left_alone($r, 'status 204');
    $r = get($P2, '/status/304', 'Accept-Encoding' => 'gzip');
    is($r->{status}, 304, 'status 304');
    left_alone($r, 'status 304');
    $r = get($P2, '/status/206', 'Accept-Encoding' => 'gzip');
    is($r->{status}, 206, 'status 206');
    left_alone($r, 'status 206');
    ok(eval { decode_json($r->{body}) }, 'status 206: body as it came');

    $r = get($P1, '/size/5000', 'Accept-Encoding' => 'gzip', 'Range' => 'bytes=0-9');
    left_alone($r, 'Range request');
    ok($r->{body} eq body_pattern(5000), 'Range request: body as it came');

    $r = get($P1, '/size/5000', 'Accept-Encoding' => 'gzip', 'Connection' => 'Upgrade',
             'Upgrade' => 'websocket');
    left_alone($r, 'Upgrade request');

    $r = get($P1, '/size/' . ($MIN - 1), 'Accept-Encoding' => 'gzip');
    left_alone($r, 'under compress_min_length', 'Accept-Encoding');
    $r = get($P1, '/chunked/' . ($MIN - 1) . '/7', 'Accept-Encoding' => 'gzip');
    left_alone($r, 'chunked, under compress_min_length', 'Accept-Encoding');
    ok($r->{body} eq body_pattern($MIN - 1), 'chunked, under compress_min_length: body');
    $r = get($P1, '/size/5000');
    left_alone($r, 'no Accept-Encoding', 'Accept-Encoding');

    $r = get($P3, '/size/5000', 'Accept-Encoding' => 'gzip');
    left_alone($r, 'compress off in a location');
    $r = get($P3, '/status/200', 'Accept-Encoding' => 'gzip');
    left_alone($r, 'compress_types replaced in a location');
}

# ---- inheritance -----------------------------------------------------------------

{
    my $n = 1 << 20;
    my $r1 = get($P3, "/random/5000", 'Accept-Encoding' => 'gzip');
    is($r1->{headers}{'content-encoding'}, 'gzip', 'server-level compress inherited');
    my $fast = get($P3, "/stream/$n", 'Accept-Encoding' => 'gzip');
    my $best = get($P3, "/chunked/$n/4", 'Accept-Encoding' => 'gzip, br, zstd');
    is($fast->{headers}{'content-encoding'}, 'gzip', 'compress_types in a location: compressed');
    is($best->{headers}{'content-encoding'}, 'gzip', 'location compress list: gzip only');
    ok(content($fast) eq body_pattern($n) && content($best) eq body_pattern($n),
       'both round trip');
    cmp_ok(length $fast->{body}, '>', 1.5 * length $best->{body},
           'server gzip=1 vs location gzip=9: levels apply')
        or diag length($fast->{body}) . ' vs ' . length($best->{body});
}

# ---- the compression middleware --------------------------------------------------

{
    my $app = node_upstream('express', env => { MW => 'compression' });
    my $gw = tg_start("server { listen %%PORT%%; compress gzip br zstd; "
                    . "location / { proxy_pass $app->{addr}; } }");
    for my $ae ('gzip', 'br', 'gzip, deflate, br', 'br;q=0.5, gzip') {
        my $direct = $app->http(GET => '/big/20000', headers => ['Accept-Encoding' => $ae]);
        my $via = $gw->http(GET => '/big/20000', headers => ['Accept-Encoding' => $ae]);
        ok($direct->{headers}{'content-encoding'}, "compression ($ae): the app compresses");
        is($via->{headers}{'content-encoding'}, $direct->{headers}{'content-encoding'},
           "compression ($ae): same Content-Encoding");
        ok($via->{body} eq $direct->{body}, "compression ($ae): body passed untouched");
        is($via->{headers}{vary}, 'Accept-Encoding', "compression ($ae): one Vary");
        is($via->{headers}{etag}, $direct->{headers}{etag}, "compression ($ae): ETag as sent");
    }
    # the app cannot do zstd: then the gateway does, and Vary stays single
    my $direct = $app->http(GET => '/big/20000', headers => ['Accept-Encoding' => 'zstd']);
    my $via = $gw->http(GET => '/big/20000', headers => ['Accept-Encoding' => 'zstd']);
    ok(!exists $direct->{headers}{'content-encoding'}, 'compression (zstd): the app does not');
    is($via->{headers}{'content-encoding'}, 'zstd', 'compression (zstd): the gateway does');
    ok(content($via) eq $direct->{body}, 'compression (zstd): round trip');
    is($via->{headers}{vary}, 'Accept-Encoding', 'compression (zstd): one Vary');
    $gw->stop;
    $app->stop;
}

# main scope settings reach servers and locations
{
    my $gw = tg_start("compress br; compress_min_length 10; compress_types text/plain;\n"
                    . "server { listen %%PORT%%; location / { proxy_pass $up->{addr}; } }");
    my $r = $gw->http(GET => '/size/20', headers => ['Accept-Encoding' => 'gzip, br']);
    is($r->{headers}{'content-encoding'}, 'br', 'compress from the main scope');
    ok(content($r) eq body_pattern(20), 'main scope: round trip');
    $r = $gw->http(GET => '/headers', headers => ['Accept-Encoding' => 'br']);
    ok(!exists $r->{headers}{'content-encoding'}, 'compress_types from the main scope');
    $gw->stop;
}

# ---- config ------------------------------------------------------------------------

like(tg_conf_error('server { listen %%PORT%%; compress gz; }'),
     qr/^\S+:\d+: "compress": unknown encoding "gz", expected gzip, br or zstd/m,
     'unknown encoding: file:line');
like(tg_conf_error('server { listen %%PORT%%; compress gzip br gzip; }'),
     qr/:\d+: "compress": encoding "gzip" is listed twice/, 'encoding twice');
like(tg_conf_error('server { listen %%PORT%%; compress gzip off; }'),
     qr/:\d+: "compress": unknown encoding "off"/, 'off only alone');
like(tg_conf_error('server { listen %%PORT%%; compress gzip; compress br; }'),
     qr/:\d+: "compress" directive is duplicate/, 'duplicate');
like(tg_conf_error('server { listen %%PORT%%; compress_level gzip=10; }'),
     qr/:\d+: invalid gzip level "10" in "compress_level", expected 1 to 9/, 'gzip level');
like(tg_conf_error('server { listen %%PORT%%; compress_level br=12; }'),
     qr/invalid br level "12".*0 to 11/, 'br level');
like(tg_conf_error('server { listen %%PORT%%; compress_level zstd=x; }'),
     qr/invalid zstd level "x".*1 to 19/, 'zstd level');
like(tg_conf_error('server { listen %%PORT%%; compress_level lzma=1; }'),
     qr/invalid parameter "lzma=1" in "compress_level"/, 'level of an unknown coding');
like(tg_conf_error('server { listen %%PORT%%; compress_min_length 1m; }'),
     qr/"compress_min_length" 1m is too big, at most 64k/, 'min_length bound');
like(tg_conf_error('server { listen %%PORT%%; compress_min_length ten; }'),
     qr/invalid size "ten" in "compress_min_length"/, 'min_length syntax');
like(tg_conf_error('server { listen %%PORT%%; compress_types text; }'),
     qr/invalid type "text" in "compress_types"/, 'type syntax');
like(tg_conf_error('upstream u { server 127.0.0.1:1; compress gzip; }'),
     qr/"compress" directive is not allowed here/, 'not in upstream');
ok(tg_conf_ok(<<'C'), 'every directive in every scope');
compress gzip; compress_level gzip=1 br=0 zstd=19; compress_min_length 0;
compress_types text/* application/json *;
server { listen %%PORT%%; compress br zstd gzip; compress_level br=11; compress_min_length 64k;
         compress_types */*;
         location / { compress off; compress_level zstd=1; compress_types text/html; } }
C

$tg->stop;
done_testing;
