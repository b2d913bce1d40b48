// gRPC test client (@grpc/grpc-js) for tgtest.Test through the gateway.
// Usage: node grpc-client.js TARGET CA_FILE|- SCENARIO [ARG]
// TARGET host:port (h2c) or, with a CA file, TLS (server name a.test is
// accepted for any target). Prints one JSON line: the scenario's result,
// {code, details, ...} for errors.
'use strict';
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const http2 = require('http2');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const [target, caFile, scenario, arg] = process.argv.slice(2);
const def = loader.loadSync(path.join(__dirname, 'grpc-test.proto'));
const proto = grpc.loadPackageDefinition(def).tgtest;
const creds = caFile && caFile !== '-'
    ? grpc.credentials.createSsl(fs.readFileSync(caFile)) : grpc.credentials.createInsecure();
const opts = { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 };
if (caFile && caFile !== '-') opts['grpc.ssl_target_name_override'] = 'a.test';
const client = new proto.Test(target, creds, opts);
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const done = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
const err = (e) => ({ code: e.code, details: e.details, trailers: e.metadata ? e.metadata.getMap() : {} });
setTimeout(() => done({ error: 'timeout' }), 60000);

function unary(msg, o = {}) {
    return new Promise((resolve) => {
        let md = {}, result = null;
        const call = client.Unary(msg, new grpc.Metadata(), o, (e, res) => {
            result = e ? err(e) : { code: 0, len: res.data.length, sha: sha(res.data) };
        });
        call.on('metadata', (m) => { md = m.getMap(); });
        // the status (with the trailers) comes after the callback
        call.on('status', (s) => setImmediate(() => resolve(Object.assign(result || {},
            { metadata: md, trailers: s.metadata.getMap() }))));
    });
}

const scenarios = {
    async unary() {
        const data = crypto.randomBytes(+arg);
        const r = await unary({ data });
        r.sent_sha = sha(data);
        return r;
    },
    fail: () => unary({ text: 'fail' }),
    // ARG sick|well|checks: the server's health switch, or its count of checks
    health: () => new Promise((resolve) => {
        client.Unary({ text: arg }, (e, r) => resolve(e ? err(e) : { code: 0, n: r.n }));
    }),
    cancels: () => new Promise((resolve) => {
        client.Unary({ text: 'cancels' }, (e, r) => resolve(e ? err(e) : { text: r.text }));
    }),
    async concurrent() {
        const n = +arg;
        const all = [];
        for (let i = 0; i < n; i++) {
            const data = Buffer.from('call ' + i);
            all.push(unary({ data }).then((r) => (r.code === 0 && r.sha === sha(data) ? 'ok'
                                                   : r.code + ' ' + r.details)));
        }
        const rs = await Promise.all(all);
        const failures = {};
        for (const x of rs) if (x !== 'ok') failures[x] = (failures[x] || 0) + 1;
        return { n, ok: rs.filter((x) => x === 'ok').length, failures };
    },
    serverStream() {
        // ARG: "N:SIZE:DELAY_MS" (DELAY_MS: pause reading that long every 100 messages)
        const [n, size, delay] = arg.split(':').map(Number);
        return new Promise((resolve) => {
            const call = client.ServerStream({ n, data: Buffer.alloc(size, 'x') });
            let got = 0, inOrder = true;
            call.on('data', (m) => {
                if (+m.text !== got) inOrder = false;
                got++;
                if (delay && got % 100 === 0) { call.pause(); setTimeout(() => call.resume(), delay); }
            });
            call.on('status', (s) => resolve({ code: s.code, got, inOrder }));
            call.on('error', () => {});
        });
    },
    clientStream() {
        const [n, size] = arg.split(':').map(Number);
        return new Promise((resolve) => {
            const h = crypto.createHash('sha256');
            const call = client.ClientStream((e, r) => {
                if (e) return resolve(err(e));
                resolve({ code: 0, n: r.n, sha: sha(r.data), sent_sha: h.digest('hex') });
            });
            for (let i = 0; i < n; i++) {
                const d = crypto.randomBytes(size);
                h.update(d);
                call.write({ data: d });
            }
            call.end();
        });
    },
    bidi() {
        const n = +arg;
        return new Promise((resolve) => {
            const call = client.Bidi();
            let got = 0, i = 0;
            // one at a time: the next goes when the previous came back
            const send = () => call.write({ data: Buffer.from('m' + i), text: String(i++) });
            call.on('data', (m) => {
                if (m.text !== String(got)) return resolve({ error: 'order' });
                got++;
                if (i < n) send(); else call.end();
            });
            call.on('status', (s) => resolve({ code: s.code, got }));
            call.on('error', () => {});
            send();
        });
    },
    cancel() {
        return new Promise((resolve) => {
            const call = client.ServerStream({ n: 1000, text: 'paced', data: Buffer.from('x') });
            let got = 0;
            call.on('data', () => { if (++got === 5) call.cancel(); });
            call.on('status', (s) => resolve({ code: s.code, got }));
            call.on('error', () => {});
        });
    },
    // ARG "COUNT:N": COUNT concurrent paced server streams of N messages
    // (20 ms apart); {ok: those that got all N in order and status OK, codes}
    streams() {
        const [count, n] = arg.split(':').map(Number);
        const one = () => new Promise((resolve) => {
            const call = client.ServerStream({ n, text: 'paced', data: Buffer.from('y') });
            let got = 0, inOrder = true;
            call.on('data', (m) => { if (+m.text !== got++) inOrder = false; });
            call.on('status', (st) => resolve({ ok: st.code === 0 && got === n && inOrder, code: st.code }));
            call.on('error', () => {});
        });
        return Promise.all(Array.from({ length: count }, one)).then((rs) => ({
            ok: rs.filter((x) => x.ok).length, codes: rs.map((x) => x.code) }));
    },
    deadline: () => unary({ text: 'slow', n: +arg }, { deadline: Date.now() + 5000 }),
    // a call with grpc-timeout and no deadline of the client's own: the
    // gateway must end it (raw http2, so grpc-js's timer cannot)
    rawTimeout() {
        return new Promise((resolve) => {
            const s = http2.connect('http://' + target);
            const body = encodeSlow(3000);
            const t0 = Date.now();
            const req = s.request({ ':method': 'POST', ':path': '/tgtest.Test/Unary',
                                    'content-type': 'application/grpc', te: 'trailers',
                                    'grpc-timeout': arg });
            let headers = {}, trailers = {};
            req.on('response', (h) => { headers = h; });
            req.on('trailers', (t) => { trailers = t; });
            req.on('data', () => {});
            req.on('close', () => resolve({ status: headers[':status'],
                grpc_status: headers['grpc-status'] || trailers['grpc-status'],
                ms: Date.now() - t0 }));
            req.end(body);
        });
    },
};

// A Unary request message {text: "slow", n: ms}, framed (gRPC length prefix).
function encodeSlow(ms) {
    const varint = [];
    let v = ms;
    while (v > 127) { varint.push((v & 127) | 128); v >>= 7; }
    varint.push(v);
    const pb = Buffer.from([0x10, ...varint, 0x1a, 4, ...Buffer.from('slow')]);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(pb.length, 1);
    return Buffer.concat([head, pb]);
}

scenarios[scenario]().then(done, (e) => done({ error: String(e) }));
