# tg.jwt.verify against tokens made by the `jose` npm package: every
# algorithm with its key as a JWK, as a JWKS and as a PEM public key, then
# Ed448 (signed by node:crypto), then the attacks (alg none, an HS token signed with the RSA public key's PEM
# bytes, alg not allowed, tampered payload and signature, a signature
# from another key) and the claims (exp, nbf, iat with leeway, iss, aud).
# The script gets {token, opts} as JSON and answers {ok, err, sub, alg}.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json encode_json);
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::Test qw(tg_npm_setup repo_root);

tg_npm_setup();
my $root = repo_root();
my $dir = tempdir('tg-jwt-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Tollgate::Test::_spew("$dir/make.mjs", <<'JS');
import { createRequire } from "node:module";
const require = createRequire(process.argv[2] + "/t/");
const jose = await import(require.resolve("jose"));
const crypto = await import("node:crypto");
const now = Math.floor(Date.now() / 1000);
const out = { now, algs: {}, attacks: {} };
const sign = (alg, key, claims, header = {}) =>
  new jose.SignJWT(claims).setProtectedHeader({ alg, ...header }).sign(key);
const algs = { HS256: null, HS384: null, HS512: null, RS256: {}, RS384: {}, RS512: {},
               PS256: {}, PS384: {}, PS512: {}, ES256: {}, ES384: {}, EdDSA: { crv: "Ed25519" } };
for (const alg of Object.keys(algs)) {
  const o = {};
  if (alg.startsWith("HS")) {
    const secret = crypto.randomBytes(48);
    o.secret = jose.base64url.encode(secret);
    o.jwk = { kty: "oct", k: jose.base64url.encode(secret), kid: "h-" + alg };
    o.token = await sign(alg, secret, { sub: "u-" + alg, exp: now + 600 }, { kid: "h-" + alg });
    o.other = await sign(alg, crypto.randomBytes(48), { sub: "x" });
  } else {
    const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true, ...algs[alg] });
    o.jwk = { ...(await jose.exportJWK(publicKey)), kid: "k-" + alg, use: "sig" };
    o.pem = await jose.exportSPKI(publicKey);
    o.token = await sign(alg, privateKey, { sub: "u-" + alg, exp: now + 600 }, { kid: "k-" + alg });
    o.oidc = await sign(alg, privateKey, { sub: "oidc-" + alg, scope: "read write", exp: now + 600,
                                           iss: "https://idp.example/", aud: ["api", "web"] }, { kid: "k-" + alg });
    const other = await jose.generateKeyPair(alg, algs[alg]);
    o.other = await sign(alg, other.privateKey, { sub: "x" }, { kid: "k-" + alg });
  }
  out.algs[alg] = o;
}
// Ed448 (jose signs Ed25519 only: node:crypto signs it)
{
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ed448");
  const input = jose.base64url.encode(JSON.stringify({ alg: "EdDSA" })) + "." +
                jose.base64url.encode(JSON.stringify({ sub: "u-Ed448" }));
  const sig = crypto.sign(null, Buffer.from(input), privateKey);
  out.algs.Ed448 = { jwk: publicKey.export({ format: "jwk" }),
                     pem: publicKey.export({ type: "spki", format: "pem" }),
                     token: input + "." + jose.base64url.encode(sig) };
}
// attacks
const rs = out.algs.RS256, b64 = (o) => jose.base64url.encode(JSON.stringify(o));
out.attacks.none = new jose.UnsecuredJWT({ sub: "admin" }).encode();
out.attacks.none_upper = b64({ alg: "NONE" }) + "." + b64({ sub: "admin" }) + ".";
out.attacks.confusion = await sign("HS256", new TextEncoder().encode(rs.pem), { sub: "admin" });
const [h, p, s] = rs.token.split(".");
out.attacks.tampered = h + "." + b64({ sub: "admin", exp: now + 600 }) + "." + s;
out.attacks.badsig = h + "." + p + "." + s.slice(0, -4) + (s.endsWith("AAAA") ? "BBBB" : "AAAA");
out.attacks.crit = await sign("HS256", jose.base64url.decode(out.algs.HS256.secret), { sub: "a" },
                              { crit: ["b64"], b64: true });
