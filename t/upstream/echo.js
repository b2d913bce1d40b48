// Test upstream: answers every request with a JSON description of what it
// received, so tests can check what Tollgate forwarded. Node standard library
// only; prints nothing except errors. Environment: PORT, NAME (default
// "echo"), KEEPALIVE_MS (server.keepAliveTimeout, Node's default otherwise).
//
// Every request except /__log itself is recorded in an in-memory list:
// GET /__log returns it as a JSON array, DELETE /__log clears it. An entry is
// added when the request body ends ("complete": true) or when the client goes
// away before that ("complete": false).
//
// Special paths (prefix match, any method; the request body is read first,
// except for /reset):
//   /status/NNN       answer with status NNN (no body for 204 and 304)
//   /delay/MS         answer after MS milliseconds
//   /size/N           N pattern bytes with Content-Length
//   /chunked/N/K      N pattern bytes in K chunks, 10 ms apart (chunked)
//   /stream/N         N pattern bytes without Content-Length, written 64 KB at a
//                     time with backpressure (chunked; ?close=1: read-to-close)
//   /close-mid-body   Content-Length 1000, 10 bytes, then the socket is destroyed
//   /reset            socket destroyed before answering
//   /headers?a=1&b=2  those response headers (a repeated name gives several lines)
//   /sse/N            text/event-stream, N events 50 ms apart
//   /random/N         N random bytes as text/plain (incompressible), with
//                     X-Sha256: their hex SHA-256; ?chunked=1: without
//                     Content-Length, 64 KB at a time
//   /name             the NAME env as text/plain
// Pattern bytes: byte i is "abcdefghijklmnopqrstuvwxyz"[i % 26]
// (Tollgate::Test::body_pattern(N) gives the same string).
'use strict';
const http = require('http');
const crypto = require('crypto');

const PORT = parseInt(process.env.PORT || '0', 10);
const NAME = process.env.NAME || 'echo';
const BODY_LIMIT = 1 << 20;   // the description's "body" stops there; length and sha cover all
const LOG_BODY_LIMIT = 64 << 10;
const SLICE = 65536;
const PATTERN = Buffer.from('abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil(SLICE / 26) + 1));

const log = [];
let connections = 0;

// Bytes [off, off+len) of the endless pattern, without copying when len <= SLICE.
function patternBytes(off, len) {
    if (len <= SLICE) return PATTERN.subarray(off % 26, off % 26 + len);
    const out = Buffer.allocUnsafe(len);
    for (let done = 0; done < len; done += SLICE) {
        patternBytes(off + done, Math.min(SLICE, len - done)).copy(out, done);
    }
    return out;
}

// Writes n pattern bytes SLICE at a time, waiting for 'drain' whenever the
// socket buffer is full, then ends the response: memory stays flat for any n.
function writePattern(res, n) {
    let off = 0;
    const pump = () => {
        while (off < n) {
            const len = Math.min(SLICE, n - off);
            const ok = res.write(patternBytes(off, len));
            off += len;
            if (!ok) return void res.once('drain', pump);
        }
        res.end();
    };
    res.on('close', () => { off = n; });
    pump();
}

function entry(req, body) {
    return {
        name: NAME,
        method: req.method,
        url: req.url,
        httpVersion: req.httpVersion,
        rawHeaders: req.rawHeaders,
        headers: req.headers,
        trailers: req.trailers,
        body: body.head.toString('utf8'),
        bodyTruncated: body.length > body.head.length,
        bodyLength: body.length,
        bodySha256: body.sha256,
        remotePort: req.socket.remotePort,
        connection: req.socket.tgId,
        requestOnConnection: req.tgSeq,
    };
}

function sendJson(res, status, obj, extraHeaders) {
    const data = Buffer.from(JSON.stringify(obj));
    const bodyless = status === 204 || status === 304;
    const headers = bodyless ? {} : { 'Content-Type': 'application/json', 'Content-Length': data.length };
    res.writeHead(status, Object.assign(headers, extraHeaders || {}));
    res.end(bodyless ? undefined : data);
}

// Repeats `step` n times, `ms` apart, then calls `done`; stops if the client leaves.
function every(res, n, ms, step, done) {
    let i = 0, timer = null;
    const next = () => {
        if (i === n) return done();
        step(i++);
        timer = setTimeout(next, ms);
    };
    res.on('close', () => clearTimeout(timer));
    next();
}

function respond(req, res, body) {
    const url = new URL(req.url, 'http://upstream.invalid');
    const path = url.pathname;
    let m;

    if ((m = path.match(/^\/status\/(\d{3})/))) {
        sendJson(res, parseInt(m[1], 10), entry(req, body));
    } else if ((m = path.match(/^\/delay\/(\d+)/))) {
        const timer = setTimeout(() => sendJson(res, 200, entry(req, body)), parseInt(m[1], 10));
        res.on('close', () => clearTimeout(timer));
    } else if ((m = path.match(/^\/size\/(\d+)/))) {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(parseInt(m[1], 10)) });
        writePattern(res, parseInt(m[1], 10));
    } else if ((m = path.match(/^\/chunked\/(\d+)\/(\d+)/))) {
        const n = parseInt(m[1], 10), k = Math.max(1, parseInt(m[2], 10));
        let off = 0;
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked' });
        every(res, k, 10, (i) => {
            const len = Math.floor(n / k) + (i < n % k ? 1 : 0);
            if (len > 0) res.write(patternBytes(off, len)); // an empty write would end the body
            off += len;
        }, () => res.end());
    } else if ((m = path.match(/^\/stream\/(\d+)/))) {
        if (url.searchParams.get('close') === '1') {
            res.useChunkedEncodingByDefault = false;
            res.shouldKeepAlive = false;
        }
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        writePattern(res, parseInt(m[1], 10));
    } else if (path.startsWith('/close-mid-body')) {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 1000 });
        res.write(patternBytes(0, 10), () => res.socket && res.socket.destroy());
    } else if (path.startsWith('/headers')) {
        const extra = {};
        for (const [k, v] of url.searchParams) extra[k] = k in extra ? [].concat(extra[k], v) : v;
        sendJson(res, 200, entry(req, body), extra);
    } else if ((m = path.match(/^\/sse\/(\d+)/))) {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
        every(res, parseInt(m[1], 10), 50,
              (i) => res.write(`id: ${i + 1}\ndata: event ${i + 1}\n\n`), () => res.end());
    } else if ((m = path.match(/^\/random\/(\d+)/))) {
        const data = crypto.randomBytes(parseInt(m[1], 10));
        const headers = { 'Content-Type': 'text/plain',
                          'X-Sha256': crypto.createHash('sha256').update(data).digest('hex') };
        if (url.searchParams.get('chunked') !== '1') headers['Content-Length'] = data.length;
        res.writeHead(200, headers);
        let off = 0;
        const pump = () => {
            while (off < data.length) {
                const piece = data.subarray(off, off + SLICE);
                off += piece.length;
                if (!res.write(piece)) return void res.once('drain', pump);
            }
            res.end();
        };
        res.on('close', () => { off = data.length; });
        pump();
    } else if (path.startsWith('/name')) {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(NAME) });
        res.end(NAME);
    } else {
        sendJson(res, 200, entry(req, body));
    }
}

