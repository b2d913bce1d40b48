# Logs as nginx users expect: error_log and access_log to syslog (RFC 3164
# datagrams to a UDP listener of the test: PRI, timestamp, host, tag), the
# parameters checked at load; and rotation as contrib/logrotate/tollgate does
# it: the files renamed, then its postrotate command (`tollgate -s reopen`),
# and the new files are written.
use v5.36;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use lib 't/lib';
use Tollgate::Test;

sub listener() {
    my $s = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0)
        or die "udp: $!";
    return $s;
}

# Datagrams received until one matches $re or $timeout passes; the match or undef.
sub wait_datagram($s, $re, $timeout = 5) {
    my $sel = IO::Select->new($s);
    my $end = time + $timeout;
    while ((my $left = $end - time) > 0) {
        next unless $sel->can_read($left);
        my $msg;
        $s->recv($msg, 65536) // next;
        return $msg if $msg =~ $re;
    }
    return undef;
}

my $err = listener();
my $acc = listener();
my ($ep, $ap) = ($err->sockport, $acc->sockport);
my $host = `hostname` =~ s/\s+//gr;

my $tg = tg_start(<<"C");
error_log syslog:server=127.0.0.1:$ep,facility=local3,tag=tg_err info;
workers 1;
server {
    listen %%PORT%%;
    access_log syslog:server=127.0.0.1:$ap,tag=tg_acc combined;
    location / { return 200 "hi"; }
    location /nohost { access_log syslog:server=127.0.0.1:$ap,nohostname,severity=notice,facility=user json; return 204; }
}
C

# local3 = 19, info = 6: PRI 158
my $m = wait_datagram($err, qr/started: 1 workers/);
ok($m, 'error log line arrived over UDP') or diag "nothing on port $ep";
like($m, qr/^<158>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \Q$host\E tg_err: \[info\] \d+#-1: started/,
     'RFC 3164: <local3.info>, timestamp, host, tag, then the line without its date');

is($tg->http(GET => '/hello?x=1', headers => { 'User-Agent' => 'sl/1' })->{status}, 200, 'request');
# local7 = 23 (the default), info: PRI 190
$m = wait_datagram($acc, qr{GET /hello});
like($m // '', qr{^<190>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \Q$host\E tg_acc: 127\.0\.0\.1 - - \[[^\]]+\] "GET /hello\?x=1 HTTP/1\.1" 200 2 "-" "sl/1"$},
     'access line: combined, one datagram, no newline, default facility local7 and severity info');

