# security_headers against helmet itself: the same header names and values
# as an Express app using helmet() (8.x) with its defaults.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;

my $helmet = node_upstream('express', env => { MW => 'helmet' });
my $plain = node_upstream('express', env => { MW => '' });

my @ignore = qw(date etag content-length content-type connection keep-alive);
sub sec_headers($r) {
    my %h = %{$r->{headers}};
    delete @h{@ignore};
    return \%h;
}

my $want = sec_headers($helmet->http(GET => '/x'));
ok(keys %$want >= 10, 'helmet sends its headers') or diag explain $want;
ok(!exists $want->{'x-powered-by'}, 'helmet drops X-Powered-By');

my $tg = tg_start(<<"C");
server {
    listen %%PORT%%;
    server_tokens off;
    security_headers on;
    location / { proxy_pass $plain->{addr}; }
    location /forced-hsts {
        proxy_pass $plain->{addr};
        security_header Strict-Transport-Security "max-age=31536000; includeSubDomains";
    }
    location /custom {
        proxy_pass $plain->{addr};
        security_header Content-Security-Policy "default-src 'self' cdn.example.com";
        security_header X-Frame-Options off;
        security_header Permissions-Policy "geolocation=()";
    }
    location /own-headers { proxy_pass $plain->{addr}; }
    location /override {
        proxy_pass $plain->{addr};
        security_headers_override on;
    }
    location = /local { return 200 "local"; }
    location /off { security_headers off; proxy_pass $plain->{addr}; }
}
C
my $r = $tg->http(GET => '/x');
is($plain->http(GET => '/x')->{headers}{'x-powered-by'}, 'Express', 'the app itself sends X-Powered-By');
my $got = sec_headers($r);
my %want_plain = %$want;
delete $want_plain{'strict-transport-security'};   # plain HTTP listener
is_deeply($got, \%want_plain, 'same headers and values as helmet (without HSTS on plain HTTP)')
    or diag explain { got => $got, want => \%want_plain };

$got = sec_headers($tg->http(GET => '/forced-hsts/x'));
is_deeply($got, $want, 'with HSTS forced: exactly helmet\'s set') or diag explain $got;

$got = sec_headers($tg->http(GET => '/custom/x'));
is($got->{'content-security-policy'}, "default-src 'self' cdn.example.com", 'override one value');
ok(!exists $got->{'x-frame-options'}, 'security_header NAME off drops one');
is($got->{'permissions-policy'}, 'geolocation=()', 'an extra header');
is($got->{'x-content-type-options'}, 'nosniff', 'the rest unchanged');

$got = sec_headers($tg->http(GET => '/own-headers'));
is($got->{'x-frame-options'}, 'DENY', "the upstream's own value wins");
is($got->{'content-security-policy'}, "default-src 'none'", "... also for CSP");
is(scalar(() = grep { lc $_->[0] eq 'x-frame-options' } @{$tg->http(GET => '/own-headers')->{header_list}}),
   1, 'and is not duplicated');
$got = sec_headers($tg->http(GET => '/override/own-headers'));
is($got->{'x-frame-options'}, 'SAMEORIGIN', 'security_headers_override on replaces it');

$got = sec_headers($tg->http(GET => '/local'));
is($got->{'x-content-type-options'}, 'nosniff', 'local answers get them too');
$r = $tg->http(GET => '/off/x');
ok(!exists $r->{headers}{'content-security-policy'}, 'security_headers off in a location');
is($r->{headers}{'x-powered-by'}, 'Express', '... leaves the response alone');
ok(!exists $tg->http(GET => '/x')->{headers}{server}, 'server_tokens off: no Server header');
$tg->stop;

like(tg_conf_error("server {\n listen %%PORT%%;\n security_header \"Bad Name\" x;\n}"),
     qr/:3: invalid header name/, 'bad header name rejected');
like(tg_conf_error("server {\n listen %%PORT%%;\n security_headers maybe;\n}"),
     qr/:3: .*maybe/, 'bad flag rejected');
done_testing;
