# Retries of requests with a body: a failed connect (refused, timed out) has
# sent nothing, so the request goes to the next server whatever its method,
# body size and framing; the body is never buffered whole for that (the
# worker's memory stays flat for a 100 MB upload). A pooled connection the
# upstream closed is not used for a streamed body. A server that refused is
# taken out per max_fails as before.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Digest::SHA;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo', env => { NAME => 'live' });
my $dead = free_port();

# A listener whose accept queue is full: connects to it hang in SYN-SENT
# until the connect timeout (backlog 1 admits two unaccepted connections;
# the fillers below take them, and a probe checks that the next one hangs).
my $full_port = free_port();
my $full = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $full_port,
                                 Proto => 'tcp', Listen => 1, ReuseAddr => 1)
    or die "listen: $!";
my @fillers = map {
    IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $full_port, Proto => 'tcp',
                          Blocking => 0)
} 1 .. 3;
my $probe = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $full_port,
                                  Proto => 'tcp', Timeout => 0.5);
my $full_works = !$probe;
close($probe) if $probe;

my $tg = tg_start(<<"C", errors_ok => [qr/connect\(\) to 127\.0\.0\.1:($dead|$full_port) failed|timed out connecting to upstream 127\.0\.0\.1:$full_port/]);
upstream deadfirst {
    server 127.0.0.1:$dead weight=1000 max_fails=0;
    server $up->{addr};
}
upstream marked {
    server 127.0.0.1:$dead weight=1000 max_fails=1 fail_timeout=30s;
    server $up->{addr};
}
upstream slowfirst {
    server 127.0.0.1:$full_port weight=1000 max_fails=0;
    server $up->{addr};
}
server {
    listen %%PORT%%;
    client_max_body_size 0;
    location /df/ { proxy_pass deadfirst; }
    location /mk/ { proxy_pass marked; }
    location /to/ { proxy_pass slowfirst; proxy_timeouts connect=300ms; }
    location /live/ { proxy_pass $up->{addr}; }
}
C

my $block = join '', map { chr(($_ * 7919 + 13) % 256) } 0 .. 65535;

# Sends METHOD PATH with a $size-byte body generated on the fly (64 KB pieces,
# one chunk each when chunked), returns (response, the body's sha256 hex).
sub upload($method, $path, $size, $chunked, $timeout = 30) {
    my $deadline = time + $timeout;
    my ($c, $err) = Tollgate::Test::Conn->connect($tg->port, 5);
    return ({ error => $err }, '') unless $c;
    my $frame = $chunked ? "Transfer-Encoding: chunked" : "Content-Length: $size";
    $err = $c->write_all("$method $path HTTP/1.1\r\nHost: t\r\nConnection: close\r\n$frame\r\n\r\n",
                         $deadline);
    my $sha = Digest::SHA->new(256);
    my $off = 0;
    while (!$err && $off < $size) {
        my $n = $size - $off < 65536 ? $size - $off : 65536;
        my $piece = substr($block, 0, $n);
        $sha->add($piece);
        $err = $c->write_all($chunked ? sprintf("%x\r\n%s\r\n", $n, $piece) : $piece, $deadline);
        $off += $n;
    }
    $err //= $c->write_all("0\r\n\r\n", $deadline) if $chunked;
    my $res = $c->read_response($method, $deadline);
    $res->{error} //= $err;
    $c->close;
    return ($res, $sha->hexdigest);
}

sub count_log($re) { my @l = grep { /$re/ } split /\n/, $tg->error_log; return scalar @l }
my $refused = qr/connect\(\) to 127\.0\.0\.1:$dead failed/;

# every size and framing, the dead server first each time
my @sizes = (0, 1024, 32 * 1024, 1024 * 1024);
my $n = 0;
for my $size (@sizes) {
    for my $chunked (0, 1) {
        my $what = "$size B " . ($chunked ? 'chunked' : 'fixed-length');
        my ($r, $sha) = upload(POST => "/df/$size", $size, $chunked);
        $n++;
        is($r->{status}, 200, "POST $what, dead server first: 200") or diag explain $r;
        my $d = eval { decode_json($r->{body}) } // {};
        is($d->{name}, 'live', "$what: answered by the live server");
        is($d->{bodyLength}, $size, "$what: the whole body arrived");
        is($d->{bodySha256}, $sha, "$what: byte for byte");
        is(count_log($refused), $n, "$what: the dead server was tried first");
    }
}
{
    # a PUT (idempotent) and a PATCH go the same way
    my ($r, $sha) = upload(PATCH => '/df/patch', 32 * 1024, 0);
    is($r->{status}, 200, 'PATCH 32 KB, dead server first: 200');
    is(eval { decode_json($r->{body})->{bodySha256} }, $sha, 'PATCH body intact');
    is(count_log($refused), ++$n, 'PATCH: the dead server was tried first');
}

