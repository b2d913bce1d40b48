# Socket.io (real socket.io server and client from npm) through the gateway to
# two upstream instances: long polling needs the sticky cookie, websocket
# works with and without the upgrade from polling.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root tg_npm_setup);

tg_npm_setup();
my @up = map { node_upstream('socketio', env => { NAME => "s$_" }) } 1, 2;
my $tg = tg_start(<<"C");
upstream sio {
    server $up[0]{addr};
    server $up[1]{addr};
    sticky cookie tg_server;
}
upstream sio_plain {
    server $up[0]{addr};
    server $up[1]{addr};
}
server {
    listen %%PORT%%;
    location / { proxy_pass sio; }
}
server {
    listen %%PORT2%%;
    location / { proxy_pass sio_plain; }
}
C

sub run_clients($port, $n, $count, $transports) {
    my $script = repo_root() . '/t/upstream/socketio-client.js';
    my $out = `cd @{[repo_root()]}/t && timeout 30 node $script http://127.0.0.1:$port $n $count $transports 2>&1`;
    my $res = eval { decode_json((split /\n/, $out)[-1]) };
    return $res // { errors => ["bad output: $out"], clients => [] };
}

for my $tr ('polling', 'websocket', 'polling,websocket') {
    my $res = run_clients($tg->port, 6, 10, $tr);
    is_deeply($res->{errors}, [], "$tr: no errors") or diag explain $res->{errors};
    my @c = @{$res->{clients}};
    is(scalar(grep { @{$_->{names}} == 10 } @c), 6, "$tr: every client got its 10 acks");
    my $stuck = grep { my %n = map { $_ => 1 } @{$_->{names}}, $_->{hello} // ''; keys %n == 1 } @c;
    is($stuck, 6, "$tr: each client stays on one server");
    my %used = map { $_->{hello} // '' => 1 } @c;
    ok(keys %used == 2, "$tr: both servers in use") or diag explain \%used;
    if ($tr eq 'polling,websocket') {
        ok((grep { ($_->{transports}[-1] // '') eq 'websocket' } @c) == 6, 'upgraded to websocket');
    }
}
# without stickiness, long polling across two instances breaks (the reason for it)
my $res = run_clients($tg->port(2), 4, 5, 'polling');
ok(@{$res->{errors}} > 0, 'without sticky cookie, polling fails across instances (as expected)');

# sticky cookie by hand: set once, honoured, a dead server's cookie is ignored
my $r = $tg->http(GET => '/');
my ($cookie) = ($r->{headers}{'set-cookie'} // '') =~ /^(tg_server=[0-9a-f]{16});/;
ok($cookie, 'Set-Cookie names a server') or diag $r->{headers}{'set-cookie'};
my $first = $r->{body};
my @same = map { $tg->http(GET => '/', headers => [Cookie => "a=1; $cookie"]) } 1 .. 6;
is(scalar(grep { $_->{body} eq $first } @same), 6, 'the cookie keeps the server');
ok(!grep({ exists $_->{headers}{'set-cookie'} } @same), 'and is not set again');
$r = $tg->http(GET => '/', headers => [Cookie => 'tg_server=0000000000000000']);
like($r->{headers}{'set-cookie'} // '', qr/^tg_server=/, 'unknown value: a new cookie');
$tg->stop;
done_testing;
