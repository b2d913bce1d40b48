# The HTTP/1.1 reverse proxy against a real Node upstream: what is forwarded
# (method, target, headers in order with case and duplicates, hop-by-hop
# removed, X-Forwarded-*), bodies both ways (Content-Length, chunked,
# streamed), HEAD, HTTP/1.0, 100-continue, keep-alive and pipelining.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C");
server {
    listen %%PORT%%;
    location / { proxy_pass $up->{addr}; }
    location /set/ {
        proxy_pass $up->{addr};
        proxy_set_header X-Route set-\$method;
        proxy_set_header X-Forwarded-Host "";
        proxy_remove_header X-Secret;
    }
}
C

sub desc($r) { my $d = eval { decode_json($r->{body}) }; return $d // {} }

# --- request forwarding
my $r = $tg->http(GET => '/a/b?x=1&y=%20z', headers => [
    'X-One' => 'v1', 'x-MiXeD' => 'Keep Case', 'X-One' => 'v2',
    'Connection' => 'close, X-Hop', 'X-Hop' => 'gone', 'Keep-Alive' => 'timeout=5',
    'TE' => 'trailers', 'Proxy-Authorization' => 'Basic x', 'Upgrade' => 'h2c',
    'Trailer' => 'X', 'X-Forwarded-For' => '203.0.113.9']);
is($r->{status}, 200, 'GET proxied');
my $d = desc($r);
is($d->{method}, 'GET', 'method kept');
is($d->{url}, '/a/b?x=1&y=%20z', 'target kept byte for byte');
my @raw = @{$d->{rawHeaders} // []};
my @names = @raw[grep { $_ % 2 == 0 } 0 .. $#raw];
is_deeply([grep { /^x-one$|^x-mixed$/i } @names], ['X-One', 'x-MiXeD', 'X-One'],
          'order, case and duplicates kept');
is($d->{headers}{'x-one'}, 'v1, v2', 'both duplicate values arrive');
ok(!exists $d->{headers}{$_}, "hop-by-hop $_ removed")
    for qw(x-hop keep-alive te proxy-authorization upgrade trailer);
is($d->{headers}{'x-forwarded-for'}, '203.0.113.9, 127.0.0.1', 'X-Forwarded-For appended');
is($d->{headers}{'x-forwarded-proto'}, 'http', 'X-Forwarded-Proto');
is($d->{headers}{'x-forwarded-host'}, "127.0.0.1:" . $tg->port, 'X-Forwarded-Host');
is($d->{headers}{'x-real-ip'}, '127.0.0.1', 'X-Real-IP');
is($d->{headers}{host}, "127.0.0.1:" . $tg->port, 'Host passed as received');

# X-Forwarded-For first, then enough headers that the list of headers for the
# upstream outgrows its first array (16 before, 32 now): the client's address is
# still appended, and a second X-Forwarded-For still folds into the first
for my $n (20, 40) {
    $r = $tg->http(GET => '/many', headers => [
        'X-Forwarded-For' => '198.51.100.7', (map { ("X-Fill-$_" => "v$_") } 1 .. $n),
        'X-Forwarded-For' => '198.51.100.8']);
    $d = desc($r);
    is($d->{headers}{'x-forwarded-for'}, '198.51.100.7, 198.51.100.8, 127.0.0.1',
       "X-Forwarded-For folded and appended behind $n other headers");
    is($d->{headers}{"x-fill-$n"}, "v$n", "all $n other headers arrive");
}

$r = $tg->http(POST => '/set/x', headers => ['X-Secret' => 's', 'X-Forwarded-Host' => 'evil']);
$d = desc($r);
is($d->{headers}{'x-route'}, 'set-POST', 'proxy_set_header with a variable');
ok(!exists $d->{headers}{'x-secret'}, 'proxy_remove_header');
ok(!exists $d->{headers}{'x-forwarded-host'}, 'proxy_set_header NAME "" removes');

# --- response forwarding
$r = $tg->http(GET => '/headers?Set-Cookie=a%3D1&Set-Cookie=b%3D2&X-Up=1');
is_deeply([map { $_->[1] } grep { lc $_->[0] eq 'set-cookie' } @{$r->{header_list}}],
          ['a=1', 'b=2'], 'repeated response headers kept');
is($r->{headers}{'x-up'}, '1', 'response header passed');
$r = $tg->http(GET => '/headers?Connection=X-Private%2C%20keep-alive&X-Private=s&X-Kept=1'
                     . '&Proxy-Authenticate=Basic');
is($r->{status}, 200, 'response with hop-by-hop headers');
ok(!exists $r->{headers}{$_}, "response hop-by-hop $_ removed")
    for qw(x-private proxy-authenticate keep-alive);
is($r->{headers}{'x-kept'}, '1', 'the other response headers stay');
like($r->{headers}{date} // '', qr/GMT$/, 'Date present');
$r = $tg->http(GET => '/status/404');
is($r->{status}, 404, 'upstream status passed');
$r = $tg->http(GET => '/status/204');
is($r->{status}, 204, '204 passed');
is($r->{body}, '', '204 has no body');

# --- bodies
for my $n (0, 1, 65536, 1000 * 1000 + 7) {
    my $body = body_pattern($n);
    $r = $tg->http(POST => '/p', body => $body);
    $d = desc($r);
    is($d->{bodyLength}, $n, "Content-Length body of $n bytes forwarded");
    is($d->{bodySha256}, sha256_hex($body), "... intact");
}
$r = $tg->http(POST => '/p', chunked => 1, body => ['hello ', 'chunked ', 'world']);
$d = desc($r);
is($d->{body}, 'hello chunked world', 'chunked request body forwarded');
$r = $tg->http(GET => '/size/2000000');
is(length $r->{body}, 2000000, 'large Content-Length response');
is($r->{body}, body_pattern(2000000), '... intact');
$r = $tg->http(GET => '/chunked/100000/5');
is($r->{body}, body_pattern(100000), 'chunked response relayed');
$r = $tg->http(GET => '/stream/500000?close=1');
is($r->{body}, body_pattern(500000), 'read-to-close response relayed');
ok($r->{closed}, 'and the connection closes after it');

# --- HEAD
$r = $tg->http(HEAD => '/size/1234');
is($r->{status}, 200, 'HEAD');
is($r->{headers}{'content-length'}, '1234', 'HEAD keeps Content-Length');
is($r->{body}, '', 'HEAD has no body');

# --- HTTP/1.0
my $raw = $tg->raw("GET /size/10 HTTP/1.0\r\n\r\n");
like($raw, qr{^HTTP/1\.1 200 }, 'HTTP/1.0 client answered');
like($raw, qr/\r\n\r\nabcdefghij$/, 'HTTP/1.0 body');
unlike($raw, qr/transfer-encoding: chunked/i, 'no chunked framing for HTTP/1.0');
$raw = $tg->raw("GET /chunked/10/2 HTTP/1.0\r\nHost: x\r\n\r\n");
like($raw, qr/\r\n\r\nabcdefghij$/, 'chunked upstream body unchunked for HTTP/1.0');

# --- Expect: 100-continue
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Timeout => 5)
        or die;
    print $s "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
           . "Connection: close\r\n\r\n";
    my $got = '';
    my $deadline = time + 5;
    while ($got !~ /\r\n\r\n/ && time < $deadline) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        last unless select($rin, undef, undef, 0.2) >= 0;
        sysread($s, $got, 4096, length $got) if vec($rin, fileno($s), 1);
    }
    like($got, qr{^HTTP/1\.1 100 Continue\r\n\r\n$}, '100 Continue before the body is sent');
    print $s "hello";
    local $/;
    my $rest = <$s> // '';
    like($rest, qr{^HTTP/1\.1 200 }, 'final response after the body');
    my ($json) = $rest =~ /\r\n\r\n(.*)$/s;
    my $fin = eval { decode_json($json) } // {};
    is($fin->{body}, 'hello', 'body forwarded after 100');
    ok(!exists $fin->{headers}{expect}, 'Expect not forwarded');
}
$r = $tg->http(POST => '/p', body => 'x', headers => [Expect => 'something-else']);
is($r->{status}, 417, 'unknown Expect gets 417');

# --- keep-alive and pipelining
{
    my $c = $tg->keepalive;
    for my $i (1 .. 5) {
        my $x = $c->request(GET => "/k$i");
        is(desc($x)->{url}, "/k$i", "keep-alive request $i");
    }
    ok(!$c->is_closed(0.2), 'connection stays open');
    $c->write(join '', map { "GET /pipe$_ HTTP/1.1\r\nHost: x\r\n\r\n" } 1 .. 10);
    my @urls = map { desc($c->read_response)->{url} // '' } 1 .. 10;
    is_deeply(\@urls, [map { "/pipe$_" } 1 .. 10], 'pipelined responses in order');
    $c->write("GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    is(desc($c->read_response)->{url}, '/last', 'Connection: close request answered');
    ok($c->is_closed(2), 'then the connection is closed');
}
{
    my $c = $tg->keepalive;
    $c->write("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
            . "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            . "GET /d HTTP/1.1\r\nHost: x\r\n\r\n");
    my @got = map { desc($c->read_response) } 1 .. 4;
    is_deeply([map { $_->{url} } @got], ['/a', '/b', '/c', '/d'], 'pipelined with a body');
    is($got[2]{body}, 'abc', 'pipelined body kept apart');
}

# upstream connections are reused: many requests, few upstream connections
$up->clear_log;
{
    my $c = $tg->keepalive;
    $c->request(GET => "/reuse$_") for 1 .. 20;
}
my @ports = map { $_->{remotePort} // () } @{$up->log};
my %uniq = map { $_ => 1 } @ports;
ok(@ports == 0 || keys %uniq <= 2, 'upstream keep-alive pool reused') or diag "@ports";

$tg->stop;
done_testing;
