# The stats dashboard in a real browser: headless Chromium loads the page
# from a running gateway (2 workers) after known traffic, runs its polling
# script for a few seconds of virtual time, and the rendered DOM must show
# the totals, the upstream table (state, requests, failures, p50) and the
# three charts drawn.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS qw(run_cmd);

my $chromium = '/usr/bin/chromium';
plan skip_all => 'chromium is not installed (contrib/install-deps.sh installs it)' unless -x $chromium;

my $N = 15;
my $up = node_upstream('echo');
my $dead = free_port();
my $tg = tg_start(<<"EOF", errors_ok => [qr/connect|upstream/i]);
workers 2;
upstream api { server $up->{addr}; }
upstream gone {
    server 127.0.0.1:$dead;
    health_check path=/ interval=100ms timeout=100ms fails=1 passes=1;
}
server {
    listen %%PORT%%;
    location /api { proxy_pass api; }
    location = /boom { return 500; }
    location /gone { proxy_pass gone; }
    location = /stats { stats; }
}
EOF
is($tg->http(GET => '/api/x')->{status}, 200, 'proxied') for 1 .. $N;
$tg->http(GET => '/boom') for 1 .. $N;

sub dom() {
    my ($out) = run_cmd(undef, 'timeout', '60', $chromium, '--headless', '--no-sandbox',
        '--disable-gpu', '--user-data-dir=' . $tg->dir . '/chromium',
        '--virtual-time-budget=5000', '--dump-dom',
        'http://127.0.0.1:' . $tg->port . '/stats?format=html');
    return $out;
}
sub cell($html, $up, $col) {
    return $html =~ /<tr data-upstream="\Q$up\E"[^>]*>(.*?)<\/tr>/s
        && $1 =~ /<td[^>]*data-col="$col"[^>]*>([^<]*)</ ? $1 : undef;
}

# the health check marks "gone" down in both workers before the page loads
ok(wait_until(sub { $tg->http(GET => '/stats')->{body} =~ /"health":"down","down_workers":2/ }, 10),
    'health state published');
my $html = dom();
like($html, qr/<body[^>]*data-polls="([3-9]|\d\d)"/, 'the page polled the JSON several times')
    or diag substr($html, 0, 2000);
like($html, qr/id="err"><\/span>/, 'no fetch error shown');
like($html, qr/id="total-2xx">$N</, 'total 2xx');
like($html, qr/id="total-5xx">$N</, 'total 5xx');
like($html, qr/id="meta">version 0\.1\.0 .*workers 2 /, 'version and workers');
is(cell($html, 'api', 'requests'), $N, 'upstream table: requests');
is(cell($html, 'api', 'failures'), 0, 'upstream table: failures');
is(cell($html, 'api', 'state'), 'up', 'upstream table: api up');
like(cell($html, 'api', 'p50') // '', qr/^\d+(\.\d+)?$/, 'upstream table: p50 estimated from the buckets');
is(cell($html, 'gone', 'state'), 'down', 'upstream table: down');
for my $c (['rps', 10], ['latency', 2], ['conns', 12]) {
    my ($id, $min) = @$c;
    ok($html =~ /<svg id="chart-$id"[^>]*data-drawn="(\d+)"/ && $1 >= $min, "chart $id drawn ($min+ points)")
        or diag $html =~ /(<svg id="chart-$id"[^>]*>)/;
    like($html, qr/<svg id="chart-$id".*?<path [^>]*d="M/s, "chart $id has a path");
}
like($html, qr/<path [^>]*data-series="api \Q$up->{addr}\E p99"/, 'latency series per upstream server');
unlike($html, qr/<(?:script|link|img)[^>]+(?:src|href)=/i, 'no external assets');

done_testing;
