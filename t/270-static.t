# Static files (issue 22): the same tree served by Tollgate (`root`) and by
# express.static (serve-static, t/upstream/static.js), the same requests to
# both, and each header case compared. Where the two differ by design the
# test says which one Tollgate follows:
#   ETag: nginx's strong "MTIME-SIZE" (hex), not serve-static's weak
#     W/"SIZE-MTIMEMS": a strong tag is what If-Range needs (RFC 9110 13.1.5),
#     and it is the tag nginx users' caches already hold. Validation behaves
#     the same (304 on a match, If-None-Match before If-Modified-Since).
#   Multiple ranges: multipart/byteranges as nginx (serve-static answers the
#     whole file with 200).
#   Cache-Control: none unless expires/immutable, as nginx (serve-static
#     sends "public, max-age=0").
#   charset: "charset=utf-8" (nginx's spelling; serve-static "UTF-8").
#   Redirect and error bodies: text/plain (serve-static sends HTML pages).
#   A malformed Range: ignored (RFC 9110 14.2), serve-static answers 416.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use File::Temp qw(tempdir);
use POSIX qw(strftime);

my $root = tempdir('tg-static-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $root; # the workers run as nobody (the suite runs as root)
sub spew($name, $data) {
    my $p = "$root/$name";
    (my $d = $p) =~ s{/[^/]*$}{};
    system('mkdir', '-p', $d);
    open(my $fh, '>', $p) or die "$p: $!";
    print $fh $data;
    close $fh;
}
my $text = join('', map { "line $_\n" } 1 .. 200);
spew('a.txt', $text);
spew('index.html', "<h1>home</h1>\n");
spew('app.js', "console.log(1)\n");
spew('style.css', "body{}\n");
spew('img.png', "\x89PNG\r\n\x1a\n" . ("x" x 100));
spew('sub/index.html', "sub\n");
spew('empty/.keep', '');
spew('.env', "SECRET=1\n");
spew('.hidden/x.txt', "hidden\n");
spew('noext', "plain\n");
spew('spa/index.html', "<div id=app></div>\n");
spew('spa/assets/app.123.js', "hashed\n");
spew('pre/app.js', "x" x 5000);
spew('pre/app.js.gz', "GZ");
spew('pre/app.js.br', "BR");
spew('pre/app.js.zst', "ZSTD");
spew('pre/only-gz.css', "y" x 5000);
spew('pre/only-gz.css.gz', "GZONLY");
utime(1700000000, 1700000000, "$root/a.txt");

my $node = node_upstream('static', env => { ROOT => $root });
my $tg = tg_start(<<"EOF");
server {
    listen %%PORT%%;
    root $root;
    location /spa/ { try_files \$uri \$uri/ /spa/index.html; }
    location /cached/ { alias $root/; expires 1h; }
    location /maxed/ { alias $root/; expires max; }
    location /imm/ { alias $root/; immutable on; }
    location /pre/ { compress_static on; }
    location /deny/ { alias $root/; dotfiles deny; }
    location /allow/ { alias $root/; dotfiles allow; }
    location /typed/ { alias $root/; types { text/x-custom txt; } default_type text/plain; }
    location /code/ { try_files \$uri =418; }
    location /named/ { try_files \$uri \@fallback; }
    location \@fallback { return 200 "from named"; }
}
server {
    listen %%PORT2%%;
    root $root;
    try_files \$uri /index.html;
    location /sub/ { expires 1m; }
}
EOF

sub both($method, $path, @h) {
    my $a = Tollgate::Test::http_request($tg->port, $method, $path, headers => [@h]);
    my $b = Tollgate::Test::http_request($node->{port}, $method, $path, headers => [@h]);
    return ($a, $b);
}

# ---- plain GET, HEAD, types, validators
my ($t, $s) = both(GET => '/a.txt');
is($t->{status}, 200, 'GET 200');
is($t->{status}, $s->{status}, 'status as serve-static');
is($t->{body}, $s->{body}, 'body as serve-static');
is($t->{headers}{'content-length'}, $s->{headers}{'content-length'}, 'Content-Length');
is($t->{headers}{'last-modified'}, $s->{headers}{'last-modified'}, 'Last-Modified as serve-static');
is($t->{headers}{'last-modified'}, 'Tue, 14 Nov 2023 22:13:20 GMT', 'Last-Modified is the mtime');
is($t->{headers}{'accept-ranges'}, 'bytes', 'Accept-Ranges');
is($t->{headers}{'accept-ranges'}, $s->{headers}{'accept-ranges'}, 'Accept-Ranges as serve-static');
is(lc $t->{headers}{'content-type'}, lc $s->{headers}{'content-type'}, 'text type with charset');
my $etag = sprintf('"%x-%x"', 1700000000, length $text);
is($t->{headers}{etag}, $etag, 'ETag nginx form "mtime-size"');
like($s->{headers}{etag}, qr{^W/"[0-9a-f]+-[0-9a-f]+"$}, 'serve-static: weak ETag');
ok(!exists $t->{headers}{'cache-control'}, 'no Cache-Control by default (nginx)');

($t, $s) = both(HEAD => '/a.txt');
is($t->{status}, 200, 'HEAD 200');
is($t->{body}, '', 'HEAD: no body');
is($t->{headers}{'content-length'}, $s->{headers}{'content-length'}, 'HEAD: Content-Length as GET');

for my $f (['/index.html', 'text/html'], ['/style.css', 'text/css'], ['/img.png', 'image/png']) {
    ($t, $s) = both(GET => $f->[0]);
    like($t->{headers}{'content-type'}, qr{^\Q$f->[1]\E}, "$f->[0]: $f->[1]");
    is(lc $t->{headers}{'content-type'}, lc $s->{headers}{'content-type'},
       "$f->[0]: Content-Type as serve-static");
}
($t, $s) = both(GET => '/app.js');
like($t->{headers}{'content-type'}, qr{javascript; charset=utf-8}, '.js: a javascript type with charset');
($t, $s) = both(GET => '/noext');
is($t->{headers}{'content-type'}, 'application/octet-stream', 'no extension: application/octet-stream');
is($t->{headers}{'content-type'}, $s->{headers}{'content-type'}, 'no extension as serve-static');

# ---- conditional requests (serve-static gets the same headers; its own tag
# is checked separately below)
for my $c (["If-None-Match: own tag", ['If-None-Match' => $etag], 304, 0],
           ["If-None-Match: W/ form matches weakly", ['If-None-Match' => "W/$etag"], 304, 0],
           ["If-None-Match: list", ['If-None-Match' => "\"x\", $etag"], 304, 0],
           ["If-None-Match: *", ['If-None-Match' => '*'], 304, 1],
           ["If-None-Match: other", ['If-None-Match' => '"nope"'], 200, 1],
           ["If-Modified-Since: same", ['If-Modified-Since' => 'Tue, 14 Nov 2023 22:13:20 GMT'], 304, 1],
           ["If-Modified-Since: later", ['If-Modified-Since' => 'Wed, 15 Nov 2023 22:13:20 GMT'], 304, 1],
           ["If-Modified-Since: earlier", ['If-Modified-Since' => 'Mon, 13 Nov 2023 22:13:20 GMT'], 200, 1],
           ["If-Modified-Since: garbage", ['If-Modified-Since' => 'yesterday'], 200, 1],
           ["INM other wins over IMS", ['If-None-Match' => '"nope"',
                                        'If-Modified-Since' => 'Wed, 15 Nov 2023 22:13:20 GMT'], 200, 1]) {
    my ($name, $h, $want, $compare) = @$c;
    my $a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => $h);
    is($a->{status}, $want, "$name -> $want");
    if ($want == 304) {
        is($a->{body}, '', "$name: no body");
        ok(!exists $a->{headers}{'content-type'}, "$name: 304 without Content-Type");
        is($a->{headers}{etag}, $etag, "$name: 304 with the ETag");
    }
    if ($compare) {
        my $b = Tollgate::Test::http_request($node->{port}, GET => '/a.txt', headers => $h);
        is($a->{status}, $b->{status}, "$name: as serve-static");
    }
}
my $stag = Tollgate::Test::http_request($node->{port}, GET => '/a.txt')->{headers}{etag};
my $b = Tollgate::Test::http_request($node->{port}, GET => '/a.txt', headers => ['If-None-Match' => $stag]);
is($b->{status}, 304, 'serve-static: 304 on its own tag, as Tollgate on its own');
my $a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => ['If-Match' => '"nope"']);
is($a->{status}, 412, 'If-Match other: 412');
$b = Tollgate::Test::http_request($node->{port}, GET => '/a.txt', headers => ['If-Match' => '"nope"']);
is($b->{status}, 412, 'serve-static: 412 too');
$a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => ['If-Match' => $etag]);
is($a->{status}, 200, 'If-Match own tag: 200');
$a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => ['If-Unmodified-Since' => 'Mon, 13 Nov 2023 22:13:20 GMT']);
is($a->{status}, 412, 'If-Unmodified-Since earlier: 412');
$b = Tollgate::Test::http_request($node->{port}, GET => '/a.txt', headers => ['If-Unmodified-Since' => 'Mon, 13 Nov 2023 22:13:20 GMT']);
is($b->{status}, 412, 'serve-static: 412 too');

