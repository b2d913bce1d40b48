// Test upstream: an Express app with optional middleware, to compare what
// Tollgate answers with what the npm packages answer in-process.
// Environment: PORT; MW = "" (none) | "helmet" | "cors" | "compression"; CORS
// (JSON options for the cors package; {"re": ..., "flags": ...} is a RegExp);
// HELMET (JSON options for helmet). Routes: any method on any path answers
// "ok" as text/plain; GET /own-headers also sets its own X-Frame-Options: DENY
// and Content-Security-Policy: default-src 'none'; GET /big/N answers N bytes
// of JSON-ish text as application/json (what `compression` compresses);
// GET /gen makes answers of any type, size, status and caching (see there).
'use strict';
const express = require('express');
const app = express();
const mw = process.env.MW || '';
if (mw === 'helmet') app.use(require('helmet')(JSON.parse(process.env.HELMET || '{}')));
// in CORS, {"re": "^https://", "flags": "i"} stands for a RegExp
const revive = (k, v) => (v && typeof v === 'object' && typeof v.re === 'string')
    ? new RegExp(v.re, v.flags || '') : v;
if (mw === 'cors') app.use(require('cors')(JSON.parse(process.env.CORS || '{}', revive)));
if (mw === 'compression') app.use(require('compression')());
app.get('/big/:n', (req, res) => {
    const n = parseInt(req.params.n, 10);
    const item = '{"id":1,"name":"item","ok":true},';
    res.type('application/json').send(item.repeat(Math.ceil(n / item.length)).slice(0, n));
});
// GET|HEAD /gen?n=N&type=T[&status=S][&cc=CACHE-CONTROL][&ce=CONTENT-ENCODING][&stream=1]:
// N bytes of text as type T through res.send (Content-Length, ETag, 304 when
// fresh), or with stream=1 through res.write in two chunks and res.end()
// (no length known up front).
app.get('/gen', (req, res) => {
    const n = parseInt(req.query.n || '0', 10);
    const body = 'The quick brown fox jumps over the lazy dog. '.repeat(Math.ceil(n / 45)).slice(0, n);
    if (req.query.status) res.status(parseInt(req.query.status, 10));
    if (req.query.cc) res.set('Cache-Control', req.query.cc);
    if (req.query.ce) res.set('Content-Encoding', req.query.ce);
    if (req.query.type) res.set('Content-Type', req.query.type);
    if (req.query.stream) {
        res.write(body.slice(0, n >> 1));
        setTimeout(() => res.end(body.slice(n >> 1)), 5);
        return;
    }
    if (res.statusCode === 204) return res.end();
    res.send(Buffer.from(body));
});
app.get('/own-headers', (req, res) => {
    res.set('X-Frame-Options', 'DENY');
    res.set('Content-Security-Policy', "default-src 'none'");
    res.type('text/plain').send('own');
});
app.all(/.*/, (req, res) => res.type('text/plain').send('ok'));
app.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
