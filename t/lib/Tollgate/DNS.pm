package Tollgate::DNS;
# A DNS server the test controls: dnsmasq (Debian's dnsmasq-base) on a free
# loopback port, answering only from a hosts file and SRV records the test
# writes, logging every query so a test can count them.
#
#   my $dns = dns_server(hosts => "127.0.0.2 app.test\n", ttl => 1,
#                        srv => [['_http._tcp.svc.test', 'a.test', 3000, 10, 5]]);
#   $dns->{port}; $dns->set_hosts($text);        # rewrite + SIGHUP, waits for the reload
#   $dns->queries(qr/query\[A\] app\.test/);     # queries logged so far
#   $dns->stop; $dns->start;                     # DNS down, then up again (same port)
#   $dns->restart(srv => [...]);                 # SRV records change only on a restart
#
# It runs in its own process group through Tollgate::Test's spawner, so the
# harness kills it with everything else; every wait has a deadline.
use v5.36;
use Exporter 'import';
use Tollgate::Test qw(free_port wait_until);

our @EXPORT = qw(dns_server);

sub dns_server(%o) {
    my $dir = File::Temp::tempdir('tg-dns-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
    my $self = bless { dir => $dir, port => free_port(), ttl => $o{ttl} // 1,
                       srv => $o{srv} // [], owner => $$ }, __PACKAGE__;
    $self->_write_hosts($o{hosts} // '');
    $self->start;
    return $self;
}

sub _write_hosts($self, $text) {
    open(my $fh, '>', "$self->{dir}/hosts.tmp") or die "hosts: $!";
    print $fh $text;
    close($fh);
    rename("$self->{dir}/hosts.tmp", "$self->{dir}/hosts") or die "hosts: $!";
}

sub _log($self) {
    open(my $fh, '<', "$self->{dir}/dns.log") or return '';
    local $/;
    return <$fh> // '';
}

sub start($self) {
    my $conf = "$self->{dir}/dnsmasq.conf";
    open(my $fh, '>', $conf) or die "$conf: $!";
    print $fh join("\n",
        "port=$self->{port}", 'listen-address=127.0.0.1', 'bind-interfaces', 'no-resolv',
        'no-hosts', 'no-daemon', "addn-hosts=$self->{dir}/hosts", "local-ttl=$self->{ttl}",
        'log-queries', "log-facility=$self->{dir}/dns.log", 'pid-file=', 'local=/test/',
        ($> == 0 ? ('user=root') : ()),
        (map { 'srv-host=' . join(',', @$_) } @{$self->{srv}}), '');
    close($fh);
    my $before = () = $self->_log =~ /started, version/g;
    $self->{pid} = Tollgate::Test::_spawn(['dnsmasq', '-C', $conf], "$self->{dir}/out.log");
    wait_until(sub { (() = $self->_log =~ /started, version/g) > $before }, 10)
        or die "dnsmasq did not start:\n" . `cat $self->{dir}/out.log`;
    wait_until(sub { $self->_log =~ /read \Q$self->{dir}\E\/hosts/ }, 5);
    return $self;
}

sub stop($self) {
    return unless $self->{pid} && $self->{owner} == $$;
    Tollgate::Test::_kill_group($self->{pid}, 'TERM', 3);
    delete $self->{pid};
}

sub restart($self, %o) {
    $self->{srv} = $o{srv} if $o{srv};
    $self->stop;
    $self->start;
}

sub set_hosts($self, $text) {
    my $before = () = $self->_log =~ /read \S+\/hosts/g;
    $self->_write_hosts($text);
    kill('HUP', $self->{pid});
    wait_until(sub { (() = $self->_log =~ /read \S+\/hosts/g) > $before }, 5)
        or die "dnsmasq did not reread its hosts file\n";
}

sub queries($self, $re) {
    my $n = () = $self->_log =~ /$re/g;
    return $n;
}

sub DESTROY($self) {
    local ($., $@, $!, $^E, $?);
    $self->stop;
}

1;