# ---- ranges
($t, $s) = both(GET => '/a.txt', Range => 'bytes=0-9');
is($t->{status}, 206, 'single range: 206');
is($t->{status}, $s->{status}, 'single range as serve-static');
is($t->{body}, substr($text, 0, 10), 'single range bytes');
is($t->{headers}{'content-range'}, $s->{headers}{'content-range'}, 'Content-Range as serve-static');
($t, $s) = both(GET => '/a.txt', Range => 'bytes=-5');
is($t->{body}, substr($text, -5), 'suffix range');
is($t->{headers}{'content-range'}, $s->{headers}{'content-range'}, 'suffix Content-Range as serve-static');
($t, $s) = both(GET => '/a.txt', Range => 'bytes=100-');
is($t->{body}, substr($text, 100), 'open range');
is($t->{headers}{'content-range'}, $s->{headers}{'content-range'}, 'open Content-Range as serve-static');
($t, $s) = both(GET => '/a.txt', Range => 'bytes=99999-');
is($t->{status}, 416, 'unsatisfiable: 416');
is($t->{status}, $s->{status}, '416 as serve-static');
is($t->{headers}{'content-range'}, 'bytes */' . length $text, '416 Content-Range: bytes */LEN');
is($t->{headers}{'content-range'}, $s->{headers}{'content-range'}, '416 Content-Range as serve-static');
($t, $s) = both(GET => '/a.txt', Range => 'bytes=abc');
is($t->{status}, 200, 'malformed Range ignored: 200 (RFC 9110 14.2)');
is($s->{status}, 416, 'serve-static: 416 for a malformed Range (Tollgate follows the RFC)');
($t, $s) = both(GET => '/a.txt', Range => 'bytes=0-4,10-14');
is($t->{status}, 206, 'two ranges: 206 (nginx; serve-static answers 200)');
is($s->{status}, 200, 'serve-static: 200 for two ranges');
my ($bd) = ($t->{headers}{'content-type'} // '') =~ /^multipart\/byteranges; boundary=(\S+)$/;
ok($bd, 'multipart/byteranges with a boundary');
my @parts = grep { /Content-Range/ } split /--\Q$bd\E/, $t->{body};
is(scalar @parts, 2, 'two parts');
my $len = length $text;
like($parts[0], qr/Content-Range: bytes 0-4\/$len\r\n\r\n\Q@{[substr($text,0,5)]}\E\r\n$/, 'part 1');
like($parts[1], qr/Content-Range: bytes 10-14\/$len\r\n\r\n\Q@{[substr($text,10,5)]}\E\r\n$/, 'part 2');
like($t->{body}, qr/--\Q$bd\E--\r\n$/, 'closing boundary');
is(length $t->{body}, $t->{headers}{'content-length'}, 'multipart Content-Length exact');
($t, $s) = both(GET => '/a.txt', Range => 'bytes=0-4,3-9');
is($t->{body}, substr($text, 0, 10), 'overlapping ranges merged (as serve-static combine)');
($t, $s) = both(GET => '/a.txt', Range => 'bytes=0-4', 'If-Range' => '"old"');
is($t->{status}, 200, 'If-Range other tag: the whole file');
is($t->{status}, $s->{status}, 'If-Range other as serve-static');
$a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => [Range => 'bytes=0-4', 'If-Range' => $etag]);
is($a->{status}, 206, 'If-Range own tag: 206');
$a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => [Range => 'bytes=0-4', 'If-Range' => 'Tue, 14 Nov 2023 22:13:20 GMT']);
is($a->{status}, 206, 'If-Range Last-Modified date: 206');
$b = Tollgate::Test::http_request($node->{port}, GET => '/a.txt', headers => [Range => 'bytes=0-4', 'If-Range' => 'Tue, 14 Nov 2023 22:13:20 GMT']);
is($b->{status}, 206, 'serve-static: 206 too');
$a = Tollgate::Test::http_request($tg->port, HEAD => '/a.txt', headers => [Range => 'bytes=0-4']);
is($a->{status}, 200, 'HEAD with Range: 200 (RFC 9110 14.2; nginx 206, t/274)');
$b = Tollgate::Test::http_request($node->{port}, HEAD => '/a.txt', headers => [Range => 'bytes=0-4']);
is($b->{status}, 206, 'serve-static: 206 for HEAD with Range (Tollgate follows the RFC)');

