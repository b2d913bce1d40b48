# The response cache (docs/cache.md): RFC 9111 shared-cache rules, each its
# own case against an upstream that counts the requests it gets (t/upstream/
# cache.js): a hit is an answer the upstream never saw.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use JSON::PP qw(decode_json);
use POSIX ();
use Time::HiRes qw(sleep);

my $up = node_upstream('cache');
my $conf = <<"EOF";
cache_zone main size=4m;
cache_zone tiny size=256k max_entries=4 max_entry_size=16k;
log_format cs "\$cache_status \$uri";
server {
    listen %%PORT%%;
    cache main;
    cache_status_header on;
    access_log %%DIR%%/access.log cs;
    location / { proxy_pass $up->{addr}; }
    location /valid/ { cache_valid 200 2s; proxy_pass $up->{addr}; }
    location /cookie/ { cache_store_set_cookie on; proxy_pass $up->{addr}; }
    location /bypass/ { cache_bypass \$http_x_nocache; proxy_pass $up->{addr}; }
    location /tiny/ { cache tiny; proxy_pass $up->{addr}; }
    location /off/ { cache off; proxy_pass $up->{addr}; }
    location = /stats { cache off; stats; }
}
EOF
my $tg = tg_start($conf);

sub count($path) {
    my $r = $up->http(GET => '/__count');
    return decode_json($r->{body})->{paths}{$path} // 0;
}
sub get($path, %h) { return $tg->http(GET => $path, headers => [%h]) }

# A path whose response carries the given header lines.
sub p($path, @h) {
    return $path . '?' . join('&', map { 'h=' . s/([^A-Za-z0-9\-.])/sprintf('%%%02X', ord $1)/ger } @h);
}
sub httpdate($t) { return POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime $t) }

subtest 'max-age: stored, then hits with Age and Cache-Status' => sub {
    my $u = p('/ma', 'Cache-Control: max-age=60');
    my $r1 = get($u);
    is($r1->{status}, 200, 'miss answered');
    like($r1->{headers}{'cache-status'}, qr/^tollgate; fwd=miss; stored; ttl=(59|60)$/,
         'miss stored');
    my $r2 = get($u);
    is($r2->{body}, $r1->{body}, 'same body');
    like($r2->{headers}{'cache-status'}, qr/^tollgate; hit; ttl=\d+$/, 'hit');
    like($r2->{headers}{age}, qr/^\d+$/, 'Age on a hit');
    is(count('/ma'), 1, 'upstream asked once');
    is($r2->{headers}{'content-type'}, 'application/json', 'stored header served');
};

subtest 's-maxage over max-age' => sub {
    get(p('/sm', 'Cache-Control: max-age=0, s-maxage=60')) for 1 .. 2;
    is(count('/sm'), 1, 's-maxage=60 wins for a shared cache');
    get(p('/sm0', 'Cache-Control: max-age=60, s-maxage=0')) for 1 .. 2;
    is(count('/sm0'), 2, 's-maxage=0 wins over max-age=60');
};

subtest 'no-store, private: never stored' => sub {
    get(p('/ns', 'Cache-Control: no-store, max-age=60')) for 1 .. 2;
    is(count('/ns'), 2, 'no-store');
    get(p('/pv', 'Cache-Control: private, max-age=60')) for 1 .. 2;
    is(count('/pv'), 2, 'private');
    get(p('/rq', 'Cache-Control: max-age=60'), 'Cache-Control' => 'no-store') for 1 .. 2;
    is(count('/rq'), 2, 'request no-store: not stored');
};

subtest 'no-cache: never used without the origin' => sub {
    get(p('/nc', 'Cache-Control: no-cache, max-age=60')) for 1 .. 2;
    is(count('/nc'), 2, 'no-cache');
};

