# The runtime API (`admin;`, modules/admin.c): listing upstreams and their
# servers, weights, drain (a WebSocket and a long download in flight finish,
# no new request reaches the server), down, delete, bad input, unknown names,
# allow/deny, two workers agreeing, and changes dropped by a reload.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use File::Temp ();
use POSIX ();
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::Test qw(http_request);
use Tollgate::WS;

my $m = node_upstream('multi', args => ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4']);
my $P = $m->{port};
my ($wa, $wb) = (node_upstream('ws', env => { NAME => 'wsA' }), node_upstream('ws', env => { NAME => 'wsB' }));

my $hash = `openssl passwd -6 -salt s4ltS4lt 'adm:in'`;
chomp $hash;
my $conf = <<"EOF";
workers 2;
upstream app { server 127.0.0.2:$P; server 127.0.0.3:$P; }
upstream dl { server 127.0.0.2:$P; server 127.0.0.3:$P backup; }
upstream ws { server $wa->{addr}; server $wb->{addr}; }
server {
    listen %%PORT%%;
    location / { proxy_pass app; }
    location /slow { proxy_pass dl; }
    location /ws { proxy_pass ws; }
    location /plain { proxy_pass ws; }
    location /admin/ { admin; allow 127.0.0.1; deny all; }
    location /closed/ { admin; deny all; }
    location /locked/ { admin; admin_auth "ops:$hash"; }
}
EOF
my $tg = tg_start($conf);

sub api($method, $path, $body = undef) {
    my $r = http_request($tg->port, $method, "/admin$path",
                         defined $body ? (body => $body, headers => ['Content-Type' => 'application/json']) : ());
    my $j = eval { decode_json($r->{body}) };
    return ($r->{status}, $j, $r);
}
sub spread($n, $path = '/') {
    my %s;
    $s{http_request($tg->port, 'GET', $path)->{body}}++ for 1 .. $n;
    return \%s;
}

# ---- GET ----
my ($st, $j, $r) = api(GET => '/upstreams');
is($st, 200, 'GET /upstreams');
like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON');
is_deeply([map { $_->{name} } @{$j->{upstreams}}], [qw(ws dl app)], 'every upstream')
    or diag explain $j;
($st, $j) = api(GET => '/upstreams/app');
is($st, 200, 'GET /upstreams/app');
is_deeply([map { [$_->{id}, $_->{address}, $_->{weight}, $_->{state}, $_->{source}] } @{$j->{servers}}],
          [[0, "127.0.0.2:$P", 1, 'up', 'config'], [1, "127.0.0.3:$P", 1, 'up', 'config']],
          'servers with id, address, weight, state, source');
($st, $j) = api(GET => '/upstreams/app/servers/1');
is($j->{address}, "127.0.0.3:$P", 'GET one server');
is((api(GET => '/upstreams/dl'))[1]{servers}[1]{state}, 'backup', 'a backup shows as such');

# ---- errors ----
is_deeply([(api(GET => '/upstreams/nope'))[0, 1]], [404, { error => 'no such upstream' }], 'unknown upstream: 404');
is((api(GET => '/upstreams/app/servers/7'))[0], 404, 'unknown server: 404');
is((api(GET => '/upstreams/app/servers/x'))[0], 404, 'a server id that is not a number: 404');
is((api(GET => '/other'))[0], 404, 'unknown path: 404');
($st, $j, $r) = api(PUT => '/upstreams/app');
is($st, 405, 'PUT: 405');
is($r->{headers}{allow}, 'GET, HEAD', 'with Allow');
($st, $j) = api(PATCH => '/upstreams/app/servers/0', '{"weight": 0}');
is_deeply([$st, $j->{field}], [400, 'weight'], 'weight 0: 400 naming the field');
($st, $j) = api(PATCH => '/upstreams/app/servers/0', '{"drain": "yes"}');
is_deeply([$st, $j->{field}], [400, 'drain'], 'drain not a boolean: 400 naming the field');
($st, $j) = api(PATCH => '/upstreams/app/servers/0', '{"colour": 1}');
is_deeply([$st, $j->{field}], [400, 'colour'], 'unknown field: 400 naming it');
($st, $j) = api(PATCH => '/upstreams/app/servers/0', '{"weight": 2');
is_deeply([$st, $j->{error}], [400, 'the body is not JSON'], 'bad JSON: 400');
is((api(PATCH => '/upstreams/app/servers/0', '[1]'))[0], 400, 'not an object: 400');
is_deeply([(api(POST => '/upstreams/app/servers', '{"address":"app.test:1"}'))[0, 1]],
          [400, { error => 'address must be "IP:PORT" (a name: use server NAME:PORT resolve)', field => 'address' }],
          'POST a name: 400 naming the field');
is((api(POST => '/upstreams/app/servers', '{"address":"127.0.0.4:1","weight":0}'))[1]{field}, 'weight',
   'POST a bad weight: 400 naming the field');
is((api(POST => '/upstreams/app/servers', '{"address":"127.0.0.4:1","x":1}'))[1]{field}, 'x',
   'POST an unknown field: 400 naming it');
is((api(POST => '/upstreams/app/servers', '{"address":"127.0.0.2:' . $P . '"}'))[0], 409,
   'POST an address the upstream has: 409');
is(http_request($tg->port, 'GET', '/closed/upstreams')->{status}, 403, 'deny all: 403');
use MIME::Base64 qw(encode_base64);
my $locked = sub ($cred, $method = 'GET', $body = undef) {
    http_request($tg->port, $method, '/locked/upstreams/app/servers/0',
                 headers => [defined $cred ? (Authorization => 'Basic ' . encode_base64($cred, '')) : ()],
                 defined $body ? (body => $body) : ());
};
$r = $locked->(undef);
is($r->{status}, 401, 'admin_auth: no credentials, 401');
like($r->{headers}{'www-authenticate'}, qr/^Basic realm="tollgate admin"/, 'with a Basic challenge');
is($locked->('ops:wrong')->{status}, 401, 'wrong password: 401');
is($locked->('nobody:adm:in')->{status}, 401, 'unknown user: 401');
is($locked->(undef, 'PATCH', '{"drain": true}')->{status}, 401, 'a PATCH without credentials changes nothing');
is($locked->('ops:adm:in')->{status}, 200, 'right credentials: 200');
is(decode_json($locked->('ops:adm:in')->{body})->{state}, 'up', 'and the refused PATCH did not apply');
like(tg_conf_error("server { listen %%PORT%%; location / { admin_auth 'a:$hash'; } }"),
     qr/:\d+: "admin_auth" needs "admin" in the same location/, 'admin_auth without admin');
like(tg_conf_error("server { listen %%PORT%%; location / { admin; admin_auth nocolon; } }"),
     qr/:\d+: invalid "admin_auth" "nocolon", expected USER:HASH/, 'admin_auth USER:HASH');

# ---- tollgate -s drain / undrain: the command line through the admin location ----
{
    my $bin = $ENV{TG_BIN} // Tollgate::Test::repo_root() . '/build/tollgate';
    my $cf = $tg->conf_file;
    my $out = `$bin -c $cf -s drain app 127.0.0.3:$P 2>&1`;
    is($? >> 8, 0, '-s drain: exit 0');
    like($out, qr/^upstream app server 127\.0\.0\.3:$P \(id 1\): draining/m, '-s drain: says what it did');
    is((api(GET => '/upstreams/app/servers/1'))[1]{state}, 'draining', '-s drain: the server drains');
    $out = `$bin -c $cf -s undrain app 1 2>&1`;
    like($out, qr/\(id 1\): back in rotation/, '-s undrain by id');
    is((api(GET => '/upstreams/app/servers/1'))[1]{state}, 'up', '-s undrain: the server is up');
    $out = `$bin -c $cf -s drain app 10.9.9.9:1 2>&1`;
    is($? >> 8, 1, '-s drain of an unknown server: exit 1');
    like($out, qr/no such server in that upstream/, 'and says so');
    like(`$bin -c $cf -s drain nope x 2>&1`, qr/no such upstream/, '-s drain of an unknown upstream');
    like(`$bin -c $cf -s drain app 2>&1`, qr/-s drain UPSTREAM SERVER/, '-s drain needs two arguments');
}

# ---- weight changes the spread, in both workers ----
# two workers, each its own round robin: close to even, not exact
sub even($s, $n) { $s->{"127.0.0.2:$P"} + $s->{"127.0.0.3:$P"} == $n && abs($s->{"127.0.0.2:$P"} - $s->{"127.0.0.3:$P"}) <= 4 }
ok(even(spread(20), 20), 'equal weights');
($st, $j) = api(PATCH => '/upstreams/app/servers/0', '{"weight": 3}');
is_deeply([$st, $j->{weight}, $j->{configured_weight}], [200, 3, 1], 'PATCH weight');
my $s = spread(40);
ok($s->{"127.0.0.2:$P"} >= 27 && $s->{"127.0.0.2:$P"} <= 33, 'weight 3:1 in the spread')
    or diag explain $s;

# ---- drain: two workers, new connections all avoid it ----
($st, $j) = api(PATCH => '/upstreams/app/servers/0', '{"drain": true}');
is_deeply([$st, $j->{state}], [200, 'draining'], 'PATCH drain');
is_deeply(spread(20), { "127.0.0.3:$P" => 20 }, 'no new request reaches a draining server (both workers)');
($st, $j) = api(PATCH => '/upstreams/app/servers/0', '{"drain": false, "weight": null}');
is_deeply([$st, $j->{state}, $j->{weight}], [200, 'up', 1], 'drain false and weight null undo it');
ok(even(spread(20), 20), 'back in the rotation');
($st, $j) = api(PATCH => '/upstreams/app/servers/1', '{"down": true}');
is_deeply([$st, $j->{state}], [200, 'down'], 'PATCH down');
is_deeply(spread(6), { "127.0.0.2:$P" => 6 }, 'a down server takes nothing');
api(PATCH => '/upstreams/app/servers/1', '{"down": false}');

# ---- drain with a long download and a WebSocket in flight ----
my $slow = "$tg->{dir}/slow.txt";
my $pid = fork() // die;
if ($pid == 0) {
    my $x = eval { http_request($tg->port, 'GET', '/slow?ms=2000', timeout => 10) };
    open(my $fh, '>', $slow);
    print $fh $x ? "$x->{status} $x->{body}" : "none $@";
    close($fh);
    POSIX::_exit(0);
}
my $ws = Tollgate::WS->connect($tg->port, '/ws') or BAIL_OUT("ws: $Tollgate::WS::error");
my (undef, $hello) = $ws->recv;
my ($name) = $hello =~ /hello from (ws[AB])/;
ok($name, "a WebSocket to $name");
my $wid = $name eq 'wsA' ? 0 : 1;
sleep 0.4;
is((api(PATCH => '/upstreams/dl/servers/0', '{"drain": true}'))[0], 200, 'drain the download\'s server');
is((api(PATCH => "/upstreams/ws/servers/$wid", '{"drain": true}'))[0], 200, 'drain the WebSocket\'s server');
($st, $j) = api(GET => "/upstreams/ws/servers/$wid");
is($j->{state}, 'draining', 'shown draining');
$ws->send_text('still there');
is(($ws->recv(3))[1], 'echo:still there', 'the WebSocket on the drained server keeps working');
my %p;
$p{http_request($tg->port, 'GET', '/plain')->{body}}++ for 1 .. 6;
my $other = $name eq 'wsA' ? 'wsB' : 'wsA';
is_deeply(\%p, { "$other plain /plain\n" => 6 }, 'new requests go to the other server');
is_deeply(spread(3, '/slow?ms=1'), { "\n127.0.0.3:$P" => 3 }, 'the backup serves the drained primary\'s traffic');
waitpid($pid, 0);
like(do { open(my $fh, '<', $slow); local $/; <$fh> }, qr/^200 \.+\n127\.0\.0\.2:$P$/,
     'the long download on the drained server finished whole');
$ws->send_text('bye');
my ($op, $payload) = $ws->recv(3);
is($op, 8, 'the WebSocket closes normally');
$ws->send_frame(8, $payload // '');
ok($ws->is_closed(3), 'and its tunnel ends');

# ---- POST: a server added at run time, in both workers ----
($st, $j) = api(POST => '/upstreams/app/servers', qq({"address": "127.0.0.4:$P", "weight": 2}));
is_deeply([$st, $j->{id}, $j->{address}, $j->{weight}, $j->{source}], [201, 2, "127.0.0.4:$P", 2, 'api'],
          'POST a server: 201, id 2, source api');
ok($tg->wait_log(qr/#0: upstream app: server 127\.0\.0\.4:$P added \(runtime API\)/, 3)
   && $tg->wait_log(qr/#1: upstream app: server 127\.0\.0\.4:$P added \(runtime API\)/, 3),
   'both workers took it');
$s = spread(40);
ok($s->{"127.0.0.4:$P"} >= 14 && $s->{"127.0.0.4:$P"} <= 26, "the added server takes its share (weight 2 of 4): $s->{\"127.0.0.4:$P\"}/40")
    or diag explain $s;
is((api(POST => '/upstreams/app/servers', qq({"address": "127.0.0.4:$P"})))[0], 409, 'added twice: 409');
($st, $j) = api(DELETE => '/upstreams/app/servers/2');
is($st, 200, 'DELETE the added server');
ok(!grep({ $_ eq "127.0.0.4:$P" } keys %{spread(8)}), 'it takes nothing more');

# ---- DELETE ----
($st, $j) = api(DELETE => '/upstreams/app/servers/1');
is_deeply([$st, $j->{state}], [200, 'removed'], 'DELETE');
is((api(GET => '/upstreams/app/servers/1'))[0], 404, 'a removed server is gone');
is_deeply(spread(4), { "127.0.0.2:$P" => 4 }, 'and takes no traffic');

# ---- a reload drops the changes, and says so ----
my $off = $tg->reload($conf);
ok($tg->wait_log(qr/admin API's changes to upstream servers are dropped/, 10, $off), 'reload: logged');
ok($tg->wait_log(qr/all 2 workers up|reload.*done|workers up/i, 10, $off), 'reloaded');
ok(wait_until(sub { (api(GET => '/upstreams/app'))[1]{servers}[1]{state} eq 'up' }, 10),
   'the deleted server is back after the reload');
$tg->stop;

# ---- admin_persist: changes survive a reload and a restart ----
my $state = File::Temp::tempdir('tg-admin-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod(0777, $state); # the workers' user writes it
my $pconf = <<"EOF";
admin_persist $state/admin.json;
upstream app { server 127.0.0.2:$P; server 127.0.0.3:$P; }
server { listen %%PORT%%; location / { proxy_pass app; } location /admin/ { admin; } }
EOF
$tg = tg_start($pconf);
is((api(PATCH => '/upstreams/app/servers/0', '{"weight": 4}'))[0], 200, 'persist: PATCH weight');
is((api(DELETE => '/upstreams/app/servers/1'))[0], 200, 'persist: DELETE');
is((api(POST => '/upstreams/app/servers', qq({"address": "127.0.0.4:$P", "weight": 3})))[0], 201, 'persist: POST');
my $file = decode_json(do { open(my $fh, '<', "$state/admin.json") or die "$state/admin.json: $!"; local $/; <$fh> });
is_deeply($file, { upstreams => { app => {
    "127.0.0.2:$P" => { weight => 4, drain => JSON::PP::false, down => JSON::PP::false, removed => JSON::PP::false, added => JSON::PP::false },
    "127.0.0.3:$P" => { weight => undef, drain => JSON::PP::false, down => JSON::PP::false, removed => JSON::PP::true, added => JSON::PP::false },
    "127.0.0.4:$P" => { weight => 3, drain => JSON::PP::false, down => JSON::PP::false, removed => JSON::PP::false, added => JSON::PP::true } } } },
    'the file holds the changes, by server name');
ok(!-e "$state/admin.json.tmp", 'written through a temporary file, renamed');
$off = $tg->reload($pconf);
ok($tg->wait_log(qr/admin_persist ".*admin\.json": 3 server changes restored, 0 skipped/, 10, $off),
   'reload: the changes are restored');
ok(wait_until(sub { my $s = (api(GET => '/upstreams/app'))[1]; $s && @{$s->{servers}} == 2 && $s->{servers}[0]{weight} == 4
                    && $s->{servers}[1]{address} eq "127.0.0.4:$P" && $s->{servers}[1]{weight} == 3 }, 10),
   'after the reload: weight 4, the deleted server still gone, the added one back');
$tg->stop;
$tg = tg_start($pconf);
($st, $j) = api(GET => '/upstreams/app');
is_deeply([map { [$_->{id}, $_->{weight}, $_->{source}] } @{$j->{servers}}], [[0, 4, 'config'], [2, 3, 'api']],
          'and after a restart');
$tg->stop;
open(my $bad, '>', "$state/admin.json") or die;
print $bad '{"upstreams": ';
close($bad);
$tg = tg_start($pconf);
ok(wait_until(sub { ($tg->stderr . $tg->error_log) =~ /admin_persist ".*admin\.json": .* not restored/ }, 5),
   'a broken file is logged');
is((api(GET => '/upstreams/app'))[1]{servers}[0]{weight}, 1, 'and ignored');
like(tg_conf_error("admin_persist /a; admin_persist /b;"), qr/:\d+: "admin_persist" directive is duplicate/,
     'admin_persist twice');
done_testing;
