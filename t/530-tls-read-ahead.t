# TLS read-ahead: a client listener's TLS layer takes whatever the socket has
# in one read call (several records), and what it holds then raises no socket
# event. Every reader that goes back to the loop without reading to EAGAIN
# must look into the TLS layer first, or the bytes wait there until the
# client sends more (a hang). Each case sends many records back to back (one
# per write, packed by TCP, t/upstream/tls-burst-client.js): pipelined
# HTTP/1.1 requests (at once and in waves), a request body right behind its
# head, a WebSocket's frames right behind its upgrade request, HTTP/2 streams
# and uploads; then the read calls per request, which read-ahead cuts.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);
use Tollgate::TLS;

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $up = node_upstream('echo');
my $ws = node_upstream('ws');
my $tg = tg_start(<<"C");
workers 1;
server {
    listen %%PORT%% tls;
    server_name a.test;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    client_max_body_size 10m;
    keepalive_requests 10000;
    location / { proxy_pass $up->{addr}; }
    location /ws { proxy_pass $ws->{addr}; }
}
C
my $port = $tg->port;

sub client($scenario, $n) {
    my $script = repo_root() . '/t/upstream/tls-burst-client.js';
    my $out = `timeout 40 node $script $port $scenario $n 2>&1`;
    my $res = eval { decode_json((split /\n/, $out)[-1]) };
    return $res // { errors => ["bad output: $out"] };
}

for my $n (2, 50, 400) {
    my $r = client('pipeline', $n);
    is_deeply($r->{errors}, [], "pipeline $n: no client errors") or diag explain $r;
    is($r->{answers}, $n, "pipeline $n: every request over TLS answered");
    ok($r->{urls_in_order}, "pipeline $n: in order");
}

my $r = client('waves', 30);
is_deeply($r->{errors}, [], 'waves: no client errors') or diag explain $r;
is($r->{answers}, 240, 'waves: 30 rounds of 8 pipelined requests on one connection answered');

for my $n (5_000, 3_000_000) {
    $r = client('post', $n);
    is_deeply($r->{errors}, [], "POST $n: no client errors") or diag explain $r;
    is($r->{status}, 200, "POST $n bytes in 1000-byte records: 200");
    is($r->{length}, $n, "POST $n: the upstream got every byte");
    ok($r->{sha_ok}, "POST $n: the same bytes");
}

$r = client('ws', 200);
is_deeply($r->{errors}, [], 'WebSocket: no client errors') or diag explain $r;
is($r->{status}, 101, 'WebSocket over TLS upgraded');
ok($r->{hello}, "WebSocket: the upstream's hello came");
is($r->{echoes}, 200, 'WebSocket: 200 frames sent behind the upgrade request all echoed');

$r = client('h2', 300);
is_deeply($r->{errors}, [], 'HTTP/2: no client errors') or diag explain $r;
is($r->{ok}, 300, 'HTTP/2: 300 concurrent streams answered');
is($r->{posts_ok}, 30, 'HTTP/2: 30 uploads of 100 KB in 1000-byte DATA frames arrived whole');

# read-ahead itself: strace counts the worker's read calls while 400
# pipelined requests come in records of one request each; without read-ahead
# every record costs a read for its header and one for its body
SKIP: {
    my $strace = grep { -x "$_/strace" } split /:/, $ENV{PATH};
    skip 'strace not installed', 2 unless $strace;
    my ($wpid) = $tg->worker_pids;
    my $log = $tg->dir . '/strace.out';
    my $pid = open(my $st, '-|', 'strace', '-qq', '-e', 'trace=read', '-o', $log, '-p', $wpid)
        // die "strace: $!";
    select(undef, undef, undef, 1); # strace attaches
    $r = client('pipeline', 400);
    kill 'TERM', $pid;
    waitpid($pid, 0);
    open(my $fh, '<', $log) or die;
    my $reads = grep { /^read\(/ } <$fh>;
    is($r->{answers}, 400, 'traced run answered');
    # the upstream's responses are reads too (about one per request)
    cmp_ok($reads, '<', 400 * 2, "read calls of the worker for 400 pipelined requests: $reads (< 800)");
}

done_testing();
