# health_check grpc [service=NAME]: each worker calls the standard
# grpc.health.v1.Health/Check on every server of the upstream (over the
# upstream's HTTP/2 connections); a server answering NOT_SERVING, an unknown
# service (NOT_FOUND) or nothing is marked down and balancing skips it; back
# to SERVING, it is up again. Server: t/upstream/grpc-server.js (its health
# switch is a call with text "sick"/"well"); config errors.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;

my $a = node_upstream('grpc-server', env => { NAME => 'a' });
my $b = node_upstream('grpc-server', env => { NAME => 'b' });
my $tg = tg_start(<<"C", errors_ok => [qr/connect\(\) to .* failed/, qr/no live upstream/, qr/HTTP\/2 connection/]);
upstream g {
    server $a->{addr};
    server $b->{addr};
    health_check grpc service=tgtest.Test interval=200ms timeout=1s fails=1 passes=1;
}
upstream nosvc {
    server $a->{addr};
    protocol http2;
    health_check grpc service=nope interval=200ms fails=1 passes=1;
}
server {
    listen %%PORT%% http2;
    location /tgtest.Test/ { proxy_pass grpc://g; }
}
server {
    listen %%PORT2%% http2;
    location /tgtest.Test/ { proxy_pass grpc://nosvc; }
}
C
my $root = Tollgate::Test::repo_root();
sub call($target, $scenario, $arg = '') {
    my $out = `cd $root/t && timeout 30 node upstream/grpc-client.js $target - $scenario '$arg' 2>&1`;
    return eval { decode_json((split /\n/, $out)[-1]) } // { error => $out };
}
sub servers_seen($n) {
    my %seen;
    $seen{call('127.0.0.1:' . $tg->port(1), 'unary', 1)->{metadata}{'x-server'} // 'none'}++ for 1 .. $n;
    return join ',', sort keys %seen;
}

ok(wait_until(sub { (call($a->{addr}, 'health', 'checks')->{n} // 0) >= 2 }, 10),
   'the gateway calls grpc.health.v1.Health/Check');
is(servers_seen(6), 'a,b', 'both servers SERVING: both get calls');

call($b->{addr}, 'health', 'sick');
ok($tg->wait_log(qr/server \Q$b->{addr}\E is down \(health check: not SERVING\)/, 10),
   'NOT_SERVING: the server is marked down');
is(servers_seen(6), 'a', 'calls go to the SERVING server only');

call($b->{addr}, 'health', 'well');
ok($tg->wait_log(qr/server \Q$b->{addr}\E is up/, 10), 'SERVING again: up');
is(servers_seen(8), 'a,b', 'both servers get calls again');

ok($tg->wait_log(qr/upstream nosvc server \Q$a->{addr}\E is down \(health check: grpc-status not 0\)/, 10),
   'an unknown service (NOT_FOUND): down');
is(call('127.0.0.1:' . $tg->port(2), 'unary', 1)->{code}, 14, 'no server up: UNAVAILABLE');

$b->stop;
ok($tg->wait_log(qr/server \Q$b->{addr}\E is down \(health check: (cannot connect|timeout|stream reset)/, 10),
   'a stopped server: down');
is(servers_seen(4), 'a', 'its calls go to the other');

like(tg_conf_error("upstream u { server 127.0.0.1:1; health_check grpc; }"),
     qr/:1: upstream "u": "health_check grpc" needs "protocol http2"/, 'health_check grpc needs http2');
like(tg_conf_error("upstream u { server 127.0.0.1:1; protocol http2; health_check service=x; }"),
     qr/:1: invalid parameter "service=x" in "health_check"/, 'service= only with grpc');

$tg->stop;
done_testing;
