package Tollgate::TLS;

# TLS helpers for the tests: a throwaway PKI made with the openssl CLI in a
# temp dir (never committed), and thin wrappers around `openssl s_client`
# and `curl` (core Perl has no TLS client).
#
#   my $pki = make_pki();      # {dir, ca, 'a.test' => {cert,key}, ...}
#   $pki->{'a.test'}{cert}     # RSA 2048; $pki->{'a.test-ec'} ECDSA P-256
#   names: a.test (RSA + EC), *.wild.test (RSA), default (RSA), client (client
#   cert by the CA), rogue (client cert by another CA), old.test (expired)
#   s_client($port, servername => ..., args => [...], input => ...) -> output
#   curl_https($port, $path, host => 'a.test', args => [...]) -> {status, body, headers, rc}

use v5.36;
use Exporter qw(import);
use File::Temp qw(tempdir);
use IPC::Open3 qw(open3);
use Symbol qw(gensym);

our @EXPORT = qw(make_pki s_client curl_https run_cmd);

sub run_cmd($input, @cmd) {
    my $err = gensym;
    my $pid = open3(my $in, my $out, undef, @cmd);
    print $in $input if defined $input;
    close $in;
    local $/;
    my $text = <$out> // '';
    waitpid($pid, 0);
    return wantarray ? ($text, $? >> 8) : $text;
}

sub _ossl(@args) {
    my ($out, $rc) = run_cmd(undef, 'openssl', @args);
    die "openssl @args failed:\n$out" if $rc;
}

sub _issue($dir, $name, $keytype, $san, $ca, %o) {
    my $key = "$dir/$name.key";
    my @new = $keytype eq 'ec' ? ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256')
                               : ('-newkey', 'rsa:2048');
    _ossl('req', @new, '-nodes', '-keyout', $key, '-out', "$dir/$name.csr",
          '-subj', "/CN=$san");
    open my $fh, '>', "$dir/$name.ext" or die;
    print $fh $o{client} ? "extendedKeyUsage=clientAuth\n" : "subjectAltName=DNS:$san\n";
    close $fh;
    _ossl('x509', '-req', '-in', "$dir/$name.csr", '-CA', "$ca.pem", '-CAkey', "$ca.key",
          '-CAcreateserial', '-out', "$dir/$name.pem", '-days', '2', '-extfile', "$dir/$name.ext");
    return { cert => "$dir/$name.pem", key => $key };
}

sub make_pki() {
    my $dir = tempdir('tg-pki-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
    for my $ca ('ca', 'rogue-ca') {
        _ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/$ca.key",
              '-out', "$dir/$ca.pem", '-days', '2', '-subj', "/CN=Tollgate test $ca");
    }
    my %p = (dir => $dir, ca => "$dir/ca.pem");
    $p{'a.test'} = _issue($dir, 'a', 'rsa', 'a.test', "$dir/ca");
    $p{'a.test-ec'} = _issue($dir, 'a-ec', 'ec', 'a.test', "$dir/ca");
    $p{'*.wild.test'} = _issue($dir, 'wild', 'rsa', '*.wild.test', "$dir/ca");
    $p{default} = _issue($dir, 'default', 'rsa', 'default', "$dir/ca");
    $p{client} = _issue($dir, 'client', 'rsa', 'client one', "$dir/ca", client => 1);
    $p{rogue} = _issue($dir, 'rogue', 'rsa', 'rogue', "$dir/rogue-ca", client => 1);
    # expired: `openssl ca` is the CLI way to set past dates
    open my $fh, '>', "$dir/ca.cnf" or die;
    print $fh "[ca]\ndefault_ca = d\n[d]\ndatabase = $dir/index.txt\nserial = $dir/serial\n"
        . "new_certs_dir = $dir\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
        . "[p]\ncommonName = supplied\n";
    close $fh;
    open $fh, '>', "$dir/index.txt" or die; close $fh;
    open $fh, '>', "$dir/serial" or die; print $fh "1000\n"; close $fh;
    _ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/old.key", '-out',
          "$dir/old.csr", '-subj', '/CN=old.test');
    _ossl('ca', '-batch', '-config', "$dir/ca.cnf", '-cert', "$dir/ca.pem", '-keyfile',
          "$dir/ca.key", '-in', "$dir/old.csr", '-out', "$dir/old.pem", '-startdate',
          '20200101000000Z', '-enddate', '20200201000000Z', '-notext');
    $p{'old.test'} = { cert => "$dir/old.pem", key => "$dir/old.key" };
    return \%p;
}

# openssl s_client; the input is sent, then -ign_eof waits for the server
# to close (give a request with "Connection: close", or nothing).
sub s_client($port, %o) {
    my @cmd = ('timeout', '10', 'openssl', 's_client', '-connect', "127.0.0.1:$port");
    push @cmd, '-servername', $o{servername} if defined $o{servername};
    push @cmd, '-noservername' if exists $o{servername} && !defined $o{servername};
    push @cmd, '-ign_eof' if defined $o{input};
    push @cmd, @{$o{args} // []};
    my ($out) = run_cmd($o{input} // '', @cmd);
    return $out;
}

sub curl_https($port, $path, %o) {
    my $host = $o{host} // 'a.test';
    my @cmd = ('curl', '-sS', '--max-time', '10', '-D', '-', '--resolve',
               "$host:$port:127.0.0.1", '--cacert', $o{cacert}, @{$o{args} // []},
               "https://$host:$port$path");
    my ($out, $rc) = run_cmd(undef, @cmd);
    my %r = (rc => $rc, raw => $out);
    if ($out =~ /\AHTTP\/[\d.]+ (\d+)[^\n]*\n(.*?)\r?\n\r?\n(.*)\z/s) {
        $r{status} = $1;
        $r{body} = $3;
        for my $line (split /\r?\n/, $2) {
            $r{headers}{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*)$/;
        }
    }
    return \%r;
}

1;
