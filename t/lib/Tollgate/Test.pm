package Tollgate::Test;

# The test library: starts build/tollgate and Node test upstreams on free
# loopback ports, talks HTTP/1.1 to them, and checks the gateway's logs.
#
# Invariants it keeps:
# - Every process it starts runs in its own process group, is killed by
#   group when its guard is stopped or destroyed, at done_testing, at END,
#   and on SIGINT/SIGTERM/SIGHUP; with Linux's parent-death signal it also
#   goes away if the test process is SIGKILLed.
# - Every wait has a deadline; every connection goes to 127.0.0.1.
# - A gateway guard reports exactly one Test::More `ok` when it stops (unless
#   no_log_check): no [alert]/[crit]/[emerg] line, no sanitizer report, no
#   [error] line except the ones in errors_ok, a clean exit and no process
#   left in its group. It stops, at the latest, when the Test2 hub it was
#   started in finalizes (done_testing, or the end of a subtest).
# - Only core Perl 5.36 modules.
#
# Usage (see t/010-harness.t and STYLE.md "Tests"):
#   use Test::More; use lib 't/lib'; use Tollgate::Test;
#   my $up = node_upstream('echo');
#   my $tg = tg_start("server { listen %%PORT%%; location / { proxy_pass $up->{addr}; } }");
#   my $r  = $tg->http(GET => '/x');
#   is(decode_json($r->{body})->{url}, '/x');   # what the upstream received
#   done_testing;        # use done_testing, not a fixed plan: each guard adds one ok
#
# API (exported by default unless marked):
#   tg_start($conf, %o) -> gateway guard. Snippet placeholders: %%PORT%%,
#       %%PORT2%%..%%PORT9%% (distinct free ports), %%DIR%% (temp prefix),
#       %%ROOT%% (repo root). "pid DIR/tollgate.pid; error_log DIR/error.log
#       info; workers 1;" go on line 1 unless the snippet sets them.
#       %o: wait_port (index, 0 = don't wait), errors_ok => [qr//], no_log_check,
#       env => {}, args => [], files => {name => text}, timeout, stop_timeout.
#   $tg->port($n) pid dir conf_file error_log stderr exit_status worker_pids
#       log_offset log_problems
#   $tg->http($method, $path, %o) -> response (see http_request)
#   $tg->raw($bytes, %o) -> bytes read until close/timeout; (bytes, closed) in list
#   $tg->keepalive(%o) -> client: ->request(...), ->write($bytes),
#       ->read_response(method => ...), ->is_closed($s), ->close
#   $tg->signal('HUP') / $tg->reload($conf) -> log offset before; then
#   $tg->wait_log(qr//, $timeout, $offset) -> matching log line or undef
#   $tg->stop -> wait status (TERM, 10 s, KILL; then the log check)
#   tg_conf_error($conf) -> output of `tollgate -t`; tg_conf_ok($conf) -> bool;
#   tg_conf_test($conf) -> {exit, status, output, file, dir}
#   node_upstream($name, %o) -> {addr, port, pid, name} with ->http ->raw
#       ->keepalive ->log ->clear_log ->output ->is_running ->stop;
#       %o: env => {}, port => N, args => [], timeout
#   free_port() wait_until($code, $timeout, $interval) body_pattern($n, $offset)
#   http_request($port, ...) raw_request($port, ...) repo_root() tg_npm_setup()
#       (on request)
#
# Environment: TG_BIN (gateway binary, default build/tollgate), TG_NODE
# (node binary), TG_KEEP=1 (keep the temp dirs for a look afterwards).

use v5.36;

use Config;
use Cwd qw(abs_path);
use Exporter qw(import);
use Fcntl qw(:flock);
use File::Basename qw(dirname);
use File::Path ();
use File::Spec;
use File::Temp qw(tempdir);
use IO::Handle;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(refaddr weaken);
use Socket qw(IPPROTO_TCP TCP_NODELAY SHUT_WR);
use Test::More ();
use Test2::API ();
use Time::HiRes qw(time sleep);

our @EXPORT = qw(tg_start tg_conf_error tg_conf_ok tg_conf_test node_upstream
                 free_port wait_until body_pattern);
our @EXPORT_OK = qw(http_request raw_request repo_root tg_npm_setup);

our $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/../../..');
my $OWNER = $$;          # only this process stops what it started (tests may fork)
my %LIVE;                # refaddr => weakened guard (gateways and upstreams)
my %PGROUPS;             # pid => 1 for every process group started and not yet reaped
my %PORT_LOCK;           # port => flock'ed handle, held for the life of the test
my %HUB_HOOKED;          # Test2 hub id => 1 once a follow-up is registered on it
my $LATE_FAILURE = 0;    # a check failed after its Test2 hub had ended
my $NPM_READY = 0;

sub repo_root() { $ROOT }

# Writes to a socket whose peer is gone must fail with EPIPE, not kill the test.
$SIG{PIPE} = 'IGNORE';
for my $sig (qw(INT TERM HUP)) {
    my $cur = $SIG{$sig};
    $SIG{$sig} = \&_on_fatal_signal if !defined $cur || $cur eq '' || $cur eq 'DEFAULT';
}

# ---------------------------------------------------------------- small helpers

sub _slurp($file) {
    open(my $fh, '<:raw', $file) or return '';
    local $/;
    return scalar(<$fh>) // '';
}

sub _spew($file, $data) {
    my $tmp = "$file.tmp.$$";
    open(my $fh, '>:raw', $tmp) or die "write $tmp: $!";
    print $fh $data;
    close($fh) or die "write $tmp: $!";
    rename($tmp, $file) or die "rename $tmp: $!";
}

# Calls $code every $interval seconds until it returns a true value, which is
# returned; returns the last false value once $timeout seconds have passed.
sub wait_until($code, $timeout = 10, $interval = 0.05) {
    my $deadline = time + $timeout;
    while (1) {
        my $v = $code->();
        return $v if $v;
        return $v if time >= $deadline;
        sleep($interval);
    }
}

# N bytes of the pattern the echo upstream sends for /size, /chunked and
# /stream: byte i is ('a'..'z')[(i + $offset) % 26].
sub body_pattern($n, $offset = 0) {
    my $start = $offset % 26;
    return substr('abcdefghijklmnopqrstuvwxyz' x (int(($n + $start) / 26) + 1), $start, $n);
}

