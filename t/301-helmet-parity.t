# security_headers against helmet 8, one row per option: an Express app with
# helmet(options) and Tollgate with the equivalent directives in front of the
# same app without helmet answer the same request; every header except the
# app's own (Date, ETag, lengths, connection) is compared byte for byte.
# One difference by design: with HSTS left at its default, Tollgate sends it
# only on TLS listeners, so on this plain-HTTP listener helmet's HSTS is left
# out of the comparison unless the row configures HSTS.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use JSON::PP qw(encode_json);

my $plain = node_upstream('express', env => { MW => '' });
my @ignore = qw(date etag content-length content-type connection keep-alive);
sub view($r) {
    my %h;
    for my $p (@{$r->{header_list}}) {
        my $n = lc $p->[0];
        next if grep { $_ eq $n } @ignore;
        $h{$n} = defined $h{$n} ? "$h{$n}, $p->[1]" : $p->[1];
    }
    return \%h;
}
my $T = JSON::PP::true;
my $F = JSON::PP::false;

# name, helmet options (JSON text where the order of keys matters), Tollgate
# directives, 1 when the row sets HSTS
my @rows = (
    ['defaults', {}, ''],
    ['CSP: directives replaced and added',
     q({"contentSecurityPolicy": {"directives": {"scriptSrc": ["'self'", "cdn.example.com"],
        "img-src": ["'self'", "data:", "https:"], "reportUri": "/csp-report", "workerSrc": "'self'"}}}),
     "security_headers_csp scriptSrc 'self' cdn.example.com;\n"
     . "security_headers_csp img-src 'self' data: https:;\n"
     . "security_headers_csp reportUri /csp-report;\n"
     . "security_headers_csp worker-src 'self';"],
    ['CSP: directives removed (null)',
     q({"contentSecurityPolicy": {"directives": {"upgradeInsecureRequests": null, "object-src": null}}}),
     "security_headers_csp upgrade-insecure-requests off;\nsecurity_headers_csp object-src off;"],
    ['CSP: useDefaults false',
     q({"contentSecurityPolicy": {"useDefaults": false, "directives": {
        "defaultSrc": ["'none'"], "frameAncestors": ["'none'"], "sandbox": []}}}),
     "security_headers_csp_defaults off;\nsecurity_headers_csp default-src 'none';\n"
     . "security_headers_csp frame-ancestors 'none';\nsecurity_headers_csp sandbox;"],
    ['CSP: reportOnly with defaults',
     { contentSecurityPolicy => { reportOnly => $T } },
     'security_headers_csp_report_only on;'],
    ['CSP: reportOnly with a directive',
     { contentSecurityPolicy => { reportOnly => $T, directives => { reportTo => 'csp-endpoint' } } },
     "security_headers_csp_report_only on;\nsecurity_headers_csp report-to csp-endpoint;"],
    ['CSP: off', { contentSecurityPolicy => $F }, 'security_header Content-Security-Policy off;'],
    ['COEP true', { crossOriginEmbedderPolicy => $T },
     'security_header Cross-Origin-Embedder-Policy require-corp;'],
    ['COEP, COOP, CORP policies',
     { crossOriginEmbedderPolicy => { policy => 'credentialless' },
       crossOriginOpenerPolicy => { policy => 'same-origin-allow-popups' },
       crossOriginResourcePolicy => { policy => 'cross-origin' } },
     "security_header Cross-Origin-Embedder-Policy credentialless;\n"
     . "security_header Cross-Origin-Opener-Policy same-origin-allow-popups;\n"
     . "security_header Cross-Origin-Resource-Policy cross-origin;"],
    ['COOP noopener-allow-popups, CORP same-site',
     { crossOriginOpenerPolicy => { policy => 'noopener-allow-popups' },
       crossOriginResourcePolicy => { policy => 'same-site' } },
     "security_header Cross-Origin-Opener-Policy noopener-allow-popups;\n"
     . "security_header Cross-Origin-Resource-Policy same-site;"],
    ['Referrer-Policy list',
     { referrerPolicy => { policy => ['no-referrer', 'strict-origin-when-cross-origin'] } },
     'security_header Referrer-Policy no-referrer,strict-origin-when-cross-origin;'],
    ['Referrer-Policy one token', { referrerPolicy => { policy => 'same-origin' } },
     'security_header Referrer-Policy same-origin;'],
    ['HSTS maxAge, no includeSubDomains, preload',
     { strictTransportSecurity => { maxAge => 63072000, includeSubDomains => $F, preload => $T } },
     'security_headers_hsts max_age=63072000 include_subdomains=off preload=on;', 1],
    ['HSTS defaults, sent always', {}, 'security_headers_hsts;', 1],
    ['hsts alias, maxAge 0', { hsts => { maxAge => 0 } }, 'security_headers_hsts max_age=0;', 1],
    ['HSTS off', { strictTransportSecurity => $F },
     'security_header Strict-Transport-Security off;', 1],
    ['X-Frame-Options deny', { xFrameOptions => { action => 'deny' } },
     'security_header X-Frame-Options deny;'],
    ['frameguard same-origin', { frameguard => { action => 'same-origin' } },
     'security_header X-Frame-Options same-origin;'],
    ['X-DNS-Prefetch-Control allow', { xDnsPrefetchControl => { allow => $T } },
     'security_header X-DNS-Prefetch-Control on;'],
    ['X-Permitted-Cross-Domain-Policies',
     { xPermittedCrossDomainPolicies => { permittedPolicies => 'by-content-type' } },
     'security_header X-Permitted-Cross-Domain-Policies by-content-type;'],
    ['X-Powered-By kept', { xPoweredBy => $F }, 'security_headers_hide_powered_by off;'],
    ['several headers disabled',
     { xFrameOptions => $F, xXssProtection => $F, originAgentCluster => $F, xDownloadOptions => $F,
       xContentTypeOptions => $F, crossOriginOpenerPolicy => $F, crossOriginResourcePolicy => $F,
       referrerPolicy => $F, xDnsPrefetchControl => $F, xPermittedCrossDomainPolicies => $F },
     join("\n", map { "security_header $_ off;" } qw(X-Frame-Options X-XSS-Protection
         Origin-Agent-Cluster X-Download-Options X-Content-Type-Options Cross-Origin-Opener-Policy
         Cross-Origin-Resource-Policy Referrer-Policy X-DNS-Prefetch-Control
         X-Permitted-Cross-Domain-Policies))],
);

