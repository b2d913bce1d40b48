# Request collapsing (docs/cache.md): concurrent misses for one key, over two
# workers, make one upstream request; the others follow the entry as it
# streams in, so every client gets its first byte before the upstream has
# finished a slow response.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use JSON::PP qw(decode_json);
use POSIX ();
use Time::HiRes qw(time);

my $up = node_upstream('cache');
my $tg = tg_start(<<"EOF");
workers 2;
cache_zone main size=16m;
cache_zone big size=64m max_entry_size=16m;
server {
    listen %%PORT%%;
    listen %%PORT2%% http2;
    cache main;
    cache_status_header on;
    location / { proxy_pass $up->{addr}; }
    location /lt/ { cache_lock_timeout 300ms; proxy_pass $up->{addr}; }
    location /big/ { cache big; proxy_pass $up->{addr}; }
}
EOF

sub count($path) {
    return decode_json($up->http(GET => '/__count')->{body})->{paths}{$path} // 0;
}

# N clients at once; returns per client {first, end, body, head}.
sub burst($n, $path, $timeout) {
    my (@c, %by);
    my $sel = IO::Select->new;
    for my $i (1 .. $n) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port,
                                      Timeout => 5) or die "connect: $!";
        $s->blocking(0);
        my $c = { s => $s, buf => '', first => undef, end => undef };
        push @c, $c;
        $by{fileno $s} = $c;
    }
    my $t0 = time;
    for my $c (@c) {
        syswrite($c->{s}, "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        $sel->add($c->{s});
    }
    my $deadline = $t0 + $timeout;
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(0.5)) {
            my $c = $by{fileno $s};
            my $n = sysread($s, my $b, 65536);
            next if !defined $n && $!{EAGAIN};
            if (!$n) {
                $c->{end} = time - $t0;
                $sel->remove($s);
                close $s;
                next;
            }
            $c->{buf} .= $b;
            # the first body byte: after the head
            $c->{first} //= time - $t0 if $c->{buf} =~ /\r\n\r\n./s;
        }
    }
    for my $c (@c) {
        ($c->{head}, $c->{body}) = split /\r\n\r\n/, $c->{buf}, 2;
        $c->{body} = decode_chunked($c->{body}) if ($c->{head} // '') =~ /chunked/i;
    }
    return @c;
}

sub decode_chunked($b) {
    my $out = '';
    while ($b =~ s/^([0-9a-fA-F]+)\r\n//) {
        my $n = hex $1;
        last if $n == 0;
        $out .= substr($b, 0, $n, '');
        $b =~ s/^\r\n//;
    }
    return $out;
}

