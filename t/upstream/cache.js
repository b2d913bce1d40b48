// Test upstream for the response cache: counts the requests it gets, so a
// test can tell a hit (no request) from a miss. Node standard library only.
// Environment: PORT.
//
//   GET /__count            {"total": N, "paths": {"/a": n, ...}} (not counted)
//   DELETE /__count         resets the counts
//   any other path          answers 200 (or ?status=NNN) with the headers of
//                           every ?h=Name:value, and a JSON body:
//                           {"n": this path's count, "path", "method",
//                            "xfh": X-Forwarded-Host received, "lang":
//                            Accept-Language received, "inm": If-None-Match}
//     ?etag=V               ETag: "V"; a request with If-None-Match "V" gets
//                           304 (with the ?h headers, no body)
//     ?size=N&chunks=K&ms=T instead of JSON: N pattern bytes (as echo.js) in K
//                           writes T ms apart, with Content-Length unless
//                           ?cl=0 (then chunked)
//     ?lm=1                 Last-Modified: a fixed date; a request with that
//                           If-Modified-Since gets 304
//     ?delay=MS             answer after MS milliseconds
//   POST /__set?status=S&delay=MS   from now on every answer has status S
//                           (0: its own) and comes MS ms late (not counted)
//   POST /__r304?path=P&h=Name:value...   from now on a request for P with
//                           If-None-Match or If-Modified-Since gets 304 with
//                           exactly these headers (counted as a request)
'use strict';
const http = require('http');

const PORT = parseInt(process.env.PORT || '0', 10);
let counts = {};
let total = 0;
let forceStatus = 0;
let forceDelay = 0;
const r304 = {}; // path -> the headers of its 304
const LM = 'Mon, 01 Jan 2024 00:00:00 GMT';

function pattern(off, len) {
    const b = Buffer.allocUnsafe(len);
    for (let i = 0; i < len; i++) b[i] = 97 + ((off + i) % 26);
    return b;
}

function queryHeaders(q) {
    const headers = {};
    for (const h of q.getAll('h')) {
        const i = h.indexOf(':');
        const name = h.slice(0, i).trim();
        const v = h.slice(i + 1).trim();
        headers[name] = headers[name] === undefined ? v : [].concat(headers[name], v);
    }
    return headers;
}

function answer(req, res, u) {
    const q = u.searchParams;
    const headers = queryHeaders(q);
    if (r304[u.pathname] && !forceStatus &&
        (req.headers['if-none-match'] || req.headers['if-modified-since'])) {
        res.writeHead(304, r304[u.pathname]);
        res.end();
        return;
    }
    const etag = q.get('etag');
    if (etag !== null && !forceStatus) {
        headers['ETag'] = '"' + etag + '"';
        if (req.headers['if-none-match'] === '"' + etag + '"') {
            res.writeHead(304, headers);
            res.end();
            return;
        }
    }
    if (q.get('lm') !== null && !forceStatus) {
        headers['Last-Modified'] = LM;
        if (req.headers['if-modified-since'] === LM) {
            res.writeHead(304, headers);
            res.end();
            return;
        }
    }
    const status = forceStatus || parseInt(q.get('status') || '200', 10);
    if (q.get('size') !== null) {
        const n = parseInt(q.get('size'), 10);
        const k = Math.max(1, parseInt(q.get('chunks') || '1', 10));
        const ms = parseInt(q.get('ms') || '0', 10);
        if (q.get('cl') !== '0') headers['Content-Length'] = String(n);
        headers['Content-Type'] = 'text/plain';
        res.writeHead(status, headers);
        const per = Math.ceil(n / k);
        let off = 0;
        const step = () => {
            const len = Math.min(per, n - off);
            if (len > 0) res.write(pattern(off, len));
            off += len;
            if (off >= n) res.end();
            else setTimeout(step, ms);
        };
        step();
        return;
    }
    const body = JSON.stringify({
        n: counts[u.pathname], path: u.pathname, method: req.method,
        xfh: req.headers['x-forwarded-host'] || null,
        lang: req.headers['accept-language'] || null,
        inm: req.headers['if-none-match'] || null,
    });
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(Buffer.byteLength(body));
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
}

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
        if (req.method === 'DELETE') { counts = {}; total = 0; }
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ total, paths: counts }));
        return;
    }
    if (u.pathname === '/__r304') {
        r304[u.searchParams.get('path')] = queryHeaders(u.searchParams);
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('ok');
        return;
    }
    if (u.pathname === '/__set') {
        forceStatus = parseInt(u.searchParams.get('status') || '0', 10);
        forceDelay = parseInt(u.searchParams.get('delay') || '0', 10);
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('ok');
        return;
    }
    req.resume();
    req.on('end', () => {
        counts[u.pathname] = (counts[u.pathname] || 0) + 1;
        total++;
        const delay = forceDelay || parseInt(u.searchParams.get('delay') || '0', 10);
        if (delay > 0) setTimeout(() => answer(req, res, u), delay);
        else answer(req, res, u);
    });
}).listen(PORT, '127.0.0.1');
