# lua_shared_dict: get/set/incr/delete, TTL, exact across workers, bounded
# memory with LRU eviction, kept across a reload.
use v5.36;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use lib 't/lib';
use Tollgate::Test;

my $conf = <<'C';
workers 2;
lua_shared_dict counters 1m;
lua_shared_dict small 64k;
server {
    listen %%PORT%%;
    location / { lua_access %%DIR%%/d.lua; }
}
C
my $lua = <<'L';
local d = tg.shared.counters
local a = tg.req.arg
local op = tg.req.path()
if op == "/incr" then
  local v = d:incr("hits", 1, 0)
  tg.exit(200, string.format("%d", v))
elseif op == "/set" then
  local ttl = tonumber(a("ttl"))
  local v = a("v")
  if a("type") == "num" then v = tonumber(v) elseif a("type") == "bool" then v = v == "true" end
  assert(d:set(a("k"), v, ttl))
  tg.exit(200, "ok")
elseif op == "/get" then
  local v = d:get(a("k"))
  tg.exit(200, type(v) .. ":" .. tostring(v))
elseif op == "/delete" then
  d:delete(a("k"))
  tg.exit(200, "ok")
elseif op == "/incr-missing" then
  local v, err = d:incr("nothing-" .. a("k"))
  local w, err2 = d:incr("str", 1)
  tg.exit(200, tostring(v) .. "|" .. tostring(err) .. "|" .. tostring(w) .. "|" .. tostring(err2))
elseif op == "/fill" then
  local s = tg.shared.small
  local big = string.rep("v", 1000)
  for i = 1, 500 do assert(s:set("k" .. i, big)) end
  local first, last = s:get("k1"), s:get("k500")
  local huge_ok, huge_err = s:set("huge", string.rep("x", 200000))
  tg.exit(200, tostring(first) .. "|" .. #last .. "|" .. tostring(huge_ok) .. "|" .. tostring(huge_err))
end
tg.exit(404)
L
my $tg = tg_start($conf, files => {'d.lua' => $lua});
ok(wait_until(sub { scalar($tg->worker_pids) == 2 }, 10), 'two workers');

# 200 increments from 20 concurrent connections, spread over both workers
my $port = $tg->port;
my @socks;
for my $c (1 .. 20) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
    print $s join('', map { "GET /incr HTTP/1.1\r\nHost: x\r\n\r\n" } 1 .. 10);
    push @socks, $s;
}
my $answers = 0;
my $sel = IO::Select->new(@socks);
my %buf;
my $deadline = time + 20;
while ($sel->count && time < $deadline) {
    for my $s ($sel->can_read(1)) {
        my $n = sysread($s, my $chunk, 65536);
        $buf{$s} .= $chunk if $n;
        my $done = () = ($buf{$s} // '') =~ m{HTTP/1\.1 200}g;
        if (!$n || $done == 10) { $sel->remove($s); $answers += $done; close $s; }
    }
}
is($answers, 200, '200 answers');
is($tg->http(GET => '/get?k=hits')->{body}, 'number:200', 'incr is exact across workers');

is($tg->http(GET => '/set?k=a&v=hello')->{body}, 'ok', 'set');
is($tg->http(GET => '/get?k=a')->{body}, 'string:hello', 'get a string');
$tg->http(GET => '/set?k=n&v=1.5&type=num');
is($tg->http(GET => '/get?k=n')->{body}, 'number:1.5', 'numbers');
$tg->http(GET => '/set?k=b&v=true&type=bool');
is($tg->http(GET => '/get?k=b')->{body}, 'boolean:true', 'booleans');
$tg->http(GET => '/delete?k=a');
is($tg->http(GET => '/get?k=a')->{body}, 'nil:nil', 'delete');
$tg->http(GET => '/set?k=str&v=x');
is($tg->http(GET => '/incr-missing?k=1')->{body}, 'nil|not found|nil|not a number',
   'incr: nil, err');

$tg->http(GET => '/set?k=t&v=short&ttl=0.5');
is($tg->http(GET => '/get?k=t')->{body}, 'string:short', 'before the TTL');
ok(wait_until(sub { $tg->http(GET => '/get?k=t')->{body} eq 'nil:nil' }, 5), 'expired after the TTL');

is($tg->http(GET => '/fill')->{body}, 'nil|1000|nil|no memory',
   'bounded: the oldest entries are evicted, an entry larger than the dict is refused');

# a reload keeps the dict (same name and size)
my $off = $tg->reload($conf, files => {'d.lua' => $lua});
ok($tg->wait_log(qr/reload|started/i, 10, $off), 'reloaded');
ok(wait_until(sub { $tg->http(GET => '/get?k=hits')->{body} eq 'number:200' }, 5),
   'contents survive a reload');

like(tg_conf_error("lua_shared_dict x 1k; server { listen %%PORT%%; }"),
     qr/:1: invalid size "1k" in "lua_shared_dict"/, 'size checked');
like(tg_conf_error("lua_shared_dict x 1m; lua_shared_dict x 1m; server { listen %%PORT%%; }"),
     qr/:1: shared memory zone "x" is already declared/, 'duplicate name');

done_testing;
