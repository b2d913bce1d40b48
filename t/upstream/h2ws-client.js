// WebSocket over HTTP/2 client for tests (RFC 8441): Node's http2 client
// sends an extended CONNECT (:protocol websocket) once the server's SETTINGS
// enabled it, and speaks WebSocket frames (RFC 6455, masked) on the stream.
// Runs one scenario against t/upstream/ws.js behind the gateway and prints
// one JSON line: {settings, ...what the scenario measured, errors: [...]}.
// Usage: node h2ws-client.js URL SCENARIO [ARG]   (URL http:// = h2c, https:// = TLS)
// Scenarios:
//   echo          hello, text and binary echo, 1 MB binary and text both ways, close
//   multi N       N WebSockets on one connection at once, 50 messages each
//   slow PATH     stream A not read while its upstream sends 4 MB; stream B (on PATH) echoes
//                 meanwhile
//   slow-upstream PATH  A's upstream reads nothing for 2 s while A sends 24 MB; B (on PATH, another
//                 upstream process, as the first is busy after) echoes meanwhile
//   half-close    the client ends its side (END_STREAM) without a close frame
//   server-close  the upstream drops the socket ("close"), closes with a frame ("bye"),
//                 resets its socket ("reset")
//   reset         RST_STREAM (CANCEL) after the hello
//   idle          nothing sent: wait for the server to end the stream
//   status PATH   the answer to an extended CONNECT of PATH (no tunnel expected)
//   headers PATH  two WebSockets on PATH (with "headers=1"): what the upstream received
//   stats         /__stats fetched on the same connection while a WebSocket is open, then after
//   reload PID    a WebSocket open across a reload (SIGHUP to PID), the connection's GOAWAY
//   hold N PID    the VmRSS of process PID (the worker) before and after N idle WebSockets
//                 are open on the connection, each having echoed one message
'use strict';
const http2 = require('http2');
const crypto = require('crypto');

const [url, scenario, arg] = process.argv.slice(2);
const out = { errors: [] };
const session = http2.connect(url, { rejectUnauthorized: false });
const timer = setTimeout(() => { out.errors.push('timeout'); finish(); }, 30000);
session.on('error', (e) => out.errors.push(`session: ${e.message}`));

function finish() {
    clearTimeout(timer);
    console.log(JSON.stringify(out));
    session.destroy();
    process.exit(0);
}

// ---- WebSocket frames on an HTTP/2 stream

function frame(opcode, payload) {
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    const len = data.length;
    const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    if (len < 126) {
        head[1] = 0x80 | len;
    } else if (len < 65536) {
        head[1] = 0x80 | 126;
        head.writeUInt16BE(len, 2);
    } else {
        head[1] = 0x80 | 127;
        head.writeBigUInt64BE(BigInt(len), 2);
    }
    const mask = crypto.randomBytes(4);
    const masked = Buffer.alloc(len);
    for (let i = 0; i < len; i++) masked[i] = data[i] ^ mask[i & 3];
    return Buffer.concat([head, mask, masked]);
}

