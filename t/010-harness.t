# The test library itself (t/lib/Tollgate/Test.pm) and the Node upstreams,
# without the real gateway: free ports, the echo/hang/garbage upstreams, the
# HTTP client, process cleanup (guards, END, signals, parent death), and
# tg_start/tg_conf_* driven against a small fake gateway written below.
use v5.36;
use Test::More;
use Test2::API qw(intercept);
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use JSON::PP qw(decode_json);
use File::Temp qw(tempdir);
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT http_request repo_root);

# True while $pid exists and is not a zombie.
sub alive($pid) {
    open(my $fh, '<', "/proc/$pid/stat") or return 0;
    my $stat = <$fh> // return 0;
    return $stat =~ /^\d+ \(.*\) ([^ZX]) /s ? 1 : 0;
}

sub listening($port) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 1);
    return $s ? 1 : 0;
}

# ------------------------------------------------------------------ ports

subtest 'free_port' => sub {
    my @ports = map { free_port() } 1 .. 20;
    my %seen;
    $seen{$_}++ for @ports;
    is(scalar(keys %seen), 20, '20 distinct ports');
    ok(!(grep { $_ < 1024 || $_ > 65535 } @ports), 'all in the unprivileged range');
    my @bound = grep {
        IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $_, Listen => 1, Proto => 'tcp')
    } @ports;
    is(scalar(@bound), 20, 'each can be bound on 127.0.0.1');
};

is(length(body_pattern(100_000)), 100_000, 'body_pattern length');
is(body_pattern(30), 'abcdefghijklmnopqrstuvwxyzabcd', 'body_pattern content');
is(body_pattern(3, 25), 'zab', 'body_pattern offset');

# ------------------------------------------------------------------ echo upstream

my $up = node_upstream('echo', env => { NAME => 'first' });
like($up->{addr}, qr/^127\.0\.0\.1:\d+$/, 'addr is 127.0.0.1:PORT');
is($up->{addr}, "127.0.0.1:$up->{port}", 'addr matches port');
ok(alive($up->{pid}), 'upstream process runs');

subtest 'echo answers a plain socket request' => sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $up->{port}, Timeout => 5)
        or die "connect: $!";
    my $body = "ping body \x{e9}";
    utf8::encode($body);
    print $s "POST /hello?x=1 HTTP/1.1\r\nHost: example.test\r\nX-Test: yes\r\nX-Test: again\r\n"
           . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
    $s->timeout(5);
    local $/;
    my $resp = <$s>;
    like($resp, qr{^HTTP/1\.1 200 OK\r\n}, 'status line');
    like($resp, qr{\r\nContent-Type: application/json\r\n}i, 'JSON content type');
    my ($json) = $resp =~ /\r\n\r\n(.*)\z/s;
    my $d = decode_json($json);
    is($d->{method}, 'POST', 'method');
    is($d->{url}, '/hello?x=1', 'url');
    is($d->{httpVersion}, '1.1', 'httpVersion');
    is($d->{headers}{host}, 'example.test', 'host header');
    is($d->{headers}{'x-test'}, 'yes, again', 'repeated header joined by Node');
    my @raw = @{$d->{rawHeaders}};
    is_deeply([map { $raw[$_ * 2 + 1] } grep { $raw[$_ * 2] eq 'X-Test' } 0 .. $#raw / 2],
              ['yes', 'again'], 'rawHeaders keep order and case');
    is($d->{body}, "ping body \x{e9}", 'body (utf8)');
    is($d->{bodyLength}, length($body), 'bodyLength in bytes');
    is($d->{bodySha256}, sha256_hex($body), 'bodySha256');
    is($d->{name}, 'first', 'NAME env');
    ok($d->{remotePort} > 0, 'remotePort');
};

