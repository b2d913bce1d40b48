# The stats endpoint: exact counters across two workers (each class, proxied
# and failing upstream requests), the Prometheus exposition format, counters
# surviving a reload, and allow/deny in front of it.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS qw(run_cmd);

my $up = node_upstream('echo');
my $dead = free_port();
my $N = 20;

my $conf = <<"EOF2";
workers 2;
upstream dead { server 127.0.0.1:$dead; }
server {
    listen %%PORT%%;
    location = /ok { return 200 ok; }
    location = /boom { return 500 boom; }
    location /up { proxy_pass $up->{addr}; }
    location /dead { proxy_pass dead; }
    location = /stats { allow 127.0.0.1; deny all; stats; }
    location = /closed { deny all; return 200 secret; }
}
EOF2
my $tg = tg_start($conf, errors_ok => [qr/connect|upstream/i]);

sub stats_json() {
    my $r = $tg->http(GET => '/stats');
    return undef unless $r->{status} == 200;
    return decode_json($r->{body});
}

for (1 .. $N) {
    is($tg->http(GET => '/ok')->{status}, 200, "ok $_") or last;
    $tg->http(GET => '/missing') for 1;
    $tg->http(GET => '/boom');
    $tg->http(GET => '/up/x');
    $tg->http(GET => '/dead/x');
}
is($tg->http(GET => '/up/y')->{status}, 200, 'proxied is 200');
is($tg->http(GET => '/dead/y')->{status}, 502, 'dead upstream is 502');
my $n1 = $N + 1;

my $want = sub ($s) {
    $s && $s->{requests}{total} == 5 * $N + 2 && $s->{requests}{'2xx'} == 2 * $N + 1
        && $s->{requests}{'4xx'} == $N && $s->{requests}{'5xx'} == 2 * $N + 1
};
my $s;
ok(wait_until(sub { $s = stats_json(); $want->($s) }, 10), 'counters settle')
    or diag explain $s && $s->{requests};
is($s->{requests}{total}, 5 * $N + 2, 'total');
is($s->{requests}{'1xx'}, 0, '1xx');
is($s->{requests}{'2xx'}, 2 * $N + 1, '2xx: return 200 + proxied');
is($s->{requests}{'3xx'}, 0, '3xx');
is($s->{requests}{'4xx'}, $N, '4xx');
is($s->{requests}{'5xx'}, 2 * $N + 1, '5xx: return 500 + 502');
is($s->{workers}, 2, 'workers');
is($s->{generation}, 1, 'generation');
is($s->{reloads}, 0, 'no reload yet');
is($s->{version}, '0.1.0', 'version');
ok($s->{uptime_s} >= 0, 'uptime');
ok($s->{bytes}{in} >= 0 && $s->{bytes}{out} > 0, 'bytes');
ok($s->{connections}{open} >= 0, 'connections gauge');
is($s->{websocket}{upgrades}, 0, 'no upgrades');
my ($echo) = values %{ $s->{upstreams}{$up->{addr}}{servers} // {} };
ok($echo, 'echo upstream listed') or diag explain $s->{upstreams};
is($echo->{requests}, $n1, 'echo requests');
is($echo->{failures}, 0, 'echo failures');
my $bsum = 0;
$bsum += $_ for values %{ $echo->{latency_ms_buckets} };
is($bsum, $n1, 'latency buckets add up');
my $d = $s->{upstreams}{dead}{servers}{"127.0.0.1:$dead"};
is($d->{requests}, $n1, 'dead requests');
is($d->{failures}, $n1, 'dead failures');

# the stats request itself is not counted
my $again = stats_json();
is($again->{requests}{total}, 5 * $N + 2, 'stats requests are not traffic');

# Prometheus
for my $how (['?format=prometheus'], ['', headers => ['Accept' => 'text/plain']]) {
    my ($q, %o) = @$how;
    my $r = $tg->http(GET => "/stats$q", %o);
    is($r->{status}, 200, "prometheus $q");
    like($r->{headers}{'content-type'}, qr{^text/plain}, 'text/plain');
    my (%type, %help, $bad);
    for my $line (split /\n/, $r->{body}) {
        if ($line =~ /^# HELP (\w+) .+$/) { $help{$1} = 1; next }
        if ($line =~ /^# TYPE (\w+) (counter|gauge|histogram)$/) { $type{$1} = $2; next }
        if ($line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_]\w*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_]\w*="(?:[^"\\]|\\.)*")*\})? (-?[0-9.eE+]+|\+Inf|NaN)$/) {
            my $fam = $1;
            $fam =~ s/_(bucket|sum|count)$// unless $type{$fam};
            $bad //= "no TYPE for $line" unless $type{$fam} && $help{$fam};
            next;
        }
        $bad //= "bad line: $line";
    }
    ok(!$bad, 'exposition format') or diag $bad;
    SKIP: {
        skip 'promtool is not installed (contrib/install-deps.sh installs it)', 1
            unless -x '/usr/bin/promtool';
        my ($out, $rc) = run_cmd($r->{body}, 'promtool', 'check', 'metrics');
        is($rc, 0, 'promtool check metrics') or diag $out;
    }
    like($r->{body}, qr/^tollgate_requests_total\{class="2xx"\} ${\(2 * $N + 1)}$/m, '2xx sample');
    like($r->{body}, qr/^tollgate_upstream_latency_seconds_count\{upstream="dead",server="127\.0\.0\.1:$dead"\} $n1$/m,
        'histogram count');
    like($r->{body}, qr/^tollgate_upstream_latency_seconds_bucket\{upstream="dead",server="[^"]+",le="\+Inf"\} $n1$/m,
        '+Inf bucket');
}

