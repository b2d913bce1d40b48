# map: exact keys, regexes (case-sensitive and not, in config order, with
# captures and named groups in the value), default, variables in the source
# and the value; the result usable in proxy_set_header, return, rewrite,
# log formats and Lua's tg.var; evaluated once per request.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $u = $up->{addr};
my %files = ('var.lua' => 'tg.exit(200, "lua:" .. tostring(tg.var.tier))');

my $tg = tg_start(<<"C", files => \%files);
map \$http_x_tier \$tier {
    default  free;
    gold     premium;
    "silver" standard;
    ~^bronze-(\\d+)\$  basic-\$1;
    ~*^PLAT(?<lvl>\\d)\$ platinum-\$lvl;
    ~^bronze  never-reached-second-regex;
}
map \$method:\$uri \$route_key {
    GET:/m/a   "got a for \$host";
    ~^POST:(.*)\$ post-\$1;
}
map \$http_x_none \$empty_default {
    x y;
}
map \$tier \$tier_upper {
    premium PREMIUM;
    default other;
}
log_format tiers '\$tier|\$route_key';
upstream up { server $u; }
server {
    listen %%PORT%%;
    access_log %%DIR%%/tiers.log tiers;
    location /m/ { return 200 "\$tier \$route_key [\$empty_default] \$tier_upper"; }
    location /up/ { proxy_set_header X-Tier \$tier; proxy_pass http://up; }
    location /rw/ { rewrite ^ /up/\$tier last; }
    location /lua { lua_access %%DIR%%/var.lua; }
}
C

sub body($path, %o) { return $tg->http(GET => $path, %o)->{body} }

is(body('/m/a', host => 'h.test'), 'free got a for h.test [] other', 'default, exact key with a variable in the value');
is(body('/m/x', headers => ['X-Tier' => 'gold']), 'premium  [] PREMIUM', 'exact key; a map over a map');
is(body('/m/x', headers => ['X-Tier' => 'silver']), 'standard  [] other', 'quoted key');
is(body('/m/x', headers => ['X-Tier' => 'bronze-7']), 'basic-7  [] other', 'regex with $1, first regex wins');
is(body('/m/x', headers => ['X-Tier' => 'plat3']), 'platinum-3  [] other', '~* caseless, named group');
is(body('/m/x', headers => ['X-Tier' => 'Gold']), 'free  [] other', 'exact keys are case-sensitive');
my $r = $tg->http(POST => '/m/p', body => '');
is($r->{body}, 'free post-/m/p [] other', 'source template with two variables');
$r = $tg->http(GET => '/up/x', headers => ['X-Tier' => 'gold']);
is(decode_json($r->{body})->{headers}{'x-tier'}, 'premium', 'in proxy_set_header');
$r = $tg->http(GET => '/rw/x', headers => ['X-Tier' => 'bronze-1']);
is(decode_json($r->{body})->{url}, '/up/basic-1', 'in a rewrite replacement');
is(body('/lua', headers => ['X-Tier' => 'gold']), 'lua:premium', 'tg.var');
ok(wait_until(sub { (Tollgate::Test::_slurp($tg->dir . '/tiers.log') // '') =~ /^premium\|$/m }),
   'in a log format');
$tg->stop;

like(tg_conf_error("map \$host \$host { default a; }\nserver { listen %%PORT%%; }"),
     qr/^\S+:1: variable "\$host" is defined already/m, 'an existing variable');
like(tg_conf_error("map \$host bad { default a; }\nserver { listen %%PORT%%; }"),
     qr/^\S+:1: invalid variable name "bad" in "map"/m, 'bad name');
like(tg_conf_error("map \$host \$m {\n default a;\n default b;\n}\nserver { listen %%PORT%%; }"),
     qr/^\S+:3: duplicate "default" in "map"/m, 'duplicate default, file:line of the entry');
like(tg_conf_error("map \$host \$m {\n ~^( a;\n}\nserver { listen %%PORT%%; }"),
     qr/^\S+:2: invalid regex "\^\(" at offset/m, 'bad regex');
like(tg_conf_error("map \$host \$m {\n hostnames;\n}\nserver { listen %%PORT%%; }"),
     qr/^\S+:2: "hostnames" is not supported in "map"/m, 'unsupported parameter');
like(tg_conf_error("map \$host \$m { a \$nope; }\nserver { listen %%PORT%%; }"),
     qr/^\S+:1: unknown variable "\$nope"/m, 'unknown variable in a value');
like(tg_conf_error("server { listen %%PORT%%; map \$host \$m { a b; } }"),
     qr/^\S+:1: "map" directive is not allowed here/m, 'main scope only');
done_testing;