subtest '/__log records what the upstream received' => sub {
    my $log = $up->log;
    is(scalar(@$log), 1, 'one request recorded');
    is($log->[0]{url}, '/hello?x=1', 'its url');
    is($log->[0]{method}, 'POST', 'its method');
    is($log->[0]{headers}{'x-test'}, 'yes, again', 'its headers');
    ok($log->[0]{complete}, 'complete');
    ok($up->clear_log, 'DELETE /__log');
    is_deeply($up->log, [], 'log cleared');
    $up->http(GET => '/a');
    $up->http(PUT => '/b', body => 'xyz');
    is_deeply([map { "$_->{method} $_->{url} $_->{body}" } @{$up->log}], ['GET /a ', 'PUT /b xyz'],
              'later requests recorded in order, /__log itself is not');
    $up->clear_log;
};

subtest 'HTTP client against echo special paths' => sub {
    my $r = $up->http(GET => '/size/100000');
    is($r->{status}, 200, '/size status');
    is($r->{headers}{'content-length'}, 100000, '/size Content-Length');
    ok($r->{body} eq body_pattern(100_000), '/size body is the pattern');
    ok($r->{closed}, 'server closed after Connection: close');
    is($r->{extra}, '', 'nothing after the response');

    $r = $up->http(GET => '/chunked/1000/5');
    is($r->{headers}{'transfer-encoding'}, 'chunked', '/chunked is chunked');
    is_deeply($r->{chunks}, [200, 200, 200, 200, 200], 'five chunks of 200');
    ok($r->{body} eq body_pattern(1000), '/chunked body decoded');
    like($r->{raw}, qr/\r\n\r\nc8\r\n/, 'raw keeps the chunk framing');

    $r = $up->http(GET => '/stream/300000');
    ok(!defined $r->{headers}{'content-length'}, '/stream has no Content-Length');
    ok($r->{body} eq body_pattern(300_000), '/stream body');

    $r = $up->http(GET => '/stream/5000?close=1');
    ok($r->{read_to_close}, '/stream?close=1 is read to close');
    ok(!defined $r->{headers}{'transfer-encoding'}, 'not chunked');
    ok($r->{body} eq body_pattern(5000), 'read-to-close body');

    $r = $up->http(GET => '/headers?x-a=1&x-a=2&x-b=three');
    is($r->{headers}{'x-a'}, '1, 2', 'repeated response header joined');
    is_deeply([grep { lc $_->[0] eq 'x-a' } @{$r->{header_list}}], [['x-a', '1'], ['x-a', '2']],
              'header_list keeps both');
    is($r->{headers}{'x-b'}, 'three', 'other header');

    is($up->http(GET => '/status/404')->{status}, 404, '/status/404');
    $r = $up->http(POST => '/status/204', body => 'x');
    is($r->{status}, 204, '/status/204');
    is($r->{body}, '', '204 has no body');
    $r = $up->http(HEAD => '/size/10');
    is($r->{headers}{'content-length'}, 10, 'HEAD keeps Content-Length');
    is($r->{body}, '', 'HEAD has no body');

    $r = $up->http(GET => '/delay/200');
    is($r->{status}, 200, '/delay answers');
    cmp_ok($r->{time}, '>=', 0.19, '/delay waited');

    $r = $up->http(GET => '/close-mid-body');
    is($r->{status}, 200, '/close-mid-body sends headers');
    is($r->{body}, body_pattern(10), 'then 10 bytes');
    like($r->{error}, qr/got 10 of 1000/, 'then the connection closes: error set');

    $r = $up->http(GET => '/reset');
    ok(!defined $r->{status}, '/reset: no status');
    ok($r->{error}, '/reset: error set');

    $r = $up->http(GET => '/sse/3');
    like($r->{headers}{'content-type'}, qr{^text/event-stream}, '/sse content type');
    is(() = $r->{body} =~ /^data: /mg, 3, '/sse sends 3 events');

    is($up->http(GET => '/name')->{body}, 'first', '/name');

    $r = $up->http(POST => '/up', body => ['ab', 'cd', 'e'], chunked => 1);
    my $d = decode_json($r->{body});
    is($d->{headers}{'transfer-encoding'}, 'chunked', 'chunked upload');
    is($d->{body}, 'abcde', 'chunked upload body');

    my $big = body_pattern(2_500_000, 7);
    $r = $up->http(PUT => '/big', body => $big, headers => { 'Content-Type' => 'text/plain' });
    $d = decode_json($r->{body});
    is($d->{bodyLength}, 2_500_000, 'big upload length');
    is($d->{bodySha256}, sha256_hex($big), 'big upload sha256');
    ok($d->{bodyTruncated}, 'description body cut at 1 MiB');
    is($d->{headers}{'content-type'}, 'text/plain', 'hashref headers sent');

    $r = $up->http(GET => '/', host => 'h.example', headers => [Accept => 'x/y', 'X-None' => undef],
                   version => '1.0');
    $d = decode_json($r->{body});
    is($d->{headers}{host}, 'h.example', 'host option');
    is($d->{headers}{accept}, 'x/y', 'arrayref headers');
    ok(!exists $d->{headers}{'x-none'}, 'undef header not sent');
    is($d->{httpVersion}, '1.0', 'version option');
    $up->clear_log;
};

