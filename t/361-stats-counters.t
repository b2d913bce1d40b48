# The stats counters beyond requests, exact over 2 workers: N requests of
# each kind (per server block and location with stats_name, rate-limited and
# dry-run hits per zone, compressed responses, Lua errors and instruction-limit
# stops, TLS handshakes full/resumed/failed, upstream retries, active
# connections and health), connections by state, stats_auth basic auth and
# stats_count_self; the same numbers in the Prometheus output.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use MIME::Base64 qw(encode_base64);
use IO::Socket::INET;
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $N = 12;
my $pki = make_pki();
my $crt = $pki->{'a.test'};
my $up = node_upstream('echo');
my $hang = node_upstream('hang');
my $dead = free_port();
my $hash = `openssl passwd -6 -salt s4ltS4lt 'se:cret'`;
chomp $hash;
like($hash, qr/^\$6\$/, 'openssl passwd -6 makes a SHA-512 crypt hash');
my $big = 'tollgate-' x 200;

my $conf = <<"EOF";
workers 2;
lua_jit off; # the instruction-limit counter needs the interpreter's limit
rate_limit_zone strict key=\$remote_addr rate=1r/m burst=0 size=1m;
rate_limit_zone watch key=\$remote_addr rate=1r/m burst=0 size=1m mode=dry_run;
upstream pair {
    server 127.0.0.1:$dead max_fails=0;
    server $up->{addr} backup;
}
upstream checked {
    server 127.0.0.1:$dead;
    health_check path=/ interval=100ms timeout=100ms fails=1 passes=1;
}
upstream slow { server $hang->{addr}; }
server {
    listen %%PORT%%;
    listen %%PORT2%% tls;
    server_name a.test;
    tls_certificate $crt->{cert};
    tls_certificate_key $crt->{key};
    location = /a { stats_name page-a; return 200 a; }
    location = /b { stats_name page-a; return 404; }
    location /strict { rate_limit strict; return 200 s; }
    location /watch { rate_limit watch; return 200 w; }
    location /gz { compress gzip; compress_min_length 100; proxy_pass $up->{addr}; }
    location /luaerr { lua_access %%DIR%%/err.lua; return 200 never; }
    location /lualimit { lua_instruction_limit 1000; lua_access %%DIR%%/loop.lua; return 200 never; }
    location /retry { proxy_pass pair; }
    location /slow { proxy_pass slow; proxy_timeouts read=20s; }
    location /checked { proxy_pass checked; }
    location = /stats { stats; stats_auth "ops:$hash"; stats_auth "ro:$hash"; }
    location = /stats-self { stats; stats_count_self on; }
}
server {
    listen %%PORT%%;
    server_name other.test;
    location / { return 204; }
}
EOF
my $tg = tg_start($conf, files => { 'err.lua' => "error('boom')\n", 'loop.lua' => "while true do end\n" },
    errors_ok => [qr/lua|connect|upstream|live upstream/i]);
my $auth = 'Basic ' . encode_base64('ops:se:cret', '');

sub stats($path = '/stats') {
    my $r = $tg->http(GET => $path, headers => ['Authorization' => $auth]);
    return $r->{status} == 200 ? decode_json($r->{body}) : undef;
}

# --- basic auth
my $r = $tg->http(GET => '/stats');
is($r->{status}, 401, 'no credentials: 401');
like($r->{headers}{'www-authenticate'}, qr/^Basic realm="tollgate stats"/, 'WWW-Authenticate');
is($tg->http(GET => '/stats', headers => ['Authorization' => 'Basic ' . encode_base64('ops:wrong', '')])->{status},
    401, 'wrong password: 401');
is($tg->http(GET => '/stats', headers => ['Authorization' => 'Basic ' . encode_base64('nobody:se:cret', '')])->{status},
    401, 'unknown user: 401');
is($tg->http(GET => '/stats', headers => ['Authorization' => 'Basic !!!!'])->{status}, 401, 'bad base64: 401');
is($tg->http(GET => '/stats', headers => ['Authorization' => $auth])->{status}, 200, 'right password: 200');
is($tg->http(GET => '/stats', headers => ['Authorization' => 'Basic ' . encode_base64('ro:se:cret', '')])->{status},
    200, 'second user');
is($tg->http(GET => '/stats', headers => ['Authorization' => $auth])->{status}, 200, 'again (remembered)');

# --- traffic
my %sent;
for (1 .. $N) {
    $tg->http(GET => '/a');
    $tg->http(GET => '/b');
    $tg->http(GET => '/x', headers => ['Host' => 'other.test']);
    $tg->http(GET => '/gz/' . $big, headers => ['Accept-Encoding' => 'gzip']);
    $tg->http(GET => '/luaerr');
    $tg->http(GET => '/lualimit');
    $tg->http(GET => '/retry');
}
# the first request of each zone passes, the next N are over the limit
$tg->http(GET => '/strict') for 0 .. $N;
$tg->http(GET => '/watch') for 0 .. $N;

