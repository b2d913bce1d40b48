# Slow clients: a request body dripped slower than client_body_min_rate is
# answered 408 and its upstream request aborted (a fast enough one passes);
# a body that stops is cut by the body timeout; a client that stops reading
# is cut by the send timeout; accept() failing with EMFILE backs off instead
# of spinning, and accepting resumes once descriptors are free.
use v5.36;
use Test::More;
use lib 't/lib';
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);
use Tollgate::Test;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C", errors_ok => [qr/accept\(\) on .*Too many open files/]);
server {
    listen %%PORT%%;
    client_max_body_size 10m;
    client_body_min_rate 1k grace=1s;
    timeouts body=10s send=1s;
    location / { proxy_pass $up->{addr}; }
    location /norate/ { client_body_min_rate off; timeouts body=1s; proxy_pass $up->{addr}; }
    location = /local { return 200 "local"; }
}
C

sub sock() {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Proto => 'tcp',
                                  Timeout => 5) or die "connect: $!";
    return $s;
}
# Reads until EOF or the deadline; returns (bytes, closed).
sub read_all($s, $timeout) {
    my ($buf, $sel, $deadline) = ('', IO::Select->new($s), time + $timeout);
    while (time < $deadline) {
        last unless $sel->can_read($deadline - time);
        my $n = sysread($s, $buf, 65536, length $buf);
        return ($buf, 1) if !$n;
    }
    return ($buf, 0);
}
# Sends the head, then `$chunk` bytes every `$every` seconds up to $total or
# until the server answers; returns (response, seconds, bytes sent).
sub drip($path, $total, $chunk, $every) {
    my $s = sock();
    syswrite($s, "POST $path HTTP/1.1\r\nHost: x\r\nContent-Length: $total\r\n\r\n");
    my ($sent, $t0, $sel) = (0, time, IO::Select->new($s));
    while ($sent < $total && time - $t0 < 15) {
        last if $sel->can_read(0);
        my $n = $chunk < $total - $sent ? $chunk : $total - $sent;
        last unless defined syswrite($s, 'a' x $n);
        $sent += $n;
        sleep $every;
    }
    my ($raw, $closed) = read_all($s, 5);
    return ($raw, time - $t0, $sent, $closed);
}
sub status($raw) { return $raw =~ m{^HTTP/1\.1 (\d{3}) } ? $1 : 'none' }
sub up_entries($path) { return grep { $_->{url} eq $path } @{$up->log} }

# --- a slow drip: 10 bytes every 0.2 s (50 B/s) against a minimum of 1 KB/s
{
    $up->clear_log;
    my ($raw, $secs, $sent, $closed) = drip('/slow', 100000, 10, 0.2);
    is(status($raw), 408, 'body slower than client_body_min_rate: 408');
    ok($closed, '... and the connection closed');
    ok($secs < 5, sprintf('... after %.1f s (grace 1 s), long before the 10 s body timeout', $secs));
    ok(wait_until(sub { my @e = up_entries('/slow'); @e && !$e[0]{complete} }, 5),
       'the upstream saw its request aborted, never completed');
    ok($tg->wait_log(qr/client 127\.0\.0\.1 sends its request body too slowly/, 2), 'logged');
}

# --- slow but above the rate: 500 bytes every 0.2 s (2.5 KB/s) for 3 s
{
    $up->clear_log;
    my ($raw, $secs, $sent) = drip('/steady', 7500, 500, 0.2);
    is(status($raw), 200, 'a body above the minimum rate passes (averaged, not per read)');
    my @e = up_entries('/steady');
    ok(@e && $e[0]{complete} && $e[0]{bodyLength} == 7500, 'the upstream got all 7500 bytes')
        or diag explain \@e;
}

# --- fast: 2 MB at once
{
    my $r = $tg->http(POST => '/fast', body => 'b' x (2 << 20));
    is($r->{status}, 200, 'a fast 2 MB body passes');
}