// claims, all HS256 with the HS256 secret
const hs = jose.base64url.decode(out.algs.HS256.secret);
const c = {};
c.expired = await sign("HS256", hs, { sub: "a", exp: now - 10 });
c.expired_long = await sign("HS256", hs, { sub: "a", exp: now - 200 });
c.nbf = await sign("HS256", hs, { sub: "a", nbf: now + 10 });
c.nbf_long = await sign("HS256", hs, { sub: "a", nbf: now + 120 });
c.iat_future = await sign("HS256", hs, { sub: "a", iat: now + 120 });
c.exp_string = await sign("HS256", hs, { sub: "a", exp: "soon" });
c.iss_aud = await sign("HS256", hs, { sub: "a", iss: "https://idp.example", aud: ["api", "web"] });
c.aud_string = await sign("HS256", hs, { sub: "a", aud: "api" });
out.claims = c;
// a 1024-bit RSA key (node:crypto: jose refuses to sign with one)
const weak = crypto.generateKeyPairSync("rsa", { modulusLength: 1024 });
out.weak_pem = weak.publicKey.export({ type: "spki", format: "pem" });
process.stdout.write(JSON.stringify(out));
JS
my $json = `node $dir/make.mjs $root`;
is($?, 0, 'jose made the keys and tokens') or BAIL_OUT('no tokens');
my $T = JSON::PP->new->latin1->decode($json);
my $now = $T->{now};

my $up = node_upstream('echo');
my $jwks = JSON::PP->new->canonical->encode({keys => [map { $T->{algs}{$_}{jwk} } qw(RS256 PS256 ES256 EdDSA HS256)]});
my $tg = tg_start(<<"C", errors_ok => [qr/no keys and no secret/], files => {
lua_package_path "%%DIR%%/?.lua;;";
server {
    listen %%PORT%%;
    location / { lua_access %%DIR%%/verify.lua; }
    location /api/ { lua_access $root/lua/examples/jwt_jwks.lua; proxy_pass $up->{addr}; }
}
C
    'jwks_config.lua' => "return { jwks = [[$jwks]], iss = 'https://idp.example/', aud = 'api' }\n",
    'verify.lua' => <<'L',
local q = tg.json.decode(tg.req.body())
if q.opts.secret_b64 then q.opts.secret = tg.crypto.base64_decode(q.opts.secret_b64, true) end
local claims, err = tg.jwt.verify(q.token, q.opts)
local ok2, err2
if q.twice then ok2, err2 = tg.jwt.verify(q.token, q.opts) end  -- cached key set
tg.exit(200, tg.json.encode({ok = claims ~= nil, err = err or tg.json.null,
                             sub = claims and claims.sub or tg.json.null,
                             alg = claims and select(2, tg.jwt.verify(q.token, q.opts)).alg or tg.json.null,
                             again = q.twice and (ok2 ~= nil) or tg.json.null}))
L
});

sub verify($token, $opts, %o) {
    my $r = $tg->http(POST => '/', body => JSON::PP->new->latin1->encode({token => $token, opts => $opts, %o}));
    return { ok => 0, err => "status $r->{status}" } unless $r->{status} == 200;
    return decode_json($r->{body});
}
sub accepts($name, $token, $opts, $sub) {
    my $v = verify($token, $opts);
    ok($v->{ok}, "$name: accepted") or diag explain $v;
    is($v->{sub}, $sub, "$name: claims") if defined $sub;
}
sub refuses($name, $token, $opts, $err) {
    my $v = verify($token, $opts);
    ok(!$v->{ok}, "$name: refused");
    is($v->{err}, $err, "$name: \"$err\"");
}

