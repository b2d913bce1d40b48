# tg.redis against real redis-servers started here: one with requirepass
# (AUTH, SELECT), one without. Commands and their reply mapping (tg.null,
# error replies), pipelines, a URL written in a script, a rate-limit
# backend's pool, a wrong password, a server that is down (prompt nil,
# err), a server killed mid-call, a command timeout, timers and
# lua_init_worker waiting on Redis, the log phase (fire and forget), the
# session example, and 200 concurrent script calls on 2 workers while a
# plain request stays fast. rediss:// is refused at config time: Debian's
# hiredis (0.14) has no hiredis_ssl.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use IO::Socket::INET;
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;

plan skip_all => 'redis-server not installed' unless grep { -x "$_/redis-server" } split /:/, $ENV{PATH};

sub redis_start(@args) {
    my $port = free_port();
    my $dir = File::Temp::tempdir('tg-redis-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $pid = Tollgate::Test::_spawn(['redis-server', '--port', $port, '--bind', '127.0.0.1',
                                      '--save', '', '--appendonly', 'no', '--dir', $dir, @args],
                                     "$dir/redis.log");
    my %o = @args;
    my $r = { port => $port, pid => $pid, pass => $o{'--requirepass'} };
    wait_until(sub { redis_cmd($r, 'PING') eq 'PONG' }, 10)
        or die "redis-server did not start:\n" . `cat $dir/redis.log`;
    return $r;
}

# One command (after AUTH and SELECT when asked): the reply's first line
# without its type byte, or a bulk string's contents.
sub redis_cmd($r, @args) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $r->{port}, Timeout => 2)
        or return '';
    my @cmds = ([@args]);
    unshift @cmds, ['SELECT', $r->{db}] if $r->{db};
    unshift @cmds, ['AUTH', $r->{pass}] if $r->{pass};
    my $line;
    for my $c (@cmds) {
        print $s '*' . scalar(@$c) . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @$c);
        $line = <$s> // '';
        $line =~ s/\r?\n$//;
        if ($line =~ /^\$(-?\d+)$/) {
            $line = $1 < 0 ? '(nil)' : (<$s> // '') =~ s/\r?\n$//r;
        } else {
            $line =~ s/^[+:\-]//;
        }
    }
    return $line;
}

my $auth = redis_start('--requirepass', 's3cret');
my $plain = redis_start();
my $dead = free_port();
my ($ap, $pp) = ($auth->{port}, $plain->{port});

my @errors_ok = (qr/redis 127\.0\.0\.1:$dead/, qr/redis 127\.0\.0\.1:$pp/,
                 qr/redis 127\.0\.0\.1:$ap\b.*(closed|handshake failed)/);
