# Static files (issue 22) compared with nginx: the same tree served by
# Tollgate and by nginx (root, expires, charset utf-8), the same requests
# to both, every header case of docs/static.md's table. Where they agree
# the test says so with is(); where they differ it asserts each side's
# answer and the reason Tollgate follows the other one (t/270 does the same
# against express.static / serve-static):
#   If-Modified-Since later than the file: 304 (RFC 9110 13.1.3, as
#     serve-static); nginx answers 200 unless `if_modified_since before`.
#   405 carries `Allow: GET, HEAD` (RFC 9110 15.5.6 requires it); nginx
#     sends none.
#   charset on every text/*, JavaScript and JSON type; nginx's charset_types
#     leave out text/css.
#   A malformed Range is ignored (RFC 9110 14.2); nginx answers 416.
#   HEAD with a Range: 200 (RFC 9110 14.2: range handling is defined for GET
#     only); nginx answers 206.
#   The 301 for a directory has a relative Location (as serve-static);
#     nginx's is absolute (absolute_redirect on).
#   A directory without an index: 404 (as serve-static, no listing leaks
#     that the directory exists); nginx 403.
#   Dot files and symlinks out of the root are refused by default (as
#     serve-static for dot files; `dotfiles allow`, `disable_symlinks off`
#     give nginx's behaviour).
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