function record(req, body, complete) {
    const e = entry(req, body);
    delete e.name;
    e.body = body.head.subarray(0, LOG_BODY_LIMIT).toString('utf8');
    e.complete = complete;
    e.time = Date.now();
    log.push(e);
}

const server = http.createServer((req, res) => {
    req.tgSeq = ++req.socket.tgRequests;
    const path = req.url.split('?')[0];

    if (path === '/__log') {
        req.resume();
        req.on('end', () => {
            if (req.method === 'DELETE') log.length = 0;
            sendJson(res, 200, log);
        });
        return;
    }
    if (path.startsWith('/reset')) {
        record(req, { head: Buffer.alloc(0), length: 0, sha256: null }, false);
        req.socket.destroy();
        return;
    }

    // Only the first BODY_LIMIT bytes are kept; the hash covers everything.
    const hash = crypto.createHash('sha256');
    const kept = [];
    let keptLen = 0, length = 0, ended = false;
    const body = () => ({ head: Buffer.concat(kept), length: length });
    req.on('data', (c) => {
        hash.update(c);
        length += c.length;
        if (keptLen < BODY_LIMIT) {
            const piece = c.subarray(0, BODY_LIMIT - keptLen);
            kept.push(piece);
            keptLen += piece.length;
        }
    });
    req.on('end', () => {
        ended = true;
        const b = Object.assign(body(), { sha256: hash.digest('hex') });
        record(req, b, true);
        try {
            respond(req, res, b);
        } catch (e) {
            process.stderr.write(`echo.js: ${e.stack}\n`);
            if (!res.headersSent) sendJson(res, 500, { error: String(e) });
            else res.destroy();
        }
    });
    req.on('close', () => {
        if (!ended) record(req, Object.assign(body(), { sha256: null }), false);
    });
});

server.on('connection', (socket) => {
    socket.tgId = ++connections;
    socket.tgRequests = 0;
});
server.on('clientError', (err, socket) => {
    if (socket.writable && !socket.bytesWritten) {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    } else {
        socket.destroy();
    }
});
if (process.env.KEEPALIVE_MS) server.keepAliveTimeout = parseInt(process.env.KEEPALIVE_MS, 10);
server.listen(PORT, '127.0.0.1');
