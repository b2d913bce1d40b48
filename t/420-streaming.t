# Streamed responses are never buffered (server-sent events arrive as they
# are written), long polls get their own read timeout, and the client idle
# timeout never cuts a request in flight.
use v5.36;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $hang = node_upstream('hang');
my $tg = tg_start(<<"C", errors_ok => [qr/timed out reading from upstream/]);
server {
    listen %%PORT%%;
    timeouts idle=1s;
    location / { proxy_pass $up->{addr}; }
    location /delay/ { proxy_pass $up->{addr}; proxy_timeouts read=3s; }
    location /short/ { proxy_pass $hang->{addr}; proxy_timeouts read=500ms; }
}
C

# SSE: /sse/N sends N events 50 ms apart; record when each arrives
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tg->port) or die;
    print $s "GET /sse/6 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n";
    my $sel = IO::Select->new($s);
    my ($buf, @at) = ('');
    my $t0 = time;
    while (time - $t0 < 5 && $sel->can_read(5 - (time - $t0))) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
        my $events = () = $buf =~ /\n\n/g;
        push @at, time while @at < $events - 0;   # one timestamp per new event
    }
    like($buf, qr{^HTTP/1\.1 200}, 'SSE answered');
    like($buf, qr{text/event-stream}i, 'content type kept');
    ok(@at >= 6, 'all events arrived') or diag scalar @at;
    my @gaps = map { $at[$_] - $at[$_ - 1] } 1 .. $#at;
    ok((grep { $_ > 0.025 } @gaps) >= 4, 'events arrive spread out as written, not batched')
        or diag "@gaps";
    ok($at[-1] - $at[0] > 0.2, 'over the time they were sent') or diag $at[-1] - $at[0];
}

# long poll: answered after 2 s, with read=3s in that location and idle=1s
{
    my $t0 = time;
    my $r = $tg->http(GET => '/delay/2000');
    is($r->{status}, 200, 'long poll answered');
    ok(time - $t0 >= 1.9, 'after the upstream waited') or diag time - $t0;
    my $c = $tg->keepalive;
    my $x = $c->request(GET => '/delay/1500');
    is($x->{status}, 200, 'keep-alive long poll longer than the idle timeout is not cut');
    is($c->request(GET => '/delay/10')->{status}, 200, 'connection still usable');
}
# a shorter read timeout: 504
my $t0 = time;
is($tg->http(GET => '/short/x')->{status}, 504, 'proxy_timeouts read= per location');
ok(time - $t0 < 1.5, '... after about 500 ms') or diag time - $t0;
$tg->stop;
done_testing;
