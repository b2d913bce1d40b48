package Tollgate::WS;

# A minimal WebSocket client for tests (RFC 6455): handshake, masked text
# frames out, unmasked frames in. Blocking with deadlines; loopback only.
#   my $ws = Tollgate::WS->connect($port, '/ws', host => 'x', timeout => 5)
#       or die $Tollgate::WS::error;
#   $ws->send_text('hi');  my ($opcode, $payload) = $ws->recv(5);
#   $ws->{response} holds the handshake answer head; ->close

use v5.36;
use IO::Socket::INET;
use IO::Select;
use MIME::Base64 qw(encode_base64);
use Digest::SHA qw(sha1_base64);
use Time::HiRes qw(time);

our $error = '';

sub connect($class, $port, $path, %o) {
    my $timeout = $o{timeout} // 5;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => $timeout)
        or do { $error = "connect: $!"; return undef };
    my $key = encode_base64(join('', map { chr(int rand 256) } 1 .. 16), '');
    my $host = $o{host} // "127.0.0.1:$port";
    print $s "GET $path HTTP/1.1\r\nHost: $host\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n"
           . join('', map { "$_\r\n" } @{$o{headers} // []}) . "\r\n";
    my $self = bless { sock => $s, buf => '', sel => IO::Select->new($s) }, $class;
    my $deadline = time + $timeout;
    while ($self->{buf} !~ /\r\n\r\n/) {
        return $self->_fail('handshake timeout') unless $self->_fill($deadline);
    }
    $self->{buf} =~ s/^(.*?\r\n\r\n)//s;
    $self->{response} = $1;
    my ($status) = $self->{response} =~ m{^HTTP/1\.1 (\d+)};
    $self->{status} = $status;
    return $self->_fail("handshake answered $status") unless ($status // 0) == 101;
    my $want = sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=';
    return $self->_fail('bad Sec-WebSocket-Accept')
        unless $self->{response} =~ /^Sec-WebSocket-Accept:\s*\Q$want\E\r$/mi;
    return $self;
}

sub _fail($self, $msg) { $error = $msg; $self->{error} = $msg; return $self->{status} && $self->{status} != 101 ? $self : undef }

sub _fill($self, $deadline) {
    my $left = $deadline - time;
    return 0 if $left <= 0;
    return 0 unless $self->{sel}->can_read($left);
    my $n = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
    return $n ? 1 : 0;
}

sub send_frame($self, $opcode, $payload) {
    my $len = length $payload;
    my $head = chr(0x80 | $opcode);
    if ($len < 126) { $head .= chr(0x80 | $len) }
    elsif ($len < 65536) { $head .= chr(0x80 | 126) . pack('n', $len) }
    else { $head .= chr(0x80 | 127) . pack('Q>', $len) }
    my $mask = pack('N', int rand 0xffffffff);
    my $masked = $payload ^. substr($mask x (int($len / 4) + 1), 0, $len);
    my $data = $head . $mask . $masked;
    while (length $data) {
        my $w = syswrite($self->{sock}, $data);
        return 0 unless defined $w;
        substr($data, 0, $w, '');
    }
    return 1;
}

sub send_text($self, $text) { return $self->send_frame(1, $text) }

# Returns (opcode, payload) of the next frame, or () on timeout/close.
sub recv($self, $timeout = 5) {
    my $deadline = time + $timeout;
    while (1) {
        my $frame = $self->_take_frame;
        return @$frame if $frame;
        return () unless $self->_fill($deadline);
    }
}

sub _take_frame($self) {
    my $b = $self->{buf};
    return undef if length $b < 2;
    my ($b0, $b1) = unpack('CC', $b);
    my ($len, $off) = ($b1 & 0x7f, 2);
    if ($len == 126) {
        return undef if length $b < 4;
        ($len, $off) = (unpack('n', substr($b, 2, 2)), 4);
    } elsif ($len == 127) {
        return undef if length $b < 10;
        ($len, $off) = (unpack('Q>', substr($b, 2, 8)), 10);
    }
    return undef if length $b < $off + $len;
    substr($self->{buf}, 0, $off + $len, '');
    return [$b0 & 0x0f, substr($b, $off, $len)];
}

sub is_closed($self, $timeout = 2) {
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if $self->{sel}->can_read($deadline - time) && !sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
    }
    return 0;
}

sub close($self) { close($self->{sock}) if $self->{sock}; delete $self->{sock} }

1;
