# TLS termination: certificate choice by SNI (exact, wildcard, default; RSA
# and ECDSA pairs for one name), the protocol floor, ALPN, session
# resumption across workers by tickets, requests proxied over TLS ($scheme,
# X-Forwarded-Proto, TLS variables, bodies both ways, pipelining), plain HTTP
# to the TLS port, a stalled handshake, and redirect_https.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use IO::Socket::INET;
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT http_request);
use Tollgate::TLS;

my $pki = make_pki();
my $up = node_upstream('echo');
my ($a, $aec, $w, $d) = map { $pki->{$_} } 'a.test', 'a.test-ec', '*.wild.test', 'default';
my $tg = tg_start(<<"C");
workers 2;
server {
    listen %%PORT%% tls;
    listen %%PORT2%%;
    server_name a.test;
    redirect_https on;
    client_max_body_size 10m;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    tls_certificate $aec->{cert};
    tls_certificate_key $aec->{key};
    location / {
        proxy_pass $up->{addr};
        proxy_set_header X-TLS "\$tls_protocol \$tls_cipher \$scheme";
    }
}
server {
    listen %%PORT%% tls;
    server_name *.wild.test;
    tls_certificate $w->{cert};
    tls_certificate_key $w->{key};
    return 200 "wild \$scheme \$host\\n";
}
server {
    listen %%PORT%% tls default_server;
    server_name default;
    tls_certificate $d->{cert};
    tls_certificate_key $d->{key};
    timeouts header=1s;
    return 200 "default\\n";
}
server {
    listen %%PORT3%% tls proxy_protocol;
    server_name a.test;
    real_ip_from 127.0.0.1;
    real_ip_header proxy_protocol;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    return 200 "client \$remote_addr \$scheme\\n";
}
C
my $port = $tg->port;

sub subject($out) { return $out =~ /subject=CN\s*=\s*([^\n]+)/ ? $1 : 'none' }

# --- certificate choice by SNI
is(subject(s_client($port, servername => 'a.test')), 'a.test', 'SNI exact name');
is(subject(s_client($port, servername => 'x.wild.test')), '*.wild.test', 'SNI wildcard');
is(subject(s_client($port, servername => 'b.x.wild.test')), '*.wild.test', 'SNI wildcard, deeper');
is(subject(s_client($port, servername => 'A.TEST')), 'a.test', 'SNI is case-insensitive');
is(subject(s_client($port, servername => 'nope.test')), 'default', 'unknown SNI: default server');
is(subject(s_client($port, servername => undef)), 'default', 'no SNI: default server');

# both pairs for a.test: the client's signature algorithms pick one
like(s_client($port, servername => 'a.test', args => ['-sigalgs', 'ECDSA+SHA256']),
     qr/Server public key is 256 bit/, 'ECDSA client gets the P-256 certificate');
like(s_client($port, servername => 'a.test', args => ['-sigalgs', 'rsa_pss_rsae_sha256']),
     qr/Server public key is 2048 bit/, 'RSA client gets the RSA certificate');