sub _status_text($st) {
    return 'unknown status' unless defined $st && $st >= 0;
    return 'exit code ' . WEXITSTATUS($st) if WIFEXITED($st);
    return 'killed by signal ' . WTERMSIG($st) . ' (' . (_signame(WTERMSIG($st)) // '?') . ')'
        if WIFSIGNALED($st);
    return "wait status $st";
}

sub _signame($num) {
    my @names = split ' ', $Config{sig_name};
    return $names[$num];
}

# ---------------------------------------------------------------- processes

# Linux prctl(PR_SET_PDEATHSIG): the child gets $sig when the test process
# dies, even by SIGKILL, when no END block can run.
my %PRCTL_NR = (x86_64 => 157, aarch64 => 167);

sub _set_parent_death_signal($sig, $parent) {
    my ($arch) = $Config{archname} =~ /^([^-]+)-linux/ or return;
    my $nr = $PRCTL_NR{$arch} // return;
    syscall($nr, 1, 0 + POSIX->can("SIG$sig")->());
    POSIX::_exit(1) if getppid() != $parent;    # the parent died before prctl
}

# Forks and execs @$cmd in a new process group, cwd the repo root, stdin from
# /dev/null, stdout and stderr appended to $out, %$env added to the
# environment. Returns the pid, which is also the process group id.
sub _spawn($cmd, $out, $env = {}, $death_sig = 'TERM') {
    STDOUT->flush;
    STDERR->flush;
    my $parent = $$;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        eval {
            POSIX::setpgid(0, 0);
            _set_parent_death_signal($death_sig, $parent);
            $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP QUIT CHLD ALRM USR1 USR2);
            open(STDIN, '<', '/dev/null') or die "stdin: $!";
            open(STDOUT, '>>', $out) or die "open $out: $!";
            open(STDERR, '>&', \*STDOUT) or die "dup stderr: $!";
            chdir($ROOT) or die "chdir $ROOT: $!";
            $ENV{$_} = $env->{$_} for keys %$env;
            exec { $cmd->[0] } @$cmd or die "exec $cmd->[0]: $!\n";
        };
        print STDERR "Tollgate::Test: $@";
        POSIX::_exit(127);
    }
    POSIX::setpgid($pid, $pid);    # also here, so the group exists before we return
    $PGROUPS{$pid} = 1;
    return $pid;
}

# Reaps $pid if it has exited: returns its wait status, -1 if it is not our
# child (already reaped), undef while it runs.
sub _reap($pid) {
    local ($?, $!);
    my $r = waitpid($pid, WNOHANG);
    return $? if $r == $pid;
    return -1 if $r == -1;
    return undef;
}

# Polls _reap until $pid exits or $timeout passes; the wait status or undef.
sub _wait_exit($pid, $timeout) {
    my $st;
    wait_until(sub { defined($st = _reap($pid)) }, $timeout, 0.01);
    return $st;
}

# Live (non-zombie) processes whose process group is $pgid, read from /proc.
sub _group_members($pgid) {
    my @pids;
    opendir(my $dh, '/proc') or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = _slurp("/proc/$p/stat");
        next unless $stat =~ /^\d+ \(.*\) (\S) -?\d+ (\d+) /s;
        push @pids, 0 + $p if $2 == $pgid && $1 ne 'Z' && $1 ne 'X';
    }
    @pids = sort { $a <=> $b } @pids;
    return @pids;    # in scalar context: how many
}

# Kills the whole group of $pid: $sig to the group, up to $grace seconds for
# the leader to exit, then SIGKILL to whatever is left. Returns the leader's
# wait status (or undef if it could not be reaped).
sub _kill_group($pid, $sig = 'TERM', $grace = 3) {
    my $st = _reap($pid);
    if (!defined $st) {
        kill($sig, -$pid);
        $st = _wait_exit($pid, $grace);
    }
    if (!defined $st) {
        kill('KILL', -$pid);
        $st = _wait_exit($pid, 5);
    }
    if (_group_members($pid)) {
        kill('KILL', -$pid);
        wait_until(sub { !_group_members($pid) }, 2, 0.01);
    }
    delete $PGROUPS{$pid};
    return $st;
}

# Stops everything this process started: gateways first (with their log
# check), then upstreams, then any group still recorded.
sub _stop_all($fast = 0) {
    my @guards = grep { defined } values %LIVE;
    for my $g (sort { ($a->isa('Tollgate::Test::Upstream') <=> $b->isa('Tollgate::Test::Upstream')) }
               @guards) {
        $fast ? $g->_kill_fast : $g->stop;
    }
    _kill_group($_, 'KILL', 1) for keys %PGROUPS;
}

sub _on_fatal_signal($sig, @) {
    if ($$ == $OWNER) {
        local $@;
        eval { _stop_all(1); File::Temp::cleanup() };
    }
    $SIG{$sig} = 'DEFAULT';
    kill($sig, $$);
    POSIX::_exit(128 + (POSIX->can("SIG$sig") // sub { 15 })->());
}

END {
    if ($$ == $OWNER) {
        my $exit = $?;
        eval { _stop_all(0); 1 } or print STDERR "Tollgate::Test cleanup: $@";
        $? = $exit;
        $? ||= 1 if $LATE_FAILURE;
    }
}

# ---------------------------------------------------------------- ports

sub _port_range() {
    my ($lo, $hi) = split ' ', _slurp('/proc/sys/net/ipv4/ip_local_port_range');
    $lo ||= 32768;
    $hi ||= 60999;
    return (20000, $lo - 1) if $lo > 21000;    # below the kernel's ephemeral range
    return ($hi + 1, 65000) if $hi < 64000;
    return (20000, 30000);
}

# A loopback TCP port nobody listens on and that no other test process holds:
# a lock file under $TMPDIR/tollgate-test-ports is kept locked until this
# process exits, so parallel test files (prove -j) never get the same port.
sub free_port() {
    my ($min, $max) = _port_range();
    my $dir = File::Spec->tmpdir . '/tollgate-test-ports';
    mkdir($dir);
    for (1 .. 1000) {
        my $port = $min + int(rand($max - $min + 1));
        next if $PORT_LOCK{$port};
        open(my $fh, '>>', "$dir/$port") or next;
        flock($fh, LOCK_EX | LOCK_NB) or next;
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                      Proto => 'tcp', Listen => 1) or next;
        close($s);
        $PORT_LOCK{$port} = $fh;
        return $port;
    }
    die "free_port: no free port in $min..$max\n";
}

sub _port_open($port) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close($s);
    return 1;
}

