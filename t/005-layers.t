# The layer check (contrib/layercheck, docs/architecture.md "Rules"): the
# tree passes it, and it catches each kind of breach in a tree made here.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(make_path);

my $check = 'contrib/layercheck';
my $out = `$check . 2>&1`;
is($?, 0, 'the tree passes the layer check') or diag($out);
like($out, qr/no cycle, modules use public headers/, 'it says what it checked');

sub tree (%files) {
    my $dir = tempdir(CLEANUP => 1);
    make_path("$dir/src", "$dir/modules");
    for my $f (keys %files) {
        open(my $fh, '>', "$dir/$f") or die "$f: $!";
        print $fh $files{$f};
        close $fh;
    }
    my $o = `$check $dir 2>&1`;
    return ($? >> 8, $o);
}

my %ok = (
    'src/a.h' => "/* \@public a */\n#include \"b.h\"\n",
    'src/a.c' => "#include \"a.h\"\n",
    'src/b.h' => "/* b */\n",
    'src/b.c' => "#include \"b.h\"\n",
    'modules/m.c' => "#include \"a.h\"\n",
);
my ($rc, $o) = tree(%ok);
is($rc, 0, 'a layered tree passes') or diag($o);

($rc, $o) = tree(%ok, 'src/b.c' => "#include \"b.h\"\n#include \"a.h\"\n");
is($rc, 1, 'a .c including the header of a unit that includes it back fails');
like($o, qr/include cycle among src\/ units \{a b\}/, '... named as a cycle of units a and b');

($rc, $o) = tree(%ok, 'src/c.h' => "/* c */\n#include \"d.h\"\n", 'src/d.h' => "/* d */\n",
                 'src/d.c' => "#include \"e.h\"\n", 'src/e.h' => "/* e */\n", 'src/e.c' => "#include \"c.h\"\n");
is($rc, 1, 'a longer cycle through .c files fails');
like($o, qr/\{c d e\}/, '... with every unit in it');

($rc, $o) = tree(%ok, 'modules/m.c' => "#include \"b.h\"\n");
is($rc, 1, 'a module including a header without @public fails');
like($o, qr/modules\/m\.c includes src\/b\.h, which is not public/, '... naming the file and header');

($rc, $o) = tree(%ok, 'src/b.c' => "#include \"b.h\"\n" . ("int x;\n" x 1201));
is($rc, 1, 'a file over 1,200 lines fails');
like($o, qr/src\/b\.c has 1202 lines/, '... with its length');

done_testing;
