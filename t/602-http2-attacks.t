# HTTP/2 attacks, each written frame by frame (t/lib/Tollgate/H2.pm): rapid
# reset, CONTINUATION flood, HPACK bomb, SETTINGS / PING / empty DATA /
# PRIORITY / WINDOW_UPDATE floods, a zero-window stall, more streams than
# allowed, stream id exhaustion (ids up to 2^31-1, ids going backwards or
# reused). In each: no crash, the worker's memory bounded, the attacker's
# connection closed with the GOAWAY that says why, another client still
# served.
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
    timeouts send=1s idle=2s;
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
    my $grew = rss() - $rss0;
    cmp_ok($grew, '<', 20_000, "$what: worker memory bounded (+$grew KB since the start)");
}

sub goaway_calm($h, $what) {
    my $t = time;
    ok($h->closed(10), sprintf('%s: connection closed (%.2f s after the last write)', $what, time - $t));
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
goaway_calm($h, 'CONTINUATION flood');
served('CONTINUATION flood');

# --- HPACK bomb: one 4 KB entry in the dynamic table, referenced 12,000
# times (48 MB decoded from 16 KB): decoding stops at 4 x the 16 KB limit
sub bomb($refs) {
    my $block = Tollgate::H2::hpack(@{$GET->('/local')});
    $block .= "\x40" . Tollgate::H2::_int(5, 7) . 'x-big' . Tollgate::H2::_int(4000, 7) . ('b' x 4000);
    return $block . ("\xbe" x $refs); # indexed: dynamic entry 62
}
$h = Tollgate::H2->connect($port);
$h->frame(1, 0x5, 1, bomb(12_000));
goaway_calm($h, 'HPACK bomb');
ok(!(grep { $_->{type} == 1 } @{$h->{seen}}), '... no response: decoding stopped');
served('HPACK bomb');
# the same in a request's trailers: the limit is per header block, whatever it is for
$h = Tollgate::H2->connect($port);
$h->headers(1, Tollgate::H2::request_fields('/delay/100', method => 'POST'));
$h->data(1, 'x');
my $trailers = "\x40" . Tollgate::H2::_int(5, 7) . 'x-big' . Tollgate::H2::_int(4000, 7) . ('b' x 4000);
$h->frame(1, 0x5, 1, $trailers . ("\xbe" x 12_000));
goaway_calm($h, 'HPACK bomb in trailers');
served('HPACK bomb in trailers');
# a header list over the limit but not a bomb (5 x 4 KB): 431, the connection lives
$h = Tollgate::H2->connect($port);
$h->frame(1, 0x5, 1, bomb(4));
my @f = $h->read_frames(until => sub ($f) { $f->{type} == 0 && ($f->{flags} & 1) }, timeout => 5);
my ($hd) = grep { $_->{type} == 1 } @f;
is($hd && $hd->{status}, 431, 'a header list past http2_max_header_size: 431');
$h->headers(3, $GET->('/local'), end_stream => 1);
@f = $h->read_frames(until => sub ($f) { $f->{type} == 1 }, timeout => 5);
is((grep { $_->{type} == 1 } @f)[0]{status}, 200, '... and the connection serves the next stream');
$h->close;

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
    served("$what flood");
}

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
ok($h->closed(5), '... then the idle connection is closed');
ok((grep { $_->{type} == 7 && $_->{code} == 0 } @{$h->{seen}}), '... with GOAWAY NO_ERROR (idle timeout)');
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

