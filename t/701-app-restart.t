# app blocks (issue 24): restarts. A crash loop is restarted with a growing
# delay (not a thousand times a second), `restart on-failure` leaves a clean
# exit alone, an instance above max_memory is replaced (the new one ready
# first), an instance that fails its health check gets no traffic.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);
use JSON::PP qw(decode_json);

my $APP = repo_root() . '/t/upstream/app.js';
my $BIN = $ENV{TG_BIN} // repo_root() . '/build/tollgate';

sub status($tg) { my $c = $tg->conf_file; return scalar `$BIN -c $c -s status 2>&1` }
sub restarts($tg, $slot = 0) {
    return status($tg) =~ /^\S+\s+$slot\s+\d+\s+\S+\s+(\d+)\s/m ? $1 : -1;
}

subtest 'crash loop: restarted with backoff' => sub {
    my $tg = tg_start(<<"CONF");
app crash {
    command node $APP;
    listen unix:%%DIR%%/sock/c-%i.sock;
    env APP_EXIT=3;
    restart_backoff 200ms..1s;
}
server { listen %%PORT%%; location / { proxy_pass crash; } }
CONF
    ok($tg->wait_log(qr/app crash#0: pid \d+ exited with code 3, restart in 0\.2s/, 5),
       'first restart after 0.2 s');
    ok($tg->wait_log(qr/exited with code 3, restart in 0\.4s/, 5), 'then 0.4 s');
    ok($tg->wait_log(qr/exited with code 3, restart in 1\.0s/, 8), 'capped at 1 s');
    my $n = restarts($tg);
    cmp_ok($n, '>=', 3, "restarted ($n)");
    cmp_ok($n, '<=', 8, 'but not in a tight loop');
};

subtest 'restart on-failure: a clean exit stays down' => sub {
    my $tg = tg_start(<<"CONF");
app once {
    command node $APP;
    listen unix:%%DIR%%/sock/o-%i.sock;
    env APP_EXIT=0;
    restart on-failure;
}
server { listen %%PORT%%; location / { proxy_pass once; } }
CONF
    ok($tg->wait_log(qr/app once#0: pid \d+ exited with code 0$/m, 5), 'exited, not restarted');
    sleep 1.5;
    unlike($tg->error_log, qr/restart in/, 'no restart');
};

subtest 'max_memory: a leaking instance is replaced' => sub {
    my $tg = tg_start(<<"CONF", errors_ok => [qr/no live upstream server/]);
app leak {
    command node $APP;
    listen unix:%%DIR%%/sock/l-%i.sock;
    env APP_LEAK_MB=10;
    max_memory 120m;
}
server { listen %%PORT%%; location / { proxy_pass leak; } }
CONF
    ok(wait_until(sub { $tg->http(GET => '/')->{status} == 200 }, 10, 0.1), 'up');
    my $pid = decode_json($tg->http(GET => '/')->{body})->{pid};
    ok($tg->wait_log(qr/app leak#0: RSS \d+ bytes above max_memory 125829120: replaced/, 15),
       'noticed above max_memory');
    ok($tg->wait_log(qr/app leak: rolling restart done: 1 instance replaced/, 15), 'replaced');
    my $r = $tg->http(GET => '/');
    is($r->{status}, 200, 'served meanwhile');
    isnt(decode_json($r->{body})->{pid}, $pid, 'by a new process');
    cmp_ok(restarts($tg, 0), '>=', 1, 'counted as a restart in status');
};

subtest 'health check: an unhealthy instance gets no traffic' => sub {
    my @ok = (qr/no live upstream server/, qr/not ready after/);
    my $tg = tg_start(<<"CONF", errors_ok => \@ok);
app sick {
    command node $APP;
    listen unix:%%DIR%%/sock/s-%i.sock;
    env APP_UNHEALTHY=1;
    health_check path=/healthz;
    ready_timeout 1500ms;
    restart_backoff 5s;
}
server { listen %%PORT%%; location / { proxy_pass sick; } }
CONF
    ok($tg->wait_log(qr/app sick#0: not ready after 1\.5s, killed/, 5),
       'never ready: killed after ready_timeout');
    is($tg->http(GET => '/')->{status}, 502, 'and it got no traffic');
    ok($tg->wait_log(qr/app sick#0: pid \d+ exited on signal 9, restart in 5\.0s/, 5),
       'restarted with the backoff');
};

done_testing;
