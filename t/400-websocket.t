# WebSocket through the gateway: the upgrade is forwarded, 101 turns the
# connection into a tunnel both ways, a refused upgrade is an ordinary
# answer, idle tunnels time out, and tunnels survive reloads.
use v5.36;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::WS;

my $up = node_upstream('ws');
my $conf = sub ($tag) { <<"C" };
server {
    listen %%PORT%%;
    location / { proxy_pass $up->{addr}; }
    location = /tag { return 200 "$tag"; }
}
C
my $tg = tg_start($conf->('a'));

my $ws = Tollgate::WS->connect($tg->port, '/ws') or BAIL_OUT("handshake: $Tollgate::WS::error");
is($ws->{status}, 101, '101 Switching Protocols');
like($ws->{response}, qr/^Upgrade: websocket\r$/mi, 'Upgrade header passed back');
like($ws->{response}, qr/^Connection: upgrade\r$/mi, 'Connection: upgrade');
my ($op, $msg) = $ws->recv;
is($msg, 'hello from ws', 'server-first message arrives');
$ws->send_text('ping');
is(($ws->recv)[1], 'echo:ping', 'echo');
my $big = 'x' x 300000;
$ws->send_text($big);
is(($ws->recv(10))[1], "echo:$big", '300 KB message both ways');
my @many = map { "m$_" } 1 .. 200;
$ws->send_text($_) for @many;
my @got = map { ($ws->recv)[1] // '' } 1 .. 200;
is_deeply(\@got, [map { "echo:$_" } @many], '200 messages in order');
# latency: forwarded at once, not batched
my $t0 = time;
$ws->send_text('fast');
is(($ws->recv)[1], 'echo:fast', 'round trip');
ok(time - $t0 < 0.2, 'within 200 ms') or diag time - $t0;
$ws->send_text('bye');
my ($cop, $cpayload) = $ws->recv;
is($cop, 8, 'close frame from the server passed on');
$ws->send_frame(8, $cpayload // '');   # the closing handshake's answer
ok($ws->is_closed(3), 'then the tunnel closes');

# the server drops the socket: the client sees the close
$ws = Tollgate::WS->connect($tg->port, '/ws');
$ws->recv;
$ws->send_text('close');
ok($ws->is_closed(3), 'upstream close reaches the client');

# a refused upgrade is an ordinary response
my $no = Tollgate::WS->connect($tg->port, '/not-ws');
ok($no && $no->{status} != 101, 'non-101 answer to an upgrade request');
like($no->{response} // '', qr{^HTTP/1\.1 400 }, 'the upstream\'s 400 is passed on');
# a 101 that does not answer the client's key: 502, the client never sees the switch
{
    my $raw = node_upstream('raw');
    my $t = tg_start("server { listen %%PORT%%; location / { proxy_pass $raw->{addr}; } }",
                     errors_ok => [qr/wrong Sec-WebSocket-Accept/, qr/sent an invalid response/]);
    for my $p ('/bad-accept', '/no-accept') {
        my $w = Tollgate::WS->connect($t->port, $p);
        is($w && $w->{status}, 502, "$p: a 101 with a wrong Sec-WebSocket-Accept is a 502");
    }
    $t->stop;
}
# an upgrade other than websocket is not passed on
my $r = $tg->http(GET => '/plain', headers => [Upgrade => 'h2c', Connection => 'Upgrade, HTTP2-Settings',
                                               'HTTP2-Settings' => 'AAMAAABkAAQCAAAAAAIAAAAA']);
is($r->{status}, 200, 'h2c upgrade request served as plain HTTP/1.1');
like($r->{body}, qr{plain /plain}, '... by the upstream');

# idle timeout
{
    my $t = tg_start("server { listen %%PORT%%; websocket_idle_timeout 1s; location / { proxy_pass $up->{addr}; } }");
    my $w = Tollgate::WS->connect($t->port, '/ws');
    $w->recv;
    my $t1 = time;
    ok($w->is_closed(4), 'idle tunnel closed after websocket_idle_timeout');
    ok(time - $t1 > 0.8, '... not before') or diag time - $t1;
    $t->stop;
}

# the access log line of a tunnel, written when it ends: the request it came
# from is intact (the tunnel released its input buffer and parser at the 101)
{
    my $t = tg_start(<<"C");
server {
    listen %%PORT%%;
    access_log %%DIR%%/access.log combined;
    location / { proxy_pass $up->{addr}; }
}
C
    my $w = Tollgate::WS->connect($t->port, '/ws?room=42', headers => ['User-Agent: ws-test/1.0',
                                                                      'Referer: http://ref.test/page']);
    $w->recv;
    $w->send_text('logged');
    is(($w->recv)[1], 'echo:logged', 'tunnel works with an access log');
    $w->close;
    my $line = '';
    for (1 .. 50) {
        $line = Tollgate::Test::_slurp($t->dir . '/access.log');
        last if $line =~ /\n/;
        sleep 0.1;
    }
    like($line, qr{"GET /ws\?room=42 HTTP/1\.1" 101 }, 'log line: request line and status 101');
    like($line, qr{"http://ref\.test/page" "ws-test/1\.0"}, 'log line: referer and user agent');
    $t->stop;
}

# 100 tunnels survive 3 reloads
my @socks = map { Tollgate::WS->connect($tg->port, '/ws') } 1 .. 100;
is(scalar(grep { defined } @socks), 100, '100 WebSockets open');
$_->recv for @socks;
for my $i (1 .. 3) {
    my $off = $tg->reload($conf->("r$i"));
    ok($tg->wait_log(qr/reloaded: generation @{[$i + 1]}/, 5, $off), "reload $i");
}
is($tg->http(GET => '/tag')->{body}, 'r3', 'new config serves new requests');
my $ok = 0;
for my $k (0 .. $#socks) {
    $socks[$k]->send_text("after$k");
    $ok++ if (($socks[$k]->recv)[1] // '') eq "echo:after$k";
}
is($ok, 100, 'all 100 still echo after 3 reloads');
$_->close for @socks;
$tg->stop;
done_testing;
