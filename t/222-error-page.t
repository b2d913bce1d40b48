# error_page and named locations: gateway-made errors (404, 413, 502, a
# return) and, with proxy_intercept_errors, upstream answers, redirected
# internally to a URI (GET unless HEAD, the original status unless =CODE or
# =) or to a named location (method kept), or answered with a redirect to a
# URL; one error_page per request; named locations are never matched by a
# request path. The echo upstream answers with what it received.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $u = $up->{addr};
my $dead = '127.0.0.1:' . Tollgate::Test::free_port();

my $tg = tg_start(<<"C", errors_ok => [qr/connect|refused/i]);
upstream up { server $u; }
upstream dead { server $dead; }
server {
    listen %%PORT%%;
    client_max_body_size 10;
    error_page 404 /errors/404.html;
    error_page 413 =200 /errors/big?why=size;
    location /errors/ { proxy_pass http://up/pages/; }
    location /gone { return 404; }
    location /text404 { return 404 "own text"; }
    location /deadup/ { proxy_pass http://dead; error_page 502 504 = \@fallback; }
    location \@fallback { proxy_pass http://up/fb\$uri; }
    location /icpt/ {
        proxy_pass http://up/;
        proxy_intercept_errors on;
        error_page 500 503 =503 /errors/busy;
        error_page 404 =302 https://example.test/missing;
    }
    location /nointercept/ {
        proxy_pass http://up/;
        error_page 500 /errors/never;
    }
    location /twice/ { error_page 404 /also-missing; return 404; }
    location /denied/ { deny all; error_page 403 =404 /errors/hidden; proxy_pass http://up; }
    location /own/ { return 403 "own page"; error_page 403 /errors/never; }
}
C

sub req($method, $path, %o) { return $tg->http($method => $path, %o) }
sub echo($r) { return eval { decode_json($r->{body}) } // {} }

my $r = req(GET => '/nowhere?x=1');
is($r->{status}, 404, 'no location: the original status');
is(echo($r)->{url}, '/pages/404.html', 'the error page, without the original args');
$r = req(POST => '/gone', body => 'abc');
is($r->{status}, 404, 'return 404 takes the error_page');
is(echo($r)->{method}, 'GET', 'POST becomes GET');
is(echo($r)->{bodyLength}, 0, 'without the body');
$r = req(HEAD => '/gone');
is($r->{status}, 404, 'HEAD');
is($up->log->[-1]{method}, 'HEAD', 'HEAD stays HEAD');
is(req(GET => '/text404')->{body}, 'own text', 'a return with text is not an error');
$r = req(POST => '/errors-x', body => 'x' x 100);
is($r->{status}, 200, '413 with =200');
is(echo($r)->{url}, '/pages/big?why=size', 'error page args');
is($r->{headers}{connection} // '', 'close', 'the unread body closes the connection');

# named location, method kept, = takes the answer's own status
$r = req(PUT => '/deadup/x');
is($r->{status}, 200, 'upstream down: 502 -> @fallback, "=" answers its status');
is(echo($r)->{url}, '/fb/deadup/x', 'named location proxied, the URI unchanged');
is(echo($r)->{method}, 'PUT', 'a named location keeps the method');
is(req(GET => '/@fallback')->{status}, 404, 'a named location is not matched by a path');

# proxy_intercept_errors
$r = req(GET => '/icpt/status/500');
is($r->{status}, 503, 'intercepted 500, =503');
is(echo($r)->{url}, '/pages/busy', 'the error page answered');
$r = req(GET => '/icpt/status/404');
is($r->{status}, 302, 'intercepted 404 to a URL: =302');
is($r->{headers}{location}, 'https://example.test/missing', 'Location');
$r = req(GET => '/icpt/status/502');
is($r->{status}, 502, 'a status without error_page passes');
is(req(GET => '/icpt/status/200')->{status}, 200, '200 passes');
$r = req(GET => '/nointercept/status/500');
is($r->{status}, 500, 'without proxy_intercept_errors the upstream answer goes as is');
is(echo($r)->{url}, '/status/500', 'its own body');
# refusals take the error_page; a content handler's own answer does not
$r = req(GET => '/denied/x');
is($r->{status}, 404, 'deny: 403 with =404');
is(echo($r)->{url}, '/pages/hidden', 'the error page for a refusal');
$r = req(GET => '/own/x');
is($r->{status}, 403, 'return with text');
is($r->{body}, 'own page', 'keeps its own body');
# one error_page per request
$r = req(GET => '/twice/x');
is($r->{status}, 404, 'the error page itself 404s: no second redirect');
like($r->{body}, qr/^404 Not Found/, 'the standard page');

# the intercepted connection is reused or closed cleanly: many in a row work
my $ok = 0;
for (1 .. 20) { $ok++ if req(GET => '/icpt/status/500')->{status} == 503 }
is($ok, 20, '20 intercepted answers in a row');
my $c = $tg->keepalive;
for (1 .. 3) {
    my $k = $c->request(GET => '/icpt/status/503');
    is($k->{status}, 503, "keep-alive client, intercepted answer $_");
}
$c->close;
$tg->stop;

like(tg_conf_error("server { listen %%PORT%%; error_page 404 \@nope; }"),
     qr/^\S+:\d+: unknown named location "\@nope" in "error_page"/m, 'unknown named location');
like(tg_conf_error("server { listen %%PORT%%; error_page 200 /x; }"),
     qr/^\S+:\d+: invalid status "200" in "error_page"/m, 'status out of range');
like(tg_conf_error("server { listen %%PORT%%; error_page 404 =abc /x; }"),
     qr/^\S+:\d+: invalid response code "=abc"/m, 'bad =CODE');
like(tg_conf_error("server { listen %%PORT%%; error_page 404 relative; }"),
     qr/^\S+:\d+: invalid URI "relative" in "error_page"/m, 'bad URI');
like(tg_conf_error("server { listen %%PORT%%; location \@a { proxy_pass http://127.0.0.1:1/x; } }"),
     qr/^\S+:\d+: "proxy_pass http:\/\/127.0.0.1:1\/x" cannot have a URI part in .* named location/m,
     'no URI part in a named location (nginx)');
like(tg_conf_error("server { listen %%PORT%%; location \@a { } location \@a { } }"),
     qr/^\S+:\d+: duplicate location "\@a"/m, 'duplicate named location');
done_testing;
