# OCSP stapling of responses the gateway fetches itself, with `openssl ocsp`
# as the responder on loopback and a test CA made here (certificates with an
# Authority Information Access OCSP URL pointing at it): responder down at
# start (served, nothing stapled, stats say error, stapled after the retry),
# fetched and stapled (s_client -status), revoked (not stapled), a response
# signed by the wrong key (not stapled; stapled with tls_stapling_verify off),
# no AIA URL and tls_stapling off (stats "none"), the issuer found in
# tls_stapling_trusted, a reload keeping the responses, the responder down after a
# good fetch (the last good response kept) and past nextUpdate (dropped),
# the Prometheus series, config errors as file:line; and an ACME certificate
# from pebble (its AIA names our responder) stapled once issued.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $dir = tempdir('tg-ocsp-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
my ($rport, $rogue_port) = (free_port(), free_port());

sub ossl(@args) {
    my ($out, $rc) = run_cmd(undef, 'openssl', @args);
    die "openssl @args failed:\n$out" if $rc;
    return $out;
}
sub spew($file, $text) { open my $fh, '>', $file or die "$file: $!"; print $fh $text; close $fh }
sub slurp($file) { open my $fh, '<', $file or die "$file: $!"; local $/; return <$fh> }

# --- the test CA (openssl ca keeps the index the responder reads)
for my $ca ('ca', 'rogue') {
    ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/$ca.key", '-out',
         "$dir/$ca.pem", '-days', '2', '-subj', "/CN=Tollgate OCSP test $ca");
}
spew("$dir/ca.cnf", "[ca]\ndefault_ca = d\n[d]\ndatabase = $dir/index.txt\nserial = $dir/serial\n"
     . "new_certs_dir = $dir\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
     . "default_days = 2\n[p]\ncommonName = supplied\n");
spew("$dir/index.txt", '');
spew("$dir/serial", "1000\n");
my %cert;
for my $name ('a.test', 'r.test', 'w.test', 'v.test', 'n.test', 'off.test', 't.test') {
    ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/$name.key", '-out',
         "$dir/$name.csr", '-subj', "/CN=$name");
    my $aia = $name eq 'n.test' ? '' : "authorityInfoAccess=OCSP;URI:http://127.0.0.1:$rport/\n";
    spew("$dir/$name.ext", "subjectAltName=DNS:$name\n$aia");
    ossl('ca', '-batch', '-config', "$dir/ca.cnf", '-cert', "$dir/ca.pem", '-keyfile',
         "$dir/ca.key", '-in', "$dir/$name.csr", '-out', "$dir/$name.crt", '-extfile',
         "$dir/$name.ext", '-notext');
    spew("$dir/$name.pem", slurp("$dir/$name.crt") . slurp("$dir/ca.pem")); # with its issuer
    $cert{$name} = "$dir/$name.pem";
}
$cert{'t.test'} = "$dir/t.test.crt"; # without its issuer: found in tls_stapling_trusted
ossl('ca', '-config', "$dir/ca.cnf", '-cert', "$dir/ca.pem", '-keyfile', "$dir/ca.key",
     '-revoke', "$dir/r.test.crt");

# `openssl ocsp` responders: the CA's own (nextUpdate a minute ahead) and one
# signing with a key the CA never certified
my %resp;
sub responder($port, $signer) {
    $resp{$port} = Tollgate::Test::_spawn(
        ['openssl', 'ocsp', '-index', "$dir/index.txt", '-port', $port, '-rsigner',
         "$dir/$signer.pem", '-rkey', "$dir/$signer.key", '-CA', "$dir/ca.pem", '-nmin', '1',
         '-ignore_err'], "$dir/responder-$port.log");
    # its log, not a probe: a connection closed without a request wedges
    # `openssl ocsp` 3.0 (it serves one connection at a time)
    wait_until(sub { -e "$dir/responder-$port.log"
                     && slurp("$dir/responder-$port.log") =~ /waiting for OCSP client/ }, 10)
        or die "openssl ocsp did not start:\n" . slurp("$dir/responder-$port.log");
}
sub responder_stop($port) {
    Tollgate::Test::_kill_group($resp{$port}, 'TERM', 3);
    delete $resp{$port};
    unlink "$dir/responder-$port.log";
}

