# The buffered access log (access_log ... buffer= flush=), log_format, and
# the variables $upstream_status (one status per attempt), $bytes_sent,
# $request_length and $tls_protocol in log lines.
#
# When buffered lines must reach the file: after flush= and not before, when
# the buffer is full, at once for a line longer than the buffer, on USR1, on
# a graceful (TERM), fast (QUIT) stop and on reload; two workers under load
# never write partial or interleaved lines.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;

my $slurp = \&Tollgate::Test::_slurp;
sub lines($file) { return grep { length } split /\n/, $slurp->($file) }

# ---- config errors -------------------------------------------------------
like(tg_conf_error("server { listen 1; access_log %%DIR%%/a.log nosuch; }"),
     qr/^\S+:1: invalid log format "nosuch"/m, 'unknown format');
like(tg_conf_error("server { listen 1; access_log %%DIR%%/a.log buffer=0; }"),
     qr/^\S+:1: "access_log": invalid buffer size "0"/m, 'buffer=0');
like(tg_conf_error("server { listen 1; access_log %%DIR%%/a.log flush=soon; }"),
     qr/^\S+:1: "access_log": invalid flush time "soon"/m, 'bad flush time');
like(tg_conf_error("server { listen 1; access_log %%DIR%%/a.log json gzip; }"),
     qr/^\S+:1: "access_log": unexpected "gzip"/m, 'unknown parameter');
like(tg_conf_error("access_log %%DIR%%/a.log buffer=4k;\nserver { listen 1;\n"
                   . "location / { access_log %%DIR%%/a.log buffer=8k; } }"),
     qr/^\S+:3: "access_log": "\S+a\.log" is already used with other buffer= or flush= values/m,
     'one buffer per file');
like(tg_conf_error("log_format json '\$status';"), qr/^\S+:1: "log_format": "json" is a built-in format/m,
     'built-in name');
like(tg_conf_error("log_format a '\$status';\nlog_format a '\$uri';"),
     qr/^\S+:2: "log_format": duplicate format "a"/m, 'duplicate format');
like(tg_conf_error("log_format a '\$nosuch';"), qr/^\S+:1: unknown variable "\$nosuch"/m,
     'unknown variable in a format');
like(tg_conf_error("log_format a escape=xml '\$uri';"), qr/^\S+:1: "log_format": invalid escape "xml"/m,
     'bad escape');
like(tg_conf_error("server { listen 1; access_log %%DIR%%/a.log later; }\nlog_format later '\$uri';"),
     qr/^\S+:1: invalid log format "later"/m, 'a format is defined before its use');

# ---- flush time, full buffer, long lines, USR1, reload, TERM --------------
my $conf = <<'C';
log_format short '$request_uri $status';
server {
    listen %%PORT%%;
    location /timed/ { access_log %%DIR%%/timed.log short buffer=64k flush=1s; return 200 "t"; }
    location /full/  { access_log %%DIR%%/full.log short buffer=1k; return 200 "f"; }
}
C
my $tg = tg_start($conf);
my $timed = $tg->dir . '/timed.log';
my $full = $tg->dir . '/full.log';

my $t0 = time;
is($tg->http(GET => '/timed/1')->{status}, 200, 'request to a buffered log');
is(-s $timed, 0, 'the line is buffered: the file is still empty');
ok(wait_until(sub { -s $timed }, 5, 0.02), 'the line is written after flush=');
my $waited = time - $t0;
cmp_ok($waited, '>=', 0.9, "not before flush=1s (after ${\ sprintf '%.2f', $waited} s)");
cmp_ok($waited, '<', 2.5, 'but soon after it');
is_deeply([lines($timed)], ['/timed/1 200'], 'the whole line');

# "/full/NN?" + padding + " 200\n" = 100 bytes: ten lines fill 1000 of 1024
my $uri = sub ($n) { my $u = sprintf('/full/%02d?', $n); $u . ('p' x (95 - length $u)) };
is(length($uri->(1) . " 200\n"), 100, 'test lines are 100 bytes');
$tg->http(GET => $uri->($_)) for 1 .. 10;
is(-s $full, 0, 'ten lines (1000 bytes) stay in a 1k buffer');
$tg->http(GET => $uri->(11));
is(-s $full, 1000, 'the eleventh does not fit: the ten are written in one go');
is_deeply([lines($full)], [map { $uri->($_) . ' 200' } 1 .. 10], 'whole lines, in order');
my $long = '/full/long?' . ('L' x 2000);
$tg->http(GET => $long);
my @l = lines($full);
is(scalar @l, 12, 'a line longer than the buffer is written at once');
is($l[10], $uri->(11) . ' 200', 'after the line buffered before it');
is($l[11], "$long 200", 'whole');

$tg->http(GET => '/full/usr1');
is(scalar(lines($full)), 12, 'buffered again');
$tg->signal('USR1');
ok(wait_until(sub { grep { $_ eq '/full/usr1 200' } lines($full) }, 5), 'USR1 writes out the buffer');

$tg->http(GET => '/full/reload');
my $off = $tg->reload($conf);
ok($tg->wait_log(qr/reloaded: generation/, 10, $off), 'reloaded');
ok(wait_until(sub { grep { $_ eq '/full/reload 200' } lines($full) }, 5),
   'the old worker writes out its buffer when it exits');

ok(wait_until(sub { $tg->http(GET => '/full/term')->{status} == 200 }, 5), 'new worker serves');
is((grep { $_ eq '/full/term 200' } lines($full)), 0, 'buffered');
$tg->stop;
is((grep { $_ eq '/full/term 200' } lines($full)), 1, 'TERM writes out the buffer');