# ---------------------------------------------------------------- HTTP client

sub _headers_list($h) {
    return () unless defined $h;
    return map { ($_ => $h->{$_}) } sort keys %$h if ref $h eq 'HASH';
    return @$h;
}

# Builds one HTTP/1.x request. Options: headers (arrayref of pairs or
# hashref; a header given as undef is not sent), body (string or arrayref of
# pieces), chunked (send the body with Transfer-Encoding: chunked, one chunk
# per piece), host (Host value; default 127.0.0.1:PORT; host => undef sends
# none), version ('1.1'). Adds Content-Length for a defined body, and
# Connection: close when $close, unless the caller set those headers.
sub _build_request($method, $path, $port, $close, %o) {
    my @in = _headers_list($o{headers});
    my %have;
    for (my $i = 0; $i < @in; $i += 2) { $have{lc $in[$i]} = 1 }
    my @out;
    if (!$have{host} && !(exists $o{host} && !defined $o{host})) {
        push @out, [Host => $o{host} // "127.0.0.1:$port"];
    }
    for (my $i = 0; $i < @in; $i += 2) {
        push @out, [$in[$i], $in[$i + 1]] if defined $in[$i + 1];
    }
    my $body = '';
    if ($o{chunked}) {
        my @pieces = ref $o{body} eq 'ARRAY' ? @{$o{body}} : ($o{body} // ());
        push @out, ['Transfer-Encoding' => 'chunked'] unless $have{'transfer-encoding'};
        $body = join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) } grep { length } @pieces)
              . "0\r\n\r\n";
    } elsif (defined $o{body}) {
        $body = ref $o{body} eq 'ARRAY' ? join('', @{$o{body}}) : $o{body};
        push @out, ['Content-Length' => length $body]
            unless $have{'content-length'} || $have{'transfer-encoding'};
    }
    push @out, [Connection => 'close'] if $close && !$have{connection};
    my $version = $o{version} // '1.1';
    return "$method $path HTTP/$version\r\n"
         . join('', map { "$_->[0]: $_->[1]\r\n" } @out) . "\r\n" . $body;
}

# One HTTP request on a new connection to 127.0.0.1:$port, with
# Connection: close. Options: those of _build_request plus timeout (10 s).
# Returns a hashref:
#   status, reason, version        from the status line (status undef on failure)
#   headers      {lowercase name => value}, repeated names joined with ", "
#   header_list  [[name, value], ...] as received
#   body         decoded (chunked, Content-Length or read-to-close)
#   raw          the response bytes as received (head and body)
#   trailers     {lowercase name => value} of a chunked body
#   chunks       [sizes] of a chunked body
#   interim      [{status, reason, headers}] for 1xx responses before the final one
#   extra        bytes received after the response
#   closed       1 when the server closed the connection after the response
#   error        set when the response is incomplete or the connection failed
#   time         seconds from connect to the end of the response
sub http_request($port, $method, $path, %o) {
    my $t0 = time;
    my $timeout = $o{timeout} // 10;
    my $deadline = $t0 + $timeout;
    my ($c, $err) = Tollgate::Test::Conn->connect($port, $timeout);
    return { status => undef, error => $err, headers => {}, header_list => [], body => '',
             raw => '' } unless $c;
    my $req = _build_request($method, $path, $port, 1, %o);
    my $werr = $c->write_all($req, $deadline);
    my $res = $c->read_response($method, $deadline);
    $res->{error} //= $werr if $werr && !defined $res->{status};
    # Connection: close was asked for: give the server a moment to close.
    my $close_deadline = time + 2 < $deadline ? time + 2 : $deadline;
    1 while $c->fill($close_deadline);
    $res->{extra} = $c->{buf};
    $res->{closed} = $c->{eof} ? 1 : 0;
    $res->{time} = time - $t0;
    $c->close;
    return $res;
}

