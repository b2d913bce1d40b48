# The shared TLS session cache (session IDs in shared memory, every worker
# resumes every session): 20 TLS 1.2 reconnects by session ID all resumed
# with 2 workers and tickets off; TLS 1.3 with tickets off (stateful tickets
# looked up in the same cache); a session does not resume under another SNI
# name, without SNI, on another server block, or after a reload that adds a
# client-CA setting (while a reload that changes nothing keeps it);
# eviction of the oldest sessions when the cache is full; expiry after
# tls_session_timeout; with tickets on, TLS 1.3 and 1.2 still resume;
# cache and tickets off: nothing resumable; config errors.
use v5.36;
use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS;
use JSON::PP ();

my $pki = make_pki();
my ($a, $w) = ($pki->{'a.test'}, $pki->{'*.wild.test'});
my $ca = $pki->{ca};

my $servers = sub ($extra = '') {
    return <<"C";
server {
    listen %%PORT%% tls;
    server_name a.test alt.test;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    return 200 "a\\n";
    $extra
}
server {
    listen %%PORT%% tls;
    server_name *.wild.test;
    tls_certificate $w->{cert};
    tls_certificate_key $w->{key};
    return 200 "wild\\n";
}
C
};

# s_client with a saved session: 'New', 'Reused' or '' (no handshake)
sub hs($port, $name, $sess, %o) {
    my @args = (@{$o{args} // ['-tls1_2', '-no_ticket']});
    push @args, $o{save} ? ('-sess_out', $sess) : ('-sess_in', $sess);
    # a request, so the client reads the answer and any TLS 1.3 tickets
    my $host = $name // 'a.test';
    my $out = s_client($port, servername => $name, args => \@args,
                       input => "GET / HTTP/1.1\r\nHost: $host\r\nConnection: close\r\n\r\n");
    return $out =~ /^(New|Reused), TLSv1/m ? $1 : '';
}

# --- tickets off: resumption by session ID only, across 2 workers
my $conf = "workers 2;\ntls_session_tickets off;\n" . $servers->();
my $tg = tg_start($conf);
my $port = $tg->port;
my $sess = $tg->dir . '/s12.pem';
is(hs($port, 'a.test', $sess, save => 1), 'New', 'TLS 1.2, tickets off: first handshake is full');
my @r = map { hs($port, 'a.test', $sess) } 1 .. 20;
is(scalar(grep { $_ eq 'Reused' } @r), 20,
   '20 reconnects by session ID all resumed, whichever of the 2 workers took them');
unlike(s_client($port, servername => 'a.test', args => ['-tls1_2', '-sess_in', $sess]),
       qr/TLS session ticket:/, 'no session ticket issued (tickets off)');

my $s13 = $tg->dir . '/s13.pem';
is(hs($port, 'a.test', $s13, save => 1, args => ['-tls1_3']), 'New', 'TLS 1.3, tickets off: full');
@r = map { hs($port, 'a.test', $s13, args => ['-tls1_3']) } 1 .. 6;
is(scalar(grep { $_ eq 'Reused' } @r), 6,
   'TLS 1.3 with tickets off: resumed from the shared cache (stateful tickets)');

is(hs($port, 'alt.test', $sess), 'New', 'same server block, another SNI name: not resumed');
is(hs($port, undef, $sess), 'New', 'no SNI: not resumed');
is(hs($port, 'x.wild.test', $sess), 'New', 'another server block: not resumed');
is(hs($port, 'a.test', $sess), 'Reused', 'the session still resumes under its own name');

# a reload that changes nothing keeps the cache and the sessions
my $off = $tg->reload($conf);
ok($tg->wait_log(qr/reloaded: generation 2/, 5, $off), 'reloaded unchanged');
is(hs($port, 'a.test', $sess), 'Reused', 'session resumed after a reload (cache kept)');
# ... one that adds a client-CA policy to the server block does not
$off = $tg->reload("workers 2;\ntls_session_tickets off;\n"
                   . $servers->("tls_client_ca $ca; tls_verify_client optional;"));
ok($tg->wait_log(qr/reloaded: generation 3/, 5, $off), 'reloaded with tls_verify_client');
is(hs($port, 'a.test', $sess), 'New', 'session made without client-CA policy: not resumed');
$tg->stop;

# --- a small cache: oldest sessions evicted; tls_session_timeout
$tg = tg_start("workers 2;\ntls_session_tickets off;\ntls_session_cache shared:32k;\n"
               . "tls_session_timeout 2s;\n" . $servers->());
$port = $tg->port;
$sess = $tg->dir . '/old.pem';
is(hs($port, 'a.test', $sess, save => 1), 'New', 'small cache: first session');
is(hs($port, 'a.test', $sess), 'Reused', 'resumed while the cache has room');
# churn: a few hundred new sessions (about 300 bytes each) through 32 KB
my $n = 0;
my $t0 = time;
while ($n < 400 && time - $t0 < 20) {
    my $o = `timeout 10 openssl s_time -connect 127.0.0.1:$port -new -tls1_2 -time 1 2>&1`;
    $n += $1 if $o =~ /(\d+) connections in/;
}
ok($n >= 200, "$n new sessions made");
is(hs($port, 'a.test', $sess), 'New', 'the oldest session was evicted from the full cache');

my $fresh = $tg->dir . '/fresh.pem';
is(hs($port, 'a.test', $fresh, save => 1), 'New', 'a fresh session');
$t0 = time;
is(hs($port, 'a.test', $fresh), 'Reused', 'resumed within tls_session_timeout');
my $state = 'Reused';
while ($state eq 'Reused' && time - $t0 < 8) {
    sleep 0.25;
    $state = hs($port, 'a.test', $fresh);
}
my $el = time - $t0;
ok($state eq 'New' && $el > 0.9 && $el < 6, sprintf('expired after %.1f s (timeout 2 s)', $el));
$tg->stop;

# --- tickets on (the default) with the cache: both kinds of resumption
$tg = tg_start("workers 2;\n" . $servers->());
$port = $tg->port;
for my $v (['-tls1_3'], ['-tls1_2'], ['-tls1_2', '-no_ticket']) {
    my $f = $tg->dir . "/t" . join('', @$v) . '.pem';
    is(hs($port, 'a.test', $f, save => 1, args => $v), 'New', "tickets on, @$v: full");
    @r = map { hs($port, 'a.test', $f, args => $v) } 1 .. 6;
    is(scalar(grep { $_ eq 'Reused' } @r), 6, "tickets on, @$v: 6 reconnects resumed");
}
my $t13 = $tg->dir . '/t-tls1_3.pem';
is(hs($port, 'alt.test', $t13, args => ['-tls1_3']), 'New', 'a ticket under another SNI name: not resumed');
$tg->stop;

# --- cache and tickets off: every handshake is full
$tg = tg_start("tls_session_cache off;\ntls_session_tickets off;\n" . $servers->());
$port = $tg->port;
$sess = $tg->dir . '/none.pem';
is(hs($port, 'a.test', $sess, save => 1), 'New', 'cache off, tickets off: handshake');
ok(!-e $sess, 'no session ID and no ticket given to the client: nothing to resume');
$tg->stop;

# --- the cache's counters on the stats endpoint
{
    my $t = tg_start("workers 2;\ntls_session_tickets off;\n" . $servers->() . <<"C");
server {
    listen %%PORT2%%;
    location = /stats { stats; }
}
C
    my $sp = $t->port;
    my $f = $t->dir . '/st.pem';
    is(hs($sp, 'a.test', $f, save => 1), 'New', 'stats: first handshake');
    my @rr = map { hs($sp, 'a.test', $f) } 1 .. 5;
    is(scalar(grep { $_ eq 'Reused' } @rr), 5, 'stats: 5 resumed');
    my $st = JSON::PP::decode_json($t->http(GET => '/stats', port => 2)->{body});
    my $sc = $st->{tls}{session_cache};
    is($sc->{hits}, 5, 'session_cache.hits counts the 5 resumptions');
    cmp_ok($sc->{stores}, '>=', 1, 'session_cache.stores');
    cmp_ok($sc->{sessions}, '>=', 1, 'session_cache.sessions');
    my $prom = $t->http(GET => '/stats?format=prometheus', port => 2)->{body};
    like($prom, qr/^tollgate_tls_session_cache_total\{event="hit"\} 5$/m, 'Prometheus: cache hits');
    $t->stop;
}

# --- config errors
my $srv = $servers->();
like(tg_conf_error("tls_session_cache 1m;\n$srv"),
     qr/^\S+:1: invalid value "1m" in "tls_session_cache", expected shared:SIZE or off/m,
     'tls_session_cache needs shared:');
like(tg_conf_error("tls_session_cache shared:4k;\n$srv"),
     qr/^\S+:1: "tls_session_cache" size "shared:4k" must be between 32k and 1g/m, 'cache too small');
like(tg_conf_error("tls_session_timeout 0s;\n$srv"),
     qr/^\S+:1: "tls_session_timeout" must be between 1s and 7d/m, 'timeout floor');
like(tg_conf_error("tls_session_tickets maybe;\n$srv"),
     qr/^\S+:1: .*"tls_session_tickets"/m, 'tickets on|off');
like(tg_conf_error($servers->("tls_session_cache shared:1m;")),
     qr/^\S+:\d+: "tls_session_cache" directive is not allowed here/m, 'main scope only');

done_testing;
