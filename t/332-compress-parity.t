# compress against the compression package (1.8, its defaults: threshold 1 KB,
# its filter, br then gzip), one row per case: an Express app with
# compression() and Tollgate with `compress br gzip;` and the default types
# and minimum length in front of the same app without it get the same
# request, and the decisions are compared: the status, whether and how the
# answer is encoded (Content-Encoding), Vary, and whether Content-Length is
# kept; a gzip answer is decoded and compared with the plain body. Rows
# marked `differs` are the documented differences (docs/compression.md):
# there each side's own answer is checked.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use IO::Uncompress::Gunzip qw(gunzip);

my $plain = node_upstream('express', env => { MW => '' });
my $app = node_upstream('express', env => { MW => 'compression' });
my $tg = tg_start(<<"C");
server {
    listen %%PORT%%;
    compress br gzip;
    location / { proxy_pass $plain->{addr}; }
}
C

my $AE = 'gzip, deflate, br';
# name, method, query, request headers, differs => [ours, theirs] (encodings)
my @rows = (
    ['JSON 2000 B, gzip deflate br',  GET => 'n=2000&type=application/json', ['Accept-Encoding' => $AE]],
    ['JSON 2000 B, gzip',             GET => 'n=2000&type=application/json', ['Accept-Encoding' => 'gzip']],
    ['JSON 2000 B, no Accept-Encoding', GET => 'n=2000&type=application/json', []],
    ['JSON 2000 B, identity',         GET => 'n=2000&type=application/json', ['Accept-Encoding' => 'identity']],
    ['JSON 2000 B, *',                GET => 'n=2000&type=application/json', ['Accept-Encoding' => '*']],
    ['JSON 2000 B, br;q=0.5 gzip',    GET => 'n=2000&type=application/json', ['Accept-Encoding' => 'br;q=0.5, gzip']],
    ['JSON 2000 B, gzip;q=0',         GET => 'n=2000&type=application/json', ['Accept-Encoding' => 'gzip;q=0, br']],
    ['1023 B: below the threshold',   GET => 'n=1023&type=text/plain', ['Accept-Encoding' => $AE]],
    ['1024 B: at the threshold',      GET => 'n=1024&type=text/plain', ['Accept-Encoding' => $AE]],
    ['empty body',                    GET => 'n=0&type=text/plain', ['Accept-Encoding' => $AE]],
    ['text/html',                     GET => 'n=5000&type=text/html', ['Accept-Encoding' => 'gzip']],
    ['text/css',                      GET => 'n=5000&type=text/css', ['Accept-Encoding' => 'gzip']],
    ['text/csv',                        GET => 'n=5000&type=text/csv', ['Accept-Encoding' => 'gzip']],
    ['application/javascript',        GET => 'n=5000&type=application/javascript', ['Accept-Encoding' => 'gzip']],
    ['application/x-javascript',      GET => 'n=5000&type=application/x-javascript', ['Accept-Encoding' => 'gzip']],
    ['application/ld+json (+json)',   GET => 'n=5000&type=application/ld%2Bjson', ['Accept-Encoding' => 'gzip']],
    ['application/problem+json',      GET => 'n=5000&type=application/problem%2Bjson', ['Accept-Encoding' => 'gzip']],
    ['application/xhtml+xml (+xml)',  GET => 'n=5000&type=application/xhtml%2Bxml', ['Accept-Encoding' => 'gzip']],
    ['image/svg+xml',                 GET => 'n=5000&type=image/svg%2Bxml', ['Accept-Encoding' => 'gzip']],
    ['application/xml',               GET => 'n=5000&type=application/xml', ['Accept-Encoding' => 'gzip']],
    ['application/wasm',              GET => 'n=5000&type=application/wasm', ['Accept-Encoding' => 'gzip']],
    ['font/ttf',                      GET => 'n=5000&type=font/ttf', ['Accept-Encoding' => 'gzip']],
    ['image/x-icon',                  GET => 'n=5000&type=image/x-icon', ['Accept-Encoding' => 'gzip']],
    ['application/x-www-form-urlencoded', GET => 'n=5000&type=application/x-www-form-urlencoded', ['Accept-Encoding' => 'gzip']],
    ['JSON with charset, upper case', GET => 'n=5000&type=Application/JSON;%20charset=utf-8', ['Accept-Encoding' => 'gzip']],
    ['image/png',                     GET => 'n=5000&type=image/png', ['Accept-Encoding' => 'gzip']],
    ['application/pdf',               GET => 'n=5000&type=application/pdf', ['Accept-Encoding' => 'gzip']],
    ['video/mp4',                     GET => 'n=5000&type=video/mp4', ['Accept-Encoding' => 'gzip']],
    ['Cache-Control: no-transform',   GET => 'n=5000&type=text/plain&cc=no-transform', ['Accept-Encoding' => 'gzip']],
    ['Cache-Control: public, no-transform', GET => 'n=5000&type=text/plain&cc=public,%20No-Transform', ['Accept-Encoding' => 'gzip']],
    ['Cache-Control: no-store',       GET => 'n=5000&type=text/plain&cc=no-store', ['Accept-Encoding' => 'gzip']],
    ['encoded by the app',            GET => 'n=5000&type=text/plain&ce=gzip', ['Accept-Encoding' => 'gzip']],
    ['HEAD',                          HEAD => 'n=5000&type=text/plain', ['Accept-Encoding' => 'gzip']],
    ['204',                           GET => 'n=5000&status=204', ['Accept-Encoding' => 'gzip']],
    ['404 with a body',               GET => 'n=5000&type=text/html&status=404', ['Accept-Encoding' => 'gzip']],
    ['500 with a body',               GET => 'n=5000&type=application/json&status=500', ['Accept-Encoding' => 'br']],
    ['streamed 5000 B',               GET => 'n=5000&type=text/plain&stream=1', ['Accept-Encoding' => 'gzip']],
    # the documented differences
    ['application/octet-stream',      GET => 'n=5000&type=application/octet-stream', ['Accept-Encoding' => 'gzip'],
     differs => ['', 'gzip']],
    ['deflate only',                  GET => 'n=2000&type=application/json', ['Accept-Encoding' => 'deflate'],
     differs => ['', 'deflate']],
    ['streamed 100 B',                GET => 'n=100&type=text/plain&stream=1', ['Accept-Encoding' => 'gzip'],
     differs => ['', 'gzip']],
    ['request Cache-Control: no-transform', GET => 'n=5000&type=text/plain',
     ['Accept-Encoding' => 'gzip', 'Cache-Control' => 'no-transform'], differs => ['', 'gzip']],
);

