// Test upstream: a Socket.io 4 server. On connection it emits "hello" with
// its NAME; "ping" (with an ack) is answered with {name, data, transport}.
// Environment: PORT, NAME.
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const NAME = process.env.NAME || 'sio';
const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`${NAME}\n`);
});
const io = new Server(server);
io.on('connection', (socket) => {
    socket.emit('hello', NAME);
    socket.on('ping', (data, ack) => ack({ name: NAME, data, transport: socket.conn.transport.name }));
});
server.listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
