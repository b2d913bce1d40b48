// A browser-style gRPC-Web client for the tests, built by hand (the grpc-web
// npm runtime needs a browser's XHR): it frames tgtest.Msg (grpc-test.proto,
// encoded here: 3 fields) as gRPC-Web, in binary or base64 text, sends it
// over HTTP/1.1 or HTTP/2 (h2c) and reads the answer as it arrives: frames
// (text mode: base64 decoded quantum by quantum, padding allowed anywhere a
// quantum ends), the trailer frame (flag 0x80) parsed as a header block.
//
//   node grpc-web-client.js 'JSON'
//   {port, h2, text, method ("Unary", "ServerStream"), path (instead of
//    method), size (data bytes, a pattern), n, msgText, headers {},
//    chunks (text: the body's base64 in that many pieces, each padded),
//    raw (the body as given, instead of a message), accept, timeout ms}
// Prints one JSON line: {status, headers, messages [{n, text, len, sha}],
// trailers, frames, firstMsgMs, endMs, sentSha, maxChunk, error}.
'use strict';
const http = require('http');
const http2 = require('http2');
const crypto = require('crypto');

const o = JSON.parse(process.argv[2]);
const sha = (b) => crypto.createHash('sha1').update(b).digest('hex');

function varint(n) {
    const out = [];
    do {
        let b = n & 0x7f;
        n = Math.floor(n / 128);
        if (n) b |= 0x80;
        out.push(b);
    } while (n);
    return Buffer.from(out);
}
function encodeMsg(data, n, text) {
    const parts = [];
    if (data.length) parts.push(Buffer.from([0x0a]), varint(data.length), data);
    if (n) parts.push(Buffer.from([0x10]), varint(n));
    if (text) { const t = Buffer.from(text); parts.push(Buffer.from([0x1a]), varint(t.length), t); }
    return Buffer.concat(parts);
}
function decodeMsg(b) {
    const m = { data: Buffer.alloc(0), n: 0, text: '' };
    let i = 0;
    const rd = () => { let v = 0, mul = 1, c; do { c = b[i++]; v += (c & 0x7f) * mul; mul *= 128; } while (c & 0x80); return v; };
    while (i < b.length) {
        const tag = rd();
        if (tag === 0x10) { m.n = rd(); continue; }
        const len = rd();
        const v = b.subarray(i, i + len);
        i += len;
        if (tag === 0x0a) m.data = v; else if (tag === 0x1a) m.text = v.toString();
    }
    return m;
}
const frame = (flag, payload) => {
    const h = Buffer.alloc(5);
    h[0] = flag;
    h.writeUInt32BE(payload.length, 1);
    return Buffer.concat([h, payload]);
};

const data = Buffer.alloc(o.size || 0);
for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
let body = o.raw !== undefined ? Buffer.from(o.raw) : frame(0, encodeMsg(data, o.n || 0, o.msgText || ''));
if (o.text && o.raw === undefined) {
    // each piece base64-encoded on its own (so padded), as clients that
    // encode message by message send it
    const k = o.chunks || 1, step = Math.ceil(body.length / k);
    const pieces = [];
    for (let off = 0; off < body.length; off += step) pieces.push(body.subarray(off, off + step).toString('base64'));
    body = Buffer.from(pieces.join(''));
}
const ctype = o.ctype || (o.text ? 'application/grpc-web-text' : 'application/grpc-web+proto');
const headers = Object.assign({ 'content-type': ctype, 'x-grpc-web': '1',
                                'x-user-agent': 'grpc-web-javascript/0.1',
                                accept: o.accept || ctype }, o.headers || {});
const path = o.path || '/tgtest.Test/' + (o.method || 'Unary');

const res = { messages: [], frames: 0, sentSha: sha(data), maxChunk: 0 };
const t0 = Date.now();
let text = '', bin = Buffer.alloc(0), done = false;
function feed(chunk) {
    res.maxChunk = Math.max(res.maxChunk, chunk.length);
    if (o.text || /grpc-web-text/.test(res.headers['content-type'] || '')) {
        text += chunk.toString('latin1');
        const whole = text.length - (text.length % 4);
        // quantum by quantum: padding may end any of them
        const parts = [];
        for (let i = 0; i < whole; i += 4) parts.push(Buffer.from(text.substr(i, 4), 'base64'));
        text = text.substr(whole);
        bin = Buffer.concat([bin, ...parts]);
    } else {
        bin = Buffer.concat([bin, chunk]);
    }
    while (bin.length >= 5) {
        const len = bin.readUInt32BE(1);
        if (bin.length < 5 + len) break;
        const flag = bin[0], payload = bin.subarray(5, 5 + len);
        bin = bin.subarray(5 + len);
        res.frames++;
        if (flag & 0x80) {
            res.trailers = {};
            res.trailerBlock = payload.toString();
            for (const line of payload.toString().split('\r\n')) {
                const c = line.indexOf(':');
                if (c > 0) res.trailers[line.substr(0, c)] = line.substr(c + 1).trim();
            }
        } else {
            const m = decodeMsg(payload);
            if (res.firstMsgMs === undefined) res.firstMsgMs = Date.now() - t0;
            res.messages.push({ n: m.n, text: m.text, len: m.data.length, sha: sha(m.data) });
        }
    }
}
function finish(err) {
    if (done) return;
    done = true;
    res.endMs = Date.now() - t0;
    if (err) res.error = String(err.message || err);
    if (bin.length || text.length) res.leftover = bin.length + text.length;
    if (res.messages.length > 20) { res.count = res.messages.length; res.messages = res.messages.slice(0, 3); }
    console.log(JSON.stringify(res));
    process.exit(0);
}
setTimeout(() => finish('client timeout'), o.timeout || 20000);

if (o.h2) {
    const s = http2.connect('http://127.0.0.1:' + o.port);
    s.on('error', finish);
    const req = s.request(Object.assign({ ':method': 'POST', ':path': path }, headers));
    req.on('response', (h) => { res.status = h[':status']; res.headers = h; });
    req.on('trailers', (t) => { res.h2trailers = t; });
    req.on('data', feed);
    req.on('end', () => { s.close(); finish(); });
    req.on('error', finish);
    req.end(body);
} else {
    const req = http.request({ host: '127.0.0.1', port: o.port, method: 'POST', path,
                               headers: Object.assign({ 'content-length': body.length }, headers) },
        (r) => {
            res.status = r.statusCode;
            res.headers = r.headers;
            r.on('data', feed);
            r.on('end', () => finish());
            r.on('error', finish);
        });
    req.on('error', finish);
    req.end(body);
}