# ---- methods, directories, errors
for my $m (qw(POST PUT DELETE)) {
    ($t, $s) = both($m => '/a.txt');
    is($t->{status}, 405, "$m: 405");
    is($t->{status}, $s->{status}, "$m as serve-static");
    is($t->{headers}{allow}, 'GET, HEAD', "$m: Allow");
}
($t, $s) = both(GET => '/sub?x=1');
is($t->{status}, 301, 'directory without slash: 301');
is($t->{status}, $s->{status}, '301 as serve-static');
is($t->{headers}{location}, '/sub/?x=1', 'Location: the slash form, query kept');
is($t->{headers}{location}, $s->{headers}{location}, 'Location as serve-static');
($t, $s) = both(GET => '/sub/');
is($t->{body}, "sub\n", 'index.html in a directory');
is($t->{body}, $s->{body}, 'index as serve-static');
($t, $s) = both(GET => '/empty/');
is($t->{status}, 404, 'directory without index: 404, no listing');
is($t->{status}, $s->{status}, 'as serve-static');
($t, $s) = both(GET => '/missing.txt');
is($t->{status}, 404, 'missing: 404');
is($t->{status}, $s->{status}, 'missing as serve-static');
($t, $s) = both(GET => '/a.txt/');
is($t->{status}, 404, 'file with a trailing slash: 404');
is($t->{status}, $s->{status}, 'as serve-static');