subtest 'keep-alive client and raw' => sub {
    my $ka = $up->keepalive;
    my $r1 = $ka->request(GET => '/one');
    my $r2 = $ka->request(POST => '/two', body => 'b');
    is($r1->{status}, 200, 'first request');
    is($r2->{status}, 200, 'second request');
    my ($d1, $d2) = map { decode_json($_->{body}) } $r1, $r2;
    is($d1->{connection}, $d2->{connection}, 'same upstream connection');
    is_deeply([$d1->{requestOnConnection}, $d2->{requestOnConnection}], [1, 2], 'counted per connection');
    ok(!$ka->is_closed(0.2), 'connection stays open');
    ok(!defined $ka->write("GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n"),
       'pipelined write');
    is(decode_json($ka->read_response->{body})->{url}, '/p1', 'pipelined response 1');
    is(decode_json($ka->read_response->{body})->{url}, '/p2', 'pipelined response 2');
    $ka->close;

    my $short = node_upstream('echo', env => { KEEPALIVE_MS => 200 });
    $ka = $short->keepalive;
    is($ka->request(GET => '/')->{status}, 200, 'request on short keep-alive upstream');
    ok($ka->is_closed(3), 'KEEPALIVE_MS: upstream closes the idle connection');
    $short->stop;

    my $raw = $up->raw("GET /name HTTP/1.0\r\n\r\n");
    like($raw, qr{^HTTP/1\.1 200 OK\r\n.*\r\n\r\nfirst\z}s, 'raw request, read until close');
    my ($data, $closed) = $up->raw("GET /name HTTP/1.1\r\nHost: x\r\n\r\n", timeout => 0.5);
    like($data, qr/first\z/, 'keep-alive raw: response');
    is($closed, 0, 'keep-alive raw: not closed at the timeout');
    ($data, $closed) = $up->raw(["GET /na", "me HTTP/1.1\r\nHost: x\r\n\r\n"], half_close => 1);
    like($data, qr/first\z/, 'pieces and half close');
    is($closed, 1, 'half close: server closed');
    $up->clear_log;
};

subtest 'hang and garbage upstreams' => sub {
    my $hang = node_upstream('hang');
    my $t0 = time;
    my $r = $hang->http(GET => '/', timeout => 0.5);
    like($r->{error}, qr/timeout/, 'hang: timeout error');
    cmp_ok(time - $t0, '<', 3, 'hang: deadline respected');
    my $garbage = node_upstream('garbage');
    $r = $garbage->http(GET => '/');
    like($r->{error}, qr/bad status line/, 'garbage: bad status line');
    like($garbage->raw("GET / HTTP/1.1\r\n\r\n"), qr/garbage/, 'garbage: raw bytes');
};

