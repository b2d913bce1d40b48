# ACME (docs/acme.md) against a real ACME server on loopback, pebble: the
# config checks at -t; first issuance over http-01 while a client loop keeps
# being served (placeholder first, then pebble's certificate, swapped into
# both workers without a reload, an open connection kept); the chain served
# verifies against pebble's root; the storage's permissions; a restart
# reuses the stored certificate without asking the CA.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::SSL;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::Pebble;

plan skip_all => 'pebble not installed' unless grep { -x "$_/pebble" } split /:/, $ENV{PATH};

# ---- config checks ----
my $base = "acme_directory https://127.0.0.1:1/dir;\n";
like(tg_conf_error($base . "server { listen 8443 tls; server_name *.a.test;\n acme on; }"),
     qr/^\S+:3: "acme on": server_name "\*\.a\.test" is a wildcard.*DNS challenge/m,
     'a wildcard name is refused with file:line');
like(tg_conf_error($base . "server { listen 8080; server_name a.test;\n acme on; }"),
     qr/^\S+:3: "acme on" in a server without "listen ... tls"/m, 'acme needs a tls listener');
like(tg_conf_error("acme_key_type dsa;\nserver { listen 8080; }"),
     qr/^\S+:1: invalid value "dsa" in "acme_key_type", expected ecdsa-p256 or rsa-2048/m,
     'bad key type');
like(tg_conf_error("acme_directory http://x/dir;\nserver { listen 8080; }"),
     qr/^\S+:1: "acme_directory" "http:\/\/x\/dir" must be an https:\/\/ URL/m, 'https only');
like(tg_conf_error("acme_email nobody;\nserver { listen 8080; }"),
     qr/^\S+:1: "acme_email" "nobody" is not an email address/m, 'bad email');
ok(tg_conf_ok($base . "server { listen 8443 tls; server_name a.test www.a.test; acme on; }"),
   'acme on without tls_certificate is a complete TLS server');

# ---- first issuance ----
my ($p80, $p443) = (free_port(), free_port());
my $ca = Tollgate::Pebble->start(http_port => $p80, tls_port => $p443);
my $store_parent = tempdir('tg-acme-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
chmod 0755, $store_parent;    # the workers' user walks into the storage below it
my $storage = "$store_parent/acme";
my $pki = make_pki();
my $conf = <<"C";
workers 2;
acme_directory $ca->{directory};
acme_ca_root $ca->{ca_root};
acme_storage $storage;
acme_email ops\@example.com;
server {
    listen $p80;
    listen $p443 tls;
    server_name a.test www.a.test;
    acme on;
    return 200 "hi \$scheme\\n";
}
server {
    listen $p443 tls;
    server_name b.test;
    tls_certificate $pki->{'a.test'}{cert};
    tls_certificate_key $pki->{'a.test'}{key};
    return 200 "b\\n";
}
server {
    listen %%PORT%%;
    location = /__stats { stats; }
}
C

sub tls_conn() {
    return IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $p443, SSL_hostname => 'a.test',
                                SSL_verify_mode => SSL_VERIFY_NONE, Timeout => 5);
}