# ---- dotfiles
($t, $s) = both(GET => '/.env');
is($t->{status}, 404, 'dotfile ignored by default: 404');
is($t->{status}, $s->{status}, 'as serve-static (ignore)');
($t, $s) = both(GET => '/.hidden/x.txt');
is($t->{status}, 404, 'file under a dot directory: 404');
is($t->{status}, $s->{status}, 'as serve-static');
is(Tollgate::Test::http_request($tg->port, GET => '/deny/.env')->{status}, 403, 'dotfiles deny: 403');
is(Tollgate::Test::http_request($tg->port, GET => '/allow/.env')->{body}, "SECRET=1\n", 'dotfiles allow: served');

# ---- caching headers
$a = Tollgate::Test::http_request($tg->port, GET => '/cached/a.txt');
is($a->{headers}{'cache-control'}, 'max-age=3600', 'expires 1h: Cache-Control');
like($a->{headers}{expires}, qr/GMT$/, 'expires 1h: Expires');
$a = Tollgate::Test::http_request($tg->port, GET => '/maxed/a.txt');
is($a->{headers}{'cache-control'}, 'max-age=315360000', 'expires max');
is($a->{headers}{expires}, 'Thu, 31 Dec 2037 23:55:55 GMT', 'expires max: Expires as nginx');
$a = Tollgate::Test::http_request($tg->port, GET => '/imm/spa/assets/app.123.js');
is($a->{headers}{'cache-control'}, 'public, max-age=31536000, immutable', 'immutable on');
$a = Tollgate::Test::http_request($tg->port, GET => '/typed/a.txt');
is($a->{headers}{'content-type'}, 'text/x-custom; charset=utf-8', 'types { } block');
$a = Tollgate::Test::http_request($tg->port, GET => '/typed/noext');
is($a->{headers}{'content-type'}, 'text/plain; charset=utf-8', 'default_type');

# ---- try_files: SPA fallback, =CODE, @named
$a = Tollgate::Test::http_request($tg->port, GET => '/spa/some/client/route');
is($a->{status}, 200, 'SPA fallback: 200');
is($a->{body}, "<div id=app></div>\n", 'SPA fallback: index.html');
$a = Tollgate::Test::http_request($tg->port, GET => '/spa/assets/app.123.js');
is($a->{body}, "hashed\n", 'SPA: an existing asset is itself');
$a = Tollgate::Test::http_request($tg->port, GET => '/spa/');
is($a->{body}, "<div id=app></div>\n", 'SPA: $uri/ serves the index');
is(Tollgate::Test::http_request($tg->port, GET => '/code/nope')->{status}, 418, 'try_files =CODE');
$a = Tollgate::Test::http_request($tg->port, GET => '/named/nope');
is($a->{body}, 'from named', 'try_files @named');

# ---- precompressed, with each Accept-Encoding
my @cases = (['br', 'BR', 'br'], ['gzip', 'GZ', 'gzip'], ['zstd', 'ZSTD', 'zstd'],
             ['gzip, br', 'BR', 'br'], ['gzip;q=1, br;q=0.5', 'GZ', 'gzip'],
             ['br;q=0, gzip', 'GZ', 'gzip'], ['*', 'BR', 'br'], ['identity', 'x' x 5000, undef],
             ['deflate', 'x' x 5000, undef]);
