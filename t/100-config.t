# Config language and CLI: every error is `file:line: message`, a bad config
# never starts, -t/-v/-s behave.
use v5.36;
use Test::More;
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);

my $ok = "server { listen %%PORT%%; location / { return 200 ok; } }";

sub err_like($conf, $re, $name, %o) {
    my $r = tg_conf_test($conf, %o);
    isnt($r->{exit}, 0, "$name: -t fails");
    like($r->{output}, $re, "$name: message") or diag $r->{output};
}

ok(tg_conf_ok($ok), 'minimal config passes -t');
my $r = tg_conf_test($ok);
like($r->{output}, qr/test is successful/, '-t says so');

err_like("server {\n  listen %%PORT%%;\n  bogus 1;\n}", qr/tollgate\.conf:3: unknown directive "bogus"/,
         'unknown directive');
err_like("server {\n listen %%PORT%%;\n workers 2;\n}",
         qr/:3: "workers" directive is not allowed here/, 'wrong context');
err_like("server {\n listen %%PORT%%;\n location / {\n  proxy_pass a b;\n }\n}",
         qr/:4: invalid number of arguments in "proxy_pass" directive/, 'argument count');
err_like("server {\n listen %%PORT%%;\n client_max_body_size 10q;\n}",
         qr/:3: .*"10q"/, 'bad size value');
err_like("server {\n listen %%PORT%%;\n timeouts header=abc;\n}",
         qr/:3: invalid time "abc" in "timeouts"/, 'bad time value');
err_like("server {\n listen %%PORT%%;\n timeouts foo=1s;\n}",
         qr/:3: invalid parameter "foo=1s" in "timeouts"/, 'bad parameter');
err_like("server {\n listen %%PORT%%;\n}\nserver {\n listen %%PORT%% default_server;\n}\n"
         . "server {\n listen %%PORT%% default_server;\n}",
         qr/:8: a duplicate default server/, 'duplicate default server');
err_like("server {\n listen %%PORT%%;\n listen %%PORT%%;\n}",
         qr/:3: duplicate listen/, 'duplicate listen in one server');
err_like("server {\n listen %%PORT%%;\n server_name a.test;\n}\n"
         . "server {\n listen %%PORT%%;\n server_name a.test;\n}",
         qr/:5: conflicting server name "a\.test"/, 'conflicting server names');
err_like("server {\n listen %%PORT%%;\n location / {\n  proxy_pass nosuch;\n }\n}",
         qr/:4: unknown upstream "nosuch"/, 'unknown upstream');
err_like("upstream u {\n}\nserver {\n listen %%PORT%%;\n}",
         qr/:1: no servers in upstream "u"/, 'empty upstream');
err_like("upstream u {\n server 127.0.0.1:1 weight=0;\n}\nserver { listen %%PORT%%; }",
         qr/:2: .*weight/, 'bad weight');
err_like("upstream u {\n server 127.0.0.1:1;\n}\nupstream u {\n server 127.0.0.1:2;\n}\n"
         . "server { listen %%PORT%%; }", qr/:4: duplicate upstream "u"/, 'duplicate upstream');
err_like("server {\n listen %%PORT%%;\n location ~ ([a- {\n }\n}",
         qr/:3: invalid regex/, 'bad regex');
err_like("server {\n listen %%PORT%%;\n location = /a {\n }\n location = /a {\n }\n}",
         qr/:5: duplicate location "\/a"/, 'duplicate location');
err_like("server {\n listen %%PORT%%;\n return 999;\n}", qr/:3: invalid return code "999"/,
         'bad return code');
err_like("server {\n listen %%PORT%%;\n location / {\n  return 200 ok;\n", qr/unexpected end of file/,
         'missing close brace');
err_like("server {\n listen %%PORT%%;\n proxy_set_header \"Bad Name\" x;\n}",
         qr/:3: invalid header name "Bad Name"/, 'bad header name');
err_like("server {\n listen %%PORT%%;\n access_log %%DIR%%/a.log fancy;\n}",
         qr/:3: invalid log format "fancy"/, 'bad access log format');
