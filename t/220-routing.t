# Server selection by listen address and Host; location precedence as in
# nginx; `return`.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;

my $tg = tg_start(<<'C');
server {
    listen %%PORT%%;
    server_name first.test;
    return 200 "first";
}
server {
    listen %%PORT%% default_server;
    server_name default.test;
    location = /exact { return 200 "exact"; }
    location / { return 200 "root-prefix"; }
    location /static/ { return 200 "static-prefix"; }
    location ^~ /static/img/ { return 200 "noregex-prefix"; }
    location ~ \.php$ { return 200 "regex-php"; }
    location ~* \.JPG$ { return 200 "regex-jpg-caseless"; }
    location ~ ^/static/.*\.css$ { return 200 "regex-css"; }
    location /redir { return 302 "https://example.test$request_uri"; }
    location /gone { return 410; }
    location /vars { return 200 "$method $host $uri $args $arg_a"; }
}
server {
    listen %%PORT%%;
    server_name exact.example.test *.example.test *.deep.example.test;
    return 200 "wild";
}
server {
    listen %%PORT%%;
    server_name exact.example.test.other;
    location /x { return 200 "other"; }
}
server {
    listen %%PORT2%%;
    return 200 "second-port";
}
C

sub get($path, %o) { my $r = $tg->http(GET => $path, %o); return $r->{body} }

is(get('/', host => 'first.test'), 'first', 'exact server_name');
is(get('/', host => 'FIRST.test:1234'), 'first', 'Host case and port ignored');
is(get('/', host => 'first.test.'), 'first', 'trailing dot ignored');
is(get('/', host => 'unknown.test'), 'root-prefix', 'unknown host: default_server');
is(get('/', host => 'exact.example.test'), 'wild', 'exact name in a wildcard server');
is(get('/', host => 'a.example.test'), 'wild', '*.suffix wildcard');
is(get('/', host => 'a.deep.example.test'), 'wild', 'longest wildcard');
is(get('/', host => 'example.test'), 'root-prefix', 'wildcard needs a label');
is(get('/x', host => 'exact.example.test.other'), 'other', 'different server, exact');
is($tg->http(GET => '/', port => 2)->{body} // get2(), 'second-port', 'listen address picks server');
sub get2 { Tollgate::Test::http_request($tg->port(2), GET => '/')->{body} }

is(get('/exact'), 'exact', '= exact');
is(get('/exact/more'), 'root-prefix', '= does not match longer paths');
is(get('/static/a.txt'), 'static-prefix', 'longest prefix');
is(get('/static/a.css'), 'regex-css', 'regex beats prefix');
is(get('/static/img/a.css'), 'noregex-prefix', '^~ stops regex search');
is(get('/index.php'), 'regex-php', 'regex');
is(get('/a/b.jpg'), 'regex-jpg-caseless', '~* caseless');
is(get('/a/b.JPG'), 'regex-jpg-caseless', '~* caseless (upper)');
is(get('/static/x.php'), 'regex-php', 'first regex in config order');
is(get('/%73tatic/a.txt'), 'static-prefix', 'matching on the decoded path');
is(get('/a/../static//a.txt'), 'static-prefix', 'matching on the normalized path');
my $r = $tg->http(GET => '/redir/x?y=1');
is($r->{status}, 302, 'return 302');
is($r->{headers}{location}, 'https://example.test/redir/x?y=1', 'Location with variables');
$r = $tg->http(GET => '/gone');
is($r->{status}, 410, 'return 410');
like($r->{body}, qr/410/, 'with an error page');
is(get('/vars?a=1&b=2', host => 'v.test'), 'GET v.test /vars a=1&b=2 1', 'variables in return text');
$r = $tg->http(HEAD => '/exact');
is($r->{body}, '', 'HEAD of a local response has no body');
is($r->{headers}{'content-length'}, '5', 'but its length');

is($r->{headers}{server}, 'tollgate', 'Server header with server_tokens on');
$tg->stop;

my $q = tg_start("server { listen %%PORT%%; server_tokens off; return 200 x; }");
ok(!exists $q->http(GET => '/')->{headers}{server}, 'server_tokens off: no Server header');
$q->stop;
done_testing;
