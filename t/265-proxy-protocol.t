# listen ... proxy_protocol with real_ip_header proxy_protocol: versions 1
# and 2, LOCAL/UNKNOWN, junk refused, untrusted balancers ignored.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;

my $tg = tg_start(<<'C');
server {
    listen %%PORT%% proxy_protocol;
    real_ip_from 127.0.0.1;
    real_ip_header proxy_protocol;
    return 200 "$remote_addr";
}
server {
    listen %%PORT2%% proxy_protocol;
    real_ip_from 192.0.2.1;
    real_ip_header proxy_protocol;
    return 200 "$remote_addr";
}
C
my $req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
sub body($raw) { return $raw =~ /\r\n\r\n(.*)$/s ? $1 : "<no response: $raw>" }

is(body(scalar $tg->raw("PROXY TCP4 198.51.100.4 127.0.0.1 40000 80\r\n$req")), '198.51.100.4', 'v1 TCP4');
is(body(scalar $tg->raw("PROXY TCP6 2001:db8::7 ::1 40000 80\r\n$req")), '2001:db8::7', 'v1 TCP6');
is(body(scalar $tg->raw("PROXY UNKNOWN\r\n$req")), '127.0.0.1', 'v1 UNKNOWN: the peer');
is(body(scalar $tg->raw(["PROXY TCP4 198.51.1", "00.5 127.0.0.1 1 2\r\n", $req])), '198.51.100.5',
   'v1 header in pieces');
my $sig = "\r\n\r\n\0\r\nQUIT\n";
my $v2 = $sig . "\x21\x11" . pack('n', 12) . pack('C4', 203, 0, 113, 9) . pack('C4', 127, 0, 0, 1)
       . pack('nn', 5555, 80);
is(body(scalar $tg->raw($v2 . $req)), '203.0.113.9', 'v2 TCP4');
my $local = $sig . "\x20\x00" . pack('n', 0);
is(body(scalar $tg->raw($local . $req)), '127.0.0.1', 'v2 LOCAL: the peer');
my ($raw, $closed) = $tg->raw($req);
is($raw, '', 'plain HTTP without the header: refused');
ok($closed, '... and closed');
($raw, $closed) = $tg->raw("PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\n$req");
is($raw, '', 'bad v1 header refused');
is(body(scalar Tollgate::Test::raw_request($tg->port(2), "PROXY TCP4 198.51.100.4 127.0.0.1 1 2\r\n$req")),
   '127.0.0.1', 'balancer not in real_ip_from: its header is not believed');
$tg->stop;

like(tg_conf_error("server {\n listen %%PORT%%;\n}\nserver {\n listen %%PORT%% proxy_protocol;\n}"),
     qr/:5: .*different tls or proxy_protocol/, 'mixed proxy_protocol on one address refused');
done_testing;