# ------------------------------------------------------------------ process cleanup

subtest 'guards stop their processes' => sub {
    my $u = node_upstream('echo');
    my ($pid, $port) = @$u{qw(pid port)};
    $u->stop;
    ok(!alive($pid), 'stop: pid gone');
    ok(!listening($port), 'stop: port closed');
    my $again = node_upstream('echo', port => $port, env => { NAME => 'again' });
    is($again->{port}, $port, 'restarted on the same port');
    is($again->http(GET => '/name')->{body}, 'again', 'restarted upstream answers');
    {
        my $scoped = node_upstream('echo');
        $pid = $scoped->{pid};
        ok(alive($pid), 'scoped upstream runs');
    }
    ok(!alive($pid), 'DESTROY at scope exit: pid gone');
};

# Runs a perl script that uses the library, reads the upstream pid it prints,
# then does $after to it; returns the pid for checks.
sub child_script($code, $after) {
    my $dir = tempdir(CLEANUP => 1);
    local $ENV{TMPDIR} = $dir;    # what a SIGKILLed child leaves goes with it
    my $root = repo_root();
    my $pid = open(my $fh, '-|', $^X, "-I$root/t/lib", '-e',
                   "BEGIN { \$SIG{\$_} = 'DEFAULT' for qw(INT TERM) } "
                   . "open(STDERR, '>', '/dev/null'); use Tollgate::Test; \$| = 1; my \$u = node_upstream('echo'); "
                   . "print \"\$u->{pid}\\n\"; $code") // die "fork: $!";
    my $up_pid = <$fh>;
    chomp($up_pid);
    $after->($pid);
    my @rest = <$fh>;
    close($fh);
    return ($up_pid, @rest);
}

subtest 'no process left behind when a test dies or is killed' => sub {
    my ($p) = child_script('die "child test dies here on purpose\n";', sub { });
    ok($p && !alive($p), 'test died: END killed the upstream');
    ($p) = child_script('sleep 10;', sub ($pid) { kill 'TERM', $pid });
    ok($p && !alive($p), 'SIGTERM to the test: upstream killed');
    ($p) = child_script('sleep 10;', sub ($pid) { kill 'INT', $pid });
    ok($p && !alive($p), 'SIGINT to the test: upstream killed');
    ($p) = child_script('sleep 10;', sub ($pid) { kill 'KILL', $pid });
    ok($p && wait_until(sub { !alive($p) }, 5), 'SIGKILL to the test: parent-death signal stops it');
    my @out;
    ($p, @out) = child_script('if (fork() == 0) { exit 0 } wait; '
                              . 'print $u->http(GET => "/name")->{status} // "none", "\\n";', sub { });
    is_deeply(\@out, ["200\n"], 'a forked child exiting leaves the parent\'s upstream running');
    ok($p && !alive($p), 'and END in the parent stops it');
};

# ------------------------------------------------------------------ tg_start with a fake gateway

