# A real browser on HTTP/2: headless Chromium loads a page with 60 assets
# (20 stylesheets, 20 scripts, 20 images; half served by `root`, half
# proxied from a Node upstream, express's serve-static) through the gateway
# over TLS. The page reads performance.getEntries() once everything loaded:
# every entry's nextHopProtocol must be "h2", all 60 must have loaded, and
# the gateway's stats must show one (or very few) HTTP/2 connections and no
# HTTP/1.1 one from the browser.
#
# Chromium trusts the test certificate through its SPKI hash
# (--ignore-certificate-errors-spki-list), not --ignore-certificate-errors:
# any other certificate would still fail.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use MIME::Base64 qw(decode_base64);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test;
use Tollgate::TLS qw(make_pki run_cmd);

my $chromium = '/usr/bin/chromium';
plan skip_all => 'chromium is not installed (contrib/install-deps.sh installs it)' unless -x $chromium;

my $N = 20; # of each kind
my $site = tempdir('tg-h2-site-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TG_KEEP});
chmod(0755, $site); # the workers may run as another user
make_path("$site/$_") for qw(css js img);
my $png = decode_base64('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==');
sub spew($file, $data) {
    open(my $fh, '>:raw', "$site/$file") or die "$file: $!";
    print $fh $data;
    close $fh;
}
my @tags;
for my $i (1 .. $N) {
    # odd ones through the gateway's root, even ones proxied to Node
    my $pre = $i % 2 ? '' : '/up';
    spew("css/s$i.css", ".c$i { margin: ${i}px }\n" . ('/* padding */' x 200) . "\n");
    spew("js/j$i.js", "window.scripts = (window.scripts || 0) + 1;\n" . ('// padding' x 200) . "\n");
    spew("img/i$i.png", $png);
    push @tags, qq{<link rel="stylesheet" href="$pre/css/s$i.css" onload="ok()" onerror="bad(event)">},
                qq{<script src="$pre/js/j$i.js" onload="ok()" onerror="bad(event)"></script>},
                qq{<img src="$pre/img/i$i.png" onload="ok()" onerror="bad(event)">};
}
spew('index.html', <<"H");
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>60 assets</title>
<script>
var loaded = 0, failed = [];
function ok() { loaded++; }
function bad(e) { failed.push(e.target.src || e.target.href); }
addEventListener('load', function () {
    var entries = performance.getEntries().filter(function (e) {
        return e.entryType === 'navigation' || e.entryType === 'resource';
    }).map(function (e) { return { name: e.name, type: e.entryType, proto: e.nextHopProtocol }; });
    document.getElementById('out').textContent = JSON.stringify({
        loaded: loaded, failed: failed, scripts: window.scripts || 0, entries: entries });
});
</script>
@{[join("\n", @tags[grep { $tags[$_] =~ /stylesheet/ } 0 .. $#tags])]}
</head><body>
<pre id="out"></pre>
@{[join("\n", grep { !/stylesheet/ } @tags)]}
</body></html>
H

my $pki = make_pki();
my $a = $pki->{'a.test'};
my $node = node_upstream('static', env => { ROOT => $site });
my $tg = tg_start(<<"C");
workers 1;
server {
    listen %%PORT%% tls;
    listen %%PORT2%%;
    server_name a.test;
    tls_certificate $a->{cert};
    tls_certificate_key $a->{key};
    location / { root $site; }
    location /up/ { proxy_pass http://$node->{addr}/; }
    location = /stats { allow 127.0.0.1; deny all; stats; }
}
C
my $tls = $tg->port(1);

# base64(SHA-256(SubjectPublicKeyInfo)) of the gateway's certificate
my ($spki, $rc) = run_cmd(undef, 'sh', '-c',
    "openssl x509 -in '$a->{cert}' -pubkey -noout | openssl pkey -pubin -outform der"
    . ' | openssl dgst -sha256 -binary | openssl base64 -A');
ok(!$rc && $spki =~ m{^[A-Za-z0-9+/]{43}=$}, 'SPKI hash of the test certificate');

sub stats() {
    return eval { decode_json($tg->http(GET => '/stats', port => 2)->{body}) } // {};
}
sub browse($extra = []) {
    my ($out) = run_cmd(undef, 'timeout', '60', $chromium, '--headless', '--no-sandbox',
        '--disable-gpu', '--user-data-dir=' . $tg->dir . '/chromium',
        '--no-first-run', '--disable-background-networking', '--disable-component-update',
        "--host-resolver-rules=MAP a.test 127.0.0.1", @$extra,
        '--virtual-time-budget=10000', '--dump-dom', "https://a.test:$tls/index.html");
    return $out;
}

my $before = stats();
my $html = browse(["--ignore-certificate-errors-spki-list=$spki"]);
my $after = stats();
my ($json) = $html =~ m{<pre id="out">(.*?)</pre>}s;
$json //= '';
$json =~ s/&lt;/</g; $json =~ s/&gt;/>/g; $json =~ s/&quot;/"/g; $json =~ s/&amp;/&/g;
my $res = eval { decode_json($json) } // {};
ok($res->{entries}, 'the page reported its performance entries') or diag substr($html, -3000);

my @e = @{$res->{entries} // []};
my @res = grep { $_->{type} eq 'resource' } @e;
my ($nav) = grep { $_->{type} eq 'navigation' } @e;
is($nav && $nav->{proto}, 'h2', 'the page itself came over h2');
is(scalar @res, 3 * $N, '60 resource entries');
my @not_h2 = grep { $_->{proto} ne 'h2' } @e;
is(scalar @not_h2, 0, "every entry's nextHopProtocol is h2") or diag explain \@not_h2;
is($res->{loaded}, 3 * $N, 'all 60 assets loaded (onload)');
is_deeply($res->{failed}, [], 'none failed');
is($res->{scripts}, $N, 'the 20 scripts ran');
is(scalar(grep { $_->{name} =~ m{/up/} } @res), 3 * $N / 2, 'half of them proxied from Node');

my %d = map { $_ => ($after->{$_ =~ s/\..*//r}{$_ =~ s/.*\.//r} // 0)
                   - ($before->{$_ =~ s/\..*//r}{$_ =~ s/.*\.//r} // 0) }
        qw(http2.connections http2.requests http1.connections);
cmp_ok($d{'http2.connections'}, '>=', 1, "h2 connections: $d{'http2.connections'}");
cmp_ok($d{'http2.connections'}, '<=', 2, '... one, or very few, for 61 requests');
cmp_ok($d{'http2.requests'}, '>=', 3 * $N + 1, "... carrying $d{'http2.requests'} requests");
cmp_ok($d{'http1.connections'}, '<=', 1, '... and no HTTP/1.1 connection but the stats request');

# the SPKI pin is what made it work: without it the certificate is refused
$before = stats();
$html = browse();
$after = stats();
unlike($html, qr/<pre id="out">\{/, 'without the SPKI allowlist the page does not load');
cmp_ok(($after->{tls}{handshakes}{failed} // 0) - ($before->{tls}{handshakes}{failed} // 0), '>=', 1,
       '... the browser refused the certificate (failed handshakes counted)');

done_testing;