# one request on $s: the status line's code, or undef
sub get($s, $close = 1) {
    print $s "GET / HTTP/1.1\r\nHost: a.test\r\n" . ($close ? "Connection: close\r\n" : '') . "\r\n";
    my $head = '';
    while (defined(my $line = <$s>)) {
        $head .= $line;
        last if $line eq "\r\n";
    }
    my $body;
    read($s, $body, 9) if $head =~ /Content-Length: 9/i;
    return $head =~ m{^HTTP/1\.1 (\d+)} && ($body // '') eq "hi https\n" ? $1 : undef;
}

sub issuer($s) { return $s->peer_certificate('issuer') }

my $tg = tg_start($conf, wait_port => 0);
wait_until(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p443", Timeout => 1) }, 10)
    or BAIL_OUT('gateway did not start');
my $held = tls_conn() or BAIL_OUT("no TLS connection: $SSL_ERROR");
like(issuer($held), qr/CN ?= ?a\.test/, 'before the CA answered: the self-signed placeholder');
is(get($held, 0), 200, 'and it serves');
is(Tollgate::Test::http_request($p80, GET => '/', host => 'a.test')->{status}, 200,
   'plain HTTP serves meanwhile');

# a client loop (new connection each time) until both workers installed pebble's certificate
my ($n, $failed, %issuers) = (0, 0);
my $deadline = time + 60;
while (time < $deadline) {
    my $s = tls_conn();
    $n++;
    if (!$s) { $failed++; next }
    $issuers{issuer($s) =~ /Pebble/ ? 'pebble' : 'placeholder'}++;
    $failed++ unless (get($s) // 0) == 200;
    close $s;
    my @installed = $tg->error_log =~ /acme: certificate for a\.test www\.a\.test installed/g;
    last if @installed >= 2 && $issuers{pebble} && $issuers{pebble} >= 20;
    sleep 0.02;
}
is($failed, 0, "no failed request out of $n while the certificate arrived");
ok($issuers{placeholder} && $issuers{pebble},
   "placeholder then pebble's certificate (placeholder $issuers{placeholder}, pebble "
   . ($issuers{pebble} // 0) . ')');
like($tg->error_log, qr/acme: answered the http-01 challenge/, 'a worker answered http-01');
is(get($held), 200, 'the connection opened before the swap still serves');
unlike($tg->error_log, qr/reloading/, 'no reload');

# the chain served verifies against pebble's root
my $root = $ca->issuer_root;
my $r = curl_https($p443, '/', host => 'a.test', cacert => $root);
is($r->{status}, 200, 'curl verifies a.test against pebble\'s root') or diag $r->{raw};
$r = curl_https($p443, '/', host => 'www.a.test', cacert => $root);
is($r->{status}, 200, 'and www.a.test (same certificate)') or diag $r->{raw};

# stats: the served certificates, ACME and file, and the Prometheus gauge
use JSON::PP qw(decode_json);
my $stats = decode_json($tg->http(GET => '/__stats')->{body});
my ($acme) = grep { $_->{source} eq 'acme' } @{$stats->{certificates}};
my ($file) = grep { $_->{source} eq 'file' } @{$stats->{certificates}};
is($acme->{names}, 'a.test www.a.test', 'stats: the ACME certificate\'s names');
ok(!$acme->{placeholder} && $acme->{last_result} eq 'ok' && $acme->{last_attempt} > time - 120,
   'stats: not the placeholder, last attempt ok, recent');
ok($acme->{expiry_seconds} > 86400 && $acme->{not_after} > time + 86400, 'stats: its expiry');
ok($acme->{next_attempt} > time, 'stats: the renewal is planned');
is($file->{names}, 'a.test', 'stats: the tls_certificate file too');
my $prom = $tg->http(GET => '/__stats?format=prometheus')->{body};
like($prom, qr/^tollgate_tls_certificate_expiry_seconds\{server="a\.test",names="a\.test www\.a\.test",source="acme"\} \d+$/m,
     'Prometheus: tollgate_tls_certificate_expiry_seconds for the ACME certificate');
like($prom, qr/^tollgate_tls_certificate_expiry_seconds\{server="b\.test",names="a\.test",source="file"\} \d+$/m,
     'and for the file');
like($prom, qr/^tollgate_acme_last_result\{names="a\.test www\.a\.test",result="ok"\} 1$/m,
     'tollgate_acme_last_result');
my ($n_help) = scalar(() = $prom =~ /^# TYPE tollgate_tls_certificate_expiry_seconds gauge$/mg);
is($n_help, 1, 'one TYPE line');
SKIP: {
    skip 'promtool is not installed', 1 unless -x '/usr/bin/promtool';
    my ($out, $rc) = run_cmd($prom, 'promtool', 'check', 'metrics');
    is($rc, 0, 'promtool accepts the exposition') or diag $out;
}

# storage
my @st = stat($storage);
my $nobody = getpwnam('nobody');
is($st[2] & 07777, 0700, 'storage directory 0700');
is($st[4], $nobody, 'owned by the workers\' user');
for my $f ('account.key', 'a.test.key', 'a.test.crt') {
    my @f = stat("$storage/$f");
    ok(@f && ($f[2] & 07777) == 0600 && $f[4] == $nobody, "$f: 0600, the workers' user's");
}
my $crt = Tollgate::Test::_slurp("$storage/a.test.crt");
$tg->stop;

# ---- restart: the stored certificate, no CA ----
my $orders = () = $ca->log =~ /There are now \d+ orders/g;
$tg = tg_start($conf, wait_port => 0);
wait_until(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p443", Timeout => 1) }, 10);
my $s = tls_conn();
like($s ? issuer($s) : '', qr/Pebble/, 'after a restart the first handshake gets the stored certificate');
ok($tg->wait_log(qr/acme: a\.test www\.a\.test: using the stored certificate/, 10),
   'the helper uses the stored certificate');
sleep 1;
unlike($tg->error_log, qr/requesting a certificate/, 'and asks the CA for nothing');
my $orders2 = () = $ca->log =~ /There are now \d+ orders/g;
is($orders2, $orders, 'pebble got no new order');
is(Tollgate::Test::_slurp("$storage/a.test.crt"), $crt, 'storage unchanged');

# ---- reload: a new helper, the certificate kept, no order ----
my $off = $tg->signal('HUP');
ok($tg->wait_log(qr/reloaded: generation 2/, 10, $off), 'reloaded');
ok($tg->wait_log(qr/acme: helper process \d+ started/, 10, $off), 'a new ACME helper');
ok($tg->wait_log(qr/acme: a\.test www\.a\.test: using the stored certificate/, 10, $off),
   'which takes the stored certificate');
$s = tls_conn();
like($s ? issuer($s) : '', qr/Pebble/, 'the new workers serve it from the first handshake');
is($s ? get($s) : undef, 200, 'and answer');
sleep 1;
my $orders3 = () = $ca->log =~ /There are now \d+ orders/g;
is($orders3, $orders, 'still no new order');
$tg->stop;

done_testing;