sub header_line($r, $name) {
    my @v = map { $_->[1] } grep { lc $_->[0] eq $name } @{$r->{header_list}};
    return @v ? join(', ', @v) : undef;
}
sub decision($r) {
    return { status => $r->{status},
             'content-encoding' => header_line($r, 'content-encoding') // '',
             vary => header_line($r, 'vary') // '',
             'content-length kept' => defined header_line($r, 'content-length') ? 1 : 0 };
}

my $plain_body = sub ($q) { $plain->http(GET => "/gen?$q")->{body} };
for my $row (@rows) {
    my ($name, $method, $q, $headers, %o) = @$row;
    my $theirs = $app->http($method => "/gen?$q", headers => $headers);
    my $ours = $tg->http($method => "/gen?$q", headers => $headers);
    my ($od, $td) = (decision($ours), decision($theirs));
    if (my $d = $o{differs}) {
        is($od->{'content-encoding'}, $d->[0], "$name: ours " . ($d->[0] || 'not encoded'));
        is($td->{'content-encoding'}, $d->[1], "$name: the package's $d->[1] (documented difference)");
        next;
    }
    is_deeply($od, $td, "$name: same decision (" . ($td->{'content-encoding'} || 'not encoded')
              . ", Vary '$td->{vary}')") or diag explain { ours => $od, theirs => $td };
    if ($od->{'content-encoding'} eq 'gzip' && $q !~ /ce=/) {
        my ($a, $b) = ('', '');
        gunzip(\$ours->{body} => \$a);
        gunzip(\$theirs->{body} => \$b);
        my $want = $plain_body->($q =~ s/&stream=1//r);
        ok($a eq $want && $b eq $want, "$name: both decode to the plain body (" . length($want) . " B)");
    }
}
# 304: Express answers a fresh conditional GET without a type
{
    my $etag = $plain->http(GET => '/gen?n=5000&type=text/plain')->{headers}{etag};
    my @h = ('Accept-Encoding' => 'gzip', 'If-None-Match' => $etag);
    my ($o, $t) = map { decision($_->http(GET => '/gen?n=5000&type=text/plain', headers => \@h)) } $tg, $app;
    is($t->{status}, 304, '304 from the package');
    is_deeply($o, $t, '304: same decision') or diag explain { ours => $o, theirs => $t };
}
done_testing;
