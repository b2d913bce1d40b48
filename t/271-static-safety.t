# Static files, safety (issue 22): no request reaches a file outside the
# root, whatever the encoding (raw request targets, so no client normalises
# them first); symlinks out of the root refused unless `disable_symlinks
# off`, every symlink refused with `disable_symlinks on`; a FIFO in the tree
# does not block the worker.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test;
use File::Temp qw(tempdir);
use POSIX qw(mkfifo);

my $base = tempdir('tg-static-safe-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $base; # the workers run as nobody (the suite runs as root)
mkdir "$base/www";
mkdir "$base/www/d";
sub spew($p, $d) { open(my $fh, '>', $p) or die "$p: $!"; print $fh $d; close $fh }
spew("$base/secret.txt", "TOPSECRET\n");
spew("$base/www/ok.txt", "fine\n");
spew("$base/www/d/in.txt", "inside\n");
symlink("$base/secret.txt", "$base/www/abs-out") or die;
symlink("../secret.txt", "$base/www/rel-out") or die;
symlink("ok.txt", "$base/www/in-link") or die;
symlink("..", "$base/www/d/up") or die;
mkfifo("$base/www/fifo", 0644) or die "mkfifo: $!";

my $tg = tg_start(<<"EOF");
server {
    listen %%PORT%%;
    root $base/www;
    location /nolinks/ { alias $base/www/; disable_symlinks on; }
    location /links/ { alias $base/www/; disable_symlinks off; }
    location /al/ { alias $base/www/d/; }
}
EOF

sub raw_get($target) {
    my $res = $tg->raw("GET $target HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    my ($st) = $res =~ m{^HTTP/1\.1 (\d{3})};
    return ($st // 0, $res);
}

my @attacks = (
    '/../secret.txt', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt', '/.%2e/secret.txt',
    '/%2e./secret.txt', '/..%2fsecret.txt', '/..%2Fsecret.txt', '/%2e%2e%2fsecret.txt',
    '/d/../../secret.txt', '/d/%2e%2e/%2e%2e/secret.txt', '/d/..%2f..%2fsecret.txt',
    '/..\\secret.txt', '/%2e%2e%5csecret.txt', '/..%5csecret.txt', '/d\\..\\..\\secret.txt',
    '/%5c..%5csecret.txt', '/ok.txt%00.png', '/%00', '/secret.txt%00', '/%2e%2e%00/secret.txt',
    '//../secret.txt', '/./../secret.txt', '/d/./../../secret.txt', '/%252e%252e/secret.txt',
    '/..%252fsecret.txt', '/%c0%ae%c0%ae/secret.txt', '/%c0%af../secret.txt',
    '/abs-out', '/rel-out', '/d/up/../secret.txt', '/d/up/d/up/../secret.txt', '/al/../secret.txt',
    '/al/%2e%2e/secret.txt', '/al/up/../secret.txt', '/nolinks/in-link', '/nolinks/abs-out',
    '/nolinks/d/up/ok.txt', '/.%2e/.%2e/secret.txt', '/..;/secret.txt', '/%2e%2e;/secret.txt',
    'http://x/../secret.txt', '/ok.txt/../../secret.txt',
);
cmp_ok(scalar @attacks, '>=', 30, scalar(@attacks) . ' traversal attempts');
for my $t (@attacks) {
    my ($st, $res) = raw_get($t);
    ok($st >= 400 && $res !~ /TOPSECRET/, "refused: $t ($st)");
}

# what must still work
is((raw_get('/ok.txt'))[0], 200, 'a plain file');
like((raw_get('/in-link'))[1], qr/fine/, 'a symlink inside the root (default)');
like((raw_get('/d/up/ok.txt'))[1], qr/fine/, 'a relative symlink staying inside the root');
like((raw_get('/al/in.txt'))[1], qr/inside/, 'alias');
is((raw_get('/nolinks/ok.txt'))[0], 200, 'disable_symlinks on: plain files still served');
like((raw_get('/links/abs-out'))[1], qr/TOPSECRET/, 'disable_symlinks off: followed anywhere (as serve-static)');
like((raw_get('/links/rel-out'))[1], qr/TOPSECRET/, 'disable_symlinks off: relative too');

# a FIFO neither blocks nor is served
my $t0 = time;
my ($st) = raw_get('/fifo');
is($st, 403, 'a FIFO: 403');
is((raw_get('/ok.txt'))[0], 200, 'the worker still answers');

done_testing;
