# Upstream groups: balancing, failures (refused, reset, garbage, slow),
# retries, Node's keep-alive timeout, passive and active health.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

sub name_of($r) { my $d = eval { decode_json($r->{body}) }; return $d ? $d->{name} : $r->{body} }

my @up = map { node_upstream('echo', env => { NAME => "u$_" }) } 0 .. 2;
my $dead = free_port();
my $hang = node_upstream('hang');
my $garbage = node_upstream('garbage');

my $tg = tg_start(<<"C", errors_ok => [qr/upstream|connect|refused|timed out|invalid/i]);
upstream weighted {
    server $up[0]{addr} weight=3;
    server $up[1]{addr};
}
upstream with_dead {
    server 127.0.0.1:$dead max_fails=1 fail_timeout=30s;
    server $up[2]{addr};
}
upstream hashed {
    server $up[0]{addr};
    server $up[1]{addr};
    server $up[2]{addr};
    balance hash \$arg_user;
}
upstream backup {
    server 127.0.0.1:$dead;
    server $up[1]{addr} backup;
}
upstream all_dead {
    server 127.0.0.1:$dead;
}
server {
    listen %%PORT%%;
    location /w/ { proxy_pass weighted; }
    location /d/ { proxy_pass with_dead; }
    location /h/ { proxy_pass hashed; }
    location /b/ { proxy_pass backup; }
    location /x/ { proxy_pass all_dead; }
    location /hang/ { proxy_pass $hang->{addr}; proxy_timeouts connect=1s read=500ms; }
    location /garbage/ { proxy_pass $garbage->{addr}; }
    location /close-mid-body { proxy_pass $up[0]{addr}; }
    location /reset { proxy_pass $up[0]{addr}; }
    location /chunked/ { proxy_pass $up[0]{addr}; }
}
C

# smooth weighted round robin: exactly 3:1, interleaved
my @names = map { name_of($tg->http(GET => "/w/$_")) } 1 .. 40;
is(scalar(grep { $_ eq 'u0' } @names), 30, 'weight 3 server gets 3/4');
is(scalar(grep { $_ eq 'u1' } @names), 10, 'weight 1 server gets 1/4');
my $seq = join '', map { substr($_, 1) } @names[0 .. 7];
unlike($seq, qr/000/ && qr/0000/, 'smooth: no long runs');

# connect refused -> next server, no error for the client
my @d = map { $tg->http(GET => "/d/$_") } 1 .. 10;
is(scalar(grep { $_->{status} == 200 } @d), 10, 'refused server skipped: all 200');
is(scalar(grep { name_of($_) eq 'u2' } @d), 10, 'all served by the live server');

# consistent hash: the same key always lands on the same server
my %by_user;
for my $u (1 .. 30) {
    my %seen = map { name_of($tg->http(GET => "/h/?user=$u")) => 1 } 1 .. 3;
    $by_user{$u} = join ',', keys %seen;
}
is(scalar(grep { !/,/ } values %by_user), 30, 'hash: one server per key');
my %spread = map { $_ => 1 } values %by_user;
ok(keys %spread >= 2, 'hash: keys spread over servers');

# backup used when the primary is down
is(name_of($tg->http(GET => '/b/1')), 'u1', 'backup takes over');

# nothing left: 502, fast
my $t0 = time;
my $r = $tg->http(GET => '/x/1');
is($r->{status}, 502, 'no live server: 502');
ok(time - $t0 < 3, 'and no hang');

# slow upstream: 504 after the read timeout
$t0 = time;
$r = $tg->http(GET => '/hang/1');
is($r->{status}, 504, 'read timeout: 504');
ok(time - $t0 < 3, 'after about proxy_timeouts read=') or diag time - $t0;

# garbage instead of HTTP: 502
$r = $tg->http(GET => '/garbage/1');
is($r->{status}, 502, 'invalid upstream response: 502');

# upstream closes mid-body: the client connection is closed, never a
# truncated response presented as complete
$r = $tg->http(GET => '/close-mid-body');
is($r->{status}, 200, 'mid-body close: header was relayed');
ok(length($r->{body}) == 10, 'client got the 10 bytes sent') or diag length $r->{body};
ok($r->{error}, 'and sees the body as incomplete');
ok($r->{closed}, 'and the connection is closed');
{
    my $c = $tg->keepalive;
    my $x = $c->request(GET => '/chunked/100/1');
    is($x->{status}, 200, 'keep-alive still fine after that');
}

# reset before answering: 502 for the client
$r = $tg->http(POST => '/reset', body => 'x');
is($r->{status}, 502, 'reset before the response: 502');

# a pooled connection that died (upstream restarted): retried transparently
{
    my $u = node_upstream('echo', env => { NAME => 'restart' });
    my $port = $u->{port};
    my $g = tg_start("server { listen %%PORT%%; location / { proxy_pass $u->{addr}; } }");
    is(name_of($g->http(GET => '/1')), 'restart', 'before restart');
    $u->stop;
    $u = node_upstream('echo', env => { NAME => 'restart2' }, port => $port);
    my @s = map { $g->http(POST => "/after$_", body => 'x')->{status} } 1 .. 5;
    is_deeply(\@s, [200, 200, 200, 200, 200], 'stale pooled connection retried, POST too');
    $g->stop;
    $u->stop;
}

# Node's keepAliveTimeout: requests spaced right at the timeout never fail
{
    my $u = node_upstream('echo', env => { KEEPALIVE_MS => 1000 });
    my $g = tg_start("server { listen %%PORT%%; location / { proxy_pass $u->{addr}; } }");
    my @fail;
    for my $i (1 .. 6) {
        my $x = $g->http(POST => "/ka$i", body => 'x');
        push @fail, $x->{status} if $x->{status} != 200;
        sleep(0.97 + 0.02 * $i);
    }
    is(scalar @fail, 0, 'no 502 around the upstream keep-alive timeout') or diag "@fail";
    $g->stop;
    $u->stop;
}

# active health checks: down when checks fail, up again when they pass
{
    my $a = node_upstream('echo', env => { NAME => 'ha' });
    my $b = node_upstream('echo', env => { NAME => 'hb' });
    my $bport = $b->{port};
    my $g = tg_start(<<"C2");
upstream hc {
    server $a->{addr};
    server $b->{addr};
    health_check path=/status/200 interval=200ms timeout=500ms fails=1 passes=1;
}
server { listen %%PORT%%; location / { proxy_pass hc; } }
C2
    my %n;
    $n{name_of($g->http(GET => "/$_"))}++ for 1 .. 10;
    is($n{hb}, 5, 'both servers in use');
    my $off = $g->log_offset;
    $b->stop;
    ok($g->wait_log(qr/server 127\.0\.0\.1:$bport is down/, 5, $off), 'health check marks it down');
    %n = ();
    $n{name_of($g->http(GET => "/$_"))}++ for 1 .. 10;
    is($n{ha}, 10, 'down server gets nothing');
    $off = $g->log_offset;
    $b = node_upstream('echo', env => { NAME => 'hb' }, port => $bport);
    ok($g->wait_log(qr/server 127\.0\.0\.1:$bport is up/, 5, $off), 'and up again');
    %n = ();
    $n{name_of($g->http(GET => "/$_"))}++ for 1 .. 10;
    is($n{hb}, 5, 'back in rotation');
    $g->stop;
}
$tg->stop;
done_testing;
