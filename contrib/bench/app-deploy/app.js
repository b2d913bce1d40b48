// The deployed app of contrib/bench/app-deploy: a small Express service on
// process.env.PORT, the same code under pm2 (cluster mode) and under
// Tollgate's app block. GET / answers JSON after a 2 ms pause (a little
// work in flight during a deploy), POST / counts the body it read; SIGTERM
// closes the server gracefully.
'use strict';
const express = require('express');
const app = express();
app.get('/healthz', (req, res) => res.send('ok'));
app.get('/', (req, res) => setTimeout(() => res.json({ pid: process.pid }), 2));
app.post('/', (req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => res.json({ pid: process.pid, received: n }));
});
const server = app.listen(process.env.PORT, () => {
  if (process.send) process.send('ready');
});
process.on('SIGINT', () => server.close(() => process.exit(0)));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
