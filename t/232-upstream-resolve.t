# Dynamic upstreams: `server NAME:PORT resolve`, `server _svc._tcp.NAME service
# resolve` and `resolver`, against dnsmasq on a loopback port the test controls
# (t/lib/Tollgate/DNS.pm). Addresses 127.0.0.2..5 are loopback too; one Node
# process (t/upstream/multi.js) listens on all of them and answers with the
# address:port a request reached.
use v5.36;
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::Test qw(http_request);
use Tollgate::DNS;
use JSON::PP ();

plan skip_all => 'dnsmasq not installed (contrib/install-deps.sh test)'
    unless -x '/usr/sbin/dnsmasq' || `command -v dnsmasq`;

my $up = node_upstream('multi', args => [map { "127.0.0.$_" } 1 .. 5]);
my $P = $up->{port};

# ---- config errors ----
for my $case (
    ["upstream u { server 127.0.0.1:$P resolve; }", qr/an IP address has nothing to resolve/],
    ["upstream u { server app.test resolve; }", qr/invalid server "app\.test" with "resolve", expected NAME:PORT/],
    ["upstream u { server app.test:99999 resolve; }", qr/expected NAME:PORT/],
    ["upstream u { server _http._tcp.x.test service; }", qr/"service" needs "resolve"/],
    ["upstream u { server _http._tcp.x.test service resolve weight=2; }", qr/weights and backups come from the SRV records/],
    ["upstream u { server http.x.test service resolve; }", qr/invalid service name/],
    ["upstream u { server a.test:1 resolve max=65; }", qr/invalid max "65"/],
    ["upstream u { server a.test:1 resolve max=40; server b.test:1 resolve max=40; }", qr/reserves 40 servers \(max=\), more than the 24 left/],
    ["upstream u { server a.test:1 resolve; server a.test:1 resolve; }", qr/duplicate server "a\.test:1"/],
    ["upstream u { server a.test:1 resolve bogus; }", qr/invalid parameter "bogus" in "server \.\.\. resolve"/],
    ["resolver 127.0.0.1:70000;", qr/invalid resolver address "127\.0\.0\.1:70000"/],
    ["resolver dns.example;", qr/invalid resolver address "dns\.example"/],
    ["resolver 127.0.0.1 valid=10ms;", qr/invalid valid "10ms" in "resolver"/],
    ["resolver 127.0.0.1 ipv6=maybe;", qr/invalid ipv6 "maybe"/],
    ["resolver 127.0.0.1 colour=red;", qr/invalid parameter "colour=red" in "resolver"/],
    ["resolver 127.0.0.1; resolver 127.0.0.2;", qr/duplicate "resolver"/],
    ["upstream u { resolver 127.0.0.1; server 127.0.0.1:$P; }", qr/"resolver" in upstream "u", which has no server with "resolve"/],
) {
    my ($snippet, $re) = @$case;
    like(tg_conf_error("$snippet server { listen %%PORT%%; location / { proxy_pass u; } }"),
         qr/^\S+:\d+: .*$re/m, "config error: $snippet");
}
ok(tg_conf_ok("resolver 127.0.0.1:5353 [::1] valid=30s ipv6=off timeout=500ms;"
              . " upstream u { server nowhere.invalid:80 resolve max=4 weight=2 backup;"
              . " server 127.0.0.1:$P; server _http._tcp.x.test service resolve; }"
              . " server { listen %%PORT%%; location / { proxy_pass u; } }"),
   'a name that does not resolve is fine with resolve (-t does not query)');
{
    my $t = tg_conf_test("resolver 127.0.0.1:5353 valid=30s; upstream u { server a.test:3000 resolve max=4;"
                         . " server _http._tcp.s.test service resolve; }"
                         . " server { listen %%PORT%%; location / { proxy_pass u; } }");
    my $bin = $ENV{TG_BIN} // Tollgate::Test::repo_root() . '/build/tollgate';
    my $out = `$bin -c $t->{file} --explain GET http://x/ 2>&1`;
    like($out, qr/server a\.test:3000 resolve max=4 weight=1 max_fails=1 fail_timeout=10000ms; server _http\._tcp\.s\.test service resolve max=16 .*; resolver 127\.0\.0\.1:5353 valid=30000ms ipv6=on/,
         '--explain lists the resolve servers and the resolver');
}

