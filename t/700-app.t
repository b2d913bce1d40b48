# app blocks (issue 24): Node processes run by the master as an upstream.
# Start, environment, user, log capture and reopen, status, readiness
# gating, TCP and unix listeners, stop (and kill -9 of the master) leaving
# no instance behind, config errors.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);
use JSON::PP qw(decode_json);
use Time::HiRes qw(time);

my $APP = repo_root() . '/t/upstream/app.js';
my $BIN = $ENV{TG_BIN} // repo_root() . '/build/tollgate';

sub status($tg) { my $c = $tg->conf_file; return scalar `$BIN -c $c -s status 2>&1` }
sub pids($tg) {
    return map { (split ' ')[2] } grep { /^\S+\s+\d+\s+[1-9]\d*\s/ } split /\n/, status($tg);
}
sub alive(@p) { return grep { kill 0, $_ } @p }
sub slurp($f) { open(my $fh, '<', $f) or return ''; local $/; return <$fh> }
sub get_ok($tg, $path = '/') {
    my $r;
    wait_until(sub { $r = $tg->http(GET => $path); $r->{status} == 200 }, 15, 0.1);
    return $r;
}

subtest 'two instances: env, env_file, user, log, status, stop' => sub {
    my %o = (files => { 'app.env' => "# comment\nexport FROM_FILE=yes\nQUOTED=\"a b\"\nFROM_BOTH=file\n" },
             errors_ok => [qr/no live upstream server/]); # until ready
    my $tg = tg_start(<<"CONF", %o);
app demo {
    command node $APP;
    instances 2;
    listen unix:%%DIR%%/sock/demo-%i.sock;
    health_check path=/healthz interval=1s;
    env GREETING=hello APP_VERSION=v1 FROM_BOTH=env;
    env_file %%DIR%%/app.env;
    cwd %%DIR%%;
    log %%DIR%%/demo.log;
}
server {
    listen %%PORT%%;
    location / { proxy_pass demo; }
    location = /apps { app_status; }
}
CONF
    my $r = get_ok($tg);
    is($r->{status}, 200, 'proxied to the app');
    my $j = decode_json($tg->http(GET => '/x')->{body});
    is($j->{cwd}, $tg->dir, 'cwd');
    is($j->{uid}, 65534, "runs as the workers' user (nobody) by default") if $> == 0;
    my %seen;
    wait_until(sub {
        my $b = $tg->http(GET => '/x')->{body};
        $seen{$1}++ if $b =~ /"instance":"(\d)"/;
        keys %seen >= 2;
    }, 10, 0.01);
    is_deeply([sort keys %seen], [0, 1], 'both instances get traffic');
    is($tg->http(GET => '/env/GREETING')->{body}, 'hello', 'env');
    is($tg->http(GET => '/env/FROM_FILE')->{body}, 'yes', 'env_file, export');
    is($tg->http(GET => '/env/QUOTED')->{body}, 'a b', 'env_file, quotes');
    is($tg->http(GET => '/env/FROM_BOTH')->{body}, 'env', 'env wins over env_file, in any order');
    like($tg->http(GET => '/env/PORT')->{body}, qr{/sock/demo-[01]\.sock$}, 'PORT is the socket path');
    like($tg->http(GET => '/env/TOLLGATE_INSTANCE')->{body}, qr/^[01]$/, 'TOLLGATE_INSTANCE');
    is($tg->http(GET => '/env/TOLLGATE_APP')->{body}, 'demo', 'TOLLGATE_APP');

    my $log = $tg->dir . '/demo.log';
    ok(wait_until(sub { slurp($log) =~ /^\S+Z demo#0: app demo#0 listening$/m }, 5),
       'stdout in the app log with time and instance');
    like(slurp($log), qr/^\S+Z demo#[01]: stderr line$/m, 'stderr too');
    rename($log, "$log.1") or die "rename: $!";
    my $off = $tg->signal('USR1');
    $tg->wait_log(qr/logs reopened/, 5, $off);
    $tg->http(GET => '/print/afterreopen');
    ok(wait_until(sub { slurp($log) =~ /demo#\d: afterreopen/ }, 5), 'reopened on USR1');

    my $c = $tg->conf_file;
    my $out = `$BIN -c $c -s restart-app nosuch 2>&1`;
    is($? >> 8, 1, 'restart-app of an unknown app fails');
    like($out, qr/no app "nosuch"/, 'and says so');
    `$BIN -c $c -s restart-app 2>&1`;
    is($? >> 8, 2, 'restart-app needs a name');
    my $st = status($tg);
    is(scalar(() = $st =~ /^demo\s+\d\s+\d+\s+ready\s/mg), 2, 'status: two ready instances')
        or diag $st;
    my @p = pids($tg);
    is(scalar @p, 2, 'two pids');

    my $js = decode_json($tg->http(GET => '/apps')->{body});
    my $inst = $js->{apps}{demo}{instances};
    is(scalar @$inst, 2, 'app_status JSON: two instances');
    is_deeply([sort map { $_->{pid} } @$inst], [sort { $a <=> $b } @p], 'with their pids');
    is_deeply([map { $_->{state} } @$inst], ['ready', 'ready'], 'ready');
    cmp_ok($inst->[0]{rss}, '>', 1 << 20, 'RSS');
    ok(defined $inst->[0]{uptime} && defined $inst->[0]{restarts} && defined $inst->[0]{cpu},
       'uptime, restarts, CPU');
    my $prom = $tg->http(GET => '/apps?format=prometheus')->{body};
    like($prom, qr/^tollgate_app_instance_ready\{app="demo",slot="0"\} 1$/m, 'Prometheus');
    like($prom, qr/^tollgate_app_instance_cpu_seconds_total\{app="demo",slot="0"\} \d/m, 'CPU');
    like($prom, qr/^tollgate_app_instance_state\{app="demo",slot="1",state="ready"\} 1$/m,
         'state as a label');
    if (`sh -c 'command -v promtool'`) {
        my $f = $tg->dir . '/metrics.txt';
        open(my $fh, '>', $f) or die;
        print $fh $prom;
        close $fh;
        my $lint = `promtool check metrics < $f 2>&1`;
        is($?, 0, 'promtool accepts the metrics') or diag $lint;
    }
    $tg->stop;
    ok(wait_until(sub { !alive(@p) }, 5), 'stop leaves no instance behind');
};

subtest 'readiness: no traffic before the app listens' => sub {
    my $tg = tg_start(<<"CONF", errors_ok => [qr/no live upstream server/]);
app slow {
    command node $APP;
    listen unix:%%DIR%%/sock/slow-%i.sock;
    env APP_DELAY_MS=2000;
    ready_timeout 10s;
}
server { listen %%PORT%%; location / { proxy_pass slow; } }
CONF
    my $t0 = time;
    my $r = $tg->http(GET => '/');
    is($r->{status}, 502, 'not ready: no live server');
    like(status($tg), qr/^slow\s+0\s+\d+\s+starting\s/m, 'status: starting');
    $r = get_ok($tg);
    is($r->{status}, 200, 'ready: served');
    cmp_ok(time - $t0, '>=', 1.5, 'only after the app listened');
};

subtest 'user: another user than the workers\' (root only)' => sub {
    plan skip_all => 'needs root' if $> != 0;
    my $uid = getpwnam('daemon') // return plan skip_all => 'no user daemon';
    my %o = (errors_ok => [qr/no live upstream server/], files => { 'run/.keep' => '' });
    my $tg = tg_start(<<"CONF", %o);
app other {
    command node $APP;
    user daemon;
    listen unix:%%DIR%%/run/other/o-%i.sock;
}
server { listen %%PORT%%; location / { proxy_pass other; } }
CONF
    my $r = get_ok($tg);
    is(decode_json($r->{body})->{uid}, $uid, 'runs as daemon');
    my @st = stat($tg->dir . '/run/other');
    is($st[4], $uid, 'the socket directory was made for it');
    my ($gid) = (getpwnam('nobody'))[3];
    is((stat($tg->dir . '/run/other/o-0.sock'))[5], (getgrnam('nogroup'))[2] // $gid,
       "its socket is given to the workers' group");
};

subtest 'TCP ports; kill -9 of the master: the instances exit' => sub {
    my $tg = tg_start(<<"CONF", no_log_check => 1);
app tcp {
    command node $APP;
    listen 127.0.0.1:%%PORT2%%;
}
server { listen %%PORT%%; location / { proxy_pass tcp; } }
CONF
    get_ok($tg);
    is($tg->http(GET => '/env/PORT')->{body}, $tg->port(2), 'PORT is the port of slot 0');
    my @p = pids($tg);
    is(scalar @p, 1, 'one instance');
    $tg->signal('KILL');
    ok(wait_until(sub { !alive(@p) }, 5), 'the instance died with the master');
};

my $srv = "server { listen %%PORT%%; }";
like(tg_conf_error("app a { listen 127.0.0.1:9000; }\n$srv"),
     qr/:1: app "a" has no "command"/, 'no command');
like(tg_conf_error("app a { command node x.js; }\n$srv"),
     qr/:1: app "a" has no "listen"/, 'no listen');
like(tg_conf_error("app a {\n command x;\n listen 1.2.3.4:80;\n instances 0;\n}\n$srv"),
     qr/:4: invalid "instances" "0"/, 'instances');
like(tg_conf_error("app a {\n command x;\n listen unix:/tmp/a.sock;\n}\n$srv"),
     qr/:3: "listen unix:\/tmp\/a.sock": a unix socket path needs one "%i"/, 'unix path needs %i');
like(tg_conf_error("app a {\n command x;\n listen 127.0.0.1:80;\n server 127.0.0.1:81;\n}\n$srv"),
     qr/:4: "server" is not allowed in an app block/, 'no server in an app');
like(tg_conf_error("app a {\n command x;\n listen 127.0.0.1:80;\n restart sometimes;\n}\n$srv"),
     qr/:4: invalid "restart" "sometimes"/, 'restart');
like(tg_conf_error("app a {\n command x;\n listen 127.0.0.1:80;\n restart_backoff 5s..1s;\n}\n$srv"),
     qr/:4: invalid "restart_backoff" "5s\.\.1s"/, 'restart_backoff');
like(tg_conf_error("app a {\n command x;\n listen 127.0.0.1:80;\n env_file /nonexistent.env;\n}\n$srv"),
     qr/:4: cannot open env_file "\/nonexistent.env"/, 'env_file');
like(tg_conf_error("app a {\n command x;\n listen 127.0.0.1:80;\n env 1X=2;\n}\n$srv"),
     qr/:4: invalid environment variable "1X=2"/, 'env');
like(tg_conf_error("app a {\n command x;\n listen 127.0.0.1:80;\n max_memory 10k;\n}\n$srv"),
     qr/:4: invalid "max_memory" "10k"/, 'max_memory');
like(tg_conf_error("upstream a { server 127.0.0.1:1; }\napp a {\n command x;\n listen 127.0.0.1:80;\n}\n$srv"),
     qr/:2: duplicate upstream "a"/, 'an app is an upstream: the names are shared');
like(tg_conf_error("upstream u {\n server 127.0.0.1:1;\n command x;\n}\n$srv"),
     qr/:3: "command" directive is not allowed here/, 'app directives only in app blocks');
like(tg_conf_error("app a {\n command x;\n listen 127.0.0.1:65535;\n instances 2;\n}\n$srv"),
     qr/:1: app "a": ports 65535\.\.65537/, 'ports out of range');
ok(tg_conf_ok("app a {\n command node x.js;\n listen 127.0.0.1:9000;\n balance least_conn;\n"
              . " keepalive 8;\n}\nserver { listen %%PORT%%; location / { proxy_pass a; } }"),
   'upstream options inside an app block');

done_testing;
