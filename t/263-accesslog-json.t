# Every access-log format, every kind of answer: four server blocks (json,
# a log_format escape=json, timed (combined plus rt= and urt=: one function
# writes both, so its shape checks cover combined, which t/264 checks
# exactly), a log_format with the default escaping), each on a plain and a
# TLS port, get the same run: proxied, `return`, stats, 404, 429, 403, 400
# (bad header, bad request line), 413, 414, 431, 502, a WebSocket upgrade,
# HTTP/1.0 without Host, TLS, clients that go away mid-body, before the answer (499) and mid-response, and
# quotes, backslashes, control bytes and ill-formed UTF-8 in logged headers
# and the URI (raw: a 400; percent-encoded: in the decoded $uri). One line per request,
# in order; every json line must be strict UTF-8 and decode with JSON::PP
# to the expected fields; every text line must match its documented shape.
# Then an over-long line (cut values, whole structure) and the stats
# endpoint's escaping of a name with \, " and a line feed (JSON and
# Prometheus).
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Encode ();
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use Tollgate::WS;

my $pki = make_pki();
my $cert = $pki->{'a.test'};
my $up = node_upstream('echo');
my $ws = node_upstream('ws');
my $dead = free_port();   # nothing listens there: 502

my %fmt_port = (json => [1, 2], jl => [3, 4], timed => [5, 6], txt => [7, 8]);
sub pn($n) { $n == 1 ? '%%PORT%%' : "%%PORT$n%%" }
my $servers = join '', map { my ($p, $t) = @{$fmt_port{$_}}; <<"S" } sort keys %fmt_port;
server {
    listen @{[pn($p)]};
    listen @{[pn($t)]} tls;
    tls_certificate $cert->{cert};
    tls_certificate_key $cert->{key};
    access_log %%DIR%%/$_.log $_;
    client_max_body_size 1k;
    client_max_uri_length 2k;
    client_max_headers 20;
    location /p/ { proxy_pass $up->{addr}; }
    location /size/ { proxy_pass $up->{addr}; }
    location /delay/ { proxy_pass $up->{addr}; }
    location /ws { proxy_pass $ws->{addr}; }
    location = /ret { return 200 "returned"; }
    location = /stats { stats; }
    location = /rl { rate_limit rl; return 200 "rl"; }
    location = /deny { deny all; return 200 "no"; }
    location = /down { proxy_pass 127.0.0.1:$dead; }
}
S
my $tg = tg_start(<<"C", errors_ok => [qr/connect|refused|upstream/i]);
rate_limit_zone rl key=\$http_x_rl rate=1r/m burst=0 size=1m;
log_format jl escape=json '{"tag":"\$http_x_tag","addr":"\$remote_addr",'
    '"req":"\$request_method \$request_uri","status":\$status,"bytes":\$bytes_sent,'
    '"len":\$request_length,"rt":\$request_time,"up":"\$upstream_addr",'
    '"us":"\$upstream_status","urt":"\$upstream_response_time","ua":"\$http_user_agent",'
    '"ref":"\$http_referer","tls":"\$tls_protocol","host":"\$host","path":"\$uri","unset":"\$cookie_none"}';
log_format txt '\$remote_addr [\$status] "\$request_method \$request_uri" ua="\$http_user_agent" '
    'us=\$upstream_status tls=\$tls_protocol tag=\$http_x_tag path="\$uri"';
$servers
C

# what a client sends that must come out escaped
my $UA = "evil\"agent\\x \x80\xff caf\xc3\xa9 \xe2\x80\xa8 \xe2\x82 end\ttab";
my $UA_CHARS = "evil\"agent\\x \x{FFFD}\x{FFFD} caf\x{E9} \x{2028} \x{FFFD} end\ttab";
my $REF = "http://r.test/\"q\\";   # DEL or a control byte here would be a 400

