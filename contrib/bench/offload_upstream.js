// contrib/bench/offload_upstream.js: the Node endpoint of contrib/bench/cache-offload.
// GET /report builds about 50 KB of JSON with about 5 ms of real CPU work: records
// whose fields are SHA-256 digests, chained from the previous one, until 5 ms of the
// process's CPU time went into them, then the JSON of enough of them for 50 KB. It
// answers with Cache-Control: max-age=1. GET /__count: how many reports it built.
// Environment: PORT. Node standard library only.
'use strict';
const http = require('http');
const crypto = require('crypto');

const PORT = parseInt(process.env.PORT || '0', 10);
const CPU_US = 5000;
const SIZE = 50 * 1024;
let built = 0;

function report() {
    const t0 = process.cpuUsage();
    const items = [];
    let d = String(built);
    for (let i = 0; ; i++) {
        d = crypto.createHash('sha256').update(d).digest('hex');
        items.push({ id: i, digest: d, score: parseInt(d.slice(0, 8), 16) / 0xffffffff });
        if (i % 32 === 31) {
            const u = process.cpuUsage(t0);
            if (u.user + u.system >= CPU_US) break;
        }
    }
    const out = { built: ++built, items: [] };
    let len = 32;
    for (let i = 0; len < SIZE; i = (i + 1) % items.length) {
        out.items.push(items[i]);
        len += JSON.stringify(items[i]).length + 1;
    }
    return JSON.stringify(out);
}

http.createServer((req, res) => {
    if (req.url === '/__count') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ built }));
        return;
    }
    const body = report();
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'max-age=1',
                         'Content-Length': Buffer.byteLength(body) });
    res.end(body);
}).listen(PORT, '127.0.0.1');
