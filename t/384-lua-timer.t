# tg.timer and lua_init_worker: a worker's init script starts timers (once,
# repeating, failing), requests start and cancel more; lua_max_timers bounds
# them; a runaway callback hits the instruction limit; request functions and
# yields are refused in a timer; on reload the old worker's timers stop while
# it still drains a request, and the new worker's start.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use IO::Socket::INET;
use lib 't/lib';
use Tollgate::Test;

sub init_lua($gen) {
    return <<"L";
local st = tg.shared.st
st:set("init_phase", tg.phase())
tg.timer.every(0.05, function(tag) st:incr("ticks:" .. tag, 1, 0) end, "$gen")
tg.timer.at(0.1, function(a, b)
  st:set("once", a .. "+" .. tostring(b))
  st:set("timer_phase", tg.phase())
end, "x", 42)
tg.timer.every(0.05, function() st:incr("errs", 1, 0); error("boom in a timer") end)
L
}

my $conf = <<"C";
lua_shared_dict st 1m;
lua_init_worker %%DIR%%/init.lua;
lua_max_timers 6;
lua_jit off; # the instruction limit below is the interpreter's
lua_instruction_limit 100000;
server {
    listen %%PORT%%;
    location /state { lua_access %%DIR%%/state.lua; }
    location /start { lua_access %%DIR%%/start.lua; }
    location /slow { lua_access %%DIR%%/slow.lua; }
}
C
my %files = (
    'init.lua' => init_lua('g1'),
    'state.lua' => <<'L',
local st = tg.shared.st
local out = {}
for _, k in ipairs({"init_phase", "ticks:g1", "ticks:g2", "once", "timer_phase", "errs",
                    "from_request", "cancelled_ran", "req_err", "loop_after", "slow_started"}) do
  out[k] = st:get(k)
end
tg.exit(200, tg.json.encode(out))
L
    'start.lua' => <<'L',
local st = tg.shared.st
local what = tg.req.arg("what")
if what == "at" then
  tg.timer.at(0.05, function(v) st:set("from_request", v) end, "yes")
  tg.exit(200, "started")
elseif what == "cancel" then
  local h = tg.timer.at(0.05, function() st:set("cancelled_ran", "yes") end)
  local c1, c2 = h:cancel(), h:cancel()
  tg.exit(200, tostring(c1) .. "," .. tostring(c2))
elseif what == "limit" then
  local hs, n, err = {}, 0, nil
  local before = tg.timer.count()
  while true do
    local h, e = tg.timer.at(100, function() end)
    if not h then err = e break end
    n = n + 1
    hs[n] = h
  end
  local full = tg.timer.count()
  for _, h in ipairs(hs) do h:cancel() end
  tg.exit(200, before .. " " .. n .. " " .. full .. " " .. tg.timer.count() .. " " .. err)
elseif what == "loop" then
  tg.timer.at(0, function() while true do end end)
  tg.timer.at(0.05, function() st:set("loop_after", "ran") end)
  tg.exit(200, "started")
elseif what == "req" then
  tg.timer.at(0, function() local ok, e = pcall(tg.req.method); st:set("req_err", e) end)
  tg.exit(200, "started")
elseif what == "yield" then
  tg.timer.at(0, function() coroutine.yield() end)
  tg.exit(200, "started")
elseif what == "bad" then
  local ok, e = pcall(tg.timer.every, 0, function() end)
  tg.exit(200, e)
end
tg.exit(400)
L
    'slow.lua' => "tg.shared.st:set('slow_started', true)\ntg.sleep(3)\ntg.exit(200, 'slow done')\n",
);
my $tg = tg_start($conf, files => \%files,
    errors_ok => [qr/boom in a timer/, qr/instruction limit exceeded/, qr/attempt to yield/]);

sub dict() { my $r = $tg->http(GET => "/state"); diag $r->{body} if $r->{status} != 200; decode_json($r->{body}) }

