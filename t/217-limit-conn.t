# limit_conn: concurrent connections per client address, exact across two
# workers; places come back when connections close and when a worker holding
# some is killed; another address (PROXY protocol) has its own count.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use Tollgate::WS;

my $tg = tg_start(<<'C');
workers 2;
limit_conn_zone per_ip key=$remote_addr size=1m;
server {
    listen %%PORT%%;
    limit_conn per_ip 5;
    return 200 "ok $remote_addr";
}
server {
    listen %%PORT2%% proxy_protocol;
    real_ip_from 127.0.0.1;
    real_ip_header proxy_protocol;
    limit_conn per_ip 5;
    limit_conn_status 429;
    return 200 "ok $remote_addr";
}
C
# the kill -9 below logs [crit] lines by design; sanitizer reports are checked at the end
$tg->{opts}{no_log_check} = 1;
ok(wait_until(sub { $tg->worker_pids == 2 }, 10), 'two workers');

# Opens $n keep-alive connections, one request each; returns the clients
# and their statuses. The connections stay open.
sub open_conns($n, $port, $prefix = '') {
    my (@c, @st);
    for (1 .. $n) {
        my $k = Tollgate::Test::Client->new($port, timeout => 5);
        $k->write($prefix) if length $prefix;
        my $r = $k->request(GET => '/');
        push @c, $k;
        push @st, $r->{status} // 'none';
    }
    return (\@c, \@st);
}
sub count($st, $code) { return scalar grep { $_ eq $code } @$st }

my ($held, $st) = open_conns(20, $tg->port);
is(count($st, 200), 5, '20 connections from one address: exactly 5 served');
is(count($st, 503), 15, '... and 15 refused with 503');
my @refused = grep { $st->[$_] eq '503' } 0 .. $#$st;
is(scalar(grep { $held->[$_]->is_closed(2) } @refused), 15, 'the refused connections are closed');
my @served = grep { $st->[$_] eq '200' } 0 .. $#$st;
is($held->[$served[0]]->request(GET => '/again')->{status}, 200,
   'a served connection keeps serving (its place is not taken twice)');
my ($more, $st2) = open_conns(1, $tg->port);
is($st2->[0], 503, 'still full while the 5 stay open');
$_->close for @$held, @$more;

# closed connections give their places back (the close is seen asynchronously)
my $again;
ok(wait_until(sub {
    my ($c, $s) = open_conns(5, $tg->port);
    $again = $c;
    my $all = count($s, 200) == 5;
    unless ($all) { $_->close for @$c }
    return $all;
}, 10), 'after closing them, 5 new connections are served');
my ($sixth, $s6) = open_conns(1, $tg->port);
is($s6->[0], 503, '... and a sixth is refused');
$_->close for @$sixth;

# another address through the PROXY protocol: its own 5, status 429
my $pp = "PROXY TCP4 198.51.100.4 127.0.0.1 40000 80\r\n";
my ($pc, $pst) = open_conns(6, $tg->port(2), $pp);
is(count($pst, 200), 5, 'another address has its own count: 5 served while 127.0.0.1 holds 5');
is(count($pst, 429), 1, '... the sixth refused with limit_conn_status 429');
like($pc->[0]->request(GET => '/who')->{body}, qr/^ok 198\.51\.100\.4$/, 'counted under the PROXY address');
$_->close for @$pc;

# kill -9 a worker: the places of its connections come back after the respawn
my @w = $tg->worker_pids;
my @dead;
for my $victim (@w) {
    kill 'KILL', $victim;
    ok(wait_until(sub { my @n = $tg->worker_pids; @n == 2 && !grep { $_ == $victim } @n }, 10),
       'killed worker respawned');
    @dead = grep { $_->is_closed(2) } @$again;
    last if @dead; # this one held some of the 5
}
ok(@dead > 0, scalar(@dead) . ' of the 5 connections died with the killed worker');
my $alive = 5 - @dead;
# the killed worker's places are free, the survivors' still count: one more
# connection than the free places, exactly one refused (closes are seen
# asynchronously, hence the retries)
my $got = '';
ok(wait_until(sub {
    my ($c, $s) = open_conns(5 - $alive + 1, $tg->port);
    $_->close for @$c;
    $got = count($s, 200) . ' served, ' . count($s, 503) . ' refused';
    return $got eq (5 - $alive) . ' served, 1 refused';
}, 10), "after the respawn: $got, with $alive survivors still open");
$_->close for @$again;
ok($tg->wait_log(qr/limit_conn zone "per_ip": too many connections for "127\.0\.0\.1"/, 5),
   'refusals are logged');