$tg->http(GET => '/nohost/a');
# user = 1, notice = 5: PRI 13, no host name
$m = wait_datagram($acc, qr{/nohost/a});
like($m // '', qr{^<13>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d tollgate: \{"time"}, 'nohostname, severity=, facility=, default tag, json');

$tg->signal('USR1');    # the worker reopens its logs; the master logs "logs reopened"
$m = wait_datagram($err, qr/logs reopened/);
ok($m, 'USR1 with syslog destinations: still logging');
is($tg->http(GET => '/after')->{status}, 200, 'request after USR1');
ok(wait_datagram($acc, qr{GET /after}), 'access log still sent after USR1 (socket reopened)');
$tg->stop;

# a server that does not listen: nothing blocks, requests go on
{
    my $gone = listener();
    my $p = $gone->sockport;
    close $gone;
    my $t = tg_start(<<"C");
server { listen %%PORT%%; access_log syslog:server=127.0.0.1:$p; location / { return 200; } }
C
    my $t0 = time;
    my @s = map { $t->http(GET => "/x$_")->{status} } 1 .. 50;
    is(scalar(grep { $_ == 200 } @s), 50, 'no syslog server: every request answered');
    ok(time - $t0 < 5, 'and quickly (sends never wait)');
    $t->stop;
}

# config errors, with file:line
like(tg_conf_error("error_log syslog:server=127.0.0.1,facility=bogus;\n"),
     qr/^\S+:1: "error_log": unknown syslog facility.*: "bogus"/m, 'bad facility');
like(tg_conf_error("error_log syslog:tag=x;\n"), qr/:1: "error_log": syslog needs server=/m,
     'server= required');
like(tg_conf_error("server { listen 1; access_log syslog:server=127.0.0.1,sev=info; }\n"),
     qr/:1: "access_log": unknown syslog parameter.*: "sev=info"/m, 'unknown parameter');
like(tg_conf_error("server { listen 1; access_log syslog:server=127.0.0.1,tag=a.b; }\n"),
     qr/:1: "access_log": syslog tag: letters, digits/m, 'bad tag');
like(tg_conf_error("server { listen 1; access_log syslog:server=300.1.1.1:99999; }\n"),
     qr/:1: "access_log": invalid syslog server address: "300\.1\.1\.1:99999"/m, 'bad address');
ok(tg_conf_ok("error_log syslog:server=[::1]:5514,severity=error warn;\nserver { listen 1; }\n"),
   'IPv6 server, level');
ok(tg_conf_ok("error_log syslog:server=unix:/dev/log,nohostname;\nserver { listen 1; }\n"),
   'unix socket');

# ---- rotation as contrib/logrotate/tollgate does it --------------------------
{
    my $rot = Tollgate::Test::_slurp('contrib/logrotate/tollgate');
    my ($post) = $rot =~ /postrotate\n\s*(.*?)\n\s*endscript/s;
    like($post, qr{tollgate -s reopen}, 'contrib/logrotate/tollgate: postrotate reopens the logs');
    my $t = tg_start(<<'C');
server { listen %%PORT%%; access_log %%DIR%%/access.log; location / { return 200; } }
C
    my $dir = $t->dir;
    $t->http(GET => '/before');
    ok(wait_until(sub { -s "$dir/access.log" }, 5), 'access log written');
    rename("$dir/access.log", "$dir/access.log.1") or die;
    rename("$dir/error.log", "$dir/error.log.1") or die;
    # the postrotate command, with this test's binary and config
    (my $cmd = $post) =~ s{^\S*tollgate}{Tollgate::Test::_bin()}e;
    $cmd =~ s{-c \S+}{-c $dir/tollgate.conf};
    is(system($cmd), 0, "postrotate command: $cmd");
    ok(wait_until(sub { -s "$dir/error.log" }, 5), 'new error log created and written');
    $t->http(GET => '/after');
    ok(wait_until(sub { (Tollgate::Test::_slurp("$dir/access.log")) =~ m{GET /after} }, 5),
       'new access log written');
    unlike(Tollgate::Test::_slurp("$dir/access.log.1"), qr{/after}, 'rotated file has the old lines only');
    $t->stop;
}

# logrotate itself, when installed (the test set installs it)
SKIP: {
    my $lr = (grep { -x } map { "$_/logrotate" } split /:/, "$ENV{PATH}:/usr/sbin")[0];
    skip 'logrotate not installed (contrib/install-deps.sh test)', 3 unless $lr;
    my $t = tg_start(<<'C');
server { listen %%PORT%%; access_log %%DIR%%/access.log; location / { return 200; } }
C
    my $dir = $t->dir;
    $t->http(GET => '/one');
    ok(wait_until(sub { -s "$dir/access.log" }, 5), 'access log written');
    my $bin = Tollgate::Test::_bin();
    my $conf = Tollgate::Test::_slurp('contrib/logrotate/tollgate');
    $conf =~ s{/var/log/tollgate/}{$dir/}g;
    $conf =~ s{/usr/sbin/tollgate}{$bin}g;
    $conf =~ s{/etc/tollgate/tollgate\.conf}{$dir/tollgate.conf}g;
    $conf =~ s{^\s*(su|create)\b.*\n}{}mg;
    Tollgate::Test::_spew("$dir/logrotate.conf", $conf);
    is(system($lr, '-f', '-s', "$dir/logrotate.state", "$dir/logrotate.conf"), 0, 'logrotate -f ran');
    $t->http(GET => '/two');
    ok(wait_until(sub { (Tollgate::Test::_slurp("$dir/access.log")) =~ m{GET /two} && -e "$dir/access.log.1" }, 5),
       'after logrotate: rotated file and a new one with the next request');
    $t->stop;
}

done_testing;