# TLS: N full handshakes (one saved), N resumed, N failed (plain HTTP bytes)
my $tport = $tg->port(2);
my $sess = $tg->dir . '/sess.pem';
my $treq = "GET /a HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
my ($full, $resumed) = (0, 0);
for my $i (1 .. $N) {
    my $o = s_client($tport, servername => 'a.test', input => $treq,
        args => ['-tls1_3', $i == 1 ? ('-sess_out', $sess) : ()]);
    $full++ if $o =~ /^New, TLSv1/m;
}
for (1 .. $N) {
    my $o = s_client($tport, servername => 'a.test', input => $treq, args => ['-tls1_3', '-sess_in', $sess]);
    $resumed++ if $o =~ /^Reused, TLSv1/m;
}
is($full, $N, 'openssl saw N full handshakes');
is($resumed, $N, 'openssl saw N resumed ones');
for (1 .. $N) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$tport", Timeout => 5) or die $!;
    print $s "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    my $buf;
    sysread($s, $buf, 100);
    close $s;
}

my $s;
ok(wait_until(sub { $s = stats(); $s && $s->{tls}{handshakes}{failed} >= $N && $s->{servers}{'a.test'}{locations}{'page-a'}{requests}{total} >= 4 * $N }, 10),
    'counters settle') or diag explain $s;
my $pa = $s->{servers}{'a.test'}{locations}{'page-a'}{requests};
is($pa->{total}, 4 * $N, 'stats_name: two locations, one name (plain and TLS requests)');
is($pa->{'2xx'}, 3 * $N, 'page-a 2xx (TLS ones included)');
is($pa->{'4xx'}, $N, 'page-a 4xx');
is($s->{servers}{'other.test'}{requests}{'2xx'}, $N, 'second server block');
is($s->{servers}{'other.test'}{locations}{'/'}{requests}{total}, $N, 'location named by its path');
is($s->{servers}{'a.test'}{locations}{'/luaerr'}{requests}{'5xx'}, $N, 'Lua errors answer 500');
is($s->{rate_limit}{zones}{strict}{limited}, $N, 'zone limited');
is($s->{rate_limit}{zones}{strict}{dry_run}, 0, 'zone: no dry run');
is($s->{rate_limit}{zones}{watch}{dry_run}, $N, 'dry-run zone hits');
is($s->{rate_limit}{zones}{watch}{limited}, 0, 'dry-run zone limits nothing');
is($s->{rate_limit}{limited}, $N, 'limited in all');
is($s->{rate_limit}{dry_run}, $N, 'dry run in all');
is($s->{servers}{'a.test'}{locations}{'/strict'}{requests}{'4xx'}, $N, '429s in the location');
is($s->{codes}{429}, $N, 'status code 429 counted by code');
is($s->{codes}{500}, 2 * $N, 'status code 500 (the Lua errors) counted by code');
my $by_code = 0;
$by_code += $_ for values %{$s->{codes}};
cmp_ok($by_code, '<=', $s->{requests}{total}, 'the codes add up to at most the requests');
cmp_ok($by_code, '>=', $s->{requests}{'2xx'} + $s->{requests}{'4xx'} + $s->{requests}{'5xx'},
       '... and to at least the classed ones');
is($s->{compression}{responses}, $N, 'compressed responses');
cmp_ok($s->{compression}{in}, '>', $N * length($big), 'compression in bytes');
cmp_ok($s->{compression}{out}, '<', $s->{compression}{in} / 4, 'compression out bytes');
is($s->{lua}{errors}, 2 * $N, 'Lua errors (both scripts)');
is($s->{lua}{instruction_limit}, $N, 'Lua instruction-limit stops');
is($s->{tls}{handshakes}{full}, $N, 'TLS full handshakes');
is($s->{tls}{handshakes}{resumed}, $N, 'TLS resumed handshakes');
is($s->{tls}{handshakes}{failed}, $N, 'TLS failed handshakes');
my $pd = $s->{upstreams}{pair}{servers}{"127.0.0.1:$dead"};
my $pu = $s->{upstreams}{pair}{servers}{$up->{addr}};
is($pd->{retries}, $N, 'a refused attempt is a retry on that server');
is($pd->{requests}, 0, 'no request ended there');
is($pu->{requests}, $N, 'the backup served them');
is($pu->{retries}, 0, 'the backup retried nothing');
is($pu->{health}, 'up', 'backup up');
ok(wait_until(sub { $s = stats(); $s->{upstreams}{checked}{servers}{"127.0.0.1:$dead"}{health} eq 'down' }, 10),
    'health check failures: down in both workers');