# --- stream id exhaustion: ids that reach 2^31-1. The stream with the
# last id possible is answered, with a GOAWAY (last stream 2^31-1): the
# connection can carry nothing more and closes when its streams are done.
my $MAX = 2**31 - 1;
$h = Tollgate::H2->connect($port);
$h->headers($MAX - 2 * $_, $GET->('/delay/200'), end_stream => 1) for reverse 0 .. 4;
served('ids near 2^31-1, meanwhile');
ok($h->closed(5), 'ids up to 2^31-1: the connection closes');
my @seen = @{$h->{seen}};
is(scalar(grep { $_->{type} == 1 && ($_->{status} // 0) == 200 } @seen), 5, '... after answering its 5 streams');
($g) = grep { $_->{type} == 7 } @seen;
is($g && "$g->{code} $g->{last_stream}", "0 $MAX", '... GOAWAY NO_ERROR, last stream 2^31-1');

# ids going backwards, or a closed stream's id again: RFC 9113 5.1.1's
# connection error, GOAWAY PROTOCOL_ERROR naming the last stream processed
for my $case (['backwards', [5, 3]], ['reused', [1, 1]], ['skipped, then used', [1, 1001, 999]]) {
    my ($what, $ids) = @$case;
    $up->clear_log;
    $h = Tollgate::H2->connect($port);
    my @ids = @$ids;
    my $bad = pop @ids;
    for my $id (@ids) {
        $h->headers($id, $GET->("/ids/$id"), end_stream => 1);
        $h->read_frames(until => sub ($f) { $f->{type} == 0 && $f->{stream} == $id && ($f->{flags} & 1) },
                        timeout => 5);
    }
    $h->headers($bad, $GET->('/ids/bad'), end_stream => 1);
    ok($h->closed(5), "stream ids $what (@$ids): connection closed");
    ($g) = grep { $_->{type} == 7 } @{$h->{seen}};
    is($g && "$g->{code} $g->{last_stream}", "1 $ids[-1]", "... GOAWAY PROTOCOL_ERROR, last stream $ids[-1]");
    ok(!(grep { $_->{url} eq '/ids/bad' } $up->log->@*), '... the offending request never went upstream');
    served("stream ids $what");
}

# not an attack: a stream answered and reset before its body ended still
# gets the rest of its DATA and trailers, sent before the client saw our
# RST_STREAM; they are ignored (RFC 9113 5.1) and the connection lives
$h = Tollgate::H2->connect($port);
$h->headers(1, Tollgate::H2::request_fields('/local', method => 'POST', extra => ['content-length' => 10]));
@f = $h->read_frames(until => sub ($f) { $f->{type} == 3 && $f->{stream} == 1 }, timeout => 5);
is(join(' ', map { $_->{name} } grep { $_->{stream} == 1 } @f), 'HEADERS DATA RST_STREAM',
   'a POST answered before its body: response, then RST_STREAM');
$h->data(1, 'x' x 10);
$h->headers(1, ['x-trailer' => '1'], end_stream => 1);
$h->headers(3, $GET->('/local'), end_stream => 1);
@f = $h->read_frames(until => sub ($f) { $f->{type} == 1 || $f->{type} == 7 }, timeout => 5);
is(join(' ', map { $_->{name} } @f), 'HEADERS', "... its late DATA and trailers are ignored, the next stream served");
$h->close;

# a replay flood: one id sent 3000 times in one write; the first replay ends it
$up->clear_log;
$h = Tollgate::H2->connect($port);
my $replay = Tollgate::H2::frame_bytes(1, 0x5, 1, Tollgate::H2::hpack(@{$GET->('/replay')}));
$h->headers(1, $GET->('/replay'), end_stream => 1);
$h->read_frames(until => sub ($f) { $f->{type} == 0 && ($f->{flags} & 1) }, timeout => 5);
$h->write($replay x 3000);
ok($h->closed(5), 'stream id replayed 3000 times: connection closed');
($g) = grep { $_->{type} == 7 } @{$h->{seen}};
is($g && $g->{code}, 1, '... GOAWAY PROTOCOL_ERROR');
is(scalar(grep { $_->{url} eq '/replay' } $up->log->@*), 1, '... one upstream request, the first');
served('stream id replay');

ok(kill(0, $tg->worker_pids), 'the worker is alive after every attack');
my $st = $tg->http(GET => '/local');
is($st->{status}, 200, 'HTTP/1.1 still served');
$tg->stop;
done_testing;
