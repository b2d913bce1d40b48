# $request_id and request_id_header: generated ids, pass-through of a valid
# incoming id, trust=off, the header upstream (Node echo) and to the client.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $tg = tg_start(<<"C");
log_format rid '\$request_id \$status';
server {
    listen %%PORT%%;
    access_log %%DIR%%/rid.log rid;
    request_id_header X-Request-Id;
    location /p/ { proxy_pass $up->{addr}; }
    location /off/ {
        request_id_header X-Request-Id trust=off;
        proxy_pass $up->{addr};
    }
    location /other/ {
        request_id_header Trace-Id;
        return 200 "\$request_id";
    }
    location /twice { return 200 "\$request_id \$request_id"; }
}
server {
    listen %%PORT2%%;
    location / { return 200 "\$request_id"; }
}
C

my $hex = qr/^[0-9a-f]{32}$/;

sub via($path, @h) {
    my $r = $tg->http(GET => $path, headers => [@h]);
    my $d = eval { decode_json($r->{body}) } // {};
    return ($r, $d->{headers} // {});
}

# generated: the same id upstream, to the client and in the log
my ($r, $h) = via('/p/a');
is($r->{status}, 200, 'proxied');
like($h->{'x-request-id'}, $hex, 'upstream got a generated id: 32 lowercase hex');
is($r->{headers}{'x-request-id'}, $h->{'x-request-id'}, 'the client got the same id');
my $first = $h->{'x-request-id'} // '';
(undef, $h) = via('/p/b');
isnt($h->{'x-request-id'}, $first, 'each request its own id');

my %seen;
for (1 .. 200) {
    my $id = $tg->http(GET => '/twice')->{body};
    my ($a, $b) = split / /, $id;
    $seen{$a}++ if defined $a && $a =~ $hex && defined $b && $a eq $b;
}
is(scalar(keys %seen), 200, '200 requests: 200 distinct ids, each stable within its request');

# pass-through of a valid incoming id
($r, $h) = via('/p/c', 'X-Request-Id' => 'edge-4f1c:9/ab_CD');
is($h->{'x-request-id'}, 'edge-4f1c:9/ab_CD', 'a valid incoming id goes upstream unchanged');
is($r->{headers}{'x-request-id'}, 'edge-4f1c:9/ab_CD', 'and back to the client');
($r, $h) = via('/p/d', 'X-Request-Id' => 'x' x 200);
is($h->{'x-request-id'}, 'x' x 200, '200 characters: kept');
for my $bad (['x' x 201, '201 characters'], ['a b', 'a space'], ["caf\xc3\xa9", 'non-ASCII']) {
    ($r, $h) = via('/p/e', 'X-Request-Id' => $bad->[0]);
    like($h->{'x-request-id'}, $hex, "invalid incoming id ($bad->[1]): replaced upstream");
    is($r->{headers}{'x-request-id'}, $h->{'x-request-id'}, "invalid ($bad->[1]): same id to the client");
}
($r, $h) = via('/p/f', 'X-Request-Id' => 'one', 'X-Request-Id' => 'two');
is($h->{'x-request-id'}, 'one', 'several incoming: the first valid one, once upstream');

# trust=off
($r, $h) = via('/off/a', 'X-Request-Id' => 'client-chosen');
like($h->{'x-request-id'}, $hex, 'trust=off: a generated id upstream');
is($r->{headers}{'x-request-id'}, $h->{'x-request-id'}, 'trust=off: the same to the client');

# another header name; $request_id takes the incoming one
$r = $tg->http(GET => '/other/', headers => ['Trace-Id' => 'abc123']);
is($r->{body}, 'abc123', '$request_id is the incoming Trace-Id');
is($r->{headers}{'trace-id'}, 'abc123', 'Trace-Id on a local answer too');
ok(!exists $r->{headers}{'x-request-id'}, 'the location\'s own header name only');

# no request_id_header: still an id, the incoming header ignored
$r = $tg->http(GET => '/', port => 2, headers => ['X-Request-Id' => 'ignored']);
like($r->{body}, $hex, 'without request_id_header: a generated id');
ok(!exists $r->{headers}{'x-request-id'}, 'and no header added');

# the access log sees the id the client got
$r = $tg->http(GET => '/p/log');
my $id = $r->{headers}{'x-request-id'} // 'none';
ok(wait_until(sub { Tollgate::Test::_slurp($tg->dir . '/rid.log') =~ /^\Q$id\E 200$/m }, 5),
   'access log line has the same $request_id');

like(tg_conf_error("server { listen 1; request_id_header X-Id trust=maybe; }"),
     qr/^\S+:\d+: "request_id_header": invalid trust "maybe", expected on or off/m, 'bad trust');
like(tg_conf_error("server { listen 1; request_id_header \"X Id\"; }"),
     qr/^\S+:\d+: "request_id_header": invalid header name "X Id"/m, 'bad header name');

$tg->stop;
done_testing;
