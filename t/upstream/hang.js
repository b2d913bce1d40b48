// Test upstream that accepts TCP connections, reads, and never answers.
'use strict';
const net = require('net');
net.createServer((s) => {
    s.on('data', () => {});
    s.on('error', () => {});
}).listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
