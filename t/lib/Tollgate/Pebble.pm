package Tollgate::Pebble;
# A real ACME server on loopback for the acme tests: pebble (Let's Encrypt's
# test CA) with pebble-challtestsrv as its DNS server, which answers every A
# query with 127.0.0.1, so pebble's validation of any name reaches the
# gateway on the given http-01 port.
#
#   my $ca = Tollgate::Pebble->start(http_port => $p80, tls_port => $p443,
#                                    validity => 3600);
#   $ca->{directory}  https://127.0.0.1:PORT/dir
#   $ca->{ca_root}    PEM of the CA that signed pebble's own HTTPS certificate
#   $ca->issuer_root  PEM of the root pebble issues under (management API)
#   $ca->stop; $ca->start_again  (a new pebble: same ports, new state)
#   $ca->log          what pebble printed
# Stopped by PID at the end of the test. PEBBLE_VA_NOSLEEP=1 (no random
# validation delay), PEBBLE_WFE_NONCEREJECT=0 (no random badNonce).
use v5.36;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP qw(encode_json);
use Tollgate::Test qw(free_port wait_until);
use Tollgate::TLS qw(run_cmd);

my @LIVE;

sub _ossl(@args) {
    my ($out, $rc) = run_cmd(undef, 'openssl', @args);
    die "openssl @args failed:\n$out" if $rc;
}

sub start($class, %o) {
    my $dir = tempdir('tg-pebble-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
    # pebble's own HTTPS certificate, for 127.0.0.1, under a CA of ours
    _ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
          '-keyout', "$dir/ca.key", '-out', "$dir/ca.pem", '-days', '2', '-subj', '/CN=pebble test CA');
    _ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout',
          "$dir/wfe.key", '-out', "$dir/wfe.csr", '-subj', '/CN=127.0.0.1');
    open my $fh, '>', "$dir/wfe.ext" or die;
    print $fh "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    close $fh;
    _ossl('x509', '-req', '-in', "$dir/wfe.csr", '-CA', "$dir/ca.pem", '-CAkey', "$dir/ca.key",
          '-CAcreateserial', '-out', "$dir/wfe.pem", '-days', '2', '-extfile', "$dir/wfe.ext");
    my $self = bless { dir => $dir, %o, port => free_port(), mport => free_port(),
                       dns => free_port(), ca_root => "$dir/ca.pem" }, $class;
    $self->{directory} = "https://127.0.0.1:$self->{port}/dir";
    my %cfg = (listenAddress => "127.0.0.1:$self->{port}",
               managementListenAddress => "127.0.0.1:$self->{mport}",
               certificate => "$dir/wfe.pem", privateKey => "$dir/wfe.key",
               httpPort => $o{http_port} // 5002, tlsPort => $o{tls_port} // 5001,
               ocspResponderURL => $o{ocsp_url} // '', externalAccountBindingRequired => JSON::PP::false);
    $cfg{certificateValidityPeriod} = $o{validity} if $o{validity};
    open $fh, '>', "$dir/pebble.json" or die;
    print $fh encode_json({ pebble => \%cfg });
    close $fh;
    $self->{dns_pid} = Tollgate::Test::_spawn(
        ['pebble-challtestsrv', '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '',
         '-dns01', "127.0.0.1:$self->{dns}", '-http01', '', '-https01', '', '-tlsalpn01', '',
         '-management', '127.0.0.1:' . free_port()], "$dir/challtestsrv.log");
    push @LIVE, $self;
    $self->start_again;
    return $self;
}

sub _up($port) {
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 1);
}

sub start_again($self) {
    $self->{pid} = Tollgate::Test::_spawn(
        ['pebble', '-config', "$self->{dir}/pebble.json", '-dnsserver', "127.0.0.1:$self->{dns}"],
        "$self->{dir}/pebble.log", { PEBBLE_VA_NOSLEEP => 1, PEBBLE_WFE_NONCEREJECT => 0 });
    wait_until(sub { _up($self->{port}) && _up($self->{mport}) }, 15)
        or die "pebble did not start:\n" . $self->log;
    return $self;
}

sub stop($self) {
    Tollgate::Test::_kill_group($self->{pid}, 'TERM', 5) if $self->{pid};
    $self->{pid} = undef;
}

sub log($self) {
    open my $fh, '<', "$self->{dir}/pebble.log" or return '';
    local $/;
    return <$fh>;
}

# The root pebble signs issued certificates under (a new one per start).
sub issuer_root($self) {
    my ($pem, $rc) = run_cmd(undef, 'curl', '-sS', '--max-time', '10', '--cacert',
                             $self->{ca_root}, "https://127.0.0.1:$self->{mport}/roots/0");
    die "pebble roots: $pem" if $rc;
    my $file = "$self->{dir}/issuer-root.pem";
    open my $fh, '>', $file or die;
    print $fh $pem;
    close $fh;
    return $file;
}

END {
    for my $p (@LIVE) {
        $p->stop;
        Tollgate::Test::_kill_group($p->{dns_pid}, 'TERM', 3) if $p->{dns_pid};
    }
}

1;
