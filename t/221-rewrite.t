# rewrite, return and break (nginx's rewrite directives): server-level
# rewrites before the location is chosen, last/break/redirect/permanent,
# captures (numbered and named) and variables in the replacement, the query
# kept, prefixed or dropped ('?'), the bound on routing again (10, then 500),
# return and rewrite in config order, and what proxy_pass sends after each.
# The echo upstream answers with the request-target it received.
use v5.36;
use Test::More;
use JSON::PP qw(decode_json);
use lib 't/lib';
use Tollgate::Test;

my $up = node_upstream('echo');
my $u = $up->{addr};

my $tg = tg_start(<<"C", errors_ok => [qr/rewrite or internal redirection cycle/]);
upstream up { server $u; }
server {
    listen %%PORT%%;
    rewrite ^/old/(.*)\$ /new/\$1;
    rewrite ^/srv-break/(.*)\$ /new/sb-\$1 break;
    location /new/ { proxy_pass http://up/backend/; }
    location /a/ {
        rewrite ^/a/(\\d+)/(\\w+)\$ /b/\$2/\$1 last;
        rewrite ^/a/n/(?<word>[a-z]+)\$ /b/named-\$word last;
        rewrite ^/a/host\$ /b/\$host-\$arg_x last;
        rewrite ^/a/q\$ /b/q?added=1 last;
        rewrite ^/a/drop\$ /b/dropped? last;
        rewrite ^/a/chain\$ /a/chain2;
        rewrite ^/a/chain2\$ /b/chained;
        return 200 "a fell through";
    }
    location /c/ {
        rewrite ^/c/chain\$ /c/chain2;
        rewrite ^/c/chain2\$ /b/chained;
    }
    location /b/ { proxy_pass http://up/bb/; }
    location /brk/ {
        rewrite ^/brk/(.*)\$ /elsewhere/\$1 break;
        return 403;
    }
    location /elsewhere/ { return 200 "should not be routed here"; }
}
server {
    listen %%PORT2%%;
    location /brk/ {
        rewrite ^/brk/(.*)\$ /other/\$1 break;
        proxy_pass http://up/pfx/;
    }
    location /r/ {
        rewrite ^/r/temp/(.*)\$ /target/\$1 redirect;
        rewrite ^/r/perm/(.*)\$ https://example.test/\$1 permanent;
        rewrite ^/r/url/(.*)\$ http://example.test/u/\$1;
        rewrite ^/r/scheme\$ \$scheme://example.test/s? redirect;
        return 404;
    }
    location /loop/ { rewrite ^/loop/(.*)\$ /loop/\$1 last; }
    location /order1/ { return 200 "return first"; rewrite ^ /b/x last; }
    location /order2/ { rewrite ^/order2/go\$ /b/went last; return 200 "return second"; }
    location /order3/ { rewrite ^ /b/brk break; return 200 "not reached"; proxy_pass http://up; }
    location /stop/ { break; rewrite ^ /b/never last; proxy_pass http://up; }
    location /b/ { proxy_pass http://up; }
}
C

sub get($path, %o) {
    my $port = delete $o{port} // $tg->port;
    return Tollgate::Test::http_request($port, GET => $path, %o);
}
sub target($path, %o) {
    my $r = get($path, %o);
    return "status $r->{status}: $r->{body}" unless ($r->{status} // 0) == 200;
    return eval { decode_json($r->{body})->{url} } // "body: $r->{body}";
}

# server level: before the location is chosen
is(target('/old/x?k=v'), '/backend/x?k=v', 'server rewrite, then routing on the new path');
is(target('/srv-break/y'), '/backend/sb-y', 'server-level break still routes');
# last: routed again, the prefix rule applies to the new path
is(target('/a/42/cat'), '/bb/cat/42', 'last with $1 $2');
is(target('/a/n/fox'), '/bb/named-fox', 'named capture');
is(target('/a/host?x=1', host => 'h.test'), '/bb/h.test-1?x=1', 'variables in the replacement');
is(target('/a/q?orig=2'), '/bb/q?added=1&orig=2', 'new args first, then the original');
is(target('/a/drop?orig=2'), '/bb/dropped', 'a trailing ? drops the args');
is(target('/c/chain'), '/bb/chained', 'without a flag the next rewrite sees the new URI, then routing');
is(get('/a/chain')->{body}, 'a fell through', 'a return after a flagless rewrite answers (nginx)');
is(get('/a/none')->{body}, 'a fell through', 'no match: return');
# break: stays, the return after it is skipped; nothing is proxied (no handler): 404
is(get('/brk/z')->{status}, 404, 'break stops return too (no content handler left)');
is(target('/brk/z?q=1', port => $tg->port(2)), '/other/z?q=1',
   'break: proxy_pass sends the changed URI as it is');
# redirects
my $r = get('/r/temp/p?x=1', port => $tg->port(2));
is($r->{status}, 302, 'redirect flag: 302');
is($r->{headers}{location}, '/target/p?x=1', 'Location with the args appended');
$r = get('/r/perm/p', port => $tg->port(2));
is($r->{status}, 301, 'permanent: 301');
is($r->{headers}{location}, 'https://example.test/p', 'absolute Location');
$r = get('/r/url/p?a=b', port => $tg->port(2));
is($r->{status}, 302, 'http:// replacement redirects');
is($r->{headers}{location}, 'http://example.test/u/p?a=b', 'with the args');
$r = get('/r/scheme?a=b', port => $tg->port(2));
is($r->{headers}{location}, 'http://example.test/s', '$scheme replacement, args dropped');
is(get('/r/other', port => $tg->port(2))->{status}, 404, 'no rewrite matched: return 404');
# the cycle bound
my $off = $tg->log_offset;
is(get('/loop/x', port => $tg->port(2))->{status}, 500, 'a rewrite loop ends in 500');
ok($tg->wait_log(qr/rewrite or internal redirection cycle/, 5, $off), 'and is logged');
# config order of return and rewrite
is(get('/order1/x', port => $tg->port(2))->{body}, 'return first', 'return before rewrite wins');
is(target('/order2/go', port => $tg->port(2)), '/b/went', 'rewrite before return runs first');
is(get('/order2/other', port => $tg->port(2))->{body}, 'return second', 'then the return');
is(target('/order3/x', port => $tg->port(2)), '/b/brk', 'rewrite break skips the return');
is(target('/stop/x', port => $tg->port(2)), '/stop/x', 'break; stops the rewrites');
# twice on one connection: no state leaks between requests
my $c = $tg->keepalive(port => 2);
for (1 .. 2) {
    my $k = $c->request(GET => '/r/temp/k');
    is($k->{status}, 302, "keep-alive request $_");
}
$c->close;
$tg->stop;

like(tg_conf_error("server { listen %%PORT%%; rewrite ^/( /x; }"),
     qr/^\S+:\d+: invalid regex "\^\/\(" at offset/m, 'bad regex: file:line');
like(tg_conf_error("server { listen %%PORT%%; rewrite ^/ /x bogus; }"),
     qr/^\S+:\d+: invalid flag "bogus" in "rewrite"/m, 'bad flag');
like(tg_conf_error("server { listen %%PORT%%; rewrite ^/ x; }"),
     qr/^\S+:\d+: "rewrite" replacement "x" must start with/m, 'replacement not a path');
like(tg_conf_error("server { listen %%PORT%%; rewrite ^/ /\$nope; }"),
     qr/^\S+:\d+: unknown variable "\$nope"/m, 'unknown variable in the replacement');
like(tg_conf_error("server { listen %%PORT%%; return 999; }"),
     qr/^\S+:\d+: invalid return code "999"/m, 'bad return code');
done_testing;
