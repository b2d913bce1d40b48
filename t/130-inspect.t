# Inspecting a config from the command line: -T (every file read, includes
# expanded, then the effective settings with defaults), -v/-V (library
# versions, build options) and --explain (which listener, server and
# location a request gets and why, and the modules each phase runs).
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);

my $bin = defined $ENV{TG_BIN} ? File::Spec->rel2abs($ENV{TG_BIN}) : repo_root() . '/build/tollgate';
my $dir = tempdir(CLEANUP => 1);

sub spew($name, $text) {
    my $f = "$dir/$name";
    open(my $fh, '>', $f) or die "$f: $!";
    print $fh $text;
    close $fh;
    return $f;
}

sub slurp($f) { open(my $fh, '<', $f) or die "$f: $!"; local $/; return scalar <$fh> }

# runs the binary (bounded by `timeout`), returns exit code, stdout, stderr
sub run(@args) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open(STDOUT, '>', "$dir/out") or die;
        open(STDERR, '>', "$dir/err") or die;
        exec('timeout', '20', $bin, @args) or die "exec: $!";
    }
    waitpid($pid, 0);
    my ($rc, $err) = ($? >> 8, slurp("$dir/err"));
    unlike($err, qr/Sanitizer|runtime error:/, "no sanitizer report: @args") if $err =~ /Sanitizer|runtime error:/;
    return ($rc, slurp("$dir/out"), $err);
}

