# The Makefile on a fresh machine: the packages are installed before anything
# reads their flags, so every top-level target works the first time, serial
# and with -j (it used to fail once with "lua.h: No such file or directory"
# and work the second time).
#
# The fresh machine is simulated, not reinstalled: pkg-config looks only in an
# empty directory (PKG_CONFIG_LIBDIR), and DEPS_INSTALL is a fake install step
# that fills it with links to the real .pc files and logs its call. Builds go
# to a temp BUILD directory, a couple of objects only, so the test stays fast
# and leaves the worktree alone.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test qw(repo_root);

my $root = repo_root();
my $tmp = tempdir(CLEANUP => 1);
chomp(my $pc_path = `pkg-config --variable pc_path pkg-config`);
my @real_pc = grep { -f } map { glob("$_/*.pc") } split /:/, $pc_path;
ok(@real_pc > 10, 'found the real .pc files') or BAIL_OUT('pkg-config has no .pc files');

# a make started by `make test` inherits the stage and jobserver of that make
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES TG_MAKE_STAGE TG_FUZZ_STAGE)};
$ENV{PKG_CONFIG_PATH} = '';

# fake-install SETS...: logs its arguments, then "installs" the .pc files of
# every package but those named in $SKIP (one per line)
sub fake_install($dir, $skip = '') {
    mkdir $dir;
    my $script = "$dir.install";
    open(my $f, '>', $script) or die $!;
    print $f "#!/bin/sh\necho \"\$*\" >> $dir.log\n";
    for my $pc (@real_pc) {
        my $name = $pc =~ s{.*/}{}r;
        next if $skip =~ /^\Q$name\E$/m;
        print $f "ln -sf '$pc' '$dir/$name'\n";
    }
    close $f;
    chmod 0755, $script;
    return $script;
}

sub slurp($file) { open(my $f, '<', $file) or return ''; local $/; return scalar <$f> }

# make in the repo, output (stdout+stderr) and exit code
sub run_make(@args) {
    my $pid = open(my $out, '-|') // die "fork: $!";
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT);
        exec('make', '-C', $root, '--no-print-directory', @args) or exit 127;
    }
    local $/;
    my $text = <$out> // '';
    close $out;
    return ($text, $? >> 8);
}

# 1. A real build on the fresh machine, with -j2: two objects that include
# lua.h, ev.h, llhttp.h and pcre2.h. They compile only if the flags were
# computed after the install step, and the install ran once.
{
    my $pc = "$tmp/pc1";
    my $install = fake_install($pc);
    local $ENV{PKG_CONFIG_LIBDIR} = $pc;
    is(system('sh', '-c', 'pkg-config --exists luajit 2>/dev/null') >> 8, 1,
        'fresh machine: pkg-config knows no luajit');
    my $b = "$tmp/b";
    my @goals = ("$b/src/lua_vm.o", "$b/src/main.o");
    my ($out, $rc) = run_make('-j2', "BUILD=$b", 'OPT=-O0', "DEPS_INSTALL=$install", @goals);
    is($rc, 0, 'make -j2 works the first time') or diag $out;
    unlike($out, qr/No such file or directory/, 'no missing header');
    ok(-f $_, "built $_") for @goals;
    is(slurp("$pc.log"), "build\n", 'the build set was installed, once');
    like($out, qr/-I\S*luajit/, 'compiled with the luajit flags');

    # installed now: the next make neither installs nor rebuilds
    ($out, $rc) = run_make('-j2', "BUILD=$b", 'OPT=-O0', "DEPS_INSTALL=$install", @goals);
    is($rc, 0, 'second make');
    is(slurp("$pc.log"), "build\n", 'nothing to install the second time');
    unlike($out, qr/\bcc\b.*-c -o/, 'nothing rebuilt');
}

# 2. Every top-level target, serial and -j2, on a machine that lacks one of the
# packages: `make -n` shows the install step, then the compiler lines with the
# flags pkg-config gives once installed. (Under -n make runs only the sub-make
# itself, which is how the order shows; the install step is not run, so the
# package missing is one the outer stage checks and the inner one does not: a
# PKGS_NEXT entry, here one that exists nowhere, whatever PKGS links.)
{
    my $pc = "$tmp/pc2";
    my $install = fake_install($pc);
    system($install) == 0 or die "fake install: $?";
    unlink "$pc.log";
    local $ENV{PKG_CONFIG_LIBDIR} = $pc;
    # '' is `make` without a goal: it must build and link the binary as `all` does
    for my $goal ('', qw(all run test install bench fuzz unit build/tollgate)) {
        for my $j ('-j1', '-j2') {
            my ($out, $rc) = run_make('-n', $j, "BUILD=$tmp/n", "DEPS_INSTALL=$install",
                'PKGS_NEXT=tollgate-fresh-build-probe', length $goal ? $goal : ());
            is($rc, 0, "make -n $j $goal") or diag $out;
            like($out, qr{-o \Q$tmp\E/n/tollgate\b}m, "make -n $j $goal: links the binary")
                if $goal eq '' || $goal eq 'all';
            my @lines = split /\n/, $out;
            my ($inst) = grep { $lines[$_] =~ /\Q$install\E build/ } 0 .. $#lines;
            my ($cc) = grep { $lines[$_] =~ /^(?:cc|clang)\b.* -c |^clang\b/ } 0 .. $#lines;
            ok(defined $inst, "$goal $j: installs the build set") or diag $out;
            ok(defined $cc && defined $inst && $inst < $cc, "$goal $j: before compiling");
            like($lines[$cc // 0], qr/-I\S*luajit/, "$goal $j: with the flags") or diag $out;
        }
    }
    # clean needs no package
    my ($out, $rc) = run_make('-n', "BUILD=$tmp/n", "DEPS_INSTALL=$install", 'clean');
    is($rc, 0, 'make -n clean');
    unlike($out, qr/\Q$install\E/, 'clean installs nothing');
}

done_testing;
