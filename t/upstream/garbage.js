// Test upstream that answers every connection with bytes that are not HTTP,
// as soon as the first request bytes arrive, then closes.
'use strict';
const net = require('net');
const GARBAGE = Buffer.from('HTTP/1.1 2x0 \x00\x01garbage\r\nno colon here\r\n\xff\xfe\r\n\r\n', 'latin1');
net.createServer((s) => {
    s.once('data', () => s.end(GARBAGE));
    s.on('error', () => {});
}).listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
