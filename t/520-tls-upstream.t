# TLS to upstreams: `tls on` in an upstream block, the server certificate
# verified against tls_trusted_ca and the host as written in `server`, SNI,
# keep-alive reuse and session resumption, verification failures (wrong CA,
# name mismatch) as 502s, tls_verify off, a client certificate for an
# upstream that requires one, WebSocket tunnels over TLS, config errors.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::WS;

my $pki = make_pki();
my $dir = $pki->{dir};
my $lh = Tollgate::TLS::_issue($dir, 'localhost', 'rsa', 'localhost', "$dir/ca");
my $ca = $pki->{ca};
my $rogue_ca = "$dir/rogue-ca.pem";
my $client = $pki->{client};

my $up = node_upstream('https-echo', env => { CERT => $lh->{cert}, KEY => $lh->{key} });
my $mtls = node_upstream('https-echo', env => { CERT => $lh->{cert}, KEY => $lh->{key},
                                                CLIENT_CA => $ca, NAME => 'mtls' });
my $hang = node_upstream('hang');
my ($p, $mp) = ($up->{port}, $mtls->{port});

my @errors_ok = (qr/TLS certificate verification failed/, qr/timed out in the TLS handshake with/);
my $tg = tg_start(<<"C", errors_ok => \@errors_ok);
upstream good { server localhost:$p; tls on; tls_trusted_ca $ca; }
upstream fresh { server localhost:$p; tls on; tls_trusted_ca $ca; keepalive 0; }
upstream wrongca { server localhost:$p; tls on; tls_trusted_ca $rogue_ca; }
upstream byip { server 127.0.0.1:$p; tls on; tls_trusted_ca $ca; }
upstream noverify { server 127.0.0.1:$p; tls on; tls_verify off; }
upstream mtls { server localhost:$mp; tls on; tls_trusted_ca $ca;
                tls_certificate $client->{cert}; tls_certificate_key $client->{key}; }
upstream nocert { server localhost:$mp; tls on; tls_trusted_ca $ca; }
upstream failover { server 127.0.0.1:$p; server localhost:$p; tls on; tls_trusted_ca $ca; }
upstream stall { server localhost:$hang->{port}; tls on; tls_trusted_ca $ca; }
server {
    listen %%PORT%%;
    location /good/ { proxy_pass good; }
    location /fresh/ { proxy_pass fresh; }
    location /wrongca/ { proxy_pass wrongca; }
    location /byip/ { proxy_pass byip; }
    location /noverify/ { proxy_pass noverify; }
    location /mtls/ { proxy_pass mtls; }
    location /nocert/ { proxy_pass nocert; }
    location /ws { proxy_pass good; }
    location /failover/ { proxy_pass failover; }
    location /stall/ { proxy_pass stall; proxy_timeouts connect=500ms; }
}
C

my $r = $tg->http(GET => '/good/a?x=1');
is($r->{status}, 200, 'tls on: 200 through a verified upstream');
my $j = decode_json($r->{body});
is($j->{url}, '/good/a?x=1', 'the request arrived');
is($j->{servername}, 'localhost', 'SNI is the host name of the server line');
my $c0 = $j->{connections};
my %ports;
for my $i (1 .. 8) {
    my $x = $tg->http(POST => "/good/$i", body => "body $i");
    is($x->{status}, 200, "keep-alive request $i") or next;
    my $d = decode_json($x->{body});
    is($d->{body}, "body $i", "body $i went through TLS") if $i == 1;
    $ports{$d->{remotePort}}++;
}
ok(keys %ports <= 2, 'pooled TLS connections reused (' . scalar(keys %ports) . ' used)');
my $c1 = decode_json($tg->http(GET => '/good/z')->{body})->{connections};
ok($c1 - $c0 <= 2, "few TLS connections for 10 requests ($c0 -> $c1)");

