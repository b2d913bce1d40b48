# TLS configuration: every error as file:line, the expired-certificate
# warning, tls_protocols/tls_ciphers, reload with new certificates (a request
# in flight on the old TLS connection finishes, new connections get the new
# certificate, a bad certificate keeps the old config), client certificates
# (tls_verify_client on/optional with the TLS variables forwarded) and
# WebSocket over TLS.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $pki = make_pki();
my ($a, $aec) = ($pki->{'a.test'}, $pki->{'a.test-ec'});
my $dir = $pki->{dir};

sub srv($body) { return "server {\n listen %%PORT%% tls;\n server_name a.test;\n$body\n}\n" }
my $pair = " tls_certificate $a->{cert};\n tls_certificate_key $a->{key};";

# --- config errors, each as file:line
open my $fh, '>', "$dir/garbage.key" or die;
print $fh "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
close $fh;
my @errors = (
    [srv(" tls_certificate $dir/missing.pem;\n tls_certificate_key $a->{key};"),
     qr/^\S+:4: cannot open certificate "\Q$dir\E\/missing\.pem": No such file/m, 'missing certificate'],
    [srv(" tls_certificate $a->{cert};\n tls_certificate_key $dir/missing.key;"),
     qr/^\S+:5: cannot open certificate key "\Q$dir\E\/missing\.key"/m, 'missing key'],
    [srv(" tls_certificate $a->{cert};\n tls_certificate_key $dir/garbage.key;"),
     qr/^\S+:4: cannot read key "\Q$dir\E\/garbage\.key"/m, 'unreadable key'],
    [srv(" tls_certificate $a->{cert};\n tls_certificate_key $pki->{default}{key};"),
     qr/^\S+:4: key "\S+default\.key" does not match certificate "\S+a\.pem"/m, 'key of another certificate'],
    [srv(" tls_certificate $a->{cert};"),
     qr/^\S+:4: certificate "\S+a\.pem" has no "tls_certificate_key"/m, 'certificate without key'],
    [srv(" tls_certificate_key $a->{key};"),
     qr/^\S+:4: "tls_certificate_key" must follow a "tls_certificate"/m, 'key without certificate'],
    [srv(" return 200;"),
     qr/^\S+:1: server listens with "tls" but has no "tls_certificate"/m, 'tls listener without certificate'],
    [srv("$pair\n tls_protocols TLSv1.1 TLSv1.2;"),
     qr/^\S+:6: unsupported protocol "TLSv1.1" in "tls_protocols"/m, 'old protocol refused'],
    [srv("$pair\n tls_ciphers NOPE-CIPHER;"),
     qr/^\S+:6: invalid value "NOPE-CIPHER" in "tls_ciphers"/m, 'unknown cipher list'],
    [srv("$pair\n tls_groups nope;"),
     qr/^\S+:6: invalid value "nope" in "tls_groups"/m, 'unknown group'],
    [srv("$pair\n tls_verify_client on;"),
     qr/^\S+:1: "tls_verify_client" needs "tls_client_ca"/m, 'verify without a CA'],
    [srv("$pair\n tls_verify_client maybe;"),
     qr/^\S+:6: invalid value "maybe" in "tls_verify_client"/m, 'verify value'],
    ["tls_ticket_rotate 10s;\n" . srv($pair),
     qr/^\S+:1: "tls_ticket_rotate" must be at least 1m/m, 'rotation period floor'],
);
for my $e (@errors) {
    my $t = tg_conf_test($e->[0]);
    isnt($t->{exit}, 0, "$e->[2]: refused");
    like($t->{output}, $e->[1], "$e->[2]: message") or diag $t->{output};
}
my $t = tg_conf_test(srv(" tls_certificate $pki->{'old.test'}{cert};\n"
                         . " tls_certificate_key $pki->{'old.test'}{key};"));
is($t->{exit}, 0, 'expired certificate: config accepted');
like($t->{output}, qr/^\S+:4: warning: certificate "\S+old\.pem" has expired/m, 'with a warning');

