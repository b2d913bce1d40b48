# app blocks (issue 24): rolling restarts that drop nothing. Five
# `tollgate -s restart-app` of four instances under a load client (keep-alive
# and new connections, POST bodies) with zero failed requests; a broken
# deploy rolls back and the old instances keep serving; a reload that
# changes the block restarts the app, rolling; a request in flight on the
# old instance finishes before it is stopped; a WebSocket on a draining
# instance keeps working until stop_timeout.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root tg_npm_setup);
use Tollgate::WS;
use JSON::PP qw(decode_json);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

my $ROOT = repo_root();
my $APP = "$ROOT/t/upstream/app.js";
my $BIN = $ENV{TG_BIN} // "$ROOT/build/tollgate";

sub slurp($f) { open(my $fh, '<', $f) or return ''; local $/; return <$fh> }
sub status($tg) { my $c = $tg->conf_file; return scalar `$BIN -c $c -s status 2>&1` }
sub pids($tg) {
    my @p = sort map { (split ' ')[2] } grep { /^\S+\s+\d+\s+[1-9]\d*\s+ready/ } split /\n/,
        status($tg);
    return @p;
}
sub restart_app($tg, $name) {
    my $c = $tg->conf_file;
    my $out = `$BIN -c $c -s restart-app $name 2>&1`;
    return ($? >> 8, $out);
}
sub all_ready($tg, $n) {
    return wait_until(sub { my @p = pids($tg); @p == $n && $tg->http(GET => '/')->{status} == 200 },
                      40, 0.1);
}

# The load client (t/upstream/loadclient.js) until the returned stop sub is
# called; the stop sub returns its counts.
sub load($tg, $path = '/slow/5') {
    my $dir = $tg->dir;
    my $stop = "$dir/load.stop";
    unlink $stop;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open(STDOUT, '>', "$dir/load.out") or die;
        exec('node', "$ROOT/t/upstream/loadclient.js", 'http://127.0.0.1:' . $tg->port . $path,
             $stop, 8, 120) or die "exec: $!";
    }
    return sub {
        open(my $fh, '>', $stop) or die;
        close $fh;
        my $t0 = time;
        while (time - $t0 < 15) {
            last if waitpid($pid, POSIX::WNOHANG()) == $pid;
            sleep 0.05;
        }
        kill 'KILL', $pid if kill 0, $pid;
        my $out = slurp("$dir/load.out");
        return $out =~ /^\{/ ? decode_json($out) : { ok => 0, failed => -1, errors => { out => $out } };
    };
}

my $conf = <<"CONF";
app api {
    command node %%DIR%%/app.js;
    instances 4;
    listen unix:%%DIR%%/sock/api-%i.sock;
    health_check path=/healthz interval=1s;
    ready_timeout 20s;
    stop_timeout 5s;
    env APP_VERSION=%%VERSION%%;
}
server { listen %%PORT%%; location / { proxy_pass api; } }
CONF
my $app_js = slurp($APP);
sub conf_v($v) { return $conf =~ s/%%VERSION%%/$v/r }

subtest 'five rolling restarts of four instances under load: nothing fails' => sub {
    my $tg = tg_start(conf_v('v1'), files => { 'app.js' => $app_js },
                      errors_ok => [qr/no live upstream server/]);
    ok(all_ready($tg, 4), 'four instances ready');
    my @before = pids($tg);
    my $stop = load($tg);
    sleep 0.5;
    for my $i (1 .. 5) {
        my ($rc, $out) = restart_app($tg, 'api');
        is($rc, 0, "restart-app $i succeeded");
        like($out, qr/rolling restart done: 4 instances replaced/, "restart $i: all four replaced");
    }
    my $res = $stop->();
    cmp_ok($res->{ok}, '>', 100, "requests served during the deploys ($res->{ok})");
    is($res->{failed}, 0, 'zero failed requests') or diag explain $res;
    my @after = pids($tg);
    is(scalar @after, 4, 'four instances after');
    my %old = map { $_ => 1 } @before;
    is(scalar(grep { $old{$_} } @after), 0, 'all of them new processes');
};

subtest 'broken deploy: rollback, the old instances keep serving' => sub {
    my $tg = tg_start(conf_v('v1'), files => { 'app.js' => $app_js },
                      errors_ok => [qr/no live upstream server/, qr/rolling restart stopped/]);
    ok(all_ready($tg, 4), 'four instances ready');
    my @before = pids($tg);
    my $stop = load($tg);
    open(my $fh, '>', $tg->dir . '/app.js') or die;
    print $fh "throw new Error('broken deploy');\n";
    close $fh;
    my ($rc, $out) = restart_app($tg, 'api');
    is($rc, 1, 'restart-app fails');
    like($out, qr/did not become ready; the running instances keep serving/, 'and says why');
    my $res = $stop->();
    is($res->{failed}, 0, 'zero failed requests') or diag explain $res;
    is_deeply([pids($tg)], \@before, 'the old instances serve on');
    like(slurp($tg->dir . '/error.log'), qr/\[error\].*app api: rolling restart stopped/,
         'logged');
};