# ---- A records: spread, change under load, two workers agree ----
my $dns = dns_server(ttl => 1, hosts => "127.0.0.2 app.test\n127.0.0.3 app.test\n");
my $conf = <<"EOF";
workers 2;
resolver 127.0.0.1:$dns->{port} ipv6=off timeout=300ms;
upstream app { server app.test:$P resolve; keepalive 8; }
server { listen %%PORT%%; location / { proxy_pass app; } location = /stats { stats; } }
EOF
my $tg = tg_start($conf, errors_ok => [qr/no live upstream server in "app"/]);
sub resolve_stats() {
    my $j = JSON::PP::decode_json(http_request($tg->port, 'GET', '/stats')->{body});
    return $j->{resolve}{app}{names}[0];
}
ok($tg->wait_log(qr/#0: upstream app: server 127\.0\.0\.3:$P added/, 10)
   && $tg->wait_log(qr/#1: upstream app: server 127\.0\.0\.3:$P added/, 5),
   'both workers took the resolved set');

sub spread($n, %o) {
    my %seen;
    for (1 .. $n) {
        my $r = http_request($tg->port, 'GET', $o{path} // '/');
        $seen{$r->{status} == 200 ? $r->{body} : "status $r->{status}"}++;
    }
    return \%seen;
}
my $sp = spread(20); # two workers, each its own round robin: about even
ok(keys %$sp == 2 && $sp->{"127.0.0.2:$P"} >= 6 && $sp->{"127.0.0.3:$P"} >= 6,
   'every address of the name is a server, round robin') or diag explain $sp;
my $rs = resolve_stats();
is_deeply([$rs->{server}, $rs->{type}, $rs->{addresses}, $rs->{failures}, $rs->{last_error}],
          ["app.test:$P", 'A/AAAA', ["127.0.0.2:$P", "127.0.0.3:$P"], 0, undef],
          'the stats show the name, its addresses, no failure');
ok($rs->{lookups} >= 1 && abs($rs->{resolved_at} / 1000 - time) < 5, 'and when it was last resolved');

# a client loop in a child while the set changes twice
my $out = "$tg->{dir}/loop.txt";
my $child = fork() // die "fork: $!";
if ($child == 0) {
    open(my $fh, '>', $out) or POSIX::_exit(1);
    $fh->autoflush(1);
    my $end = time + 7;
    while (time < $end) {
        my $r = eval { http_request($tg->port, 'GET', '/', timeout => 5) };
        printf $fh "%.3f %s %s\n", time, $r ? $r->{status} : 'none', $r ? $r->{body} : '';
        sleep 0.01;
    }
    POSIX::_exit(0);
}
sleep 1;
my $t_add = time;
$dns->set_hosts("127.0.0.2 app.test\n127.0.0.3 app.test\n127.0.0.4 app.test\n");
sleep 2.5;
my $t_remove = time;
$dns->set_hosts("127.0.0.4 app.test\n127.0.0.5 app.test\n");
waitpid($child, 0);
my @lines = do { open(my $fh, '<', $out) or die; <$fh> };
my @bad = grep { !/ 200 / } @lines;
cmp_ok(scalar @lines, '>', 50, 'the client loop ran (' . scalar(@lines) . ' requests)');
is(scalar @bad, 0, 'no failed request while addresses were added and removed') or diag @bad[0 .. 4];
my (%before, %after);
for (@lines) {
    my ($t, undef, $who) = split ' ';
    $before{$who}++ if $t < $t_add;
    $after{$who}++ if $t > $t_remove + 3;
}
ok($after{"127.0.0.4:$P"} && $after{"127.0.0.5:$P"} && !$after{"127.0.0.2:$P"}
   && !$after{"127.0.0.3:$P"}, 'after the change only the new set serves')
    or diag explain \%after;
ok(!$before{"127.0.0.4:$P"}, 'an address serves only once DNS has it');
ok($tg->wait_log(qr/#1: upstream app: server 127\.0\.0\.2:$P removed/, 1)
   && $tg->wait_log(qr/#0: upstream app: server 127\.0\.0\.2:$P removed/, 1),
   'both workers dropped the removed address');

# ---- drain: a long download on a removed server finishes ----
$dns->set_hosts("127.0.0.2 app.test\n");
ok($tg->wait_log(qr/#[01]: upstream app: server 127\.0\.0\.5:$P removed/, 5), 'set is 127.0.0.2 only');
sleep 1.2; # the other worker's tick
my $slow = "$tg->{dir}/slow.txt";
my $sc = fork() // die;
if ($sc == 0) {
    my $r = eval { http_request($tg->port, 'GET', '/slow?ms=2500', timeout => 10) };
    open(my $fh, '>', $slow);
    print $fh $r ? "$r->{status} $r->{body}" : "none $@";
    close($fh);
    POSIX::_exit(0);
}
sleep 0.5;
$dns->set_hosts("127.0.0.3 app.test\n");
ok($tg->wait_log(qr/server 127\.0\.0\.2:$P removed \(1 request in flight/, 5),
   'the removed server has the download in flight');
sleep 1.2;
is_deeply(spread(6), { "127.0.0.3:$P" => 6 }, 'no new request reaches the draining server');
waitpid($sc, 0);
like(do { open(my $fh, '<', $slow); local $/; <$fh> }, qr/^200 \.+\n127\.0\.0\.2:$P$/,
     'the download in flight on the removed server finished whole');

# ---- TTL honoured: queries bounded ----
my $q0 = $dns->queries(qr/query\[A\] app\.test/);
sleep 5;
my $q = $dns->queries(qr/query\[A\] app\.test/) - $q0;
ok($q >= 3 && $q <= 8, "TTL 1 s: $q queries in 5 s (one per TTL, none per request)");

# ---- DNS down: the last good set is kept ----
$dns->stop;
# a minute without DNS (TTL 1 s: a lookup fails every round), requests all along
my ($down_ok, $down_bad, $t_down) = (0, 0, time);
while (time - $t_down < 60) {
    my $sp = spread(2);
    ($sp->{"127.0.0.3:$P"} // 0) == 2 && keys %$sp == 1 ? $down_ok++ : $down_bad++;
    select(undef, undef, undef, 0.5);
}
is($down_bad, 0, "DNS down for a minute: $down_ok rounds of requests, none failed or went elsewhere");
is_deeply(spread(4), { "127.0.0.3:$P" => 4 }, 'DNS down: the last good set still serves');
ok($tg->wait_log(qr/resolving "app\.test:$P" failed \(.*\), keeping its 1 address/, 5),
   'the failure is logged');
$rs = resolve_stats();
ok($rs->{failures} >= 1 && $rs->{last_error} && $rs->{addresses}[0] eq "127.0.0.3:$P",
   "the stats count the failure ($rs->{last_error}) and still list the kept address");
# a reload while DNS is down: the new workers start with the shared set
my $off = $tg->reload($conf);
ok($tg->wait_log(qr/#0: upstream app: server 127\.0\.0\.3:$P added/, 10, $off),
   'after a reload the new workers have the last set at once');
is_deeply(spread(4), { "127.0.0.3:$P" => 4 }, 'and serve it with DNS still down');
$dns->start;
$dns->set_hosts("127.0.0.4 app.test\n");
ok($tg->wait_log(qr/server 127\.0\.0\.4:$P added/, 10, $off), 'DNS back: the new set is taken');
$tg->stop;

# ---- start empty: a name that does not resolve yet answers 502 ----
{
    my $tg2 = tg_start(<<"EOF", errors_ok => [qr/no live upstream server in "late"/]);
resolver 127.0.0.1:$dns->{port} ipv6=off;
upstream late { server late.test:$P resolve; }
server { listen %%PORT%%; location / { proxy_pass late; } }
EOF
    ok($tg2->wait_log(qr/resolving "late\.test:$P" failed/, 5), 'unresolved at start is logged');
    is($tg2->http(GET => '/')->{status}, 502, 'an upstream with no address yet answers 502');
    $dns->set_hosts("127.0.0.4 app.test\n127.0.0.5 late.test\n");
    ok($tg2->wait_log(qr/server 127\.0\.0\.5:$P added/, 10), 'resolved on the next try');
    is($tg2->http(GET => '/')->{body}, "127.0.0.5:$P", 'and serves');
    $tg2->stop;
}

# ---- valid= overrides the TTL ----
{
    my $tg3 = tg_start(<<"EOF");
upstream v { resolver 127.0.0.1:$dns->{port} ipv6=off valid=3s; server late.test:$P resolve; }
server { listen %%PORT%%; location / { proxy_pass v; } }
EOF
    ok($tg3->wait_log(qr/server 127\.0\.0\.5:$P added/, 5), 'an upstream-level resolver');
    my $q1 = $dns->queries(qr/query\[A\] late\.test/);
    sleep 6.5;
    my $n = $dns->queries(qr/query\[A\] late\.test/) - $q1;
    ok($n >= 1 && $n <= 3, "valid=3s: $n queries in 6.5 s despite a 1 s TTL");
    $tg3->stop;
}

# ---- SRV: weights, priorities as backup tiers, ports from the records ----
{
    my ($a, $b, $c) = map { node_upstream('multi') } 1 .. 3;
    $dns->restart(srv => [['_http._tcp.svc.test', 'a.test', $a->{port}, 10, 3],
                          ['_http._tcp.svc.test', 'b.test', $b->{port}, 10, 1],
                          ['_http._tcp.svc.test', 'c.test', $c->{port}, 20, 5]]);
    $dns->set_hosts("127.0.0.1 a.test\n127.0.0.1 b.test\n127.0.0.1 c.test\n");
    my $tg4 = tg_start(<<"EOF", errors_ok => [qr/connect\(\) to 127\.0\.0\.1:\d+ failed/]);
resolver 127.0.0.1:$dns->{port} ipv6=off;
upstream svc { server _http._tcp.svc.test service resolve; }
server { listen %%PORT%%; location / { proxy_pass svc; } }
EOF
    ok($tg4->wait_log(qr/"_http\._tcp\.svc\.test" now resolves to .*127\.0\.0\.1:$c->{port}\(backup\)/, 10),
       'SRV resolved: the higher priority number is a backup');
    sleep 1.2;
    my %s;
    $s{$tg4->http(GET => '/')->{body}}++ for 1 .. 40;
    is_deeply(\%s, { "127.0.0.1:$a->{port}" => 30, "127.0.0.1:$b->{port}" => 10 },
              'SRV weights 3:1, ports from the records, the backup idle');
    $a->stop;
    $b->stop;
    my %t;
    $t{$tg4->http(GET => '/')->{body}}++ for 1 .. 4;
    is_deeply(\%t, { "127.0.0.1:$c->{port}" => 4 }, 'primaries down: the backup tier serves');
    $c->stop;
}

done_testing;
