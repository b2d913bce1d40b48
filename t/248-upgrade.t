# Binary upgrade (USR2, `tollgate -s upgrade`): the master execs its binary
# as a new master that inherits the listening sockets; once the new workers
# are up the old master stops gracefully. Client loops (keep-alive and new
# connections) see no failed request; a WebSocket opened before keeps
# working until it closes; a broken binary or a bad config leaves the old
# master serving with its pid file back; shared memory zones go across
# (rate-limit state kept), unless a zone's size changed in the new config.
use v5.36;
use Test::More;
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::WS;

# the binary is a copy we can replace, as an admin installing a new version
my $bindir = tempdir('tollgate-bin-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $orig = File::Spec->rel2abs($ENV{TG_BIN} // 'build/tollgate');
$orig = readlink($orig) =~ m{^/} ? readlink($orig) : File::Spec->rel2abs(readlink($orig), $orig =~ s{/[^/]*$}{}r)
    if -l $orig;
my $bin = "$bindir/tollgate";
sub install_bin($src) {
    copy($src, "$bin.new") or die "copy: $!";
    chmod 0755, "$bin.new";
    rename("$bin.new", $bin) or die "rename: $!";    # as install(1) does: the running file stays
}
install_bin($orig);
chmod 0755, $bindir;
$ENV{TG_BIN} = $bin;

my $up = node_upstream('ws');
my $conf = sub ($tag) { <<"C" };
workers 2;
rate_limit_zone once key=\$remote_addr rate=1r/m burst=0 size=1m;
server {
    listen %%PORT%%;
    location / { proxy_pass $up->{addr}; }
    location = /tag { return 200 "$tag"; }
    location = /limited { rate_limit once; return 200 "ok"; }
}
C

sub read_pid($file) { open(my $fh, '<', $file) or return 0; my $p = <$fh> // 0; chomp $p; return 0 + $p }
sub alive($pid) { return $pid > 0 && kill(0, $pid) && (Tollgate::Test::_slurp("/proc/$pid/stat") !~ /^\d+ \(.*\) Z/s) }

my $tg = tg_start($conf->('old'), errors_ok => [qr/upgrade failed/]);
my $pidfile = $tg->dir . '/tollgate.pid';
my $old = $tg->pid;
is(read_pid($pidfile), $old, 'pid file names the master');
is($tg->http(GET => '/tag')->{body}, 'old', 'old binary serves');
is($tg->http(GET => '/limited')->{status}, 200, 'rate limit: first request passes');
is($tg->http(GET => '/limited')->{status}, 429, 'rate limit: second one refused');

# --- a broken binary: the old master keeps serving, its pid file comes back
{
    my $script = "$bindir/broken";
    open(my $fh, '>', $script) or die;
    print $fh "#!/bin/sh\necho broken binary >&2\nexit 1\n";
    close $fh;
    install_bin($script);
    my $off = $tg->signal('USR2');
    ok($tg->wait_log(qr/upgrade failed: the new master \d+ exited with code 1/, 10, $off),
       'broken binary: upgrade failed logged');
    ok(wait_until(sub { read_pid($pidfile) == $old }, 5), 'pid file restored');
    ok(!-e "$pidfile.oldbin", 'no .oldbin left');
    is($tg->http(GET => '/tag')->{body}, 'old', 'old master still serves');
    ok(alive($old), 'old master still running');
    install_bin($orig);
}

# --- a bad config: the new master refuses it, the old one keeps serving
{
    my $good = Tollgate::Test::_slurp($tg->conf_file);
    Tollgate::Test::_spew($tg->conf_file, $good . "\nbogus_directive on;\n");
    # (`tollgate -s upgrade` would refuse to read this config: the signal it is)
    my $off = $tg->signal('USR2');
    ok($tg->wait_log(qr/upgrade failed: the new master \d+ exited with code 1/, 10, $off),
       'bad config: upgrade failed logged');
    like($tg->stderr, qr/unknown directive "bogus_directive"/, 'the new master said why');
    ok(wait_until(sub { read_pid($pidfile) == $old }, 5), 'pid file restored');
    is($tg->http(GET => '/tag')->{body}, 'old', 'old master still serves');
    Tollgate::Test::_spew($tg->conf_file, $good);
}

# --- the upgrade, under load and with a WebSocket open
my $ws = Tollgate::WS->connect($tg->port, '/ws') or BAIL_OUT("ws: $Tollgate::WS::error");
is(($ws->recv)[1], 'hello from ws', 'WebSocket open before the upgrade');
my $c0 = $tg->keepalive(timeout => 5);
is($c0->request(GET => '/tag', timeout => 5)->{body}, 'old', 'keep-alive connection open before');

my @loops;
for my $k (1 .. 4) {
    my $pid = fork // die;
    if ($pid == 0) {
        my ($n, $bad) = (0, 0);
        my $end = time + 5;
        while (time < $end) {
            my $c = $tg->keepalive(timeout => 5);
            for (1 .. 20) {
                my $r = $c->request(GET => "/load$k", timeout => 5);
                $n++;
                if (($r->{status} // 0) != 200) { $bad++; print STDERR "# loop $k: keep-alive: ", ($r->{error} // $r->{status}), "\n" }
                last if ($r->{headers}{connection} // '') =~ /close/i;
            }
            my $r = $tg->http(GET => "/fresh$k", timeout => 5);
            $n++;
            if (($r->{status} // 0) != 200) { $bad++; print STDERR "# loop $k: new: ", ($r->{error} // $r->{status}), "\n" }
        }
        POSIX::_exit($bad > 0 ? 1 : ($n > 50 ? 0 : 2));
    }
    push @loops, $pid;
}
sleep 1;
# the new master reads the config file as it is now
Tollgate::Test::_spew($tg->conf_file, Tollgate::Test::_slurp($tg->conf_file) =~ s/"old"/"new"/r);
my $off = $tg->signal('USR2');
ok($tg->wait_log(qr/upgrade: new master \d+ is up, this one stops gracefully/, 15, $off),
   'old master: new master is up');
my $new = read_pid($pidfile);
ok($new && $new != $old && alive($new), "pid file names the new master ($new)");
is(read_pid("$pidfile.oldbin"), $old, 'PIDFILE.oldbin names the old master while it finishes');
like($tg->error_log, qr/started by an upgrade from master $old/, 'new master inherited the sockets');

my @st = map { waitpid($_, 0); $? >> 8 } @loops;
is_deeply(\@st, [0, 0, 0, 0], 'no failed request in any client loop during the upgrade');
is($tg->http(GET => '/tag')->{body}, 'new', 'the new master serves');
# as on reload: the old workers close idle keep-alive connections (between
# requests, so clients open a new one: the loops above do)
ok($c0->is_closed(5), 'idle keep-alive connection from before closed cleanly by the old worker');

# the WebSocket from before still works while the old master waits for it
ok(alive($old), 'old master waits for its WebSocket');
$ws->send_text('after upgrade');
is(($ws->recv(5))[1], 'echo:after upgrade', 'WebSocket from before the upgrade still echoes');
$ws->send_text('bye');
$ws->close;
ok(wait_until(sub { !alive($old) }, 15), 'old master exits once its WebSocket closed');
ok(!-e "$pidfile.oldbin", 'PIDFILE.oldbin removed');
is(read_pid($pidfile), $new, 'pid file still names the new master');
like($tg->error_log, qr/exit: the new master $new serves/, 'old master logged the hand-over');

# the shared memory zones went across exec: the allowance used before the
# upgrade is still used
is($tg->http(GET => '/limited')->{status}, 429, 'rate-limit state kept across the upgrade');
unlike($tg->error_log, qr/not taken over/, 'every zone taken over');

# a second upgrade from the new master works the same way (and via -s upgrade);
# the zone's size changes, so it is a new zone: its state starts afresh
Tollgate::Test::_spew($tg->conf_file, Tollgate::Test::_slurp($tg->conf_file) =~ s/size=1m/size=2m/r);
$off = $tg->log_offset;
system($bin, '-s', 'upgrade', '-c', $tg->conf_file) == 0 or die;
ok($tg->wait_log(qr/exit: the new master \d+ serves/, 20, $off), 'second upgrade done');
my $third = read_pid($pidfile);
ok($third != $new && alive($third), "third master $third");
ok(wait_until(sub { !alive($new) }, 10), 'second master gone');
is($tg->http(GET => '/tag')->{body}, 'new', 'and answers');
is($tg->http(GET => '/limited')->{status}, 200, 'a zone whose size changed starts afresh');
is($tg->http(GET => '/limited')->{status}, 429, 'and counts again');

# stop the last master ourselves (it is not our child), then the guard's check
kill 'TERM', $third;
ok(wait_until(sub { !alive($third) }, 15), 'last master stopped');
ok(wait_until(sub { !Tollgate::Test::_group_members($old) }, 5), 'no process left');
ok(!-e $pidfile, 'pid file removed at stop');
$tg->stop;
done_testing;
