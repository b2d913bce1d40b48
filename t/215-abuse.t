# Hostile clients and faulty upstreams: 1,000 slowloris connections do not
# slow normal clients down; 10,000 upstream faults leave file descriptors and
# memory where they were.
use v5.36;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $garbage = node_upstream('garbage');
my $dead = free_port();
# (under ASan, freed memory sits in a quarantine that would look like growth)
my %opts = (errors_ok => [qr/upstream|connect\(\)|refused/],
            env => { ASAN_OPTIONS => 'quarantine_size_mb=0' });
my $tg = tg_start(<<"C", %opts);
server {
    listen %%PORT%%;
    timeouts header=2s;
    keepalive_requests 100000;
    location / { proxy_pass $up->{addr}; }
    location /dead/ { proxy_pass 127.0.0.1:$dead; }
    location /garbage/ { proxy_pass $garbage->{addr}; }
    location /reset { proxy_pass $up->{addr}; }
}
C
my $worker;
wait_until(sub { ($worker) = $tg->worker_pids; $worker }, 10);

sub fds($pid) { my @f = glob("/proc/$pid/fd/*"); return scalar @f }
sub rss($pid) {
    open(my $fh, '<', "/proc/$pid/status") or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

# --- slowloris
{
    my @slow;
    for (1 .. 1000) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Blocking => 0)
            or last;
        push @slow, $s;
    }
    is(scalar @slow, 1000, '1000 slow connections opened');
    syswrite($_, "GET / HTTP/1.1\r\n") for @slow;   # and never finish the header
    my @lat;
    my $c = $tg->keepalive;
    my $end = time + 1.5;
    while (time < $end) {
        my $t0 = time;
        my $r = $c->request(GET => '/fast');
        push @lat, time - $t0 if ($r->{status} // 0) == 200;
        syswrite($_, "X") for @slow[0 .. 99];        # trickle on some
    }
    @lat = sort { $a <=> $b } @lat;
    my $p99 = $lat[int(@lat * 0.99)] // 9;
    ok(@lat > 50, scalar(@lat) . ' normal requests served meanwhile');
    cmp_ok($p99, '<', 0.1, sprintf('p99 %.1f ms under 100 ms', $p99 * 1000));
    my $sel = IO::Select->new(@slow);
    my $closed = 0;
    my $deadline = time + 6;
    while ($closed < @slow && time < $deadline) {
        for my $s ($sel->can_read(0.5)) {
            my $n = sysread($s, my $b, 4096);
            if (!$n) { $closed++; $sel->remove($s) }
        }
    }
    is($closed, 1000, 'all slow connections closed by the header timeout');
    close $_ for @slow;
}

# --- 10,000 upstream faults: fd count and memory flat
{
    my $c = $tg->keepalive;
    $c->request(GET => "/dead/warm") for 1 .. 200;
    $c->request(GET => "/garbage/warm") for 1 .. 200;
    my ($fd0, $rss0) = (fds($worker), rss($worker));
    my %st;
    for my $i (1 .. 10000) {
        my $path = ('/dead/x', '/garbage/x', '/reset')[$i % 3];
        my $r = $c->request(GET => $path);
        if (!defined $r->{status}) { $c = $tg->keepalive; next }
        $st{$r->{status}}++;
    }
    is(($st{502} // 0), 10000, '10,000 faults, each a 502') or diag explain \%st;
    my ($fd1, $rss1) = (fds($worker), rss($worker));
    cmp_ok($fd1 - $fd0, '<=', 2, "fds flat ($fd0 -> $fd1)");
    cmp_ok($rss1 - $rss0, '<', 2048, "RSS flat ($rss0 -> $rss1 kB)");
}
$tg->stop;
done_testing;
