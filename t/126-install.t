# `make install` gives a tree that runs as installed: the binary finds its
# config without -c and its Lua libraries without lua_package_path (both
# paths compiled in from PREFIX/SYSCONFIG/DATADIR), the config is 0640 and
# an edited one is never overwritten, and the installed gateway serves.
#
# The build directory of the flavour under test is copied first, so only the
# three objects that hold the paths are rebuilt, in the copy: the binary the
# rest of the suite runs is never touched.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);

my $root = repo_root();
my $bin = File::Spec->rel2abs($ENV{TG_BIN} // "$root/build/tollgate");
my ($flavour, $build) = $bin =~ m{build/asan/} ? ('SANITIZE=1', 'asan')
                      : $bin =~ m{build/debug/} ? ('DEBUG=1', 'debug') : ('', 'release');
my $tmp = tempdir('tg-install-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp; # the workers (nobody) enter it
my $prefix = "$tmp/root";
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES TG_MAKE_STAGE)};

system('cp', '-a', "$root/build/$build", "$tmp/b") == 0 or BAIL_OUT("cannot copy build/$build");
sub install() {
    my $out = `cd $root && make --no-print-directory TG_MAKE_STAGE=inner $flavour BUILD=$tmp/b PREFIX=$prefix install 2>&1`;
    is($?, 0, 'make install PREFIX=...') or diag $out;
    return $out;
}
my $out = install();
my @rebuilt = sort $out =~ m{-o \Q$tmp\E/b/(\S+\.o)\b}g;
is_deeply(\@rebuilt, [qw(modules/lua.o src/main.o src/version.o)],
          'only the objects holding the paths were rebuilt');
ok(-l "$root/build/tollgate" && readlink("$root/build/tollgate") !~ /\Q$tmp\E/,
   "the tree's build/tollgate link is left alone");

my $conf = "$prefix/etc/tollgate/tollgate.conf";
ok(-x "$prefix/bin/tollgate", 'bin/tollgate');
ok(-f $conf, 'etc/tollgate/tollgate.conf');
is(sprintf('%04o', (stat $conf)[2] & 07777), '0640', 'the config is 0640');
ok(-f "$prefix/share/tollgate/lua/tollgate/jwt.lua", 'the Lua libraries in share/tollgate/lua');
ok(-f "$prefix/share/man/man8/tollgate.8", 'tollgate(8)');
ok(-f "$prefix/lib/systemd/system/tollgate.service", 'the unit');
like(Tollgate::Test::_slurp("$prefix/lib/systemd/system/tollgate.service"),
     qr{ExecStart=\Q$prefix\E/bin/tollgate -c \Q$conf\E}, "the unit's paths are the install's");

my $tg = "$prefix/bin/tollgate";
my $v = `$tg -V 2>&1`;
like($v, qr{config\s+\Q$conf\E \(default of -c\)}, '-V: the compiled-in config path');
like($v, qr{lua\s+\Q$prefix\E/share/tollgate/lua\b}, '-V: the Lua libraries');

# the installed config, its run-time paths moved into the temp dir, an
# upstream, and a Lua script that needs the installed library
my $up = node_upstream('echo');
my $port = free_port();
mkdir "$tmp/$_" for qw(run log scripts);
chmod 0755, "$tmp/$_" for qw(run log scripts);
Tollgate::Test::_spew("$tmp/scripts/jwt.lua", <<'LUA');
local jwt = require "tollgate.jwt"
tg.exit(200, "jwt.verify is a " .. type(jwt.verify) .. "\n")
LUA
chmod 0644, "$tmp/scripts/jwt.lua";
my $text = Tollgate::Test::_slurp($conf);
$text =~ s{/run/tollgate}{$tmp/run}g;
$text =~ s{/var/log/tollgate}{$tmp/log}g;
$text =~ s{listen 80;}{listen 127.0.0.1:$port;};
$text =~ s{127\.0\.0\.1:3000}{$up->{addr}}g;
$text =~ s{(location = /gateway-health)}{location = /lua { lua_access $tmp/scripts/jwt.lua; }\n    $1};
Tollgate::Test::_spew($conf, $text);
chmod 0640, $conf;

$out = `$tg -t 2>&1`;
is($?, 0, 'tollgate -t without -c reads the installed config') or diag $out;
like($out, qr/configuration file \Q$conf\E test is successful/, 'and names it');
unlike($out, qr/warning/, 'no warning: nothing there is world-readable') or diag $out;

my $pid = Tollgate::Test::_spawn([$tg], "$tmp/stderr.log");
ok(wait_until(sub { -s "$tmp/run/tollgate.pid" }, 10), 'started without -c: pid file written')
    or diag Tollgate::Test::_slurp("$tmp/stderr.log");
my $r = Tollgate::Test::http_request($port, GET => '/gateway-health');
is($r->{body}, "ok\n", 'the installed gateway answers');
$r = Tollgate::Test::http_request($port, GET => '/hello');
is($r->{status}, 200, 'and proxies to the upstream') or diag Tollgate::Test::_slurp("$tmp/log/error.log");
$r = Tollgate::Test::http_request($port, GET => '/lua');
is($r->{body}, "jwt.verify is a function\n",
   'require "tollgate.jwt" finds the installed library with the default lua_package_path')
    or diag explain $r, Tollgate::Test::_slurp("$tmp/log/error.log");
system($tg, '-s', 'stop');
is($?, 0, 'tollgate -s stop without -c');
ok(wait_until(sub { defined Tollgate::Test::_reap($pid) }, 15), 'the master stopped');
Tollgate::Test::_kill_group($pid, 'KILL', 1);

# make install again: the edited config stays
install();
is(Tollgate::Test::_slurp($conf), $text, 'make install never overwrites an existing config');
done_testing;
