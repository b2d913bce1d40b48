# The stall watchdog: with lua_jit on, `while true do end` in an access
# hook becomes a compiled trace the instruction limit cannot stop; the
# master kills that worker after worker_stall_timeout and respawns it, the
# error log names the script and line, and a client of the other worker is
# served all along. With lua_jit off the instruction limit answers 500.
use v5.36;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;

my %files = (
    'loop.lua' => <<'L',
local n = 0
while true do n = n + 1 end
L
    'who.lua' => <<'L',
tg.log("warn", "who ", tg.req.header("X-Conn"))
tg.exit(200, "ok\n")
L
);
my $tg = tg_start(<<'C', files => \%files,
workers 2;
worker_stall_timeout 2s;
server {
    listen %%PORT%%;
    location = /loop { lua_access %%DIR%%/loop.lua; return 200 "never\n"; }
    location = /who { lua_access %%DIR%%/who.lua; }
    location / { return 200 "plain\n"; }
}
C
    errors_ok => [qr/worker \d+ stalled for/, qr/worker \d+ exited on signal 9/]);
my @workers = $tg->worker_pids;
wait_until(sub { @workers = $tg->worker_pids; @workers == 2 }, 10);
is(scalar @workers, 2, 'two workers');

# which worker serves a connection: the /who script logs its tag, and the
# log line carries the worker's pid
sub who($conn, $tag) {
    my $off = $tg->log_offset;
    my $r = $conn->request(GET => '/who', headers => { 'X-Conn' => $tag }, timeout => 5);
    return undef unless ($r->{status} // 0) == 200;
    my $line = $tg->wait_log(qr/lua: who \Q$tag\E$/m, 5, $off) // '';
    return $line =~ /\] (\d+)#\d+: lua: who/ ? $1 : undef;
}

my $loop_conn = $tg->keepalive(timeout => 5);
my $stalled = who($loop_conn, 'loop');
ok($stalled, "the looping connection is served by worker $stalled");
my ($other, $other_pid);
for my $i (1 .. 40) {
    my $c = $tg->keepalive(timeout => 5);
    my $pid = who($c, "c$i");
    if (defined $pid && $pid != $stalled) { ($other, $other_pid) = ($c, $pid); last }
    $c->close;
}
ok($other, "a connection on the other worker ($other_pid)") or BAIL_OUT('no second worker');

# the endless loop, on the first worker; its answer never comes
my $off = $tg->log_offset;
$loop_conn->write("GET /loop HTTP/1.1\r\nHost: x\r\n\r\n");
my $t0 = time;
my ($ok, $slow, $n, $replaced_at) = (0, 0, 0, undef);
while (time < $t0 + 6) {
    my $t = time;
    my $r = $other->request(GET => '/plain', timeout => 2);
    $n++;
    $ok++ if ($r->{status} // 0) == 200 && $r->{body} eq "plain\n";
    $slow++ if time - $t > 0.5;
    if (!defined $replaced_at) {
        my @now = grep { $_ != $stalled } $tg->worker_pids;
        $replaced_at = time - $t0 if @now == 2;
    }
    last if defined $replaced_at && time > $t0 + 3.5;
    sleep 0.1;
}
ok(defined $replaced_at, 'the stalled worker was replaced');
cmp_ok($replaced_at // 99, '<=', 2 + 1, 'within worker_stall_timeout + 1 s')
    and note sprintf('replaced after %.2f s', $replaced_at);
cmp_ok($replaced_at // 0, '>=', 1.9, 'not before the timeout');
is($ok, $n, "the other worker's client: all $n requests answered meanwhile");
is($slow, 0, 'none of them slow');
my $line = $tg->wait_log(qr/worker $stalled stalled for/, 5, $off) // '';
like($line, qr{worker $stalled stalled for [\d.]+s in \S*loop\.lua:2 \(access\)},
     'the log names the script, the line and the phase');
like($tg->error_log, qr/worker $stalled exited on signal 9/, 'killed with SIGKILL');

# the respawned worker serves, with the script still there
my $after = $tg->keepalive(timeout => 5);
is($after->request(GET => '/plain')->{status}, 200, 'served after the respawn');
$tg->stop;

# ---- lua_jit off: the instruction limit answers ------------------------------------

my $tg2 = tg_start(<<'C', files => \%files, errors_ok => [qr/instruction limit exceeded/]);
workers 1;
lua_jit off;
worker_stall_timeout 2s;
server {
    listen %%PORT%%;
    lua_instruction_limit 1000000;
    location = /loop { lua_access %%DIR%%/loop.lua; return 200 "never\n"; }
}
C
my ($w) = $tg2->worker_pids;
my $t = time;
my $r = $tg2->http(GET => '/loop', timeout => 5);
is($r->{status}, 500, 'lua_jit off: 500');
cmp_ok(time - $t, '<', 1.5, 'lua_jit off: stopped at once by the instruction limit');
like($tg2->error_log, qr/loop\.lua:\d+.*instruction limit exceeded \(1000000\)|instruction limit exceeded \(1000000\)/,
     'lua_jit off: instruction limit exceeded');
is(($tg2->worker_pids)[0], $w, 'lua_jit off: the same worker serves on');
$tg2->stop;

like(tg_conf_error("lua_jit maybe;\n"), qr/:1: .*lua_jit/, 'lua_jit: bad value, file:line');
like(tg_conf_error("worker_stall_timeout soon;\n"), qr/:1: .*worker_stall_timeout/,
     'worker_stall_timeout: bad value, file:line');

done_testing;
