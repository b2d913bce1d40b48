// Test upstream: an Express app with optional middleware, to compare what
// Tollgate answers with what the npm packages answer in-process.
// Environment: PORT; MW = "" (none) | "helmet" | "cors" | "compression"; CORS
// (JSON options for the cors package; {"re": ..., "flags": ...} is a RegExp);
// HELMET (JSON options for helmet). Routes: any method on any path answers
// "ok" as text/plain; GET /own-headers also sets its own X-Frame-Options: DENY
// and Content-Security-Policy: default-src 'none'; GET /big/N answers N bytes
// of JSON-ish text as application/json (what `compression` compresses).
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
app.get('/own-headers', (req, res) => {
    res.set('X-Frame-Options', 'DENY');
    res.set('Content-Security-Policy', "default-src 'none'");
    res.type('text/plain').send('own');
});
app.all(/.*/, (req, res) => res.type('text/plain').send('ok'));
app.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