# one request of each kind; `want` is the status, `uri` the request target
# (undef: not checked), `ua`: the User-Agent sent
my @cases = (
    {name => 'proxied', want => 200, uri => '/p/ok?a=1', ua => $UA, ref => $REF, upstream => 1},
    {name => 'return', want => 200, uri => '/ret'},
    {name => 'stats', want => 200, uri => '/stats'},
    {name => '404, no location', want => 404, uri => '/nowhere'},
    {name => 'rate_limit first', want => 200, uri => '/rl', rl => 1},
    {name => '429', want => 429, uri => '/rl', rl => 1},
    {name => '403 deny', want => 403, uri => '/deny'},
    {name => '400 control byte in a header', want => 400,
     raw => "GET /bad HTTP/1.1\r\nHost: x\r\nX-Ctl: a\x01b\r\n\r\n"},
    {name => '400 bad request line', want => 400, raw => "G\"T\x80 /\x01 HTTP/1.1\r\nHost: x\r\n\r\n"},
    {name => 'URI with raw bytes above 0x7F', want => 400, raw => "GET /p/\x80\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"},
    {name => 'URI with quote, backslash, ill-formed UTF-8 encoded', want => 200,
     raw_uri => "/p/q%80%ff%22%5c%c3%a9%e2%80%a8?x=\"\\", upstream => 1},
    {name => '413', want => 413, uri => '/p/big', raw => "POST /p/big HTTP/1.1\r\nHost: x\r\n"
         . "Content-Length: 2000\r\n\r\n" . ('a' x 2000)},
    {name => '414', want => 414, raw => 'GET /' . ('u' x 3000) . " HTTP/1.1\r\nHost: x\r\n\r\n"},
    {name => '431', want => 431, raw => "GET /p/many HTTP/1.1\r\nHost: x\r\n"
         . join('', map { "X-$_: v\r\n" } 1 .. 25) . "\r\n"},
    {name => '502 no upstream', want => 502, uri => '/down'},
    {name => 'HTTP/1.0 without Host', want => 200, uri => '/ret', raw => "GET /ret HTTP/1.0\r\n\r\n"},
    {name => 'WebSocket', want => 101, uri => '/ws?room=1', ws => 1, upstream => 1},
    {name => 'TLS', want => 200, uri => '/p/tls', tls => 1, upstream => 1},
    {name => 'client gone mid-body', want => 499, uri => '/p/upload', method => 'POST', upstream => 1,
     early => "POST /p/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"},
    {name => 'client gone before the answer', want => 499, uri => '/delay/3000', upstream => 1,
     early => "GET /delay/3000 HTTP/1.1\r\nHost: x\r\n\r\n"},
    {name => 'client gone mid-response', want => 200, uri => '/size/30000000', abort => 1,
     upstream => 1},
);

# the complete lines of a log so far
sub log_lines($f) {
    my $t = Tollgate::Test::_slurp($tg->dir . "/$f.log") // '';
    my @l = split /\n/, $t, -1;
    pop @l;   # after the last '\n': empty, or a line still being written
    return @l;
}

# raw bytes to a port, read until the answer is complete or the peer closes
sub send_raw($port, $bytes) {
    my $r = Tollgate::Test::raw_request($port, $bytes, timeout => 5);
    return $r;
}

