// Test upstream: a WebSocket echo server (the `ws` npm package) on /ws, plus
// plain HTTP answers for everything else. Each text message comes back as
// "echo:" + message; the message "close" makes the server close the socket;
// "bye" closes it with a close frame. Environment: PORT, NAME.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');
const NAME = process.env.NAME || 'ws';
const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`${NAME} plain ${req.url}\n`);
});
const wss = new WebSocketServer({ server, path: '/ws' });
wss.on('connection', (ws, req) => {
    ws.send(`hello from ${NAME}`);
    ws.on('message', (data) => {
        const text = data.toString();
        if (text === 'close') return ws.terminate();
        if (text === 'bye') return ws.close(1000, 'bye');
        ws.send(`echo:${text}`);
    });
    ws.on('error', () => {});
});
server.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
