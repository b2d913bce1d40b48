# `workers auto`: one worker per CPU the gateway may use: the CPUs of its
# affinity mask (taskset, cpusets) and at most its cgroup's CPU quota, rounded
# up (cgroup v1 cpu.cfs_quota_us / cfs_period_us or v2 cpu.max), so a
# container limited to 1.5 CPUs of a larger machine gets 2 workers, not one
# per host CPU.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;

my $conf = "workers auto;\nserver { listen %%PORT%%; location / { return 200 ok; } }";

sub workers_of(%o) {
    my $tg = tg_start($conf, %o);
    # the master logs this line once it has forked every worker
    wait_until(sub { $tg->error_log =~ /started: \d+ workers/ }, 10)
        or diag 'no "started" line in the error log';
    my $n = () = $tg->worker_pids;
    my $r = $tg->http(GET => '/');
    is($r->{status}, 200, 'answers');
    $tg->stop;
    return $n;
}

chomp(my $ncpu = `nproc`);
is(workers_of(), $ncpu, "auto: one worker per CPU ($ncpu)");

SKIP: {
    skip 'one CPU only', 3 if $ncpu < 2;
    is(workers_of(prefix => [ 'taskset', '-c', '0' ]), 1, 'auto under taskset -c 0: 1 worker');
}

# A cgroup with a CPU quota: v1's cpu controller, or v2 with cpu enabled.
my ($dir, $set_quota);
if ($> == 0 && -w '/sys/fs/cgroup/cpu' && -e '/sys/fs/cgroup/cpu/cpu.cfs_quota_us') {
    $dir = "/sys/fs/cgroup/cpu/tollgate-test-$$";
    $set_quota = sub ($q, $p) {
        open(my $f, '>', "$dir/cpu.cfs_period_us") or return 0; print $f "$p\n"; close $f or return 0;
        open($f, '>', "$dir/cpu.cfs_quota_us") or return 0; print $f "$q\n"; close $f or return 0;
        return 1;
    };
} elsif ($> == 0 && -e '/sys/fs/cgroup/cgroup.controllers'
         && `cat /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null` =~ /\bcpu\b/) {
    $dir = "/sys/fs/cgroup/tollgate-test-$$";
    $set_quota = sub ($q, $p) {
        open(my $f, '>', "$dir/cpu.max") or return 0; print $f "$q $p\n"; close $f or return 0;
        return 1;
    };
}
END { rmdir $dir if $dir && -d $dir }
SKIP: {
    skip 'no writable cgroup with a cpu controller here', 7
        unless $dir && mkdir($dir);
    my $join = [ 'sh', '-c', "echo \$\$ > $dir/cgroup.procs && exec \"\$@\"", 'sh' ];
    ok($set_quota->(100000, 100000), 'quota of 1 CPU set') or diag $!;
    is(workers_of(prefix => $join), 1, 'auto with a 1-CPU quota: 1 worker');
    SKIP: {
        skip 'one CPU only', 3 if $ncpu < 2;
        $set_quota->(150000, 100000);
        is(workers_of(prefix => $join), 2, 'auto with a 1.5-CPU quota: 2 workers (rounded up)');
    }
    # the cgroup is empty once the gateway stopped
    wait_until(sub { rmdir $dir }, 5) or diag "could not remove $dir: $!";
}

done_testing;