sub srv($name, $extra = '') {
    return "server {\n listen %%PORT%% tls;\n server_name $name;\n tls_certificate $cert{$name};\n"
         . " tls_certificate_key $dir/$name.key;\n$extra return 200 \"$name\\n\";\n}\n";
}
my $conf = "server {\n listen %%PORT%%;\n server_name stats;\n location = /__stats { stats; }\n"
    . "}\n"
    . srv('a.test') . srv('r.test')
    . srv('w.test', " tls_stapling_responder http://127.0.0.1:$rogue_port/;\n")
    . srv('v.test', " tls_stapling_responder http://127.0.0.1:$rogue_port/;\n"
                    . " tls_stapling_verify off;\n")
    . srv('n.test') . srv('off.test', " tls_stapling off;\n")
    . srv('t.test', " tls_stapling_trusted $dir/ca.pem;\n");
$conf =~ s/listen %%PORT%% tls;/listen %%PORT2%% tls;/g;

# --- config errors
like(tg_conf_error(srv('a.test', " tls_stapling_responder ftp://x/;\n")),
     qr/^\S+:6: invalid URL "ftp:\/\/x\/" in "tls_stapling_responder"/m, 'responder URL: file:line');
like(tg_conf_error(srv('a.test', " tls_stapling_trusted $dir/missing.pem;\n")),
     qr/^\S+:6: cannot load "tls_stapling_trusted" "\S+missing\.pem"/m, 'trusted file: file:line');
like(tg_conf_error(srv('a.test', " tls_stapling maybe;\n")), qr/^\S+:6: .*tls_stapling/m,
     'tls_stapling on|off');
like(tg_conf_test(srv('t.test'))->{output},
     qr/^\S+:1: warning: the certificate of "t\.test" is served without its issuer/m,
     'a certificate without its issuer: a warning at -t');

