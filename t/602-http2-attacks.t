# HTTP/2 attacks, each written frame by frame (t/lib/Tollgate/H2.pm): rapid
# reset, CONTINUATION flood, HPACK bomb, SETTINGS / PING / empty DATA /
# PRIORITY / WINDOW_UPDATE floods, a zero-window stall, more streams than
# allowed. In each: no crash, the worker's memory bounded, the attacker's
# connection closed (or its stream reset), another client still served.
use v5.36;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::H2;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C");
workers 1;
http2_max_streams 10;
server {
    listen %%PORT%% http2;
    timeouts send=1s;
    location / { proxy_pass $up->{addr}; }
    location = /local { return 200 "ok\\n"; }
}
C
my $port = $tg->port;
my $rss0 = rss();

sub rss {
    my $total = 0;
    for my $pid ($tg->worker_pids) {
        open(my $fh, '<', "/proc/$pid/status") or next;
        while (<$fh>) { $total += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $total;
}

sub served($what) {
    my $r = curl_req($port, '/local', proto => 'h2');
    is($r->{status}, 200, "$what: another client is served");
    cmp_ok(rss() - $rss0, '<', 20_000, "$what: worker memory bounded");
}

sub goaway_calm($h, $what) {
    ok($h->closed(10), "$what: connection closed");
    my ($g) = grep { $_->{type} == 7 } @{$h->{seen} // []};
    is($g && $g->{code}, 11, "$what: GOAWAY ENHANCE_YOUR_CALM");
}

my $GET = sub ($path) { Tollgate::H2::request_fields($path) };

# --- rapid reset (CVE-2023-44487): HEADERS + RST_STREAM, 3000 times
$up->clear_log;
my $h = Tollgate::H2->connect($port);
my $burst = '';
for my $i (1 .. 3000) {
    my $id = 2 * $i - 1;
    $burst .= Tollgate::H2::frame_bytes(1, 0x5, $id, Tollgate::H2::hpack(@{$GET->('/delay/200')}));
    $burst .= Tollgate::H2::frame_bytes(3, 0, $id, pack('N', 8));
}
$h->write($burst);
goaway_calm($h, 'rapid reset');
sleep 0.3;
my $n = grep { $_->{url} eq '/delay/200' } $up->log->@*;
cmp_ok($n, '<', 20, "rapid reset: $n upstream requests for 3000 resets");
served('rapid reset');

# --- rapid reset across reads: each pair in its own write, work bounded by the limit
$up->clear_log;
$h = Tollgate::H2->connect($port);
for my $i (1 .. 200) {
    my $id = 2 * $i - 1;
    $h->headers($id, $GET->('/delay/200'), end_stream => 1);
    select(undef, undef, undef, 0.001);
    $h->rst($id);
    last if $h->{eof};
}
goaway_calm($h, 'slow rapid reset');
sleep 0.3;
$n = grep { $_->{url} eq '/delay/200' } $up->log->@*;
cmp_ok($n, '<=', 40, "slow rapid reset: $n upstream requests started (reset limit: 2 x streams)");
served('slow rapid reset');

# --- CONTINUATION flood: a header block that never ends
$h = Tollgate::H2->connect($port);
$h->frame(1, 0, 1, Tollgate::H2::hpack(@{$GET->('/')}));
my $cont = Tollgate::H2::frame_bytes(9, 0, 1, Tollgate::H2::hpack('x-pad' => 'p' x 1000));
$h->write($cont x 200);
ok($h->closed(5), 'CONTINUATION flood: connection closed');
served('CONTINUATION flood');

# --- HPACK bomb: one 4 KB entry in the dynamic table, referenced 12,000 times
$h = Tollgate::H2->connect($port);
my $block = Tollgate::H2::hpack(@{$GET->('/local')});
$block .= "\x40" . Tollgate::H2::_int(5, 7) . 'x-big' . Tollgate::H2::_int(4000, 7) . ('b' x 4000);
$block .= "\xbe" x 12_000; # indexed: dynamic entry 62
$h->frame(1, 0x5, 1, $block);
my @f = $h->read_frames(until => sub ($f) { $f->{type} == 1 || $f->{type} == 3 || $f->{type} == 7 },
                        timeout => 5);
my ($hd) = grep { $_->{type} == 1 } @f;
is($hd && $hd->{status}, 431, 'HPACK bomb (48 MB decoded from 16 KB): 431');
$h->close;
served('HPACK bomb');

# --- control frame floods
my %flood = (
    SETTINGS => sub ($c) { $c->settings(3, 100) },
    PING => sub ($c) { $c->ping },
    PRIORITY => sub ($c) { $c->priority(3) },
    WINDOW_UPDATE => sub ($c) { $c->window_update(0, 1) },
    'empty DATA' => sub ($c) { $c->data(1, '') },
);
for my $what (sort keys %flood) {
    my $c = Tollgate::H2->connect($port);
    $c->{no_auto_ack} = 1;
    $c->headers(1, Tollgate::H2::request_fields('/delay/3000', method => 'POST'))
        if $what eq 'empty DATA';
    my $frames = '';
    {
        no warnings 'redefine';
        local *Tollgate::H2::write = sub ($self, $b) { $frames .= $b; 1 };
        $flood{$what}->($c) for 1 .. 3000;
    }
    $c->write($frames);
    goaway_calm($c, "$what flood");
}
served('floods');

# --- zero window: the response cannot go; send_timeout frees the stream
$h = Tollgate::H2->connect($port, settings => [4, 0]); # SETTINGS_INITIAL_WINDOW_SIZE 0
my $t0 = time;
$h->headers(1, $GET->('/size/1000000'), end_stream => 1);
@f = $h->read_frames(until => sub ($f) { $f->{type} == 3 }, timeout => 5);
my ($rst) = grep { $_->{type} == 3 } @f;
ok($rst, 'zero window: the stream is reset');
my $took = time - $t0;
cmp_ok($took, '<', 3, sprintf('... after send_timeout (%.1f s)', $took));
ok($tg->wait_log(qr/not read for send_timeout/, 2, 0), '... and logged');
$h->close;
served('zero window');

# --- more streams than allowed (http2_max_streams 10): before the client
# acknowledged our SETTINGS, REFUSED_STREAM; after, it broke the limit it
# knows: GOAWAY PROTOCOL_ERROR (nghttp2's rule)
$h = Tollgate::H2->connect($port);
$h->{no_auto_ack} = 1;
$h->headers(2 * $_ - 1, $GET->('/delay/300'), end_stream => 1) for 1 .. 15;
my $done = 0;
@f = $h->read_frames(timeout => 3,
                     until => sub ($f) { $f->{type} == 0 && ($f->{flags} & 1) && ++$done == 10 });
my @refused = grep { $_->{type} == 3 && $_->{code} == 7 } @f;
my @ok = grep { $_->{type} == 1 && ($_->{status} // 0) == 200 } @f;
is(scalar @refused, 5, 'stream limit 10, SETTINGS not acknowledged: 5 streams REFUSED_STREAM');
is(scalar @ok, 10, '... the 10 allowed answered');
$h->close;
$h = Tollgate::H2->connect($port);
$h->read_frames(until => sub ($f) { $f->{type} == 4 && !($f->{flags} & 1) });
$h->headers(2 * $_ - 1, $GET->('/delay/300'), end_stream => 1) for 1 .. 15;
ok($h->closed(5), 'stream limit 10 acknowledged, 15 opened: connection closed');
my ($g) = grep { $_->{type} == 7 } @{$h->{seen}};
is($g && $g->{code}, 1, '... GOAWAY PROTOCOL_ERROR');
served('stream limit');

ok(kill(0, $tg->worker_pids), 'the worker is alive after every attack');
my $st = $tg->http(GET => '/local');
is($st->{status}, 200, 'HTTP/1.1 still served');
$tg->stop;
done_testing;