is($s->{upstreams}{checked}{servers}{"127.0.0.1:$dead"}{down_workers}, 2, 'down_workers');

# connections by state: an idle keep-alive client and one waiting on a slow upstream
my $idle = $tg->keepalive;
is($idle->request(GET => '/a')->{status}, 200, 'keep-alive request');
my $busy = $tg->keepalive;
$busy->write("GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n");
ok(wait_until(sub {
    $s = stats();
    $s->{connections}{idle} >= 1 && $s->{connections}{writing} >= 2
        && $s->{upstreams}{slow}{servers}{$hang->{addr}}{active} == 1 }, 10),
    'idle, writing and an active upstream attempt') or diag explain $s->{connections};
$busy->close;
$idle->close;

# Prometheus: the same numbers, and promtool accepts the exposition
$r = $tg->http(GET => '/stats?format=prometheus', headers => ['Authorization' => $auth]);
my $p = $r->{body};
like($p, qr/^tollgate_location_requests_total\{server="a\.test",location="page-a",class="4xx"\} $N$/m, 'location metric');
like($p, qr/^tollgate_rate_limit_hits_total\{zone="watch",action="dry_run"\} $N$/m, 'zone metric');
like($p, qr/^tollgate_tls_handshakes_total\{result="resumed"\} $N$/m, 'TLS metric');
like($p, qr/^tollgate_lua_instruction_limit_total $N$/m, 'Lua metric');
like($p, qr/^tollgate_responses_total\{code="429"\} $N$/m, 'status code metric');
like($p, qr/^tollgate_compressed_responses_total $N$/m, 'compression metric');
like($p, qr/^tollgate_upstream_retries_total\{upstream="pair",server="127\.0\.0\.1:$dead"\} $N$/m, 'retries metric');
like($p, qr/^tollgate_upstream_up\{upstream="checked",server="[^"]+"\} 0$/m, 'health metric');
like($p, qr/^tollgate_connections\{state="idle"\} \d+$/m, 'connections by state');
SKIP: {
    skip 'promtool is not installed (contrib/install-deps.sh installs it)', 1
        unless -x '/usr/bin/promtool';
    my ($out, $rc) = run_cmd($p, 'promtool', 'check', 'metrics');
    is($rc, 0, 'promtool check metrics') or diag $out;
}

# stats requests count only where stats_count_self is on
my $before = stats()->{requests}{total};
stats() for 1 .. 3;
is(stats()->{requests}{total}, $before, 'stats requests are not traffic');
$tg->http(GET => '/stats-self') for 1 .. 3;
ok(wait_until(sub { stats()->{requests}{total} == $before + 3 }, 5), 'stats_count_self on: counted');

# reload: a new location before page-a; named counters keep their slot
{
    my $total = stats()->{servers}{'a.test'}{locations}{'page-a'}{requests}{total};
    my $off = $tg->reload($conf =~ s/(    location = \/a )/    location = \/new { return 200 new; }\n$1/r);
    ok($tg->wait_log(qr/reloaded: generation 2/, 10, $off), 'reloaded');
    ok(wait_until(sub { my $j = stats(); $j && $j->{generation} == 2 }, 10), 'generation 2');
    $tg->http(GET => '/new');
    $tg->http(GET => '/a');
    my $j;
    ok(wait_until(sub { $j = stats(); $j->{servers}{'a.test'}{locations}{'page-a'}{requests}{total} == $total + 1 }, 10),
        'location counters survive the reload') or diag explain $j->{servers}{'a.test'}{locations};
    is($j->{servers}{'a.test'}{locations}{'/new'}{requests}{total}, 1, 'the new location starts from zero');
    is($j->{rate_limit}{zones}{strict}{limited}, $N, 'zone counters survive the reload');
}

# config errors
like(tg_conf_error("server { listen %%PORT%%; location / { stats_auth 'a:\$6\$x'; } }"),
    qr/:\d+: .*"stats_auth"/, 'stats_auth without stats');
like(tg_conf_error("server { listen %%PORT%%; location / { stats; stats_auth 'a:plain'; } }"),
    qr/:\d+: invalid password hash in "stats_auth" for "a"/, 'not a crypt hash');
like(tg_conf_error("server { listen %%PORT%%; location / { stats; stats_auth nocolon; } }"),
    qr/:\d+: invalid "stats_auth" "nocolon", expected USER:HASH/, 'USER:HASH');
like(tg_conf_error("server { listen %%PORT%%; location / { stats_name a; stats_name b; } }"),
    qr/:\d+: "stats_name" directive is duplicate/, 'duplicate stats_name');

done_testing;
