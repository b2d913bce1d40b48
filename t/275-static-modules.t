# Static responses go through the same response path as proxied ones
# (issue 22): security headers, CORS, add_header, a Lua header filter, rate
# limits, the stats and the access log apply to files as to any answer.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use File::Temp qw(tempdir);

my $dir = tempdir('tg-static-mod-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
open(my $fh, '>', "$dir/a.txt") or die;
print $fh "static\n";
close $fh;
chmod 0644, "$dir/a.txt";

my $tg = tg_start(<<"EOF", files => {'filter.lua' => 'tg.resp.set_header("X-Lua", tg.req.path())'});
rate_limit_zone z key=\$remote_addr rate=1r/m burst=2 size=64k;
server {
    listen %%PORT%%;
    root $dir;
    access_log %%DIR%%/access.log combined;
    security_headers on;
    cors origins=https://app.test;
    add_header X-Static yes;
    lua_header_filter %%DIR%%/filter.lua;
    location /limited/ { alias $dir/; rate_limit z; }
    location = /stats { stats; }
}
EOF

my $r = $tg->http(GET => '/a.txt', headers => [Origin => 'https://app.test']);
is("$r->{status} $r->{body}", "200 static\n", 'the file');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'security_headers on a file');
ok(exists $r->{headers}{'content-security-policy'}, 'helmet\'s Content-Security-Policy too');
is($r->{headers}{'access-control-allow-origin'}, 'https://app.test', 'cors on a file');
is($r->{headers}{'x-static'}, 'yes', 'add_header on a file');
is($r->{headers}{'x-lua'}, '/a.txt', 'lua_header_filter on a file');
$r = $tg->http(GET => '/a.txt', headers => ['If-None-Match' => $r->{headers}{etag}]);
is($r->{status}, 304, 'a 304');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'security_headers on a 304');
$r = $tg->http(GET => '/nope.txt');
is($r->{status}, 404, 'a missing file');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'security_headers on its 404');

my @st = map { $tg->http(GET => '/limited/a.txt')->{status} } 1 .. 5;
is("@st[0..2]", '200 200 200', 'rate_limit: the burst passes');
is("@st[3..4]", '429 429', 'rate_limit: then 429 on a static location');

$r = $tg->http(GET => '/stats?format=prometheus');
my ($ok2xx) = $r->{body} =~ /^tollgate_requests_total\{class="2xx"\} (\d+)$/m;
my ($n4xx) = $r->{body} =~ /^tollgate_requests_total\{class="4xx"\} (\d+)$/m;
cmp_ok($ok2xx // 0, '>=', 4, "stats count the files served ($ok2xx 2xx)");
cmp_ok($n4xx // 0, '>=', 3, "and the refusals ($n4xx 4xx)");

ok(wait_until(sub {
    open(my $l, '<', $tg->dir . '/access.log') or return 0;
    my @lines = grep { m{"GET /a\.txt HTTP/1\.1" 200 7 } } <$l>;
    @lines >= 1;
}, 5), 'the access log has the file with its status and size');

done_testing;