# ---- every algorithm
for my $alg (qw(HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA)) {
    my $o = $T->{algs}{$alg};
    accepts("$alg JWK", $o->{token}, {keys => $o->{jwk}}, "u-$alg");
    accepts("$alg JWKS", $o->{token}, {keys => {keys => [$T->{algs}{RS256}{jwk}, $o->{jwk}]},
                                       alg => [$alg]}, "u-$alg");
    if ($alg =~ /^HS/) {
        accepts("$alg secret", $o->{token}, {secret_b64 => $o->{secret}}, "u-$alg");
    } else {
        accepts("$alg PEM", $o->{token}, {keys => $o->{pem}}, "u-$alg");
        accepts("$alg PEM in a list", $o->{token}, {keys => [$T->{algs}{RS256}{pem}, $o->{pem}]}, "u-$alg");
    }
    refuses("$alg signed by another key", $o->{other}, {keys => $o->{jwk}, alg => [$alg]},
            'bad signature');
}
accepts('EdDSA Ed448 JWK', $T->{algs}{Ed448}{token}, {keys => $T->{algs}{Ed448}{jwk}}, 'u-Ed448');
accepts('EdDSA Ed448 PEM', $T->{algs}{Ed448}{token}, {keys => $T->{algs}{Ed448}{pem}}, 'u-Ed448');
my $v = verify($T->{algs}{ES256}{token}, {keys => $T->{algs}{ES256}{pem}}, twice => 1);
ok($v->{ok} && $v->{again}, 'a PEM string verifies again from the cache');
is($v->{alg}, 'ES256', 'the header is the second result');

# ---- attacks
my $rs = $T->{algs}{RS256};
my $a = $T->{attacks};
refuses('alg none', $a->{none}, {keys => $rs->{pem}}, 'unsupported alg');
refuses('alg none with a secret', $a->{none}, {secret => 'x'}, 'unsupported alg');
refuses('alg NONE', $a->{none_upper}, {keys => $rs->{pem}}, 'unsupported alg');
refuses('HS256 signed with the RSA public key PEM (confusion)', $a->{confusion},
        {keys => $rs->{pem}}, 'no key for the token\'s alg');
refuses('confusion, RSA key as a JWK', $a->{confusion}, {keys => $rs->{jwk}}, 'no key for the token\'s alg');
refuses('RS256 token, only a secret', $rs->{token}, {secret => $rs->{pem}}, 'no key for the token\'s alg');
refuses('alg not in the allowed list', $rs->{token}, {keys => $rs->{pem}, alg => ['ES256', 'PS256']},
        'unsupported alg');
refuses('tampered payload', $a->{tampered}, {keys => $rs->{pem}}, 'bad signature');
refuses('tampered signature', $a->{badsig}, {keys => $rs->{pem}}, 'bad signature');
refuses('crit header', $a->{crit}, {secret_b64 => $T->{algs}{HS256}{secret}}, 'unsupported crit header');
refuses('JWK alg pins the algorithm', $rs->{token}, {keys => {%{$rs->{jwk}}, alg => 'PS256'}},
        'no key for the token\'s alg');
refuses('kid selects the key', $rs->{token}, {keys => {keys => [{%{$T->{algs}{RS384}{jwk}}, kid => 'k-RS256'}]}},
        'bad signature');
refuses('a key with another kid is not tried', $rs->{token}, {keys => {keys => [{%{$rs->{jwk}}, kid => 'other'}]}},
        'no key for the token\'s alg');
accepts('a key without kid is tried', $rs->{token}, {keys => {keys => [{%{$rs->{jwk}}, kid => undef}]}}, 'u-RS256');
refuses('a JWKS key for encryption only is skipped', $rs->{token},
        {keys => {keys => [{%{$rs->{jwk}}, use => 'enc'}]}}, 'no usable key');
refuses('RSA key under 2048 bits', $rs->{token}, {keys => $T->{weak_pem}},
        'RSA key shorter than 2048 bits');
