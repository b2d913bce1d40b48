# HTTP/2 connections at rest (src/h2_mem.c, src/h2.c idle_timer): once a
# connection has been idle for 250 ms, nghttp2's frame buffer and its empty
# stream map go back to the kernel. Responses after each rest are whole (large
# ones reach every page of the frame buffer, new streams the stream map), the
# idle timeout still counts from the start of the idleness, and many resting
# connections hold less memory than busy ones.
use v5.36;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::H2;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C");
workers 1;
server {
    listen %%PORT%% http2;
    listen %%PORT2%% http2;
    server_name localhost;
    access_log off;
    location / { proxy_pass $up->{addr}; }
    location = /local { return 200 "local\\n"; }
}
server {
    listen %%PORT3%% http2;
    server_name localhost;
    timeouts idle=1s;
    return 200 "short\\n";
}
C
my ($port, $port2, $short) = map { $tg->port($_) } 1 .. 3;

# One stream's answer on $c: (status, body), the body read until END_STREAM.
sub fetch($c, $id, $path) {
    $c->headers($id, Tollgate::H2::request_fields($path), end_stream => 1);
    my @f = $c->read_frames(until => sub ($f) {
        $f->{stream} == $id && ($f->{type} == 0 || $f->{type} == 1) && ($f->{flags} & 1)
    }, timeout => 10);
    my ($h) = grep { $_->{type} == 1 && $_->{stream} == $id } @f;
    return ($h ? $h->{status} : 0,
            join('', map { $_->{payload} } grep { $_->{type} == 0 && $_->{stream} == $id } @f));
}

# --- responses after rests are whole
{
    my $c = Tollgate::H2->connect($port, settings => [4, 0x7fffffff]);
    $c->window_update(0, 1 << 30);
    my $id = 1;
    for my $n (300_000, 300_000, 5_000, 70_000, 300_000) {
        my ($st, $body) = fetch($c, $id, "/size/$n");
        is($st, 200, "stream $id: 200");
        ok($body eq body_pattern($n), "stream $id: $n bytes, whole, after a rest");
        $id += 2;
        sleep 0.6; # past the rest: the session's spare pages went back
    }
    my ($st, $body) = fetch($c, $id, '/local');
    is("$st $body", "200 local\n", 'a local answer after the rest');
    $c->close;
}

# --- the idle timeout counts from the start of the idleness, rest included
{
    my $c = Tollgate::H2->connect($short);
    my ($st) = fetch($c, 1, '/');
    is($st, 200, 'idle 1s: the first answer');
    my $t0 = time;
    ok($c->closed(5), 'idle 1s: closed when idle');
    my $took = time - $t0;
    cmp_ok($took, '>', 0.7, sprintf('... not before the timeout (%.2f s)', $took));
    cmp_ok($took, '<', 3, '... nor long after it');
    my ($goaway) = grep { $_->{type} == 7 } @{$c->{seen} // []};
    is($goaway && $goaway->{code}, 0, '... with GOAWAY NO_ERROR');
}

# --- many resting connections hold less than busy ones
{
    my $n = 200;
    my @c;
    for (1 .. $n) {
        my $c = Tollgate::H2->connect($port2) or last;
        push @c, $c;
    }
    is(scalar @c, $n, "$n connections");
    my $ok = 0;
    for my $c (@c) { my ($st) = fetch($c, 1, '/local'); $ok++ if $st == 200 }
    is($ok, $n, 'a request on each');
    sleep 0.6;
    my $rested = rss($tg);
    # a second request on each, all at once: the connections are busy again
    # (their frame buffer and stream map in use) when the RSS is read
    $_->headers(3, Tollgate::H2::request_fields('/local'), end_stream => 1) for @c;
    $ok = 0;
    for my $c (@c) {
        my @f = $c->read_frames(until => sub ($f) { $f->{stream} == 3 && ($f->{flags} & 1) },
                                timeout => 5);
        $ok++ if grep { $_->{type} == 1 && $_->{stream} == 3 && $_->{status} == 200 } @f;
    }
    my $busy = rss($tg);
    is($ok, $n, 'a second request on each');
    sleep 0.6;
    my $rested2 = rss($tg);
    my $back = $busy - $rested2;
    diag("worker RSS: rested $rested KB, after the second requests $busy KB, rested again "
         . "$rested2 KB: " . int($back * 1024 / $n) . " bytes per connection back");
    # 8 KB per connection go back (4 KB of frame buffer, 4 KB of stream map);
    # the connections that rested before the RSS was read count for nothing
    cmp_ok($back * 1024 / $n, '>', 3000, 'resting connections gave memory back');
    $_->close for @c;
}

$tg->stop;
done_testing;

sub rss($g) {
    my $total = 0;
    for my $pid ($g->worker_pids) {
        open(my $fh, '<', "/proc/$pid/status") or next;
        while (<$fh>) { $total += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $total;
}
