# The man pages: tollgate.conf(5) is what contrib/gen-man makes from docs/
# today (run `make man` after editing the docs), both pages render without a
# warning, tollgate(8) names every option of `tollgate -h`, and `make
# install` puts them under PREFIX/share/man.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);

my $root = repo_root();
my $bin = defined $ENV{TG_BIN} ? File::Spec->rel2abs($ENV{TG_BIN}) : "$root/build/tollgate";
sub slurp($f) { open(my $fh, '<', $f) or die "$f: $!"; local $/; return scalar <$fh> }

my $generated = `$root/contrib/gen-man`;
is($?, 0, 'contrib/gen-man runs');
my $committed = slurp("$root/man/tollgate.conf.5");
ok($generated eq $committed, 'man/tollgate.conf.5 is in step with docs/ (else: make man)')
    or diag `cd $root && contrib/gen-man | diff -u man/tollgate.conf.5 - | head -40`;

for my $page ("$root/man/tollgate.8", "$root/man/tollgate.conf.5") {
    my $warn = `MANWIDTH=80 man --warnings -l $page 2>&1 >/dev/null`;
    is($warn, '', "$page renders without warnings") or diag $warn;
    my $text = `MANWIDTH=80 man -l $page 2>/dev/null`;
    like($text, qr/^NAME\n\s+tollgate/m, "$page has a NAME section");
}

# every option of the usage is documented in tollgate(8)
my $usage = `$bin -h`;
my $page8 = `MANWIDTH=80 man -l $root/man/tollgate.8 2>/dev/null`;
my %opts = map { $_ => 1 } $usage =~ /(?:^|\s)(--?[A-Za-z][a-z-]*)/g;
$opts{'-h'} = 1; # --help's short form
ok(keys %opts >= 12, 'options found in the usage: ' . join(' ', sort keys %opts));
for my $o (sort keys %opts) {
    like($page8, qr/^\s{7}\Q$o\E\b/m, "tollgate(8) documents $o");
}
like($page8, qr/^SIGNALS\n(?s:.*)^\s+HUP\b(?s:.*)^\s+TERM\b(?s:.*)^\s+USR1\b/m, 'tollgate(8): signals');
like($page8, qr/^EXIT STATUS\n\s+0\s(?s:.*)^\s+1\s(?s:.*)^\s+2\s/m, 'tollgate(8): exit codes');
like($page8, qr/^FILES\n/m, 'tollgate(8): files');

# every directive of configuration.md's reference is in tollgate.conf(5)
my $page5 = `MANWIDTH=200 man -l $root/man/tollgate.conf.5 2>/dev/null`;
my @dirs = slurp("$root/docs/configuration.md") =~ /^### (\w+)/mg;
ok(@dirs > 40, scalar(@dirs) . ' directives in docs/configuration.md');
my @missing = grep { $page5 !~ /^\s+\Q$_\E\b/m } @dirs;
is("@missing", '', 'each of them has its subsection in tollgate.conf(5)');
for my $d (qw(rate_limit_zone security_headers compress cors lua_access tls_certificate try_files stats)) {
    like($page5, qr/\b\Q$d\E\b/, "tollgate.conf(5) covers $d");
}

# make install puts them under PREFIX/share/man (the install target, run with
# a temporary DESTDIR, for the flavour under test so nothing is rebuilt)
my $dest = tempdir(CLEANUP => 1);
my $flavour = $bin =~ m{build/asan/} ? 'SANITIZE=1' : $bin =~ m{build/debug/} ? 'DEBUG=1' : '';
my $out = `cd $root && make --no-print-directory TG_MAKE_STAGE=inner $flavour install DESTDIR=$dest PREFIX=/usr/local 2>&1`;
is($?, 0, 'make install') or diag $out;
for my $f ('share/man/man8/tollgate.8', 'share/man/man5/tollgate.conf.5') {
    ok(-f "$dest/usr/local/$f", "installed $f");
}
is(slurp("$dest/usr/local/share/man/man8/tollgate.8"), slurp("$root/man/tollgate.8"),
   'the installed tollgate.8 is the committed one');
done_testing;