# --- a body that stops: the body timeout (rate check off in this location)
{
    $up->clear_log;
    my $s = sock();
    syswrite($s, "POST /norate/stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc");
    my $t0 = time;
    my ($raw, $closed) = read_all($s, 5);
    is(status($raw), 408, 'body stalled: 408 after timeouts body=1s');
    ok($closed && time - $t0 < 4, '... and closed');
    ok(wait_until(sub { my @e = up_entries('/norate/stall'); @e && !$e[0]{complete} }, 5),
       'the upstream request was aborted');
}

# --- a client that stops reading: the send timeout closes it
{
    my ($w) = $tg->worker_pids;
    sleep 0.2;
    my $fds0 = () = glob("/proc/$w/fd/*");
    my $s = sock();
    setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 4096);
    syswrite($s, "GET /size/50000000 HTTP/1.1\r\nHost: x\r\n\r\n");
    my $off = $tg->log_offset;
    ok($tg->wait_log(qr/client 127\.0\.0\.1 timed out/, 6, $off),
       'a client that stops reading is closed after timeouts send=1s');
    ok(wait_until(sub { my $n = () = glob("/proc/$w/fd/*"); $n <= $fds0 }, 5),
       'the worker let go of the client and its upstream connection');
    my ($raw) = read_all($s, 1);
    ok(length($raw) < 50000000, sprintf('only %d of the 50 MB reached it', length $raw));
    close $s;
}

# --- EMFILE: a worker out of descriptors backs off instead of spinning
{
    my ($w) = $tg->worker_pids;
    my $n_open = () = glob("/proc/$w/fd/*");
    my $limit = $n_open + 3;
    # started as root, the worker runs as nobody; without CAP_SYS_RESOURCE (a
    # container) only its own uid and gid may change its limits
    my %st = map { /^(\w+):\s*(\d+)/ ? ($1 => $2) : () } `cat /proc/$w/status`;
    my @as = $st{Uid} == $> ? () : ('setpriv', "--reuid=$st{Uid}", "--regid=$st{Gid}", '--clear-groups');
    my ($soft) = `@as prlimit --pid=$w --nofile --noheadings --output=SOFT` =~ /(\d+)/;
    system(@as, 'prlimit', "--pid=$w", "--nofile=$limit:") == 0 or BAIL_OUT('prlimit failed');
    my $off = $tg->log_offset;
    my @held;
    for (1 .. 10) { push @held, sock() }
    ok($tg->wait_log(qr/accept\(\) on .*Too many open files/, 5, $off), 'EMFILE logged');
    sub cpu($pid) {
        open(my $fh, '<', "/proc/$pid/stat") or return 0;
        my @f = split ' ', (<$fh> =~ s/^.*\) //r);
        return $f[11] + $f[12]; # utime + stime, in ticks
    }
    my $c0 = cpu($w);
    sleep 1.5;
    my $ticks = cpu($w) - $c0;
    ok($ticks < 50, "no busy loop while out of descriptors: $ticks ticks of CPU in 1.5 s");
    my @lines = grep { /Too many open files/ } split /\n/, substr($tg->error_log, $off);
    ok(@lines <= 10, scalar(@lines) . ' EMFILE lines in 1.5 s: about one per back-off, not a flood');
    close $_ for @held;
    system(@as, 'prlimit', "--pid=$w", "--nofile=$soft:");
    my $r;
    ok(wait_until(sub { $r = $tg->http(GET => '/local', timeout => 2); ($r->{status} // 0) == 200 }, 5),
       'accepting resumes once descriptors are free');
}
$tg->stop;

like(tg_conf_error("server {\n listen %%PORT%%;\n client_body_min_rate fast;\n}"),
     qr/:3: invalid rate "fast"/, 'bad rate: file:line');
like(tg_conf_error("server {\n listen %%PORT%%;\n client_body_min_rate 1k wait=2s;\n}"),
     qr/:3: .*expected grace=TIME/, 'bad parameter: file:line');
done_testing;
