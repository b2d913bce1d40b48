# rate_limit with backend=redis://: a real redis-server on a free loopback
# port. Two gateways (two workers each) sharing a limit through it are exact
# together; RateLimit headers; a lost script cache (SCRIPT FLUSH) is
# reloaded; Redis down: on_backend_error=allow lets requests through, deny
# answers 503, both logged; a stalled Redis (SIGSTOP) costs a request about
# redis_timeout, not more; the gateway reconnects after Redis restarts; a
# request parked on Redis when its connection is closed (shutdown) leaves
# nothing behind.
use v5.36;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

plan skip_all => 'redis-server not installed' unless grep { -x "$_/redis-server" } split /:/, $ENV{PATH};

# A redis-server on $port (a new free one by default); stopped by PID.
sub redis_start($port = free_port()) {
    my $dir = File::Temp::tempdir('tg-redis-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $pid = Tollgate::Test::_spawn(['redis-server', '--port', $port, '--bind', '127.0.0.1',
                                      '--save', '', '--appendonly', 'no', '--dir', $dir],
                                     "$dir/redis.log");
    wait_until(sub { redis_cmd($port, 'PING') eq 'PONG' }, 10)
        or die "redis-server did not start:\n" . `cat $dir/redis.log`;
    return { port => $port, pid => $pid };
}

sub redis_stop($r) {
    Tollgate::Test::_kill_group($r->{pid}, 'TERM', 5);
    wait_until(sub { !Tollgate::Test::_port_open($r->{port}) }, 5);
}

# One command, the first line of the reply without its type byte.
sub redis_cmd($port, @args) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2)
        or return '';
    print $s '*' . scalar(@args) . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @args);
    my $line = <$s> // '';
    $line =~ s/^[+:\-\$]//;
    $line =~ s/\r?\n$//;
    $line = <$s> // '' if $line =~ /^\d+$/ && $args[0] eq 'GET';
    return $line =~ s/\r?\n$//r;
}

sub parallel($ports, $n, @headers) {
    my $deadline = time + 10;
    my @conns;
    for my $i (0 .. $n - 1) {
        my $port = $ports->[$i % @$ports];
        my ($c, $err) = Tollgate::Test::Conn->connect($port, 5);
        die $err unless $c;
        $c->write_all(Tollgate::Test::_build_request('GET', '/', $port, 1, headers => [@headers]),
                      $deadline);
        push @conns, $c;
    }
    my @res = map { $_->read_response('GET', $deadline) } @conns;
    $_->close for @conns;
    return @res;
}

my $redis = redis_start();
my $url = "redis://127.0.0.1:$redis->{port}";
my $conf = sub (%o) {
    my $extra = $o{zone} // '';
    # generous unless a test is about the timeout: a loaded machine (ASan,
    # parallel tests) can make a loopback round trip take tens of ms
    my $timeout = $o{timeout} // '2s';
    return <<"C";
workers 2;
redis_timeout $timeout;
rate_limit_zone shared key=\$remote_addr\$http_x_round rate=10r/m backend=$url $extra;
server {
    listen %%PORT%%;
    rate_limit shared;
    rate_limit_headers on;
    location / { return 200 "ok\\n"; }
}
C
};
my $down_errors = [qr/\[error\].*redis 127\.0\.0\.1:\d+: /,
                   qr/\[error\].*rate_limit zone "shared": backend /];