err_like("server {\n listen %%PORT%%;\n real_ip_from 10.0.0.0/33;\n}",
         qr/:3: invalid address or CIDR "10\.0\.0\.0\/33"/, 'bad CIDR');
err_like("server {\n listen %%PORT%%;\n include %%DIR%%/inc.conf;\n}",
         qr/inc\.conf:2: unknown directive "nope"/, 'errors inside included files',
         files => { 'inc.conf' => "location / {\n nope;\n}\n" });
err_like("server {\n listen %%PORT%%;\n listen 1.2.3:99999;\n}", qr/:3: invalid listen address/,
         'bad listen address');
err_like("server {\n listen %%PORT%%;\n}\nserver {\n server_name x;\n}",
         qr/:4: server has no "listen" directive/, 'server without listen');
err_like("server {\n listen %%PORT%%;\n error_log stderr;\n}",
         qr/:3: "error_log" directive is not allowed here/, 'main-only directive in server');
# several errors are all reported
$r = tg_conf_test("server {\n listen %%PORT%%;\n a1;\n a2;\n}");
like($r->{output}, qr/:3: unknown directive "a1".*:4: unknown directive "a2"/s,
     'every error of a file is reported');

# A bad config never starts.
{
    my $port = free_port();
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    open(my $fh, '>', "$dir/bad.conf") or die;
    print $fh "server { listen 127.0.0.1:$port; bogus; }\n";
    close $fh;
    my $bin = $ENV{TG_BIN} // repo_root() . '/build/tollgate';
    my $out = `$bin -c $dir/bad.conf 2>&1`;
    isnt($? >> 8, 0, 'bad config: exits non-zero');
    like($out, qr/bad\.conf:1: unknown directive "bogus"/, 'bad config: file:line');
    my $v = `$bin -v 2>&1`;
    like($v, qr/^tollgate \d+\.\d+\.\d+.*libev.*llhttp.*pcre2/s, '-v prints versions');
}

