# WebSocket over HTTP/2 (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL, an
# extended CONNECT (:protocol websocket) proxied to an HTTP/1.1 WebSocket
# upstream (t/upstream/ws.js) as GET + Upgrade with a fresh key, answered
# 200, then bytes both ways as DATA: text and binary echo, 1 MB messages
# byte-exact, several WebSockets on one connection, a client that does not
# read and an upstream that does not read (24 MB held back) without stalling
# a sibling stream, memory per idle stream, each way of closing, over h2c
# and TLS. A refused
# upgrade, deny, rate_limit and lua_access answer on the stream; a location
# without a tunnel never answers 2xx; plain CONNECT and unknown :protocol
# values are refused. The access log line, stats, the idle timeout and a
# reload with a WebSocket open. The client: t/upstream/h2ws-client.js (Node's
# http2 client) and, for what Node will not send, frames by hand.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::H2;

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $up = node_upstream('ws');
my $u = $up->{addr};
my $raw = node_upstream('raw');
my $up2 = node_upstream('ws');
# a small ASan quarantine, so the memory check means the same under ASan
my $asan = join(':', grep { length } $ENV{ASAN_OPTIONS} // '', 'quarantine_size_mb=4');
my %opt = (env => { ASAN_OPTIONS => $asan },
           errors_ok => [qr/wrong Sec-WebSocket-Accept/, qr/sent an invalid response/]);
my $tg = tg_start(<<"C", files => { 'access.lua' => <<'LUA' }, %opt);
workers 1;
http2_max_streams 256;
log_format ws "\$server_protocol \$request_method \$status \$upstream_status [\$request] \$upstream_addr";
rate_limit_zone wsrl key=\$remote_addr rate=1r/m burst=1 size=1m;
server {
    listen %%PORT%% http2;
    listen %%PORT2%% tls;
    server_name a.test localhost;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    access_log %%DIR%%/access.log ws;
    location / { proxy_pass $u; }
    location /denied/ { deny all; proxy_pass http://$u/; }
    location /limited/ { rate_limit wsrl; proxy_pass http://$u/; }
    location /lua/ { lua_access %%DIR%%/access.lua; proxy_pass http://$u/; }
    location = /local { return 200 "local\\n"; }
    location = /__stats { stats; }
    location /other/ { proxy_pass http://$up2->{addr}/; }
    location ~ ^/(bad|no)-accept\$ { proxy_pass $raw->{addr}; }
}
server {
    listen %%PORT3%% http2;
    websocket_idle_timeout 1s;
    location / { proxy_pass $u; }
}
C
if tg.req.arg("token") ~= "ok" then tg.exit(401, "no token\n") end
tg.req.set_header("X-Lua-Method", tg.req.method())
LUA
my ($h2c, $tls, $idle_port) = map { $tg->port($_) } 1 .. 3;
my $client = Tollgate::Test::repo_root() . '/t/upstream/h2ws-client.js';

sub run($url, @args) {
    my $quoted = join ' ', map { "'$_'" } $url, @args;
    my $out = `cd @{[Tollgate::Test::repo_root()]}/t && timeout 40 node $client $quoted 2>&1`;
    my $res = eval { decode_json((split /\n/, $out)[-1]) };
    $res //= { errors => ["bad output: $out"] };
    is_deeply($res->{errors}, [], "@args: the client saw no error") or diag explain $res;
    return $res;
}

sub access_lines($n) {
    my $log = '';
    wait_until(sub { $log = Tollgate::Test::_slurp($tg->dir . '/access.log'); ($log =~ tr/\n//) >= $n }, 5);
    return [split /\n/, $log];
}

# --- the mapping: what the upstream receives
my $r = run("http://127.0.0.1:$h2c", 'headers', '/ws?headers=1');
is($r->{status}, 200, 'extended CONNECT answered :status 200');
is($r->{hello}, 'hello from ws', 'the upstream\'s first message arrives');
my ($s1, $s2) = @{$r->{seen}};
is("$s1->{method} $s1->{url} $s1->{httpVersion}", 'GET /ws?headers=1 1.1',
   'upstream: GET of :path over HTTP/1.1');
is(lc $s1->{headers}{upgrade}, 'websocket', 'upstream: Upgrade: websocket');
is(lc $s1->{headers}{connection}, 'upgrade', 'upstream: Connection: upgrade');
like($s1->{headers}{'sec-websocket-key'}, qr{^[A-Za-z0-9+/]{22}==$}, 'upstream: a Sec-WebSocket-Key');
isnt($s1->{headers}{'sec-websocket-key'}, $s2->{headers}{'sec-websocket-key'}, '... fresh per stream');
is($s1->{headers}{'sec-websocket-version'}, '13', 'upstream: Sec-WebSocket-Version from the request');
is($s1->{headers}{'sec-websocket-protocol'}, 'chat', 'upstream: Sec-WebSocket-Protocol passed');
is($s1->{headers}{'sec-websocket-extensions'}, 'x-test; a=1', 'upstream: Sec-WebSocket-Extensions passed');
is($s1->{headers}{host}, "127.0.0.1:$h2c", 'upstream: Host from :authority');
is($s1->{headers}{'x-forwarded-proto'}, 'http', 'upstream: X-Forwarded-Proto');

# --- echo over h2c and TLS
for my $t (['h2c', "http://127.0.0.1:$h2c"], ['TLS', "https://127.0.0.1:$tls"]) {
    my ($name, $url) = @$t;
    $r = run($url, 'echo');
    ok($r->{settings}{enableConnectProtocol}, "$name: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1");
    is($r->{status}, 200, "$name: :status 200");
    is($r->{headers}{'sec-websocket-protocol'}, 'chat', "$name: the chosen subprotocol comes back");
    ok(!exists $r->{headers}{'sec-websocket-accept'}, "$name: no Sec-WebSocket-Accept (it answered our key)");
    ok(!exists $r->{headers}{upgrade} && !exists $r->{headers}{connection},
       "$name: no connection-specific fields");
    is($r->{hello}, 'hello from ws', "$name: server-first message");
    is($r->{echo}, 'echo:ping', "$name: text echo");
    ok($r->{binary}, "$name: binary echo byte-exact");
    ok($r->{big_binary}, "$name: 1 MB binary message both ways, byte-exact");
    ok($r->{big_text}, "$name: 1 MB text message both ways");
    is("$r->{close_op} $r->{close_code}", '8 1000', "$name: the closing handshake is answered");
    ok($r->{ended}, "$name: the upstream's close ends the stream (END_STREAM)");
}

# --- several WebSockets on one connection, and a slow reader
$r = run("http://127.0.0.1:$h2c", 'multi', 8);
is_deeply($r->{statuses}, [(200) x 8], '8 WebSockets on one connection');
is(scalar(grep { $_ } @{$r->{ok}}), 8, '... each gets its own 50 echoes, in order');
$r = run("http://127.0.0.1:$h2c", 'slow', '/other/ws');
cmp_ok($r->{a_buffered_paused}, '<', 1 << 20,
       "a paused stream gets no more than its window ($r->{a_buffered_paused} bytes of 4 MB)");
cmp_ok($r->{b_max_rtt_ms}, '<', 1000, "its sibling still echoes at once (max $r->{b_max_rtt_ms} ms)");
ok($r->{a_ok}, 'the paused stream then gets all 4 MB, byte-exact');
$r = run("http://127.0.0.1:$h2c", 'slow-upstream', '/other/ws');
cmp_ok($r->{b_max_rtt_ms}, '<', 1000,
       "an upstream that does not read stalls its own stream only (sibling max $r->{b_max_rtt_ms} ms)");
ok($r->{a_ok}, '... which then delivers all 24 MB, byte-exact') or diag explain $r;

# --- memory: an idle WebSocket stream holds no buffer
my ($worker) = $tg->worker_pids;
$r = run("http://127.0.0.1:$h2c", 'hold', 200, $worker);
is("$r->{open} $r->{echoed}", '200 200', '200 WebSockets open on one connection, each echoed once');
my $per = ($r->{rss_after_kb} - $r->{rss_before_kb}) * 1024 / 200;
my $bin = $ENV{TG_BIN} // Tollgate::Test::repo_root() . '/build/tollgate';
my $limit = `ldd '$bin' 2>/dev/null` =~ /libasan/ ? 32 : 16; # ASan: redzones, shadow memory
cmp_ok($per, '<', $limit * 1024,
       sprintf('worker RSS per idle WebSocket stream: %.0f bytes (< %d KB)', $per, $limit));

# --- closing
$r = run("http://127.0.0.1:$h2c", 'half-close');
ok($r->{ended}, "END_STREAM from the client: the upstream sees EOF, the stream ends ($r->{ms} ms)");
$r = run("http://127.0.0.1:$h2c", 'server-close');
ok($r->{terminate_ended}, 'the upstream drops its socket: END_STREAM');
is("$r->{bye_op} $r->{bye_code}", '8 1000', 'the upstream closes with a frame: passed on');
ok($r->{bye_ended}, '... then END_STREAM');
ok($r->{reset_closed} && !$r->{reset_ended}, 'the upstream resets its socket: RST_STREAM, no END_STREAM');
is($r->{reset_code}, 2, '... INTERNAL_ERROR');
my $n0 = @{access_lines(0)};
$r = run("http://127.0.0.1:$h2c", 'reset');
is($r->{hello}, 'hello from ws', 'reset: the WebSocket was open');
is($r->{again}, 'hello from ws', 'after RST_STREAM the connection serves another WebSocket');
my $lines = access_lines($n0 + 2);
ok((grep { m{\[CONNECT /ws\?reset=1 HTTP/2\.0\]} } @$lines), 'RST_STREAM ends the tunnel (its log line)');

# --- the access log line
like($lines->[0], qr{^HTTP/2\.0 GET 200 101 \[CONNECT /ws\?headers=1 HTTP/2\.0\] 127\.0\.0\.1:\d+$},
     'access log: HTTP/2.0, method GET, 200 to the client, 101 from the upstream, the request as sent')
    or diag $lines->[0];

# --- refused: answers on the stream, no tunnel
$r = run("http://127.0.0.1:$h2c", 'status', '/not-ws');
is($r->{status}, 400, 'the upstream refuses the upgrade: its status on the stream');
is($r->{body}, 'Bad Request', '... with its body');
ok($r->{ended}, '... and the stream ends');
for my $p ('/bad-accept', '/no-accept') {
    $r = run("http://127.0.0.1:$h2c", 'status', $p);
    is($r->{status}, 502, "$p: a 101 that does not answer our key is a 502");
}
$r = run("http://127.0.0.1:$h2c", 'status', '/denied/ws');
is($r->{status}, 403, 'deny: 403');
$r = run("http://127.0.0.1:$h2c", 'status', '/local');
is($r->{status}, 501, 'a location that answers 200 without a tunnel: 501, never 2xx');
$r = run("http://127.0.0.1:$h2c", 'status', '/lua/ws');
is("$r->{status} $r->{body}", "401 no token\n", 'lua_access refuses the WebSocket');
$r = run("http://127.0.0.1:$h2c", 'headers', '/lua/ws?token=ok&headers=1');
is($r->{status}, 200, 'lua_access lets it through');
is($r->{seen}[0]{headers}{'x-lua-method'}, 'GET', '... having seen the method GET')
    or diag explain $r->{seen};
my @st = map { run("http://127.0.0.1:$h2c", 'status', '/limited/not-ws')->{status} } 1 .. 4;
is($st[0], 400, 'rate_limit: the first goes upstream');
is($st[-1], 429, 'rate_limit: past the burst, 429 on the stream') or diag "@st";

# --- frames by hand: what Node's client will not send
my $h = Tollgate::H2->connect($h2c);
my @f = $h->read_frames(until => sub ($f) { $f->{type} == 4 && !($f->{flags} & 1) });
my %set = map { unpack('n', $_) => unpack('N', substr($_, 2)) } unpack('(a6)*', $f[-1]{payload} // '');
is($set{8}, 1, 'SETTINGS_ENABLE_CONNECT_PROTOCOL (0x8) = 1 in the server\'s SETTINGS');
sub answer($h, $id, $fields, %o) {
    $h->headers($id, $fields, end_stream => $o{end_stream} // 0);
    my @g = $h->read_frames(until => sub ($f) { $f->{stream} == $id && $f->{type} =~ /^[13]$/ });
    my ($x) = grep { $_->{stream} == $id && $_->{type} =~ /^[13]$/ } @g;
    return $x ? ($x->{type} == 1 ? $x->{status} : "RST $x->{code}") : 'none';
}
is(answer($h, 1, [':method' => 'CONNECT', ':authority' => 'example.test:443']), 405,
   'plain CONNECT (a TCP tunnel): 405');
is(answer($h, 3, [':method' => 'CONNECT', ':protocol' => 'connect-udp', ':scheme' => 'http',
                  ':path' => '/ws', ':authority' => 'localhost']), 501,
   'extended CONNECT with another :protocol: 501');
is(answer($h, 5, [':method' => 'GET', ':protocol' => 'websocket', ':scheme' => 'http',
                  ':path' => '/ws', ':authority' => 'localhost'], end_stream => 1), 'RST 1',
   ':protocol without CONNECT: malformed, RST_STREAM PROTOCOL_ERROR');
is(answer($h, 7, [':method' => 'CONNECT', ':protocol' => 'websocket', ':authority' => 'localhost']),
   'RST 1', 'extended CONNECT without :path and :scheme: RST_STREAM PROTOCOL_ERROR');
$h->close;

# --- stats: the tunnel counted while open, gone after
$r = run("http://127.0.0.1:$h2c", 'stats');
is($r->{during}{open}, 1, 'stats: websocket.open 1 while the tunnel lives');
cmp_ok($r->{during}{upgrades}, '>=', 20, "stats: websocket.upgrades counts h2 tunnels ($r->{during}{upgrades})");
is($r->{echo}, 'echo:still', 'the WebSocket works beside the stats requests');
is($r->{after}{open}, 0, 'stats: websocket.open 0 after it closed');

# --- idle timeout
$r = run("http://127.0.0.1:$idle_port", 'idle');
ok($r->{closed}, 'an idle WebSocket stream is reset');
ok($r->{ms} > 800 && $r->{ms} < 3000, "... after websocket_idle_timeout 1s ($r->{ms} ms)");

# --- reload: the open WebSocket lives on, the connection gets GOAWAY
my $off = $tg->log_offset;
$r = run("http://127.0.0.1:$h2c", 'reload', $tg->pid);
ok($tg->wait_log(qr/reloaded: generation 2/, 5, $off), 'reloaded');
ok($r->{goaway}, 'the connection got GOAWAY');
is($r->{echo}, 'echo:after reload', 'the WebSocket still echoes after the reload');
is($r->{close_code}, 1000, '... and closes cleanly');
ok($r->{ended}, '... with END_STREAM');
$r = run("http://127.0.0.1:$h2c", 'status', '/not-ws');
is($r->{status}, 400, 'the new workers serve extended CONNECT');

$tg->stop;
done_testing;
