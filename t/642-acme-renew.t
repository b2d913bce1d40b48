# ACME renewal (docs/acme.md) with pebble issuing 60-second certificates:
# the CA goes down before renewal time (two thirds of the lifetime); the
# renewal fails, is retried with a growing delay, and the current
# certificate is served all along; the CA comes back, the next attempt
# renews, and the new certificate replaces the old one under a client loop
# that never fails.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::SSL;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::Pebble;

plan skip_all => 'pebble not installed' unless grep { -x "$_/pebble" } split /:/, $ENV{PATH};

my ($p80, $p443) = (free_port(), free_port());
my $ca = Tollgate::Pebble->start(http_port => $p80, tls_port => $p443, validity => 60);
my $parent = tempdir('tg-acme-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
chmod 0755, $parent;
my $tg = tg_start(<<"C", wait_port => 0, errors_ok => [qr/acme: r\.test: .*next attempt in/]);
workers 2;
acme_directory $ca->{directory};
acme_ca_root $ca->{ca_root};
acme_storage $parent/acme;
server {
    listen $p80;
    listen $p443 tls;
    server_name r.test;
    acme on;
    return 200 "ok\\n";
}
C

# the serial of the certificate a new handshake gets, and whether a request on it worked
sub probe() {
    my $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $p443, SSL_hostname => 'r.test',
                                 SSL_verify_mode => SSL_VERIFY_NONE, Timeout => 5) or return;
    my $serial = Net::SSLeay::P_ASN1_INTEGER_get_hex(
        Net::SSLeay::X509_get_serialNumber($s->peer_certificate));
    print $s "GET / HTTP/1.1\r\nHost: r.test\r\nConnection: close\r\n\r\n";
    my $resp = do { local $/; <$s> } // '';
    close $s;
    return ($serial, scalar($resp =~ m{^HTTP/1\.1 200 .*\r\n\r\nok\n\z}s));
}

ok($tg->wait_log(qr/acme: r\.test: certificate issued/, 30), 'first certificate issued');
ok($tg->wait_log(qr/acme: certificate for r\.test installed/, 5), 'installed');
my ($first, $ok);
wait_until(sub { ($first, $ok) = probe(); $ok && $tg->error_log =~ /(installed.*){2}/s }, 5);
ok($first, "serving it (serial $first)");

$ca->stop;
my $from = $tg->log_offset;
ok($tg->wait_log(qr/acme: r\.test: renewing a certificate/, 50, $from),
   'renewal starts at two thirds of the lifetime');
my $fail1 = $tg->wait_log(qr/acme: r\.test: .*the current certificate is kept, next attempt in 5s/,
                          15, $from);
ok($fail1, 'CA down: the renewal fails, the certificate is kept, retried in 5 s') or diag $tg->error_log;
my $fail2 = $tg->wait_log(qr/acme: r\.test: .*next attempt in 10s/, 15, $from);
ok($fail2, 'again after 5 s, then in 10 s (backoff)');
my ($during) = probe();
is($during, $first, 'the old certificate is still served while the CA is down');

$ca->start_again;
my ($n, $failed, %seen) = (0, 0);
my $deadline = time + 30;
while (time < $deadline) {
    my ($serial, $good) = probe();
    $n++;
    $failed++ unless $good;
    $seen{$serial}++ if $serial;
    last if $serial && $serial ne $first && $seen{$serial} >= 10;
    sleep 0.05;
}
my @new = grep { $_ ne $first } keys %seen;
is(scalar @new, 1, 'the CA back: renewed, the new certificate served');
is($failed, 0, "no failed request out of $n during the renewal");
ok($tg->wait_log(qr/acme: r\.test: certificate issued/, 5, $from), 'logged as issued');
unlike($tg->error_log, qr/reloading/, 'no reload');
$tg->stop;
done_testing;