for my $c (@cases) {
    my ($ae, $body, $ce) = @$c;
    $a = Tollgate::Test::http_request($tg->port, GET => '/pre/app.js', headers => ['Accept-Encoding' => $ae]);
    is($a->{body}, $body, "Accept-Encoding '$ae': " . ($ce // 'identity'));
    is($a->{headers}{'content-encoding'}, $ce, "Accept-Encoding '$ae': Content-Encoding");
    is($a->{headers}{vary}, 'Accept-Encoding', "Accept-Encoding '$ae': Vary");
    like($a->{headers}{'content-type'}, qr/javascript/, "Accept-Encoding '$ae': the original's type");
}
$a = Tollgate::Test::http_request($tg->port, GET => '/pre/app.js');
is($a->{body}, 'x' x 5000, 'no Accept-Encoding: identity');
$a = Tollgate::Test::http_request($tg->port, GET => '/pre/only-gz.css', headers => ['Accept-Encoding' => 'br, gzip']);
is($a->{body}, 'GZONLY', 'only .gz on disk: gzip although br is preferred');
$a = Tollgate::Test::http_request($tg->port, GET => '/pre/app.js', headers => ['Accept-Encoding' => 'gzip']);
isnt($a->{headers}{etag}, Tollgate::Test::http_request($tg->port, GET => '/pre/app.js')->{headers}{etag},
     'each variant its own ETag');

# ---- try_files is not inherited (nginx): a server's applies only where no
# location matched
$a = Tollgate::Test::http_request($tg->port(2), GET => '/nowhere');
is("$a->{status} $a->{body}", "200 <h1>home</h1>\n", 'server-level try_files: no location matched');
$a = Tollgate::Test::http_request($tg->port(2), GET => '/sub/nowhere');
is($a->{status}, 404, 'a location without try_files does not inherit the server\'s (nginx)');
$a = Tollgate::Test::http_request($tg->port(2), GET => '/sub/');
is($a->{body}, "sub\n", 'that location still serves its files');

# ---- 405 where try_files found the file, and after its fallback
for my $p ('/spa/assets/app.123.js', '/spa/client/route') {
    $a = Tollgate::Test::http_request($tg->port, POST => $p, body => 'x');
    is($a->{status}, 405, "POST $p: 405");
    is($a->{headers}{allow}, 'GET, HEAD', "POST $p: Allow: GET, HEAD");
}

# ---- HEAD is GET without the body: the same status and headers
sub without_date($r) { return join("\n", map { "$_->[0]: $_->[1]" } grep { lc $_->[0] ne 'date' } @{$r->{header_list}}) }
for my $c (['/a.txt'], ['/index.html'], ['/sub?q=1'], ['/missing.txt'], ['/imm/a.txt'],
           ['/pre/app.js', 'Accept-Encoding' => 'br'], ['/a.txt', 'If-None-Match' => $etag]) {
    my ($p, @h) = @$c;
    my $g = Tollgate::Test::http_request($tg->port, GET => $p, headers => [@h]);
    my $h = Tollgate::Test::http_request($tg->port, HEAD => $p, headers => [@h]);
    is($h->{status}, $g->{status}, "HEAD $p @h: the status of GET");
    is(without_date($h), without_date($g), "HEAD $p @h: the headers of GET");
    is($h->{body}, '', "HEAD $p @h: no body");
}

# ---- multipart ranges and If-Range
my $two = [Range => 'bytes=0-4,10-14'];
$a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => [@$two, 'If-Range' => $etag]);
like("$a->{status} $a->{headers}{'content-type'}", qr{^206 multipart/byteranges}, 'two ranges, If-Range own tag: 206 multipart');
$a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => [@$two, 'If-Range' => 'Tue, 14 Nov 2023 22:13:20 GMT']);
like("$a->{status} $a->{headers}{'content-type'}", qr{^206 multipart/byteranges}, 'two ranges, If-Range date: 206 multipart');
$a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => [@$two, 'If-Range' => '"old"']);
is("$a->{status} " . length($a->{body}), '200 ' . length($text), 'two ranges, If-Range other tag: 200, the whole file');
$a = Tollgate::Test::http_request($tg->port, GET => '/a.txt', headers => [@$two, 'If-Range' => "W/$etag"]);
is($a->{status}, 200, 'If-Range with a weak tag never matches (strong comparison)');

done_testing;
