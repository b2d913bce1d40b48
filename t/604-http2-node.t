# HTTP/2 with Node's own client (`http2.connect`, t/upstream/h2-client.js),
# over TLS (ALPN h2, the test CA trusted, no verification switched off) and
# over h2c with prior knowledge. On one session each: 300 concurrent streams
# (more than http2_max_streams), 1 MB POST bodies byte-exact at the upstream
# (SHA-256, with and without content-length), SSE and chunked responses per
# upstream write, answers the gateway makes (return, 404, 429 from
# rate_limit), response fields intact, a stream error and a cancelled
# download that leave the session serving.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test qw(:DEFAULT repo_root);
use Tollgate::TLS;

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $up = node_upstream('echo');
my $tg = tg_start(<<"C", files => { 'static/app.css' => "body { color: red }\n" });
workers 1;
rate_limit_zone rl key=\$http_x_key rate=1r/m burst=2 size=1m;
server {
    listen %%PORT%% http2;
    listen %%PORT2%% tls;
    server_name a.test localhost;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    client_max_body_size 10m;
    security_headers on;
    location / { proxy_pass $up->{addr}; }
    location /rl/ { rate_limit rl; proxy_pass $up->{addr}; }
    location /static/ { root %%DIR%%; }
    location = /ret { return 201 "made \$server_protocol\\n"; }
    location = /stats { allow 127.0.0.1; deny all; stats; }
}
C
my ($h2c, $tls) = ($tg->port(1), $tg->port(2));

sub h2_stats() {
    return eval { decode_json($tg->http(GET => '/stats')->{body})->{http2} } // {};
}

sub run_client($url, $ca, $key) {
    my $script = repo_root() . '/t/upstream/h2-client.js';
    my $out = `timeout 90 node $script $url $ca $key 2>&1`;
    my $res = eval { decode_json((split /\n/, $out)[-1]) };
    return $res // { errors => ["bad output: $out"] };
}

for my $run (["TLS", "https://a.test:$tls", $pki->{ca}], ['h2c', "http://localhost:$h2c", '-']) {
    my ($what, $url, $ca) = @$run;
    my $before = h2_stats();
    my $res = run_client($url, $ca, "k-$what");
    is_deeply($res->{errors}, [], "$what: no client errors") or diag explain $res;
    is($res->{alpn}, $what eq 'TLS' ? 'h2' : 'h2c', "$what: the session speaks " . ($res->{alpn} // '?'));
    is($res->{sessions}, 1, "$what: one session");

    my $c = $res->{concurrent} // {};
    is("$c->{ok} $c->{urls_ok}", '300 300', "$what: 300 concurrent streams, each answered with its own URL");
    cmp_ok($c->{ms} // 1e9, "<", 30_000, "$what: ... in $c->{ms} ms (300 ms each; sequential would be 90 s, 3 rounds of 128 streams about 1 s)");

    for my $p (@{$res->{posts} // []}) {
        my $how = $p->{with_length} ? 'with content-length' : 'without content-length';
        is($p->{status}, 200, "$what: 1 MB POST $how answered");
        is($p->{upstream_length}, 1 << 20, "$what: ... 1 MB reached the upstream");
        is($p->{upstream_sha256}, $p->{sent_sha256}, "$what: ... byte-exact (SHA-256)");
        if ($p->{with_length}) {
            is($p->{upstream_cl}, 1 << 20, "$what: ... with Content-Length upstream");
        } else {
            is($p->{upstream_te}, 'chunked', "$what: ... chunked upstream");
        }
    }
    is(scalar @{$res->{posts} // []}, 2, "$what: both POSTs ran");

    my $s = $res->{sse} // {};
    is("$s->{status} $s->{type} $s->{events}", '200 text/event-stream 5', "$what: SSE, 5 events");
    my @t = @{$s->{times} // []};
    cmp_ok(scalar @t, '>=', 4, "$what: ... in separate DATA frames (" . scalar(@t) . ')');
    cmp_ok(@t ? $t[-1] - $t[0] : 0, '>=', 120, "$what: ... as they were written (50 ms apart)");
    my $ch = $res->{chunked} // {};
    is("$ch->{status} $ch->{length}", '200 50000', "$what: chunked response complete");
    cmp_ok($ch->{chunks} // 0, '>=', 3, "$what: ... arriving per upstream write ($ch->{chunks} chunks, $ch->{span_ms} ms)");

    my $an = $res->{answers} // {};
    is("$an->{ret}{status} $an->{ret}{body}", "201 made HTTP/2.0\n", "$what: return 201 with its body");
    is($an->{missing}{status}, 404, "$what: 404 from root");
    is("$an->{file}{status} $an->{file}{type} $an->{file}{body}", "200 text/css; charset=utf-8 body { color: red }\n",
       "$what: a static file");
    is(join(' ', @{$an->{rate} // []}), '200 200 200 429', "$what: rate_limit: 429 on the stream");
    like($an->{retry_after} // '', qr/^\d+$/, "$what: ... with Retry-After");

    my $h = $res->{headers} // {};
    is($h->{status}, 200, "$what: upstream response fields");
    is($h->{'x-a'}, '1', "$what: ... a field");
    is($h->{'x-rep'}, 'one, two', "$what: ... a repeated field, both values");
    is_deeply($h->{'set-cookie'}, ['a=1', 'b=2'], "$what: ... two set-cookie fields");
    is($h->{'content-type'}, 'application/json', "$what: ... content-type");
    is($h->{'x-content-type-options'}, 'nosniff', "$what: ... security headers added");
    ok(!defined $h->{connection} && !defined $h->{'keep-alive'}, "$what: ... no connection-specific fields");

    my $e = $res->{stream_error} // {};
    is($e->{rst}, 1, "$what: DATA longer than content-length: RST_STREAM PROTOCOL_ERROR");
    my $x = $res->{cancel} // {};
    is($x->{rst}, 8, "$what: a download cancelled by the client (RST_STREAM CANCEL)");
    cmp_ok($x->{received}, '<', 50_000_000, "$what: ... after $x->{received} bytes");
    is("$res->{after}{status} $res->{after}{url}", '200 /after', "$what: the session still serves after both");
    ok(!$res->{closed_early}, "$what: ... and was never closed by the gateway");

    my $after = h2_stats();
    is($after->{connections} - ($before->{connections} // 0), 1, "$what: the gateway saw one h2 connection");
    # all but the stream reset with its head (HEADERS and DATA in one read)
    cmp_ok($after->{requests} - ($before->{requests} // 0), '>=', 300 + 2 + 2 + 3 + 4 + 1 + 1 + 1,
           "$what: ... carrying every request");
    cmp_ok($after->{resets_received} - ($before->{resets_received} // 0), '>=', 1,
           "$what: ... and counting the client's RST_STREAM");
}

done_testing;
