# contrib/valgrind-smoke: the gateway under valgrind memcheck through a mix
# of traffic (proxy, TLS, compression, security headers, rate limiting, Lua,
# WebSocket, USR1, reload) must report no error in any process. Skipped in
# the sanitizer build (ASan and valgrind cannot run together).
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test qw(repo_root);

my $root = repo_root();
my $bin = $ENV{TG_BIN} // "$root/build/tollgate";
plan skip_all => 'sanitizer build (ASan and valgrind do not mix)'
    if -x $bin && `ldd '$bin' 2>/dev/null` =~ /libasan/;

my $pid = open(my $out, '-|') // die "fork: $!";
if ($pid == 0) {
    open(STDERR, '>&', \*STDOUT);
    exec("$root/contrib/valgrind-smoke") or die "exec: $!";
}
my $text = '';
my $timed_out = 0;
eval {
    local $SIG{ALRM} = sub { die "timeout\n" };
    alarm 180;
    local $/;
    $text = <$out> // '';
    alarm 0;
    1;
} or do { $timed_out = 1; kill 'TERM', $pid };
close $out;
my $rc = $? >> 8;
ok(!$timed_out, 'finished within 180 s');
is($rc, 0, 'valgrind-smoke exit status 0 (1: valgrind errors, 2: the run failed)');
like($text, qr/^valgrind-smoke: (\d+) processes, 0 errors/m, 'no valgrind error in any process');
unlike($text, qr/FAILED/, 'every traffic check passed');
diag($text) unless $rc == 0;
note($text);
done_testing;
