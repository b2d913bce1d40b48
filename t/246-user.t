# `user NAME [GROUP]`: a master started as root runs its workers as that user
# (default nobody/nogroup), switched right after fork; the master stays root
# and gives the workers the logs they write, also across USR1 rotation; a
# master that is not root ignores the directive with a warning. The suite
# runs as root, so the default case is every other test too; here the
# credentials are read from /proc/PID/status.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;

plan skip_all => 'needs root (the master must be able to switch users)' if $> != 0;

my @nobody = getpwnam('nobody') or plan skip_all => 'no user nobody';
my @daemon = getpwnam('daemon') or plan skip_all => 'no user daemon';
my $nogroup = getgrnam('nogroup') // $nobody[3];
my $daemon_gid = getgrnam('daemon') // $daemon[3];

sub status($pid) {
    open(my $f, '<', "/proc/$pid/status") or return {};
    my %s = map { /^(\w+):\s*(.*)$/ ? ($1 => $2) : () } <$f>;
    return \%s;
}
sub ids($field) { return [ split /\s+/, $field // '' ] }

# The pids of the $n workers that logged "worker started" (they have switched
# user by then) after byte $from of the error log.
sub workers_of($tg, $n, $from = 0) {
    my @w;
    wait_until(sub {
        @w = substr($tg->error_log, $from) =~ /\] (\d+)#\d+: worker started/g;
        @w >= $n;
    }, 10);
    return @w;
}

my $site = 'location / { return 200 "hi\n"; }';

# --- the default: nobody / nogroup, logs given to nobody, rotation ---------
{
    my $tg = tg_start(<<"EOF");
workers 2;
server { listen %%PORT%%; access_log %%DIR%%/access.log; $site }
EOF
    my @w = workers_of($tg, 2);
    is(scalar @w, 2, 'two workers');
    for my $pid (@w) {
        my $s = status($pid);
        is_deeply(ids($s->{Uid}), [ ($nobody[2]) x 4 ], "worker $pid: real, effective, saved, fs uid nobody");
        is_deeply(ids($s->{Gid}), [ ($nogroup) x 4 ], "worker $pid: gids nogroup");
        unlike(" $s->{Groups} ", qr/ 0 /, "worker $pid: not in group root");
        is($s->{CapEff}, '0000000000000000', "worker $pid: no capabilities");
    }
    is(ids(status($tg->pid)->{Uid})->[1], 0, 'the master stays root');
    like($tg->error_log, qr/workers run as user nobody, group nogroup/, 'logged');

    my $r = $tg->http(GET => '/a');
    is($r->{status}, 200, 'requests work');
    my $dir = $tg->dir;
    ok(wait_until(sub { (-s "$dir/access.log" // 0) > 0 }, 5), 'access log written');
    is((stat "$dir/access.log")[4], $nobody[2], 'access log owned by nobody');
    is((stat "$dir/error.log")[4], $nobody[2], 'error log owned by nobody');

    # rotation: the master creates the new files, the workers reopen them
    rename("$dir/access.log", "$dir/access.log.1") or die $!;
    rename("$dir/error.log", "$dir/error.log.1") or die $!;
    kill 'USR1', $tg->pid;
    ok(wait_until(sub { -e "$dir/error.log" && -e "$dir/access.log" }, 5), 'USR1: new files');
    # the workers' reopen follows the master's: until they have it, requests
    # still go to the old file (each try has its own path)
    my $i = 0;
    ok(wait_until(sub {
        $tg->http(GET => '/rotated' . ++$i);
        (`cat $dir/access.log` // '') =~ m{GET /rotated$i };
    }, 5), 'the workers write the new access log');
    unlike(`cat $dir/access.log.1`, qr{/rotated$i }, 'that request is not in the old one');
    is((stat "$dir/access.log")[4], $nobody[2], 'new access log owned by nobody');
    is((stat "$dir/error.log")[4], $nobody[2], 'new error log owned by nobody');
    $tg->stop;
}

# --- user NAME GROUP, and a reload to another user -------------------------
{
    my $tg = tg_start("user daemon;\nserver { listen %%PORT%%; $site }");
    my ($w) = workers_of($tg, 1);
    my $s = status($w);
    is_deeply(ids($s->{Uid}), [ ($daemon[2]) x 4 ], 'user daemon: uid');
    is_deeply(ids($s->{Gid}), [ ($daemon[3]) x 4 ], "user daemon: daemon's primary group");
    is($tg->http(GET => '/')->{status}, 200, 'requests work as daemon');

    my $off = $tg->reload("user nobody daemon;\nserver { listen %%PORT%%; $site }");
    ok($tg->wait_log(qr/reloaded: generation 2/, 10, $off), 'reloaded');
    my ($new) = workers_of($tg, 1, $off);
    ok(wait_until(sub { !kill(0, $w) }, 10), 'the old worker left');
    $s = status($new);
    is_deeply(ids($s->{Uid}), [ ($nobody[2]) x 4 ], 'after reload: nobody');
    is_deeply(ids($s->{Gid}), [ ($daemon_gid) x 4 ], 'after reload: group daemon');
    is($tg->http(GET => '/')->{status}, 200, 'requests work after the reload');
    $tg->stop;
}

# --- config errors: file:line -----------------------------------------------
my $srv = "server { listen %%PORT%%; $site }";
like(tg_conf_error("user no_such_user_tg;\n$srv"),
     qr/^\S+:1: "user": unknown user "no_such_user_tg"/m, 'unknown user: file:line');
like(tg_conf_error("workers 1;\nuser nobody no_such_group_tg;\n$srv"),
     qr/^\S+:2: "user": unknown group "no_such_group_tg"/m, 'unknown group: file:line');
like(tg_conf_error("user root;\n$srv"), qr/^\S+:1: "user": "root" is root/m, 'root refused');
like(tg_conf_error("user nobody root;\n$srv"), qr/^\S+:1: "user": group "root"/m,
     'group root refused');
like(tg_conf_error("user nobody;\nuser daemon;\n$srv"), qr/^\S+:2: "user" directive is duplicate/m,
     'duplicate');
like(tg_conf_error("server { listen %%PORT%%; user nobody; $site }"), qr/^\S+:1: .*"user"/m,
     'main scope only');

# --- a master that is not root: the directive is ignored, with a warning ----
SKIP: {
    skip 'setpriv is not installed', 4 unless `sh -c 'command -v setpriv'` =~ /\S/;
    # the prefix dir becomes daemon's (pid file, logs), then the master runs as daemon
    my $as_daemon = [ 'sh', '-c', 'chown -R daemon "$(dirname "$3")" && exec setpriv --reuid=daemon '
                      . '--regid=daemon --clear-groups "$@"', 'sh' ];
    my $tg = tg_start("user nobody;\nserver { listen %%PORT%%; $site }", prefix => $as_daemon);
    my ($w) = workers_of($tg, 1);
    is(ids(status($tg->pid)->{Uid})->[1], $daemon[2], 'master runs as daemon');
    is(ids(status($w)->{Uid})->[1], $daemon[2], 'its worker too (no switch)');
    like($tg->error_log, qr/\[warn\].*"user nobody" ignored: the master does not run as root/,
         'warning logged');
    is($tg->http(GET => '/')->{status}, 200, 'requests work');
    $tg->stop;
}

done_testing;
