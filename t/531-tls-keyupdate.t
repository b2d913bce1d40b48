# TLS 1.3 KeyUpdate from a client (openssl s_client's K and k commands): the
# worker takes the client's new key, and for K (update_requested) answers with
# a KeyUpdate of its own, which OpenSSL writes from inside SSL_read, outside
# the worker's own writes. Later requests on the connection are answered in
# the new keys, over HTTP/1.1 and HTTP/2, with io_uring on (the default: the
# worker's records may wait in the send batch) and off. An HTTP/2 response of
# 3 MB stopped by its window when the client sends K goes on whole in the new
# keys once the window opens.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::H2;

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $up = node_upstream('echo');
my $dir = tempdir('tg-keyupdate-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# Runs s_client with the steps (bytes to send, or a number: seconds to wait);
# returns what it printed (the server's bytes and its own lines; with -msg,
# "<<< ... KeyUpdate" for each KeyUpdate the worker sent).
sub s_client($port, $alpn, @steps) {
    my $out = "$dir/out";
    my @cmd = ('timeout', '30', 'openssl', 's_client', '-connect', "127.0.0.1:$port",
               '-servername', 'a.test', '-tls1_3', '-alpn', $alpn, '-msg',
               ($alpn eq 'http/1.1' ? ('-crlf') : ()));
    open(my $in, '|-', join(' ', @cmd) . " >$out 2>&1") or die "s_client: $!";
    $in->autoflush(1);
    # the handshake done (s_client says so) before the first bytes: a command
    # letter is one only at the start of a read of its input
    for (1 .. 100) {
        last if -s $out && do { open(my $fh, '<', $out); local $/; <$fh> =~ /^Verify return code/m };
        sleep 0.1;
    }
    for my $s (@steps) {
        if ($s =~ /^[\d.]+$/) { sleep $s } else { print $in $s }
    }
    sleep 0.5;
    close $in; # EOF: s_client closes the connection and exits
    open(my $fh, '<', $out) or die;
    local $/;
    return scalar <$fh>;
}

# What the server sent, from s_client's output: its own lines come between the
# records it prints (-msg's: a record's or a message's header and its hex dump;
# KEYUPDATE; "read R BLOCK").
sub server_bytes($out) {
    $out =~ s/(?:<<<|>>>) [^\n]*\n(?: +(?:[0-9a-f]{2} ?)+\n)*//g;
    $out =~ s/(?:KEYUPDATE|(?:read|write) [RWX] BLOCK)\n//g;
    return $out;
}

# The HTTP/2 frames in server_bytes, from the server's first SETTINGS frame
# up to the first that is none (s_client's lines after the last).
sub h2_frames($bytes) {
    my $i = index($bytes, "\x04\x00\x00\x00\x00\x00"); # type, flags, stream 0
    return [] if $i < 3;
    my @f;
    for my $f (Tollgate::H2::parse_frames(substr($bytes, $i - 3))) { # from its length
        last if $f->{type} > 9;
        push @f, $f;
    }
    return \@f;
}

my $h2 = \&Tollgate::H2::frame_bytes;
my $PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
sub get_frame($id, $path) {
    $h2->(1, 0x5, $id, Tollgate::H2::hpack(@{ Tollgate::H2::request_fields($path) }));
}

for my $uring (qw(on off)) {
    my $tg = tg_start(<<"C");
workers 1;
io_uring $uring;
server {
    listen %%PORT%% tls;
    server_name a.test;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    location / { proxy_pass $up->{addr}; }
}
C
    my $port = $tg->port;

    # HTTP/1.1: K (the worker answers with its own KeyUpdate), then k
    my $out = s_client($port, 'http/1.1',
                       "GET /ku1 HTTP/1.1\nHost: a.test\n\n", 0.5, "K\n", 0.3,
                       "GET /ku2 HTTP/1.1\nHost: a.test\n\n", 0.5, "k\n", 0.3,
                       "GET /ku3 HTTP/1.1\nHost: a.test\n\n", 0.5);
    my @ok = $out =~ m{^HTTP/1\.1 200 OK}mg;
    is(scalar @ok, 3, "io_uring $uring, HTTP/1.1: three answers around two KeyUpdates");
    is(scalar(() = $out =~ /KEYUPDATE/g), 2, '... both KeyUpdates sent');
    is(scalar(() = $out =~ /<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate/g), 1,
       '... the worker answered K (update requested) with a KeyUpdate of its own, k with none');
    like($out, qr{"url":"/ku3"}, '... the last answer, in the newest keys, is the echo of /ku3');

    # HTTP/2: streams 1, 3, 5 around K and k
    $out = s_client($port, 'h2',
                    $PREFACE . $h2->(4, 0, 0, '') . get_frame(1, '/h2ku1'), 0.5,
                    "K\n", 0.3, $h2->(4, 1, 0, '') . get_frame(3, '/h2ku2'), 0.5,
                    "k\n", 0.3, get_frame(5, '/h2ku3'), 0.5);
    like($out, qr{ALPN protocol: h2}, "io_uring $uring, HTTP/2: h2 negotiated");
    for my $p (qw(/h2ku1 /h2ku2 /h2ku3)) {
        like($out, qr{"url":"\Q$p\E"}, "... $p answered");
    }
    is(scalar(() = $out =~ /KEYUPDATE/g), 2, '... both KeyUpdates sent');
    is(scalar(() = $out =~ /<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate/g), 1,
       '... and the worker\'s answer to K');

    # K in the middle of a response: stream 1's window (1 MB) stops a 3 MB answer
    # a third of the way; K; then the window opens and the rest comes in the new keys
    my $n = 3_000_000;
    $out = s_client($port, 'h2',
                    $PREFACE . $h2->(4, 0, 0, pack('nN', 4, 1_000_000)) . $h2->(8, 0, 0, pack('N', 0x7fffffff - 65535))
                        . get_frame(1, "/size/$n"), 1,
                    "K\n", 0.5, $h2->(4, 1, 0, '') . $h2->(8, 0, 1, pack('N', $n)) . get_frame(3, '/h2after'), 1);
    my $f = h2_frames(server_bytes($out));
    my $data1 = join('', map { $_->{payload} } grep { $_->{type} == 0 && $_->{stream} == 1 } @$f);
    ok($data1 eq Tollgate::Test::body_pattern($n), "io_uring $uring, HTTP/2: stream 1's $n bytes whole and in order")
        or diag length($data1) . ' bytes in ' . scalar(@$f) . ' frames';
    my $kpos = index($out, '<<< TLS 1.3, Handshake [length 0005], KeyUpdate');
    ok($kpos > 1_000_000 && $kpos < length($out) - 1_000_000,
       '... the worker answered K between the first megabyte and the rest')
        or diag "at $kpos of " . length($out);
    ok((grep { $_->{type} == 0 && $_->{stream} == 3 && $_->{payload} =~ m{"url":"/h2after"} } @$f),
       '... stream 3 answered after it');
    ok(!(grep { $_->{type} == 7 || $_->{type} == 3 } @$f), '... no GOAWAY, no RST_STREAM');
    ok(kill(0, $tg->worker_pids), '... the worker is alive');
    $tg->stop;
}

done_testing;