# --- responder down at start: served, nothing stapled, stats say error
responder($rogue_port, 'rogue');
my $tg = tg_start($conf, errors_ok => [qr/ocsp: /]);
my $status = sub ($name) {
    my $o = s_client($tg->port(2), servername => $name, args => ['-status'], input => '');
    return { stapled => $o =~ /OCSP Response Status: successful/ ? 1 : 0,
             good => $o =~ /Cert Status: good/ ? 1 : 0, out => $o,
             next => $o =~ /Next Update: ([^\n]+)/ ? $1 : '' };
};
my $stats = sub ($name) {
    my $s = eval { decode_json($tg->http(GET => '/__stats')->{body}) } // {};
    my ($c) = grep { $_->{server} eq $name } @{$s->{certificates} // []};
    return $c->{ocsp} // {};
};
ok(wait_until(sub { ($stats->('a.test')->{last_result} // '') eq 'failed' }, 15),
   'responder down: the fetch failed');
my $st = $status->('a.test');
is($st->{stapled}, 0, 'responder down: nothing stapled');
like($st->{out}, qr/Verify return code|CONNECTED/, 'responder down: the handshake is served');
my $o = $stats->('a.test');
is($o->{status}, 'error', 'stats: status error');
like($o->{last_error}, qr/127\.0\.0\.1:$rport/, "stats: last_error names the responder ($o->{last_error})");
ok($o->{next_fetch} > time - 1, 'stats: a retry is planned');

# --- responder up: stapled after the retry
responder($rport, 'ca');
ok(wait_until(sub { $status->('a.test')->{stapled} }, 30), 'responder up: stapled after the retry');
$st = $status->('a.test');
ok($st->{good}, 'Cert Status: good') or diag $st->{out};
$o = $stats->('a.test');
is($o->{status}, 'good', 'stats: good');
is($o->{last_result}, 'ok', 'stats: last fetch ok');
ok($o->{stapled}, 'stats: stapled');
ok($o->{this_update} <= time + 300 && $o->{next_update} > time
   && $o->{next_update} - $o->{this_update} <= 61, 'stats: this/next update of a one-minute response');
ok($o->{next_fetch} >= $o->{this_update} + 25 && $o->{next_fetch} <= $o->{next_update},
   'stats: refresh planned at half the validity');

# --- revoked: not stapled, logged loudly
ok(wait_until(sub { ($stats->('r.test')->{status} // '') eq 'revoked' }, 15), 'revoked: stats say revoked');
is($status->('r.test')->{stapled}, 0, 'revoked: nothing stapled');
ok($tg->wait_log(qr/r\.test: the responder says the certificate is REVOKED/, 5), 'revoked: logged');

# --- signed by a key the CA never certified: not stapled; with verify off: stapled
ok(wait_until(sub { ($stats->('w.test')->{last_error} // '') =~ /does not verify/ }, 15),
   'wrong signer: the response does not verify') or diag explain $stats->('w.test');
is($stats->('w.test')->{status}, 'error', 'wrong signer: status error');
is($status->('w.test')->{stapled}, 0, 'wrong signer: nothing stapled');
ok(wait_until(sub { $status->('v.test')->{stapled} }, 15), 'tls_stapling_verify off: stapled');

ok(wait_until(sub { $status->('t.test')->{good} }, 15),
   'the issuer from tls_stapling_trusted: stapled (good)');

# --- a reload keeps the responses still valid: stapled at once, not fetched again
my $fetches = () = $tg->error_log =~ /ocsp: a\.test: good response stapled/g;
my $off = $tg->reload($conf);
ok($tg->wait_log(qr/reloaded: generation 2/, 10, $off), 'reloaded');
ok($status->('a.test')->{good}, 'after the reload: stapled at once');
is(scalar(() = $tg->error_log =~ /ocsp: a\.test: good response stapled/g), $fetches,
   'after the reload: not fetched again');

# --- nothing to fetch: no AIA URL, tls_stapling off
is($stats->('n.test')->{status}, 'none', 'no OCSP URL: status none');
is($status->('n.test')->{stapled}, 0, 'no OCSP URL: nothing stapled');
is($stats->('off.test')->{status}, 'none', 'tls_stapling off: status none');
is($status->('off.test')->{stapled}, 0, 'tls_stapling off: nothing stapled');

# --- Prometheus
my $prom = $tg->http(GET => '/__stats?format=prometheus')->{body} // '';
like($prom, qr/^tollgate_tls_ocsp_status\{server="a\.test",names="a\.test",status="good"\} 1$/m,
     'prometheus: status good');
like($prom, qr/^tollgate_tls_ocsp_status\{server="r\.test",names="r\.test",status="revoked"\} 1$/m,
     'prometheus: status revoked');
like($prom, qr/^tollgate_tls_ocsp_next_update_seconds\{server="a\.test",names="a\.test"\} \d+$/m,
     'prometheus: seconds to nextUpdate');

# --- the dashboard's certificates table
SKIP: {
    skip 'chromium is not installed', 1 unless -x '/usr/bin/chromium';
    my ($html) = run_cmd(undef, 'timeout', '60', '/usr/bin/chromium', '--headless', '--no-sandbox',
        '--disable-gpu', '--user-data-dir=' . $tg->dir . '/chromium', '--virtual-time-budget=3000',
        '--dump-dom', 'http://127.0.0.1:' . $tg->port . '/__stats?format=html');
    like($html, qr/<tr data-cert="a\.test">.*?<td[^>]*data-col="ocsp"[^>]*>good</s,
         'dashboard: a.test OCSP good');
}

# --- responder down after a good fetch: the last good response kept, then
# dropped at its nextUpdate
responder_stop($rport);
my $next = $stats->('a.test')->{next_update};
ok(wait_until(sub { ($stats->('a.test')->{last_result} // '') eq 'failed' || time > $next }, 45),
   'responder down: the refresh failed');
SKIP: {
    skip 'the refresh came after nextUpdate (slow machine)', 3 if time >= $next - 1;
    $o = $stats->('a.test');
    is($o->{status}, 'good', 'responder down: the last good response kept (stats)');
    ok($status->('a.test')->{stapled}, 'responder down: still stapled');
    ok($tg->wait_log(qr/a\.test: .*the last good response is kept/, 5), 'responder down: logged');
}
ok(wait_until(sub { time > $next + 1 && !$status->('a.test')->{stapled} }, $next - time + 15),
   'past nextUpdate: the stale response is no longer stapled');
ok(wait_until(sub { ($stats->('a.test')->{status} // '') eq 'error' }, 5), 'past nextUpdate: stats say error');
ok($tg->wait_log(qr/a\.test: the response expired/, 5), 'past nextUpdate: logged');

$tg->stop;
responder_stop($rogue_port);

# --- an ACME certificate: pebble names our responder in its certificates'
# AIA; the responder signs with pebble's intermediate and knows the serial
SKIP: {
    skip 'pebble not installed', 6 unless grep { -x "$_/pebble" } split /:/, $ENV{PATH};
    require Tollgate::Pebble;
    my ($p80, $p443, $aport) = (free_port(), free_port(), free_port());
    my $ca = Tollgate::Pebble->start(http_port => $p80, tls_port => $p443,
                                     ocsp_url => "http://127.0.0.1:$aport/");
    my $storage = tempdir('tg-ocsp-acme-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
    chmod 0755, $storage;
    $tg = tg_start("acme_directory $ca->{directory};\nacme_ca_root $ca->{ca_root};\n"
                   . "acme_storage $storage/acme;\n"
                   . "server {\n listen $p80;\n listen $p443 tls;\n server_name acme.test;\n"
                   . " acme on;\n return 200 ok;\n}\n"
                   . "server {\n listen %%PORT%%;\n location = /__stats { stats; }\n}\n",
                   errors_ok => [qr/ocsp: /]);
    my $acme_ocsp = sub {
        my $s = eval { decode_json($tg->http(GET => '/__stats')->{body}) } // {};
        my ($c) = grep { $_->{server} eq 'acme.test' } @{$s->{certificates} // []};
        return $c && !$c->{placeholder} ? $c->{ocsp} : undef;
    };
    ok(wait_until(sub { my $o = $acme_ocsp->(); $o && ($o->{last_result} // '') eq 'failed' }, 90),
       'ACME: once issued, the OCSP helper asks the responder its AIA names (down yet)');
    for my $what ('intermediates', 'intermediate-keys') {
        my ($pem, $rc) = run_cmd(undef, 'curl', '-sS', '--max-time', '10', '--cacert',
                                 $ca->{ca_root}, "https://127.0.0.1:$ca->{mport}/$what/0");
        die "pebble $what: $pem" if $rc;
        spew("$dir/pebble-$what.pem", $pem);
    }
    my $leaf = ossl('s_client', '-connect', "127.0.0.1:$p443", '-servername', 'acme.test');
    my ($pem) = $leaf =~ /(-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----)/s;
    spew("$dir/acme-leaf.pem", "$pem\n");
    my ($serial) = ossl('x509', '-in', "$dir/acme-leaf.pem", '-noout', '-serial') =~ /serial=(\w+)/;
    $serial =~ s/^(?:00)+(?=..)//;
    spew("$dir/index.txt", "V\t491231235959Z\t\t$serial\tunknown\t/CN=acme.test\n");
    $resp{$aport} = Tollgate::Test::_spawn(
        ['openssl', 'ocsp', '-index', "$dir/index.txt", '-port', $aport, '-rsigner',
         "$dir/pebble-intermediates.pem", '-rkey', "$dir/pebble-intermediate-keys.pem", '-CA',
         "$dir/pebble-intermediates.pem", '-nmin', '5', '-ignore_err'], "$dir/responder-$aport.log");
    my $got = '';
    ok(wait_until(sub {
        $got = s_client($p443, servername => 'acme.test', args => ['-status'], input => '');
        $got =~ /Cert Status: good/ }, 60), 'ACME: the certificate\'s response is stapled (good)')
        or diag $got;
    my $o = $acme_ocsp->();
    is($o->{status}, 'good', 'ACME: stats say good');
    ok($o->{stapled} && $o->{next_update} > time, 'ACME: stapled until its nextUpdate');
    like($tg->error_log, qr/ocsp: acme\.test: good response stapled/, 'ACME: logged');
    $tg->stop;
    responder_stop($aport);
    $ca->stop;
}
done_testing;
