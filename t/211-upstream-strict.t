# Upstream responses get the same strictness as requests: ambiguous framing,
# malformed lines, control bytes, oversized headers and truncated answers
# never reach the client as a response; the client gets 502 (or, once the
# header went out, a closed connection).
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;

my $raw = node_upstream('raw');
my $tg = tg_start("server { listen %%PORT%%; location / { proxy_pass $raw->{addr}; } }",
                  errors_ok => [qr/upstream/]);
is($tg->http(GET => '/ok')->{body}, 'ok', 'a good answer passes');
for my $case (qw(cl-te two-cl bad-chunk bare-lf obs-fold ctl space-colon bad-status bad-version
                 huge-header mid-headers nothing te-gzip neg-cl)) {
    my $r = $tg->http(GET => "/$case");
    is($r->{status}, 502, "$case: 502");
}
my $r = $tg->http(GET => '/short-body');
ok(!defined $r->{status} || $r->{error} || $r->{closed}, 'truncated body: the client sees it cut')
    and ok(length($r->{body} // '') < 10, '... never a complete 10-byte body');
$tg->stop;
done_testing;