# HTML dashboard
my $h = $tg->http(GET => '/stats', headers => ['Accept' => 'text/html,*/*']);
is($h->{status}, 200, 'dashboard');
like($h->{headers}{'content-type'}, qr{^text/html}, 'html');
like($h->{body}, qr/<script>.*format=json/s, 'polls the JSON');
unlike($h->{body}, qr/<(?:script|link)[^>]+(?:src|href)=/i, 'no external assets');

# allow/deny
is($tg->http(GET => '/closed')->{status}, 403, 'deny all gives 403');
is($tg->http(POST => '/stats', body => 'x')->{status}, 405, 'stats: GET only');

# reload: counters kept, reloads and generation move on
my $before = stats_json()->{requests}{total};
my $off = $tg->reload($conf =~ s/location = \/ok/location = \/ok2 { return 200 ok2; }\n    location = \/ok/r);
ok($tg->wait_log(qr/reloaded: generation 2/, 10, $off), 'reloaded');
ok(wait_until(sub { $s = stats_json(); $s && $s->{generation} == 2 }, 10), 'generation 2');
is($s->{reloads}, 1, 'one reload');
cmp_ok($s->{requests}{total}, '>=', $before, 'counters survive the reload');
is($s->{upstreams}{dead}{servers}{"127.0.0.1:$dead"}{requests}, $n1, 'upstream counters too');
$tg->http(GET => '/ok2');
ok(wait_until(sub { $s = stats_json(); $s->{requests}{total} == $before + 1 }, 10),
    'counting goes on after the reload') or diag $s->{requests}{total};

# a crashed worker is respawned and counted; counters are kept (a crash
# logs [crit], hence its own gateway without the log check)
{
    my $tg3 = tg_start("workers 2;\nserver { listen %%PORT%%; location = /stats { stats; }"
        . " location / { return 200 ok; } }", no_log_check => 1);
    ok(wait_until(sub { $tg3->worker_pids == 2 }, 10), 'two workers');
    $tg3->http(GET => '/a') for 1 .. 5;
    my @pids = $tg3->worker_pids;
    kill 'KILL', $pids[0];
    my $j;
    ok(wait_until(sub {
        my $r = $tg3->http(GET => '/stats');
        $j = $r->{status} == 200 && decode_json($r->{body});
        $j && $j->{worker_restarts} == 1 }, 10), 'worker restart counted');
    is($j->{requests}{total}, 5, 'counters survive a worker crash');
    $tg3->stop;
}

# deny in front of stats
my $tg2 = tg_start("server { listen %%PORT%%; location = /stats { deny all; stats; } }");
is($tg2->http(GET => '/stats')->{status}, 403, 'stats behind deny all');
like(tg_conf_error("server { listen %%PORT%%; location / { allow 300.1.1.1; } }"),
    qr/invalid address "300\.1\.1\.1" in "allow"/, 'bad address');

done_testing;
