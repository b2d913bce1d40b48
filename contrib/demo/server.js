// Demo Node service that `make run` starts behind Tollgate. Standard library
// only. Environment: PORT (default 3000), HOST (default 127.0.0.1).
//   GET  /            HTML page showing the request headers it received
//   GET  /healthz     JSON {status:'ok'} (the gateway's health check)
//   GET  /api/hello   JSON greeting
//   GET  /api/time    JSON with the current time
//   POST /api/echo    JSON echo of the request body (parsed when it is JSON)
'use strict';
const http = require('http');

const PORT = parseInt(process.env.PORT || '3000', 10);
const HOST = process.env.HOST || '127.0.0.1';
const MAX_BODY = 1 << 20;

function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, (c) =>
        ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function send(res, status, type, body) {
    const data = Buffer.from(body);
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': data.length });
    res.end(data);
}

function json(res, status, obj) {
    send(res, status, 'application/json; charset=utf-8', JSON.stringify(obj, null, 2) + '\n');
}

function page(req) {
    const rows = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
        rows.push(`<tr><th>${escapeHtml(req.rawHeaders[i])}</th>` +
                  `<td>${escapeHtml(req.rawHeaders[i + 1])}</td></tr>`);
    }
    const proxied = req.headers['x-forwarded-for'] !== undefined || req.headers['via'] !== undefined;
    return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Tollgate demo</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; font-family: monospace; }
th { width: 14rem; }
code { background: #f3f3f3; padding: 0 .2rem; }
</style></head>
<body>
<h1>Hello from the demo Node service</h1>
<p>This page is served by <code>contrib/demo/server.js</code> behind <strong>Tollgate</strong>,
the reverse proxy in front of it${proxied ? '' : ' (this request did not seem to come through a proxy)'}.</p>
<p>Try <a href="/api/hello">/api/hello</a>, <a href="/api/time">/api/time</a> or
<code>curl -d '{"hi":1}' -H 'Content-Type: application/json' http://${escapeHtml(req.headers.host || `localhost:${PORT}`)}/api/echo</code>.</p>
<h2>Request</h2>
<p><code>${escapeHtml(req.method)} ${escapeHtml(req.url)} HTTP/${escapeHtml(req.httpVersion)}</code>
from <code>${escapeHtml(req.socket.remoteAddress)}:${req.socket.remotePort}</code></p>
<h2>Headers this service received</h2>
<table>${rows.join('\n')}</table>
</body>
</html>
`;
}

const server = http.createServer((req, res) => {
    const path = req.url.split('?')[0];
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
        if (size > MAX_BODY) return json(res, 413, { error: 'body too large' });
        const routes = {
            '/': ['GET', () => send(res, 200, 'text/html; charset=utf-8', page(req))],
            '/healthz': ['GET', () => json(res, 200, { status: 'ok' })],
            '/api/hello': ['GET', () => json(res, 200, {
                message: 'Hello from the demo service behind Tollgate',
                service: 'demo', pid: process.pid })],
            '/api/time': ['GET', () => {
                const now = new Date();
                json(res, 200, { iso: now.toISOString(), epochMs: now.getTime() });
            }],
            '/api/echo': ['POST', () => {
                const text = Buffer.concat(chunks).toString('utf8');
                let body = text;
                if (/json/i.test(req.headers['content-type'] || '')) {
                    try {
                        body = JSON.parse(text);
                    } catch (e) {
                        return json(res, 400, { error: 'invalid JSON: ' + e.message });
                    }
                }
                json(res, 200, { method: req.method, headers: req.headers, body: body });
            }],
        };
        const route = routes[path];
        if (!route) return json(res, 404, { error: 'not found', path: path });
        if (req.method !== route[0] && !(route[0] === 'GET' && req.method === 'HEAD')) {
            res.setHeader('Allow', route[0] === 'GET' ? 'GET, HEAD' : route[0]);
            return json(res, 405, { error: 'method not allowed' });
        }
        route[1]();
    });
});

server.listen(PORT, HOST, () => {
    console.log(`demo service listening on http://${HOST}:${PORT}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
        server.close(() => process.exit(0));
        setTimeout(() => process.exit(0), 2000).unref();
    });
}