subtest 'reload with a changed block: rolling restart to the new version' => sub {
    my $tg = tg_start(conf_v('v1'), files => { 'app.js' => $app_js },
                      errors_ok => [qr/no live upstream server/]);
    ok(all_ready($tg, 4), 'four instances ready');
    my $stop = load($tg);
    my $off = $tg->reload(conf_v('v2'));
    ok($tg->wait_log(qr/app api: rolling restart of 4 instances \(reload: block changed\)/, 5,
                     $off), 'the reload restarts the app');
    ok($tg->wait_log(qr/app api: rolling restart done/, 40, $off), 'done');
    my $res = $stop->();
    is($res->{failed}, 0, 'zero failed requests') or diag explain $res;
    my %v;
    $v{decode_json($tg->http(GET => '/x')->{body})->{version}}++ for 1 .. 8;
    is_deeply([keys %v], ['v2'], 'every instance runs the new block');
    $off = $tg->reload(conf_v('v2') . "\n# a comment\n");
    $tg->wait_log(qr/reloaded: generation 3/, 5, $off);
    sleep 0.5;
    unlike(substr(slurp($tg->dir . '/error.log'), $off), qr/rolling restart/,
           'a reload that does not change the block leaves the app alone');
};

subtest 'a request in flight finishes before its instance stops' => sub {
    my $c = $conf =~ s/instances 4/instances 1/r;
    my $tg = tg_start($c =~ s/%%VERSION%%/v1/r, files => { 'app.js' => $app_js },
                      errors_ok => [qr/no live upstream server/]);
    ok(all_ready($tg, 1), 'ready');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Timeout => 5)
        or die "connect: $!";
    print $s "GET /slow/1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    sleep 0.3;
    my ($rc) = restart_app($tg, 'api');
    is($rc, 0, 'restart-app');
    local $/;
    $s->timeout(10);
    my $resp = <$s> // '';
    like($resp, qr{^HTTP/1\.1 200}, 'the slow request got its answer');
};

subtest 'reload: more instances start, fewer drain, a removed app stops' => sub {
    my $one = $conf =~ s/instances 4/instances 1/r =~ s/%%VERSION%%/v1/r;
    my $tg = tg_start($one, files => { 'app.js' => $app_js },
                      errors_ok => [qr/no live upstream server/]);
    ok(all_ready($tg, 1), 'one instance');
    my @one = pids($tg);
    my $off = $tg->reload($one =~ s/instances 1/instances 3/r);
    ok(all_ready($tg, 3), 'three after a reload with instances 3');
    ok((grep { $_ == $one[0] } pids($tg)), 'the first one kept: only the count changed');
    unlike(substr(slurp($tg->dir . '/error.log'), $off), qr/rolling restart/, 'no restart');
    $off = $tg->reload($one =~ s/instances 1/instances 2/r);
    ok($tg->wait_log(qr/app api#\d: pid \d+ stopped/, 20, $off), 'one drained and stopped');
    ok(all_ready($tg, 2), 'two after instances 2');
    my @two = pids($tg);
    $off = $tg->reload("server { listen %%PORT%%; location / { return 200 'no app'; } }");
    ok($tg->wait_log(qr/app api: stopped and removed/, 15, $off), 'removed app stopped');
    ok(wait_until(sub { !grep { kill 0, $_ } @two }, 5), 'its processes are gone');
    is($tg->http(GET => '/')->{body}, 'no app', 'the new config serves');
};

subtest 'WebSockets: served while their instance drains, up to stop_timeout' => sub {
    tg_npm_setup();
    my $tg = tg_start(<<"CONF", errors_ok => [qr/no live upstream server/]);
app ws {
    command node $ROOT/t/upstream/ws.js;
    listen 127.0.0.1:%%PORT2%%;
    stop_timeout 3s;
}
server { listen %%PORT%%; location / { proxy_pass ws; } }
CONF
    ok(all_ready($tg, 1), 'ready');
    my $ws = Tollgate::WS->connect($tg->port, '/ws') or die "ws: $Tollgate::WS::error";
    is(($ws->recv)[1], 'hello from ws', 'WebSocket open');
    my $pid = fork // die;
    if ($pid == 0) {
        my $c = $tg->conf_file;
        exec("$BIN -c $c -s restart-app ws >/dev/null 2>&1") or POSIX::_exit(1);
    }
    ok($tg->wait_log(qr/app ws#0: pid \d+ stopped|app ws#1: ready/, 15), 'the new instance is up');
    sleep 0.5;
    $ws->send_text('still');
    is(($ws->recv)[1], 'echo:still', 'the old instance still serves its WebSocket while draining');
    my $t0 = time;
    ok($ws->is_closed(8), 'closed once stop_timeout ran out');
    cmp_ok(time - $t0, '>=', 1, 'not before');
    waitpid($pid, 0);
    is($? >> 8, 0, 'restart-app done');
    my $ws2 = Tollgate::WS->connect($tg->port, '/ws') or die "ws: $Tollgate::WS::error";
    is(($ws2->recv)[1], 'hello from ws', 'a new WebSocket goes to the new instance');
};

done_testing;
