# Two gateways sharing one acme_storage directory do not both order: a
# gateway that finds the storage's lock taken (here by the test, standing
# for another gateway in the middle of an order) waits and orders nothing;
# once it has the certificate, a second gateway on the same storage serves
# it without an order of its own (docs/acme.md). pebble on loopback.
use v5.36;
use Test::More;
use Fcntl qw(:flock);
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::Pebble;

plan skip_all => 'pebble not installed' unless grep { -x "$_/pebble" } split /:/, $ENV{PATH};

my ($p80, $p443, $q80, $q443) = map { free_port() } 1 .. 4;
my $ca = Tollgate::Pebble->start(http_port => $p80, tls_port => $p443);
my $parent = tempdir('tg-acme-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
chmod 0755, $parent;
my $conf = sub($http, $https) {
    return <<"C";
acme_directory $ca->{directory};
acme_ca_root $ca->{ca_root};
acme_storage $parent/acme;
server {
    listen $http;
    listen $https tls;
    server_name s.test;
    acme on;
    return 200 "ok\\n";
}
C
};

mkdir "$parent/acme", 0700 or die;
open(my $lock, '>', "$parent/acme/lock") or die;
flock($lock, LOCK_EX) or die;
my $a = tg_start($conf->($p80, $p443), wait_port => 0);
ok($a->wait_log(qr/acme: s\.test: another gateway holds \S+\/lock, waiting/, 15),
   'gateway A finds the storage locked and waits');
sleep 2;
unlike($a->error_log, qr/requesting a certificate/, 'and orders nothing while it is');
close $lock;
ok($a->wait_log(qr/acme: s\.test: requesting a certificate/, 10), 'lock released: A orders');
ok($a->wait_log(qr/acme: s\.test: certificate issued/, 30), 'A got the certificate');
my $b = tg_start($conf->($q80, $q443), wait_port => 0);
ok($b->wait_log(qr/acme: s\.test: using the stored certificate/, 15), 'B takes it from the storage');
ok($b->wait_log(qr/acme: certificate for s\.test installed/, 5), 'and installs it');
sleep 1;
unlike($b->error_log, qr/requesting a certificate/, 'B never ordered');
my $orders = () = $ca->log =~ /There are now \d+ orders/g;
is($orders, 1, 'pebble got one order');

my $root = $ca->issuer_root;
my $ra = curl_https($p443, '/', host => 's.test', cacert => $root);
my $rb = curl_https($q443, '/', host => 's.test', cacert => $root);
is($ra->{status}, 200, 'A serves it, trusted') or diag $ra->{raw};
is($rb->{status}, 200, 'B serves it, trusted') or diag $rb->{raw};
my $serial = sub($port) {
    my $out = s_client($port, servername => 's.test');
    my ($pem) = $out =~ /(-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----)/s;
    my ($s) = run_cmd($pem // '', 'openssl', 'x509', '-noout', '-serial');
    return $s;
};
my $sa = $serial->($p443);
like($sa, qr/serial=/, 'A\'s serial');
is($serial->($q443), $sa, 'the same certificate on both');
$b->stop;
$a->stop;
done_testing;
