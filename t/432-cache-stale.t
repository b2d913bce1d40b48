# Stale entries (docs/cache.md): revalidation with If-None-Match and
# If-Modified-Since (a 304 refreshes the entry and updates its stored
# header fields), stale-while-revalidate
# (stale at once, one background refresh), stale-if-error and
# cache_use_stale with the upstream failing and then killed.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use JSON::PP qw(decode_json);
use Time::HiRes qw(sleep time);

my $up = node_upstream('cache');
my $tg = tg_start(<<"EOF", errors_ok => [qr/upstream|connect|refused/i]);
workers 2;
cache_zone main size=4m;
server {
    listen %%PORT%%;
    cache main;
    cache_status_header on;
    proxy_timeouts connect=1s read=1s;
    location / { proxy_pass $up->{addr}; }
    location /u5/ { cache_use_stale http_5xx; proxy_pass $up->{addr}; }
    location /ue/ { cache_use_stale error timeout; proxy_pass $up->{addr}; }
    location /uu/ { cache_use_stale updating; proxy_pass $up->{addr}; }
}
EOF

sub count($path) { return decode_json($up->http(GET => '/__count')->{body})->{paths}{$path} // 0 }
sub set(%o) { $up->http(POST => "/__set?status=" . ($o{status} // 0) . "&delay=" . ($o{delay} // 0)) }
sub get($path) { return $tg->http(GET => $path) }
sub n($r) { return decode_json($r->{body})->{n} }
sub cc($v) { return 'h=Cache-Control:%20' . ($v =~ s/ /%20/gr) }

subtest 'If-None-Match: a 304 makes the entry fresh again' => sub {
    my $u = '/etag?etag=v1&' . cc('max-age=1');
    my $r1 = get($u);
    sleep 1.3;
    my $r2 = get($u);
    is($r2->{status}, 200, 'answered 200');
    is($r2->{body}, $r1->{body}, 'with the stored body');
    like($r2->{headers}{'cache-status'}, qr/^tollgate; fwd=stale; fwd-status=304; ttl=\d+/,
         'Cache-Status: revalidated');
    is(count('/etag'), 2, 'one conditional request');
    my $r3 = get($u);
    like($r3->{headers}{'cache-status'}, qr/^tollgate; hit/, 'fresh again: a hit');
    is(count('/etag'), 2, 'no request');
};

subtest 'If-Modified-Since' => sub {
    my $u = '/lm?lm=1&' . cc('max-age=1');
    my $r1 = get($u);
    sleep 1.3;
    my $r2 = get($u);
    is($r2->{body}, $r1->{body}, 'stored body after 304');
    like($r2->{headers}{'cache-status'}, qr/fwd-status=304/, 'revalidated');
    is(count('/lm'), 2, 'two requests');
};

sub r304($path, @h) {
    $up->http(POST => "/__r304?path=$path" . join('', map { '&h=' . ($_ =~ s/ /%20/gr) } @h));
}

subtest 'a 304 updates the stored header fields (RFC 9111 4.3.4)' => sub {
    my $u = '/upd?etag=v1&h=X-Version:1&h=X-Keep:k&' . cc('max-age=1');
    my $r1 = get($u);
    is($r1->{headers}{etag}, '"v1"', 'stored with ETag v1');
    r304('/upd', 'ETag: "v2"', 'X-Version: 2', 'Cache-Control: max-age=60', 'Content-Length: 5');
    sleep 1.3;
    my $r2 = get($u);
    like($r2->{headers}{'cache-status'}, qr/fwd=stale; fwd-status=304; ttl=(5[89]|60)$/,
         'revalidated, fresh for the 304\'s max-age');
    is($r2->{headers}{etag}, '"v2"', 'the answer to the revalidating request: new ETag');
    is($r2->{body}, $r1->{body}, 'the stored body');
    is(count('/upd'), 2, 'one conditional request');
    sleep 1.3; # past the lifetime the entry had (max-age=1)
    my $r3 = get($u);
    like($r3->{headers}{'cache-status'}, qr/^tollgate; hit; ttl=5\d$/, 'still fresh: a hit');
    is(count('/upd'), 2, 'no request');
    is($r3->{headers}{etag}, '"v2"', 'ETag from the 304');
    is($r3->{headers}{'x-version'}, '2', 'X-Version from the 304');
    is($r3->{headers}{'cache-control'}, 'max-age=60', 'Cache-Control from the 304');
    is($r3->{headers}{'x-keep'}, 'k', 'a field the 304 lacks is kept');
    is($r3->{headers}{'content-type'}, 'application/json', 'Content-Type kept (the 304 has none)');
    is($r3->{headers}{'content-length'}, length($r1->{body}),
       "Content-Length is the body's, not the 304's");
    is($r3->{body}, $r1->{body}, 'the same body');
    for my $n (qw(date etag cache-control)) {
        is(scalar(grep { lc $_->[0] eq $n } @{$r3->{header_list}}), 1, "one $n line");
    }
    my $c = $tg->http(GET => $u, headers => { 'If-None-Match' => '"v2"' });
    is($c->{status}, 304, "the client's If-None-Match is checked against the new ETag");
};

subtest 'a 304 that carries Content-Type replaces it; a later 304 updates again' => sub {
    my $u = '/upd2?etag=v1&' . cc('max-age=1');
    my $r1 = get($u);
    r304('/upd2', 'ETag: "v2"', 'Content-Type: text/x-new', 'Cache-Control: max-age=1');
    sleep 1.3;
    my $r2 = get($u);
    like($r2->{headers}{'cache-status'}, qr/fwd-status=304/, 'revalidated');
    is($r2->{headers}{'content-type'}, 'text/x-new', 'Content-Type from the 304');
    r304('/upd2', 'ETag: "v3"', 'X-Third: 3', 'Cache-Control: max-age=60');
    sleep 1.3;
    my $r3 = get($u);
    like($r3->{headers}{'cache-status'}, qr/fwd-status=304/, 'revalidated again');
    my $r4 = get($u);
    like($r4->{headers}{'cache-status'}, qr/^tollgate; hit/, 'a hit');
    is($r4->{headers}{etag}, '"v3"', 'the second 304\'s ETag');
    is($r4->{headers}{'x-third'}, '3', 'its new field');
    is($r4->{headers}{'content-type'}, 'text/x-new', 'the first 304\'s Content-Type kept');
    is($r4->{body}, $r1->{body}, 'the same body');
    is(count('/upd2'), 3, 'two conditional requests');
};

subtest 'a changed resource replaces the entry' => sub {
    my $u = '/chg?' . cc('max-age=1');
    is(n(get($u)), 1, 'first');
    sleep 1.3;
    is(n(get($u)), 2, 'stale without validator: the new answer');
    is(n(get($u)), 2, 'stored');
    is(count('/chg'), 2, 'two requests');
};

subtest 'stale-while-revalidate: stale at once, one refresh in the background' => sub {
    # max-age=2: the refreshed entry stays fresh while we look (Date has
    # whole seconds)
    my $u = '/swr?' . cc('max-age=2, stale-while-revalidate=30');
    is(n(get($u)), 1, 'stored');
    sleep 2.3;
    set(delay => 800);
    my $t0 = time;
    my @r = map { get($u) } 1 .. 5;
    my $took = time - $t0;
    cmp_ok($took, '<', 0.7, "5 stale answers before the refresh could end ($took s)");
    is(scalar(grep { n($_) == 1 } @r), 5, 'all stale');
    like($r[0]{headers}{'cache-status'}, qr/^tollgate; hit; ttl=-\d+; detail=stale-while-revalidate$/,
         'Cache-Status: stale, negative ttl');
    ok(wait_until(sub { count('/swr') == 2 }, 5, 0.05), 'one refresh');
    set();
    ok(wait_until(sub { n(get($u)) == 2 }, 5, 0.1), 'the refreshed entry is served');
    is(count('/swr'), 2, 'still one refresh');
};

subtest 'cache_use_stale updating' => sub {
    my $u = '/uu/a?' . cc('max-age=1');
    get($u);
    sleep 1.3;
    set(delay => 800);
    my $r = get($u);
    cmp_ok($r->{time}, '<', 0.6, 'stale at once');
    like($r->{headers}{'cache-status'}, qr/detail=stale-while-revalidate/, 'while updating');
    set();
    ok(wait_until(sub { n(get($u)) == 2 }, 5, 0.1), 'refreshed');
};

subtest 'stale-if-error with a 5xx' => sub {
    my $u = '/sie?' . cc('max-age=1, stale-if-error=60');
    my $ok = get($u);
    my $plain = '/nosie?' . cc('max-age=1');
    get($plain);
    my $mr = '/mr?' . cc('max-age=1, stale-if-error=60, must-revalidate');
    get($mr);
    my $u5 = '/u5/a?' . cc('max-age=1');
    get($u5);
    sleep 1.3;
    set(status => 500);
    my $r = get($u);
    is($r->{status}, 200, 'the upstream answers 500: stale 200');
    is($r->{body}, $ok->{body}, 'the stored body');
    like($r->{headers}{'cache-status'}, qr/detail=stale-if-error/, 'Cache-Status says so');
    is(get($plain)->{status}, 500, 'without stale-if-error: the 500');
    is(get($mr)->{status}, 500, 'must-revalidate: never stale');
    is(get($u5)->{status}, 200, 'cache_use_stale http_5xx');
    set();
};

subtest 'upstream killed: stale-if-error and cache_use_stale error' => sub {
    my $u = '/sie2?' . cc('max-age=1, stale-if-error=60');
    my $ok = get($u);
    my $ue = '/ue/a?' . cc('max-age=1');
    get($ue);
    my $plain = '/nosie2?' . cc('max-age=1');
    get($plain);
    sleep 1.3;
    $up->stop;
    my $r = get($u);
    is($r->{status}, 200, 'stale 200 with the upstream down');
    is($r->{body}, $ok->{body}, 'the stored body');
    is(get($ue)->{status}, 200, 'cache_use_stale error');
    is(get($plain)->{status}, 502, 'no stale allowed: 502');
};

like(tg_conf_error("server { listen 1; cache_use_stale sometimes; }"),
     qr/:\d+: invalid value "sometimes" in "cache_use_stale"/, 'bad cache_use_stale');

done_testing;
