# Streaming with backpressure: the worker's memory stays flat whatever the
# body size, for a 1 GB response, a slow reader and a large upload.
use v5.36;
use Test::More;
use IO::Socket::INET;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $tg = tg_start("server { listen %%PORT%%; client_max_body_size 0; "
                . "location / { proxy_pass $up->{addr}; proxy_timeouts read=60s; } }");
my $worker;
wait_until(sub { ($worker) = $tg->worker_pids; $worker }, 10) or BAIL_OUT('no worker');

sub rss_kb($pid) {
    open(my $fh, '<', "/proc/$pid/status") or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

my $base = rss_kb($worker);
my $max = $base;

# Reads a response to the end, sampling the worker's RSS; returns body bytes.
sub pump($s, $limit_s, $pause_after = 0) {
    my ($buf, $head, $n) = ('', '', 0);
    my $end = time + $limit_s;
    my $paused = 0;
    while (time < $end) {
        my $got = sysread($s, $buf, 1 << 20);
        last unless $got;
        if (!length $head || $head !~ /\r\n\r\n/) {
            $head .= $buf;
            if ($head =~ /\r\n\r\n/) { $n += length($head) - $+[0] }
        } else {
            $n += $got;
        }
        if ($n & (1 << 22)) { my $r = rss_kb($worker); $max = $r if $r > $max }
        if ($pause_after && !$paused && $n > $pause_after) {
            $paused = 1;
            sleep 1.5;  # the client stops reading: the gateway must stop too
            my $r = rss_kb($worker);
            $max = $r if $r > $max;
        }
    }
    return $n;
}

# a 1 GB streamed response (chunked from the upstream, with its backpressure)
{
    my $size = 1 << 30;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
    print $s "GET /stream/$size HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    my $n = pump($s, 120);
    # chunked framing adds a few bytes per chunk: count at least the payload
    ok($n >= $size, '1 GB response relayed') or diag $n;
    cmp_ok($max - $base, '<', 32 * 1024, 'worker RSS grew by less than 32 MB')
        or diag "base $base kB, max $max kB";
}

# a slow reader: the upstream is throttled, memory stays flat
{
    my $size = 200 << 20;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
    print $s "GET /size/$size HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    my $n = pump($s, 60, 1 << 20);
    is($n, $size, 'slow reader gets everything');
    cmp_ok($max - $base, '<', 32 * 1024, 'RSS flat while the client does not read');
}

# a 300 MB upload streamed to the upstream
{
    my $size = 300 << 20;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
    print $s "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: $size\r\nConnection: close\r\n\r\n";
    my $chunk = body_pattern(1 << 20);
    my $sent = 0;
    while ($sent < $size) {
        my $w = syswrite($s, $chunk);
        last unless $w;
        $sent += $w;
        $chunk = substr($chunk, $w) . substr($chunk, 0, $w) if $w < length $chunk;
        if (($sent & ((32 << 20) - 1)) < $w) { my $r = rss_kb($worker); $max = $r if $r > $max }
    }
    local $/;
    my $resp = <$s> // '';
    my ($json) = $resp =~ /\r\n\r\n(.*)$/s;
    my $d = eval { decode_json($json) } // {};
    is($d->{bodyLength}, $size, '300 MB upload arrived whole');
    cmp_ok($max - $base, '<', 32 * 1024, 'RSS flat during the upload');
}
note "worker RSS: base $base kB, max $max kB";
$tg->stop;
done_testing;
