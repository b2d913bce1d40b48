# Lua containment: tg.sleep parks one request while the worker serves others;
# runtime errors answer 500 with file:line and a traceback in the log; the
# instruction and memory limits stop runaway scripts; syntax errors are config
# errors; a reload compiles changed scripts. The instruction limit is the
# interpreter's: these run with lua_jit off (t/390 covers the JIT and its watchdog).
use v5.36;
use Test::More;
use Time::HiRes qw(time);
use JSON::PP qw(decode_json);
use IO::Socket::INET;
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my %files = (
    'lua/s.lua' => <<'L',
local p = tg.req.path()
if p == "/sleep" then
  tg.ctx.t0 = tg.now()
  tg.sleep(1)
  tg.req.set_header("X-Slept", string.format("%.1f", tg.now() - tg.ctx.t0))
elseif p == "/error" then
  local function inner() error("boom") end
  inner()
elseif p == "/loop" then
  while true do end
elseif p == "/pcall-loop" then
  while true do pcall(function() while true do end end) end
elseif p == "/memory" then
  local t = {}
  for i = 1, 1e8 do t[i] = string.rep("x", 64) .. i end
elseif p == "/yield" then
  coroutine.yield()
end
L
    'lua/filter.lua' => "tg.sleep(1)\n",
);
my $tg = tg_start(<<"C", files => \%files, errors_ok => [qr/lua /]);
lua_jit off;
lua_memory_limit 16m;
server {
    listen %%PORT%%;
    lua_instruction_limit 1000000;
    location / { lua_access %%DIR%%/lua/s.lua; proxy_pass $up->{addr}; }
    location /plain/ { proxy_pass $up->{addr}; }
    location = /memory {
        lua_instruction_limit 0;
        lua_access %%DIR%%/lua/s.lua;
        proxy_pass $up->{addr};
    }
    location /filter/ { lua_header_filter %%DIR%%/lua/filter.lua; proxy_pass $up->{addr}; }
}
C

# one request sleeps 1 s; 20 others on the same single worker finish meanwhile
my $port = $tg->port;
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
my $t0 = time;
print $s "GET /sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
my @times;
for (1 .. 20) {
    my $t = time;
    my $r = $tg->http(GET => '/plain/x');
    push @times, time - $t if $r->{status} == 200;
}
is(scalar @times, 20, '20 requests served while one sleeps');
ok((sort { $b <=> $a } @times)[0] < 0.5, 'none of them waited for the sleeper');
local $/;
my $resp = <$s>;
like($resp, qr{^HTTP/1.1 200}, 'the sleeper completes');
like($resp, qr{"x-slept":"1\.\d"}, 'after about a second');
ok(time - $t0 >= 0.95, 'it did sleep');

my $off = $tg->log_offset;
my $r = $tg->http(GET => '/error');
is($r->{status}, 500, 'runtime error: 500');
my $line = $tg->wait_log(qr/\[error\].*lua access:/, 5, $off);
like($line, qr{lua/s\.lua:7: boom}, 'file:line: message');
like($line, qr{stack traceback:.*in function 'inner'}, 'with a traceback');
is($tg->http(GET => '/plain/x')->{status}, 200, 'the worker still serves');

$r = $tg->http(GET => '/loop');
is($r->{status}, 500, 'endless loop stopped');
ok($tg->wait_log(qr/instruction limit exceeded \(1000000\)/, 5, $off), 'instruction limit logged');
$r = $tg->http(GET => '/pcall-loop');
is($r->{status}, 500, 'a pcall cannot swallow the limit');

$r = $tg->http(GET => '/memory');
is($r->{status}, 500, 'memory hog stopped');
ok($tg->wait_log(qr/not enough memory \(lua_memory_limit 16777216 bytes\)/, 5, $off),
   'memory limit logged');
is($tg->http(GET => '/x')->{status}, 200, 'scripts run again after the memory error');

$r = $tg->http(GET => '/yield');
is($r->{status}, 500, 'a bare coroutine.yield is an error');

$r = $tg->http(GET => '/filter/x');
ok(!defined $r->{status} || $r->{status} == 500, 'tg.sleep in a header filter fails the response');
ok($tg->wait_log(qr/tg.sleep: not allowed in phase "header_filter"/, 5, $off), 'and says why');

my @pids = $tg->worker_pids;
is(scalar @pids, 1, 'the worker never died');

# reload: the changed script is compiled by the new workers
$off = $tg->reload(<<"C", files => {'lua/s.lua' => "tg.exit(200, 'v2')\n"});
lua_jit off;
lua_memory_limit 16m;
server {
    listen %%PORT%%;
    location / { lua_access %%DIR%%/lua/s.lua; proxy_pass $up->{addr}; }
}
C
ok(wait_until(sub { $tg->http(GET => '/x')->{body} eq 'v2' }, 10), 'reload picks up the changed script');

# a syntax error is a config error with both lines
my $err = tg_conf_error(<<'C', files => {'bad.lua' => "local x = 1\nlocal = 2\n"});
server {
    listen %%PORT%%;
    lua_access %%DIR%%/bad.lua;
}
C
like($err, qr{:3: \S+/bad\.lua:2: .*near '='}, 'syntax error: conf:line: script:line');
$err = tg_conf_error("server { listen %%PORT%%; lua_access %%DIR%%/missing.lua; }");
like($err, qr{:1: cannot open Lua script "\S+/missing\.lua": No such file}, 'missing script');
$err = tg_conf_error("server { listen %%PORT%%; location / { lua_access %%DIR%%/a.lua; lua_access %%DIR%%/b.lua; } }",
                     files => {'a.lua' => '', 'b.lua' => ''});
like($err, qr{duplicate}, 'duplicate phase directive');

done_testing;
