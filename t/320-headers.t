# add_header / remove_header on responses, proxy_set_header / proxy_remove_header
# on requests, with variables and nginx's inheritance and status rules.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C");
server {
    listen %%PORT%%;
    add_header X-Served-By tollgate;
    add_header X-Client "\$remote_addr";
    remove_header X-Upstream-Secret;
    location / { proxy_pass $up->{addr}; }
    location /own/ {
        add_header X-Only-Here 1;
        proxy_pass $up->{addr};
    }
    location /always/ {
        add_header X-Always yes always;
        add_header X-Not-On-Errors yes;
        proxy_pass $up->{addr};
    }
    location /strip/ {
        security_headers on;
        remove_header X-Frame-Options;
        remove_header Server;
        proxy_pass $up->{addr};
    }
    location /req/ {
        proxy_set_header X-Path "\$uri";
        proxy_remove_header Cookie;
        proxy_pass $up->{addr};
    }
}
C
my $r = $tg->http(GET => '/headers?X-Upstream-Secret=s&X-Multi=a');
is($r->{headers}{'x-served-by'}, 'tollgate', 'add_header');
is($r->{headers}{'x-client'}, '127.0.0.1', 'add_header with a variable');
ok(!exists $r->{headers}{'x-upstream-secret'}, 'remove_header drops an upstream header');
is($r->{headers}{'x-multi'}, 'a', 'others kept');

$r = $tg->http(GET => '/own/x');
is($r->{headers}{'x-only-here'}, '1', 'location add_header');
ok(!exists $r->{headers}{'x-served-by'}, 'a location with its own add_header does not inherit');

$r = $tg->http(GET => '/always/x');
is($r->{headers}{'x-not-on-errors'}, 'yes', 'add_header on 200');
is($r->{headers}{'x-always'}, 'yes', 'add_header always on 200');
# echo's /status/NNN only matches at the start of the path: use a 404 from Tollgate
$r = $tg->http(GET => '/status/404');
is($r->{status}, 404, 'upstream 404');
is($r->{headers}{'x-served-by'}, undef, 'add_header without always: not on 404');

$r = $tg->http(GET => '/strip/x');
ok(!exists $r->{headers}{'x-frame-options'}, 'remove_header drops a security header');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'the other security headers stay');
ok(!exists $r->{headers}{server}, 'remove_header Server');

$r = $tg->http(GET => '/req/a%20b', headers => [Cookie => 'a=1']);
my $d = decode_json($r->{body});
is($d->{headers}{'x-path'}, '/req/a b', 'proxy_set_header with $uri');
ok(!exists $d->{headers}{cookie}, 'proxy_remove_header');
$tg->stop;

# always: on an error answer
{
    my $g = tg_start("server { listen %%PORT%%; add_header X-A yes always; add_header X-B yes; "
                   . "location / { return 503; } }");
    my $x = $g->http(GET => '/');
    is($x->{status}, 503, 'local 503');
    is($x->{headers}{'x-a'}, 'yes', 'always: on the 503');
    ok(!exists $x->{headers}{'x-b'}, 'without always: not on the 503');
    $g->stop;
}
like(tg_conf_error("server {\n listen %%PORT%%;\n add_header X-A b sometimes;\n}"),
     qr/:3: invalid parameter "sometimes" in "add_header"/, 'bad add_header flag');
like(tg_conf_error("server {\n listen %%PORT%%;\n add_header X-A \$nope;\n}"),
     qr/:3: unknown variable "\$nope"/, 'unknown variable in add_header');
done_testing;
