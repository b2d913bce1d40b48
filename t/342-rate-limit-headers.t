# rate_limit_headers against express-rate-limit 8 (standardHeaders:
# 'draft-8'): for the same limit and the same sequence of requests from the
# same client, the same statuses, the same header names, RateLimit-Policy
# byte for byte (policy name, quota, window, partition key of the client
# address), RateLimit with the same name and remaining counts, and
# Retry-After on refusals. Only the reset times differ by design: a fixed
# window counts down to its end, GCRA to when the allowance is full again.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;

sub view($r) {
    my %h;
    for my $p (@{$r->{header_list}}) {
        my $n = lc $p->[0];
        push @{$h{$n}}, $p->[1] if $n =~ /^ratelimit|^retry-after$/;
    }
    return \%h;
}

for my $case ([5, 'm', 60000, 8], [3, 'h', 3600000, 5]) {
    my ($limit, $unit, $window_ms, $n) = @$case;
    my $app = node_upstream('ratelimit', env => { LIMIT => $limit, WINDOW_MS => $window_ms });
    my $tg = tg_start(<<"C");
rate_limit_zone z key=\$remote_addr rate=${limit}r/$unit size=64k;
server {
    listen %%PORT%%;
    rate_limit z;
    rate_limit_headers on;
    location / { return 200 "ok\\n"; }
}
C
    my (@ours, @theirs);
    for (1 .. $n) {   # alternate, so both see the same timing
        push @theirs, $app->http(GET => '/');
        push @ours, $tg->http(GET => '/');
    }
    my $w = $window_ms / 1000;
    for my $i (0 .. $n - 1) {
        my ($o, $t) = ($ours[$i], $theirs[$i]);
        my $what = "$limit per ${w}s, request " . ($i + 1);
        is($o->{status}, $t->{status}, "$what: status $t->{status}");
        my ($ov, $tv) = (view($o), view($t));
        is_deeply([sort keys %$ov], [sort keys %$tv], "$what: same header names")
            or diag explain [$ov, $tv];
        is_deeply($ov->{'ratelimit-policy'}, $tv->{'ratelimit-policy'},
                  "$what: RateLimit-Policy $tv->{'ratelimit-policy'}[0]");
        my $re = qr/^"([^"]+)"; r=(\d+); t=(\d+)$/;
        my @om = ($ov->{ratelimit}[0] // '') =~ $re;
        my @tm = ($tv->{ratelimit}[0] // '') =~ $re;
        ok(@om && @tm, "$what: RateLimit format") or diag "$ov->{ratelimit}[0] / $tv->{ratelimit}[0]";
        is("$om[0] $om[1]", "$tm[0] $tm[1]", "$what: RateLimit name and remaining ($tm[1])");
        ok($om[2] >= 0 && $om[2] <= $w && $tm[2] >= 0 && $tm[2] <= $w,
           "$what: reset within the window (ours $om[2], theirs $tm[2])");
        if ($t->{status} == 429) {
            like($o->{headers}{'retry-after'}, qr/^\d+$/, "$what: Retry-After in seconds");
            ok($o->{headers}{'retry-after'} >= 1 && $o->{headers}{'retry-after'} <= $w,
               "$what: Retry-After within the window");
        }
    }
}
done_testing;
