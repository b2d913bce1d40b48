# The response cache and compression together (docs/cache.md, "Compression
# and caching together"): the cache stores the identity response, and each
# coding's compressed variant once, beside it; hits are answered from the
# variant without compressing again (the compression counter stays put),
# byte-identical each time. Identity clients, HEAD, Range, a response the
# upstream encoded itself, purge, a body changed by a refresh, a 304 that
# keeps the variants (served with the head it updated), a body under
# compress_min_length, HTTP/2.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use File::Temp qw(tempfile);
use lib 't/lib';
use Tollgate::Test;

for my $tool (qw(gzip brotli zstd curl)) {
    plan skip_all => "$tool not installed" unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
my %decoder = (gzip => 'gzip -dc', br => 'brotli -dc', zstd => 'zstd -dcq');

sub decode($enc, $data) {
    my ($fh, $file) = tempfile(UNLINK => 1);
    binmode $fh;
    print $fh $data;
    close $fh;
    my $out = `$decoder{$enc} < '$file' 2>/dev/null`;
    return $? == 0 ? $out : undef;
}

my $up = node_upstream('cache');
my $tg = tg_start(<<"EOF");
cache_zone main size=8m;
server {
    listen %%PORT%%;
    listen %%PORT2%% http2;
    cache main;
    cache_key \$uri\$is_args\$args;
    cache_status_header on;
    compress gzip br zstd;
    location / { proxy_pass $up->{addr}; }
    location /json/ { compress_min_length 10; proxy_pass $up->{addr}; }
    location = /__purge { cache_purge main; }
    location = /stats { cache off; compress off; stats; }
}
EOF

sub count($path) { return decode_json($up->http(GET => '/__count')->{body})->{paths}{$path} // 0 }
sub stats() { return decode_json($tg->http(GET => '/stats')->{body}) }
sub counters() {
    my $s = stats();
    my $m = $s->{caches}{main};
    return { compressed => $s->{compression}{responses}, stored => $m->{variants_stored},
             served => $m->{variants_served} };
}
sub get($path, @h) { return $tg->http(GET => $path, headers => [@h]) }
sub esc($s) { return $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ger }
my $cc = 'h=Cache-Control:%20max-age=60';
my $N = 20000;

for my $enc (qw(gzip br zstd)) {
    subtest "$enc: compressed once, then served from the variant" => sub {
        my $u = "/c-$enc?size=$N&etag=v1&$cc";
        my $c0 = counters();
        my $first = get($u, 'Accept-Encoding' => $enc);
        is($first->{status}, 200, 'miss: 200');
        is($first->{headers}{'content-encoding'}, $enc, "miss: Content-Encoding $enc");
        ok((decode($enc, $first->{body}) // '') eq body_pattern($N), 'miss: decodes to the identity body');
        my $c1 = counters();
        is($c1->{compressed} - $c0->{compressed}, 1, 'compressed once (the fill)');
        is($c1->{stored} - $c0->{stored}, 1, 'one variant stored');
        for my $i (1 .. 3) {
            my $r = get($u, 'Accept-Encoding' => "$enc, identity");
            is($r->{headers}{'content-encoding'}, $enc, "hit $i: $enc");
            ok($r->{body} eq $first->{body}, "hit $i: byte-identical to the first answer");
            is($r->{headers}{'content-length'}, length $first->{body}, "hit $i: Content-Length known");
            like($r->{headers}{'cache-status'}, qr/^tollgate; hit/, "hit $i: Cache-Status hit");
            like($r->{headers}{vary} // '', qr/accept-encoding/i, "hit $i: Vary: Accept-Encoding");
            is($r->{headers}{etag}, 'W/"v1"', "hit $i: weak ETag");
            ok(!defined $r->{headers}{'accept-ranges'}, "hit $i: no Accept-Ranges");
        }
        my $c2 = counters();
        is($c2->{compressed}, $c1->{compressed}, 'hits: nothing compressed again');
        is($c2->{served} - $c1->{served}, 3, 'three answers from the variant');
        is($c2->{stored}, $c1->{stored}, 'no second variant');
        my $id = get($u);
        ok(!defined $id->{headers}{'content-encoding'}, 'identity client: no Content-Encoding');
        ok($id->{body} eq body_pattern($N), 'identity client: the identity body');
        is($id->{headers}{etag}, '"v1"', 'identity client: the strong ETag');
        is(count("/c-$enc"), 1, 'one upstream request');
    };
}

subtest 'the variant made on a hit, then served' => sub {
    my $u = "/h?size=$N&$cc";
    get($u);
    my $c0 = counters();
    my $a = get($u, 'Accept-Encoding' => 'gzip');
    is($a->{headers}{'content-encoding'}, 'gzip', 'first gzip hit: compressed');
    my $c1 = counters();
    is($c1->{compressed} - $c0->{compressed}, 1, 'compressed on that hit');
    is($c1->{stored} - $c0->{stored}, 1, 'stored as the variant');
    my $b = get($u, 'Accept-Encoding' => 'gzip');
    ok($b->{body} eq $a->{body}, 'next hit: the same bytes');
    is(counters()->{compressed}, $c1->{compressed}, 'not compressed again');
    is(count('/h'), 1, 'one upstream request');
};

subtest 'the compress settings decide: preference order, min length' => sub {
    my $u = "/p?size=$N&$cc";
    my $r = get($u, 'Accept-Encoding' => 'zstd;q=0.5, br');
    is($r->{headers}{'content-encoding'}, 'br', 'the coding the client prefers');
    my $small = "/small?size=500&$cc";
    my $c0 = counters();
    get($small, 'Accept-Encoding' => 'gzip') for 1 .. 2;
    my $s = get($small, 'Accept-Encoding' => 'gzip');
    ok(!defined $s->{headers}{'content-encoding'}, 'under compress_min_length: identity');
    is(counters()->{stored}, $c0->{stored}, 'no variant for it');
};

subtest 'HEAD and Range on hits keep the identity answer' => sub {
    my $u = "/r?size=$N&$cc";
    get($u, 'Accept-Encoding' => 'gzip') for 1 .. 2;
    my $h = $tg->http(HEAD => $u, headers => ['Accept-Encoding' => 'gzip']);
    is($h->{status}, 200, 'HEAD: 200');
    like($h->{headers}{'cache-status'} // '', qr/hit/, 'HEAD: a hit');
    ok(!defined $h->{headers}{'content-encoding'}, 'HEAD: as the compress module answers HEAD');
    is($h->{body}, '', 'HEAD: no body');
    my $r = get($u, 'Accept-Encoding' => 'gzip', Range => 'bytes=0-99');
    like($r->{headers}{'cache-status'} // '', qr/hit/, 'Range: a hit');
    ok(!defined $r->{headers}{'content-encoding'}, 'Range: not compressed');
    ok($r->{body} eq body_pattern($N), 'Range: the identity body');
    is(count('/r'), 1, 'one upstream request');
};

subtest 'a response the upstream encoded is stored once, as it is' => sub {
    my $u = "/enc?size=3000&h=Content-Encoding:%20br&$cc";
    my $c0 = counters();
    my @r = map { get($u, 'Accept-Encoding' => 'gzip, br') } 1 .. 3;
    for my $i (0 .. 2) {
        is($r[$i]{headers}{'content-encoding'}, 'br', "answer $i: the upstream's coding");
        ok($r[$i]{body} eq body_pattern(3000), "answer $i: its bytes untouched");
    }
    my $c1 = counters();
    is($c1->{compressed}, $c0->{compressed}, 'never compressed');
    is($c1->{stored}, $c0->{stored}, 'no variant');
    is(count('/enc'), 1, 'stored once');
};

subtest 'purge drops the variants with the entry' => sub {
    my $u = "/x?size=$N&$cc";
    get($u, 'Accept-Encoding' => $_) for qw(gzip br zstd);
    my $c0 = counters();
    my $p = $tg->http(PURGE => '/__purge?key=' . esc($u));
    is(decode_json($p->{body})->{purged}, 4, 'the entry and its three variants');
    my $r = get($u, 'Accept-Encoding' => 'gzip');
    is(count('/x'), 2, 'fetched again');
    ok((decode('gzip', $r->{body}) // '') eq body_pattern($N), 'gzip again');
    is(counters()->{stored} - $c0->{stored}, 1, 'a new variant');
};

subtest 'a 304 keeps the variants; a new body drops them' => sub {
    my $u = "/rv?size=$N&etag=e&h=Cache-Control:%20max-age=1";
    my $first = get($u, 'Accept-Encoding' => 'gzip');
    sleep 2;
    my $c0 = counters();
    my $r = get($u, 'Accept-Encoding' => 'gzip');
    like($r->{headers}{'cache-status'} // '', qr/fwd=stale; fwd-status=304/, 'revalidated by a 304');
    ok($r->{body} eq $first->{body}, 'the same variant');
    my $c1 = counters();
    is($c1->{compressed}, $c0->{compressed}, 'not compressed again');
    is($c1->{served} - $c0->{served}, 1, 'served from the variant');
    # the JSON body tells the upstream's count: a new body on every fetch
    my $n = '/json/nv?h=Cache-Control:%20max-age=5';
    my $old = get($n, 'Accept-Encoding' => 'gzip');
    is(decode_json(decode('gzip', $old->{body}) // '{}')->{n}, 1, 'the first body');
    sleep 6;
    $c0 = counters();
    $r = get($n, 'Accept-Encoding' => 'gzip');
    is(count('/json/nv'), 2, 'expired: fetched again');
    is(decode_json(decode('gzip', $r->{body}) // '{}')->{n}, 2, 'the new body');
    $c1 = counters();
    is($c1->{stored} - $c0->{stored}, 1, 'a variant of the new response');
    $r = get($n, 'Accept-Encoding' => 'gzip');
    is(decode_json(decode('gzip', $r->{body}) // '{}')->{n}, 2, 'the next hit: the new body');
    is(counters()->{served} - $c1->{served}, 1, 'from the new variant');
};

subtest 'a variant served after a 304 carries the header fields the 304 updated' => sub {
    my $u = "/rv2?size=$N&etag=e&h=X-Version:1&h=Cache-Control:%20max-age=1";
    my $first = get($u, 'Accept-Encoding' => 'gzip');
    is($first->{headers}{'x-version'}, '1', 'stored with X-Version: 1');
    $up->http(POST => '/__r304?path=/rv2&h=ETag:%20"e2"&h=X-Version:%202'
                      . '&h=Cache-Control:%20max-age=60');
    sleep 1.3;
    my $c0 = counters();
    my $r = get($u, 'Accept-Encoding' => 'gzip');
    like($r->{headers}{'cache-status'} // '', qr/fwd=stale; fwd-status=304/, 'revalidated by a 304');
    ok($r->{body} eq $first->{body}, 'the same variant');
    is($r->{headers}{'x-version'}, '2', 'with X-Version from the 304');
    like($r->{headers}{etag} // '', qr/"e2"/, 'and its ETag');
    $r = get($u, 'Accept-Encoding' => 'gzip');
    like($r->{headers}{'cache-status'} // '', qr/^tollgate; hit/, 'then a hit');
    is($r->{headers}{'x-version'}, '2', 'X-Version: 2');
    is($r->{headers}{'content-encoding'}, 'gzip', 'gzip');
    ok((decode('gzip', $r->{body}) // '') eq body_pattern($N), 'the body');
    my $c1 = counters();
    is($c1->{compressed}, $c0->{compressed}, 'not compressed again');
    is($c1->{served} - $c0->{served}, 2, 'both served from the variant');
    is(get($u)->{headers}{'x-version'}, '2', 'identity: X-Version: 2 too');
    is(count('/rv2'), 2, 'one conditional request');
};

subtest 'a chunked upstream body (compress decides on its first bytes)' => sub {
    my $u = "/chunked?size=$N&cl=0&chunks=3&$cc";
    my $c0 = counters();
    my $a = get($u, 'Accept-Encoding' => 'gzip');
    is($a->{headers}{'content-encoding'}, 'gzip', 'miss: gzip');
    ok((decode('gzip', $a->{body}) // '') eq body_pattern($N), 'miss: the identity body');
    is(counters()->{stored} - $c0->{stored}, 1, 'the variant stored from the fill');
    my $b = get($u, 'Accept-Encoding' => 'gzip');
    ok($b->{body} eq $a->{body}, 'hit: the same bytes');
    is($b->{headers}{'content-length'}, length $a->{body}, 'hit: with a Content-Length');
};

subtest 'concurrent clients on a cold key: one fill of the variant' => sub {
    my $u = "/par?size=200000&chunks=4&ms=100&$cc";
    my $url = "http://127.0.0.1:@{[$tg->port]}$u";
    my $c0 = counters();
    my $dir = $tg->dir;
    system('sh', '-c', "for i in 1 2 3 4 5 6 7 8 9 10; do timeout 20 curl -s -H 'Accept-Encoding: gzip' "
                     . "-o \"$dir/par.\$i\" '$url' & done; wait");
    my $ok = grep { (decode('gzip', Tollgate::Test::_slurp("$dir/par.$_")) // '') eq body_pattern(200000) } 1 .. 10;
    is($ok, 10, 'ten gzip answers of the identity body') or diag(join " ", map { length Tollgate::Test::_slurp("$dir/par.$_") } 1 .. 10);
    is(count('/par'), 1, 'one upstream request');
    is(counters()->{stored} - $c0->{stored}, 1, 'one variant stored');
    my $c1 = counters();
    get($u, 'Accept-Encoding' => 'gzip');
    is(counters()->{served} - $c1->{served}, 1, 'the next hit: from it');
};

subtest 'HTTP/2 clients get the variant too' => sub {
    my $u = "/h2?size=$N&$cc";
    my $a = get($u, 'Accept-Encoding' => 'zstd');
    my $c0 = counters();
    my $url = "http://127.0.0.1:@{[$tg->port(2)]}$u";
    my $hdr = $tg->dir . '/h2.hdr';
    my $body = `timeout 10 curl -s --http2-prior-knowledge -H 'Accept-Encoding: zstd' -D '$hdr' '$url'`;
    my $h = do { local $/; open my $f, '<', $hdr or die "no $hdr"; <$f> };
    like($h, qr{^HTTP/2 200}, 'HTTP/2 200');
    like($h, qr/^content-encoding: zstd\r?$/mi, 'zstd');
    like($h, qr/^content-length: @{[length $a->{body}]}\r?$/mi, 'Content-Length of the variant');
    ok($body eq $a->{body}, 'the variant bytes');
    my $c1 = counters();
    is($c1->{compressed}, $c0->{compressed}, 'not compressed again');
    is($c1->{served} - $c0->{served}, 1, 'from the variant');
    is(count('/h2'), 1, 'one upstream request');
};

subtest 'stats: variants in JSON and Prometheus' => sub {
    my $m = stats()->{caches}{main};
    cmp_ok($m->{variants_stored}, '>=', 5, "variants_stored ($m->{variants_stored})");
    cmp_ok($m->{variants_served}, '>=', 10, "variants_served ($m->{variants_served})");
    my $p = $tg->http(GET => '/stats?format=prometheus')->{body};
    like($p, qr/^tollgate_cache_events_total\{zone="main",event="variant_served"\} \d+$/m,
         'Prometheus variant_served');
};

done_testing;
