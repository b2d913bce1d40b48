# The scripts in lua/examples/, against real upstreams.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json encode_json);
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use lib 't/lib';
use Tollgate::Test;

my $stable = node_upstream('echo', env => {NAME => 'stable'});
my $canary = node_upstream('echo', env => {NAME => 'canary'});
my $ex = '%%ROOT%%/lua/examples';
my $tg = tg_start(<<"C", files => {
lua_package_path "%%DIR%%/?.lua;;";
lua_shared_dict api_keys 1m;
upstream canary { server $canary->{addr}; }
upstream variant_a { server $stable->{addr}; }
upstream variant_b { server $canary->{addr}; }
server {
    listen %%PORT%%;
    location / { lua_route $ex/canary.lua; proxy_pass $stable->{addr}; }
    location /ab/ {
        lua_route $ex/ab_split.lua;
        lua_header_filter $ex/ab_split.lua;
        proxy_pass $stable->{addr};
    }
    location /key/ { lua_access $ex/api_key.lua; proxy_pass $stable->{addr}; }
    location = /admin/keys { lua_access %%DIR%%/admin.lua; }
    location /jwt/ { lua_access $ex/jwt_hs256.lua; proxy_pass $stable->{addr}; }
    location /hook/ {
        lua_body_max 4k;
        lua_access $ex/webhook_signature.lua;
        proxy_pass $stable->{addr};
    }
    location ~ ^/(api|headers|status)/ {
        lua_header_filter $ex/response_headers.lua;
        proxy_pass $stable->{addr};
    }
    location /v1/ { lua_rewrite $ex/versioned_paths.lua; }
    location /users/ { proxy_pass $canary->{addr}; }
}
C
    'jwt_config.lua' => "return { secret = 's3cret' }\n",
    'webhook_config.lua' => "return { secret = 'hook-secret' }\n",
    'admin.lua' => "tg.shared.api_keys:set(tg.req.arg('key'), tg.req.arg('client')) tg.exit(204)\n",
});

sub name_of($r) { return $r->{status} == 200 ? decode_json($r->{body})->{name} : "status $r->{status}" }

# canary
is(name_of($tg->http(GET => '/x', headers => ['X-Canary' => 'always'])), 'canary', 'X-Canary: always');
is(name_of($tg->http(GET => '/x', headers => ['X-Canary' => 'never', Cookie => 'uid=3'])), 'stable',
   'X-Canary: never');
my ($n, %side) = (0);
for my $u (1 .. 200) {
    my $name = name_of($tg->http(GET => '/x', headers => [Cookie => "uid=user$u"]));
    $n++ if $name eq 'canary';
    $side{$u} = $name;
}
ok($n >= 8 && $n <= 40, "about 10% of users on the canary ($n of 200)");
my $same = grep { name_of($tg->http(GET => '/x', headers => [Cookie => "uid=user$_"])) eq $side{$_} } 1 .. 20;
is($same, 20, 'a user stays on one side');