# keepalive 0: every request a new connection, resumed from the last session
my @fresh = map { decode_json($tg->http(GET => "/fresh/$_")->{body}) } 1 .. 3;
isnt($fresh[0]{remotePort}, $fresh[2]{remotePort}, 'keepalive 0: new connections');
ok(!$fresh[0]{reused} && $fresh[1]{reused} && $fresh[2]{reused},
   'TLS sessions resumed on new connections to the same server');

my $off = $tg->log_offset;
is($tg->http(GET => '/wrongca/x')->{status}, 502, 'wrong CA: 502');
ok($tg->wait_log(qr/\[error\].*upstream localhost:\d+: TLS certificate verification failed: /,
                 5, $off), 'verification failure logged at error with the reason');
is($tg->http(GET => '/byip/x')->{status}, 502, 'name mismatch (IP not in the certificate): 502');
ok($tg->wait_log(qr/127\.0\.0\.1:\d+: TLS certificate verification failed/, 5, $off),
   'mismatch logged');
is($tg->http(GET => '/noverify/x')->{status}, 200, 'tls_verify off: 200');

$r = $tg->http(GET => '/mtls/x');
is($r->{status}, 200, 'client certificate accepted by an upstream that requires one');
is(eval { decode_json($r->{body})->{client_cn} }, 'client one', 'the upstream saw our certificate');
is($tg->http(GET => '/nocert/x')->{status}, 502, 'no client certificate: 502');

for my $i (1 .. 3) {
    is($tg->http(GET => "/failover/$i")->{status}, 200,
       "a server failing verification is skipped for the next one ($i)");
}
$off = $tg->log_offset;
is($tg->http(GET => '/stall/x')->{status}, 502, 'a stalled handshake: 502 after the connect timeout');
ok($tg->wait_log(qr/timed out in the TLS handshake with upstream localhost/, 5, $off),
   'handshake timeout logged');

my $ws = Tollgate::WS->connect($tg->port, '/ws');
ok($ws && $ws->{status} == 101, 'WebSocket to a TLS upstream: 101');
if ($ws) {
    is(($ws->recv)[1], 'hello from https-echo', 'server-first message through TLS');
    $ws->send_text('ping');
    is(($ws->recv)[1], 'echo:ping', 'echo through TLS');
    my $big = 'y' x 200000;
    $ws->send_text($big);
    is(($ws->recv(10))[1], "echo:$big", 'a big message both ways');
    $ws->close;
}
$tg->stop;

# config errors
like(tg_conf_error("upstream u { server localhost:1; tls on; tls_trusted_ca /nonexistent/ca.pem; }\n"
                   . "server { listen %%PORT%%; proxy_pass u; }"),
     qr/:1: cannot open trusted CA "\/nonexistent\/ca.pem"/, 'missing CA file: file:line');
like(tg_conf_error("upstream u { server localhost:1; tls on;\n tls_certificate /nonexistent/c.pem;\n"
                   . " tls_certificate_key $client->{key}; }\nserver { listen %%PORT%%; proxy_pass u; }"),
     qr/:2: cannot open certificate/, 'missing client certificate: file:line');
like(tg_conf_error("upstream u { server localhost:1; tls on;\n tls_certificate $client->{cert};\n"
                   . " tls_certificate_key $lh->{key}; }\nserver { listen %%PORT%%; proxy_pass u; }"),
     qr/:2: key ".*" does not match certificate/, 'mismatched client key: file:line');
like(tg_conf_error("upstream u { server localhost:1; tls on; tls_verify maybe; }\n"
                   . "server { listen %%PORT%%; proxy_pass u; }"),
     qr/invalid value "maybe" in "tls_verify"/, 'tls_verify on|off');
like(tg_conf_error("upstream u { server localhost:1; tls_trusted_ca $ca; }\n"
                   . "server { listen %%PORT%%; proxy_pass u; }"),
     qr/TLS settings without "tls on"/, 'TLS settings need tls on');
ok(tg_conf_ok("upstream u { server localhost:1; tls on; }\nserver { listen %%PORT%%; proxy_pass u; }"),
   'tls on with the system store');

done_testing;