// Open a WebSocket on PATH: resolves {stream, status, headers, send, next, ended}
function open(path, extra = {}) {
    return new Promise((resolve) => {
        const stream = session.request({
            ':method': 'CONNECT', ':protocol': 'websocket', ':path': path,
            'sec-websocket-version': '13', origin: 'http://localhost', ...extra,
        });
        const ws = { stream, parts: [], have: 0, msgs: [], waiters: [], ended: false,
                     received: 0, frag: null, body: '' };
        ws.send = (op, data) => stream.write(frame(op, data));
        ws.next = (ms = 10000) => new Promise((res) => {
            if (ws.msgs.length) return res(ws.msgs.shift());
            const w = { res, t: setTimeout(() => { ws.waiters.splice(ws.waiters.indexOf(w), 1);
                                                   res(null); }, ms) };
            ws.waiters.push(w);
        });
        const deliver = (m) => {
            const w = ws.waiters.shift();
            if (w) { clearTimeout(w.t); w.res(m); } else ws.msgs.push(m);
        };
        stream.on('response', (headers) => {
            ws.status = headers[':status'];
            ws.headers = headers;
            resolve(ws);
        });
        stream.on('data', (chunk) => {
            ws.received += chunk.length;
            if (ws.status !== 200) { ws.body += chunk.toString(); return; }
            // chunks are joined once per frame (not per chunk: 1 MB messages)
            ws.parts.push(chunk);
            ws.have += chunk.length;
            for (;;) {
                if (ws.have < 2) break;
                if (ws.parts[0].length < 14 && ws.parts.length > 1) ws.parts = [Buffer.concat(ws.parts)];
                const head = ws.parts[0];
                let len = head[1] & 0x7f, off = 2;
                if (len === 126) { if (ws.have < 4) break; len = head.readUInt16BE(2); off = 4; }
                else if (len === 127) {
                    if (ws.have < 10) break;
                    len = Number(head.readBigUInt64BE(2)); off = 10;
                }
                if (head[1] & 0x80) { out.errors.push('masked frame from the server'); off += 4; }
                if (ws.have < off + len) break;
                const all = ws.parts.length > 1 ? Buffer.concat(ws.parts) : head;
                const fin = all[0] & 0x80, op = all[0] & 0x0f;
                const payload = all.subarray(off, off + len);
                const rest = all.subarray(off + len);
                ws.parts = rest.length ? [rest] : [];
                ws.have = rest.length;
                if (op === 0 && ws.frag) {
                    ws.frag.parts.push(payload);
                    if (fin) { deliver({ op: ws.frag.op, data: Buffer.concat(ws.frag.parts) }); ws.frag = null; }
                } else if (!fin) {
                    ws.frag = { op, parts: [Buffer.from(payload)] };
                } else {
                    deliver({ op, data: Buffer.from(payload) });
                }
            }
        });
        stream.on('end', () => { ws.ended = true; ws.endedAt = Date.now(); deliver({ op: 'end' }); });
        stream.on('close', () => {
            ws.closed = true;
            ws.rstCode = stream.rstCode;
            deliver({ op: 'closed' });
            if (ws.status === undefined) { ws.status = 0; resolve(ws); }
        });
        stream.on('error', (e) => { ws.error = e.code || e.message; });
    });
}

// A plain GET on the same connection: {status, body}
function get(path) {
    return new Promise((resolve) => {
        const req = session.request({ ':path': path });
        let body = '', status = 0;
        req.on('response', (h) => { status = h[':status']; });
        req.on('data', (d) => { body += d; });
        req.on('end', () => resolve({ status, body }));
        req.on('error', (e) => resolve({ status: 0, error: e.code || e.message }));
        req.end();
    });
}

const text = (m) => (m && m.data ? m.data.toString() : m ? String(m.op) : null);
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// the stream's end, or its close (reset): whichever comes first
async function waitEnd(ws, ms) {
    const deadline = Date.now() + ms;
    while (!ws.ended && !ws.closed && Date.now() < deadline) {
        const m = await ws.next(deadline - Date.now());
        if (m === null) break;
    }
}

