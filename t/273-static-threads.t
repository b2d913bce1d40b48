# Static files never block the loop (issue 22): what the page cache or the
# dentry cache cannot answer goes to the worker's file threads
# (file_threads, src/file_io.c).
#   - A cold file (its pages dropped from the page cache) over TLS
#     (HTTP/1.1 and HTTP/2) and h2c arrives byte-exact, its reads done in a
#     thread.
#   - A slow open, simulated by a file lease: the test holds a write lease
#     on a file, so any open of it waits until the lease holder lets go (the
#     kernel's lease break). While that request waits in a thread, another
#     client is answered at once; when the lease is released the waiting
#     request gets the file. A client that leaves while its open is in the
#     thread costs nothing (the descriptor is closed by the pool).
#   - A client that leaves while its read waits for the thread: the pool
#     releases the job when it has run.
#   - A FIFO in the tree: 403 at once (opened O_NONBLOCK, refused by fstat).
#   - root and alias with variables.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use File::Temp qw(tempdir);
use Fcntl;
use POSIX qw(mkfifo WNOHANG);
use Time::HiRes qw(time sleep);

use constant { F_SETLEASE => 1024, F_RDLCK => 0, F_WRLCK => 1, F_UNLCK => 2 };

my $dir = tempdir('tg-static-threads-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir; # the workers run as nobody (the suite runs as root)
sub spew($p, $d) { open(my $fh, '>', $p) or die "$p: $!"; print $fh $d; close $fh; chmod 0644, $p }
my $big = join('', map { sprintf("%07d:%s\n", $_, body_pattern(55, $_)) } 1 .. 65536); # 4 MB
spew("$dir/big.bin", $big);
spew("$dir/big.txt", $big);
spew("$dir/lease.txt", "leased\n");
spew("$dir/other.txt", "other\n");
mkfifo("$dir/fifo", 0644) or die "mkfifo: $!";
mkdir "$dir/vh";
for my $h ('a.test', 'b.test') {
    mkdir "$dir/vh/$h";
    chmod 0755, "$dir/vh/$h";
    spew("$dir/vh/$h/i.txt", "site $h\n");
}
chmod 0755, "$dir/vh";
my $fs = `stat -f -c %T $dir`;
chomp $fs;

# drop a file's pages from the page cache (clean pages: written back first)
sub evict($p) {
    system('sync', $p) == 0 or die 'sync';
    system('dd', "if=$p", 'iflag=nocache', 'count=0', 'status=none') == 0 or die 'dd';
}

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $tg = tg_start(<<"EOF");
error_log %%DIR%%/error.log debug;
workers 1;
file_threads 1 queue=4;
server {
    listen %%PORT%%;
    listen %%PORT2%% tls;
    listen %%PORT3%% http2;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    root $dir;
    location /gz/ { alias $dir/; compress gzip; }
}
server {
    listen %%PORT4%%;
    root $dir/vh/\$host;
    location /by-arg/ { alias $dir/vh/\$arg_site/; }
}
EOF
my ($worker) = $tg->worker_pids;

sub curl(@args) {
    my $out = `curl -s --max-time 20 -o $dir/out.bin -w '%{http_code} %{http_version}' @args`;
    open(my $fh, '<', "$dir/out.bin") or return ($out, '');
    local $/;
    my $body = <$fh>;
    return ($out, $body // '');
}

# ---- cold reads: TLS (HTTP/1.1, HTTP/2) and h2c
my $tls = '--resolve a.test:' . $tg->port(2) . ":127.0.0.1 --cacert $pki->{ca}";
for my $c (['TLS HTTP/1.1', "--http1.1 $tls https://a.test:" . $tg->port(2) . '/big.bin', '1.1'],
           ['TLS HTTP/2', "--http2 $tls https://a.test:" . $tg->port(2) . '/big.bin', '2'],
           ['h2c', '--http2-prior-knowledge http://127.0.0.1:' . $tg->port(3) . '/big.bin', '2']) {
    my ($name, $args, $ver) = @$c;
    evict("$dir/big.bin");
    my $off = $tg->log_offset;
    my ($st, $body) = curl($args);
    is($st, "200 $ver", "$name: 200");
    is(length $body, length $big, "$name: whole length");
    ok($body eq $big, "$name: byte-exact");
  SKIP: {
        skip "$fs keeps every page in memory: nothing to read from disk", 1 if $fs eq 'tmpfs';
        ok($tg->wait_log(qr/file bytes \d+\+\d+ read in a thread/, 2, $off),
           "$name: the cold pages were read in a file thread");
    }
}
# compressed on the fly (the body filters read the file through the same
# copy path as TLS), cold, over plain HTTP
{
    evict("$dir/big.txt");
    my $off = $tg->log_offset;
    my $out = `curl -s --max-time 20 -H 'Accept-Encoding: gzip' -D $dir/gz.hdr -o $dir/gz.out http://127.0.0.1:@{[$tg->port]}/gz/big.txt`;
    my $hdr = do { local $/; open(my $h, '<', "$dir/gz.hdr"); <$h> } // '';
    like($hdr, qr/^content-encoding: gzip\r?$/mi, 'compress: gzip on the fly');
    my $plain = `gzip -dc $dir/gz.out`;
    ok($plain eq $big, 'compress: the cold file, byte-exact once decompressed');
  SKIP: {
        skip "$fs keeps every page in memory", 1 if $fs eq 'tmpfs';
        ok($tg->wait_log(qr/file bytes \d+\+\d+ read in a thread/, 2, $off),
           'compress: the cold pages were read in a file thread');
    }
}

# a range of a cold file, over TLS
evict("$dir/big.bin");
my ($st, $body) = curl("-r 1000000-1099999 --http1.1 $tls https://a.test:" . $tg->port(2) . '/big.bin');
is($st, '206 1.1', 'cold range over TLS: 206');
ok($body eq substr($big, 1000000, 100000), 'cold range over TLS: byte-exact');

# ---- a slow open: a file under a lease
my $broken = 0;
local $SIG{IO} = sub { $broken++ }; # the kernel tells the lease holder to let go
sub lease($p) {
    sysopen(my $fh, $p, O_RDONLY) or die "$p: $!";
    # EAGAIN while another descriptor of the file is open: the worker's
    # released one (or a scanner of the machine's) may still close; retry
    # for a while, bounded
    my $deadline = time + 5;
    until (fcntl($fh, F_SETLEASE, F_WRLCK)) {
        die "lease: $!" unless $!{EAGAIN} && time < $deadline;
        select(undef, undef, undef, 0.05);
    }
    return $fh;
}
sub bg_curl($url) {
    my $pid = fork // die;
    if (!$pid) {
        open(STDOUT, '>', "$dir/bg.out");
        exec('curl', '-s', '--max-time', '20', '-w', ' %{http_code}', $url);
        exit 127;
    }
    return $pid;
}
{
    my $fh = lease("$dir/lease.txt");
    my $off = $tg->log_offset;
    my $t0 = time;
    my $pid = bg_curl('http://127.0.0.1:' . $tg->port . '/lease.txt');
    ok(wait_until(sub { $broken }, 5), 'the open of the leased file breaks the lease (it is waiting)');
    my $r = $tg->http(GET => '/other.txt', timeout => 5);
    is("$r->{status} $r->{body}", "200 other\n", 'another client is answered meanwhile');
    cmp_ok($r->{time}, '<', 1, "at once ($r->{time} s), not after the lease");
    ok(waitpid($pid, WNOHANG) == 0, 'the leased file is still waiting');
    ok($tg->wait_log(qr/"lease.txt" opened in a thread/, 2, $off), 'its open went to a file thread');
    fcntl($fh, F_SETLEASE, F_UNLCK) or die "unlease: $!";
    close $fh;
    my $done = wait_until(sub { waitpid($pid, WNOHANG) == $pid }, 10);
    ok($done, 'the leased file is answered once the lease is released');
    open(my $o, '<', "$dir/bg.out");
    local $/;
    is(<$o>, "leased\n 200", 'with its content');
}
# a client that leaves while its open waits in a thread
{
    $broken = 0;
    my $fh = lease("$dir/lease.txt");
    my $pid = bg_curl('http://127.0.0.1:' . $tg->port . '/lease.txt');
    ok(wait_until(sub { $broken }, 5), 'second lease broken: the open waits');
    kill 'KILL', $pid;
    waitpid($pid, 0);
    sleep 0.2;
    fcntl($fh, F_SETLEASE, F_UNLCK) or die "unlease: $!";
    close $fh;
    my $r;
    ok(wait_until(sub {
        $r = $tg->http(GET => '/lease.txt', timeout => 5);
        ($r->{status} // 0) == 200;
    }, 10), 'after the client left: the file is served again');
    is($r->{body}, "leased\n", 'with its content');
    # the thread's late open reaches the loop as a completion event, which
    # may come after the answer above (that open found the file in the
    # dentry cache and ran in the loop): wait for it, bounded
    my $held;
    wait_until(sub {
        $held = grep { (readlink($_) // '') =~ m{/lease\.txt$} } glob("/proc/$worker/fd/*");
        $held == 0;
    }, 3);
    is($held, 0, 'the abandoned open left no descriptor behind');
}

# a client that leaves while its read waits for a file thread: the only
# thread is held by an open a lease blocks, a cold read queues behind it,
# the HTTP/2 client gives up (curl --max-time) and its stream ends; when
# the lease goes, the thread runs the abandoned read and the pool releases
# it (the buffer back, the descriptor closed; ASan builds check the memory)
{
    $broken = 0;
    my $fh = lease("$dir/lease.txt");
    my $pid = bg_curl('http://127.0.0.1:' . $tg->port . '/lease.txt');
    ok(wait_until(sub { $broken }, 5), 'the only file thread waits on a leased open');
    evict("$dir/big.bin");
    my $off = $tg->log_offset;
    my $rc = system("curl -s --http2 --max-time 1 -o /dev/null $tls https://a.test:" . $tg->port(2) . '/big.bin');
    isnt($rc, 0, 'the HTTP/2 client gave up waiting');
    ok($tg->wait_log(qr/file bytes 0\+\d+ read in a thread/, 1, $off), 'its first read was queued for the thread');
    fcntl($fh, F_SETLEASE, F_UNLCK) or die "unlease: $!";
    close $fh;
    ok($tg->wait_log(qr/a file read finished after its request ended: released/, 10, $off),
       'the abandoned read ran and was released by the pool');
    ok(wait_until(sub { waitpid($pid, WNOHANG) == $pid }, 10), 'the leased file was served meanwhile');
    my $r = $tg->http(GET => '/other.txt');
    is("$r->{status} $r->{body}", "200 other\n", 'the worker serves on');
}

# ---- a FIFO in the tree never blocks
my $r = $tg->http(GET => '/fifo', timeout => 5);
is($r->{status}, 403, 'a FIFO: 403');
cmp_ok($r->{time}, '<', 1, 'at once');

# ---- the pool: the configured number of threads, started at first use
my @tasks = glob("/proc/$worker/task/*");
is(scalar @tasks, 2, 'the worker runs its loop and its one file thread');

# ---- variables in root and alias
for my $h ('a.test', 'b.test') {
    $r = Tollgate::Test::http_request($tg->port(4), GET => '/i.txt', host => $h);
    is("$r->{status} $r->{body}", "200 site $h\n", "root \$host: $h");
    $r = Tollgate::Test::http_request($tg->port(4), GET => "/by-arg/i.txt?site=$h");
    is("$r->{status} $r->{body}", "200 site $h\n", "alias \$arg_site: $h");
}
$r = Tollgate::Test::http_request($tg->port(4), GET => '/i.txt', host => 'c.test');
is($r->{status}, 404, 'root $host: no such directory: 404');
for my $bad ('..', '.', 'a.test/../b.test', '') {
    $r = Tollgate::Test::http_request($tg->port(4), GET => "/by-arg/i.txt?site=$bad");
    is($r->{status}, 404, "alias with \$arg_site=\"$bad\": 404 (no dot segment leads out)");
}
$r = Tollgate::Test::http_request($tg->port(4), GET => '/by-arg/../../lease.txt?site=a.test');
isnt($r->{status}, 200, 'a dot segment in the URI does not leave the evaluated root');

# ---- config errors
like(tg_conf_error("file_threads 0;\nserver { listen %%PORT%%; }"),
     qr/:1: invalid number "0" in "file_threads"/, 'file_threads 0: file:line error');
like(tg_conf_error("file_threads 2 queue=0;\nserver { listen %%PORT%%; }"),
     qr/:1: invalid queue "0"/, 'queue=0: error');
like(tg_conf_error("file_threads 2 size=3;\nserver { listen %%PORT%%; }"),
     qr/:1: invalid parameter "size=3"/, 'unknown parameter: error');
like(tg_conf_error("server { listen %%PORT%%; file_threads 2; }"),
     qr/:1: .*file_threads/, 'file_threads is main-only');
ok(tg_conf_ok("file_threads off;\nserver { listen %%PORT%%; root /tmp; }"), 'file_threads off');

done_testing;
