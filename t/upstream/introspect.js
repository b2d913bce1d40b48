// Test upstream: an OAuth 2.0 token introspection endpoint (RFC 7662) for
// lua/examples/token_introspection.lua. POST /introspect with the form body
// token=T answers {"active":true,"sub":"alice","scope":"read"} for T=good
// and {"active":false} otherwise; GET /count says how many introspections
// it answered. Node standard library only. Environment: PORT.
'use strict';
const http = require('http');

let count = 0;
http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
        if (req.method === 'GET' && req.url === '/count') {
            res.writeHead(200, { 'Content-Type': 'text/plain' });
            return res.end(String(count));
        }
        if (req.method !== 'POST' || req.url !== '/introspect') {
            res.writeHead(404);
            return res.end();
        }
        count++;
        const token = new URLSearchParams(body).get('token');
        const answer = token === 'good' ? { active: true, sub: 'alice', scope: 'read' } : { active: false };
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(answer));
    });
}).listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
