# compress on streams: server-sent events go through compressed one by one
# (each event is decodable when it arrives, not when the stream ends), and
# compressing a 1 GB body keeps the worker's memory flat.
#
# How "decodable when it arrives" is checked: the client timestamps every
# read. gzip is inflated as it comes (Compress::Raw::Zlib, a real streaming
# decoder). For br and zstd, the compressed bytes received so far are closed
# with an empty last block (brotli: the byte 0x03, ISLAST + ISEMPTY, valid
# after a flush has byte-aligned the stream; zstd: an empty raw last block,
# 01 00 00, valid at a block boundary) and given to the command-line
# decoder: it succeeds only when the gateway flushed at an event boundary.
use v5.36;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use File::Temp qw(tempfile);
use Time::HiRes qw(time);
use Compress::Raw::Zlib;
use lib 't/lib';
use Tollgate::Test;

for my $tool (qw(gzip brotli zstd)) {
    plan skip_all => "$tool not installed" unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

my $up = node_upstream('echo');
# Under AddressSanitizer freed memory waits in a quarantine (256 MB by
# default) before it is reused, which would show as RSS growth with brotli's
# per-block allocations; a small one keeps the check meaningful there too.
my $asan = join(':', grep { length } $ENV{ASAN_OPTIONS} // '', 'quarantine_size_mb=4');
my $tg = tg_start(<<"C", env => { ASAN_OPTIONS => $asan });
server {
    listen %%PORT%%;
    compress gzip br zstd;
    location / { proxy_pass $up->{addr}; proxy_timeouts read=60s; }
    location /stream/ {
        compress_types application/octet-stream;
        proxy_pass $up->{addr};
        proxy_timeouts read=60s;
    }
}
C
# the port accepts (the master's socket) before the worker is forked
my ($worker) = wait_until(sub { ($tg->worker_pids)[0] }, 10);
ok($worker, 'worker running') or BAIL_OUT('no worker');

# Sends a GET and reads the answer to the end (or $limit seconds). Calls
# $on_data->(elapsed, new body bytes) for every read that completes body
# chunks, and $on_tick->() at least every 50 ms. Returns the response head.
sub stream_get($path, $enc, $limit, $on_data, $on_tick = sub { }) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    print $s "GET $path HTTP/1.1\r\nHost: x\r\nAccept-Encoding: $enc\r\nConnection: close\r\n\r\n";
    my $t0 = time;
    my $sel = IO::Select->new($s);
    my ($buf, $head) = ('', undef);
    while (time < $t0 + $limit) {
        $on_tick->();
        next unless $sel->can_read(0.05);
        my $got = sysread($s, $buf, 1 << 20, length $buf);
        last unless $got;
        if (!defined $head) {
            next unless $buf =~ /\r\n\r\n/;
            $head = substr($buf, 0, $+[0], '');
        }
        my $data = '';
        while ($buf =~ /^([0-9a-fA-F]+)\r\n/ && length($buf) >= $+[0] + hex($1) + 2) {
            my ($n, $at) = (hex $1, $+[0]);
            $data .= substr($buf, $at, $n);
            substr($buf, 0, $at + $n + 2, '');
        }
        $on_data->(time - $t0, $data) if length $data;
    }
    return $head // '';
}

sub cli_decode($cmd, $data) {
    my ($fh, $file) = tempfile(UNLINK => 1);
    binmode $fh;
    print $fh $data;
    close $fh;
    my $out = `$cmd < '$file' 2>/dev/null`;
    return $? == 0 ? $out : '';
}

my %closer = (br => ["brotli -dc", "\x03"], zstd => ["zstd -dcq", "\x01\x00\x00"]);

# ---- server-sent events -----------------------------------------------------------

my $N = 8;
for my $enc (qw(gzip br zstd)) {
    my (@snaps, $so_far);    # [elapsed, decoded text so far]
    my $inflate;
    if ($enc eq 'gzip') {
        ($inflate) = Compress::Raw::Zlib::Inflate->new(-WindowBits => WANT_GZIP,
                                                       -AppendOutput => 1);
    }
    my $comp = '';
    $so_far = '';
    my $head = stream_get("/sse/$N", $enc, 20, sub ($t, $data) {
        if ($inflate) {
            my $in = $data;
            $inflate->inflate($in, $so_far);
            push @snaps, [$t, $so_far];
        } else {
            $comp .= $data;
            push @snaps, [$t, $comp];
        }
    });
    like($head, qr/^Content-Encoding: \Q$enc\E\r$/mi, "SSE $enc: compressed");
    if (!$inflate) { # decode afterwards what had arrived at each moment
        my ($cmd, $end) = @{$closer{$enc}};
        for my $s (@snaps) {
            my $text = cli_decode($cmd, $s->[1]);
            $text = cli_decode($cmd, $s->[1] . $end) if $text eq '';
            $s->[1] = $text;
        }
    }
    # when did each event become decodable?
    my @at;
    for my $s (@snaps) {
        my $have = () = $s->[1] =~ /^data: event \d+\n\n/mg;
        push @at, $s->[0] while @at < $have;
    }
    is(scalar @at, $N, "SSE $enc: all $N events") or diag explain \@snaps;
    my @gaps = map { $at[$_] - $at[$_ - 1] } 1 .. $#at;
    my $distinct = grep { $_ > 0.005 } @gaps;
    # one pair may come together: on a loaded machine (the ASan run beside other
    # tests) the upstream's timer can fire late and its two writes meet in one read
    cmp_ok($distinct, '>=', $N - 2, "SSE $enc: each event decodable on its own arrival")
        or diag "arrivals: @at";
    my @sorted = sort { $a <=> $b } @gaps;
    cmp_ok($sorted[@sorted / 2] // 0, '>', 0.03, "SSE $enc: events arrive ~50 ms apart")
        or diag "gaps: @gaps";
    cmp_ok($at[0] // 99, '<', 1, "SSE $enc: the first event is not held back");
}

# ---- memory while compressing 1 GB ------------------------------------------------

sub rss_kb($pid) {
    open(my $fh, '<', "/proc/$pid/status") or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

my $size = 1 << 30;
for my $enc (qw(gzip br zstd)) {
    my $base = rss_kb($worker);
    my $max = $base;
    my ($fh, $file) = tempfile(UNLINK => 1);
    binmode $fh;
    my $n = 0;
    my $head = stream_get("/stream/$size", $enc, 120,
                          sub ($t, $data) { print $fh $data; $n += length $data },
                          sub { my $r = rss_kb($worker); $max = $r if $r > $max });
    close $fh;
    like($head, qr/^Content-Encoding: \Q$enc\E\r$/mi, "1 GB $enc: compressed");
    cmp_ok($n, '<', $size / 100, "1 GB $enc: to $n bytes");
    my $cmd = { gzip => 'gzip -dc', br => 'brotli -dc', zstd => 'zstd -dcq' }->{$enc};
    my $out = `$cmd < '$file' | wc -c`;
    is($out + 0, $size, "1 GB $enc: decodes to 1 GB");
    cmp_ok($max - $base, '<', 32 * 1024, "1 GB $enc: worker RSS grew by less than 32 MB")
        or diag "base $base kB, max $max kB";
    note "$enc: worker RSS base $base kB, max $max kB";
}

$tg->stop;
done_testing;