chomp(my $nginx = `command -v nginx 2>/dev/null` // '');
plan skip_all => 'nginx is not installed (contrib/install-deps.sh test)' unless $nginx;

my $root = tempdir('tg-static-nginx-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $ndir = tempdir('tg-nginx-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $root;
sub spew($name, $data) {
    my $p = "$root/$name";
    (my $d = $p) =~ s{/[^/]*$}{};
    system('mkdir', '-p', $d);
    chmod 0755, $d;
    open(my $fh, '>', $p) or die "$p: $!";
    print $fh $data;
    close $fh;
    chmod 0644, $p;
}
my $text = join('', map { "line $_\n" } 1 .. 200);
spew('a.txt', $text);
spew('index.html', "<h1>home</h1>\n");
spew('style.css', "body{}\n");
spew('sub/index.html', "sub\n");
spew('empty/.keep', '');
spew('.env', "SECRET=1\n");
spew('cached/c.txt', "cached\n");
spew('maxed/m.txt', "maxed\n");
utime(1700000000, 1700000000, "$root/a.txt");
mkdir "$root/../tg-outside-$$";
my $outside = "$root/../tg-outside-$$";
open(my $ofh, '>', "$outside/secret.txt") or die;
print $ofh "outside\n";
close $ofh;
chmod 0755, $outside;
chmod 0644, "$outside/secret.txt";
symlink("$outside/secret.txt", "$root/link.txt") or die "symlink: $!";
END { unlink "$outside/secret.txt"; rmdir $outside if $outside }

my $tg = tg_start(<<"EOF");
server {
    listen %%PORT%%;
    root $root;
    location /cached/ { expires 1h; }
    location /maxed/ { expires max; }
}
EOF

# nginx on a free port, one process in the foreground, stopped by its pid
my $nport = free_port();
mkdir "$ndir/$_" for qw(logs body proxy fastcgi uwsgi scgi);
open(my $nfh, '>', "$ndir/nginx.conf") or die;
print $nfh <<"EOF";
daemon off;
master_process off;
pid $ndir/nginx.pid;
error_log $ndir/logs/error.log;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path $ndir/body;
    proxy_temp_path $ndir/proxy;
    fastcgi_temp_path $ndir/fastcgi;
    uwsgi_temp_path $ndir/uwsgi;
    scgi_temp_path $ndir/scgi;
    charset utf-8;
    server {
        listen 127.0.0.1:$nport;
        root $root;
        location /cached/ { expires 1h; }
        location /maxed/ { expires max; }
    }
}
EOF
close $nfh;
my $npid = fork // die;
if (!$npid) {
    open(STDERR, '>', "$ndir/logs/stderr");
    exec($nginx, '-p', "$ndir/", '-c', "$ndir/nginx.conf", '-e', "$ndir/logs/error.log");
    exit 127;
}
END { if ($npid) { kill 'TERM', $npid; waitpid($npid, 0) } }
ok(wait_until(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$nport", Timeout => 1) }, 10),
   'nginx is up') or BAIL_OUT('nginx did not start: ' . `cat $ndir/logs/stderr $ndir/logs/error.log`);

sub both($method, $path, @h) {
    my $t = Tollgate::Test::http_request($tg->port, $method, $path, headers => [@h]);
    my $n = Tollgate::Test::http_request($nport, $method, $path, headers => [@h]);
    return ($t, $n);
}
my $lm = 'Tue, 14 Nov 2023 22:13:20 GMT';
my $etag = sprintf('"%x-%x"', 1700000000, length $text);

# ---- validators
my ($t, $n) = both(GET => '/a.txt');
is($t->{status}, 200, 'GET 200');
is($t->{body}, $n->{body}, 'body as nginx');
is($t->{headers}{etag}, $etag, 'ETag "MTIME-SIZE"');
is($t->{headers}{etag}, $n->{headers}{etag}, 'ETag as nginx (the same strong tag)');
is($t->{headers}{'last-modified'}, $n->{headers}{'last-modified'}, 'Last-Modified as nginx');
is($t->{headers}{'accept-ranges'}, $n->{headers}{'accept-ranges'}, 'Accept-Ranges as nginx');
is($t->{headers}{'content-length'}, $n->{headers}{'content-length'}, 'Content-Length as nginx');
ok(!exists $t->{headers}{'cache-control'} && !exists $n->{headers}{'cache-control'},
   'no Cache-Control by default, as nginx');

for my $c (['If-None-Match own tag', ['If-None-Match' => $etag]],
           ['If-None-Match *', ['If-None-Match' => '*']],
           ['If-None-Match other', ['If-None-Match' => '"nope"']],
           ['If-Modified-Since equal', ['If-Modified-Since' => $lm]],
           ['If-Modified-Since earlier', ['If-Modified-Since' => 'Mon, 13 Nov 2023 22:13:20 GMT']],
           ['If-Match other', ['If-Match' => '"nope"']],
           ['If-Match own tag', ['If-Match' => $etag]],
           ['If-Unmodified-Since earlier', ['If-Unmodified-Since' => 'Mon, 13 Nov 2023 22:13:20 GMT']],
           ['INM other and IMS equal', ['If-None-Match' => '"nope"', 'If-Modified-Since' => $lm]]) {
    my ($name, $h) = @$c;
    ($t, $n) = both(GET => '/a.txt', @$h);
    is($t->{status}, $n->{status}, "$name: $t->{status} as nginx");
}
($t, $n) = both(GET => '/a.txt', 'If-None-Match' => $etag);
is($t->{body} . $n->{body}, '', '304: no body on either');
is(join(',', map { exists $t->{headers}{$_} ? $_ : () } qw(content-type etag last-modified content-length)),
   join(',', map { exists $n->{headers}{$_} ? $_ : () } qw(content-type etag last-modified content-length)),
   '304: the same headers as nginx (validators, no Content-Type or Content-Length)');
($t, $n) = both(GET => '/a.txt', 'If-Modified-Since' => 'Wed, 15 Nov 2023 22:13:20 GMT');
is($t->{status}, 304, 'If-Modified-Since later: 304 (RFC 9110, serve-static)');
is($n->{status}, 200, 'nginx: 200 (if_modified_since exact)');

# ---- ranges
for my $c (['single', 'bytes=0-9'], ['suffix', 'bytes=-5'], ['open', 'bytes=100-'],
           ['past the end', 'bytes=100-99999']) {
    my ($name, $range) = @$c;
    ($t, $n) = both(GET => '/a.txt', Range => $range);
    is("$t->{status} $t->{headers}{'content-range'}", "$n->{status} $n->{headers}{'content-range'}",
       "Range $name: status and Content-Range as nginx");
    is($t->{body}, $n->{body}, "Range $name: bytes as nginx");
}
($t, $n) = both(GET => '/a.txt', Range => 'bytes=99999-');
is("$t->{status} $t->{headers}{'content-range'}", "$n->{status} $n->{headers}{'content-range'}",
   'unsatisfiable: 416 bytes */LEN as nginx');
($t, $n) = both(GET => '/a.txt', Range => 'bytes=0-4,10-14');
is($t->{status}, $n->{status}, 'two ranges: 206 as nginx');
like($t->{headers}{'content-type'}, qr{^multipart/byteranges; boundary=}, 'multipart/byteranges');
like($n->{headers}{'content-type'}, qr{^multipart/byteranges; boundary=}, 'nginx: multipart/byteranges');
sub parts($r) {
    my ($b) = $r->{headers}{'content-type'} =~ /boundary=(\S+)/;
    return [map { s/\r\n--\z//r } grep { /Content-Range/ } split /--\Q$b\E/, $r->{body}];
}
is_deeply([map { /(Content-Range: [^\r]*)/ } @{parts($t)}], [map { /(Content-Range: [^\r]*)/ } @{parts($n)}],
          'two ranges: the parts\' Content-Range as nginx');
($t, $n) = both(GET => '/a.txt', Range => 'bytes=abc');
is($t->{status}, 200, 'malformed Range: ignored, 200 (RFC 9110 14.2)');
is($n->{status}, 416, 'nginx: 416 for a malformed Range');
for my $c (['own tag', $etag], ['date', $lm], ['other tag', '"old"']) {
    my ($name, $v) = @$c;
    ($t, $n) = both(GET => '/a.txt', Range => 'bytes=0-4', 'If-Range' => $v);
    is($t->{status}, $n->{status}, "If-Range $name: $t->{status} as nginx");
    ($t, $n) = both(GET => '/a.txt', Range => 'bytes=0-4,10-14', 'If-Range' => $v);
    is($t->{status}, $n->{status}, "two ranges, If-Range $name: $t->{status} as nginx");
}

# ---- HEAD
($t, $n) = both(HEAD => '/a.txt');
is("$t->{status} $t->{headers}{'content-length'}", "$n->{status} $n->{headers}{'content-length'}",
   'HEAD: status and Content-Length as nginx');
is($t->{body} . $n->{body}, '', 'HEAD: no body on either');
($t, $n) = both(HEAD => '/a.txt', Range => 'bytes=0-4');
is($t->{status}, 200, 'HEAD with Range: 200 (RFC 9110 14.2: ranges are defined for GET only)');
is($n->{status}, 206, 'nginx: 206');

# ---- types and charset
for my $c (['/a.txt', 'text/plain'], ['/index.html', 'text/html']) {
    ($t, $n) = both(GET => $c->[0]);
    is(lc $t->{headers}{'content-type'}, lc $n->{headers}{'content-type'},
       "$c->[0]: $c->[1] with charset as nginx (charset utf-8)");
}
($t, $n) = both(GET => '/style.css');
is($t->{headers}{'content-type'}, 'text/css; charset=utf-8', 'text/css with charset');
is($n->{headers}{'content-type'}, 'text/css', 'nginx: text/css is not in its charset_types');

# ---- caching headers
($t, $n) = both(GET => '/cached/c.txt');
is($t->{headers}{'cache-control'}, $n->{headers}{'cache-control'}, 'expires 1h: Cache-Control as nginx');
ok(defined $t->{headers}{expires} && defined $n->{headers}{expires}, 'expires 1h: Expires on both');
($t, $n) = both(GET => '/maxed/m.txt');
is($t->{headers}{'cache-control'}, $n->{headers}{'cache-control'}, 'expires max: Cache-Control as nginx');
is($t->{headers}{expires}, $n->{headers}{expires}, 'expires max: Expires as nginx');

# ---- methods
for my $m (qw(POST DELETE)) {
    ($t, $n) = both($m => '/a.txt');
    is($t->{status}, $n->{status}, "$m: 405 as nginx");
    is($t->{headers}{allow}, 'GET, HEAD', "$m: Allow: GET, HEAD");
    ok(!exists $n->{headers}{allow}, "nginx: $m 405 without Allow");
}

# ---- directories
($t, $n) = both(GET => '/sub?x=1');
is($t->{status}, $n->{status}, 'directory without slash: 301 as nginx');
is($t->{headers}{location}, '/sub/?x=1', 'Location: relative, the query kept');
is($n->{headers}{location}, "http://127.0.0.1:$nport/sub/?x=1", 'nginx: absolute, the query kept');
($t, $n) = both(GET => '/sub/');
is($t->{body}, $n->{body}, 'index.html as nginx');
($t, $n) = both(GET => '/empty/');
is($t->{status}, 404, 'directory without index: 404');
is($n->{status}, 403, 'nginx: 403');

# ---- safety
for my $c (['/../a.txt', 400], ['/%2e%2e/a.txt', 400], ['/a%00.txt', 400]) {
    my ($p, $want) = @$c;
    ($t, $n) = both(GET => $p);
    is($t->{status}, $want, "$p: $want");
    is($t->{status}, $n->{status}, "$p: as nginx");
}
($t, $n) = both(GET => '/sub\\index.html');
is($t->{status}, 403, 'a backslash: 403 (as serve-static)');
is($n->{status}, 404, 'nginx: 404 (a plain character in a name on POSIX)');
($t, $n) = both(GET => '/.env');
is($t->{status}, 404, 'dot file: 404 (dotfiles ignore)');
is("$n->{status} $n->{body}", "200 SECRET=1\n", 'nginx: served');
($t, $n) = both(GET => '/link.txt');
is($t->{status}, 404, 'symlink out of the root: 404');
is("$n->{status} $n->{body}", "200 outside\n", 'nginx: followed (disable_symlinks off)');

done_testing;