refuses('not a PEM', $rs->{token}, {keys => "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
        'not a PEM public key or certificate');
refuses('malformed: two parts', 'abc.def', {secret => 'x'}, 'malformed token');
refuses('malformed: bad base64', '!!.e30.e30', {secret => 'x'}, 'malformed token');
refuses('malformed: header not JSON', 'bm90anNvbg.e30.AAAA', {secret => 'x'}, 'malformed token');
refuses('missing token', undef, {secret => 'x'}, 'missing token');

# ---- claims
my $c = $T->{claims};
my $hs = {secret_b64 => $T->{algs}{HS256}{secret}};
refuses('expired', $c->{expired}, $hs, 'token expired');
accepts('expired within leeway', $c->{expired}, {%$hs, leeway => 100}, 'a');
refuses('expired past leeway', $c->{expired_long}, {%$hs, leeway => 30}, 'token expired');
refuses('nbf in the future', $c->{nbf_long}, $hs, 'token not yet valid');
accepts('nbf within leeway', $c->{nbf}, {%$hs, leeway => 30}, 'a');
refuses('nbf past leeway', $c->{nbf_long}, {%$hs, leeway => 30}, 'token not yet valid');
refuses('iat in the future', $c->{iat_future}, {%$hs, leeway => 30}, 'token issued in the future');
refuses('exp not a number', $c->{exp_string}, $hs, 'token expired');
accepts('now= moves the clock', $c->{expired_long}, {%$hs, now => $now - 300}, 'a');
accepts('iss and aud', $c->{iss_aud}, {%$hs, iss => 'https://idp.example', aud => 'web'}, 'a');
accepts('iss list, aud list', $c->{iss_aud}, {%$hs, iss => ['x', 'https://idp.example'], aud => ['z', 'api']}, 'a');
accepts('aud as a string claim', $c->{aud_string}, {%$hs, aud => ['api']}, 'a');
refuses('wrong issuer', $c->{iss_aud}, {%$hs, iss => 'https://evil.example'}, 'bad issuer');
refuses('issuer required, none in the token', $c->{aud_string}, {%$hs, iss => 'x'}, 'bad issuer');
refuses('wrong audience', $c->{iss_aud}, {%$hs, aud => 'admin'}, 'bad audience');
refuses('audience required, none in the token', $c->{expired}, {%$hs, aud => 'api', leeway => 100}, 'bad audience');

# lua/examples/jwt_jwks.lua
for my $alg (qw(RS256 PS256 ES256 EdDSA)) {
    my $r = $tg->http(GET => '/api/x', headers => [Authorization => "Bearer $T->{algs}{$alg}{oidc}"]);
    is($r->{status}, 200, "jwt_jwks.lua: $alg token accepted") or diag $r->{body};
    my $j = decode_json($r->{body});
    is($j->{headers}{'x-user'}, "oidc-$alg", "jwt_jwks.lua: $alg subject upstream as X-User");
    is($j->{headers}{'x-scope'}, 'read write', "jwt_jwks.lua: $alg scope as X-Scope");
    ok(!exists $j->{headers}{authorization}, "jwt_jwks.lua: $alg token not forwarded");
}
for my $case (['no iss/aud', $T->{algs}{RS256}{token}, 'bad issuer'],
              ['HS256 token (alg not accepted)', $T->{algs}{HS256}{token}, 'unsupported alg'],
              ['tampered', $a->{tampered}, 'bad signature'],
              ['none', $a->{none}, 'unsupported alg'],
              ['no token', undef, 'missing token']) {
    my $r = $tg->http(GET => '/api/x', headers => [Authorization => defined $case->[1] ? "Bearer $case->[1]" : undef]);
    is($r->{status}, 401, "jwt_jwks.lua: $case->[0]: 401");
    is(eval { decode_json($r->{body})->{error} }, $case->[2], "jwt_jwks.lua: $case->[0]: $case->[2]");
}

# caller mistakes raise: 500, logged
my $r = $tg->http(POST => '/', body => encode_json({token => $T->{algs}{HS256}{token}, opts => {}}));
is($r->{status}, 500, 'no keys and no secret raises');
ok($tg->wait_log(qr/tg\.jwt\.verify: no keys and no secret/, 5), 'and is logged');
done_testing;