# --- tls_protocols / tls_ciphers / tls_groups change the defaults
my $tg = tg_start(srv("$pair\n tls_protocols TLSv1.2;\n tls_ciphers ECDHE-RSA-AES256-GCM-SHA384;\n"
                      . " tls_groups P-384;\n return 200 ok;"));
unlike(s_client($tg->port, servername => 'a.test', args => ['-tls1_3']), qr/New, TLSv1/,
       'tls_protocols TLSv1.2: TLS 1.3 refused');
my $out = s_client($tg->port, servername => 'a.test');
like($out, qr/New, TLSv1\.2, Cipher is ECDHE-RSA-AES256-GCM-SHA384/, 'tls_ciphers applies');
like($out, qr/Server Temp Key: ECDH, (P-384|secp384r1)/, 'tls_groups applies');
$tg->stop;

# --- reload: new certificates for new connections; a request in flight on
# an old TLS connection finishes; a bad certificate keeps the running config
my $up = node_upstream('echo');
my $conf = sub ($p) {
    "workers 2;\n" . srv(" tls_certificate $p->{cert};\n tls_certificate_key $p->{key};\n"
                         . " location / { proxy_pass $up->{addr}; }");
};
$tg = tg_start($conf->($a), errors_ok => [qr/does not match certificate/, qr/reload failed/]);
like(s_client($tg->port, servername => 'a.test'), qr/Server public key is 2048 bit/, 'RSA before');
my $node = $ENV{TG_NODE} // 'node';
open(my $client, '-|', $node, 't/lib/tls-client.js', 'hold', $tg->port, $pki->{ca}) or die;
ok(wait_until(sub { ($up->http(GET => '/__log')->{body} // '') =~ m{/delay/1500} }, 10),
   'slow request in flight');
my $off = $tg->reload($conf->($aec));
ok($tg->wait_log(qr/reloaded: generation 2/, 5, $off), 'reloaded');
like(s_client($tg->port, servername => 'a.test'), qr/Server public key is 256 bit/,
     'new connections get the new (ECDSA) certificate');
my $res = eval { decode_json(scalar <$client>) } // {};
close $client;
is($res->{st1}, 200, 'the request in flight over the old TLS connection finished');
# the old worker ends that connection after the response (Connection: close,
# as for plain HTTP), so the client's next request goes to a new worker
is($res->{st2}, 200, 'the next keep-alive request succeeds') or diag explain $res;
ok(!$res->{error}, 'no client-side error');
$off = $tg->reload($conf->({cert => $a->{cert}, key => $pki->{default}{key}}));
ok($tg->wait_log(qr/does not match certificate/, 5, $off), 'bad certificate on reload logged');
ok($tg->wait_log(qr/reload failed, the running configuration is kept/, 5, $off), 'reload refused');
like(s_client($tg->port, servername => 'a.test'), qr/Server public key is 256 bit/,
     'still serving the last good certificate');
$tg->stop;

# --- client certificates
my $ca = $pki->{ca};
$tg = tg_start(<<"C");
server {
    listen %%PORT%% tls;
    server_name a.test;
    $pair
    tls_client_ca $ca;
    tls_verify_client on;
    location / {
        proxy_pass $up->{addr};
        proxy_set_header X-Verify \$tls_client_verify;
        proxy_set_header X-DN \$tls_client_s_dn;
        proxy_set_header X-FP \$tls_client_fingerprint;
    }
}
server {
    listen %%PORT2%% tls;
    server_name a.test;
    $pair
    tls_client_ca $ca;
    tls_verify_client optional;
    location / { return 200 "verify=\$tls_client_verify dn=\$tls_client_s_dn\\n"; }
}
C
my @cc = ('--cert', $pki->{client}{cert}, '--key', $pki->{client}{key});
my $r = curl_https($tg->port, '/m', cacert => $ca, args => \@cc);
is($r->{status}, 200, 'mTLS: client certificate accepted');
my $d = eval { decode_json($r->{body}) } // {};
is($d->{headers}{'x-verify'}, 'SUCCESS', '$tls_client_verify');
is($d->{headers}{'x-dn'}, 'CN=client one', '$tls_client_s_dn');
my ($fp) = run_cmd(undef, 'openssl', 'x509', '-in', $pki->{client}{cert}, '-noout', '-fingerprint',
                   '-sha256');
$fp =~ s/^.*=//s; $fp =~ s/[:\s]//g;
is($d->{headers}{'x-fp'}, lc $fp, '$tls_client_fingerprint (sha256 hex)');
$r = curl_https($tg->port, '/m', cacert => $ca);
isnt($r->{rc}, 0, 'verify on: no client certificate refused');
$r = curl_https($tg->port, '/m', cacert => $ca,
                args => ['--cert', $pki->{rogue}{cert}, '--key', $pki->{rogue}{key}]);
isnt($r->{rc}, 0, 'verify on: certificate from another CA refused');
$r = curl_https($tg->port(2), '/', cacert => $ca);
is($r->{body}, "verify=NONE dn=\n", 'optional: no certificate is fine');
$r = curl_https($tg->port(2), '/', cacert => $ca, args => \@cc);
is($r->{body}, "verify=SUCCESS dn=CN=client one\n", 'optional: certificate verified');
like(s_client($tg->port, servername => 'a.test', args => ['-cert', $pki->{client}{cert}, '-key',
     $pki->{client}{key}]), qr/Acceptable client certificate CA names\s*\nCN\s*=\s*Tollgate test ca/,
     'the CA names are sent');
$tg->stop;

# --- OCSP stapling from a file, refreshed on reload
my $ocsp = sub ($days, $out) {
    open my $ix, '>', "$dir/ocsp-index.txt" or die; close $ix;
    run_cmd(undef, 'openssl', 'ocsp', '-issuer', $ca, '-cert', $a->{cert}, '-no_nonce',
            '-reqout', "$dir/ocsp-req.der");
    my ($o, $rc) = run_cmd(undef, 'openssl', 'ocsp', '-index', "$dir/ocsp-index.txt", '-rsigner',
                           $ca, '-rkey', "$dir/ca.key", '-CA', $ca, '-reqin', "$dir/ocsp-req.der",
                           '-respout', $out, '-ndays', $days);
    die "openssl ocsp: $o" if $rc;
};
$ocsp->(1, "$dir/staple.der");
my $sconf = srv("$pair\n tls_stapling_file $dir/staple.der;\n return 200 ok;");
$tg = tg_start($sconf);
my $next = sub {
    my $o = s_client($tg->port, servername => 'a.test', args => ['-status']);
    return $o =~ /OCSP Response Status: successful/ && $o =~ /Next Update: ([^\n]+)/ ? $1 : 'none';
};
my $n1 = $next->();
isnt($n1, 'none', 'OCSP response stapled');
like(s_client($tg->port, servername => 'a.test'), qr/No OCSP response|^(?!.*OCSP Response Status)/s,
     'not sent to a client that does not ask');
$ocsp->(5, "$dir/staple.der");
$off = $tg->reload($sconf);
ok($tg->wait_log(qr/reloaded: generation 2/, 5, $off), 'reloaded');
my $n2 = $next->();
ok($n2 ne 'none' && $n2 ne $n1, "reload staples the new response ($n2)");
$tg->stop;
open $fh, '>', "$dir/bad.der" or die; print $fh "garbage"; close $fh;
like(tg_conf_error(srv("$pair\n tls_stapling_file $dir/bad.der;")),
     qr/^\S+:6: "\S+bad\.der" is not a DER OCSP response/m, 'a bad OCSP file: file:line');
like(tg_conf_error(srv(" tls_stapling_file $dir/staple.der;")),
     qr/^\S+:4: "tls_stapling_file" must follow a "tls_certificate"/m, 'stapling before a certificate');

# --- WebSocket over TLS
my $ws = node_upstream('ws');
$tg = tg_start(srv("$pair\n location /ws { proxy_pass $ws->{addr}; }"));
open($client, '-|', $node, 't/lib/tls-client.js', 'ws', $tg->port, $pki->{ca}) or die;
$res = eval { decode_json(scalar <$client>) } // {};
close $client;
is_deeply($res->{got}, ['hello from ws', 'echo:ping', 'len:' . (5 + 300 * 1024)],
          'wss: greeting, echo, 300 KB echo through the TLS tunnel') or diag explain $res;

done_testing;
