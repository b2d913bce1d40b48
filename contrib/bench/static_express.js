// static_express.js: the in-process anchor of the benchmark's static-file scenarios.
//
// What a Node app does without a gateway in front: express with express.static (the
// serve-static package) on the file tree, its default options (ETag, Last-Modified,
// Cache-Control: public, max-age=0, dotfiles ignored), on 127.0.0.1:PORT and, when a
// certificate is given, HTTPS on 127.0.0.1:TLS_PORT with the same app. Client keep-alive
// 65 s, as the proxies in the benchmark. WORKERS > 1 runs that many processes under Node's
// cluster module (as `cluster`-style apps do), each with both listeners.
//
// contrib/bench/run starts it with NODE_PATH pointing at the test suite's npm packages
// (t/node_modules) and stops it with SIGTERM.
//
// Usage: node static_express.js ROOT PORT [TLS_PORT CERT KEY]
'use strict';
const cluster = require('cluster');
const fs = require('fs');
const http = require('http');
const https = require('https');
const express = require('express');

const [root, port, tlsPort, cert, key] = process.argv.slice(2);
if (!root || !port) {
    console.error('usage: node static_express.js ROOT PORT [TLS_PORT CERT KEY]');
    process.exit(2);
}
const workers = Math.max(1, parseInt(process.env.WORKERS || '1', 10) || 1);

function keepAlive(server) {
    server.keepAliveTimeout = 65000;
    server.headersTimeout = 66000;
    return server;
}

if (workers > 1 && cluster.isPrimary) {
    for (let i = 0; i < workers; i++) cluster.fork();
    process.on('SIGTERM', () => {
        for (const id in cluster.workers) cluster.workers[id].kill('SIGTERM');
        process.exit(0);
    });
} else {
    const app = express();
    app.use(express.static(root));
    keepAlive(http.createServer(app)).listen(Number(port), '127.0.0.1');
    if (tlsPort) {
        const opts = { cert: fs.readFileSync(cert), key: fs.readFileSync(key) };
        keepAlive(https.createServer(opts, app)).listen(Number(tlsPort), '127.0.0.1');
    }
    process.on('SIGTERM', () => process.exit(0));
}