# A/B
my $r = $tg->http(GET => '/ab/x');
my ($ab) = ($r->{headers}{'set-cookie'} // '') =~ /^ab=([ab]);/;
ok($ab, 'first visit: a side is drawn and set in a cookie');
is(name_of($r), $ab eq 'a' ? 'stable' : 'canary', 'and routed there');
$r = $tg->http(GET => '/ab/x', headers => [Cookie => 'ab=b']);
is(name_of($r), 'canary', 'cookie b -> variant_b');
ok(!exists $r->{headers}{'set-cookie'}, 'no new cookie');
is(decode_json($r->{body})->{headers}{'x-ab'}, 'b', 'the side goes upstream');
is(name_of($tg->http(GET => '/ab/x', headers => [Cookie => 'ab=a'])), 'stable', 'cookie a -> variant_a');

# API keys from the shared dict
is($tg->http(GET => '/admin/keys?key=k1&client=acme')->{status}, 204, 'key stored');
$r = $tg->http(GET => '/key/x', headers => ['X-Api-Key' => 'k1']);
is($r->{status}, 200, 'known key');
my $j = decode_json($r->{body});
is($j->{headers}{'x-api-client'}, 'acme', 'client name upstream');
ok(!exists $j->{headers}{'x-api-key'}, 'the key itself is not forwarded');
$r = $tg->http(GET => '/key/x', headers => ['X-Api-Key' => 'nope']);
is($r->{status}, 401, 'unknown key: 401');
like($r->{body}, qr/invalid api key/, 'with a reason');
is($tg->http(GET => '/key/x')->{status}, 401, 'missing key: 401');

# JWT
sub jwt($claims, $secret = 's3cret', $alg = 'HS256') {
    my $h = encode_base64url(encode_json({alg => $alg, typ => 'JWT'}));
    my $p = encode_base64url(encode_json($claims));
    return "$h.$p." . encode_base64url(hmac_sha256("$h.$p", $secret));
}
my $now = time;
$r = $tg->http(GET => '/jwt/x', headers => [Authorization => 'Bearer ' . jwt({sub => 'alice', exp => $now + 60})]);
is($r->{status}, 200, 'valid token');
$j = decode_json($r->{body});
is($j->{headers}{'x-user'}, 'alice', 'subject upstream');
ok(!exists $j->{headers}{authorization}, 'token not forwarded');
my %bad = (
    'token expired' => jwt({sub => 'a', exp => $now - 120}),
    'token not yet valid' => jwt({sub => 'a', nbf => $now + 120}),
    'bad signature' => jwt({sub => 'a'}, 'wrong'),
    'unsupported alg' => jwt({sub => 'a'}, 's3cret', 'none'),
    'malformed token' => 'abc.def',
    'missing token' => undef,
);
for my $why (sort keys %bad) {
    $r = $tg->http(GET => '/jwt/x', headers => [Authorization => defined $bad{$why} ? "Bearer $bad{$why}" : undef]);
    is($r->{status}, 401, "$why: 401");
    is(eval { decode_json($r->{body})->{error} }, $why, "$why: reason");
}

# response headers
$r = $tg->http(GET => '/headers/?X-Powered-By=Express&X-Kept=1');
ok(!exists $r->{headers}{'x-powered-by'}, 'X-Powered-By dropped');
is($r->{headers}{'x-kept'}, '1', 'others kept');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'nosniff');
ok(!exists $r->{headers}{'cache-control'}, 'Cache-Control only on /api/');
$r = $tg->http(GET => '/api/x');
is($r->{headers}{'cache-control'}, 'no-store', 'API answers not cached');
$r = $tg->http(GET => '/status/503');
is($r->{status}, 503, 'upstream error passed');
is($r->{headers}{'x-error'}, 'upstream', 'errors tagged');

# versioned paths
$r = $tg->http(GET => '/v1/users/7?x=1');
is(name_of($r), 'canary', 'routed again on the new path');
$j = decode_json($r->{body});
is($j->{url}, '/users/7?x=1', '/v1 stripped');
is($j->{headers}{'x-api-version'}, '1', 'version sent upstream');

# webhook signature over the body
my $payload = '{"action":"opened","number":7}';
my $sig = 'sha256=' . unpack('H*', hmac_sha256($payload, 'hook-secret'));
$r = $tg->http(POST => '/hook/x', body => $payload, headers => ['X-Hub-Signature-256' => $sig]);
is($r->{status}, 200, 'webhook: a good signature passes');
my $got = decode_json($r->{body});
is($got->{body}, $payload, 'webhook: the upstream gets the body the signature covers');
ok(!exists $got->{headers}{'x-hub-signature-256'}, 'webhook: the signature is not forwarded');
$r = $tg->http(POST => '/hook/x', chunked => 1, body => ['{"action":', '"opened","number":7}'],
               headers => ['X-Hub-Signature-256' => $sig]);
is($r->{status}, 200, 'webhook: a chunked body is checked decoded');
is(decode_json($r->{body})->{body}, $payload, 'webhook: and forwarded whole');
$r = $tg->http(POST => '/hook/x', body => "$payload ", headers => ['X-Hub-Signature-256' => $sig]);
is($r->{status}, 401, 'webhook: a changed body is refused');
is($r->{body}, "bad signature\n", 'webhook: with its reason');
is($tg->http(POST => '/hook/x', body => $payload)->{status}, 401, 'webhook: no signature, 401');
$r = $tg->http(POST => '/hook/x', body => 'x' x 5000, headers => ['X-Hub-Signature-256' => $sig]);
is($r->{status}, 413, 'webhook: a body over lua_body_max, 413');

done_testing;
