# The combined format exactly as nginx and Apache write it, and the variables
# behind it and around it: $remote_user, $request, $body_bytes_sent,
# $time_local, $time_iso8601, $msec, $connection, $connection_requests,
# $server_protocol. The gateway runs with TZ=XYZ-5:30 so that the offsets
# (+0530, +05:30) show they come from local time with minutes.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use MIME::Base64 qw(encode_base64);
use POSIX qw(strftime);
use Time::Local qw(timegm);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C", env => {TZ => 'XYZ-5:30'});
log_format vars '\$connection \$connection_requests \$server_protocol "\$request" '
                'user=\$remote_user body=\$body_bytes_sent sent=\$bytes_sent '
                'msec=\$msec local=[\$time_local] iso=\$time_iso8601 uri=\$request_uri';
server {
    listen %%PORT%%;
    access_log %%DIR%%/combined.log combined;
    location / { proxy_pass $up->{addr}; }
    location = /ret { return 200 "twelve bytes"; }
}
server {
    listen %%PORT2%%;
    access_log %%DIR%%/vars.log vars;
    location / { proxy_pass $up->{addr}; }
    location = /ret { return 200 "\$server_protocol \$connection_requests"; }
}
C

sub log_lines($name, $n) {
    my $f = $tg->dir . "/$name.log";
    wait_until(sub { my @l = split /\n/, Tollgate::Test::_slurp($f); @l >= $n }, 5);
    return split /\n/, Tollgate::Test::_slurp($f);
}

# --- combined, exactly
my $auth = 'Basic ' . encode_base64('alice:s3cr:et', '');
my $r = $tg->http(GET => '/size/1234?x=1', headers => ['Authorization' => $auth,
                  'Referer' => 'http://ref.test/', 'User-Agent' => 'ua/1.0']);
is($r->{status}, 200, 'proxied');
$tg->http(GET => '/ret');
$tg->raw("GET http://abs.test/ret?q=%41 HTTP/1.1\r\nHost: abs.test\r\nConnection: close\r\n\r\n");
$tg->raw("GET /ret HTTP/1.0\r\n\r\n");
$tg->http(GET => '/ret', headers => ['Authorization' => 'Basic !!notbase64']);
$tg->raw("GET /bad HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n");
my @c = log_lines('combined', 6);
my $t = qr{\[\d\d/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d\d:\d\d:\d\d \+0530\]};
like($c[0], qr{^127\.0\.0\.1 - alice $t "GET /size/1234\?x=1 HTTP/1\.1" 200 1234 "http://ref\.test/" "ua/1\.0"$},
     'combined: user from Basic auth, local time, request line, body bytes only, referer, agent')
    or diag $c[0];
like($c[1], qr{^127\.0\.0\.1 - - $t "GET /ret HTTP/1\.1" 200 12 "-" "-"$}, 'combined: a local answer, no user: -')
    or diag $c[1];
like($c[2], qr{^127\.0\.0\.1 - - $t "GET http://abs\.test/ret\?q=%41 HTTP/1\.1" 200 12 "-" "-"$},
     'combined: $request is the line as received (absolute-form, not decoded)') or diag $c[2];
like($c[3], qr{"GET /ret HTTP/1\.0" 200 12 }, 'combined: HTTP/1.0 request line') or diag $c[3];
like($c[4], qr{^127\.0\.0\.1 - - $t "GET /ret HTTP/1\.1" 200 12 }, 'combined: credentials that do not decode: -')
    or diag $c[4];
like($c[5], qr{^127\.0\.0\.1 - - $t "GET /bad HTTP/1\.1" 400 \d+ "-" "-"$},
     'combined: a request refused for a bad header keeps its request line') or diag $c[5];

# --- the variables
my $ka = $tg->keepalive(port => 2);
my @bodies = map { $ka->request(GET => '/ret')->{body} } 1 .. 3;
is_deeply(\@bodies, ['HTTP/1.1 1', 'HTTP/1.1 2', 'HTTP/1.1 3'],
          '$connection_requests counts this connection\'s requests, this one included');
$ka->close;
is($tg->http(GET => '/ret', port => 2)->{body}, 'HTTP/1.1 1', 'a new connection starts at 1');
my $raw = Tollgate::Test::raw_request($tg->port(2), "GET /ret HTTP/1.0\r\n\r\n");
like($raw, qr{\r\n\r\nHTTP/1\.0 1$}, '$server_protocol: HTTP/1.0 for a 1.0 request');
my $before = time;
$r = $tg->http(GET => '/size/500', port => 2, headers => ['Authorization' => 'Basic ' . encode_base64('bob:x', '')]);
my $after = time;
my @v = log_lines('vars', 6);
my @conn = map { /^(\d+) / ? $1 : -1 } @v;
is_deeply([@conn[0 .. 2]], [($conn[0]) x 3], 'three keep-alive requests: one $connection');
ok($conn[3] > $conn[0] && $conn[4] > $conn[3] && $conn[5] > $conn[4],
   '$connection: a later connection has a larger serial') or diag "@conn";
my $last = $v[5];
like($last, qr{^\d+ 1 HTTP/1\.1 "GET /size/500 HTTP/1\.1" user=bob body=500 sent=(\d+) }, 'log_format line')
    or diag $last;
my ($sent) = $last =~ /sent=(\d+)/;
is($sent, length($r->{raw}), '$bytes_sent: header and body as on the wire');
my ($msec) = $last =~ /msec=(\d+\.\d{3}) /;
# libev's time (ev_now) is its monotonic clock plus an offset to the wall
# clock that it resynchronises about once a second: under load (the ASan
# suite) it was seen up to a second behind this process's time()
ok(defined $msec && $msec >= int($before) - 1 && $msec <= $after + 1, '$msec: seconds with milliseconds')
    or diag "$last (before $before, after $after)";
my ($local) = $last =~ /local=\[([^\]]+)\]/;
my ($iso) = $last =~ /iso=(\S+)/;
like($iso // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30$/, '$time_iso8601: local time, offset with a colon');
like($local // '', qr{^\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0530$}, '$time_local: nginx\'s form');
# both name the second of $msec, in UTC+05:30
my $want_iso = strftime('%Y-%m-%dT%H:%M:%S+05:30', gmtime(int($msec // 0) + 5.5 * 3600));
my $want_local = strftime('%d/%b/%Y:%H:%M:%S +0530', gmtime(int($msec // 0) + 5.5 * 3600));
is($iso, $want_iso, '$time_iso8601 is the second of $msec');
is($local, $want_local, '$time_local is the same second');

$tg->stop;
done_testing;
