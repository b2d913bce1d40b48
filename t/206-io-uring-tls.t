# The send batch for HTTP/1.1 clients over TLS (src/sendq.c, src/tls_batch.c,
# `io_uring on|off`): a request head is read through io_uring and handed to
# OpenSSL before anything it reads itself, and a response that makes one TLS
# record (a small file, a small proxied answer) waits for the batch as
# ciphertext, while larger ones go directly. Bytes are exact and in order
# under keep-alive with mixed sizes on one connection (a held record, then a
# direct multi-record response), pipelining, 50 clients at once, a reader
# that stops for a while, Connection: close and clients that leave; the stats
# endpoint counts the TLS reads and writes; `io_uring off` answers the same.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use IO::Socket::SSL;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(time sleep);
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::H2;

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $up = node_upstream('echo');
my $dir = tempdir('tg-uring-tls-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;    # the workers' user reads it
my %file = (
    '1k.bin'   => 1_000,
    '15k.bin'  => 15_000,     # one record with its head
    '17k.bin'  => 17_000,     # two: written directly
    '300k.bin' => 300_000,    # several batches of four records
);
my %sha;
for my $name (keys %file) {
    my $body = body_pattern($file{$name});
    open my $fh, '>', "$dir/$name" or die;
    print $fh $body;
    close $fh;
    chmod 0644, "$dir/$name";
    $sha{$name} = sha256_hex($body);
}

sub conf($mode) {
    return <<"C";
io_uring $mode;
workers 1;
server {
    listen %%PORT%% tls;
    server_name a.test;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    keepalive_requests 10000;
    location = /stats { stats; }
    location /echo/ { proxy_pass $up->{addr}; }
    location / { root $dir; }
}
C
}

sub tls_conn($port) {
    my $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $port, SSL_hostname => 'a.test',
                                 SSL_verify_mode => SSL_VERIFY_NONE, Timeout => 5)
        or die "TLS connect: $SSL_ERROR";
    return $s;
}

# One response from $s (Content-Length framed); $buf holds what was read
# beyond it. { status, body } or {} on a timeout or a close.
sub read_resp($s, $buf) {
    my $deadline = time + 15;
    while (time < $deadline) {
        if ($$buf =~ /\A(HTTP\/1\.1 (\d{3})[^\r]*\r\n(.*?)\r\n\r\n)/s) {
            my ($hlen, $status, $head) = (length $1, $2, $3);
            my ($len) = $head =~ /^Content-Length: *(\d+)/mi;
            $len //= 0;
            if (length($$buf) >= $hlen + $len) {
                my $body = substr($$buf, $hlen, $len);
                substr($$buf, 0, $hlen + $len) = '';
                return { status => $status, body => $body, head => $head };
            }
        }
        my $chunk = '';
        my $n = sysread($s, $chunk, 65536);
        if (!defined $n && $SSL_ERROR == SSL_WANT_READ) { sleep 0.01; next }
        return {} unless $n;
        $$buf .= $chunk;
    }
    return {};
}

