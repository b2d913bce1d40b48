package Tollgate::H2;

# HTTP/2 helpers for the tests.
#
# A raw frame client for h2c with prior knowledge (a `listen ... http2`
# port), enough to write the frames attacks are made of by hand:
#   my $h = Tollgate::H2->connect($port);       # preface + empty SETTINGS sent
#   Tollgate::H2->connect($port, tls => 1, host => 'a.test')  # over TLS, ALPN h2
#   $h->headers(1, [':method' => 'GET', ...], end_stream => 1);
#   $h->rst(1, 8); $h->ping; $h->data(1, 'x'); $h->frame($type, $flags, $id, $payload)
#   my @f = $h->read_frames(timeout => 2);      # [{type, flags, stream, payload}]
#   $h->closed(timeout)                         # 1 when the server closed
# HEADERS are HPACK "literal without indexing, new name" fields, no
# Huffman: any name or value can be sent, uppercase and illegal ones too.
# Of the server's HPACK only :status is decoded (static table and literal,
# Huffman digits), which is what the tests look at; hpack_reps($block) lists
# a block's representations (how each field was encoded).
#
# And curl over either protocol, so one check runs over both:
#   curl_req($port, $path, proto => 'h1'|'h2', tls => 0|1, host => 'a.test',
#            method => 'POST', headers => [..], data => '...', args => [..])
#   -> {status, version, headers => {lc name => value}, body, rc}
#   both_protocols(sub ($proto) { ... })  runs the sub with 'h1' then 'h2'

use v5.36;
use Exporter qw(import);
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use File::Temp qw(tempfile);

our @EXPORT = qw(curl_req both_protocols h2_type_name);

use constant {
    DATA => 0, HEADERS => 1, PRIORITY => 2, RST_STREAM => 3, SETTINGS => 4,
    PUSH_PROMISE => 5, PING => 6, GOAWAY => 7, WINDOW_UPDATE => 8, CONTINUATION => 9,
};
my @NAMES = qw(DATA HEADERS PRIORITY RST_STREAM SETTINGS PUSH_PROMISE PING GOAWAY
               WINDOW_UPDATE CONTINUATION);

