// Test upstream that answers with canned, possibly broken, HTTP responses:
// the first line of the request ("GET /name HTTP/1.1") picks the answer from
// the table below by name; then the socket is closed (or kept, for "keep").
// Used to check that the gateway refuses ambiguous or malformed responses.
'use strict';
const net = require('net');
const R = {
    ok: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    'cl-te': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    'two-cl': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!',
    'bad-chunk': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n',
    'bare-lf': 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok',
    'obs-fold': 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok',
    'ctl': 'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok',
    'space-colon': 'HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nok',
    'bad-status': 'HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok',
    'bad-version': 'HTTP/9.9 200 OK\r\nContent-Length: 2\r\n\r\nok',
    'huge-header': 'HTTP/1.1 200 OK\r\nX-Big: ' + 'a'.repeat(70000) + '\r\nContent-Length: 2\r\n\r\nok',
    'short-body': 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok',
    'mid-headers': 'HTTP/1.1 200 OK\r\nX-A: b\r\n',
    'nothing': '',
    'te-gzip': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok',
    'neg-cl': 'HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok',
    // a WebSocket switch that does not answer the request's key
    'bad-accept': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
        + 'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
    'no-accept': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
};
net.createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
        buf += d.toString('latin1');
        const m = buf.match(/^[A-Z]+ \/(\S*) HTTP/);
        if (!m || buf.indexOf('\r\n\r\n') < 0) return;
        const name = m[1].split('?')[0];
        s.end(Buffer.from(R[name] !== undefined ? R[name] : R.ok, 'latin1'));
    });
    s.on('error', () => {});
}).listen(parseInt(process.env.PORT || '0', 10), '127.0.0.1');