# A stand-in for build/tollgate that honours the parts of the contract the
# library relies on: -t -c FILE, pid, error_log, `listen`, HUP and TERM.
my $fake_dir = tempdir(CLEANUP => 1);
my $fake = "$fake_dir/fake-tollgate";
{
    open(my $fh, '>', $fake) or die;
    print $fh "#!$^X\n", <<'FAKE';
use strict; use warnings; use IO::Socket::INET; use IO::Select; use POSIX ();
my ($test, $file);
while (defined(my $a = shift)) { $test = 1 if $a eq '-t'; $file = shift if $a eq '-c' }
sub readconf { open(my $fh, '<', $file) or die "cannot open $file: $!\n"; local $/; <$fh> }
my $conf = readconf();
if ($test) {
    my @lines = split /\n/, $conf;
    for my $i (0 .. $#lines) {
        if ($lines[$i] =~ /\bbogus\b/) { print STDERR "$file:", $i + 1, ": unknown directive \"bogus\"\n"; exit 1 }
    }
    print STDERR "$file: syntax is ok\n";
    exit 0;
}
my ($log) = $conf =~ /error_log\s+(\S+)\s+\w+;/;
my ($pidf) = $conf =~ /\bpid\s+(\S+);/;
my ($port) = $conf =~ /listen\s+(\d+)/;
sub logl {
    my ($level, $msg) = @_;
    open(my $l, '>>', $log) or die "$log: $!";
    print $l POSIX::strftime('%Y/%m/%d %H:%M:%S', localtime), " [$level] $$#0: $msg\n";
}
if ($conf =~ /exit_now/) { print STDERR "exit-now requested\n"; exit 2 }
open(my $p, '>', $pidf) or die; print $p "$$\n"; close $p;
my $worker;
if ($conf =~ /spawn_worker/) {
    $worker = fork // die;
    if (!$worker) { $SIG{TERM} = 'IGNORE' if $conf =~ /orphan_worker/; sleep 1 while 1 }
    logl(info => "start worker process $worker");
}
my ($reload, $term) = (0, 0);
$SIG{HUP} = sub { $reload = 1 };
$SIG{TERM} = sub { $term = 1 };
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 16,
                                ReuseAddr => 1, Proto => 'tcp') or die "listen $port: $!\n";
logl(info => "started on $port");
my $sel = IO::Select->new($srv);
until ($term) {
    if ($reload) { $conf = readconf(); logl(info => 'reloading configuration'); $reload = 0 }
    next unless $sel->can_read(0.05);
    my $c = $srv->accept or next;
    serve($c);
}
logl(info => 'exiting');
if ($worker && $conf !~ /orphan_worker/) { kill 'TERM', $worker; waitpid($worker, 0) }
exit 0;

sub serve {
    my ($c) = @_;
    my $buf = '';
    while (1) {
        while ($buf !~ /\r\n\r\n/) {
            my $n = sysread($c, $buf, 65536, length $buf);
            return unless $n;
        }
        $buf =~ s/\A(.*?)\r\n\r\n//s;
        my $head = $1;
        my ($method, $path) = $head =~ /^(\S+) (\S+)/;
        my ($len) = $head =~ /\r\ncontent-length: *(\d+)/i;
        $len //= 0;
        while (length $buf < $len) { sysread($c, $buf, 65536, length $buf) or return }
        my $body = substr($buf, 0, $len, '');
        my $close = $head =~ /\r\nconnection: *close/i;
        my $resp;
        if ($path eq '/chunked') {
            $resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                  . "6;ext=1\r\n world\r\n0\r\nX-Trailer: t1\r\n\r\n";
        } else {
            logl(error => "simulated failure for $path") if $path eq '/error';
            logl(crit => "simulated crit") if $path eq '/crit';
            print STDERR "==1==ERROR: AddressSanitizer: heap-use-after-free\n" if $path eq '/asan';
            my $out = "$method $path $body";
            $resp = "HTTP/1.1 200 OK\r\nX-Fake: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
                  . "Content-Length: " . length($out) . "\r\n\r\n$out";
        }
        syswrite($c, $resp);
        return if $close;
    }
}
FAKE
    close($fh);
    chmod(0755, $fake);
}
$ENV{TG_BIN} = $fake;