# Writes $bytes (a string, or an arrayref of pieces sent `pause` seconds
# apart, default 0.05) to a new connection, optionally shuts down the write
# side (half_close => 1), and returns everything read until the server
# closes or `timeout` (3 s) passes. In list context: (data, closed flag).
sub raw_request($port, $bytes, %o) {
    my $deadline = time + ($o{timeout} // 3);
    my ($c, $err) = Tollgate::Test::Conn->connect($port, $o{timeout} // 3);
    return wantarray ? ('', 1) : '' unless $c;
    my @pieces = ref $bytes eq 'ARRAY' ? @$bytes : ($bytes);
    for my $i (0 .. $#pieces) {
        sleep($o{pause} // 0.05) if $i;
        last if $c->write_all($pieces[$i], $deadline);
    }
    shutdown($c->{sock}, SHUT_WR) if $o{half_close};
    1 while $c->fill($deadline);
    my ($data, $closed) = ($c->{buf}, $c->{eof});
    $c->close;
    return wantarray ? ($data, $closed ? 1 : 0) : $data;
}

# ---------------------------------------------------------------- npm

# Runs t/setup.sh (npm install in t/ when needed) once per test process.
sub tg_npm_setup() {
    return 1 if $NPM_READY;
    my $out = `sh '$ROOT/t/setup.sh' 2>&1`;
    die "t/setup.sh failed:\n$out" if $?;
    return $NPM_READY = 1;
}

sub _needs_npm($script) {
    state $pkgs = eval {
        my $pj = JSON::PP::decode_json(_slurp("$ROOT/t/package.json"));
        [keys %{{ %{$pj->{devDependencies} // {}}, %{$pj->{dependencies} // {}} }}];
    } // [];
    my $src = _slurp($script);
    for my $p (@$pkgs) {
        return 1 if $src =~ /\b(?:require\(|from\s+)\s*['"]\Q$p\E(?:['"\/])/;
    }
    return 0;
}

# ---------------------------------------------------------------- node upstreams

# Starts `node t/upstream/$name.js` ($name may also be a path to a .js file)
# with PORT set to a free port, waits (10 s) until it accepts, and returns a
# Tollgate::Test::Upstream guard: {addr => "127.0.0.1:PORT", port, pid, name}.
# Options: env => {NAME => ...}, port => N (reuse a port, e.g. to restart a
# stopped upstream), args => [...], timeout => seconds.
sub node_upstream($name, %o) {
    my $script = $name =~ m{/|\.js$} ? $name : "t/upstream/$name.js";
    $script = File::Spec->rel2abs($script, $ROOT);
    die "node_upstream: no such script $script\n" unless -f $script;
    tg_npm_setup() if _needs_npm($script);
    my $node = $ENV{TG_NODE} // 'node';
    my $dir = tempdir('tg-upstream-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
    my $out = "$dir/output.log";
    my $last_error = '';
    for my $attempt (1 .. 3) {
        my $port = $o{port} // free_port();
        my $pid = _spawn([$node, $script, @{$o{args} // []}], $out,
                         { %{$o{env} // {}}, PORT => $port }, 'TERM');
        my $self = bless { addr => "127.0.0.1:$port", port => $port, pid => $pid,
                           name => $name, dir => $dir, output_file => $out, owner => $$ },
                         'Tollgate::Test::Upstream';
        $LIVE{refaddr $self} = $self;
        weaken($LIVE{refaddr $self});
        my $exited;
        my $up = wait_until(sub {
            return 1 if _port_open($port);
            $exited = _reap($pid);
            return defined $exited ? 'exited' : 0;
        }, $o{timeout} // 10, 0.02);
        return $self if $up && $up ne 'exited';
        $self->_kill_fast;
        my $log = _slurp($out);
        $last_error = ($up ? 'exited (' . _status_text($exited) . ')' : 'not listening after '
                       . ($o{timeout} // 10) . ' s') . "\n--- output ---\n$log";
        last if $o{port} || $log !~ /EADDRINUSE/;
        _spew($out, '');
    }
    die "node_upstream($name) failed to start: $last_error\n";
}

# ---------------------------------------------------------------- gateway

sub _bin() {
    my $bin = defined $ENV{TG_BIN} ? File::Spec->rel2abs($ENV{TG_BIN}) : "$ROOT/build/tollgate";
    die "no tollgate binary at $bin (build it first, or set TG_BIN)\n" unless -x $bin;
    return $bin;
}

# Starts the gateway with the config snippet $conf; see the file header and
# Tollgate::Test::Gateway below. Options:
#   wait_port    port index to poll until it accepts (default 1 when the
#                snippet uses %%PORT%%, else 0); 0 skips the wait
#   errors_ok    [qr/.../, ...] [error] lines that are expected
#   no_log_check 1 to skip the log check at stop
#   env          {NAME => value} added to the gateway's environment
#   args         extra command-line arguments
#   prefix       [command, args...] that execs the gateway (taskset, a shell
#                that joins a cgroup first): the spawned PID stays the master's
#   files        {relative name => content} written into the prefix dir
#                first (placeholders replaced), e.g. included configs
#   timeout      start deadline in seconds (10)
sub tg_start($conf, %o) {
    _bin();
    my $self = Tollgate::Test::Gateway->_new(%o);
    $self->_write_conf($conf, $o{files});
    $self->_launch($conf);
    return $self;
}

# Runs `tollgate -t -c FILE` on the snippet (placeholders replaced, pid,
# error_log and workers prepended on line 1 unless set, or nothing with
# raw => 1). Returns {exit, status, output (stdout+stderr), file, dir}.
sub tg_conf_test($conf, %o) {
    my $self = Tollgate::Test::Gateway->_new(%o);
    $self->{stopped} = 1;
    $self->_write_conf($conf, $o{files});
    my $out = "$self->{dir}/conf-test.log";
    my $pid = _spawn([_bin(), '-t', '-c', $self->{conf_file}, @{$o{args} // []}], $out,
                     $o{env} // {});
    my $st = _wait_exit($pid, $o{timeout} // 10);
    my $timed_out = !defined $st;
    $st = _kill_group($pid, 'KILL', 1) if $timed_out;
    _kill_group($pid, 'KILL', 1) if _group_members($pid);
    delete $PGROUPS{$pid};
    my $output = _slurp($out);
    $output .= "Tollgate::Test: tollgate -t did not exit within the deadline\n" if $timed_out;
    return { exit => (defined $st && $st >= 0 && WIFEXITED($st) ? WEXITSTATUS($st) : undef),
             status => $st, output => $output, file => $self->{conf_file},
             dir => $self->{dir} };
}

sub tg_conf_error($conf, %o) { return tg_conf_test($conf, %o)->{output} }

sub tg_conf_ok($conf, %o) {
    my $r = tg_conf_test($conf, %o);
    return defined $r->{exit} && $r->{exit} == 0;
}

# Called by a Test2 hub's finalize (done_testing, end of subtest): stops the
# gateways started under that hub, so their checks land before the plan.
sub _stop_hub($hid) {
    for my $g (grep { defined && $_->isa('Tollgate::Test::Gateway') } values %LIVE) {
        $g->stop if ($g->{hub} // '') eq $hid;
    }
}

sub _hook_hub() {
    my $hub = Test2::API::test2_stack()->top;
    my $hid = $hub->hid;
    $hub->follow_up(sub { _stop_hub($hid) if $$ == $OWNER }) unless $HUB_HOOKED{$hid}++;
    return $hid;
}

# ============================================================== connections

package Tollgate::Test::Conn;

# A non-blocking client connection with a read buffer; every call takes a
# deadline (absolute Time::HiRes time).

use v5.36;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

sub connect($class, $port, $timeout) {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                     Proto => 'tcp', Timeout => $timeout);
    return (undef, "connect 127.0.0.1:$port: " . ($! || $@)) unless $sock;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    $sock->blocking(0);
    return bless { sock => $sock, buf => '', eof => 0, port => $port }, $class;
}

# Waits for data and appends it to buf. Returns 1 when data arrived, 0 at
# end of stream (or a read error, kept in {error}), undef at the deadline.
sub fill($self, $deadline) {
    return 0 if $self->{eof};
    my $fd = fileno($self->{sock});
    while (1) {
        my $left = $deadline - time;
        return undef if $left <= 0;
        my $rin = '';
        vec($rin, $fd, 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $left);
        next if $n <= 0;
        my $r = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
        if (!defined $r) {
            next if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
            $self->{error} = "read: $!";
            $self->{eof} = 1;
            return 0;
        }
        if ($r == 0) {
            $self->{eof} = 1;
            return 0;
        }
        return 1;
    }
}

# Writes all of $data, reading whatever arrives meanwhile into buf (so a
# server answering before it has read the whole request cannot deadlock us).
# Returns undef on success or an error string.
sub write_all($self, $data, $deadline) {
    my $fd = fileno($self->{sock});
    my $off = 0;
    while ($off < length $data) {
        my $left = $deadline - time;
        return 'timeout writing request' if $left <= 0;
        my ($rin, $win) = ('', '');
        vec($win, $fd, 1) = 1;
        vec($rin, $fd, 1) = 1 unless $self->{eof};
        my $n = select(my $rout = $rin, my $wout = $win, undef, $left);
        next if $n <= 0;
        if (vec($rout, $fd, 1)) {
            my $r = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
            $self->{eof} = 1 if defined $r && $r == 0;
            $self->{eof} = 1 if !defined $r && !($!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR});
        }
        if (vec($wout, $fd, 1)) {
            my $w = syswrite($self->{sock}, $data, length($data) - $off, $off);
            if (!defined $w) {
                next if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
                return "write: $!";
            }
            $off += $w;
        }
    }
    return undef;
}

sub _fail($self, $res, $deadline_hit, $what) {
    $res->{error} //= $deadline_hit ? "timeout $what" : ($self->{error} // "connection closed $what");
    return $res;
}

# Reads one response (skipping 1xx interim ones except 101) and returns the
# hashref described at Tollgate::Test::http_request (without extra/closed).
# $method is the request's, for HEAD.
sub read_response($self, $method, $deadline) {
    my $res = { status => undef, reason => undef, version => undef, headers => {},
                header_list => [], body => '', raw => '', interim => [] };
    while (1) {
        $self->{buf} =~ s/\A(?:\r?\n)+//;
        my $end;
        while (1) {
            if ($self->{buf} =~ /\r?\n\r?\n/) {
                $end = $+[0];
                last;
            }
            my $r = $self->fill($deadline);
            next if $r;
            $res->{raw} .= $self->{buf};
            $self->{buf} = '';
            return $self->_fail($res, !defined $r, 'waiting for response headers');
        }
        my $head = substr($self->{buf}, 0, $end, '');
        $res->{raw} .= $head;
        my @lines = split /\r?\n/, $head;
        my $sl = shift(@lines) // '';
        if ($sl !~ m{^HTTP/(\d+\.\d+) (\d{3})(?: (.*))?$}) {
            $res->{error} = "bad status line: $sl";
            return $res;
        }
        @$res{qw(version status reason)} = ($1, 0 + $2, $3 // '');
        $res->{headers} = {};
        $res->{header_list} = [];
        for my $line (@lines) {
            if ($line =~ /^([^:\s]+):[ \t]*(.*?)[ \t]*$/) {
                push @{$res->{header_list}}, [$1, $2];
                my $k = lc $1;
                $res->{headers}{$k} = exists $res->{headers}{$k} ? "$res->{headers}{$k}, $2" : $2;
            } else {
                push @{$res->{bad_header_lines}}, $line;
            }
        }
        last unless $res->{status} >= 100 && $res->{status} < 200 && $res->{status} != 101;
        push @{$res->{interim}}, { map { $_ => $res->{$_} } qw(status reason headers header_list) };
    }

    my $status = $res->{status};
    my $te = $res->{headers}{'transfer-encoding'};
    my $cl = $res->{headers}{'content-length'};
    if ($method eq 'HEAD' || $status < 200 || $status == 204 || $status == 304) {
        return $res;
    } elsif (defined $te && $te =~ /(?:^|,)\s*chunked\s*$/i) {
        return $self->_read_chunked($res, $deadline);
    } elsif (defined $cl) {
        my ($n) = $cl =~ /^\s*(\d+)/;
        $n //= 0;
        while (length($self->{buf}) < $n) {
            my $r = $self->fill($deadline);
            next if $r;
            $res->{body} = $self->{buf};
            $res->{raw} .= $self->{buf};
            $self->{buf} = '';
            return $self->_fail($res, !defined $r,
                                "reading body (got " . length($res->{body}) . " of $n bytes)");
        }
        $res->{body} = substr($self->{buf}, 0, $n, '');
        $res->{raw} .= $res->{body};
        return $res;
    }
    $res->{read_to_close} = 1;
    while (1) {
        my $r = $self->fill($deadline);
        next if $r;
        $res->{body} = $self->{buf};
        $res->{raw} .= $self->{buf};
        $self->{buf} = '';
        return defined $r ? $res : $self->_fail($res, 1, 'reading body until close');
    }
}

sub _read_chunked($self, $res, $deadline) {
    $res->{chunks} = [];
    $res->{trailers} = {};
    my $body = '';
    # Reads until $ready->() is true; false (with {error} set) at EOF or deadline.
    my $need = sub ($ready, $what) {
        until ($ready->()) {
            my $r = $self->fill($deadline);
            next if $r;
            $res->{body} = $body;
            $res->{raw} .= $self->{buf};
            $self->{buf} = '';
            $self->_fail($res, !defined $r, "in chunked body ($what)");
            return 0;
        }
        return 1;
    };
    while (1) {
        $need->(sub { $self->{buf} =~ /\n/ }, 'chunk size') or return $res;
        if ($self->{buf} !~ /\A([0-9a-fA-F]+)[ \t]*(?:;[^\r\n]*)?\r?\n/) {
            $res->{error} = 'bad chunk size line: ' . ($self->{buf} =~ /\A([^\n]*)/)[0];
            $res->{body} = $body;
            return $res;
        }
        my ($size, $line_len) = (hex $1, $+[0]);
        if ($size == 0) {
            $res->{raw} .= substr($self->{buf}, 0, $line_len, '');
            while (1) {
                $need->(sub { $self->{buf} =~ /\n/ }, 'trailers') or return $res;
                $self->{buf} =~ /\A([^\n]*?)\r?\n/;
                my $line = $1;
                $res->{raw} .= substr($self->{buf}, 0, $+[0], '');
                last if $line eq '';
                $res->{trailers}{lc $1} = $2 if $line =~ /^([^:\s]+):[ \t]*(.*?)[ \t]*$/;
            }
            $res->{body} = $body;
            return $res;
        }
        $need->(sub { length($self->{buf}) >= $line_len + $size + 2 }, 'chunk data')
            or return $res;
        if (substr($self->{buf}, $line_len + $size, 2) ne "\r\n") {
            $res->{error} = 'missing CRLF after chunk data';
            $res->{body} = $body . substr($self->{buf}, $line_len, $size);
            return $res;
        }
        my $chunk = substr($self->{buf}, 0, $line_len + $size + 2, '');
        $res->{raw} .= $chunk;
        $body .= substr($chunk, $line_len, $size);
        push @{$res->{chunks}}, $size;
    }
}

sub close($self) {
    CORE::close($self->{sock}) if $self->{sock};
    delete $self->{sock};
}

# ============================================================== keep-alive client

package Tollgate::Test::Client;

# Several requests on one connection: $tg->keepalive(port => n, timeout => s).
# request() takes http()'s arguments but does not add Connection: close.

use v5.36;
use Time::HiRes qw(time);

sub new($class, $port, %o) {
    my ($c, $err) = Tollgate::Test::Conn->connect($port, $o{timeout} // 10);
    return bless { conn => $c, error => $err, port => $port, timeout => $o{timeout} // 10 },
                 $class;
}

sub _err($self, $msg) {
    return { status => undef, error => $msg, headers => {}, header_list => [], body => '',
             raw => '' };
}

sub request($self, $method, $path, %o) {
    return $self->_err($self->{error} // 'connection closed') unless $self->{conn};
    my $deadline = time + ($o{timeout} // $self->{timeout});
    my $req = Tollgate::Test::_build_request($method, $path, $self->{port}, 0, %o);
    my $werr = $self->{conn}->write_all($req, $deadline);
    my $res = $self->{conn}->read_response($method, $deadline);
    $res->{error} //= $werr if $werr && !defined $res->{status};
    return $res;
}

# Sends raw bytes on the connection (for pipelining or malformed requests);
# returns undef or an error string.
sub write($self, $bytes, %o) {
    return 'not connected' unless $self->{conn};
    return $self->{conn}->write_all($bytes, time + ($o{timeout} // $self->{timeout}));
}

# Reads the next response (method => 'HEAD' for a HEAD request).
sub read_response($self, %o) {
    return $self->_err('not connected') unless $self->{conn};
    return $self->{conn}->read_response($o{method} // 'GET',
                                        time + ($o{timeout} // $self->{timeout}));
}

# True once the server has closed the connection; waits up to $timeout
# seconds (default 1) for that. Data that arrives meanwhile stays buffered.
sub is_closed($self, $timeout = 1) {
    my $c = $self->{conn} or return 1;
    my $deadline = time + $timeout;
    while (!$c->{eof}) {
        last unless defined $c->fill($deadline);
    }
    return $c->{eof} ? 1 : 0;
}

sub close($self) {
    $self->{conn}->close if $self->{conn};
    delete $self->{conn};
}

sub DESTROY($self) { $self->close }

# ============================================================== upstream guard

package Tollgate::Test::Upstream;

# Returned by node_upstream: {addr, port, pid, name}. Stopped (the whole
# process group, TERM then KILL) by ->stop, on DESTROY and at END.

use v5.36;
use Scalar::Util qw(refaddr);

sub http($self, $method, $path, %o) {
    return Tollgate::Test::http_request($self->{port}, $method, $path, %o);
}

sub raw($self, $bytes, %o) { return Tollgate::Test::raw_request($self->{port}, $bytes, %o) }

sub keepalive($self, %o) { return Tollgate::Test::Client->new($self->{port}, %o) }

# The requests this upstream has recorded (echo.js's GET /__log), decoded.
sub log($self) {
    my $r = $self->http(GET => '/__log', timeout => 5);
    die "upstream $self->{name} /__log: " . ($r->{error} // "status $r->{status}") . "\n"
        unless ($r->{status} // 0) == 200;
    return JSON::PP::decode_json($r->{body});
}

sub clear_log($self) {
    my $r = $self->http(DELETE => '/__log', timeout => 5);
    return ($r->{status} // 0) == 200;
}

# What the process printed on stdout and stderr.
sub output($self) { return Tollgate::Test::_slurp($self->{output_file}) }

sub is_running($self) { return !$self->{stopped} && !defined Tollgate::Test::_reap($self->{pid}) }

sub _kill_fast($self) {
    return if $self->{stopped} || $$ != $self->{owner};
    $self->{stopped} = 1;
    $self->{exit_status} = Tollgate::Test::_kill_group($self->{pid}, 'KILL', 1);
    delete $LIVE{refaddr $self};
}

sub stop($self) {
    return $self->{exit_status} if $self->{stopped} || $$ != $self->{owner};
    $self->{stopped} = 1;
    $self->{exit_status} = Tollgate::Test::_kill_group($self->{pid}, 'TERM', 3);
    delete $LIVE{refaddr $self};
    return $self->{exit_status};
}

sub DESTROY($self) {
    local ($@, $!, $?);
    $self->stop;
}

# ============================================================== gateway guard

package Tollgate::Test::Gateway;

# Returned by tg_start. Accessors: port(n), pid, dir, conf_file, error_log,
# stderr, exit_status. Actions: http, raw, keepalive, signal, reload,
# wait_log, stop.

use v5.36;
use File::Temp qw(tempdir);
use File::Spec;
use POSIX qw(:sys_wait_h);
use Scalar::Util qw(refaddr weaken);
use Time::HiRes qw(time sleep);

sub _new($class, %o) {
    my $dir = tempdir('tollgate-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
    # started as root, the workers run as nobody: they reopen the logs in here
    chmod 0755, $dir;
    return bless { dir => $dir, ports => {}, opts => {%o}, conf_file => "$dir/tollgate.conf",
                   stderr_file => "$dir/stderr.log", owner => $$, sent => {} }, $class;
}

# The port for %%PORT%% (n = 1, the default) or %%PORTn%% (2..9), allocated
# on first use and kept for reloads.
sub port($self, $n = 1) {
    $n ||= 1;
    return $self->{ports}{$n} //= Tollgate::Test::free_port();
}

sub pid($self)         { $self->{pid} }
sub dir($self)         { $self->{dir} }
sub conf_file($self)   { $self->{conf_file} }
sub exit_status($self) { $self->{exit_status} }

# Names of the directives at the top level of a config text (outside blocks).
sub _top_level($conf) {
    my %seen;
    my ($depth, $at_start) = (0, 1);
    while ($conf =~ /\G(?:(\s+)|(\#[^\n]*)|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(\{)|(\})|(;)|([^\s;{}#"']+))/gcs) {
        if (defined $4)    { $depth++;  $at_start = 1 }
        elsif (defined $5) { $depth--;  $at_start = 1 }
        elsif (defined $6) { $at_start = 1 }
        elsif (defined $3 || defined $7) {
            $seen{$7} = 1 if defined $7 && $at_start && $depth == 0;
            $at_start = 0;
        }
    }
    return \%seen;
}

sub _subst($self, $text) {
    $text =~ s/%%PORT(\d?)%%/$self->port($1 || 1)/ge;
    $text =~ s/%%DIR%%/$self->{dir}/g;
    $text =~ s/%%ROOT%%/$Tollgate::Test::ROOT/g;
    return $text;
}

# Writes DIR/tollgate.conf: placeholders replaced, and pid / error_log /
# workers prepended on line 1 (so line numbers stay those of the snippet)
# unless the snippet sets them at the top level.
sub _write_conf($self, $conf, $files = undef) {
    for my $name (sort keys %{$files // {}}) {
        my $path = File::Spec->rel2abs($name, $self->{dir});
        my $d = $path =~ s{/[^/]*$}{}r;
        File::Path::make_path($d) unless -d $d;
        Tollgate::Test::_spew($path, $self->_subst($files->{$name}));
    }
    my $text = $self->_subst($conf);
    my $top = _top_level($text);
    my @pre;
    push @pre, "pid $self->{dir}/tollgate.pid;" unless $top->{pid};
    # the master writes it after it opened the listeners: start-up waits for both
    $self->{pid_file} = $top->{pid} || $self->{opts}{raw} ? undef : "$self->{dir}/tollgate.pid";
    push @pre, "error_log $self->{dir}/error.log info;" unless $top->{error_log};
    push @pre, 'workers 1;' unless $top->{workers};
    $text = join(' ', @pre, '') . $text if @pre && !$self->{opts}{raw};
    $self->{error_log_file} = "$self->{dir}/error.log";
    my $stripped = $text =~ s/#[^\n]*//gr;
    if ($top->{error_log} && $stripped =~ /(?:\A|[;{}])\s*error_log\s+("[^"]*"|\S+?)\s*[;\s]/) {
        my $f = $1 =~ s/^"(.*)"$/$1/r;
        $self->{error_log_file} = $f eq 'stderr' ? $self->{stderr_file}
                                : File::Spec->rel2abs($f, $Tollgate::Test::ROOT);
    }
    Tollgate::Test::_spew($self->{conf_file}, $text);
}

sub _launch($self, $conf) {
    my $bin = Tollgate::Test::_bin();
    my $o = $self->{opts};
    $self->{hub} = Tollgate::Test::_hook_hub();
    $self->{pid} = Tollgate::Test::_spawn([@{$o->{prefix} // []}, $bin, '-c', $self->{conf_file},
                                           @{$o->{args} // []}],
                                          $self->{stderr_file}, $o->{env} // {}, 'TERM');
    $LIVE{refaddr $self} = $self;
    weaken($LIVE{refaddr $self});
    my $wait = $o->{wait_port} // ($conf =~ /%%PORT%%/ ? 1 : 0);
    return unless $wait;
    my $port = $self->port($wait);
    my $timeout = $o->{timeout} // 10;
    my $exited;
    my $up = Tollgate::Test::wait_until(sub {
        $exited = Tollgate::Test::_reap($self->{pid});
        return 'exited' if defined $exited;
        return 0 if defined $self->{pid_file} && !-s $self->{pid_file};
        return Tollgate::Test::_port_open($port);
    }, $timeout, 0.02);
    return if $up && $up ne 'exited';
    my $why = $up ? 'exited during start-up: ' . Tollgate::Test::_status_text($exited)
                  : "was not listening on 127.0.0.1:$port after $timeout s";
    $self->_kill_fast;
    die "tollgate $why\n" . $self->_dump;
}

# The config, stderr and error log, for failure messages.
sub _dump($self) {
    my $s = "--- $self->{conf_file} ---\n" . Tollgate::Test::_slurp($self->{conf_file});
    $s .= "\n--- stderr ---\n" . $self->stderr;
    $s .= "--- error log ---\n" . $self->error_log
        if ($self->{error_log_file} // '') ne $self->{stderr_file};
    return $s;
}

sub error_log($self) { return Tollgate::Test::_slurp($self->{error_log_file} // '') }
sub stderr($self)    { return Tollgate::Test::_slurp($self->{stderr_file}) }

# Current size of the error log: pass it to wait_log to look only at what
# is logged afterwards.
sub log_offset($self) { return -s ($self->{error_log_file} // '') // 0 }

# Waits up to $timeout seconds (10) for the error log, from byte $from on,
# to match $re; returns the log line where the match starts, or undef.
sub wait_log($self, $re, $timeout = 10, $from = 0) {
    my $found;
    Tollgate::Test::wait_until(sub {
        my $log = $self->error_log;
        return 0 if length($log) <= $from;
        my $tail = substr($log, $from);
        return 0 unless $tail =~ $re;
        my $start = rindex($tail, "\n", $-[0] - 1) + 1;
        my $end = index($tail, "\n", $-[0]);
        $found = substr($tail, $start, ($end < 0 ? length $tail : $end) - $start);
        return 1;
    }, $timeout);
    return $found;
}

# Sends $sig (a name: HUP, TERM, QUIT, USR1...) to the master; returns the
# error log offset from before, for wait_log.
sub signal($self, $sig) {
    my $off = $self->log_offset;
    $sig =~ s/^SIG//;
    $self->{sent}{$sig} = 1;
    kill($sig, $self->{pid}) or die "kill $sig $self->{pid}: $!\n";
    return $off;
}

# Rewrites the config with $conf (same ports and dir) and sends HUP; returns
# the error log offset from before, for wait_log.
sub reload($self, $conf, %o) {
    my $off = $self->log_offset;
    $self->_write_conf($conf, $o{files});
    $self->signal('HUP');
    return $off;
}

# Pids of the live processes in the gateway's process group except the
# master (its workers, unless they left the group).
# The master's worker PIDs. The listening port accepts (into its backlog)
# before the master has forked its workers, so this waits (up to 10 s, while
# the master lives) for at least one to appear.
sub worker_pids($self) {
    my @w;
    Tollgate::Test::wait_until(sub {
        @w = grep { $_ != $self->{pid} } Tollgate::Test::_group_members($self->{pid});
        @w || !kill(0, $self->{pid});
    }, 10, 0.02);
    return @w;
}

sub http($self, $method, $path, %o) {
    return Tollgate::Test::http_request($self->port(delete $o{port}), $method, $path, %o);
}

sub raw($self, $bytes, %o) {
    return Tollgate::Test::raw_request($self->port(delete $o{port}), $bytes, %o);
}

sub keepalive($self, %o) {
    return Tollgate::Test::Client->new($self->port(delete $o{port}), %o);
}

sub _kill_fast($self) {
    return if $self->{stopped} || $$ != $self->{owner};
    $self->{stopped} = 1;
    $self->{exit_status} = Tollgate::Test::_kill_group($self->{pid}, 'KILL', 1);
    delete $LIVE{refaddr $self};
}

sub _expected_exit($self, $st) {
    return 1 if $st == -1;    # reaped by someone else (SIGCHLD ignored, waitpid(-1)): unknown
    return 1 if WIFEXITED($st) && WEXITSTATUS($st) == 0;
    return 1 if WIFSIGNALED($st) && $self->{sent}{Tollgate::Test::_signame(WTERMSIG($st)) // ''};
    return 0;
}

# Stops the gateway: SIGTERM to the master, up to 10 s for it to exit, then
# SIGKILL to its group; anything still in the group is killed. Then runs
# the log check (one `ok`) unless no_log_check. Returns the wait status.
sub stop($self) {
    return $self->{exit_status} if $self->{stopped} || !$self->{pid} || $$ != $self->{owner};
    $self->{stopped} = 1;
    delete $LIVE{refaddr $self};
    my $pid = $self->{pid};
    my @problems;
    my $st = Tollgate::Test::_reap($pid);
    if (defined $st) {
        push @problems, 'tollgate exited before stop: ' . Tollgate::Test::_status_text($st)
            unless $self->_expected_exit($st);
    } else {
        $self->{sent}{TERM} = 1;
        kill('TERM', $pid);
        $st = Tollgate::Test::_wait_exit($pid, $self->{opts}{stop_timeout} // 10);
        if (!defined $st) {
            push @problems, 'tollgate did not exit within '
                . ($self->{opts}{stop_timeout} // 10) . ' s of SIGTERM (killed)';
            kill('KILL', -$pid);
            $st = Tollgate::Test::_wait_exit($pid, 5);
        } elsif (!$self->_expected_exit($st)) {
            push @problems, 'tollgate stopped with ' . Tollgate::Test::_status_text($st);
        }
    }
    unless (Tollgate::Test::wait_until(sub { !Tollgate::Test::_group_members($pid) }, 2, 0.01)) {
        my @left = Tollgate::Test::_group_members($pid);
        push @problems, "processes left in the group after the master exited: @left (killed)";
        kill('KILL', -$pid);
        Tollgate::Test::wait_until(sub { !Tollgate::Test::_group_members($pid) }, 2, 0.01);
    }
    delete $PGROUPS{$pid};
    $self->{exit_status} = $st;
    $self->_check(@problems) unless $self->{opts}{no_log_check};
    return $st;
}

my $SANITIZER = qr/AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|LeakSanitizer|ThreadSanitizer|MemorySanitizer/;

# Lines of the error log and stderr that fail the check.
sub log_problems($self) {
    my @bad;
    my @files = ($self->{stderr_file});
    unshift @files, $self->{error_log_file}
        if $self->{error_log_file} && $self->{error_log_file} ne $self->{stderr_file};
    my @ok = @{$self->{opts}{errors_ok} // []};
    for my $file (@files) {
        for my $line (split /\n/, Tollgate::Test::_slurp($file)) {
            if ($line =~ $SANITIZER || $line =~ /\[(?:alert|crit|emerg)\]/
                || ($line =~ /\[error\]/ && !grep { $line =~ $_ } @ok)) {
                push @bad, $line;
            }
        }
    }
    return @bad;
}

sub _check($self, @problems) {
    my @lines = $self->log_problems;
    my $ok = !@problems && !@lines;
    my $name = "tollgate (pid $self->{pid}) stopped cleanly, no unexpected errors in its logs";
    my $hub = Test2::API::test2_stack()->top;
    if ($hub->ended) {
        return if $ok;
        $LATE_FAILURE = 1;
        print STDERR "# Failed (after the end of the test): $name\n";
        print STDERR "#   $_\n" for @problems, @lines;
        return;
    }
    local $Test::Builder::Level = $Test::Builder::Level + 3;
    Test::More::ok($ok, $name);
    return if $ok;
    Test::More::diag($_) for @problems;
    my @shown = @lines > 20 ? (@lines[0 .. 19], '... ' . (@lines - 20) . ' more') : @lines;
    Test::More::diag("log: $_") for @shown;
    if (grep { $_ =~ $SANITIZER } @lines) {
        my @err = split /\n/, $self->stderr;
        @err = @err[-80 .. -1] if @err > 80;
        Test::More::diag("--- stderr (last lines) ---");
        Test::More::diag($_) for @err;
    }
}

sub DESTROY($self) {
    local ($@, $!, $?);
    return if $self->{stopped} || !$self->{pid} || $$ != $self->{owner};
    if (${^GLOBAL_PHASE} eq 'DESTRUCT') {
        $self->_kill_fast;
        return;
    }
    $self->stop;
}

1;
