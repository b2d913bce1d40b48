// Test upstream speaking HTTP/2 (Node's `http2`): cleartext with prior
// knowledge (h2c), or TLS with ALPN h2 when CERT and KEY name PEM files.
// Answers every request with a JSON description of what it received:
// {method, path, authority, scheme, headers, length, sha256, session, stream}
// (session: the number of the connection it came on, from 1).
// Environment: PORT, MAX_STREAMS (SETTINGS_MAX_CONCURRENT_STREAMS, default 1000).
// Special paths (the request body is read first unless said otherwise):
//   /size/N           N pattern bytes with content-length
//   /stream/N         N pattern bytes without content-length, 64 KB writes
//                     with backpressure
//   /slow/N/MS        N pattern bytes, 1 KB every MS milliseconds
//   .../delay/MS      answer after MS milliseconds (anywhere in the path)
//   /reset            RST_STREAM INTERNAL_ERROR before answering (body not read)
//   /reset-mid        head and 1000 bytes, then RST_STREAM INTERNAL_ERROR
//   /goaway/KEY       the first request for KEY: GOAWAY whose last stream is
//                     before this one (so it is refused, unprocessed); later
//                     ones answer as usual
//   /sessions         {sessions, open, cancels: [paths whose stream the client reset]}
//   /trailers         "ok", then trailers x-checksum and grpc-status
// Pattern bytes: byte i is "abcdefghijklmnopqrstuvwxyz"[i % 26].
'use strict';
const http2 = require('http2');
const crypto = require('crypto');
const fs = require('fs');

const PORT = parseInt(process.env.PORT || '0', 10);
const SLICE = 65536;
const PATTERN = Buffer.from('abcdefghijklmnopqrstuvwxyz'.repeat(Math.ceil(SLICE / 26) + 1));
const goaways = new Set();
const cancels = [];
let sessions = 0;
let open = 0;

function pattern(off, len) {
    return PATTERN.subarray(off % 26, off % 26 + len);
}

function streamPattern(stream, n, size, gap, done) {
    let off = 0;
    const next = () => {
        while (off < n) {
            const len = Math.min(size, n - off);
            const ok = stream.write(pattern(off, len));
            off += len;
            if (gap) return setTimeout(next, gap);
            if (!ok) return stream.once('drain', next);
        }
        done();
    };
    next();
}

function onStream(stream, headers) {
    const path = headers[':path'];
    stream.on('aborted', () => cancels.push(path));
    stream.on('error', () => {});
    if (path === '/reset') return stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    let m = path.match(/^\/goaway\/(\w+)/);
    if (m && !goaways.has(m[1])) {
        goaways.add(m[1]);
        stream.session.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id - 2);
        return;
    }
    const hash = crypto.createHash('sha256');
    let length = 0;
    stream.on('data', (c) => { hash.update(c); length += c.length; });
    stream.on('end', () => {
        if ((m = path.match(/^\/size\/(\d+)/))) {
            const n = parseInt(m[1], 10);
            stream.respond({ ':status': 200, 'content-length': n, 'content-type': 'text/plain' });
            return streamPattern(stream, n, SLICE, 0, () => stream.end());
        }
        if ((m = path.match(/^\/stream\/(\d+)/))) {
            stream.respond({ ':status': 200, 'content-type': 'text/plain' });
            return streamPattern(stream, parseInt(m[1], 10), SLICE, 0, () => stream.end());
        }
        if ((m = path.match(/^\/slow\/(\d+)\/(\d+)/))) {
            stream.respond({ ':status': 200, 'content-type': 'text/plain' });
            return streamPattern(stream, parseInt(m[1], 10), 1024, parseInt(m[2], 10),
                                 () => stream.end());
        }
        if (path === '/reset-mid') {
            stream.respond({ ':status': 200, 'content-length': 100000 });
            stream.write(pattern(0, 1000));
            return setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 100);
        }
        if (path === '/sessions') {
            stream.respond({ ':status': 200, 'content-type': 'application/json' });
            return stream.end(JSON.stringify({ sessions, open, cancels }));
        }
        if (path === '/trailers') {
            stream.respond({ ':status': 200, 'content-type': 'text/plain' },
                           { waitForTrailers: true });
            stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc',
                                                                  'grpc-status': '0' }));
            return stream.end('ok');
        }
        const answer = () => {
            if (stream.destroyed) return;
            const h = Object.assign({}, headers);
            for (const k of Object.keys(h)) if (k.startsWith(':')) delete h[k];
            stream.respond({ ':status': 200, 'content-type': 'application/json' });
            stream.end(JSON.stringify({
                method: headers[':method'], path, authority: headers[':authority'],
                scheme: headers[':scheme'], headers: h, length,
                sha256: hash.digest('hex'), session: stream.session.tgNumber, stream: stream.id,
            }));
        };
        if ((m = path.match(/\/delay\/(\d+)/))) return setTimeout(answer, parseInt(m[1], 10));
        answer();
    });
}

const opts = { settings: { maxConcurrentStreams: parseInt(process.env.MAX_STREAMS || '1000', 10) } };
const server = process.env.CERT
    ? http2.createSecureServer(Object.assign(opts, {
        cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY) }))
    : http2.createServer(opts);
server.on('session', (s) => {
    s.tgNumber = ++sessions;
    open++;
    s.on('close', () => open--);
    s.on('error', () => {});
});
server.on('stream', onStream);
server.listen(PORT, '127.0.0.1');
