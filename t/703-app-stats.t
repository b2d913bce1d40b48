# The app blocks' instances in the stats endpoint (issue 24): its JSON has
# an "apps" section with each instance's pid and state, its Prometheus text
# the tollgate_app_* series (checked by promtool), and the dashboard, in
# headless Chromium, an apps panel with a row per instance. Without app
# blocks there is no "apps" section and no tollgate_app_* series.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);
use Tollgate::TLS qw(run_cmd);
use JSON::PP qw(decode_json);

my $APP = repo_root() . '/t/upstream/app.js';
my $BIN = $ENV{TG_BIN} // repo_root() . '/build/tollgate';
my $chromium = '/usr/bin/chromium';

# pid by slot, from `tollgate -s status`
sub status_pids($tg) {
    my $c = $tg->conf_file;
    my %p = map { (split ' ')[1, 2] } grep { /^demo\s+\d+\s+[1-9]\d*\s+ready\s/ } split /\n/,
        scalar `$BIN -c $c -s status 2>&1`;
    return %p;
}

my $tg = tg_start(<<"CONF", errors_ok => [qr/no live upstream server/]);
workers 2;
app demo {
    command node $APP;
    instances 2;
    listen unix:%%DIR%%/sock/demo-%i.sock;
}
server {
    listen %%PORT%%;
    location / { proxy_pass demo; }
    location = /stats { stats; }
    location = /apps { app_status; }
}
CONF
my %pid;
ok(wait_until(sub { %pid = status_pids($tg); keys %pid == 2 }, 15, 0.1), 'two ready instances');
is($tg->http(GET => '/x')->{status}, 200, 'proxied to the app');

my $j = decode_json($tg->http(GET => '/stats')->{body});
my $app = $j->{apps}{demo};
ok($app, 'stats JSON: an "apps" section with the app');
is($app->{rollouts}, 0, 'rollouts');
is($app->{rollbacks}, 0, 'rollbacks');
my $inst = $app->{instances};
is(scalar @$inst, 2, 'two instances');
is_deeply({ map { $_->{slot} => $_->{pid} } @$inst }, \%pid, 'their pids, by slot, as -s status');
is_deeply([map { $_->{state} } @$inst], ['ready', 'ready'], 'ready');
cmp_ok($inst->[0]{rss}, '>', 1 << 20, 'RSS');
ok(defined $_->{uptime} && defined $_->{restarts} && defined $_->{cpu} && defined $_->{inflight},
   'uptime, restarts, CPU, in flight') for @$inst;
my $as = decode_json($tg->http(GET => '/apps')->{body})->{apps}{demo};
is_deeply([map { "$_->{slot}:$_->{pid}:$_->{state}" } @{ $as->{instances} }],
          [map { "$_->{slot}:$_->{pid}:$_->{state}" } @$inst], 'the same instances as app_status');

my $prom = $tg->http(GET => '/stats?format=prometheus')->{body};
like($prom, qr/^tollgate_requests_total\b/m, 'Prometheus: the stats series');
like($prom, qr/^tollgate_app_instance_state\{app="demo",slot="$_",state="ready"\} 1$/m,
     "and instance ${_}'s state") for 0, 1;
like($prom, qr/^tollgate_app_instance_rss_bytes\{app="demo",slot="0"\} [1-9]\d*$/m, 'RSS');
like($prom, qr/^tollgate_app_rollouts_total\{app="demo"\} 0$/m, 'rollouts');
if (`sh -c 'command -v promtool'`) {
    my $f = $tg->dir . '/metrics.txt';
    open(my $fh, '>', $f) or die;
    print $fh $prom;
    close $fh;
    my $lint = `promtool check metrics < $f 2>&1`;
    is($?, 0, 'promtool accepts the metrics') or diag $lint;
}

SKIP: {
    skip 'chromium is not installed (contrib/install-deps.sh installs it)', 7 unless -x $chromium;
    my ($html) = run_cmd(undef, 'timeout', '60', $chromium, '--headless', '--no-sandbox',
        '--disable-gpu', '--user-data-dir=' . $tg->dir . '/chromium',
        '--virtual-time-budget=3000', '--dump-dom',
        'http://127.0.0.1:' . $tg->port . '/stats?format=html');
    like($html, qr/<body[^>]*data-polls="[2-9]/, 'the dashboard polled') or diag substr($html, 0, 2000);
    like($html, qr/<section class="wide" id="apps-panel">/, 'the apps panel shows');
    like($html, qr/<tr data-app="demo" class="apphead"><td[^>]*>demo .{1,2} rollouts 0 .{1,2} rollbacks 0</,
         'a row for the app') or diag $html =~ /(<table id="apps">.*?<\/table>)/s;
    for my $s (0, 1) {
        my ($row) = $html =~ /<tr data-app="demo" data-slot="$s">(.*?)<\/tr>/s;
        like($row // '', qr/data-col="pid">$pid{$s}</, "instance $s: its pid");
        like($row // '', qr/data-col="state">ready</, "instance $s: its state");
    }
}
$tg->stop;

my $plain = tg_start(<<"CONF");
server { listen %%PORT%%; location = /stats { stats; } }
CONF
ok(!exists decode_json($plain->http(GET => '/stats')->{body})->{apps}, 'no app: no "apps" section');
unlike($plain->http(GET => '/stats?format=prometheus')->{body}, qr/tollgate_app_/, 'nor app series');

done_testing;
