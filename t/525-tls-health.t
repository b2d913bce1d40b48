# Active health checks to `tls on` upstreams: done over TLS with the
# proxied traffic's settings against the Node https upstream. A verified
# server stays up and sees the checks arrive as TLS connections (with SNI);
# a server whose certificate fails verification (wrong CA, or an IP not in
# the certificate) is marked down with the reason and skipped by balancing;
# a server that requires a client certificate passes with one and fails
# without; a server that stops answering TLS goes down and comes back up.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $pki = make_pki();
my $dir = $pki->{dir};
my $lh = Tollgate::TLS::_issue($dir, 'localhost', 'rsa', 'localhost', "$dir/ca");
my ($ca, $rogue_ca, $client) = ($pki->{ca}, "$dir/rogue-ca.pem", $pki->{client});

my $up = node_upstream('https-echo', env => { CERT => $lh->{cert}, KEY => $lh->{key} });
my $mtls = node_upstream('https-echo', env => { CERT => $lh->{cert}, KEY => $lh->{key},
                                                CLIENT_CA => $ca, NAME => 'mtls' });
my ($p, $mp) = ($up->{port}, $mtls->{port});
my $hc = 'health_check path=/hc interval=200ms timeout=1s fails=1 passes=1;';

my @errors_ok = (qr/TLS certificate verification failed/, qr/no live upstream server in "wrongca"/);
my $tg = tg_start(<<"C", errors_ok => \@errors_ok);
workers 1;
upstream good { server localhost:$p; tls on; tls_trusted_ca $ca; keepalive 0; $hc }
upstream wrongca { server localhost:$p; tls on; tls_trusted_ca $rogue_ca; $hc }
upstream mixed { server 127.0.0.1:$p; server localhost:$p; tls on; tls_trusted_ca $ca; $hc }
upstream mtls { server localhost:$mp; tls on; tls_trusted_ca $ca;
                tls_certificate $client->{cert}; tls_certificate_key $client->{key}; $hc }
upstream nocert { server localhost:$mp; tls on; tls_trusted_ca $ca; $hc }
server {
    listen %%PORT%%;
    location /good/ { proxy_pass good; }
    location /wrongca/ { proxy_pass wrongca; }
    location /mixed/ { proxy_pass mixed; }
    location /mtls/ { proxy_pass mtls; }
}
C

ok($tg->wait_log(qr/\[warn\].*upstream wrongca server localhost:$p is down \(health check: TLS certificate verification failed: [^)]+\)/, 5),
   'wrong CA: marked down by the health check, with the verification error');
ok($tg->wait_log(qr/upstream mixed server 127\.0\.0\.1:$p is down \(health check: TLS certificate verification failed/, 5),
   'IP not in the certificate: marked down');
ok($tg->wait_log(qr/upstream nocert server localhost:$mp is down \(health check: TLS read failed/, 5),
   'no client certificate for a server that requires one: marked down');
unlike($tg->error_log, qr/upstream (good|mtls) server .* is down/, 'verified servers stay up');
unlike($tg->error_log, qr/\[error\]/, 'health checks log no [error] line per failed check');

# the checks reach the verified server as TLS connections (with SNI)
my $j1 = decode_json($tg->http(GET => '/good/a')->{body});
is($j1->{servername}, 'localhost', 'SNI sent');
my $t0 = time;
my $j2;
Tollgate::Test::wait_until(sub {
    $j2 = decode_json($tg->http(GET => '/good/b')->{body});
    $j2->{connections} - $j1->{connections} >= 4;
}, 5);
ok($j2->{connections} - $j1->{connections} >= 4,
   sprintf('health checks arrive over TLS (%d TLS connections in %.1f s)',
           $j2->{connections} - $j1->{connections}, time - $t0));

is($tg->http(GET => '/wrongca/x')->{status}, 502, 'the down server is not tried: 502');
my $off = $tg->log_offset;
for my $i (1 .. 6) {
    my $r = $tg->http(GET => "/mixed/$i");
    is($r->{status}, 200, "mixed: request $i goes to the verified server");
}
unlike(substr($tg->error_log, $off), qr/127\.0\.0\.1:$p: TLS certificate verification failed/,
       'balancing skipped the down server (no proxied handshake to it)');
is($tg->http(GET => '/mtls/x')->{status}, 200, 'client certificate: up and proxied');
$tg->stop;

# a TLS server that goes away is marked down, then up again when it returns
my $port2 = $up->{port};
my $tg2 = tg_start(<<"C");
upstream u { server localhost:$port2; tls on; tls_trusted_ca $ca; $hc }
server { listen %%PORT%%; location / { proxy_pass u; } }
C
$up->stop;
ok($tg2->wait_log(qr/server localhost:$port2 is down \(health check: /, 5),
   'server gone: down');
$off = $tg2->log_offset;
my $back = node_upstream('https-echo', port => $port2,
                         env => { CERT => $lh->{cert}, KEY => $lh->{key} });
ok($tg2->wait_log(qr/server localhost:$port2 is up \(health check passed\)/, 10, $off),
   'back over TLS: up again');
is($tg2->http(GET => '/x')->{status}, 200, 'proxied again');
$tg2->stop;

done_testing;