const scenarios = {
    async echo() {
        const ws = await open('/ws', { 'sec-websocket-protocol': 'chat, superchat' });
        out.status = ws.status;
        out.headers = ws.headers;
        out.hello = text(await ws.next());
        ws.send(1, 'ping');
        out.echo = text(await ws.next());
        const bin = crypto.randomBytes(1000);
        ws.send(2, bin);
        let m = await ws.next();
        out.binary = m && m.op === 2 && m.data.equals(bin);
        const big = crypto.randomBytes(1 << 20);
        ws.send(2, big);
        m = await ws.next(20000);
        out.big_binary = m && m.op === 2 && m.data.length === big.length && sha(m.data) === sha(big);
        const bigText = 'y'.repeat(1 << 20);
        ws.send(1, bigText);
        m = await ws.next(20000);
        out.big_text = m && m.op === 1 && m.data.toString() === `echo:${bigText}`;
        ws.send(8, Buffer.from([0x03, 0xe8])); // close, 1000
        m = await ws.next();
        out.close_op = m && m.op;
        out.close_code = m && m.op === 8 && m.data.length >= 2 ? m.data.readUInt16BE(0) : null;
        ws.stream.end();
        await waitEnd(ws, 5000);
        out.ended = ws.ended;
    },
    async multi() {
        const n = +arg || 5;
        const all = await Promise.all(Array.from({ length: n }, () => open('/ws')));
        out.statuses = all.map((w) => w.status);
        out.hellos = (await Promise.all(all.map((w) => w.next()))).map(text);
        for (let k = 0; k < 50; k++) all.forEach((w, i) => w.send(1, `s${i}-m${k}`));
        out.ok = await Promise.all(all.map(async (w, i) => {
            for (let k = 0; k < 50; k++) if (text(await w.next()) !== `echo:s${i}-m${k}`) return false;
            return true;
        }));
        all.forEach((w) => w.stream.close(http2.constants.NGHTTP2_CANCEL));
    },
    async slow() {
        const a = await open('/ws'), b = await open(arg);
        await a.next();
        await b.next();
        a.stream.pause(); // A is read no more: its window closes
        const big = crypto.randomBytes(4 << 20);
        a.send(2, big); // the upstream echoes 4 MB to A
        await sleep(1000);
        out.a_received_paused = a.received;
        const rtts = [];
        for (let k = 0; k < 20; k++) {
            const t0 = Date.now();
            b.send(1, `b${k}`);
            if (text(await b.next(5000)) !== `echo:b${k}`) out.errors.push(`B message ${k} lost`);
            rtts.push(Date.now() - t0);
        }
        out.b_max_rtt_ms = Math.max(...rtts);
        // what reached A's paused stream: held back by its window, not 4 MB
        out.a_buffered_paused = a.stream.readableLength + a.received;
        a.stream.resume();
        const m = await a.next(30000);
        out.a_ok = m && m.op === 2 && m.data.length === big.length && sha(m.data) === sha(big);
        a.stream.close(http2.constants.NGHTTP2_CANCEL);
        b.stream.close(http2.constants.NGHTTP2_CANCEL);
    },
    async 'slow-upstream'() {
        const a = await open('/ws'), b = await open(arg);
        await a.next();
        await b.next();
        a.send(1, 'pause:2000'); // A's upstream stops reading
        await sleep(100);
        // more than the loopback socket buffers can hold, so the stream's window
        // has to hold the rest
        const big = crypto.randomBytes(24 << 20);
        a.send(2, big);
        await sleep(500);
        const rtts = [];
        for (let k = 0; k < 20; k++) {
            const t0 = Date.now();
            b.send(1, `b${k}`);
            if (text(await b.next(5000)) !== `echo:b${k}`) out.errors.push(`B message ${k} lost`);
            rtts.push(Date.now() - t0);
        }
        out.b_max_rtt_ms = Math.max(...rtts);
        const m = await a.next(30000);
        out.a_ok = m && m.op === 2 && m.data.length === big.length && sha(m.data) === sha(big);
        a.stream.close(http2.constants.NGHTTP2_CANCEL);
        b.stream.close(http2.constants.NGHTTP2_CANCEL);
    },
    async 'half-close'() {
        const ws = await open('/ws');
        out.hello = text(await ws.next());
        const t0 = Date.now();
        ws.stream.end(); // END_STREAM: the upstream sees EOF, closes, and so do we
        await waitEnd(ws, 5000);
        out.ended = ws.ended;
        out.ms = Date.now() - t0;
    },
    async 'server-close'() {
        let ws = await open('/ws');
        await ws.next();
        ws.send(1, 'close');
        await waitEnd(ws, 5000);
        out.terminate_ended = ws.ended;
        ws = await open('/ws');
        await ws.next();
        ws.send(1, 'bye');
        const m = await ws.next();
        out.bye_op = m && m.op;
        out.bye_code = m && m.op === 8 ? m.data.readUInt16BE(0) : null;
        ws.send(8, m && m.op === 8 ? m.data : Buffer.alloc(0));
        await waitEnd(ws, 5000);
        out.bye_ended = ws.ended;
        ws = await open('/ws');
        await ws.next();
        ws.send(1, 'reset');
        await waitEnd(ws, 5000);
        out.reset_ended = ws.ended;
        out.reset_closed = !!ws.closed;
        out.reset_code = ws.rstCode;
    },
    async reset() {
        const ws = await open('/ws?reset=1');
        out.hello = text(await ws.next());
        ws.stream.close(http2.constants.NGHTTP2_CANCEL);
        await sleep(300);
        // the connection still serves another WebSocket
        const again = await open('/ws');
        out.again = text(await again.next());
        again.stream.close(http2.constants.NGHTTP2_CANCEL);
    },
    async idle() {
        const ws = await open('/ws');
        out.hello = text(await ws.next());
        const t0 = Date.now();
        while (!ws.closed && !ws.ended && Date.now() - t0 < 10000) await ws.next(10000 - (Date.now() - t0));
        out.ms = Date.now() - t0;
        out.closed = !!ws.closed;
        out.rst_code = ws.rstCode;
    },
    async headers() {
        out.seen = [];
        for (let k = 0; k < 2; k++) {
            const ws = await open(arg, { 'sec-websocket-protocol': 'chat',
                                         'sec-websocket-extensions': 'x-test; a=1' });
            out.status = ws.status;
            out.hello = text(await ws.next());
            const m = await ws.next();
            try { out.seen.push(JSON.parse(text(m))); } catch (e) { out.errors.push(`not JSON: ${text(m)}`); }
            ws.stream.close(http2.constants.NGHTTP2_CANCEL);
        }
    },
    async stats() {
        const ws = await open('/ws');
        out.hello = text(await ws.next());
        await get('/__stats'); // the gauges are published as requests end
        out.during = JSON.parse((await get('/__stats')).body).websocket;
        ws.send(1, 'still');
        out.echo = text(await ws.next());
        ws.send(1, 'close');
        await waitEnd(ws, 5000);
        await get('/__stats');
        out.after = JSON.parse((await get('/__stats')).body).websocket;
    },
    async reload() {
        const ws = await open('/ws');
        out.hello = text(await ws.next());
        let goaway = null;
        session.on('goaway', (code, last) => { goaway = { code, last }; });
        process.kill(+arg, 'SIGHUP');
        for (let k = 0; k < 50 && !goaway; k++) await sleep(100);
        out.goaway = goaway;
        await sleep(500);
        ws.send(1, 'after reload');
        out.echo = text(await ws.next());
        ws.send(1, 'bye');
        const m = await ws.next();
        out.close_code = m && m.op === 8 ? m.data.readUInt16BE(0) : null;
        ws.send(8, m && m.op === 8 ? m.data : Buffer.alloc(0));
        await waitEnd(ws, 5000);
        out.ended = ws.ended;
    },
    async hold() {
        const [n, pid] = [+arg, +process.argv[5]];
        const rss = () => +/VmRSS:\s+(\d+)/.exec(require('fs').readFileSync(`/proc/${pid}/status`))[1];
        const warm = await open('/ws'); // pools and caches warm: the baseline has them
        await warm.next();
        warm.send(1, 'warm');
        await warm.next();
        await sleep(200);
        out.rss_before_kb = rss();
        const all = [];
        for (let k = 0; k < n; k++) all.push(open('/ws'));
        const socks = await Promise.all(all);
        out.open = socks.filter((w) => w.status === 200).length;
        await Promise.all(socks.map((w) => w.next()));
        socks.forEach((w, k) => w.send(1, `idle${k}`));
        out.echoed = (await Promise.all(socks.map((w) => w.next()))).filter((m) => m && m.op === 1).length;
        await sleep(500);
        out.rss_after_kb = rss();
        socks.forEach((w) => w.stream.close(http2.constants.NGHTTP2_CANCEL));
        warm.stream.close(http2.constants.NGHTTP2_CANCEL);
    },
    async status() {
        const ws = await open(arg);
        out.status = ws.status;
        out.headers = ws.headers;
        await waitEnd(ws, 5000);
        out.body = ws.body;
        out.ended = ws.ended || ws.closed;
    },
};

session.on('remoteSettings', async (settings) => {
    if (out.settings) return;
    out.settings = { enableConnectProtocol: settings.enableConnectProtocol };
    try {
        await scenarios[scenario]();
    } catch (e) {
        out.errors.push(`${scenario}: ${e.stack}`);
    }
    finish();
});
