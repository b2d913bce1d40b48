# Runs the C unit tests (t/unit/*.c, built by `make unit` into
# $TG_UNIT_DIR, default build/release/unit): each prints TAP; each becomes
# one subtest here.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test qw(repo_root);

my $dir = $ENV{TG_UNIT_DIR} // repo_root() . '/build/release/unit';
my @bins = sort grep { -x $_ && !/\.d$/ } glob("$dir/*");
ok(@bins >= 4, "unit test binaries in $dir") or diag 'run make unit';
for my $bin (@bins) {
    my $name = $bin =~ s{.*/}{}r;
    my $out = `$bin 2>&1`;
    my $status = $?;
    my @not_ok = grep { /^not ok/ && !/# TODO/ } split /\n/, $out;
    my ($plan) = $out =~ /^1\.\.(\d+)/m;
    my $ran = () = $out =~ /^(?:not )?ok \d+/mg;
    ok($status == 0 && !@not_ok && defined $plan && $plan == $ran && $ran > 0,
       "unit/$name: $ran tests")
        or diag $out;
}
done_testing;
