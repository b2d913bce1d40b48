# cors against the `cors` npm package: for the same options, the same status
# and the same Access-Control-* and Vary headers, for preflights and actual
# requests, from allowed, foreign and missing origins. Preflights never reach
# the upstream.
use v5.36;
use Test::More;
use JSON::PP qw(encode_json);
use lib 't/lib';
use Tollgate::Test;

my @cases = (
    { name => 'defaults', opts => {}, conf => 'cors;' },
    { name => 'full',
      opts => { origin => ['https://a.test', 'https://b.test'], methods => ['GET', 'POST'],
                allowedHeaders => ['X-A', 'X-B'], exposedHeaders => ['X-C', 'X-D'],
                credentials => JSON::PP::true, maxAge => 600 },
      conf => 'cors origins=https://a.test,https://b.test methods=GET,POST headers=X-A,X-B '
            . 'expose=X-C,X-D credentials=on max_age=600;' },
    { name => 'reflect headers',
      opts => { origin => ['https://a.test'] }, conf => 'cors origins=https://a.test;' },
    { name => 'any origin with credentials',
      opts => { origin => '*', credentials => JSON::PP::true, exposedHeaders => ['X-E'] },
      conf => 'cors origins=* credentials=on expose=X-E;' },
    { name => 'pattern beside exact origins',
      opts => { origin => ['https://a.test', { re => '^https://[a-z]+\\.example\\.com$' }] },
      conf => 'cors origins=https://a.test origins=~^https://[a-z]+\\.example\\.com$;' },
    { name => 'caseless pattern',
      opts => { origin => [{ re => '^https://[a-z]+\\.example\\.com$', flags => 'i' }, 'https://b.test'] },
      conf => 'cors origins=https://b.test,~*^https://[a-z]+\\.example\\.com$;' },
    { name => 'pattern with a comma',
      opts => { origin => [{ re => '^https://[ab]{1,2}\\.test$' }] },
      conf => 'cors "origins=~^https://[ab]{1,2}\\.test$";' },
    { name => 'reflect (origin: true)',
      opts => { origin => JSON::PP::true }, conf => 'cors origins=reflect;' },
    { name => 'reflect with credentials, max_age, expose_headers',
      opts => { origin => JSON::PP::true, credentials => JSON::PP::true, maxAge => 86400,
                exposedHeaders => 'X-Total,X-Page' },
      conf => 'cors origins=reflect credentials=on max_age=86400 expose_headers=X-Total,X-Page;' },
    { name => 'options_status 200 (optionsSuccessStatus)',
      opts => { origin => ['https://a.test'], optionsSuccessStatus => 200 },
      conf => 'cors origins=https://a.test options_status=200;' },
    { name => 'preflight_continue (preflightContinue)', continue => 1,
      opts => { origin => ['https://a.test'], preflightContinue => JSON::PP::true, maxAge => 5 },
      conf => 'cors origins=https://a.test preflight_continue=on max_age=5;' },
    { name => 'credentials off, methods, headers',
      opts => { origin => ['https://a.test'], credentials => JSON::PP::false, methods => 'GET,PUT',
                allowedHeaders => 'Content-Type' },
      conf => 'cors origins=https://a.test credentials=off methods=GET,PUT headers=Content-Type;' },
);
my @requests = (
    ['GET allowed', GET => ['Origin' => 'https://a.test']],
    ['GET foreign', GET => ['Origin' => 'https://evil.test']],
    ['GET no origin', GET => []],
    ['POST allowed', POST => ['Origin' => 'https://b.test']],
    ['preflight allowed', OPTIONS => ['Origin' => 'https://a.test',
        'Access-Control-Request-Method' => 'PUT', 'Access-Control-Request-Headers' => 'x-a,content-type']],
    ['preflight foreign', OPTIONS => ['Origin' => 'https://evil.test',
        'Access-Control-Request-Method' => 'GET']],
    ['preflight no request headers', OPTIONS => ['Origin' => 'https://a.test',
        'Access-Control-Request-Method' => 'POST']],
    ['GET pattern origin', GET => ['Origin' => 'https://api.example.com']],
    ['GET pattern origin, other case', GET => ['Origin' => 'https://API.Example.com']],
    ['GET near miss', GET => ['Origin' => 'https://api.example.com.evil.test']],
    ['GET two letters', GET => ['Origin' => 'https://ab.test']],
    ['preflight pattern origin', OPTIONS => ['Origin' => 'https://api.example.com',
        'Access-Control-Request-Method' => 'DELETE', 'Access-Control-Request-Headers' => 'x-key']],
    ['preflight foreign pattern', OPTIONS => ['Origin' => 'http://api.example.com',
        'Access-Control-Request-Method' => 'GET']],
    ['preflight no origin', OPTIONS => ['Access-Control-Request-Method' => 'GET']],
);