my $tg = tg_start(<<"C", errors_ok => \@errors_ok,
workers 2;
lua_redis sess redis://:s3cret\@127.0.0.1:$ap/3;
lua_redis wrong redis://:nope\@127.0.0.1:$ap;
lua_redis down redis://127.0.0.1:$dead;
lua_redis plain redis://127.0.0.1:$pp;
lua_shared_dict d 1m;
lua_init_worker %%DIR%%/init.lua;
lua_package_path "%%DIR%%/?.lua;;";
rate_limit_zone rl key=\$remote_addr rate=1000r/s backend=redis://127.0.0.1:$pp/5;
server {
    listen %%PORT%%;
    location /call { lua_access %%DIR%%/call.lua; }
    location /plain { return 200 "plain"; }
    location /logged { lua_log %%DIR%%/log.lua; return 200 "logged"; }
    location /app/ {
        lua_access %%ROOT%%/lua/examples/session_redis.lua;
        return 200 "user=\$http_x_user";
    }
}
C
    files => {
    'session_config.lua' => "return { redis = 'sess', cookie = 'sid', prefix = 'session:', timeout = 1 }\n",
    'init.lua' => <<'L',
-- at worker start: wait on Redis (the pool is still connecting)
local red = tg.redis.connect("sess")
local n = red:incr("boot")
tg.shared.d:set("boot", n or -1, 0)
L
    'log.lua' => <<'L',
local red = tg.redis.connect("sess")
local ok = red:set("logged:" .. tg.req.arg("id"), tg.req.path())
tg.shared.d:set("log-ret", tostring(ok), 0)
L
    'call.lua' => <<"L",
local w = tg.req.arg("w")
local out = {}
local function done() tg.exit(200, tg.json.encode(out), {["Content-Type"] = "application/json"}) end
local function enc(v)
  if v == tg.null then return "NULL" end
  return v
end
local red = tg.redis.connect("sess")
if w == "basic" then
  out.set = red:set("k", "v1")
  out.get = red:get("k")
  out.missing = enc(red:get("nope"))
  out.incr = red:incr("n")
  out.expire = red:expire("n", 100)
  out.hset = red:hset("h", "f", "x")
  out.hget = red:hget("h", "f")
  out.eval = red:eval("return {KEYS[1], ARGV[1], 7}", 1, "key", "arg")
  out.call = red:call("TTL", "n")
  out.del = red:del("k", "h")
  local v, err = red:call("LPUSH", "n", "x")
  out.wrongtype = {enc(v or tg.json.null), err}
  local v2, err2 = red:call("NOSUCHCMD")
  out.unknown = err2
  out.db = red:call("CLIENT", "INFO")
elseif w == "pipeline" then
  local res, err = red:pipeline(function(p)
    p:set("pk", "1")
    p:incr("pk")
    p:get("pk")
    p:get("pmissing")
    p:call("HSET", "pk", "x", "y")
    p:call("MGET", "pk", "pmissing")
  end)
  out.err = err
  for i, v in ipairs(res) do
    if type(v) == "table" then
      for j, x in ipairs(v) do v[j] = enc(x) end
    end
    res[i] = enc(v)
  end
  out.res = res
  out.empty = #red:pipeline(function(p) end)
elseif w == "literal" then
  local r2 = tg.redis.connect("redis://127.0.0.1:$pp/2")
  out.set = r2:set("lit", "yes")
  out.get = r2:get("lit")
  local r3 = tg.redis.connect("127.0.0.1:$pp/5")
  out.rl = r3:call("CLIENT", "INFO")
  local u = "redis://127.0.0.1:" .. "1/9" -- not a literal: unknown
  out.unknown, out.unknown_err = tg.redis.connect(u)
elseif w == "wrong" then
  local t0 = tg.now()
  out.v, out.err = tg.redis.connect("wrong"):get("k")
  out.took = tg.now() - t0
elseif w == "down" then
  local t0 = tg.now()
  out.v, out.err = tg.redis.connect("down"):get("k")
  out.pv, out.perr = tg.redis.connect("down"):pipeline(function(p) p:get("a") end)
  out.took = tg.now() - t0
elseif w == "timeout" then
  local p = tg.redis.connect("plain", { timeout = 0.3 })
  local t0 = tg.now()
  out.v, out.err = p:call("BLPOP", "never", 5)
  out.took = tg.now() - t0
elseif w == "block" then
  local p = tg.redis.connect("plain", { timeout = 20 })
  out.v, out.err = p:call("BLPOP", "never", 15)
elseif w == "timer" then
  local ok = tg.timer.at(0, function(key)
    local r = tg.redis.connect("sess")
    r:set(key, "from-timer")
    local v = r:get(key)
    local n = r:pipeline(function(p) p:incr("tn") p:incr("tn") end)
    tg.shared.d:set("timer", v .. ":" .. tostring(n[2]), 0)
  end, "tk")
  out.ok = ok and true
elseif w == "read" then
  out.v = tg.shared.d:get(tg.req.arg("k"))
elseif w == "conc" then
  local p = tg.redis.connect("plain", { timeout = 20 })
  out.n = p:incr("conc")
  out.v = p:get("conc")
elseif w == "bad" then
  local ok, err = pcall(red.get, red, {})
  out.err = err
  ok, out.select = pcall(red.call, red, "select", 1)
  ok, out.multi = pcall(red.call, red, "MULTI")
  local res = red:pipeline(function(p)
    p:call("MULTI") p:incr("tx") p:incr("tx") p:call("EXEC")
  end)
  out.tx = res[4]
end
done()
L
    });

