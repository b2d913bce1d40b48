# The send batch (src/sendq.c, `io_uring on|off`): proxied requests and
# responses written together through io_uring, and upstream responses and
# request heads read through it, are byte-exact, in order and complete under
# keep-alive, pipelining, 50 concurrent clients, large responses read slowly
# (short writes inside a batch), request heads in pieces, uploads and clients
# that leave; the stats endpoint counts the batches, their writes and reads;
# `io_uring off` writes and reads directly and gives the same answers; the
# directive is checked.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use IO::Socket::INET;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

like(tg_conf_error("io_uring maybe;\nserver { listen %%PORT%%; }"),
     qr/tollgate\.conf:1: .*"on" or "off"/, 'io_uring takes on or off (file:line)');
like(tg_conf_error("server { listen %%PORT%%;\n io_uring off; }"),
     qr/tollgate\.conf:2: /, 'io_uring belongs to the main scope');
like(tg_conf_error("io_uring on;\nio_uring off;\nserver { listen %%PORT%%; }"),
     qr/tollgate\.conf:2: .*duplicate/i, 'io_uring given twice');

my $up = node_upstream('echo');

sub conf($mode) {
    return "io_uring $mode;\nworkers 1;\nserver { listen %%PORT%%; client_max_body_size 0;\n"
         . "  location = /stats { stats; }\n"
         . "  location / { proxy_pass $up->{addr}; } }";
}

sub stats($tg) {
    my $r = $tg->http(GET => '/stats');
    return $r->{status} && $r->{status} == 200 ? decode_json($r->{body}) : undef;
}

# Reads one response of $len body bytes from a raw socket, pausing once.
sub slow_read($s, $len, $pause_after) {
    my ($buf, $got, $paused) = ('', 0, 0);
    my $deadline = time + 30;
    my $data = '';
    while (time < $deadline) {
        my $n = sysread($s, $buf, 65536);
        last unless $n;
        $data .= $buf;
        if (!$paused && length($data) > $pause_after) {
            $paused = 1;
            sleep 0.5; # the socket fills: the batch meets a short write or EAGAIN
        }
        if ($data =~ /\r\n\r\n/ && length($data) - $+[0] >= $len) { last }
    }
    return $data;
}