subtest 'expiry: max-age=1 runs out' => sub {
    my $u = p('/exp', 'Cache-Control: max-age=1');
    get($u);
    get($u);
    is(count('/exp'), 1, 'fresh');
    sleep 2.1;
    my $r = get($u);
    like($r->{headers}{'cache-status'}, qr/^tollgate; fwd=stale/, 'stale: fetched again');
    is(count('/exp'), 2, 'expired');
    is(decode_json($r->{body})->{n}, 2, 'the new answer');
    is(decode_json(get($u)->{body})->{n}, 2, 'and that one is served now');
};

subtest 'max-age=1 late in the Date second: fresh for a whole second' => sub {
    # Date has whole seconds: a response made at x.6 s is dated x; it is not
    # 0.6 s old on arrival (it would then go stale at x+1, and under load
    # every refresh of a max-age=1 endpoint arrived stale). An attempt counts
    # when its first answer was stored and came back before x+1.15 (a loaded
    # machine may make it late: then another attempt, three at most).
    for my $try (1 .. 3) {
        my $t = Time::HiRes::time();
        sleep(1.6 - ($t - int $t) + ($t - int($t) > 0.6 ? 1 : 0));
        my $t0 = Time::HiRes::time();
        my $u = p("/late$try", 'Cache-Control: max-age=1');
        my $r1 = get($u);
        my $at = int($t0) + 1.2;
        next unless ($r1->{headers}{'cache-status'} // '') =~ /stored/ && Time::HiRes::time() < $at - 0.05;
        sleep($at - Time::HiRes::time());
        my $r = get($u);
        like($r->{headers}{'cache-status'}, qr/^tollgate; hit/, 'past the next second: still a hit');
        is(count("/late$try"), 1, 'upstream asked once');
        return;
    }
    fail('no attempt ran in time (the machine was too busy)');
};

subtest 'Expires and Date' => sub {
    my $now = time;
    get(p('/ex', 'Expires: ' . httpdate($now + 60))) for 1 .. 2;
    is(count('/ex'), 1, 'Expires in the future: stored');
    get(p('/ex0', 'Expires: 0')) for 1 .. 2;
    is(count('/ex0'), 2, 'invalid Expires: already expired');
    get(p('/exd', 'Date: ' . httpdate($now - 60), 'Expires: ' . httpdate($now))) for 1 .. 2;
    is(count('/exd'), 2, 'Date 60 s ago, Expires now: lifetime 60 s, but already 60 s old');
    get(p('/exd2', 'Date: ' . httpdate($now - 60), 'Expires: ' . httpdate($now + 60))) for 1 .. 2;
    is(count('/exd2'), 1, 'Expires - Date = 120 s, 60 s old: fresh');
};

subtest 'Age from upstream counts against the lifetime' => sub {
    get(p('/age', 'Cache-Control: max-age=60', 'Age: 100')) for 1 .. 2;
    is(count('/age'), 2, 'Age 100 > max-age 60: stale at once, not stored');
    my $u = p('/age2', 'Cache-Control: max-age=600', 'Age: 100');
    get($u);
    my $r = get($u);
    cmp_ok($r->{headers}{age}, '>=', 100, 'Age on the hit includes the upstream Age');
    is(count('/age2'), 1, 'a hit');
};

subtest 'heuristic freshness only where allowed' => sub {
    my $lm = httpdate(time - 86400);
    get(p('/heur', "Last-Modified: $lm")) for 1 .. 2;
    is(count('/heur'), 1, '200 with Last-Modified: heuristically fresh');
    get(p('/heur302', "Last-Modified: $lm") . '&status=302') for 1 .. 2;
    is(count('/heur302'), 2, '302 is not heuristically cacheable');
    get('/plain') for 1 .. 2;
    is(count('/plain'), 2, 'no freshness information: not stored');
};

subtest 'cache_valid: a fallback when the response says nothing' => sub {
    get('/valid/a') for 1 .. 2;
    is(count('/valid/a'), 1, 'cache_valid 200 2s');
    get(p('/valid/b', 'Cache-Control: max-age=0')) for 1 .. 2;
    is(count('/valid/b'), 2, 'the response\'s own max-age=0 wins');
    get('/valid/c?status=404') for 1 .. 2;
    is(count('/valid/c'), 2, 'cache_valid 200 does not cover 404');
};

subtest 'Set-Cookie' => sub {
    get(p('/sc', 'Cache-Control: max-age=60', 'Set-Cookie: s=1')) for 1 .. 2;
    is(count('/sc'), 2, 'not stored by default');
    my $u = p('/cookie/x', 'Cache-Control: max-age=60', 'Set-Cookie: s=1');
    my $r1 = get($u);
    is($r1->{headers}{'set-cookie'}, 's=1', 'the miss gets its cookie');
    my $r2 = get($u);
    is(count('/cookie/x'), 1, 'stored with cache_store_set_cookie on');
    ok(!exists $r2->{headers}{'set-cookie'}, 'a hit never carries another client\'s cookie');
};

subtest 'Authorization' => sub {
    my $u = p('/auth', 'Cache-Control: max-age=60');
    get($u, Authorization => 'Basic YTpi') for 1 .. 2;
    is(count('/auth'), 2, 'max-age alone: a request with credentials is not stored');
    get($u);
    get($u, Authorization => 'Basic YTpi');
    is(count('/auth'), 4, 'nor served from an entry another request stored');
    get(p('/authp', 'Cache-Control: public, max-age=60'), Authorization => 'Basic YTpi')
        for 1 .. 2;
    is(count('/authp'), 1, 'public: stored and served');
};

subtest 'Vary' => sub {
    my $u = p('/vary', 'Cache-Control: max-age=60', 'Vary: Accept-Language');
    my $en = get($u, 'Accept-Language' => 'en');
    my $fr = get($u, 'Accept-Language' => 'fr');
    is(decode_json($en->{body})->{lang}, 'en', 'en variant');
    is(decode_json($fr->{body})->{lang}, 'fr', 'fr variant');
    is(decode_json(get($u, 'Accept-Language' => 'en')->{body})->{lang}, 'en', 'en from cache');
    is(decode_json(get($u, 'Accept-Language' => 'fr')->{body})->{lang}, 'fr', 'fr from cache');
    is(count('/vary'), 2, 'one request per variant');
    get($u);
    get($u);
    is(count('/vary'), 3, 'no Accept-Language: its own variant');
    get(p('/vstar', 'Cache-Control: max-age=60', 'Vary: *')) for 1 .. 2;
    is(count('/vstar'), 2, 'Vary: * never stored');
};

subtest 'HEAD is answered from a GET entry' => sub {
    my $u = p('/head', 'Cache-Control: max-age=60');
    my $g = get($u);
    my $h = $tg->http(HEAD => $u);
    is($h->{status}, 200, 'HEAD answered');
    is($h->{body}, '', 'without a body');
    is($h->{headers}{'content-length'}, length $g->{body}, 'with the entry\'s length');
    like($h->{headers}{'cache-status'}, qr/hit/, 'a hit');
    is(count('/head'), 1, 'upstream asked once');
};

subtest 'the client\'s conditional request answered 304 from the cache' => sub {
    my $u = p('/cond', 'Cache-Control: max-age=60', 'ETag: "e1"',
              'Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT');
    get($u);
    my $r = get($u, 'If-None-Match' => '"e1"');
    is($r->{status}, 304, 'If-None-Match matches: 304');
    is($r->{body}, '', 'no body');
    like($r->{headers}{'cache-status'}, qr/hit/, 'from the cache');
    is(get($u, 'If-None-Match' => '"other"')->{status}, 200, 'another tag: 200');
    is(get($u, 'If-Modified-Since' => 'Tue, 02 Jan 2024 00:00:00 GMT')->{status}, 304,
       'If-Modified-Since after Last-Modified: 304');
    is(get($u, 'If-Modified-Since' => 'Sun, 31 Dec 2023 00:00:00 GMT')->{status}, 200,
       'before: 200');
    my $n = p('/cond2', 'Cache-Control: max-age=60');
    get($n);
    is(get($n, 'If-Modified-Since' => 'Tue, 02 Jan 2024 00:00:00 GMT')->{status}, 200,
       'no Last-Modified: a date never matches');
    is(count('/cond') + count('/cond2'), 2, 'all from the cache');
};

subtest 'poisoning' => sub {
    my $u = p('/poison', 'Cache-Control: max-age=60');
    my $r1 = get($u);
    my $r2 = get($u, 'X-Forwarded-Host' => 'evil.example');
    is($r2->{body}, $r1->{body}, 'an unkeyed X-Forwarded-Host does not change the answer');
    isnt(decode_json($r2->{body})->{xfh}, 'evil.example', 'the stored answer is the clean one');
    is(count('/poison'), 1, 'a hit');
    my $p = $tg->http(POST => $u, body => 'x=1');
    is(decode_json($p->{body})->{method}, 'POST', 'a POST goes upstream');
    my $g = $tg->http(GET => $u, body => 'x=1');
    is(decode_json($g->{body})->{n}, 3, 'a GET with a body is not served the GET entry');
    is(decode_json(get($u)->{body})->{n}, 1, 'and did not replace it');
    my $pe = p('/poison2', 'Cache-Control: max-age=60');
    $tg->http(GET => $pe, body => 'x=1');
    get($pe);
    is(count('/poison2'), 2, 'a GET with a body is not stored');
};

subtest 'cache_bypass, cache off, methods' => sub {
    my $u = p('/bypass/a', 'Cache-Control: max-age=60');
    get($u);
    my $r = get($u, 'X-Nocache' => '1');
    like($r->{headers}{'cache-status'}, qr/fwd=bypass/, 'bypassed');
    get($u);
    is(count('/bypass/a'), 2, 'bypass fetched; the plain request is a hit');
    get(p('/off/a', 'Cache-Control: max-age=60')) for 1 .. 2;
    is(count('/off/a'), 2, 'cache off');
    $tg->http(DELETE => p('/del', 'Cache-Control: max-age=60')) for 1 .. 2;
    is(count('/del'), 2, 'DELETE not cached');
};

subtest 'limits: too large never stored, LRU eviction by max_entries' => sub {
    my $big = '/tiny/big?size=40000&h=Cache-Control:%20max-age=60';
    my $r = get($big);
    is(length $r->{body}, 40000, 'a response over max_entry_size passes whole');
    get($big);
    is(count('/tiny/big'), 2, 'and is not stored');
    get("/tiny/e$_?h=Cache-Control:%20max-age=60") for 1 .. 4;
    get('/tiny/e1?h=Cache-Control:%20max-age=60'); # e1 is now the most recent
    get('/tiny/e5?h=Cache-Control:%20max-age=60'); # evicts the least recent: e2
    get("/tiny/e$_?h=Cache-Control:%20max-age=60") for (1, 3, 4, 5);
    is(count("/tiny/e$_"), 1, "e$_ kept") for (1, 3, 4, 5);
    get('/tiny/e2?h=Cache-Control:%20max-age=60');
    is(count('/tiny/e2'), 2, 'e2 was evicted');
};

subtest 'chunked upstream body stored, then served with a length' => sub {
    my $u = '/chunky?size=100000&chunks=5&cl=0&h=Cache-Control:%20max-age=60';
    my $r1 = get($u);
    my $r2 = get($u);
    is($r2->{body}, body_pattern(100000), 'whole body from the cache');
    is($r2->{headers}{'content-length'}, 100000, 'with Content-Length');
    is(count('/chunky'), 1, 'upstream asked once');
};

subtest '$cache_status in the access log' => sub {
    my $log = '';
    wait_until(sub {
        $log = Tollgate::Test::_slurp($tg->dir . '/access.log');
        $log =~ m{^EXPIRED /exp$}m;
    }, 5);
    like($log, qr{^MISS /ma$}m, 'MISS');
    like($log, qr{^HIT /ma$}m, 'HIT');
    like($log, qr{^BYPASS /bypass/a$}m, 'BYPASS');
    like($log, qr{^EXPIRED /exp$}m, 'EXPIRED');
};

subtest 'stats: per zone in JSON, Prometheus and the dashboard' => sub {
    my $j = decode_json($tg->http(GET => '/stats')->{body});
    my $m = $j->{caches}{main};
    ok($m, 'caches.main') or return;
    cmp_ok($m->{hits}, '>=', 10, "hits ($m->{hits})");
    cmp_ok($m->{misses}, '>=', 10, "misses ($m->{misses})");
    cmp_ok($m->{bypass}, '>=', 3, 'bypass');
    cmp_ok($m->{stored}, '>=', 10, 'stored');
    cmp_ok($m->{entries}, '>', 0, 'entries');
    cmp_ok($m->{bytes}, '>=', 4096 * $m->{entries}, 'bytes');
    ok($m->{hit_ratio} > 0 && $m->{hit_ratio} < 1, "hit ratio $m->{hit_ratio}");
    is($j->{caches}{tiny}{evicted}, 2, 'tiny: e2 evicted, then one more for e2 again');
    my $p = $tg->http(GET => '/stats?format=prometheus')->{body};
    like($p, qr/^tollgate_cache_events_total\{zone="main",event="hit"\} $m->{hits}$/m, 'Prometheus hits');
    like($p, qr/^tollgate_cache_hit_ratio\{zone="main"\} 0\.\d{4}$/m, 'Prometheus hit ratio');
    my $chromium = '/usr/bin/chromium';
    SKIP: {
        skip 'chromium is not installed', 2 unless -x $chromium;
        my $html = `timeout 60 $chromium --headless --no-sandbox --disable-gpu --user-data-dir=@{[$tg->dir]}/chromium --virtual-time-budget=3000 --dump-dom 'http://127.0.0.1:@{[$tg->port]}/stats?format=html' 2>/dev/null`;
        like($html, qr/<tr data-cache="main">/, 'dashboard: the cache row');
        like($html, qr/<tr data-cache="main">.*?data-col="hit_ratio">\d+\.\d%</s, 'dashboard: hit ratio');
    }
};

subtest 'a reload keeps the entries' => sub {
    my $u = p('/reload', 'Cache-Control: max-age=600');
    get($u);
    my $off = $tg->reload($conf);
    ok($tg->wait_log(qr/cache zone "main": entries kept from the running config/, 10, $off),
       'the zone is taken over');
    ok($tg->wait_log(qr/reload/i, 10, $off), 'reloaded');
    my $r = get($u);
    like($r->{headers}{'cache-status'}, qr/^tollgate; hit/, 'a hit after the reload');
    is(count('/reload'), 1, 'upstream asked once');
};

like(tg_conf_error("cache_zone z size=1k;\nserver { listen 1; }"),
     qr/:\d+: invalid size "1k" in "cache_zone"/, 'bad size: file:line');
like(tg_conf_error("server { listen 1; cache nope; }"), qr/:\d+: unknown cache_zone "nope"/,
     'unknown zone');
like(tg_conf_error("cache_zone z size=1m bogus=1;\nserver { listen 1; }"),
     qr/unknown parameter "bogus=1"/, 'unknown parameter');
like(tg_conf_error("server { listen 1; cache_methods POST; }"), qr/invalid method "POST"/,
     'methods');
like(tg_conf_error("server { listen 1; cache_valid 99 1s; }"), qr/invalid status "99"/,
     'cache_valid');

done_testing;
