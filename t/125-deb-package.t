# `make deb`: builds build/deb/tollgate_VERSION_ARCH.deb with dpkg-buildpackage
# (debian/), then checks the package without touching the system's package
# database: its control data (shlibs dependencies, conffiles, the system user
# in postinst), its files (binary, unit with the package's paths, logrotate,
# config), lintian's verdict (only the tags explained in docs/deployment.md),
# and, unpacked with `dpkg -x` into a temporary root, that the installed
# binary passes `-t` on the installed config and answers a request.
# Slow (a full hardened build, about a minute): skipped without the tools.
use v5.36;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test;

my @tools = qw(dpkg-deb dpkg-buildpackage dpkg-shlibdeps dh fakeroot);
my @missing = grep { system("command -v $_ >/dev/null 2>&1") != 0 } @tools;
plan skip_all => "no @missing (contrib/install-deps.sh package installs them)" if @missing;
# the package holds the release build whatever the flavour under test: once is enough
plan skip_all => 'the package is the release build: tested in the release run'
    if ($ENV{TG_BIN} // '') =~ m{build/(asan|debug)/};

my $root = Tollgate::Test::repo_root();
my $log = tempdir('tollgate-deb-XXXXXX', TMPDIR => 1, CLEANUP => 1) . '/make-deb.log';
my $rc = system("cd $root && timeout 600 make DEPS_INSTALL=true deb >$log 2>&1");
my $out = Tollgate::Test::_slurp($log);
my ($deb) = $out =~ m{^built (build/deb/tollgate_\S+\.deb)$}m;
ok($deb && -f "$root/$deb", "make deb built $deb") or diag $out =~ s/^/  /mgr;
$deb or done_testing, exit;
$deb = "$root/$deb";
my $version = `dpkg-parsechangelog -S Version -l $root/debian/changelog` =~ s/\s+//r;
my $arch = `dpkg --print-architecture` =~ s/\s+//r;
like($deb, qr{/tollgate_\Q$version\E_\Q$arch\E\.deb$}, 'named tollgate_VERSION_ARCH.deb');
my $src_version = Tollgate::Test::_slurp("$root/src/core.h") =~ /TG_VERSION "([^"]+)"/ ? $1 : '?';
like($version, qr/^\Q$src_version\E-\d+$/, "debian/changelog $version matches TG_VERSION $src_version");

# ---- control data
my $control = `dpkg-deb -f $deb`;
like($control, qr/^Depends:.*\blibssl3\b/m, 'Depends from dpkg-shlibdeps (libssl3)');
like($control, qr/^Depends:.*\bliblua/m, 'Depends: LuaJIT');
like($control, qr/^Depends:.*\badduser\b/m, 'Depends: adduser (postinst)');
my $ctrl = tempdir('tollgate-ctrl-XXXXXX', TMPDIR => 1, CLEANUP => 1);
system('dpkg-deb', '-e', $deb, $ctrl) == 0 or die;
is_deeply([sort split /\n/, Tollgate::Test::_slurp("$ctrl/conffiles")],
          ['/etc/logrotate.d/tollgate', '/etc/tollgate/tollgate.conf'],
          'conffiles: the config and the logrotate file (never overwritten)');
like(Tollgate::Test::_slurp("$ctrl/postinst"), qr/adduser --system\b.*\btollgate\b/,
     'postinst creates the system user');
like(Tollgate::Test::_slurp("$ctrl/postinst"), qr/systemctl|deb-systemd-helper/,
     'postinst enables the unit (dh_installsystemd)');

# ---- files
my $tree = tempdir('tollgate-root-XXXXXX', TMPDIR => 1, CLEANUP => 1);
system('dpkg', '-x', $deb, $tree) == 0 or die 'dpkg -x';
ok(-x "$tree/usr/sbin/tollgate", '/usr/sbin/tollgate');
my $unit = Tollgate::Test::_slurp("$tree/lib/systemd/system/tollgate.service");
like($unit, qr{^ExecStart=/usr/sbin/tollgate -c /etc/tollgate/tollgate\.conf}m,
     'unit runs the packaged binary and config');
unlike($unit, qr{/usr/local}, 'no /usr/local path left in the unit');
like(Tollgate::Test::_slurp("$tree/etc/logrotate.d/tollgate"), qr{/usr/sbin/tollgate -s reopen},
     'logrotate configuration');
my $conf = Tollgate::Test::_slurp("$tree/etc/tollgate/tollgate.conf");
like($conf, qr/^user tollgate tollgate;/m, 'workers run as the package user');
ok(-f "$tree/usr/share/tollgate/lua/tollgate/jwt.lua", 'Lua libraries');
my @man = grep { -f } glob("$root/man/*.[1-8] $root/doc/man/*.[1-8]");
SKIP: {
    skip 'no man pages in the tree yet', 1 unless @man;
    ok(-f "$tree/usr/share/man/man8/tollgate.8.gz", 'man pages installed');
}

# ---- lintian: clean but for the tags explained in docs/deployment.md
SKIP: {
    skip 'lintian not installed', 1 if system('command -v lintian >/dev/null 2>&1') != 0;
    my @tags = map { /^[EW]: tollgate: (\S+)/ ? $1 : () } split /\n/, `lintian $deb 2>/dev/null`;
    my $doc = Tollgate::Test::_slurp("$root/docs/deployment.md");
    my @unexplained = grep { $doc !~ /`\Q$_\E`/ } @tags;
    is_deeply(\@unexplained, [], 'lintian: no error or warning left unexplained')
        or diag "lintian tags: @tags";
}

# ---- the installed tree runs: -t on its config, then a request
my $up = node_upstream('echo');
(my $run = $conf) =~ s{^user tollgate tollgate;}{user nobody nogroup;}m;
$run =~ s{/var/log/tollgate/}{%%DIR%%/}g;
$run =~ s{/run/tollgate/}{%%DIR%%/}g;
$run =~ s{^workers auto;}{workers 1;}m;
$run =~ s{listen 80;}{listen %%PORT%%;};
$run =~ s{127\.0\.0\.1:3000}{127.0.0.1:$up->{port}}g;
{
    local $ENV{TG_BIN} = "$tree/usr/sbin/tollgate";
    my $t = tg_conf_test($run, raw => 1);
    is($t->{exit}, 0, 'installed binary: -t accepts the installed config (paths moved to a temp dir)')
        or diag $t->{output};
    my $tg = tg_start($run, raw => 1);
    my $r = $tg->http(GET => '/gateway-health');
    is($r->{body}, "ok\n", 'installed tollgate answers');
    is($tg->http(GET => '/via')->{status}, 200, 'and proxies to the upstream');
    $tg->stop;
}
done_testing;
