// Test upstream: a WebSocket echo server (the `ws` npm package) on /ws, plus
// plain HTTP answers for everything else. Each text message comes back as
// "echo:" + message, each binary message as the same bytes; the message
// "close" makes the server close the socket, "reset" reset it (TCP RST);
// "bye" closes it with a close frame; "pause:MS" stops reading the socket
// for MS milliseconds. With "headers=1" in the query, a second message after the hello is
// the upgrade request as JSON ({method, url, httpVersion, headers}).
// Environment: PORT, NAME.
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
    if (/[?&]headers=1/.test(req.url))
        ws.send(JSON.stringify({ method: req.method, url: req.url, httpVersion: req.httpVersion,
                                 headers: req.headers }));
    ws.on('message', (data, isBinary) => {
        if (isBinary) return ws.send(data, { binary: true });
        const text = data.toString();
        if (text === 'close') return ws.terminate();
        if (text === 'reset') return ws._socket.resetAndDestroy();
        if (text.startsWith('pause:')) {
            ws._socket.pause();
            return setTimeout(() => ws._socket.resume(), parseInt(text.slice(6), 10));
        }
        if (text === 'bye') return ws.close(1000, 'bye');
        ws.send(`echo:${text}`);
    });
    ws.on('error', () => {});
});
server.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