like(s_client($port, servername => 'a.test', args => ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']),
     qr/Cipher is ECDHE-RSA-AES128-GCM-SHA256/, 'TLS 1.2 with an RSA suite');
like(s_client($port, servername => 'a.test', args => ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']),
     qr/Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/, 'TLS 1.2 with an ECDSA suite');

# --- protocol floor, ALPN
like(s_client($port, servername => 'a.test', args => ['-tls1_2']), qr/New, TLSv1\.2/, 'TLS 1.2 accepted');
like(s_client($port, servername => 'a.test', args => ['-tls1_3']), qr/New, TLSv1\.3/, 'TLS 1.3 accepted');
for my $old ('-tls1', '-tls1_1') {
    unlike(s_client($port, servername => 'a.test', args => [$old]), qr/New, TLSv1/,
           "$old refused");
}
unlike(s_client($port, servername => 'a.test', args => ['-tls1_2', '-cipher', 'AES128-SHA']),
       qr/New, TLSv1/, 'a cipher outside the default list refused');
like(s_client($port, servername => 'a.test', args => ['-alpn', 'http/1.1,h2']),
     qr/ALPN protocol: h2/, 'ALPN: h2 preferred (http2 on by default; t/600 has http2 off)');
like(s_client($port, servername => 'a.test', args => ['-alpn', 'http/1.1']),
     qr/ALPN protocol: http\/1\.1/, 'ALPN: http/1.1 alone');
like(s_client($port, servername => 'a.test', args => ['-alpn', 'spdy/3']),
     qr/no application protocol|alert/i, 'ALPN with neither: refused');

# --- resumption across 2 workers (tickets whose keys every worker derives)
my $req = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
for my $v ('-tls1_3', '-tls1_2') {
    my $sess = $tg->dir . "/sess$v.pem";
    like(s_client($port, servername => 'a.test', input => $req, args => [$v, '-sess_out', $sess]),
         qr/^New, TLSv1/m, "$v: first handshake is full");
    my @reused = grep { /^Reused, TLSv1/m } map {
        s_client($port, servername => 'a.test', input => $req, args => [$v, '-sess_in', $sess])
    } 1 .. 6;
    is(scalar @reused, 6, "$v: 6 reconnects all resumed, whichever worker took them");
}

# --- requests over TLS
my $r = curl_https($port, '/p?q=1', cacert => $pki->{ca});
is($r->{status}, 200, 'proxied over TLS');
my $desc = eval { decode_json($r->{body}) } // {};
is($desc->{url}, '/p?q=1', 'target forwarded');
is($desc->{headers}{'x-forwarded-proto'}, 'https', 'X-Forwarded-Proto https');
like($desc->{headers}{'x-tls'}, qr/^TLSv1\.3 TLS_\w+ https$/, '$tls_protocol $tls_cipher $scheme');
$r = curl_https($port, '/', host => 'x.wild.test', cacert => $pki->{ca});
is($r->{body}, "wild https x.wild.test\n", 'wildcard server answers; $scheme is https');

# a big response and a big request body
$r = curl_https($port, '/size/1000000', cacert => $pki->{ca}, args => ['-o', $tg->dir . '/big']);
is(-s $tg->dir . '/big', 1000000, '1 MB response over TLS');
my $bigfile = $tg->dir . '/upload';
open my $fh, '>', $bigfile or die;
print $fh body_pattern(2_000_000);
close $fh;
$r = curl_https($port, '/upload', cacert => $pki->{ca}, args => ['--data-binary', "\@$bigfile"]);
$desc = eval { decode_json($r->{body}) } // {};
is($desc->{bodyLength}, 2_000_000,
   '2 MB request body over TLS');

# pipelined requests in one TLS write: the second waits inside OpenSSL, not
# in the socket, and must still be served
my $two = "GET /one HTTP/1.1\r\nHost: a.test\r\n\r\nGET /two HTTP/1.1\r\nHost: a.test\r\n"
        . "Connection: close\r\n\r\n";
my $out = s_client($port, servername => 'a.test', input => $two);
like($out, qr/"url":"\/one".*"url":"\/two"/s, 'pipelined requests over TLS both answered');

# keep-alive: several requests on one connection (curl reuses it)
$r = curl_https($port, '/k1', cacert => $pki->{ca}, args => ['-v', "https://a.test:$port/k2"]);
like($r->{raw}, qr/Re-using existing connection/, 'keep-alive over TLS');

# --- plain HTTP to the TLS port: closed, logged at info
my $off = $tg->log_offset;
my ($bytes, $closed) = $tg->raw("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", timeout => 3);
ok($closed && $bytes eq '', 'plain HTTP to the TLS port: closed without an answer');
ok($tg->wait_log(qr/\[info\].*TLS handshake failed: http request/, 5, $off),
   'logged at info');

# --- a stalled handshake is closed after the header timeout (1 s here)
$off = $tg->log_offset;
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 3) or die;
syswrite($s, "\x16\x03\x01\x02\x00"); # a record header, then nothing
my $t0 = time;
$s->blocking(1);
my $n = sysread($s, my $buf, 100);
my $el = time - $t0;
ok(defined $n && $n == 0 && $el > 0.5 && $el < 5, sprintf('stalled handshake closed after %.1f s', $el));
ok($tg->wait_log(qr/TLS handshake timed out/, 5, $off), 'timeout logged');

# --- redirect_https on the plain listener of the same server
$r = http_request($tg->port(2), GET => '/x/y?z=1', headers => [Host => 'a.test']);
is($r->{status}, 301, 'redirect_https: 301');
is($r->{headers}{location}, "https://a.test:$port/x/y?z=1", 'to the TLS port, with the target');

# --- PROXY protocol header before the TLS handshake
open(my $pc, '-|', $ENV{TG_NODE} // 'node', 't/lib/tls-client.js', 'proxy', $tg->port(3),
     $pki->{ca}) or die;
my $pres = eval { decode_json(scalar <$pc>) } // {};
close $pc;
is($pres->{body}, "client 203.0.113.7 https\n", 'PROXY header, then TLS') or diag explain $pres;

done_testing;