my $conf = "server {\n    listen %%PORT%%;\n    server_tokens off;\n    security_headers on;\n";
my $n = 0;
for my $row (@rows) {
    my ($name, $opts, $directives, $hsts) = @$row;
    $n++;
    $conf .= "    location /r$n/ {\n        proxy_pass $plain->{addr};\n"
           . join('', map { "        $_\n" } split /\n/, $directives) . "    }\n";
}
$conf .= "}\n";
my $tg = tg_start($conf);
$n = 0;
for my $row (@rows) {
    my ($name, $opts, $directives, $hsts) = @$row;
    $n++;
    my $app = node_upstream('express', env => { MW => 'helmet', HELMET => ref $opts ? encode_json($opts) : $opts });
    my $want = view($app->http(GET => "/r$n/x"));
    delete $want->{'strict-transport-security'} unless $hsts;
    my $got = view($tg->http(GET => "/r$n/x"));
    is_deeply($got, $want, "$name: same headers as helmet")
        or diag explain { got => $got, want => $want, conf => $directives };
    $app->stop;
}
$tg->stop;

# with security_headers off, the configured ones alone
{
    my $tg2 = tg_start(<<"C");
server {
    listen %%PORT%%;
    security_headers_csp default-src 'self';
    security_headers_hsts max_age=600;
    location / { proxy_pass $plain->{addr}; }
    location /ro/ { security_headers_csp_report_only on; proxy_pass $plain->{addr}; }
}
C
    my $r = $tg2->http(GET => '/x');
    is($r->{headers}{'content-security-policy'}, "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
       'security_headers off: the configured CSP alone');
    is($r->{headers}{'strict-transport-security'}, 'max-age=600; includeSubDomains', '... and HSTS');
    ok(!exists $r->{headers}{'x-frame-options'}, '... nothing else');
    is($r->{headers}{'x-powered-by'}, 'Express', '... X-Powered-By left alone');
    $r = $tg2->http(GET => '/ro/x');
    ok(defined $r->{headers}{'content-security-policy-report-only'}
       && !exists $r->{headers}{'content-security-policy'}, 'report-only inherits the directives');
}

for my $bad (
    ['security_header Cross-Origin-Opener-Policy same-site;', qr/unsupported value "same-site"/],
    ['security_header X-Frame-Options ALLOW-FROM;', qr/invalid action "ALLOW-FROM"/],
    ['security_header Referrer-Policy no-referrer,bogus;', qr/unexpected policy token "bogus"/],
    ['security_header Referrer-Policy origin,origin;', qr/duplicate policy token "origin"/],
    ["security_headers_csp script-src self;", qr/"self" for "script-src" .* should be quoted: 'self'/],
    ["security_headers_csp script-src 'self';\n security_headers_csp scriptSrc 'none';",
     qr/duplicate directive "script-src"/],
    ["security_headers_csp 9bad 'self';", qr/invalid directive name "9bad"/],
    ["security_headers_csp default-src off;", qr/needs a default-src/],
    ["security_headers_csp_defaults off;\n security_headers_csp img-src 'self';", qr/needs a default-src/],
    ["security_headers_csp img-src \"a;b\";", qr/invalid value "a;b" for "img-src"/],
    ['security_headers_hsts max_age=-1;', qr/invalid max_age "-1"/],
    ['security_headers_hsts preload=yes;', qr/invalid parameter "preload=yes"/],
) {
    like(tg_conf_error("server {\n listen %%PORT%%;\n $bad->[0]\n}"), $bad->[1], "config error: $bad->[0]");
}
done_testing;
