// TLS burst client for tests: sends many TLS records in one socket write
// (each chunk its own record), which a server that reads ahead takes off the
// socket in one read call; whatever it then holds raises no socket event. Runs one scenario
// against a gateway in front of t/upstream/echo.js (and t/upstream/ws.js on
// /ws) and prints one JSON line with what it saw; the test decides.
// Usage: node tls-burst-client.js PORT SCENARIO N
//   pipeline N  N HTTP/1.1 GETs pipelined in one burst, one record each,
//               the last with Connection: close: {answers, urls_in_order}
//   waves N     N rounds of 8 pipelined GETs on one keep-alive connection, each
//               round sent once the previous one is answered: {answers}
//   post N      an HTTP/1.1 POST of N bytes in records of 1000 bytes right
//               behind its head, 32 records a burst: {status, length, sha_ok}
//   h2 N        HTTP/2: N GETs and N/10 POSTs of 100 KB at once on one
//               session: {ok, posts_ok}
//   ws N        a WebSocket upgrade to /ws and, in the same burst (before the
//               101), N masked text frames, one record each: {echoes, hello}
// Every scenario gives up after 20 s (then "timeout" is in errors).
'use strict';
const tls = require('tls');
const net = require('net');
const { Duplex } = require('stream');
const http2 = require('http2');
const crypto = require('crypto');

const [port, scenario, nArg] = process.argv.slice(2);
const n = parseInt(nArg, 10);
const out = { errors: [] };
const timer = setTimeout(() => { out.errors.push('timeout'); finish(); }, 20000);

function finish() {
    clearTimeout(timer);
    console.log(JSON.stringify(out));
    process.exit(0);
}

// A TLS connection whose records reach the socket only in bursts: burst()
// writes each chunk as its own record (one SSL write each, the next after the
// previous one went through), holds the ciphertext, and sends it all in one
// socket write, so the server finds them in the socket together.
function connect(alpn, cb) {
    const raw = net.connect(+port, '127.0.0.1');
    let held = null;
    const carrier = new Duplex({
        write(chunk, enc, done) {
            if (held) held.push(chunk);
            else raw.write(chunk);
            done();
        },
        read() {},
    });
    raw.on('data', (d) => carrier.push(d));
    raw.on('end', () => carrier.push(null));
    raw.on('error', (e) => { out.errors.push(`socket: ${e.message}`); finish(); });
    const s = tls.connect({ socket: carrier, servername: 'a.test', rejectUnauthorized: false,
                            ALPNProtocols: [alpn] }, () => cb(s));
    s.on('error', (e) => { out.errors.push(`tls: ${e.message}`); finish(); });
    s.burst = (chunks, then) => {
        held = [];
        let i = 0;
        const next = () => {
            if (i < chunks.length) return s.write(chunks[i++], () => setImmediate(next));
            raw.write(Buffer.concat(held));
            held = null;
            if (then) then();
        };
        next();
    };
    return s;
}

// The complete HTTP/1.1 responses at the start of buf (Content-Length framed):
// [{status, body}], and the bytes they used.
function responses(buf) {
    const list = [];
    let off = 0;
    for (;;) {
        const end = buf.indexOf('\r\n\r\n', off);
        if (end < 0) break;
        const head = buf.subarray(off, end).toString('latin1');
        const m = /content-length:\s*(\d+)/i.exec(head);
        const len = m ? parseInt(m[1], 10) : 0;
        if (buf.length < end + 4 + len) break;
        list.push({ status: parseInt(head.slice(9, 12), 10),
                    body: buf.subarray(end + 4, end + 4 + len).toString() });
        off = end + 4 + len;
    }
    return { list, used: off };
}

function get(path, last) {
    return `GET ${path} HTTP/1.1\r\nHost: a.test\r\n${last ? 'Connection: close\r\n' : ''}\r\n`;
}

function pipeline() {
    connect('http/1.1', (s) => {
        let buf = Buffer.alloc(0);
        s.on('data', (d) => { buf = Buffer.concat([buf, d]); });
        s.on('end', () => {
            const { list } = responses(buf);
            out.answers = list.filter((r) => r.status === 200).length;
            out.urls_in_order = list.every((r, i) => JSON.parse(r.body).url === `/p${i}`);
            finish();
        });
        const reqs = [];
        for (let i = 0; i < n; i++)
            reqs.push(get(`/p${i}`, i === n - 1));
        s.burst(reqs);
    });
}

