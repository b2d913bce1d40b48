# ACME over tls-alpn-01 (RFC 8737; docs/acme.md): the gateway has no plain
# HTTP listener at all; pebble validates by a TLS handshake offering ALPN
# acme-tls/1 on the gateway's TLS port, which gets the challenge
# certificate; the issued certificate is then served. A client offering
# acme-tls/1 for a name without a challenge is refused.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::Pebble;

plan skip_all => 'pebble not installed' unless grep { -x "$_/pebble" } split /:/, $ENV{PATH};

like(tg_conf_error("acme_challenge dns-01;\nserver { listen 8080; }"),
     qr/^\S+:1: invalid value "dns-01" in "acme_challenge", expected http-01 or tls-alpn-01/m,
     'bad challenge type');

my $p443 = free_port();
my $ca = Tollgate::Pebble->start(http_port => free_port(), tls_port => $p443);
my $parent = tempdir('tg-acme-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
chmod 0755, $parent;
my $tg = tg_start(<<"C", wait_port => 0, errors_ok => [qr/no answer to the tls-alpn-01 challenge/]);
workers 2;
acme_directory $ca->{directory};
acme_ca_root $ca->{ca_root};
acme_storage $parent/acme;
acme_challenge tls-alpn-01;
server {
    listen $p443 tls;
    server_name t.test www.t.test;
    acme on;
    return 200 "ok\\n";
}
C
ok($tg->wait_log(qr/acme: tls-alpn-01 challenge for/, 20), 'the helper takes the tls-alpn-01 challenge')
    or diag $tg->error_log;
ok($tg->wait_log(qr/acme: answered the tls-alpn-01 challenge for (www\.)?t\.test/, 20),
   'a worker answered the validation handshake');
ok($tg->wait_log(qr/acme: t\.test www\.t\.test: certificate issued/, 30), 'issued')
    or diag $tg->error_log;
ok($tg->wait_log(qr/acme: certificate for t\.test www\.t\.test installed/, 5), 'installed');
unlike($tg->error_log, qr/http-01/, 'no http-01');
sleep 1.2;    # the second worker's one-second check
my $root = $ca->issuer_root;
for my $host ('t.test', 'www.t.test') {
    my $r = curl_https($p443, '/', host => $host, cacert => $root);
    is($r->{status}, 200, "$host: pebble's certificate, verified") or diag $r->{raw};
}
my $out = s_client($p443, servername => 'other.test', args => ['-alpn', 'acme-tls/1']);
unlike($out, qr/ALPN protocol: acme-tls\/1/, 'acme-tls/1 without a challenge for the name: refused');
ok($tg->wait_log(qr/no answer to the tls-alpn-01 challenge for other\.test/, 5), 'and logged');
$tg->stop;
done_testing;
