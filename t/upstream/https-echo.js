// Test upstream over TLS (Node's https module): answers every request with a
// JSON description of it, like echo.js, plus what TLS saw: how many TLS
// connections the server accepted so far ("connections"), whether this one
// resumed a session ("reused"), the client port and the client
// certificate's subject CN ("client_cn", when one was sent). /ws is a
// WebSocket echo (the `ws` package): "echo:" + message.
// Environment: PORT, CERT, KEY (server pair), CLIENT_CA (then a client
// certificate signed by it is required), NAME.
'use strict';
const https = require('https');
const fs = require('fs');
const { WebSocketServer } = require('ws');

const NAME = process.env.NAME || 'https-echo';
const opts = { cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY) };
if (process.env.CLIENT_CA) {
    opts.ca = fs.readFileSync(process.env.CLIENT_CA);
    opts.requestCert = true;
    opts.rejectUnauthorized = true;
}
let connections = 0;
const server = https.createServer(opts, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        const peer = req.socket.getPeerCertificate();
        const body = JSON.stringify({
            name: NAME, method: req.method, url: req.url, headers: req.headers,
            body: Buffer.concat(chunks).toString(), connections,
            reused: req.socket.isSessionReused(), remotePort: req.socket.remotePort,
            servername: req.socket.servername || null,
            client_cn: peer && peer.subject ? peer.subject.CN : null,
        });
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(body);
    });
});
server.on('secureConnection', () => { connections++; });
server.on('tlsClientError', () => {});
const wss = new WebSocketServer({ server, path: '/ws' });
wss.on('connection', (ws) => {
    ws.send(`hello from ${NAME}`);
    ws.on('message', (data) => ws.send(`echo:${data.toString()}`));
    ws.on('error', () => {});
});
server.listen(parseInt(process.env.PORT || '0', 10));