sub cors_view($r) {
    my %h;
    for my $p (@{$r->{header_list}}) {
        my $n = lc $p->[0];
        next unless $n =~ /^access-control-|^vary$|^content-length$/;
        $h{$n} = defined $h{$n} ? "$h{$n}, $p->[1]" : $p->[1];
    }
    # the cors package sends Content-Length: 0 on a 204, which RFC 9110 forbids
    # (section 8.6); Tollgate does not: compared on the other statuses only
    delete $h{'content-length'} if $r->{status} == 204;
    return { status => $r->{status}, headers => \%h, body => $r->{body} };
}

my $plain = node_upstream('express', env => { MW => '' });
my $echo = node_upstream('echo');
for my $c (@cases) {
    my $app = node_upstream('express', env => { MW => 'cors', CORS => encode_json($c->{opts}) });
    my $tg = tg_start(<<"C");
server {
    listen %%PORT%%;
    $c->{conf}
    location / { proxy_pass $plain->{addr}; }
    location /echo/ { proxy_pass $echo->{addr}; }
}
C
    for my $q (@requests) {
        my ($qname, $method, $headers) = @$q;
        my %o = (headers => $headers);
        $o{body} = '{}' if $method eq 'POST';
        my $want = cors_view($app->http($method => '/r', %o));
        my $got = cors_view($tg->http($method => '/r', %o));
        is_deeply($got, $want, "$c->{name}: $qname") or diag explain { got => $got, want => $want };
    }
    $echo->clear_log;
    $tg->http(OPTIONS => '/echo/x', headers => ['Origin' => 'https://a.test',
                                                'Access-Control-Request-Method' => 'PUT']);
    is(scalar @{$echo->log}, $c->{continue} ? 1 : 0,
       "$c->{name}: preflight " . ($c->{continue} ? 'goes upstream' : 'never reaches the upstream'));
    $echo->clear_log;
    $tg->http(GET => '/echo/x', headers => ['Origin' => 'https://a.test']);
    is(scalar @{$echo->log}, 1, "$c->{name}: actual requests do");
    $tg->stop;
    $app->stop;
}

# Vary merges with the upstream's own Vary
{
    my $tg = tg_start("server { listen %%PORT%%; cors origins=https://a.test; "
                    . "location / { proxy_pass $echo->{addr}; } location /off/ { cors off; proxy_pass $echo->{addr}; } }");
    my $r = $tg->http(GET => '/headers?Vary=Accept-Encoding', headers => [Origin => 'https://a.test']);
    is($r->{headers}{vary}, 'Accept-Encoding, Origin', 'Vary merged');
    $r = $tg->http(GET => '/off/x', headers => [Origin => 'https://a.test']);
    ok(!exists $r->{headers}{'access-control-allow-origin'}, 'cors off in a location');
    $tg->stop;
}
like(tg_conf_error("server {\n listen %%PORT%%;\n cors origins=https://a.test bogus=1;\n}"),
     qr/:3: invalid parameter "bogus=1" in "cors"/, 'bad cors parameter');
like(tg_conf_error("server {\n listen %%PORT%%;\n cors methods=GET,,POST;\n}"),
     qr/:3: invalid methods list/, 'bad cors list');
like(tg_conf_error("server {\n cors origins=~^https://(;\n}"),
     qr/:2: invalid origin pattern "\^https:\/\/\(" in "cors": missing closing parenthesis/, 'bad pattern');
like(tg_conf_error("server {\n cors origins=reflect origins=https://a.test;\n}"),
     qr/:2: .*cannot be combined with other origins/, 'reflect and a list');
like(tg_conf_error("server {\n cors options_status=404;\n}"),
     qr/:2: invalid options_status "404" in "cors", expected 200..299/, 'bad options_status');
done_testing;