sub call($w, %o) {
    my $r = $tg->http(GET => "/call?w=$w" . ($o{q} // ''), timeout => 15);
    is($r->{status}, 200, "$w: 200") or diag($r->{body});
    my $j = eval { decode_json($r->{body}) } // {};
    return $j;
}

# commands, AUTH, SELECT 3
my $j = call('basic');
is($j->{set}, 'OK', 'set: status reply as a string');
is($j->{get}, 'v1', 'get');
is($j->{missing}, 'NULL', 'a nil reply is tg.null');
is($j->{incr}, 1, 'incr: a number');
is($j->{expire}, 1, 'expire');
is($j->{hset}, 1, 'hset');
is($j->{hget}, 'x', 'hget');
is_deeply($j->{eval}, ['key', 'arg', 7], 'eval: an array reply as a table');
ok($j->{call} > 90 && $j->{call} <= 100, "call: any command (TTL $j->{call})");
is($j->{del}, 2, 'del with two keys');
like($j->{wrongtype}[1], qr/^WRONGTYPE/, 'an error reply: nil, the message');
like($j->{unknown}, qr/unknown command/i, 'unknown command: nil, err');
like($j->{db}, qr/\bdb=3\b/, 'SELECT of the URL /3 done on connect');
is(redis_cmd({ %$auth, db => 3 }, 'GET', 'n'), 1, 'written in db 3 of the password-protected server');

# pipelines
$j = call('pipeline');
is_deeply($j->{res}, ['OK', 2, '2', 'NULL', [JSON::PP::false, $j->{res}[4][1]], ['2', 'NULL']],
          'pipeline: results in order, nil as tg.null, an error reply as {false, msg}');
like($j->{res}[4][1] // '', qr/^WRONGTYPE/, 'the error item carries the message');
is($j->{empty}, 0, 'an empty pipeline: an empty table');

# URLs written in a script; a rate-limit zone's backend by name
$j = call('literal');
is($j->{set}, 'OK', 'a literal URL in tg.redis.connect is made at config time');
is(redis_cmd({ %$plain, db => 2 }, 'GET', 'lit'), 'yes', 'its /2 selects db 2');
like($j->{rl}, qr/\bdb=5\b/, 'the rate-limit backend "127.0.0.1:PORT/5" is usable by name');
like($j->{unknown_err}, qr/unknown redis/, 'a URL not in the config: nil, err');

# failures
$j = call('wrong');
ok(!defined $j->{v} && $j->{err}, "wrong password: nil, \"$j->{err}\"");
$j = call('down');
# "not connected" between reconnect attempts, the connect error during one
ok(!defined $j->{v} && ($j->{err} // '') =~ /^(not connected|Connection refused)$/, "server down: nil, \"$j->{err}\"");
ok(!defined $j->{pv} && ($j->{perr} // '') =~ /^(not connected|Connection refused)$/, 'server down, pipeline: nil, err');
ok($j->{took} < 0.2, sprintf('server down: answered at once (%.0f ms)', $j->{took} * 1000));
$j = call('timeout');
is($j->{err}, 'timed out', 'command timeout: nil, "timed out"');
ok($j->{took} >= 0.25 && $j->{took} < 2, sprintf('after the timeout (%.2f s)', $j->{took}));
ok(call('basic')->{get}, 'the worker serves on');

# timers and lua_init_worker
wait_until(sub { ($tg->http(GET => '/call?w=read&k=boot')->{body} // '') =~ /"v":[12]\b/ }, 5);
like($tg->http(GET => '/call?w=read&k=boot')->{body}, qr/"v":[12]\b/,
     'lua_init_worker waited on Redis while the pool connected');
is(redis_cmd({ %$auth, db => 3 }, 'GET', 'boot'), 2, 'both workers ran it');
call('timer');
ok(wait_until(sub { ($tg->http(GET => '/call?w=read&k=timer')->{body} // '') =~ /from-timer:2/ }, 5),
   'a timer callback waits on commands and a pipeline');

# log phase: fire and forget
my $id = int(rand(1e9));
is($tg->http(GET => "/logged?id=$id")->{body}, 'logged', 'log-phase request answered');
ok(wait_until(sub { redis_cmd({ %$auth, db => 3 }, 'GET', "logged:$id") eq '/logged' }, 5),
   'the log phase SET reached Redis');
like($tg->http(GET => '/call?w=read&k=log-ret')->{body}, qr/"v":"true"/,
     'in the log phase a command returns true at once');

# a caller's mistake raises
$j = call('bad');
like($j->{err}, qr/must be a string or a number/, 'a table argument raises');
like($j->{select}, qr/SELECT is not allowed on a shared connection/, 'SELECT raises (the pool is shared)');
like($j->{multi}, qr/MULTI only inside red:pipeline/, 'MULTI outside a pipeline raises');
is_deeply($j->{tx}, [1, 2], 'MULTI ... EXEC in a pipeline: the EXEC reply');

# session lookup example
redis_cmd({ %$auth, db => 3 }, 'SET', 'session:abc', '{"user":"ann"}', 'EX', '60');
my $r = $tg->http(GET => '/app/x', headers => [Cookie => 'sid=abc']);
is($r->{body}, 'user=ann', 'session example: a known session passes with X-User');
is($tg->http(GET => '/app/x', headers => [Cookie => 'sid=zzz'])->{status}, 401,
   'session example: an unknown session is 401');
is($tg->http(GET => '/app/x')->{status}, 401, 'session example: no cookie is 401');

# 200 concurrent calls on 2 workers while Redis is held busy for 0.5 s: a
# plain request is answered meanwhile, and every call completes
my $busy = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $pp, Timeout => 2) or die;
my $lua = "local t = redis.call('TIME') local e = t[1]*1e6 + t[2] + 500000 "
        . "repeat t = redis.call('TIME') until t[1]*1e6 + t[2] >= e return 1";
print $busy "*3\r\n\$4\r\nEVAL\r\n\$" . length($lua) . "\r\n$lua\r\n\$1\r\n0\r\n";
my @socks;
for (1 .. 200) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Timeout => 5) or last;
    print $s "GET /call?w=conc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    push @socks, $s;
}
is(scalar @socks, 200, '200 requests sent');
my $t0 = time;
$r = $tg->http(GET => '/plain');
my $lat = time - $t0;
is($r->{body}, 'plain', 'a plain request meanwhile');
ok($lat < 0.3, sprintf('answered in %.0f ms while Redis was busy', $lat * 1000));
my ($ok, %seen) = (0);
my $deadline = time + 20;
for my $s (@socks) {
    my $buf = '';
    while (time < $deadline) {
        my $n = sysread($s, $buf, 4096, length $buf);
        last unless $n;
    }
    $ok++ if $buf =~ /^HTTP\/1.1 200/ && $buf =~ /"n":(\d+)/ && !$seen{$1}++;
    close $s;
}
is($ok, 200, 'all 200 calls answered, each with its own INCR result');
<$busy>;
close $busy;

# Redis killed while a call waits on it
my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port, Timeout => 5) or die;
print $c "GET /call?w=block HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
wait_until(sub { redis_cmd($plain, 'CLIENT', 'LIST') =~ /cmd=blpop/ }, 5);
Tollgate::Test::_kill_group($plain->{pid}, 'KILL', 1);
$t0 = time;
my $buf = '';
while (time - $t0 < 5) {
    my $n = sysread($c, $buf, 4096, length $buf);
    last unless $n;
}
like($buf, qr/"err":"[^"]+"/, 'killed mid-call: nil, err') or diag($buf);
ok(time - $t0 < 2, sprintf('promptly (%.2f s)', time - $t0));

# config errors
like(tg_conf_error("lua_redis x rediss://127.0.0.1:6379;"), qr/:\d+: .*rediss:\/\/ \(TLS\) needs hiredis_ssl/,
     'rediss:// refused: no hiredis_ssl in this hiredis');
like(tg_conf_error("lua_redis x redis://user:pw\@127.0.0.1;"), qr/:\d+: invalid redis URL/, 'a user name is refused');
like(tg_conf_error("lua_redis a:b redis://127.0.0.1;"), qr/:\d+: invalid name "a:b"/, 'a name with ":"');
like(tg_conf_error("lua_redis a redis://127.0.0.1;\nlua_redis a redis://127.0.0.2;"), qr/:2: duplicate lua_redis name "a"/,
     'a duplicate name');

Tollgate::Test::_kill_group($auth->{pid}, 'TERM', 5);
done_testing;
