# Master and workers: reload under load without a failed request, a bad
# reload keeps the running config, a killed worker is respawned, graceful
# stop finishes requests in flight, USR1 reopens logs, workers leave when
# the master dies.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $conf = sub ($tag) { <<"C" };
workers 2;
server {
    listen %%PORT%%;
    location / { proxy_pass $up->{addr}; }
    location = /tag { return 200 "$tag"; }
}
C

# --- reload under load: a client loop across 10 HUPs, no failure
{
    my $tg = tg_start($conf->('gen1'));
    is($tg->http(GET => '/tag')->{body}, 'gen1', 'first config');
    my @pids;
    for my $k (1 .. 4) {   # 4 concurrent client loops
        my $pid = fork // die;
        if ($pid == 0) {
            my ($n, $bad) = (0, 0);
            my $end = time + 6;
            while (time < $end) {
                my $c = $tg->keepalive(timeout => 5);
                for (1 .. 20) {
                    my $r = $c->request(GET => "/load$k", timeout => 5);
                    $n++;
                    if (!defined $r->{status} || $r->{status} != 200) {
                        # a keep-alive connection may be closed between
                        # requests by a stopping worker: retry it once on a
                        # new connection, as every client does
                        last if $r->{error} && !defined $r->{status} && $c->is_closed(0);
                        $bad++;
                    }
                }
                my $r = $tg->http(GET => "/fresh$k", timeout => 5);
                $n++;
                $bad++ if ($r->{status} // 0) != 200;
            }
            POSIX::_exit($bad > 0 ? 1 : ($n > 50 ? 0 : 2));
        }
        push @pids, $pid;
    }
    for my $i (1 .. 10) {
        sleep 0.4;
        my $off = $tg->reload($conf->("gen" . ($i + 1)));
        ok($tg->wait_log(qr/reloaded: generation @{[$i + 1]}/, 5, $off), "reload $i");
    }
    my @st = map { waitpid($_, 0); $? >> 8 } @pids;
    is_deeply(\@st, [0, 0, 0, 0], 'no failed request in any client loop during 10 reloads');
    is($tg->http(GET => '/tag')->{body}, 'gen11', 'new config serves');
    ok(wait_until(sub { scalar($tg->worker_pids) == 2 }, 10), 'old workers gone, 2 left');

    # bad config: the old one keeps running, the error names file:line
    my $off = $tg->reload("server {\n listen %%PORT%%;\n bogus_directive;\n}\n");
    ok($tg->wait_log(qr/tollgate\.conf:3: unknown directive "bogus_directive"/, 5, $off),
       'reload error logged with file:line');
    ok($tg->wait_log(qr/reload failed, the running configuration is kept/, 5, $off),
       'reload refused');
    is($tg->http(GET => '/tag')->{body}, 'gen11', 'old config still serves');
    $tg->{opts}{errors_ok} = [qr/unknown directive|reload failed/];
    $tg->stop;
}

# --- kill -9 of a worker: respawned, service continues
{
    my $tg = tg_start($conf->('k'), no_log_check => 1);
    # the port answers as soon as the master listens; the second fork may lag
    ok(wait_until(sub { scalar($tg->worker_pids) == 2 }, 5), 'two workers');
    my @w = $tg->worker_pids;
    kill 'KILL', $w[0];
    ok(wait_until(sub { my @n = $tg->worker_pids; @n == 2 && !grep { $_ == $w[0] } @n }, 5),
       'killed worker replaced');
    my @s = map { $tg->http(GET => "/after$_")->{status} } 1 .. 20;
    is(scalar(grep { $_ == 200 } @s), 20, 'all requests served after the kill');
    ok($tg->wait_log(qr/worker $w[0] exited on signal 9/, 2), 'the crash is logged');
    my $log = Tollgate::Test::_slurp($tg->error_log);
    unlike($log, qr/AddressSanitizer|runtime error/, 'no sanitizer report');
    $tg->stop;
}

# --- graceful stop: a request in flight completes
{
    my $tg = tg_start($conf->('g'));
    my $pid = fork // die;
    if ($pid == 0) {
        my $r = $tg->http(GET => '/delay/1500', timeout => 10);
        POSIX::_exit(($r->{status} // 0) == 200 ? 0 : 1);
    }
    sleep 0.5;
    kill 'TERM', $tg->pid;
    waitpid($pid, 0);
    is($? >> 8, 0, 'request in flight finished during graceful stop');
    ok(wait_until(sub { waitpid($tg->pid, WNOHANG) != 0 || !kill(0, $tg->pid) }, 5),
       'master exited after it');
    $tg->stop;
}

# --- USR1 reopens the access and error logs
{
    my $tg = tg_start("access_log %%DIR%%/access.log;\n" . $conf->('r'));
    $tg->http(GET => '/one');
    ok(wait_until(sub { -s $tg->dir . '/access.log' }, 3), 'access log written');
    rename($tg->dir . '/access.log', $tg->dir . '/access.log.1');
    my $off = $tg->signal('USR1');
    ok($tg->wait_log(qr/logs reopened/, 3, $off), 'USR1 handled');
    sleep 0.3;
    $tg->http(GET => '/two');
    ok(wait_until(sub { -s $tg->dir . '/access.log' }, 3), 'new access log after USR1');
    $tg->stop;
}

# --- the master dies: workers leave
{
    my $tg = tg_start($conf->('m'), no_log_check => 1);
    my @w = $tg->worker_pids;
    kill 'KILL', $tg->pid;
    ok(wait_until(sub { !grep { kill(0, $_) && `ps -o stat= -p $_` !~ /Z/ } @w }, 5),
       'workers exit when the master is gone');
    $tg->stop;
}
done_testing;