# -s reload|stop via the pid file
{
    my $tg = tg_start($ok);
    is($tg->http(GET => '/')->{body}, 'ok', 'running');
    my $bin = $ENV{TG_BIN} // repo_root() . '/build/tollgate';
    my $off = $tg->log_offset;
    system($bin, '-s', 'reload', '-c', $tg->conf_file);
    is($?, 0, '-s reload exits 0');
    ok($tg->wait_log(qr/reloaded: generation 2/, 10, $off), '-s reload reloads');
    system($bin, '-s', 'stop', '-c', $tg->conf_file);
    is($?, 0, '-s stop exits 0');
    ok(wait_until(sub { !kill(0, $tg->pid) || `ps -o stat= -p @{[$tg->pid]}` =~ /Z/ }, 10),
       'master gone after -s stop');
    ok(!-e $tg->dir . '/tollgate.pid', 'pid file removed');
    $tg->stop;
}
# Every kind of error in one -t run: the parser's, the merge's, unknown
# upstreams (resolved after parsing), server names (checked after that),
# TLS certificates (built last); every line `file:line: message`.
{
    my $r = tg_conf_test(<<'C');
server {
    listen %%PORT%%;
    bogus on;
    client_max_body_size 10q;
    location / { proxy_pass nosuch; }
    listen %%PORT%%;
    return 200 "$nosuchvar";
    server_name a.test;
}
server {
    listen %%PORT%%;
    server_name a.test;
    location /b/ { proxy_pass alsomissing; }
}
server {
    listen %%PORT2%% tls;
}
C
    is($r->{exit}, 1, 'several errors: -t exits 1');
    my $out = $r->{output};
    my @want = ([3, qr/unknown directive "bogus"/], [4, qr/invalid size "10q"/],
                [5, qr/unknown upstream "nosuch"/], [6, qr/duplicate listen/],
                [7, qr/unknown variable "\$nosuchvar"/], [10, qr/conflicting server name "a\.test"/],
                [13, qr/unknown upstream "alsomissing"/],
                [15, qr/server listens with "tls" but has no "tls_certificate"/]);
    for my $w (@want) {
        like($out, qr/^\Q$r->{file}\E:$w->[0]: $w->[1]/m, "one run reports line $w->[0]: $w->[1]");
    }
    my @lines = grep { length } split /\n/, $out;
    my @bad = grep { !/^\Q$r->{file}\E:\d+: \S/ && !/^tollgate: configuration file .* test failed$/ }
              @lines;
    is_deeply(\@bad, [], 'every line is file:line: message') or diag $out;
    is(scalar(grep { /^\Q$r->{file}\E:/ && !/: warning: / } @lines), scalar(@want),
       'each error once') or diag $out;
}
# -t warns about a config, an included file or a TLS key that every user can read
{
    my $bin = $ENV{TG_BIN} // repo_root() . '/build/tollgate';
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=t "
           . "-days 2 -keyout $dir/k.pem -out $dir/c.pem >/dev/null 2>&1") == 0 or die 'openssl';
    my $port = free_port();
    Tollgate::Test::_spew("$dir/inc.conf", "server { listen 127.0.0.1:$port tls;\n"
                          . "  tls_certificate c.pem;\n  tls_certificate_key k.pem;\n}\n");
    Tollgate::Test::_spew("$dir/main.conf", "pid $dir/t.pid;\ninclude inc.conf;\n");
    chmod(0644, map { "$dir/$_" } qw(main.conf inc.conf k.pem));
    my $out = `'$bin' -t -p '$dir' -c '$dir/main.conf' 2>&1`;
    is($? >> 8, 0, 'world-readable files: -t still succeeds');
    like($out, qr{^\Q$dir\E/main\.conf:1: warning: this file is readable by every user \(mode 0644\)}m,
         'the main config: warned at its first line');
    like($out, qr{^\Q$dir\E/main\.conf:2: warning: "\Q$dir\E/inc\.conf" is readable by every user}m,
         'an included file: warned at its include');
    like($out, qr{^\Q$dir\E/inc\.conf:3: warning: certificate key "\Q$dir\E/k\.pem" is readable by every user \(mode 0644\)}m,
         'the key: warned at its directive');
    chmod(0600, map { "$dir/$_" } qw(main.conf inc.conf k.pem));
    $out = `'$bin' -t -p '$dir' -c '$dir/main.conf' 2>&1`;
    unlike($out, qr/warning/, 'mode 0600: no warning') or diag $out;
    chmod(0640, map { "$dir/$_" } qw(main.conf inc.conf k.pem));
    $out = `'$bin' -t -p '$dir' -c '$dir/main.conf' 2>&1`;
    unlike($out, qr/warning/, 'mode 0640 (group-readable): no warning') or diag $out;
}
# a missing config file: no line number
{
    my $bin = $ENV{TG_BIN} // repo_root() . '/build/tollgate';
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $out = `'$bin' -t -c '$dir/missing.conf' 2>&1`;
    is($? >> 8, 1, 'missing config file: exit 1');
    like($out, qr{^tollgate: cannot open config file "\Q$dir\E/missing\.conf": No such file or directory$}m,
         'missing config file: said without a line number');
    unlike($out, qr/:0:/, 'no :0:');
}
# -d: daemonize, then stop it through the pid file
{
    my $bin = $ENV{TG_BIN} // repo_root() . '/build/tollgate';
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $port = free_port();
    open(my $fh, '>', "$dir/d.conf") or die;
    print $fh "pid $dir/d.pid;\nerror_log $dir/error.log info;\nworkers 1;\n"
            . "server { listen 127.0.0.1:$port; return 200 daemon; }\n";
    close $fh;
    system($bin, '-d', '-c', "$dir/d.conf");
    is($?, 0, '-d returns at once with 0');
    ok(wait_until(sub { -s "$dir/d.pid" }, 5), 'pid file written');
    is(Tollgate::Test::http_request($port, GET => '/')->{body}, 'daemon', 'the daemon serves');
    my $pid = do { open(my $p, '<', "$dir/d.pid"); <$p> } // 0;
    chomp $pid;
    system($bin, '-s', 'stop', '-c', "$dir/d.conf");
    ok(wait_until(sub { !kill(0, $pid) }, 10), 'daemon stopped with -s stop');
}
done_testing;
