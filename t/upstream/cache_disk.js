// Test upstream for the cache's disk storage (t/434): large cacheable
// bodies, streamed with backpressure (a 1 GB body never sits in memory),
// and a count of the requests per path. Node standard library only.
// Environment: PORT.
//
//   GET /__count      {"total": N, "paths": {"/a": n, ...}} (not counted)
//   any other path    200 with Cache-Control: max-age=600 (or ?maxage=S) and
//                     ?size=N pattern bytes (byte i is 'a' + i % 26) in
//                     ?chunk=K byte writes (64 KB), ?ms=T ms apart (0), with
//                     Content-Length unless ?cl=0 (then chunked)
//     ?etag=V         ETag: "V"
//   POST /__r304?path=P&h=Name:value...   from now on a request for P with
//                     If-None-Match gets 304 with exactly these headers
'use strict';
const http = require('http');

const PORT = parseInt(process.env.PORT || '0', 10);
const counts = {};
const r304 = {}; // path -> the headers of its 304
let total = 0;
const BLOCK = 1 << 20;
const pat = Buffer.allocUnsafe(BLOCK + 26);
for (let i = 0; i < pat.length; i++) pat[i] = 97 + (i % 26);

http.createServer((req, res) => {
    // Date: the exact time the head goes out, not Node's cached date string
    // (it lags on a busy machine: max-age=1 answers would arrive stale)
    const writeHead = res.writeHead;
    res.writeHead = function (...args) {
        this.setHeader('Date', new Date().toUTCString());
        return writeHead.apply(this, args);
    };
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/__count') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ total, paths: counts }));
        return;
    }
    const q = u.searchParams;
    if (u.pathname === '/__r304') {
        const h = {};
        for (const kv of q.getAll('h')) {
            const i = kv.indexOf(':');
            h[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
        }
        r304[q.get('path')] = h;
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('ok');
        return;
    }
    counts[u.pathname] = (counts[u.pathname] || 0) + 1;
    total++;
    if (r304[u.pathname] && req.headers['if-none-match']) {
        res.writeHead(304, r304[u.pathname]);
        res.end();
        return;
    }
    const size = parseInt(q.get('size') || '0', 10);
    const chunk = Math.min(BLOCK, parseInt(q.get('chunk') || '65536', 10));
    const ms = parseInt(q.get('ms') || '0', 10);
    const headers = {
        'Content-Type': 'application/octet-stream',
        'Cache-Control': 'max-age=' + (q.get('maxage') || '600'),
    };
    if (q.get('etag') !== null) headers['ETag'] = '"' + q.get('etag') + '"';
    if (q.get('cl') !== '0') headers['Content-Length'] = String(size);
    res.writeHead(200, headers);
    let off = 0;
    let stopped = false;
    res.on('close', () => { stopped = true; });
    const step = () => {
        while (!stopped && off < size) {
            const len = Math.min(chunk, size - off);
            const more = res.write(pat.subarray(off % 26, off % 26 + len));
            off += len;
            if (ms > 0 && off < size) { setTimeout(step, ms); return; }
            if (!more) { res.once('drain', step); return; }
        }
        if (!stopped) res.end();
    };
    step();
}).listen(PORT, '127.0.0.1');