for my $case (['with Content-Length', 'cl'], ['chunked', 'ch']) {
    my ($name, $tag) = @$case;
    subtest "200 clients, cold key, 2 workers: $name" => sub {
        # 300 KB in 10 writes 200 ms apart: the upstream takes ~1.8 s
        my $path = "/slow-$tag?size=300000&chunks=10&ms=200&h=Cache-Control:%20max-age=60"
                 . ($tag eq 'ch' ? '&cl=0' : '');
        my @c = burst(200, $path, 30);
        my $want = body_pattern(300000);
        is(scalar(grep { defined $_->{end} } @c), 200, 'all 200 answered');
        is(scalar(grep { ($_->{body} // '') eq $want } @c), 200, 'all 200 bodies byte-identical and whole');
        is(count("/slow-$tag"), 1, 'exactly one upstream request');
        my ($first_max) = sort { $b <=> $a } map { $_->{first} // 99 } @c;
        my ($end_min) = sort { $a <=> $b } map { $_->{end} // 99 } @c;
        cmp_ok($first_max, '<', $end_min,
               'every client had its first byte before any response ended (streamed, not stored first)');
        cmp_ok($first_max, '<', 1.2, "first bytes within 1.2 s (the upstream needs 1.8 s): $first_max");
        my $collapsed = grep { $_->{head} =~ /^Cache-Status: tollgate; hit; collapsed/mi } @c;
        my $miss = grep { $_->{head} =~ /^Cache-Status: tollgate; fwd=miss; stored/mi } @c;
        is($miss, 1, 'one miss');
        is($collapsed, 199, '199 collapsed onto it');
    };
}

subtest 'waiters give up after cache_lock_timeout' => sub {
    my $t0 = time;
    my $pid = fork // die;
    if (!$pid) { # the filler: its head comes after 1.5 s
        Tollgate::Test::http_request($tg->port, GET => '/lt/a?delay=1500&h=Cache-Control:%20max-age=60');
        POSIX::_exit(0);
    }
    wait_until(sub { count('/lt/a') >= 1 }, 5, 0.01);
    my $r = $tg->http(GET => '/lt/a?delay=1500&h=Cache-Control:%20max-age=60');
    waitpid $pid, 0;
    is($r->{status}, 200, 'the waiter answered');
    is(count('/lt/a'), 2, 'after 300 ms it went upstream itself');
    like($r->{headers}{'cache-status'}, qr/fwd=miss/, 'as a miss');
};

subtest 'a response that is not stored releases the lock at its head' => sub {
    my @c = burst(5, '/nostore?delay=300&h=Cache-Control:%20no-store', 10);
    is(scalar(grep { $_->{head} =~ /^HTTP\/1.1 200/ } @c), 5, 'all answered');
    cmp_ok(count('/nostore'), '>=', 2, 'not storable: each fetched for itself');
};

subtest 'HTTP/2: hits and collapsed answers on streams' => sub {
    my $nghttp = '/usr/bin/nghttp';
    plan skip_all => 'nghttp is not installed' unless -x $nghttp;
    my $u = "http://127.0.0.1:@{[$tg->port(2)]}/h2?size=300000&chunks=5&ms=100&h=Cache-Control:%20max-age=60";
    # the first client reads into a file: the fill goes at its pace
    my $out = $tg->dir . '/h2-first.out';
    my $pid = fork // die;
    if (!$pid) {
        open(STDOUT, '>', $out) or POSIX::_exit(1);
        exec('timeout', '10', $nghttp, $u) or POSIX::_exit(1);
    }
    wait_until(sub { count('/h2') >= 1 }, 5, 0.01);
    my $v = `timeout 10 $nghttp -v '$u' 2>/dev/null`;
    like($v, qr/cache-status: tollgate; hit; collapsed/, 'a second stream collapsed onto the fill');
    waitpid $pid, 0;
    my $body = Tollgate::Test::_slurp($out);
    is(length($body), 300000, 'the first stream got the whole body') or diag(substr($body, 0, 300));
    ok($body eq body_pattern(300000), 'byte-identical');
    is(`timeout 10 $nghttp '$u'`, body_pattern(300000), 'a hit over HTTP/2: the whole body');
    is(count('/h2'), 1, 'one upstream request') or diag($up->http(GET => '/__count')->{body});
};

# A client with a 4 KB receive buffer that reads the first 64 KB of $path
# (a hit) and stalls, so the answer stays in flight in the gateway.
sub slow_reader($path) {
    my $s = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096) or die "SO_RCVBUF: $!";
    connect($s, pack_sockaddr_in($tg->port, inet_aton('127.0.0.1'))) or die "connect: $!";
    syswrite($s, "GET $path HTTP/1.1\r\nHost: 127.0.0.1:@{[$tg->port]}\r\nConnection: close\r\n\r\n");
    my $buf = '';
    my $deadline = time + 5;
    while (length($buf) < 65536 && time < $deadline) {
        my $got = sysread($s, $buf, 65536, length $buf);
        last unless $got;
    }
    ok($buf =~ /cache-status: tollgate; hit/i, 'the slow reader is on the stored entry')
        or diag(substr($buf, 0, 300));
    return ($s, $buf);
}

# The rest of the slow reader's answer (30 s at most): (head, body).
sub slow_reader_end($s, $buf) {
    my $deadline = time + 30;
    while (time < $deadline) {
        my $got = sysread($s, $buf, 1 << 20, length $buf);
        last unless $got;
    }
    close $s;
    return split /\r\n\r\n/, $buf, 2;
}

# A client still reading an entry when a newer response of its key is stored
# (or the entry is purged) gets the whole old body: the entry is pinned while
# served and leaves the index at once, its memory once the reader is done.
subtest 'a slow reader is not cut when its entry is replaced' => sub {
    my $n = 12_000_000;
    my $path = "/big/r?size=$n&h=Cache-Control:%20max-age=3";
    my $r = $tg->http(GET => $path);
    like($r->{headers}{'cache-status'}, qr/fwd=miss; stored/, 'stored (a miss)');
    is(length($r->{body}), $n, 'whole');
    my ($s, $buf) = slow_reader($path);
    # once stale (max-age=3 from a whole-second Date), a request fetches a newer response
    my $fresh;
    ok(wait_until(sub {
        my $x = $tg->http(GET => $path);
        $fresh = $x if ($x->{headers}{'cache-status'} // '') =~ /fwd=/;
        defined $fresh;
    }, 8, 0.3), 'a later request is forwarded (the entry went stale)');
    is(length($fresh->{body}), $n, 'and answered whole');
    is(count('/big/r'), 2, 'the upstream asked twice') or diag(explain $fresh->{headers});
    like($tg->http(GET => $path)->{headers}{'cache-status'} // '', qr/hit/, 'the newer response is the entry now');
    my ($head, $body) = slow_reader_end($s, $buf);
    is(length($body), $n, 'the slow reader got the whole body') or diag($head);
    ok($body eq body_pattern($n), 'byte-identical');
};

# A 304 that updates the stored head makes a new entry with a copy of the
# body (in memory); a client still reading the old one gets it whole.
subtest 'a slow reader is not cut when a 304 updates its entry' => sub {
    my $n = 12_000_000;
    my $path = "/big/r304?size=$n&etag=v1&h=X-Version:1&h=Cache-Control:%20max-age=2";
    my $r = $tg->http(GET => $path);
    like($r->{headers}{'cache-status'}, qr/fwd=miss; stored/, 'stored (a miss)');
    my ($s, $buf) = slow_reader($path);
    $up->http(POST => '/__r304?path=/big/r304&h=ETag:%20"v2"&h=X-Version:%202'
                      . '&h=Cache-Control:%20max-age=60');
    my $rv;
    ok(wait_until(sub {
        my $x = $tg->http(GET => $path);
        $rv = $x if ($x->{headers}{'cache-status'} // '') =~ /fwd=/;
        defined $rv;
    }, 8, 0.3), 'once stale, a request revalidates');
    like($rv->{headers}{'cache-status'}, qr/fwd-status=304/, 'by a 304');
    is($rv->{headers}{'x-version'}, '2', 'the updated head');
    ok(length($rv->{body}) == $n && $rv->{body} eq body_pattern($n), 'the copied body, whole');
    my $h = $tg->http(GET => $path);
    like($h->{headers}{'cache-status'} // '', qr/^tollgate; hit/, 'then a hit');
    is($h->{headers}{'x-version'}, '2', 'on the updated entry');
    is(count('/big/r304'), 2, 'the upstream asked twice');
    my ($head, $body) = slow_reader_end($s, $buf);
    like($head, qr/\r\nx-version: 1\r\n/i, 'the slow reader: the old head');
    is(length($body), $n, 'and the whole body') or diag($head);
    ok($body eq body_pattern($n), 'byte-identical');
};

done_testing;
