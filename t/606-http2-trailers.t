# Request trailers from HTTP/2 clients: forwarded to the HTTP/1.1 upstream
# after a chunked body (the last chunk carries them), less the fields a
# trailer must not carry (RFC 9110 6.5.1: Host, Authorization, Cookie...);
# dropped when the body went with a Content-Length (no place for them);
# past http2_max_header_size, not kept. Node's http2 client sends them
# (waitForTrailers), t/upstream/echo.js reports what it received.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use File::Temp qw(tempfile);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::H2;

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $up = node_upstream('echo');
my $tg = tg_start(<<"C");
workers 1;
http2_max_header_size 2k;
server {
    listen %%PORT%% http2;
    listen %%PORT2%% tls;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    location / { proxy_pass $up->{addr}; }
}
C

my ($fh, $client) = tempfile(SUFFIX => '.js', UNLINK => 1);
print $fh <<'JS';
// node CLIENT URL PATH [length]: POST "hello" in two writes, then trailers
'use strict';
const http2 = require('http2');
const [url, path, mode] = process.argv.slice(2);
const s = http2.connect(url, { rejectUnauthorized: false });
const headers = { ':method': 'POST', ':path': path, 'content-type': 'text/plain' };
if (mode === 'length') headers['content-length'] = '5';
const req = s.request(headers, { waitForTrailers: true });
req.on('wantTrailers', () => req.sendTrailers({
    'x-checksum': 'sha256:2cf24dba', 'x-count': '2', 'grpc-status': '0',
    authorization: 'Bearer smuggled', cookie: 'sid=smuggled', host: 'evil.test',
}));
let status = 0, body = '';
req.on('response', (h) => { status = h[':status']; });
req.on('data', (d) => { body += d; });
req.on('end', () => { console.log(JSON.stringify({ status, body })); process.exit(0); });
req.on('error', (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(0); });
setTimeout(() => { console.log(JSON.stringify({ error: 'timeout' })); process.exit(0); }, 10000);
req.write('hel');
setTimeout(() => req.end('lo'), 50);
JS
close $fh;

sub post($url, $path, @mode) {
    my $out = `cd @{[Tollgate::Test::repo_root()]}/t && timeout 20 node $client '$url' '$path' @mode 2>&1`;
    my $r = eval { decode_json((split /\n/, $out)[-1]) } // { error => "bad output: $out" };
    ok(!$r->{error}, "$path: the client got an answer") or diag $r->{error};
    is($r->{status}, 200, "$path: 200");
    return eval { decode_json($r->{body}) } // {};
}

for my $t (['h2c', 'http://127.0.0.1:' . $tg->port], ['TLS', 'https://127.0.0.1:' . $tg->port(2)]) {
    my ($name, $url) = @$t;
    my $e = post($url, "/chunked-$name");
    is($e->{body}, 'hello', "$name: the body went upstream");
    is($e->{headers}{'transfer-encoding'}, 'chunked', "$name: chunked (no content-length)");
    is_deeply($e->{trailers}, { 'x-checksum' => 'sha256:2cf24dba', 'x-count' => '2', 'grpc-status' => '0' },
              "$name: the trailers follow the last chunk, without Authorization, Cookie, Host")
        or diag explain $e->{trailers};
    ok(!exists $e->{headers}{'x-checksum'}, "$name: trailers are not made header fields");
}

my $e = post('http://127.0.0.1:' . $tg->port, '/length', 'length');
is("$e->{body} $e->{headers}{'content-length'}", 'hello 5', 'with content-length: Content-Length upstream');
is_deeply($e->{trailers}, {}, '... and the trailers have no place: dropped');

# past http2_max_header_size (2k, head and trailers together): not kept, the
# request goes on
$up->clear_log;
my $h = Tollgate::H2->connect($tg->port);
$h->headers(1, Tollgate::H2::request_fields('/big', method => 'POST'));
$h->data(1, 'abc');
$h->headers(1, ['x-small' => 'kept', 'x-big' => 'b' x 3000, 'x-after' => 'dropped'], end_stream => 1);
my @f = $h->read_frames(until => sub ($f) { $f->{type} == 0 && ($f->{flags} & 1) }, timeout => 5);
my ($hd) = grep { $_->{type} == 1 } @f;
is($hd && $hd->{status}, 200, 'trailers past the limit: the request is still answered');
($e) = grep { $_->{url} eq '/big' } $up->log->@*;
is($e && $e->{body}, 'abc', '... its body went upstream');
is_deeply($e && $e->{trailers}, { 'x-small' => 'kept' }, '... with the trailers that fit')
    or diag explain $e;
$h->close;

$tg->stop;
done_testing;
