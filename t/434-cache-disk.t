# The response cache's disk storage (docs/cache.md#disk-storage): bodies over
# max_entry_size go to files in path= (written under a temporary name,
# renamed when complete), served from there, read back after a restart and
# after kill -9 (never a half entry), evicted within max_disk, dropped after
# inactive=; a 304 that updates an entry's head (a head file beside it, read
# back after a restart); a 1 GB response with the workers' memory flat; bad
# paths.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);
use POSIX ();
use Time::HiRes qw(sleep time);

my $up = node_upstream('cache_disk');
my $root = tempdir('tg-cachedisk-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $root;
my $dir = "$root/cache";

sub conf($d, %o) {
    my $zone = "size=1m max_entry_size=64k path=$d max_disk=" . ($o{max_disk} // '50m')
               . ($o{inactive} ? " inactive=$o{inactive}" : '');
    return <<"EOF";
workers 2;
cache_zone disk $zone;
server {
    listen %%PORT%%;
    cache disk;
    cache_status_header on;
    location / { proxy_pass $up->{addr}; }
    location = /stats { cache off; stats; }
    location = /__purge { cache_purge disk; }
}
EOF
}

sub count($path) {
    return decode_json($up->http(GET => '/__count')->{body})->{paths}{$path} // 0;
}
sub pattern($n) { my $s = join('', 'a' .. 'z') x (int($n / 26) + 1); return substr($s, 0, $n) }
sub files($d) { opendir(my $h, $d) or return (); my @f = sort grep { !/^\./ } readdir $h; return @f }
sub nfiles($d) { my @f = files($d); return scalar @f }
sub stats($tg) { return decode_json($tg->http(GET => '/stats')->{body})->{caches}{disk} }

subtest 'a large entry is stored on disk and served from there' => sub {
    my $tg = tg_start(conf($dir));
    ok(-d $dir, 'the directory is made');
    is((stat $dir)[2] & 07777, 0700, 'mode 0700');
    is((stat $dir)[4], scalar getpwnam('nobody'), "owned by the workers' user (nobody)")
        if $> == 0;
    my $r1 = $tg->http(GET => '/big?size=2000000', timeout => 20);
    is($r1->{status}, 200, 'miss');
    like($r1->{headers}{'cache-status'}, qr/fwd=miss; stored/, 'stored');
    my @f = files($dir);
    is(scalar(@f), 1, 'one file in the directory');
    like($f[0] // '', qr/^[0-9a-f]{16}$/, 'named by its id (no temporary file left)');
    my $fsize = -s "$dir/$f[0]";
    cmp_ok($fsize, '>', 2000000, 'the file holds the body');
    is((stat "$dir/$f[0]")[2] & 07777, 0600, 'file mode 0600');
    my $r2 = $tg->http(GET => '/big?size=2000000', timeout => 20);
    like($r2->{headers}{'cache-status'}, qr/^tollgate; hit/, 'a hit');
    is($r2->{headers}{'content-length'}, 2000000, 'Content-Length');
    ok($r2->{body} eq pattern(2000000), 'byte-identical body from the file');
    is(count('/big'), 1, 'one upstream request');
    my $h = $tg->http(HEAD => '/big?size=2000000');
    is($h->{headers}{'content-length'}, 2000000, 'HEAD from the disk entry');
    # small: in memory, with or without Content-Length
    $tg->http(GET => '/small?size=1000') for 1 .. 2;
    $tg->http(GET => '/smallc?size=1000&cl=0') for 1 .. 2;
    is(count('/small') + count('/smallc'), 2, 'small entries are cached');
    is(nfiles($dir), 1, 'in memory, no file');
    # unknown length: in memory until it passes max_entry_size, then moved to disk
    $tg->http(GET => '/chunked?size=300000&cl=0') for 1 .. 2;
    my $r3 = $tg->http(GET => '/chunked?size=300000&cl=0');
    like($r3->{headers}{'cache-status'}, qr/hit/, 'a chunked response: a hit');
    ok($r3->{body} eq pattern(300000), 'byte-identical');
    is(count('/chunked'), 1, 'one upstream request');
    is(nfiles($dir), 2, 'its body on disk');
    my $s = stats($tg);
    is($s->{disk_entries}, 2, 'stats: disk_entries');
    my $total = 0;
    $total += -s "$dir/$_" for files($dir);
    is($s->{disk_bytes}, $total, 'stats: disk_bytes = the files\' bytes');
    my $p = $tg->http(GET => '/stats?format=prometheus')->{body};
    like($p, qr/^tollgate_cache_disk_bytes\{zone="disk"\} $total$/m, 'Prometheus disk bytes');
    like($p, qr/^tollgate_cache_disk_entries\{zone="disk"\} 2$/m, 'Prometheus disk entries');
    $tg->stop;
};

for my $cl (1, 0) {
subtest "collapsing: followers read the file as it is written (cl=$cl)" => sub {
    my $tg = tg_start(conf($dir));
    my $n = 8;
    my $path = $cl ? '/slow' : '/slowc';
    my $q = "$path?size=1500000&chunk=65536&ms=40&cl=$cl";
    my $url = 'http://127.0.0.1:' . $tg->port . $q;
    my @pids;
    for my $i (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            { exec('curl', '-s', '--max-time', '30', '-D', "$root/h$i", '-o', "$root/b$i", $url) }
            POSIX::_exit(127);
        }
        push @pids, $pid;
    }
    my $deadline = time + 40;
    for my $pid (@pids) {
        while (waitpid($pid, POSIX::WNOHANG()) == 0) {
            if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
            sleep 0.05;
        }
    }
    is(count($path), 1, "$n concurrent clients: one upstream request");
    my $want = pattern(1500000);
    my ($same, $collapsed) = (0, 0);
    for my $i (1 .. $n) {
        open(my $fh, '<', "$root/b$i") or next;
        local $/;
        my $b = <$fh>;
        $same++ if defined $b && $b eq $want;
        open(my $hh, '<', "$root/h$i") or next;
        $collapsed++ if <$hh> =~ /Cache-Status: tollgate; hit; collapsed/i;
    }
    is($same, $n, 'every answer byte-identical');
    cmp_ok($collapsed, '>=', 1, "followers were collapsed ($collapsed)");
    like($tg->http(GET => $q, timeout => 20)->{headers}{'cache-status'},
         qr/^tollgate; hit/, 'then a hit');
    $tg->stop;
};
}

subtest 'restart: disk entries are hits again' => sub {
    my $before = count('/big');
    my $tg = tg_start(conf($dir), errors_ok => [qr/path= cannot change/, qr/reload failed/]);
    wait_until(sub { $tg->error_log =~ /entries read back/ }, 15);
    like($tg->error_log, qr/cache: 4 entries read back from \Q$dir\E, 0 files deleted/,
         'read back at start');
    my $r = $tg->http(GET => '/big?size=2000000', timeout => 20);
    like($r->{headers}{'cache-status'}, qr/^tollgate; hit/, 'a hit after a restart');
    like($r->{headers}{age} // '', qr/^\d+$/, 'with Age');
    ok($r->{body} eq pattern(2000000), 'byte-identical');
    is(count('/big'), $before, 'upstream count unchanged');
    is(stats($tg)->{disk_entries}, 4, 'stats after the restart');
    my $off = $tg->reload(conf($dir));
    ok($tg->wait_log(qr/cache zone "disk": entries kept/, 10, $off), 'reloaded');
    like($tg->http(GET => '/big?size=2000000', timeout => 20)->{headers}{'cache-status'},
         qr/^tollgate; hit/, 'a hit after a reload');
    $off = $tg->reload(conf("$root/other"));
    ok($tg->wait_log(qr/reload failed/, 10, $off), 'path= of a zone with files cannot change');
    like($tg->error_log, qr/path= cannot change while the zone has entries on disk/, 'said so');
    is(count('/big'), $before, 'upstream count unchanged');
    $tg->stop;
};

subtest 'kill -9 during a fill: no half entry, temporary file swept' => sub {
    my $tg = tg_start(conf($dir));
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        { exec('curl', '-s', '--max-time', '30', '-o', '/dev/null',
               'http://127.0.0.1:' . $tg->port . '/cut?size=4000000&chunk=65536&ms=50') }
        POSIX::_exit(127);
    }
    my $tmp;
    ok(wait_until(sub {
        ($tmp) = grep { /^tmp\./ } files($dir);
        return $tmp && -s "$dir/$tmp" > 300000;
    }, 15), 'the fill writes a temporary file');
    $tg->_kill_fast; # SIGKILL to the master and its workers at once
    kill 'KILL', $pid;
    waitpid($pid, 0);
    ok(-e "$dir/$tmp", 'the temporary file is left by the crash');
    my $tg2 = tg_start(conf($dir));
    # the master reads the directory back (and sweeps it) after it opens the
    # listeners: waited for
    ok(wait_until(sub { $tg2->error_log =~ /cache: \d+ entries read back from \Q$dir\E/ }, 15),
       'the directory read back');
    ok(!grep({ /^tmp\./ } files($dir)), 'swept at start');
    like($tg2->error_log, qr/cache: 4 entries read back from \Q$dir\E, 1 files deleted/,
         'the complete entries read back, the partial one deleted');
    my $r = $tg2->http(GET => '/cut?size=4000000&chunk=65536&ms=0', timeout => 30);
    like($r->{headers}{'cache-status'}, qr/fwd=miss/, 'the cut response is not served');
    ok($r->{body} eq pattern(4000000), 'the whole body from the upstream');
    is(count('/cut'), 2, 'fetched again');
    $tg2->stop;
};

subtest 'a broken file is deleted at start' => sub {
    my ($f) = grep { !/^tmp/ } files($dir);
    open(my $fh, '+<', "$dir/$f") or die;
    truncate($fh, (-s "$dir/$f") - 10);
    close $fh;
    open($fh, '>', "$dir/0123456789abcdef") or die;
    print $fh "not a cache file";
    close $fh;
    my $tg = tg_start(conf($dir));
    ok(wait_until(sub { $tg->error_log =~ /cache: \d+ entries read back from \Q$dir\E/ }, 15),
       'the directory read back');
    like($tg->error_log, qr/cache: 4 entries read back from \Q$dir\E, 2 files deleted/,
         'the truncated and the foreign file deleted');
    ok(!-e "$dir/$f" && !-e "$dir/0123456789abcdef", 'gone');
    $tg->stop;
};

subtest 'a purge deletes the file' => sub {
    my $d = "$root/purge";
    my $tg = tg_start(conf($d));
    $tg->http(GET => '/p1?size=300000');
    $tg->http(GET => '/p2?size=300000');
    is(nfiles($d), 2, 'two files');
    my $r = $tg->http(PURGE => '/__purge?key=http127.0.0.1%2Fp1%3Fsize%3D300000');
    like($r->{body}, qr/"purged": 1/, 'purged by key');
    is(nfiles($d), 1, 'its file is deleted');
    $r = $tg->http(PURGE => '/__purge?prefix=http127.0.0.1%2Fp');
    like($r->{body}, qr/"purged": 1/, 'purged by prefix');
    is(nfiles($d), 0, 'the other file too');
    is(stats($tg)->{disk_entries}, 0, 'no entry on disk');
    is(stats($tg)->{disk_bytes}, 0, 'no bytes on disk');
    $tg->stop;
};

subtest 'max_disk: least recently used files go' => sub {
    my $d = "$root/evict";
    my $tg = tg_start(conf($d, max_disk => '5m'));
    for my $i (1 .. 3) {
        $tg->http(GET => "/e$i?size=2000000", timeout => 20);
        sleep 0.05;
    }
    my $s = stats($tg);
    cmp_ok($s->{disk_bytes}, '<=', 5 * 1024 * 1024, "disk bytes within max_disk ($s->{disk_bytes})");
    is($s->{disk_entries}, 2, 'two entries on disk');
    is(nfiles($d), 2, 'two files');
    like($tg->http(GET => '/e3?size=2000000', timeout => 20)->{headers}{'cache-status'}, qr/hit/,
         'the newest is a hit');
    like($tg->http(GET => '/e1?size=2000000', timeout => 20)->{headers}{'cache-status'},
         qr/fwd=miss/, 'the oldest was evicted');
    is(count('/e1'), 2, 'fetched again');
    my $big = $tg->http(GET => '/huge?size=6000000', timeout => 20);
    is(length($big->{body}), 6000000, 'a body over max_disk passes whole');
    cmp_ok(stats($tg)->{disk_bytes}, '<=', 5 * 1024 * 1024, 'and is not stored');
    $tg->stop;
};

subtest 'inactive=: entries not looked up go' => sub {
    my $d = "$root/inactive";
    my $tg = tg_start(conf($d, inactive => '2s'));
    $tg->http(GET => '/i1?size=200000');
    $tg->http(GET => '/m1?size=100');
    my @f = files($d);
    is(scalar(@f), 1, 'one file');
    like($tg->http(GET => '/i1?size=200000')->{headers}{'cache-status'}, qr/hit/, 'a hit at once');
    sleep 3.2;
    like($tg->http(GET => '/i1?size=200000')->{headers}{'cache-status'}, qr/fwd=miss/,
         'fresh (max-age=600) but inactive for 3 s: gone');
    like($tg->http(GET => '/m1?size=100')->{headers}{'cache-status'}, qr/fwd=miss/,
         'a memory entry too');
    is(count('/i1'), 2, 'fetched again');
    ok(!-e "$d/$f[0]", 'its file deleted');
    $tg->stop;
};

subtest 'a 304 updates a disk entry: its head file, read back after a restart' => sub {
    my $d = "$root/rv";
    # max-age=2: a head that arrives in the second after its Date is 1 s old
    # (Date has whole seconds), and still fresh
    my $u = '/rv?size=300000&maxage=2&etag=v1';
    my $tg = tg_start(conf($d));
    my $r1 = $tg->http(GET => $u, timeout => 20);
    like($r1->{headers}{'cache-status'}, qr/fwd=miss; stored/, 'stored');
    my ($body) = files($d);
    my $bsize = -s "$d/$body";
    cmp_ok($bsize, '>', 300000, 'on disk');
    $up->http(POST => '/__r304?path=/rv&h=ETag:%20"v2"&h=X-Version:%202'
                      . '&h=Cache-Control:%20max-age=60');
    sleep 2.3;
    my $r2 = $tg->http(GET => $u, timeout => 20);
    like($r2->{headers}{'cache-status'}, qr/fwd=stale; fwd-status=304/, 'revalidated');
    is($r2->{headers}{etag}, '"v2"', 'with the new ETag');
    ok($r2->{body} eq pattern(300000), 'the body from the file');
    my $r3 = $tg->http(GET => $u, timeout => 20);
    like($r3->{headers}{'cache-status'}, qr/^tollgate; hit; ttl=5\d$/, 'a hit, fresh for 60 s');
    is($r3->{headers}{'x-version'}, '2', 'X-Version from the 304');
    is_deeply([files($d)], [$body, "$body.h"], 'the entry\'s file and its head file');
    is(-s "$d/$body", $bsize, 'the entry\'s file is left as it is');
    is(stats($tg)->{disk_bytes}, $bsize + -s "$d/$body.h", 'stats: disk_bytes count both');
    $tg->stop;

    $tg = tg_start(conf($d));
    ok(wait_until(sub { $tg->error_log =~ /cache: \d+ entries read back from \Q$d\E/ }, 15),
       'the directory read back');
    like($tg->error_log, qr/cache: 1 entries read back from \Q$d\E, 0 files deleted/,
         'the entry read back');
    my $r4 = $tg->http(GET => $u, timeout => 20);
    like($r4->{headers}{'cache-status'}, qr/^tollgate; hit; ttl=\d+$/,
         'after the restart: a hit, still fresh (its first lifetime ran out long ago)');
    is($r4->{headers}{etag}, '"v2"', 'the new ETag');
    is($r4->{headers}{'x-version'}, '2', 'X-Version');
    is($r4->{headers}{'cache-control'}, 'max-age=60', 'Cache-Control');
    is($r4->{headers}{'content-type'}, 'application/octet-stream', 'Content-Type kept');
    is($r4->{headers}{'content-length'}, 300000, 'Content-Length');
    ok($r4->{body} eq pattern(300000), 'byte-identical body');
    is(count('/rv'), 2, 'no upstream request since the 304');
    is(stats($tg)->{disk_bytes}, $bsize + -s "$d/$body.h", 'stats: disk_bytes after the restart');
    $tg->stop;

    # a head file that does not check is deleted: the entry comes back as
    # it was first stored (expired: revalidated again)
    open(my $fh, '+<', "$d/$body.h") or die;
    seek($fh, -3, 2);
    print $fh 'XYZ';
    close $fh;
    $tg = tg_start(conf($d));
    ok(wait_until(sub { $tg->error_log =~ /cache: \d+ entries read back from \Q$d\E/ }, 15),
       'read back');
    ok(!-e "$d/$body.h" && -e "$d/$body", 'the broken head file deleted, the entry kept');
    my $r5 = $tg->http(GET => $u, timeout => 20);
    like($r5->{headers}{'cache-status'}, qr/fwd=stale; fwd-status=304/,
         'its first head: stale, revalidated');
    ok($r5->{body} eq pattern(300000), 'the body');
    is(count('/rv'), 3, 'one more conditional request');
    ok(-e "$d/$body.h", 'a new head file');
    # a purge deletes both files
    like($tg->http(PURGE => '/__purge?prefix=http127.0.0.1%2Frv')->{body}, qr/"purged": 1/,
         'purged');
    is_deeply([files($d)], [], 'both files deleted');
    is(stats($tg)->{disk_bytes}, 0, 'no bytes on disk');
    $tg->stop;
    open($fh, '>', "$d/00000000000000ff.h") or die;
    print $fh 'orphan';
    close $fh;
    $tg = tg_start(conf($d));
    ok(wait_until(sub { $tg->error_log =~ /cache: \d+ entries read back from \Q$d\E/ }, 15),
       'read back');
    like($tg->error_log, qr/cache: 0 entries read back from \Q$d\E, 1 files deleted/,
         'a head file with no entry file is deleted');
    is_deeply([files($d)], [], 'none left');
    $tg->stop;
};

subtest 'bad configs' => sub {
    my $file = "$root/plain";
    open(my $fh, '>', $file) or die;
    close $fh;
    like(tg_conf_error("cache_zone a size=1m path=$file max_disk=10m;\n"),
         qr/tollgate\.conf:1: cache path "\Q$file\E" is not a directory/, 'a file, not a directory');
    like(tg_conf_error("cache_zone a size=1m path=/proc/nope/x max_disk=10m;\n"),
         qr/tollgate\.conf:1: cannot make the cache directory "\/proc\/nope\/x"/, 'cannot be made');
    like(tg_conf_error("cache_zone a size=1m path=$root/x;\n"),
         qr/tollgate\.conf:1: .*path= and max_disk= go together/, 'path= without max_disk=');
    like(tg_conf_error("cache_zone a size=1m path=$root/x max_disk=lots;\n"),
         qr/tollgate\.conf:1: invalid size "lots" in "cache_zone" max_disk/, 'bad max_disk');
    like(tg_conf_error("cache_zone a size=1m inactive=0;\n"),
         qr/tollgate\.conf:1: invalid time "0" in "cache_zone" inactive/, 'bad inactive');
};

subtest '1 GB response: on disk, the workers\' memory flat' => sub {
    my ($free) = `df -Pk '$root'` =~ /\n\S+\s+\d+\s+\d+\s+(\d+)/;
    $free = ($free // 0) * 1024;
    plan skip_all => sprintf('%.1f GB free, 5 GB wanted', $free / 2**30) if $free < 5 * 2**30;
    my $d = "$root/gb";
    my $tg = tg_start(conf($d, max_disk => '2g'));
    my @w = $tg->worker_pids;
    my $rss = sub {
        my $t = 0;
        for my $w (@w) {
            open(my $f, '<', "/proc/$w/status") or next;
            while (my $l = <$f>) { $t += $1 if $l =~ /^VmRSS:\s+(\d+)/ }
        }
        return $t;
    };
    $tg->http(GET => '/small?size=1000');
    my $base = $rss->();
    my $size = 1 << 30;
    my $url = 'http://127.0.0.1:' . $tg->port . "/gb?size=$size&chunk=1048576";
    my %sum;
    my $peak = $base;
    for my $pass (qw(miss hit)) {
        my $out = "$root/md5.$pass";
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            { exec('sh', '-c', "curl -s --max-time 300 '$url' | md5sum > $out") }
            POSIX::_exit(127);
        }
        my $deadline = time + 320;
        while (waitpid($pid, POSIX::WNOHANG()) == 0) { # RSS sampled while the body streams
            my $now = $rss->();
            $peak = $now if $now > $peak;
            if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
            sleep 0.1;
        }
        open(my $fh, '<', $out) or die "$out: $!";
        $sum{$pass} = (split ' ', <$fh> // '')[0];
    }
    is(count('/gb'), 1, 'one upstream request: the second is a hit');
    is($sum{hit}, $sum{miss}, 'the hit is byte-identical (md5)');
    my ($f) = files($d);
    cmp_ok(-s "$d/$f", '>', $size, '1 GB on disk') if $f;
    cmp_ok($peak - $base, '<', 64 * 1024, "workers' RSS grew by less than 64 MB ("
           . int(($peak - $base) / 1024) . ' MB)');
    diag(sprintf('1 GB: workers RSS %d MB before, %d MB peak', $base / 1024, $peak / 1024));
    $tg->stop;
};

done_testing;
