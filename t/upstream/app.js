// Test app run by Tollgate's `app` block (t/7xx-app-*.t): listens on
// process.env.PORT (a port or a unix socket path, as Tollgate gives it).
// Node standard library only. Behaviour from the environment:
//   APP_DELAY_MS   wait this long before listening (readiness gating)
//   APP_EXIT       exit with this code right at start (a crash loop)
//   APP_LEAK_MB    grow the heap by this many MB every 100 ms (max_memory)
//   APP_UNHEALTHY  /healthz answers 503
//   APP_VERSION    reported in every answer (which deploy answered)
// Paths: /healthz (200, or 503 with APP_UNHEALTHY), /slow/MS (answers after
// MS ms), /env/NAME (that variable), /print/WORD (WORD on stdout), anything
// else: JSON {instance, pid, version, url, uid, cwd}. Prints "app NAME#I listening" on stdout, and on stderr the
// line "stderr line" once, so the log capture can be checked.
'use strict';
const http = require('http');

if (process.env.APP_EXIT !== undefined) {
  console.log('exiting at once');
  process.exit(Number(process.env.APP_EXIT));
}

const leak = [];
if (process.env.APP_LEAK_MB) {
  const mb = Number(process.env.APP_LEAK_MB);
  setInterval(() => { leak.push(Buffer.alloc(mb * 1048576, 1)); }, 100);
}

const inst = process.env.TOLLGATE_INSTANCE;
const server = http.createServer((req, res) => {
  const send = (status, body, type) => {
    res.writeHead(status, { 'Content-Type': type || 'application/json' });
    res.end(body);
  };
  if (req.url === '/healthz')
    return send(process.env.APP_UNHEALTHY ? 503 : 200, 'ok', 'text/plain');
  let m = req.url.match(/^\/slow\/(\d+)/);
  if (m) {
    req.resume();
    return setTimeout(() => send(200, JSON.stringify({ instance: inst, pid: process.pid,
      version: process.env.APP_VERSION || '' })), Number(m[1]));
  }
  m = req.url.match(/^\/print\/(\w+)/);
  if (m) {
    console.log(m[1]);
    return send(200, 'printed', 'text/plain');
  }
  m = req.url.match(/^\/env\/(\w+)/);
  if (m) return send(200, process.env[m[1]] === undefined ? '(unset)' : process.env[m[1]],
                     'text/plain');
  req.resume();
  req.on('end', () => send(200, JSON.stringify({ instance: inst, pid: process.pid,
    version: process.env.APP_VERSION || '', url: req.url, uid: process.getuid(),
    cwd: process.cwd() })));
});

const start = () => {
  const port = /^\d+$/.test(process.env.PORT) ? Number(process.env.PORT) : process.env.PORT;
  const up = () => {
    console.log(`app ${process.env.TOLLGATE_APP}#${inst} listening`);
    console.error('stderr line');
  };
  if (typeof port === 'number') server.listen(port, '127.0.0.1', up);
  else server.listen(port, up);
};
setTimeout(start, Number(process.env.APP_DELAY_MS || 0));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