for my $mode (qw(on off)) {
    my $tg = tg_start(conf($mode));

    # keep-alive: 3 connections x 40 requests, each answer names its request
    my $ok = 0;
    for my $k (1 .. 3) {
        my $c = $tg->keepalive;
        for my $i (1 .. 40) {
            my $r = $c->request(GET => "/echo/k$k-$i");
            my $e = $r->{status} && $r->{status} == 200 ? eval { decode_json($r->{body}) } : undef;
            $ok++ if $e && $e->{url} eq "/echo/k$k-$i";
        }
    }
    is($ok, 120, "$mode: 120 keep-alive requests answered, each with its own response");

    # pipelining: 20 requests in one write, 20 answers in order
    {
        my $c = $tg->keepalive;
        $c->write(join '', map { "GET /echo/p$_ HTTP/1.1\r\nHost: x\r\n\r\n" } 1 .. 20);
        my @urls;
        for (1 .. 20) {
            my $r = $c->read_response;
            last unless $r->{status};
            push @urls, eval { decode_json($r->{body})->{url} } // '?';
        }
        is_deeply(\@urls, [ map { "/echo/p$_" } 1 .. 20 ], "$mode: 20 pipelined answers in order");
    }

    # 50 concurrent clients (forked), 30 requests each
    {
        my @pids;
        for my $k (1 .. 50) {
            my $pid = fork // die;
            if (!$pid) {
                my $c = $tg->keepalive(timeout => 20);
                my $good = 0;
                for my $i (1 .. 30) {
                    my $r = $c->request(GET => "/echo/c$k-$i");
                    $good++ if $r->{status} && $r->{status} == 200 && $r->{body} =~ m{"/echo/c$k-$i"};
                }
                POSIX::_exit($good == 30 ? 0 : 1);
            }
            push @pids, $pid;
        }
        my $bad = 0;
        for (@pids) { waitpid($_, 0); $bad++ if $? }
        is($bad, 0, "$mode: 50 concurrent keep-alive clients, 30 requests each, all answered right");
    }

    # an 8 MB response read slowly: the rest after a short write still arrives
    {
        my $len = 8 << 20;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
        print $s "GET /size/$len HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        my $data = slow_read($s, $len, 256 << 10);
        my ($body) = $data =~ /\r\n\r\n(.*)\z/s;
        is(length($body // ''), $len, "$mode: 8 MB response complete for a slow reader");
        ok(defined $body && $body eq body_pattern($len), "$mode: and byte-exact");
    }

    # a 5 MB upload, its digest as the upstream saw it
    {
        my $body = body_pattern(5 << 20);
        my $r = $tg->http(POST => '/upload', body => $body);
        my $e = $r->{status} && $r->{status} == 200 ? decode_json($r->{body}) : {};
        is($e->{bodySha256} // '', sha256_hex($body), "$mode: 5 MB upload arrives intact");
    }

    # request heads in three pieces 30 ms apart, twice on one connection:
    # each piece is a read of its own (the first through the batch)
    {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
        my @urls;
        for my $i (1 .. 2) {
            for my $piece ("GET /echo/pieces$i HT", "TP/1.1\r\nHost: x\r\nX-A:", " b\r\n\r\n") {
                syswrite($s, $piece);
                sleep 0.03;
            }
            my ($data, $buf) = ('', '');
            my $deadline = time + 10;
            while (time < $deadline && $data !~ /\r\n\r\n.*\}/s) {
                my $n = sysread($s, $buf, 65536);
                last unless $n;
                $data .= $buf;
            }
            my ($body) = $data =~ /\r\n\r\n(.*)\z/s;
            my $e = eval { decode_json($body // '') } // {};
            push @urls, ($e->{url} // '?') . '/' . ($e->{headers}{'x-a'} // '?');
        }
        is_deeply(\@urls, [ '/echo/pieces1/b', '/echo/pieces2/b' ],
                  "$mode: request heads in three pieces, two on one connection, answered right");
    }

    # a body sent in 60 pieces 5 ms apart: each piece is a round of its own,
    # written through the batch one after another (a queue the batch emptied
    # must start again at its first slot, or the 25th round would not fit)
    {
        my $piece = body_pattern(1000);
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
        print $s "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " . (60 * 1000)
               . "\r\nConnection: close\r\n\r\n";
        for (1 .. 60) { syswrite($s, $piece); sleep 0.005 }
        my ($data, $buf) = ('', '');
        my $deadline = time + 10;
        while (time < $deadline) { my $n = sysread($s, $buf, 65536); last unless $n; $data .= $buf }
        my ($body) = $data =~ /\r\n\r\n(.*)\z/s;
        my $e = eval { decode_json($body // '') } // {};
        is($e->{bodySha256} // '', sha256_hex($piece x 60), "$mode: a body in 60 separate pieces arrives whole");
    }

    # clients that leave while their answer is on its way, then business as usual
    {
        for (1 .. 20) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
            print $s "GET /delay/" . ($_ % 3) . " HTTP/1.1\r\nHost: x\r\n\r\n";
            close $s;
        }
        sleep 0.3;
        my $r = $tg->http(GET => '/echo/after');
        is($r->{status}, 200, "$mode: answers after 20 clients left mid-request");
        is(scalar(() = $tg->worker_pids), 1, "$mode: the worker is still there");
    }

    my $s = stats($tg);
    my $w = $s->{io_uring}{writes} // -1;
    my $b = $s->{io_uring}{batches} // -1;
    my $rd = $s->{io_uring}{reads} // -1;
    if ($mode eq 'on') {
        # every proxied request writes twice (upstream, client); pipelined ones
        # after the first are written directly (they start as the batch ends),
        # and so are writes beyond a full batch (32) under the 50 clients
        cmp_ok($w, '>=', 2 * 120 + 50 * 30, 'on: most proxied writes went in batches')
            or diag "writes $w";
        cmp_ok($b, '>', 0, 'on: batches counted');
        cmp_ok(($w + $rd) / ($b || 1), '>', 1.2, 'on: batches carry several writes and reads under concurrency')
            or diag "writes $w reads $rd batches $b";
        # every keep-alive request is read (its head) and answered (the
        # upstream's response) through the batch, the first read of each
        cmp_ok($rd, '>=', 2 * 120, 'on: request heads and upstream responses read in batches')
            or diag "reads $rd";
        my $p = $tg->http(GET => '/stats?format=prometheus');
        like($p->{body}, qr/^tollgate_io_uring_writes_total $w$/m, 'on: the same count for Prometheus');
        like($p->{body}, qr/^tollgate_io_uring_reads_total $rd$/m, 'on: and the reads');
    } else {
        is($w, 0, 'off: nothing batched');
        is($rd, 0, 'off: nothing read in batches');
        is($b, 0, 'off: no batches');
    }
    $tg->stop;
}

done_testing;
