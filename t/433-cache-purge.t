# Purging the response cache (docs/cache.md#cache_purge): by exact key
# (with its Vary variants), by prefix, by Surrogate-Key / Cache-Tag, from
# the cache_purge location and from Lua's tg.cache.purge*.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use JSON::PP qw(decode_json);

my $up = node_upstream('cache');
my $tg = tg_start(<<"EOF", files => { 'purge.lua' => <<'LUA' });
cache_zone main size=4m;
server {
    listen %%PORT%%;
    cache main;
    cache_key \$uri\$is_args\$args;
    location / { proxy_pass $up->{addr}; }
    location = /__purge {
        cache_purge main;
        allow 127.0.0.1;
        deny all;
    }
    location = /__lua_purge {
        cache off;
        lua_access %%DIR%%/purge.lua;
    }
}
EOF
local how = tg.req.arg("how")
local v = tg.req.header("X-Purge")
local n
if how == "prefix" then n = tg.cache.purge_prefix(v)
elseif how == "tag" then n = tg.cache.purge_tag(v)
else n = tg.cache.purge(v) end
tg.exit(200, tostring(n))
LUA

sub count($path) { return decode_json($up->http(GET => '/__count')->{body})->{paths}{$path} // 0 }
sub get($path, %h) { return $tg->http(GET => $path, headers => [%h]) }
sub esc($s) { return $s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ger }
sub purge($q) { return $tg->http(PURGE => "/__purge?$q") }
my $cc = 'h=Cache-Control:%20max-age=60';

subtest 'by key' => sub {
    my $u = "/a?$cc";
    get($u) for 1 .. 2;
    is(count('/a'), 1, 'cached');
    my $r = purge('key=' . esc($u));
    is($r->{status}, 200, 'purged');
    is(decode_json($r->{body})->{purged}, 1, 'one entry');
    get($u);
    is(count('/a'), 2, 'fetched again');
    is(decode_json(purge('key=' . esc('/nope'))->{body})->{purged}, 0, 'an unknown key: 0');
};

subtest 'by key takes the Vary variants' => sub {
    my $u = "/v?$cc&h=Vary:%20Accept-Language";
    get($u, 'Accept-Language' => $_) for qw(en fr en fr);
    is(count('/v'), 2, 'two variants cached');
    is(decode_json(purge('key=' . esc($u))->{body})->{purged}, 3, 'the record and both variants');
    get($u, 'Accept-Language' => 'en');
    is(count('/v'), 3, 'fetched again');
};

subtest 'by prefix' => sub {
    get("/p/$_?$cc") for 1 .. 3;
    get("/q/1?$cc");
    is(decode_json(purge('prefix=' . esc('/p/'))->{body})->{purged}, 3, 'three under /p/');
    get("/p/$_?$cc") for 1 .. 3;
    get("/q/1?$cc");
    is(count("/p/$_"), 2, "/p/$_ fetched again") for 1 .. 3;
    is(count('/q/1'), 1, '/q/1 kept');
};

subtest 'by tag' => sub {
    get("/t1?$cc&h=Surrogate-Key:%20product-1%20list");
    get("/t2?$cc&h=Cache-Tag:%20product-2,list");
    get("/t3?$cc&h=Surrogate-Key:%20product-3");
    is(decode_json(purge('tag=list')->{body})->{purged}, 2, 'two tagged "list"');
    get("/t$_?$cc" . ($_ == 1 ? '&h=Surrogate-Key:%20product-1%20list'
                    : $_ == 2 ? '&h=Cache-Tag:%20product-2,list' : '&h=Surrogate-Key:%20product-3'))
        for 1 .. 3;
    is(count('/t1') + count('/t2'), 4, 't1, t2 fetched again');
    is(count('/t3'), 1, 't3 kept');
    is(decode_json(purge('tag=product')->{body})->{purged}, 0, 'tags match whole');
};

subtest 'methods and arguments' => sub {
    is($tg->http(GET => '/__purge?key=x')->{status}, 405, 'GET refused');
    is(purge('x=1')->{status}, 400, 'no key, prefix or tag');
    is($tg->http(DELETE => '/__purge?key=x')->{status}, 200, 'DELETE works');
};

subtest 'Lua: tg.cache.purge, purge_prefix, purge_tag' => sub {
    get("/l/$_?$cc") for 1 .. 2;
    get("/lt?$cc&h=Surrogate-Key:%20lua");
    is(get('/__lua_purge', 'X-Purge' => "/l/1?$cc")->{body}, '1', 'purge(key)');
    is(get('/__lua_purge?how=prefix', 'X-Purge' => '/l/')->{body}, '1', 'purge_prefix');
    is(get('/__lua_purge?how=tag', 'X-Purge' => 'lua')->{body}, '1', 'purge_tag');
    get("/l/$_?$cc") for 1 .. 2;
    is(count("/l/$_"), 2, "/l/$_ fetched again") for 1 .. 2;
};

like(tg_conf_error("server { listen 1; location /p { cache_purge nope; } }"),
     qr/:\d+: unknown cache_zone "nope" in "cache_purge"/, 'unknown zone');

done_testing;