sub check($r, $path) {
    return 0 unless ($r->{status} // 0) == 200;
    if ($path =~ m{^/echo/}) {
        my $e = eval { decode_json($r->{body}) };
        return $e && $e->{url} eq $path;
    }
    my ($name) = $path =~ m{^/(.*)$};
    return sha256_hex($r->{body}) eq $sha{$name};
}

sub stats($port) {
    my $s = tls_conn($port);
    my $buf = '';
    print $s "GET /stats HTTP/1.1\r\nHost: a.test\r\n\r\n";
    my $st = eval { decode_json(read_resp($s, \$buf)->{body}) } // {};
    close $s;
    return $st;
}

my @paths = ('/1k.bin', '/15k.bin', '/echo/a', '/17k.bin', '/1k.bin', '/300k.bin', '/15k.bin', '/echo/b');

for my $mode (qw(on off)) {
    my $tg = tg_start(conf($mode));
    my $port = $tg->port;
    my $served = 0;

    # keep-alive: 3 connections x 40 requests of every size, one at a time
    {
        my $ok = 0;
        for my $k (1 .. 3) {
            my $s = tls_conn($port);
            my $buf = '';
            for my $i (0 .. 39) {
                my $p = $paths[($i + $k) % @paths];
                print $s "GET $p HTTP/1.1\r\nHost: a.test\r\n\r\n";
                $ok++ if check(read_resp($s, \$buf), $p);
            }
            close $s;
        }
        is($ok, 120, "$mode: 120 keep-alive requests over TLS, every body exact");
        $served += 120;
    }

    # pipelining: 24 requests in one write, answers in order and whole
    {
        my $s = tls_conn($port);
        my @p = map { $paths[$_ % @paths] } 0 .. 23;
        print $s join '', map { "GET $_ HTTP/1.1\r\nHost: a.test\r\n\r\n" } @p;
        my ($buf, $ok) = ('', 0);
        for my $p (@p) { $ok++ if check(read_resp($s, \$buf), $p) }
        is($ok, 24, "$mode: 24 pipelined requests over TLS answered in order, bodies exact");
        close $s;
        $served += 24;
    }

    # 50 clients at once, 4 rounds: one loop round answers many of them
    {
        my @c = map { tls_conn($port) } 1 .. 50;
        my %buf;
        my $ok = 0;
        for my $round (1 .. 4) {
            for my $i (0 .. $#c) {
                my $p = $i % 5 == 4 ? '/echo/c' . $i : '/1k.bin';
                print { $c[$i] } "GET $p HTTP/1.1\r\nHost: a.test\r\n\r\n";
            }
            for my $i (0 .. $#c) {
                my $p = $i % 5 == 4 ? '/echo/c' . $i : '/1k.bin';
                $ok++ if check(read_resp($c[$i], \($buf{$i} //= '')), $p);
            }
        }
        is($ok, 200, "$mode: 50 TLS clients x 4 rounds answered, bodies exact");
        close $_ for @c;
        $served += 200;
    }

    # a reader that stops: a held record, then large responses behind it
    {
        my $s = tls_conn($port);
        print $s join '', map { "GET $_ HTTP/1.1\r\nHost: a.test\r\n\r\n" }
            qw(/1k.bin /300k.bin /15k.bin /300k.bin /1k.bin);
        sleep 0.7;    # the socket fills while nothing is read
        my ($buf, $ok) = ('', 0);
        for my $p (qw(/1k.bin /300k.bin /15k.bin /300k.bin /1k.bin)) {
            $ok++ if check(read_resp($s, \$buf), $p);
        }
        is($ok, 5, "$mode: a reader that paused gets every body whole and in order");
        close $s;
    }

    # Connection: close after a held record: the body comes whole, then the close
    for my $p ('/1k.bin', '/echo/close') {
        my $s = tls_conn($port);
        print $s "GET $p HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
        my $buf = '';
        my $r = read_resp($s, \$buf);
        ok(check($r, $p), "$mode: $p with Connection: close arrives whole");
        my $more = '';
        my $n = sysread($s, $more, 100);
        ok(!$n, "$mode: $p: then the connection closes");
        close $s;
    }

    # clients that leave right after their request, then business as usual
    {
        for my $i (1 .. 20) {
            my $s = tls_conn($port);
            print $s "GET " . ($i % 2 ? '/15k.bin' : '/echo/gone') . " HTTP/1.1\r\nHost: a.test\r\n\r\n";
            close $s;
        }
        sleep 0.3;
        my $s = tls_conn($port);
        my $buf = '';
        print $s "GET /1k.bin HTTP/1.1\r\nHost: a.test\r\n\r\n";
        ok(check(read_resp($s, \$buf), '/1k.bin'), "$mode: answers after 20 TLS clients left");
        is(scalar(() = $tg->worker_pids), 1, "$mode: the worker is still there");
        close $s;
    }

    my $st1 = stats($port);

    # HTTP/2: a round's frames that make one record wait for the batch
    {
        # many streams of mixed sizes on one connection, each body exact
        my @urls = map { $paths[$_ % @paths] } 0 .. 39;
        my $tmp = tempdir('tg-uring-h2-XXXXXX', TMPDIR => 1, CLEANUP => 1);
        my @args = map { ("https://a.test:$port$urls[$_]", '-o', "$tmp/$_") } 0 .. $#urls;
        system('curl', '-sk', '--http2', '--parallel', '--parallel-immediate', '--parallel-max', '20',
               '--max-time', '30', '--resolve', "a.test:$port:127.0.0.1", @args);
        my $ok = 0;
        for my $i (0 .. $#urls) {
            open my $fh, '<', "$tmp/$i" or next;
            local $/;
            my $body = <$fh>;
            $ok++ if check({ status => 200, body => $body }, $urls[$i]);
        }
        is($ok, 40, "$mode: 40 HTTP/2 streams of mixed sizes on one connection, every body exact");

        # 10 connections x 20 streams of small files: every byte arrives
        my $out = `h2load -n 2000 -c 10 -m 20 https://127.0.0.1:$port/1k.bin 2>&1`;
        like($out, qr/2000 succeeded.*?\n.*?2000 2xx/s, "$mode: h2load: 2,000 GETs over 10 connections, all 200");
        like($out, qr/\(2000000\) data/, "$mode: h2load: 2,000,000 body bytes") or diag $out;

        # a reader that stops: the socket fills behind a held record
        my @big = qw(/1k.bin /300k.bin /15k.bin /300k.bin /1k.bin);
        my $h2 = Tollgate::H2->connect($port, tls => 1, host => 'a.test');
        $h2->window_update(0, 2_000_000);
        for my $i (0 .. $#big) {
            my $id = 2 * $i + 1;
            $h2->headers($id, Tollgate::H2::request_fields($big[$i], authority => 'a.test'),
                         end_stream => 1);
            $h2->window_update($id, 2_000_000);
        }
        sleep 0.7;    # the socket fills while nothing is read
        my (%body, %end);
        my $deadline = time + 15;
        while (time < $deadline && keys %end < @big) {
            my @f = $h2->read_frames(timeout => 1, until => sub ($f) { $f->{type} == 0 && $f->{flags} & 1 });
            last unless @f;
            for my $f (grep { $_->{type} == 0 } @f) {
                $body{$f->{stream}} .= $f->{payload};
                $end{$f->{stream}} = 1 if $f->{flags} & 1;
            }
        }
        my $whole = grep { check({ status => 200, body => $body{2 * $_ + 1} // '' }, $big[$_]) } 0 .. $#big;
        is($whole, 5, "$mode: an HTTP/2 reader that paused gets every body whole");
        $h2->close;
    }

    my $st = stats($port);
    my ($w, $rd) = ($st->{io_uring}{writes} // -1, $st->{io_uring}{reads} // -1);
    if ($mode eq 'on') {
        # every request head on an established connection is read through the
        # batch (the first of a connection comes with its handshake's last read
        # or after it); every response of one record is written through it
        cmp_ok($rd, '>=', $served - 60, 'on: TLS request heads read in batches') or diag "reads $rd";
        cmp_ok($w, '>=', 150, 'on: one-record TLS responses written in batches') or diag "writes $w";
        cmp_ok($w - ($st1->{io_uring}{writes} // 0), '>=', 100, 'on: HTTP/2 rounds written in batches')
            or diag "writes $w";
    } else {
        is($rd, 0, 'off: nothing read in batches');
        is($w, 0, 'off: nothing written in batches');
    }
    $tg->stop;
}

done_testing;