my ($p1, $p2) = (free_port(), free_port());
mkdir "$dir/servers";
my $server_a = <<"EOF";
server {
    listen 127.0.0.1:$p1;
    server_name example.com *.example.com;
    security_headers on;
    compress gzip br;
    cors origins=https://app.example.com;
    rewrite ^/old/(.*)\$ /new/\$1 last;
    location = /exact { return 200 "exact"; }
    location /api/ { rate_limit per_ip; proxy_pass api; proxy_timeouts connect=2s read=30s; }
    location /api/long/ { proxy_pass api; }
    location ^~ /static/ { root $dir; }
    location ~ \\.php\$ { deny all; }
    location ~* ^/api/v(\\d+)/ { allow 127.0.0.1; deny all; proxy_pass api; }
    location ~ ^/api/ { return 418; }
    location \@fallback { return 503; }
}
EOF
my $server_b = <<"EOF";
server {
    listen 127.0.0.1:$p1;
    listen 127.0.0.1:$p2;
    server_name other.test;
    timeouts idle=5s;
}
EOF
spew('servers/a.conf', $server_a);
spew('servers/b.conf', $server_b);
my $main = spew('main.conf', <<"EOF");
pid $dir/tg.pid;
error_log stderr warn;
rate_limit_zone per_ip key=\$remote_addr rate=10r/s burst=5 size=1m;
upstream api {
    server 127.0.0.1:3000 weight=3;
    server 127.0.0.1:3001 backup;
    balance least_conn;
}
include servers/*.conf;
EOF

# ---- -T --------------------------------------------------------------------------
{
    my ($rc, $out, $err) = run('-T', '-c', $main);
    is($rc, 0, '-T: exit 0');
    like($err, qr/test is successful/, '-T: the test result on stderr');
    my @files = $out =~ /^# configuration file (\S+):$/mg;
    is_deeply(\@files, [$main, "$dir/servers/a.conf", "$dir/servers/b.conf"],
              '-T: the main file, then the included files in include order');
    ok(index($out, "# configuration file $dir/servers/a.conf:\n$server_a") >= 0,
       '-T: an included file is printed whole after its header');
    like($out, qr/^# effective settings/m, '-T: the effective settings section');
    like($out, qr/^main:\n\s+workers=1 pid=\Q$dir\E\/tg\.pid error_log=stderr level=warn/m,
         '-T: main settings with the default workers');
    like($out, qr/shutdown_timeout=30000ms worker_connections=10000 client_header_buffer_size=16384 io_uring=\S+ worker_stall_timeout=5000ms/,
         '-T: main defaults');
    like($out, qr/^listen 127\.0\.0\.1:$p1: tls=off http2=off proxy_protocol=off backlog=511 servers=2 default_server=example\.com/m,
         '-T: a listener, its servers and default');
    like($out, qr/^upstream api: balance=least_conn keepalive=32 tls=off health_check=off\n\s+server 127\.0\.0\.1:3000 weight=3 max_fails=1 fail_timeout=10000ms\n\s+server 127\.0\.0\.1:3001 weight=1 .* backup$/m,
         '-T: an upstream with its servers and the keepalive default');
    like($out, qr/^server other\.test .*\n\s+listen 127\.0\.0\.1:$p1 127\.0\.0\.1:$p2 \(default\)\n\s+\(server level: no location matched\)\n\s+core: .*idle=5000ms/m,
         '-T: a server and its merged timeouts');
    like($out, qr/location \/api\/ .*\n\s+core: client_max_body_size=1048576 .* header=10000ms idle=75000ms/m,
         '-T: core defaults in a location');
    like($out, qr/^\s+rate_limit: zone per_ip key=\$remote_addr rate=10-in-1sec burst=5 count=all status=429 backend=local/m,
         '-T: the rate limit zone and key');
    like($out, qr/^\s+proxy: proxy_pass api connect=2000ms read=30000ms send=60000ms/m,
         '-T: proxy timeouts, set and default');
    like($out, qr/^\s+static: root=\Q$dir\E index=index\.html/m, '-T: static root and index');
    like($out, qr/^\s+access: rules: allow 127\.0\.0\.1; deny all$/m, '-T: access rules');
    like($out, qr/^\s+stats$/m, '-T: a module without an explain callback is listed by name');
}
{
    my $bad = spew('bad.conf', "server {\n  listen 127.0.0.1:$p1;\n  bogus on;\n}\n");
    my ($rc, $out, $err) = run('-T', '-c', $bad);
    is($rc, 1, '-T: exit 1 on a bad config');
    like($err, qr/bad\.conf:3: unknown directive "bogus"/, '-T: the error');
    is($out, '', '-T: nothing printed for a bad config');
}

# ---- -v / -V ---------------------------------------------------------------------
{
    my ($rc, $out) = run('-v');
    is($rc, 0, '-v: exit 0');
    like($out, qr/^tollgate \d+\.\d+\.\d+\n/, '-v: version first');
    for my $lib (qw(openssl luajit zlib brotli zstd hiredis liburing libev llhttp pcre2 libsystemd)) {
        like($out, qr/^  $lib\s+(OpenSSL |LuaJIT )?\d+(\.\d+)*\b/m, "-v: $lib and its version");
    }
    my $zlib = `pkg-config --modversion zlib`;
    chomp $zlib;
    like($out, qr/^  zlib\s+\Q$zlib\E$/m, '-v: zlib is the run-time version (the one installed)');
    unlike($out, qr/^build:/m, '-v: no build options');
    my ($rc2, $outV) = run('-V');
    is($rc2, 0, '-V: exit 0');
    ok(index($outV, $out) == 0, '-V starts with what -v prints');
    like($outV, qr/^build:\n  flavour\s+(release|asan|debug)\n  compiler\s+\S+.*\n  cflags\s+.*-std=gnu11/m,
         '-V: flavour, compiler, flags');
    like($outV, qr/^  packages\s+.*libpcre2-8=\d/m, '-V: packages built against');
    if ($outV =~ /^  packages\s+.*libnghttp2=(\S+)/m) {
        like($out, qr/^  nghttp2\s+\Q$1\E$/m, '-v: nghttp2, linked, with its run-time version');
    }
    like($outV, qr/^  config\s+\S+ \(default of -c\)/m, '-V: the default config path');
}

# ---- --explain -------------------------------------------------------------------
sub explain_req(@args) { return run('--explain', @args, '-c', $main) }

sub candidate($out, $loc) {
    return $out =~ /^  candidate location \Q$loc\E  # \S+\n\s+(.*)$/m ? $1 : 'not listed';
}
{
    my ($rc, $out) = explain_req('GET', "http://www.example.com:$p1/api/v2/users");
    is($rc, 0, 'explain: exit 0');
    like($out, qr/^listener: 127\.0\.0\.1:$p1 \(the URL's port\)/m, 'explain: the listener by port');
    like($out, qr/^server: example\.com \*\.example\.com /m, 'explain: server by wildcard');
    like($out, qr/candidate server example\.com .*\n\s+wildcard \*\.example\.com; chosen: the longest matching wildcard/,
         'explain: why the server won');
    like($out, qr/candidate server other\.test .*\n\s+no name matches; lost/, 'explain: why the other lost');
    like($out, qr/^location: location ~\* \^\/api\/v\(\\d\+\)\//m, 'explain: caseless regex chosen');
    like(candidate($out, '~* ^/api/v(\d+)/'), qr/^chosen: the first matching regex/, 'explain: regex wins');
    like(candidate($out, '/api/'), qr/^lost: the longest prefix, but a regex matched/,
         'explain: longest prefix loses to a regex');
    like(candidate($out, '~ ^/api/'), qr/^lost: matches, but an earlier regex matched first/,
         'explain: a later matching regex loses');
    like(candidate($out, '~ \.php$'), qr/^lost: the regex does not match/, 'explain: non-matching regex');
    like(candidate($out, '= /exact'), qr/^lost: the path is not equal/, 'explain: exact not equal');
    like(candidate($out, '@fallback'), qr/^skipped: a named location/, 'explain: named skipped');
    like($out, qr/^  server_rewrite:\n\s+rewrite: rewrite \^\/old\/\(\.\*\)\$ \/new\/\$1 last$/m,
         'explain: the server rewrite rule is listed');
    like($out, qr/^  access:\n\s+access: rules: allow 127\.0\.0\.1; deny all\n/m,
         'explain: access phase with its rules');
    like($out, qr/^  route:\n\s+proxy: proxy_pass api .*upstream api: balance=least_conn keepalive=32/m,
         'explain: the upstream, its balance and keepalive');
    like($out, qr/^  response_headers:\n\s+security_headers: .*X-Content-Type-Options/m,
         'explain: security headers that would be sent');
    like($out, qr/^\s+compress: codings=gzip:6,br:4 min_length=1024/m, 'explain: compression settings');
    like($out, qr/^\s+cors: origins=https:\/\/app\.example\.com /m, 'explain: cors origins');
    like($out, qr/^  log:\n\s+stats$/m, 'explain: a module without explain is listed');
}
{
    my ($rc, $out) = explain_req('GET', '/api/long/x', '-H', 'Host: EXAMPLE.com');
    like($out, qr/^request: GET \/api\/long\/x .*Host example\.com/m, 'explain: Host header, lowercased');
    like($out, qr/exact name example\.com; chosen: an exact name wins/, 'explain: exact server name');
    like($out, qr/^location: location ~ \^\/api\//m, 'explain: a matching regex beats the prefixes');
    like(candidate($out, '/api/long/'), qr/^lost: the longest prefix, but a regex matched/,
         'explain: the longest prefix loses to the regex');
    like(candidate($out, '/api/'), qr/^lost: matches, but \/api\/long\/ is a longer prefix/,
         'explain: a shorter prefix loses to a longer one');
    like(candidate($out, '~* ^/api/v(\d+)/'), qr/^lost: the regex does not match/,
         'explain: an earlier regex that does not match');
    like($out, qr/^  content:\n\s+rewrite: return 418/m, 'explain: the chosen location\'s return');
}
{
    my ($rc, $out) = explain_req('GET', '/api/', '-H', 'Host: example.com');
    like($out, qr/^location: location ~ \^\/api\//m, 'explain: /api/ goes to the regex too');
    ($rc, $out) = explain_req('GET', '/apix', '-H', 'Host: example.com');
    like($out, qr/^location: \(server level/m, 'explain: /apix matches no location');
    like(candidate($out, '/api/'), qr/^lost: not a prefix of the path/, 'explain: not a prefix');
}
{
    my ($rc, $out) = explain_req('GET', '/static/x.php', '-H', 'Host: example.com');
    like($out, qr/^location: location \^~ \/static\//m, 'explain: ^~ chosen over a matching regex');
    like(candidate($out, '^~ /static/'), qr/^chosen: the longest matching prefix, and \^~ skips the regexes/,
         'explain: why ^~ won');
    like(candidate($out, '~ \.php$'), qr/^not tried: the longest prefix \^~ \/static\/ stops the search/,
         'explain: regex not tried after ^~');
    like($out, qr/^\s+static: root=\Q$dir\E/m, 'explain: static root');
}
{
    my ($rc, $out) = explain_req('GET', '/exact', '-H', 'Host: x.example.com');
    like($out, qr/^location: location = \/exact/m, 'explain: exact chosen');
    like(candidate($out, '= /exact'), qr/^chosen: an exact match wins at once/, 'explain: exact reason');
    like(candidate($out, '~ ^/api/'), qr/^not tried: an exact location matched/, 'explain: regex not tried');
    like($out, qr/^  content:\n\s+rewrite: return 200 exact/m, 'explain: return listed');
}
{
    my ($rc, $out) = explain_req('GET', "http://127.0.0.1:$p2/x");
    like($out, qr/^listener: 127\.0\.0\.1:$p2 /m, 'explain: the second listener by port');
    like($out, qr/^server: other\.test .*\n\s+candidate server other\.test \(default\) .*\n\s+no name matches; chosen: the only server on the listener/m,
         'explain: the only server of a listener');
    like($out, qr/^location: \(server level: no location matched\)/m, 'explain: no location: server level');
}
{
    my ($rc, $out) = explain_req('GET', "http://example.com:$p1/api/v1/", '--remote', '10.1.2.3',
                             '-H', 'Origin: https://evil.test');
    like($out, qr/access: rules: allow 127\.0\.0\.1; deny all -> 10\.1\.2\.3 hits rule 2: denied \(403\)/,
         'explain: --remote is checked against the access rules');
    like($out, qr/-> Origin https:\/\/evil\.test not allowed/, 'explain: Origin against cors origins');
    ($rc, $out) = explain_req('GET', "http://example.com:$p1/api/v1/", '--remote', '127.0.0.1',
                          '-H', 'Origin: https://app.example.com');
    like($out, qr/-> 127\.0\.0\.1 hits rule 1: allowed/, 'explain: an allowed address');
    like($out, qr/-> Origin https:\/\/app\.example\.com allowed/, 'explain: an allowed origin');
}
{
    my ($rc, $out) = explain_req('GET', '/%2e%2e/%2e%2e/etc/passwd');
    is($rc, 1, 'explain: a path above the root is refused');
    ($rc, $out, my $err) = explain_req('GET', '/x', '-H', 'no colon');
    is($rc, 1, 'explain: a malformed header is refused');
    like($err, qr/invalid header "no colon"/, 'explain: the header error');
    ($rc, $out, $err) = explain_req('GET', '/x', '--remote', 'nope');
    like($err, qr/invalid --remote "nope"/, 'explain: a bad address');
    ($rc, $out, $err) = run('--explain', 'GET', '-c', $main);
    is($rc, 2, 'explain: METHOD and URL are required');
}
done_testing;
