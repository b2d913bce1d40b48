# rate_limit against express-rate-limit 8, one row per option: an Express app
# with the limiter configured one way and Tollgate with the equivalent
# directives in front of the same app without a limiter get the same
# requests (alternating, so both see the same timing), and the answers are
# compared: statuses, which rate-limit headers are sent, the values that a
# fixed window and GCRA agree on (limits, remaining counts, policies, the
# draft-8 partition key) byte for byte, the 429 answer's body and type byte
# for byte, and the format of the reset values. Reset and Retry-After values
# differ by design (docs/rate-limiting.md): a fixed window counts down to its
# end, GCRA to when the allowance is back.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use JSON::PP qw(encode_json);

my $plain = node_upstream('ratelimit', env => { OPTS => 'off' });

sub view($r) {
    my %h;
    for my $p (@{$r->{header_list}}) {
        my $n = lc $p->[0];
        push @{$h{$n}}, $p->[1] if $n =~ /^(?:x-)?ratelimit|^retry-after$/;
    }
    return \%h;
}

my @ok5 = ('/') x 7;
# name, express-rate-limit options, rate_limit_headers, count=, requests
my @rows = (
    ['defaults (legacyHeaders)',     {},                                        'legacy',         undef, \@ok5],
    ['draft-6',                      {standardHeaders => 'draft-6', legacyHeaders => \0}, 'draft-6', undef, \@ok5],
    ['draft-7',                      {standardHeaders => 'draft-7', legacyHeaders => \0}, 'draft-7', undef, \@ok5],
    ['draft-8',                      {standardHeaders => 'draft-8', legacyHeaders => \0}, 'draft-8', undef, \@ok5],
    ['on = draft-8',                 {standardHeaders => 'draft-8', legacyHeaders => \0}, 'on',      undef, \@ok5],
    ['legacy + draft-7',             {standardHeaders => 'draft-7'},            'legacy draft-7', undef, \@ok5],
    ['standardHeaders: true',        {standardHeaders => \1},                   'draft-6 legacy', undef, \@ok5],
    ['no headers',                   {legacyHeaders => \0},                     'off',            undef, \@ok5],
    ['skipSuccessfulRequests',       {skipSuccessfulRequests => \1, standardHeaders => 'draft-8', legacyHeaders => \0},
     'draft-8', 'failed', [qw(/ / / /status/404 /status/500 / /status/404 /status/401 /status/404 /status/404 / /status/404)]],
    ['skipFailedRequests',           {skipFailedRequests => \1, standardHeaders => 'draft-7', legacyHeaders => \0},
     'draft-7', 'successful', [qw(/status/404 /status/404 /status/503 / / / /status/404 / / / /status/404)]],
);

for my $row (@rows) {
    my ($name, $opts, $headers, $count, $seq) = @$row;
    my $app = node_upstream('ratelimit', env => { OPTS => encode_json($opts) });
    my $cnt = $count ? " count=$count" : '';
    my $tg = tg_start(<<"C");
rate_limit_zone z key=\$remote_addr rate=5r/m size=64k;
server {
    listen %%PORT%%;
    rate_limit z$cnt;
    rate_limit_headers $headers;
    location / { proxy_pass $plain->{addr}; }
}
C
    my (@ours, @theirs);
    for my $path (@$seq) {
        push @theirs, $app->http(GET => $path);
        push @ours, $tg->http(GET => $path);
    }
    my $t0 = time;
    subtest $name => sub {
        for my $i (0 .. $#$seq) {
            my ($o, $t) = ($ours[$i], $theirs[$i]);
            my $what = "request " . ($i + 1) . " $seq->[$i]";
            is($o->{status}, $t->{status}, "$what: status $t->{status}");
            my ($ov, $tv) = (view($o), view($t));
            # express-rate-limit sends Retry-After only with some headers on;
            # Tollgate always does on a refusal
            delete $ov->{'retry-after'} if !exists $tv->{'retry-after'} && $headers eq 'off';
            is_deeply([sort keys %$ov], [sort keys %$tv], "$what: same header names")
                or diag explain [$ov, $tv];
            for my $h (qw(x-ratelimit-limit x-ratelimit-remaining ratelimit-limit
                          ratelimit-remaining ratelimit-policy)) {
                next unless $tv->{$h};
                is_deeply($ov->{$h}, $tv->{$h}, "$what: $h $tv->{$h}[0]");
            }
            if (my $reset = $tv->{'x-ratelimit-reset'}) {
                my $ours = $ov->{'x-ratelimit-reset'}[0] // '';
                ok($ours =~ /^\d+$/ && $ours >= int($t0) - 2 && $ours <= $t0 + 62
                   && $reset->[0] =~ /^\d+$/, "$what: X-RateLimit-Reset Unix seconds ($ours, theirs $reset->[0])");
            }
            if (my $reset = $tv->{'ratelimit-reset'}) {
                like($ov->{'ratelimit-reset'}[0], qr/^(?:[0-9]|[1-5][0-9]|60)$/,
                     "$what: RateLimit-Reset seconds (theirs $reset->[0])");
            }
            if (my $rl = $tv->{ratelimit}) {
                my $re = $rl->[0] =~ /^limit/ ? qr/^(limit=\d+, remaining=\d+), reset=(\d+)$/
                                              : qr/^("[^"]+"; r=\d+); t=(\d+)$/;
                my @om = ($ov->{ratelimit}[0] // '') =~ $re;
                my @tm = $rl->[0] =~ $re;
                is($om[0], $tm[0], "$what: RateLimit $tm[0]; reset seconds ours $om[1], theirs $tm[1]");
                ok(defined $om[1] && $om[1] <= 60, "$what: reset within the window");
            }
            if ($t->{status} == 429) {
                is($o->{body}, $t->{body}, "$what: 429 body byte for byte");
                is($o->{headers}{'content-type'}, $t->{headers}{'content-type'},
                   "$what: 429 Content-Type");
                like($o->{headers}{'retry-after'}, qr/^[1-9]\d*$/, "$what: Retry-After seconds");
            }
        }
    };
}

like(tg_conf_error("server { rate_limit_headers draft-7 draft-8; }"),
     qr/takes one of draft-6, draft-7 and draft-8/, 'two drafts: error');
like(tg_conf_error("server { rate_limit_headers on legacy; }"),
     qr/"rate_limit_headers on" takes no other value/, 'on with another value: error');
like(tg_conf_error("server { rate_limit_headers draft-9; }"),
     qr/invalid value "draft-9" in "rate_limit_headers"/, 'unknown value: error');
like(tg_conf_error("rate_limit_zone z key=\$remote_addr rate=1r/s size=64k;\n"
                   . "server { rate_limit z count=some; }"),
     qr/invalid count "some" in "rate_limit", expected all, failed or successful/, 'bad count=');
done_testing;