unlike($tg->stderr . $tg->error_log, qr/AddressSanitizer|runtime error|\[error\]/,
       'no sanitizer report, no error line');
$tg->stop;

# every close path gives the place back: end of a tunnel, idle timeout,
# graceful stop of the old worker on reload
{
    my $ws_up = node_upstream('ws');
    my $conf = sub ($idle) { <<"C" };
limit_conn_zone z2 key=\$remote_addr size=64k;
server {
    listen %%PORT%%;
    limit_conn z2 2;
    timeouts idle=$idle;
    location /ws { proxy_pass $ws_up->{addr}; }
    location / { return 200 "ok"; }
}
C
    my $tg2 = tg_start($conf->('1s'));
    my @ws = map { Tollgate::WS->connect($tg2->port, '/ws') } 1 .. 2;
    is(scalar(grep { $_ && $_->{status} == 101 } @ws), 2, 'two WebSocket tunnels hold the 2 places');
    my (undef, $s) = open_conns(1, $tg2->port);
    is($s->[0], 503, 'a third connection is refused');
    $ws[0]->send_text('close'); # the upstream ends the tunnel
    ok(wait_until(sub { my ($c, $st) = open_conns(1, $tg2->port); $_->close for @$c; $st->[0] eq '200' }, 5),
       'the end of a tunnel gives its place back');
    $ws[1]->send_text('close');
    # closes are seen asynchronously (the tunnel's and each probe's):
    # retry until two connections are served at once, and keep them
    my $hold2 = sub {
        my $held;
        wait_until(sub {
            my ($c, $st) = open_conns(2, $tg2->port);
            return $held = $c if count($st, 200) == 2;
            $_->close for @$c;
            return 0;
        }, 5);
        return $held;
    };
    my $idle = $hold2->();
    ok($idle, 'both tunnels ended: two keep-alive connections served');
    ok(wait_until(sub { !grep { !$_->is_closed(0.1) } @{$idle // []} }, 5), 'the idle timeout closes them');
    my ($next, $nst) = open_conns(2, $tg2->port); # closed by the server: seen already
    is(count($nst, 200), 2, 'their places are free again');
    $_->close for @$next;

    $tg2->reload($conf->('60s'));
    ok(wait_until(sub { my ($c, $st) = open_conns(1, $tg2->port); $_->close for @$c; $st->[0] eq '200' }, 5),
       'reloaded');
    my $old = $hold2->();
    ok($old, 'two connections held');
    $tg2->reload($conf->('61s'));
    ok(wait_until(sub { !grep { !$_->is_closed(0.1) } @{$old // []} }, 5),
       'the old worker closes its idle connections on the graceful stop');
    my ($after, $ast) = open_conns(2, $tg2->port);
    is(count($ast, 200), 2, 'their places are free in the kept zone');
    $_->close for @$after;
    $tg2->stop;
}

like(tg_conf_error("server {\n listen %%PORT%%;\n limit_conn nope 5;\n}"),
     qr/:3: unknown limit_conn_zone "nope"/, 'unknown zone: file:line');
like(tg_conf_error("limit_conn_zone z key=\$remote_addr size=1m;\nserver {\n listen %%PORT%%;\n limit_conn z 0;\n}"),
     qr/:4: invalid number "0"/, 'a limit of 0 refused');
like(tg_conf_error("limit_conn_zone z key=\$remote_addr key=\$host;\nserver { listen %%PORT%%; }"),
     qr/:1: .*needs key= and size=/, 'zone without size refused');
like(tg_conf_error("limit_conn_zone z key=\$remote_addr size=1m;\nserver {\n listen %%PORT%%;\n location / { limit_conn z 1; }\n}"),
     qr/:4: .*limit_conn/, 'limit_conn in a location refused (it counts connections)');
done_testing;
