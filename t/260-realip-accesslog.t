# real_ip_from / real_ip_header and the access log formats.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C");
server {
    listen %%PORT%%;
    access_log %%DIR%%/timed.log timed;
    location /trusted/ {
        real_ip_from 127.0.0.0/8 10.0.0.0/8;
        proxy_pass $up->{addr};
        access_log %%DIR%%/json.log json;
    }
    location /xri/ {
        real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        return 200 "\$remote_addr";
    }
    location /untrusted/ {
        real_ip_from 192.0.2.0/24;
        return 200 "\$remote_addr";
    }
    location /quiet/ { access_log off; return 200 "q"; }
    location / { proxy_pass $up->{addr}; }
}
C

sub fwd($path, @h) {
    my $r = $tg->http(GET => $path, headers => [@h]);
    return eval { decode_json($r->{body}) } // { raw => $r->{body} };
}

my $d = fwd('/trusted/a', 'X-Forwarded-For' => '198.51.100.7, 10.1.2.3');
is($d->{headers}{'x-real-ip'}, '198.51.100.7', 'XFF: first untrusted hop from the right');
$d = fwd('/trusted/b', 'X-Forwarded-For' => '1.1.1.1', 'X-Forwarded-For' => '198.51.100.8, 10.0.0.9');
is($d->{headers}{'x-real-ip'}, '198.51.100.8', 'several XFF lines read as one list');
$d = fwd('/trusted/c', 'X-Forwarded-For' => 'garbage, 10.0.0.1');
is($d->{headers}{'x-real-ip'}, '10.0.0.1', 'garbage stops the walk');
is($tg->http(GET => '/xri/', headers => ['X-Real-IP' => '203.0.113.5'])->{body}, '203.0.113.5',
   'X-Real-IP from a trusted peer');
is($tg->http(GET => '/untrusted/', headers => ['X-Forwarded-For' => '203.0.113.5'])->{body},
   '127.0.0.1', 'untrusted peer: header ignored');
$d = fwd('/plain', 'X-Forwarded-For' => '203.0.113.99');
is($d->{headers}{'x-real-ip'}, '127.0.0.1', 'no real_ip_from: the TCP peer');

$tg->http(GET => '/quiet/x');
$tg->http(GET => '/log-me?q=1', headers => ['User-Agent' => "evil\"agent\x80", Referer => 'http://r.test/']);
$tg->http(GET => '/bad', headers => ['X-Ctl' => "a\x01b"]);
wait_until(sub { Tollgate::Test::_slurp($tg->dir . '/timed.log') =~ /log-me/ }, 3);
my $timed = Tollgate::Test::_slurp($tg->dir . '/timed.log');
like($timed, qr{^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /log-me\?q=1 HTTP/1\.1" 200 \d+ "http://r\.test/" "evil\\x22agent\\x80" rt=\d+\.\d{3} urt=\d+\.\d{3}$}m,
     'timed: the combined line with rt= and urt=, quotes and controls escaped');
unlike($timed, qr{/quiet/}, 'access_log off');
like($timed, qr{"GET /bad HTTP/1\.1" 400 }, 'rejected requests are logged too');
my @json = grep { length } split /\n/, Tollgate::Test::_slurp($tg->dir . '/json.log');
my $j = eval { decode_json($json[0]) } // {};
is($j->{remote_addr}, '198.51.100.7', 'json: remote_addr after real_ip');
is($j->{status}, 200, 'json: status');
is($j->{uri}, '/trusted/a', 'json: uri');
ok(defined $j->{request_time} && defined $j->{upstream_response_time}, 'json: timings');
like($j->{upstream_addr}, qr/^127\.0\.0\.1:\d+$/, 'json: upstream_addr');
$tg->stop;
done_testing;
