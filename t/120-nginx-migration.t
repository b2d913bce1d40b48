# docs/migrating-from-nginx.md: the examples in the guide are taken from the
# markdown file itself, so the guide and this test cannot drift apart.
# - The Tollgate config of "One site in both" passes `tollgate -t` (with
#   throwaway certificates made here in place of /etc/ssl/example.com/).
# - The nginx config of the same section does not: `tollgate -t` names its
#   nginx-only directives, each as file:line (the guide says an unknown
#   nginx name is an error, never ignored); and it passes `nginx -t` when
#   nginx is installed.
# - The basic_auth.lua script of "Basic authentication" does what the guide
#   says: 401 with WWW-Authenticate without valid credentials, through with.
use v5.36;
use Test::More;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use MIME::Base64 qw(encode_base64);
use lib 't/lib';
use Tollgate::Test qw(repo_root tg_conf_test tg_start);
use Tollgate::TLS qw(run_cmd);

my $root = repo_root();
open(my $fh, '<', "$root/docs/migrating-from-nginx.md") or die "docs/migrating-from-nginx.md: $!";
my $md = do { local $/; <$fh> };
close $fh;

# the fenced block of language $lang whose first line is $first
sub block($lang, $first) {
    my @found = grep { index($_, $first) == 0 } $md =~ /^```\Q$lang\E\n(.*?)^```$/msg;
    is(scalar @found, 1, "one $lang block starting with \"$first\"");
    return $found[0] // '';
}
my $tg_conf = block('nginx', '# tollgate.conf');
my $nginx_conf = block('nginx', '# nginx.conf');
my $lua = block('lua', '-- lua/basic_auth.lua');
like($tg_conf, qr{lua_access lua/basic_auth\.lua;}, 'the Tollgate config uses the script');

# the prefix: certificates, the Lua script, the log directory
my $dir = tempdir('tollgate-nginx-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
chmod 0755, $dir;
make_path("$dir/certs", "$dir/lua", "$dir/logs");
for my $c (['privkey.pem', 'fullchain.pem', 'example.com',
            'subjectAltName=DNS:example.com,DNS:www.example.com'],
           ['clients-ca.key', 'clients-ca.pem', 'clients ca', 'basicConstraints=critical,CA:TRUE']) {
    my ($out, $rc) = run_cmd(undef, 'openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                             'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', "/CN=$c->[2]",
                             '-addext', $c->[3], '-keyout', "$dir/certs/$c->[0]",
                             '-out', "$dir/certs/$c->[1]");
    die "openssl req: $out" if $rc;
}
open($fh, '>', "$dir/lua/basic_auth.lua") or die $!;
print $fh $lua;
close $fh;
sub localize($text) { return $text =~ s{/etc/ssl/example\.com/}{$dir/certs/}gr }

# 1. tollgate -t on the guide's Tollgate config
my $r = tg_conf_test(localize($tg_conf), raw => 1, args => ['-p', $dir]);
is($r->{exit}, 0, 'tollgate -t accepts the guide\'s config') or diag($r->{output});
like($r->{output}, qr/test is successful/, 'and says so');
ok(-f "$dir/logs/access.log" && -f "$dir/logs/api.log", 'the access logs are under the prefix');

# the check is real: the same config without one of its certificates fails
$r = tg_conf_test(localize($tg_conf) =~ s{\Q$dir\E/certs/privkey\.pem}{$dir/certs/missing.pem}r,
                  raw => 1, args => ['-p', $dir]);
is($r->{exit}, 1, 'a missing key fails the check');
like($r->{output}, qr/:\d+: cannot open certificate key "[^"]*missing\.pem"/, 'with file:line');

# 2. the nginx config: every nginx-only name is an error with its line
$r = tg_conf_test(localize($nginx_conf), raw => 1, args => ['-p', $dir]);
is($r->{exit}, 1, 'tollgate -t refuses the nginx config');
my @lines = split /\n/, $nginx_conf;
for my $name (qw(worker_processes events)) {
    my ($n) = grep { $lines[$_] =~ /^\s*\Q$name\E\b/ } 0 .. $#lines;
    like($r->{output}, qr/:\Q@{[$n + 1]}\E: unknown directive "\Q$name\E"/,
         "\"$name\" named as unknown at its line " . ($n + 1));
}

SKIP: {
    chomp(my $nginx = `command -v nginx 2>/dev/null` // '');
    skip 'nginx is not installed', 1 unless $nginx;
    make_path("$dir/nginx/logs");
    open($fh, '>', "$dir/nginx/nginx.conf") or die $!;
    print $fh localize($nginx_conf);
    close $fh;
    my ($out, $rc) = run_cmd(undef, 'timeout', '20', $nginx, '-t', '-q', '-e', 'stderr', '-p',
                             "$dir/nginx/", '-c', "$dir/nginx/nginx.conf");
    is($rc, 0, 'nginx -t accepts the guide\'s nginx config') or diag($out);
}

# 3. the Basic authentication script
my $tg = tg_start(<<'EOF', files => {'lua/basic_auth.lua' => $lua});
server {
    listen %%PORT%%;
    location /admin/ { lua_access %%DIR%%/lua/basic_auth.lua; return 200 "in\n"; }
    location / { return 200 "open\n"; }
}
EOF
sub basic($cred) { return (headers => {Authorization => 'Basic ' . encode_base64($cred, '')}) }
my @cases = (
    ['no credentials', {}, 401],
    ['alice with her password', {basic('alice:s3cret')}, 200],
    ['alice with another password', {basic('alice:s3cret2')}, 401],
    ['an unknown user', {basic('bob:s3cret')}, 401],
    ['no colon', {basic('alice')}, 401],
    ['not base64', {headers => {Authorization => 'Basic ***'}}, 401],
    ['another scheme', {headers => {Authorization => 'Bearer abc'}}, 401],
    ['lowercase scheme', {headers => {Authorization => 'basic ' . encode_base64('alice:s3cret', '')}}, 200],
);
for my $c (@cases) {
    my ($what, $o, $want) = @$c;
    my $res = $tg->http(GET => '/admin/x', %$o);
    is($res->{status}, $want, "basic_auth.lua: $what: $want");
    if ($want == 401) {
        is($res->{headers}{'www-authenticate'}, 'Basic realm="admin", charset="UTF-8"',
           "  with WWW-Authenticate");
    } else {
        is($res->{body}, "in\n", '  and the location answers');
    }
}
is($tg->http(GET => '/x')->{status}, 200, 'other locations need no credentials');
$tg->stop;

done_testing;
