// HTTP/2 client for tests (Node's `http2` module, one session): runs a fixed
// set of exchanges against a gateway in front of t/upstream/echo.js and
// prints one JSON line with what it saw; the test decides what is right.
// Usage: node h2-client.js URL CA_FILE|- RATE_KEY
//   URL      https://a.test:PORT (TLS, ALPN h2, trusting CA_FILE) or
//            http://localhost:PORT (h2c with prior knowledge); every name
//            resolves to 127.0.0.1
//   RATE_KEY the X-Key of the rate-limited requests (a fresh one per run)
// Output: {alpn, sessions, concurrent: {n, ok, ms, urls_ok}, posts: [...],
//   sse: {status, events, times}, chunked: {...}, answers: {...},
//   headers: {...}, stream_error: {...}, cancel: {...}, after: {...},
//   closed_early, errors: [...]}
'use strict';
const http2 = require('http2');
const crypto = require('crypto');
const fs = require('fs');

const [url, caFile, rateKey] = process.argv.slice(2);
const out = { errors: [], sessions: 0, closed_early: false };
const timer = setTimeout(() => { out.errors.push('timeout'); finish(1); }, 60000);
const t0 = Date.now();
let session;

function finish(code) {
    clearTimeout(timer);
    console.log(JSON.stringify(out));
    process.exit(code);
}

// One request on the session: resolves {status, headers, body (Buffer),
// chunks: [{at, len}], error} (error: the stream's error code, if any).
function request(headers, body, opts = {}) {
    return new Promise((resolve) => {
        const res = { status: 0, headers: {}, chunks: [], error: null };
        const parts = [];
        const req = session.request(Object.assign({ ':path': '/' }, headers),
                                    { endStream: body === undefined });
        req.on('response', (h) => {
            res.status = h[':status'];
            res.headers = h;
        });
        req.on('data', (c) => {
            parts.push(c);
            res.chunks.push({ at: Date.now() - t0, len: c.length });
            if (opts.onData) opts.onData(req, parts);
        });
        req.on('error', (e) => { res.error = e.code + ': ' + e.message; });
        req.on('close', () => {
            res.body = Buffer.concat(parts);
            res.rstCode = req.rstCode;
            resolve(res);
        });
        if (typeof body === 'function') body(req);
        else if (body !== undefined) req.end(body);
    });
}

function json(res) {
    try {
        return JSON.parse(res.body.toString('utf8'));
    } catch (e) {
        return {};
    }
}

async function main() {
    // every name resolves to loopback: the URL's host stays the SNI and :authority
    const lookup = (host, opts, cb) => (opts && opts.all
        ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4));
    const o = { settings: { enablePush: false }, lookup };
    if (caFile !== '-') o.ca = fs.readFileSync(caFile);
    session = http2.connect(url, o);
    session.on('connect', () => { out.sessions++; });
    session.on('error', (e) => out.errors.push('session: ' + e.message));
    session.on('goaway', (code) => out.errors.push('goaway ' + code));
    session.on('close', () => { out.closed_early = true; });
    await new Promise((resolve, reject) => {
        session.once('connect', resolve);
        session.once('error', reject);
    });
    out.alpn = session.alpnProtocol;

    // many concurrent streams (more than http2_max_streams: nghttp2 queues the rest)
    const N = 300;
    let started = Date.now();
    const all = await Promise.all(Array.from({ length: N }, (_, i) =>
        request({ ':path': `/delay/300?i=${i}` })));
    out.concurrent = {
        n: N,
        ok: all.filter((r) => r.status === 200).length,
        urls_ok: all.filter((r, i) => json(r).url === `/delay/300?i=${i}`).length,
        ms: Date.now() - started,
    };

    // POST bodies: 1 MB with content-length, 1 MB in 16 KB writes without one
    out.posts = [];
    for (const withLength of [true, false]) {
        const data = crypto.randomBytes(1 << 20);
        const h = { ':method': 'POST', ':path': '/upload', 'content-type': 'application/octet-stream' };
        if (withLength) h['content-length'] = String(data.length);
        const r = await request(h, (req) => {
            let off = 0;
            const pump = () => {
                while (off < data.length) {
                    const piece = data.subarray(off, off + 16384);
                    off += piece.length;
                    if (!req.write(piece)) return void req.once('drain', pump);
                }
                req.end();
            };
            pump();
        });
        const j = json(r);
        out.posts.push({ with_length: withLength, status: r.status,
                         sent_sha256: crypto.createHash('sha256').update(data).digest('hex'),
                         upstream_sha256: j.bodySha256, upstream_length: j.bodyLength,
                         upstream_te: (j.headers || {})['transfer-encoding'] || null,
                         upstream_cl: (j.headers || {})['content-length'] || null });
    }

    // streaming responses: SSE (5 events 50 ms apart) and chunked (5 writes 10 ms apart)
    let r = await request({ ':path': '/sse/5' });
    out.sse = { status: r.status, type: r.headers['content-type'],
                events: (r.body.toString().match(/^data: /gm) || []).length,
                times: r.chunks.map((c) => c.at) };
    r = await request({ ':path': '/chunked/50000/5' });
    out.chunked = { status: r.status, length: r.body.length, chunks: r.chunks.length,
                    span_ms: r.chunks.length ? r.chunks[r.chunks.length - 1].at - r.chunks[0].at : 0 };

    // answers made by the gateway
    out.answers = {};
    r = await request({ ':path': '/ret' });
    out.answers.ret = { status: r.status, body: r.body.toString(), type: r.headers['content-type'] };
    r = await request({ ':path': '/static/missing.css' });
    out.answers.missing = { status: r.status };
    r = await request({ ':path': '/static/app.css' });
    out.answers.file = { status: r.status, body: r.body.toString(), type: r.headers['content-type'] };
    out.answers.rate = [];
    for (let i = 0; i < 4; i++) {
        r = await request({ ':path': '/rl/x', 'x-key': rateKey });
        out.answers.rate.push(r.status);
    }
    out.answers.retry_after = r.headers['retry-after'] || null;

    // response headers: repeated fields, set-cookie as several fields, case
    r = await request({ ':path': '/headers?x-a=1&x-rep=one&x-rep=two&set-cookie=a%3D1&set-cookie=b%3D2' });
    out.headers = { status: r.status, 'x-a': r.headers['x-a'], 'x-rep': r.headers['x-rep'],
                    'set-cookie': r.headers['set-cookie'], 'content-type': r.headers['content-type'],
                    connection: r.headers.connection || null,
                    'keep-alive': r.headers['keep-alive'] || null,
                    'x-content-type-options': r.headers['x-content-type-options'] || null };

    // a stream error: content-length 3, 6 bytes of DATA: the gateway resets the stream
    r = await request({ ':method': 'POST', ':path': '/bad', 'content-length': '3' },
                      (req) => req.end('abcdef'));
    out.stream_error = { status: r.status, rst: r.rstCode, error: r.error };

    // the client cancels a long download after its first bytes
    let cancelled = false;
    r = await request({ ':path': '/size/50000000' }, undefined, {
        onData: (req) => {
            if (!cancelled) req.close(http2.constants.NGHTTP2_CANCEL);
            cancelled = true;
        },
    });
    out.cancel = { status: r.status, received: r.body.length, rst: r.rstCode };

    // the session lives on
    r = await request({ ':path': '/after' });
    out.after = { status: r.status, url: json(r).url };
    out.closed_early = out.closed_early || session.closed || session.destroyed;
    session.removeAllListeners('close');
    session.close(() => finish(0));
}

main().catch((e) => {
    out.errors.push('exception: ' + (e && e.stack || e));
    finish(1);
});