# --- two gateways, one limit ---------------------------------------------------
{
    my $a = tg_start($conf->());
    my $b = tg_start($conf->());
    for my $round (1 .. 2) {
        my @res = parallel([$a->port, $b->port], 30, 'X-Round' => "r$round");
        my %n;
        $n{$_->{status} // 'none'}++ for @res;
        is($n{200} // 0, 10, "round $round: 10 of 30 pass across two gateways");
        is($n{429} // 0, 20, "round $round: 20 refused");
    }
    my $r = $a->http(GET => '/', headers => ['X-Round' => 'h']);
    is($r->{headers}{ratelimit}, '"10-in-1min"; r=9; t=6', 'RateLimit header from Redis');
    like($r->{headers}{'ratelimit-policy'}, qr/^"10-in-1min"; q=10; w=60; pk=:[A-Za-z0-9+\/=]{16}:$/,
         'RateLimit-Policy');
    my $ttl = redis_cmd($redis->{port}, 'PTTL', 'tollgate:rl:shared:127.0.0.1h');
    ok($ttl > 0 && $ttl <= 6001, "the key expires when its allowance is full again ($ttl ms)");

    # the script cache is lost (SCRIPT FLUSH, a failover): NOSCRIPT -> load again
    is(redis_cmd($redis->{port}, 'SCRIPT', 'FLUSH'), 'OK', 'SCRIPT FLUSH');
    my $off = $a->log_offset;
    my @st = map { $a->http(GET => '/', headers => ['X-Round' => 'ns'])->{status} } 1 .. 11;
    is_deeply([@st[0 .. 9]], [(200) x 10], 'after SCRIPT FLUSH: requests still counted');
    is($st[10], 429, 'and limited');
    ok($a->wait_log(qr/NOSCRIPT/, 2, $off), 'NOSCRIPT seen and handled');
}

# --- count=failed: answers below 400 are given back (a script on Redis) -------
{
    # redis_timeout as in $conf: a loaded machine must not turn a give-back into a timeout
    my $tg = tg_start(<<"C");
redis_timeout 2s;
rate_limit_zone shared key=\$remote_addr\$http_x_round rate=10r/m backend=$url;
server {
    listen %%PORT%%;
    rate_limit shared count=failed;
    location / { return 200 "ok\\n"; }
    location /bad { return 404 "no\\n"; }
}
C
    my @st = map { $tg->http(GET => '/', headers => ['X-Round' => 'cf'])->{status} } 1 .. 12;
    is_deeply(\@st, [(200) x 12], 'count=failed: 12 answers of 200 at 10r/m all pass');
    ok(wait_until(sub { redis_cmd($redis->{port}, 'EXISTS', 'tollgate:rl:shared:127.0.0.1cf') eq '0' }, 5),
       'each was given back: the key is gone from Redis');
    @st = map { $tg->http(GET => '/bad', headers => ['X-Round' => 'cf'])->{status} } 1 .. 11;
    is_deeply(\@st, [(404) x 10, 429], 'count=failed: 404 answers count, the 11th is refused');
}

# --- Redis down: allow and deny ------------------------------------------------
{
    my $allow = tg_start($conf->(zone => 'on_backend_error=allow'), errors_ok => $down_errors);
    my $deny = tg_start($conf->(zone => 'on_backend_error=deny'), errors_ok => $down_errors);
    is($allow->http(GET => '/', headers => ['X-Round' => 'd'])->{status}, 200, 'redis up');
    redis_stop($redis);
    my @st = map { $allow->http(GET => '/', headers => ['X-Round' => 'd'])->{status} } 1 .. 15;
    is_deeply(\@st, [(200) x 15], 'redis down, on_backend_error=allow: requests pass');
    my $r = $deny->http(GET => '/', headers => ['X-Round' => 'd']);
    is($r->{status}, 503, 'on_backend_error=deny: 503');
    is($r->{body}, '{"error":"rate_limit_unavailable"}', 'with a JSON body');
    ok(!defined $r->{headers}{ratelimit}, 'no RateLimit header without a decision');
    ok($allow->wait_log(qr/\[error\].*redis 127\.0\.0\.1:\d+: .*retrying/, 5), 'connection loss logged');
    ok($allow->wait_log(qr/\[error\].*rate_limit zone "shared": backend .* let through by on_backend_error=allow; backend_errors=\d+/, 5),
       'decision logged and counted');
    my $t0 = time;
    $r = $allow->http(GET => '/', headers => ['X-Round' => 'd']);
    ok(time - $t0 < 0.5, 'while down, requests do not wait');

    # --- Redis back on the same port: the gateways reconnect
    $redis = redis_start($redis->{port});
    # every connection of both workers is back once a run of requests has no 503
    my $k = 0;
    ok(wait_until(sub {
        my @s = map { $deny->http(GET => '/', headers => ['X-Round' => 'probe' . $k++])->{status} }
                1 .. 8;
        return !grep { $_ != 200 } @s;
    }, 10), 'reconnected after Redis restarted');
    ok($deny->wait_log(qr/redis 127\.0\.0\.1:\d+: connected/, 5), 'recovery logged');
    my %n;
    $n{$deny->http(GET => '/', headers => ['X-Round' => 'back2'])->{status}}++ for 1 .. 12;
    is_deeply(\%n, { 200 => 10, 429 => 2 }, 'limits apply again')
        or diag explain(\%n), $deny->error_log;
}

# --- a stalled Redis costs a request about redis_timeout -------------------------
{
    my $tg = tg_start($conf->(timeout => '100ms'), errors_ok => $down_errors);
    is($tg->http(GET => '/', headers => ['X-Round' => 's'])->{status}, 200, 'connected');
    kill 'STOP', $redis->{pid};
    my @times;
    for (1 .. 3) {
        my $t0 = time;
        my $r = $tg->http(GET => '/', headers => ['X-Round' => 's'], timeout => 5);
        push @times, time - $t0;
        is($r->{status}, 200, 'redis stalled: on_backend_error=allow after the timeout');
    }
    ok($times[0] >= 0.09 && $times[0] < 0.6, sprintf('first answer after about 100 ms (%.3f s)',
                                                     $times[0]));
    ok((grep { $_ < 0.6 } @times) == 3, 'none waits much longer: ' . join(' ', map { sprintf '%.3f', $_ } @times));
    ok($tg->wait_log(qr/redis 127\.0\.0\.1:\d+: timed out/, 2), 'timeout logged');
    kill 'CONT', $redis->{pid};
    my $k = 0;
    ok(wait_until(sub {
        my $key = 's2-' . $k++;
        my @s = map { $tg->http(GET => '/', headers => ['X-Round' => $key])->{status} } 1 .. 12;
        return (grep { $_ == 429 } @s) == 2;
    }, 10), 'limits apply again once Redis runs');
}

# --- a request parked on Redis when its connection is closed at shutdown ---------
{
    my $tg = tg_start(<<"C", errors_ok => $down_errors);
shutdown_timeout 300ms;
redis_timeout 10s;
rate_limit_zone shared key=\$remote_addr rate=10r/m backend=$url;
server { listen %%PORT%%; rate_limit shared; location / { return 200 "ok\\n"; } }
C
    is($tg->http(GET => '/')->{status}, 200, 'connected');
    kill 'STOP', $redis->{pid};
    my ($c) = Tollgate::Test::Conn->connect($tg->port, 5);
    $c->write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n", time + 5);
    sleep 0.2;   # parked, waiting for Redis
    my $t0 = time;
    $tg->stop;   # graceful: the parked request is dropped after shutdown_timeout
    ok(time - $t0 < 5, 'the worker did not wait for Redis');
    my $r = $c->read_response('GET', time + 2);
    ok(!defined $r->{status}, 'the parked request was closed without an answer');
    kill 'CONT', $redis->{pid};
}

redis_stop($redis);
done_testing;
