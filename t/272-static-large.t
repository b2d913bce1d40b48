# Static files, large and changing (issue 22): a 2 GB sparse file streams
# over plain HTTP (sendfile) and TLS (one pool buffer, the pages the cache
# lacks read in a file thread) with the worker's RSS flat; a file replaced
# (renamed over) while it is being sent reaches the client whole with its
# old bytes; one truncated in place ends in a clean error (a short body and
# a closed connection), never a mix; both over plain HTTP and TLS.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

my $dir = tempdir('tg-static-large-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir; # the workers run as nobody (the suite runs as root)
my $size = 2 * 1024 * 1024 * 1024;
system('truncate', '-s', $size, "$dir/big.bin") == 0 or die 'truncate';
sub spew($p, $d) { open(my $fh, '>', $p) or die "$p: $!"; print $fh $d; close $fh }
spew("$dir/change.bin", 'A' x (20 * 1024 * 1024));

my $pki = make_pki();
my $a = $pki->{'a.test'};
# under ASan, freed memory waits in a quarantine (256 MB by default) before
# reuse: keep it small so a flat RSS means what it does in a release build
my $asan = join(':', grep { length } $ENV{ASAN_OPTIONS} // '', 'quarantine_size_mb=4');
my $tg = tg_start(<<"EOF",
server {
    listen %%PORT%%;
    listen %%PORT2%% tls;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    root $dir;
}
EOF
    errors_ok => [qr/shorter than announced/], env => { ASAN_OPTIONS => $asan });
my $worker;
for (1 .. 100) { ($worker) = $tg->worker_pids; last if $worker; sleep 0.05 }
ok($worker, 'the worker is there to be measured') or BAIL_OUT('no worker');

sub rss($pid) {
    open(my $fh, '<', "/proc/$pid/status") or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

# Runs curl in the background, samples the worker's RSS until it ends.
sub stream($url, @args) {
    my $out = "$dir/curl.out";
    my $pid = fork // die;
    if (!$pid) {
        open(STDOUT, '>', $out);
        open(STDERR, '>', '/dev/null');
        exec('curl', '-s', '--max-time', '120', '-o', '/dev/null', '-w', '%{http_code} %{size_download}',
             @args, $url);
        exit 127;
    }
    my ($min, $max) = (1e12, 0);
    my $deadline = time + 130;
    while (time < $deadline) {
        my $r = rss($worker);
        $min = $r if $r && $r < $min;
        $max = $r if $r > $max;
        last if waitpid($pid, 1) == $pid;
        sleep 0.05;
    }
    open(my $fh, '<', $out);
    my $res = <$fh> // '';
    return ($res, $min, $max);
}

Tollgate::Test::http_request($tg->port, GET => '/change.bin'); # warm up the worker
my ($res, $min, $max) = stream('http://127.0.0.1:' . $tg->port . '/big.bin');
is($res, "200 $size", '2 GB over plain HTTP: whole');
ok($max > 0 && $min <= $max, 'plain: RSS sampled');
cmp_ok($max - $min, '<', 4096, "plain: RSS flat ($min -> $max kB)");

# warm up TLS first (the library's own first-use allocations)
curl_https($tg->port(2), '/change.bin', cacert => $pki->{ca}, args => ['-o', '/dev/null']);
($res, $min, $max) = stream('https://a.test:' . $tg->port(2) . '/big.bin',
                            '--resolve', 'a.test:' . $tg->port(2) . ':127.0.0.1',
                            '--cacert', $pki->{ca});
is($res, "200 $size", '2 GB over TLS: whole');
ok($max > 0 && $min <= $max, 'TLS: RSS sampled');
cmp_ok($max - $min, '<', 4096, "TLS: RSS flat ($min -> $max kB)");

# replaced while being sent: the old bytes, whole; truncated in place: a
# clean error. Over plain HTTP (sendfile) and TLS (copied by the request
# layer, cold pages read in a file thread).
my $n = 0;
for my $c (['plain', 'http://127.0.0.1:' . $tg->port],
           ['TLS', 'https://a.test:' . $tg->port(2), '--resolve', 'a.test:' . $tg->port(2) . ':127.0.0.1',
            '--cacert', $pki->{ca}]) {
    my ($name, $base, @tls) = @$c;
    $n++;
    my $letter = $n == 1 ? 'A' : 'D';
    spew("$dir/change.bin", $letter x (20 * 1024 * 1024));
    my $pid = open(my $cl, '-|', 'curl', '-s', '--max-time', '30', '--limit-rate', '8M', @tls,
                   "$base/change.bin") // die;
    sleep 0.5;
    spew("$dir/change.new", 'B' x (20 * 1024 * 1024));
    rename("$dir/change.new", "$dir/change.bin") or die;
    my $body = do { local $/; <$cl> };
    close $cl;
    is(length $body, 20 * 1024 * 1024, "$name: renamed over while sent: whole length");
    ok($body !~ /[^$letter]/, "$name: renamed over while sent: only the old bytes");
    my $next = `curl -s --max-time 30 @tls $base/change.bin`;
    ok($next eq 'B' x (20 * 1024 * 1024), "$name: the next request gets the new file");

    spew("$dir/trunc.bin", 'C' x (20 * 1024 * 1024));
    $pid = open($cl, '-|', 'curl', '-s', '--max-time', '30', '--limit-rate', '8M', @tls,
                '-w', '\n%{http_code} %{size_download} %{exitcode}', "$base/trunc.bin") // die;
    sleep 0.5;
    truncate("$dir/trunc.bin", 1024 * 1024) or die;
    my $out = do { local $/; <$cl> };
    close $cl;
    my ($tbody, $code, $got, $rc) = $out =~ /\A(.*)\n(\d+) (\d+) (\d+)\z/s;
    cmp_ok($got, '<', 20 * 1024 * 1024, "$name: truncated while sent: short body ($got bytes)");
    isnt($rc, 0, "$name: truncated while sent: the client sees an error");
    ok(($tbody // '') !~ /[^C]/, "$name: no foreign byte");
}
$tg->stop;
like($tg->error_log, qr/shorter than announced/, 'the truncation is logged');

done_testing;
