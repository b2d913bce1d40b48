# tg.json: decode and encode in C. Round trips against Node's JSON on a
# corpus Node writes (emoji raw and as surrogate-pair escapes, every escape,
# deep nesting, numbers at the edges of exactness): the gateway decodes each
# text and encodes the value again, and Node checks that its JSON.parse of
# the answer equals its JSON.parse of the original. Then the Lua-side
# contract (null, empty arrays, 2^53, errors as nil, err).
use v5.36;
use Test::More;
use JSON::PP ();
use Encode ();
use File::Temp qw(tempdir);
use lib 't/lib';
use Tollgate::Test;

my $tg = tg_start(<<"C", files => {
server {
    listen %%PORT%%;
    location /rt { lua_body_max 4m; lua_access %%DIR%%/rt.lua; }
    location /unit { lua_access %%DIR%%/unit.lua; }
}
C
    'rt.lua' => <<'L',
local v, err = tg.json.decode(tg.req.body())
if err then tg.exit(400, "decode: " .. err) end
local out, err2 = tg.json.encode(v)
if not out then tg.exit(500, "encode: " .. err2) end
tg.exit(200, out)
L
    'unit.lua' => <<'L',
local J = tg.json
local out = {}
local function check(name, got, want)
  out[#out + 1] = name .. "=" .. (got == want and "ok" or ("got " .. tostring(got) .. " want " .. tostring(want)))
end
check("pair", J.decode('"\\ud83d\\ude00"'), "\240\159\152\128")
check("raw emoji", J.decode('"\240\159\152\128"'), "\240\159\152\128")
check("bmp escape", J.decode('"\\u00e9\\u20ac"'), "\195\169\226\130\172")
check("escapes", J.decode('"\\"\\\\\\/\\b\\f\\n\\r\\t"'), "\"\\/\b\f\n\r\t")
check("encode escapes", J.encode("a\"b\\c\n\1"), '"a\\"b\\\\c\\n\\u0001"')
check("encode emoji raw", J.encode("\240\159\152\128"), '"\240\159\152\128"')
check("null decoded", J.decode("[1,null,3]")[2], J.null)
check("null count", #J.decode("[1,null,3]"), 3)
check("top null", J.decode("null"), J.null)
check("encode null", J.encode({1, J.null, 3}), "[1,null,3]")
check("encode nil", J.encode(nil), "null")
check("empty table", J.encode({}), "{}")
check("empty_array", J.encode(J.empty_array), "[]")
check("empty_array inside", J.encode({a = J.empty_array}), '{"a":[]}')
check("decoded [] stays []", J.encode(J.decode("[]")), "[]")
check("decoded {} stays {}", J.encode(J.decode("{}")), "{}")
check("array_mt", getmetatable(J.decode("[1]")), J.array_mt)
check("setmetatable array_mt", J.encode(setmetatable({}, J.array_mt)), "[]")
check("2^53", J.decode("9007199254740992"), 2^53)
check("2^53-1 exact", J.encode(J.decode("9007199254740991")), "9007199254740991")
check("-2^53", J.encode(-2^53), "-9007199254740992")
check("0.1", J.encode(0.1), "0.1")
check("1/3 round trip", J.decode(J.encode(1/3)), 1/3)
check("1e300", J.decode("1E300"), 1e300)
check("1e400 is inf", J.decode("-1e400"), -math.huge)
check("-0", J.encode(J.decode("-0")), "0")
check("int", J.encode(42), "42")
check("float", J.encode(-1.5), "-1.5")
check("bools", J.encode({true, false}), "[true,false]")
check("object", J.encode({a = {b = "c"}}), '{"a":{"b":"c"}}')
check("nested", J.decode('{"a":[{"b":[1,2,{"c":"d"}]}]}').a[1].b[3].c, "d")
check("dup key last", J.decode('{"a":1,"a":2}').a, 2)
check("ws", J.decode(' \t\r\n[ 1 , 2 ] \n')[2], 2)
check("deep 1000", type(J.decode(string.rep("[", 1000) .. string.rep("]", 1000))), "table")
local deep = {}
local t = deep
for i = 1, 999 do t[1] = {}; t = t[1] end
check("encode deep 1000", #J.encode(deep), 2000)
local function bad(name, s, pat)
  local v, err = J.decode(s)
  check(name, v == nil and type(err) == "string" and (pat == nil or err:find(pat, 1, true) ~= nil), true)
end
bad("empty", "", "unexpected end")
bad("ws only", "  ", "unexpected end")
bad("trailing comma array", "[1,]")
bad("trailing comma object", '{"a":1,}', "expected a key string")
bad("leading zero", "01", "garbage after the value")
bad("bare dot", "1.", "bad number")
bad("plus", "+1")
bad("hex", "0x10")
bad("NaN", "NaN")
bad("Infinity", "Infinity")
bad("single quotes", "'a'")
bad("raw control", '"a\1b"', "control character")
bad("raw newline", '"a\nb"', "control character")
bad("bad escape", '"\\x41"', "bad escape")
bad("short u", '"\\u12"', "bad \\u escape")
bad("lone high", '"\\ud83d"', "lone surrogate")
bad("lone low", '"\\ude00"', "lone surrogate")
bad("high+non-low", '"\\ud83d\\u0041"', "lone surrogate")
bad("invalid utf8", '"\255"', "invalid UTF-8")
bad("overlong", '"\192\175"', "invalid UTF-8")
bad("cesu surrogate", '"\237\160\128"', "invalid UTF-8")
bad("truncated utf8", '"\226\130"', "invalid UTF-8")
bad("unterminated", '"abc', "unterminated")
bad("garbage", "[1] x", "garbage after the value")
bad("nul", "nul")
bad("unclosed", "[1,2", "expected ',' or ']'")
bad("key not string", "{1:2}", "expected a key string")
bad("deep 1001", string.rep("[", 1001) .. string.rep("]", 1001), "nested too deep")
local v, err = J.decode("[1, ?]")
check("position", err, "unexpected character at byte 5")
local function ebad(name, val, pat)
  local s, e = J.encode(val)
  check(name, s == nil and type(e) == "string" and e:find(pat, 1, true) ~= nil, true)
end
ebad("function", {f = print}, "cannot encode a function")
local cyc = {}
cyc.self = cyc
ebad("cycle", cyc, "nested too deep")
ebad("mixed", {1, a = 2}, "both string and number keys")
ebad("sparse", {[1] = 1, [3] = 3}, "sparse")
ebad("nan", 0/0, "NaN")
ebad("inf", math.huge, "infinity")
check("require alias", require("tollgate.json"), J)
check("invalid utf8 -> fffd", J.encode("a\255b"), '"a\\ufffdb"')
local ok, e = pcall(J.decode, {})
check("non-string raises", ok, false)
tg.exit(200, table.concat(out, "\n") .. "\n")
L
});

# ---- round trips against Node
my $dir = tempdir('tg-json-XXXXXX', TMPDIR => 1, CLEANUP => 1);
Tollgate::Test::_spew("$dir/corpus.js", <<'JS');
const deep = (n) => { let v = "bottom"; for (let i = 0; i < n; i++) v = i % 2 ? [v] : { k: v }; return v; };
const texts = [
  '{"emoji":"😀🎉👍🏽","flag":"🇫🇷","zwj":"👨‍👩‍👧"}',
  '"\\ud83d\\ude00 \\uD83C\\uDF89 \\u00e9 \\u20ac \\u0000 \\u001f \\u007f"',
  '"\\"\\\\\\/\\b\\f\\n\\r\\t"',
  JSON.stringify({ ctl: Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join("") }),
  JSON.stringify({ ls: "\u2028\u2029", bom: "\ufeff", cjk: "漢字かな", rtl: "مرحبا", nonchar: "\uffff" }),
  JSON.stringify({ astral: "\u{10ffff}\u{1d11e}\u{1f600}" }),
  '[]', '{}', '[[]]', '[{}]', '{"a":[],"b":{},"c":[[],[[]]]}',
  '[1,null,3]', 'null', 'true', 'false', '0', '-0', '"s"',
  '[9007199254740991,-9007199254740991,9007199254740992,4503599627370496.5]',
  '[0.1,0.2,0.30000000000000004,1e21,1e-7,123456789.123456789,5e-324,1.7976931348623157e308]',
  '[1E2,1e+2,1e-2,-1.5e-10,2.5E+300,100,1000000]',
  '[12345678901234567890,-98765432109876543210]',
  JSON.stringify(deep(500)),
  JSON.stringify(Array.from({ length: 1000 }, (_, i) => ({ id: i, name: "item" + i, tags: ["a", "b"], ok: i % 2 == 0, v: i / 7 }))),
  JSON.stringify({ "": "empty key", "with space": 1, "ключ": "значение", "😀": "emoji key", "a\"b": "quote key" }),
  ' \n\t{ "spaced" :\r\n [ 1 , 2 ] } \n',
  JSON.stringify({ big: "x".repeat(100000) }),
];
process.stdout.write(JSON.stringify(texts));
JS
Tollgate::Test::_spew("$dir/check.js", <<'JS');
const fs = require("fs");
const [orig, ours] = [process.argv[2], process.argv[3]].map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const canon = (v) => Array.isArray(v) ? "[" + v.map(canon).join(",") + "]"
  : v && typeof v === "object" ? "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canon(v[k])).join(",") + "}"
  : JSON.stringify(v);
orig.forEach((t, i) => {
  let msg;
  try { msg = canon(JSON.parse(ours[i])) === canon(JSON.parse(t)) ? "same" : "differs: " + ours[i].slice(0, 200); }
  catch (e) { msg = "unparsable: " + e.message + " " + String(ours[i]).slice(0, 200); }
  console.log(i + " " + msg);
});
JS
my $corpus = `node $dir/corpus.js`;
is($?, 0, 'node wrote the corpus');
my $texts = JSON::PP->new->utf8(0)->decode(Encode::decode('UTF-8', $corpus));
my @ours;
for my $i (0 .. $#$texts) {
    my $bytes = Encode::encode('UTF-8', $texts->[$i]);
    my $r = $tg->http(POST => '/rt', body => $bytes);
    is($r->{status}, 200, "corpus $i decoded and encoded") or diag substr($r->{body}, 0, 300);
    push @ours, Encode::decode('UTF-8', $r->{body});
}
Tollgate::Test::_spew("$dir/orig.json", Encode::encode('UTF-8', JSON::PP->new->encode($texts)));
Tollgate::Test::_spew("$dir/ours.json", Encode::encode('UTF-8', JSON::PP->new->encode(\@ours)));
my %verdict = map { /^(\d+) (.*)$/ ? ($1, $2) : () } split /\n/, `node $dir/check.js $dir/orig.json $dir/ours.json`;
is($verdict{$_}, 'same', "corpus $_: Node parses the gateway's encoding to the same value")
    for 0 .. $#$texts;

# invalid texts: the gateway refuses each (400 from nil, err), and so does Node
my @invalid = ('', '[1,]', '{"a":1,}', '01', '1.', '.5', '+1', 'NaN', "'a'", "\"a\x01b\"",
               '"\x41"', '[1] x', '{1:2}', '[', '{"a"}', '"\u12"', "\"\xff\"", "\"\xc0\xaf\"",
               '[' x 1001 . ']' x 1001);
Tollgate::Test::_spew("$dir/invalid.json", JSON::PP->new->encode([map { Encode::decode('latin1', $_) } @invalid[0 .. $#invalid - 3]]));
for my $t (@invalid) {
    my $r = $tg->http(POST => '/rt', body => $t);
    is($r->{status}, 400, 'invalid ' . substr(JSON::PP->new->ascii->allow_nonref->encode($t), 0, 30) . ' -> nil, err')
        or diag $r->{body};
}
my $node_invalid = `node -e 'const t = JSON.parse(require("fs").readFileSync(process.argv[1], "latin1")); let n = 0; for (const s of t) { try { JSON.parse(s); console.log("accepted " + JSON.stringify(s)); } catch (e) { n++; } } console.log(n + " refused");' $dir/invalid.json`;
is($node_invalid, (@invalid - 3) . " refused\n", 'Node refuses the same syntax errors');

# ---- the Lua-side contract
my $r = $tg->http(GET => '/unit');
is($r->{status}, 200, 'unit script ran') or diag $r->{body};
for my $line (split /\n/, $r->{body}) {
    my ($name, $res) = split /=/, $line, 2;
    is($res, 'ok', "lua: $name");
}
done_testing;