sub run_case($fmt, $c, $i) {
    my ($plain, $tls) = map { $tg->port($_) } @{$fmt_port{$fmt}};
    my @h = ('X-Tag' => "$fmt-$i");
    push @h, 'User-Agent' => $c->{ua} if $c->{ua};
    push @h, 'Referer' => $c->{ref} if $c->{ref};
    push @h, 'X-RL' => $fmt if $c->{rl};
    my $status;
    if ($c->{raw}) {
        my $r = send_raw($plain, $c->{raw});
        ($status) = $r =~ m{^HTTP/1\.\d (\d{3})};
    } elsif ($c->{raw_uri}) {
        my $r = send_raw($plain, "GET $c->{raw_uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                 . "User-Agent: $UA\r\n\r\n");
        ($status) = $r =~ m{^HTTP/1\.\d (\d{3})};
    } elsif ($c->{ws}) {
        my $w = Tollgate::WS->connect($plain, $c->{uri}, headers => ["User-Agent: $UA", "X-Tag: $fmt-$i"]);
        $status = $w ? $w->{status} : 0;
        if ($w && $status == 101) {
            $w->recv;
            $w->send_text('x');
            $w->recv;
            $w->close;
        }
    } elsif ($c->{tls}) {
        my $r = curl_https($tls, $c->{uri}, cacert => $pki->{ca},
                           args => ['-H', "X-Tag: $fmt-$i", '-H', "User-Agent: tls-client"]);
        $status = $r->{status};
    } elsif ($c->{early}) {
        # the client leaves without an answer: only the log knows the status
        my $tag = "$fmt-$i";
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $plain, Timeout => 5);
        print $s $c->{early} =~ s/\r\n/\r\nX-Tag: $tag\r\n/r;
        # a request with all its body: leave once the upstream has it
        ok(wait_until(sub {
            my $log = eval { decode_json($up->http(GET => '/__log')->{body}) } // [];
            grep { ($_->{headers}{'x-tag'} // '') eq $tag } @$log;
        }, 5), "$fmt: $c->{name}: the upstream got the request") if ($c->{method} // '') ne 'POST';
        close $s;
        return;
    } elsif ($c->{abort}) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $plain, Timeout => 5);
        print $s "GET $c->{uri} HTTP/1.1\r\nHost: x\r\nX-Tag: $fmt-$i\r\n\r\n";
        my ($buf, $got) = ('', 0);
        my $sel = IO::Select->new($s);
        my $deadline = time + 5;
        while ($got < 200_000 && time < $deadline && $sel->can_read(1)) {
            my $n = sysread($s, $buf, 65536);
            last unless $n;
            $got += $n;
            ($status) = $buf =~ m{^HTTP/1\.\d (\d{3})} unless $status;
        }
        ok($got >= 200_000, "$fmt: aborting client read part of the body") or diag $got;
        close $s;   # with most of the 30 MB still to come
    } else {
        $status = $tg->http(GET => $c->{uri}, port => $fmt_port{$fmt}[0], headers => \@h)->{status};
    }
    is($status, $c->{want}, "$fmt: $c->{name}: status $c->{want}") if defined $c->{want};
}

# Run every case against every format; after each, wait for its line.
my %lines;
for my $fmt (sort keys %fmt_port) {
    for my $i (0 .. $#cases) {
        run_case($fmt, $cases[$i], $i);
        ok(wait_until(sub { scalar(my @l = log_lines($fmt)) >= $i + 1 }, 10),
           "$fmt: a line for $cases[$i]{name}") or last;
    }
    my @l = log_lines($fmt);
    is(scalar @l, scalar @cases, "$fmt: one line per request");
    $lines{$fmt} = \@l;
}

my $json = JSON::PP->new->utf8;   # bytes in, characters out; dies on any error
sub dec($line) { eval { $json->decode($line // '') } // {} }
sub decode_line($fmt, $i, $line) {
    my $strict = eval { Encode::decode('UTF-8', my $copy = $line, Encode::FB_CROAK); 1 };
    ok($strict, "$fmt line $i: strict UTF-8") or diag explain $line;
    unlike($line, qr/[\x00-\x1f\x7f]/, "$fmt line $i: no raw control byte");
    my $d = eval { $json->decode($line) };
    ok(ref $d eq 'HASH', "$fmt line $i ($cases[$i]{name}): decodes") or diag "$@: ", explain $line;
    return $d // {};
}

# --- json
my @KEYS = sort qw(time remote_addr method uri host protocol tls_protocol status bytes_sent
                   request_length request_time upstream_addr upstream_status
                   upstream_response_time referer user_agent);
for my $i (0 .. $#cases) {
    my $c = $cases[$i];
    my $d = decode_line('json', $i, $lines{json}[$i] // '');
    is_deeply([sort keys %$d], \@KEYS, "json line $i: the documented fields");
    my $want = $c->{want} // $c->{got};
    is($d->{status}, $want, "json line $i: status $want") if defined $want;
    is($d->{uri}, $c->{uri}, "json line $i: uri") if $c->{uri} && !$c->{raw};
    like($d->{time} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}$/, "json line $i: time");
    is($d->{remote_addr}, '127.0.0.1', "json line $i: remote_addr");
    ok(!ref $d->{$_} && ($d->{$_} // 0) =~ /^\d+(\.\d+)?$/, "json line $i: $_ is a number")
        for qw(status bytes_sent request_length request_time);
    if ($c->{upstream} && ($want // 0) < 400) {
        like($d->{upstream_addr} // '', qr/^127\.0\.0\.1:\d+$/, "json line $i: upstream_addr");
        like($d->{upstream_status} // '', qr/^\d{3}$/, "json line $i: upstream_status");
    } elsif (!$c->{upstream} && ($want // 0) != 502) {
        ok(!defined $d->{upstream_addr} && !defined $d->{upstream_status}
           && !defined $d->{upstream_response_time}, "json line $i: no upstream: nulls");
    }
    is($d->{tls_protocol}, $c->{tls} ? 'TLSv1.3' : undef, "json line $i: tls_protocol");
    is($d->{user_agent}, $UA_CHARS, "json line $i: user agent escaped, U+FFFD for bad bytes")
        if $c->{ua};
    is($d->{referer}, $REF, "json line $i: referer with quote and backslash")
        if $c->{ref};
}
my %by = map { $cases[$_]{name} => $_ } 0 .. $#cases;
my $d = dec($lines{json}[$by{'502 no upstream'}]);
is($d->{upstream_status}, '502', 'json: 502 has its attempt in upstream_status');
$d = dec($lines{json}[$by{'HTTP/1.0 without Host'}]);
is($d->{protocol}, 'HTTP/1.0', 'json: HTTP/1.0');
$d = dec($lines{json}[$by{'client gone mid-response'}]);
ok($d->{bytes_sent} >= 200_000 && $d->{bytes_sent} < 30_000_000, 'json: aborted: part of the body sent')
    or diag $d->{bytes_sent};
$d = dec($lines{json}[$by{'URI with quote, backslash, ill-formed UTF-8 encoded'}]);
is($d->{uri}, '/p/q%80%ff%22%5c%c3%a9%e2%80%a8?x="\\', 'json: the request target as sent, quote and backslash escaped');
$d = dec($lines{jl}[$by{'URI with quote, backslash, ill-formed UTF-8 encoded'}]);
is($d->{path}, "/p/q\x{FFFD}\x{FFFD}\"\\\x{E9}\x{2028}", 'jl: the decoded $uri: ill-formed bytes U+FFFD');
$d = dec($lines{json}[$by{'400 bad request line'}]);
ok(!defined $d->{uri} || $d->{uri} =~ /^[^\x00-\x1f]*$/, 'json: bad request line logged as valid JSON');

# --- log_format escape=json
for my $i (0 .. $#cases) {
    my $c = $cases[$i];
    my $d = decode_line('jl', $i, $lines{jl}[$i] // '');
    my $want = $c->{want} // $c->{got};
    is($d->{status}, $want, "jl line $i: status $want") if defined $want;
    is($d->{unset}, '', "jl line $i: an unset variable is empty");
    is($d->{tag}, "jl-$i", "jl line $i: \$http_x_tag") unless $c->{raw} || $c->{raw_uri} || $c->{early};
    is($d->{req}, ($c->{method} // 'GET') . " $c->{uri}", "jl line $i: method and URI") if $c->{uri} && !$c->{raw};
    is($d->{tls}, $c->{tls} ? 'TLSv1.3' : '', "jl line $i: \$tls_protocol");
    is($d->{ua}, $UA_CHARS, "jl line $i: user agent escaped") if $c->{ua};
    is($d->{us}, '', "jl line $i: no upstream: \$upstream_status empty")
        if !$c->{upstream} && ($want // 0) != 502;
}

# --- timed: its documented shape, field by field (combined, then rt= urt=)
my $q = qr/"(?:[^"\\\x00-\x1f\x7f-\xff]|\\x[0-9A-F]{2})*"/;   # a quoted, escaped field
for my $i (0 .. $#cases) {
    my $c = $cases[$i];
    my $line = $lines{timed}[$i] // '';
    like($line, qr{^(?:\d+\.\d+\.\d+\.\d+|-) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] $q \d{3} \d+ $q $q rt=\d+\.\d{3} urt=(?:\d+\.\d{3}|-)$},
         "timed line $i ($c->{name}): documented shape") or diag explain $line;
    my $want = $c->{want} // $c->{got};
    like($line, qr{\] "[^"]*" $want }, "timed line $i: status") if defined $want;
}
like($lines{timed}[0], qr{"GET /p/ok\?a=1 HTTP/1\.1" 200 \d+ "http://r\.test/\\x22q\\x5C" "evil\\x22agent\\x5Cx \\x80\\xFF caf\\xC3\\xA9 \\xE2\\x80\\xA8 \\xE2\\x82 end\\x09tab" rt=},
     'timed: quotes, backslashes, controls and non-ASCII as \xHH');

# --- log_format with the default escaping
for my $i (0 .. $#cases) {
    my $c = $cases[$i];
    my $line = $lines{txt}[$i] // '';
    like($line, qr{^\S+ \[(\d{3}|-)\] "[^"]*" ua="[^"]*" us=\S+(?:, \S+)* tls=\S+ tag=\S+ path="[^"]*"$},
         "txt line $i ($c->{name}): its shape") or diag explain $line;
    unlike($line, qr/[\x00-\x1f\x7f-\xff]/, "txt line $i: printable ASCII only");
}

# --- an over-long line: values are cut, the structure stays
{
    my $big = ('"' x 3000) . ('b' x 3000);   # 9 KB once escaped
    my $r = $tg->http(GET => '/p/long', port => $fmt_port{json}[0],
                      headers => ['User-Agent' => $big, 'Referer' => "\x80" x 4000]);
    is($r->{status}, 200, 'long headers proxied');
    ok(wait_until(sub { scalar(my @l = log_lines('json')) > @cases }, 10), 'its json line');
    my $line = (log_lines('json'))[-1];
    ok(length($line) < 8192, 'json: cut to fit 8 KB') or diag length $line;
    my $d = eval { $json->decode($line) } // {};
    is($d->{uri}, '/p/long', 'json: a cut line still decodes, short values whole');
    is($d->{status}, 200, 'json: ... status after the cut values');
    ok(length($d->{user_agent} // '') > 500 && $d->{user_agent} =~ /^"+b*$/,
       'json: user agent cut between escapes');
    ok(length($d->{referer} // '') > 500 && $d->{referer} =~ /^\x{FFFD}+$/, 'json: referer cut too');
    $tg->http(GET => '/p/long', port => $fmt_port{timed}[0], headers => ['User-Agent' => $big]);
    ok(wait_until(sub { scalar(my @l = log_lines('timed')) > @cases }, 10), 'its timed line');
    $line = (log_lines('timed'))[-1];
    like($line, qr{" 200 \d+ "-" "(?:\\x22)+b*" rt=\d+\.\d{3} urt=\d+\.\d{3}$}, 'timed: cut, shape kept');
    ok(length($line) < 8192, 'timed: within 8 KB');
}
$tg->stop;

# --- config limits of log_format
like(tg_conf_error("log_format big '" . ('x' x 5000) . "\$status';"),
     qr/"log_format": more than 4096 bytes of literal text/, 'log_format: literal text bounded');
like(tg_conf_error("log_format many '" . ('$status' x 65) . "';"),
     qr/"log_format": more than 64 variables/, 'log_format: at most 64 variables');

# --- the stats endpoint: a name with \, " and a line feed
{
    my $t = tg_start(<<'C' =~ s/BAD/\x80/r);   # a byte that is not UTF-8
server {
    listen %%PORT%%;
    location = /stats { stats; }
    location /odd/ { stats_name "we\"ird\\na\nme \x\ttabBAD"; return 200 "odd"; }
}
C
    is($t->http(GET => '/odd/x')->{status}, 200, 'a request counted under the odd name');
    my $name = "we\"ird\\na\nme \\x\ttab\x{FFFD}";   # the raw 0x80 byte: U+FFFD
    my $s;
    ok(wait_until(sub {
        my $r = $t->http(GET => '/stats');
        $s = eval { $json->decode($r->{body}) };
        $s && grep { exists $_->{locations}{$name} } values %{$s->{servers}};
    }, 10), 'stats JSON decodes and has the name as written');
    my $p = $t->http(GET => '/stats?format=prometheus')->{body};
    like($p, qr/location="we\\"ird\\\\na\\nme \\\\x\ttab\xef\xbf\xbd"/,
         'Prometheus: \\\\, \\" and \\n escaped, a tab as is, a bad byte as U+FFFD');
    unlike($p, qr/location="[^"\n]*\n/, 'Prometheus: no raw line feed inside a label');
    $t->stop;
}
done_testing;
