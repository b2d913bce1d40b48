# systemd: contrib/systemd/tollgate.service passes `systemd-analyze verify`
# without a warning, and the master speaks the notify protocol: READY=1 once
# every worker is up, RELOADING=1 then READY=1 around a reload (also a
# refused one), STOPPING=1 on stop. NOTIFY_SOCKET points at a unix datagram
# socket this test reads.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::UNIX;
use IO::Select;
use Cwd ();
use Socket qw(SOCK_DGRAM);
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);

my $root = repo_root();
my $tmp = tempdir(CLEANUP => 1);

# --- the unit file ------------------------------------------------------------
SKIP: {
    my $sa = `sh -c 'command -v systemd-analyze'`;
    skip 'systemd-analyze is not installed (package systemd)', 2 unless $sa =~ /\S/;
    # verify checks that ExecStart's binary exists: point it at the one built
    my $bin = Cwd::abs_path($ENV{TG_BIN} // "$root/build/tollgate");
    open(my $in, '<', "$root/contrib/systemd/tollgate.service") or die $!;
    my $unit = do { local $/; <$in> };
    $unit =~ s{/usr/local/bin/tollgate}{$bin}g;
    open(my $out, '>', "$tmp/tollgate.service") or die $!;
    print $out $unit;
    close $out;
    my $msg = `cd $tmp && systemd-analyze verify ./tollgate.service 2>&1`;
    is($?, 0, 'systemd-analyze verify: exit 0');
    is($msg, '', 'no warning') or diag $msg;
}

# --- conf/production.conf, the config the unit runs, checks with -t (its
# absolute directories moved into a temp dir, port 80 to a free one)
{
    open(my $in, '<', "$root/conf/production.conf") or die $!;
    my $conf = do { local $/; <$in> };
    $conf =~ s{/var/log/tollgate|/run/tollgate}{$tmp}g;
    my $port = Tollgate::Test::free_port();
    $conf =~ s/listen 80;/listen 127.0.0.1:$port;/;
    open(my $out, '>', "$tmp/production.conf") or die $!;
    print $out $conf;
    close $out;
    my $bin = $ENV{TG_BIN} // "$root/build/tollgate";
    my $msg = `$bin -t -c $tmp/production.conf 2>&1`;
    is($?, 0, 'conf/production.conf passes -t') or diag $msg;
}

# --- the notify protocol ------------------------------------------------------
my $path = "$tmp/notify.sock";
my $sock = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path) or die "bind $path: $!";

# the next datagram, within $timeout seconds
sub next_msg($timeout = 10) {
    my $sel = IO::Select->new($sock);
    return undef unless $sel->can_read($timeout);
    my $buf;
    $sock->recv($buf, 4096) // return undef;
    return $buf;
}

my $site = "server { listen %%PORT%%; location / { return 200 ok; } }";
my $tg = tg_start("workers 3;\n$site", env => { NOTIFY_SOCKET => $path },
                  errors_ok => [ qr/unknown directive "bogus"|reload failed/ ]);
my $m = next_msg();
like($m // '', qr/^READY=1$/m, 'READY=1 at start');
like($m // '', qr/^STATUS=3 workers, generation 1$/m, 'with a status');
my @up = $tg->error_log =~ /worker started/g;
is(scalar @up, 3, 'sent once all 3 workers were up');
is($tg->http(GET => '/')->{status}, 200, 'serving');

my $off = $tg->reload("workers 2;\n$site");
$m = next_msg();
like($m // '', qr/^RELOADING=1$/m, 'HUP: RELOADING=1');
like($m // '', qr/^MONOTONIC_USEC=\d+$/m, 'with MONOTONIC_USEC');
$m = next_msg();
like($m // '', qr/^READY=1$/m, 'READY=1 after the reload');
like($m // '', qr/^STATUS=2 workers, generation 2$/m, 'for the new generation');
@up = substr($tg->error_log, $off) =~ /worker started/g;
is(scalar @up, 2, 'once both new workers were up');

$tg->reload("workers 2;\nbogus on;\n$site");
$m = next_msg();
like($m // '', qr/^RELOADING=1$/m, 'a bad config: RELOADING=1');
$m = next_msg();
like($m // '', qr/^READY=1$/m, 'READY=1 again');
like($m // '', qr/^STATUS=reload failed/m, 'status: reload failed');
my $still = $tg->http(GET => '/');
is($still->{status}, 200, 'still serving') or diag explain($still), $tg->error_log;

kill 'TERM', $tg->pid;
$m = next_msg();
like($m // '', qr/^STOPPING=1$/m, 'TERM: STOPPING=1');
$tg->{sent}{TERM} = 1;
$tg->stop;

# without NOTIFY_SOCKET nothing is sent, and nothing breaks
my $plain = tg_start($site);
is($plain->http(GET => '/')->{status}, 200, 'no NOTIFY_SOCKET: serving');
is(next_msg(0.5), undef, 'nothing sent');
$plain->stop;

done_testing;
