// Load client for the zero-downtime tests and contrib/bench/app-deploy:
// keeps CONCURRENCY requests in flight to URL until the file STOP_FILE
// exists (or MAX_SECONDS pass), half of the workers on keep-alive
// connections, half on a new connection per request, every fourth request
// a POST with a 64 KB body. Prints one JSON line: {ok, failed, errors:
// {reason: count}, seconds}. With RATE=N in the environment the clients
// together start at most N requests a second. Usage:
//   node loadclient.js URL STOP_FILE [CONCURRENCY=8] [MAX_SECONDS=60]
'use strict';
const http = require('http');
const fs = require('fs');

const [url, stopFile, conc = '8', maxSec = '60'] = process.argv.slice(2);
const u = new URL(url);
const keep = new http.Agent({ keepAlive: true, maxSockets: Number(conc) });
const body = Buffer.alloc(65536, 'x');
const start = Date.now();
let ok = 0, failed = 0, n = 0;
const errors = {};
const fail = (why) => { failed++; errors[why] = (errors[why] || 0) + 1; };
const done = () => fs.existsSync(stopFile) || Date.now() - start > Number(maxSec) * 1000;

function one(k, cb) {
  const post = n++ % 4 === 3;
  const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search,
    method: post ? 'POST' : 'GET', agent: k % 2 ? keep : false,
    headers: post ? { 'Content-Length': body.length } : {} }, (res) => {
    res.resume();
    res.on('end', () => { if (res.statusCode >= 200 && res.statusCode < 300) ok++;
                          else fail('status ' + res.statusCode); cb(); });
    res.on('error', (e) => { fail(e.code || e.message); cb(); });
  });
  req.setTimeout(10000, () => req.destroy(new Error('timeout')));
  req.on('error', (e) => { fail(e.code || e.message); cb(); });
  req.end(post ? body : undefined);
}

let running = Number(conc);
const gap = process.env.RATE ? Number(conc) * 1000 / Number(process.env.RATE) : 0;
for (let k = 0; k < Number(conc); k++) {
  let next = Date.now();
  const loop = () => {
    const wait = next - Date.now();
    if (gap && wait > 0) return setTimeout(loop, wait);
    next = Math.max(next + gap, Date.now() - 1000);
    if (done()) {
      if (--running === 0) {
        console.log(JSON.stringify({ ok, failed, errors, seconds: (Date.now() - start) / 1000 }));
        process.exit(0);
      }
      return;
    }
    one(k, loop);
  };
  loop();
}