# 100 MB streamed: retried too, and the worker's memory stays flat
my ($worker) = $tg->worker_pids;
sub hwm_kb() { my ($kb) = Tollgate::Test::_slurp("/proc/$worker/status") =~ /VmHWM:\s+(\d+)/; $kb // 0 }
$tg->http(POST => '/live/warm', body => 'x' x 100000);
my $hwm0 = hwm_kb();
for my $chunked (0, 1) {
    my $what = '100 MB ' . ($chunked ? 'chunked' : 'fixed-length');
    my $t0 = time;
    my ($r, $sha) = upload(POST => "/df/big", 100 << 20, $chunked, 40);
    my $secs = time - $t0;
    $n++;
    is($r->{status}, 200, "POST $what, dead server first: 200") or diag explain $r;
    my $d = eval { decode_json($r->{body}) } // {};
    is($d->{bodyLength}, 100 << 20, "$what: the whole body arrived");
    is($d->{bodySha256}, $sha, "$what: byte for byte");
    is(count_log($refused), $n, "$what: the dead server was tried first");
    note sprintf('%s in %.1f s', $what, $secs);
}
my $grew = hwm_kb() - $hwm0;
ok($grew < 20 * 1024, "worker peak RSS grew by $grew KB over two 100 MB uploads (< 20 MB)");

# the upstream saw each request once, complete
my $log = $up->log;
my @big = grep { $_->{url} eq '/df/big' } @$log;
is(scalar @big, 2, 'each 100 MB upload reached the upstream once');
is(scalar(grep { !$_->{complete} } @$log), 0, 'no request reached it incomplete');

# max_fails=1: the refusing server is taken out after its first failure
{
    my $before = count_log($refused);
    my @st = map { (upload(POST => "/mk/$_", 32 * 1024, $_ % 2))[0]{status} } 1 .. 4;
    is_deeply(\@st, [200, 200, 200, 200], 'marked: four 32 KB POSTs answered');
    is(count_log($refused) - $before, 1, 'the dead server was tried once, then taken out');
}

# connect timeout: the next server gets the body
SKIP: {
    skip 'the kernel accepted a connection past the full backlog', 4 unless $full_works;
    my $before = count_log(qr/timed out connecting to upstream 127\.0\.0\.1:$full_port/);
    for my $chunked (0, 1) {
        my ($r, $sha) = upload(POST => '/to/x', 1024 * 1024, $chunked);
        is($r->{status}, 200, 'connect timeout, 1 MB ' . ($chunked ? 'chunked' : 'fixed') . ': 200');
        is(eval { decode_json($r->{body})->{bodySha256} }, $sha, 'and the body intact');
    }
    is(count_log(qr/timed out connecting to upstream 127\.0\.0\.1:$full_port/) - $before, 2,
       'the hanging server was tried first both times');
}

$tg->stop;

# A pooled connection the upstream closed while the worker was not looking:
# the worker is stopped, the upstream restarted (its FIN waits on the pooled
# socket), then a streamed 32 KB POST arrives together with that FIN.
{
    my $u = node_upstream('echo', env => { NAME => 'first' });
    my $port = $u->{port};
    my $g = tg_start("server { listen %%PORT%%; location / { proxy_pass $u->{addr}; } }");
    my ($w) = $g->worker_pids;
    my @st;
    for my $round (1 .. 4) {
        is($g->http(GET => "/warm$round")->{status}, 200, "round $round: a pooled connection");
        kill('STOP', $w);
        $u->stop;
        $u = node_upstream('echo', env => { NAME => "again$round" }, port => $port);
        my ($c) = Tollgate::Test::Conn->connect($g->port, 5);
        my $body = 'b' x (32 * 1024);
        $c->write_all("POST /p$round HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                      . "Content-Length: 32768\r\n\r\n$body", time + 5);
        kill('CONT', $w);
        my $r = $c->read_response('POST', time + 10);
        push @st, $r->{status};
        $c->close;
    }
    is_deeply(\@st, [200, 200, 200, 200], 'a closed pooled connection never turns a POST into 502');
    $g->stop;
    $u->stop;
}

close($_) for grep { defined } @fillers;
close($full);
done_testing;
