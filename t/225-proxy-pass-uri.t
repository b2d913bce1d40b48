# proxy_pass's URI part, by nginx's rule: a URI part (even "/") replaces the
# part of the normalized path that matched the location prefix, the rest is
# percent-encoded again and the query string follows as sent; without one the
# client's target goes unchanged; with variables the value goes as it
# evaluates (unsafe bytes encoded); a path set by Lua after routing goes as
# set. A URI part in a regex location is a config error (-t), and so is a
# scheme that disagrees with the upstream's `tls`. The echo upstream answers
# with the exact request-target it received.
#
# The rows marked "nginx" were checked once by hand against nginx 1.22
# (nginx-light 1.22.1) with the same locations; the others have no nginx
# counterpart (server-level proxy_pass, Lua) or deliberately differ (a $uri
# with a space: nginx writes it raw into the request line).
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $up = node_upstream('echo');
my $u = $up->{addr};

my %files = (
    'set_path_access.lua' => 'tg.req.set_path("/changed" .. tg.req.path())',
    'set_path_rewrite.lua' => 'tg.req.set_path("/name/from-lua")',
);
my $tg = tg_start(<<"C", files => \%files);
upstream up { server $u; }
server {
    listen %%PORT%%;
    location /name/ { proxy_pass http://$u/remote/; }
    location /b/ { proxy_pass http://$u/; }
    location /name { proxy_pass http://$u/x; }
    location /plain/ { proxy_pass http://$u; }
    location /bare/ { proxy_pass up; }
    location = /exact { proxy_pass http://up/other; }
    location ^~ /nore/ { proxy_pass http://up/n/; }
    location /v/ { proxy_pass http://up\$request_uri; }
    location /u/ { proxy_pass http://up/api\$uri; }
    location /ua/ { proxy_pass http://up/api\$uri\$is_args\$args; }
    location ~ \\.json\$ { proxy_pass http://up\$request_uri; }
    location /lua-access/ { lua_access %%DIR%%/set_path_access.lua; proxy_pass http://up/remote/; }
    location /lua-rewrite/ { lua_rewrite %%DIR%%/set_path_rewrite.lua; proxy_pass http://up/; }
}
server {
    listen %%PORT2%%;
    proxy_pass http://up/srv/;
    location /loc/ { }
    location ~ \\.txt\$ { }
}
C

sub target($path, $port = $tg->port) {
    my $r = Tollgate::Test::http_request($port, GET => $path);
    return "status $r->{status}" unless ($r->{status} // 0) == 200;
    return eval { decode_json($r->{body})->{url} } // "bad body: $r->{body}";
}

my @cases = (
    # request                         target upstream                   checked with
    ['/name/x',                       '/remote/x',                      'nginx'],
    ['/name/a/b?q=1&r=%20',           '/remote/a/b?q=1&r=%20',          'nginx'],
    ['/b/x',                          '/x',                             'nginx'],
    ['/b/',                           '/',                              'nginx'],
    ['/namefoo',                      '/xfoo',                          'nginx'],
    ['/plain/a%20b//c?x=%2F',         '/plain/a%20b//c?x=%2F',          'nginx'],
    ['/bare/./x?y',                   '/bare/./x?y',                    'nginx'],
    ['/name/a%20b',                   '/remote/a%20b',                  'nginx'],
    ['/name/%7Euser',                 '/remote/~user',                  'nginx'],
    ['/name/a%2Fb',                   '/remote/a/b',                    'nginx'],
    ['/name//x/../y',                 '/remote/y',                      'nginx'],
    ['/name/%3F?a=1',                 '/remote/%3F?a=1',                'nginx'],
    ['/name/100%25',                  '/remote/100%25',                 'nginx'],
    ['/name/a+b',                     '/remote/a+b',                    'nginx'],
    ['/name/%C3%A9',                  '/remote/%C3%A9',                 'nginx'],
    ['/name/x?',                      '/remote/x',                      'nginx'],
    ['/exact?a=b',                    '/other?a=b',                     'nginx'],
    ['/nore/deep/p?k',                '/n/deep/p?k',                    'nginx'],
    ['/v/a%20b?c=d',                  '/v/a%20b?c=d',                   'nginx'],
    ['/u/x?c=d',                      '/api/u/x',                       'nginx'],
    ['/ua/x?c=d',                     '/api/ua/x?c=d',                  'nginx'],
    ['/data/x.json?z=1',              '/data/x.json?z=1',               'nginx'],
    ['/u/a%20b%0D%0AX:1',             '/api/u/a%20b%0D%0AX:1',          'safer than nginx'],
    ['/lua-access/p?q=1',             '/changed/lua-access/p?q=1',      'Lua after routing'],
    ['/lua-rewrite/p?q=2',            '/remote/from-lua?q=2',           'Lua, then routed'],
);
for my $c (@cases) {
    is(target($c->[0]), $c->[1], "$c->[0] -> $c->[1] ($c->[2])");
}

# server-level proxy_pass: as if written in `location /`, inherited as such
is(target('/a/b?z', $tg->port(2)), '/srv/a/b?z', 'server level: "/" replaced');
is(target('/loc/x', $tg->port(2)), '/srv/loc/x', 'server level, inherited by a prefix location');
is(target('/r/y.txt', $tg->port(2)), '/srv/r/y.txt', 'server level, inherited by a regex location');
$tg->stop;

# -t refuses what cannot be honoured, with file:line
sub conf_err($loc, $extra = '') {
    return tg_conf_error("$extra\nserver {\n listen %%PORT%%;\n $loc\n}\n");
}
like(conf_err('location ~ ^/re/ { proxy_pass http://127.0.0.1:9/x/; }'),
     qr/:4: "proxy_pass http:\/\/127\.0\.0\.1:9\/x\/" cannot have a URI part in a location given by a regular expression/,
     'a URI part in a regex location: error at its line');
ok(tg_conf_ok("server { listen %%PORT%%; location ~ ^/re/ { proxy_pass http://127.0.0.1:9\$request_uri; } }"),
   'with variables it is accepted');
like(conf_err('location / { proxy_pass ftp://127.0.0.1:9; }'), qr/:4: invalid scheme in "proxy_pass ftp:/,
     'unknown scheme');
like(conf_err('location / { proxy_pass http://$host/x; }'), qr/:4: "proxy_pass http:\/\/\$host\/x" names no upstream/,
     'variables in the host part');
like(conf_err('location / { proxy_pass "http://127.0.0.1:9/a b"; }'), qr/:4: invalid character in the URI part/,
     'a space in the URI part');
like(conf_err('location / { proxy_pass https://plain/; }', 'upstream plain { server 127.0.0.1:9; }'),
     qr/:4: "proxy_pass https:\/\/plain": upstream "plain" \(\S+:1\) has no "tls on"/,
     'https:// to an upstream without tls on');
like(conf_err('location / { proxy_pass http://sec; }', 'upstream sec { server 127.0.0.1:9; tls on; tls_verify off; }'),
     qr/:4: "proxy_pass http:\/\/sec": upstream "sec" \(\S+:1\) has "tls on"/,
     'http:// to an upstream with tls on');
like(conf_err("location /a/ { proxy_pass https://127.0.0.1:9; }\n location /b/ { proxy_pass http://127.0.0.1:9; }"),
     qr/:4: "127\.0\.0\.1:9" is named with both https:\/\/ and http:\/\/ \(first at \S+:5\)/,
     'one HOST:PORT with both schemes');

# https://: TLS to the upstream, the URI rule as with http://
{
    my $pki = make_pki();
    my $dir = $pki->{dir};
    my $lh = Tollgate::TLS::_issue($dir, 'localhost', 'rsa', 'localhost', "$dir/ca");
    my $sec = node_upstream('https-echo', env => { CERT => $lh->{cert}, KEY => $lh->{key} });
    my $g = tg_start(<<"C", errors_ok => [qr/TLS certificate verification failed/]);
upstream sec { server localhost:$sec->{port}; tls on; tls_trusted_ca $pki->{ca}; }
server {
    listen %%PORT%%;
    location /s/ { proxy_pass https://sec/tls/; }
    location /implicit/ { proxy_pass https://localhost:$sec->{port}; }
}
C
    my $r = $g->http(GET => '/s/x?y=1');
    is($r->{status}, 200, 'https:// upstream block: 200');
    my $d = eval { decode_json($r->{body}) } // {};
    is($d->{url}, '/tls/x?y=1', 'https://: the URI part replaced the prefix');
    # HOST:PORT with https:// speaks TLS and verifies against the system
    # store, which does not know the test CA: the failure proves TLS was used
    my $off = $g->log_offset;
    is($g->http(GET => '/implicit/x')->{status}, 502, 'https://HOST:PORT: TLS, certificate refused');
    ok($g->wait_log(qr/TLS certificate verification failed/, 5, $off), 'logged as a verification failure');
    $g->stop;
}

done_testing;