# ---- fast stop ----------------------------------------------------------
$tg = tg_start(<<'C');
server { listen %%PORT%%; access_log %%DIR%%/q.log buffer=64k; return 200 "q"; }
C
$tg->http(GET => '/quit');
is(-s $tg->dir . '/q.log', 0, 'buffered');
$tg->signal('QUIT');
ok(wait_until(sub { $slurp->($tg->dir . '/q.log') =~ m{"GET /quit HTTP/1\.1" 200 } }, 5),
   'QUIT (fast stop): the buffer is written too');
$tg->stop;

# ---- two workers under load: no partial or interleaved line --------------
$tg = tg_start(<<'C');
workers 2;
log_format load 'BEGIN $request_uri $status $bytes_sent END';
server {
    listen %%PORT%%;
    access_log %%DIR%%/load.log load buffer=4k flush=100ms;
    return 200 "ok";
}
C
my $n = 5000;
my $port = $tg->port;
my $cfg = $tg->dir . '/curl.cfg';
open(my $fh, '>', $cfg) or die $!;
srand(262);
for my $i (1 .. $n) {
    # lengths vary so that lines straddle the 4k buffer boundaries
    printf $fh "url = \"http://127.0.0.1:%d/load/%d?%s\"\noutput = /dev/null\n", $port, $i, 'x' x int(rand 300);
}
close $fh;
my $curl = system('curl', '-s', '--no-progress-meter', '--max-time', '60', '--parallel', '--parallel-max', '16', '-K', $cfg);
is($curl, 0, "curl sent $n requests on 16 connections");
$tg->stop;
my @lines = lines($tg->dir . '/load.log');
is(scalar @lines, $n, "$n lines");
my (%seen, $bad);
for (@lines) {
    if (m{^BEGIN /load/(\d+)\?x* 200 \d+ END$}) { $seen{$1}++ } else { $bad++ }
}
is($bad // 0, 0, 'every line parses');
is(scalar(grep { ($seen{$_} // 0) == 1 } 1 .. $n), $n, 'every request once');

# ---- the variables -------------------------------------------------------
my $pki = make_pki();
my $up = node_upstream('echo');
my ($dead1, $dead2) = (free_port(), free_port());
my $cert = $pki->{'a.test'};
$tg = tg_start(<<"C", errors_ok => [qr/connect\(\) to .* failed|Connection refused/]);
log_format vars '\$request_uri s=\$status us=\$upstream_status bs=\$bytes_sent rl=\$request_length tls=\$tls_protocol';
upstream retry { server 127.0.0.1:$dead1; server $up->{addr} backup; }
upstream dead { server 127.0.0.1:$dead1; server 127.0.0.1:$dead2; }
server {
    listen %%PORT%%;
    listen %%PORT2%% tls;
    server_name a.test;
    tls_certificate $cert->{cert};
    tls_certificate_key $cert->{key};
    access_log %%DIR%%/vars.log vars;
    location /retry/ { proxy_pass retry; }
    location /dead/ { proxy_pass dead; access_log %%DIR%%/vars.json json; }
    location /up/ { proxy_pass $up->{addr}; }
    location /local/ { return 201 "local"; }
}
C
my $vlog = $tg->dir . '/vars.log';
my $req = "GET /local/len HTTP/1.1\r\nHost: a.test\r\nX-Pad: 12345\r\nConnection: close\r\n\r\n";
my $resp = $tg->raw($req);
my $body = 'b' x 100000;
my $post = "POST /up/post HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
like($tg->raw([$post, substr($body, 0, 1000), substr($body, 1000)]), qr{^HTTP/1\.1 200 }, 'POST with a body');
like($resp, qr{^HTTP/1\.1 201 }, 'local answer');
is($tg->http(GET => '/up/x')->{status}, 200, 'proxied');
is($tg->http(GET => '/retry/r')->{status}, 200, 'retried on the backup');
is($tg->http(GET => '/dead/d')->{status}, 502, 'both servers down');
my $r = curl_https($tg->port(2), '/up/tls', cacert => $pki->{ca});
is($r->{status}, 200, 'over TLS');
ok(wait_until(sub { grep { m{^/up/tls } } lines($vlog) }, 5), 'unbuffered lines are there at once');
my %v = map { m{^(\S+) (.*)$} ? ($1 => $2) : () } lines($vlog);
my $len = length $resp;
my $rlen = length $req;
is($v{'/local/len'}, "s=201 us=- bs=$len rl=$rlen tls=-",
   '$bytes_sent and $request_length count the bytes on the wire; no upstream, no TLS: "-"');
is($v{'/up/post'} =~ /rl=(\d+)/ && $1, length($post) + 100000, '$request_length counts the body');
like($v{'/up/x'}, qr/^s=200 us=200 bs=\d+ rl=\d+ tls=-$/, 'one attempt');
like($v{'/retry/r'}, qr/^s=200 us=502, 200 /, 'a refused attempt then a good one: "502, 200"');
like($v{'/up/tls'}, qr/ tls=TLSv1\.[23]$/, '$tls_protocol on the TLS listener');
my ($j) = map { decode_json($_) } lines($tg->dir . '/vars.json');
is($j->{upstream_status}, '502, 502', 'json: two refused attempts, upstream_status as $upstream_status');
is($j->{status}, 502, 'json: status');
is($j->{tls_protocol}, undef, 'json: tls_protocol null on plain HTTP');
$tg->stop;

done_testing;