subtest 'tg_start: config, requests, reload, stop' => sub {
    my $tg = tg_start("server { listen %%PORT%%; }\n# other %%PORT2%% dir %%DIR%%\n");
    my $dir = $tg->dir;
    my $conf = do { local (@ARGV, $/) = ($tg->conf_file); <> };
    is((split /\n/, $conf)[0],
       "pid $dir/tollgate.pid; error_log $dir/error.log info; workers 1; server { listen "
       . $tg->port . '; }', 'directives prepended on line 1, %%PORT%% replaced');
    like($conf, qr/other (\d+) dir \Q$dir\E$/m, '%%PORT2%% and %%DIR%% replaced');
    isnt($tg->port(2), $tg->port(1), 'PORT2 differs from PORT');
    is($tg->port(1), $tg->port, 'port() is port(1)');
    ok(listening($tg->port), 'gateway listening after tg_start');
    is(do { local (@ARGV, $/) = ("$dir/tollgate.pid"); <> }, $tg->pid . "\n", 'pid file');

    my $r = $tg->http(POST => '/x', body => 'hi');
    is($r->{status}, 200, 'http status');
    is($r->{body}, 'POST /x hi', 'http body');
    is($r->{headers}{'set-cookie'}, 'a=1, b=2', 'repeated headers joined');
    is_deeply([map { $_->[0] } @{$r->{header_list}}], [qw(X-Fake Set-Cookie Set-Cookie Content-Length)],
              'header_list in order');
    like($r->{raw}, qr{^HTTP/1\.1 200 OK\r\n.*\r\n\r\nPOST /x hi\z}s, 'raw');

    $r = $tg->http(GET => '/chunked');
    is($r->{body}, 'hello world', 'chunked body with an extension decoded');
    is_deeply($r->{trailers}, { 'x-trailer' => 't1' }, 'trailers');

    my $ka = $tg->keepalive;
    is($ka->request(GET => '/a')->{body}, 'GET /a ', 'keep-alive 1');
    is($ka->request(GET => '/b')->{body}, 'GET /b ', 'keep-alive 2');
    $ka->close;
    like($tg->raw("GET /raw HTTP/1.1\r\nConnection: close\r\n\r\n"), qr{GET /raw \z}, 'raw()');
    like($tg->error_log, qr/\[info\] \d+#0: started on \d+/, 'error_log()');

    my $off = $tg->reload("server { listen %%PORT%%; } # reloaded %%PORT2%%\n");
    like($tg->wait_log(qr/reloading configuration/, 5, $off), qr/\[info\].*reloading/,
         'reload: HUP handled, wait_log returns the line');
    like(do { local (@ARGV, $/) = ($tg->conf_file); <> }, qr/reloaded ${\ $tg->port(2)}/,
         'reload keeps the ports');
    ok(!defined $tg->wait_log(qr/never logged/, 0.2), 'wait_log: undef at the deadline');

    my $pid = $tg->pid;
    my $events = intercept { $tg->stop };
    my @oks = grep { $_->isa('Test2::Event::Ok') } @$events;
    is(scalar(@oks), 1, 'stop reports one ok');
    ok($oks[0]->pass, 'clean log passes');
    ok(!alive($pid), 'stop: master gone');
    ok(!listening($tg->port), 'stop: port closed');
    is($tg->exit_status, 0, 'exit status 0');
};

subtest 'tg_start: directives the snippet sets are not prepended' => sub {
    my $tg = tg_start("workers 3;\nerror_log %%DIR%%/custom.log info;\n"
                      . "server { listen %%PORT%%; }\n");
    my $conf = do { local (@ARGV, $/) = ($tg->conf_file); <> };
    unlike($conf, qr/workers 1;/, 'workers not prepended');
    unlike($conf, qr/error\.log/, 'error_log not prepended');
    like($conf, qr/^pid /, 'pid still prepended');
    like($tg->error_log, qr/started/, 'error_log() reads the configured file');
};

# Returns the Ok events a block produced.
sub oks_of($code) {
    my $events = intercept { $code->() };
    return grep { $_->isa("Test2::Event::Ok") } @$events;
}

subtest 'log check' => sub {
    my @o = oks_of(sub { my $tg = tg_start('server { listen %%PORT%%; }'); $tg->http(GET => '/error') });
    is(scalar(@o), 1, 'one ok from DESTROY');
    ok(!$o[0]->pass, 'unexpected [error] fails');

    @o = oks_of(sub {
        my $tg = tg_start('server { listen %%PORT%%; }', errors_ok => [qr/simulated failure/]);
        $tg->http(GET => '/error');
    });
    ok($o[0]->pass, 'errors_ok allows it');

    @o = oks_of(sub {
        my $tg = tg_start('server { listen %%PORT%%; }', errors_ok => [qr/./]);
        $tg->http(GET => '/crit');
    });
    ok(!$o[0]->pass, '[crit] fails even with errors_ok');

    @o = oks_of(sub {
        my $tg = tg_start('server { listen %%PORT%%; }', errors_ok => [qr/./]);
        $tg->http(GET => '/asan');
    });
    ok(!$o[0]->pass, 'sanitizer report on stderr fails');

    @o = oks_of(sub {
        my $tg = tg_start('server { listen %%PORT%%; }', no_log_check => 1);
        $tg->http(GET => '/error');
    });
    is(scalar(@o), 0, 'no_log_check: no ok');

    @o = oks_of(sub {
        my $tg = tg_start('server { listen %%PORT%%; }');
        $tg->signal('TERM');
        wait_until(sub { !listening($tg->port) }, 5);
    });
    ok($o[0]->pass, 'exit after a signal the test sent is fine');

    my ($worker, @workers);
    @o = oks_of(sub {
        my $tg = tg_start('spawn_worker; orphan_worker; server { listen %%PORT%%; }');
        ($worker) = ($tg->wait_log(qr/start worker process/, 5) // '') =~ /(\d+)$/;
        @workers = $tg->worker_pids;
        $tg->stop;
    });
    is_deeply(\@workers, [$worker], 'worker_pids');
    is(scalar(@o), 1, 'one ok');
    ok(!$o[0]->pass, 'a process left behind by the master fails the check');
    ok($worker && !alive($worker), 'and it is killed');

    my $events = intercept {
        my $tg = tg_start('server { listen %%PORT%%; }');
        ok(1, 'a test');
        done_testing;
    };
    my @kinds = map { ref($_) =~ s/.*:://r } grep { !$_->isa('Test2::Event::Diag') } @$events;
    is_deeply(\@kinds, [qw(Ok Ok Plan)], 'done_testing stops live gateways before the plan');
};

subtest 'tg_start failures' => sub {
    my $t0 = time;
    ok(!eval { tg_start('exit_now; server { listen %%PORT%%; }'); 1 }, 'dies when it exits');
    like($@, qr/exited during start-up: exit code 2.*exit-now requested/s, 'with stderr');
    like($@, qr/exit_now; server/, 'and the config');
    ok(!eval { tg_start('server { listen %%PORT%%; }', wait_port => 2, timeout => 1); 1 },
       'dies when the port does not open');
    like($@, qr/was not listening on 127\.0\.0\.1:\d+ after 1 s/, 'timeout message');
    cmp_ok(time - $t0, '<', 5, 'within the deadline');
    local $ENV{TG_BIN} = "$fake_dir/missing";
    ok(!eval { tg_start('server { listen %%PORT%%; }'); 1 }, 'dies without a binary');
    like($@, qr/no tollgate binary/, 'says so');
};

subtest 'tg_conf_error / tg_conf_ok' => sub {
    my $err = tg_conf_error("workers 2;\nserver {\n    bogus on;\n}\n");
    like($err, qr/^\S+tollgate\.conf:3: unknown directive "bogus"/m, 'file:line of the snippet');
    like(tg_conf_error('server { bogus on; }'), qr/^\S+:1: unknown directive "bogus"/m, 'line 1');
    ok(tg_conf_ok('server { listen %%PORT%%; }'), 'tg_conf_ok');
    ok(!tg_conf_ok('bogus;'), 'tg_conf_ok false on error');
    my $t = tg_conf_test('bogus;');
    is($t->{exit}, 1, 'tg_conf_test exit code');
};

done_testing;
