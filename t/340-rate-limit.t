# rate_limit with local (shared-memory) zones: config errors; exactness
# across two workers (30 parallel requests against 10/min, burst 0: exactly
# 10 pass); burst; keys kept apart; rate_limit_allow by $remote_addr after
# real_ip; dry_run; status=, rate_limit_body, the default JSON answer and
# Retry-After; rate_limit off and several zones; eviction in a small zone
# (bounded, counted in the log); a reload keeps the state of a zone of the
# same size and a new size starts afresh.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Digest::SHA qw(sha256_hex);
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

# $n requests sent at once, each on its own connection; returns the responses.
sub parallel($port, $n, %o) {
    my $deadline = time + 10;
    my @conns;
    for my $i (1 .. $n) {
        my ($c, $err) = Tollgate::Test::Conn->connect($port, 5);
        die $err unless $c;
        my %h = %o;
        $h{headers} = $o{headers}->($i) if ref $o{headers} eq 'CODE';
        $c->write_all(Tollgate::Test::_build_request('GET', $o{path} // '/', $port, 1, %h),
                      $deadline);
        push @conns, $c;
    }
    my @res = map { $_->read_response('GET', $deadline) } @conns;
    $_->close for @conns;
    return @res;
}

sub statuses(@res) {
    my %n;
    $n{$_->{status} // 'none'}++ for @res;
    return \%n;
}

# --- config errors ---------------------------------------------------------
{
    like(tg_conf_error(<<'C'), qr/^\S+:3: unknown rate_limit_zone "nope" in "rate_limit"/m,
rate_limit_zone a key=$remote_addr rate=1r/s size=1m;
server { listen %%PORT%%;
    rate_limit nope;
}
C
         'unknown zone: file:line of the rate_limit line');
    like(tg_conf_error(<<'C'), qr/^\S+:1: invalid rate "10r\/x"/m, 'bad rate unit');
rate_limit_zone a key=$remote_addr rate=10r/x size=1m;
server { listen %%PORT%%; }
C
    like(tg_conf_error(<<'C'), qr/^\S+:1: .*needs size=/m, 'local zone needs size=');
rate_limit_zone a key=$remote_addr rate=10r/s;
server { listen %%PORT%%; }
C
    like(tg_conf_error(<<'C'), qr/^\S+:2: duplicate rate_limit_zone "a"/m, 'duplicate zone');
rate_limit_zone a key=$remote_addr rate=10r/s size=1m;
rate_limit_zone a key=$remote_addr rate=10r/s size=1m;
server { listen %%PORT%%; }
C
    like(tg_conf_error(<<'C'), qr/^\S+:1: invalid status "200"/m, 'status must be 4xx/5xx');
rate_limit_zone a key=$remote_addr rate=10r/s size=1m status=200;
server { listen %%PORT%%; }
C
    like(tg_conf_error(<<'C'), qr/^\S+:1: invalid redis URL "http:\/\/x"/m, 'bad backend');
rate_limit_zone a key=$remote_addr rate=10r/s backend=http://x;
server { listen %%PORT%%; }
C
    like(tg_conf_error(<<'C'), qr/^\S+:1: unknown variable "\$nosuchvar"/m,
rate_limit_zone a key=$nosuchvar rate=10r/s size=1m;
server { listen %%PORT%%; }
C
         'unknown variable in key=');
    like(tg_conf_error(<<'C'), qr/^\S+:2: "rate_limit" directive is not allowed here/m,
rate_limit_zone a key=$remote_addr rate=10r/s size=1m;
rate_limit a;
server { listen %%PORT%%; }
C
         'rate_limit is not a main-scope directive');
    like(tg_conf_error(<<'C'), qr/^\S+:2: "rate_limit off" cannot be combined/m, 'off + zones');
rate_limit_zone a key=$remote_addr rate=10r/s size=1m;
server { listen %%PORT%%; rate_limit a; rate_limit off; }
C
    ok(tg_conf_ok(<<'C'), 'zone declared after its use is fine');
server { listen %%PORT%%; rate_limit late; location / { return 200; } }
rate_limit_zone late key=$remote_addr rate=10r/s size=64k;
C
}

# --- exact across two workers ------------------------------------------------
{
    my $tg = tg_start(<<'C');
workers 2;
rate_limit_zone per_ip key=$remote_addr$http_x_round rate=10r/m size=1m;
server {
    listen %%PORT%%;
    rate_limit per_ip;
    location / { return 200 "ok\n"; }
}
C
    for my $round (1 .. 3) {   # three rounds, three fresh keys: no state leaks between them
        my $n = statuses(parallel($tg->port, 30, headers => ['X-Round' => $round]));
        is($n->{200} // 0, 10, "round $round: exactly 10 of 30 parallel requests pass");
        is($n->{429} // 0, 20, "round $round: the 20 others are refused with 429");
    }
    my @w = $tg->worker_pids;
    is(scalar @w, 2, 'two workers served them');
}

# --- burst, keys, Retry-After, JSON body --------------------------------------
{
    my $tg = tg_start(<<'C');
rate_limit_zone burst key=$http_x_key rate=10r/m burst=5 size=1m;
rate_limit_zone slow key=$http_x_key rate=1r/h size=64k;
rate_limit_zone skip key=$http_x_key rate=1r/h size=64k skip_empty=on;
rate_limit_zone fast key=$http_x_key rate=100r/s size=64k;
server {
    listen %%PORT%%;
    location /fast { rate_limit fast; rate_limit_headers on; return 200 "ok\n"; }
    location /burst { rate_limit burst; return 200 "ok\n"; }
    location /slow  { rate_limit slow;  return 200 "ok\n"; }
    location /skip  { rate_limit skip;  return 200 "ok\n"; }
}
C
    my $n = statuses(parallel($tg->port, 20, path => '/burst', headers => ['X-Key' => 'k1']));
    is($n->{200}, 15, 'rate 10/min burst 5: 15 pass at once');
    my $r = $tg->http(GET => '/burst', headers => ['X-Key' => 'k2']);
    is($r->{status}, 200, 'another key has its own allowance');
    $r = $tg->http(GET => '/burst', headers => ['X-Key' => 'k1']);
    is($r->{status}, 429, 'k1 still limited');
    is($r->{headers}{'content-type'}, 'text/html; charset=utf-8', "express-rate-limit's type");
    like($r->{headers}{'retry-after'}, qr/^[56]$/, 'Retry-After: one interval (6 s), rounded up');
    is($r->{body}, 'Too many requests, please try again later.', "express-rate-limit's message");
    my @empty = map { $tg->http(GET => '/slow')->{status} } 1 .. 2;
    is_deeply(\@empty, [200, 429], 'empty keys share one key: 1r/h lets one through');
    @empty = map { $tg->http(GET => '/skip')->{status} } 1 .. 3;
    is_deeply(\@empty, [200, 200, 200], 'skip_empty=on: an empty key is not limited');

    $r = $tg->http(GET => '/fast', headers => ['X-Key' => 'f']);
    like($r->{headers}{'ratelimit-policy'}, qr/^"100-in-1sec"; q=100; w=1; pk=:/, 'r/s policy');
    is($r->{headers}{ratelimit}, '"100-in-1sec"; r=99; t=1', 'r/s RateLimit');
    is($tg->http(GET => '/slow', headers => ['X-Key' => 's'])->{status}, 200, '1r/h: first');
    $r = $tg->http(GET => '/slow', headers => ['X-Key' => 's']);
    is($r->{status}, 429, '1r/h: second refused');
    ok($r->{headers}{'retry-after'} >= 3598 && $r->{headers}{'retry-after'} <= 3600,
       "Retry-After about an hour ($r->{headers}{'retry-after'})");
    ok($tg->wait_log(qr/rate_limit zone "burst": limiting client 127\.0\.0\.1 .*limited=\d+/, 5),
       'limiting is logged');
}

# --- rate_limit_allow after real_ip, dry_run, status=, body, off, several zones
{
    my $up = node_upstream('echo');
    my $tg = tg_start(<<"C");
rate_limit_zone ip key=\$remote_addr rate=2r/m size=64k;
rate_limit_zone dry key=\$remote_addr rate=2r/m size=64k mode=dry_run;
rate_limit_zone busy key=\$remote_addr rate=1r/m size=64k status=503;
rate_limit_zone a key=\$http_x_key rate=3r/m size=64k;
rate_limit_zone b key=\$http_x_key rate=2r/m size=64k;
server {
    listen %%PORT%%;
    real_ip_from 127.0.0.1;
    rate_limit ip;
    rate_limit_allow 10.0.0.0/8 192.0.2.7;
    location /dry { rate_limit dry; rate_limit_headers on; proxy_pass $up->{addr}; }
    location /busy {
        rate_limit busy;
        rate_limit_body "slow down\\n";
        return 200 "ok\\n";
    }
    location /off { rate_limit off; return 200 "ok\\n"; }
    location /two { rate_limit a b; rate_limit_headers on; return 200 "ok\\n"; }
    location / { return 200 "ok\\n"; }
}
C
    my @xff = (headers => ['X-Forwarded-For' => '10.1.2.3']);
    my @st = map { $tg->http(GET => '/', @xff)->{status} } 1 .. 5;
    is_deeply(\@st, [(200) x 5], 'rate_limit_allow: 10.1.2.3 (from X-Forwarded-For) is exempt');
    @st = map { $tg->http(GET => '/', headers => ['X-Forwarded-For' => '198.51.100.1'])->{status} }
          1 .. 3;
    is_deeply(\@st, [200, 200, 429], 'another client address is limited (2/min)');
    @st = map { $tg->http(GET => '/', headers => ['X-Forwarded-For' => '198.51.100.2'])->{status} }
          1 .. 2;
    is_deeply(\@st, [200, 200], 'keyed by the real client address');
    is($tg->http(GET => '/', headers => ['X-Forwarded-For' => '192.0.2.7'])->{status}, 200,
       'a single exempt address');

    my $off = $tg->log_offset;
    my @dry = map { $tg->http(GET => '/dry', headers => ['X-Forwarded-For' => '198.51.100.9']) }
              1 .. 5;
    is_deeply([map { $_->{status} } @dry], [(200) x 5], 'dry_run: everything passes');
    is(scalar(@{$up->log}), 5, 'and reaches the upstream');
    is($dry[4]{headers}{ratelimit}, '"2-in-1min"; r=0; t=60', 'headers show the real state');
    ok($tg->wait_log(qr/rate_limit zone "dry": dry run, would limit client 198\.51\.100\.9 .*dry_run=\d+/,
                     5, $off), 'dry_run logs what it would have limited');

    my @busy = map { $tg->http(GET => '/busy', headers => ['X-Forwarded-For' => '203.0.113.5']) }
               1 .. 2;
    is($busy[1]{status}, 503, 'status=503');
    is($busy[1]{body}, "slow down\n", 'rate_limit_body');
    is($busy[1]{headers}{'content-type'}, 'text/plain', 'text body: text/plain');
    ok($busy[1]{headers}{'retry-after'} >= 59, 'Retry-After with any status');

    @st = map { $tg->http(GET => '/off', headers => ['X-Forwarded-For' => '198.51.100.1'])->{status} }
          1 .. 3;
    is_deeply(\@st, [200, 200, 200], 'rate_limit off switches the inherited zone off');

    my @two = map { $tg->http(GET => '/two', headers => ['X-Key' => 'k']) } 1 .. 3;
    is_deeply([map { $_->{status} } @two], [200, 200, 429], 'two zones: the stricter one wins');
    my $pk = encode_base64(substr(sha256_hex('k'), 0, 12), '');
    is($two[0]{headers}{'ratelimit-policy'},
       qq{"3-in-1min"; q=3; w=60; pk=:$pk:, "2-in-1min"; q=2; w=60; pk=:$pk:},
       'one RateLimit-Policy per zone') or diag $two[0]{headers}{'ratelimit-policy'};
    is($two[1]{headers}{ratelimit}, '"3-in-1min"; r=1; t=40, "2-in-1min"; r=0; t=60',
       'one RateLimit per zone');
    is($two[2]{headers}{ratelimit}, '"3-in-1min"; r=0; t=60, "2-in-1min"; r=0; t=60',
       'refused by b: a was charged, b reports 0');
}

# --- eviction: a 4 KB zone holds few keys; more evict the least recently used
{
    my $tg = tg_start(<<'C');
rate_limit_zone tiny key=$http_x_key rate=1r/m size=4k;
server { listen %%PORT%%; rate_limit tiny; location / { return 200 "ok\n"; } }
C
    is($tg->http(GET => '/', headers => ['X-Key' => 'key0'])->{status}, 200, 'key0 once');
    is($tg->http(GET => '/', headers => ['X-Key' => 'key0'])->{status}, 429, 'key0 limited');
    my $c = $tg->keepalive;
    my $ok = 0;
    for my $i (1 .. 200) {
        $ok += ($c->request(GET => '/', headers => ['X-Key' => "key$i"])->{status} // 0) == 200;
    }
    is($ok, 200, '200 new keys each get their first request');
    my $line = $tg->wait_log(qr/rate_limit zone "tiny": table full \(\d+ keys\).*evictions=\d+/, 5);
    ok($line, 'eviction logged') or diag $tg->error_log;
    my ($cap) = ($line // '') =~ /\((\d+) keys\)/;
    ok($cap && $cap < 100, "4 KB holds about 44 bytes per key (cap $cap)");
    is($tg->http(GET => '/', headers => ['X-Key' => 'key0'])->{status}, 200,
       'key0 was evicted: it starts afresh');
    is($tg->http(GET => '/', headers => ['X-Key' => 'key200'])->{status}, 429,
       'the most recent key is still there');
    sleep 1.1;   # the next eviction line comes a second after the last
    my $off = $tg->log_offset;
    $c->request(GET => '/', headers => ['X-Key' => 'one-more']);
    my ($evictions) = ($tg->wait_log(qr/evictions=(\d+)/, 5, $off) // '') =~ /evictions=(\d+)/;
    # keys added: key0, key1..key200, key0 again, one-more; all still live (1/min)
    is($evictions, 203 - $cap, "every eviction counted (203 keys added, $cap entries)");
}

# --- reload: same size keeps the state, another size starts afresh ----------
{
    my $conf = sub ($size, $tag) { <<"C" };
workers 2;
rate_limit_zone r key=\$remote_addr rate=2r/m size=$size;
server { listen %%PORT%%; rate_limit r; location / { return 200 "$tag\\n"; } }
C
    my $tg = tg_start($conf->('64k', 'one'));
    my @st = map { $tg->http(GET => '/')->{status} } 1 .. 3;
    is_deeply(\@st, [200, 200, 429], 'limited before the reload');
    my $off = $tg->reload($conf->('64k', 'two'));
    ok($tg->wait_log(qr/reloaded: generation 2/, 10, $off), 'reloaded');
    ok($tg->wait_log(qr/rate_limit zone "r": state kept/, 1, $off), 'state kept (logged)');
    my $r = $tg->http(GET => '/');
    is($r->{status}, 429, 'same zone size: still limited after the reload');
    $off = $tg->reload($conf->('128k', 'three'));
    ok($tg->wait_log(qr/reloaded: generation 3/, 10, $off), 'reloaded with a new size');
    ok(wait_until(sub { ($tg->http(GET => '/')->{status} // 0) == 200 }, 5),
       'another size: a new zone, counters reset');
}

done_testing;