ok(wait_until(sub { (dict()->{'ticks:g1'} // 0) >= 5 }, 10), 'every: the init script\'s timer repeats');
my $s = dict();
is($s->{init_phase}, 'init_worker', 'lua_init_worker ran, tg.phase() is init_worker');
is($s->{once}, 'x+42', 'at: fired once with its arguments');
is($s->{timer_phase}, 'timer', 'tg.phase() in a timer');
ok($tg->wait_log(qr/\[error\].*lua timer: \S+init\.lua:\d+: boom in a timer stack traceback/, 5),
   'a failing timer is logged with file:line and traceback');
my $errs = $s->{errs};
ok(wait_until(sub { dict()->{errs} >= $errs + 3 }, 10), 'and an every timer goes on after an error');

is($tg->http(GET => '/start?what=at')->{body}, 'started', 'a request starts a timer');
ok(wait_until(sub { (dict()->{from_request} // '') eq 'yes' }, 5), 'which runs after the request');

is($tg->http(GET => '/start?what=cancel')->{body}, 'true,false', 'cancel: true once, then false');

# lua_max_timers 6: the init script's two every timers are pending
is($tg->http(GET => '/start?what=limit')->{body}, '2 4 6 2 too many timers (lua_max_timers 6)',
   'lua_max_timers bounds the pending timers; cancel frees slots');

like($tg->http(GET => '/start?what=bad')->{body}, qr/tg\.timer\.every: invalid interval/,
     'a zero interval raises');

my $off = $tg->log_offset;
$tg->http(GET => '/start?what=loop');
ok($tg->wait_log(qr/lua timer: instruction limit exceeded \(100000\)/, 10, $off),
   'a runaway timer stops at the instruction limit');
ok(wait_until(sub { (dict()->{loop_after} // '') eq 'ran' }, 5), 'the next timer runs');

$tg->http(GET => '/start?what=req');
ok(wait_until(sub { defined dict()->{req_err} }, 5), 'the timer ran');
like(dict()->{req_err}, qr/tg\.req\.method: no request in phase "timer"/,
     'request functions raise in a timer');
$off = $tg->log_offset;
$tg->http(GET => '/start?what=yield');
ok($tg->wait_log(qr/lua timer: attempt to yield in phase "timer"/, 5, $off), 'a timer may not yield');
is($tg->http(GET => '/state')->{status}, 200, 'the worker serves on');

# reload: the old worker drains a slow request; its timers stop at once
my @old = $tg->worker_pids;
my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Timeout => 5)
    or die "connect: $!";
print $c "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
ok(wait_until(sub { dict()->{slow_started} }, 5), 'the old worker serves a slow request');
$tg->reload($conf, files => {%files, 'init.lua' => init_lua('g2')});
ok(wait_until(sub { (dict()->{'ticks:g2'} // 0) >= 1 }, 10), 'the new worker\'s init script started its timers');
my $g1 = dict()->{'ticks:g1'};
my $g2 = dict()->{'ticks:g2'};
ok(wait_until(sub { dict()->{'ticks:g2'} >= $g2 + 8 }, 10), 'new timers tick');
ok(kill(0, $old[0]), 'the old worker still drains its request');
is(dict()->{'ticks:g1'}, $g1, 'while its timers have stopped');
$c->blocking(1);
my $buf = '';
my $deadline = time + 10;
while (time < $deadline && $buf !~ /slow done/) { last unless sysread($c, $buf, 4096, length $buf) }
like($buf, qr/slow done/, 'the drained request finished');
close $c;
$tg->stop;

# an init script that fails: logged, the worker serves
my $tg2 = tg_start(<<"C", errors_ok => [qr/init failed/], files => {
lua_init_worker %%DIR%%/bad.lua;
server { listen %%PORT%%; location / { lua_access %%DIR%%/ok.lua; } }
C
    'bad.lua' => "error('init failed')\n", 'ok.lua' => "tg.exit(200, 'ok')\n"});
ok($tg2->wait_log(qr/lua init_worker: \S+bad\.lua:1: init failed/, 5), 'init_worker error logged');
is($tg2->http(GET => '/')->{body}, 'ok', 'the worker serves anyway');
$tg2->stop;

# config errors
like(tg_conf_error("lua_max_timers -1;\nserver { listen %%PORT%%; }"),
     qr/:1: invalid number "-1" in "lua_max_timers"/, 'lua_max_timers: file:line');
like(tg_conf_error("lua_init_worker %%DIR%%/none.lua;\nserver { listen %%PORT%%; }"),
     qr/:1: cannot open Lua script/, 'lua_init_worker: a missing file');
like(tg_conf_error("server { listen %%PORT%%; lua_init_worker x.lua; }"),
     qr/:1: .*lua_init_worker/, 'lua_init_worker: main scope only');
done_testing;