function waves() {
    connect('http/1.1', (s) => {
        let buf = Buffer.alloc(0), round = 0;
        out.answers = 0;
        const send = () => {
            const reqs = [];
            for (let i = 0; i < 8; i++) reqs.push(get(`/w${round}-${i}`, false));
            s.burst(reqs);
        };
        s.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            const { list, used } = responses(buf);
            buf = buf.subarray(used);
            out.answers += list.filter((r) => r.status === 200).length;
            if (out.answers === 8 * (round + 1) && ++round < n) send();
            else if (round === n) { s.end(); finish(); }
        });
        send();
    });
}

function post() {
    connect('http/1.1', (s) => {
        const body = crypto.randomBytes(n);
        const sha = crypto.createHash('sha256').update(body).digest('hex');
        let buf = Buffer.alloc(0);
        s.on('data', (d) => { buf = Buffer.concat([buf, d]); });
        s.on('end', () => {
            const { list } = responses(buf);
            if (list.length !== 1) { out.errors.push(`${list.length} responses`); return finish(); }
            const desc = JSON.parse(list[0].body);
            out.status = list[0].status;
            out.length = desc.bodyLength;
            out.sha_ok = desc.bodySha256 === sha;
            finish();
        });
        const chunks = [`POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${n}\r\n`
                        + 'Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n'];
        for (let off = 0; off < n; off += 1000)
            chunks.push(body.subarray(off, off + 1000));
        // bursts of 32 records (32 KB), the head with the first
        const send = (from) => {
            if (from < chunks.length) s.burst(chunks.slice(from, from + 32), () => send(from + 32));
        };
        send(0);
    });
}

function h2() {
    const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false,
                                                                 servername: 'a.test' });
    session.on('error', (e) => { out.errors.push(`session: ${e.message}`); finish(); });
    out.ok = 0;
    out.posts_ok = 0;
    let left = n + Math.floor(n / 10);
    const done = () => { if (--left === 0) { session.close(); finish(); } };
    for (let i = 0; i < n; i++) {
        const req = session.request({ ':path': `/h${i}` });
        let body = '';
        req.on('data', (d) => { body += d; });
        req.on('end', () => {
            try { if (JSON.parse(body).url === `/h${i}`) out.ok++; } catch (e) { /* counted as not ok */ }
            done();
        });
        req.on('error', (e) => { out.errors.push(`stream: ${e.message}`); done(); });
    }
    for (let i = 0; i < Math.floor(n / 10); i++) {
        const data = crypto.randomBytes(100000);
        const sha = crypto.createHash('sha256').update(data).digest('hex');
        const req = session.request({ ':path': '/upload', ':method': 'POST' });
        let body = '';
        req.on('data', (d) => { body += d; });
        req.on('end', () => {
            try { if (JSON.parse(body).bodySha256 === sha) out.posts_ok++; } catch (e) { /* not ok */ }
            done();
        });
        req.on('error', (e) => { out.errors.push(`post: ${e.message}`); done(); });
        for (let off = 0; off < data.length; off += 1000)
            req.write(data.subarray(off, off + 1000));
        req.end();
    }
}

function wsFrame(text) {
    const payload = Buffer.from(text);
    const mask = crypto.randomBytes(4);
    const head = Buffer.from([0x81, 0x80 | payload.length]);
    const masked = Buffer.alloc(payload.length);
    for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ mask[i & 3];
    return Buffer.concat([head, mask, masked]);
}

function ws() {
    connect('http/1.1', (s) => {
        let buf = Buffer.alloc(0), upgraded = false;
        out.echoes = 0;
        out.hello = false;
        s.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            if (!upgraded) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) return;
                out.status = parseInt(buf.subarray(9, 12).toString(), 10);
                buf = buf.subarray(end + 4);
                upgraded = true;
            }
            // unmasked server frames, payloads under 126 bytes
            while (buf.length >= 2 && buf.length >= 2 + (buf[1] & 0x7f)) {
                const len = buf[1] & 0x7f;
                const text = buf.subarray(2, 2 + len).toString();
                buf = buf.subarray(2 + len);
                if (text.startsWith('hello')) out.hello = true;
                else if (text.startsWith('echo:m')) out.echoes++;
            }
            if (out.echoes === n) { s.destroy(); finish(); }
        });
        const chunks = ['GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n'
                        + 'Connection: Upgrade\r\n'
                        + `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n`
                        + 'Sec-WebSocket-Version: 13\r\n\r\n'];
        for (let i = 0; i < n; i++)
            chunks.push(wsFrame(`m${i}`));
        s.burst(chunks);
    });
}

({ pipeline, waves, post, h2, ws }[scenario] || (() => { out.errors.push('unknown scenario'); finish(); }))();