sub h2_type_name($t) { $NAMES[$t] // "type$t" }

sub connect($class, $port, %o) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 3) or return undef;
    if ($o{tls}) {
        require IO::Socket::SSL;
        IO::Socket::SSL->start_SSL($s, SSL_hostname => $o{host} // 'localhost',
                                   SSL_verify_mode => 0, SSL_alpn_protocols => ['h2'])
            or return undef;
    }
    $s->blocking(0);
    my $self = bless { sock => $s, buf => '', eof => 0 }, $class;
    $self->write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") unless $o{no_preface};
    $self->settings(@{$o{settings} // []}) unless $o{no_preface};
    return $self;
}

sub write($self, $bytes) {
    my $deadline = time + 5;
    while (length $bytes) {
        my $n = syswrite($self->{sock}, $bytes);
        if (defined $n) {
            substr($bytes, 0, $n, '');
            next;
        }
        return 0 unless $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
        return 0 if time > $deadline;
        IO::Select->new($self->{sock})->can_write(0.2);
    }
    return 1;
}

sub frame_bytes($type, $flags, $id, $payload) {
    my $len = length $payload;
    return pack('CnCCN', $len >> 16, $len & 0xffff, $type, $flags, $id & 0x7fffffff) . $payload;
}

sub frame($self, $type, $flags, $id, $payload = '') {
    return $self->write(frame_bytes($type, $flags, $id, $payload));
}

sub _int($v, $bits, $first = 0) {
    my $max = (1 << $bits) - 1;
    return chr($first | $v) if $v < $max;
    my $out = chr($first | $max);
    $v -= $max;
    while ($v >= 128) { $out .= chr(($v & 0x7f) | 0x80); $v >>= 7 }
    return $out . chr($v);
}

# HPACK: literal header field without indexing, new name (RFC 7541 6.2.2).
sub hpack(@fields) {
    my $out = '';
    while (my ($n, $v) = splice(@fields, 0, 2)) {
        $out .= "\x00" . _int(length $n, 7) . $n . _int(length $v, 7) . $v;
    }
    return $out;
}

# An HPACK integer with a `bits`-bit prefix (RFC 7541 5.1), taken off the
# front of $$pref (the reverse of _int).
sub _take_int($pref, $bits) {
    my $max = (1 << $bits) - 1;
    my $v = ord(substr($$pref, 0, 1, '')) & $max;
    return $v if $v < $max;
    for (my $m = 0; length $$pref; $m += 7) {
        my $b = ord(substr($$pref, 0, 1, ''));
        $v += ($b & 0x7f) << $m;
        return $v unless $b & 0x80;
    }
    return $v;
}

# The representations of an HPACK block (RFC 7541 6), in order: [indexed,
# INDEX], [indexed_name|new_name, KIND] with KIND incremental (added to the
# dynamic table), without or never (indexing), or [size_update, SIZE].
# Strings are skipped by their length (Huffman or not).
sub hpack_reps($p) {
    my $skip_string = sub { my $len = _take_int(\$p, 7); substr($p, 0, $len, '') };
    my @out;
    while (length $p) {
        my $b = ord $p;
        if ($b & 0x80) { push @out, [indexed => _take_int(\$p, 7)]; next }
        if (($b & 0xe0) == 0x20) { push @out, [size_update => _take_int(\$p, 5)]; next }
        my ($kind, $bits) = ($b & 0xc0) == 0x40 ? ('incremental', 6)
                          : ($b & 0xf0) == 0x10 ? ('never', 4) : ('without', 4);
        my $name_idx = _take_int(\$p, $bits);
        $skip_string->() if $name_idx == 0;
        $skip_string->();
        push @out, [$name_idx ? 'indexed_name' : 'new_name', $kind];
    }
    return @out;
}

# A header block: end_stream, end_headers (default 1), or split => N to
# send it as HEADERS + CONTINUATION frames of N bytes.
sub headers($self, $id, $fields, %o) {
    my $block = hpack(@$fields);
    my $es = $o{end_stream} ? 0x1 : 0;
    my $eh = ($o{end_headers} // 1) ? 0x4 : 0;
    if ($o{split}) {
        my @parts = unpack("(a$o{split})*", $block);
        my $first = shift @parts;
        my $ok = $self->frame(HEADERS, $es | (@parts ? 0 : $eh), $id, $first);
        while (@parts) {
            my $p = shift @parts;
            $ok &&= $self->frame(CONTINUATION, @parts ? 0 : $eh, $id, $p);
        }
        return $ok;
    }
    return $self->frame(HEADERS, $es | $eh, $id, $block);
}

sub request_fields($path = '/', %o) {
    return [':method' => $o{method} // 'GET', ':scheme' => 'http', ':path' => $path,
            ':authority' => $o{authority} // 'localhost', @{$o{extra} // []}];
}

sub data($self, $id, $bytes, %o) {
    return $self->frame(DATA, $o{end_stream} ? 1 : 0, $id, $bytes);
}
sub rst($self, $id, $code = 8) { $self->frame(RST_STREAM, 0, $id, pack('N', $code)) }
sub ping($self, $data = '12345678') { $self->frame(PING, 0, 0, $data) }
sub settings($self, @kv) {
    my $p = '';
    while (my ($k, $v) = splice(@kv, 0, 2)) { $p .= pack('nN', $k, $v) }
    return $self->frame(SETTINGS, 0, 0, $p);
}
sub settings_ack($self) { $self->frame(SETTINGS, 1, 0, '') }
sub window_update($self, $id, $inc) { $self->frame(WINDOW_UPDATE, 0, $id, pack('N', $inc)) }
sub priority($self, $id, $dep = 0, $weight = 16) {
    $self->frame(PRIORITY, 0, $id, pack('NC', $dep, $weight));
}

sub _fill($self, $deadline) {
    return 0 if $self->{eof};
    my $left = $deadline - time;
    return 0 if $left <= 0;
    my $pending = $self->{sock}->can('pending') && $self->{sock}->pending; # TLS, decrypted
    return 0 unless $pending || IO::Select->new($self->{sock})->can_read($left);
    my $n = sysread($self->{sock}, my $chunk, 65536);
    if (!defined $n) {
        return 1 if $!{EAGAIN} || $!{EINTR};
        $self->{eof} = 1; # reset
        return 0;
    }
    if ($n == 0) {
        $self->{eof} = 1;
        return 0;
    }
    $self->{buf} .= $chunk;
    $self->{bytes_in} += $n;
    return 1;
}

sub _take_frame($self) {
    return undef if length $self->{buf} < 9;
    my ($l1, $l2, $type, $flags, $id) = unpack('CnCCN', $self->{buf});
    my $len = ($l1 << 16) | $l2;
    return undef if length $self->{buf} < 9 + $len;
    my $payload = substr($self->{buf}, 9, $len);
    substr($self->{buf}, 0, 9 + $len, '');
    my $f = { type => $type, flags => $flags, stream => $id & 0x7fffffff, payload => $payload,
              name => h2_type_name($type) };
    $f->{code} = unpack('N', $payload) if $type == RST_STREAM;
    if ($type == GOAWAY) {
        my ($last, $code) = unpack('NN', $payload);
        ($f->{last_stream}, $f->{code}) = ($last & 0x7fffffff, $code);
    }
    $f->{status} = _status($payload, $flags) if $type == HEADERS;
    # answer what a client must, so the server is not kept waiting
    $self->settings_ack if $type == SETTINGS && !($flags & 1) && !$self->{no_auto_ack};
    return $f;
}

# The frames in a byte string that came some other way (a client program's
# output), as read_frames gives them, up to where the bytes stop making a
# whole frame.
sub parse_frames($bytes) {
    my $p = bless { buf => $bytes, no_auto_ack => 1 }, __PACKAGE__;
    my @out;
    while (my $f = $p->_take_frame) { push @out, $f }
    return @out;
}

# Frames until `until` returns true for one (it is included), the server
# closes, or `timeout` (2 s) passes.
sub read_frames($self, %o) {
    my $deadline = time + ($o{timeout} // 2);
    my @out;
    for (;;) {
        while (my $f = $self->_take_frame) {
            push @out, $f;
            return @out if $o{until} && $o{until}->($f);
        }
        last unless $self->_fill($deadline);
    }
    return @out;
}

# Reads until the server closes the connection: 1, or 0 after `timeout`.
# Frames read meanwhile are kept in $self->{seen}.
sub closed($self, $timeout = 5) {
    my $deadline = time + $timeout;
    while (!$self->{eof}) {
        push @{$self->{seen}}, $self->read_frames(timeout => $deadline - time);
        last if time >= $deadline;
    }
    push @{$self->{seen}}, $self->read_frames(timeout => 0.01) if $self->{eof};
    return $self->{eof} ? 1 : 0;
}

sub close($self) { CORE::close($self->{sock}) if $self->{sock}; $self->{sock} = undef }

# :status of a response header block (first field): static table entries
# 8-14, or a literal with name index 8 and a plain or Huffman value. Dynamic
# table size updates come first (the server's encoder keeps no table).
my %STATIC = (8 => 200, 9 => 204, 10 => 206, 11 => 304, 12 => 400, 13 => 404, 14 => 500);
sub _status($p, $flags) {
    if ($flags & 0x20) { substr($p, 0, 5, '') } # PRIORITY fields
    _take_int(\$p, 5) while length $p && (ord($p) & 0xe0) == 0x20; # 001xxxxx: a size update
    my $b = ord $p;
    return $STATIC{$b & 0x7f} if $b & 0x80;
    my $idx = ($b & 0xc0) == 0x40 ? $b & 0x3f : $b & 0x0f;
    return undef unless $idx == 8;
    my $vb = ord substr($p, 1, 1);
    my $len = $vb & 0x7f;
    my $v = substr($p, 2, $len);
    return $v unless $vb & 0x80;
    # Huffman digits (RFC 7541 appendix B): 0-2 are 5 bits, 3-9 6 bits
    my $bits = unpack('B*', $v);
    my $out = '';
    while (length($bits) >= 5 && length($out) < 3) {
        my $five = substr($bits, 0, 5);
        if ($five =~ /^000(0[01]|10)$/) { $out .= oct("0b$five"); substr($bits, 0, 5, ''); next }
        my $six = substr($bits, 0, 6);
        last unless length($six) == 6 && $six =~ /^011/;
        $out .= oct("0b$six") - 0x19 + 3;
        substr($bits, 0, 6, '');
    }
    return $out;
}

# ---------------------------------------------------------------- curl

sub curl_req($port, $path, %o) {
    my $proto = $o{proto} // 'h1';
    my $scheme = $o{tls} ? 'https' : 'http';
    my $host = $o{host} // 'localhost';
    my @cmd = ('curl', '-s', '-k', '-o', '-', '-D', '-', '--max-time', $o{timeout} // 10);
    push @cmd, $proto eq 'h2' ? ($o{tls} ? '--http2' : '--http2-prior-knowledge') : '--http1.1';
    push @cmd, '--resolve', "$host:$port:127.0.0.1";
    push @cmd, '-X', $o{method} if $o{method};
    my @h = @{$o{headers} // []};
    while (my ($n, $v) = splice(@h, 0, 2)) { push @cmd, '-H', "$n: $v" }
    my $tmp;
    if (defined $o{data}) {
        (my $fh, $tmp) = tempfile(UNLINK => 1);
        binmode $fh;
        print $fh $o{data};
        CORE::close $fh;
        push @cmd, '--data-binary', "\@$tmp";
    }
    push @cmd, @{$o{args} // []}, "$scheme://$host:$port$path";
    open(my $fh, '-|', @cmd) or die "curl: $!";
    binmode $fh;
    local $/;
    my $out = <$fh> // '';
    CORE::close $fh;
    my $rc = $? >> 8;
    my $res = { rc => $rc, headers => {}, body => '' };
    # skip interim responses (100 Continue)
    while ($out =~ s/\AHTTP\/(\S+) (\d+)[^\n]*\r?\n(.*?)\r?\n\r?\n//s) {
        my ($v, $st, $hb) = ($1, $2, $3);
        next if $st < 200 && $out =~ /\AHTTP\//;
        $res->{version} = $v;
        $res->{status} = $st;
        for my $line (split /\r?\n/, $hb) {
            my ($n, $val) = $line =~ /^([^:]+):\s*(.*)$/ or next;
            $res->{headers}{lc $n} = exists $res->{headers}{lc $n}
                ? "$res->{headers}{lc $n}, $val" : $val;
        }
        last;
    }
    $res->{body} = $out;
    return $res;
}

sub both_protocols($code) {
    $code->($_) for 'h1', 'h2';
}

1;
